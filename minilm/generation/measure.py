"""Measuring inference: tokens/s, the cost of a step, val loss and file size of any model variant (06).

    rows = measure_variants(model, val_data, workdir)   # fp32, int8, int4, pruned 30/50/70/90 %
    speed = tokens_per_second(model, n_tokens=256, batch_size=1, use_cache=True)
    hf = hf_twin(model)                                 # transformers' GPT2LMHeadModel, the same weights

Timings are wall-clock on whatever device the model is on (synchronised on CUDA), best of
`repeats` (`decode_rates` gives every run, for an interval): a shared or busy machine makes them
noisy, so compare figures from one run.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
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


def _prompt(model: nn.Module, batch_size: int, prompt_len: int, seed: int) -> torch.Tensor:
    """A random prompt (batch_size, prompt_len) of the model's vocabulary, on its device."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.config.vocab_size, (batch_size, prompt_len), generator=g).to(model_device(model))


def _timed(decode, model: nn.Module, new_tokens: int) -> list[float]:
    """One timed run of decode() (synchronised on a GPU) -> [new tokens per second]."""
    device = model_device(model)
    _sync(device)
    t = time.perf_counter()
    decode()
    _sync(device)
    return [new_tokens / (time.perf_counter() - t)]


def _rates(decode, model: nn.Module, new_tokens: int, repeats: int) -> list[float]:
    """Run decode() once to warm up, then `repeats` timed times -> new tokens per second of each run."""
    decode()  # warm-up: allocation, kernel selection
    return [_timed(decode, model, new_tokens)[0] for _ in range(repeats)]


@torch.no_grad()
def decode_rates(model: nn.Module, n_tokens: int = 256, batch_size: int = 1, prompt_len: int = 1,
                 use_cache: bool = True, repeats: int = 5, seed: int = 0) -> list[float]:
    """Greedy-decode n_tokens after a random prompt (batch_size, prompt_len), `repeats` times after a warm-up
    -> the new tokens per second (all rows) of each run."""
    prompt = _prompt(model, batch_size, prompt_len, seed)
    return _rates(lambda: generate(model, prompt, n_tokens, temperature=0.0, use_cache=use_cache),
                  model, batch_size * n_tokens, repeats)


def tokens_per_second(model: nn.Module, n_tokens: int = 256, batch_size: int = 1, prompt_len: int = 1,
                      use_cache: bool = True, repeats: int = 1, seed: int = 0) -> float:
    """Greedy-decode n_tokens after a random prompt (batch_size, prompt_len) -> new tokens per second (all rows).

    Best of `repeats` runs (after a short warm-up)."""
    return max(decode_rates(model, n_tokens, batch_size, prompt_len, use_cache, repeats, seed))


def hf_twin(model: GPT) -> nn.Module:
    """transformers' GPT2LMHeadModel with `model`'s weights (a GPT-2-style GPT: learned positions, LayerNorm,
    GELU, biases), in eval mode on its device: the reference a KV cache is measured against (06).

    Built from a config alone (no download); Hugging Face's Conv1D layers store (in, out), the
    transpose of nn.Linear, so those four weights per block are transposed (the inverse of
    minilm.models.gpt2.gpt_from_hf)."""
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    from ..models.gpt2 import CONV1D_WEIGHTS

    c = model.config
    gpt2_style = {"position": "learned", "norm": "layernorm", "mlp": "gelu", "bias": True}
    other = {k: getattr(c, k) for k, want in gpt2_style.items() if getattr(c, k, want) != want}
    if other or c.mlp_width != 4 * c.n_embd:
        raise ValueError(f"hf_twin needs a GPT-2-style model ({gpt2_style}, a 4 x n_embd MLP); this one has "
                         f"{other or {'mlp_width': c.mlp_width}}")
    hf_logging.set_verbosity_error()
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=c.vocab_size, n_positions=c.block_size, n_embd=c.n_embd,
                                    n_layer=c.n_layer, n_head=c.n_head, resid_pdrop=0.0, embd_pdrop=0.0,
                                    attn_pdrop=0.0, bos_token_id=0, eos_token_id=None, pad_token_id=0))
    state = {k: (v.t() if k.endswith(CONV1D_WEIGHTS) else v) for k, v in model.state_dict().items()}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith(".attn.bias") and not k.endswith(".attn.masked_bias")]
    if missing or unexpected:
        raise ValueError(f"weights that do not map onto GPT2LMHeadModel: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    return hf.eval().to(model_device(model))


@torch.no_grad()
def hf_decode_rates(hf_model: nn.Module, n_tokens: int, batch_size: int = 1, prompt_len: int = 1,
                    repeats: int = 5, seed: int = 0) -> list[float]:
    """decode_rates for a transformers model: greedy `generate(use_cache=True)` of exactly n_tokens."""
    prompt = _prompt(hf_model, batch_size, prompt_len, seed)
    kwargs = {"do_sample": False, "use_cache": True, "pad_token_id": 0, "max_new_tokens": n_tokens,
              "min_new_tokens": n_tokens, "attention_mask": torch.ones_like(prompt)}
    return _rates(lambda: hf_model.generate(prompt, **kwargs), hf_model, batch_size * n_tokens, repeats)


@torch.no_grad()
def step_times(model: GPT, positions: list[int], use_cache: bool, batch_size: int = 1,
               repeats: int = 5) -> list[float]:
    """Seconds for the one forward pass that yields the token after position p, for each p in `positions`.

    Without the cache that pass reads all p + 1 tokens; with it, one token whose keys and values
    meet the p cached ones. The positions are timed in turns, `repeats` rounds; each figure is the
    best (smallest) of its runs, the one least disturbed by other work on the machine."""
    device = model_device(model)
    vocab = model.config.vocab_size
    for p in positions:
        if not 0 <= p < model.block_size:
            raise ValueError(f"position {p} must be in [0, block_size={model.block_size})")
    seqs = [torch.randint(0, vocab, (batch_size, p + 1), generator=torch.Generator().manual_seed(p)).to(device)
            for p in positions]
    times: list[list[float]] = [[] for _ in positions]
    for _ in range(repeats):
        for i, (p, seq) in enumerate(zip(positions, seqs)):
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
            times[i].append(time.perf_counter() - t)
    return [min(t) for t in times]


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
    tokens_per_s_runs: list[float] = field(default_factory=list)  # every timed run (tokens_per_s: the best)


@torch.no_grad()
def interleaved_rates(models: list[nn.Module], n_tokens: int, repeats: int, seed: int = 0) -> list[list[float]]:
    """Cached greedy tokens/s of each model (batch 1), timed in rounds: one run of every model per round,
    `repeats` rounds after a warm-up of each -> for each model, its runs. On a machine whose load
    changes, every model meets the same changes, so their ranges can be compared."""
    decoders = [(lambda m=m: generate(m, _prompt(m, 1, 1, seed), n_tokens, temperature=0.0)) for m in models]
    runs: list[list[float]] = [[] for _ in models]
    for decode in decoders:
        decode()  # warm-up
    for _ in range(repeats):
        for i, (m, decode) in enumerate(zip(models, decoders)):
            runs[i] += _timed(decode, m, n_tokens)
    return runs



def measure_variants(model: GPT, val_data: torch.Tensor, workdir: str | Path,
                     sparsities: tuple[float, ...] = (0.3, 0.5, 0.7, 0.9), n_tokens: int = 128,
                     n_batches: int = 8, repeats: int = 1, group_size: int = 32,
                     device: torch.device | str | None = None) -> list[VariantRow]:
    """Save model as fp32, int8, int4 and pruned at each sparsity in workdir, load each file back and measure it:
    file size, val loss, and cached tokens/s at batch 1 (`interleaved_rates`: every run kept, the best in
    tokens_per_s).

    Each variant's figures are of the model loaded from its file onto `device` (default: the
    model's), int8/int4 staying quantized in memory. Returns rows with ratios against fp32."""
    workdir = Path(workdir)
    device = torch.device(device) if device is not None else model_device(model)
    model = model.eval()
    files = []  # (name, path)
    for scheme in ("fp32", "int8", "int4"):
        save_variant(model, workdir / f"{scheme}.pt", scheme, group_size)
        files.append((scheme, workdir / f"{scheme}.pt"))
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    for s in sparsities:
        pruned = GPT(model.config)
        pruned.load_state_dict(state)
        prune_model(pruned, s)
        path = workdir / f"pruned{round(s * 100)}.pt"
        save_variant(pruned, path, "pruned")
        files.append((f"pruned {round(s * 100)}%", path))
    loaded = [load_variant(path, device) for _, path in files]
    rates = interleaved_rates(loaded, n_tokens, repeats)
    rows = [VariantRow(name, os.path.getsize(path), max(runs), val_loss(m, val_data, n_batches=n_batches),
                       tokens_per_s_runs=runs) for (name, path), m, runs in zip(files, loaded, rates)]
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
