"""What every language model of the course shares: the loss of the model contract (taught in 02)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def lm_loss(logits: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor | None:
    """Mean cross-entropy of logits (B, T, V) against targets (B, T); targets of -1 are ignored."""
    if targets is None:
        return None
    B, T, V = logits.shape
    return F.cross_entropy(logits.reshape(B * T, V).float(), targets.reshape(B * T), ignore_index=-1)
