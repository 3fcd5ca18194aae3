"""Removing a sandboxed child's work folder, whatever the child left in it (used by minilm.grading.grader)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def remove_tree(path: str | Path) -> None:
    """Delete a work folder whatever the child left there: FIFOs, links, mode-000 folders, a tree
    deeper than any path can name (walked with descriptors, one level at a time, never followed)."""
    dir_flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        fd = os.open(path, dir_flags)
    except OSError:
        return
    names: list[str] = []  # the folders we are inside, below `path`
    failed: set[tuple[int, str]] = set()
    for _ in range(1_000_000):  # a bound, whatever is there
        sub = None
        try:
            with os.scandir(fd) as it:
                entries = list(it)
        except OSError:
            entries = []
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                sub = sub or (e.name if (len(names), e.name) not in failed else None)
                continue
            with contextlib.suppress(OSError):
                os.unlink(e.name, dir_fd=fd)
        if sub is not None:
            with contextlib.suppress(OSError):
                os.chmod(sub, 0o700, dir_fd=fd, follow_symlinks=False)
            try:
                child = os.open(sub, dir_flags, dir_fd=fd)
            except OSError:
                failed.add((len(names), sub))
                continue
            os.close(fd)
            fd, names = child, [*names, sub]
            continue
        if not names:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.rmdir(path)
            return
        parent = os.open("..", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd, name = parent, names.pop()
        try:
            os.rmdir(name, dir_fd=fd)
        except OSError:
            failed.add((len(names), name))
    os.close(fd)
