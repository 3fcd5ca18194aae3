"""Bigram language models: a table of counts, and its neural twin that learns the same table (taught in 02).

Both obey the model contract `forward(idx (B, T), targets (B, T) | None) -> (logits (B, T, V), loss)`
with `block_size == 1`: the next token depends on the current one only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import lm_loss


@dataclass
class BigramConfig:
    """Sizes of a bigram model."""

    vocab_size: int = 27  # number of distinct tokens V
    smoothing: float = 1.0  # pseudo-count added to every cell of the count table (count model only)


class CountBigram(nn.Module):
    """Counts N[a, b] of token b following token a; P(b | a) = (N[a, b] + s) / sum_b' (N[a, b'] + s)."""

    block_size = 1

    def __init__(self, config: BigramConfig):
        super().__init__()
        self.config = config
        V = config.vocab_size
        self.register_buffer("counts", torch.zeros(V, V, dtype=torch.float64))  # (V, V)

    @torch.no_grad()
    def update(self, x: torch.Tensor, y: torch.Tensor) -> CountBigram:
        """Add the pairs (x[i], y[i]) to the counts; pairs whose target is -1 are skipped."""
        x, y = x.reshape(-1), y.reshape(-1)
        keep = y != -1
        V = self.config.vocab_size
        pair = x[keep].to(self.counts.device) * V + y[keep].to(self.counts.device)  # flat cell index
        self.counts += torch.bincount(pair, minlength=V * V).view(V, V).to(self.counts.dtype)
        return self

    def fit(self, data: torch.Tensor) -> CountBigram:
        """Count every consecutive pair of a 1-D token stream data (N,)."""
        return self.update(data[:-1], data[1:])

    def probs(self) -> torch.Tensor:
        """(V, V) row-stochastic table: row a is the distribution of the token after a."""
        smoothed = self.counts + self.config.smoothing
        return smoothed / smoothed.sum(dim=1, keepdim=True)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) -> logits (B, T, V) = log P(. | idx), and the mean NLL of targets."""
        logits = self.probs().log().float()[idx]  # (B, T, V); log-probs are valid logits
        return logits, lm_loss(logits, targets)


class BigramLM(nn.Module):
    """The neural bigram: a (V, V) table of logits learned by gradient descent (one embedding)."""

    block_size = 1

    def __init__(self, config: BigramConfig):
        super().__init__()
        self.config = config
        self.logits_table = nn.Embedding(config.vocab_size, config.vocab_size)  # row a: logits after a
        nn.init.zeros_(self.logits_table.weight)  # start from the uniform distribution

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) -> logits (B, T, V), loss."""
        logits = self.logits_table(idx)  # (B, T, V)
        return logits, lm_loss(logits, targets)

    def probs(self) -> torch.Tensor:
        """(V, V) the learned table as probabilities (softmax of each row)."""
        return torch.softmax(self.logits_table.weight.detach().double(), dim=1)
