"""Inside the sandboxed child: run the submission's code cells, call its exercises, write values as data.

Reads `job.json` from its work folder ({"set", "cells", "exercises": [{"id", "args"}]}), runs every
code cell in order in one namespace (a cell that fails is recorded and the next one runs; `check()`
does nothing here), then calls each exercise on the grading inputs and writes `results.json`
({"cells": [...], "exercises": {id: ...}, "done": bool}) after each exercise. Nothing here judges
anything: the grader decodes and compares the values in its own process.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import os
import random
import re
import shutil
import signal
import traceback
import types
from typing import Any

MAX_OUTPUT = 64 * 1024  # characters of the submission's printed output kept (the rest is counted)


class CellTimeout(BaseException):
    """Raised by the per-cell (or per-exercise) timer."""


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


def _kind(exc: BaseException) -> str:
    if isinstance(exc, CellTimeout):
        return "timeout"
    if isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError)
        and re.search(
            r"can't allocate memory|not enough memory|out of memory", str(exc), re.IGNORECASE
        )
    ):
        return "memory"
    if isinstance(exc, NotImplementedError):
        return "todo"
    return "error"


def _describe(exc: BaseException, filename_prefix: str) -> str:
    msg = str(exc) or "(no message)"
    msg = msg if len(msg) <= 300 else msg[:297] + "..."
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(filename_prefix)
    ]
    where = f" (line {frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return f"{type(exc).__name__}: {msg}{where}"


def _alarm(seconds: float) -> None:
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.001) if seconds > 0 else 0)


def _on_alarm(signum: int, frame: Any) -> None:
    raise CellTimeout("time limit reached")


def run_job(workdir: str, cell_timeout: float, own_uid: bool = False) -> None:
    """Run one submission (called in the sandboxed child; results go to workdir/results.json)."""
    import numpy as np
    import torch

    from . import checker as check_module
    from .compare import NotData, decode, encode
    from .sets import get_set

    # kept before student code runs (patching them later changes nothing here)
    _open, _dumps, _replace, _unlink = builtins.open, json.dumps, os.replace, os.unlink
    _os_open, _fdopen, _kill = os.open, os.fdopen, os.kill
    with _open(os.path.join(workdir, "job.json"), encoding="utf-8") as f:
        job = json.load(f)
    exercise_set = get_set(job["set"])
    check_module.GRADING_CHILD = True
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    out = BoundedOutput()
    results: dict[str, Any] = {"cells": [], "exercises": {}, "done": False, "output_chars": 0}

    def save() -> None:
        results["output_chars"] = out.total
        tmp = os.path.join(workdir, "results.json.tmp")
        with contextlib.suppress(FileNotFoundError):
            _unlink(tmp)  # whatever student code left there (a symlink, say) is not followed
        fd = _os_open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with _fdopen(fd, "w", encoding="utf-8") as f:
            f.write(_dumps(results))
        final = os.path.join(workdir, "results.json")
        if os.path.isdir(final) and not os.path.islink(final):
            shutil.rmtree(final, ignore_errors=True)
        _replace(tmp, final)

    import sys

    sys.stdout = sys.stderr = out
    signal.signal(signal.SIGALRM, _on_alarm)
    main = types.ModuleType("__main__")  # a real module, as in Jupyter (dataclasses look it up)
    sys.modules["__main__"] = main
    namespace: dict[str, Any] = main.__dict__
    namespace.update(__builtins__=builtins, display=lambda *a, **k: None)
    for i, source in enumerate(job["cells"]):
        try:
            code = compile(source, f"<cell {i}>", "exec")
            _alarm(cell_timeout)
            try:
                exec(code, namespace)  # noqa: S102 - student code, inside the sandbox
            finally:
                _alarm(0)
        except BaseException as e:  # noqa: BLE001 - every failure of student code is recorded
            results["cells"].append({"index": i, "kind": _kind(e), "error": _describe(e, "<cell")})
    save()
    for item in job["exercises"]:
        ex_id = item["id"]
        exercise = exercise_set.get(ex_id)
        obj = namespace.get(ex_id)
        if obj is None:
            results["exercises"][ex_id] = {"missing": True}
            save()
            continue
        cases: list[dict] = []
        results["exercises"][ex_id] = {"missing": False, "cases": cases}
        deadline_left = cell_timeout
        for enc_args in item["args"]:
            try:
                args = decode(enc_args)
                _alarm(deadline_left)
                try:
                    value = exercise.call(obj, *args)
                finally:
                    left = signal.getitimer(signal.ITIMER_REAL)[0]
                    _alarm(0)
                    deadline_left = left if left > 0 else 0.001
                cases.append({"value": encode(value)})
            except NotData as e:
                cases.append({"kind": "error", "error": f"{e}"})
            except BaseException as e:  # noqa: BLE001
                cases.append({"kind": _kind(e), "error": _describe(e, "<cell")})
                if isinstance(e, CellTimeout):
                    break  # the time for this exercise is spent
        save()
    if own_uid:  # stop every other process of this uid (a detached forger, say), then write
        with contextlib.suppress(OSError):
            _kill(-1, signal.SIGKILL)  # the uid is ours alone; kill(-1) spares the caller
    results["done"] = True
    save()
