"""Kernel calls of the grading sandbox: namespaces, hidden paths, capabilities, limits (Linux).

Used by minilm.grading.sandbox in the forked child, before any student code runs (see its docstring
and docs/instructors.md, "Isolation").
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWIPC = (
    0x00020000,
    0x10000000,
    0x40000000,
    0x08000000,
)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 4096, 16384, 1 << 18
PR_SET_NO_NEW_PRIVS = 38
FILE_LIMIT = 64 << 20  # bytes any file written by the child may reach


def load_libc() -> Any:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_char_p,
    ]
    return libc


def check_call(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def write_file(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def mount(
    libc: Any, src: str | None, dst: str, fstype: str | None, flags: int, data: str | None
) -> None:
    check_call(
        libc.mount(
            src.encode() if src else None,
            dst.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        ),
        f"mount {dst}",
    )


def needed_paths() -> list[str]:
    """Folders the child must be able to read: the Python installation, the venv, sys.path, minilm."""
    import minilm

    paths = {
        sys.base_prefix,
        sys.prefix,
        sys.exec_prefix,
        str(Path(minilm.__file__).resolve().parent),
    }
    paths |= {p for p in sys.path if p and os.path.isdir(p)}
    return sorted({str(Path(p).resolve()) for p in paths})


def blocked_ancestor(path: str) -> str | None:
    """The first folder above `path` that other users cannot traverse (e.g. /root), else None."""
    current = "/"
    for part in Path(path).parts[1:]:
        if not os.stat(current).st_mode & 0o001:
            return current
        current = os.path.join(current, part)
    return None


def expose(libc: Any, paths: list[str]) -> None:
    """Make `paths` reachable for an unprivileged uid: a blocking folder such as /root becomes an
    empty tmpfs (so its other contents stay hidden) into which only `paths` are bind-mounted."""
    blocked = {p: blocked_ancestor(p) for p in paths}
    fds = {p: os.open(p, os.O_RDONLY | os.O_DIRECTORY) for p, b in blocked.items() if b}
    for b in sorted({b for b in blocked.values() if b}, key=len):
        mount(libc, "tmpfs", b, "tmpfs", MS_NOSUID | MS_NODEV, "size=4k,mode=755")
    for p, fd in fds.items():
        os.makedirs(p, exist_ok=True)
        mount(libc, f"/proc/self/fd/{fd}", p, None, MS_BIND | MS_REC, None)
        os.close(fd)


def enter_namespaces(
    libc: Any, hide: list[str], workdir: str, as_root: bool, readable: list[str]
) -> None:
    """New mount/net/ipc namespaces; hide `hide`; fresh /tmp with the work folder at /tmp/work."""
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | (0 if as_root else CLONE_NEWUSER)
    check_call(libc.unshare(flags), "unshare")
    if not as_root:
        write_file("/proc/self/setgroups", "deny")
        write_file("/proc/self/uid_map", f"0 {uid} 1")
        write_file("/proc/self/gid_map", f"0 {gid} 1")
    mount(libc, None, "/", None, MS_REC | MS_PRIVATE, None)
    work_fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
    if as_root:
        expose(libc, readable)
    for p in hide:
        if os.path.isdir(p):
            mount(libc, "tmpfs", p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=000")
        elif os.path.exists(p):
            mount(libc, "/dev/null", p, None, MS_BIND, None)
    mount(libc, "tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=1777")
    if os.path.isdir("/dev/shm"):
        mount(libc, "tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=1777")
    for shared in ("/var/tmp", "/run/lock"):  # the other folders anyone may write to
        if os.path.isdir(shared):
            mount(libc, "tmpfs", shared, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=1777")
    os.mkdir("/tmp/work", 0o755)
    mount(libc, f"/proc/self/fd/{work_fd}", "/tmp/work", None, MS_BIND, None)
    os.close(work_fd)
    if not as_root:  # nest once more: our mounts become locked, and we are no longer "root" inside
        check_call(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare (nested)")
        write_file("/proc/self/setgroups", "deny")
        write_file("/proc/self/uid_map", f"{uid} 0 1")
        write_file("/proc/self/gid_map", f"{gid} 0 1")
        drop_capabilities(libc)
    os.chdir("/tmp/work")


def drop_capabilities(libc: Any) -> None:
    """Empty the capability sets (a fresh user namespace grants all of them inside it)."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [
            ("effective", ctypes.c_uint32),
            ("permitted", ctypes.c_uint32),
            ("inheritable", ctypes.c_uint32),
        ]

    check_call(
        libc.capset(ctypes.byref(Header(0x20080522, 0)), ctypes.byref((Data * 2)())), "capset"
    )


def vm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def set_limits(memory_mb: int, timeout: float, own_uid: bool) -> None:
    extra = memory_mb << 20
    resource.setrlimit(
        resource.RLIMIT_AS, (vm_bytes() + extra,) * 2
    )  # headroom: what is loaded now
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT,) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    cpu = int(timeout) + 5
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    if own_uid:  # counts every process and thread of the uid; only sound with a uid of our own
        resource.setrlimit(resource.RLIMIT_NPROC, (64, 64))


def kill_uid(uid: int) -> None:
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


def namespaces_available() -> bool:
    """Whether this process may create the namespaces the sandbox needs (tried in a forked child)."""
    pid = os.fork()
    if pid == 0:
        ok = False
        try:
            lib = load_libc()
            flags = CLONE_NEWNS | CLONE_NEWNET
            ok = lib.unshare(flags if os.geteuid() == 0 else flags | CLONE_NEWUSER) == 0
        finally:
            os._exit(0 if ok else 1)
    return os.waitpid(pid, 0)[1] == 0


def mount_scratch(path: str | Path, size_mb: int, uid: int) -> bool:
    """(root) Make `path` a tmpfs of `size_mb` owned by `uid`, so a child cannot fill the disk."""
    lib = load_libc()
    data = f"size={size_mb}m,mode=700,uid={uid},gid={uid}"
    return (
        lib.mount(b"tmpfs", str(path).encode(), b"tmpfs", MS_NOSUID | MS_NODEV, data.encode()) == 0
    )


def unmount(path: str | Path) -> None:
    """Detach the mount at `path` (after mount_scratch)."""
    load_libc().umount2(str(path).encode(), 2)  # MNT_DETACH
