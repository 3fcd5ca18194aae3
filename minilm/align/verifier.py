"""The checkable task of notebook 09: an acrostic five-character quatrain (藏頭詩), checked by a program.

The instruction gives four characters (the heads); a correct answer is a quatrain of the corpus's shape,
`xxxxx，xxxxx。xxxxx，xxxxx。` (four lines of five Chinese characters, `，` after lines 1 and 3, `。`
after lines 2 and 4), whose line k begins with head k. `check` says which parts hold; `reward` turns
that into a number in [0, 1] for RL (1 exactly when the answer passes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

HAN = "[\u4e00-\u9fff]"  # the CJK characters the Tang corpus is made of (minilm.data.datasets.TANG_POEM)
QUATRAIN = re.compile(f"^({HAN}{{5}})，({HAN}{{5}})。({HAN}{{5}})，({HAN}{{5}})。$")
N_LINES = 4


@dataclass(frozen=True)
class Verdict:
    """What the verifier found in one answer."""

    form: bool  # four lines of five characters with ，。，。 and nothing else
    heads: int  # how many of lines 1-4 begin with their head character (0-4)
    passed: bool  # form and all four heads

    @property
    def reward(self) -> float:
        """0.5 for the form + 0.125 per head right: 1.0 exactly when passed."""
        return 0.5 * self.form + 0.125 * self.heads


def check_heads(heads: str) -> None:
    """Raise ValueError unless `heads` is four Chinese characters."""
    if not re.fullmatch(f"{HAN}{{{N_LINES}}}", heads or ""):
        raise ValueError(f"heads must be {N_LINES} Chinese characters (one per line), got {heads!r}")


def lines_of(answer: str) -> list[str]:
    """The lines of an answer: the text between punctuation marks ，。 (empty pieces dropped)."""
    return [line for line in re.split("[，。]", answer) if line]


def check(answer: str, heads: str) -> Verdict:
    """Verdict on `answer` (the assistant's text, without the end token) for the four `heads`."""
    check_heads(heads)
    form = QUATRAIN.match(answer) is not None
    lines = lines_of(answer)
    right = sum(1 for k, line in enumerate(lines[:N_LINES]) if line[0] == heads[k])
    return Verdict(form=form, heads=right, passed=form and right == N_LINES)


def reward(answer: str, heads: str) -> float:
    """The RL reward of `answer`: check(answer, heads).reward, in [0, 1]."""
    return check(answer, heads).reward


def heads_of(poem: str) -> str:
    """The first characters of a poem's first four lines: the instruction that poem answers."""
    lines = lines_of(poem)
    if len(lines) < N_LINES:
        raise ValueError(f"a poem needs at least {N_LINES} lines, got {len(lines)}: {poem!r}")
    return "".join(line[0] for line in lines[:N_LINES])
