"""The sandbox: a fork server ("zygote") that runs each submission in an isolated child process.

The grader starts one zygote per job slot: a fresh interpreter with a cleaned environment that has
imported torch, numpy and minilm (not the reference solutions, which never leave the grader). For each
submission it forks a child that, before any student code runs:
  - starts a new session (so the whole process group can be killed);
  - enters new mount, network and IPC namespaces and pivots into a fresh root that holds only the
    system folders, the Python installation, the venv and the minilm package (all read-only), a few
    devices, a fresh /tmp and /dev/shm, and its own work folder at /tmp/work: the repository, its
    solutions, any other checkout and every home folder simply do not exist there (no /proc either);
  - (grader run as root) drops to an unprivileged uid of its own, distinct per job slot;
    (not root) the namespaces come from an unprivileged user namespace, nested once more so the
    child cannot unmount what hides the solutions;
  - sets no_new_privs and resource limits (address space, file size, open files, processes, CPU).
The level reached is reported to the zygote over a pipe that is closed before student code runs.
The zygote enforces the total time limit and kills the child's group (and, as root, every process
of the child's uid). Run `python -m minilm.grading.sandbox --serve` only through `Zygote`.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

from .isolation import (
    PR_SET_NO_NEW_PRIVS,
    check_call,
    enter_namespaces,
    kill_uid,
    load_libc,
    needed_paths,
    set_limits,
    vm_bytes,
)

EXPOSE: list[str] = []  # set by serve(): what the child needs to read (see needed_paths)
LEVELS = {
    "uid+namespaces": "separate unprivileged uid + mount/network namespaces (grader run as root)",
    "namespaces": "unprivileged user + mount/network namespaces (grader run as a normal user)",
    "process": "child process with limits only: it can read every file you can read",
}


def _child(req: dict, report_fd: int) -> None:
    """In the forked child: isolate, then run the submission (never returns)."""
    code = 0
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, report_fd)
        os.closerange(report_fd + 1, 65536)
        libc = load_libc()
        as_root = os.geteuid() == 0
        workdir, level = req["workdir"], "process"
        loaded = vm_bytes()  # read now: the isolated file system has no /proc
        try:
            enter_namespaces(libc, req["hide"], workdir, as_root, EXPOSE)
            level = "namespaces"
        except OSError as e:
            if req["require_namespaces"]:
                raise
            os.chdir(workdir)
            level = f"process ({e})"
        uid = req.get("uid")
        if as_root and uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            level = "uid+" + level if level == "namespaces" else level
        check_call(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl")
        set_limits(req["memory_mb"], req["timeout"], as_root and uid is not None, loaded)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file over the limit fails, not the child
        os.environ["HOME"] = os.getcwd()
        os.environ["MPLCONFIGDIR"] = os.getcwd()
        os.write(report_fd, json.dumps({"level": level}).encode())
        os.close(report_fd)
        from .child import run_job  # imported in the zygote already; nothing new is read from disk

        run_job(os.getcwd(), req["cell_timeout"], own_uid=as_root and uid is not None)
    except BaseException as e:  # noqa: BLE001 - a failed set-up is reported, then the child exits
        try:
            os.write(report_fd, json.dumps({"error": f"{type(e).__name__}: {e}"}).encode())
        except OSError:
            pass
        code = 70
        # for whoever debugs the sandbox (the grader never reads it)
        with contextlib.suppress(BaseException), open("_child_error.txt", "w") as f:
            f.write(traceback.format_exc()[-3000:])
    os._exit(code)


def _wait(pid: int, timeout: float) -> tuple[int | None, bool]:
    """Wait for `pid` up to `timeout` seconds: (wait status or None, timed_out)."""
    deadline = time.monotonic() + timeout
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status, False
            left = deadline - time.monotonic()
            if left <= 0:
                return None, True
            if pidfd is not None:
                select.select([pidfd], [], [], left)
            else:
                time.sleep(min(left, 0.005))
    finally:
        if pidfd is not None:
            os.close(pidfd)


def run_one(req: dict) -> dict:
    """In the zygote: fork a child for one submission and wait for it (total time limit)."""
    r, w = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _child(req, w)
    os.close(w)
    status, timed_out = _wait(pid, req["timeout"])
    if timed_out:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
        os.waitpid(pid, 0)
        status = None
    seconds = time.monotonic() - start
    try:
        os.killpg(pid, signal.SIGKILL)  # leftovers in its group
    except OSError:
        pass
    if os.geteuid() == 0 and req.get("uid") is not None:
        kill_uid(req["uid"])
    report = os.read(r, 65536).decode(errors="replace")
    os.close(r)
    info = json.loads(report) if report.startswith("{") else {}
    exit_code = os.waitstatus_to_exitcode(status) if status is not None else None
    return {
        "exit": exit_code,
        "timed_out": timed_out,
        "seconds": seconds,
        "level": info.get("level"),
        "setup_error": info.get("error"),
    }


def serve() -> None:
    """The zygote's loop: one JSON request per line on stdin, one JSON reply per line on stdout."""
    import matplotlib
    import numpy  # noqa: F401 - loaded once here, shared by every child
    import torch  # noqa: F401

    matplotlib.use("Agg")
    import matplotlib.pyplot

    import minilm  # noqa: F401

    from . import authoring, child  # noqa: F401 - authoring pulls nbformat in once
    from .sets import all_sets

    all_sets()
    global EXPOSE
    EXPOSE = needed_paths()
    proto = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # stray prints of imported code must not corrupt the protocol
    proto.write(json.dumps({"ready": True}) + "\n")
    proto.flush()
    for line in sys.stdin:
        try:
            reply = run_one(json.loads(line))
        except Exception as e:  # noqa: BLE001 - report, keep serving
            reply = {
                "exit": None,
                "timed_out": False,
                "seconds": 0.0,
                "level": None,
                "setup_error": f"zygote: {type(e).__name__}: {e}",
            }
        proto.write(json.dumps(reply) + "\n")
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
            [sys.executable, "-m", "minilm.grading.sandbox", "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
            cwd=str(cwd),
            text=True,
        )
        ready = self.proc.stdout.readline()
        if not ready.startswith('{"ready"'):
            raise RuntimeError(f"the grading sandbox did not start (see {log_path})")

    def run(self, request: dict) -> dict:
        """Send one request and wait for its reply."""
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the grading sandbox exited")
        return json.loads(line)

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
