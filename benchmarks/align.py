"""Notebook 09's targets (issue 24), measured on the acrostic task with the course's Tang GPT (minilm.align).

    python benchmarks/align.py                       # the cpu preset (or MINILM_PRESET): every figure vs its target
    python benchmarks/align.py --preset smoke        # seconds: a sanity run
    python benchmarks/align.py --sweep sft           # the validation sweeps behind minilm.recipes.ALIGN
    python benchmarks/align.py --sweep dpo --sweep rl --json out.json
    python benchmarks/align.py --sweep rl_steps      # GRPO for longer than the recipe

The protocol: every setting in minilm.recipes.ALIGN was chosen on the validation instructions (the sweeps
print validation figures only); the default run reads the test instructions once per stage, after all
training. "DPO above SFT" and "RL 15 points above SFT" are judged on the paired difference over the same test
instructions with its 95 % interval (minilm.align.pass_gap): met only when the interval lies above 0 (and,
for RL, the difference is at least 15 points); a gap whose interval covers 0 is "no difference measured".
Stages are cached (cache_root()/models/tang-*.pt): a stage's time is the time it took when it was built,
stored with it; pass --fresh to rebuild every stage of this run (a fresh cache folder).
A target not met is printed NOT MET with the measured figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# benchmarks/tokenizers.py would shadow Hugging Face's `tokenizers` package: drop this folder from sys.path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from minilm.align import pass_gap, pass_rate, passes
from minilm.align.pipeline import (
    chat_base,
    plain_val_loss,
    recipe_for,
    run_dpo,
    run_rl,
    run_sft,
    task_splits,
)
from minilm.presets import preset as active_preset

SWEEPS = {  # name -> list of overrides, each run on the validation instructions
    "sft": [{"max_steps": s, "learning_rate": lr} for s in (600, 1500) for lr in (3e-4, 1e-3, 3e-3)]
    + [{"max_steps": s, "random_heads": h} for s in (600, 1000) for h in (0.0, 0.25, 0.5, 1.0)],
    "dpo": [{"lr": lr, "beta": b} for lr in (1e-5, 3e-5, 1e-4) for b in (0.1, 0.5)]
    + [{"lr": lr, "beta": 0.1, "nll": 1.0} for lr in (1e-5, 3e-5, 1e-4)],
    "rl": [{"lr": lr, "kl": kl} for lr in (1e-5, 3e-5, 1e-4) for kl in (0.0, 0.05)],
    "rl_steps": [{"steps": n} for n in (150, 300)],  # the recipe's lr and KL, longer
}


def sweep(name: str, preset: str, device: str) -> list[dict]:
    """Run every setting of one sweep from the recipe's parent stage; validation figures only."""
    r = recipe_for(preset)
    base, tok, val_data = chat_base(preset, device, progress=False)
    splits = task_splits(r)
    sft = run_sft(base, tok, splits, r, device, preset, progress=False)[0] if name != "sft" else None
    rows = []
    for overrides in SWEEPS[name]:
        if name == "sft":
            lr = overrides.get("learning_rate", r.sft.learning_rate)
            model, hist, info = run_sft(base, tok, splits, r, device, preset, progress=False, min_lr=lr / 10,
                                        warmup_steps=max(1, overrides["max_steps"] // 20),
                                        **{"learning_rate": lr, "random_heads": 0.0, **overrides})
            extra = {"masked_val_loss": hist.val_loss[-1]}
        elif name == "dpo":
            model, hist, info = run_dpo(sft, tok, splits, r, device, preset, progress=False, **overrides)
            extra = {"val_margin": hist["val_margin"][-1], "val_accuracy": hist["val_accuracy"][-1]}
        else:
            model, hist, info = run_rl(sft, tok, splits, r, device, preset, progress=False, **overrides)
            extra = {"last_reward": hist["reward"][-1], "last_kl": hist["kl"][-1]}
        row = {"sweep": name, **overrides, "val_pass_rate": pass_rate(model, tok, splits["val"], device)[0],
               "plain_loss": plain_val_loss(model, val_data), "seconds": info["seconds"], **extra}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def run(preset: str, device: str) -> dict:
    """The chain base -> SFT -> DPO, RL with the recipe's settings; test figures read once at the end."""
    r = recipe_for(preset)
    t0 = time.perf_counter()
    base, tok, val_data = chat_base(preset, device, progress=False)
    splits = task_splits(r)
    base_seconds = time.perf_counter() - t0
    sft, _, sft_info = run_sft(base, tok, splits, r, device, preset, progress=False)
    dpo, dpo_hist, dpo_info = run_dpo(sft, tok, splits, r, device, preset, progress=False)
    rl, rl_hist, rl_info = run_rl(sft, tok, splits, r, device, preset, progress=False)
    figures: dict = {"preset": preset, "load_average": os.getloadavg(), "cpus": os.cpu_count(),
                     "n_test": len(splits["test"]), "base_load_seconds": base_seconds,
                     "dpo_val_margin": dpo_hist["val_margin"][-1], "dpo_val_accuracy": dpo_hist["val_accuracy"][-1],
                     "dpo_pairs": dpo_hist["n_pairs"], "dpo_own_pairs": dpo_hist["n_own_pairs"],
                     "rl_reward_first": rl_hist["reward"][0], "rl_reward_last": rl_hist["reward"][-1]}
    for name, model, info in (("base", base, {"seconds": 0.0}), ("sft", sft, sft_info), ("dpo", dpo, dpo_info),
                              ("rl", rl, rl_info)):
        figures[f"{name}_val_pass_rate"] = pass_rate(model, tok, splits["val"], device)[0]
        figures[f"{name}_test_pass_rate"], answers = pass_rate(model, tok, splits["test"], device)
        figures[f"{name}_test_passed"] = passes(answers, splits["test"])
        figures[f"{name}_plain_loss"] = plain_val_loss(model, val_data)
        figures[f"{name}_seconds"] = info["seconds"]
    for name in ("dpo", "rl"):  # against SFT, instruction by instruction (the 95 % interval of the difference)
        figures[f"{name}_minus_sft"] = pass_gap(figures[f"{name}_test_passed"], figures["sft_test_passed"])
    figures["total_seconds"] = time.perf_counter() - t0
    return figures


def report(f: dict) -> None:
    """Every figure beside its target."""
    def line(what: str, value: str, target: str, met: bool | None) -> None:
        status = "" if met is None else ("met" if met else "NOT MET")
        print(f"{what:36s} {value:>14s}   {'target ' + target if met is not None else target:32s} {status}".rstrip())

    print(f"preset {f['preset']}, {f['cpus']} CPUs, load average at the end {f['load_average'][0]:.1f}; "
          f"{f['n_test']} test instructions")
    sft = f["sft_test_pass_rate"]
    line("base: test pass rate", f"{f['base_test_pass_rate']:.1%}", "< 10 %", f["base_test_pass_rate"] < 0.10)
    line("SFT: test pass rate", f"{sft:.1%}", ">= 60 %", sft >= 0.60)
    line("DPO: test pass rate", f"{f['dpo_test_pass_rate']:.1%}", "(the gap below is judged)", None)
    line("RL: test pass rate", f"{f['rl_test_pass_rate']:.1%}", "(the gap below is judged)", None)
    for name, target, least in (("dpo", "> 0, interval above 0", 0.0), ("rl", ">= 15, interval above 0", 0.15)):
        g = f[f"{name}_minus_sft"]
        line(f"{name.upper()} - SFT (points, 95 % interval)",
             f"{100 * g['mean']:+.1f} [{100 * g['lo']:+.1f}, {100 * g['hi']:+.1f}]", target,
             g["verdict"] == "ahead" and g["mean"] >= least)
        line(f"{name.upper()} - SFT", str(g["verdict"]), "(ahead: the interval lies above 0)", None)
    for stage in ("sft", "dpo", "rl"):
        line(f"{stage.upper()}: training time", f"{f[f'{stage}_seconds']:.0f} s", "<= 300 s", f[f"{stage}_seconds"] <= 300)
    for stage in ("base", "sft", "dpo", "rl"):
        line(f"{stage}: validation pass rate", f"{f[f'{stage}_val_pass_rate']:.1%}", "(choices made on it)", None)
        line(f"{stage}: loss on plain poems", f"{f[f'{stage}_plain_loss']:.3f}", "(what alignment costs)", None)
    line("DPO: validation reward margin", f"{f['dpo_val_margin']:.3f}", "(reported)", None)
    line("DPO: validation preference accuracy", f"{f['dpo_val_accuracy']:.1%}", "(reported)", None)
    line("DPO: pairs (own chosen answer)", f"{f['dpo_pairs']} ({f['dpo_own_pairs']})", "(reported)", None)
    line("RL: mean reward first -> last step", f"{f['rl_reward_first']:.3f}->{f['rl_reward_last']:.3f}", "(reported)", None)
    line("this run, all stages", f"{f['total_seconds']:.0f} s", "(cached stages: load time)", None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=None, help="smoke | cpu | gpu (default: MINILM_PRESET or the machine's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sweep", action="append", choices=sorted(SWEEPS), help="run a validation sweep instead")
    parser.add_argument("--fresh", action="store_true", help="rebuild every stage in a fresh cache folder")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    preset = args.preset or active_preset().name
    if args.fresh:
        fresh = tempfile.mkdtemp(prefix="minilm-align-")
        models = Path(os.environ.get("MINILM_CACHE_DIR") or Path.home() / ".cache" / "minilm") / "models"
        os.makedirs(Path(fresh) / "models", exist_ok=True)
        for zoo_model in models.glob("tang-[scg]*-*.pt"):  # keep the pretrained Tang GPTs (notebook 05's)
            if not zoo_model.name.startswith(("tang-sft", "tang-dpo", "tang-rl")):
                os.symlink(zoo_model, Path(fresh) / "models" / zoo_model.name)
        os.environ["MINILM_CACHE_DIR"] = fresh
    if args.sweep:
        out = {name: sweep(name, preset, args.device) for name in args.sweep}
    else:
        out = run(preset, args.device)
        report(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
