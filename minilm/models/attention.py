"""Causal self-attention two ways, with the same weights: written out, and PyTorch's fused kernel (taught in 04).

The written-out path (`explicit_attention`) is the one to read: scores, causal mask, softmax,
weighted sum. The fast path calls `F.scaled_dot_product_attention(is_causal=True)`, which
computes the same thing without materialising the (T, T) matrix on GPUs (FlashAttention).
tests/test_attention.py proves the two equal, forward and gradients.

Both paths also decode with a KV cache (notebook 06): `KVCache` keeps every layer's keys and
values in pre-allocated tensors, so a step feeds only the new token(s): its queries, (B, nh, T, hs),
attend to all S >= T keys stored so far, and the causal mask lines the T queries up with the last
T keys (`causal_mask(T, S)`). tests/test_kv_cache.py proves cached logits equal full recomputation.
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


def causal_mask(T: int, device: torch.device | str | None = None, n_keys: int | None = None) -> torch.Tensor:
    """(T, S) bool with S = n_keys (default T), True where a query may look at a key.

    The T queries are the last T of the S positions (with a KV cache, S - T tokens came before),
    so query t sits at position S - T + t and sees keys s <= S - T + t: for S == T the lower triangle."""
    S = T if n_keys is None else n_keys
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)


def attention_probs(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Softmax of causally-masked, scaled scores: q (..., T, hs), k (..., S, hs) -> weights (..., T, S).

    Rows sum to 1; S == T without a cache, S > T when the keys of earlier tokens come from one."""
    T, hs, S = q.shape[-2], q.shape[-1], k.shape[-2]
    # scale by 1/sqrt(hs): q.k sums hs products, so without it the scores' spread grows like
    # sqrt(hs) and the softmax saturates (one-hot rows, vanishing gradients)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(hs)  # (..., T, S)
    scores = scores.masked_fill(~causal_mask(T, q.device, S), float("-inf"))  # no peeking ahead
    return F.softmax(scores, dim=-1)  # (..., T, S); autocast runs softmax in fp32


def explicit_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    dropout_p: float = 0.0,
    training: bool = False,
) -> torch.Tensor:
    """Causal scaled dot-product attention written out: q (..., T, hs), k, v (..., S, hs) -> (..., T, hs)."""
    att = attention_probs(q, k)  # (..., T, S)
    att = F.dropout(att, p=dropout_p, training=training)
    return att @ v  # (..., T, S) @ (..., S, hs) -> (..., T, hs): weighted sums of the values


def fused_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    dropout_p: float = 0.0,
    training: bool = False,
) -> torch.Tensor:
    """The same as `explicit_attention`, by `F.scaled_dot_product_attention`: q (..., T, hs), k, v (..., S, hs).

    is_causal=True masks as if queries and keys started together (top left), which is right only
    for S == T; with cached keys one query needs no mask and several get `causal_mask(T, S)`."""
    T, S = q.shape[-2], k.shape[-2]
    p = dropout_p if training else 0.0
    if S == T:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
    mask = None if T == 1 else causal_mask(T, q.device, S)  # one new token sees every key
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)


class KVCache:
    """Every layer's keys and values, pre-allocated: k, v (n_layer, B, nh, max_len, hs), `length` filled.

    A forward pass with the cache writes the new tokens' keys and values of layer i at positions
    [length, length + T) (`update`), attends to all of [0, length + T), and then `advance(T)`
    moves `length` on (GPT.forward does both). Memory: 2 * n_layer * n_embd numbers per token
    and sequence (`bytes_per_token`).
    """

    def __init__(self, n_layer: int, batch_size: int, n_head: int, head_size: int, max_len: int,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> None:
        shape = (n_layer, batch_size, n_head, max_len, head_size)
        self.k = torch.zeros(shape, device=device, dtype=dtype)  # (L, B, nh, max_len, hs)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self.batch_size = batch_size
        self.length = 0  # positions filled so far (the same for every layer after a forward)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, nh, T, hs) of `layer` after the first `length` positions -> all keys, values (B, nh, length + T, hs)."""
        T = k.shape[-2]
        end = self.length + T
        if end > self.max_len:
            raise ValueError(f"the KV cache holds max_len={self.max_len} positions; {self.length} are "
                             f"filled and {T} more do not fit: reset() it or build a larger one")
        self.k[layer, :, :, self.length:end] = k
        self.v[layer, :, :, self.length:end] = v
        # in the new keys' dtype (a no-op unless autocast made them bf16/fp16 and the cache is fp32)
        return self.k[layer, :, :, :end].to(k.dtype), self.v[layer, :, :, :end].to(v.dtype)

    def advance(self, n: int) -> None:
        """Mark n more positions as filled (after every layer has stored them)."""
        self.length += n

    def reset(self) -> None:
        """Forget everything (the tensors stay allocated)."""
        self.length = 0

    @property
    def nbytes(self) -> int:
        """Bytes the cache's two tensors take, however much of them is filled."""
        return self.k.nbytes + self.v.nbytes

    def bytes_per_token(self) -> int:
        """Bytes one position of one sequence takes: 2 (k and v) * n_layer * n_head * head_size * element size."""
        L, _, nh, _, hs = self.k.shape
        return 2 * L * nh * hs * self.k.element_size()


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

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C); with `kv_cache`, x holds the tokens after the cached ones (of `layer`)."""
        q, k, v = self.qkv(x)  # (B, nh, T, hs) each
        if kv_cache is not None:
            k, v = kv_cache.update(layer, k, v)  # (B, nh, S, hs): the cached keys, then these
        attend = fused_attention if self.sdpa else explicit_attention
        y = attend(q, k, v, dropout_p=self.dropout, training=self.training)  # (B, nh, T, hs)
        return self.resid_dropout(self.c_proj(merge_heads(y)))  # (B, T, C)

    @torch.no_grad()
    def probs(self, x: torch.Tensor) -> torch.Tensor:
        """The attention weights for heat maps: x (B, T, C) -> (B, nh, T, T)."""
        q, k, _ = self.qkv(x)
        return attention_probs(q, k)
