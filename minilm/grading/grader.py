"""Batch grading: a folder of notebooks -> gradebook.csv + one feedback file per student (any set).

For each student the grader draws fresh inputs from (seed, student, exercise), runs the reference
solution on them in this process, has a sandboxed child (minilm.grading.sandbox) run the submission
and return its values as data, and compares. Nothing the child does can change a verdict: it only
hands back data, which is decoded and compared here. See docs/instructors.md.
"""

from __future__ import annotations

import copy
import ctypes
import datetime as dt
import json
import os
import queue
import random
import secrets
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .authoring import find_solutions_dir, load_reference, read_notebook
from .checker import params_of
from .compare import decode, encode
from .gradebook import load_rows, merge, write_outputs
from .isolation import PR_SET_DUMPABLE, UID_UNREADABLE, namespaces_available, needed_paths
from .lms import Found, collect, parse_late_rule, stamp
from .sandbox import LEVELS, wall_limits
from .sets import get_set
from .spec import ExerciseSet
from .submission import Submission, handed_out_cells, read_submission, untouched
from .verdict import GradeOptions, Row, fmt_points, safe_text, verdict
from .workfolder import remove_tree
from .zygote import Zygote

UID_BASE = 1_900_000_000  # child uids (as root): UID_BASE + 64 * (pid % 1000) + job slot
# imported by the sandbox's test notebook; the first three are pure Python and not loaded in advance
PROBE_MODULES = ("statistics", "ftplib", "xml.etree.ElementTree", "numpy", "torch.nn.functional",
                 "matplotlib.pyplot", "minilm.models", "minilm.training")
CONTAINER_HELP = (
    "In a container, give it what namespaces need: docker run --cap-add SYS_ADMIN --security-opt "
    "seccomp=unconfined --security-opt apparmor=unconfined ... (docs/instructors.md, section 5)"
)


def _readable_by_others(path: str) -> bool:
    """Whether a user other than the owner may reach `path` (o+x on every folder, o+r at the end)."""
    parts = Path(path).resolve().parts
    for i in range(1, len(parts) + 1):
        try:
            mode = os.stat(Path(*parts[:i])).st_mode
        except OSError:
            return False
        if not mode & (0o004 if i == len(parts) else 0o001):
            return False
    return True


def parse_results(data: bytes) -> dict | None:
    """The child's results (untrusted bytes) as a dict, or None when they cannot be read."""
    try:
        results = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError, MemoryError):
        return None
    return results if isinstance(results, dict) else None


class Grader:
    """Grades submissions of one exercise set; `grade_folder` is the whole batch."""

    def __init__(self, set_name: str, out_dir: str | Path, options: GradeOptions) -> None:
        self.set: ExerciseSet = get_set(set_name)
        self.opts = options
        self.out = Path(out_dir).resolve()
        self.solutions = find_solutions_dir(options.solutions, self.set.name)
        self.reference = load_reference(self.set.name, self.solutions)  # stays in this process
        self.params = {ex.id: params_of(self.reference[ex.id]) for ex in self.set.exercises}
        self.seed = options.seed if options.seed is not None else self._previous_seed()
        self.late_rule = parse_late_rule(options.deadline, options.late_penalty)
        self.previous = [] if options.fresh else load_rows(self.out, self.set.name)  # kept unless re-graded
        self.handed_out = handed_out_cells(read_notebook(self.solutions / f"{self.set.name}.ipynb"),
                                           self.solutions.parent / "exercises" / f"{self.set.name}.ipynb")
        self.level = "not started"
        self.error = ""
        self.merge = None  # what the run did to the gradebook (gradebook.Merge), once written
        self.not_graded: list[str] = []  # students a stopped run did not reach
        self.written: dict[str, Path] = {}  # the files written (gradebook.write_outputs)

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
            # as bytes: a file name that is not UTF-8 seeds too (same seeds as the text for the others)
            ex.id: ex.grading(random.Random(f"{self.seed}:{student}:{ex.id}".encode("utf-8", "surrogateescape")))
            for ex in self.set.exercises
        }

    def _expected(self, inputs: dict[str, list[tuple]]) -> dict[str, list[Any]]:
        out = {}
        for ex in self.set.exercises:
            ref = self.reference[ex.id]
            out[ex.id] = [decode(encode(ex.call(ref, *copy.deepcopy(args)))) for args in inputs[ex.id]]
        return out

    def run_sandboxed(self, cells: list[str], exercises: list[dict], zygote: Zygote, slot: int) -> tuple[dict, dict | None]:
        """Run `cells` and the `exercises` calls in a sandboxed child: (reply, results or None)."""
        work = Path(tempfile.mkdtemp(prefix="s-", dir=self.workroot))
        uid = self.uid_base + slot if os.geteuid() == 0 else None
        try:
            job = {"set": self.set.name, "cells": cells, "exercises": exercises}
            (work / "job.json").write_text(json.dumps(job), encoding="utf-8")
            request = {
                "workdir": str(work),
                "uid": uid,
                "hide": [str(self.submissions_dir.resolve()), *self._private_paths()],
                "memory_mb": self.opts.memory_mb,
                "timeout": self.opts.timeout,
                "cell_timeout": self.opts.cell_timeout,
                "require_namespaces": not self.opts.allow_unsandboxed,
            }
            wall = wall_limits(self.opts.cell_timeout, self.opts.timeout)[1]
            reply, data = zygote.run(request, timeout=wall + 60)
        finally:
            remove_tree(work)
        results = parse_results(data) if data else None
        if data and results is None:
            reply["results_problem"] = "its results could not be read (not UTF-8, not JSON, or nested too deeply)"
        return reply, results

    def grade_one(self, sub: Submission, zygote: Zygote, slot: int) -> Row:
        """Grade one parsed submission in a sandboxed child."""
        zero = {ex.id: 0.0 for ex in self.set.exercises}
        if sub.cells is None:
            why = f"Your file is not a notebook we can read: {safe_text(sub.problem, 300)}."
            return Row(sub.student, "invalid notebook", zero, 0.0, 0.0, [why])
        if untouched(sub, self.handed_out):
            why = "Not attempted: the notebook holds only the code cells handed out (or none), so nothing was run."
            return Row(sub.student, "not attempted", zero, 0.0, 0.0, [why], "",
                       {ex.id: "not attempted" for ex in self.set.exercises})
        inputs = self._inputs(sub.student)
        expected = self._expected(inputs)
        exercises = [{"id": ex.id, "args": [encode(a) for a in inputs[ex.id]]} for ex in self.set.exercises]
        reply, results = self.run_sandboxed(sub.cells, exercises, zygote, slot)
        return verdict(self.set, self.opts, sub, reply, results, expected, inputs, self.params)

    def _private_paths(self) -> list[str]:
        """What the child must not see: solutions, the repository's git data, output, --hide."""
        paths = [self.solutions, self.out, *map(Path, self.opts.hide)]
        git = self.solutions.parent / ".git"
        if git.is_file():  # a worktree or submodule: "gitdir: <path>" points at the real data
            target = git.read_text().partition("gitdir:")[2].strip()
            gitdir = (git.parent / target).resolve()
            paths += [gitdir, gitdir.parent.parent] if gitdir.parent.name == "worktrees" else [gitdir]
        paths.append(git)
        return [str(Path(p).resolve()) for p in paths if Path(p).exists()]

    # ------------------------------------------------------------------ the batch
    def grade_folder(self, submissions_dir: str | Path, log: Any = sys.stderr) -> list[Row]:
        """Grade every submission in `submissions_dir` into the gradebook in --out (minilm.grading.gradebook):
        their rows replace those students' rows of earlier runs, every other row stays. A run that stops
        writes the rows it graded and no row for the rest: never a 0 that is not a grade."""
        self.submissions_dir = Path(submissions_dir)
        entries = collect(self.submissions_dir, self.set.name)
        self.out.mkdir(parents=True, exist_ok=True)
        os.chmod(self.out, 0o700)
        self._check_uid_level()
        self.workroot = Path(tempfile.mkdtemp(prefix="minilm-grade-"))
        os.chmod(self.workroot, 0o711)
        self.uid_base = UID_BASE + 64 * (os.getpid() % 1000)
        jobs = max(1, min(self.opts.jobs, len(entries) or 1))
        zygotes: queue.Queue = queue.Queue()
        rows: dict[int, Row] = {}
        try:
            for slot in range(jobs):
                zygotes.put((slot, Zygote(self.out / "sandbox.log", self.workroot)))
            self.level = self._probe(zygotes)
            if self.level.startswith("process"):  # same uid as the child: no /proc/<pid>/mem for it
                ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
            if self.level.startswith("process"):
                print(f"warning: at the 'process' level submissions can read every file you can, {self.solutions} "
                      "included: grade only notebooks you trust", file=log)
            elif self.level.startswith("uid ") and _readable_by_others(str(self.solutions)):
                print(f"warning: at the 'uid' level submissions can read {self.solutions}: make it readable by "
                      "root only (chmod -R go-rwx)", file=log)
            print(
                f"grading {len(entries)} submissions of {self.set.name} with {jobs} job(s); seed {self.seed}; "
                f"isolation: {self.level}",
                file=log,
            )
            with ThreadPoolExecutor(jobs) as pool:
                work = lambda entry: self._grade_entry(entry, zygotes)
                for i, row in enumerate(pool.map(work, entries)):
                    rows[i] = row
                    print(
                        f"[{i + 1}/{len(entries)}] {safe_text(row.student, 100)}: {row.status}, "
                        f"{fmt_points(row.total)}/{fmt_points(self.set.max_points)} ({row.seconds:.2f} s)",
                        file=log,
                    )
        except Exception as e:
            self.error = f"{type(e).__name__}: {e}"
            raise
        finally:
            while not zygotes.empty():
                zygotes.get()[1].close()
            remove_tree(self.workroot)
            self.not_graded = [f.student for i, f in enumerate(entries) if i not in rows]
            if rows:  # a stopped run: what it graded, and nothing for the rest (they keep earlier rows)
                self._write([rows[i] for i in sorted(rows)])
        return [rows[i] for i in sorted(rows)]

    def _check_uid_level(self) -> None:
        """As root without namespaces (the 'uid' level), stop at once when the children's own uids
        could not read Python (the sandbox's child checks it too, after the zygotes' start)."""
        if not (self.opts.allow_unsandboxed and os.geteuid() == 0) or namespaces_available():
            return
        closed = [p for p in needed_paths() if not _readable_by_others(p)]
        if closed:
            uid = f"from {UID_BASE + 64 * (os.getpid() % 1000)}"
            self.error = UID_UNREADABLE.format(uid=uid, paths=", ".join(closed))
            raise RuntimeError(f"the grading sandbox cannot run notebooks here: {self.error}. Nothing was graded.")

    def _grade_entry(self, found: Found, zygotes: queue.Queue) -> Row:
        return stamp(self._grade_found(found, zygotes), found, self.submissions_dir, self.late_rule)

    def _grade_found(self, found: Found, zygotes: queue.Queue) -> Row:
        entry = (found.student, found.path)
        slot, zygote = zygotes.get()
        try:
            sub = read_submission(*entry)
            sub.notes[:0] = found.notes
            error: Exception | None = None
            for attempt in range(2):
                try:
                    return self.grade_one(sub, zygote, slot)
                except Exception as e:  # noqa: BLE001 - never lose a student
                    error = e
                    if zygote.alive() or attempt:
                        break
                    zygote.close()  # the sandbox itself died: start a new one, retry once
                    zygote = Zygote(self.out / "sandbox.log", self.workroot)
            msg = f"The grader failed on this submission ({type(error).__name__}: {safe_text(error, 300)})."
            return Row(entry[0], "grader error", {ex.id: 0.0 for ex in self.set.exercises}, 0.0, 0.0, [msg])
        finally:
            zygotes.put((slot, zygote))

    def _probe(self, zygotes: queue.Queue) -> str:
        """Run a small notebook that imports what submissions use, to learn the isolation level and
        to stop (with the cause) if the sandbox cannot run notebooks here: never zeros for all."""
        slot, zygote = zygotes.get()
        hidden = [str(self.solutions)]
        cells = [
            f"import importlib\nfor name in {PROBE_MODULES!r}:\n    importlib.import_module(name)",
            f"import os\nfor p in {hidden!r}:\n    if os.path.exists(p):\n        raise RuntimeError(p)",
        ]
        try:
            reply, results = self.run_sandboxed(cells, [], zygote, slot)
        finally:
            zygotes.put((slot, zygote))
        level = str(reply.get("level") or "")
        unsandboxed = not level.startswith(("uid+namespaces", "namespaces"))
        if reply.get("setup_error") or not level:
            cause = safe_text(reply.get("setup_error") or "the sandbox never reported back", 1500)
            if reply.get("no_namespaces"):
                raise RuntimeError(self._no_sandbox_message(cause))
            raise RuntimeError(f"the grading sandbox could not prepare a child here: {cause}. Nothing was graded.")
        errors = [c for c in (results or {}).get("cells", []) if isinstance(c, dict)]
        if unsandboxed and errors and errors[-1].get("index") == 1:
            errors = errors[:-1]  # no namespaces: the solutions are visible by design (--allow-unsandboxed)
        if errors or not (results or {}).get("done") or reply.get("exit") != 0:
            what = "; ".join(safe_text(c.get("error"), 300) for c in errors) or (
                f"the test notebook did not finish (exit {reply.get('exit')}, {reply.get('results_problem') or 'no problem reported'})"
            )
            if any(c.get("index") == 1 for c in errors):
                what = (f"the sandbox shows the solutions folder {self.solutions} to submissions: keep it "
                        "outside the Python installation, the virtual environment and the minilm package")
            closed = [p for p in needed_paths() if not _readable_by_others(p)]
            if level.startswith("uid") and closed:
                what += (f"; at the 'uid' level the child runs under a uid of its own, and other users cannot "
                         f"read {', '.join(closed)}: install Python and the venv where everyone may read them")
            raise RuntimeError(
                f"the grading sandbox cannot run notebooks here: {what}. The sandbox shows submissions only "
                f"the system folders and these: {', '.join(needed_paths())}. Nothing was graded."
            )
        if unsandboxed and not self.opts.allow_unsandboxed:  # pragma: no cover - refused earlier
            raise RuntimeError(self._no_sandbox_message(level))
        return level

    def _no_sandbox_message(self, cause: str) -> str:
        """For the teacher: why there is no sandbox here and what to do about it."""
        if os.geteuid() == 0:
            how = (f"You run the grader as root, but namespaces are not allowed here ({cause}): in a "
                   f"container this means it lacks CAP_SYS_ADMIN or a seccomp/AppArmor profile blocks "
                   f"unshare/mount. {CONTAINER_HELP}. Or pass --allow-unsandboxed to grade at the weaker "
                   "'uid' level (each submission under a uid of its own, but it can read every "
                   "world-readable file, so make solutions/ readable by root only: chmod -R go-rwx solutions).")
        else:
            how = (f"You run the grader as a normal user, but this system refuses unprivileged user "
                   f"namespaces ({cause}). Run it as root (a container or VM), or enable them "
                   "(sysctl kernel.unprivileged_userns_clone=1, or on Ubuntu 24.04+ "
                   "kernel.apparmor_restrict_unprivileged_userns=0), or pass --allow-unsandboxed to grade at "
                   "the weakest 'process' level: submissions can then read every file you can read.")
        return f"the grading sandbox cannot isolate submissions here. {how}"

    def _write(self, rows: list[Row]) -> None:
        everyone, self.merge = merge(self.previous, rows)
        runs = []
        with_runs = self.out / "grading.json"
        if self.previous and with_runs.exists():
            try:
                runs = list(json.loads(with_runs.read_text()).get("runs", []))
            except (OSError, ValueError, AttributeError):
                runs = []
        runs.append({"graded_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                     "students": [r.student for r in rows], "replaced": len(self.merge.replaced),
                     "stopped": self.error or ("interrupted" if self.not_graded else "")})
        manifest = {
            "set": self.set.name,
            "seed": self.seed,
            "isolation": self.level,
            "isolation_meaning": LEVELS.get(self.level.split(" ")[0], ""),
            "max_points": self.set.max_points,
            "options": {k: v for k, v in asdict(self.opts).items() if k != "seed"},
            "assignment": self.opts.assignment,
            "graded_at": runs[-1]["graded_at"],
            "runs": runs[-50:],
        }
        if self.error or self.not_graded:
            manifest["error"] = self.error or "interrupted"
            manifest["not_graded"] = self.not_graded
        self.written = write_outputs(self.out, self.set, everyone, manifest)


def grade(
    set_name: str,
    submissions_dir: str | Path,
    out_dir: str | Path,
    options: GradeOptions | None = None,
    log: Any = sys.stderr,
) -> list[Row]:
    """Grade a folder of notebooks into out_dir/gradebook.csv, out_dir/feedback/, out_dir/grading.json."""
    return Grader(set_name, out_dir, options or GradeOptions()).grade_folder(submissions_dir, log)

