"""Presets, device, precision policy, seeding and `minilm.about()` (presets.py, runtime.py)."""

from __future__ import annotations

import os
import platform
import random
import subprocess
import sys
import warnings

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


def fake_gpus(monkeypatch, capabilities: dict[int, tuple[int, int]], current: int = 0) -> None:
    """Pretend CUDA devices 0, 1, ... have these compute capabilities (a T4 is (7, 5), an A100 (8, 0)).

    torch.cuda.is_bf16_supported is replaced by torch 2.2's version: no arguments, and it looks at
    the *current* device only; the policy must not need it."""
    def capability(device=None):
        index = torch.device(device).index if device is not None else None
        return capabilities[current if index is None else index]

    def is_bf16_supported():  # torch 2.2's signature: `including_emulation=` raises TypeError
        return capabilities[current] >= (8, 0)

    monkeypatch.setattr(torch.cuda, "get_device_capability", capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: current)
    monkeypatch.setattr(torch.version, "hip", None)


def test_cuda_with_bf16_uses_bf16_without_scaler(monkeypatch):
    fake_gpus(monkeypatch, {0: (8, 0)})  # an A100
    p = minilm.precision_for("cuda")
    assert p.dtype is torch.bfloat16 and not p.use_grad_scaler and p.name == "bf16"


def test_cuda_without_bf16_uses_fp16_with_scaler(monkeypatch):
    # A T4 (compute capability 7.5) has no native bf16: fp16 autocast, and a GradScaler against underflow.
    fake_gpus(monkeypatch, {0: (7, 5)})
    p = minilm.precision_for(torch.device("cuda:0"))
    assert p.dtype is torch.float16 and p.use_grad_scaler and p.name == "fp16"


def test_the_policy_checks_the_device_asked_for_not_the_current_one(monkeypatch):
    fake_gpus(monkeypatch, {0: (7, 5), 1: (8, 9)}, current=0)  # a T4 and an L4; the T4 is current
    assert minilm.precision_for("cuda:1").name == "bf16"
    assert minilm.precision_for("cuda:0").name == "fp16"
    assert minilm.precision_for("cuda").name == "fp16"  # no index: the current device
    fake_gpus(monkeypatch, {0: (7, 5), 1: (8, 9)}, current=1)
    assert minilm.precision_for("cuda").name == "bf16" and minilm.precision_for("cuda:0").name == "fp16"


def test_grad_scaler_on_torch_2_2(monkeypatch):
    """torch 2.2 has no torch.amp.GradScaler, only torch.cuda.amp.GradScaler(init_scale, ..., enabled)."""
    calls = []

    class OldScaler(torch.cuda.amp.GradScaler):  # torch 2.2's signature: no device argument
        def __init__(self, init_scale=2.0**16, growth_factor=2.0, backoff_factor=0.5,
                     growth_interval=2000, enabled=True):
            calls.append((init_scale, enabled))
            super().__init__(init_scale, growth_factor, backoff_factor, growth_interval, enabled)

    monkeypatch.delattr(torch.amp, "GradScaler")
    monkeypatch.setattr(torch.cuda.amp, "GradScaler", OldScaler)
    with pytest.warns(FutureWarning):  # this torch deprecates the old class; 2.2 does not
        scaler = minilm.grad_scaler("cpu")
    assert isinstance(scaler, OldScaler) and not scaler.is_enabled()
    assert calls == [(2.0**16, False)]  # the device was not passed where init_scale goes
    from minilm.models import MLP, MLPConfig
    from minilm.training.loop import TrainConfig, train
    model = MLP(MLPConfig(vocab_size=5, block_size=2, n_embd=3, n_hidden=4))
    batch = (torch.zeros(2, 4, dtype=torch.long), torch.ones(2, 4, dtype=torch.long))
    with pytest.warns(FutureWarning):
        h = train(model, lambda split: batch, TrainConfig(max_steps=3, eval_interval=3, eval_iters=1,
                                                          progress=False), "cpu")
    assert h.steps == [0, 3]


def test_autocast_dtype_now_and_on_torch_2_2(monkeypatch):
    assert runtime.autocast_dtype("cpu") is None and runtime.autocast_dtype("cuda") is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert runtime.autocast_dtype("cpu") is torch.bfloat16
        assert runtime.autocast_dtype("cuda") is None
    # torch 2.2: no get_autocast_dtype, and is_autocast_enabled() takes no argument (it means CUDA);
    # patched inside the autocast block, since torch.autocast itself calls the newer API
    real = torch.is_autocast_enabled
    with warnings.catch_warnings(), torch.autocast("cpu", dtype=torch.bfloat16):
        warnings.simplefilter("ignore", DeprecationWarning)  # this torch deprecates the 2.2 functions
        with pytest.MonkeyPatch.context() as mp:
            mp.delattr(torch, "get_autocast_dtype")
            mp.setattr(torch, "is_autocast_enabled", lambda: real("cuda"))
            assert runtime.autocast_dtype("cpu") is torch.bfloat16
            assert runtime.autocast_dtype("cuda") is None


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
    assert lines["threads"].split()[0].isdigit() and "(" in lines["threads"]  # the count and why


def test_matmul_flops_measures_a_plausible_cpu_throughput():
    flops = runtime.matmul_flops(64, "cpu", seconds=0.02, rounds=2)
    assert 1e6 < flops < 1e14  # a CPU does between a MFLOP/s and 100 TFLOP/s
    runtime.synchronize("cpu")  # a no-op on the CPU


# --- CPU threads ---------------------------------------------------------------------------


@pytest.mark.parametrize("cores, load, default, expected", [
    (2, 0.1, 2, 2),    # a quiet 2-core machine: PyTorch's default
    (2, 1.9, 2, 1),    # one core kept busy by other work: one thread
    (2, 6.0, 2, 1),    # heavily oversubscribed: never below one
    (8, 2.4, 8, 6),    # 2 of 8 cores busy (2.4 rounds to 2)
    (16, 0.0, 8, 8),   # never above PyTorch's default (its physical cores)
    (4, None, 4, 4),   # no load average (Windows): the default
])
def test_threads_follow_the_free_cores(cores, load, default, expected):
    n, why = runtime.choose_threads(cores, load, default, env={})
    assert n == expected and f"{cores} cores" in why
    if n < default:
        assert "MINILM_THREADS" in why and "oversubscribe" in why  # says what to do


def test_threads_overrides_and_torchrun():
    assert runtime.choose_threads(2, 1.9, 2, env={"MINILM_THREADS": "2"}) == (2, "set by MINILM_THREADS")
    assert runtime.choose_threads(8, 0.0, 8, env={"OMP_NUM_THREADS": "3"})[0] == 8  # PyTorch applied it
    assert runtime.choose_threads(8, 0.0, 8, env={"LOCAL_WORLD_SIZE": "4"})[0] == 2  # 4 processes share 8 cores
    for bad in ("0", "two", "-1"):
        with pytest.raises(ValueError, match=f"MINILM_THREADS='{bad}' must be a whole number >= 1"):
            runtime.choose_threads(2, 0.0, 2, env={"MINILM_THREADS": bad})


def test_threads_are_chosen_once_before_the_device_and_printed(monkeypatch, capsys):
    monkeypatch.setattr(runtime, "_THREADS", {})
    monkeypatch.setattr(runtime, "_ANNOUNCED", set())
    monkeypatch.setattr(runtime, "usable_cores", lambda: 2)
    monkeypatch.setattr(runtime.os, "getloadavg", lambda: (1.9, 1.0, 1.0))
    monkeypatch.setattr(runtime.torch, "get_num_threads", lambda: 2)
    calls = []
    monkeypatch.setattr(runtime.torch, "set_num_threads", calls.append)  # the real setting untouched
    for var in ("MINILM_THREADS", "OMP_NUM_THREADS", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MINILM_DEVICE", "cpu")
    minilm.get_device()
    minilm.get_device()
    runtime.configure_threads()
    assert calls == [1]  # once, one thread for the one free core
    out = capsys.readouterr().out
    assert out.count("minilm: 1 CPU thread (2 cores, load average 1.9") == 1
    assert runtime.threads_summary().endswith("MINILM_THREADS=N overrides)")
