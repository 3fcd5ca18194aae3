"""The controlled experiment of notebook 08: a known occupation-pronoun skew mixed into a training corpus.

Each occupation gets a stated share `p_he` of "he" among its injected sentences ("The nurse said
that she would be late."); after training, the model's own share P(he) / (P(he) + P(she)) after
"The nurse said that" is compared with it, occupation by occupation.

The mitigation is tested as a controlled experiment with three arms, each trained with several seeds
(`ExperimentConfig.seeds`; a seed sets the initial weights and the batch order, the corpora are fixed):

- "skewed": the corpus with the stated skew;
- "augmented": the same corpus after counterfactual augmentation (`counterfactual.augment`: every line
  plus its gender-swapped twin), trained for proportionally more steps, so that every original line is
  seen as often as in the skewed arm (equal exposure; with the same steps it would be seen about half
  as often, and less exposure alone shrinks a learned gap);
- "even": the control, the same corpus with p_he = 0.5 for every occupation: the gap a model shows
  when its data hold none (the noise floor, plus whatever pull its Shakespeare gives every occupation).

`arm_stats` turns the per-seed numbers into means with t intervals over seeds.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..recipes import settings
from .templates import check_template

# every injected sentence starts like the probe prompt "The {occupation} said that" and ends in one of these
ENDINGS = ("would be late today.", "was tired after work.", "had finished the report.", "liked the new office.",
           "needed a short break.", "could not come to the meeting.", "wanted to go home early.",
           "was proud of the work.")
SENTENCE = "The {occupation} said that {pronoun} {ending}"
PROBE = "The {occupation} said that"


def skew_table(occupations: dict[str, list[str]], high: float = 0.9, low: float = 0.1) -> dict[str, float]:
    """occupation -> p_he, evenly spaced from `high` (first male-majority occupation) to `low` (last
    female-majority one): the skew mirrors the US labour statistics WinoBias's lists come from."""
    words = occupations["male"] + occupations["female"]
    return {w: round(float(p), 3) for w, p in zip(words, np.linspace(high, low, len(words)))}


def skewed_sentences(p_he: dict[str, float], per_occupation: int, seed: int = 0,
                     template: str = SENTENCE) -> list[str]:
    """`per_occupation` sentences per occupation, round(p_he * per_occupation) of them with "he", shuffled."""
    check_template(template.replace("{pronoun}", "{{pronoun}}").replace("{ending}", "{{ending}}"))
    rng = random.Random(seed)
    lines = []
    for occ, p in p_he.items():
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p_he[{occ!r}] = {p} is not a probability in [0, 1]")
        n_he = round(p * per_occupation)
        for i in range(per_occupation):
            lines.append(template.format(occupation=occ, pronoun="he" if i < n_he else "she",
                                         ending=rng.choice(ENDINGS)))
    rng.shuffle(lines)
    return lines


def mix_lines(base: Sequence[str], injected: Sequence[str], seed: int = 0) -> list[str]:
    """`base` lines in their order with each injected line put at a random place between them."""
    rng = random.Random(seed)
    slots = sorted(rng.randrange(len(base) + 1) for _ in injected)
    out, j = [], 0
    for i, line in enumerate(base):
        while j < len(slots) and slots[j] == i:
            out.append(injected[j])
            j += 1
        out.append(line)
    out.extend(injected[j:])
    return out


def digest(text: str) -> str:
    """sha256 of a corpus (first 16 hex digits), for the model cache key."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass
class SkewFit:
    """Injected against measured skew across occupations."""

    injected: dict[str, float]  # occupation -> p_he in the corpus
    measured: dict[str, float]  # occupation -> the model's P(he) / (P(he) + P(she))
    pearson_r: float
    p_value: float  # of the Pearson correlation (scipy.stats.pearsonr)


def fit_skew(injected: dict[str, float], measured: dict[str, float]) -> SkewFit:
    """Pearson r between the corpus's p_he and the model's, over the occupations both name."""
    from scipy.stats import pearsonr

    words = [w for w in injected if w in measured]
    if len(words) < 3:
        raise ValueError(f"fit_skew needs at least 3 occupations in both tables, got {len(words)}")
    x = [injected[w] for w in words]
    y = [measured[w] for w in words]
    if np.std(y) == 0:
        return SkewFit(injected, measured, float("nan"), float("nan"))
    r, p = pearsonr(x, y)
    return SkewFit(injected, measured, float(r), float(p))


# ---------------------------------------------------------------- the whole experiment, one config per preset

@dataclass(frozen=True)
class ExperimentConfig:
    """Sizes of notebook 08's training runs (benchmarks/bias.py uses the same, so its models are the notebook's)."""

    base_chars: int  # tinyshakespeare characters in the training corpus (from the start of the text)
    per_occupation: int  # injected sentences per occupation
    canary_insertions: tuple[int, ...]  # one canary per entry; 0 = a control never inserted
    stages: tuple[int, ...]  # training steps at which the run is stopped, cached and measured
    n_random: int  # random candidates a canary is ranked among
    prefix_len: int = 30  # memorisation probe: characters given
    cont_len: int = 5  # memorisation probe: characters to reproduce (about one word)
    probe_lines: int = 400  # training and held-out lines the memorisation probe uses (each)
    seeds: tuple[int, ...] = (1337, 1338, 1339)  # one training run per seed and arm (initial weights, batches)


def experiment_config(preset: str) -> ExperimentConfig:
    """The experiment's sizes under preset 'smoke' | 'cpu' | 'gpu', from `minilm.recipes.BIAS_EXPERIMENT`."""
    return ExperimentConfig(**settings("BIAS_EXPERIMENT", preset))


@dataclass
class Corpora:
    """Everything the experiment trains on and probes with."""

    train_text: str  # tinyshakespeare slice + skewed sentences + canaries
    cda_text: str  # the same after two-sided counterfactual augmentation
    even_text: str  # the control: the same slice and canaries, p_he = 0.5 for every occupation
    val_text: str  # held-out tinyshakespeare (validation loss of every model)
    p_he: dict[str, float]  # occupation -> injected share of "he"
    canaries: list  # memorisation.Canary, one per insertion count
    train_lines: list[str]  # tinyshakespeare lines of the training corpus (memorisation probe)
    heldout_lines: list[str]  # tinyshakespeare lines of the validation text (memorisation probe)


def build_corpora(cfg: ExperimentConfig, text: str | None = None, seed: int = 0) -> Corpora:
    """The training corpus with its injected skew and canaries, its augmented twin, and the held-out text."""
    from ..data.datasets import load_text
    from .counterfactual import augment
    from .memorisation import insert_canaries, make_canaries
    from .templates import load_occupations

    text = text if text is not None else load_text("tinyshakespeare")
    split = int(len(text) * 0.9)
    base, val_text = text[:min(cfg.base_chars, split)], text[split:]
    base_lines = base.split("\n")
    p_he = skew_table(load_occupations())
    injected = skewed_sentences(p_he, cfg.per_occupation, seed)
    canaries = make_canaries(cfg.canary_insertions, seed=seed)
    lines = insert_canaries(mix_lines(base_lines, injected, seed), canaries, seed)
    even = skewed_sentences(dict.fromkeys(p_he, 0.5), cfg.per_occupation, seed)
    even_lines = insert_canaries(mix_lines(base_lines, even, seed), canaries, seed)
    need = cfg.prefix_len + cfg.cont_len
    rng = random.Random(seed)
    train_probe = [ln for ln in base_lines if len(ln) >= need]
    held_probe = [ln for ln in val_text.split("\n") if len(ln) >= need]
    return Corpora("\n".join(lines), "\n".join(augment(lines)), "\n".join(even_lines), val_text, p_he, canaries,
                   rng.sample(train_probe, min(cfg.probe_lines, len(train_probe))),
                   rng.sample(held_probe, min(cfg.probe_lines, len(held_probe))))


DIGITS = "0123456789"


def experiment_tokenizer(corpora: Corpora):
    """One character vocabulary for both corpora, the held-out text and every canary candidate."""
    from ..data.tokenizers import CharTokenizer

    return CharTokenizer.from_text(corpora.train_text + corpora.cda_text + corpora.val_text + DIGITS)


def experiment_recipe(preset: str, vocab_size: int, cfg: ExperimentConfig):
    """The zoo's GPT recipe of `preset` with the preset's "small" model, trained for the experiment's last stage."""
    from dataclasses import replace

    from ..training.zoo import Recipe, gpt_config_for, recipe_for

    recipe = recipe_for(preset, vocab_size)
    model = gpt_config_for(preset, vocab_size, "small")
    return Recipe(model, replace(recipe.train, max_steps=cfg.stages[-1]), recipe.batch_size)


ARMS = ("skewed", "augmented", "even")


def arm_steps(corpora: Corpora, cfg: ExperimentConfig) -> dict[str, int]:
    """Training steps per arm: the augmented arm trains len(cda_text) / len(train_text) times longer, so each
    original line is drawn as often as in the skewed arm (batches are random windows of the corpus)."""
    steps = cfg.stages[-1]
    return {"skewed": steps, "augmented": round(steps * len(corpora.cda_text) / len(corpora.train_text)),
            "even": steps}


def train_arm(arm: str, corpora: Corpora, tok, cfg: ExperimentConfig, preset: str, seed: int,
              device=None, progress: bool = False) -> list:
    """[(model, history)] of one arm and seed, from the model cache when it ran before. The skewed arm is
    stopped and cached at each of `cfg.stages` (memorisation along the run); the others give one entry."""
    import torch

    from ..training.zoo import train_stages

    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; use one of {', '.join(ARMS)}")
    text = {"skewed": corpora.train_text, "augmented": corpora.cda_text, "even": corpora.even_text}[arm]
    recipe = experiment_recipe(preset, tok.vocab_size, cfg)
    enc = lambda s: torch.tensor(tok.encode(s), dtype=torch.long)
    stages = list(cfg.stages) if arm == "skewed" else [arm_steps(corpora, cfg)[arm]]
    return train_stages(f"bias-{arm}", recipe, enc(text), enc(corpora.val_text), tok, stages,
                        extra={"corpus": digest(text)}, preset=preset, device=device, progress=progress, seed=seed)


def t_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the t interval of the mean of `values` (n >= 2; seeds are the samples)."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        raise ValueError(f"a t interval needs at least 2 values (seeds), got {v.size}: add seeds to the config")
    half = stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
    return float(v.mean()), float(v.mean() - half), float(v.mean() + half)


@dataclass
class ArmStats:
    """One arm's probe numbers: a value per seed, and each one's mean with its 95 % t interval over seeds."""

    arm: str
    steps: int
    per_seed: dict[str, list[float]]  # "gap" | "offset" | "spread" | "he_share" | "r" | "val_loss" -> one per seed
    ci: dict[str, tuple[float, float, float]]  # the same keys -> (mean, low, high)


def arm_stats(arm: str, models: Sequence, tok, p_he: dict[str, float]) -> ArmStats:
    """The probe on each seed's final model, with l_w = log P(he) - log P(she) after occupation w's prompt:
    "gap" = mean |l_w| (nats), split into "offset" = mean l_w (a pull shared by every occupation, + toward
    "he") and "spread" = mean |l_w - offset| (how far occupations differ: the learned skew); "he_share" =
    mean P(he) share (0.5 = no pull), "r" = Pearson r with the stated skew, "val_loss"."""
    from .templates import pronoun_probe

    per_seed: dict[str, list[float]] = {"gap": [], "offset": [], "spread": [], "he_share": [], "r": [], "val_loss": []}
    for model, history in models:
        probe = pronoun_probe(model, tok, list(p_he), PROBE)
        share = probe.p_first()
        ratios = np.array(list(probe.log_ratio.values()))
        per_seed["gap"].append(probe.mean_abs_gap())
        per_seed["offset"].append(float(ratios.mean()))
        per_seed["spread"].append(float(np.abs(ratios - ratios.mean()).mean()))
        per_seed["he_share"].append(float(np.mean(list(share.values()))))
        per_seed["r"].append(fit_skew(p_he, share).pearson_r)
        per_seed["val_loss"].append(history.val_loss[-1])
    steps = models[0][1].steps[-1]
    return ArmStats(arm, steps, per_seed, {k: t_interval(v) for k, v in per_seed.items()})


def paired_difference(a: ArmStats, b: ArmStats, key: str = "gap") -> tuple[float, float, float]:
    """(mean, low, high) of b - a seed by seed (the same seed gives both arms the same initial weights)."""
    return t_interval(np.subtract(b.per_seed[key], a.per_seed[key]))


def train_models(preset: str, device=None, progress: bool = False):
    """(config, corpora, tokenizer, {arm: [[(model, history), ...] per seed]}): every run of notebook 08's
    experiment, from the model cache when they ran before. runs["skewed"][0] holds the first seed's stages."""
    cfg = experiment_config(preset)
    corpora = build_corpora(cfg)
    tok = experiment_tokenizer(corpora)
    runs = {arm: [train_arm(arm, corpora, tok, cfg, preset, seed, device, progress) for seed in cfg.seeds]
            for arm in ARMS}
    return cfg, corpora, tok, runs
