"""`check("<id>", fn)` (exported as minilm.grading.check): instant feedback in the student's notebook on the public cases (every set).

It prints one line per public case (pass, or why not: expected against actual type, shape, dtype,
first differing value, the exception and the line that raised it, a call the exercise forbids, an
input the answer changed) with the failing call written so that it can be pasted into a cell, and
says how many further cases the grader runs later. It never claims more than it ran. Nothing here
decides a grade: the batch grader (minilm.grading.grader) recomputes everything outside the
student's process.
"""

from __future__ import annotations

import copy
import inspect
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .compare import NotData, decode, encode, same
from .forbid import NotAllowed, Watcher, call_watched, resolve
from .pasteable import call_text

GRADING_CHILD = False  # set by the grader's child process: check() then does nothing
_SHOWN = 6  # forbidden names check() lists; the rest are counted
_LIBRARY = tuple(
    {str(Path(__file__).resolve().parents[1]), sys.prefix, sys.base_prefix, sys.exec_prefix, "<frozen"}
)


def _short(x: Any, limit: int = 70) -> str:
    s = repr(x)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _where(exc: BaseException) -> str:
    """'line 3 in char_encode' for the innermost frame of the student's code (outside minilm,
    PyTorch and the Python installation)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(_LIBRARY)]
    if not frames:
        return ""
    f = frames[-1]
    code = f" `{f.line.strip()}`" if f.line else ""
    return f" (line {f.lineno} in {f.name}:{code})"


def params_of(fn: Any) -> list[str]:
    """The parameter names of `fn` (a class: of its constructor), or [] when it has none to show."""
    try:
        return [p for p in inspect.signature(fn).parameters if p not in ("self", "cls")]
    except (TypeError, ValueError):
        return []


def changed_argument(before: Any, args: tuple, may_modify: tuple[int, ...]) -> str:
    """"" when every argument outside `may_modify` still equals its copy `before`, else why not."""
    for i, (old, new) in enumerate(zip(before, args)):
        if i in may_modify:
            continue
        try:
            unchanged = encode(old) == encode(new)
        except NotData:
            unchanged = False
        if not unchanged:
            return (
                f"your function modified its input (argument {i + 1}); the exercise asks you to "
                "leave it as it is: work on a copy or build a new value"
            )
    return ""


def run_case(exercise: Any, fn: Callable[..., Any], args: tuple, expected: Any) -> tuple[str, str]:
    """Run one public case: ("pass" | "fail" | "error" | "todo", message)."""
    given = copy.deepcopy(args)
    try:
        got = call_watched(Watcher(), resolve(tuple(exercise.forbidden)), exercise.call, fn, *given)
    except NotImplementedError:
        return "todo", "not attempted yet (it still raises NotImplementedError)"
    except NotAllowed as e:
        return "error", f"{e.args[0]}{_where(e)}"
    except Exception as e:  # noqa: BLE001 - any error in student code is reported, not raised
        return "error", f"raised {type(e).__name__}: {_short(str(e), 120)}{_where(e)}"
    changed = changed_argument(args, given, exercise.may_modify)
    if changed:
        return "fail", changed
    try:
        got = decode(encode(got))
    except NotData as e:
        return "fail", str(e)
    ok, why = same(expected, got, exercise.rtol, exercise.atol, ordered_keys=exercise.ordered_keys)
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
            continue
        print(f"  [FAIL] {label}: {msg}")
        call = call_text(exercise_id, params_of(fn), case.args, ex.show_call)
        print("         to run it yourself, paste into a cell:")
        print("\n".join("             " + line for line in call.splitlines()))
        if status == "fail":
            print(f"         expected: {_short(case.expected, 100)}")
    later = f"{ex.n_drawn()} further cases" + (f" ({ex.describe_grading})" if ex.describe_grading else "")
    print(
        f"  Only these {len(results)} public cases were run here. The grader runs them again and {later}, "
        f"worth {ex.points:g} point(s) if all pass."
    )
    if ex.forbidden:
        shown, more = ", ".join(ex.forbidden[:_SHOWN]), len(ex.forbidden) - _SHOWN
        rest = (f" and {more} more that compute the same (all of them: "
                f"minilm.grading.sets.find_exercise({exercise_id!r}).forbidden)") if more > 0 else ""
        print(f"  Not allowed in this exercise (the grader checks): {shown}{rest}.")
