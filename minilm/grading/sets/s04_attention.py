"""Exercise set 04, attention (solutions/04_attention.ipynb; taught in notebook 04).

Public cases (with the reference's outputs, stored as data) and the grading inputs drawn at grading
time: random queries, keys and values (T = 1 included), head counts that divide C, embeddings of
random sizes, LayerNorm inputs with offsets and constant rows.
"""

from __future__ import annotations

import random

import torch

from ..spec import Case, Exercise, ExerciseSet, seeded


def _attention_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for B, nh, T, hs, scale in [
        (1, 1, 1, 1, 1.0),
        (1, 1, 4, 2, 1.0),
        (2, 3, rng.randint(2, 9), 4, 1.0),
        (rng.randint(1, 3), rng.randint(1, 4), 16, 8, 1.0),
        (2, 2, 32, 16, 1.0),
        (1, 2, rng.randint(3, 12), 8, 4.0),
    ]:
        code = f"torch.randn({B}, {nh}, {T}, {hs})" + (f" * {scale!r}" if scale != 1.0 else "")
        cases.append(tuple(seeded(rng, code) for _ in range(3)))
    return cases


def _heads_shapes(rng: random.Random) -> list[tuple[int, int, int, int]]:
    """(B, T, nh, hs) for split and merge: one head, one channel per head, random."""
    return [
        (1, 1, 1, 1),
        (2, 3, 1, 4),
        (1, 4, 6, 1),
        (rng.randint(1, 3), rng.randint(1, 8), 2, 3),
        (rng.randint(1, 4), rng.randint(1, 10), rng.randint(2, 6), rng.randint(1, 8)),
        (2, 16, 4, 8),
    ]


def _split_inputs(rng: random.Random) -> list[tuple]:
    return [(seeded(rng, f"torch.randn({B}, {T}, {nh * hs})"), nh) for B, T, nh, hs in _heads_shapes(rng)]


def _merge_inputs(rng: random.Random) -> list[tuple]:
    return [(seeded(rng, f"torch.randn({B}, {nh}, {T}, {hs})"),) for B, T, nh, hs in _heads_shapes(rng)]


def _embed_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for B, T, block, V, C in [
        (1, 1, 1, 2, 1),
        (2, 3, 8, 5, 4),
        (rng.randint(1, 4), 16, 16, 65, 8),
        (rng.randint(1, 3), rng.randint(1, 20), 32, 27, rng.randint(1, 12)),
        (4, 5, 64, 100, 16),
    ]:
        cases.append(
            (
                seeded(rng, f"torch.randint(0, {V}, ({B}, {T}))"),
                seeded(rng, f"torch.randn({V}, {C})"),
                seeded(rng, f"torch.randn({block}, {C}) * 0.1"),
            )
        )
    return cases


def _ln_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for shape, offset, eps in [
        ((1, 1), 0.0, 1e-5),
        ((4,), 0.0, 1e-5),
        ((2, 3, 8), 3.0, 1e-5),
        ((rng.randint(1, 4), rng.randint(1, 6), 32), 10.0, 1e-6),
        ((5, rng.randint(2, 64)), -2.0, rng.choice([1e-5, 1e-3, 0.1])),
    ]:
        C, scale = shape[-1], rng.choice([0.1, 1.0, 5.0])
        dims = ", ".join(map(str, shape))
        cases.append(
            (
                seeded(rng, f"torch.randn({dims}) * {scale!r} + {offset!r}"),
                seeded(rng, f"1 + 0.2 * torch.randn({C})"),
                seeded(rng, f"0.2 * torch.randn({C})"),
                eps,
            )
        )
    C = rng.randint(2, 16)
    cases.append(
        (
            torch.full((3, C), float(rng.randint(-5, 5))),
            seeded(rng, f"torch.randn({C})"),
            seeded(rng, f"torch.randn({C})"),
            1e-5,
        )
    )  # constant rows: variance 0
    return cases


def _f(values: list) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def _ramp(*shape: int, scale: float = 1.0) -> torch.Tensor:
    """Deterministic, varied float32 values: scale * sin(1, 2, 3, ...)."""
    n = 1
    for s in shape:
        n *= s
    return (torch.sin(torch.arange(1, n + 1, dtype=torch.float64)) * scale).float().reshape(shape)


def _arange(*shape: int) -> torch.Tensor:
    n = 1
    for s in shape:
        n *= s
    return torch.arange(n, dtype=torch.float32).reshape(shape)


# what each exercise reimplements, in PyTorch and in the library (a module: all of it;
# minilm.models holds attention, split_heads, merge_heads, the GPT's embeddings and LayerNorms)
_MODELS = ("minilm.models",)
_ATTENTION = (
    *_MODELS,
    "torch.nn.functional.scaled_dot_product_attention",
    "torch.ops.aten._scaled_dot_product_flash_attention_for_cpu",
    "torch.ops.aten._scaled_dot_product_attention_math",
    "torch.nn.functional.multi_head_attention_forward",
    "torch.nn.MultiheadAttention",
)
_EMBED = (*_MODELS, "torch.nn.Embedding", "torch.nn.functional.embedding", "torch.embedding")
_LAYER_NORM = (
    *_MODELS,
    "torch.nn.functional.layer_norm",
    "torch.layer_norm",
    "torch.native_layer_norm",
    "torch.nn.modules.normalization",  # nn.LayerNorm, nn.GroupNorm, nn.RMSNorm
    "torch.nn.functional.group_norm",
    "torch.group_norm",
    "torch.nn.functional.batch_norm",
    "torch.batch_norm",
    "torch.nn.functional.instance_norm",
    "torch.instance_norm",
    "torch.nn.modules.batchnorm",
    "torch.nn.modules.instancenorm",
)

SET = ExerciseSet(
    name="04_attention",
    exercises=(
        Exercise(
            id="causal_attention",
            forbidden=_ATTENTION,
            points=2,
            public=(
                Case(
                    (_ramp(1, 1, 3, 2), _ramp(1, 1, 3, 2, scale=2.0), _arange(1, 1, 3, 2)),
                    _f([[[[0.0, 1.0], [1.6760002, 2.6760004], [3.4261503, 4.4261503]]]]),
                ),
                Case(
                    (_ramp(1, 2, 2, 2), _ramp(1, 2, 2, 2, scale=-1.0), _arange(1, 2, 2, 2)),
                    _f(
                        [
                            [
                                [[0.0, 1.0], [0.6108011, 1.6108011]],
                                [[4.0, 5.0], [4.3253932, 5.3253937]],
                            ]
                        ]
                    ),
                    note="two heads",
                ),
                Case(
                    (_f([[[[5.0, 1.0]]]]), _f([[[[2.0, 3.0]]]]), _f([[[[7.0, -7.0]]]])),
                    _f([[[[7.0, -7.0]]]]),
                    note="one position: it can only see itself",
                ),
            ),
            grading=_attention_inputs,
            describe_grading="random q, k, v with T from 1 to 32, 1 to 4 heads, head sizes 1 to 16 "
            "(checked against F.scaled_dot_product_attention(is_causal=True))",
            rtol=1e-4,
            atol=1e-5,
        ),
        Exercise(
            id="split_heads",
            forbidden=_MODELS,
            points=1,
            public=(
                Case(
                    (_arange(1, 2, 6), 2),
                    _f(
                        [[[[0.0, 1.0, 2.0], [6.0, 7.0, 8.0]], [[3.0, 4.0, 5.0], [9.0, 10.0, 11.0]]]]
                    ),
                ),
                Case(
                    (_arange(2, 1, 6), 3),
                    _f(
                        [
                            [[[0.0, 1.0]], [[2.0, 3.0]], [[4.0, 5.0]]],
                            [[[6.0, 7.0]], [[8.0, 9.0]], [[10.0, 11.0]]],
                        ]
                    ),
                    note="three heads of two channels",
                ),
                Case(
                    (_arange(1, 2, 4), 1),
                    _f([[[[0.0, 1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0]]]]),
                    note="one head",
                ),
            ),
            grading=_split_inputs,
            describe_grading="random (B, T, C) with 1 to 6 heads of 1 to 8 channels",
            rtol=0.0,
            atol=0.0,
        ),
        Exercise(
            id="merge_heads",
            forbidden=_MODELS,
            points=1,
            public=(
                Case(
                    (_arange(1, 2, 2, 3),),
                    _f([[[0.0, 1.0, 2.0, 6.0, 7.0, 8.0], [3.0, 4.0, 5.0, 9.0, 10.0, 11.0]]]),
                ),
                Case(
                    (_arange(2, 3, 1, 2),),
                    _f([[[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]], [[6.0, 7.0, 8.0, 9.0, 10.0, 11.0]]]),
                    note="three heads, one position",
                ),
            ),
            grading=_merge_inputs,
            describe_grading="random (B, nh, T, hs) with 1 to 6 heads of 1 to 8 channels",
            rtol=0.0,
            atol=0.0,
        ),
        Exercise(
            id="embed",
            forbidden=_EMBED,
            points=1,
            public=(
                Case(
                    (torch.tensor([[0, 2, 1]]), _arange(3, 2), _ramp(4, 2, scale=0.1)),
                    _f([[[0.084147096, 1.0909297], [4.014112, 4.9243197], [1.9041076, 2.9720585]]]),
                    note="T = 3 of block_size 4",
                ),
                Case(
                    (torch.tensor([[1], [1]]), _arange(3, 2), _ramp(4, 2, scale=0.1)),
                    _f([[[2.084147, 3.0909297]], [[2.084147, 3.0909297]]]),
                    note="one position, two sequences",
                ),
            ),
            grading=_embed_inputs,
            describe_grading="random ids and tables, T from 1 to block_size, C from 1 to 16",
            rtol=1e-6,
            atol=1e-7,
        ),
        Exercise(
            id="layer_norm",
            forbidden=_LAYER_NORM,
            points=2,
            public=(
                Case(
                    (_f([[1.0, 2.0, 3.0, 4.0]]), torch.ones(4), torch.zeros(4), 1e-5),
                    _f([[-1.3416355, -0.44721183, 0.44721183, 1.3416355]]),
                ),
                Case(
                    (_ramp(2, 3, scale=3.0), _f([1.0, 2.0, 0.5]), _f([0.0, 1.0, -1.0]), 1e-5),
                    _f(
                        [
                            [0.60718751, 2.6050324, -1.7048516],
                            [-0.32206452, -1.0630434, -0.32320678],
                        ]
                    ),
                    note="gain and bias",
                ),
                Case(
                    (_f([[2.0, 2.0, 2.0]]), torch.ones(3), _f([0.1, 0.2, 0.3]), 1e-5),
                    _f([[0.1, 0.2, 0.30000001]]),
                    note="a constant vector: variance 0, eps keeps it finite",
                ),
                Case(
                    (_f([1.0, 2.0, 4.0]), torch.ones(3), torch.zeros(3), 1e-5),
                    _f([-1.0690414, -0.26726028, 1.3363018]),
                    note="1-D: a single vector",
                ),
                Case(
                    (_ramp(2, 2, 3, scale=2.0) + 1.0, _f([1.0, 0.5, 2.0]), _f([0.0, 0.1, -0.1]), 1e-5),
                    _f(
                        [
                            [[0.60718399, 0.50125581, -2.9193900], [-0.32206193, -0.41575649, 2.6071496]],
                            [[-0.12329800, 0.74085158, -2.4168086], [0.68983519, -0.60701835, 1.3484033]],
                        ]
                    ),
                    note="3-D (B, T, C): each position normalised over its C channels",
                ),
            ),
            grading=_ln_inputs,
            describe_grading="random x of 1 to 3 dimensions with offsets, random gains, eps from 1e-6 to 0.1, "
            "constant rows (checked against F.layer_norm)",
            rtol=1e-4,
            atol=1e-4,
        ),
    ),
)
