"""Causal self-attention two ways, with the same weights: written out, and PyTorch's fused kernel (taught in 04).

The written-out path (`explicit_attention`) is the one to read: scores, causal mask, softmax,
weighted sum. The fast path calls `F.scaled_dot_product_attention(is_causal=True)`, which
computes the same thing without materialising the (T, T) matrix on GPUs (FlashAttention).
tests/test_attention.py proves the two equal, forward and gradients.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def split_heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    """(B, T, C) -> (B, nh, T, hs) with hs = C // nh: each head sees its own slice of channels."""
    B, T, C = x.shape
    return x.view(B, T, n_head, C // n_head).transpose(1, 2)  # (B, nh, T, hs)


def merge_heads(y: torch.Tensor) -> torch.Tensor:
    """(B, nh, T, hs) -> (B, T, nh * hs): the heads' outputs side by side again."""
    B, nh, T, hs = y.shape
    return y.transpose(1, 2).contiguous().view(B, T, nh * hs)  # (B, T, C)


def causal_mask(T: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(T, T) bool, True where query t may look at key s (s <= t): the lower triangle."""
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def attention_probs(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Softmax of causally-masked, scaled scores: q, k (..., T, hs) -> weights (..., T, T), rows sum to 1."""
    T, hs = q.shape[-2], q.shape[-1]
    # scale by 1/sqrt(hs): q.k sums hs products, so without it the scores' spread grows like
    # sqrt(hs) and the softmax saturates (one-hot rows, vanishing gradients)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(hs)  # (..., T, T)
    scores = scores.masked_fill(~causal_mask(T, q.device), float("-inf"))  # no peeking ahead
    return F.softmax(scores, dim=-1)  # (..., T, T); autocast runs softmax in fp32


def explicit_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    dropout_p: float = 0.0,
    training: bool = False,
) -> torch.Tensor:
    """Causal scaled dot-product attention written out: q, k, v (..., T, hs) -> (..., T, hs)."""
    att = attention_probs(q, k)  # (..., T, T)
    att = F.dropout(att, p=dropout_p, training=training)
    return att @ v  # (..., T, T) @ (..., T, hs) -> (..., T, hs): weighted sums of the values


def fused_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    dropout_p: float = 0.0,
    training: bool = False,
) -> torch.Tensor:
    """The same as `explicit_attention`, by `F.scaled_dot_product_attention(is_causal=True)`."""
    return F.scaled_dot_product_attention(
        q, k, v, dropout_p=dropout_p if training else 0.0, is_causal=True
    )


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with GPT-2's names: x (B, T, C) -> (B, T, C) (taught in 04)."""

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, bias: bool = True,
                 sdpa: bool = True) -> None:
        super().__init__()
        if n_embd % n_head != 0:
            raise ValueError(f"n_embd={n_embd} must be divisible by n_head={n_head}")
        self.n_head = n_head
        self.dropout = dropout
        self.sdpa = sdpa  # True: the fused kernel; False: the written-out path (same weights)
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)  # q, k, v for all heads at once
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)  # mixes the heads' outputs
        self.resid_dropout = nn.Dropout(dropout)

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, T, C) -> q, k, v, each (B, nh, T, hs)."""
        q, k, v = self.c_attn(x).split(x.shape[-1], dim=2)  # 3 x (B, T, C)
        return split_heads(q, self.n_head), split_heads(k, self.n_head), split_heads(v, self.n_head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C)."""
        q, k, v = self.qkv(x)  # (B, nh, T, hs) each
        attend = fused_attention if self.sdpa else explicit_attention
        y = attend(q, k, v, dropout_p=self.dropout, training=self.training)  # (B, nh, T, hs)
        return self.resid_dropout(self.c_proj(merge_heads(y)))  # (B, T, C)

    @torch.no_grad()
    def probs(self, x: torch.Tensor) -> torch.Tensor:
        """The attention weights for heat maps: x (B, T, C) -> (B, nh, T, T)."""
        q, k, _ = self.qkv(x)
        return attention_probs(q, k)
