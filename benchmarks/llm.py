"""The real-LLM benchmark (issue 23): SmolLM2-135M-Instruct in minilm's own GPT, offline, on the CPU.

    OMP_NUM_THREADS=1 MINILM_DATA_DIR=../shared/data python benchmarks/llm.py          # the full run, minutes
    python benchmarks/llm.py --quick                                                   # plumbing check only
    python benchmarks/llm.py --no-int8 --json out.json     # load and speed only, figures as JSON too

Parts (every figure printed beside its target):
- load: seconds to read the GGUF file with transformers (the reference LlamaForCausalLM, dequantized
  Q4_1 weights in fp32) and to copy it into minilm's GPT (`minilm.models.llama`); the logits of both
  on one sentence (max |difference|, target < 1e-4).
- speed: greedy decoding of 256 new tokens after a 9-token prompt at batch 1 and batch 8, minilm's
  `generate(use_cache=True)` against transformers' `generate(use_cache=True, do_sample=False)` on the
  same weights, in the same run, best of --repeats rounds in which the two take turns; target:
  minilm at least as fast (ratio >= 1).
  transformers is told min_new_tokens=256 so that it never stops early at the end-of-text token
  (minilm's generate never stops early); the tokens are compared up to the first end-of-text token.
- int8: minilm.generation.quantize's int8 (per output channel, every block Linear and the tied
  embedding) file against the fp32 file: size, and perplexity on held-out text (the first --windows
  windows of 256 tokens of tinyshakespeare's validation part, the course's last 10 %); target:
  int8 perplexity within 2 % of fp32's. The fp32 weights are themselves the file's Q4_1 values
  dequantized (the package ships no bf16 weights).

Timings are wall-clock on --threads CPU threads (default 1: this machine's cores are shared); a busy
machine makes them noisy. --quick keeps 2 of the 30 blocks, 16 new tokens and 1 window: its figures
say nothing about the targets.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

# python puts this script's folder first on sys.path, where benchmarks/tokenizers.py would shadow the
# `tokenizers` package that transformers imports: take the folder off (nothing here imports from it)
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch

from minilm.data.datasets import load_text
from minilm.generation.quantize import load_variant, save_variant
from minilm.generation.sampling import generate
from minilm.models.llama import gpt_from_llama, load_hf_llama

LOGIT_TARGET = 1e-4
SPEED_TARGET = 1.0  # minilm / transformers tokens/s
PPL_TARGET = 0.02  # int8 perplexity within 2 % of fp32's
PROMPT = "Once upon a time, in a small village by the sea,"


def line(name: str, value: float, target: str, ok: bool | None = None, unit: str = "") -> dict:
    """Print one figure with its target -> the figure as a dict."""
    verdict = "" if ok is None else ("  [met]" if ok else "  [NOT met]")
    print(f"  {name:<46} {value:>11.4g} {unit:<8} target {target}{verdict}", flush=True)
    return {"name": name, "value": value, "target": target, "met": ok}


def best_times(fns: list, repeats: int) -> tuple[list[float], list[torch.Tensor]]:
    """(best wall-clock seconds of each fn() over `repeats` rounds, each one's last output). The fns take
    turns within a round, so a machine that gets busier or quieter during the run affects all alike."""
    best, outs = [float("inf")] * len(fns), [None] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            outs[i] = fn()
            best[i] = min(best[i], time.perf_counter() - t)
    return best, outs


def upto_eos(row: list[int], eos: int | None) -> list[int]:
    return row[: row.index(eos)] if eos is not None and eos in row else row


@torch.no_grad()
def speed(model, hf, prompt: torch.Tensor, n_new: int, batch: int, repeats: int, eos: int | None) -> list:
    """minilm's and transformers' cached greedy tokens/s at `batch` -> figures."""
    idx = prompt.repeat(batch, 1)
    generate(model, idx, 4, temperature=0.0, use_cache=True)  # warm-up
    hf.generate(idx, max_new_tokens=4, do_sample=False, use_cache=True, pad_token_id=eos)
    (t_ours, t_hf), (ours, ref) = best_times(
        [lambda: generate(model, idx, n_new, temperature=0.0, use_cache=True),
         lambda: hf.generate(idx, max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False, use_cache=True,
                             pad_token_id=eos)], repeats)
    assert ours.shape == ref.shape == (batch, prompt.shape[1] + n_new), (ours.shape, ref.shape)
    T = prompt.shape[1]
    same = all(upto_eos(a[T:], eos) == upto_eos(b[T:], eos)[: len(upto_eos(a[T:], eos))]
               for a, b in zip(ours.tolist(), ref.tolist()))
    a, b = batch * n_new / t_ours, batch * n_new / t_hf
    print(f"  batch {batch}: minilm {a:.1f} tokens/s, transformers {b:.1f} tokens/s; same tokens up to "
          f"end-of-text: {same}")
    return [line(f"minilm cached tokens/s, batch {batch}", a, "-", unit="tok/s"),
            line(f"transformers cached tokens/s, batch {batch}", b, "-", unit="tok/s"),
            line(f"minilm / transformers, batch {batch}", a / b, f">= {SPEED_TARGET}", a / b >= SPEED_TARGET, "x")]


@torch.no_grad()
def perplexity(model, ids: torch.Tensor, window: int, n_windows: int, batch: int = 2) -> float:
    """exp(mean next-token cross-entropy) over the first n_windows windows of `window` + 1 tokens of ids."""
    rows = torch.stack([ids[i * window: i * window + window + 1] for i in range(n_windows)])  # (N, window + 1)
    total, count = 0.0, 0
    for chunk in rows.split(batch):
        _, loss = model(chunk[:, :-1], chunk[:, 1:])
        total += loss.item() * chunk[:, 1:].numel()
        count += chunk[:, 1:].numel()
    return math.exp(total / count)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 blocks, 16 tokens, 1 window: plumbing only")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    ap.add_argument("--repeats", type=int, default=2, help="timing runs per figure; the best counts")
    ap.add_argument("--tokens", type=int, default=256, help="new tokens per generation (default 256)")
    ap.add_argument("--windows", type=int, default=8, help="256-token windows for perplexity (default 8)")
    ap.add_argument("--no-int8", action="store_true", help="skip the int8 part (load and speed only)")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    n_new, windows, repeats = (16, 1, 1) if args.quick else (args.tokens, args.windows, args.repeats)
    print(f"SmolLM2-135M-Instruct on the CPU, torch {torch.__version__}, {torch.get_num_threads()} thread(s)"
          + (" [--quick: figures say nothing]" if args.quick else ""))
    figures = []

    print("load")
    t = time.perf_counter()
    hf, tok = load_hf_llama()
    t_hf = time.perf_counter() - t
    t = time.perf_counter()
    model = gpt_from_llama(hf, n_layer=2 if args.quick else None)
    t_copy = time.perf_counter() - t
    if args.quick:
        hf.model.layers = hf.model.layers[:2]
        hf.config.num_hidden_layers = 2
    figures.append(line("transformers reads the GGUF file", t_hf, "-", unit="s"))
    figures.append(line("copy into minilm's GPT", t_copy, "-", unit="s"))
    prompt = torch.tensor([tok.encode(PROMPT)])
    with torch.no_grad():
        diff = (model(prompt)[0] - hf(prompt).logits).abs().max().item()
    figures.append(line("max |logit difference| vs transformers", diff, f"< {LOGIT_TARGET}", diff < LOGIT_TARGET))

    print(f"speed: {n_new} new tokens after {prompt.shape[1]} prompt tokens, best of {repeats}")
    for batch in (1, 8):
        figures += speed(model, hf, prompt, n_new, batch, repeats, tok.eos_token_id)
    del hf

    if args.no_int8:
        return _write(args, figures)
    print(f"int8: {windows} windows of 256 tokens of tinyshakespeare's validation part")
    text = load_text("tinyshakespeare")
    ids = torch.tensor(tok.encode(text[int(0.9 * len(text)):]))
    with tempfile.TemporaryDirectory() as d:
        sizes, ppl = {}, {}
        for scheme in ("fp32", "int8"):
            sizes[scheme] = save_variant(model, Path(d) / f"{scheme}.pt", scheme)
            variant = model if scheme == "fp32" else load_variant(Path(d) / f"{scheme}.pt")
            ppl[scheme] = perplexity(variant, ids, 256, windows)
            del variant
    figures.append(line("fp32 file size", sizes["fp32"] / 1e6, "-", unit="MB"))
    figures.append(line("int8 file size", sizes["int8"] / 1e6, "-", unit="MB"))
    figures.append(line("fp32 / int8 size", sizes["fp32"] / sizes["int8"], "-", unit="x"))
    figures.append(line("fp32 perplexity", ppl["fp32"], "-"))
    figures.append(line("int8 perplexity", ppl["int8"], "-"))
    rel = ppl["int8"] / ppl["fp32"] - 1
    figures.append(line("int8 perplexity change", 100 * rel, f"within {100 * PPL_TARGET:.0f} %",
                        abs(rel) <= PPL_TARGET, "%"))
    return _write(args, figures)


def _write(args: argparse.Namespace, figures: list) -> int:
    if args.json:
        args.json.write_text(json.dumps({"quick": args.quick, "threads": args.threads, "figures": figures}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
