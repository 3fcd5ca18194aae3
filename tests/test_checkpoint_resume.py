"""Kill a training run with SIGKILL (mid-run, and mid-save), resume it, and prove nothing changed.

The resumed run must end with exactly the weights and losses of an uninterrupted run (CPU,
torch.equal on every tensor), the checkpoint file must always load, and the temporary file a
killed save leaves behind is never read and is removed by the next save.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from minilm.checkpoint import PAUSE_VAR, checkpoint_path, load_checkpoint

MAX_STEPS = 40
CHILD = textwrap.dedent(
    f"""
    import os, sys, time
    from dataclasses import asdict
    import torch
    torch.set_num_threads(1)
    import minilm
    from minilm.models import MLP, MLPConfig
    from minilm.training import TrainConfig, train

    ckpt_dir, out = sys.argv[1], sys.argv[2]
    slow = float(os.environ.get("CHILD_STEP_SLEEP", "0"))
    minilm.set_seed(0)
    data = torch.randint(0, 11, (2000,), generator=torch.Generator().manual_seed(123))
    g = torch.Generator().manual_seed(1)  # the batch generator: saved in and restored from checkpoints

    def get_batch(split):
        if split == "train":
            ix = torch.randint(0, len(data) - 9, (4,), generator=g)
            time.sleep(slow)  # lets the parent kill us in the middle of the run
        else:
            ix = torch.randint(0, len(data) - 9, (4,))  # global torch RNG: also checkpointed
        x = torch.stack([data[i:i + 8] for i in ix])
        y = torch.stack([data[i + 1:i + 9] for i in ix])
        return x, y

    model = MLP(MLPConfig(vocab_size=11, block_size=4, n_embd=4, n_hidden=16))
    cfg = TrainConfig(max_steps={MAX_STEPS}, learning_rate=1e-2, warmup_steps=5, eval_interval=10,
                      eval_iters=2, checkpoint_interval=4, checkpoint_dir=ckpt_dir, run_name="run",
                      resume=True, progress=False)
    history = train(model, get_batch, cfg, "cpu", generator=g)
    torch.save({{"model": model.state_dict(), "history": asdict(history)}}, out)
    """
)
COMPARED = ("steps", "train_loss", "val_loss", "lr", "step_loss")  # not wall time / throughput


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != PAUSE_VAR}
    env.update(OMP_NUM_THREADS="1", **extra)
    return env


def _run(script: Path, ckpt_dir: Path, out: Path, **env: str) -> None:
    subprocess.run([sys.executable, str(script), str(ckpt_dir), str(out)], env=_env(**env),
                   check=True, timeout=120)


def _wait(proc: subprocess.Popen, ready, what: str, ckpt: Path, timeout: float = 60) -> None:
    """Poll until ready(); meanwhile every checkpoint file that exists must load."""
    end = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the child exited ({proc.returncode}) before {what}"
        assert time.monotonic() < end, f"timed out waiting for {what}"
        if ckpt.exists():
            load_checkpoint(ckpt)  # never half-written, whenever we look
        time.sleep(0.02)


def _assert_same(result: Path, reference: Path) -> None:
    got = torch.load(result, weights_only=True)
    ref = torch.load(reference, weights_only=True)
    assert got["model"].keys() == ref["model"].keys()
    for name, tensor in ref["model"].items():
        assert torch.equal(got["model"][name], tensor), f"weights differ: {name}"
    for key in COMPARED:
        assert got["history"][key] == ref["history"][key], f"history.{key} differs"
    assert got["history"]["steps"][-1] == MAX_STEPS


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    script = root / "child.py"
    script.write_text(CHILD)
    reference = root / "reference.pt"
    _run(script, root / "ckpt_reference", reference)
    return root, script, reference


def test_uninterrupted_run_leaves_a_final_checkpoint(setup):
    root, _, _ = setup
    ckpt = load_checkpoint(checkpoint_path("run", root / "ckpt_reference"))
    assert ckpt["step"] == MAX_STEPS and ckpt["model_class"] == "MLP"
    assert ckpt["config"]["block_size"] == 4 and ckpt["train_config"]["max_steps"] == MAX_STEPS


@pytest.mark.parametrize("kill_after_step", [21])  # add kill points here; each costs ~5 s
def test_sigkill_mid_run_then_resume_matches(setup, kill_after_step):
    root, script, reference = setup
    ckpt_dir, out = root / f"ckpt_run{kill_after_step}", root / f"out_run{kill_after_step}.pt"
    ckpt = checkpoint_path("run", ckpt_dir)
    proc = subprocess.Popen([sys.executable, str(script), str(ckpt_dir), str(out)],
                            env=_env(CHILD_STEP_SLEEP="0.02"))
    try:
        _wait(proc, lambda: ckpt.exists() and load_checkpoint(ckpt)["step"] >= kill_after_step,
              f"a checkpoint at step >= {kill_after_step}", ckpt)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed_at = load_checkpoint(ckpt)["step"]
    assert kill_after_step <= killed_at < MAX_STEPS and not out.exists()
    _run(script, ckpt_dir, out)
    _assert_same(out, reference)


def test_sigkill_mid_save_then_resume_matches(setup):
    root, script, reference = setup
    ckpt_dir, out, flag = root / "ckpt_save", root / "out_save.pt", root / "in_save.flag"
    ckpt = checkpoint_path("run", ckpt_dir)
    proc = subprocess.Popen([sys.executable, str(script), str(ckpt_dir), str(out)],
                            env=_env(**{PAUSE_VAR: f"16:{flag}"}))
    try:
        _wait(proc, flag.exists, "the save of step 16 to pause", ckpt)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    stray = list(ckpt_dir.glob(".run.pt.*.tmp"))
    assert len(stray) == 1, "the killed save should have left its temporary file"
    assert load_checkpoint(ckpt)["step"] == 12, "the last complete checkpoint is the one before"
    _run(script, ckpt_dir, out)
    _assert_same(out, reference)
    assert list(ckpt_dir.iterdir()) == [ckpt], "stale temporary files must be cleaned up"
