"""The zygote: a fork server in a fresh interpreter that grades each submission in a sandboxed child.

The grader starts one per job slot (`Zygote(log, cwd)`); it has imported torch, numpy, matplotlib
and minilm (never the reference solutions) with a cleaned environment, has replaced every
forbidden callable of every set by its refusing stand-in (minilm.grading.standins), and for each
request runs `minilm.grading.sandbox.run_one`, which forks the namespaces, the supervisor and the
child. Run `python -m minilm.grading.zygote --serve` only through `Zygote`.
"""

from __future__ import annotations

import ctypes
import json
import os
import select
import subprocess
import sys
from pathlib import Path

from . import sandbox
from .isolation import PR_SET_DUMPABLE, needed_paths


def serve() -> None:
    """The zygote's loop: one JSON request per line on stdin; a JSON reply line and the results."""
    import matplotlib
    import numpy
    import torch  # noqa: F401

    matplotlib.use("Agg")
    import matplotlib.pyplot
    import numpy.random  # noqa: F401 - numpy imports it lazily: the child may not read it later

    import minilm  # noqa: F401

    from . import authoring, child, forbid, standins  # noqa: F401 - authoring pulls nbformat in once
    from .sets import all_sets

    standins.install(forbid.prepare([ex for s in all_sets() for ex in s.exercises]))
    sandbox.EXPOSE[:] = needed_paths()
    ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    proto = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints of imported code must not corrupt the protocol
    proto.write(json.dumps({"ready": True}).encode() + b"\n")
    proto.flush()
    for line in sys.stdin:
        try:
            reply, results = sandbox.run_one(json.loads(line))
        except Exception as e:  # noqa: BLE001 - report, keep serving
            reply, results = {"exit": None, "timed_out": False, "seconds": 0.0, "level": None,
                              "setup_error": f"zygote: {type(e).__name__}: {e}", "results_len": 0}, b""
        proto.write(json.dumps(reply).encode() + b"\n" + results)
        proto.flush()


def clean_env() -> dict[str, str]:
    """The environment of the zygote (and so of every child): nothing of the grader's but these."""
    keep = {k: os.environ[k] for k in ("MINILM_DATA_DIR", "LANG", "LC_ALL") if k in os.environ}
    return {
        **keep,
        "PATH": "/usr/bin:/bin",
        "PYTHONHASHSEED": "0",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MALLOC_ARENA_MAX": "2",  # each new thread does not reserve 64 MB of address space
        "MPLBACKEND": "Agg",
        "MINILM_PRESET": "smoke",
        "MINILM_DEVICE": "cpu",  # grading is on the CPU: same results everywhere
        "CUDA_VISIBLE_DEVICES": "",
        "PYTHONDONTWRITEBYTECODE": "1",
        "USER": "student",
        "LOGNAME": "student",
    }


class Zygote:
    """A fork server in a fresh interpreter; `run(request)` grades one submission in a child of it."""

    def __init__(self, log_path: str | Path, cwd: str | Path) -> None:
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in close()
        env = {**clean_env(), "HOME": str(cwd), "MPLCONFIGDIR": str(Path(cwd) / ".matplotlib")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "minilm.grading.zygote", "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
            cwd=str(cwd),
        )
        ready = self.proc.stdout.readline()
        if not ready.startswith(b'{"ready"'):
            raise RuntimeError(
                f"the grading sandbox did not start: {sys.executable} -m minilm.grading.zygote "
                f"failed (its messages are in {log_path})"
            )

    def run(self, request: dict, timeout: float) -> tuple[dict, bytes]:
        """Send one request; wait (at most `timeout` s) for the reply and the results bytes."""
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.proc.kill()
            raise RuntimeError("the grading sandbox exited or stopped answering")
        reply = json.loads(line)
        results = self.proc.stdout.read(reply.get("results_len", 0))
        if len(results) != reply.get("results_len", 0):
            self.proc.kill()
            raise RuntimeError("the grading sandbox exited while it sent the results")
        return reply, results

    def alive(self) -> bool:
        """True while the zygote process runs."""
        return self.proc.poll() is None

    def close(self) -> None:
        """Stop the zygote."""
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
        self.log.close()


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
