"""Notebook 09's real-LLM stage measured: SFT and DPO of SmolLM2-135M-Instruct with LoRA, offline (issue 24).

    MINILM_DATA_DIR=../shared/data MINILM_PRESET=cpu python benchmarks/align_llm.py [--json out.json]
    MINILM_DATA_DIR=../shared/data MINILM_PRESET=cpu python benchmarks/align_llm.py --sweep dpo_lr=3e-4,1e-3
    ... --only dpo --set dpo_pairs=935 --set dpo_steps=117 --sweep dpo_lora_layers=None,15   (validation only)

Data: Raschka's chapter 7 items (`instruct`), his split (935 train / 110 test / 55 val). Settings: the preset's
row of minilm.recipes.ALIGN_LLM (minilm.align.instruct.run_llm_sft / run_llm_dpo, the functions notebook 09 calls).

The protocol, fixed before the test items were read:
- `--sweep name=v1,v2,...` trains with each value and prints validation figures only (no test item is read):
  the SFT's masked validation loss and exact match on the validation items with short answers, the DPO's
  validation reward margin and preference accuracy. The recipe's values come from these runs.
- the plain run (no --sweep) chooses nothing: it trains the recipe once and reads the test items once, at
  the end: SFT's masked loss on the test answers and exact match on the test items whose answer has at most
  3 words, before and after; DPO's reward margin and preference accuracy on the test pairs (the reference:
  the model before DPO). Each beside its target (issue 24: DPO margin >= 1.0 and accuracy >= 90 % on
  held-out pairs, within 10 minutes on the cpu preset), with each stage's wall time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch

from minilm.align.dpo import dpo_metrics, reference_logprobs
from minilm.align.instruct import (
    exact_match,
    instruction_items,
    llm_recipe,
    masked_val_loss,
    pad_id,
    preference_pairs,
    run_llm_dpo,
    run_llm_sft,
    sft_rows,
    short_answer_items,
    split_items,
)
from minilm.models.llama import load_smollm2
from minilm.presets import preset as active_preset
from minilm.runtime import configure_threads

TARGETS = {"margin": 1.0, "accuracy": 0.90, "dpo_seconds": 600.0}


def fresh(r):
    """SmolLM2 as the recipe cuts it (a deep copy of the process's loaded model after the first call)."""
    model, tok = load_smollm2(n_layer=r.n_layer)
    return model.eval(), tok


def sft_figures(model, tok, items, split: str, r) -> dict:
    rows = sft_rows(tok, items[split][:getattr(r, f"n_{split}")], r.block_size)
    short = short_answer_items(items[split][:getattr(r, f"n_{split}")])
    em, answers = exact_match(model, tok, short)
    return {"masked_loss": masked_val_loss(model, rows, pad_id(tok)), "exact_match": em, "n_short": len(short),
            "answers": answers}


def dpo_figures(model, tok, items, split: str, r, ref) -> dict:
    pairs = preference_pairs(tok, items[split][:getattr(r, f"n_{split}")])
    return dpo_metrics(model, pairs, ref, r.dpo_beta, pad_id(tok), next(model.parameters()).device, r.dpo_batch)


def reference(model, tok, items, split: str, r):
    pairs = preference_pairs(tok, items[split][:getattr(r, f"n_{split}")])
    return reference_logprobs(model, pairs, pad_id(tok), next(model.parameters()).device, r.dpo_batch)


def run(r, read_test: bool) -> dict:
    items = split_items(instruction_items(preference=True))
    splits = ("val", "test") if read_test else ("val",)
    out: dict = {"recipe": dataclasses.asdict(r)}
    t0 = time.perf_counter()
    model, tok = fresh(r)
    out["load_seconds"] = time.perf_counter() - t0
    if r.sft_steps > 0:
        before = {s: sft_figures(model, tok, items, s, r) for s in splits}
        hist, info = run_llm_sft(model, tok, items, r, progress=False)
        after = {s: sft_figures(model, tok, items, s, r) for s in splits}
        out["sft"] = {"before": before, "after": after, "seconds": info["seconds"], "cached": info["cached"],
                      "history": hist}
    if r.dpo_steps > 0:
        model, tok = fresh(r)
        refs = {s: reference(model, tok, items, s, r) for s in splits}  # the model before DPO
        t0 = time.perf_counter()
        hist, info = run_llm_dpo(model, tok, items, r, progress=False)
        out["dpo"] = {s: dpo_figures(model, tok, items, s, r, refs[s]) for s in splits}
        out["dpo"].update(seconds=info["seconds"], cached=info["cached"], wall=time.perf_counter() - t0,
                          history=hist)
    return out


def report(out: dict) -> None:
    if "sft" in out:
        s = out["sft"]
        print(f"SFT ({s['seconds']:.0f} s{', cached' if s['cached'] else ''}):")
        for split in s["before"]:
            b, a = s["before"][split], s["after"][split]
            print(f"  {split:<4} masked loss {b['masked_loss']:.3f} -> {a['masked_loss']:.3f}   exact match on the "
                  f"{b['n_short']} short answers {b['exact_match']:.0%} -> {a['exact_match']:.0%}")
    if "dpo" in out:
        d = out["dpo"]
        print(f"DPO ({d['seconds']:.0f} s{', cached' if d['cached'] else ''}; target <= {TARGETS['dpo_seconds']:.0f} s):")
        for split in ("val", "test"):
            if split in d:
                m = d[split]
                ok = m["margin"] >= TARGETS["margin"] and m["accuracy"] >= TARGETS["accuracy"]
                print(f"  {split:<4} reward margin {m['margin']:.2f} (target >= {TARGETS['margin']})   preference "
                      f"accuracy {m['accuracy']:.0%} (target >= {TARGETS['accuracy']:.0%})   "
                      f"{'met' if ok else 'NOT met'}")


def value(r, name: str, text: str):
    """`text` as the type of the recipe's field `name`: "None", a bool ("true"/"false"), an int or a float."""
    if not hasattr(r, name):
        raise SystemExit(f"unknown ALIGN_LLM setting {name!r}; the settings: {', '.join(r.__dict__)}")
    if text == "None":
        return None
    if isinstance(getattr(r, name), bool):
        if text.lower() not in ("true", "false"):
            raise SystemExit(f"{name}={text}: give true or false")
        return text.lower() == "true"
    return float(text) if any(c in text for c in ".e") else int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", help="name=v1,v2 of an ALIGN_LLM setting: validation figures only")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=V",
                        help="with --sweep: hold another setting at V in every run of the sweep (repeatable)")
    parser.add_argument("--only", choices=("sft", "dpo"), help="run one stage")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    configure_threads()
    r = llm_recipe()
    if args.only == "sft":
        r = dataclasses.replace(r, dpo_steps=0)
    elif args.only == "dpo":
        r = dataclasses.replace(r, sft_steps=0)
    if args.set and not args.sweep:
        raise SystemExit("--set changes the recipe: use it with --sweep (validation only); the plain run reads "
                         "the test items with the recipe as minilm.recipes.ALIGN_LLM states it")
    for held in args.set:
        name, v = held.split("=")
        r = dataclasses.replace(r, **{name: value(r, name, v)})
    print(f"preset {active_preset().name}, {torch.get_num_threads()} threads: {r}")
    results = []
    if args.sweep:
        name, values = args.sweep.split("=")
        for v in values.split(","):
            rv = dataclasses.replace(r, **{name: value(r, name, v)})
            print(f"\n{name} = {v} (validation only)")
            out = run(rv, read_test=False)
            report(out)
            results.append(out)
    else:
        out = run(r, read_test=True)
        print(f"\nload {out['load_seconds']:.0f} s; the test items read once, below")
        report(out)
        results.append(out)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
