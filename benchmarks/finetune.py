"""Fine-tuning targets of notebook 07 (issue 11), measured on rt-polarity's fixed split (minilm.finetune).

    python benchmarks/finetune.py            # the cpu preset (or MINILM_PRESET), about 30 minutes on 2 quiet cores
    python benchmarks/finetune.py --quick    # the smoke recipe on a few hundred examples: a sanity run
    python benchmarks/finetune.py --json out.json

Targets and references, each printed beside the figure measured in this run:
- the GPT pretrained on the review text (GPT-1's recipe, small) then fine-tuned: >= 75 % test accuracy
  (Pang and Lee 2005: about 77 % for Naive Bayes / SVM on this data; Kim 2014's CNN from scratch
  about 76 %), and above its from-scratch twin at 1,000 labels (the mean over seeds of the paired gap);
- LoRA on that GPT: within 2 points of the full fine-tune with <= 5 % of its trainable parameters (and,
  to show where the work is done, the same LoRA without its adapter on the token embedding);
- the offline MiniLM encoder (22M parameters, pretrained on a billion sentence pairs): frozen + a
  linear head, and LoRA on its attention: test accuracy, trainable parameters, wall time.
Hyperparameters come from minilm.finetune's recipes, chosen on the val split; test is read once.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

# `python benchmarks/finetune.py` puts benchmarks/ first on sys.path, where benchmarks/tokenizers.py would
# shadow Hugging Face's `tokenizers` package (transformers imports it): drop that entry.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch

from minilm.finetune import (
    GPTClassifier,
    LinearProbe,
    Split,
    accuracy,
    confusion_matrix,
    encode_for,
    encode_texts,
    finetune,
    finetune_config,
    finetune_recipe,
    fresh_twin,
    predict,
    prepare,
    review_gpt,
    rt_polarity_split,
    split_tensors,
    subsample,
)
from minilm.finetune.encoder import minilm_classifier
from minilm.finetune.lora import count_parameters
from minilm.models.hub import PretrainedUnavailable
from minilm.presets import preset as active_preset

LABEL_COUNTS = (100, 1000, None)  # None: every training label
NO_EMBEDDING_PATTERN = r"c_attn|c_proj|c_fc"  # LoRA on every projection but not on the token embedding


def _cap(split: dict[str, Split], n: int | None) -> dict[str, Split]:
    return split if n is None else {k: subsample(v, min(n, len(v)), seed=1) for k, v in split.items()}


def _mark(ok: bool) -> str:
    return "  ok" if ok else "  NOT MET"


def _gap_row(pairs: list[tuple[dict, dict]]) -> dict:
    """One row of the gap table from (from-scratch run, pretrained run) pairs, one pair per seed: the first
    seed's runs, every seed's accuracies, their means and the spread of the paired test gap."""
    seeds = [{"scratch_test": s["test_acc"], "pretrained_test": p["test_acc"], "scratch_val": s["val_acc"],
              "pretrained_val": p["val_acc"], "gap_test": p["test_acc"] - s["test_acc"],
              "gap_val": p["val_acc"] - s["val_acc"]} for s, p in pairs]
    mean = {k: statistics.mean(r[k] for r in seeds) for k in seeds[0]}
    gaps = [r["gap_test"] for r in seeds]
    return {"labels": pairs[0][1]["labels"], "scratch": pairs[0][0], "pretrained": pairs[0][1], "seeds": seeds,
            "mean": mean, "gap_sd": statistics.stdev(gaps) if len(gaps) > 1 else None}


def run_gpt(preset: str, split: dict[str, Split], device: str, progress: bool, gap_seeds: int = 3) -> dict:
    """Pretrained vs from scratch at 100 / 1,000 (`gap_seeds` seeds each) and all labels, then head / full / LoRA."""
    t0 = time.perf_counter()
    gpt, tok, hist = review_gpt(preset, device, split=split, progress=True)  # a bar: pretraining takes minutes
    print(f"  review GPT: {gpt.num_params():,} parameters, BPE {tok.vocab_size} tokens, "
          f"LM val loss {hist.val_loss[-1]:.3f} ({time.perf_counter() - t0:.0f} s incl. loading/pretraining)")
    pretrained_state = {k: v.clone() for k, v in gpt.state_dict().items()}
    full_data = split_tensors(split, lambda texts: encode_for(gpt, tok, texts))
    figures: dict = {"gap": [], "modes": {}}
    bs = finetune_recipe(preset).batch_size

    def one(mode: str, n: int | None, pretrained: bool, seed: int = 0) -> dict:
        """One fine-tune; `seed` draws the labelled subsample, the fresh weights and the batch order."""
        body = fresh_twin(gpt, seed=1337 + seed)  # a new GPT every run (LoRA wraps layers in place): random, or ...
        if pretrained:  # ... the pretrained weights
            body.load_state_dict(pretrained_state)
        clf = GPTClassifier(body, 2, pooling="last")
        lora = finetune_recipe(preset).lora_kwargs() if mode.startswith("lora") else {}
        if mode == "lora_no_wte":  # the same adapters without the one on the token embedding
            lora["lora_pattern"] = NO_EMBEDDING_PATTERN
        trainable, total = prepare(clf, {"scratch": "full", "lora_no_wte": "lora"}.get(mode, mode), **lora)
        train_part = split["train"] if n is None else subsample(split["train"], n, seed=seed)
        data = dict(full_data)
        data["train"] = (encode_for(gpt, tok, train_part.texts), torch.tensor(train_part.labels))
        cfg = finetune_config(preset, len(train_part), "lora" if mode == "lora_no_wte" else mode, progress=progress)
        res = finetune(clf, data, cfg, bs, device, seed=seed)
        val = accuracy(predict(clf, data["val"][0]), data["val"][1])
        pred = predict(clf, data["test"][0])
        test = accuracy(pred, data["test"][1])
        return {"mode": mode, "labels": len(train_part), "pretrained": pretrained, "val_acc": val,
                "test_acc": test, "trainable": trainable, "total": total, "seconds": res.seconds,
                "steps": cfg.max_steps, "memory_mb": res.memory_bytes / 2**20,
                "confusion": confusion_matrix(pred, data["test"][1], 2).tolist()}

    print(f"\n  labels   from scratch   pretrained   gap    (test accuracy; val in brackets; below "
          f"all labels the mean of {gap_seeds} seeds)", flush=True)
    counts = sorted({min(n, len(split["train"])) for n in LABEL_COUNTS if n is not None})
    for n in [c for c in counts if c < len(split["train"])] + [None]:
        seeds = range(1 if n is None else gap_seeds)  # every label: one run each (they take minutes)
        pairs = [(one("scratch", n, False, s), one("full", n, True, s)) for s in seeds]
        row = _gap_row(pairs)
        figures["gap"].append(row)
        m = row["mean"]
        spread = f"  (sd of the gap over seeds {row['gap_sd']:.3f})" if len(pairs) > 1 else ""
        print(f"  {row['labels']:>6}   {m['scratch_test']:.3f} ({m['scratch_val']:.3f})  {m['pretrained_test']:.3f} "
              f"({m['pretrained_val']:.3f})  {m['gap_test']:+.3f} ({m['gap_val']:+.3f}){spread}", flush=True)
    n_test = len(split["test"])
    se = (0.7 * 0.3 / n_test) ** 0.5  # binomial standard error of one accuracy near 0.7
    figures["test_accuracy_se"] = se
    print(f"  ({n_test:,} test texts: one accuracy's standard error is about {se:.3f}, so a gap between two "
          f"single runs under about {2 * se * 2 ** 0.5:.3f} is within the noise of the test split; a seed changes "
          "the labelled subsample, the initial weights and the batch order)", flush=True)
    figures["modes"]["full"] = figures["gap"][-1]["pretrained"]
    for mode in ("head", "lora", "lora_no_wte"):
        figures["modes"][mode] = one(mode, None, True)
    print("\n  mode          trainable params   test acc   val acc   train s   step memory MB", flush=True)
    for mode in ("head", "full", "lora", "lora_no_wte"):
        m = figures["modes"][mode]
        print(f"  {mode:<12} {m['trainable']:>12,} {100 * m['trainable'] / m['total']:5.1f}%   {m['test_acc']:.3f}"
              f"     {m['val_acc']:.3f}   {m['seconds']:7.1f}   {m['memory_mb']:8.1f}")
    return figures


def run_minilm(preset: str, split: dict[str, Split], device: str, progress: bool, n_train: int | None) -> dict:
    """The offline MiniLM encoder: frozen mean-pooled embeddings + a linear head, then LoRA on query/value."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        clf, tok = minilm_classifier(2, device)
    except PretrainedUnavailable as e:
        print(f"  skipped: {e}")
        return {"skipped": str(e)}
    train_part = split["train"] if n_train is None else subsample(split["train"], n_train, seed=0)
    data = split_tensors(split, lambda texts: encode_texts(texts, tok, 64), train=train_part)
    bs = finetune_recipe(preset).batch_size
    out: dict = {"train_labels": len(train_part)}
    # frozen: embed every text once, then train a linear probe with the same loop
    t0 = time.perf_counter()
    with torch.no_grad():
        clf.eval()
        feats = {k: torch.cat([clf.features(X[i:i + 128].to(device)).cpu() for i in range(0, len(X), 128)])
                 for k, (X, _) in data.items()}
    embed_s = time.perf_counter() - t0
    probe = LinearProbe(feats["train"].shape[1], 2)
    pdata = {k: (feats[k], data[k][1]) for k in data}
    cfg = finetune_config(preset, len(train_part), "probe", progress=progress)
    res = finetune(probe, pdata, cfg, 64, device, seed=0)
    out["frozen"] = {"test_acc": accuracy(predict(probe, feats["test"]), data["test"][1]),
                     "val_acc": accuracy(predict(probe, feats["val"]), data["val"][1]),
                     "trainable": count_parameters(probe)[0], "total": count_parameters(clf.encoder)[1],
                     "seconds": embed_s + res.seconds, "embed_seconds": embed_s}
    # LoRA on the encoder's attention (query and value), with a fresh head, through train()
    n_lora = None if n_train is None else n_train
    lora_part = train_part if n_lora is None else subsample(train_part, min(n_lora, len(train_part)), seed=0)
    trainable, total = prepare(clf, "lora", r"attention\.self\.(query|value)", rank=8, alpha=16)
    ldata = dict(data)
    ldata["train"] = (encode_texts(lora_part.texts, tok, 64), torch.tensor(lora_part.labels))
    cfg = finetune_config(preset, len(lora_part), "encoder", progress=progress,
                          max_steps=finetune_recipe(preset).max_steps // 2)
    res = finetune(clf, ldata, cfg, bs, device, seed=0)
    out["lora"] = {"test_acc": accuracy(predict(clf, data["test"][0], 128), data["test"][1]),
                   "val_acc": accuracy(predict(clf, data["val"][0], 128), data["val"][1]),
                   "trainable": trainable, "total": total, "seconds": res.seconds, "steps": cfg.max_steps}
    print("  MiniLM          trainable params   test acc   val acc   wall s", flush=True)
    for k in ("frozen", "lora"):
        m = out[k]
        print(f"  {k:<14} {m['trainable']:>12,}       {m['test_acc']:.3f}     {m['val_acc']:.3f}   {m['seconds']:6.1f}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke recipe on a few hundred examples (seconds)")
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    parser.add_argument("--skip-minilm", action="store_true", help="leave out the MiniLM encoder part")
    parser.add_argument("--only", choices=["gpt", "minilm"], help="run one part only")
    parser.add_argument("--device", help="where to train (default: cuda when there is a GPU, else cpu)")
    parser.add_argument("--gap-seeds", type=int, default=3,
                        help="seeds of each run at 100 and 1,000 labels (the gap's mean and spread; default 3)")
    args = parser.parse_args()
    if args.gap_seeds < 1:
        parser.error(f"--gap-seeds {args.gap_seeds}: give 1 or more")
    preset = "smoke" if args.quick else active_preset().name
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {device}, preset {preset}", flush=True)
    split = rt_polarity_split()
    print("split (fixed, seeded): " + ", ".join(f"{k} {len(v):,}" for k, v in split.items()), flush=True)
    small = _cap(split, 96) if args.quick else split
    t0 = time.perf_counter()
    figures: dict = {"preset": preset}
    if args.only != "minilm":
        print("\n[gpt] GPT-1's recipe: pretrain on the train-split review text, then fine-tune", flush=True)
        figures["gpt"] = run_gpt(preset, small, device, progress=False, gap_seeds=args.gap_seeds)
    if not args.skip_minilm and args.only != "gpt":
        print("\n[minilm] all-MiniLM-L6-v2, offline", flush=True)
        figures["minilm"] = run_minilm(preset, small, device, False, 32 if args.quick else 2000)
    figures["seconds"] = time.perf_counter() - t0
    if "gpt" not in figures:
        _write(args.json, figures)
        return 0

    g = figures["gpt"]
    at1000 = next(row for row in g["gap"] if row["labels"] == min(1000, len(small["train"])))
    best = g["gap"][-1]["pretrained"]
    full, lora = g["modes"]["full"], g["modes"]["lora"]
    checks = {
        "pretrained_test_acc>=0.75": best["test_acc"] >= 0.75,
        "pretrained>scratch@1000": at1000["mean"]["gap_test"] > 0,  # the mean over seeds of the paired gap
        "lora_within_2pts_of_full": lora["test_acc"] >= full["test_acc"] - 0.02,
        "lora_trainable<=5%_of_full": lora["trainable"] <= 0.05 * full["trainable"],
    }
    print("\n[targets]" + (" (--quick: the smoke recipe, figures mean nothing)" if args.quick else ""), flush=True)
    print(f"  pretrained + fine-tuned GPT, test accuracy {best['test_acc']:.3f}   target >= 0.75; references: "
          f"Naive Bayes / SVM ~0.77 (Pang and Lee 2005), CNN from scratch ~0.76 (Kim 2014)"
          f"{_mark(checks['pretrained_test_acc>=0.75'])}")
    m1000 = at1000["mean"]
    gaps = ", ".join(f"{r['gap_test']:+.3f}" for r in at1000["seeds"])
    n_seeds = len(at1000["seeds"])
    print(f"  at {at1000['labels']} labels, mean of {n_seeds} seed{'s' * (n_seeds > 1)}: pretrained {m1000['pretrained_test']:.3f} "
          f"vs from scratch {m1000['scratch_test']:.3f}, gap {m1000['gap_test']:+.3f} (per seed {gaps}; val "
          f"{m1000['gap_val']:+.3f})   target > 0{_mark(checks['pretrained>scratch@1000'])}")
    print(f"  LoRA {lora['test_acc']:.3f} with {lora['trainable']:,} trainable vs full {full['test_acc']:.3f} with "
          f"{full['trainable']:,} ({100 * lora['trainable'] / full['trainable']:.1f} %)   target within 2 points, "
          f"<= 5 %{_mark(checks['lora_within_2pts_of_full'] and checks['lora_trainable<=5%_of_full'])}")
    mm = figures.get("minilm", {})
    if "frozen" in mm:
        print(f"  MiniLM frozen + head {mm['frozen']['test_acc']:.3f}, LoRA {mm['lora']['test_acc']:.3f} "
              f"(expect well above our GPT's {best['test_acc']:.3f})")
    figures["checks"] = checks
    print(f"\ntotal {figures['seconds']:.0f} s. Timings compare only on a quiet machine of the same kind.", flush=True)
    _write(args.json, figures)
    return 0


def _write(path: Path | None, figures: dict) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(figures, indent=1) + "\n")
        print(f"figures written to {path}")


if __name__ == "__main__":
    sys.exit(main())
