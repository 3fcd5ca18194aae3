"""Batch grading: a folder of notebooks -> gradebook.csv + one feedback file per student (any set).

For each student the grader draws fresh inputs from (seed, student, exercise), runs the reference
solution on them in this process, has a sandboxed child (minilm.grading.sandbox) run the submission
and return its values as data, and compares. Nothing the child does can change a verdict: it only
hands back data, which is decoded and compared here. See docs/instructors.md.
"""

from __future__ import annotations

import copy
import csv
import datetime as dt
import json
import os
import queue
import random
import secrets
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .authoring import find_solutions_dir, load_reference
from .compare import NotData, decode, encode, same
from .sandbox import LEVELS, Zygote
from .sets import get_set
from .spec import ExerciseSet
from .submission import Submission, find_submissions, read_submission

STATUSES = ("ok", "missing exercise", "crashed", "memory", "timeout", "invalid notebook", "grader error")
UID_BASE = 1_900_000_000  # child uids (as root): UID_BASE + 64 * (pid % 1000) + job slot
MAX_RESULTS_BYTES = 64 << 20


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

    student: str
    status: str
    points: dict[str, float]
    total: float
    seconds: float
    feedback: list[str] = field(default_factory=list)
    level: str = ""  # isolation level the child reached


def _fmt(x: float) -> str:
    return f"{x:g}"


def _short(x: Any, limit: int = 200) -> str:
    s = repr(x)
    return s if len(s) <= limit else s[: limit - 3] + "..."


class Grader:
    """Grades submissions of one exercise set; `grade_folder` is the whole batch."""

    def __init__(self, set_name: str, out_dir: str | Path, options: GradeOptions) -> None:
        self.set: ExerciseSet = get_set(set_name)
        self.opts = options
        self.out = Path(out_dir).resolve()
        self.solutions = find_solutions_dir(options.solutions)
        self.reference = load_reference(self.set.name, self.solutions)  # stays in this process
        self.seed = options.seed if options.seed is not None else self._previous_seed()
        self.level = "not started"

    def _previous_seed(self) -> int:
        manifest = self.out / "grading.json"
        if manifest.exists():
            try:
                old = json.loads(manifest.read_text())
                if old.get("set") == self.set.name and isinstance(old.get("seed"), int):
                    return old["seed"]
            except (OSError, ValueError):
                pass
        return secrets.randbelow(2**31)

    # ------------------------------------------------------------------ one student
    def _inputs(self, student: str) -> dict[str, list[tuple]]:
        return {ex.id: ex.grading(random.Random(f"{self.seed}:{student}:{ex.id}")) for ex in self.set.exercises}

    def _expected(self, inputs: dict[str, list[tuple]]) -> dict[str, list[Any]]:
        out = {}
        for ex in self.set.exercises:
            ref = self.reference[ex.id]
            out[ex.id] = [decode(encode(ex.call(ref, *copy.deepcopy(args)))) for args in inputs[ex.id]]
        return out

    def grade_one(self, sub: Submission, zygote: Zygote, slot: int, submissions_dir: Path) -> Row:
        """Grade one parsed submission in a sandboxed child."""
        zero = {ex.id: 0.0 for ex in self.set.exercises}
        if sub.cells is None:
            return Row(sub.student, "invalid notebook", zero, 0.0, 0.0, [f"Your file is not a notebook we can read: {sub.problem}."])
        inputs = self._inputs(sub.student)
        expected = self._expected(inputs)
        work = Path(tempfile.mkdtemp(prefix="s-", dir=self.workroot))
        try:
            job = {"set": self.set.name, "cells": sub.cells,
                   "exercises": [{"id": ex.id, "args": [encode(a) for a in inputs[ex.id]]} for ex in self.set.exercises]}
            (work / "job.json").write_text(json.dumps(job), encoding="utf-8")
            uid = self.uid_base + slot if os.geteuid() == 0 else None
            if uid is not None:
                os.chown(work, uid, uid)
                os.chmod(work, 0o700)
                os.chmod(work / "job.json", 0o644)
            hide = [str(self.solutions), str(submissions_dir.resolve()), str(self.out), *self.opts.hide]
            git = self.solutions.parent / ".git"
            hide += [str(git)] if git.exists() else []
            reply = zygote.run({"workdir": str(work), "uid": uid, "hide": hide, "memory_mb": self.opts.memory_mb,
                                "timeout": self.opts.timeout, "cell_timeout": self.opts.cell_timeout,
                                "require_namespaces": not self.opts.allow_unsandboxed})
            results = self._read_results(work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return self._verdict(sub, reply, results, expected, inputs)

    @staticmethod
    def _read_results(work: Path) -> dict | None:
        try:
            fd = os.open(work / "results.json", os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as f:
                data = f.read(MAX_RESULTS_BYTES + 1)
            if len(data) > MAX_RESULTS_BYTES:
                return None
            results = json.loads(data.decode("utf-8"))
            return results if isinstance(results, dict) else None
        except (OSError, ValueError):
            return None

    def _verdict(self, sub: Submission, reply: dict, results: dict | None, expected: dict, inputs: dict) -> Row:
        fb = [f"Note: {n}." for n in sub.notes]
        points = {ex.id: 0.0 for ex in self.set.exercises}
        if reply.get("setup_error"):
            return Row(sub.student, "grader error", points, 0.0, reply["seconds"],
                       [f"The sandbox could not start ({reply['setup_error']}); ask your instructor to re-run."])
        results = results or {}
        cells = results.get("cells") if isinstance(results.get("cells"), list) else []
        kinds = {c.get("kind") for c in cells if isinstance(c, dict)}
        exercises = results.get("exercises") if isinstance(results.get("exercises"), dict) else {}
        missing = False
        for ex in self.set.exercises:
            got = exercises.get(ex.id)
            if not isinstance(got, dict):
                fb.append(f"{ex.id}: 0/{_fmt(ex.points)} - not graded (the run ended before this exercise).")
                continue
            if got.get("missing") is True:
                missing = True
                fb.append(f"{ex.id}: 0/{_fmt(ex.points)} - missing: no function or class named {ex.id} "
                          "was defined (renamed or deleted cell?).")
                continue
            cases = got.get("cases") if isinstance(got.get("cases"), list) else []
            n, passed, first = len(expected[ex.id]), 0, ""
            for i, want in enumerate(expected[ex.id]):
                case = cases[i] if i < len(cases) and isinstance(cases[i], dict) else {"kind": "error", "error": "no result"}
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
            line = f"{ex.id}: {_fmt(points[ex.id])}/{_fmt(ex.points)} - {passed} of {n} grading cases passed"
            fb.append(line + (f"; {first}" if first else "."))
        for c in cells:
            if isinstance(c, dict) and c.get("kind") != "todo" and isinstance(c.get("index"), int) \
                    and 0 <= c["index"] < len(sub.cells or []):
                first_line = next((ln for ln in sub.cells[c["index"]].splitlines() if ln.strip()), "")[:60]
                fb.append(f"Code cell {c['index'] + 1} (starting `{first_line}`) raised {str(c.get('error'))[:300]}")
        if isinstance(results.get("output_chars"), int) and results["output_chars"] > 0:
            fb.append(f"Your notebook printed {results['output_chars']:,} characters while graded "
                      "(not shown, not part of the grade).")
        exit_code = reply.get("exit")
        if reply.get("timed_out") or "timeout" in kinds:
            status = "timeout"
            fb.insert(0, "Time limit reached: " + ("the whole run was stopped after "
                      f"{_fmt(self.opts.timeout)} s." if reply.get("timed_out") else
                      f"a cell or an exercise ran longer than {_fmt(self.opts.cell_timeout)} s."))
        elif "memory" in kinds:
            status = "memory"
            fb.insert(0, f"Memory limit reached ({self.opts.memory_mb} MB).")
        elif not results.get("done"):
            status = "crashed"
            fb.insert(0, f"Your notebook stopped the grading process before it finished (exit code {exit_code}).")
        elif missing:
            status = "missing exercise"
        else:
            status = "ok"
        total = sum(points.values())
        return Row(sub.student, status, points, total, round(float(reply.get("seconds", 0.0)), 3), fb,
                   str(reply.get("level") or ""))

    # ------------------------------------------------------------------ the batch
    def grade_folder(self, submissions_dir: str | Path, log: Any = sys.stderr) -> list[Row]:
        """Grade every submission in `submissions_dir`; write the gradebook and feedback files."""
        submissions_dir = Path(submissions_dir)
        entries = find_submissions(submissions_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        os.chmod(self.out, 0o700)
        self.workroot = Path(tempfile.mkdtemp(prefix="minilm-grade-"))
        os.chmod(self.workroot, 0o711)
        self.uid_base = UID_BASE + 64 * (os.getpid() % 1000)
        jobs = max(1, min(self.opts.jobs, len(entries) or 1))
        zygotes: queue.Queue = queue.Queue()
        rows: list[Row] = []
        try:
            for slot in range(jobs):
                zygotes.put((slot, Zygote(self.out / "sandbox.log", self.workroot)))
            self.level = self._probe(zygotes, submissions_dir)
            print(f"grading {len(entries)} submissions of {self.set.name} with {jobs} job(s); seed {self.seed}; "
                  f"isolation: {self.level}", file=log)

            def work(entry: tuple[str, Path]) -> Row:
                slot, zygote = zygotes.get()
                try:
                    sub = read_submission(*entry)
                    try:
                        return self.grade_one(sub, zygote, slot, submissions_dir)
                    except Exception as e:  # noqa: BLE001 - never lose a student
                        return Row(sub.student, "grader error", {ex.id: 0.0 for ex in self.set.exercises}, 0.0, 0.0,
                                   [f"The grader failed on this submission ({type(e).__name__}: {e}); re-run it."])
                finally:
                    zygotes.put((slot, zygote))

            with ThreadPoolExecutor(jobs) as pool:
                for i, row in enumerate(pool.map(work, entries), 1):
                    rows.append(row)
                    print(f"[{i}/{len(entries)}] {row.student}: {row.status}, {_fmt(row.total)}/"
                          f"{_fmt(self.set.max_points)} ({row.seconds:.2f} s)", file=log)
        finally:
            while not zygotes.empty():
                zygotes.get()[1].close()
            shutil.rmtree(self.workroot, ignore_errors=True)
        self._write(rows)
        return rows

    def _probe(self, zygotes: queue.Queue, submissions_dir: Path) -> str:
        """Run an empty submission to learn (and enforce) the isolation level."""
        slot, zygote = zygotes.get()
        try:
            probe = Submission("probe", Path("probe.ipynb"), cells=[])
            self.workroot.mkdir(exist_ok=True)
            row = self.grade_one(probe, zygote, slot, submissions_dir)
        finally:
            zygotes.put((slot, zygote))
        level = row.level
        if row.status == "grader error" or not level:
            raise RuntimeError(f"the grading sandbox does not work here: {' '.join(row.feedback)}")
        if not level.startswith(("uid+namespaces", "namespaces")) and not self.opts.allow_unsandboxed:
            raise RuntimeError(f"no namespaces here ({level}): submissions could read your solutions. "
                               "Re-run with --allow-unsandboxed only if you trust every submission.")
        return level

    def _write(self, rows: list[Row]) -> None:
        ids = [ex.id for ex in self.set.exercises]
        with open(self.out / "gradebook.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["student", "status", *ids, "total", "seconds"])
            for r in sorted(rows, key=lambda r: r.student):
                w.writerow([r.student, r.status, *(_fmt(r.points[i]) for i in ids), _fmt(r.total), f"{r.seconds:.2f}"])
        fb_dir = self.out / "feedback"
        fb_dir.mkdir(exist_ok=True)
        for r in rows:
            head = [f"Set {self.set.name}, student {r.student}", f"Status: {r.status}",
                    f"Score: {_fmt(r.total)} / {_fmt(self.set.max_points)}", ""]
            (fb_dir / f"{r.student}.txt").write_text("\n".join(head + r.feedback) + "\n", encoding="utf-8")
        manifest = {"set": self.set.name, "seed": self.seed, "isolation": self.level,
                    "isolation_meaning": LEVELS.get(self.level.split(" ")[0], ""), "max_points": self.set.max_points,
                    "options": {k: v for k, v in asdict(self.opts).items() if k != "seed"},
                    "students": len(rows), "graded_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "counts": {s: sum(r.status == s for r in rows) for s in STATUSES}}
        (self.out / "grading.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def grade(set_name: str, submissions_dir: str | Path, out_dir: str | Path, options: GradeOptions | None = None,
          log: Any = sys.stderr) -> list[Row]:
    """Grade a folder of notebooks into out_dir/gradebook.csv, out_dir/feedback/, out_dir/grading.json."""
    return Grader(set_name, out_dir, options or GradeOptions()).grade_folder(submissions_dir, log)
