"""A GPT-2-style decoder-only Transformer with GPT-2's parameter names (taught in 04, trained in 05).

idx (B, T) -> token + position embeddings -> n_layer x Block -> LayerNorm -> logits (B, T, V).
Parameter names follow GPT-2 (`transformer.wte`, `transformer.h.0.attn.c_attn`, ...), so real
GPT-2 weights load by key (notebook 07; note that Hugging Face stores the c_attn/c_proj/c_fc
matrices transposed, as Conv1D). The embedding and the output layer share one matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .attention import CausalSelfAttention, KVCache
from .base import lm_loss


@dataclass
class GPTConfig:
    """The shape of a GPT; GPT-2 small is GPTConfig(1024, 50257, 12, 12, 768)."""

    block_size: int = 256  # longest context the model reads, in tokens
    vocab_size: int = 65  # tokens in the vocabulary (65 characters for tinyshakespeare)
    n_layer: int = 6  # Transformer blocks stacked
    n_head: int = 6  # attention heads per block; n_embd must be divisible by it
    n_embd: int = 384  # width of the residual stream (C)
    dropout: float = 0.0  # dropout after attention and MLP (0.0 for tests and big data)
    bias: bool = True  # biases in Linear and LayerNorm, as in GPT-2
    sdpa: bool = True  # attention by F.scaled_dot_product_attention; False: written out


class MLP(nn.Module):
    """The position-wise feed-forward block: x (B, T, C) -> (B, T, C) through 4C GELU units."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's GELU
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C)."""
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))  # (B, T, 4C) inside


class Block(nn.Module):
    """One pre-LayerNorm Transformer block: x + attn(ln(x)), then x + mlp(ln(x)); (B, T, C) -> (B, T, C)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(
            config.n_embd, config.n_head, config.dropout, config.bias, config.sdpa
        )
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C); the residual stream carries x past each sub-layer."""
        x = x + self.attn(self.ln_1(x), kv_cache, layer)  # tokens talk to each other
        x = x + self.mlp(self.ln_2(x))  # each token thinks on its own
        return x


class GPT(nn.Module):
    """The decoder-only Transformer: forward(idx (B, T), targets (B, T) | None) -> (logits (B, T, V), loss)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.block_size = config.block_size
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(config.vocab_size, config.n_embd),  # token embeddings
                "wpe": nn.Embedding(config.block_size, config.n_embd),  # learned positions
                "drop": nn.Dropout(config.dropout),
                "h": nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                "ln_f": nn.LayerNorm(config.n_embd, bias=config.bias),
            }
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # weight tying (as GPT-2): the output layer reuses the embedding matrix; saves V*C params
        self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)
        # GPT-2: each residual branch's output projection gets std 0.02/sqrt(2*n_layer), so the
        # variance of the residual stream stays ~constant however many blocks add into it
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """GPT-2 initialisation: N(0, 0.02) for Linear and Embedding weights, zero biases."""
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameters counted once (tied weights once); by default without the position embeddings."""
        n = sum(p.numel() for p in self.parameters())  # parameters() yields a tied tensor once
        if non_embedding:
            n -= self.transformer.wpe.weight.numel()
        return n

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, kv_cache: KVCache | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) int64 -> logits (B, T, V) and mean cross-entropy against targets (B, T) or None.

        With `kv_cache` (from `new_kv_cache`), idx holds the tokens after the `kv_cache.length`
        cached ones: they take positions length .. length + T - 1 and the cache advances by T.
        Positions are learned (wpe), so length + T may not pass block_size (notebook 06's policy:
        `minilm.generation.CachedDecoder` re-prefills from the last half block)."""
        logits = self.lm_head(self.features(idx, kv_cache))  # (B, T, V)
        return logits, lm_loss(logits, targets)  # mean cross-entropy, -1 targets ignored

    def new_kv_cache(self, batch_size: int, max_len: int | None = None,
                     device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> KVCache:
        """An empty KVCache for `batch_size` sequences of up to max_len (default block_size) positions."""
        c = self.config
        w = self.transformer.wte.weight
        return KVCache(c.n_layer, batch_size, c.n_head, c.n_embd // c.n_head, max_len or self.block_size,
                       device or w.device, dtype or w.dtype)

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """The attention weights of every layer for idx (B, T): a list of n_layer tensors (B, nh, T, T)."""
        if idx.shape[1] > self.block_size:  # the same limit as forward: wpe has block_size rows
            raise ValueError(f"sequence of length {idx.shape[1]} is longer than block_size={self.block_size}")
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)  # (B, T, C)
        maps = []
        for block in self.transformer.h:
            maps.append(block.attn.probs(block.ln_1(x)))  # (B, nh, T, T)
            x = block(x)
        return maps

    def features(self, idx: torch.Tensor, kv_cache: KVCache | None = None) -> torch.Tensor:
        """idx (B, T) int64 -> the final hidden states (B, T, C), after ln_f and before lm_head.

        forward() is features() followed by lm_head; a classification head (07) reads these. With
        `kv_cache`, idx holds the tokens after the cached ones (see forward) and the cache advances."""
        T = idx.shape[1]  # idx is (B, T)
        start = 0 if kv_cache is None else kv_cache.length
        if start + T > self.block_size:
            where = "" if kv_cache is None else f" after the {start} cached positions"
            raise ValueError(f"sequence of length {T}{where} is longer than block_size={self.block_size}")
        if kv_cache is not None and kv_cache.batch_size != idx.shape[0]:
            raise ValueError(f"idx has batch {idx.shape[0]} but the KV cache was built for {kv_cache.batch_size}")
        pos = torch.arange(start, start + T, device=idx.device)  # (T,)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)  # (B, T, C) + (T, C)
        x = self.transformer.drop(x)
        for i, block in enumerate(self.transformer.h):
            x = block(x, kv_cache, i)  # (B, T, C)
        if kv_cache is not None:
            kv_cache.advance(T)
        return self.transformer.ln_f(x)  # (B, T, C)

def flops_per_token(config: GPTConfig, n_params: int) -> float:
    """Training FLOPs per token (forward + backward), PaLM appendix B: 6N + 12 * L * C * T."""
    return 6 * n_params + 12 * config.n_layer * config.n_embd * config.block_size
