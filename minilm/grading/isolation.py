"""Kernel calls of the grading sandbox: namespaces, a minimal root file system, capabilities, limits.

Used by minilm.grading.sandbox (see its docstring and docs/instructors.md, "Isolation"), in the
forked processes that prepare a child before any student code runs. Linux only.
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

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
CLONE_NEWIPC, CLONE_NEWPID = 0x08000000, 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_REC, MS_PRIVATE, MS_RELATIME = 1024, 2048, 4096, 16384, 1 << 18, 1 << 21
MNT_DETACH, PR_SET_NO_NEW_PRIVS, PR_SET_DUMPABLE, CAP_SYS_ADMIN = 2, 38, 4, 21
FILE_LIMIT = 64 << 20  # bytes any file written by the child may reach
TMP_MB, SHM_MB = 128, 16  # the child's private /tmp (its work folder lives there) and /dev/shm
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
DEVICES = ("null", "zero", "full", "random", "urandom")
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "s390x": 217, "riscv64": 41}
NAMESPACES = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWPID
UID_UNREADABLE = (
    "at the 'uid' level (root without namespaces, --allow-unsandboxed) each submission runs under a uid of "
    "its own ({uid}), and that uid cannot read {paths}, which submissions need (Python imports from there "
    "while a notebook runs): a folder on the way is closed to other users, e.g. a Python installed under "
    "/root (mode 700). Install Python and the packages where every user may read them (e.g. /usr/bin/python3 "
    "-m venv /opt/minilm-venv, /opt/minilm-venv/bin/pip install 'minilm[grade]', then grade with "
    "/opt/minilm-venv/bin/minilm), or give the container "
    "what namespaces need (docs/instructors.md, section 5). Opening /root to others (chmod o+x /root) also "
    "works, and lets every grading child reach what others may read in it"
)


def load_libc() -> Any:
    """libc with errno, and the argument types of mount(2)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
    return libc


def check_call(rc: int, what: str) -> None:
    """Raise OSError (with errno and `what`) when a libc call returned non-zero."""
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def write_file(path: str, text: str, dir_fd: int | None = None) -> None:
    """Write `text` to an existing file (a /proc file such as uid_map)."""
    fd = os.open(path, os.O_WRONLY, dir_fd=dir_fd)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def mount(libc: Any, src: str | None, dst: str, fstype: str | None, flags: int, data: str | None) -> None:
    """mount(2), raising OSError that names `dst`."""
    enc = lambda s: s.encode() if s else None
    check_call(libc.mount(enc(src), dst.encode(), enc(fstype), flags, enc(data)), f"mount {dst}")


def has_capability(cap: int) -> bool:
    """Whether this process holds capability number `cap` in its effective set."""
    with open("/proc/self/status") as f:
        line = next(ln for ln in f if ln.startswith("CapEff:"))
    return bool(int(line.split()[1], 16) >> cap & 1)


def needed_paths() -> list[str]:
    """Folders the child must read: the Python installation, the venv, sys.path and minilm, each
    under its own name and, when a symbolic link leads there, under its real name too."""
    import minilm

    paths = {sys.base_prefix, sys.prefix, sys.exec_prefix, str(Path(minilm.__file__).parent)}
    cwd = os.getcwd()  # the zygote's scratch folder (sys.path[0] under -m): not needed
    paths |= {p for p in sys.path if p and os.path.isdir(p) and os.path.abspath(p) != cwd}
    out = {os.path.abspath(p) for p in paths} | {str(Path(p).resolve()) for p in paths}
    return sorted(p for p in out if os.path.isdir(p))


def enter_namespaces(libc: Any, as_root: bool) -> None:
    """New mount, network, IPC and PID namespaces (the next fork is PID 1 there); a normal user
    gets them inside a new user namespace where it is root (uid and gid mapped to its own)."""
    if as_root:
        check_call(libc.unshare(NAMESPACES), "unshare")
        return
    uid, gid = os.getuid(), os.getgid()
    check_call(libc.unshare(NAMESPACES | CLONE_NEWUSER), "unshare")
    write_file("/proc/self/setgroups", "deny")
    write_file("/proc/self/uid_map", f"0 {uid} 1")
    write_file("/proc/self/gid_map", f"0 {gid} 1")


def open_sources(readable: list[str]) -> dict[str, int]:
    """O_PATH descriptors of what the new root shows: system folders, `readable`, a few devices."""
    mount(load_libc(), None, "/", None, MS_REC | MS_PRIVATE, None)  # nothing leaks back out
    wanted = [d for d in SYSTEM_DIRS if os.path.isdir(d) and not os.path.islink(d)]
    for p in sorted(readable, key=len):
        if not any(p == b or p.startswith(b.rstrip("/") + "/") for b in wanted):
            wanted.append(p)  # not inside a folder shown already
    wanted += [f"/dev/{n}" for n in DEVICES if os.path.exists(f"/dev/{n}")]
    return {p: os.open(p, os.O_PATH) for p in wanted}


def _locked_flags(path: str) -> int:
    """The mount flags of `path` that a remount must keep (a user namespace may not clear them)."""
    f = os.statvfs(path).f_flag
    flags = f & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME)
    return flags | (MS_RELATIME if f & 4096 else 0)  # ST_RELATIME is 4096


def bind(libc: Any, src: str, dst: str, readonly: bool = True) -> None:
    """Bind-mount `src` (recursively) on `dst`, read-only unless told otherwise."""
    mount(libc, src, dst, None, MS_BIND | MS_REC, None)
    if readonly:
        mount(libc, None, dst, None, MS_BIND | MS_REMOUNT | MS_RDONLY | _locked_flags(dst), None)


def build_root(libc: Any, root: str, sources: dict[str, int], hide: list[str], work: str) -> None:
    """Fill the empty tmpfs `root`: a fresh /tmp and /dev/shm first, then (read-only) the system
    folders, the Python installation, venv and minilm wherever they live (under /tmp too), a few
    devices, and the child's work folder `work` inside the new /tmp. `hide` is covered by empty
    mode-000 mounts wherever it falls inside what is shown. Nothing else of the machine exists."""
    for d in SYSTEM_DIRS:
        if os.path.islink(d):  # merged /usr: /bin -> usr/bin
            os.symlink(os.readlink(d), root + d)
    for d, size in (("/tmp", TMP_MB), ("/dev", 0), ("/dev/shm", SHM_MB)):
        os.makedirs(root + d, exist_ok=True)
        data = f"size={size}m,mode=1777" if size else "size=64k,mode=755"
        mount(libc, "tmpfs", root + d, "tmpfs", MS_NOSUID | (MS_NODEV if size else 0), data)
    for p, fd in sources.items():
        if p.startswith("/dev/"):
            open(root + p, "w").close()
            bind(libc, f"/proc/self/fd/{fd}", root + p, readonly=False)
        else:
            os.makedirs(root + p, exist_ok=True)
            bind(libc, f"/proc/self/fd/{fd}", root + p)
    for p in hide:
        if os.path.isdir(root + p):
            mount(libc, "tmpfs", root + p, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=000")
        elif os.path.exists(root + p):
            mount(libc, "/dev/null", root + p, None, MS_BIND, None)
    os.makedirs(root + work, 0o755)


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


def lock_down(libc: Any, proc_fd: int, uid: int, gid: int) -> None:
    """(normal user) Nest a user namespace mapped back to `uid`: the mounts become locked (they
    cannot be undone) and nothing here is root any more; then drop every capability."""
    check_call(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS), "unshare (nested)")
    write_file("setgroups", "deny", dir_fd=proc_fd)
    write_file("uid_map", f"{uid} 0 1", dir_fd=proc_fd)
    write_file("gid_map", f"{gid} 0 1", dir_fd=proc_fd)
    drop_capabilities(libc)


def drop_capabilities(libc: Any) -> None:
    """Empty the capability sets (a fresh user namespace grants all of them inside it)."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    check_call(libc.capset(ctypes.byref(Header(0x20080522, 0)), ctypes.byref((Data * 2)())), "capset")


def vm_bytes() -> int:
    """This process's virtual memory size (VmSize), read from /proc."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def set_limits(memory_mb: int, cpu_seconds: float, nproc: int | None, loaded_bytes: int) -> None:
    """Limits of the child: address space (`memory_mb` on top of `loaded_bytes`, what is already
    mapped), each file written, open files, core dumps, CPU time (SIGXCPU at `cpu_seconds`) and,
    with a uid of its own, processes and threads."""
    resource.setrlimit(resource.RLIMIT_AS, (loaded_bytes + (memory_mb << 20),) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_LIMIT,) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    cpu = max(1, int(cpu_seconds + 0.999))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 2))
    if nproc is not None:  # counts every process and thread of the uid: sound only with our own uid
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))


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
            enter_namespaces(load_libc(), os.geteuid() == 0)
            ok = True
        finally:
            os._exit(0 if ok else 1)
    return os.waitpid(pid, 0)[1] == 0
