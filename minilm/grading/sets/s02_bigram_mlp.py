"""Exercise set 02, bigram and MLP (solutions/02_bigram_mlp.ipynb; taught in notebook 02).

Public cases (with the reference's outputs, stored as data) and the grading inputs drawn at grading
time: float32 logits up to +-1000, count tables with empty rows, names over shuffled alphabets, MLP
weights of random sizes.
"""

from __future__ import annotations

import random
import string

import torch

from ..spec import TOL_FLOAT32_SUMS, Case, Exercise, ExerciseSet, seeded
from .builders import f32, i64, ramp, randint, randn
from .equivalents import forbid


def _softmax_inputs(rng: random.Random) -> list[tuple]:
    cases = [
        (randn(rng, *shape, scale=scale),)
        for shape, scale in [
            ((rng.randint(2, 9),), 1.0),
            ((rng.randint(2, 5), rng.randint(2, 9)), 3.0),
            ((2, rng.randint(1, 4), rng.randint(2, 7)), 1.0),
            ((3, 50), 10.0),
        ]
    ]
    cases.append((randn(rng, rng.randint(2, 5), rng.randint(2, 8), offset=1000.0),))  # exp overflows
    cases.append((randn(rng, 4, 6, scale=500.0),))  # +-1000 and beyond
    value = float(rng.randint(-1000, 1000))
    cases.append((seeded(rng, f"torch.full((2, {rng.randint(1, 6)}), {value!r})"),))  # all equal
    return cases


def _ce_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for n, c, scale in [(1, 2, 1.0), (rng.randint(2, 6), rng.randint(2, 10), 1.0), (16, 27, 3.0),
                        (rng.randint(2, 8), 5, 1000.0), (64, 65, 0.5), (3, 1, 1.0)]:
        cases.append((randn(rng, n, c, scale=scale), randint(rng, 0, c, n)))
    # confident and right, or confident and wrong: logits near 1000
    n, c = rng.randint(2, 6), rng.randint(2, 6)
    cases.append((seeded(rng, f"torch.randn({n}, {c}) + 1000.0 * torch.eye({n}, {c})"), randint(rng, 0, c, n)))
    return cases


def _counts(rng: random.Random, V: int, empty_rows: bool) -> torch.Tensor:
    if empty_rows:  # characters never seen first
        rows = sorted({rng.randrange(V) for _ in range(max(1, V // 4))})
        return seeded(rng, f"torch.randint(0, 30, ({V}, {V})).index_fill(0, torch.tensor({rows}), 0)")
    return randint(rng, 1, 30, V, V)  # every row has a count


def _bigram_probs_inputs(rng: random.Random) -> list[tuple]:
    cases = [(_counts(rng, V, empty_rows=True), rng.choice([0.5, 1.0, 2.0, 0.01]))
             for V in [1, 2, rng.randint(3, 9), 27, 40]]
    cases += [(_counts(rng, V, empty_rows=False), 0.0) for V in [3, rng.randint(4, 27)]]
    cases.append((torch.zeros(5, 5, dtype=torch.int64), rng.choice([0.1, 1.0, 3.0])))
    return cases


def _nll_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for n_words in [1, 2, 5, 20, 50, 3]:
        alphabet = rng.sample(string.ascii_lowercase, rng.randint(1, 26))
        ids = rng.sample(range(1, len(alphabet) + 1), len(alphabet))  # "." is 0, letters shuffled
        stoi = {".": 0, **dict(zip(alphabet, ids))}
        V = len(stoi)
        probs = seeded(rng, f"(w := torch.rand({V}, {V}) + 0.01) / w.sum(dim=1, keepdim=True)")
        words = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1 if w == 0 else 0, 9)))
                 for w in range(n_words)]  # the first word is never empty
        cases.append((words, stoi, probs))
    return cases


def _mlp_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for B, T, V, E, H in [(1, 1, 2, 1, 1), (2, 3, 27, 2, 8), (rng.randint(1, 8), rng.randint(2, 6), 27, 10, 64),
                          (5, 8, 65, 4, 16), (rng.randint(1, 4), 2, rng.randint(2, 12), rng.randint(2, 6), 3)]:
        cases.append((randint(rng, 0, V, B, T), randn(rng, V, E), randn(rng, T * E, H, scale=(T * E) ** -0.5),
                      randn(rng, H, scale=0.1), randn(rng, H, V, scale=H**-0.5), randn(rng, V, scale=0.1)))
    return cases


_STOI = {".": 0, "a": 1, "b": 2}
_PROBS = f32([[0.2, 0.5, 0.3], [0.4, 0.4, 0.2], [0.6, 0.1, 0.3]])
_MLP = (f32([[0.1, 0.2], [0.3, -0.1], [-0.2, 0.4]]),  # C: V=3, E=2
        f32([[0.5, -0.3], [0.2, 0.1], [-0.4, 0.6], [0.3, 0.3]]), f32([0.1, -0.1]),  # W1 (T*E=4, H=2), b1
        f32([[1.0, -0.5, 0.2], [0.3, 0.8, -1.0]]), f32([0.0, 0.1, -0.1]))  # W2 (H=2, V=3), b2

SET = ExerciseSet(
    name="02_bigram_mlp",
    exercises=(
        Exercise(
            id="softmax", points=1, forbidden=forbid("softmax"), rtol=1e-4, atol=1e-6,
            public=(
                Case((f32([1.0, 2.0, 3.0]),), f32([0.090030573, 0.24472848, 0.66524094])),
                Case((f32([[1000.0, 1000.0, 999.0], [-1000.0, 0.0, 1000.0]]),),
                     f32([[0.42231882, 0.42231882, 0.15536241], [0.0, 0.0, 1.0]]),
                     note="large logits: subtract the max first"),
                Case((f32([[0.0, 0.0], [5.0, -5.0]]),), f32([[0.5, 0.5], [0.99995458, 4.5397868e-05]])),
                Case((ramp(2, 2, 3, scale=3.0),),
                     f32([[[0.42589661, 0.52200449, 0.052098900], [0.17442669, 0.095119983, 0.73045337]],
                          [[0.23865515, 0.64686310, 0.11448174], [0.43912894, 0.11181948, 0.44905156]]]),
                     note="3-D: a batch of sequences, softmax over the last dimension only"),
            ),
            draw=_softmax_inputs,
            describe_grading="1-D to 3-D float32 logits, rows near 1000, logits of size +-1000 and more, equal logits",
        ),
        Exercise(
            id="cross_entropy", points=2, forbidden=forbid("cross-entropy", library="minilm.models.base"),
            **TOL_FLOAT32_SUMS,
            public=(
                Case((f32([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]]), i64([0, 1])), torch.tensor(0.31853974)),
                Case((f32([[1000.0, 0.0], [0.0, 1000.0]]), i64([1, 1])), torch.tensor(500.0),
                     note="large logits: one confident mistake costs 1000"),
                Case((torch.zeros(4, 5), i64([0, 1, 2, 3])), torch.tensor(1.6094379), note="uniform logits: log 5"),
            ),
            draw=_ce_inputs,
            describe_grading="random (N, C) logits up to 65 classes, logits near +-1000, a single class",
        ),
        Exercise(
            id="bigram_probs", points=1, forbidden=forbid("row normalisation", "softmax", library="minilm.models.bigram"),
            rtol=1e-5, atol=1e-7,
            public=(
                Case((i64([[0, 2], [3, 1]]), 1.0), f32([[0.25, 0.75], [0.66666669, 0.33333334]])),
                Case((i64([[1, 0, 3], [0, 0, 0], [2, 2, 0]]), 0.5),
                     f32([[0.27272728, 0.090909094, 0.63636363], [0.33333334, 0.33333334, 0.33333334],
                          [0.45454547, 0.45454547, 0.090909094]]),
                     note="a row never seen becomes uniform"),
                Case((i64([[2, 2], [1, 3]]), 0.0), f32([[0.5, 0.5], [0.25, 0.75]]), note="no smoothing"),
            ),
            draw=_bigram_probs_inputs,
            describe_grading="random count tables from 1x1 to 40x40, rows of zeros, k from 0 to 3",
        ),
        Exercise(
            id="bigram_nll", points=2, rtol=1e-4, atol=1e-6,
            forbidden=forbid("negative log-likelihood", library=("minilm.models.bigram", "minilm.data.names")),
            public=(
                Case((["ab"], _STOI, _PROBS), 0.9378035664558411, note="pairs (., a), (a, b), (b, .)"),
                Case((["", "a"], _STOI, _PROBS), 1.0729586084683735, note="the empty name is the pair (., .)"),
                Case((["ba", "ab", "bb"], _STOI, _PROBS), 1.1283367276191711),
            ),
            draw=_nll_inputs,
            describe_grading="1 to 50 random names (some empty) over shuffled alphabets, random probability tables",
        ),
        Exercise(
            id="mlp_forward", points=2, forbidden=forbid("linear layer", "embedding lookup", library="minilm.models.mlp"),
            **TOL_FLOAT32_SUMS,
            public=(
                Case((i64([[0, 1], [2, 2]]), *_MLP),
                     f32([[0.051972285, 0.11199362, -0.13198295], [0.27290508, -0.036452539, -0.045418985]])),
                Case((i64([[1, 0]]), *_MLP), f32([[0.22096975, -0.086323164, 0.028813504]]),
                     note="the order of the window matters"),
            ),
            draw=_mlp_inputs,
            describe_grading="random windows and weights, T from 1 to 8, V up to 65, H up to 64",
        ),
    ),
)
