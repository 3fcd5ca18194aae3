"""`minilm prepare` and the token file: read back, it is exactly `tokenizer.encode(text)`, cut wherever the
reading cuts it (inside runs of whitespace, between the bytes of multi-byte UTF-8, next to apostrophes);
its memory-mapped batches are the batches of `batching.batch_fn`; training from it keeps RSS flat."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minilm.cli import commands as cli
from minilm.data.batching import batch_fn, char_data, encode_corpus
from minilm.data.tokenfile import (
    META,
    TOKENS,
    TokenFile,
    encode_pieces,
    load_tokenizer,
    parse_tokenizer_spec,
    prepare,
    safe_cut,
    token_dtype,
)
from minilm.data.tokenizers import BPETokenizer, CharTokenizer

# Whitespace runs of every kind, multi-byte UTF-8 (2, 3 and 4 bytes), combining marks, contractions,
# digits of other scripts, "\r\n" (read as "\n", as Path.read_text reads it)
TRICKY = ("It's  the\t\tend,  isn't it?\n\n   We'll see 'tis 42 apples__ and 3.5 pears...\r\n"
          "naïve café e\u0301 — 白日依山尽，黄河入海流。 😀😀 x²  ٣٤٥ \u00a0 nbsp  \n\t \n"
          "they're I've you'd 'S 'LL ' s '' ll\n")


def read_back(folder: Path) -> list[int]:
    tf = TokenFile.open(folder)
    return tf.tokens().astype(np.int64).tolist()


@pytest.fixture(scope="module")
def text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_bytes((TRICKY * 40).encode("utf-8"))
    return path


@pytest.mark.parametrize("read_chars", [1, 7, 64, 1 << 20])
def test_prepare_char_reads_back_as_encode(tmp_path, text_file, read_chars):
    out = prepare(text_file, "char", tmp_path / "out", progress=False, read_chars=read_chars)
    text = text_file.read_text(encoding="utf-8")
    tok = CharTokenizer.from_text(text)
    assert "\r" not in text and load_tokenizer(out).chars == tok.chars
    assert read_back(out) == tok.encode(text)
    meta = json.loads((out / META).read_text())
    assert meta["dtype"] == "uint16" and meta["n_tokens"] == len(text) and meta["tokenizer"] == "char"


@pytest.mark.parametrize("read_chars", [1, 3, 50, 1 << 20])
def test_prepare_bpe_reads_back_as_encode(tmp_path, text_file, read_chars):
    out = prepare(text_file, "bpe:350", tmp_path / "out", progress=False, read_chars=read_chars)
    tok = load_tokenizer(out)
    assert isinstance(tok, BPETokenizer) and tok.vocab_size == 350
    text = text_file.read_text(encoding="utf-8")
    assert read_back(out) == tok.encode(text)
    assert tok.decode(read_back(out)) == text


def test_bpe_trains_on_a_bounded_sample_of_a_large_file(tmp_path, text_file):
    big = tmp_path / "big.txt"
    big.write_bytes(text_file.read_bytes() * 10)  # ~60 KB, sampled as 16 windows of 1 KB
    out = prepare(big, "bpe:300", tmp_path / "out", progress=False, read_chars=999, sample_bytes=16_000)
    tok = load_tokenizer(out)
    assert tok.vocab_size == 300
    assert read_back(out) == tok.encode(big.read_text(encoding="utf-8"))


TRAINED = BPETokenizer.train(TRICKY * 3, 330)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list(" \t\n'aZxs1_,.!-éé日😀\u0301²٣") + ["  ", "'s", "'ll", "\n\n", "ve"]),
                max_size=40).map("".join),
       st.integers(1, 9))
def test_pieces_encode_as_the_whole(text, k):
    pieces = [text[i:i + k] for i in range(0, len(text), k)]
    got = [i for ids in encode_pieces(iter(pieces), TRAINED) for i in ids]
    assert got == TRAINED.encode(text)


def test_safe_cut_never_splits_a_contraction_or_a_whitespace_run():
    assert safe_cut("it's") == 0 and safe_cut("it's,") == 4  # never next to the apostrophe of 's
    assert safe_cut("a  b  ") == 4 and safe_cut("   b") == 0  # before whitespace, never inside it
    assert safe_cut("ab cd") == 2 and "ab cd"[:2] == "ab"
    assert safe_cut("'ll") == 0 and safe_cut("abc") == 0


def test_course_dataset_gives_the_streams_of_char_data(tmp_path):
    out = prepare("tinyshakespeare", "char", tmp_path / "ts", progress=False)
    tok, train_data, val_data = char_data("tinyshakespeare")
    tf = TokenFile.open(out)
    assert tf.tokenizer().chars == tok.chars and tf.n_train == len(train_data)
    assert torch.equal(torch.from_numpy(tf.tokens("train").astype(np.int64)), train_data)
    assert torch.equal(torch.from_numpy(tf.tokens("val").astype(np.int64)), val_data)


def test_uint32_where_the_vocabulary_does_not_fit_uint16(tmp_path):
    chars = [chr(c) for c in [*range(0x4E00, 0xA000), *range(0x20000, 0x2B000)]]  # 66,048 characters
    path = tmp_path / "wide.txt"
    path.write_text("".join(chars) + "\n" + "".join(reversed(chars)), encoding="utf-8")
    out = prepare(path, "char", tmp_path / "out", progress=False, read_chars=10_007)
    tf = TokenFile.open(out)
    assert tf.dtype == np.uint32 and tf.vocab_size == 66_049 > 1 << 16
    assert token_dtype(1 << 16) == np.uint16 and token_dtype((1 << 16) + 1) == np.uint32
    assert read_back(out) == tf.tokenizer().encode(path.read_text(encoding="utf-8"))


def test_memmap_batches_are_the_batches_of_batch_fn_and_ranks_slice_them(tmp_path, text_file):
    out = prepare(text_file, "char", tmp_path / "out", progress=False)
    tf = TokenFile.open(out)
    data = encode_corpus(text_file.read_text(encoding="utf-8"), tf.tokenizer())
    train_data, val_data = data[:tf.n_train], data[tf.n_train:]
    ref, _ = batch_fn(train_data, val_data, block_size=16, batch_size=6, device="cpu", seed=3)
    one, _ = tf.batches(16, 6, "cpu", seed=3)
    halves = [tf.batches(16, 6, "cpu", seed=3, rank=r, world_size=3)[0] for r in range(3)]
    for split in ["train", "val", "train", "train", "val"]:
        x, y = ref(split)
        x1, y1 = one(split)
        assert torch.equal(x, x1) and torch.equal(y, y1) and x1.dtype == torch.int64
        parts = [get(split) for get in halves]
        assert torch.equal(torch.cat([p[0] for p in parts]), x)
        assert torch.equal(torch.cat([p[1] for p in parts]), y)


def test_bad_input_is_named(tmp_path, text_file):
    with pytest.raises(FileNotFoundError, match="neither a course dataset"):
        prepare(tmp_path / "missing.txt", "char", tmp_path / "x", progress=False)
    for spec in ["bpe:100", "bpe:big", "words", "char:5"]:
        with pytest.raises(ValueError, match="'char', 'bpe'"):
            parse_tokenizer_spec(spec)
    assert parse_tokenizer_spec("BPE:4096") == ("bpe", 4096)
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("café".encode("latin-1"))
    with pytest.raises(ValueError, match="not UTF-8"):
        prepare(latin1, "char", tmp_path / "y", progress=False)
    with pytest.raises(FileNotFoundError, match="not a prepared token folder"):
        TokenFile.open(tmp_path / "y")  # the failed prepare left no meta.json
    out = prepare(text_file, "char", tmp_path / "z", progress=False)
    with open(out / TOKENS, "r+b") as f:
        f.truncate(100)
    with pytest.raises(ValueError, match="prepare the folder again"):
        TokenFile.open(out)
    tf = TokenFile.open(prepare(text_file, "char", tmp_path / "z", progress=False))
    with pytest.raises(ValueError, match="fewer than one block"):
        tf.batches(10**6, 4, "cpu")
    with pytest.raises(ValueError, match="multiple of the 3 processes"):
        tf.batches(8, 4, "cpu", world_size=3)


def test_prepare_command(tmp_path, text_file, capsys):
    assert cli.main(["prepare", str(text_file), "--tokenizer", "bpe:260", "--out", str(tmp_path / "o")]) == 0
    assert "tokens (uint16, bpe vocabulary 260)" in capsys.readouterr().out
    assert cli.main(["prepare", str(text_file), "--tokenizer", "bpe:9", "--out", str(tmp_path / "o")]) == 2
    assert "VOCAB >= 256" in capsys.readouterr().err


# --- peak RSS does not grow with the file -------------------------------------------------------

RSS_CHILD = textwrap.dedent("""
    import resource, sys
    import torch
    torch.set_num_threads(1)
    from minilm.cli.pretrain import main
    code = main(["--data", sys.argv[1], "--out", sys.argv[2], "--preset", "smoke", "--max_steps", "40",
                 "--eval_interval", "20", "--eval_iters", "4", "--batch_size", "16", "--progress", "false"])
    print("PEAK_RSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    sys.exit(code)
""")


def synthetic_token_folder(folder: Path, megabytes: int, vocab: int = 64) -> Path:
    """A prepared folder of `megabytes` MB of random uint16 tokens, written 1 MiB at a time."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    n = megabytes * 10**6 // 2
    with open(folder / TOKENS, "wb") as f:
        for start in range(0, n, 1 << 19):
            rng.integers(0, vocab, min(1 << 19, n - start), dtype=np.uint16).tofile(f)
    CharTokenizer([chr(0x100 + i) for i in range(vocab)]).save(folder / "tokenizer.json")
    meta = {"format": 1, "source": "synthetic", "tokenizer": "char", "vocab_size": vocab, "dtype": "uint16",
            "n_tokens": n, "n_train": n - n // 10, "val_fraction": 0.1}
    (folder / META).write_text(json.dumps(meta))
    return folder


def test_training_from_a_memmap_keeps_peak_rss_flat(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(RSS_CHILD)
    peaks = {}
    for mb in (10, 200):
        folder = synthetic_token_folder(tmp_path / f"tokens{mb}", mb)
        assert (folder / TOKENS).stat().st_size == mb * 10**6
        proc = subprocess.run([sys.executable, str(script), str(folder), str(tmp_path / f"run{mb}")],
                              capture_output=True, text=True, timeout=300, check=False,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert proc.returncode == 0, proc.stdout + proc.stderr
        peaks[mb] = int(proc.stdout.split("PEAK_RSS_KB")[1].split()[0]) / 1024
    print(f"peak RSS training from 10 MB of tokens: {peaks[10]:.0f} MB; from 200 MB: {peaks[200]:.0f} MB")
    assert peaks[200] - peaks[10] < 20, peaks  # holding the file would add 190 MB
