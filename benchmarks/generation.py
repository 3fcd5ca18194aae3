"""The generation benchmark (issue 10): KV-cache speed-up, minilm against Hugging Face, int8/int4 sizes and losses.

    MINILM_DATA_DIR=../shared/data python benchmarks/generation.py            # the full run, a few minutes
    MINILM_DATA_DIR=../shared/data python benchmarks/generation.py --quick    # a smoke check, seconds
    python benchmarks/generation.py --json out.json                           # figures as JSON too

Parts:
- kv: greedy decoding of 256 tokens from a one-token prompt on the gpu preset's architecture (6
  layers, 6 heads, 384 wide, block 256, random weights: timing does not depend on them), with and
  without minilm's KV cache; target: at least 5x faster with it. The same on the cpu preset's
  model (3 layers, 128 wide, block 64, so 64 tokens), where the speed-up is smaller: each step
  without the cache re-reads at most 64 tokens, and a small model's step is dominated by fixed
  per-layer overheads (kernel launches, Python) that the cache does not remove.
- hf: the same gpu-preset shape as Hugging Face `transformers.GPT2LMHeadModel(GPT2Config(...))`
  (no download), `generate(do_sample=False, use_cache=True)` for the same 256 tokens in the same
  run; target: minilm's cached tokens/s at least equal to it (ratio >= 1).
- quant: the tinyshakespeare GPT of the cpu preset (minilm.training.zoo.pretrained_gpt, trained once and
  cached) saved as fp32, int8 (per-channel) and int4 (group 32) files; targets: int8 >= 3.5x
  smaller with val loss within 0.02 of fp32, int4 >= 5x smaller (its loss and difference printed).
  --preset picks another preset's model.

Every figure is printed beside its target and its ratio. Timings are best-of-3 wall-clock on this
machine's CPU threads (torch.get_num_threads(), or --threads N); a busy or shared machine makes them
noisy, and with more threads than free cores PyTorch's thread pool can make decoding many times slower.
--quick shrinks every shape (a 2-layer, 64-wide model, 32 tokens; random weights for quant) so the
script's plumbing can be tested in seconds; its figures do not meet the targets and say nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

# python puts this script's folder first on sys.path, where benchmarks/tokenizers.py would shadow the
# `tokenizers` package that transformers imports: take the folder off (nothing here imports from it)
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch

from minilm.generation.measure import measure_variants, tokens_per_second
from minilm.models.gpt import GPT, GPTConfig

KV_TARGET = 5.0  # cached / uncached tokens/s on the gpu preset's shape
HF_TARGET = 1.0  # minilm cached / HF cached tokens/s
INT8_SIZE_TARGET, INT8_LOSS_TARGET = 3.5, 0.02
INT4_SIZE_TARGET = 5.0


def line(name: str, value: float, target: str, ratio: float | None = None, ok: bool | None = None,
         unit: str = "") -> dict:
    """Print one figure with its target (and ratio) -> the figure as a dict."""
    verdict = "" if ok is None else ("  [met]" if ok else "  [NOT met]")
    r = "" if ratio is None else f"  ratio {ratio:.2f}x"
    print(f"  {name:<44} {value:>10.4g} {unit:<9} target {target}{r}{verdict}")
    return {"name": name, "value": value, "target": target, "ratio": ratio, "met": ok}


def shape(n_layer: int, n_head: int, n_embd: int, block_size: int, vocab_size: int = 65) -> GPTConfig:
    return GPTConfig(block_size=block_size, vocab_size=vocab_size, n_layer=n_layer, n_head=n_head, n_embd=n_embd)


def kv_speedup(cfg: GPTConfig, n_tokens: int, repeats: int, label: str, target: float | None,
               device: str = "cpu") -> tuple[list, float]:
    """Cached and uncached tokens/s of a random GPT of shape cfg on `device` -> (figures, cached tokens/s)."""
    torch.manual_seed(0)
    model = GPT(cfg).eval().to(device)
    cached = tokens_per_second(model, n_tokens, use_cache=True, repeats=repeats)
    plain = tokens_per_second(model, n_tokens, use_cache=False, repeats=repeats)
    tag = f"{label} ({cfg.n_layer}L/{cfg.n_embd}w/block {cfg.block_size}, {n_tokens} tokens)"
    print(f"{tag}:")
    figures = [line("minilm without cache", plain, "-", unit="tokens/s"),
               line("minilm with KV cache", cached, "-", unit="tokens/s")]
    ok = None if target is None else cached / plain >= target
    figures.append(line("KV-cache speed-up", cached / plain, f">= {target}x" if target else "(printed)",
                        cached / plain, ok, unit="x"))
    return figures, cached


def hf_tokens_per_second(cfg: GPTConfig, n_tokens: int, repeats: int, device: str = "cpu") -> float | None:
    """Greedy cached tokens/s of transformers' GPT2LMHeadModel of the same shape; None without transformers."""
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
        from transformers.utils import logging as hf_logging
    except ImportError:
        return None
    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    hf_cfg = GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=cfg.n_embd,
                        n_layer=cfg.n_layer, n_head=cfg.n_head, bos_token_id=0, eos_token_id=None,
                        pad_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2LMHeadModel(hf_cfg).eval().to(device)
    prompt = torch.randint(0, cfg.vocab_size, (1, 1), generator=torch.Generator().manual_seed(0)).to(device)
    kwargs = {"do_sample": False, "use_cache": True, "pad_token_id": 0}
    best = float("inf")
    with torch.no_grad():
        model.generate(prompt, max_new_tokens=4, min_new_tokens=4, **kwargs)  # warm-up
        for _ in range(repeats):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            out = model.generate(prompt, max_new_tokens=n_tokens, min_new_tokens=n_tokens, **kwargs)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t)
    assert out.shape[1] == 1 + n_tokens, out.shape
    return n_tokens / best


def quant_part(quick: bool, preset: str, workdir: Path) -> list:
    """fp32/int8/int4 file sizes and val losses of the preset's trained GPT (random weights with quick)."""
    from minilm.data.batching import char_data

    tok, _, val_data = char_data("tinyshakespeare")
    if quick:
        torch.manual_seed(0)
        model, what = GPT(shape(2, 2, 64, 32, tok.vocab_size)).eval(), "random 2L/64w GPT (quick)"
    else:
        from minilm.training.zoo import pretrained_gpt

        model, _ = pretrained_gpt("tinyshakespeare", preset=preset, device="cpu", progress=False)
        what = f"tinyshakespeare GPT, {preset} preset"
    rows = measure_variants(model.cpu(), val_data, workdir, sparsities=(),
                            n_tokens=16 if quick else 64, n_batches=4 if quick else 40)
    fp32, int8, int4 = rows
    print(f"quantization ({what}; val loss on {4 if quick else 40} x 16 windows of the validation text):")
    figures = [line("fp32 file", fp32.file_bytes / 1024, "-", unit="KB"),
               line("fp32 val loss", fp32.val_loss, "-"),
               line("int8 file", int8.file_bytes / 1024, "-", unit="KB"),
               line("int8 times smaller", int8.size_ratio, f">= {INT8_SIZE_TARGET}x", int8.size_ratio,
                    int8.size_ratio >= INT8_SIZE_TARGET, "x"),
               line("int8 val loss", int8.val_loss, "-"),
               line("int8 val loss - fp32", int8.loss_delta, f"|delta| <= {INT8_LOSS_TARGET}", None,
                    abs(int8.loss_delta) <= INT8_LOSS_TARGET),
               line("int4 file", int4.file_bytes / 1024, "-", unit="KB"),
               line("int4 times smaller", int4.size_ratio, f">= {INT4_SIZE_TARGET}x", int4.size_ratio,
                    int4.size_ratio >= INT4_SIZE_TARGET, "x"),
               line("int4 val loss", int4.val_loss, "-"),
               line("int4 val loss - fp32", int4.loss_delta, "(printed)")]
    for r in rows:
        figures.append(line(f"{r.name} cached tokens/s (quantized in memory)", r.tokens_per_s, "(printed)",
                            r.speed_ratio, unit="tokens/s"))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes: checks the script runs (seconds)")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--preset", default="cpu", help="whose trained GPT the quant part measures (default cpu)")
    parser.add_argument("--only", choices=("kv", "hf", "quant"), action="append",
                        help="run only these parts (repeatable)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads(N) first (default: PyTorch's choice)")
    parser.add_argument("--device", default="cpu",
                        help="where the kv and hf parts decode (cpu; cuda on a GPU: benchmarks/gpu.sh); quant is CPU")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    parts = set(args.only or ("kv", "hf", "quant"))
    repeats = 1 if args.quick else 3
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, kv/hf on {args.device}"
          + (" (--quick: figures say nothing)" if args.quick else ""))
    big = shape(2, 2, 64, 32) if args.quick else shape(6, 6, 384, 256)
    small = shape(1, 2, 32, 16) if args.quick else shape(3, 4, 128, 64)
    n_big = big.block_size  # 256 new tokens after one: positions 0..255, exactly one block
    results: dict = {"quick": args.quick, "threads": torch.get_num_threads(), "device": args.device, "figures": []}
    cached = None
    if "kv" in parts or "hf" in parts:
        label = "quick shape (not the gpu preset's)" if args.quick else "gpu-preset shape"
        figs, cached = kv_speedup(big, n_big, repeats, label, KV_TARGET, args.device)
        results["figures"] += figs if "kv" in parts else []
    if "kv" in parts:
        label = "quick shape (not the cpu preset's)" if args.quick else "cpu-preset shape"
        figs, _ = kv_speedup(small, small.block_size, repeats, label, None, args.device)
        results["figures"] += figs
        print("  (smaller than on the gpu-preset shape: without the cache a step re-reads at most "
              f"{small.block_size} tokens, not {big.block_size},\n   and a {small.n_embd}-wide model's step is "
              "mostly fixed per-layer overhead that the cache does not remove)")
    if "hf" in parts:
        hf = hf_tokens_per_second(big, n_big, repeats, args.device)
        print(f"against Hugging Face GPT2LMHeadModel, same shape, generate(use_cache=True), {n_big} tokens:")
        if hf is None:
            print("  transformers is not installed (pip install 'minilm[hf]'): skipped")
        else:
            results["figures"] += [line("HF GPT2LMHeadModel cached", hf, "-", unit="tokens/s"),
                                   line("minilm cached", cached, ">= HF", cached / hf, cached / hf >= HF_TARGET,
                                        "tokens/s")]
    if "quant" in parts:
        with tempfile.TemporaryDirectory() as tmp:
            results["figures"] += quant_part(args.quick, args.preset, Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
