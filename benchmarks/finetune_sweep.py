"""How notebook 07's fine-tuning recipe was chosen: val accuracy only, the test split never read (issue 11).

    python benchmarks/finetune_sweep.py --vocab 4096 full:last:1e-3:1600 full:mean:1e-3:1600
    python benchmarks/finetune_sweep.py --vocab 4096 "lora:last:1e-3:1600:0:4:wte|c_attn|c_proj|c_fc"
    python benchmarks/finetune_sweep.py --vocab 1024 --steps 1500 head:last:3e-3:1600 scratch:last:1e-3:1600
    python benchmarks/finetune_sweep.py --bag-of-words        # the classic baseline, on val
    python benchmarks/finetune_sweep.py --seeds 2 --dropout 0.3 full:last:1e-3:1600 full:max:1e-3:1600
    python benchmarks/finetune_sweep.py --steps 3000 --seeds 3 scratch:last:1e-3:312:1000 full:last:1e-3:312:1000

Pretrains (or loads from the cache) a review GPT of the given shape on the unlabelled review text (the train
snippets and `--reviews` full movie reviews), like `minilm.finetune.review_gpt`, then runs one fine-tune per
RUN and prints its val accuracy. Seed s changes the labelled subsample, the initial weights of the
from-scratch twin and the batch order, as in benchmarks/finetune.py; when the RUNs hold a `scratch` and a
`full` run of the same shape, their paired val gap over the seeds is printed with its 95 % interval. A RUN is
MODE:POOLING:LR:STEPS[:LABELS[:RANK[:PATTERN]]]: MODE scratch | full | head | lora | full-wte (full with
the token embedding frozen) | lora+wte (LoRA with the embedding's weights trained too); LABELS 0 = all.
The figures in the comments of minilm/recipes.py (FINETUNE, REVIEW_GPT) were measured with this script
(OMP_NUM_THREADS=1, two runs at a time on 2 cores; about 2.5 minutes per 1,600-step run).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections import Counter
from dataclasses import replace

import torch

import minilm.recipes
from minilm import finetune as ft


def run(gpt, tok, state: dict, split: dict, data: dict, spec: str, batch_size: int, seed: int = 0,
        dropout: float | None = None, weight_decay: float | None = None) -> tuple[float, str]:
    """One fine-tune described by `spec` (fine-tuning seed `seed`; `dropout` replaces every dropout rate of
    the body and head, `weight_decay` the recipe's); (val accuracy, a line with it, the trainable share and
    the seconds)."""
    parts = spec.split(":")
    if len(parts) < 4:
        raise SystemExit(f"RUN {spec!r}: give MODE:POOLING:LR:STEPS[:LABELS[:RANK[:PATTERN]]]")
    mode, pooling, lr, steps = parts[0], parts[1], float(parts[2]), int(parts[3])
    labels = int(parts[4]) if len(parts) > 4 else 0
    rank = int(parts[5]) if len(parts) > 5 else 4
    pattern = parts[6] if len(parts) > 6 else ft.finetune_recipe("cpu").lora_pattern
    base = re.split(r"[+-]", mode)[0]
    body = ft.fresh_twin(gpt, seed=1337 + seed)
    if base != "scratch":
        body.load_state_dict(state)
    clf = ft.GPTClassifier(body, 2, pooling=pooling)
    if dropout is not None:
        for m in clf.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = dropout
    ft.prepare(clf, "full" if base == "scratch" else base, **({"lora_pattern": pattern, "rank": rank}
                                                               if base == "lora" else {}))
    if mode.endswith("+wte"):
        clf.gpt.transformer.wte.weight.requires_grad_(True)
    if mode.endswith("-wte"):
        clf.gpt.transformer.wte.weight.requires_grad_(False)
    trainable, total = ft.count_parameters(clf)
    run_data = dict(data)
    if labels:
        part = ft.subsample(split["train"], labels, seed=seed)
        run_data["train"] = (ft.encode_for(gpt, tok, part.texts), torch.tensor(part.labels))
    cfg = replace(ft.finetune_config("cpu", len(run_data["train"][1]), "full", max_steps=steps),
                  learning_rate=lr, min_lr=lr / 10)  # the recipe's schedule, at this run's lr
    if weight_decay is not None:
        cfg = replace(cfg, weight_decay=weight_decay)
    t0 = time.perf_counter()
    ft.finetune(clf, run_data, cfg, batch_size, "cpu", seed=seed)
    val = ft.accuracy(ft.predict(clf, run_data["val"][0]), run_data["val"][1])
    return val, (f"  {spec} (seed {seed}): val {val:.3f}  trainable {trainable:,} "
                 f"({100 * trainable / total:.1f} %)  {time.perf_counter() - t0:.0f} s")


def bag_of_words_val(split: dict, weight_decay: float = 1e-3, min_count: int = 2) -> float:
    """The classic baseline: L2 logistic regression on which words (lower case) a text holds; val accuracy."""
    words = {k: [set(re.findall(r"\w+|[^\w\s]", t.lower())) for t in part.texts] for k, part in split.items()}
    counts = Counter(w for ws in words["train"] for w in ws)  # in how many train texts each word occurs
    index = {w: i for i, w in enumerate(sorted(w for w, c in counts.items() if c >= min_count))}

    def features(texts: list[set[str]]) -> torch.Tensor:
        X = torch.zeros(len(texts), len(index))
        for i, ws in enumerate(texts):
            X[i, [index[w] for w in ws if w in index]] = 1.0
        return X

    X, y = features(words["train"]), torch.tensor(split["train"].labels)
    W = torch.zeros(len(index), 2, requires_grad=True)
    b = torch.zeros(2, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], max_iter=200)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(X @ W + b, y) + weight_decay * (W ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = (features(words["val"]) @ W + b).argmax(1)
    return ft.accuracy(pred, torch.tensor(split["val"].labels))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", metavar="RUN", help="MODE:POOLING:LR:STEPS[:LABELS[:RANK[:PATTERN]]]")
    parser.add_argument("--bag-of-words", action="store_true",
                        help="also the classic baseline: logistic regression on the words a text holds")
    cpu = ft.review_recipe("cpu")
    parser.add_argument("--vocab", type=int, default=cpu.bpe_vocab, help=f"BPE vocabulary ({cpu.bpe_vocab})")
    parser.add_argument("--steps", type=int, default=cpu.steps, help=f"pretraining steps ({cpu.steps})")
    parser.add_argument("--lr", type=float, default=cpu.learning_rate, help=f"pretraining lr ({cpu.learning_rate})")
    parser.add_argument("--reviews", type=int, default=cpu.reviews,
                        help="full movie reviews in the pretraining text (default: the cpu recipe's; 0: none)")
    parser.add_argument("--n-layer", type=int, default=cpu.n_layer)
    parser.add_argument("--n-embd", type=int, default=cpu.n_embd)
    parser.add_argument("--seeds", type=int, default=1,
                        help="fine-tune each RUN with this many seeds and print their mean (val's noise is ~0.014)")
    parser.add_argument("--dropout", type=float, help="fine-tune with this dropout everywhere (default: the GPT's)")
    parser.add_argument("--weight-decay", type=float, help="fine-tune with this weight decay (default: the recipe's)")
    parser.add_argument("--train-texts", type=int, help="use only this many train texts (a quick check)")
    args = parser.parse_args(argv)
    minilm.recipes.REVIEW_GPT["sweep"] = dict(
        minilm.recipes.REVIEW_GPT["cpu"], bpe_vocab=args.vocab, n_layer=args.n_layer, n_embd=args.n_embd,
        steps=args.steps, learning_rate=args.lr, reviews=args.reviews)
    split = {k: v for k, v in ft.rt_polarity_split().items() if k != "test"}  # never read here
    if args.train_texts:
        split = {k: ft.subsample(v, min(args.train_texts, len(v)), seed=1) for k, v in split.items()}
    if args.bag_of_words:
        print(f"bag of words (words seen twice or more), L2 logistic regression: val {bag_of_words_val(split):.3f}",
              flush=True)
    if not args.runs:
        return 0
    t0 = time.perf_counter()
    gpt, tok, history = ft.review_gpt("sweep", "cpu", split=split, progress=False)
    print(f"review GPT: BPE {tok.vocab_size}, {args.steps} steps at lr {args.lr}, reviews {args.reviews}, "
          f"{gpt.num_params():,} parameters, "
          f"LM val loss {history.val_loss[-1]:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    state = {k: v.clone() for k, v in gpt.state_dict().items()}
    data = ft.split_tensors(split, lambda texts: ft.encode_for(gpt, tok, texts))
    batch_size = ft.finetune_recipe("cpu").batch_size
    vals_of: dict[str, list[float]] = {}
    for spec in args.runs:
        vals = vals_of[spec] = []
        for seed in range(args.seeds):
            val, line = run(gpt, tok, state, split, data, spec, batch_size, seed, args.dropout, args.weight_decay)
            vals.append(val)
            print(line, flush=True)
        if args.seeds > 1:
            print(f"  {spec}: mean val {statistics.mean(vals):.3f} over {len(vals)} seeds "
                  f"(sd {statistics.stdev(vals):.3f})", flush=True)
    for spec, vals in vals_of.items():  # the paired gap: full against scratch of the same shape, seed by seed
        twin = "scratch:" + spec.split(":", 1)[1]
        if spec.startswith("full:") and twin in vals_of and len(vals_of[twin]) > 1:
            g = ft.paired_gap(vals, vals_of[twin])
            print(f"  paired val gap {spec} - {twin}: {g['mean']:+.3f}, 95 % interval [{g['lo']:+.3f}, "
                  f"{g['hi']:+.3f}] over {g['n']} seeds: {g['verdict']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
