"""Measuring inference: tokens/s, the cost of a step, val loss and file size of any model variant (06).

    rows = measure_variants(model, val_data, workdir)   # fp32, int8, int4, pruned 30/50/70/90 %
    speed = tokens_per_second(model, n_tokens=256, batch_size=1, use_cache=True)

Timings are wall-clock on whatever device the model is on (synchronised on CUDA), best of
`repeats`: a shared or busy machine makes them noisy, so compare figures from one run.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ..models.gpt import GPT
from .quantize import load_variant, prune_model, save_variant
from .sampling import generate


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer."""
    return next(iter(list(model.parameters()) + list(model.buffers()))).device


@torch.no_grad()
def tokens_per_second(model: nn.Module, n_tokens: int = 256, batch_size: int = 1, prompt_len: int = 1,
                      use_cache: bool = True, repeats: int = 1, seed: int = 0) -> float:
    """Greedy-decode n_tokens after a random prompt (batch_size, prompt_len) -> new tokens per second (all rows).

    Best of `repeats` runs (after a short warm-up)."""
    device = model_device(model)
    vocab = model.config.vocab_size
    prompt = torch.randint(0, vocab, (batch_size, prompt_len), generator=torch.Generator().manual_seed(seed))
    prompt = prompt.to(device)
    generate(model, prompt, min(4, n_tokens), temperature=0.0, use_cache=use_cache)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        generate(model, prompt, n_tokens, temperature=0.0, use_cache=use_cache)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return batch_size * n_tokens / best


@torch.no_grad()
def step_times(model: GPT, positions: list[int], use_cache: bool, batch_size: int = 1,
               repeats: int = 5) -> list[float]:
    """Seconds for the one forward pass that yields the token after position p, for each p in `positions`.

    Without the cache that pass reads all p + 1 tokens; with it, one token whose keys and values
    meet the p cached ones. Median of `repeats`."""
    device = model_device(model)
    vocab, out = model.config.vocab_size, []
    for p in positions:
        if not 0 <= p < model.block_size:
            raise ValueError(f"position {p} must be in [0, block_size={model.block_size})")
        seq = torch.randint(0, vocab, (batch_size, p + 1), generator=torch.Generator().manual_seed(p)).to(device)
        times = []
        for _ in range(repeats):
            if use_cache:
                cache = model.new_kv_cache(batch_size)
                if p:
                    model(seq[:, :p], kv_cache=cache)  # the cached prefix (not timed)
                _sync(device)
                t = time.perf_counter()
                model(seq[:, p:], kv_cache=cache)
            else:
                _sync(device)
                t = time.perf_counter()
                model(seq)
            _sync(device)
            times.append(time.perf_counter() - t)
        out.append(sorted(times)[len(times) // 2])
    return out


@torch.no_grad()
def val_loss(model: nn.Module, val_data: torch.Tensor, n_batches: int = 8, batch_size: int = 16,
             seed: int = 0) -> float:
    """Mean cross-entropy over n_batches fixed (seeded) windows of block_size tokens of val_data (1-D)."""
    device = model_device(model)
    T = model.block_size
    if len(val_data) <= T + 1:
        raise ValueError(f"val_data has {len(val_data)} tokens; it needs more than block_size + 1 = {T + 1}")
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(n_batches):
        ix = torch.randint(len(val_data) - T - 1, (batch_size,), generator=g)
        x = torch.stack([val_data[i:i + T] for i in ix.tolist()]).to(device)
        y = torch.stack([val_data[i + 1:i + 1 + T] for i in ix.tolist()]).to(device)
        losses.append(model(x, y)[1].item())
    return sum(losses) / len(losses)


@dataclass
class VariantRow:
    """One line of the quantization table: name, file bytes, tokens/s, val loss, and ratios to fp32."""

    name: str
    file_bytes: int
    tokens_per_s: float
    val_loss: float
    size_ratio: float = 1.0  # fp32 bytes / these bytes (how many times smaller)
    loss_delta: float = 0.0  # val loss - fp32 val loss
    speed_ratio: float = 1.0  # tokens/s / fp32 tokens/s


def measure(model: nn.Module, path: str | Path, val_data: torch.Tensor, name: str = "", n_tokens: int = 128,
            n_batches: int = 8, repeats: int = 1) -> VariantRow:
    """file size of `path`, cached tokens/s and val loss of `model` (the model loaded from it)."""
    return VariantRow(name or Path(path).stem, os.path.getsize(path),
                      tokens_per_second(model, n_tokens, repeats=repeats),
                      val_loss(model, val_data, n_batches=n_batches))


def measure_variants(model: GPT, val_data: torch.Tensor, workdir: str | Path,
                     sparsities: tuple[float, ...] = (0.3, 0.5, 0.7, 0.9), n_tokens: int = 128,
                     n_batches: int = 8, repeats: int = 1, group_size: int = 32,
                     device: torch.device | str | None = None) -> list[VariantRow]:
    """Save model as fp32, int8, int4 and pruned at each sparsity in workdir, load each file back and measure it.

    Each variant's figures are of the model loaded from its file onto `device` (default: the
    model's), int8/int4 staying quantized in memory. Returns rows with ratios against fp32."""
    workdir = Path(workdir)
    device = torch.device(device) if device is not None else model_device(model)
    model = model.eval()
    rows = []
    for scheme in ("fp32", "int8", "int4"):
        path = workdir / f"{scheme}.pt"
        save_variant(model, path, scheme, group_size)
        rows.append(measure(load_variant(path, device), path, val_data, scheme, n_tokens, n_batches, repeats))
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    for s in sparsities:
        pruned = GPT(model.config)
        pruned.load_state_dict(state)
        prune_model(pruned, s)
        path = workdir / f"pruned{round(s * 100)}.pt"
        save_variant(pruned, path, "pruned")
        rows.append(measure(load_variant(path, device), path, val_data, f"pruned {round(s * 100)}%", n_tokens,
                            n_batches, repeats))
    base = rows[0]
    for r in rows:
        r.size_ratio = base.file_bytes / r.file_bytes
        r.loss_delta = r.val_loss - base.val_loss
        r.speed_ratio = r.tokens_per_s / base.tokens_per_s
    return rows


def rows_table(rows: list[VariantRow]) -> str:
    """The rows as a fixed-width text table."""
    head = f"{'variant':<12} {'file KB':>9} {'smaller':>8} {'tokens/s':>9} {'speed':>6} {'val loss':>9} {'delta':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.name:<12} {r.file_bytes / 1024:>9.1f} {r.size_ratio:>7.2f}x {r.tokens_per_s:>9.0f} "
                     f"{r.speed_ratio:>5.2f}x {r.val_loss:>9.4f} {r.loss_delta:>+8.4f}")
    return "\n".join(lines)


def rows_as_dicts(rows: list[VariantRow]) -> list[dict]:
    """The rows as plain dicts (for --json)."""
    return [asdict(r) for r in rows]
