"""Verdicts and outputs of the batch grader: one gradebook row per submission, feedback, the gradebook.

`verdict` turns what the sandboxed child returned (decoded strictly, never trusted) and the reference's
outputs into a status, points and feedback lines; `write_outputs` writes the gradebook files.
"""

from __future__ import annotations

import csv
import json
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .compare import NotData, decode, same
from .spec import ExerciseSet
from .submission import Submission

STATUSES = (
    "ok",
    "missing exercise",
    "crashed",
    "memory",
    "timeout",
    "invalid notebook",
    "grader error",
)


@dataclass
class GradeOptions:
    """Limits and settings of one grading run (the CLI flags of `minilm grade`)."""

    jobs: int = 1  # submissions graded at the same time (one sandbox each)
    cell_timeout: float = 30.0  # seconds per notebook cell, and per exercise for all its cases
    timeout: float = 300.0  # seconds for a whole submission
    memory_mb: int = 2048  # memory a submission may allocate beyond the pre-loaded interpreter
    seed: int | None = None  # None: reuse the seed of a previous run in --out, else draw one
    solutions: str | None = None  # solutions folder (default ./solutions, or the checkout's)
    allow_unsandboxed: bool = False  # grade even when namespaces are unavailable (unsafe)
    hide: list[str] = field(default_factory=list)  # more paths to hide from the child


@dataclass
class Row:
    """One line of the gradebook, plus what the feedback file needs."""

    student: str  # file name without .ipynb
    status: str  # one of STATUSES
    points: dict[str, float]  # exercise id -> points earned
    total: float  # sum of points
    seconds: float  # wall time of the sandboxed run
    feedback: list[str] = field(default_factory=list)  # lines of the student's feedback file
    level: str = ""  # isolation level the child reached


def fmt_points(x: float) -> str:
    """1.0 -> "1", 0.5 -> "0.5"."""
    return f"{x:g}"


def _short(x: Any, limit: int = 200) -> str:
    s = repr(x)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def verdict(
    ex_set: ExerciseSet,
    opts: GradeOptions,
    sub: Submission,
    reply: dict,
    results: dict | None,
    expected: dict,
    inputs: dict,
) -> Row:
    """The gradebook row of one submission: compare its returned values with the reference's."""
    fb = [f"Note: {n}." for n in sub.notes]
    points = {ex.id: 0.0 for ex in ex_set.exercises}
    if reply.get("setup_error"):
        return Row(
            sub.student,
            "grader error",
            points,
            0.0,
            reply["seconds"],
            [
                f"The sandbox could not start ({reply['setup_error']}); ask your instructor to re-run."
            ],
        )
    results = results or {}
    cells = results.get("cells") if isinstance(results.get("cells"), list) else []
    kinds = {c.get("kind") for c in cells if isinstance(c, dict)}
    exercises = results.get("exercises") if isinstance(results.get("exercises"), dict) else {}
    missing = False
    for ex in ex_set.exercises:
        got = exercises.get(ex.id)
        if not isinstance(got, dict):
            fb.append(
                f"{ex.id}: 0/{fmt_points(ex.points)} - not graded (the run ended before this exercise)."
            )
            continue
        if got.get("missing") is True:
            missing = True
            fb.append(
                f"{ex.id}: 0/{fmt_points(ex.points)} - missing: no function or class named {ex.id} "
                "was defined (renamed or deleted cell?)."
            )
            continue
        cases = got.get("cases") if isinstance(got.get("cases"), list) else []
        n, passed, first = len(expected[ex.id]), 0, ""
        for i, want in enumerate(expected[ex.id]):
            case = (
                cases[i]
                if i < len(cases) and isinstance(cases[i], dict)
                else {"kind": "error", "error": "no result"}
            )
            if "value" in case:
                try:
                    ok, why = same(want, decode(case["value"]), ex.rtol, ex.atol)
                except NotData as e:
                    ok, why = False, f"returned malformed data ({e})"
            else:
                ok, why = False, str(case.get("error", "no result"))[:400]
                kinds.add(case.get("kind"))
                if case.get("kind") == "todo":
                    why = "not attempted (raises NotImplementedError)"
            passed += ok
            if not ok and not first:
                first = f"first failure, case {i + 1}: {why}"
                if case.get("kind") != "todo":
                    first += f"\n      input: {_short(inputs[ex.id][i])}"
        points[ex.id] = float(ex.points) if passed == n else 0.0
        line = f"{ex.id}: {fmt_points(points[ex.id])}/{fmt_points(ex.points)} - {passed} of {n} grading cases passed"
        fb.append(line + (f"; {first}" if first else "."))
    for c in cells:
        if (
            isinstance(c, dict)
            and c.get("kind") != "todo"
            and isinstance(c.get("index"), int)
            and 0 <= c["index"] < len(sub.cells or [])
        ):
            first_line = next((ln for ln in sub.cells[c["index"]].splitlines() if ln.strip()), "")[
                :60
            ]
            fb.append(
                f"Code cell {c['index'] + 1} (starting `{first_line}`) raised {str(c.get('error'))[:300]}"
            )
    if isinstance(results.get("output_chars"), int) and results["output_chars"] > 0:
        fb.append(
            f"Your notebook printed {results['output_chars']:,} characters while graded "
            "(not shown, not part of the grade)."
        )
    exit_code = reply.get("exit")
    if exit_code == -signal.SIGXCPU:  # the CPU-time limit (timeout + 5 s) ended it
        reply = {**reply, "timed_out": True}
    if reply.get("timed_out") or "timeout" in kinds:
        status = "timeout"
        fb.insert(
            0,
            "Time limit reached: "
            + (
                f"the whole run was stopped after {fmt_points(opts.timeout)} s."
                if reply.get("timed_out")
                else f"a cell or an exercise ran longer than {fmt_points(opts.cell_timeout)} s."
            ),
        )
    elif "memory" in kinds:
        status = "memory"
        fb.insert(0, f"Memory limit reached ({opts.memory_mb} MB).")
    elif not results.get("done"):
        status = "crashed"
        fb.insert(
            0,
            "Your notebook stopped the grading process before it finished ("
            + (
                f"killed by signal {-exit_code}"
                if isinstance(exit_code, int) and exit_code < 0
                else f"exit code {exit_code}"
            )
            + ").",
        )
    elif missing:
        status = "missing exercise"
    else:
        status = "ok"
    total = sum(points.values())
    return Row(
        sub.student,
        status,
        points,
        total,
        round(float(reply.get("seconds", 0.0)), 3),
        fb,
        str(reply.get("level") or ""),
    )


def write_outputs(out: Path, ex_set: ExerciseSet, rows: list[Row], manifest: dict) -> None:
    """Write gradebook.csv, feedback/<student>.txt and grading.json into `out`."""
    ids = [ex.id for ex in ex_set.exercises]
    with open(out / "gradebook.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student", "status", *ids, "total", "seconds"])
        for r in sorted(rows, key=lambda r: r.student):
            w.writerow(
                [
                    r.student,
                    r.status,
                    *(fmt_points(r.points[i]) for i in ids),
                    fmt_points(r.total),
                    f"{r.seconds:.2f}",
                ]
            )
    fb_dir = out / "feedback"
    fb_dir.mkdir(exist_ok=True)
    for r in rows:
        head = [
            f"Set {ex_set.name}, student {r.student}",
            f"Status: {r.status}",
            f"Score: {fmt_points(r.total)} / {fmt_points(ex_set.max_points)}",
            "",
        ]
        (fb_dir / f"{r.student}.txt").write_text(
            "\n".join(head + r.feedback) + "\n", encoding="utf-8"
        )
    manifest = {**manifest, "counts": {s: sum(r.status == s for r in rows) for s in STATUSES}}
    (out / "grading.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
