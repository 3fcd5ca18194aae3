"""Inside the sandboxed child: run the submission's code cells, call its exercises, write values as data.

`run_job(job, ...)` gets {"set", "cells", "exercises": [{"id", "args"}]}, runs every code cell in
order in one namespace (a cell that fails is recorded and the next one runs; `check()` does
nothing here; IPython magics arrive as `get_ipython()` calls, answered by a stand-in), then calls
each exercise on the grading inputs, watched for the calls the exercise forbids and for changes
to its inputs, and sends a snapshot of its results ({"cells": [...], "exercises": {id: ...},
"done": bool}) down the results pipe after each exercise (no file: a full disk or a link in the
work folder cannot lose or fake them). Nothing here judges anything: the grader decodes and compares the values in
its own process. Limits are CPU time (a busy loop is stopped however loaded the machine is) plus a
wall-clock backstop for code that waits.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import os
import random
import re
import signal
import struct
import traceback
import types
from typing import Any

MAX_OUTPUT = 64 * 1024  # characters of the submission's printed output kept (the rest is counted)


class CellTimeout(BaseException):
    """Raised by the per-cell (or per-exercise) timers: args[0] is "cpu" or "wall"."""


class BoundedOutput(io.TextIOBase):
    """A stdout/stderr that keeps the first MAX_OUTPUT characters and counts the rest."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.kept = 0
        self.total = 0

    def write(self, s: str) -> int:
        s = str(s)
        self.total += len(s)
        if self.kept < MAX_OUTPUT:
            self.parts.append(s[: MAX_OUTPUT - self.kept])
            self.kept += len(self.parts[-1])
        return len(s)

    def writable(self) -> bool:
        return True


class Shell:
    """What `get_ipython()` returns in the child: magics and shell escapes do nothing, except that
    `%time stmt` and the bodies of `%%time` / `%%capture` run (their code is the student's)."""

    def __init__(self, namespace: dict) -> None:
        self._ns = namespace

    def run_line_magic(self, name: str, line: str, *args: Any, **kwargs: Any) -> None:
        if name == "time" and line.strip():
            exec(compile(line, "<magic>", "exec"), self._ns)  # noqa: S102 - student code

    def run_cell_magic(self, name: str, line: str, cell: str) -> None:
        if name in ("time", "capture"):
            exec(compile(cell, "<cell magic>", "exec"), self._ns)  # noqa: S102 - student code

    def system(self, *args: Any, **kwargs: Any) -> None:
        return None

    def getoutput(self, *args: Any, **kwargs: Any) -> list:
        return []

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def _kind(exc: BaseException) -> str:
    if isinstance(exc, CellTimeout):
        return "timeout"
    if isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError)
        and re.search(r"can't allocate memory|not enough memory|out of memory", str(exc), re.IGNORECASE)
    ):
        return "memory"
    if isinstance(exc, RuntimeError) and "can't start new thread" in str(exc):
        return "threads"
    if isinstance(exc, NotImplementedError):
        return "todo"
    return "error"


def _describe(exc: BaseException, filename_prefix: str) -> str:
    try:
        msg = str(exc) or "(no message)"
    except Exception:  # noqa: BLE001 - a hostile __str__
        msg = "(its message could not be read)"
    msg = msg if len(msg) <= 300 else msg[:297] + "..."
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(filename_prefix)]
    where = f" (line {frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return f"{type(exc).__name__}: {msg}{where}"


def _timers(cpu: float, wall: float) -> None:
    """Arm (or with 0, disarm) the CPU-time and wall-clock timers of a cell or an exercise."""
    signal.setitimer(signal.ITIMER_PROF, max(cpu, 0.001) if cpu > 0 else 0)
    signal.setitimer(signal.ITIMER_REAL, max(wall, 0.001) if wall > 0 else 0)


def _on_prof(signum: int, frame: Any) -> None:
    raise CellTimeout("cpu")


def _on_alarm(signum: int, frame: Any) -> None:
    raise CellTimeout("wall")


def _quiet_refusals(not_allowed: type) -> None:
    """A refusal on another thread is recorded by the grader (the case gets "not allowed"): its
    traceback, which names threads by a counter, is not the submission's output."""
    import sys
    import threading

    thread_hook, unraisable_hook = threading.excepthook, sys.unraisablehook

    def on_thread_error(args: Any) -> None:
        if not isinstance(args.exc_value, not_allowed):
            thread_hook(args)

    def on_unraisable(args: Any) -> None:  # a raw _thread's error comes here
        if not isinstance(args.exc_value, not_allowed):
            unraisable_hook(args)

    threading.excepthook, sys.unraisablehook = on_thread_error, on_unraisable


def run_job(job: dict, results_fd: int, cell_cpu: float, cell_wall: float, kill_others: bool = False) -> None:
    """Run one submission (in the sandboxed child): snapshots of its results go to `results_fd`;
    with `kill_others`, every other process it may signal is killed before the last snapshot."""
    import sys

    import numpy as np
    import torch

    from . import checker as check_module
    from .checker import changed_argument
    from .compare import NotData, decode, encode
    from .copies import index_of, library_modules, scan
    from .forbid import NotAllowed, Watcher, call_watched, explain, resolve
    from .sets import get_set

    # kept before student code runs (patching them later changes nothing here)
    _dumps, _write, _kill, _getitimer, _pack = json.dumps, os.write, os.kill, signal.getitimer, struct.pack
    exercise_set = get_set(job["set"])
    exercises = [(item, exercise_set.get(item["id"])) for item in job["exercises"]]
    banned = {ex.id: resolve(tuple(ex.forbidden)) for _, ex in exercises}
    for b in banned.values():
        index_of(b)  # built in the zygote already: copies of the library's code are looked for
    library = library_modules()  # everything loaded before the submission: not the student's code
    watcher = Watcher()
    watcher.watch_new_threads()
    check_module.GRADING_CHILD = True
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    out = BoundedOutput()
    results: dict[str, Any] = {"cells": [], "exercises": {}, "done": False, "output_chars": 0}

    def save() -> None:
        results["output_chars"] = out.total
        payload = _dumps(results).encode("utf-8", "surrogatepass")
        data = memoryview(_pack(">I", len(payload)) + payload)
        while data:
            data = data[_write(results_fd, data) :]

    sys.stdout = sys.stderr = out
    _quiet_refusals(NotAllowed)
    signal.signal(signal.SIGPROF, _on_prof)
    signal.signal(signal.SIGALRM, _on_alarm)
    main = types.ModuleType("__main__")  # a real module, as in Jupyter (dataclasses look it up)
    sys.modules["__main__"] = main
    namespace: dict[str, Any] = main.__dict__
    shell = Shell(namespace)
    namespace.update(__builtins__=builtins, display=lambda *a, **k: None, get_ipython=lambda: shell)
    for i, source in enumerate(job["cells"]):
        try:
            code = compile(source, f"<cell {i}>", "exec")
            _timers(cell_cpu, cell_wall)
            try:
                exec(code, namespace)  # noqa: S102 - student code, inside the sandbox
            finally:
                _timers(0, 0)
        except BaseException as e:  # noqa: BLE001 - every failure of student code is recorded
            entry = {"index": i, "kind": _kind(e), "error": _describe(e, "<cell")}
            if isinstance(e, CellTimeout):
                entry["limit"] = e.args[0] if e.args else "cpu"
            results["cells"].append(entry)
    save()
    if kill_others:  # no process of the submission may outlive its cells (seccomp refuses new ones)
        with contextlib.suppress(OSError):
            _kill(-1, signal.SIGKILL)  # its own uid or PID namespace: kill(-1) spares the caller
    for item, exercise in exercises:
        obj = namespace.get(exercise.id)
        if obj is None:
            results["exercises"][exercise.id] = {"missing": True}
            save()
            continue
        cases: list[dict] = []
        results["exercises"][exercise.id] = {"missing": False, "cases": cases}
        cpu_left, wall_left = cell_cpu, cell_wall
        _timers(cpu_left, wall_left)
        try:
            copied = scan([obj], index_of(banned[exercise.id]), library)
        except BaseException:  # noqa: BLE001 - a hostile object stopped the walk: look no further
            copied = None
        finally:
            _timers(0, 0)
        if copied:
            cases += [{"kind": "forbidden", "error": explain(copied)} for _ in item["args"]]
            save()
            continue
        for enc_args in item["args"]:
            try:
                args, pristine = decode(enc_args), decode(enc_args)
                _timers(cpu_left, wall_left)
                try:
                    value = call_watched(watcher, banned[exercise.id], exercise.call, obj, *args)
                finally:
                    cpu_left = _getitimer(signal.ITIMER_PROF)[0] or 0.001
                    wall_left = _getitimer(signal.ITIMER_REAL)[0] or 0.001
                    _timers(0, 0)
                case = {"value": encode(value)}
                changed = changed_argument(pristine, args, exercise.may_modify)
                if changed:
                    case = {"kind": "modified", "error": changed}
                cases.append(case)
            except NotData as e:
                cases.append({"kind": "error", "error": f"{e}"})
            except NotAllowed as e:
                cases.append({"kind": "forbidden", "error": str(e.args[0] if e.args else e)})
            except BaseException as e:  # noqa: BLE001
                cases.append({"kind": _kind(e), "error": _describe(e, "<cell")})
                if isinstance(e, CellTimeout):
                    cases[-1]["limit"] = e.args[0] if e.args else "cpu"
                    break  # the time for this exercise is spent
                if cases[-1]["kind"] == "memory":
                    break  # the next cases would run out of memory too, and only use up the time
        save()
    if kill_others:  # a detached process of the submission must not send a later snapshot
        with contextlib.suppress(OSError):
            _kill(-1, signal.SIGKILL)  # its own uid or PID namespace: kill(-1) spares the caller
    results["done"] = True
    save()
