"""Verdicts and outputs of the batch grader: one gradebook row per submission, feedback, the gradebook.

`verdict` turns what the sandboxed child returned (decoded strictly, never trusted) and the reference's
outputs into a status, points and feedback lines a student can act on (minilm.grading.gradebook
writes them). Every text that came from a submission (names, messages, output) is made safe
first: no lone surrogates or control characters, no spreadsheet formulas, no file name too long.
"""

from __future__ import annotations

import hashlib
import re
import signal
from dataclasses import dataclass, field
from typing import Any

from .compare import NotData, decode, same
from .pasteable import call_text
from .sandbox import wall_limits
from .spec import ExerciseSet
from .submission import Submission

STATUSES = ("ok", "missing exercise", "not attempted", "crashed", "memory", "timeout", "invalid notebook",
            "grader error")
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")
MAX_CALL = 4000  # characters of a paste-able failing call shown in feedback


@dataclass
class GradeOptions:
    """Limits and settings of one grading run (the CLI flags of `minilm grade`)."""

    jobs: int = 1  # submissions graded at the same time (one sandbox each)
    cell_timeout: float = 30.0  # CPU seconds per notebook cell, and per exercise for all its cases
    timeout: float = 300.0  # CPU seconds for a whole submission
    memory_mb: int = 2048  # memory a submission may allocate beyond the pre-loaded interpreter
    seed: int | None = None  # None: reuse the seed of a previous run in --out, else draw one
    solutions: str | None = None  # solutions folder (default ./solutions, or the checkout's)
    allow_unsandboxed: bool = False  # grade even when namespaces are unavailable (unsafe)
    hide: list[str] = field(default_factory=list)  # more paths to hide from the child
    fresh: bool = False  # start the gradebook in --out again (default: keep the rows of students not re-graded)
    deadline: str | None = None  # ISO date and time; a notebook whose file time is later is late
    late_penalty: str | None = None  # "10%" once, or "10%/day" per started day late (of the score earned)
    assignment: str | None = None  # header of the Canvas import's grade column (default "minilm <set>")


@dataclass
class Row:
    """One line of the gradebook, plus what the feedback file needs."""

    student: str  # file name without .ipynb (the student id an LMS export uses)
    status: str  # one of STATUSES
    points: dict[str, float]  # exercise id -> points earned
    total: float  # sum of points
    seconds: float  # wall time of the sandboxed run
    feedback: list[str] = field(default_factory=list)  # lines of the student's feedback file
    level: str = ""  # isolation level the child reached
    reasons: dict[str, str] = field(default_factory=dict)  # exercise id -> why it lost its points
    name: str = ""  # the name an LMS wrote (minilm.grading.lms); the student id otherwise
    lms: str = ""  # "canvas", "moodle" or ""
    lms_id: str = ""  # Canvas user id or Moodle participant id
    file: str = ""  # the notebook graded, relative to the submissions folder
    late: bool = False  # late by the LMS's marker or the deadline
    penalty: float = 0.0  # points taken off for lateness (total is after it)


def fmt_points(x: float) -> str:
    """1.0 -> "1", 0.5 -> "0.5"."""
    return f"{x:g}"


def safe_text(s: Any, limit: int = 100_000) -> str:
    """Untrusted text made safe to write: valid UTF-8 (lone surrogates escaped), control and
    direction-changing characters escaped, at most `limit` characters."""
    s = s if isinstance(s, str) else str(s)
    s = s[:limit] + ("..." if len(s) > limit else "")
    s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), s)


def csv_cell(s: Any) -> str:
    """A gradebook cell: safe text that a spreadsheet will not run as a formula."""
    s = safe_text(s, 1000)
    return "'" + s if s[:1] in ("=", "+", "-", "@", "\t", "\r") else s


def feedback_names(students: list[str]) -> dict[str, str]:
    """A distinct, safe file name `<name>.txt` for every student id (kept as is where possible)."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for s in students:
        base = "".join(c if c.isalnum() or c in "._-@+" else "_" for c in s).lstrip(".")
        base = ("_" + base if base[:1] in ("-", "+", "@") else base) or "student"
        while len(base.encode("utf-8")) > 150:  # room for "-<hash>.txt" within 255 bytes
            base = base[:-1]
        name = base
        if name != s or name.lower() in taken:
            digest = hashlib.sha1(s.encode("utf-8", "surrogateescape")).hexdigest()[:10]
            name = f"{base}-{digest}"
        taken.add(name.lower())
        out[s] = name + ".txt"
    return out


def _short(x: Any, limit: int = 200) -> str:
    s = repr(x)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _case_line(ex: Any, i: int, why: str, case: dict, args: tuple, params: list[str]) -> str:
    line = f"first failure, case {i + 1}: {safe_text(why, 600)}"
    if case.get("kind") != "todo":
        call = call_text(ex.id, params, args, ex.show_call)
        if len(call) > MAX_CALL:
            call = call[:MAX_CALL] + " ...(cut: the full input is too long to show)"
        line += "\n      to run it yourself, paste into a cell:\n" + "\n".join(
            "        " + ln for ln in call.splitlines()
        )
    return line


def _exercise_lines(ex: Any, got: Any, expected: list, inputs: list, params: list[str]) -> tuple[list, float, set, str]:
    """Feedback lines, points, kinds of failures seen, and the short reason it lost points ("" if
    none; "missing" when the exercise was not defined) for one exercise."""
    kinds: set = set()
    if not isinstance(got, dict):
        return [f"{ex.id}: 0/{fmt_points(ex.points)} - not graded (the run ended before this exercise)."], 0.0, kinds, "not graded"
    if got.get("missing") is True:
        return [
            (f"{ex.id}: 0/{fmt_points(ex.points)} - missing: no function or class named {ex.id} "
            "was defined (renamed or deleted cell?).")
        ], 0.0, kinds, "missing"
    cases = got.get("cases") if isinstance(got.get("cases"), list) else []
    n, passed, first, reason = len(expected), 0, "", ""
    for i, want in enumerate(expected):
        case = cases[i] if i < len(cases) and isinstance(cases[i], dict) else {"kind": "error", "error": "no result"}
        if "value" in case:
            try:
                ok, why = same(want, decode(case["value"]), ex.rtol, ex.atol, ordered_keys=ex.ordered_keys)
            except (NotData, RecursionError, ValueError) as e:
                ok, why = False, f"returned malformed data ({safe_text(e, 200)})"
        else:
            ok, why = False, safe_text(case.get("error", "no result"), 400)
            kind = case.get("kind")
            kinds.add(kind if isinstance(kind, str) else "error")
            if kind == "todo":
                why = "not attempted (raises NotImplementedError)"
            elif kind == "timeout":
                why = _limit_text(case.get("limit"), "this exercise's cases together")
        passed += ok
        if not ok and not first:
            first, reason = _case_line(ex, i, why, case, inputs[i], params), safe_text(why, 200)
    points = float(ex.points) if passed == n else 0.0
    line = f"{ex.id}: {fmt_points(points)}/{fmt_points(ex.points)} - {passed} of {n} grading cases passed"
    if cases and all(isinstance(c, dict) and c.get("kind") == "todo" for c in cases):
        reason = "not attempted"
    return [line + (f"; {first}" if first else ".")], points, kinds, reason


def _limit_text(limit: Any, what: str) -> str:
    if limit == "wall":
        return f"time limit: {what} waited too long (the wall-clock limit; is something sleeping or waiting?)"
    return f"time limit: {what} used more CPU time than allowed (an endless loop, or far too slow)"


def _exit_text(exit_code: Any) -> str:
    if isinstance(exit_code, int) and exit_code < 0:
        try:
            name = signal.Signals(-exit_code).name
        except ValueError:
            name = f"signal {-exit_code}"
        return f"killed by {name}"
    return f"exit code {exit_code}" if exit_code is not None else "it never reported back"


def verdict(
    ex_set: ExerciseSet,
    opts: GradeOptions,
    sub: Submission,
    reply: dict,
    results: dict | None,
    expected: dict,
    inputs: dict,
    params: dict[str, list[str]] | None = None,
) -> Row:
    """The gradebook row of one submission: compare its returned values with the reference's."""
    fb = [f"Note: {safe_text(n, 300)} (nothing for you to do)." for n in sub.notes]
    points = {ex.id: 0.0 for ex in ex_set.exercises}
    seconds = round(float(reply.get("seconds") or 0.0), 3)
    if reply.get("setup_error"):
        msg = ("The grader could not run your notebook because of a problem on the grading machine, not in "
               f"your notebook ({safe_text(reply['setup_error'], 300)}). Your instructor sees this as a grader error.")
        return Row(sub.student, "grader error", points, 0.0, seconds, [msg], str(reply.get("level") or ""))
    results = results if isinstance(results, dict) else {}
    cells = results.get("cells") if isinstance(results.get("cells"), list) else []
    kinds = {c.get("kind") for c in cells if isinstance(c, dict) and isinstance(c.get("kind"), str)}
    exercises = results.get("exercises") if isinstance(results.get("exercises"), dict) else {}
    reasons = {}
    for ex in ex_set.exercises:
        lines, pts, ex_kinds, reasons[ex.id] = _exercise_lines(
            ex, exercises.get(ex.id), expected[ex.id], inputs[ex.id], (params or {}).get(ex.id, [])
        )
        fb += lines
        points[ex.id] = pts
        kinds |= ex_kinds
    missing = "missing" in reasons.values()
    fb += _cell_lines(cells, sub, opts)
    output = results.get("output_chars")
    if type(output) is int and output > 0:
        fb.append(
            f"While it was graded, your notebook printed {output:,} characters (prints, warnings, progress "
            "bars of every cell). That is normal and costs no points: the grader runs every cell and does not "
            "show the output here; very long output only slows grading down."
        )
    exit_code = reply.get("exit")
    timed_out = bool(reply.get("timed_out")) or exit_code in (-signal.SIGXCPU,)
    complete = all(isinstance(exercises.get(ex.id), dict) for ex in ex_set.exercises)
    done = results.get("done") is True and complete and exit_code == 0 and not reply.get("results_problem")
    if timed_out or "timeout" in kinds:
        status = "timeout"
        fb.insert(0, "Time limit reached: " + (
            f"the whole run was stopped (limits: {fmt_points(opts.timeout)} s of CPU time, or "
            f"{fmt_points(wall_limits(opts.cell_timeout, opts.timeout)[1])} s in all); "
            "exercises not reached got 0." if timed_out else
            f"a cell or an exercise was stopped (limits: {fmt_points(opts.cell_timeout)} s of CPU time, or "
            f"{fmt_points(wall_limits(opts.cell_timeout, opts.timeout)[0])} s of waiting, each); the rest was graded."))
    elif "memory" in kinds:
        status = "memory"
        fb.insert(0, f"Memory limit reached ({opts.memory_mb} MB on top of Python and PyTorch); the rest was graded.")
    elif not done:
        status = "crashed"
        why = safe_text(reply.get("results_problem") or ("" if complete else "its results were incomplete"), 200)
        fb.insert(0, "Your notebook stopped the grading process before it finished (" + _exit_text(exit_code)
                  + (f"; {why}" if why else "") + "): exercises after that point got 0. Look for os._exit, "
                  "sys.exit, os.kill or code that crashes Python in a cell.")
    elif all(r == "not attempted" for r in reasons.values()):
        status = "not attempted"
        fb.insert(0, "Not attempted: every exercise still raises NotImplementedError, as handed out.")
    elif missing:
        status = "missing exercise"
    else:
        status = "ok"
    if "threads" in kinds:
        fb.append("Your code could not start a thread or process: the grader allows a few hundred per "
                  "notebook and counts each thread's memory; use fewer workers.")
    return Row(sub.student, status, points, sum(points.values()), seconds, fb, str(reply.get("level") or ""),
               {k: v for k, v in reasons.items() if v})


def _cell_lines(cells: list, sub: Submission, opts: GradeOptions) -> list[str]:
    out = []
    for c in cells:
        if not (isinstance(c, dict) and c.get("kind") != "todo" and type(c.get("index")) is int
                and 0 <= c["index"] < len(sub.cells or [])):
            continue
        first = next((ln for ln in sub.cells[c["index"]].splitlines() if ln.strip()), "")[:60]
        what = _limit_text(c.get("limit"), "this cell") if c.get("kind") == "timeout" else str(c.get("error"))
        out.append(
            f"Code cell {c['index'] + 1} (starting `{safe_text(first, 60)}`) raised {safe_text(what, 300)}. "
            "The grader runs every code cell in order; an error outside an exercise costs no points by "
            "itself, but what the cell should have defined is then missing."
        )
    return out
