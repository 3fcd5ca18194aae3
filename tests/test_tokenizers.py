"""Tokenizers: char and byte-level BPE round trips, save/load, and the fast BPE trainer against a slow reference."""

from __future__ import annotations

import itertools
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minilm.data import datasets as data
from minilm.data.tokenizers import (
    SPLIT_PATTERN,
    BPETokenizer,
    CharTokenizer,
    get_pair_counts,
    merge,
)


def _text(name: str) -> str:
    try:
        return data.load_text(name)
    except data.DataError as exc:  # no mirror and no internet
        pytest.skip(f"dataset {name!r} unavailable: {exc}")


@pytest.fixture(scope="module")
def shakespeare() -> str:
    return _text("tinyshakespeare")


@pytest.fixture(scope="module")
def tang() -> str:
    return _text("tang")


@pytest.fixture(scope="module")
def bpe(shakespeare: str, tang: str) -> BPETokenizer:
    """A small BPE trained on English and Chinese, shared by the round-trip tests."""
    return BPETokenizer.train(shakespeare[:50_000] + tang[:20_000], 256 + 300)


EMOJI = "I ❤️ BPE 🤖🚀 👩‍👩‍👧‍👦 🇫🇷 👍🏽 ✨"
MIXED = "Hello, 世界! naïve café – “quotes” — 1234567 apples\t\r\n\n  end_of_line __init__ x²"


def slow_train(text: str, vocab_size: int) -> list[tuple[int, int]]:
    """The plain minbpe loop (recount every pair after each merge), with the same split and tie rule:
    the most frequent pair, and among equals the one seen first (dicts keep insertion order)."""
    words = [list(chunk.encode("utf-8")) for chunk in re.findall(SPLIT_PATTERN, text)]
    merges = []
    for new_id in range(256, vocab_size):
        counts: dict[tuple[int, int], int] = {}
        for w in words:
            for p in itertools.pairwise(w):
                counts[p] = counts.get(p, 0) + 1
        if not counts:
            break
        best = max(counts, key=counts.get)  # most frequent; ties: the first seen
        merges.append(best)
        new_words = []
        for w in words:
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            new_words.append(out)
        words = new_words
    return merges


# ---------------------------------------------------------------- char tokenizer


def test_char_round_trip_and_sorted_vocab():
    tok = CharTokenizer.from_text("hello world")
    assert tok.chars == sorted(set("hello world"))
    assert tok.vocab_size == 8
    ids = tok.encode("hello")
    assert ids == [tok.stoi[c] for c in "hello"]
    assert tok.decode(ids) == "hello"
    assert tok.encode("") == [] and tok.decode([]) == ""


def test_char_chinese_round_trip(tang: str):
    text = tang[:5000]
    tok = CharTokenizer.from_text(text)
    assert tok.decode(tok.encode(text)) == text
    assert len(tok.encode(text)) == len(text)


def test_char_unknown_character_error_names_it_and_says_how_to_fix():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError) as exc:
        tok.encode("abz")
    msg = str(exc.value)
    assert "'z'" in msg and "U+007A" in msg and "from_text" in msg


def test_char_decode_bad_id():
    with pytest.raises(ValueError, match="outside the vocabulary"):
        CharTokenizer.from_text("abc").decode([0, 3])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        CharTokenizer.from_text("abc").decode([-1])  # not the last character


def test_char_save_load(tmp_path):
    tok = CharTokenizer.from_text("To be, or not to be: 春眠不覺曉 🙂")
    tok.save(tmp_path / "char.json")
    back = CharTokenizer.load(tmp_path / "char.json")
    assert back.chars == tok.chars and back.stoi == tok.stoi
    with pytest.raises(ValueError, match="BPETokenizer"):
        BPETokenizer.load(tmp_path / "char.json")


# ---------------------------------------------------------------- teaching helpers


def test_get_pair_counts_counts_overlaps():
    assert get_pair_counts([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert get_pair_counts([7, 7, 7]) == {(7, 7): 2}
    assert get_pair_counts([5]) == {} and get_pair_counts([]) == {}


def test_merge_left_to_right():
    assert merge([1, 2, 3, 1, 2], (1, 2), 99) == [99, 3, 99]
    assert merge([7, 7, 7], (7, 7), 99) == [99, 7]
    assert merge([7, 7, 7, 7], (7, 7), 99) == [99, 99]
    assert merge([1, 3], (1, 2), 99) == [1, 3]
    assert merge([], (1, 2), 99) == []


# ---------------------------------------------------------------- BPE


def test_bpe_known_example_aaabdaaabac():
    # Wikipedia's example: aa -> Z; then Za and ab are tied at 2 and Za is seen first: Za -> Y; Yb -> X
    tok = BPETokenizer.train("aaabdaaabac", 259)
    assert tok.merges == [(97, 97), (256, 97), (257, 98)]
    assert tok.vocab[258] == b"aaab"
    assert tok.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert tok.decode([258, 100, 258, 97, 99]) == "aaabdaaabac"


def test_bpe_fast_trainer_equals_slow_reference_english(shakespeare: str):
    text = shakespeare[:20_000]
    assert BPETokenizer.train(text, 256 + 120).merges == slow_train(text, 256 + 120)


def test_bpe_fast_trainer_equals_slow_reference_chinese_and_repeats(tang: str):
    # multi-byte characters, and runs like "aaaa" / "abab" where overlapping pairs matter
    text = tang[:4000] + " aaaa aaaaa abab ababab aaabdaaabac zzzzzzz 🙂🙂🙂" * 20
    assert BPETokenizer.train(text, 256 + 100).merges == slow_train(text, 256 + 100)


def exercise_train_bpe(text: str, num_merges: int) -> list[tuple[int, int]]:
    """Exercise 01's train_bpe, written as its text states it: one chunk, ties to the pair seen first."""
    ids, merges = list(text.encode("utf-8")), []
    for k in range(num_merges):
        counts = get_pair_counts(ids)
        if not counts:
            break
        merges.append(max(counts, key=counts.get))
        ids = merge(ids, merges[-1], 256 + k)
    return merges


@pytest.mark.parametrize("text", ["abab cdcd abab", "xyxyzwzw", "aaabdaaabac", "ba ab ba ab", "🙂世🙂界"])
def test_bpe_ties_go_to_the_pair_seen_first_as_in_exercise_01(text):
    whole = r"[\s\S]+"  # one chunk, as the exercise trains
    assert BPETokenizer.train(text, 256 + 8, pattern=whole).merges == exercise_train_bpe(text, 8)


def test_bpe_training_is_deterministic(shakespeare: str):
    text = shakespeare[:30_000]
    assert BPETokenizer.train(text, 400).merges == BPETokenizer.train(text, 400).merges


def test_bpe_merges_do_not_cross_chunks():
    text = "the cat. the hat. the mat. " * 50
    chunks = set(re.findall(SPLIT_PATTERN, text))  # "the", " cat", ".", " ", ...
    tok = BPETokenizer.train(text, 300)
    assert len(tok.merges) > 5
    for i in range(256, tok.vocab_size):
        assert any(tok.vocab[i].decode() in chunk for chunk in chunks), tok.vocab[i]


def test_bpe_vocab_and_limits():
    with pytest.raises(ValueError, match="256"):
        BPETokenizer.train("abc", 255)
    tok = BPETokenizer.train("hello", 256)  # no merges: plain bytes
    assert tok.vocab_size == 256 and tok.encode("héllo") == list("héllo".encode())
    small = BPETokenizer.train("abab", 1000)  # runs out of pairs: stops early
    assert small.vocab_size == 256 + len(small.merges) < 1000


def test_bpe_compresses_english(bpe: BPETokenizer, shakespeare: str):
    text = shakespeare[:50_000]
    assert len(text.encode("utf-8")) / len(bpe.encode(text)) > 1.5  # bytes per token (1.0 without merges)


@pytest.mark.parametrize("text", ["", "a", " ", "\n\n", "To be, or not to be", EMOJI, MIXED])
def test_bpe_round_trip_fixed(bpe: BPETokenizer, text: str):
    assert bpe.decode(bpe.encode(text)) == text


def test_bpe_round_trip_corpora(bpe: BPETokenizer, shakespeare: str, tang: str):
    for text in (shakespeare[-30_000:], tang[-30_000:]):  # text the tokenizer was not trained on
        ids = bpe.encode(text)
        assert all(0 <= i < bpe.vocab_size for i in ids)
        assert bpe.decode(ids) == text
    assert any(i >= 256 for i in bpe.encode(tang[-3000:]))  # Chinese merges were learned


@settings(max_examples=300, deadline=None, database=None)
@given(st.text())
def test_bpe_round_trip_any_text(bpe: BPETokenizer, text: str):
    assert bpe.decode(bpe.encode(text)) == text
    assert "".join(re.findall(SPLIT_PATTERN, text)) == text  # the split covers every character


@settings(max_examples=100, deadline=None, database=None)
@given(st.lists(st.integers(0, 255 + 300), max_size=50))
def test_bpe_decode_arbitrary_ids_never_fails(bpe: BPETokenizer, ids: list[int]):
    text = bpe.decode(ids)
    assert isinstance(text, str)
    assert text == b"".join(bpe.vocab[i] for i in ids).decode("utf-8", errors="replace")


def test_bpe_decode_invalid_bytes_and_bad_id(bpe: BPETokenizer):
    assert bpe.decode([0xE4, 0xB8]) == "\ufffd"  # a cut-off 3-byte character
    with pytest.raises(ValueError, match="outside the vocabulary"):
        bpe.decode([bpe.vocab_size])


def test_bpe_save_load(bpe: BPETokenizer, tmp_path, tang: str):
    path = tmp_path / "bpe.json"
    bpe.save(path)
    obj = json.loads(path.read_text(encoding="utf-8"))  # human-readable: the tokens as text
    assert obj["type"] == "bpe" and len(obj["merges"]) == bpe.vocab_size - 256
    assert obj["tokens"]["256"] == bpe.token_str(256)
    back = BPETokenizer.load(path)
    assert back.merges == bpe.merges and back.vocab == bpe.vocab and back.pattern == bpe.pattern
    text = MIXED + EMOJI + tang[-2000:]
    assert back.encode(text) == bpe.encode(text)
    with pytest.raises(ValueError, match="CharTokenizer"):
        CharTokenizer.load(path)  # "does not hold a CharTokenizer"


def _encode_in_merge_order(tok: BPETokenizer, text: str) -> list[int]:
    """The textbook encoder: per chunk, apply every learned merge in the order it was learned."""
    out: list[int] = []
    for chunk in re.findall(SPLIT_PATTERN, text):
        ids = list(chunk.encode("utf-8"))
        for k, pair in enumerate(tok.merges):
            ids = merge(ids, pair, 256 + k)
        out.extend(ids)
    return out


def test_bpe_encode_equals_applying_merges_in_order(bpe: BPETokenizer, shakespeare: str, tang: str):
    for text in (shakespeare[:3000], tang[:1500], "aaaa abab ababab 🙂🙂 naïve  \n\n"):
        assert bpe.encode(text) == _encode_in_merge_order(bpe, text)


@settings(max_examples=100, deadline=None, database=None)
@given(st.text(alphabet=st.sampled_from(list("ab 春风明月。\n🙂é")), max_size=40))
def test_bpe_encode_equals_merge_order_on_repeats(bpe: BPETokenizer, text: str):
    bpe._cache.clear()  # encode afresh, not from the chunk cache
    assert bpe.encode(text) == _encode_in_merge_order(bpe, text)
