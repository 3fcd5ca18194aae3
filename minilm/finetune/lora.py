"""LoRA written by hand: a low-rank update beside a frozen Linear layer (taught in 07).

Hu et al. (2021), "LoRA: Low-Rank Adaptation of Large Language Models": keep the pretrained
weight W (out, in) frozen and learn a low-rank change `delta_W = (alpha / r) * B @ A`, with
A (r, in) and B (out, r), r << min(in, out). The layer computes

    y = x @ W.T + b + (alpha / r) * dropout(x) @ A.T @ B.T

B starts at zero, so a freshly applied LoRA changes nothing; A starts random (Kaiming uniform, as
`nn.Linear` does), so gradients reach B at once. After training, `merge()` folds delta_W into W
(no extra cost at inference) and `unmerge()` takes it out again.

    names = apply_lora(model, r"attn\\.c_attn", rank=8, alpha=16)   # any nn.Module, by name pattern
    mark_only_lora_trainable(model, keep=r"^head\\.")             # everything else frozen
    trainable, total = count_parameters(model)

Works on minilm's GPT (`nn.Linear`) and on Hugging Face models: their `nn.Linear` layers (BERT's
`query`/`key`/`value`) and GPT-2's `Conv1D`, which stores its weight transposed, (in, out).

Token embeddings (`nn.Embedding`) take a low-rank update too (`LoRAEmbedding`, as in the LoRA paper's
code): delta_E = (alpha / r) * (B @ A).T, shape (vocab, dim). Where the embedding's weight is tied to an
output layer (GPT's `lm_head`), that layer is wrapped too and reads the same update
(`TiedLoRAOutput`), so the adapted model stays tied and merging changes nothing it computes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import torch
from torch import nn


def _is_conv1d(module: nn.Module) -> bool:
    """Hugging Face's GPT-2 `Conv1D`: y = x @ W + b with W (in, out) (a Linear with its weight transposed)."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and hasattr(module, "weight")


def _features(base: nn.Module) -> tuple[int, int]:
    """(in_features, out_features) of an nn.Linear or a Conv1D."""
    if isinstance(base, nn.Linear):
        return base.in_features, base.out_features
    in_f, out_f = base.weight.shape  # Conv1D: (in, out)
    return in_f, out_f


def _check_rank_alpha(rank: int, alpha: float, limit: int, limit_name: str) -> None:
    if not 1 <= rank <= limit:
        raise ValueError(f"rank={rank} must be between 1 and {limit_name} = {limit}")
    if alpha <= 0:
        raise ValueError(f"alpha={alpha} must be > 0 (the update is scaled by alpha / rank)")


class _Wrapper(nn.Module):
    """A layer around a frozen `base`: `weight` and `bias` are the base's, so code that reads
    `layer.weight` (a dtype or device check, weight tying) keeps working."""

    base: nn.Module

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return getattr(self.base, "bias", None)


class LoRALinear(_Wrapper):
    """A frozen `base` Linear (or GPT-2 Conv1D) plus a trainable rank-`rank` update: x (..., in) -> (..., out)."""

    def __init__(self, base: nn.Module, rank: int = 8, alpha: float = 16.0, dropout: float = 0.0) -> None:
        super().__init__()
        if not (isinstance(base, nn.Linear) or _is_conv1d(base)):
            raise TypeError(f"LoRALinear wraps an nn.Linear (or a Hugging Face Conv1D), got {type(base).__name__}")
        in_f, out_f = _features(base)
        _check_rank_alpha(rank, alpha, min(in_f, out_f), "min(in, out)")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout} must be in [0, 1)")
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.in_features, self.out_features = in_f, out_f
        self.rank, self.alpha = rank, alpha
        self.scaling = alpha / rank
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(rank, in_f, device=w.device, dtype=w.dtype))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(out_f, rank, device=w.device, dtype=w.dtype))  # (out, r)
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # nn.Linear's own initialisation
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        """The update in nn.Linear's layout: (alpha / r) * B @ A, shape (out, in)."""
        return (self.lora_B @ self.lora_A) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in) -> base(x) + scaling * dropout(x) @ A.T @ B.T, (..., out); merged: base(x) alone."""
        y = self.base(x)
        if self.merged:
            return y
        return y + (self.lora_dropout(x) @ self.lora_A.T @ self.lora_B.T) * self.scaling  # (..., r) inside

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the update into the base weight: W <- W + delta_W (Conv1D: its transpose). Idempotent."""
        if not self.merged:
            delta = self.delta_weight()
            self.base.weight += delta if isinstance(self.base, nn.Linear) else delta.T
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take the update out of the base weight again: W <- W - delta_W. Idempotent."""
        if self.merged:
            delta = self.delta_weight()
            self.base.weight -= delta if isinstance(self.base, nn.Linear) else delta.T
            self.merged = False

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, rank={self.rank}, alpha={self.alpha}"


class LoRAEmbedding(_Wrapper):
    """A frozen `base` nn.Embedding plus a trainable rank-`rank` update: ids (...) -> (..., dim).

    delta_E = (alpha / r) * (B @ A).T with A (r, vocab) and B (dim, r): row v of the table moves by
    (alpha / r) * B @ A[:, v]. A starts at zero (a fresh LoRA changes nothing) and B random, the
    reverse of LoRALinear, as in the LoRA paper's code: a lookup reads one column of A per token."""

    def __init__(self, base: nn.Embedding, rank: int = 8, alpha: float = 16.0) -> None:
        super().__init__()
        if not isinstance(base, nn.Embedding):
            raise TypeError(f"LoRAEmbedding wraps an nn.Embedding, got {type(base).__name__}")
        vocab, dim = base.weight.shape
        _check_rank_alpha(rank, alpha, min(vocab, dim), "min(vocab, dim)")
        self.base = base
        base.weight.requires_grad_(False)
        self.num_embeddings, self.embedding_dim = vocab, dim
        self.rank, self.alpha, self.scaling = rank, alpha, alpha / rank
        w = base.weight
        self.lora_A = nn.Parameter(torch.zeros(rank, vocab, device=w.device, dtype=w.dtype))  # (r, vocab)
        self.lora_B = nn.Parameter(torch.empty(dim, rank, device=w.device, dtype=w.dtype))  # (dim, r)
        nn.init.normal_(self.lora_B)
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        """The update in nn.Embedding's layout: (alpha / r) * (B @ A).T, shape (vocab, dim)."""
        return (self.lora_B @ self.lora_A).T * self.scaling

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (...) int -> base(idx) + scaling * A[:, idx].T @ B.T, (..., dim); merged: base(idx) alone."""
        y = self.base(idx)
        if self.merged:
            return y
        return y + (self.lora_A.T[idx] @ self.lora_B.T) * self.scaling  # (..., r) @ (r, dim)

    @torch.no_grad()
    def merge(self) -> None:
        """E <- E + delta_E (a tied output layer sees it through the shared weight). Idempotent."""
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """E <- E - delta_E. Idempotent."""
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False

    def extra_repr(self) -> str:
        return f"vocab={self.num_embeddings}, dim={self.embedding_dim}, rank={self.rank}, alpha={self.alpha}"


class TiedLoRAOutput(_Wrapper):
    """An output Linear whose weight is a LoRAEmbedding's table (weight tying): x (..., dim) -> (..., vocab).

    It adds the embedding's own update, x @ delta_E.T = scaling * x @ B @ A, until the embedding is
    merged (then the shared weight holds it). No parameters of its own: the embedding trains them."""

    def __init__(self, base: nn.Linear, embedding: LoRAEmbedding) -> None:
        super().__init__()
        self.base = base
        self._embedding = [embedding]  # a plain list: not a second copy of the adapter in state_dict()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self._embedding[0]
        y = self.base(x)
        if e.merged:
            return y
        return y + (x @ e.lora_B @ e.lora_A) * e.scaling  # (..., dim) @ (dim, r) @ (r, vocab)


def _patterns(pattern: str | Iterable[str]) -> list[re.Pattern]:
    items = [pattern] if isinstance(pattern, str) else list(pattern)
    if not items:
        raise ValueError("pattern is empty: give a regular expression such as r'attn\\.c_attn'")
    return [re.compile(p) for p in items]


def linear_names(model: nn.Module) -> list[str]:
    """The names of every nn.Linear / Conv1D / nn.Embedding in `model` (the layers LoRA can wrap)."""
    return [n for n, m in model.named_modules()
            if (isinstance(m, (nn.Linear, nn.Embedding)) or _is_conv1d(m)) and n]


def apply_lora(model: nn.Module, pattern: str | Iterable[str], rank: int = 8, alpha: float = 16.0,
               dropout: float = 0.0) -> list[str]:  # dropout: Linear layers only (an embedding has none)
    """Replace, in place, every Linear/Conv1D whose full name matches `pattern` (re.search) by a LoRALinear,
    and every nn.Embedding by a LoRAEmbedding (an output layer tied to it becomes a TiedLoRAOutput).

    Returns the names replaced. A pattern that matches no such layer is an error that lists the
    layers there are, so a typo never trains a model with no adapters at all."""
    regexes = _patterns(pattern)
    candidates = linear_names(model)
    chosen = [n for n in candidates if any(r.search(n) for r in regexes)]
    if not chosen:
        wrapped = [n for n, m in model.named_modules() if isinstance(m, (LoRALinear, LoRAEmbedding))]
        shown = ", ".join(candidates[:12]) + (", ..." if len(candidates) > 12 else "")
        hint = f" ({len(wrapped)} layers already carry LoRA: {', '.join(wrapped[:4])})" if wrapped else ""
        raise ValueError(
            f"LoRA pattern {pattern!r} matches no Linear layer of this {type(model).__name__}{hint}. "
            f"Its Linear layers are named like: {shown or 'none'}. Write a regular expression that "
            "re.search finds in some of these names, e.g. r'attn\\.c_attn' for minilm's GPT or "
            "r'query|value' for a BERT encoder."
        )
    layers = {n: model.get_submodule(n) for n in candidates}
    embedding_of = {id(m.weight): n for n, m in layers.items() if isinstance(m, nn.Embedding)}
    tied = {n: embedding_of[id(m.weight)] for n, m in layers.items()  # output layer -> the embedding it shares
            if isinstance(m, nn.Linear) and id(m.weight) in embedding_of}
    for name in chosen:
        if name in tied and tied[name] not in chosen:
            raise ValueError(
                f"{name}'s weight is tied to the embedding {tied[name]}: an update to it alone would change "
                f"{tied[name]} too when merged. Put LoRA on the embedding instead (a pattern matching "
                f"{tied[name]!r}); the tied output layer then shares its update.")

    def replace(name: str, new: nn.Module) -> None:
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, new)

    chosen = [n for n in chosen if n not in tied]  # a tied output layer follows its embedding
    for name in chosen:
        layer = layers[name]
        if isinstance(layer, nn.Embedding):
            adapter = LoRAEmbedding(layer, rank, alpha)
            replace(name, adapter)
            for out in (o for o, e in tied.items() if e == name):
                replace(out, TiedLoRAOutput(layers[out], adapter))
        else:
            replace(name, LoRALinear(layer, rank, alpha, dropout))
    return chosen


def lora_layers(model: nn.Module) -> list[LoRALinear | LoRAEmbedding]:
    """Every LoRALinear and LoRAEmbedding inside `model`."""
    return [m for m in model.modules() if isinstance(m, (LoRALinear, LoRAEmbedding))]


def merge_lora(model: nn.Module) -> int:
    """Merge every LoRA layer of `model` into its base weight; returns how many."""
    layers = lora_layers(model)
    for layer in layers:
        layer.merge()
    return len(layers)


def unmerge_lora(model: nn.Module) -> int:
    """Undo `merge_lora`; returns how many layers."""
    layers = lora_layers(model)
    for layer in layers:
        layer.unmerge()
    return len(layers)


def mark_only_lora_trainable(model: nn.Module, keep: str | None = None) -> None:
    """Freeze every parameter except the LoRA matrices and those whose name matches `keep` (e.g. a head)."""
    keep_re = re.compile(keep) if keep else None
    for name, p in model.named_parameters():
        is_lora = name.endswith(("lora_A", "lora_B"))
        p.requires_grad_(is_lora or bool(keep_re and keep_re.search(name)))


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts, each tensor counted once (tied weights once)."""
    params = list(model.parameters())  # parameters() yields a shared tensor once
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)
