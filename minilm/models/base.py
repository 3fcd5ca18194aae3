"""What every language model of the course shares: the typed contract, its loss, checked configs (taught in 02)."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal, Protocol, runtime_checkable

import torch
import torch.nn.functional as F


@runtime_checkable
class LanguageModel(Protocol):
    """The one contract of the course: every LM (bigram, MLP, RNN, LSTM, GPT) has these, so one
    training loop and one `generate()` serve them all."""

    config: Any  # the model's dataclass config
    block_size: int  # the longest context the model reads; generation crops to it

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) int64 -> logits (B, T, V) and the mean cross-entropy against targets (B, T), or None."""
        ...

    def __call__(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]: ...


def lm_loss(logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor | None:
    """Mean cross-entropy of logits (B, T, V) against targets (B, T); targets of -1 are ignored."""
    if targets is None:
        return None
    B, T, V = logits.shape
    return F.cross_entropy(logits.reshape(B * T, V).float(), targets.reshape(B * T), ignore_index=-1)


def check_choices(config: Any) -> None:
    """Raise ValueError when a `Literal[...]` field of dataclass `config` holds a value outside its choices."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        hint = hints.get(f.name)
        if typing.get_origin(hint) is Literal:
            value, choices = getattr(config, f.name), typing.get_args(hint)
            if value not in choices:
                raise ValueError(
                    f"{type(config).__name__}.{f.name}={value!r} is not one of "
                    f"{', '.join(repr(c) for c in choices)}"
                )
