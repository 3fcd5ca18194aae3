"""Exercise set 06, generation and fast inference (solutions/06_generation.ipynb; taught in notebook 06).

Public cases (with the reference's outputs, stored as data) and the grading inputs drawn at grading
time: logits with ties at the k-th place and k below the vocabulary (one case k beyond it), nuclei of
two tokens or more that stop short of the vocabulary, an exact boundary and ties at the nucleus edge,
temperature 0 and hot/cold sampling of many rows with given seeds, KV-cache steps from an empty cache
up to 24 cached positions, int8 weights with all-zero rows and rows of very different scales, int4
values to pack.
"""

from __future__ import annotations

import random

import torch

from ..spec import TOL_FLOAT32_SUMS, Case, Exercise, ExerciseSet, seeded
from .builders import NEG_INF, f32, randint, randn, softmax_of, tied_logits
from .equivalents import forbid


def _tied_k(rng: random.Random, row: torch.Tensor) -> int:
    """A k < V whose k-th largest value of `row` ties with the next (any k < V when none does)."""
    values = row.sort(descending=True).values.tolist()
    tied = [k for k in range(1, len(values)) if values[k - 1] == values[k]]
    return rng.choice(tied) if tied else rng.randint(1, len(values) - 1)


def _logit_inputs(rng: random.Random) -> list[tuple]:
    cases = [(randn(rng, B, V, scale=2.0), rng.randint(1, V - 1))  # k below V: something is filtered
             for B, V in [(2, 5), (rng.randint(1, 4), 65), (1, rng.randint(2, 10))]]
    for B, V in [(3, 8), (rng.randint(1, 3), rng.randint(3, 30))]:  # ties straddle the k-th place in row 0
        logits = tied_logits(rng, B, V, 4)
        cases.append((logits, _tied_k(rng, logits[0])))
    cases.append((randn(rng, 2, 4, scale=2.0), 4 + rng.randint(1, 5)))  # k beyond V: nothing filtered
    return cases


def _inside(rng: random.Random, probs: torch.Tensor, ties: bool = False) -> float:
    """A top_p strictly between two cumulative sums of row 0, so its nucleus holds 2 to V - 1 tokens
    (with `ties`, an edge where the last token in ties with the first one out, when there is one)."""
    p = probs[0].sort(descending=True).values.tolist()
    cum = torch.tensor(p, dtype=torch.float64).cumsum(0).tolist()
    edges = list(range(1, len(cum) - 1))
    tied = [j for j in edges if p[j] == p[j + 1]]
    j = rng.choice(tied if ties and tied else edges)
    return round(cum[j - 1] + (cum[j] - cum[j - 1]) * rng.uniform(0.1, 0.9), 6)


def _dyadic(rng: random.Random, B: int, V: int) -> torch.Tensor:
    """Rows of 1/2, 1/4, ..., 2^-(V-1), 2^-(V-1) in a random order: every cumulative sum is exact."""
    return seeded(rng, f"torch.stack([(2.0 ** -torch.arange(1, {V + 1}).clamp(max={V - 1}))[torch.randperm({V})] "
                       f"for _ in range({B})])")


def _probs_inputs(rng: random.Random) -> list[tuple]:
    cases = [(softmax_of(rng, "torch.randn(1, 1)"), rng.choice([0.3, 0.9]))]
    for B, V in [(2, 6), (rng.randint(1, 4), 65)]:
        probs = softmax_of(rng, f"torch.randn({B}, {V}) * 2.0")
        cases.append((probs, _inside(rng, probs)))
    for B, V in [(3, 10), (2, rng.randint(4, 20))]:
        probs = softmax_of(rng, f"torch.randint(0, 3, ({B}, {V})).float()")
        cases.append((probs, _inside(rng, probs, ties=True)))
    V = rng.randint(3, 12)
    probs = _dyadic(rng, 2, V)
    exact = float(probs[0].sort(descending=True).values.cumsum(0)[rng.randrange(V - 2)])  # on a boundary
    cases.append((probs, exact))
    cases.append((softmax_of(rng, f"torch.randn(2, {rng.randint(2, 20)}) * 2.0"), 1e-3))  # the top token alone
    return cases


def _sample_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for B, V, temperature in [(1, 2, 1.0), (3, 10, 0.5), (rng.randint(1, 4), 65, 2.0),
                              (2, rng.randint(2, 30), rng.choice([0.1, 0.8, 1.5])),
                              (32, 8, rng.choice([0.25, 0.5, 2.0, 4.0]))]:  # many rows: one draw each
        cases.append((randn(rng, B, V, scale=2.0), temperature, rng.randrange(10_000)))
    tops = sorted(rng.sample(range(6), 2))  # temperature 0 with two tied maxima in every row: the first one wins
    cases.insert(1, (seeded(rng, f"torch.randint(0, 3, (4, 6)).float().index_fill(1, torch.tensor({tops}), 3.0)"),
                     0.0, rng.randrange(10_000)))
    return cases


def _kv_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for B, nh, S, hs in [(1, 1, 0, 1), (1, 1, 1, 2), (2, 3, rng.randint(2, 9), 4),
                         (rng.randint(1, 3), rng.randint(1, 4), 24, 8), (2, 2, rng.randint(0, 5), 16)]:
        new = [randn(rng, B, nh, 1, hs) for _ in range(3)]
        cases.append((*new, *(randn(rng, B, nh, S, hs) for _ in range(2))))
    return cases


def _weight_inputs(rng: random.Random) -> list[tuple]:
    cases = [(randn(rng, o, i, scale=s),)
             for o, i, s in [(1, 1, 1.0), (3, 4, 0.02), (rng.randint(2, 16), rng.randint(2, 64), 1.0), (8, 8, 100.0)]]
    rows = rng.randint(3, 8)
    cases.append((seeded(rng, f"torch.randn({rows}, 12) * torch.logspace(-3, 1, {rows})[:, None]"),))
    cases.append((seeded(rng, f"torch.randn(4, 6) * (torch.arange(4) != {rng.randrange(4)})[:, None]"),))  # a zero row
    return cases


def _quantized_inputs(rng: random.Random) -> list[tuple]:
    return [(randint(rng, -127, 128, o, i, dtype="torch.int8"), seeded(rng, f"torch.rand({o}) * 0.05 + 1e-4"))
            for o, i in [(1, 1), (3, 4), (rng.randint(2, 16), rng.randint(2, 64)), (8, rng.randint(1, 8)), (32, 48)]]


def _int4_inputs(rng: random.Random) -> list[tuple]:
    shapes = [(1, 2), (2, 4), (rng.randint(2, 16), 2 * rng.randint(1, 32)), (8, 64), (rng.randint(1, 4), 2)]
    return [(randint(rng, -8, 8, o, i, dtype="torch.int8"),) for o, i in shapes]


_PROBS = f32([[0.5, 0.25, 0.125, 0.125], [0.1, 0.6, 0.2, 0.1]])
_SCORES = f32([[2.0, 1.0, 0.0, -1.0, 0.5], [0.0, 0.0, 0.0, 0.0, 0.0]])
_W = f32([[1.0, -0.3, 0.2], [0.0, 0.0, 0.0], [-2.0, 0.9, 0.01]])
_Q8 = torch.tensor([[127, -38, 25], [0, 0, 0], [-127, 57, 1]], dtype=torch.int8)
_SCALE = f32([0.007874015718698502, 1.0, 0.015748031437397003])
_QUANT = forbid("int8 quantization", library="minilm.generation.quantize")
_SAMPLING = "minilm.generation.sampling"

SET = ExerciseSet(
    name="06_generation",
    exercises=(
        Exercise(
            id="top_k_filter", points=1, forbidden=forbid("top-k filter", library=_SAMPLING),
            public=(
                Case((f32([[0.0, 3.0, 2.0, -1.0, 2.5]]), 2), f32([[NEG_INF, 3.0, NEG_INF, NEG_INF, 2.5]])),
                Case((f32([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0]]), 1),
                     f32([[NEG_INF, 3.0, 3.0, NEG_INF], [2.0, 2.0, 2.0, 2.0]]), note="ties with the k-th are kept"),
                Case((f32([[0.5, -0.5]]), 5), f32([[0.5, -0.5]]), note="k larger than the vocabulary"),
            ),
            draw=_logit_inputs,
            describe_grading="random logits (1 to 4 rows, 2 to 65 tokens) with k below the vocabulary, integer "
            "logits tied at the k-th place, one k beyond the vocabulary (checked against minilm.generation.top_k_filter)",
        ),
        Exercise(
            id="top_p_mask", points=2, forbidden=forbid("top-p nucleus", library=_SAMPLING),
            public=(
                Case((_PROBS[:1], 0.5), torch.tensor([[True, False, False, False]]), note="one token already reaches 0.5"),
                Case((_PROBS, 0.8), torch.tensor([[True, True, True, True], [False, True, True, False]]),
                     note="the third token is needed, and its tie comes with it"),
                Case((_PROBS[1:], 0.01), torch.tensor([[False, True, False, False]]),
                     note="the most likely token is always kept"),
                Case((f32([[0.25, 0.25, 0.25, 0.25]]), 0.3), torch.tensor([[True, True, True, True]]), note="all tied"),
                Case((_PROBS, 1.0), torch.ones(2, 4, dtype=torch.bool), note="top_p = 1 keeps everything"),
                Case((_PROBS, 0.65), torch.tensor([[True, True, False, False], [False, True, True, False]]), note="two tokens in row 0; in row 1 the mass before the second is 0.6"),
            ),
            draw=_probs_inputs,
            describe_grading="softmax of random and of tied integer logits (1 to 65 tokens) with nuclei of 2 tokens "
            "or more that leave some out, ties at the edge, top_p exactly on a boundary, top_p = 0.001 "
            "(checked against minilm.generation.top_p_mask)",
        ),
        Exercise(
            id="sample_with_temperature", points=1, forbidden=forbid("temperature sampling", library=_SAMPLING),
            public=(
                Case((_SCORES, 1.0, 0), torch.tensor([[1], [1]])),
                Case((_SCORES, 0.0, 0), torch.tensor([[0], [0]]), note="temperature 0: greedy (first maximum)"),
                Case((_SCORES, 0.5, 3), torch.tensor([[0], [1]]), note="colder"),
                Case((_SCORES, 100.0, 1), torch.tensor([[0], [0]]), note="hot: nearly uniform"),
                Case((_SCORES.repeat(8, 1), 0.25, 5),
                     torch.tensor([[0], [4], [0], [0], [0], [2], [0], [0], [0], [2], [0], [1], [0], [1], [0], [3]]), note="16 rows, cold: one draw per row"),
            ),
            draw=_sample_inputs,
            describe_grading="random logits (1 to 32 rows, 2 to 65 tokens), temperatures 0 to 4, random seeds "
            "(checked against minilm.generation.sample_next)",
        ),
        Exercise(
            id="kv_attention_step", points=2, forbidden=forbid("attention", library=("minilm.models", _SAMPLING)),
            **TOL_FLOAT32_SUMS,
            public=(
                Case((f32([[[[1.0, 0.0]]]]), f32([[[[0.0, 1.0]]]]), f32([[[[3.0, -1.0]]]]),
                      torch.zeros(1, 1, 0, 2), torch.zeros(1, 1, 0, 2)),
                     (f32([[[[3.0, -1.0]]]]), f32([[[[0.0, 1.0]]]]), f32([[[[3.0, -1.0]]]])),
                     note="an empty cache: the token sees only itself"),
                Case((f32([[[[0.8414709568023682, 0.9092974066734314]]]]),
                      f32([[[[1.6829419136047363, 1.8185948133468628]]]]), f32([[[[4.0, 5.0]]]]),
                      f32([[[[-0.8414709568023682, -0.9092974066734314], [-0.14112000167369843, 0.756802499294281]]]]),
                      f32([[[[0.0, 1.0], [2.0, 3.0]]]])),
                     (f32([[[[3.5902249813079834, 4.590224742889404]]]]),
                      f32([[[[-0.8414709568023682, -0.9092974066734314], [-0.14112000167369843, 0.756802499294281],
                              [1.6829419136047363, 1.8185948133468628]]]]),
                      f32([[[[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]]])),
                     note="two cached positions"),
            ),
            draw=_kv_inputs,
            describe_grading="random steps with 1 to 3 sequences, 1 to 4 heads, head sizes 1 to 16 and 0 to 24 "
            "cached positions (checked against F.scaled_dot_product_attention on the whole sequence)",
        ),
        Exercise(
            id="int8_quantize", points=2, forbidden=_QUANT,
            public=(
                Case((_W,), (_Q8, _SCALE), note="an all-zero row gets scale 1"),
                Case((f32([[0.5]]),), (torch.tensor([[127]], dtype=torch.int8), f32([0.003937007859349251]))),
            ),
            draw=_weight_inputs,
            describe_grading="random weights from 1 x 1 to 16 x 64, tiny and huge scales, rows whose scales "
            "span 10,000x, an all-zero row (checked against minilm.generation.quantize.quantize_int8)",
        ),
        Exercise(
            id="int8_dequantize", points=1, forbidden=_QUANT,
            public=(
                Case((_Q8, _SCALE), f32([[1.0, -0.29921260476112366, 0.19685038924217224], [0.0, 0.0, 0.0],
                                         [-2.0, 0.8976377844810486, 0.015748031437397003]])),
            ),
            draw=_quantized_inputs,
            describe_grading="random int8 matrices from 1 x 1 to 32 x 64 with random scales "
            "(checked against minilm.generation.quantize.dequantize_int8)",
        ),
        Exercise(
            id="int4_pack", points=1, forbidden=_QUANT,
            public=(
                Case((torch.tensor([[7, -7, 0, 3]], dtype=torch.int8),), torch.tensor([[31, 184]], dtype=torch.uint8)),
                Case((torch.tensor([[-8, 7]], dtype=torch.int8),), torch.tensor([[240]], dtype=torch.uint8),
                     note="the extremes: 0 low, 15 high"),
                Case((torch.tensor([[0, 0], [1, -1]], dtype=torch.int8),), torch.tensor([[136], [121]], dtype=torch.uint8),
                     note="two rows"),
            ),
            draw=_int4_inputs,
            describe_grading="random int4 values in int8 matrices from 1 x 2 to 16 x 64 "
            "(checked against minilm.generation.quantize.pack_int4)",
        ),
    ),
)
