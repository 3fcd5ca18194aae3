"""The GPT benchmark: speed, quality and memory against nanoGPT's figures (issue 5).

    MINILM_DATA_DIR=../shared/data python benchmarks/gpt.py              # all three parts
    MINILM_DATA_DIR=../shared/data python benchmarks/gpt.py --quick      # sanity run, ~1 min
    MINILM_DATA_DIR=../shared/data python benchmarks/gpt.py --only cpu   # or baby, gpu

Parts:
- baby: nanoGPT's README "baby GPT" CPU recipe (4 layers, 4 heads, 128 dims, block 64, batch 12,
  2,000 iterations, lr 1e-3 cosine to 1e-4, warmup 100, no dropout, no biases) through minilm's
  model and loop; prints ms/iter, tokens/s and MFU against an fp32 matmul peak measured here.
  Reference (2-core CPU): val 1.8857 in ~89 s, 40 ms/iter, ~33% of ~300 GFLOP/s.
- cpu: minilm's cpu preset (minilm.zoo.recipe_for("cpu")); target val <= 1.80 in ~90 s on 2
  cores, peak RSS < 2 GB.
- gpu: minilm's gpu preset (bf16 autocast, fused AdamW, torch.compile unless --no-compile);
  target val <= 1.47; prints time-to-1.47, MFU against a bf16 matmul peak measured here, and
  peak GPU memory (< 8 GB). Prints "no GPU: skipped" where there is none.
Timings are only comparable with the references on a quiet machine of the same kind.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from dataclasses import replace

import torch

from minilm import zoo
from minilm.batching import batch_fn, char_data
from minilm.models.gpt import GPTConfig, flops_per_token
from minilm.optim import compile_supported
from minilm.runtime import describe_device, precision_for
from minilm.training import estimate_loss


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
        eval_interval: int, eval_iters: int):
    """Train a fresh GPT by recipe; returns (model, history, wall seconds including evaluation).

    The last val loss of the history is replaced by a 200-batch estimate (the run's own
    estimates average eval_iters batches, as nanoGPT's do, and wobble by about 0.01).
    """
    _, train_data, val_data = data
    t = time.perf_counter()
    model, history = zoo.train_gpt(
        recipe, train_data, val_data, device, compile=compile, progress=False,
        max_steps=steps, eval_interval=eval_interval, eval_iters=eval_iters,
        lr_decay_steps=min(steps, recipe.train.lr_decay_steps or steps),
    )
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - t
    get, _ = batch_fn(data[1], data[2], recipe.model.block_size, recipe.batch_size, device,
                          seed=0)
    history.val_loss[-1] = estimate_loss(model, get, 200, device, splits=("val",))["val"]
    return model, history, wall


def throughput(model, history, recipe: zoo.Recipe, peak: float) -> tuple[float, float, float]:
    """(ms per iteration, tokens/s, MFU) over the training time (evaluation excluded)."""
    steps = history.steps[-1]
    tokens_per_step = recipe.batch_size * recipe.model.block_size
    ms = 1000 * history.wall_time[-1] / steps
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


def gpu(data, quick: bool, compile: bool | None) -> None:
    print("\n[gpu] minilm's gpu preset")
    if not torch.cuda.is_available():
        print("  no GPU: skipped")
        return
    device = torch.device("cuda")
    policy = precision_for(device)
    peak = matmul_peak(device, policy.dtype or torch.float32, 8192)
    compile = compile_supported(device) if compile is None else compile
    recipe = zoo.recipe_for("gpu", data[0].vocab_size)
    steps = 500 if quick else recipe.train.max_steps
    m = recipe.model
    print(f"  {describe_device(device)}, autocast {policy.name}, fused AdamW, compile={compile}; "
          f"{m.n_layer} layers, {m.n_head} heads, {m.n_embd} dims, block {m.block_size}, "
          f"batch {recipe.batch_size}, {steps} steps")
    print(f"  {policy.name} matmul peak measured here: {peak / 1e12:.0f} TFLOP/s")
    torch.cuda.reset_peak_memory_stats()
    model, history, wall = run(recipe, data, device, steps, compile, 100, 50)
    ms, tps, mfu = throughput(model, history, recipe, peak)
    hit = next((t for t, v in zip(history.wall_time, history.val_loss) if v <= 1.47), None)
    print("  val loss by step: " + ", ".join(
        f"{s}: {v:.3f}" for s, v in zip(history.steps, history.val_loss) if s % 500 == 0))
    row("val loss", f"{history.val_loss[-1]:.4f}", "<= 1.47 (nanoGPT A100: 1.4697)",
        None if quick else history.val_loss[-1] <= 1.47)
    row("time to val 1.47", "not reached" if hit is None else f"{hit:.0f} s (train)",
        "~3 min on an A100 (nanoGPT)")
    row("wall time (incl. eval)", f"{wall:.0f} s", "-")
    row("ms / iteration", f"{ms:.1f}", "-")
    row("tokens / s", f"{tps:,.0f}", "-")
    row("MFU (of measured peak)", f"{100 * mfu:.0f}%", "-")
    mem = torch.cuda.max_memory_allocated() / 1e9
    row("peak GPU memory", f"{mem:.2f} GB", "< 8 GB", mem < 8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short sanity run of each part")
    parser.add_argument("--only", choices=["baby", "cpu", "gpu"], help="run one part")
    parser.add_argument("--no-compile", action="store_true", help="gpu part without torch.compile")
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
            gpu(data, args.quick, False if args.no_compile else None)
    print("\nTimings are comparable with the references only on a quiet machine of the same kind.")


if __name__ == "__main__":
    main()
