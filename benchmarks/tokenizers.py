"""Tokenizer benchmark: BPE training time, encode/decode throughput and compression (issue 2 targets).

    MINILM_DATA_DIR=../shared/data python benchmarks/tokenizers.py [--vocab-size 1000]

Runs on ONE CPU core: the process is pinned to a single core where the OS allows it
(os.sched_setaffinity), torch uses one thread, and nothing runs in parallel. Encoding is timed
on a tokenizer freshly loaded from disk (empty chunk cache: "cold"), then again ("warm").
Figures are wall-clock; the CPU time of this process is printed beside them, in brackets: when
other programs share the core, wall-clock grows and CPU time stays close to the idle figure.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from minilm.data import datasets as data
from minilm.data.tokenizers import BPETokenizer

TRAIN_TARGET_S = 30.0
ENCODE_TARGET_MBS = 1.0


def one_core() -> str:
    """Pin this process to one CPU core and torch to one thread; say what was done."""
    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"one core (pinned to CPU {core}, torch threads = 1, single process)"
    return "one core (torch threads = 1, single process; pinning not supported on this OS)"


def timed(fn, *args):
    """(result, wall seconds, CPU seconds of this process) of fn(*args)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - t0, max(time.process_time() - c0, 1e-9)


def bench(name: str, vocab_size: int, check_targets: bool) -> None:
    text = data.load_text(name)
    n_bytes, n_chars = len(text.encode("utf-8")), len(text)
    mb = n_bytes / 1e6
    print(f"\n== {name}: {n_chars:,} characters, {n_bytes:,} bytes ({n_bytes / n_chars:.2f} bytes/char in UTF-8)")

    tok, t_train, c_train = timed(BPETokenizer.train, text, vocab_size)
    target = f"   target < {TRAIN_TARGET_S:.0f} s" if check_targets else ""
    label = f"train BPE, vocab {tok.vocab_size:,}:"
    print(f"{label:29s}{t_train:8.2f} s     [cpu {c_train:6.2f} s]{target}")

    with tempfile.TemporaryDirectory() as tmp:
        tok.save(Path(tmp) / "bpe.json")
        fresh = BPETokenizer.load(Path(tmp) / "bpe.json")  # empty cache
    ids, t_cold, c_cold = timed(fresh.encode, text)
    _, t_warm, c_warm = timed(fresh.encode, text)
    back, t_dec, c_dec = timed(fresh.decode, ids)
    assert back == text, "round trip failed"
    target = f"   target >= {ENCODE_TARGET_MBS:.0f} MB/s" if check_targets else ""
    print(f"encode, cold cache:          {mb / t_cold:8.2f} MB/s  [cpu {mb / c_cold:6.2f} MB/s]{target}"
          f"  ({t_cold:.2f} s for {mb:.2f} MB)")
    print(f"encode, warm cache:          {mb / t_warm:8.2f} MB/s  [cpu {mb / c_warm:6.2f} MB/s]")
    print(f"decode:                      {mb / t_dec:8.2f} MB/s  [cpu {mb / c_dec:6.2f} MB/s]")
    print(f"tokens:                      {len(ids):,} (round trip exact)")
    print(f"compression:                 {n_bytes / len(ids):8.2f} bytes/token, {n_chars / len(ids):.2f} chars/token "
          f"(char tokenizer: 1.00 chars/token, {len(set(text)):,} ids)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocab-size", type=int, default=1000)
    args = parser.parse_args()
    print(f"minilm tokenizer benchmark: {one_core()}")
    print(f"python {platform.python_version()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs on the machine")
    bench("tinyshakespeare", args.vocab_size, check_targets=True)
    bench("tang", args.vocab_size, check_targets=False)


if __name__ == "__main__":
    main()
