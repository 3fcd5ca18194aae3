"""Presets, device, precision policy, seeding and `minilm.about()` (presets.py, runtime.py)."""

from __future__ import annotations

import os
import platform
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

import minilm
from minilm import presets, runtime

# --- presets -------------------------------------------------------------------------------


@pytest.mark.parametrize("cuda, expected", [(True, "gpu"), (False, "cpu")])
def test_default_preset_follows_cuda(monkeypatch, cuda, expected):
    monkeypatch.delenv("MINILM_PRESET", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert minilm.preset().name == expected


@pytest.mark.parametrize(
    "value, expected", [("smoke", "smoke"), ("cpu", "cpu"), ("gpu", "gpu"), (" CPU ", "cpu")]
)
def test_preset_from_env(monkeypatch, value, expected):
    monkeypatch.setenv("MINILM_PRESET", value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert minilm.preset().name == expected


def test_argument_beats_env(monkeypatch):
    monkeypatch.setenv("MINILM_PRESET", "gpu")
    assert minilm.preset("smoke").name == "smoke"


def test_invalid_preset_names_variable_and_choices(monkeypatch):
    monkeypatch.setenv("MINILM_PRESET", "laptop")
    with pytest.raises(ValueError) as e:
        minilm.preset()
    msg = str(e.value)
    assert "laptop" in msg and "MINILM_PRESET" in msg
    assert all(name in msg for name in presets.PRESETS)


def test_pick():
    for name, expected in [("smoke", 1), ("cpu", 2), ("gpu", 3)]:
        assert minilm.preset(name).pick(smoke=1, cpu=2, gpu=3) == expected
    assert minilm.preset("cpu").pick(smoke=[1], cpu=[2, 2], gpu=[3]) == [2, 2]
    with pytest.raises(TypeError):
        minilm.preset("cpu").pick(1, 2, 3)  # keyword-only: the order can never be mixed up
    with pytest.raises(TypeError):
        minilm.preset("cpu").pick(smoke=1, cpu=2)  # every preset must get a value


# --- seeds ---------------------------------------------------------------------------------


def draws() -> tuple:
    return (
        random.random(),
        np.random.rand(3).tolist(),
        torch.rand(3).tolist(),
        torch.randint(0, 1000, (4,)).tolist(),
    )


def test_set_seed_reproduces_random_numpy_torch():
    minilm.set_seed(1234)
    a = draws()
    minilm.set_seed(1234)
    b = draws()
    minilm.set_seed(1235)
    c = draws()
    assert a == b
    for x, y in zip(a, c):
        assert x != y  # each of the three generators was (re)seeded


def test_set_seed_reproduces_a_model_init():
    minilm.set_seed(0)
    w1 = torch.nn.Linear(8, 8).weight.detach().clone()
    minilm.set_seed(0)
    w2 = torch.nn.Linear(8, 8).weight.detach().clone()
    assert torch.equal(w1, w2)


# --- precision policy ----------------------------------------------------------------------


def test_cpu_is_fp32():
    p = minilm.precision_for("cpu")
    assert p.dtype is None and not p.use_grad_scaler and p.name == "fp32"
    assert not minilm.grad_scaler("cpu").is_enabled()
    with minilm.autocast("cpu"):
        y = torch.ones(4, 4) @ torch.ones(4, 4)
    assert y.dtype == torch.float32


def test_cuda_with_bf16_uses_bf16_without_scaler(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    p = minilm.precision_for("cuda")
    assert p.dtype is torch.bfloat16 and not p.use_grad_scaler and p.name == "bf16"


def test_cuda_without_bf16_uses_fp16_with_scaler(monkeypatch):
    # A T4 (compute capability 7.5) has no bf16: fp16 autocast, and a GradScaler against underflow.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    p = minilm.precision_for(torch.device("cuda:0"))
    assert p.dtype is torch.float16 and p.use_grad_scaler and p.name == "fp16"


def test_mps_is_fp32():
    assert minilm.precision_for("mps").name == "fp32"


# --- device --------------------------------------------------------------------------------


def test_device_env_override(monkeypatch):
    monkeypatch.setenv("MINILM_DEVICE", "cpu")
    assert minilm.get_device(verbose=False) == torch.device("cpu")


def test_device_argument_beats_env(monkeypatch):
    monkeypatch.setenv("MINILM_DEVICE", "cuda")
    assert minilm.get_device("cpu", verbose=False) == torch.device("cpu")


def test_unavailable_cuda_is_an_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv("MINILM_DEVICE", "cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="MINILM_DEVICE"):
        minilm.get_device(verbose=False)


@pytest.mark.parametrize(
    "cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")]
)
def test_default_device_order(monkeypatch, cuda, mps, expected):
    monkeypatch.delenv("MINILM_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert minilm.get_device(verbose=False).type == expected


def test_device_is_announced_once(monkeypatch, capsys):
    monkeypatch.setenv("MINILM_DEVICE", "cpu")
    monkeypatch.setattr(runtime, "_ANNOUNCED", set())
    minilm.get_device()
    minilm.get_device()
    out = capsys.readouterr().out
    assert out.count("minilm: using device cpu") == 1


# --- about() -------------------------------------------------------------------------------


def test_about_in_a_fresh_interpreter():
    env = {**os.environ, "MINILM_PRESET": "smoke", "MINILM_DEVICE": "cpu"}
    out = subprocess.run(
        [sys.executable, "-c", "import minilm; minilm.about()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    lines = dict(line.split(None, 1) for line in out.strip().splitlines())
    assert lines["minilm"] == minilm.__version__
    assert lines["python"].startswith(platform.python_version())
    assert lines["torch"].startswith(torch.__version__)
    assert lines["numpy"] == np.__version__
    assert lines["device"].startswith("cpu")
    assert lines["precision"] == "fp32"
    assert lines["preset"] == "smoke"
