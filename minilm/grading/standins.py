"""Refusing stand-ins: every forbidden callable, replaced where it lives, before any student code runs.

`install(banned_sets)` (the grader's zygote, once, for every exercise of every set) makes each
forbidden callable refuse by itself, wherever and however it is called, while an exercise that
forbids it is graded (`armed`):

- a Python function (the library's twin, `torch.nn.functional.cross_entropy`, a method of
  `torch.nn.Linear`): its code object is swapped in place for a gate, so every reference to the
  function (an alias, a `functools.partial`, `map`, a closure, one taken in an earlier cell) runs
  the gate; the gate calls a copy of the original unless the armed exercise forbids it;
- a C function or method (`torch.softmax`, `torch.Tensor.bincount`, `numpy.bincount`, the
  `torch.ops.aten` operators): every place it is stored (each module's namespace, each class's
  dictionary, C types such as `torch._C.TensorBase` included, each `torch.ops` overload) gets a
  Python gate instead. Stand-ins are installed before the notebook runs, so any reference the
  submission can take is a gate;
- `_thread.start_new_thread` (and so `threading`): every thread started afterwards runs with the
  grader's profile hook, which looks for copies of the library's code (minilm.grading.copies).

The arming is process-wide, so a forbidden call refuses on any thread, from Python or from C.
A refusal raises `NotAllowed` and is recorded, so an answer that catches it still gets no points.
Outside graded calls (the notebook's cells, the grader's own code) the gates only pass calls on.
New processes are refused by seccomp in the sandbox (minilm.grading.sandbox), so no process of
the submission can run an original. What remains possible is in docs/instructors.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import inspect
import sys
import types
from typing import Any

ARMED: list[Any] = [None]  # (Banned, watcher state) while a graded call runs (minilm.grading.forbid)
THREAD_PROFILE: list[Any] = [None]  # the profile hook every new thread starts with
_INSTALLED: dict[int, Any] = {}  # id(original) -> (original, gate) (kept alive: ids stay unique)
_ORIGINAL_OF: dict[int, Any] = {}  # id(gate) -> the callable it stands for
_TEMPLATES: dict[int, types.CodeType] = {}
_SETPROFILE = sys.setprofile  # taken before any stand-in exists


def original(obj: Any) -> Any:
    """What `obj` stood for before the stand-ins (the grader's own code calls these)."""
    return _ORIGINAL_OF.get(id(obj), obj)


def gate_codes() -> set[Any]:
    """The code of the gates: a call they pass on was judged by the gate (the profile hook skips it)."""
    inner = [c for f in (_gate_c, _gate_function) for c in f.__code__.co_consts if isinstance(c, types.CodeType)]
    return set(inner)


def _grader_hook(args: tuple, label: str) -> bool:
    """True for threading's own start-up call that gives a new thread the grader's hook."""
    hook = THREAD_PROFILE[0]
    return label.endswith("[tamper]") and hook is not None and len(args) == 1 and args[0] is hook


def _refuse(label: str) -> None:
    from .forbid import NotAllowed, explain

    armed = ARMED[0]
    if armed is not None:
        state = armed[1]
        state[1] = state[1] or label
    raise NotAllowed(explain(label))


def _template(nfree: int) -> types.CodeType:
    """The gate's code, with `nfree` free variables (a function's code may only be swapped for
    code with as many free variables as the function has closure cells)."""
    if nfree not in _TEMPLATES:
        names = [f"_free{i}" for i in range(nfree)]
        lines = ["def _outer():"] + [f"    {n} = None" for n in names] + [
            "    def gate(*args, __minilm_gate__=None, **kwargs):",
            f"        (lambda: ({', '.join(names)},))" if names else "        pass",
            "        return __minilm_gate__(args, kwargs)",
            "    return gate",
        ]
        scope: dict[str, Any] = {}
        exec(compile("\n".join(lines), "<minilm forbidden-call gate>", "exec"), scope)  # noqa: S102 - our own text
        code = scope["_outer"]().__code__
        assert len(code.co_freevars) == nfree, code.co_freevars
        _TEMPLATES[nfree] = code
    return _TEMPLATES[nfree]


def _gate_function(fn: types.FunctionType, label: str) -> None:
    """Swap `fn`'s code for the gate: a copy of the original runs unless the armed exercise forbids it."""
    if id(fn) in _INSTALLED:
        return
    code = fn.__code__
    code_id, fn_id = id(code), id(fn)  # the Banned sets keep both alive
    original = types.FunctionType(code, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)
    original.__kwdefaults__ = fn.__kwdefaults__
    original.__qualname__ = fn.__qualname__
    with contextlib.suppress(ValueError, TypeError):
        fn.__signature__ = inspect.signature(original)

    def dispatch(args: tuple, kwargs: dict) -> Any:
        armed = ARMED[0]
        if armed is not None and not _grader_hook(args, label):
            banned = armed[0]
            if code_id in banned.code_ids:
                _refuse(banned.code_ids[code_id])
            if fn_id in banned.cfuncs:  # a wrapper, forbidden as itself (its code is shared)
                _refuse(banned.cfuncs[fn_id])
        return original(*args, **kwargs)

    fn.__code__ = _template(len(code.co_freevars))
    fn.__kwdefaults__ = {"__minilm_gate__": dispatch}
    _INSTALLED[id(fn)] = (fn, fn)
    _ORIGINAL_OF[id(fn)] = original


def _gate_c(original: Any, key: Any, label: str) -> Any:
    """A Python gate for the C callable `original`; it refuses while the armed exercise forbids `key`."""
    if id(original) in _INSTALLED:
        return _INSTALLED[id(original)][1]
    key_id = id(key)

    def gate(*args: Any, **kwargs: Any) -> Any:
        armed = ARMED[0]
        if armed is not None and key_id in armed[0].cfuncs and not _grader_hook(args, label):
            _refuse(armed[0].cfuncs[key_id])
        return original(*args, **kwargs)

    for attr in ("__name__", "__qualname__", "__doc__", "__module__"):
        with contextlib.suppress(AttributeError, TypeError):
            setattr(gate, attr, getattr(original, attr))
    _INSTALLED[id(original)] = (original, gate)
    _ORIGINAL_OF[id(gate)] = original
    return gate


def _all_classes() -> list[type]:
    out, stack, seen = [], [object], set()
    while stack:
        cls = stack.pop()
        if id(cls) in seen:
            continue
        seen.add(id(cls))
        out.append(cls)
        with contextlib.suppress(TypeError):
            stack += type.__subclasses__(cls)
    return out


def _class_dict(cls: type) -> dict:
    """The real dictionary of a class (for a C type, the one behind its read-only mappingproxy)."""
    return gc.get_referents(cls.__dict__)[0]


def _replace_everywhere(gates: dict[int, tuple[Any, Any]]) -> int:
    """Put each gate where its original is stored: module namespaces and class dictionaries."""
    n = 0
    for mod in list(sys.modules.values()):
        d = getattr(mod, "__dict__", None)
        if not isinstance(d, dict):
            continue
        for name, value in list(d.items()):
            hit = gates.get(id(value))
            if hit is not None and value is hit[0]:
                d[name] = hit[1]
                n += 1
    modified = ctypes.pythonapi.PyType_Modified
    modified.argtypes = [ctypes.py_object]
    for cls in _all_classes():
        try:
            d = _class_dict(cls)
        except (IndexError, TypeError):
            continue
        changed = False
        for name, value in list(d.items()):
            inner = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
            hit = gates.get(id(inner))
            if hit is None or inner is not hit[0]:
                continue
            if isinstance(value, classmethod) or isinstance(inner, types.ClassMethodDescriptorType):
                d[name] = classmethod(hit[1])
            elif isinstance(value, staticmethod) or isinstance(inner, types.BuiltinFunctionType):
                d[name] = staticmethod(hit[1])  # a builtin does not bind; a Python function would
            else:
                d[name] = hit[1]  # a method descriptor: the gate binds like it
            changed = True
            n += 1
        if changed:
            modified(cls)
    return n


def install(banned_sets: list[Any]) -> dict[str, int]:
    """Install the stand-ins of every `forbid.Banned` in `banned_sets` (see the module docstring):
    counts of what was replaced."""
    c_gates: dict[int, tuple[Any, Any]] = {}
    n_py = 0
    for banned in banned_sets:
        for found, obj, label in banned.targets:
            if isinstance(found, types.FunctionType):
                _gate_function(found, label)
                n_py += 1
            elif hasattr(found, "_op") and not isinstance(found, types.BuiltinFunctionType):  # torch.ops
                if not isinstance(found._op, types.FunctionType):
                    found._op = _gate_c(found._op, obj, label)
            elif callable(found) and not isinstance(found, (types.WrapperDescriptorType, types.MethodWrapperType)):
                c_gates[id(found)] = (found, _gate_c(found, obj, label))
    placed = _replace_everywhere(c_gates)
    _wrap_thread_start()
    return {"python": n_py, "c": len(c_gates), "places": placed}


def _wrap_thread_start() -> None:
    """Every thread started from now on runs with THREAD_PROFILE's hook (raw `_thread` ones too)."""
    import _thread

    start = _thread.start_new_thread
    if id(start) in _INSTALLED:
        return

    def start_new_thread(function: Any, args: tuple = (), kwargs: dict | None = None) -> int:
        hook = THREAD_PROFILE[0]

        def run(*a: Any, **k: Any) -> Any:
            if hook is not None:
                _SETPROFILE(hook)
            return function(*a, **k)

        return start(run, tuple(args), dict(kwargs or {}))

    start_new_thread.__name__ = start_new_thread.__qualname__ = "start_new_thread"
    _INSTALLED[id(start)] = (start, start_new_thread)
    gates = {id(start): (start, start_new_thread)}
    joinable = getattr(_thread, "start_joinable_thread", None)  # Python 3.13's threading uses it
    if joinable is not None:

        def start_joinable_thread(function: Any, *args: Any, **kwargs: Any) -> Any:
            hook = THREAD_PROFILE[0]

            def run() -> Any:
                if hook is not None:
                    _SETPROFILE(hook)
                return function()

            return joinable(run, *args, **kwargs)

        gates[id(joinable)] = (joinable, start_joinable_thread)
    _replace_everywhere(gates)
