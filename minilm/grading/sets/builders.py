"""Shared machinery of the set modules: tensors written as data for public cases, and the drawn
grading inputs of the shapes several sets use (seeded random tensors, logits, weights, names).

Every random tensor goes through `minilm.grading.spec.seeded`, so feedback can show a failing case as
the PyTorch expression that rebuilds it.
"""

from __future__ import annotations

import math
import random

import torch

from ..spec import seeded

NEG_INF = float("-inf")


def f32(values: list) -> torch.Tensor:
    """A float32 tensor written out in full (public cases)."""
    return torch.tensor(values, dtype=torch.float32)


def i64(values: list) -> torch.Tensor:
    """An int64 tensor written out in full (public cases)."""
    return torch.tensor(values, dtype=torch.int64)


def ramp(*shape: int, scale: float = 1.0) -> torch.Tensor:
    """Deterministic, varied float32 values: scale * sin(1, 2, 3, ...), reshaped to `shape`."""
    n = math.prod(shape)
    return (torch.sin(torch.arange(1, n + 1, dtype=torch.float64)) * scale).float().reshape(shape)


def arange(*shape: int) -> torch.Tensor:
    """0, 1, 2, ... as float32, reshaped to `shape`."""
    return torch.arange(math.prod(shape), dtype=torch.float32).reshape(shape)


def dims(shape: tuple[int, ...] | list[int]) -> str:
    """(2, 3) -> "2, 3", for the argument list of a PyTorch constructor."""
    return ", ".join(map(str, shape))


def randn(rng: random.Random, *shape: int, scale: float = 1.0, offset: float = 0.0) -> torch.Tensor:
    """Seeded `torch.randn(*shape) * scale + offset` (the factors only where they change anything)."""
    code = f"torch.randn({dims(shape)})"
    code += f" * {scale!r}" if scale != 1.0 else ""
    code += f" + {offset!r}" if offset else ""
    return seeded(rng, code)


def randint(rng: random.Random, low: int, high: int, *shape: int, dtype: str = "") -> torch.Tensor:
    """Seeded `torch.randint(low, high, shape)` (int64, or `dtype`, e.g. "torch.int8")."""
    extra = f", dtype={dtype}" if dtype else ""
    return seeded(rng, f"torch.randint({low}, {high}, ({dims(shape)},){extra})")


def uniform(rng: random.Random, *shape: int, k: float) -> torch.Tensor:
    """Seeded U(-k, k), as nn.Linear, nn.RNN and nn.LSTM initialise their weights."""
    return seeded(rng, f"(torch.rand({dims(shape)}) * 2 - 1) * {k!r}")


def tied_logits(rng: random.Random, rows: int, vocab: int, levels: int) -> torch.Tensor:
    """Seeded integer-valued float logits in [0, levels): many ties, within rows and across them."""
    return seeded(rng, f"torch.randint(0, {levels}, ({rows}, {vocab})).float()")


def softmax_of(rng: random.Random, logits_code: str) -> torch.Tensor:
    """Seeded probabilities: the softmax of the PyTorch expression `logits_code` over the last dim."""
    return seeded(rng, f"torch.softmax({logits_code}, dim=-1)")
