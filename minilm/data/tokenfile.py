"""Token files for corpora larger than memory: `minilm prepare` writes one, `minilm pretrain` samples it (issue 13).

    minilm prepare tinyshakespeare --tokenizer char --out data/shakespeare-char
    minilm prepare corpus.txt --tokenizer bpe:4096 --out data/corpus-bpe4096

A prepared folder holds

    tokens.bin      every token of the text in order, uint16 (vocabulary <= 65,536) or else uint32
    tokenizer.json  the tokenizer (`CharTokenizer.save` / `BPETokenizer.save`)
    meta.json       {"format", "dtype", "n_tokens", "n_train", "val_fraction", "vocab_size", "tokenizer", ...}

The first `n_train` tokens are the training split and the rest validation: the contiguous split
of `minilm.data.batching.train_val_split`, so a prepared course corpus gives exactly the streams of
`batching.char_data`. `tokens.bin` reads back as exactly `tokenizer.encode(text)` of the whole
text (the text read as `Path.read_text(encoding="utf-8")` reads it: universal newlines).

Nothing holds the corpus in memory. The text is read in pieces; the character tokenizer needs
one pass for its vocabulary, then one to encode. Byte-level BPE is trained on a bounded sample
(evenly spaced windows of the file), then encodes piece by piece, each piece cut only where the
pre-tokenizer (`tokenizers.SPLIT_PATTERN`) would split anyway (`safe_cut`), so the pieces' ids
concatenate to the ids of the whole. `TokenFile.batches` draws blocks from the file through
`np.memmap`, mapped afresh for every batch so that the pages read are not kept resident.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .batching import train_val_split
from .tokenizers import SPLIT_PATTERN, BPETokenizer, CharTokenizer

FORMAT = 1
TOKENS, TOKENIZER, META = "tokens.bin", "tokenizer.json", "meta.json"
READ_CHARS = 1 << 20  # characters read (and encoded) at a time
BPE_SAMPLE_BYTES = 8 << 20  # bytes of the file BPE is trained on (all of it when smaller)
BPE_WINDOWS = 64  # the sample is this many evenly spaced windows
DEFAULT_BPE_VOCAB = 1024

Tokenizer = CharTokenizer | BPETokenizer
Batch = tuple[torch.Tensor, torch.Tensor]

# Where a text may be cut so that SPLIT_PATTERN splits the two sides as it splits the whole: before
# whitespace that follows a character that is neither whitespace nor an apostrophe, or between two
# such characters of different classes (letter, digit, other). The pattern's matches never cross
# those places, and no alternative looks further than one character past its match without
# failing on whitespace exactly as at the end of the text. (An apostrophe starts the contractions
# 's 't 're 've 'm 'll 'd, which look ahead two letters: never cut next to one.)
_LETTER, _DIGIT, _OTHER = r"[^\W\d_]", r"\d", r"(?:[^\s\w']|_)"
_SAFE_CUT = re.compile(
    r"(?<=[^\s'])(?=\s)"
    rf"|(?<={_LETTER})(?={_DIGIT}|{_OTHER})"
    rf"|(?<={_DIGIT})(?={_LETTER}|{_OTHER})"
    rf"|(?<=[^\s\w']|_)(?={_LETTER}|{_DIGIT})"
)


def safe_cut(text: str, lookback: int = 4096) -> int:
    """The last index 0 < i < len(text) where text[:i] and text[i:] tokenize as the whole does; 0 if none."""
    for start in (max(0, len(text) - lookback), 0):
        cut = 0
        for m in _SAFE_CUT.finditer(text, start):
            cut = m.start()
        if cut or start == 0:
            return cut
    return 0


def parse_tokenizer_spec(spec: str) -> tuple[str, int | None]:
    """'char' -> ('char', None); 'bpe' / 'bpe:4096' -> ('bpe', vocab size)."""
    kind, _, size = spec.strip().lower().partition(":")
    if kind == "char" and not size:
        return "char", None
    if kind == "bpe":
        try:
            vocab = int(size) if size else DEFAULT_BPE_VOCAB
        except ValueError:
            vocab = -1
        if vocab >= 256:
            return "bpe", vocab
    raise ValueError(f"tokenizer {spec!r}: use 'char', 'bpe' (vocabulary {DEFAULT_BPE_VOCAB}) or "
                     "'bpe:VOCAB' with VOCAB >= 256 (the 256 bytes plus merges), e.g. bpe:4096")


def resolve_source(source: str | os.PathLike) -> tuple[Path, str]:
    """(path of the text, how meta.json names it) for a course dataset name or a text file path."""
    from .datasets import DATASETS, path

    if str(source) in DATASETS:
        return path(str(source)), str(source)
    p = Path(source).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"{source!r} is neither a course dataset ({', '.join(DATASETS)}) "
                                "nor a text file")
    return p, str(p.resolve())


def read_pieces(path: Path, chars: int = READ_CHARS) -> Iterator[str]:
    """The text of a UTF-8 file, `chars` characters at a time, with universal newlines (as read_text)."""
    with open(path, encoding="utf-8") as f:
        try:
            while piece := f.read(chars):
                yield piece
        except UnicodeDecodeError as e:
            raise ValueError(f"{path} is not UTF-8 text ({e}); convert it first, e.g. "
                             f"iconv -f latin1 -t utf-8 {path.name}") from None


def bpe_sample(path: Path, sample_bytes: int = BPE_SAMPLE_BYTES, windows: int = BPE_WINDOWS) -> str:
    """The text BPE trains on: the whole file when small, else `windows` evenly spaced windows of it."""
    size = path.stat().st_size
    if size <= sample_bytes:
        return path.read_text(encoding="utf-8")
    width, parts = sample_bytes // windows, []
    with open(path, "rb") as f:
        for k in range(windows):
            f.seek(k * (size - width) // max(1, windows - 1))
            text = f.read(width).decode("utf-8", errors="ignore").replace("\r\n", "\n").replace("\r", "\n")
            first, last = re.search(r"\s", text), max(text.rfind(" "), text.rfind("\n"))
            if first and last > first.start():
                parts.append(text[first.start():last])  # whole words only
    return "\n".join(parts)


def encode_pieces(pieces: Iterator[str], tokenizer: Tokenizer) -> Iterator[list[int]]:
    """Ids of the concatenated pieces, in order, equal to `tokenizer.encode("".join(pieces))`."""
    if isinstance(tokenizer, CharTokenizer):
        yield from (tokenizer.encode(p) for p in pieces)
        return
    if tokenizer.pattern != SPLIT_PATTERN:
        raise ValueError("encode_pieces cuts text where SPLIT_PATTERN splits: this BPE uses another pattern")
    carry = ""
    for piece in pieces:
        carry += piece
        cut = safe_cut(carry)
        if cut:
            yield tokenizer.encode(carry[:cut])
            carry = carry[cut:]
    if carry:
        yield tokenizer.encode(carry)


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 where every id fits (vocab_size <= 65,536), else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def prepare(
    source: str | os.PathLike, tokenizer: str = "char", out: str | os.PathLike = "prepared",
    val_fraction: float = 0.1, progress: bool = True, read_chars: int = READ_CHARS,
    sample_bytes: int = BPE_SAMPLE_BYTES,
) -> Path:
    """Tokenize a course dataset or a UTF-8 text file into `out`/ (tokens.bin, tokenizer.json, meta.json)."""
    path, name = resolve_source(source)
    kind, vocab = parse_tokenizer_spec(tokenizer)
    folder = Path(out).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    size = path.stat().st_size

    def bar(what: str) -> tqdm:
        return tqdm(total=size, unit="B", unit_scale=True, desc=what, disable=not progress)

    if kind == "char":
        chars: set[str] = set()
        with bar(f"vocabulary of {path.name}") as b:
            for piece in read_pieces(path, read_chars):
                chars.update(piece)
                b.update(len(piece.encode("utf-8")))
        tok: Tokenizer = CharTokenizer(sorted(chars))
    else:
        tok = BPETokenizer.train(bpe_sample(path, sample_bytes), vocab)
    dtype = token_dtype(tok.vocab_size)
    n_tokens = 0

    def write_tokens(tmp: Path) -> None:
        nonlocal n_tokens
        with open(tmp, "wb") as f, bar(f"tokenizing {path.name}") as b:
            def counted() -> Iterator[str]:
                for piece in read_pieces(path, read_chars):
                    b.update(len(piece.encode("utf-8")))
                    yield piece

            for ids in encode_pieces(counted(), tok):
                np.asarray(ids, dtype=dtype).tofile(f)
                n_tokens += len(ids)

    (folder / META).unlink(missing_ok=True)  # a folder without meta.json is not a finished one
    _write_atomic(folder / TOKENS, write_tokens)
    _write_atomic(folder / TOKENIZER, tok.save)
    n_train = len(train_val_split(range(n_tokens), val_fraction)[0])  # the course's split rule
    meta = {"format": FORMAT, "source": name, "source_bytes": size, "tokenizer": kind,
            "vocab_size": tok.vocab_size, "dtype": dtype.name, "n_tokens": n_tokens,
            "n_train": n_train, "val_fraction": val_fraction}
    _write_atomic(folder / META, lambda p: p.write_text(json.dumps(meta, indent=1) + "\n"))
    if progress:
        print(f"{folder}: {n_tokens:,} tokens ({dtype.name}, {kind} vocabulary {tok.vocab_size}), "
              f"{n_train:,} for training, {n_tokens - n_train:,} for validation")
    return folder


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """The tokenizer saved in a tokenizer.json (or in the folder holding one): char or BPE."""
    path = Path(path)
    if path.is_dir():
        path = path / TOKENIZER
    if not path.is_file():
        raise FileNotFoundError(f"no tokenizer at {path}: a `minilm prepare` or `minilm pretrain` folder "
                                "holds one (tokenizer.json); or pass the tokenizer yourself")
    kind = json.loads(path.read_text(encoding="utf-8")).get("type")
    classes = {"char": CharTokenizer, "bpe": BPETokenizer}
    if kind not in classes:
        raise ValueError(f"{path}: unknown tokenizer type {kind!r} (expected 'char' or 'bpe')")
    return classes[kind].load(path)


@dataclass(frozen=True)
class TokenFile:
    """A prepared folder, opened: its meta.json figures, its tokenizer and memory-mapped batches."""

    folder: Path
    dtype: np.dtype
    n_tokens: int
    n_train: int
    vocab_size: int
    meta: dict

    @classmethod
    def open(cls, folder: str | os.PathLike) -> TokenFile:
        """Open a folder written by `prepare`; a missing or unfinished one is an error saying so."""
        folder = Path(folder).expanduser()
        if not (folder / META).is_file():
            raise FileNotFoundError(f"{folder} holds no {META}: it is not a prepared token folder (or "
                                    f"its preparation did not finish). Make one with `minilm prepare "
                                    f"<dataset or text file> --out {folder}`")
        meta = json.loads((folder / META).read_text())
        dtype = np.dtype(meta["dtype"])
        expected = meta["n_tokens"] * dtype.itemsize
        if (folder / TOKENS).stat().st_size != expected:
            raise ValueError(f"{folder / TOKENS} has {(folder / TOKENS).stat().st_size} bytes, meta.json "
                             f"says {expected}: prepare the folder again")
        return cls(folder, dtype, meta["n_tokens"], meta["n_train"], meta["vocab_size"], meta)

    def tokenizer(self) -> Tokenizer:
        """The tokenizer the tokens were made with."""
        return load_tokenizer(self.folder / TOKENIZER)

    def tokens(self, split: str | None = None) -> np.memmap:
        """Read-only memory map of every token (N,), or of the "train" / "val" split."""
        start, n = self._split(split) if split else (0, self.n_tokens)
        return np.memmap(self.folder / TOKENS, dtype=self.dtype, mode="r", offset=start * self.dtype.itemsize,
                         shape=(n,))

    def _split(self, split: str) -> tuple[int, int]:
        if split == "train":
            return 0, self.n_train
        if split == "val":
            return self.n_train, self.n_tokens - self.n_train
        raise ValueError(f"split {split!r}: use 'train' or 'val'")

    def batches(
        self, block_size: int, batch_size: int, device: torch.device | str, seed: int = 1337,
        rank: int = 0, world_size: int = 1,
    ) -> tuple[Callable[[str], Batch], torch.Generator]:
        """(get_batch(split) -> (x, y) (batch_size / world_size, T) on device, its seeded generator) for train().

        Every process draws the offsets of the whole global batch of `batch_size` blocks from the same
        generator, exactly as `batching.batch_fn` does from a tensor, and keeps its own slice (rank
        `rank` of `world_size`): N processes together see the batches one process would see."""
        if batch_size % world_size:
            raise ValueError(f"batch_size={batch_size} must be a multiple of the {world_size} processes")
        for split in ("train", "val"):
            n = self._split(split)[1]
            if n < block_size + 1:
                raise ValueError(f"the {split} split of {self.folder} has {n} tokens, fewer than one block of "
                                 f"block_size={block_size} needs ({block_size + 1}): use a smaller block_size "
                                 "or a larger corpus (or val_fraction)")
        generator = torch.Generator().manual_seed(seed)
        share = batch_size // world_size
        device = torch.device(device)

        def get(split: str) -> Batch:
            start, n = self._split(split)
            starts = torch.randint(n - block_size, (batch_size,), generator=generator)  # the global batch
            mine = (starts[rank * share:(rank + 1) * share] + start).tolist()
            # mapped afresh each time: the pages read are let go with the map (RSS stays flat)
            data = np.memmap(self.folder / TOKENS, dtype=self.dtype, mode="r")
            chunk = torch.from_numpy(np.stack([data[s:s + block_size + 1] for s in mine]).astype(np.int64))
            del data
            x, y = chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()  # (B, T) each
            if device.type == "cuda":
                return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
            return x.to(device), y.to(device)

        return get, generator
