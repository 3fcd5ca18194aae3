"""`check("<id>", fn)` (exported as minilm.grading.check): instant feedback in the student's notebook on the public cases (every set).

It prints one line per public case (pass, or why not: expected against actual type, shape, dtype,
first differing value, or the exception and the line that raised it) and says how many further
cases the grader runs later. It never claims more than it ran. Nothing here decides a grade: the
batch grader (minilm.grading.grader) recomputes everything outside the student's process.
"""

from __future__ import annotations

import copy
import inspect
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .compare import NotData, decode, encode, same

GRADING_CHILD = False  # set by the grader's child process: check() then does nothing
_LIBRARY = str(Path(__file__).resolve().parents[1])


def _short(x: Any, limit: int = 70) -> str:
    s = repr(x)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _where(exc: BaseException) -> str:
    """'line 3 in char_encode' for the innermost frame outside the minilm library."""
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_LIBRARY)
    ]
    if not frames:
        return ""
    f = frames[-1]
    code = f" `{f.line.strip()}`" if f.line else ""
    return f" (line {f.lineno} in {f.name}:{code})"


def _inputs(fn: Callable[..., Any], args: tuple) -> str:
    try:
        names = list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        names = []
    names = names + [f"arg{i}" for i in range(len(names), len(args))]
    return ", ".join(f"{n}={_short(a, 50)}" for n, a in zip(names, args))


def run_case(exercise: Any, fn: Callable[..., Any], args: tuple, expected: Any) -> tuple[str, str]:
    """Run one public case: ("pass" | "fail" | "error" | "todo", message)."""
    try:
        got = exercise.call(fn, *copy.deepcopy(args))
    except NotImplementedError:
        return "todo", "not attempted yet (it still raises NotImplementedError)"
    except Exception as e:  # noqa: BLE001 - any error in student code is reported, not raised
        return "error", f"raised {type(e).__name__}: {_short(str(e), 120)}{_where(e)}"
    try:
        got = decode(encode(got))
    except NotData as e:
        return "fail", str(e)
    ok, why = same(expected, got, exercise.rtol, exercise.atol)
    return ("pass", "") if ok else ("fail", why)


def check(exercise_id: str, fn: Callable[..., Any]) -> None:
    """Run the public cases of exercise `exercise_id` on `fn` and print what happened (any notebook)."""
    if GRADING_CHILD:
        return
    from .sets import find_exercise

    ex = find_exercise(exercise_id)
    results = []
    for case in ex.public:
        status, msg = run_case(ex, fn, case.args, case.expected)
        if status == "todo":
            print(
                f"{exercise_id}: not attempted yet (the function still raises NotImplementedError). "
                f"{len(ex.public)} public cases are waiting for it."
            )
            return
        results.append((case, status, msg))
    n_pass = sum(status == "pass" for _, status, _ in results)
    print(f"{exercise_id}: {n_pass} of {len(results)} public cases passed")
    for i, (case, status, msg) in enumerate(results, 1):
        label = f"case {i}" + (f" ({case.note})" if case.note else "")
        if status == "pass":
            print(f"  [pass] {label}")
        else:
            print(f"  [FAIL] {label}: {msg}")
            print(f"         input: {_inputs(fn, case.args)}")
            if status == "fail":
                print(f"         expected: {_short(case.expected, 100)}")
    later = (
        f"{ex.n_grading()} further cases ({ex.describe_grading})"
        if ex.describe_grading
        else f"{ex.n_grading()} further cases"
    )
    print(
        f"  Only these {len(results)} public cases were run here. The grader runs {later}, "
        f"worth {ex.points:g} point(s) if all pass."
    )
    return
