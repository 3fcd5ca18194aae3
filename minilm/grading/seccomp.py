"""seccomp filters of the grading sandbox (Linux x86_64 and aarch64), built with ctypes.

`install_signal_guard(pid)` is what the child installs at the weakest isolation levels (no PID
namespace): from then on it (and every process it starts) may send signals only to itself and to
its own process group, and may not ptrace, read or write other processes' memory or push
keystrokes into a terminal. `no_process_rules()` is what the child installs at every level before
the submission runs: it may start threads but no process (fork, vfork, a clone without
CLONE_THREAD), so nothing it computes can run outside the process whose forbidden calls refuse
(minilm.grading.standins). `install(rules)` installs any list of `Rule`s (tests use it to build a
filter like Docker's default one, which refuses namespaces). See docs/instructors.md, "Isolation".
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from dataclasses import dataclass

PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
RET_ALLOW, RET_ERRNO = 0x7FFF0000, 0x00050000
LD_ABS, JEQ, JSET, RET = 0x20, 0x15, 0x45, 0x06  # BPF_LD|W|ABS, BPF_JMP|JEQ|K, JMP|JSET|K, RET|K
ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
X32_BIT = 0x40000000
TIOCSTI, TIOCLINUX = 0x5412, 0x541C
SYSCALLS: dict[str, tuple[int, int | None]] = {  # name -> (x86_64, aarch64)
    "kill": (62, 129),
    "tkill": (200, 130),
    "tgkill": (234, 131),
    "rt_sigqueueinfo": (129, 138),
    "rt_tgsigqueueinfo": (297, 240),
    "pidfd_send_signal": (424, 424),
    "ptrace": (101, 117),
    "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271),
    "ioctl": (16, 29),
    "unshare": (272, 97),
    "setns": (308, 268),
    "mount": (165, 40),
    "umount2": (166, 39),
    "pivot_root": (155, 41),
    "fork": (57, None),  # aarch64 has no fork or vfork: glibc uses clone
    "vfork": (58, None),
    "clone": (56, 220),
    "clone3": (435, 435),
    "setsid": (112, 157),
    "setpgid": (109, 154),
}
CLONE_THREAD = 0x00010000
NAMESPACE_FLAGS = 0x7E020080  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET (+NEWTIME)


@dataclass(frozen=True)
class Rule:
    """Refuse syscall `name` with `errno_`: always (arg None), or by the low 32 bits of argument
    `arg`: unless it is one of `allow`, when it is one of `deny`, when it has a bit of `mask`, or
    when it lacks every bit of `need`."""

    name: str
    errno_: int = errno.EPERM
    arg: int | None = None  # None: refuse every call
    allow: tuple[int, ...] = ()
    deny: tuple[int, ...] = ()
    mask: int = 0
    need: int = 0


def available() -> bool:
    """Whether this machine's architecture has a syscall table here."""
    return platform.machine() in ARCH


def _insn(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k & 0xFFFFFFFF)


def program(rules: list[Rule]) -> bytes:
    """The classic-BPF program: foreign architectures and x32 refused, `rules` applied, else allow."""
    machine = platform.machine()
    col = 0 if machine == "x86_64" else 1
    deny_all = RET_ERRNO | errno.EPERM
    code = [_insn(LD_ABS, 4), _insn(JEQ, ARCH[machine], jt=1), _insn(RET, deny_all), _insn(LD_ABS, 0)]
    if machine == "x86_64":
        code += [_insn(0x35, X32_BIT, jf=1), _insn(RET, deny_all)]  # JGE: the x32 syscall table
    for rule in rules:
        number = SYSCALLS[rule.name][col]
        if number is None:  # no such system call on this architecture
            continue
        body = []
        if rule.arg is None:
            body.append(_insn(RET, RET_ERRNO | rule.errno_))
        elif rule.need:
            body += [
                _insn(LD_ABS, 16 + 8 * rule.arg),
                _insn(JSET, rule.need, jt=1),
                _insn(RET, RET_ERRNO | rule.errno_),
                _insn(RET, RET_ALLOW),
            ]
        elif rule.mask:
            body += [
                _insn(LD_ABS, 16 + 8 * rule.arg),
                _insn(JSET, rule.mask, jf=1),
                _insn(RET, RET_ERRNO | rule.errno_),
                _insn(RET, RET_ALLOW),
            ]
        else:  # n comparisons, then two returns: the first for no match, the second for a match
            values = rule.allow or rule.deny
            n = len(values)
            body.append(_insn(LD_ABS, 16 + 8 * rule.arg))
            body += [_insn(JEQ, v, jt=n - i) for i, v in enumerate(values)]
            refuse, allow = _insn(RET, RET_ERRNO | rule.errno_), _insn(RET, RET_ALLOW)
            body += [refuse, allow] if rule.allow else [allow, refuse]
        code.append(_insn(JEQ, number, jf=len(body)))
        code += body
    code.append(_insn(RET, RET_ALLOW))
    return b"".join(code)


def install(rules: list[Rule]) -> None:
    """Install the filter on this thread's process (inherited by every child); needs no_new_privs."""
    prog = program(rules)

    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = Fprog(len(prog) // 8, ctypes.addressof(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, None, 0, 0) != 0 or (
        libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) != 0
    ):
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp: {os.strerror(err)}")


def signal_guard_rules(pid: int) -> list[Rule]:
    """Signals only to `pid` itself and its process group (it leads one, and no process it starts
    may leave it: the group can be killed whole); no ptrace, no memory access to other processes,
    no keystrokes pushed into a terminal."""
    own = (pid, 0, -pid & 0xFFFFFFFF)  # kill(pid), kill(0) = own group, kill(-pid) = own group
    return [
        Rule("kill", arg=0, allow=own),
        Rule("tkill", arg=0, allow=(pid,)),
        Rule("tgkill", arg=0, allow=(pid,)),
        Rule("rt_sigqueueinfo", arg=0, allow=(pid,)),
        Rule("rt_tgsigqueueinfo", arg=0, allow=(pid,)),
        Rule("pidfd_send_signal"),
        Rule("ptrace"),
        Rule("process_vm_readv"),
        Rule("process_vm_writev"),
        Rule("ioctl", arg=1, deny=(TIOCSTI, TIOCLINUX)),
        Rule("setsid"),
        Rule("setpgid"),
    ]


def install_signal_guard(pid: int) -> None:
    """Install `signal_guard_rules(pid)` (the child calls it with its own pid, a session leader)."""
    install(signal_guard_rules(pid))


def no_process_rules() -> list[Rule]:
    """Threads only: fork, vfork and a clone without CLONE_THREAD refused (EPERM); clone3, whose
    flags a filter cannot read, answers ENOSYS, so that libc starts threads with clone."""
    return [
        Rule("fork"),
        Rule("vfork"),
        Rule("clone", arg=0, need=CLONE_THREAD),
        Rule("clone3", errno_=errno.ENOSYS),
    ]


def docker_default_rules() -> list[Rule]:
    """What Docker's default seccomp profile does to namespaces (without CAP_SYS_ADMIN): refused."""
    return [
        Rule("unshare"),
        Rule("setns"),
        Rule("mount"),
        Rule("umount2"),
        Rule("pivot_root"),
        Rule("clone", arg=0, mask=NAMESPACE_FLAGS),
        Rule("clone3", errno_=errno.ENOSYS),  # Docker answers ENOSYS so that libc falls back to clone
    ]
