"""The sandbox: a fork server ("zygote") that runs each submission in an isolated child process.

The grader starts one zygote per job slot: a fresh interpreter with a cleaned environment that has
imported torch, numpy and minilm (never the reference solutions). For each submission it forks:

  outer   enters new mount, network, IPC and PID namespaces (a normal user: inside a new user
          namespace), then forks the supervisor, which is PID 1 there, and waits;
  supervisor  (trusted: never runs student code) pivots into a fresh root file system that holds
          only the system folders, the Python installation, the venv and minilm (read-only), a few
          devices and a private /tmp (the work folder is /tmp/work); as a normal user it nests
          one more user namespace so the mounts cannot be undone, and drops every capability.
          It forks the child, waits for it, kills whatever is left in the namespace, reads the
          child's results file itself (a regular file, bounded, never followed) and sends it up;
  child   (root) switches to a uid of its own, sets no_new_privs, a seccomp filter that lets it
          start threads but no process, and the limits, reports the level reached, closes the
          report pipe, and only then runs the submission (minilm.grading.child).

Where namespaces are refused (and --allow-unsandboxed allows it) the outer process supervises the
child itself in a host work folder: the child gets a uid of its own as root ("uid"), else a
seccomp filter that lets it signal only itself ("process"). See docs/instructors.md, "Isolation".
The zygote itself (the fork server and its client) is minilm.grading.zygote.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import struct
import time

from . import seccomp
from .isolation import (
    PR_SET_DUMPABLE,
    PR_SET_NO_NEW_PRIVS,
    UID_UNREADABLE,
    build_root,
    check_call,
    enter_namespaces,
    kill_uid,
    load_libc,
    lock_down,
    open_sources,
    pivot_into,
    set_limits,
    vm_bytes,
)

EXPOSE: list[str] = []  # set by the zygote: what the child needs to read (isolation.needed_paths)
MAX_RESULTS = 64 << 20  # bytes of results a child may hand back
MAX_STREAM = 1 << 30  # bytes of snapshots read from one child in all
NPROC = 512  # processes + threads of a child's own uid (root levels only)
LEVELS = {
    "uid+namespaces": "own uid, PID/mount/network/IPC namespaces, minimal root file system (grader run as root)",
    "namespaces": "user, PID, mount, network and IPC namespaces, minimal root file system (grader run as a normal user)",
    "uid": "own uid and limits only, no namespaces: the child can read every world-readable file",
    "process": "limits and a signal filter only, no namespaces: the child can read every file you can read",
}


def wall_limits(cell_timeout: float, timeout: float) -> tuple[float, float]:
    """(per cell, whole run) wall-clock limits: the CPU-time limits stop busy code; these stop code
    that waits (sleep, a lock) and do not depend on how loaded the machine is for busy code."""
    return 2 * cell_timeout + 5, 2 * timeout + 10


def _send(fd: int, kind: bytes, payload: bytes) -> None:
    data = kind + struct.pack(">I", len(payload)) + payload
    while data:
        data = data[os.write(fd, data) :]


def _send_json(fd: int, obj: dict) -> None:
    _send(fd, b"J", json.dumps(obj).encode())


class Snapshots:
    """The read end of a child's results pipe: length-prefixed snapshots, the last complete one kept
    (what the child's code sent last; garbage written by student code only spoils its own run)."""

    def __init__(self, fd: int) -> None:
        self.fd, self.buf, self.last, self.total, self.problem, self.eof = fd, b"", b"", 0, "", False
        os.set_blocking(fd, False)

    def read(self, timeout: float) -> None:
        """Wait up to `timeout` s for data and take it."""
        if self.eof:
            time.sleep(timeout)
            return
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return
        try:
            chunk = os.read(self.fd, 1 << 20)
        except BlockingIOError:
            return
        self.eof = not chunk
        self.total += len(chunk)
        if self.problem:
            return
        self.buf += chunk
        while len(self.buf) >= 4:
            n = struct.unpack(">I", self.buf[:4])[0]
            if n > MAX_RESULTS or self.total > MAX_STREAM:
                self.problem, self.buf = f"its results were larger than {MAX_RESULTS >> 20} MB", b""
                return
            if len(self.buf) < 4 + n:
                return
            self.last, self.buf = self.buf[4 : 4 + n], self.buf[4 + n :]


def _watch(pid: int, snapshots: Snapshots) -> int:
    """Read the results pipe until the child `pid` exits, reaping every other process on the way
    (as PID 1, orphans come to us): its wait status."""
    while True:
        snapshots.read(0.05)
        with contextlib.suppress(ChildProcessError):
            while (found := os.waitpid(-1, os.WNOHANG))[0]:
                if found[0] == pid:
                    return found[1]


def _per_namespace_nproc() -> bool:
    """Whether RLIMIT_NPROC counts only this user namespace's processes (Linux 5.14+, "ucounts"):
    then it limits a child that shares your uid without counting your other processes."""
    try:
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (5, 14)


def _work_path() -> str:
    """The child's work folder inside its /tmp, clear of anything exposed there."""
    n, path = 0, "/tmp/work"
    while any(p == path or p.startswith(path + "/") for p in EXPOSE):
        n += 1
        path = f"/tmp/work-{n}"
    return path


def _child(req: dict, job: dict, report_fd: int, res_w: int, workdir: str, level: str, in_ns: bool) -> None:
    """The child: drop privileges, set limits, report, then run the submission (never returns)."""
    code = 70
    try:
        os.setsid()
        os.chdir(workdir)
        uid = req.get("uid")
        if os.geteuid() == 0 and uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            level = "uid+namespaces" if in_ns else f"uid{level.removeprefix('process')}"
        libc = load_libc()
        check_call(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl")
        own_uid = os.geteuid() != 0 and uid is not None
        if seccomp.available():  # threads only, no process: nothing escapes the stand-ins
            rules = seccomp.no_process_rules()
            if not in_ns and not own_uid:  # nothing else keeps it from signalling
                rules = seccomp.signal_guard_rules(os.getpid()) + rules
            seccomp.install(rules)
        counted_here = own_uid or (in_ns and _per_namespace_nproc())
        set_limits(req["memory_mb"], req["timeout"], NPROC if counted_here else None, req["loaded"])
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file over the limit fails, not the child
        for p in EXPOSE if in_ns else ():
            if not os.path.isdir(p):
                raise OSError(f"the sandbox cannot see {p}, which submissions need")
            if not os.access(p, os.R_OK | os.X_OK):
                raise OSError(f"the child (uid {os.getuid()}) cannot read {p}: make it readable by other users")
        closed = [p for p in EXPOSE if own_uid and not in_ns and not os.access(p, os.R_OK | os.X_OK)]
        if closed:  # the "uid" level: found now, not as an ImportError in a student's cell
            raise OSError(UID_UNREADABLE.format(uid=os.getuid(), paths=", ".join(closed)))
        os.environ.update(HOME=workdir, MPLCONFIGDIR=workdir, TMPDIR="/tmp" if in_ns else workdir)
        _send_json(report_fd, {"level": level})
        os.close(report_fd)
        from .child import run_job  # imported in the zygote already; nothing new is read from disk

        cell_wall = wall_limits(req["cell_timeout"], req["timeout"])[0]
        run_job(job, res_w, req["cell_timeout"], cell_wall, kill_others=in_ns or own_uid)
        code = 0
    except BaseException as e:  # noqa: BLE001 - a failed set-up is reported, then the child exits
        with contextlib.suppress(OSError):
            _send_json(report_fd, {"error": f"{type(e).__name__}: {e}"})
    os._exit(code)


def _supervise(req: dict, job: dict, report_fd: int, in_ns: bool, sources: dict, level: str) -> None:
    """Build the child's world, run the child, clean up after it, send its results (never returns)."""
    code = 0
    try:
        if in_ns:
            libc = load_libc()
            proc_fd = os.open("/proc/self", os.O_RDONLY | os.O_DIRECTORY)  # the new root has no /proc
            workdir = _work_path()
            root = "/tmp"  # any folder: from here on it is our own tmpfs, the new root
            from .isolation import MS_NODEV, MS_NOSUID, mount

            mount(libc, "tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
            build_root(libc, root, sources, req["hide"], workdir)
            for fd in sources.values():
                os.close(fd)
            pivot_into(libc, root)
            if os.geteuid() == 0 and req.get("uid") is not None:
                os.chown(workdir, req["uid"], req["uid"])
            elif req["outer_uid"] != 0:
                lock_down(libc, proc_fd, req["outer_uid"], req["outer_gid"])
            os.close(proc_fd)
        else:
            workdir = req["workdir"]
            if os.geteuid() == 0 and req.get("uid") is not None:
                os.chown(workdir, req["uid"], req["uid"])
                os.chmod(workdir, 0o700)
        load_libc().prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # no ptrace or /proc/<pid>/mem by the child
        res_r, res_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(res_r)
            _child(req, job, report_fd, res_w, workdir, level, in_ns)
        os.close(res_w)
        if not in_ns:  # no namespace to kill whole: the zygote needs the child's group at its deadline
            _send_json(report_fd, {"child_pid": pid})
        snapshots = Snapshots(res_r)
        status = _watch(pid, snapshots)
        if in_ns:
            with contextlib.suppress(OSError):
                os.kill(-1, signal.SIGKILL)  # PID 1: everything else in the namespace
        else:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)
            if os.geteuid() == 0 and req.get("uid") is not None:
                kill_uid(req["uid"])
        deadline = time.monotonic() + 5
        while not snapshots.eof and time.monotonic() < deadline:
            snapshots.read(0.1)  # what the child sent before it ended
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        problem = snapshots.problem or ("" if snapshots.last else "no results came back from it")
        _send_json(report_fd, {"final": {"status": status, "problem": problem}})
        _send(report_fd, b"R", b"" if snapshots.problem else snapshots.last)
    except BaseException as e:  # noqa: BLE001
        with contextlib.suppress(OSError):
            _send_json(report_fd, {"error": f"{type(e).__name__}: {e}"})
        code = 70
    os._exit(code)


def _outer(req: dict, report_fd: int) -> None:
    """The first fork: namespaces (or the fallback), then the supervisor (never returns)."""
    code = 0
    try:
        os.setsid()
        load_libc().prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # the zygote is not; /proc/self/uid_map needs it
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, report_fd)
        os.closerange(report_fd + 1, 65536)
        with open(os.path.join(req["workdir"], "job.json"), encoding="utf-8") as f:
            job = json.load(f)
        req = {**req, "loaded": vm_bytes(), "outer_uid": os.getuid(), "outer_gid": os.getgid()}
        refused = None
        try:
            enter_namespaces(load_libc(), os.geteuid() == 0)
            sources = open_sources(EXPOSE)
        except OSError as e:
            if req["require_namespaces"]:
                _send_json(report_fd, {"error": f"{type(e).__name__}: {e}", "no_namespaces": True})
                os._exit(70)
            refused = f"process ({e})"
        if refused:
            _supervise(req, job, report_fd, False, {}, refused)
        pid = os.fork()
        if pid == 0:
            _supervise(req, job, report_fd, True, sources, "namespaces")
        _send_json(report_fd, {"inner_pid": pid})
        for fd in sources.values():
            os.close(fd)
        os.waitpid(pid, 0)
    except BaseException as e:  # noqa: BLE001
        with contextlib.suppress(OSError):
            _send_json(report_fd, {"error": f"{type(e).__name__}: {e}"})
        code = 70
    os._exit(code)


def _collect(r: int, pid: int, deadline: float) -> tuple[dict, bytes, bool]:
    """Read the report pipe until every writer is gone: (messages merged, results, timed_out).
    At the deadline, kill the supervisor (and with it the whole namespace) and the outer process."""
    buf, info, results, timed_out, killed_at = b"", {}, b"", False, None
    os.set_blocking(r, False)
    while True:
        now = time.monotonic()
        if killed_at is None and now >= deadline:
            timed_out, killed_at = True, now
            for target in (info.get("inner_pid"), pid):
                with contextlib.suppress(OSError, TypeError):
                    os.kill(target, signal.SIGKILL)
            for group in (pid, info.get("child_pid")):
                with contextlib.suppress(OSError, TypeError):
                    os.killpg(group, signal.SIGKILL)
        if killed_at is not None and now - killed_at > 10:
            break  # nothing more will come
        wait = (deadline - now) if killed_at is None else 1.0
        ready, _, _ = select.select([r], [], [], max(wait, 0.01))
        if not ready:
            continue
        try:
            chunk = os.read(r, 1 << 20)
        except BlockingIOError:
            continue
        if not chunk:
            break
        buf += chunk
        if len(buf) > MAX_RESULTS + (1 << 20):
            info.setdefault("problem", "results too large")
            break
        while len(buf) >= 5 and len(buf) >= 5 + struct.unpack(">I", buf[1:5])[0]:
            n = struct.unpack(">I", buf[1:5])[0]
            kind, payload, buf = buf[:1], buf[5 : 5 + n], buf[5 + n :]
            if kind == b"R":
                results = payload
            else:
                msg = json.loads(payload)
                final = msg.pop("final", None)
                info.update(final or {}, **msg)
    return info, results, timed_out


def run_one(req: dict) -> tuple[dict, bytes]:
    """In the zygote: run one submission in a sandboxed child: (reply, results bytes)."""
    r, w = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _outer(req, w)
    os.close(w)
    info, results, timed_out = _collect(r, pid, start + wall_limits(req["cell_timeout"], req["timeout"])[1])
    os.close(r)
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)
    if timed_out and os.geteuid() == 0 and req.get("uid") is not None:
        kill_uid(req["uid"])  # the "uid" level: whatever of the child's uid is left
    os.waitpid(pid, 0)
    status = info.get("status")
    exit_code = os.waitstatus_to_exitcode(status) if isinstance(status, int) else None
    reply = {
        "exit": exit_code,
        "timed_out": timed_out,
        "seconds": time.monotonic() - start,
        "level": info.get("level"),
        "setup_error": info.get("error"),
        "no_namespaces": bool(info.get("no_namespaces")),
        "results_problem": info.get("problem", ""),
        "results_len": len(results),
    }
    return reply, results
