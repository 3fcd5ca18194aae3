"""Exercise set 07, fine-tuning (solutions/07_fine_tuning.ipynb; taught in notebook 07).

Public cases (with the reference's outputs, stored as data) and the grading inputs drawn at grading
time: LoRA layers of random sizes and ranks (one of rank 2 or more) on 2-D and 3-D inputs (B = 0 among
them), padding masks right-padded and arbitrary (left padding and holes), predictions with classes
that never occur, parameter tables with LoRA matrices, scalars, heads and kept prefixes that also
stand inside other names.
"""

from __future__ import annotations

import random

import torch

from ..spec import Case, Exercise, ExerciseSet, seeded
from .builders import f32, randint, randn
from .equivalents import forbid


def _lora_shapes(rng: random.Random, min_rank: int = 1) -> tuple[int, int, int]:
    n_in, n_out = rng.randint(min_rank, 12), rng.randint(min_rank, 12)
    return n_in, n_out, rng.randint(min_rank, min(n_in, n_out))


def _lora_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for k in range(6):
        n_in, n_out, r = _lora_shapes(rng, min_rank=2 if k == 0 else 1)  # alpha / r differs from alpha
        x = randn(rng, rng.randint(1, 5), n_in) if k % 2 == 0 else randn(rng, rng.randint(1, 3), rng.randint(1, 6), n_in)
        B = seeded(rng, f"torch.zeros({n_out}, {r})") if k == 4 else randn(rng, n_out, r)  # a fresh LoRA: the base layer
        cases.append((x, randn(rng, n_out, n_in), randn(rng, n_out), randn(rng, r, n_in), B,
                      rng.choice([1.0, 2.0, 8.0, 16.0, 32.0])))
    return cases


def _merge_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for k in range(5):
        n_in, n_out, r = _lora_shapes(rng, min_rank=2 if k == 0 else 1)
        cases.append((randn(rng, n_out, n_in), randn(rng, r, n_in), randn(rng, n_out, r), rng.choice([1.0, 4.0, 16.0])))
    return cases


def _pool_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for k in range(5):
        B, T, C = rng.randint(1, 5), rng.randint(1 if k < 3 else 4, 9), rng.randint(1, 6)
        h = randn(rng, B, T, C)
        if k < 3:  # right padding: row b has lengths[b] real tokens
            lengths = [rng.randint(1, T) for _ in range(B)]
            rows = [[t < n for t in range(T)] for n in lengths]
        else:  # any mask with a real token in every row; row 0 is padded on both sides, two tokens or more
            rows = [[rng.random() < 0.5 for _ in range(T)] for _ in range(B)]
            for row in rows:
                row[rng.randrange(T)] = True
            first, last = sorted(rng.sample(range(1, T - 1), 2))
            rows[0][0], rows[0][first], rows[0][last], rows[0][-1] = False, True, True, False
        cases.append((h, torch.tensor(rows)))
    return cases


def _accuracy_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for n_classes, last_absent in [(2, False), (2, False), (3, False), (rng.randint(4, 7), False),
                                   (rng.randint(3, 6), True)]:  # the last class never occurs
        N, high = rng.randint(1, 40), n_classes - 1 if last_absent else n_classes
        cases.append((randint(rng, 0, high, N), randint(rng, 0, high, N), n_classes))
    labels = randint(rng, 0, 2, 12)
    cases.append((labels.clone(), labels, 2))  # all right
    return cases


def _count_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for _ in range(4):
        shapes: dict[str, list[int]] = {}
        for layer in range(rng.randint(1, 3)):
            C, r = rng.choice([4, 8, 16]), rng.randint(1, 4)
            shapes.update({f"transformer.h.{layer}.attn.c_attn.base.weight": [3 * C, C],
                           f"transformer.h.{layer}.attn.c_attn.base.bias": [3 * C],
                           f"transformer.h.{layer}.attn.c_attn.lora_A": [r, C],
                           f"transformer.h.{layer}.attn.c_attn.lora_B": [3 * C, r],
                           f"transformer.h.{layer}.ln_1.weight": [C]})
        shapes["scale"] = []
        shapes["pooler.head.weight"] = [rng.randint(2, 5), 4]  # "head." inside a name: not a prefix
        shapes["head.weight"] = [rng.randint(2, 5), rng.choice([4, 8, 16])]
        shapes["head.bias"] = [shapes["head.weight"][0]]
        keep = rng.choice([["head."], ["head.", "transformer.h.0."], ["head.", "transformer.h.1.ln_1"]])
        cases.append((shapes, keep))
    cases.append(({"scale": [], "transformer.h.0.attn.c_attn.lora_A": [2, 4]}, []))  # nothing kept: LoRA alone
    cases.append(({}, ["head."]))
    return cases


_LORA = forbid("linear layer", library="minilm.finetune.lora")
_W = f32([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]])  # (out=2, in=3)
_b = f32([0.1, -0.2])
_A1, _B1 = f32([[1.0, 1.0, 0.0]]), f32([[2.0], [-1.0]])  # rank 1
_A2, _B2 = f32([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]), f32([[1.0, 0.0], [0.0, 0.0]])  # rank 2
_H = torch.arange(16, dtype=torch.float32).reshape(2, 4, 2)

SET = ExerciseSet(
    name="07_fine_tuning",
    exercises=(
        Exercise(
            id="lora_forward", points=2, forbidden=_LORA, rtol=1e-5, atol=1e-5,
            public=(
                Case((f32([[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]]), _W, _b, _A1, _B1, 2.0),
                     f32([[10.100000381469727, -1.6999998092651367], [-4.400000095367432, -0.20000004768371582]]),
                     note="rank 1, alpha 2: scaling 2"),
                Case((f32([[[1.0, 0.0, 0.0]], [[0.0, 0.0, 2.0]]]), _W, _b, _A2, _B2, 4.0),
                     f32([[[3.0999999046325684, 0.30000001192092896]], [[-1.899999976158142, -0.20000000298023224]]]),
                     note="a 3-D input (B, T, in), rank 2"),
                Case((f32([[1.0, 2.0, 3.0], [0.0, -1.0, 0.5]]), _W, _b, _A1, torch.zeros(2, 1), 8.0),
                     f32([[-1.899999976158142, 4.300000190734863], [-0.4000000059604645, -2.200000047683716]]),
                     note="B = 0 (a fresh LoRA): the base layer alone"),
            ),
            draw=_lora_inputs,
            describe_grading="random layer sizes up to 12 and every rank, 2-D and 3-D inputs, a zero B, "
            "alpha from 1 to 32 (checked against minilm.finetune.lora.LoRALinear)",
        ),
        Exercise(
            id="merge_lora", points=1, forbidden=_LORA, rtol=1e-5, atol=1e-5,
            public=(
                Case((_W, _A1, _B1, 2.0), f32([[5.0, 4.0, -1.0], [-1.5, 0.0, 0.0]]), note="rank 1"),
                Case((_W, _A2, _B2, 4.0), f32([[3.0, 0.0, -1.0], [0.5, 2.0, 0.0]]), note="rank 2: scaling 2"),
            ),
            draw=_merge_inputs,
            describe_grading="random sizes up to 12, every rank, three alphas (an answer must not change W)",
        ),
        Exercise(
            id="last_token_pool", points=2, forbidden=forbid(library="minilm.finetune"), rtol=0.0, atol=0.0,
            public=(
                Case((_H, torch.tensor([[True, True, False, False], [True, True, True, True]])),
                     f32([[2.0, 3.0], [14.0, 15.0]]), note="right padding: lengths 2 and 4"),
                Case((_H, torch.tensor([[True, False, True, False], [False, False, False, True]])),
                     f32([[4.0, 5.0], [14.0, 15.0]]), note="holes and left padding: the last True counts"),
            ),
            draw=_pool_inputs,
            describe_grading="random (B, T, C) up to (5, 9, 6), right-padded and arbitrary masks",
        ),
        Exercise(
            id="accuracy_confusion", points=2, forbidden=forbid("counts per class", library="minilm.finetune"),
            public=(
                Case((torch.tensor([0, 1, 1, 0, 1]), torch.tensor([0, 1, 0, 0, 0]), 2),
                     {"accuracy": 0.6, "confusion": [[2, 2], [0, 1]]}, note="rows: true class"),
                Case((torch.tensor([2, 0, 1, 2]), torch.tensor([2, 1, 1, 0]), 4),
                     {"accuracy": 0.5, "confusion": [[0, 0, 1, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]},
                     note="a class that never occurs still has its row and column"),
            ),
            draw=_accuracy_inputs,
            describe_grading="2 to 7 classes (one never occurs), 1 to 40 predictions, an all-correct case",
        ),
        Exercise(
            id="count_trainable", points=1,
            forbidden=forbid("parameter count", library=("minilm.finetune.lora", "minilm.finetune")),
            public=(
                Case(({"transformer.wte.weight": [65, 32], "transformer.h.0.attn.c_attn.lora_A": [4, 32],
                       "transformer.h.0.attn.c_attn.lora_B": [96, 4],
                       "transformer.h.0.attn.c_attn.base.weight": [96, 32], "transformer.ln_f.weight": [32],
                       "head.weight": [2, 32], "head.bias": [2]}, ["head."]),
                     [578, 5762], note="LoRA matrices and the head train"),
                Case(({"scale": [], "layer.weight": [3, 4], "layer.bias": [3]}, []), [0, 16],
                     note="nothing kept: all frozen; a 0-D parameter holds 1 number"),
                Case(({}, ["head"]), [0, 0], note="no parameters"),
                Case(({"encoder.layer.0.weight": [2, 2, 2], "classifier.weight": [2, 8]},
                      ["classifier", "encoder.layer.0"]), [24, 24], note="two prefixes"),
                Case(({"pooler.head.weight": [2, 3], "head.weight": [2, 2]}, ["head."]), [4, 10],
                     note="a prefix starts the name: pooler.head.weight is not kept"),
            ),
            draw=_count_inputs,
            describe_grading="GPT-like tables with LoRA matrices, scalars and heads, 0 to 2 kept prefixes",
        ),
    ),
)
