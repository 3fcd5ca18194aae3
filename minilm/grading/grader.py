"""Batch grading: a folder of notebooks -> gradebook.csv + one feedback file per student (any set).

For each student the grader draws fresh inputs from (seed, student, exercise), runs the reference
solution on them in this process, has a sandboxed child (minilm.grading.sandbox) run the submission
and return its values as data, and compares. Nothing the child does can change a verdict: it only
hands back data, which is decoded and compared here. See docs/instructors.md.
"""

from __future__ import annotations

import copy
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
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .authoring import find_solutions_dir, load_reference
from .compare import decode, encode
from .isolation import mount_scratch, unmount
from .sandbox import LEVELS, Zygote
from .sets import get_set
from .spec import ExerciseSet
from .submission import Submission, find_submissions, read_submission
from .verdict import GradeOptions, Row, fmt_points, verdict, write_outputs

UID_BASE = 1_900_000_000  # child uids (as root): UID_BASE + 64 * (pid % 1000) + job slot
MAX_RESULTS_BYTES = 64 << 20
SCRATCH_MB = 256  # (root) the work folder is a tmpfs of this size: a child cannot fill the disk


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
        return {
            ex.id: ex.grading(random.Random(f"{self.seed}:{student}:{ex.id}"))
            for ex in self.set.exercises
        }

    def _expected(self, inputs: dict[str, list[tuple]]) -> dict[str, list[Any]]:
        out = {}
        for ex in self.set.exercises:
            ref = self.reference[ex.id]
            out[ex.id] = [
                decode(encode(ex.call(ref, *copy.deepcopy(args)))) for args in inputs[ex.id]
            ]
        return out

    def grade_one(self, sub: Submission, zygote: Zygote, slot: int, submissions_dir: Path) -> Row:
        """Grade one parsed submission in a sandboxed child."""
        zero = {ex.id: 0.0 for ex in self.set.exercises}
        if sub.cells is None:
            return Row(
                sub.student,
                "invalid notebook",
                zero,
                0.0,
                0.0,
                [f"Your file is not a notebook we can read: {sub.problem}."],
            )
        inputs = self._inputs(sub.student)
        expected = self._expected(inputs)
        work = Path(tempfile.mkdtemp(prefix="s-", dir=self.workroot))
        uid = self.uid_base + slot if os.geteuid() == 0 else None
        scratch = uid is not None and mount_scratch(work, SCRATCH_MB, uid)
        try:
            job = {
                "set": self.set.name,
                "cells": sub.cells,
                "exercises": [
                    {"id": ex.id, "args": [encode(a) for a in inputs[ex.id]]}
                    for ex in self.set.exercises
                ],
            }
            (work / "job.json").write_text(json.dumps(job), encoding="utf-8")
            if uid is not None:
                os.chown(work, uid, uid)
                os.chmod(work, 0o700)
                os.chmod(work / "job.json", 0o644)
            hide = [str(submissions_dir.resolve()), *self._private_paths()]
            reply = zygote.run(
                {
                    "workdir": str(work),
                    "uid": uid,
                    "hide": hide,
                    "memory_mb": self.opts.memory_mb,
                    "timeout": self.opts.timeout,
                    "cell_timeout": self.opts.cell_timeout,
                    "require_namespaces": not self.opts.allow_unsandboxed,
                }
            )
            results = self._read_results(work)
        finally:
            if scratch:
                unmount(work)
            shutil.rmtree(work, ignore_errors=True)
        return verdict(self.set, self.opts, sub, reply, results, expected, inputs)

    def _private_paths(self) -> list[str]:
        """What the child must not see: solutions, the repository's git data, output, --hide."""
        paths = [self.solutions, self.out, *map(Path, self.opts.hide)]
        git = self.solutions.parent / ".git"
        if git.is_file():  # a worktree or submodule: "gitdir: <path>" points at the real data
            target = git.read_text().partition("gitdir:")[2].strip()
            gitdir = (git.parent / target).resolve()
            paths += (
                [gitdir, gitdir.parent.parent] if gitdir.parent.name == "worktrees" else [gitdir]
            )
        paths.append(git)
        return [str(Path(p).resolve()) for p in paths if Path(p).exists()]

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
            print(
                f"grading {len(entries)} submissions of {self.set.name} with {jobs} job(s); seed {self.seed}; "
                f"isolation: {self.level}",
                file=log,
            )

            def work(entry: tuple[str, Path]) -> Row:
                slot, zygote = zygotes.get()
                try:
                    sub = read_submission(*entry)
                    for attempt in range(2):
                        try:
                            return self.grade_one(sub, zygote, slot, submissions_dir)
                        except Exception as e:  # noqa: BLE001 - never lose a student
                            error = e
                            if zygote.alive() or attempt:
                                break
                            zygote.close()  # the sandbox itself died: start a new one, retry once
                            zygote = Zygote(self.out / "sandbox.log", self.workroot)
                    return Row(
                        sub.student,
                        "grader error",
                        {ex.id: 0.0 for ex in self.set.exercises},
                        0.0,
                        0.0,
                        [
                            f"The grader failed on this submission ({type(error).__name__}: {error})."
                        ],
                    )
                finally:
                    zygotes.put((slot, zygote))

            with ThreadPoolExecutor(jobs) as pool:
                for i, row in enumerate(pool.map(work, entries), 1):
                    rows.append(row)
                    print(
                        f"[{i}/{len(entries)}] {row.student}: {row.status}, {fmt_points(row.total)}/"
                        f"{fmt_points(self.set.max_points)} ({row.seconds:.2f} s)",
                        file=log,
                    )
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
            raise RuntimeError(
                f"the grading sandbox does not work here: {' '.join(row.feedback)} "
                "(--allow-unsandboxed grades without namespaces: only for submissions you trust)"
            )
        if (
            not level.startswith(("uid+namespaces", "namespaces"))
            and not self.opts.allow_unsandboxed
        ):
            raise RuntimeError(
                f"no namespaces here ({level}): submissions could read your solutions. "
                "Re-run with --allow-unsandboxed only if you trust every submission."
            )
        return level

    def _write(self, rows: list[Row]) -> None:
        manifest = {
            "set": self.set.name,
            "seed": self.seed,
            "isolation": self.level,
            "isolation_meaning": LEVELS.get(self.level.split(" ")[0], ""),
            "max_points": self.set.max_points,
            "options": {k: v for k, v in asdict(self.opts).items() if k != "seed"},
            "students": len(rows),
            "graded_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        write_outputs(self.out, self.set, rows, manifest)


def grade(
    set_name: str,
    submissions_dir: str | Path,
    out_dir: str | Path,
    options: GradeOptions | None = None,
    log: Any = sys.stderr,
) -> list[Row]:
    """Grade a folder of notebooks into out_dir/gradebook.csv, out_dir/feedback/, out_dir/grading.json."""
    return Grader(set_name, out_dir, options or GradeOptions()).grade_folder(submissions_dir, log)
