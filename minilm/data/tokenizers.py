"""Tokenizers: text <-> list of integer ids. A character tokenizer and a byte-level BPE (taught in 01).

`BPETokenizer.train` is byte-level BPE trained from scratch (GPT-2 style, as in minbpe) but fast:
pair counts are kept incrementally over the distinct pre-split chunks, so training a 1,000-token
vocabulary on tinyshakespeare takes seconds instead of minutes (see benchmarks/tokenizers.py).
"""

from __future__ import annotations

import heapq
import itertools
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

# GPT-2's pre-split pattern, written for the standard `re` module: GPT-2 uses \p{L} (letters) and
# \p{N} (numbers); here a letter is `[^\W\d_]` (a word character that is not a decimal digit nor
# "_") and a number is `\d`. The alternatives cover every character, so "".join(chunks) == text.
SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"""
_CACHE_MAX = 1 << 18  # encode() remembers this many distinct chunks, then starts afresh


# ---------------------------------------------------------------- character level


class CharTokenizer:
    """One id per distinct character of a text, in sorted order (notebook 01)."""

    def __init__(self, chars: list[str]) -> None:
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise ValueError("chars must be distinct single characters")
        self.chars = list(chars)  # id -> character
        self.stoi = {c: i for i, c in enumerate(self.chars)}  # character -> id

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        """The tokenizer whose vocabulary is the sorted distinct characters of `text`."""
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        """Number of distinct ids."""
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        """str -> list of ids, one per character; a character outside the vocabulary is an error."""
        try:
            return [self.stoi[c] for c in text]
        except KeyError as exc:
            c = exc.args[0]
            raise ValueError(
                f"character {c!r} (U+{ord(c):04X}) at position {text.index(c)} is not in this "
                f"tokenizer's vocabulary of {self.vocab_size} characters; build the tokenizer from "
                "a text that contains it, e.g. CharTokenizer.from_text(train_text + new_text), "
                "or remove it while cleaning the text."
            ) from None

    def decode(self, ids: list[int]) -> str:
        """list of ids -> str."""
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"id {bad[0]} is outside the vocabulary 0..{self.vocab_size - 1}")
        return "".join([self.chars[i] for i in ids])

    def save(self, path: str | Path) -> None:
        """Write the vocabulary as JSON."""
        obj = {"type": "char", "chars": self.chars}
        Path(path).write_text(json.dumps(obj, ensure_ascii=False, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> CharTokenizer:
        """Read a tokenizer written by `save`."""
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
        if obj.get("type") != "char":
            raise ValueError(f"{path} does not hold a CharTokenizer (type={obj.get('type')!r})")
        return cls(obj["chars"])

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


# ---------------------------------------------------------------- BPE, the teaching helpers


def get_pair_counts(ids: list[int]) -> dict[tuple[int, int], int]:
    """How often each adjacent pair occurs in `ids` (overlaps count: [1, 1, 1] has (1, 1) twice), keys in
    the order the pairs are first seen, so max(counts, key=counts.get) breaks ties by first seen. Notebook 01."""
    counts: dict[tuple[int, int], int] = {}
    for pair in itertools.pairwise(ids):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace each occurrence of `pair` in `ids`, scanning left to right, by `new_id`. Notebook 01."""
    a, b = pair
    out: list[int] = []
    i, n = 0, len(ids)
    while i < n:
        if ids[i] == a and i + 1 < n and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


# ---------------------------------------------------------------- BPE


def _merge_at(ids: list[int], pair: tuple[int, int], new_id: int) -> tuple[list[int], list[int]]:
    """`merge(ids, pair, new_id)` and the indices in `ids` where a merge happened."""
    a, b = pair
    out: list[int] = []
    hits: list[int] = []
    i, n = 0, len(ids)
    while True:  # jump from one `a` to the next with list.index (a C loop)
        try:
            j = ids.index(a, i)
        except ValueError:
            break
        if j + 1 < n and ids[j + 1] == b:
            out.extend(ids[i:j])
            out.append(new_id)
            hits.append(j)
            i = j + 2
        else:
            out.extend(ids[i:j + 1])
            i = j + 1
    out.extend(ids[i:])
    return out, hits


def _pop_most_frequent(heap: list, counts: dict, where: dict, words: list) -> tuple[int, int] | None:
    """Pop the most frequent pair off the lazy heap; among equally frequent ones, the pair seen first.

    Distinct chunks are numbered in the order they first occur in the text, so a pair's first
    occurrence is in the lowest-numbered chunk holding it, at the first index there."""
    top, tied = None, []
    while heap:
        neg, pair = heap[0]
        if counts.get(pair, 0) != -neg:  # stale: the count has changed since this entry was pushed
            heapq.heappop(heap)
            continue
        if top is not None and -neg != top:
            break
        heapq.heappop(heap)
        top = -neg
        if pair not in tied:
            tied.append(pair)
    if len(tied) < 2:
        return tied[0] if tied else None
    best = min(tied, key=lambda p: _first_seen(p, where[p], words))
    for p in tied:
        if p != best:
            heapq.heappush(heap, (-top, p))
    return best


def _first_seen(pair: tuple[int, int], chunks: set[int], words: list[list[int]]) -> tuple[int, int]:
    """(chunk number, index) of the first occurrence of `pair` (`chunks` may hold stale numbers)."""
    for wi in sorted(chunks):
        pairs = list(itertools.pairwise(words[wi]))
        if pair in pairs:
            return wi, pairs.index(pair)
    raise AssertionError(f"pair {pair} has a count but no occurrence")


class BPETokenizer:
    """Byte-level BPE: ids 0..255 are the bytes, id 256 + k is merge k (notebook 01).

    The text is first split into chunks by SPLIT_PATTERN (GPT-2's pattern: words with their
    leading space, numbers, punctuation runs, whitespace), so no merge crosses a chunk boundary.
    Training picks, at each step, the most frequent adjacent pair; among pairs of equal count the
    one seen first in the text wins (the first in the first chunk that holds one of them), the rule
    of exercise 01's `train_bpe`, so training is deterministic.
    """

    def __init__(self, merges: list[tuple[int, int]], pattern: str = SPLIT_PATTERN) -> None:
        self.merges = [tuple(m) for m in merges]  # ordered: merge k makes id 256 + k
        self.pattern = pattern
        self._split = re.compile(pattern)
        self.ranks = {pair: 256 + k for k, pair in enumerate(self.merges)}  # pair -> new id
        self.vocab = {i: bytes([i]) for i in range(256)}  # id -> the bytes it stands for
        for k, (a, b) in enumerate(self.merges):
            if not (a < 256 + k and b < 256 + k):
                raise ValueError(f"merge {k} {(a, b)} uses an id not defined before it")
            self.vocab[256 + k] = self.vocab[a] + self.vocab[b]
        self._cache: dict[str, list[int]] = {}

    @property
    def vocab_size(self) -> int:
        """256 byte ids plus one per merge."""
        return 256 + len(self.merges)

    @classmethod
    def train(cls, text: str, vocab_size: int, verbose: bool = False,
              pattern: str = SPLIT_PATTERN) -> BPETokenizer:
        """Learn vocab_size - 256 merges from `text` (fewer if the text runs out of pairs).

        Pair counts are computed once over the distinct chunks (weighted by how often each
        occurs) and then updated only for the chunks that contain the merged pair; a heap with
        lazy invalidation finds the best pair. Same merges as the plain loop, much faster.
        """
        if vocab_size < 256:
            raise ValueError(f"vocab_size={vocab_size} but byte-level BPE needs at least the 256 bytes")
        chunk_counts = Counter(re.findall(pattern, text))
        words = [list(chunk.encode("utf-8")) for chunk in chunk_counts]  # distinct chunks as ids
        freqs = list(chunk_counts.values())  # how often each chunk occurs
        counts: dict[tuple[int, int], int] = defaultdict(int)  # pair -> weighted count
        where: dict[tuple[int, int], set[int]] = defaultdict(set)  # pair -> chunks holding it
        for wi, (w, f) in enumerate(zip(words, freqs)):
            for pair in itertools.pairwise(w):
                counts[pair] += f
                where[pair].add(wi)
        heap = [(-c, pair) for pair, c in counts.items()]  # max count first (ties: see below)
        heapq.heapify(heap)

        merges: list[tuple[int, int]] = []
        while len(merges) < vocab_size - 256:
            pair = _pop_most_frequent(heap, counts, where, words)  # ties: the pair seen first
            if pair is None:
                break  # no pair left: the text is too small for this vocabulary
            new_id = 256 + len(merges)
            merges.append(pair)
            if verbose:
                print(f"merge {len(merges)}/{vocab_size - 256}: {pair} -> {new_id} (count {counts[pair]})")
            delta: dict[tuple[int, int], int] = defaultdict(int)
            for wi in where.pop(pair):  # may hold stale chunks that lost the pair: skipped
                old, f = words[wi], freqs[wi]
                new, hits = _merge_at(old, pair, new_id)
                if not hits:
                    continue
                words[wi] = new
                # Only pairs next to a merge change: remove the old pairs at indices i-1, i, i+1
                # of each hit i in `old`; add the new pairs at j-1, j of each new token, which
                # sits at j = i - (number of hits before it) in `new`.
                last_old, last_new = len(old) - 2, len(new) - 2  # index of the last pair
                gone = {k for i in hits for k in (i - 1, i, i + 1) if 0 <= k <= last_old}
                for k in gone:
                    delta[(old[k], old[k + 1])] -= f
                made = {k for c, i in enumerate(hits) for k in (i - c - 1, i - c) if 0 <= k <= last_new}
                for k in made:
                    p = (new[k], new[k + 1])
                    delta[p] += f
                    where[p].add(wi)
            for p, d in delta.items():
                if d == 0:
                    continue
                counts[p] += d
                if counts[p] > 0:
                    heapq.heappush(heap, (-counts[p], p))
                else:
                    del counts[p]
                    where.pop(p, None)
        return cls(merges, pattern)

    def _encode_chunk(self, chunk: str) -> list[int]:
        """One chunk -> ids: merge the lowest-ranked (earliest learned) pair until none applies.

        `ranks[j]` is the rank of the pair (ids[j], ids[j + 1]) (a merge's rank is its new id).
        A merge changes only its two neighbouring pairs, so only those are looked up again; a
        pair that uses the new token always ranks after it, so merging the leftmost occurrence
        first is the same as merging every occurrence of the pair at once."""
        ids = list(chunk.encode("utf-8"))
        get, never = self.ranks.get, 1 << 62
        ranks = [get(p, never) for p in itertools.pairwise(ids)]
        while ranks:
            best = min(ranks)
            if best == never:
                break
            i = ranks.index(best)
            ids[i:i + 2] = [best]
            del ranks[i]
            if i > 0:
                ranks[i - 1] = get((ids[i - 1], best), never)
            if i < len(ranks):
                ranks[i] = get((best, ids[i + 1]), never)
        return ids

    def encode(self, text: str) -> list[int]:
        """str -> list of ids (chunks already seen are looked up in a cache)."""
        cache, out = self._cache, []
        if len(cache) > _CACHE_MAX:
            cache.clear()
        for chunk in self._split.findall(text):
            ids = cache.get(chunk)
            if ids is None:
                ids = cache[chunk] = self._encode_chunk(chunk)
            out.extend(ids)
        return out

    def decode(self, ids: list[int]) -> str:
        """list of ids -> str. Exact for ids from `encode`; invalid UTF-8 (arbitrary ids) becomes U+FFFD."""
        try:
            data = b"".join([self.vocab[i] for i in ids])
        except KeyError as exc:
            raise ValueError(f"id {exc.args[0]} is outside the vocabulary 0..{self.vocab_size - 1}") from None
        return data.decode("utf-8", errors="replace")

    def token_str(self, i: int) -> str:
        """A readable form of token `i` (bytes that are not valid UTF-8 shown as \\xNN)."""
        return self.vocab[i].decode("utf-8", errors="backslashreplace")

    def save(self, path: str | Path) -> None:
        """Write the merges as JSON, with the readable text of each new token beside it."""
        obj = {
            "type": "bpe",
            "pattern": self.pattern,
            "merges": [[a, b] for a, b in self.merges],
            "tokens": {str(256 + k): self.token_str(256 + k) for k in range(len(self.merges))},
        }
        Path(path).write_text(json.dumps(obj, ensure_ascii=False, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        """Read a tokenizer written by `save` (only the merges and the pattern are used)."""
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
        if obj.get("type") != "bpe":
            raise ValueError(f"{path} does not hold a BPETokenizer (type={obj.get('type')!r})")
        return cls([tuple(m) for m in obj["merges"]], obj["pattern"])

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size})"
