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


class LoRALinear(nn.Module):
    """A frozen `base` Linear (or GPT-2 Conv1D) plus a trainable rank-`rank` update: x (..., in) -> (..., out)."""

    def __init__(self, base: nn.Module, rank: int = 8, alpha: float = 16.0, dropout: float = 0.0) -> None:
        super().__init__()
        if not (isinstance(base, nn.Linear) or _is_conv1d(base)):
            raise TypeError(f"LoRALinear wraps an nn.Linear (or a Hugging Face Conv1D), got {type(base).__name__}")
        in_f, out_f = _features(base)
        if not 1 <= rank <= min(in_f, out_f):
            raise ValueError(f"rank={rank} must be between 1 and min(in, out) = {min(in_f, out_f)}")
        if alpha <= 0:
            raise ValueError(f"alpha={alpha} must be > 0 (the update is scaled by alpha / rank)")
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

    @property
    def weight(self) -> torch.Tensor:
        """The base weight (code that reads `layer.weight`, e.g. a dtype check, keeps working)."""
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

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


def _patterns(pattern: str | Iterable[str]) -> list[re.Pattern]:
    items = [pattern] if isinstance(pattern, str) else list(pattern)
    if not items:
        raise ValueError("pattern is empty: give a regular expression such as r'attn\\.c_attn'")
    return [re.compile(p) for p in items]


def linear_names(model: nn.Module) -> list[str]:
    """The names of every nn.Linear / Conv1D in `model` (the layers LoRA can wrap)."""
    return [n for n, m in model.named_modules() if (isinstance(m, nn.Linear) or _is_conv1d(m)) and n]


def apply_lora(model: nn.Module, pattern: str | Iterable[str], rank: int = 8, alpha: float = 16.0,
               dropout: float = 0.0) -> list[str]:
    """Replace, in place, every Linear/Conv1D whose full name matches `pattern` (re.search) by a LoRALinear.

    Returns the names replaced. A pattern that matches no such layer is an error that lists the
    layers there are, so a typo never trains a model with no adapters at all."""
    regexes = _patterns(pattern)
    candidates = linear_names(model)
    chosen = [n for n in candidates if any(r.search(n) for r in regexes)]
    if not chosen:
        wrapped = [n for n, m in model.named_modules() if isinstance(m, LoRALinear)]
        shown = ", ".join(candidates[:12]) + (", ..." if len(candidates) > 12 else "")
        hint = f" ({len(wrapped)} layers already carry LoRA: {', '.join(wrapped[:4])})" if wrapped else ""
        raise ValueError(
            f"LoRA pattern {pattern!r} matches no Linear layer of this {type(model).__name__}{hint}. "
            f"Its Linear layers are named like: {shown or 'none'}. Write a regular expression that "
            "re.search finds in some of these names, e.g. r'attn\\.c_attn' for minilm's GPT or "
            "r'query|value' for a BERT encoder."
        )
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(getattr(parent, child), rank, alpha, dropout))
    return chosen


def lora_layers(model: nn.Module) -> list[LoRALinear]:
    """Every LoRALinear inside `model`."""
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


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
