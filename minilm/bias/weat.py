"""WEAT (Caliskan et al. 2017) for any embedding function, and SEAT (May et al. 2019) for sentence encoders.

For target word sets X, Y and attribute sets A, B (e.g. flowers, insects; pleasant, unpleasant):

    s(w, A, B) = mean_a cos(w, a) - mean_b cos(w, b)
    effect size d = (mean_{x in X} s(x, A, B) - mean_{y in Y} s(y, A, B)) / std_{w in X u Y} s(w, A, B)

(the sample standard deviation, ddof=1, as May et al.'s SEAT code computes it; WEFE divides by the
population one, ddof=0, which makes its d smaller by the factor sqrt((n - 1) / n), n = |X| + |Y|).

The one-sided permutation p-value is the share of equal-size re-partitions (X_i, Y_i) of X u Y whose
test statistic sum_x s(x) - sum_y s(y) is at least (`>=`) the observed one, the observed partition
and ties included: exact when there are few partitions, else estimated from random ones plus the
observed one, (hits + 1) / (n_perm + 1), so p is never 0. Caliskan et al. write the p-value with a
strict `>` (`strict=True` computes that): the two differ by the ties and the observed partition, at
least 1 / (number of partitions), so ours is the larger, the conservative one. SEAT puts each word
into bleached sentence templates ("This is a flower.") and runs WEAT on the sentence embeddings;
its p-value treats the |templates| sentences of one word as independent samples, which they are
not, so it comes out smaller than it should (anticonservative; May et al. 2019 say so).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Embed = Callable[[list[str]], np.ndarray]  # list of n strings -> (n, d) embeddings

# Caliskan et al. (2017), Table 1 (GloVe, Common Crawl): effect sizes d of the tests run in notebook 08.
CALISKAN_GLOVE = {"flowers/insects": 1.50, "instruments/weapons": 1.53, "career/family": 1.81,
                  "math/arts": 1.06, "science/arts": 1.24}
# (X, Y, A, B) set names in WEAT.json for those tests
WEAT_TESTS = {
    "flowers/insects": ("flowers", "insects", "pleasant_5", "unpleasant_5a"),
    "instruments/weapons": ("instruments", "weapons", "pleasant_5", "unpleasant_5a"),
    "career/family": ("male_names", "female_names", "career", "family"),
    "math/arts": ("male_terms", "female_terms", "math", "arts"),
    "science/arts": ("male_terms_2", "female_terms_2", "science", "arts_2"),
}
SEAT_TEMPLATES = ("This is {}.", "That is {}.", "There is {}.", "Here is {}.", "{} is here.", "It is {}.")


def load_weat(path: str | Path | None = None) -> dict[str, list[str]]:
    """The 31 WEAT word sets (WEFE's WEAT.json; default: the registry's "weat") by name."""
    if path is None:
        from ..data.datasets import path as data_path

        path = data_path("weat", "WEAT.json")
    sets = json.loads(Path(path).read_text(encoding="utf-8"))
    empty = [name for name, words in sets.items() if not words]
    if empty:
        raise ValueError(f"{path}: the word set(s) {', '.join(empty)} are empty")
    return sets


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def association(w: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """s(w, A, B) for each row of w (n, d) against A (na, d), B (nb, d): (n,)."""
    w, a, b = _unit(w), _unit(a), _unit(b)
    return (w @ a.T).mean(axis=1) - (w @ b.T).mean(axis=1)


def _check_sets(named: dict[str, np.ndarray]) -> None:
    for name, v in named.items():
        if len(v) == 0:
            raise ValueError(f"WEAT: the word set {name} is empty; every set needs at least one word "
                             "(X and Y together at least three, to have a standard deviation)")


def effect_size(x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """WEAT effect size d of embeddings X, Y (targets) and A, B (attributes), each (n_i, d)."""
    _check_sets({"X": x, "Y": y, "A": a, "B": b})
    sx, sy = association(x, a, b), association(y, a, b)
    return float((sx.mean() - sy.mean()) / np.concatenate([sx, sy]).std(ddof=1))


def p_value(x: np.ndarray, y: np.ndarray, a: np.ndarray, b: np.ndarray, n_perm: int = 10_000,
            seed: int = 0, exact_limit: int = 100_000, strict: bool = False) -> float:
    """One-sided permutation p-value: P(s(X_i, Y_i) >= s(X, Y)) over equal-size splits of X u Y.

    Exact (every split) when there are at most `exact_limit`; else `n_perm` random splits, with the
    observed split counted in (so p is never 0). strict=True: Caliskan et al.'s P(s(X_i, Y_i) > s(X, Y)),
    ties and the observed split not counted (sampled: hits / n_perm, which can be 0)."""
    _check_sets({"X": x, "Y": y, "A": a, "B": b})
    s = np.concatenate([association(x, a, b), association(y, a, b)])
    nx, n = len(x), len(x) + len(y)
    total = s.sum()
    observed = s[:nx].sum() - s[nx:].sum()
    eps = 1e-12 * max(1.0, abs(observed))

    def reaches(stat: np.ndarray) -> np.ndarray:  # float rounding: a tie is a tie
        return stat > observed + eps if strict else stat >= observed - eps

    if math.comb(n, nx) <= exact_limit:
        stats = np.array([2 * s[list(idx)].sum() - total for idx in itertools.combinations(range(n), nx)])
        return float(reaches(stats).mean())
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(n_perm):
        idx = rng.permutation(n)[:nx]
        hits += bool(reaches(2 * s[idx].sum() - total))
    return float(hits / n_perm) if strict else float((hits + 1) / (n_perm + 1))


@dataclass
class WEATResult:
    """One WEAT test: effect size d, permutation p-value, set sizes."""

    name: str
    effect_size: float
    p_value: float
    sizes: tuple[int, int, int, int]


def weat(embed: Embed, X: Sequence[str], Y: Sequence[str], A: Sequence[str], B: Sequence[str], name: str = "",
         n_perm: int = 10_000, seed: int = 0) -> WEATResult:
    """WEAT on words through any embedding function `embed(list[str]) -> (n, d)`."""
    named = {"X": list(X), "Y": list(Y), "A": list(A), "B": list(B)}
    for key, words in named.items():
        if not words:
            raise ValueError(f"WEAT {name or ''}: the word set {key} is empty; pass at least one word".replace("  ", " "))
    vecs = {k: np.asarray(embed(v)) for k, v in named.items()}
    return WEATResult(name, effect_size(*vecs.values()), p_value(*vecs.values(), n_perm=n_perm, seed=seed),
                      tuple(len(v) for v in named.values()))


def weat_test(embed: Embed, test: str, sets: dict[str, list[str]] | None = None, **kw) -> WEATResult:
    """Run one of WEAT_TESTS by name ("flowers/insects", ...) on the WEAT.json word sets."""
    if test not in WEAT_TESTS:
        raise KeyError(f"unknown WEAT test {test!r}; known: {', '.join(WEAT_TESTS)}")
    sets = sets if sets is not None else load_weat()
    names = WEAT_TESTS[test]
    for n in names:
        if not sets.get(n):
            raise ValueError(f"WEAT {test}: the word set {n!r} is missing or empty")
    return weat(embed, *(sets[n] for n in names), name=test, **kw)


def seat_sentences(words: Sequence[str], templates: Sequence[str] = SEAT_TEMPLATES) -> list[str]:
    """Every word in every bleached template: len(words) * len(templates) sentences."""
    for t in templates:
        if t.count("{}") != 1:
            raise ValueError(f"the SEAT template {t!r} needs exactly one slot {{}} for the word")
    return [t.format(w) for w in words for t in templates]


def seat(encode: Embed, X: Sequence[str], Y: Sequence[str], A: Sequence[str], B: Sequence[str], name: str = "",
         templates: Sequence[str] = SEAT_TEMPLATES, n_perm: int = 10_000, seed: int = 0) -> WEATResult:
    """SEAT (May et al. 2019): WEAT over the sentence embeddings of each word put into each template."""
    named = {"X": X, "Y": Y, "A": A, "B": B}
    for key, words in named.items():
        if not words:
            raise ValueError(f"SEAT {name}: the word set {key} is empty; pass at least one word")
    return weat(encode, *(seat_sentences(v, templates) for v in named.values()), name=name, n_perm=n_perm, seed=seed)
