"""Counterfactual data augmentation (Lu et al. 2018; Zhao et al. 2018): swap gendered words (notebook 08).

`swap_gendered("He gave her his book.")` -> "She gave him her book.". Rules:

- whole words only (\b...\b on letters: "he" in "the" or "hey" is left alone; "he's" -> "she's");
- the case pattern is kept: "he" -> "she", "He" -> "She", "HE" -> "SHE";
- the pairs are `GENDER_PAIRS` (each word in one pair, both directions); names are not swapped;
- the ambiguous pronouns are resolved from the next word:
  * "her" is possessive ("her book" -> "his book") when a word follows that is not a function
    word, else an object ("saw her ." / "gave her to" / "told her that" -> "him");
  * "his" is a determiner ("his book" -> "her book") when a word follows that is not a function
    word, else the standalone possessive ("the book is his." -> "hers");
  * "hers" -> "his", "him" -> "her".
  The rule is a heuristic: "gave her flowers" (object, then a noun) becomes "gave his flowers".
  A part-of-speech tagger would do better; the course keeps the rule short and testable.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# (male, female) pairs; every word appears once. The pronouns her/his/him/hers are handled apart.
GENDER_PAIRS: tuple[tuple[str, str], ...] = (
    ("he", "she"), ("himself", "herself"), ("man", "woman"), ("men", "women"), ("boy", "girl"),
    ("boys", "girls"), ("father", "mother"), ("fathers", "mothers"), ("son", "daughter"),
    ("sons", "daughters"), ("brother", "sister"), ("brothers", "sisters"), ("husband", "wife"),
    ("husbands", "wives"), ("king", "queen"), ("kings", "queens"), ("uncle", "aunt"),
    ("uncles", "aunts"), ("nephew", "niece"), ("nephews", "nieces"), ("grandfather", "grandmother"),
    ("grandson", "granddaughter"), ("dad", "mom"), ("dads", "moms"), ("gentleman", "lady"),
    ("gentlemen", "ladies"), ("sir", "madam"), ("mr", "mrs"), ("male", "female"), ("males", "females"),
    ("masculine", "feminine"), ("prince", "princess"), ("princes", "princesses"), ("lord", "dame"),
    ("actor", "actress"), ("actors", "actresses"), ("waiter", "waitress"), ("waiters", "waitresses"),
    ("boyfriend", "girlfriend"), ("groom", "bride"), ("fiance", "fiancee"),
)
AMBIGUOUS = ("her", "his", "him", "hers")
# after these (function words and pronouns), "her" is an object and "his" stands alone (not followed by the thing owned)
FUNCTION_WORDS = frozenset(
    ["a", "an", "the", "and", "or", "but", "nor", "so", "yet", "to", "of", "in", "on", "at", "by", "for", "from", "with", "without", "about", "into", "onto", "over", "under", "up", "down", "out", "off", "away", "back", "again", "that", "this", "these", "those", "then", "than", "as", "if", "when", "while", "because", "since", "though", "is", "was", "are", "were", "be", "been", "am", "will", "would", "shall", "should", "can", "could", "may", "might", "must", "do", "does", "did", "not", "no", "his", "her", "him", "hers", "my", "your", "our", "their", "me", "you", "us", "them", "it", "its", "he", "she", "i", "we", "they"])

_WORD = re.compile(r"[A-Za-z]+")


def _pair_map(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    table: dict[str, str] = {}
    for m, f in pairs:
        for a, b in ((m.lower(), f.lower()), (f.lower(), m.lower())):
            if a in table or a in AMBIGUOUS:
                raise ValueError(f"the word {a!r} appears twice in the pair list (or is one of {AMBIGUOUS})")
            table[a] = b
    return table


SWAPS = _pair_map(GENDER_PAIRS)


def match_case(word: str, like: str) -> str:
    """`word` in the case pattern of `like`: "she", "He" -> "She"; "she", "HE" -> "SHE"."""
    if like.isupper() and len(like) > 1:
        return word.upper()
    if like[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


def _next_word(text: str, end: int) -> str | None:
    """The word right after position `end` if only spaces separate them, else None (punctuation, end)."""
    m = re.compile(r"\s*([A-Za-z]+)").match(text, end)
    return m.group(1).lower() if m else None


def _swap_pronoun(word: str, nxt: str | None) -> str:
    owned = nxt is not None and nxt not in FUNCTION_WORDS  # a noun (phrase) follows
    if word == "her":
        return "his" if owned else "him"
    if word == "his":
        return "her" if owned else "hers"
    return {"him": "her", "hers": "his"}[word]


def swap_gendered(text: str, pairs: Iterable[tuple[str, str]] | None = None) -> str:
    """`text` with every gendered word of `pairs` (default GENDER_PAIRS) and he/she pronouns swapped."""
    table = SWAPS if pairs is None else _pair_map(pairs)

    def repl(m: re.Match) -> str:
        word = m.group(0)
        low = word.lower()
        if low in AMBIGUOUS:
            return match_case(_swap_pronoun(low, _next_word(text, m.end())), word)
        if low in table:
            return match_case(table[low], word)
        return word

    return _WORD.sub(repl, text)


def augment(lines: Iterable[str], pairs: Iterable[tuple[str, str]] | None = None) -> list[str]:
    """Two-sided CDA: every line, then its swapped twin when swapping changes it."""
    out = []
    for line in lines:
        out.append(line)
        swapped = swap_gendered(line, pairs)
        if swapped != line:
            out.append(swapped)
    return out
