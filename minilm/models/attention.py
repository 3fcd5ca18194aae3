"""Causal self-attention two ways, with the same weights: written out, and PyTorch's fused kernel (taught in 04).

The written-out path (`explicit_attention`) is the one to read: scores, causal mask, softmax,
weighted sum. The fast path calls `F.scaled_dot_product_attention(is_causal=True)`, which
computes the same thing without materialising the (T, T) matrix on GPUs (FlashAttention).
tests/test_attention.py proves the two equal, forward and gradients.

Both paths also decode with a KV cache (notebook 06): `KVCache` keeps every layer's keys and
values in pre-allocated tensors, so a step feeds only the new token(s): its queries, (B, nh, T, hs),
attend to all S >= T keys stored so far, and the causal mask lines the T queries up with the last
T keys (`causal_mask(T, S)`). tests/test_kv_cache.py proves cached logits equal full recomputation.

The modern block (issue 23; Llama, SmolLM2, Qwen) changes two things here, both optional:
rotary position embeddings (`rope_cache`, `apply_rope`: each pair of a query's or key's channels
is rotated by an angle proportional to its position, so a score depends only on the distance m - n)
and grouped-query attention (`n_kv_head` < n_head: several query heads share one key/value head;
the same as repeating the key/value heads (`repeat_kv`), with a KV cache n_head / n_kv_head times
smaller). tests/test_modern_block.py checks both against transformers' Llama code.
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


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, n_kv, S, hs) -> (B, n_kv * n_rep, S, hs): query head j reads key/value head j // n_rep.

    Grouped-query attention computes what full multi-head attention computes with these repeated
    keys and values; only the cache (and the k/v projections) are n_rep times smaller."""
    return x if n_rep == 1 else x.repeat_interleave(n_rep, dim=-3)


def rope_cache(n_pos: int, head_size: int, theta: float = 10000.0,
               device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (n_pos, hs) float32 of rotary position embeddings (Su et al. 2021, RoFormer).

    Channel pair (i, i + hs/2) of a vector at position m turns by the angle m * theta^(-2i/hs):
    fast turns for the first pairs, slow ones for the last (the Llama / GPT-NeoX layout: halves,
    not interleaved neighbours)."""
    if head_size % 2:
        raise ValueError(f"rotary embeddings turn pairs of channels: head size {head_size} must be even")
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_size, 2, dtype=torch.int64, device=device).float()
                                / head_size))  # (hs/2,): one frequency per channel pair
    angles = torch.arange(n_pos, device=device).float()[:, None] * inv_freq[None, :]  # (n_pos, hs/2): m * f_i
    angles = torch.cat([angles, angles], dim=-1)  # (n_pos, hs): channels i and i + hs/2 share angle i
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension: a 90-degree turn of each pair."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate every channel pair of x (..., T, hs) by its position's angle; cos, sin (T, hs) -> (..., T, hs).

    Per pair: (a, b) -> (a cos - b sin, a sin + b cos), a plane rotation, so lengths are kept and
    the dot product of a query at m and a key at n depends on m - n only."""
    return x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)


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
    if q.dim() >= 3 and k.shape[-3] != q.shape[-3]:  # grouped-query attention: share the k heads
        k = repeat_kv(k, q.shape[-3] // k.shape[-3])
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
    if v.dim() >= 3 and v.shape[-3] != q.shape[-3]:  # grouped-query: (B, n_kv, S, hs) -> (B, nh, S, hs)
        v = repeat_kv(v, q.shape[-3] // v.shape[-3])
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
    for S == T; with cached keys one query needs no mask and several get `causal_mask(T, S)`.
    k, v may have fewer heads than q (grouped-query attention)."""
    T, S = q.shape[-2], k.shape[-2]
    p = dropout_p if training else 0.0
    gqa = {}
    if k.dim() >= 3 and k.shape[-3] != q.shape[-3]:
        if _SDPA_GQA:
            gqa = {"enable_gqa": True}
        else:  # PyTorch < 2.5: repeat the key/value heads by hand
            k, v = repeat_kv(k, q.shape[-3] // k.shape[-3]), repeat_kv(v, q.shape[-3] // v.shape[-3])
    if S == T:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True, **gqa)
    mask = None if T == 1 else causal_mask(T, q.device, S)  # one new token sees every key
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, **gqa)


_SDPA_GQA = "enable_gqa" in (F.scaled_dot_product_attention.__doc__ or "")  # PyTorch >= 2.5


class KVCache:
    """Every layer's keys and values, pre-allocated: k, v (n_layer, B, n_kv, max_len, hs), `length` filled.

    A forward pass with the cache writes the new tokens' keys and values of layer i at positions
    [length, length + T) (`update`), attends to all of [0, length + T), and then `advance(T)`
    moves `length` on (GPT.forward does both). Memory: 2 * n_layer * n_kv * hs numbers per token
    and sequence (`bytes_per_token`): 2 * n_layer * n_embd with one key/value head per query head,
    n_head / n_kv times less with grouped-query attention. With rotary positions the cache holds
    keys already rotated to their own positions.

    The cache keeps the dtype the keys are computed in: an empty cache that receives keys of
    another dtype (bf16 under autocast, say) re-allocates itself in that dtype before storing
    them, so each step stores and reads the compute dtype and never casts the whole prefix.
    Positions beyond `length` are uninitialised memory (torch.empty) and never read.
    """

    def __init__(self, n_layer: int, batch_size: int, n_head: int, head_size: int, max_len: int,
                 device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> None:
        self.shape = (n_layer, batch_size, n_head, max_len, head_size)  # n_head: key/value heads
        self.k = torch.empty(self.shape, device=device, dtype=dtype)  # (L, B, n_kv, max_len, hs)
        self.v = torch.empty(self.shape, device=device, dtype=dtype)
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
        if k.dtype != self.k.dtype and self.length == 0:  # empty: follow the compute dtype
            self.k = torch.empty(self.shape, device=self.k.device, dtype=k.dtype)
            self.v = torch.empty(self.shape, device=self.v.device, dtype=k.dtype)
        self.k[layer, :, :, self.length:end] = k
        self.v[layer, :, :, self.length:end] = v
        # .to is a no-op unless the dtype changed after the first tokens (then the prefix is cast)
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

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the keys and values are stored in (that of the keys the cache was fed)."""
        return self.k.dtype

    def bytes_per_token(self) -> int:
        """Bytes one position of one sequence takes: 2 (k and v) * n_layer * n_kv * head_size * element size,
        in the dtype the cache stores (see `dtype`)."""
        L, _, nh, _, hs = self.k.shape
        return 2 * L * nh * hs * self.k.element_size()


Rope = tuple[torch.Tensor, torch.Tensor]  # cos, sin (T, hs) of the positions of x's T tokens


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with GPT-2's names: x (B, T, C) -> (B, T, C) (taught in 04).

    n_kv_head < n_head gives grouped-query attention: c_attn then makes n_head query heads and
    n_kv_head key and value heads, (n_head + 2 * n_kv_head) * hs outputs in that order; each
    group of n_head / n_kv_head query heads reads one key/value head."""

    def __init__(self, n_embd: int, n_head: int, dropout: float = 0.0, bias: bool = True,
                 sdpa: bool = True, n_kv_head: int | None = None) -> None:
        super().__init__()
        n_kv_head = n_kv_head or n_head
        if n_embd % n_head != 0:
            raise ValueError(f"n_embd={n_embd} must be divisible by n_head={n_head}")
        if n_head % n_kv_head != 0:
            raise ValueError(f"n_head={n_head} must be a multiple of n_kv_head={n_kv_head}")
        self.n_head, self.n_kv_head = n_head, n_kv_head
        self.dropout = dropout
        self.sdpa = sdpa  # True: the fused kernel; False: the written-out path (same weights)
        kv = n_kv_head * (n_embd // n_head)  # width of the keys (and of the values)
        self.c_attn = nn.Linear(n_embd, n_embd + 2 * kv, bias=bias)  # q, k, v for all heads at once
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)  # mixes the heads' outputs
        self.resid_dropout = nn.Dropout(dropout)

    def qkv(self, x: torch.Tensor, rope: Rope | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, T, C) -> q (B, nh, T, hs), k, v (B, n_kv, T, hs); q and k rotated when `rope` is given."""
        C = x.shape[-1]
        kv = self.n_kv_head * (C // self.n_head)
        q, k, v = self.c_attn(x).split([C, kv, kv], dim=2)  # (B, T, C), (B, T, kv), (B, T, kv)
        q, k, v = split_heads(q, self.n_head), split_heads(k, self.n_kv_head), split_heads(v, self.n_kv_head)
        if rope is not None:  # positions enter here, as rotations of queries and keys (not of v)
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        return q, k, v

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None, layer: int = 0,
                rope: Rope | None = None) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C); with `kv_cache`, x holds the tokens after the cached ones (of `layer`),
        and `rope` (cos, sin (T, hs)) holds the angles of their positions (after the cached ones)."""
        q, k, v = self.qkv(x, rope)  # (B, nh, T, hs), (B, n_kv, T, hs) x 2
        if kv_cache is not None:
            k, v = kv_cache.update(layer, k, v)  # (B, n_kv, S, hs): the cached keys, then these
        attend = fused_attention if self.sdpa else explicit_attention
        y = attend(q, k, v, dropout_p=self.dropout, training=self.training)  # (B, nh, T, hs)
        return self.resid_dropout(self.c_proj(merge_heads(y)))  # (B, T, C)

    @torch.no_grad()
    def probs(self, x: torch.Tensor, rope: Rope | None = None) -> torch.Tensor:
        """The attention weights for heat maps: x (B, T, C) -> (B, nh, T, T)."""
        q, k, _ = self.qkv(x, rope)
        return attention_probs(q, k)
