"""GPT-2-style against the modern block (RMSNorm, rotary positions, SwiGLU, grouped-query attention) at the
course's scale: the same data, recipe, step budget and (nearly) the same parameter count (issue 23).

    MINILM_DATA_DIR=../shared/data MINILM_PRESET=cpu python benchmarks/modern.py [--seeds 3] [--json out.json]

Arms, each trained from scratch by the zoo's recipe of the preset (minilm.recipes.GPT, "medium"), with
`--seeds` seeds (a seed sets the initial weights and the batch order; seed s is paired across arms):
- `gpt2`: GPTConfig as the course trains it (LayerNorm, learned positions, GELU MLP of width 4C, biases)
- `modern`: GPTConfig.modern: RMSNorm, rotary positions, SwiGLU of width 8C/3 (the same weights as 4C GELU),
  no biases, every head its own keys and values
- `modern-gqa`: the same with n_kv_head = n_head / 2 (grouped-query attention)

Printed: parameters, the validation loss (the mean over 32 fixed windows of the val split: the same windows
for every run) as a mean over seeds with a 95 % t-interval, the paired difference from `gpt2` with its
interval, the training seconds, and the KV-cache bytes per token. The protocol was fixed before the run:
the arms run in a rotating order per seed, after an untimed warm-up run. An arm is "better" only when the paired difference's interval lies below 0; otherwise "no difference
measured". No choice is made from these numbers (there is no test split here: this is a measurement of the
architectures, not a tuning run).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch

from minilm.data import char_data
from minilm.generation.measure import val_loss
from minilm.models.gpt import GPTConfig
from minilm.presets import preset as active_preset
from minilm.runtime import configure_threads
from minilm.training.zoo import Recipe, recipe_for, train_gpt

T_95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def arms(base: GPTConfig) -> dict[str, GPTConfig]:
    """The three configs compared, all with base's sizes."""
    sizes = {k: getattr(base, k) for k in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd", "dropout")}
    kv = max(1, base.n_head // 2)
    return {"gpt2": base, "modern": GPTConfig.modern(**sizes),
            "modern-gqa": GPTConfig.modern(**sizes, n_kv_head=kv)}


def interval(xs: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95 % t-interval); half-width nan for one value."""
    m = statistics.fmean(xs)
    if len(xs) < 2:
        return m, float("nan")
    return m, T_95.get(len(xs) - 1, 1.96) * statistics.stdev(xs) / len(xs) ** 0.5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per arm (paired across arms)")
    parser.add_argument("--steps", type=int, help="training steps (default: the preset's recipe)")
    parser.add_argument("--json", help="write every run's figures here")
    args = parser.parse_args(argv)
    P = active_preset()
    configure_threads()  # what train_gpt would pick, before the header prints the count
    tok, train_data, val_data = char_data("tinyshakespeare")
    base = recipe_for(P.name, tok.vocab_size)
    if args.steps:
        base = Recipe(base.model, replace(base.train, max_steps=args.steps), base.batch_size)
    configs = arms(base.model)
    print(f"preset {P.name}: {base.train.max_steps} steps, batch {base.batch_size}, block {base.model.block_size}, "
          f"{args.seeds} seeds per arm, {torch.get_num_threads()} threads")
    runs: dict[str, list[dict]] = {name: [] for name in configs}
    warm = Recipe(base.model, replace(base.train, max_steps=min(20, base.train.max_steps)), base.batch_size)
    train_gpt(warm, train_data, val_data, "cpu", compile=False, progress=False)  # untimed: first-call costs
    names = list(configs)
    for seed in range(args.seeds):
        for name in names[seed % 3:] + names[:seed % 3]:  # each arm first in turn: no arm always runs cold
            config = configs[name]
            recipe = Recipe(config, base.train, base.batch_size)
            t0 = time.perf_counter()
            model, _ = train_gpt(recipe, train_data, val_data, "cpu", compile=False, progress=False,
                                       seed=1337 + seed)
            seconds = time.perf_counter() - t0
            with torch.no_grad():
                loss = val_loss(model.eval(), val_data, n_batches=32, batch_size=16, seed=0)
            cache = model.new_kv_cache(1)
            row = {"seed": seed, "val_loss": loss, "seconds": seconds, "params": model.num_params(),
                   "kv_bytes_per_token": cache.bytes_per_token(), "config": asdict(config)}
            runs[name].append(row)
            print(f"  seed {seed} {name:<11} val {loss:.4f}  {seconds:6.1f} s", flush=True)
    print()
    print(f"{'arm':<11} {'params':>9} {'val loss (95% CI)':>20} {'paired diff vs gpt2':>24} {'train s':>8} "
          f"{'KV B/token':>10}  verdict")
    summary = {}
    for name, rows in runs.items():
        m, h = interval([r["val_loss"] for r in rows])
        d, dh = interval([r["val_loss"] - g["val_loss"] for r, g in zip(rows, runs["gpt2"])])
        secs = statistics.fmean(r["seconds"] for r in rows)
        if name == "gpt2":
            verdict, diff = "(the control)", ""
        elif not math.isnan(dh) and d + dh < 0:
            verdict, diff = "lower loss than gpt2", f"{d:+.4f} +/- {dh:.4f}"
        elif not math.isnan(dh) and d - dh > 0:
            verdict, diff = "higher loss than gpt2", f"{d:+.4f} +/- {dh:.4f}"
        else:
            verdict, diff = "no difference measured", f"{d:+.4f} +/- {dh:.4f}"
        print(f"{name:<11} {rows[0]['params']:>9,} {m:>11.4f} +/- {h:.4f} {diff:>24} {secs:>8.1f} "
              f"{rows[0]['kv_bytes_per_token']:>10,}  {verdict}")
        summary[name] = {"val_loss_mean": m, "val_loss_ci95": h, "paired_diff": d, "paired_diff_ci95": dh,
                         "seconds_mean": secs, "verdict": verdict}
    mha, gqa = runs["modern"][0]["kv_bytes_per_token"], runs["modern-gqa"][0]["kv_bytes_per_token"]
    print(f"\ngrouped-query attention: the KV cache takes {gqa / mha:.2f}x the bytes of full multi-head attention "
          f"({gqa:,} against {mha:,} bytes per token)")
    if args.json:
        Path(args.json).write_text(json.dumps({"preset": P.name, "runs": runs, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
