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


def write_file(path: str, text: str, dir_fd: int | None = None) -> None:
    fd = os.open(path, os.O_WRONLY, dir_fd=dir_fd)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


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
    cwd = os.getcwd()  # the zygote's scratch folder (sys.path[0] under -m): not needed
    paths |= {p for p in sys.path if p and os.path.isdir(p) and os.path.abspath(p) != cwd}
    return sorted({str(Path(p).resolve()) for p in paths})


SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
DEVICES = ("null", "zero", "full", "random", "urandom")
MS_REMOUNT, MS_NOEXEC, MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 32, 8, 1024, 2048, 1 << 21
MNT_DETACH = 2
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "s390x": 217, "riscv64": 41}


def _locked_flags(path: str) -> int:
    """The mount flags of `path` that a remount must keep (a user namespace may not clear them)."""
    f = os.statvfs(path).f_flag
    flags = f & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME)
    return flags | (MS_RELATIME if f & 4096 else 0)  # ST_RELATIME is 4096, MS_RELATIME is 1 << 21


def bind(libc: Any, src: str, dst: str, readonly: bool = True) -> None:
    """Bind-mount `src` (recursively) on `dst`, read-only unless told otherwise."""
    mount(libc, src, dst, None, MS_BIND | MS_REC, None)
    if readonly:
        flags = MS_BIND | MS_REMOUNT | MS_RDONLY | _locked_flags(dst)
        mount(libc, None, dst, None, flags, None)


def _sources(readable: list[str]) -> dict[str, int]:
    """O_PATH descriptors of everything the new root will show, opened before /tmp is covered."""
    wanted: list[str] = []
    for d in SYSTEM_DIRS:
        if os.path.isdir(d) and not os.path.islink(d):
            wanted.append(d)
    for p in sorted(readable, key=len):
        if not any(p == b or p.startswith(b.rstrip("/") + "/") for b in wanted):
            wanted.append(p)  # not inside a folder shown already
    wanted += [f"/dev/{n}" for n in DEVICES if os.path.exists(f"/dev/{n}")]
    return {p: os.open(p, os.O_PATH) for p in wanted}


def build_root(libc: Any, root: str, sources: dict[str, int], workdir_fd: int) -> None:
    """Fill the empty tmpfs `root` with only what a child needs: the system folders and the
    Python installation, venv and minilm (read-only), a few devices, a fresh /tmp and /dev/shm,
    and the child's work folder at /tmp/work. Nothing else of the machine (the repository, its
    solutions, other checkouts, home folders, /proc) exists there."""
    for d in SYSTEM_DIRS:
        if os.path.islink(d):  # merged /usr: /bin -> usr/bin
            os.symlink(os.readlink(d), root + d)
    os.mkdir(root + "/dev")
    mount(libc, "tmpfs", root + "/dev", "tmpfs", MS_NOSUID, "size=64k,mode=755")
    for p, fd in sources.items():
        src = f"/proc/self/fd/{fd}"
        if p.startswith("/dev/"):
            open(root + p, "w").close()
            bind(libc, src, root + p, readonly=False)
        else:
            os.makedirs(root + p, exist_ok=True)
            bind(libc, src, root + p)
    for d, size in (("/dev/shm", "16m"), ("/tmp", "64m")):
        os.makedirs(root + d, exist_ok=True)
        mount(libc, "tmpfs", root + d, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode=1777")
    os.mkdir(root + "/tmp/work", 0o755)
    mount(libc, f"/proc/self/fd/{workdir_fd}", root + "/tmp/work", None, MS_BIND, None)


def pivot_into(libc: Any, root: str) -> None:
    """Make `root` the whole file system of this mount namespace (the old root is detached)."""
    import platform

    os.chdir(root)
    number = SYS_PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise OSError(f"pivot_root: unknown system call number on {platform.machine()}")
    check_call(libc.syscall(number, b".", b"."), "pivot_root")
    check_call(libc.umount2(b".", MNT_DETACH), "umount old root")
    os.chdir("/")


def enter_namespaces(
    libc: Any, hide: list[str], workdir: str, as_root: bool, readable: list[str]
) -> None:
    """New mount/net/ipc namespaces whose file system holds only `readable`, the system folders and
    the work folder (at /tmp/work); `hide` is also covered wherever it falls inside `readable`."""
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | (0 if as_root else CLONE_NEWUSER)
    check_call(libc.unshare(flags), "unshare")
    if not as_root:
        write_file("/proc/self/setgroups", "deny")
        write_file("/proc/self/uid_map", f"0 {uid} 1")
        write_file("/proc/self/gid_map", f"0 {gid} 1")
    mount(libc, None, "/", None, MS_REC | MS_PRIVATE, None)
    work_fd = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
    proc_fd = os.open("/proc/self", os.O_RDONLY | os.O_DIRECTORY)  # the new root has no /proc
    sources = _sources(readable)
    root = "/tmp"  # any folder: from here on it is our own tmpfs, the new root
    mount(libc, "tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=70m,mode=755")
    build_root(libc, root, sources, work_fd)
    for fd in (work_fd, *sources.values()):
        os.close(fd)
    for p in hide:  # defence in depth: e.g. a solutions folder inside an exposed one
        if os.path.isdir(root + p):
            mount(libc, "tmpfs", root + p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=000")
        elif os.path.exists(root + p):
            mount(libc, "/dev/null", root + p, None, MS_BIND, None)
    pivot_into(libc, root)
    if not as_root:  # nest once more: our mounts become locked, and we are no longer "root" inside
        check_call(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare (nested)")
        write_file("setgroups", "deny", dir_fd=proc_fd)
        write_file("uid_map", f"{uid} 0 1", dir_fd=proc_fd)
        write_file("gid_map", f"{gid} 0 1", dir_fd=proc_fd)
        drop_capabilities(libc)
    os.close(proc_fd)
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


def set_limits(memory_mb: int, timeout: float, own_uid: bool, loaded_bytes: int) -> None:
    """Limits of the child; `loaded_bytes` (vm_bytes() before isolation) is the interpreter's own size."""
    extra = memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (loaded_bytes + extra,) * 2)  # headroom: what is loaded
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
