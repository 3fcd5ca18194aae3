"""The GPT benchmark: speed, quality and memory against nanoGPT's figures (issue 5).

    MINILM_DATA_DIR=../shared/data python benchmarks/gpt.py              # all three parts
    MINILM_DATA_DIR=../shared/data python benchmarks/gpt.py --quick      # sanity run, ~1 min
    MINILM_DATA_DIR=../shared/data python benchmarks/gpt.py --only cpu   # or baby, gpu

Parts:
- baby: nanoGPT's README "baby GPT" CPU recipe (4 layers, 4 heads, 128 dims, block 64, batch 12,
  2,000 iterations, lr 1e-3 cosine to 1e-4, warmup 100, no dropout, no biases) through minilm's
  model and loop; prints ms/iter, tokens/s and MFU against an fp32 matmul peak measured here.
  Reference (2-core CPU): val 1.8857 in ~89 s, 40 ms/iter, ~33% of ~300 GFLOP/s.
- cpu: minilm's cpu preset (minilm.training.zoo.recipe_for("cpu")); target val <= 1.80 in ~90 s on 2
  cores, peak RSS < 2 GB.
- gpu: minilm's gpu preset (bf16 autocast, fused AdamW, torch.compile unless --no-compile);
  target val <= 1.47; prints time-to-1.47, MFU against the GPU's datasheet peak (PEAK_FLOPS) and
  against a bf16 matmul peak measured here, and peak GPU memory (< 8 GB). Prints "no GPU:
  skipped" where there is none. With --tiny it runs the smoke recipe for 20 steps on whatever
  device there is (a CPU too): benchmarks/gpu.sh --tiny uses it to prove the script runs.
  Interrupted (SIGINT: Ctrl-C, or `timeout -s INT` in gpu.sh), it reports what it measured so far.
--json PATH also writes the gpu part's figures to PATH.
Timings are only comparable with the references on a quiet machine of the same kind.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from minilm.data.batching import batch_fn, char_data
from minilm.models.gpt import GPT, GPTConfig, flops_per_token
from minilm.runtime import describe_device, precision_for
from minilm.training import zoo
from minilm.training.checkpoint import checkpoint_path, load_checkpoint
from minilm.training.loop import History, estimate_loss
from minilm.training.optim import compile_supported

# Dense (no 2:4 sparsity) bf16/fp16 tensor-core peaks in FLOP/s from NVIDIA's datasheets, matched
# against torch.cuda.get_device_name(), first match wins. The datasheets print "with sparsity" figures
# for Ampere and later: halved here. H100/H200: "H100 Tensor Core GPU" and "H200" datasheets, SXM
# (1,979 TFLOPS bf16 with sparsity); H100 PCIe 1,513. A100: "A100 Tensor Core GPU" datasheet, 312
# TFLOPS bf16 dense. L4: "L4 Tensor Core GPU" datasheet, 242 with sparsity. T4: "T4 Tensor Core
# GPU" datasheet, 65 TFLOPS fp16 (T4 has no bf16: minilm runs it in fp16). V100: 125 (SXM2).
PEAK_FLOPS = (("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("A100", 312e12),
              ("L4", 121e12), ("T4", 65e12), ("V100", 125e12))


def spec_peak(device_name: str) -> float | None:
    """The datasheet's dense bf16/fp16 FLOP/s of a GPU by name (PEAK_FLOPS), None if it is not listed."""
    return next((flops for key, flops in PEAK_FLOPS  # whole words: "L4" is not "L40S"
                 if re.search(rf"(?<![A-Za-z0-9]){key}(?![A-Za-z0-9])", device_name)), None)


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, seconds: float = 2.0) -> float:
    """Best FLOP/s of an (n, n) @ (n, n) matmul over a few timed repeats."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):
        a @ b
    sync()
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        reps = 10
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync()
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t))
    return best


def rss_gb() -> float:
    """Peak resident memory of this process so far, in GB (ru_maxrss is KiB on Linux, B on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1e9 if sys.platform == "darwin" else 1e6)


def row(name: str, ours: str, ref: str, ok: bool | None = None) -> None:
    mark = "" if ok is None else ("  OK" if ok else "  MISSED")
    print(f"  {name:<26} {ours:>18}   reference {ref}{mark}")


def run(recipe: zoo.Recipe, data, device: torch.device, steps: int, compile: bool | None,
        eval_interval: int, eval_iters: int, final_iters: int = 200, interruptible: bool = False):
    """Train a fresh GPT by recipe; returns (model, history, wall seconds including evaluation).

    The last val loss of the history is replaced by a `final_iters`-batch estimate (the run's own
    estimates average eval_iters batches, as nanoGPT's do, and wobble by about 0.01). With
    `interruptible`, the run checkpoints into a temporary folder, so that SIGINT stops it after a
    step (the loop saves, then raises KeyboardInterrupt); the model and history returned are then
    the checkpoint's, and the history's last step says where it stopped.
    """
    _, train_data, val_data = data
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        named = {"run_name": "bench", "checkpoint_dir": tmp} if interruptible else {}
        try:
            model, history = zoo.train_gpt(
                recipe, train_data, val_data, device, compile=compile, progress=False,
                max_steps=steps, eval_interval=eval_interval, eval_iters=eval_iters,
                lr_decay_steps=min(steps, recipe.train.lr_decay_steps or steps), **named,
            )
        except KeyboardInterrupt:
            ckpt = load_checkpoint(checkpoint_path("bench", tmp))
            print(f"  interrupted at step {ckpt['step']}: figures so far")
            model = GPT(recipe.model)
            model.load_state_dict(ckpt["model"])
            model.to(device)
            history = History.from_dict(ckpt["history"])
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t
    get, _ = batch_fn(data[1], data[2], recipe.model.block_size, recipe.batch_size, device,
                          seed=0)
    history.val_loss[-1] = estimate_loss(model, get, final_iters, device, splits=("val",))["val"]
    return model, history, wall


def throughput(model, history, recipe: zoo.Recipe, peak: float) -> tuple[float, float, float]:
    """(ms per iteration, tokens/s, MFU) over the training time (evaluation excluded)."""
    steps = history.steps[-1]
    tokens_per_step = recipe.batch_size * recipe.model.block_size
    ms = 1000 * history.wall_time[-1] / max(steps, 1)
    tps = tokens_per_step * 1000 / ms
    mfu = flops_per_token(recipe.model, model.num_params()) * tps / peak
    return ms, tps, mfu


def baby(data, quick: bool) -> None:
    device = torch.device("cpu")
    peak = matmul_peak(device, torch.float32, 1024)
    print(f"\n[baby] nanoGPT's baby GPT recipe on {describe_device(device)}")
    print(f"  fp32 matmul peak measured here: {peak / 1e9:.0f} GFLOP/s (reference CPU ~300)")
    model_cfg = GPTConfig(block_size=64, vocab_size=data[0].vocab_size, n_layer=4, n_head=4,
                          n_embd=128, dropout=0.0, bias=False)
    base = zoo.recipe_for("cpu", data[0].vocab_size).train
    train_cfg = replace(base, max_steps=2000, learning_rate=1e-3, min_lr=1e-4, warmup_steps=100,
                        lr_decay_steps=2000, weight_decay=0.1, betas=(0.9, 0.99), grad_clip=1.0)
    recipe = zoo.Recipe(model_cfg, train_cfg, batch_size=12)
    steps = 200 if quick else 2000
    model, history, wall = run(recipe, data, device, steps, False, 250 if not quick else 100, 20)
    ms, tps, mfu = throughput(model, history, recipe, peak)
    row("ms / iteration", f"{ms:.1f}", "40 (target: no more)", ms <= 40)
    row("tokens / s", f"{tps:,.0f}", "19,200")
    row("MFU (of measured peak)", f"{100 * mfu:.0f}%", "~33%")
    if not quick:
        row("val loss at 2,000 iters", f"{history.val_loss[-1]:.4f}", "1.8857")
        row("wall time", f"{wall:.0f} s", "~89 s")
    row("peak RSS", f"{rss_gb():.2f} GB", "-")


def cpu(data, quick: bool) -> None:
    device = torch.device("cpu")
    recipe = zoo.recipe_for("cpu", data[0].vocab_size)
    steps = recipe.train.max_steps // (10 if quick else 1)
    m = recipe.model
    print(f"\n[cpu] minilm's cpu preset: {m.n_layer} layers, {m.n_head} heads, {m.n_embd} dims, "
          f"block {m.block_size}, batch {recipe.batch_size}, {steps} steps, "
          f"lr {recipe.train.learning_rate:g}")
    model, history, wall = run(recipe, data, device, steps, False, recipe.train.eval_interval,
                               recipe.train.eval_iters)
    peak = matmul_peak(device, torch.float32, 1024)
    ms, tps, mfu = throughput(model, history, recipe, peak)
    print(f"  {model.num_params():,} parameters; val loss by step: "
          + ", ".join(f"{s}: {v:.3f}" for s, v in zip(history.steps, history.val_loss)))
    if not quick:
        row("val loss", f"{history.val_loss[-1]:.4f}", "<= 1.80 (baby GPT: 1.8857)",
            history.val_loss[-1] <= 1.80)
    row("wall time (incl. eval)", f"{wall:.0f} s", "~90 s (baby GPT: 89 s)", None)
    row("ms / iteration", f"{ms:.1f}", "-")
    row("tokens / s", f"{tps:,.0f}", "-")
    row("MFU (of measured peak)", f"{100 * mfu:.0f}%", f"peak {peak / 1e9:.0f} GFLOP/s")
    row("peak RSS", f"{rss_gb():.2f} GB", "< 2 GB", rss_gb() < 2.0)


def gpu(data, quick: bool, compile: bool | None, tiny: bool = False) -> dict:
    """The gpu preset's figures (printed, and returned for --json); with `tiny`, the smoke recipe anywhere."""
    print("\n[gpu] minilm's gpu preset" + (" (--tiny: the smoke recipe, 20 steps)" if tiny else ""))
    if not torch.cuda.is_available() and not tiny:
        print("  no GPU: skipped")
        return {"skipped": "no GPU"}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    policy = precision_for(device)
    peak = matmul_peak(device, policy.dtype or torch.float32, 256 if tiny else 8192, 0.2 if tiny else 2.0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else describe_device(device)
    sheet = spec_peak(name) if device.type == "cuda" else None
    compile = compile_supported(device) if compile is None else compile
    recipe = zoo.recipe_for("smoke" if tiny else "gpu", data[0].vocab_size)
    steps = 20 if tiny else 500 if quick else recipe.train.max_steps
    m = recipe.model
    print(f"  {describe_device(device)}, autocast {policy.name}, fused AdamW, compile={compile}; "
          f"{m.n_layer} layers, {m.n_head} heads, {m.n_embd} dims, block {m.block_size}, "
          f"batch {recipe.batch_size}, {steps} steps")
    print(f"  {policy.name} matmul peak measured here: {peak / 1e12:.1f} TFLOP/s; datasheet: "
          + (f"{sheet / 1e12:.0f} TFLOP/s" if sheet else "not in PEAK_FLOPS"))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    model, history, wall = run(recipe, data, device, steps, compile, 10 if tiny else 100, 2 if tiny else 50,
                               final_iters=4 if tiny else 200, interruptible=True)
    ms, tps, mfu = throughput(model, history, recipe, peak)
    mfu_sheet = mfu * peak / sheet if sheet else None
    hit = next((t for t, v in zip(history.wall_time, history.val_loss) if v <= 1.47), None)
    print("  val loss by step: " + ", ".join(
        f"{s}: {v:.3f}" for s, v in zip(history.steps, history.val_loss) if s % 500 == 0 or tiny))
    done = history.steps[-1] == steps
    row("val loss", f"{history.val_loss[-1]:.4f}", "<= 1.47 (nanoGPT A100: 1.4697)",
        None if quick or tiny or not done else history.val_loss[-1] <= 1.47)
    row("time to val 1.47", "not reached" if hit is None else f"{hit:.0f} s (train)",
        "~3 min on an A100 (nanoGPT)")
    row("wall time (incl. eval)", f"{wall:.0f} s", "-")
    row("ms / iteration", f"{ms:.1f}", "-")
    row("tokens / s", f"{tps:,.0f}", "-")
    row("MFU (of datasheet peak)", "-" if mfu_sheet is None else f"{100 * mfu_sheet:.0f}%", "-")
    row("MFU (of measured peak)", f"{100 * mfu:.0f}%", "-")
    mem = torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else None
    if mem is not None:
        row("peak GPU memory", f"{mem:.2f} GB", "< 8 GB", mem < 8)
    return {"device": name, "precision": policy.name, "compile": compile, "tiny": tiny,
            "steps_planned": steps, "steps_run": history.steps[-1], "final_val_loss": history.val_loss[-1],
            "time_to_val_1.47_s": hit, "wall_s": wall, "ms_per_iter": ms, "tokens_per_s": tps,
            "measured_peak_flops": peak, "datasheet_peak_flops": sheet, "mfu_datasheet": mfu_sheet,
            "mfu_measured": mfu, "peak_gpu_memory_gb": mem,
            "history": {"steps": history.steps, "val_loss": history.val_loss, "wall_time": history.wall_time},
            "targets": {"val_loss": 1.47, "peak_gpu_memory_gb": 8,
                        "nanogpt": "val 1.4697 in about 3 minutes on an A100"}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short sanity run of each part")
    parser.add_argument("--only", choices=["baby", "cpu", "gpu"], help="run one part")
    parser.add_argument("--no-compile", action="store_true", help="gpu part without torch.compile")
    parser.add_argument("--tiny", action="store_true", help="gpu part: smoke recipe, 20 steps, any device")
    parser.add_argument("--json", type=Path, help="write the gpu part's figures to this JSON file")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    data = char_data("tinyshakespeare")
    parts = [args.only] if args.only else ["baby", "cpu", "gpu"]
    for part in parts:
        if part == "baby":
            baby(data, args.quick)
        elif part == "cpu":
            cpu(data, args.quick)
        else:
            figures = gpu(data, args.quick, False if args.no_compile else None, args.tiny)
            if args.json:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(figures, indent=1) + "\n")
                print(f"  figures written to {args.json}")
    print("\nTimings are comparable with the references only on a quiet machine of the same kind.")


if __name__ == "__main__":
    main()
