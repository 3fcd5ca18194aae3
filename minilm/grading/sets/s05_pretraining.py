"""Exercise set 05, pretraining (solutions/05_pretraining.ipynb; taught in notebook 05).

Public cases (with the reference's outputs, stored as data) and the grading inputs drawn at grading
time: schedule steps at every boundary, GPT configs with and without biases and tying, bigram
tables with batches of unequal sizes, throughput figures with and without gradient accumulation,
GPT-style parameter names.
"""

from __future__ import annotations

import random

import torch

from ..spec import TOL_SMALL_VALUES, Case, Exercise, ExerciseSet
from .builders import f32, randint, randn
from .equivalents import forbid


def _lr_inputs(rng: random.Random) -> list[tuple]:
    warmup = rng.randint(1, 50)
    max_steps = warmup + rng.randint(2, 500)
    max_lr = rng.choice([6e-4, 1e-3, 3e-3, 0.1])
    min_lr = max_lr * rng.choice([0.05, 0.1])  # a floor above 0: forgetting it shows
    steps = [0, warmup - 1, warmup, rng.randrange(warmup + 1, max_steps), (warmup + max_steps) // 2, max_steps - 1,
             max_steps, max_steps + rng.randint(1, 100), rng.randrange(0, warmup)]
    cases = [(s, max_lr, min_lr, warmup, max_steps) for s in steps]
    no_warmup = rng.randint(2, 100)
    cases += [(s, 1.0, 0.0, 0, no_warmup) for s in (0, rng.randrange(no_warmup), no_warmup)]
    cases.append((rng.randint(0, 12), 0.5, 0.05, 10, 10))  # warmup straight into the floor
    return cases


def _nparams_inputs(rng: random.Random) -> list[tuple]:
    cases = [(rng.randint(2, 300), rng.randint(1, 512), rng.randint(1, 12), rng.choice([8, 16, 48, 64]), bias, tied)
             for bias, tied in [(True, True), (True, False), (False, True), (False, False)]]
    cases.append((rng.randint(50000, 51000), 1024, rng.choice([12, 24]), rng.choice([768, 1024]),
                  rng.random() < 0.5, rng.random() < 0.5))
    cases.append((rng.randint(1, 5), rng.randint(1, 5), 0, rng.randint(1, 5), True, False))  # no block
    return cases


def _loss_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for V, sizes in [(2, [(1, 1)]), (5, [(2, 3), (1, 1)]), (27, [(4, 8), (rng.randint(1, 3), rng.randint(1, 5))]),
                     (rng.randint(3, 65), [(rng.randint(1, 4), rng.randint(1, 16)) for _ in range(rng.randint(2, 6))]),
                     (65, [(8, 32)] * 3)]:
        table = randn(rng, V, V, scale=rng.choice([0.5, 2.0]))
        cases.append((table, [(randint(rng, 0, V, B, T), randint(rng, 0, V, B, T)) for B, T in sizes]))
    return cases


def _mfu_inputs(rng: random.Random) -> list[tuple]:
    accumulate = [1, rng.choice([2, 8]), *(rng.choice([1, 2, 8]) for _ in range(4))]  # one case accumulates
    return [(rng.randint(10_000, 2_000_000_000), rng.choice([1, 4, 12, 64]), rng.choice([64, 256, 1024]), steps,
             rng.uniform(0.01, 5.0), rng.choice([65e12, 312e12, 989e12, 1e12])) for steps in accumulate]


def _names(rng: random.Random, n_layer: int, bias: bool, tied: bool) -> dict[str, list[int]]:
    C, V, T = rng.choice([8, 32, 64]), rng.randint(10, 100), rng.randint(8, 64)
    shapes = {"transformer.wte.weight": [V, C], "transformer.wpe.weight": [T, C]}
    for i in range(n_layer):
        for name, shape, out in [("ln_1", [C], C), ("attn.c_attn", [3 * C, C], 3 * C), ("attn.c_proj", [C, C], C),
                                 ("ln_2", [C], C), ("mlp.c_fc", [4 * C, C], 4 * C), ("mlp.c_proj", [C, 4 * C], C)]:
            shapes[f"transformer.h.{i}.{name}.weight"] = shape
            if bias:
                shapes[f"transformer.h.{i}.{name}.bias"] = [out]
    shapes["transformer.ln_f.weight"] = [C]
    if bias:
        shapes["transformer.ln_f.bias"] = [C]
    if not tied:
        shapes["lm_head.weight"] = [V, C]
    return shapes


def _decay_inputs(rng: random.Random) -> list[tuple]:
    cases = [(_names(rng, n, bias, tied),) for n, bias, tied in [(1, True, True), (rng.randint(1, 4), False, False),
                                                                 (rng.randint(0, 3), True, False)]]
    names = [f"p{i}" for i in rng.sample(range(100), 12)]  # shuffled, so order matters
    cases.append(({n: [rng.randint(1, 5) for _ in range(rng.randint(0, 4))] for n in names},))  # 0-D to 4-D
    cases.append(({"scale": [], "bias": [7], "weight": [1, 1]},))
    return cases


_TABLE = f32([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5], [-1.0, 1.0, 3.0]])  # V = 3

SET = ExerciseSet(
    name="05_pretraining",
    exercises=(
        Exercise(
            id="warmup_cosine_lr", points=2, forbidden=forbid("learning-rate schedule", library="minilm.training.loop"),
            **TOL_SMALL_VALUES,
            public=(
                Case((0, 1e-3, 1e-4, 10, 100), 0.0001, note="step 0 of warmup"),
                Case((9, 1e-3, 1e-4, 10, 100), 0.001, note="last warmup step: max_lr"),
                Case((10, 1e-3, 1e-4, 10, 100), 0.001, note="first step of the decay: still max_lr"),
                Case((32, 1e-3, 1e-4, 10, 100), 0.000873702910152393, note="a quarter of the decay: a cosine, not a line"),
                Case((55, 1e-3, 1e-4, 10, 100), 0.00055, note="halfway through the decay"),
                Case((100, 1e-3, 1e-4, 10, 100), 0.0001, note="the end: min_lr"),
                Case((5, 1.0, 0.0, 0, 10), 0.5, note="no warmup"),
            ),
            draw=_lr_inputs,
            describe_grading="steps at every boundary (0, end of warmup, mid-decay, max_steps, beyond), "
            "no warmup, warmup == max_steps (checked against minilm.training.get_lr)",
        ),
        Exercise(
            id="gpt_num_params", points=2, forbidden=forbid("parameter count", library="minilm.models"),
            public=(
                Case((50257, 1024, 12, 768, True, True), 124439808, note="GPT-2 small"),
                Case((65, 32, 2, 32, True, True), 28576),
                Case((65, 32, 2, 32, False, False), 29920, note="no biases, untied head"),
            ),
            draw=_nparams_inputs,
            describe_grading="random configs with and without biases and tying, GPT-2 sizes, zero layers "
            "(checked against counting minilm.models.GPT)",
        ),
        Exercise(
            id="estimate_loss", points=2, forbidden=forbid(library=("minilm.training.loop", "minilm.data.names", "minilm.models")),
            public=(
                Case((torch.zeros(3, 3), [(torch.tensor([[0, 1]]), torch.tensor([[1, 2]]))]), 1.0986123085021973,
                     note="uniform logits: log 3"),
                Case((_TABLE, [(torch.tensor([[0, 1, 2]]), torch.tensor([[0, 2, 2]])), (torch.tensor([[2]]), torch.tensor([[1]]))]),
                     1.306697502732277, note="the mean of two batch means (not of the four tokens)"),
            ),
            draw=_loss_inputs,
            describe_grading="random tables up to 65 tokens, 1 to 6 batches of unequal sizes",
        ),
        Exercise(
            id="mfu", points=1, forbidden=forbid(library=("minilm.training.loop", "minilm.models.gpt")), **TOL_SMALL_VALUES,
            public=(
                Case((124_000_000, 16, 1024, 1, 0.5, 312e12), 0.07813907692307692),
                Case((10_000_000, 64, 256, 8, 2.0, 65e12), 0.060494769230769234, note="gradient accumulation"),
            ),
            draw=_mfu_inputs,
            describe_grading="random sizes, batch shapes, gradient accumulation, step times and peak FLOP/s",
        ),
        Exercise(
            id="decay_names", points=1,
            forbidden=forbid(library=("minilm.training.optim", "torch.nn.Module.named_parameters", "torch.nn.Module.parameters")),
            public=(
                Case(({"transformer.wte.weight": [65, 32], "transformer.h.0.ln_1.weight": [32],
                       "transformer.h.0.attn.c_attn.weight": [96, 32], "transformer.h.0.attn.c_attn.bias": [96]},),
                     ["transformer.wte.weight", "transformer.h.0.attn.c_attn.weight"]),
                Case(({},), [], note="no parameters"),
                Case(({"scale": [], "mlp.c_fc.weight": [128, 32], "conv.weight": [4, 3, 2, 2], "bias": [7]},),
                     ["mlp.c_fc.weight", "conv.weight"], note="0-D and 4-D shapes"),
            ),
            draw=_decay_inputs,
            describe_grading="GPT parameter shapes with and without biases and a head, random names of 0 to 4 dims",
        ),
    ),
)
