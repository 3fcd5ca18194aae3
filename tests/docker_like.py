"""Run a command the way a default Docker container would (no CAP_SYS_ADMIN, Docker's seccomp
answer to namespaces): `python tests/docker_like.py -- COMMAND ...`. Used by the grading tests to
check what `minilm grade` does there; a real Docker engine was not available to them."""

from __future__ import annotations

import ctypes
import os
import sys

PR_CAPBSET_DROP, CAP_SYS_ADMIN = 24, 21


def drop_sys_admin() -> None:
    """Drop CAP_SYS_ADMIN from the bounding, effective, permitted and inheritable sets."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    header, data = Header(0x20080522, 0), (Data * 2)()
    if libc.capget(ctypes.byref(header), ctypes.byref(data)) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    mask = ~(1 << CAP_SYS_ADMIN) & 0xFFFFFFFF
    data[0].effective &= mask
    data[0].permitted &= mask
    data[0].inheritable &= mask
    if libc.capset(ctypes.byref(header), ctypes.byref(data)) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def main() -> None:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from minilm.grading import seccomp

    argv = sys.argv[sys.argv.index("--") + 1 :]
    if os.geteuid() == 0:
        drop_sys_admin()
    seccomp.install(seccomp.docker_default_rules())
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main()
