"""DistributedDataParallel on the CPU (gloo): `minilm pretrain` in two processes, started as torchrun starts
them (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), against one process.

- Two processes at the same global batch follow the one-process loss trajectory, estimated at every one
  of 20 steps, within TOLERANCE, and end with the same weights within it. Not exactly: each process
  averages its half of the batch and the all-reduce adds the two halves' gradients, where one process
  sums over the whole batch at once; float addition is not associative, so the last bits differ
  (measured: about 1e-7 apart), and Adam carries the difference from step to step.
- A two-process run with dropout (each rank draws its own masks) is SIGKILLed in both processes in the
  middle of a step that is a multiple of neither interval, resumed, interrupted (SIGINT) in rank 1
  alone, resumed again, and ends with exactly (torch.equal) the weights and history of the same run
  uninterrupted: the whole group resumes, every rank with its own RNG states.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from minilm.cli.pretrain import main as pretrain_main
from minilm.data.datasets import load_text
from minilm.data.tokenfile import prepare
from minilm.training.checkpoint import checkpoint_path, load_checkpoint

STEPS, ACCUM, EVAL_EVERY, CKPT_EVERY = 20, 2, 1, 5
# Kill points (KILL_STEP < INT_STEP < STEPS; a step counts from 0): SIGKILL both processes in micro-batch
# KILL_MICRO of step KILL_STEP (back to the checkpoint of step 10), then SIGINT rank 1 alone during step
# INT_STEP: every rank finishes that step, and the checkpoint is of step INT_STEP + 1.
KILL_STEP, KILL_MICRO = 13, 1
INT_STEP = 16
TOLERANCE = 1e-4
TIMEOUT = 300

DRIVER = textwrap.dedent("""
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    from minilm.training import checkpoint
    from minilm.cli import pretrain
    from minilm.data import tokenfile

    argv = sys.argv[1:]
    signal_at = os.environ.get("SIGNAL_AT")  # "SIGKILL:27:0,1": signal ranks 0 and 1 at training draw 27
    if signal_at:
        name, at, ranks = signal_at.split(":")
        out = argv[argv.index("--out") + 1]
        ckpt = checkpoint.checkpoint_path("pretrain", os.path.join(out, "checkpoints"))
        accum = int(argv[argv.index("--grad_accum_steps") + 1])
        draws = [checkpoint.load_checkpoint(ckpt)["step"] * accum if ckpt.exists() else 0]
        mine = os.environ.get("RANK", "0") in ranks.split(",")
        batches = tokenfile.TokenFile.batches

        def hooked_batches(self, *args, **kwargs):
            get, generator = batches(self, *args, **kwargs)

            def get_batch(split):
                if split == "train" and torch.is_grad_enabled():  # a training draw (evaluation: no_grad)
                    if draws[0] == int(at) and mine:
                        os.kill(os.getpid(), getattr(signal, name))
                    draws[0] += 1
                return get(split)
            return get_batch, generator

        tokenfile.TokenFile.batches = hooked_batches
    sys.exit(pretrain.main(argv))
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(script: Path, n: int, argv: list[str], **env: str) -> list[tuple[int, str]]:
    """Run `script argv` in n processes as torchrun starts them; [(returncode, output)] in rank order."""
    port, procs = free_port(), []
    for rank in range(n):
        group = {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(n), "LOCAL_WORLD_SIZE": str(n),
                 "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen([sys.executable, str(script), *argv], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True,
                                      env={**os.environ, "OMP_NUM_THREADS": "1", **group, **env}))
    end, results = time.monotonic() + TIMEOUT, []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=max(1.0, end - time.monotonic()))
            results.append((p.returncode, out))
    finally:
        for p in procs:  # a timeout or an error above: no process outlives the test
            if p.poll() is None:
                p.kill()
                p.wait()
    return results


def ok(results: list[tuple[int, str]]) -> None:
    assert all(code == 0 for code, _ in results), "\n".join(f"[rc {c}]\n{o}" for c, o in results)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    text = root / "text.txt"
    text.write_text(load_text("tinyshakespeare")[:60_000], encoding="utf-8")
    data = prepare(text, "char", root / "data", progress=False)
    script = root / "driver.py"
    script.write_text(DRIVER)
    return root, data, script


def args(data: Path, out: Path, dropout: float) -> list[str]:
    return ["--data", str(data), "--out", str(out), "--preset", "smoke", "--batch_size", "8",
            "--max_steps", str(STEPS), "--grad_accum_steps", str(ACCUM), "--eval_interval", str(EVAL_EVERY),
            "--eval_iters", "2", "--checkpoint_interval", str(CKPT_EVERY), "--dropout", str(dropout),
            "--progress", "false"]


def result(out: Path) -> tuple[dict, dict]:
    model = load_checkpoint(out / "model.pt")["model"]
    return model, json.loads((out / "run.json").read_text())["history"]


def test_two_processes_follow_one_process(setup):
    root, data, script = setup
    assert pretrain_main(args(data, root / "one", 0.0)) == 0  # one process: this one
    both = launch(script, 2, args(data, root / "two", 0.0))
    ok(both)
    assert "over 2 process(es)" in both[0][1] and "over 2 process(es)" not in both[1][1]  # rank 0 logs
    (w1, h1), (w2, h2) = result(root / "one"), result(root / "two")
    assert h1["steps"] == h2["steps"] == list(range(STEPS + 1))
    gaps = [abs(a - b) for key in ("train_loss", "val_loss") for a, b in zip(h1[key], h2[key])]
    print(f"largest gap between the loss trajectories of 1 and 2 processes: {max(gaps):.2e}")
    assert max(gaps) < TOLERANCE
    assert h1["train_loss"][-1] < h1["train_loss"][0] - 0.3  # it learned: the comparison is not vacuous
    assert all(torch.allclose(w1[k], w2[k], atol=TOLERANCE, rtol=0) for k in w1)
    assert [p.name for p in (root / "two" / "checkpoints").iterdir()] == ["pretrain.pt"]  # rank 0 alone


def test_two_processes_killed_interrupted_and_resumed_end_as_uninterrupted(setup):
    root, data, script = setup
    ok(launch(script, 2, args(data, root / "reference", 0.1)))
    out = root / "stopped"
    ckpt = checkpoint_path("pretrain", out / "checkpoints")
    kill = f"SIGKILL:{KILL_STEP * ACCUM + KILL_MICRO}:0,1"
    killed = launch(script, 2, args(data, out, 0.1), SIGNAL_AT=kill)
    assert [code for code, _ in killed] == [-signal.SIGKILL] * 2, killed
    assert load_checkpoint(ckpt)["step"] == KILL_STEP // CKPT_EVERY * CKPT_EVERY and not (out / "model.pt").exists()

    interrupted = launch(script, 2, args(data, out, 0.1), SIGNAL_AT=f"SIGINT:{INT_STEP * ACCUM}:1")
    assert [code for code, _ in interrupted] == [130, 130], interrupted
    assert f"stopped at step {INT_STEP + 1}" in interrupted[1][1]
    saved = load_checkpoint(ckpt)
    assert saved["step"] == INT_STEP + 1 and len(saved["extra"]["rng_per_rank"]) == 2

    ok(launch(script, 2, args(data, out, 0.1)))
    (weights, history), (ref_weights, ref_history) = result(out), result(root / "reference")
    for name, tensor in ref_weights.items():
        assert torch.equal(weights[name], tensor), f"weights differ: {name}"
    for key in ("steps", "train_loss", "val_loss", "lr", "step_loss"):
        assert history[key] == ref_history[key], key
