"""Template probes: "The nurse said that" -> log P(he) against log P(she), over WinoBias's occupations,
and WinoBias's pro- against anti-stereotyped likelihood gap (notebook 08).

Zhao et al. (2018) list 40 occupations (20 whose US workforce is mostly men, 20 mostly women, by
the 2017 US Bureau of Labor Statistics) and sentence pairs that differ only in the pronoun: the
"pro" sentence matches the occupation's stereotype, the "anti" one does not.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .likelihood import Encoder, bootstrap_ci, encodable, score_sentences

SLOT = "occupation"
WINOBIAS_FILES = {(kind, t, split): f"{kind}_stereotyped_type{t}.txt.{split}"
                  for kind in ("pro", "anti") for t in (1, 2) for split in ("dev", "test")}


def _winobias_file(name: str, folder: str | Path | None) -> Path:
    if folder is not None:
        return Path(folder) / name
    from ..data.datasets import path as data_path

    return data_path("winobias", name)


def load_occupations(folder: str | Path | None = None) -> dict[str, list[str]]:
    """{"male": [...20], "female": [...20]}: WinoBias's occupations by their majority gender in US labour data."""
    out = {}
    for gender in ("male", "female"):
        path = _winobias_file(f"{gender}_occupations.txt", folder)
        words = [w.strip() for w in path.read_text(encoding="utf-8").splitlines() if w.strip()]
        if not words:
            raise ValueError(f"{path}: the occupation list is empty")
        out[gender] = words
    return out


def check_template(template: str, slot: str = SLOT) -> None:
    """Raise a ValueError naming `template` unless it has exactly the one slot {slot} and nothing else."""
    fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    if slot not in fields:
        raise ValueError(f"the template {template!r} has no slot {{{slot}}}: write it like "
                         f"'The {{{slot}}} said that' (the word goes where {{{slot}}} is)")
    others = [f for f in fields if f != slot]
    if others:
        raise ValueError(f"the template {template!r} has slots {others} besides {{{slot}}}; only {{{slot}}} is filled")


@dataclass
class PronounProbe:
    """log P(pronoun_a) - log P(pronoun_b) after a template, per word (positive: pronoun_a likelier)."""

    template: str
    pronouns: tuple[str, str]
    log_ratio: dict[str, float]  # word -> log P(a | prompt) - log P(b | prompt), nats

    def p_first(self) -> dict[str, float]:
        """word -> P(a) / (P(a) + P(b)): the model's share of `a` between the two (0.5 = no preference)."""
        return {w: float(1 / (1 + np.exp(-r))) for w, r in self.log_ratio.items()}

    def mean_abs_gap(self) -> float:
        """Mean |log P(a) - log P(b)| over the words (0 = no preference anywhere), nats."""
        return float(np.mean([abs(r) for r in self.log_ratio.values()]))


def pronoun_probe(
    model: torch.nn.Module, tokenizer: Encoder, words: Sequence[str], template: str = "The {occupation} said that",
    pronouns: tuple[str, str] = ("he", "she"), after: str = " ", prefix: str = "\n",
) -> PronounProbe:
    """For each word, log P(" he" + after | prompt) - log P(" she" + after | prompt), prompt = template(word).

    `after` closes the pronoun (" he " and not the start of " her"); the prompt is shared, so the
    difference is the log-likelihood gap of the two whole sentences."""
    check_template(template)
    if not words:
        raise ValueError("pronoun_probe needs at least one word")
    a, b = pronouns
    texts = []
    for w in words:
        prompt = template.format(**{SLOT: w})
        texts += [f"{prompt} {a}{after}", f"{prompt} {b}{after}"]
    bad = [t for t in texts if not encodable(tokenizer, prefix + t)]
    if bad:
        raise ValueError(f"the tokenizer cannot encode {bad[0]!r}; use words and a template in its vocabulary")
    scores = score_sentences(model, tokenizer, texts, prefix)
    ratio = {w: scores[2 * i].total - scores[2 * i + 1].total for i, w in enumerate(words)}
    return PronounProbe(template, pronouns, ratio)


_BRACKETS = re.compile(r"[\[\]]")


def load_winobias_pairs(split: str = "test", types: Sequence[int] = (1, 2),
                        folder: str | Path | None = None) -> list[tuple[str, str]]:
    """(pro, anti) sentence pairs of WinoBias (line i of the pro file against line i of the anti file),
    brackets and line numbers removed."""
    if split not in ("dev", "test"):
        raise ValueError(f"split must be 'dev' or 'test', got {split!r}")
    pairs = []
    for t in types:
        lines = {}
        for kind in ("pro", "anti"):
            path = _winobias_file(WINOBIAS_FILES[(kind, t, split)], folder)
            rows = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
            lines[kind] = [_BRACKETS.sub("", ln.split(" ", 1)[1]).strip() for ln in rows]
        if len(lines["pro"]) != len(lines["anti"]):
            raise ValueError(f"WinoBias type {t} {split}: {len(lines['pro'])} pro against {len(lines['anti'])} anti lines")
        pairs += list(zip(lines["pro"], lines["anti"]))
    return pairs


@dataclass
class GapResult:
    """log p(pro) - log p(anti) over WinoBias pairs: mean gap (nats) with a bootstrap interval, share of pro wins."""

    mean_gap: float
    ci: tuple[float, float]
    pro_preferred: float  # fraction of pairs with log p(pro) > log p(anti)
    n_pairs: int
    n_skipped: int


def winobias_gap(model: torch.nn.Module, tokenizer: Encoder, pairs: Sequence[tuple[str, str]],
                 prefix: str = "\n", n_boot: int = 1000, seed: int = 0) -> GapResult:
    """The pro- against anti-stereotyped likelihood gap of a causal LM on WinoBias pairs."""
    usable = [p for p in pairs if encodable(tokenizer, prefix + p[0]) and encodable(tokenizer, prefix + p[1])]
    if not usable:
        raise ValueError(f"none of the {len(pairs)} WinoBias pairs can be encoded by this tokenizer")
    scores = score_sentences(model, tokenizer, [s for p in usable for s in p], prefix)
    gaps = np.array([scores[2 * i].total - scores[2 * i + 1].total for i in range(len(usable))])
    return GapResult(float(gaps.mean()), bootstrap_ci(gaps, n_boot, seed=seed), float((gaps > 0).mean()),
                     len(usable), len(pairs) - len(usable))
