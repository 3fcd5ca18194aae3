"""Optimiser set-up for Transformers: AdamW with weight decay on matrices only, and torch.compile (taught in 05).

Decay pulls weights towards zero. It makes sense for the matrices that mix features (Linear
weights, embeddings); biases and LayerNorm gains are one number per channel, and decaying them
only hurts. So parameters with 2 or more dimensions decay, the rest do not.
"""

from __future__ import annotations

import inspect
import os
import platform

import torch
from torch import nn

COMPILE_VAR = "MINILM_COMPILE"  # set to 0 to switch torch.compile off everywhere


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: params with dim >= 2 (matrices, embeddings) decay, the rest (biases, norms) do not."""
    params = [p for p in model.parameters() if p.requires_grad]  # a tied weight appears once
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def configure_optimizer(
    model: nn.Module,
    lr: float,
    weight_decay: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.99),
    device: torch.device | str = "cpu",
    eps: float = 1e-8,
) -> torch.optim.AdamW:
    """AdamW over `param_groups(model, weight_decay)`; the fused kernel on CUDA (and on CPU, torch >= 2.4)."""
    groups = [g for g in param_groups(model, weight_decay) if g["params"]]
    if fused_supported(device):
        # one kernel for every tensor instead of several per tensor: on a small model's CPU
        # step this is ~3x faster (benchmarks/gpt.py), the same numbers up to float rounding
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=True)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)


def fused_supported(device: torch.device | str) -> bool:
    """True where AdamW(fused=True) runs: CUDA (torch >= 2.0) and CPU (torch >= 2.4); not mps."""
    kind = torch.device(device).type
    if "fused" not in inspect.signature(torch.optim.AdamW).parameters:
        return False
    if kind == "cuda":
        return True
    version = tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2])
    return kind == "cpu" and version >= (2, 4)


def compile_supported(device: torch.device | str) -> bool:
    """True where torch.compile is on by default: CUDA on Linux with Triton installed (never CPU, mps, Windows)."""
    device = torch.device(device)
    if device.type != "cuda" or platform.system() == "Windows":
        return False
    if os.environ.get(COMPILE_VAR, "").strip() in {"0", "false", "no", "off"}:
        return False
    try:
        import triton  # noqa: F401  (the compiler's GPU backend)
    except ImportError:
        return False
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 7  # Triton needs Volta or newer (T4 is 7.5)


def maybe_compile(model: nn.Module, device: torch.device | str, enabled: bool | None = None) -> nn.Module:
    """`torch.compile(model)` when enabled (None: where `compile_supported(device)`), else model itself."""
    if enabled is None:
        enabled = compile_supported(device)
    return torch.compile(model) if enabled else model
