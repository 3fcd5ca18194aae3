"""Exercise set 01, text and tokens (solutions/01_text_tokens.ipynb; taught in notebook 01).

Public cases (with the reference's outputs, stored as data) and the grading inputs drawn at grading
time: random strings over random alphabets that mix ASCII, accents, Chinese and emoji (one text per
exercise always has a character of several UTF-8 bytes).
"""

from __future__ import annotations

import random

from ..spec import Case, Exercise, ExerciseSet
from .equivalents import forbid

_ASCII = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789 .,;:!?'\"-\n\t")
_WIDE = list("é你好世界春风") + ["🙂"]  # 2, 3 and 4 UTF-8 bytes
_POOL = _ASCII + _WIDE


def _alphabet(rng: random.Random, k: int, wide: bool = False) -> list[str]:
    """k distinct characters; with `wide`, at least one of several UTF-8 bytes."""
    if not wide:
        return rng.sample(_POOL, k)
    return [rng.choice(_WIDE), *rng.sample(_ASCII, k - 1)]


def _text(rng: random.Random, alphabet: list[str], n: int) -> str:
    text = [rng.choice(alphabet) for _ in range(n)]
    if n and alphabet[0] not in text:  # the first character always occurs (the wide one, if asked)
        text[rng.randrange(n)] = alphabet[0]
    return "".join(text)


def _tables(rng: random.Random, alphabet: list[str]) -> tuple[dict[str, int], dict[int, str]]:
    ids = rng.sample(range(3 * len(alphabet)), len(alphabet))  # not 0..n-1 in order: use the table
    stoi = dict(zip(alphabet, ids))
    return stoi, {i: ch for ch, i in stoi.items()}


def _encode_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for n in [0, 1, 5, 20, 50, 100, 200, 300]:
        alphabet = _alphabet(rng, rng.randint(2, 20), wide=n == 20)
        cases.append((_text(rng, alphabet, n), _tables(rng, alphabet)[0]))
    return cases


def _decode_inputs(rng: random.Random) -> list[tuple]:
    cases = []
    for n in [0, 1, 5, 20, 50, 100, 200, 300]:
        _, itos = _tables(rng, _alphabet(rng, rng.randint(2, 20), wide=n == 20))
        cases.append(([rng.choice(list(itos)) for _ in range(n)], itos))
    return cases


def _ids(rng: random.Random, n: int, high: int) -> list[int]:
    return [rng.randrange(high) for _ in range(n)]


def _count_inputs(rng: random.Random) -> list[tuple]:
    fixed = [([],), ([[]],), ([[7]],), ([[3, 3, 3, 3]],), ([[1, 2], [2, 1]],)]
    rand = [
        ([_ids(rng, rng.randint(0, n), rng.randint(2, 6)) for _ in range(rng.randint(1, 6))],)
        for n in [5, 10, 30, 60, 100]
    ]
    return fixed + rand


def _merge_inputs(rng: random.Random) -> list[tuple]:
    cases = [([], [(1, 2)]), ([4, 4, 4, 4, 4], []), ([4, 4, 4, 4, 4], [(4, 4), (256, 256)])]
    for n, k in [(1, 1), (2, 1), (6, 2), (10, 3), (30, 4), (60, 6), (100, 8), (200, 8)]:
        high = rng.randint(2, 4)  # few symbols, so random merges do occur
        merges = []
        for j in range(k):
            symbols = list(range(high)) + list(range(256, 256 + j))
            merges.append((rng.choice(symbols), rng.choice(symbols)))
        cases.append((_ids(rng, n, high), merges))
    return cases


def _bpe_inputs(rng: random.Random) -> list[tuple]:
    cases = [("", 3), ("a", 2), ("ab", 5)]
    for n, k in [(20, 3), (50, 5), (100, 8), (200, 10), (300, 12), (150, 0)]:
        alphabet = _alphabet(rng, rng.randint(2, 8), wide=n == 20)
        cases.append((_text(rng, alphabet, n), k))
    cases.append((_text(rng, rng.sample(_WIDE, rng.randint(1, 4)), rng.randint(4, 30)), 3))  # bytes, not characters
    return cases


_ABC = {"a": 0, "b": 1, "c": 2}
# the library's tokenizers answer every exercise of this set (CharTokenizer, get_pair_counts,
# merge, BPETokenizer): none of it may be used here
_TOKENIZERS = forbid(library="minilm.data.tokenizers")

SET = ExerciseSet(
    name="01_text_tokens",
    exercises=(
        Exercise(
            id="char_encode", points=1, forbidden=_TOKENIZERS,
            public=(
                Case(("abcab", _ABC), [0, 1, 2, 0, 1]),
                Case(("", _ABC), [], note="empty text"),
                Case(("你好你", {"你": 5, "好": 2}), [5, 2, 5], note="Chinese characters"),
            ),
            draw=_encode_inputs,
            describe_grading="random texts (ASCII, accents, Chinese, emoji) with shuffled tables",
        ),
        Exercise(
            id="char_decode", points=1, forbidden=_TOKENIZERS,
            public=(
                Case(([0, 1, 2, 0, 1], {0: "a", 1: "b", 2: "c"}), "abcab"),
                Case(([], {0: "a"}), "", note="no ids"),
                Case(([5, 2, 9], {5: "你", 2: "好", 9: "🙂"}), "你好🙂", note="Chinese and an emoji"),
            ),
            draw=_decode_inputs,
            describe_grading="random id lists with shuffled tables over mixed scripts",
        ),
        Exercise(
            id="count_pairs", points=2, forbidden=_TOKENIZERS, ordered_keys=True,
            public=(
                Case(([[1, 2, 3], [1, 2]],), {(1, 2): 2, (2, 3): 1}, note="no pair across chunks"),
                Case(([[4], []],), {}, note="chunks too short for a pair"),
                Case(([[7, 7, 7]],), {(7, 7): 2}, note="overlapping pairs all count"),
                Case(([],), {}, note="no chunks at all"),
                Case(([[3, 1, 3, 1, 2]],), {(3, 1): 2, (1, 3): 1, (1, 2): 1}, note="keys in order of first appearance"),
            ),
            draw=_count_inputs,
            describe_grading="empty input, empty and one-id chunks, random chunk lists",
        ),
        Exercise(
            id="apply_merges", points=2, forbidden=_TOKENIZERS,
            public=(
                Case(([97, 97, 97, 98, 100, 97, 97, 97, 98, 97, 99], [(97, 97), (256, 97), (257, 98)]),
                     [258, 100, 258, 97, 99]),
                Case(([1, 1, 1], [(1, 1), (256, 1)]), [257], note="left to right, then the new id merges"),
                Case(([5, 6], [(6, 5)]), [5, 6], note="pair absent"),
                Case(([], [(1, 2)]), [], note="no ids"),
                Case(([4, 4, 4], []), [4, 4, 4], note="no merges"),
            ),
            draw=_merge_inputs,
            describe_grading="random id lists and merge lists, merges that do and do not occur",
        ),
        Exercise(
            id="train_bpe", points=3, forbidden=_TOKENIZERS,
            public=(
                Case(("aaabdaaabac", 3), [(97, 97), (256, 97), (257, 98)]),
                Case(("你好你好你", 2), [(228, 189), (256, 160)], note="UTF-8 bytes of Chinese"),
                Case(("a", 4), [], note="no pair to merge"),
                Case(("", 3), [], note="empty text"),
                Case(("cdab", 1), [(99, 100)], note="a tie: the pair seen first wins"),
                Case(("abaaa", 2), [(97, 97), (97, 98)], note="overlapping pairs all count: (a, a) twice"),
            ),
            draw=_bpe_inputs,
            describe_grading="random texts in mixed scripts, 0 to 12 merges",
        ),
    ),
)
