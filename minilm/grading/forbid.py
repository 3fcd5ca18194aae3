"""What an exercise may not call while it is checked or graded (`Exercise.forbidden`), enforced.

`resolve(names)` turns dotted names into the callables they stand for, at their depth: a function
(any alias, copy or re-import of it: matched by its code, not its name), a class (constructing it
or calling any of its methods), a module (everything defined in it, submodules too), a C function
or a method of a C type (`torch.softmax`, `torch.Tensor.softmax`: matched however it is reached),
for a PyTorch operator its `torch.ops.aten` twin, for a NumPy function the Python
dispatcher NumPy runs before it. A name whose top-level package is not
installed is skipped (nothing can call it; a debug log says so); a typo inside an installed
package is an error. `Watcher.watching(banned)` then watches every call (a profile hook,
`sys.setprofile`) in the calling thread, where a forbidden call raises `NotAllowed`, and in other
threads, where it is recorded; either way the call counts as a violation. check() and the
grader's child both use it; the grader's child also replaces each forbidden callable where it
lives by a refusing stand-in (minilm.grading.standins) and looks for copies of the library's code
(minilm.grading.copies).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import logging
import os
import sys
import threading
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import standins

# switching the watcher off is itself refused while an answer runs
TAMPER = (
    "sys.setprofile",
    "sys.settrace",
    "threading.setprofile",
    "threading.settrace",
    "threading.setprofile_all_threads",
    "threading.settrace_all_threads",
    "sys.monitoring.register_callback",
    "sys.monitoring.set_events",
    "sys.monitoring.free_tool_id",
)
WHY = "because the exercise asks you to write it"
WHY_TAMPER = "because the grader uses it to see which functions your answer calls"
LOG = logging.getLogger(__name__)


class NotInstalled(ImportError):
    """The top-level package of a forbidden name is not installed: nothing can call it."""


class NotAllowed(BaseException):
    """A checked or graded answer called something its exercise forbids (`Exercise.forbidden`)."""


@dataclass
class Banned:
    """The callables one exercise may not use, in the forms the profile hook sees them."""

    codes: dict[Any, str] = field(default_factory=dict)  # code object -> dotted name
    code_ids: dict[int, str] = field(default_factory=dict)  # id(code object) -> dotted name
    by_place: dict[str, dict[tuple[int, str], str]] = field(default_factory=dict)  # co_name -> ...
    cfuncs: dict[int, str] = field(default_factory=dict)  # id(C function) -> dotted name
    methods: dict[str, list[tuple[type, str]]] = field(default_factory=dict)  # C method name -> (class, name)
    keep: list[Any] = field(default_factory=list)  # keeps every C function alive (ids stay unique)
    names: tuple[str, ...] = ()  # what the exercise declared
    # (object as found, what it stands for): what minilm.grading.standins replaces where it lives
    targets: list[tuple[Any, Any, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # names whose package is not installed
    copies: Any = None  # minilm.grading.copies.Index of the Python code above, built on first use

    def add_code(self, code: Any, name: str) -> None:
        self.codes[code] = name
        self.code_ids[id(code)] = name
        if not code.co_filename.startswith("<"):  # generated code (a dataclass's __init__): by identity only
            place = (code.co_firstlineno, os.path.basename(code.co_filename))
            self.by_place.setdefault(code.co_name, {})[place] = name
        for const in code.co_consts:  # nested functions and lambdas defined inside
            if isinstance(const, types.CodeType):
                self.add_code(const, name)

    def add_cfunc(self, obj: Any, name: str) -> None:
        self.keep.append(obj)
        self.cfuncs[id(obj)] = name


def _import(dotted: str) -> Any:
    """The object a dotted name stands for: the longest importable module, then attributes."""
    parts = dotted.split(".")
    try:
        installed = importlib.util.find_spec(parts[0]) is not None
    except (ImportError, ValueError):
        installed = False
    if not installed:
        raise NotInstalled(f"{parts[0]} is not installed")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(f"no module in {dotted!r}")


def _add(banned: Banned, obj: Any, name: str, seen: set[int], part_of: str = "") -> None:
    """Add everything `obj` (named `name`, inside the module `part_of` a spec named) stands for."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    label = f"{name} (part of {part_of})" if part_of else name
    found = obj
    obj = inspect.unwrap(obj) if callable(obj) else obj
    if found is not obj and callable(found):  # a decorator's wrapper, numpy's C dispatchers
        banned.add_cfunc(found, label)  # matched by identity: wrappers share their code
        banned.targets.append((found, found, label))
        dispatcher = _dispatcher_code(found)
        if dispatcher is not None:  # numpy's: the hook sees its Python dispatcher run, not `found`
            banned.add_code(dispatcher, label)
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    if isinstance(obj, property):
        for f in (obj.fget, obj.fset, obj.fdel):
            if f is not None:
                _add(banned, f, name, seen, part_of)
    elif isinstance(obj, types.ModuleType):
        prefix = obj.__name__ + "."
        for mod in [m for k, m in list(sys.modules.items()) if k == obj.__name__ or k.startswith(prefix)]:
            for member in list(vars(mod).values()):
                kinds = (types.FunctionType, type, types.BuiltinFunctionType)
                if isinstance(member, kinds) and getattr(member, "__module__", None) == mod.__name__:
                    qualname = getattr(member, "__qualname__", "?")
                    _add(banned, member, f"{mod.__name__}.{qualname}", seen, part_of or name)
    elif isinstance(obj, type):
        for attr, member in vars(obj).items():
            if callable(member) or isinstance(member, (staticmethod, classmethod, property)):
                _add(banned, member, name if attr.startswith("__") else f"{name}.{attr}", seen, part_of)
    elif isinstance(obj, types.FunctionType):
        banned.add_code(obj.__code__, label)
        banned.targets.append((obj, obj, label))
    elif isinstance(obj, types.MethodType):
        _add(banned, obj.__func__, name, seen, part_of)
    elif isinstance(obj, types.BuiltinFunctionType):
        banned.add_cfunc(obj, label)
        banned.targets.append((obj, obj, label))
        _add_aten(banned, obj.__name__, label, seen)
    elif isinstance(obj, (types.MethodDescriptorType, types.WrapperDescriptorType, types.ClassMethodDescriptorType)):
        banned.methods.setdefault(obj.__name__, []).append((obj.__objclass__, label))
        banned.add_cfunc(obj, label)  # called unbound (torch.Tensor.softmax(x)) the hook sees this
        banned.targets.append((obj, obj, label))
        _add_aten(banned, obj.__name__, label, seen)
    elif hasattr(obj, "overloads") and hasattr(obj, "_op"):  # torch.ops.aten.<op>
        banned.add_cfunc(obj._op, label)
        banned.targets.append((obj, obj._op, label))
        for ov in obj.overloads():
            overload = getattr(obj, ov)
            banned.add_cfunc(overload._op, label)
            banned.targets.append((overload, overload._op, label))
    elif isinstance(vars(type(obj)).get("__call__"), types.FunctionType):  # an instance with __call__
        _add(banned, vars(type(obj))["__call__"], name, seen, part_of)
    else:
        raise TypeError(f"{name} is a {type(obj).__name__}: not something a call can be matched to")


class _Probe:
    def __array_function__(self, *args: Any, **kwargs: Any) -> Any:
        raise LookupError("stop before the implementation")


def _dispatcher_code(public: Any) -> types.CodeType | None:
    """The code of the Python dispatcher a NumPy function (`numpy.bincount`, an array-function
    dispatcher object) runs first, or None. A profile hook sees neither that object nor a C
    implementation it calls from C, only this code; learnt by calling `public` on probes that stop
    it before its implementation. A dispatcher not named after `public` may serve others: left out."""
    if type(public).__name__ != "_ArrayFunctionDispatcher":
        return None
    try:
        params = inspect.signature(public).parameters.values()
    except (TypeError, ValueError):
        return None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    probes, seen, previous = [_Probe() for p in params if p.kind in positional and p.default is p.empty], [], sys.getprofile()
    sys.setprofile(lambda frame, event, arg: seen.append(frame.f_code) if event == "call" and not seen else None)
    try:  # the first Python frame from here on is the dispatcher's
        public(*probes)
    except Exception:  # noqa: BLE001, S110 - the probe's stop, or the dispatcher refused the probes: it ran
        pass
    finally:
        sys.setprofile(previous)
    name = getattr(public, "__name__", "")
    return seen[0] if seen and seen[0].co_name in (name, f"_{name}_dispatcher") else None


def _add_aten(banned: Banned, op: str, name: str, seen: set[int]) -> None:
    """A PyTorch C function or Tensor method named `op` is also reachable as torch.ops.aten.<op>."""
    torch = sys.modules.get("torch")
    if torch is None or not name.startswith("torch"):
        return
    try:
        packet = getattr(torch.ops.aten, op.removeprefix("special_"))
    except (AttributeError, RuntimeError):
        return
    _add(banned, packet, name, seen)


_CACHE: dict[tuple[str, ...], Banned] = {}


def resolve(names: tuple[str, ...]) -> Banned:
    """The Banned set of an exercise's `forbidden` names (cached); raises naming a bad name."""
    if names in _CACHE:
        return _CACHE[names]
    banned, seen = Banned(names=tuple(names)), set()
    for dotted in names:
        try:
            _add(banned, _import(dotted), dotted, seen)
        except NotInstalled as e:  # cannot be called here, so there is nothing to forbid
            LOG.debug("forbidden name %r skipped: %s", dotted, e)
            banned.skipped.append(dotted)
        except (ImportError, AttributeError, TypeError) as e:
            raise ValueError(f"forbidden name {dotted!r} does not name a callable: {e}") from e
    if names:
        for dotted in TAMPER:
            with contextlib.suppress(ImportError, AttributeError):
                _add(banned, _import(dotted), f"{dotted} [tamper]", seen)
    _CACHE[names] = banned
    return banned


def prepare(exercises: list[Any]) -> list[Banned]:
    """Resolve every exercise's names and index its code for copies now (the zygote does, so the
    child imports and computes nothing later): the Banned sets."""
    from .copies import index_of

    out = []
    for ex in exercises:
        banned = resolve(tuple(ex.forbidden))
        index_of(banned)
        out.append(banned)
    return out


def explain(name: str) -> str:
    """The message a student reads for a forbidden call of `name`."""
    if name.endswith(" [tamper]"):
        return f"not allowed while your answer is checked or graded: {name[:-9]}, {WHY_TAMPER}"
    return f"not allowed in this exercise: {name}, {WHY}"


def _hook(banned: Banned, state: list, raises: bool) -> Callable[..., None]:
    """A profile function for `banned` (kept lean: it runs for every call while an answer runs)."""
    codes_get, by_place, cfuncs_get, methods = banned.codes.get, banned.by_place, banned.cfuncs.get, banned.methods
    method_type, basename = types.BuiltinMethodType, os.path.basename
    copy_of = banned.copies.match if banned.copies is not None else None  # the grader's child builds it
    gates = standins.gate_codes()  # what a stand-in passed on, it judged already

    def hook(frame: Any, event: str, arg: Any) -> None:
        if state[0] is None:  # watching has ended (our own clean-up calls come here)
            return
        if event == "c_call":
            name = cfuncs_get(id(arg))
            if name is None and methods and type(arg) is method_type and arg.__name__ in methods:
                owner = getattr(arg, "__self__", None)
                name = next((n for cls, n in methods[arg.__name__] if isinstance(owner, cls)), None)
        elif event == "call":
            code = frame.f_code
            name = codes_get(code)
            if name is None and code.co_name in by_place:  # a re-imported copy of the module
                name = by_place[code.co_name].get((code.co_firstlineno, basename(code.co_filename)))
            if name is None and copy_of is not None:  # pasted, exec'd, renamed or reformatted
                copied = copy_of(code)
                name = f"a copy of {copied}" if copied else None
        else:
            return
        if name is not None:
            caller = frame if event == "c_call" else frame.f_back
            if caller is not None and caller.f_code in gates:
                return
            state[1] = state[1] or name
            if raises:
                raise NotAllowed(explain(name))

    return hook


class Watcher:
    """Watches calls for the banned callables of the exercise that runs (see the module docstring).

    Make one before any student code runs: it keeps its own references to sys.setprofile and
    friends, so patching those later changes nothing here."""

    def __init__(self) -> None:
        state: list[Any] = [None, None]  # the hook for other threads (None: idle), the first hit
        self._state = state

        def thread_hook(frame: Any, event: str, arg: Any) -> None:
            hook = state[0]
            if hook is not None:
                hook(frame, event, arg)

        self._thread_hook = thread_hook
        own = standins.original  # the grader's child replaced these by stand-ins: use what they stand for
        self._sys_setprofile, self._sys_getprofile = own(sys.setprofile), own(sys.getprofile)
        self._thr_setprofile = own(threading.setprofile)
        self._thr_getprofile = own(getattr(threading, "getprofile", lambda: None))
        self._all_threads = own(getattr(threading, "setprofile_all_threads", None))  # Python 3.12+

    def watch_new_threads(self) -> None:
        """Give every thread started from now on the (normally idle) hook (the grader's child):
        `threading` threads, and through minilm.grading.standins raw `_thread` ones too."""
        self._thr_setprofile(self._thread_hook)
        standins.THREAD_PROFILE[0] = self._thread_hook

    @property
    def hit(self) -> str | None:
        """The first forbidden name used in the current or last watched call, or None."""
        return self._state[1]

    @contextlib.contextmanager
    def watching(self, banned: Banned) -> Iterator[Watcher]:
        """Watch calls while the block runs (does nothing for an exercise that forbids nothing)."""
        state = self._state
        state[1] = None
        if not banned.names:
            yield self
            return
        previous, previous_threads = self._sys_getprofile(), self._thr_getprofile()
        if self._all_threads is not None:
            self._all_threads(self._thread_hook)  # threads started earlier (a pool in a global)
        self._thr_setprofile(self._thread_hook)
        self._sys_setprofile(_hook(banned, state, raises=True))
        state[0] = _hook(banned, state, raises=False)  # armed: from here on every call counts
        standins.ARMED[0] = (banned, state)  # stand-ins refuse on every thread (the grader's child)
        try:
            yield self
        finally:
            standins.ARMED[0] = None
            state[0] = None
            self._sys_setprofile(previous)
            if self._all_threads is not None:
                self._all_threads(None)
                self._sys_setprofile(previous)
            self._thr_setprofile(previous_threads)


def call_watched(watcher: Watcher, banned: Banned, fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) under the watcher; raises NotAllowed (with the message) on any violation."""
    with watcher.watching(banned):
        try:
            value = fn(*args)
        except NotAllowed:
            raise
        except BaseException:
            if watcher.hit:  # the answer caught NotAllowed and failed later: say why
                raise NotAllowed(explain(watcher.hit)) from None
            raise
    if watcher.hit:  # used in another thread, or caught and carried on
        raise NotAllowed(explain(watcher.hit))
    return value
