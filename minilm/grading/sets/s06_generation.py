"""Exercise set 06, generation and fast inference (solutions/06_generation.ipynb; taught in notebook 06).

Public cases (with the reference's outputs, stored as data) and the grading inputs drawn at grading
time: logits with ties and k beyond the vocabulary, probabilities with ties at the nucleus edge
and top_p of 1, temperature 0 and hot/cold sampling with given seeds, KV-cache steps from an empty
cache up to 24 cached positions, int8 weights with all-zero rows and rows of very different scales,
int4 values to pack.
"""

from __future__ import annotations

import random

import torch

from ..spec import Case, Exercise, ExerciseSet, seeded


def _logit_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for B, V, ties in [(1, 1, False), (2, 5, False), (3, 8, True), (rng.randint(1, 4), 65, False),
                       (rng.randint(1, 3), rng.randint(2, 30), True)]:
        code = f"torch.randint(0, 4, ({B}, {V})).float()" if ties else f"torch.randn({B}, {V}) * 2.0"
        k = rng.choice([1, rng.randint(1, V), V, V + rng.randint(1, 5)])
        cases.append((seeded(rng, code), k))
    return cases


def _probs_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for B, V, ties in [(1, 1, False), (2, 6, False), (3, 10, True), (rng.randint(1, 4), 65, False),
                       (2, rng.randint(2, 20), True)]:
        logits = f"torch.randint(0, 3, ({B}, {V})).float()" if ties else f"torch.randn({B}, {V}) * 2.0"
        top_p = rng.choice([round(rng.uniform(0.05, 0.95), 4), 1.0, 1e-3])
        cases.append((seeded(rng, f"torch.softmax({logits}, dim=-1)"), top_p))
    return cases


def _sample_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for B, V, temperature in [(1, 2, 1.0), (2, 5, 0.0), (3, 10, 0.5), (rng.randint(1, 4), 65, 2.0),
                              (2, rng.randint(2, 30), rng.choice([0.1, 0.8, 1.5]))]:
        cases.append((seeded(rng, f"torch.randn({B}, {V}) * 2.0"), temperature, rng.randrange(10_000)))
    return cases


def _kv_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for B, nh, S, hs in [(1, 1, 0, 1), (1, 1, 1, 2), (2, 3, rng.randint(2, 9), 4),
                         (rng.randint(1, 3), rng.randint(1, 4), 24, 8), (2, 2, rng.randint(0, 5), 16)]:
        new = [seeded(rng, f"torch.randn({B}, {nh}, 1, {hs})") for _ in range(3)]
        cache = [seeded(rng, f"torch.randn({B}, {nh}, {S}, {hs})") for _ in range(2)]
        cases.append((*new, *cache))
    return cases


def _weight_inputs(rng: random.Random) -> list[tuple]:
    cases = [(seeded(rng, f"torch.randn({o}, {i}) * {s!r}"),)
             for o, i, s in [(1, 1, 1.0), (3, 4, 0.02), (rng.randint(2, 16), rng.randint(2, 64), 1.0),
                             (8, 8, 100.0)]]
    rows = rng.randint(3, 8)
    cases.append((seeded(rng, f"torch.randn({rows}, 12) * torch.logspace(-3, 1, {rows})[:, None]"),))
    cases.append((seeded(rng, f"torch.randn(4, 6) * (torch.arange(4) != {rng.randrange(4)})[:, None]"),))  # a zero row
    return cases


def _quantized_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for o, i in [(1, 1), (3, 4), (rng.randint(2, 16), rng.randint(2, 64)), (8, rng.randint(1, 8)), (32, 48)]:
        q = seeded(rng, f"torch.randint(-127, 128, ({o}, {i}), dtype=torch.int8)")
        cases.append((q, seeded(rng, f"torch.rand({o}) * 0.05 + 1e-4")))
    return cases


def _int4_inputs(rng: random.Random) -> list[tuple]:
    shapes = [(1, 2), (2, 4), (rng.randint(2, 16), 2 * rng.randint(1, 32)), (8, 64), (rng.randint(1, 4), 2)]
    return [(seeded(rng, f"torch.randint(-8, 8, ({o}, {i}), dtype=torch.int8)"),) for o, i in shapes]


def _f(values: list) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


_NEG = float("-inf")
_PROBS = _f([[0.5, 0.25, 0.125, 0.125], [0.1, 0.6, 0.2, 0.1]])
_SCORES = _f([[2.0, 1.0, 0.0, -1.0, 0.5], [0.0, 0.0, 0.0, 0.0, 0.0]])
_W = _f([[1.0, -0.3, 0.2], [0.0, 0.0, 0.0], [-2.0, 0.9, 0.01]])
_Q8 = torch.tensor([[127, -38, 25], [0, 0, 0], [-127, 57, 1]], dtype=torch.int8)
_SCALE = _f([0.007874015718698502, 1.0, 0.015748031437397003])

# what each exercise reimplements, in PyTorch and in the library (a module: all of it)
_SAMPLING = ("minilm.generation",)
_ATTENTION = (
    "minilm.models",
    "minilm.generation",
    "torch.nn.functional.scaled_dot_product_attention",
    "torch.ops.aten._scaled_dot_product_flash_attention_for_cpu",
    "torch.ops.aten._scaled_dot_product_attention_math",
    "torch.nn.functional.multi_head_attention_forward",
    "torch.nn.MultiheadAttention",
)
_QUANT = (
    "minilm.quantize",
    "torch.quantize_per_channel",
    "torch.quantize_per_tensor",
    "torch.fake_quantize_per_channel_affine",
    "torch.fake_quantize_per_tensor_affine",
    "torch.Tensor.dequantize",
    "torch.Tensor.int_repr",
)

SET = ExerciseSet(
    name="06_generation",
    exercises=(
        Exercise(
            id="top_k_filter",
            forbidden=_SAMPLING,
            points=1,
            public=(
                Case((_f([[0.0, 3.0, 2.0, -1.0, 2.5]]), 2), _f([[_NEG, 3.0, _NEG, _NEG, 2.5]])),
                Case((_f([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]]), 1),
                     _f([[_NEG, 3.0, 3.0, _NEG], [2.0, 2.0, 2.0, 2.0]]), note="ties with the k-th are kept"),
                Case((_f([[0.5, -0.5]]), 5), _f([[0.5, -0.5]]), note="k larger than the vocabulary"),
            ),
            grading=_logit_inputs,
            describe_grading="random logits (1 to 4 rows, 1 to 65 tokens), integer logits with many ties, "
            "k = 1, k = V and k > V (checked against minilm.generation.top_k_filter)",
        ),
        Exercise(
            id="top_p_mask",
            forbidden=_SAMPLING,
            points=2,
            public=(
                Case((_PROBS[:1], 0.5), torch.tensor([[True, False, False, False]]),
                     note="one token already reaches 0.5"),
                Case((_PROBS, 0.8), torch.tensor([[True, True, True, True], [False, True, True, False]]),
                     note="the third token is needed, and its tie comes with it"),
                Case((_PROBS[1:], 0.01), torch.tensor([[False, True, False, False]]),
                     note="the most likely token is always kept"),
                Case((_f([[0.25, 0.25, 0.25, 0.25]]), 0.3), torch.tensor([[True, True, True, True]]),
                     note="all tied"),
                Case((_PROBS, 1.0), torch.ones(2, 4, dtype=torch.bool), note="top_p = 1 keeps everything"),
            ),
            grading=_probs_inputs,
            describe_grading="softmax of random and of tied integer logits (1 to 65 tokens), top_p from "
            "0.001 to 1 (checked against minilm.generation.top_p_mask)",
        ),
        Exercise(
            id="sample_with_temperature",
            forbidden=_SAMPLING,
            points=1,
            public=(
                Case((_SCORES, 1.0, 0), torch.tensor([[1], [1]])),
                Case((_SCORES, 0.0, 0), torch.tensor([[0], [0]]), note="temperature 0: greedy (first maximum)"),
                Case((_SCORES, 0.5, 3), torch.tensor([[0], [1]]), note="colder"),
                Case((_SCORES, 100.0, 1), torch.tensor([[0], [0]]), note="hot: nearly uniform"),
            ),
            grading=_sample_inputs,
            describe_grading="random logits (1 to 4 rows, 2 to 65 tokens), temperatures 0 to 2, random seeds "
            "(checked against minilm.generation.sample_next)",
        ),
        Exercise(
            id="kv_attention_step",
            forbidden=_ATTENTION,
            points=2,
            public=(
                Case((_f([[[[1.0, 0.0]]]]), _f([[[[0.0, 1.0]]]]), _f([[[[3.0, -1.0]]]]),
                      torch.zeros(1, 1, 0, 2), torch.zeros(1, 1, 0, 2)),
                     (_f([[[[3.0, -1.0]]]]), _f([[[[0.0, 1.0]]]]), _f([[[[3.0, -1.0]]]])),
                     note="an empty cache: the token sees only itself"),
                Case((_f([[[[0.8414709568023682, 0.9092974066734314]]]]),
                      _f([[[[1.6829419136047363, 1.8185948133468628]]]]), _f([[[[4.0, 5.0]]]]),
                      _f([[[[-0.8414709568023682, -0.9092974066734314], [-0.14112000167369843, 0.756802499294281]]]]),
                      _f([[[[0.0, 1.0], [2.0, 3.0]]]])),
                     (_f([[[[3.5902249813079834, 4.590224742889404]]]]),
                      _f([[[[-0.8414709568023682, -0.9092974066734314], [-0.14112000167369843, 0.756802499294281],
                             [1.6829419136047363, 1.8185948133468628]]]]),
                      _f([[[[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]]])),
                     note="two cached positions"),
            ),
            grading=_kv_inputs,
            describe_grading="random steps with 1 to 3 sequences, 1 to 4 heads, head sizes 1 to 16 and 0 to 24 "
            "cached positions (checked against F.scaled_dot_product_attention on the whole sequence)",
            rtol=1e-4,
            atol=1e-5,
        ),
        Exercise(
            id="int8_quantize",
            forbidden=_QUANT,
            points=2,
            public=(
                Case((_W,), (_Q8, _SCALE), note="an all-zero row gets scale 1"),
                Case((_f([[0.5]]),), (torch.tensor([[127]], dtype=torch.int8), _f([0.003937007859349251]))),
            ),
            grading=_weight_inputs,
            describe_grading="random weights from 1 x 1 to 16 x 64, tiny and huge scales, rows whose scales "
            "span 10,000x, an all-zero row (checked against minilm.quantize.quantize_int8)",
        ),
        Exercise(
            id="int8_dequantize",
            forbidden=_QUANT,
            points=1,
            public=(
                Case((_Q8, _SCALE), _f([[1.0, -0.29921260476112366, 0.19685038924217224], [0.0, 0.0, 0.0],
                                       [-2.0, 0.8976377844810486, 0.015748031437397003]])),
            ),
            grading=_quantized_inputs,
            describe_grading="random int8 matrices from 1 x 1 to 32 x 64 with random scales "
            "(checked against minilm.quantize.dequantize_int8)",
        ),
        Exercise(
            id="int4_pack",
            forbidden=_QUANT,
            points=1,
            public=(
                Case((torch.tensor([[7, -7, 0, 3]], dtype=torch.int8),),
                     torch.tensor([[31, 184]], dtype=torch.uint8)),
                Case((torch.tensor([[-8, 7]], dtype=torch.int8),), torch.tensor([[240]], dtype=torch.uint8),
                     note="the extremes: 0 low, 15 high"),
                Case((torch.tensor([[0, 0], [1, -1]], dtype=torch.int8),),
                     torch.tensor([[136], [121]], dtype=torch.uint8), note="two rows"),
            ),
            grading=_int4_inputs,
            describe_grading="random int4 values in int8 matrices from 1 x 2 to 16 x 64 "
            "(checked against minilm.quantize.pack_int4)",
        ),
    ),
)
