"""Exercise set 04, attention (solutions/04_attention.ipynb; taught in notebook 04).

Public cases (with the reference's outputs, stored as data) and the grading inputs drawn at grading
time: random queries, keys and values (T = 1 included), head counts that divide C, embeddings of
random sizes, LayerNorm inputs with offsets, constant rows and rows of tiny variance (where eps counts).
"""

from __future__ import annotations

import random

import torch

from ..spec import TOL_EXACT, TOL_FLOAT32_SUMS, Case, Exercise, ExerciseSet, seeded
from .builders import arange, f32, ramp, randint, randn
from .equivalents import forbid


def _attention_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for B, nh, T, hs, scale in [(1, 1, 1, 1, 1.0), (1, 1, 4, 2, 1.0), (2, 3, rng.randint(2, 9), 4, 1.0),
                                (rng.randint(1, 3), rng.randint(1, 4), 16, 8, 1.0), (2, 2, 32, 16, 1.0),
                                (1, 2, rng.randint(3, 12), 8, 4.0)]:
        cases.append(tuple(randn(rng, B, nh, T, hs, scale=scale) for _ in range(3)))
    return cases


def _heads_shapes(rng: random.Random) -> list[tuple[int, int, int, int]]:
    """(B, T, nh, hs) for split and merge: one head, one channel per head, random."""
    return [(1, 1, 1, 1), (2, 3, 1, 4), (1, 4, 6, 1), (rng.randint(1, 3), rng.randint(2, 8), 2, 3),
            (rng.randint(1, 4), rng.randint(1, 10), rng.randint(2, 6), rng.randint(1, 8)), (2, 16, 4, 8)]


def _split_inputs(rng: random.Random) -> list[tuple]:
    return [(randn(rng, B, T, nh * hs), nh) for B, T, nh, hs in _heads_shapes(rng)]


def _merge_inputs(rng: random.Random) -> list[tuple]:
    return [(randn(rng, B, nh, T, hs),) for B, T, nh, hs in _heads_shapes(rng)]


def _embed_inputs(rng: random.Random) -> list[tuple]:
    return [(randint(rng, 0, V, B, T), randn(rng, V, C), randn(rng, block, C, scale=0.1))
            for B, T, block, V, C in [(1, 1, 1, 2, 1), (2, 3, 8, 5, 4), (rng.randint(1, 4), 16, 16, 65, 8),
                                      (rng.randint(1, 3), rng.randint(2, 20), 32, 27, rng.randint(1, 12)),
                                      (4, 5, 64, 100, 16)]]


def _ln_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for shape, offset, eps, scale in [((1, 1), 0.0, 1e-5, 1.0), ((4,), 0.0, 1e-5, 1.0), ((2, 3, 8), 3.0, 1e-5, 1.0),
                                      ((rng.randint(1, 4), rng.randint(1, 6), 32), 10.0, 1e-6, 5.0),
                                      ((5, rng.randint(2, 64)), -2.0, rng.choice([1e-5, 1e-3, 0.1]), 0.1),
                                      ((3, rng.randint(2, 16)), 1.0, 1e-3, 0.01)]:  # variance 1e-4: eps counts
        C = shape[-1]
        cases.append((randn(rng, *shape, scale=scale, offset=offset), seeded(rng, f"1 + 0.2 * torch.randn({C})"),
                      seeded(rng, f"0.2 * torch.randn({C})"), eps))
    C = rng.randint(2, 16)
    rows = torch.full((3, C), float(rng.randint(-5, 5)))  # constant rows: variance 0
    cases.append((rows, randn(rng, C), randn(rng, C), 1e-5))
    return cases


_MODELS = forbid(library="minilm.models")  # attention, split_heads, merge_heads, the GPT's embeddings and LayerNorms

SET = ExerciseSet(
    name="04_attention",
    exercises=(
        Exercise(
            id="causal_attention", points=2, forbidden=forbid("attention", library="minilm.models"), **TOL_FLOAT32_SUMS,
            public=(
                Case((ramp(1, 1, 3, 2), ramp(1, 1, 3, 2, scale=2.0), arange(1, 1, 3, 2)),
                     f32([[[[0.0, 1.0], [1.6760002, 2.6760004], [3.4261503, 4.4261503]]]])),
                Case((ramp(1, 2, 2, 2), ramp(1, 2, 2, 2, scale=-1.0), arange(1, 2, 2, 2)),
                     f32([[[[0.0, 1.0], [0.6108011, 1.6108011]], [[4.0, 5.0], [4.3253932, 5.3253937]]]]),
                     note="two heads"),
                Case((f32([[[[5.0, 1.0]]]]), f32([[[[2.0, 3.0]]]]), f32([[[[7.0, -7.0]]]])), f32([[[[7.0, -7.0]]]]),
                     note="one position: it can only see itself"),
            ),
            draw=_attention_inputs,
            describe_grading="random q, k, v with T from 1 to 32, 1 to 4 heads, head sizes 1 to 16 "
            "(checked against F.scaled_dot_product_attention(is_causal=True))",
        ),
        Exercise(
            id="split_heads", points=1, forbidden=_MODELS, **TOL_EXACT,
            public=(
                Case((arange(1, 2, 6), 2), f32([[[[0.0, 1.0, 2.0], [6.0, 7.0, 8.0]], [[3.0, 4.0, 5.0], [9.0, 10.0, 11.0]]]])),
                Case((arange(2, 1, 6), 3),
                     f32([[[[0.0, 1.0]], [[2.0, 3.0]], [[4.0, 5.0]]], [[[6.0, 7.0]], [[8.0, 9.0]], [[10.0, 11.0]]]]),
                     note="three heads of two channels"),
                Case((arange(1, 2, 4), 1), f32([[[[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]]]]), note="one head"),
            ),
            draw=_split_inputs,
            describe_grading="random (B, T, C) with 1 to 6 heads of 1 to 8 channels",
        ),
        Exercise(
            id="merge_heads", points=1, forbidden=_MODELS, **TOL_EXACT,
            public=(
                Case((arange(1, 2, 2, 3),), f32([[[0.0, 1.0, 2.0, 6.0, 7.0, 8.0], [3.0, 4.0, 5.0, 9.0, 10.0, 11.0]]])),
                Case((arange(2, 3, 1, 2),), f32([[[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]], [[6.0, 7.0, 8.0, 9.0, 10.0, 11.0]]]),
                     note="three heads, one position"),
            ),
            draw=_merge_inputs,
            describe_grading="random (B, nh, T, hs) with 1 to 6 heads of 1 to 8 channels",
        ),
        Exercise(
            id="embed", points=1, forbidden=forbid("embedding lookup", library="minilm.models"), rtol=1e-6, atol=1e-7,
            public=(
                Case((torch.tensor([[0, 2, 1]]), arange(3, 2), ramp(4, 2, scale=0.1)),
                     f32([[[0.084147096, 1.0909297], [4.014112, 4.9243197], [1.9041076, 2.9720585]]]),
                     note="T = 3 of block_size 4"),
                Case((torch.tensor([[1], [1]]), arange(3, 2), ramp(4, 2, scale=0.1)),
                     f32([[[2.084147, 3.0909297]], [[2.084147, 3.0909297]]]), note="one position, two sequences"),
            ),
            draw=_embed_inputs,
            describe_grading="random ids and tables, T from 1 to block_size, C from 1 to 16",
        ),
        Exercise(
            id="layer_norm", points=2, forbidden=forbid("layer normalisation", library="minilm.models"),
            rtol=1e-4, atol=1e-4,
            public=(
                Case((f32([[1.0, 2.0, 3.0, 4.0]]), torch.ones(4), torch.zeros(4), 1e-5),
                     f32([[-1.3416355, -0.44721183, 0.44721183, 1.3416355]])),
                Case((ramp(2, 3, scale=3.0), f32([1.0, 2.0, 0.5]), f32([0.0, 1.0, -1.0]), 1e-5),
                     f32([[0.60718751, 2.6050324, -1.7048516], [-0.32206452, -1.0630434, -0.32320678]]),
                     note="gain and bias"),
                Case((f32([[2.0, 2.0, 2.0]]), torch.ones(3), f32([0.1, 0.2, 0.3]), 1e-5), f32([[0.1, 0.2, 0.30000001]]),
                     note="a constant vector: variance 0, eps keeps it finite"),
                Case((f32([1.0, 2.0, 4.0]), torch.ones(3), torch.zeros(3), 1e-5), f32([-1.0690414, -0.26726028, 1.3363018]),
                     note="1-D: a single vector"),
                Case((ramp(2, 2, 3, scale=2.0) + 1.0, f32([1.0, 0.5, 2.0]), f32([0.0, 0.1, -0.1]), 1e-5),
                     f32([[[0.60718399, 0.50125581, -2.9193900], [-0.32206193, -0.41575649, 2.6071496]],
                          [[-0.12329800, 0.74085158, -2.4168086], [0.68983519, -0.60701835, 1.3484033]]]),
                     note="3-D (B, T, C): each position normalised over its C channels"),
                Case((f32([[1.0, 1.01, 0.99, 1.02]]), torch.ones(4), torch.zeros(4), 1e-3),
                     f32([[-0.14907106757164001, 0.14907106757164001, -0.44721320271492004, 0.44721320271492004]]),
                     note="a tiny variance: eps goes under the square root"),
            ),
            draw=_ln_inputs,
            describe_grading="random x of 1 to 3 dimensions with offsets, random gains, eps from 1e-6 to 0.1, "
            "rows of tiny variance, constant rows (checked against F.layer_norm)",
        ),
    ),
)
