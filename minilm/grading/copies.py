"""Copies of the library's code, found by what they compile to: `Index(banned)`, `scan(namespace, index)`.

A function pasted from the library into a cell (or `exec`'d from the module's file, shifted by a
line, its variables and helpers renamed, reformatted, its docstring and comments dropped) compiles
to the same instructions as the library's function. `fingerprint(code)` is that compiled form,
normalised: the instructions with their line numbers dropped, local and global names replaced by
their order of first use (builtins and attribute names kept: `x.softmax` is not `x.exp`),
constants by their values (a docstring is no instruction, so it drops out) and nested functions by
their own fingerprints. It is the syntax tree as Python compiled it, so two sources that parse to
the same tree with other names have the same fingerprint, whatever their formatting.

`Index(banned)` holds the fingerprints of an exercise's forbidden Python functions (and the
functions nested in them) of at least MIN_INSTRUCTIONS instructions: below that, a short formula a
student types by hand cannot be told from a copy. `Index.match(code)` says which one a code object
copies (identity with the library's own code is not a copy: calling that is refused elsewhere).
`scan(roots, index, library)` walks everything an answer reaches (the globals its code names,
closures, defaults, classes, modules the submission made, containers, instances) and returns the
first copy: a copy the notebook holds for another purpose costs this exercise nothing. The
grader's child runs `scan` before an exercise and `Index.match` on every Python frame a graded
call starts on any thread (minilm.grading.forbid's hook), so a copy made during the call is
caught as well.
"""

from __future__ import annotations

import builtins
import dis
import sys
import types
from typing import Any

MIN_INSTRUCTIONS = 24  # shorter functions are not compared (see the module docstring)
SKIP = {"RESUME", "CACHE", "NOP", "EXTENDED_ARG", "PRECALL", "COPY_FREE_VARS", "MAKE_CELL"}
LOCAL = {"LOAD_FAST", "STORE_FAST", "DELETE_FAST", "LOAD_FAST_CHECK", "LOAD_FAST_AND_CLEAR", "LOAD_CLOSURE",
         "LOAD_DEREF", "STORE_DEREF", "DELETE_DEREF", "LOAD_CLASSDEREF", "LOAD_FROM_DICT_OR_DEREF",
         "STORE_FAST_LOAD_FAST", "STORE_FAST_STORE_FAST", "LOAD_FAST_LOAD_FAST"}
GLOBAL = {"LOAD_GLOBAL", "STORE_GLOBAL", "DELETE_GLOBAL", "LOAD_NAME", "STORE_NAME", "DELETE_NAME",
          "LOAD_FROM_DICT_OR_GLOBALS"}
_BUILTINS = frozenset(vars(builtins))
_MAX_WALK = 200_000  # objects `scan` looks at, at most


def _const(value: Any) -> Any:
    if isinstance(value, types.CodeType):
        return ("code", fingerprint(value))
    if isinstance(value, (tuple, frozenset)):
        return (type(value).__name__, tuple(_const(v) for v in value))
    return (type(value).__name__, repr(value))


def fingerprint(code: types.CodeType) -> tuple:
    """The normalised compiled form of `code` (see the module docstring)."""
    names: dict[str, str] = {}

    def canon(kind: str, name: Any) -> str:
        key = f"{kind}:{name}"
        if key not in names:
            names[key] = f"{kind}{len(names)}"
        return names[key]

    flags = code.co_flags & 0x3AC  # varargs, varkw, generator, coroutine, async generator
    out: list[tuple] = [("sig", code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, flags)]
    kept = [ins for ins in dis.get_instructions(code) if ins.opname not in SKIP]
    position = {ins.offset: i for i, ins in enumerate(kept)}  # jumps by instruction, not by byte
    for ins in kept:
        op = "LOAD_ATTR" if ins.opname == "LOAD_METHOD" else ins.opname  # 3.11 picks by where names come from
        if op in LOCAL:
            many = isinstance(ins.argval, tuple)  # Python 3.13's paired LOAD_FAST_LOAD_FAST
            arg: Any = tuple(canon("L", n) for n in ins.argval) if many else canon("L", ins.argval)
        elif op in GLOBAL:
            arg = ins.argval if ins.argval in _BUILTINS else canon("G", ins.argval)
        elif op in ("LOAD_CONST", "RETURN_CONST", "KW_NAMES"):
            arg = _const(ins.argval)
        elif ins.opcode in dis.hasjrel or ins.opcode in dis.hasjabs:
            arg = position.get(ins.argval, ins.argval)  # the instruction it jumps to
        elif ins.arg is None:
            arg = None
        else:
            arg = ins.argval if isinstance(ins.argval, (str, int)) else ins.arg
        out.append((op, arg))
    return tuple(out)


def _size(fp: tuple) -> int:
    return len(fp) - 1


def _key(code: types.CodeType) -> tuple[int, ...]:
    """A cheap pre-filter: a copy has as many arguments, locals and names as the original (not
    always as many bytes: Python 3.11 compiles `torch.f(...)` one way when `torch` is imported in the
    same cell, another way when it is not)."""
    return (code.co_argcount, code.co_kwonlyargcount, code.co_nlocals, len(code.co_names),
            len(code.co_freevars), len(code.co_cellvars))


class Index:
    """Fingerprints of the forbidden Python code of one exercise (`Banned.codes`)."""

    def __init__(self, codes: dict[Any, str]) -> None:
        self.originals = {id(c) for c in codes}
        self.keep = list(codes)
        self.by_key: dict[tuple[int, ...], dict[tuple, str]] = {}
        for code, name in codes.items():
            fp = fingerprint(code)
            if _size(fp) >= MIN_INSTRUCTIONS:
                self.by_key.setdefault(_key(code), {})[fp] = f"{name} ({code.co_name})"
        self.seen: dict[int, str | None] = {}  # id(code) -> verdict (the code is kept alive below)
        self.seen_keep: list[Any] = []

    def match(self, code: types.CodeType) -> str | None:
        """The library function `code` is a copy of, or None (the library's own code is no copy)."""
        verdict = self.seen.get(id(code), 0)
        if verdict != 0:
            return verdict  # type: ignore[return-value]
        verdict = None
        if id(code) not in self.originals:
            candidates = self.by_key.get(_key(code))
            if candidates:
                verdict = candidates.get(fingerprint(code))
        self.seen[id(code)] = verdict
        self.seen_keep.append(code)
        return verdict


def index_of(banned: Any) -> Index:
    """The Index of a `forbid.Banned` (built once, kept on it)."""
    if banned.copies is None:
        banned.copies = Index(banned.codes)
    return banned.copies


def _codes_in(code: types.CodeType) -> list[types.CodeType]:
    out = [code]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            out += _codes_in(const)
    return out


def scan(roots: list[Any], index: Index, library: set[int]) -> str | None:
    """Walk what `roots` (an answer: a function or class) define or reach: the first copy of the
    library's code found there, described, or None. Modules whose id is in `library` (loaded before
    the submission ran) are the library itself and are not walked."""
    if not index.by_key:
        return None
    stack, seen = list(roots), set()
    while stack and len(seen) < _MAX_WALK:
        obj = stack.pop()
        if id(obj) in seen or obj is None or isinstance(obj, (str, bytes, int, float, bool)):
            continue
        seen.add(id(obj))
        try:
            if isinstance(obj, types.FunctionType):
                for code in _codes_in(obj.__code__):
                    hit = index.match(code)
                    if hit:
                        return f"{obj.__qualname__} is a copy of the library's {hit}"
                stack += [c.cell_contents for c in obj.__closure__ or () if _filled(c)]
                stack += list(obj.__defaults__ or ()) + list((obj.__kwdefaults__ or {}).values())
                g = obj.__globals__
                if id(g) not in library:  # the globals it names, in the notebook or an exec'd namespace
                    stack += [g[n] for c in _codes_in(obj.__code__) for n in c.co_names if n in g]
            elif isinstance(obj, types.CodeType):
                for code in _codes_in(obj):
                    hit = index.match(code)
                    if hit:
                        return f"a code object ({code.co_name}) is a copy of the library's {hit}"
            elif isinstance(obj, types.ModuleType):
                if id(obj) not in library:
                    stack += list(vars(obj).values())
            elif isinstance(obj, type):
                if obj.__module__ == "__main__" or id(sys.modules.get(obj.__module__)) not in library:
                    stack += list(vars(obj).values())
            elif isinstance(obj, (types.MethodType, staticmethod, classmethod)):
                stack.append(obj.__func__)
            elif isinstance(obj, property):
                stack += [obj.fget, obj.fset, obj.fdel]
            elif isinstance(obj, dict):
                stack += list(obj.values())
            elif isinstance(obj, (list, tuple, set, frozenset)):
                stack += list(obj)
            elif hasattr(obj, "func") and hasattr(obj, "keywords"):  # functools.partial
                stack += [obj.func, *obj.args, *obj.keywords.values()]
            else:
                stack.append(type(obj))
                d = getattr(obj, "__dict__", None)
                if isinstance(d, dict):
                    stack.append(d)
        except Exception:  # noqa: BLE001, S112 - a hostile object's attributes: skip it
            continue
    return None


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return False
    return True


def library_modules() -> set[int]:
    """The ids of every module loaded now (before any student code) and of its namespace: the
    library, which `scan` does not walk (its own code is no copy)."""
    mods = [m for m in list(sys.modules.values()) if isinstance(m, types.ModuleType)]
    return {id(m) for m in mods} | {id(vars(m)) for m in mods}
