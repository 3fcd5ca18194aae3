"""Stop a training run at any step (SIGKILL mid-step and mid-save, SIGINT), resume it, and prove nothing
changed. (A shorter first session, resumed, is tested in-process in test_training.py.)

The child trains a small GPT with dropout (so the global torch RNG matters) on batches from a seeded
generator, with eval_interval 10 and checkpoint_interval 4, and signals itself in the middle of a
chosen step: kill points need no sleeping and no timing luck. The resumed run must end with
exactly the weights, optimizer state and losses of an uninterrupted run (CPU, torch.equal on every
tensor); every checkpoint file must always load; the temporary file a killed save leaves behind
is never read and is removed by the next save.
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

from minilm.training.checkpoint import PAUSE_VAR, checkpoint_path, load_checkpoint

MAX_STEPS, EVAL_EVERY, CKPT_EVERY = 40, 10, 4
CHILD = textwrap.dedent(
    f"""
    import os, signal, sys
    from dataclasses import asdict
    import torch
    torch.set_num_threads(1)
    import minilm
    import minilm.training.checkpoint
    from minilm.models import GPT, GPTConfig
    from minilm.training.loop import TrainConfig, train

    ckpt_dir, out = sys.argv[1], sys.argv[2]
    kill = os.environ.get("CHILD_SIGNAL_AT")  # "SIGKILL:23": signal ourselves during step 23
    sig, at = (getattr(signal, kill.split(":")[0]), int(kill.split(":")[1])) if kill else (None, -1)
    minilm.set_seed(0)
    data = torch.randint(0, 11, (2000,), generator=torch.Generator().manual_seed(123))
    g = torch.Generator().manual_seed(1)  # the batch generator: saved in and restored from checkpoints
    ckpt = minilm.training.checkpoint.checkpoint_path("run", ckpt_dir)
    draws = minilm.training.checkpoint.load_checkpoint(ckpt)["step"] if ckpt.exists() else 0  # the step we resume at

    def get_batch(split):
        global draws
        if split == "train":
            if torch.is_grad_enabled():  # a training draw (estimate_loss runs under no_grad): step `draws`
                if draws == at:  # in the middle of step `at`: its batch is drawn, its update not made
                    os.kill(os.getpid(), sig)
                draws += 1
            ix = torch.randint(0, len(data) - 9, (4,), generator=g)
        else:
            ix = torch.randint(0, len(data) - 9, (4,))  # the global torch RNG, as some loops do
        x = torch.stack([data[i:i + 8] for i in ix])
        y = torch.stack([data[i + 1:i + 9] for i in ix])
        return x, y

    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=2, n_embd=16, dropout=0.1))
    cfg = TrainConfig(max_steps={MAX_STEPS}, learning_rate=1e-2, warmup_steps=5, lr_decay_steps={MAX_STEPS},
                      eval_interval={EVAL_EVERY}, eval_iters=2, checkpoint_interval={CKPT_EVERY},
                      checkpoint_dir=ckpt_dir, run_name="run", resume=True, progress=False)
    opt = minilm.training.make_optimizer(model, cfg)
    try:
        history = train(model, get_batch, cfg, "cpu", optimizer=opt, generator=g)
    except KeyboardInterrupt as e:
        print("KeyboardInterrupt:", e)
        sys.exit(3)
    torch.save({{"model": model.state_dict(), "optimizer": opt.state_dict(), "history": asdict(history)}}, out)
    """
)
COMPARED = ("train_loss", "val_loss", "lr", "step_loss")  # not wall time / throughput


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (PAUSE_VAR, "CHILD_SIGNAL_AT")}
    env.update(OMP_NUM_THREADS="1", **extra)
    return env


def _run(script: Path, ckpt_dir: Path, out: Path, expect: int = 0, **env: str) -> str:
    proc = subprocess.run([sys.executable, str(script), str(ckpt_dir), str(out)], env=_env(**env),
                          check=False, capture_output=True, text=True, timeout=180)
    assert proc.returncode == expect, proc.stdout + proc.stderr
    return proc.stdout


def _tensors(state):
    """Every tensor of a nested state dict, in a fixed order."""
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for k in sorted(state, key=str) for t in _tensors(state[k])]
    if isinstance(state, list | tuple):
        return [t for v in state for t in _tensors(v)]
    return []


def _assert_same(result: Path, reference: Path) -> None:
    got = torch.load(result, weights_only=True)
    ref = torch.load(reference, weights_only=True)
    assert got["model"].keys() == ref["model"].keys()
    for name, tensor in ref["model"].items():
        assert torch.equal(got["model"][name], tensor), f"weights differ: {name}"
    a, b = _tensors(got["optimizer"]), _tensors(ref["optimizer"])
    assert len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b)), "optimizer state differs"
    h, r = got["history"], ref["history"]
    assert h["steps"] == r["steps"] and h["steps"][-1] == MAX_STEPS
    for key in COMPARED:
        assert h[key] == r[key], f"history.{key} differs"


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
    assert ckpt["step"] == MAX_STEPS and ckpt["model_class"] == "GPT"
    assert ckpt["config"]["block_size"] == 8 and ckpt["train_config"]["max_steps"] == MAX_STEPS


def _wait(proc: subprocess.Popen, ready, what: str, ckpt: Path, timeout: float = 120) -> None:
    """Poll until ready(); meanwhile every checkpoint file that exists must load."""
    end = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the child exited ({proc.returncode}) before {what}"
        assert time.monotonic() < end, f"timed out waiting for {what}"
        if ckpt.exists():
            load_checkpoint(ckpt)  # never half-written, whenever we look
        time.sleep(0.02)


def test_killed_mid_save_killed_mid_step_interrupted_then_resumed_matches(setup):
    """One run stopped three ways in turn, each at a step that is a multiple of neither interval,
    and resumed after each: it must end exactly as the uninterrupted run did."""
    root, script, reference = setup
    ckpt_dir, out, flag = root / "ckpt", root / "out.pt", root / "in_save.flag"
    ckpt = checkpoint_path("run", ckpt_dir)

    # 1. SIGKILL in the middle of writing the checkpoint of step 16 (after its temporary file is full)
    proc = subprocess.Popen([sys.executable, str(script), str(ckpt_dir), str(out)],
                            env=_env(**{PAUSE_VAR: f"16:{flag}"}))
    try:
        _wait(proc, flag.exists, "the save of step 16 to pause", ckpt)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert len(list(ckpt_dir.glob(".run.pt.*.tmp"))) == 1, "the killed save leaves its temporary file"
    assert load_checkpoint(ckpt)["step"] == 12, "the last complete checkpoint is the one before"

    # 2. resumed, then SIGKILL in the middle of step 23: back to the periodic checkpoint of step 20
    _run(script, ckpt_dir, out, expect=-signal.SIGKILL, CHILD_SIGNAL_AT="SIGKILL:23")
    assert load_checkpoint(ckpt)["step"] == 20 and not out.exists()
    assert list(ckpt_dir.iterdir()) == [ckpt], "stale temporary files must be cleaned up"

    # 3. resumed, then SIGINT (Ctrl-C, a notebook's stop button) during step 33: the step finishes
    #    and a checkpoint of that very step, 34, is saved
    said = _run(script, ckpt_dir, out, expect=3, CHILD_SIGNAL_AT="SIGINT:33")
    assert load_checkpoint(ckpt)["step"] == 34
    assert "stopped at step 34" in said and "run the cell again" in said

    # 4. resumed to the end
    _run(script, ckpt_dir, out)
    _assert_same(out, reference)
