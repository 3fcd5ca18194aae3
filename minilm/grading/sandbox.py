"""The sandbox: a fork server ("zygote") that runs each submission in an isolated child process.

The grader starts one zygote per job slot: a fresh interpreter with a cleaned environment that has
imported torch, numpy and minilm (not the reference solutions, which never leave the grader). For each
submission it forks a child that, before any student code runs:
  - starts a new session (so the whole process group can be killed);
  - enters new mount, network and IPC namespaces: the solutions folder, the repository's .git, the
    submissions and output folders are covered by empty unreadable tmpfs mounts, /tmp and /dev/shm
    are fresh, and the child's own work folder is the only one visible, at /tmp/work;
  - (grader run as root) drops to an unprivileged uid of its own, distinct per job slot;
    (not root) the namespaces come from an unprivileged user namespace, nested once more so the
    child cannot unmount what hides the solutions;
  - sets no_new_privs and resource limits (address space, file size, open files, processes, CPU).
The level reached is reported to the zygote over a pipe that is closed before student code runs.
The zygote enforces the total time limit and kills the child's group (and, as root, every process
of the child's uid). Run `python -m minilm.grading.sandbox --serve` only through `Zygote`.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWIPC = 0x00020000, 0x10000000, 0x40000000, 0x08000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 4096, 16384, 1 << 18
PR_SET_NO_NEW_PRIVS = 38
EXPOSE: list[str] = []  # set by serve(): what the child needs to read (see needed_paths)
FILE_LIMIT = 64 << 20  # bytes any file written by the child may reach
LEVELS = {
    "uid+namespaces": "separate unprivileged uid + mount/network namespaces (grader run as root)",
    "namespaces": "unprivileged user + mount/network namespaces (grader run as a normal user)",
    "process": "child process with limits only: it can read every file you can read",
}


def _libc() -> Any:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    return libc


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _mount(libc: Any, src: str | None, dst: str, fstype: str | None, flags: int, data: str | None) -> None:
    _check(libc.mount(src.encode() if src else None, dst.encode(), fstype.encode() if fstype else None,
                      flags, data.encode() if data else None), f"mount {dst}")


def needed_paths() -> list[str]:
    """Folders the child must be able to read: the Python installation, the venv, sys.path, minilm."""
    import minilm

    paths = {sys.base_prefix, sys.prefix, sys.exec_prefix, str(Path(minilm.__file__).resolve().parent)}
    paths |= {p for p in sys.path if p and os.path.isdir(p)}
    return sorted({str(Path(p).resolve()) for p in paths})


def _blocked_ancestor(path: str) -> str | None:
    """The first folder above `path` that other users cannot traverse (e.g. /root), else None."""
    current = "/"
    for part in Path(path).parts[1:]:
        if not os.stat(current).st_mode & 0o001:
            return current
        current = os.path.join(current, part)
    return None


def _expose(libc: Any, paths: list[str]) -> None:
    """Make `paths` reachable for an unprivileged uid: a blocking folder such as /root becomes an
    empty tmpfs (so its other contents stay hidden) into which only `paths` are bind-mounted."""
    blocked = {p: _blocked_ancestor(p) for p in paths}
    fds = {p: os.open(p, os.O_RDONLY | os.O_DIRECTORY) for p, b in blocked.items() if b}
    for b in sorted({b for b in blocked.values() if b}, key=len):
        _mount(libc, "tmpfs", b, "tmpfs", MS_NOSUID | MS_NODEV, "size=4k,mode=755")
    for p, fd in fds.items():
        os.makedirs(p, exist_ok=True)
        _mount(libc, f"/proc/self/fd/{fd}", p, None, MS_BIND | MS_REC, None)
        os.close(fd)


def _enter_namespaces(libc: Any, hide: list[str], workdir: str, as_root: bool, expose: list[str]) -> None:
    """New mount/net/ipc namespaces; hide `hide`; fresh /tmp with the work folder at /tmp/work."""
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | (0 if as_root else CLONE_NEWUSER)
    _check(libc.unshare(flags), "unshare")
    if not as_root:
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {uid} 1")
        _write("/proc/self/gid_map", f"0 {gid} 1")
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE, None)
    work_fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
    if as_root:
        _expose(libc, expose)
    for p in hide:
        if os.path.isdir(p):
            _mount(libc, "tmpfs", p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=000")
        elif os.path.exists(p):
            _mount(libc, "/dev/null", p, None, MS_BIND, None)
    _mount(libc, "tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=1777")
    if os.path.isdir("/dev/shm"):
        _mount(libc, "tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=1777")
    os.mkdir("/tmp/work", 0o755)
    _mount(libc, f"/proc/self/fd/{work_fd}", "/tmp/work", None, MS_BIND, None)
    os.close(work_fd)
    if not as_root:  # nest once more: our mounts become locked, and we are no longer "root" inside
        _check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare (nested)")
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} 0 1")
        _write("/proc/self/gid_map", f"{gid} 0 1")
    os.chdir("/tmp/work")


def _vm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _set_limits(memory_mb: int, timeout: float, own_uid: bool) -> None:
    extra = memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (_vm_bytes() + extra,) * 2)  # headroom: what is loaded now
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT,) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    cpu = int(timeout) + 5
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    if own_uid:  # counts every process and thread of the uid; only sound with a uid of our own
        resource.setrlimit(resource.RLIMIT_NPROC, (64, 64))


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
        libc = _libc()
        as_root = os.geteuid() == 0
        workdir, level = req["workdir"], "process"
        try:
            _enter_namespaces(libc, req["hide"], workdir, as_root, EXPOSE)
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
        _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl")
        _set_limits(req["memory_mb"], req["timeout"], as_root and uid is not None)
        os.environ["HOME"] = os.getcwd()
        os.environ["MPLCONFIGDIR"] = os.getcwd()
        os.write(report_fd, json.dumps({"level": level}).encode())
        os.close(report_fd)
        from .child import run_job  # imported in the zygote already; nothing new is read from disk

        run_job(os.getcwd(), req["cell_timeout"])
    except BaseException as e:  # noqa: BLE001 - a failed set-up is reported, then the child exits
        try:
            os.write(report_fd, json.dumps({"error": f"{type(e).__name__}: {e}"}).encode())
        except OSError:
            pass
        code = 70
        try:
            import traceback as _tb
            open("_child_error.txt", "w").write(_tb.format_exc()[-3000:])
        except BaseException:
            pass
    os._exit(code)


def _kill_uid(uid: int) -> None:
    """SIGKILL every process whose real uid is `uid` (the child's own uid, as root only)."""
    for _ in range(50):
        found = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/status") as f:
                    line = next(ln for ln in f if ln.startswith("Uid:"))
                if int(line.split()[1]) == uid:
                    found = True
                    os.kill(int(entry), signal.SIGKILL)
            except (OSError, StopIteration, ValueError):
                continue
        if not found:
            return
        time.sleep(0.01)


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
        _kill_uid(req["uid"])
    report = os.read(r, 65536).decode(errors="replace")
    os.close(r)
    info = json.loads(report) if report.startswith("{") else {}
    exit_code = os.waitstatus_to_exitcode(status) if status is not None else None
    return {"exit": exit_code, "timed_out": timed_out, "seconds": seconds,
            "level": info.get("level"), "setup_error": info.get("error")}


def serve() -> None:
    """The zygote's loop: one JSON request per line on stdin, one JSON reply per line on stdout."""
    import numpy  # noqa: F401 - loaded once here, shared by every child
    import torch  # noqa: F401

    import minilm  # noqa: F401

    from . import child  # noqa: F401
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
            reply = {"exit": None, "timed_out": False, "seconds": 0.0, "level": None,
                     "setup_error": f"zygote: {type(e).__name__}: {e}"}
        proto.write(json.dumps(reply) + "\n")
        proto.flush()


def clean_env() -> dict[str, str]:
    """The environment of the zygote (and so of every child): nothing of the grader's but these."""
    keep = {k: os.environ[k] for k in ("MINILM_DATA_DIR", "LANG", "LC_ALL") if k in os.environ}
    return {**keep, "PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg", "MINILM_PRESET": "smoke",
            "PYTHONDONTWRITEBYTECODE": "1", "USER": "student", "LOGNAME": "student"}


class Zygote:
    """A fork server in a fresh interpreter; `run(request)` grades one submission in a child of it."""

    def __init__(self, log_path: str | Path, cwd: str | Path) -> None:
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "minilm.grading.sandbox", "--serve"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.log, env=clean_env(), cwd=str(cwd), text=True)
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
