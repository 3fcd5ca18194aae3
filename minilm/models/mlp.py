"""The Bengio et al. (2003) MLP language model, makemore style (taught in 02).

Position t sees the previous `block_size` tokens (a fixed window; before the start of the
sequence it sees a special blank token), embeds each, concatenates them and applies
hidden = tanh(W1 x + b1), logits = W2 hidden + b2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import lm_loss


@dataclass
class MLPConfig:
    """Sizes of the MLP language model."""

    vocab_size: int = 27  # number of distinct tokens V
    block_size: int = 16  # how many previous tokens each position sees
    n_embd: int = 64  # embedding size of one token
    n_hidden: int = 64  # width of the tanh hidden layer


class MLP(nn.Module):
    """Embed the last block_size tokens, concatenate, one tanh hidden layer, logits."""

    def __init__(self, config: MLPConfig):
        super().__init__()
        self.config = config
        self.block_size = config.block_size
        # one extra row: the blank token seen before the start of the sequence
        self.wte = nn.Embedding(config.vocab_size + 1, config.n_embd)
        self.hidden = nn.Linear(config.block_size * config.n_embd, config.n_hidden)
        self.lm_head = nn.Linear(config.n_hidden, config.vocab_size)

    def context(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) -> (B, T, block_size): for position t the tokens t, t-1, ..., t-block_size+1."""
        blank = self.config.vocab_size
        B = idx.size(0)
        padded = torch.cat([idx.new_full((B, self.block_size - 1), blank), idx], dim=1)  # (B, bs-1+T)
        windows = padded.unfold(1, self.block_size, 1)  # (B, T, block_size), oldest first
        return windows.flip(-1)  # (B, T, block_size), newest first

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) -> logits (B, T, V), loss."""
        B, T = idx.shape
        emb = self.wte(self.context(idx))  # (B, T, block_size, n_embd)
        x = emb.view(B, T, -1)  # (B, T, block_size * n_embd): the concatenation
        h = torch.tanh(self.hidden(x))  # (B, T, n_hidden)
        logits = self.lm_head(h)  # (B, T, V)
        return logits, lm_loss(logits, targets)
