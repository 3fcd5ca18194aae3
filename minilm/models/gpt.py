"""A GPT-2-style decoder-only Transformer with GPT-2's parameter names (taught in 04, trained in 05).

idx (B, T) -> token + position embeddings -> n_layer x Block -> LayerNorm -> logits (B, T, V).
Parameter names follow GPT-2 (`transformer.wte`, `transformer.h.0.attn.c_attn`, ...), so real
GPT-2 weights load by key (notebook 07; note that Hugging Face stores the c_attn/c_proj/c_fc
matrices transposed, as Conv1D). The embedding and the output layer share one matrix.

The modern block (issue 23: Llama, SmolLM2, Qwen) is the same class with other options of
GPTConfig (`GPTConfig.modern(...)` sets them all): RMSNorm for LayerNorm (`norm="rmsnorm"`),
rotary positions for the learned wpe (`position="rope"`), the gated SwiGLU MLP for GELU
(`mlp="swiglu"`), grouped-query attention (`n_kv_head`), no biases, an optional untied output
layer. The names stay GPT-2's (ln_1, attn.c_attn, mlp.c_fc, ...), so the training loop,
checkpoints, generation, the KV cache, quantization and LoRA work on it unchanged.
minilm.models.llama loads Llama-architecture weights (SmolLM2-135M) into it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .attention import CausalSelfAttention, KVCache, Rope, rope_cache
from .base import check_choices, lm_loss


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
    # the modern block (issue 23); every default is GPT-2's
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"  # RMSNorm: no mean, no bias (Llama)
    norm_eps: float = 1e-5  # the epsilon under the square root of either norm
    position: Literal["learned", "rope"] = "learned"  # rope: rotary, no wpe table
    rope_theta: float = 10000.0  # base of the rotary frequencies (SmolLM2: 100,000)
    mlp: Literal["gelu", "swiglu"] = "gelu"  # swiglu: c_proj(silu(gate) * up)
    mlp_hidden: int | None = None  # MLP width; None: 4 * n_embd (gelu), 8/3 * n_embd rounded up to 8 (swiglu)
    n_kv_head: int | None = None  # key/value heads (grouped-query attention); None: n_head
    tie_weights: bool = True  # lm_head shares wte's matrix

    def __post_init__(self) -> None:
        check_choices(self)
        if self.n_kv_head is not None and (self.n_kv_head < 1 or self.n_head % self.n_kv_head):
            raise ValueError(f"n_head={self.n_head} must be a multiple of n_kv_head={self.n_kv_head} "
                             "(each key/value head serves the same number of query heads)")
        if self.position == "rope" and self.head_size % 2:
            raise ValueError(f"rotary positions turn pairs of channels: the head size n_embd / n_head = "
                             f"{self.head_size} must be even")

    @classmethod
    def modern(cls, **kwargs) -> GPTConfig:
        """A Llama-style config: RMSNorm, rotary positions, SwiGLU, no biases; kwargs override (n_kv_head, ...)."""
        return cls(**{"norm": "rmsnorm", "position": "rope", "mlp": "swiglu", "bias": False, **kwargs})

    @property
    def head_size(self) -> int:
        """Channels per attention head, n_embd // n_head."""
        return self.n_embd // self.n_head

    @property
    def mlp_width(self) -> int:
        """Hidden units of the MLP: mlp_hidden, else 4C for GELU, else 8C/3 rounded up to a multiple of 8
        for SwiGLU (three matrices of C x 8C/3 hold as many weights as GELU's two of C x 4C)."""
        if self.mlp_hidden is not None:
            return self.mlp_hidden
        return 4 * self.n_embd if self.mlp == "gelu" else -(-8 * self.n_embd // 3 // 8) * 8

    def key_dict(self) -> dict:
        """asdict(self) without the modern-block fields that hold their defaults: what the zoo's cache key
        hashes (minilm.training.zoo.recipe_key), so a GPT-2-style config keeps the key it had before
        those fields existed."""
        default = {f.name: f.default for f in fields(self)}
        return {k: v for k, v in asdict(self).items() if k in GPT2_FIELDS or v != default[k]}


GPT2_FIELDS = ("block_size", "vocab_size", "n_layer", "n_head", "n_embd", "dropout", "bias", "sdpa")
"""GPTConfig's fields before the modern block (`GPTConfig.key_dict` always keeps them)."""


class RMSNorm(nn.Module):
    """Root-mean-square normalisation (Zhang and Sennrich 2019): x / sqrt(mean(x^2) + eps) * weight.

    LayerNorm without the mean subtraction and the bias: (..., C) -> (..., C). Computed in fp32 and
    cast back before the gain, as Llama does (equal to torch.nn.RMSNorm in fp32)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))  # (C,): a learned gain per channel
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., C) -> (..., C) with root mean square 1 per position before the gain."""
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)  # (..., C) / (..., 1)
        return self.weight * xf.to(x.dtype)


def make_norm(config: GPTConfig) -> nn.Module:
    """The block's normalisation: nn.LayerNorm (GPT-2) or RMSNorm (modern), over n_embd channels."""
    if config.norm == "rmsnorm":
        return RMSNorm(config.n_embd, config.norm_eps)
    return nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)


class SwiGLU(nn.Module):
    """The gated MLP of Llama (Shazeer 2020, "GLU Variants Improve Transformer"): x (B, T, C) -> (B, T, C).

    c_fc makes 2H numbers per token, a gate and a value ("up"); the output is
    c_proj(silu(gate) * up): each hidden unit is switched by a smooth gate computed from the same x."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        H = config.mlp_width
        self.c_fc = nn.Linear(config.n_embd, 2 * H, bias=config.bias)  # [gate; up] in one matrix
        self.c_proj = nn.Linear(H, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C)."""
        gate, up = self.c_fc(x).chunk(2, dim=-1)  # (B, T, H) each
        return self.dropout(self.c_proj(F.silu(gate) * up))  # silu(g) = g * sigmoid(g)


class MLP(nn.Module):
    """The position-wise feed-forward block: x (B, T, C) -> (B, T, C) through 4C GELU units."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.mlp_width, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's GELU
        self.c_proj = nn.Linear(config.mlp_width, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C)."""
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))  # (B, T, 4C) inside


class Block(nn.Module):
    """One pre-norm Transformer block: x + attn(ln(x)), then x + mlp(ln(x)); (B, T, C) -> (B, T, C)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(
            config.n_embd, config.n_head, config.dropout, config.bias, config.sdpa, config.n_kv_head
        )
        self.ln_2 = make_norm(config)
        self.mlp = SwiGLU(config) if config.mlp == "swiglu" else MLP(config)

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None, layer: int = 0,
                rope: Rope | None = None) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C); the residual stream carries x past each sub-layer."""
        x = x + self.attn(self.ln_1(x), kv_cache, layer, rope)  # tokens talk to each other
        x = x + self.mlp(self.ln_2(x))  # each token thinks on its own
        return x


class GPT(nn.Module):
    """The decoder-only Transformer: forward(idx (B, T), targets (B, T) | None) -> (logits (B, T, V), loss)."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.block_size = config.block_size
        modules: dict[str, nn.Module] = {"wte": nn.Embedding(config.vocab_size, config.n_embd)}  # tokens
        if config.position == "learned":
            modules["wpe"] = nn.Embedding(config.block_size, config.n_embd)  # learned positions
        else:  # rotary: no parameters, the angles of every position (not saved: rebuilt from config)
            self.register_buffer("rope_cos", None, persistent=False)  # (block_size, hs), see _rope_init
            self.register_buffer("rope_sin", None, persistent=False)
            self._rope_init()
        modules["drop"] = nn.Dropout(config.dropout)
        modules["h"] = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        modules["ln_f"] = make_norm(config)
        self.transformer = nn.ModuleDict(modules)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            # weight tying (as GPT-2): the output layer reuses the embedding matrix; saves V*C params
            self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)
        # GPT-2: each residual branch's output projection gets std 0.02/sqrt(2*n_layer), so the
        # variance of the residual stream stays ~constant however many blocks add into it
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _rope_init(self, device: torch.device | str | None = None) -> None:
        """(Re)compute the rotary angles of positions 0..block_size-1 (after building on the meta device)."""
        if self.config.position == "rope":
            c = self.config
            self.rope_cos, self.rope_sin = rope_cache(c.block_size, c.head_size, c.rope_theta, device)

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
        if non_embedding and "wpe" in self.transformer:
            n -= self.transformer.wpe.weight.numel()
        return n

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None, kv_cache: KVCache | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) int64 -> logits (B, T, V) and mean cross-entropy against targets (B, T) or None.

        With `kv_cache` (from `new_kv_cache`), idx holds the tokens after the `kv_cache.length`
        cached ones: they take positions length .. length + T - 1 and the cache advances by T.
        Positions (learned wpe or precomputed rotary angles) exist up to block_size, so length + T
        may not pass it (notebook 06's policy: `minilm.generation.CachedDecoder` re-prefills)."""
        logits = self.lm_head(self.features(idx, kv_cache))  # (B, T, V)
        return logits, lm_loss(logits, targets)  # mean cross-entropy, -1 targets ignored

    def new_kv_cache(self, batch_size: int, max_len: int | None = None,
                     device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> KVCache:
        """An empty KVCache for `batch_size` sequences of up to max_len (default block_size) positions.

        It holds n_kv_head heads per layer, in `dtype`, by default the compute dtype: the autocast
        dtype when autocast is on for the weights' device, else the weights' dtype (and a cache made
        outside autocast but fed inside it switches to the keys' dtype at its first use)."""
        c = self.config
        w = self.transformer.wte.weight
        return KVCache(c.n_layer, batch_size, c.n_kv_head or c.n_head, c.head_size,
                       max_len or self.block_size, device or w.device, dtype or compute_dtype(w))

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """The attention weights of every layer for idx (B, T): a list of n_layer tensors (B, nh, T, T)."""
        if idx.shape[1] > self.block_size:  # the same limit as forward: wpe has block_size rows
            raise ValueError(f"sequence of length {idx.shape[1]} is longer than block_size={self.block_size}")
        x, rope = self.embed(idx, 0)  # (B, T, C)
        maps = []
        for block in self.transformer.h:
            maps.append(block.attn.probs(block.ln_1(x), rope))  # (B, nh, T, T)
            x = block(x, rope=rope)
        return maps

    def embed(self, idx: torch.Tensor, start: int = 0) -> tuple[torch.Tensor, Rope | None]:
        """idx (B, T) at positions start.. -> (x (B, T, C), rope): the token embeddings, plus the learned
        position embeddings (GPT-2; rope None), or with (cos, sin) (T, hs) for the attention (rotary)."""
        T = idx.shape[1]
        x = self.transformer.wte(idx)  # (B, T, C)
        if "wpe" in self.transformer:
            pos = torch.arange(start, start + T, device=idx.device)  # (T,)
            return x + self.transformer.wpe(pos), None  # (B, T, C) + (T, C)
        return x, (self.rope_cos[start:start + T], self.rope_sin[start:start + T])

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
        x, rope = self.embed(idx, start)  # (B, T, C); rope: the angles of positions start.. (or None)
        x = self.transformer.drop(x)
        for i, block in enumerate(self.transformer.h):
            x = block(x, kv_cache, i, rope)  # (B, T, C)
        if kv_cache is not None:
            kv_cache.advance(T)
        return self.transformer.ln_f(x)  # (B, T, C)


def compute_dtype(weight: torch.Tensor) -> torch.dtype:
    """The dtype activations have: the autocast dtype when autocast is on for weight's device, else weight's."""
    kind = weight.device.type
    try:
        if torch.is_autocast_enabled(kind):
            return torch.get_autocast_dtype(kind)
    except (TypeError, AttributeError):  # PyTorch < 2.4: the device-type arguments do not exist
        if kind == "cuda" and torch.is_autocast_enabled():
            return torch.get_autocast_gpu_dtype()
    return weight.dtype


def flops_per_token(config: GPTConfig, n_params: int) -> float:
    """Training FLOPs per token (forward + backward), PaLM appendix B: 6N + 12 * L * C * T."""
    return 6 * n_params + 12 * config.n_layer * config.n_embd * config.block_size
