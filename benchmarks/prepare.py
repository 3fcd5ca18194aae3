"""`minilm prepare` on synthetic corpora of growing size: peak memory must stay flat, and the speed (issue 13).

    python benchmarks/prepare.py                      # 10 MB and 200 MB of text, char and bpe:1024
    python benchmarks/prepare.py --mb 10 1000 --tokenizer char

Each corpus is written a block at a time (random words, spaces, newlines, multi-byte UTF-8), and
each `minilm prepare` runs in a fresh process that reports its own peak RSS (ru_maxrss; the import
of PyTorch alone is about 300 MB of it). Target: peak RSS independent of the corpus size, i.e. the
largest within 50 MB of the smallest.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

WORDS = np.array(["the", "king", "'s", "queen", "shall", "not", "be", "42", "naïve", "日本語", "o'er", "thee",
                  "love", "death", "—", "and", "to", "of", "a"], dtype=object)
SEPARATORS = np.array([" ", " ", " ", "  ", "\n", ", ", ".\n\n"], dtype=object)
CHILD = """
import resource, sys, time
from minilm.data.tokenfile import prepare
t = time.perf_counter()
prepare(sys.argv[1], sys.argv[2], sys.argv[3], progress=False)
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def write_corpus(path: Path, megabytes: int, seed: int = 0) -> None:
    """About `megabytes` MB of random words, written 20,000 words at a time."""
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="utf-8") as f:
        written = 0
        while written < megabytes * 10**6:
            words, seps = rng.choice(WORDS, 20_000), rng.choice(SEPARATORS, 20_000)
            block = "".join(w + s for w, s in zip(words, seps))
            f.write(block)
            written += len(block.encode("utf-8"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, nargs="+", default=[10, 200], help="corpus sizes in MB (10 200)")
    parser.add_argument("--tokenizer", nargs="+", default=["char", "bpe:1024"], help="char bpe:1024")
    args = parser.parse_args()
    peaks: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mb in args.mb:
            text = Path(tmp) / f"text{mb}.txt"
            write_corpus(text, mb)
            for spec in args.tokenizer:
                out = Path(tmp) / f"out-{mb}-{spec.replace(':', '')}"
                proc = subprocess.run([sys.executable, "-c", CHILD, str(text), spec, str(out)], check=True,
                                      capture_output=True, text=True)
                seconds, kib = proc.stdout.split()
                peak = int(kib) / 1024
                peaks.setdefault(spec, []).append(peak)
                size = text.stat().st_size / 1e6
                print(f"  {spec:<9} {size:7.0f} MB of text: {float(seconds):6.0f} s "
                      f"({size / float(seconds):5.1f} MB/s), peak RSS {peak:5.0f} MB")
    for spec, values in peaks.items():
        grown = max(values) - min(values)
        print(f"  {spec:<9} peak RSS grew by {grown:.0f} MB from {min(args.mb)} to {max(args.mb)} MB of text"
              f"   target < 50 MB  {'OK' if grown < 50 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
