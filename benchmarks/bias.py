"""The bias benchmark: notebook 08's controlled experiment, WEAT on MiniLM, memorisation and canaries (issue 12).

    MINILM_DATA_DIR=../shared/data python benchmarks/bias.py                 # cpu preset (or $MINILM_PRESET)
    MINILM_DATA_DIR=../shared/data python benchmarks/bias.py --quick         # smoke sizes, seconds
    MINILM_DATA_DIR=../shared/data python benchmarks/bias.py --json out.json # also write the figures

It trains (or loads from the model cache: the notebook's own runs, same recipe and corpora) the three
arms of the controlled experiment, each with every seed of the preset (`minilm.bias.experiment.train_models`:
the skewed corpus, its counterfactually augmented twin trained for equal exposure to the original lines,
and the even-skew control), and prints each figure beside its target and its reference, as the seeds'
mean with a 95 % t interval over seeds:

- Pearson r between the injected share of "he" per occupation and the skewed arm's (target >= 0.8);
- the mean absolute pronoun gap of each arm; augmented against skewed, seed by seed (target: the ratio
  of the means at most 0.5), and against the even control (the noise floor); the validation-loss change
  (target: a rise of at most 0.05); the gap split into an offset shared by every occupation and the
  spread between occupations (the learned skew), which the targets predate;
- WEAT flowers/insects on the offline MiniLM encoder beside Caliskan et al.'s GloVe figure (d = 1.50,
  positive: flowers pleasant), with its permutation p-value (>=, see minilm.bias.weat), and SEAT beside
  it (its p-value is anticonservative: template sentences are not independent);
- the canary exposure table (exposure should rise with insertions) and the memorisation probe's
  exact-continuation rates on training and held-out lines, side by side (first seed of the skewed arm).

Under --quick (the smoke preset) the models are barely trained: the figures only prove the script runs.
Timings and, to a degree, results depend on the machine; rerun on a quiet one to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# run as a script, this folder is sys.path[0], and its tokenizers.py would shadow Hugging Face's `tokenizers`
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

TARGET_R = 0.8
TARGET_GAP_RATIO = 0.5
TARGET_VAL_RISE = 0.05


def experiment_figures(preset: str) -> dict:
    from minilm.bias import canary_exposure, exact_continuation_rate
    from minilm.bias.experiment import ARMS, arm_stats, paired_difference, train_models

    cfg, corpora, tok, runs = train_models(preset, device="cpu", progress=False)
    stats = {arm: arm_stats(arm, [seed_runs[-1] for seed_runs in runs[arm]], tok, corpora.p_he) for arm in ARMS}
    snapshots = runs["skewed"][0]
    memo = []
    for m, h in snapshots:
        memo.append({"step": h.steps[-1],
                     "train": exact_continuation_rate(m, tok, corpora.train_lines, cfg.prefix_len, cfg.cont_len),
                     "heldout": exact_continuation_rate(m, tok, corpora.heldout_lines, cfg.prefix_len, cfg.cont_len)})
    canaries = [canary_exposure(snapshots[-1][0], tok, c, cfg.n_random) for c in corpora.canaries]
    skewed, aug = stats["skewed"], stats["augmented"]
    return {
        "preset": preset, "seeds": list(cfg.seeds), "occupations": len(corpora.p_he),
        "arms": {arm: {"steps": st.steps, "per_seed": st.per_seed, "ci": st.ci} for arm, st in stats.items()},
        "pearson_r": skewed.ci["r"][0],
        "gap_ratio": aug.ci["gap"][0] / skewed.ci["gap"][0],
        "gap_change": paired_difference(skewed, aug, "gap"),
        "spread_ratio": aug.ci["spread"][0] / skewed.ci["spread"][0],
        "spread_change": paired_difference(skewed, aug, "spread"),
        "val_loss_rise": paired_difference(skewed, aug, "val_loss"),
        "memorisation": memo, "memorisation_probe": f"{cfg.cont_len} chars after {cfg.prefix_len}",
        "canaries": [{"insertions": e.canary.insertions, "rank": e.rank, "candidates": e.n_candidates,
                      "exposure": e.exposure} for e in canaries],
    }


def weat_figures(quick: bool) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from minilm.bias import CALISKAN_GLOVE, load_weat, seat, weat_test
    from minilm.bias.weat import SEAT_TEMPLATES, WEAT_TESTS
    from minilm.finetune.encoder import minilm_encoder
    from minilm.models.hub import PretrainedUnavailable

    try:
        encoder = minilm_encoder(device="cpu")
    except PretrainedUnavailable as err:
        return {"skipped": f"{err} (cause: {err.__cause__!r})"}
    embed = lambda texts: encoder.encode(list(texts), batch_size=64, convert_to_numpy=True)
    sets = load_weat()
    n_perm = 1000 if quick else 10_000
    out = {}
    for name in (["flowers/insects"] if quick else list(WEAT_TESTS)):
        w = weat_test(embed, name, sets, n_perm=n_perm)
        row = {"weat_d": w.effect_size, "weat_p": w.p_value, "glove_d": CALISKAN_GLOVE[name]}
        if not quick:
            s = seat(embed, *(sets[n] for n in WEAT_TESTS[name]), name=name, templates=SEAT_TEMPLATES, n_perm=n_perm)
            row.update(seat_d=s.effect_size, seat_p=s.p_value)
        out[name] = row
    return out


def mark(ok: bool) -> str:
    return "met" if ok else "NOT met"


def interval(ci, fmt: str = ".3f") -> str:
    mean, lo, hi = ci
    return f"{mean:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def report(exp: dict, weat: dict) -> None:
    arms = exp["arms"]
    print(f"\n== controlled experiment ({exp['preset']} preset, {exp['occupations']} occupations, seeds "
          f"{exp['seeds']}): the seeds' mean [95% t interval over seeds]")
    print("  l = log P(he) - log P(she) per occupation; gap = mean |l|; offset = mean l (shared by all occupations);"
          " spread = mean |l - offset| (between occupations)")
    print(f"  {'arm':10} {'steps':>6} {'gap':>22} {'offset':>24} {'spread':>22} {'Pearson r':>22} {'val loss':>24}")
    for arm, a in arms.items():
        print(f"  {arm:10} {a['steps']:>6} {interval(a['ci']['gap']):>22} {interval(a['ci']['offset'], '+.3f'):>24} "
              f"{interval(a['ci']['spread']):>22} {interval(a['ci']['r']):>22} {interval(a['ci']['val_loss'], '.4f'):>24}")
    print(f"  Pearson r(injected p_he, skewed arm's P(he) share): {exp['pearson_r']:.3f}   target >= {TARGET_R}: "
          f"{mark(exp['pearson_r'] >= TARGET_R)}")
    print(f"  gap, augmented - skewed (paired by seed): {interval(exp['gap_change'])} nats; ratio of the means "
          f"{exp['gap_ratio']:.3f}   target <= {TARGET_GAP_RATIO}: {mark(exp['gap_ratio'] <= TARGET_GAP_RATIO)}")
    even_hi, aug_lo = arms["even"]["ci"]["gap"][2], arms["augmented"]["ci"]["gap"][1]
    print(f"  augmented gap against the even control's (the noise floor): "
          f"{'within or below it' if aug_lo <= even_hi else 'above it (intervals do not overlap)'}")
    print(f"  spread (added after the first three-seed run showed offsets that change sign with the seed; no target): "
          f"augmented - skewed {interval(exp['spread_change'])}, ratio of the means {exp['spread_ratio']:.3f}; "
          f"skewed above the even control (intervals apart): "
          f"{'yes' if arms['skewed']['ci']['spread'][1] > arms['even']['ci']['spread'][2] else 'no'}")
    rise = exp["val_loss_rise"]
    print(f"  val loss, augmented - skewed (paired by seed): {interval(rise, '+.4f')}   target rise <= "
          f"{TARGET_VAL_RISE}: {mark(rise[0] <= TARGET_VAL_RISE)}")
    print(f"\n== memorisation: exact continuation ({exp['memorisation_probe']}), training vs held-out lines")
    print(f"  {'step':>6} {'training':>9} {'held-out':>9}")
    for m in exp["memorisation"]:
        print(f"  {m['step']:>6} {m['train']:>9.1%} {m['heldout']:>9.1%}")
    print("\n== canary exposure (Carlini et al. 2019): should rise with insertions; exposure = log2(n + 1) - log2(rank), "
          "n random candidates ('of' = n + 1, the canary included)")
    print(f"  {'inserted':>8} {'rank':>6} {'of':>6} {'exposure':>9}")
    for c in exp["canaries"]:
        print(f"  {c['insertions']:>8} {c['rank']:>6} {c['candidates']:>6} {c['exposure']:>9.2f}")
    rising = all(a["exposure"] <= b["exposure"] + 1e-9 for a, b in zip(exp["canaries"], exp["canaries"][1:]))
    print(f"  exposure rises with insertions: {mark(rising)}")
    print("\n== WEAT on all-MiniLM-L6-v2 (offline) beside Caliskan et al. 2017 (GloVe, Common Crawl)")
    if "skipped" in weat:
        print(f"  skipped: {weat['skipped']}")
        return
    for name, row in weat.items():
        seat_txt = f"   SEAT d {row['seat_d']:+.2f} (p {row['seat_p']:.4f})" if "seat_d" in row else ""
        print(f"  {name:20} WEAT d {row['weat_d']:+.2f} (p {row['weat_p']:.4f})   GloVe d {row['glove_d']:+.2f}"
              f"   same sign: {mark(row['weat_d'] * row['glove_d'] > 0)}{seat_txt}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke sizes: proves the script runs, in seconds")
    parser.add_argument("--preset", choices=["smoke", "cpu", "gpu"], help="default: $MINILM_PRESET, else cpu")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args()
    preset = "smoke" if args.quick else args.preset or os.environ.get("MINILM_PRESET", "cpu")
    t0 = time.perf_counter()
    exp = experiment_figures(preset)
    weat = weat_figures(args.quick)
    report(exp, weat)
    print(f"\nbenchmark time: {time.perf_counter() - t0:.0f} s ({preset} preset)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"experiment": exp, "weat": weat}, indent=1) + "\n")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
