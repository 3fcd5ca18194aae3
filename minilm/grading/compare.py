"""Values as data, and the comparison the verdict rests on.

`encode` turns what an exercise returned into JSON-able data (tagged lists, tuples, dicts, tensors
of any stride or view as raw bytes + dtype + shape, NumPy's own scalar types as plain numbers); it
refuses anything else, so an object whose `==` is always true cannot travel. `decode` rebuilds plain
values from that data and refuses anything malformed. `same(expected, got)` compares two decoded
values strictly (types, shapes, dtypes, then values) and explains the first difference, except that a
number where a float is expected is compared by value within the exercise's tolerance whatever its
type (float, int, NumPy number, 0-d tensor). The grader runs `decode` and `same` in its own process.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import numpy as np
import torch

MAX_DEPTH = 64  # deeper nesting than this is refused
MAX_ITEMS = 5_000_000  # total number of values accepted in one encoded result


class NotData(TypeError):
    """A returned value that is not plain data (or is malformed data)."""


def _tname(x: Any) -> str:
    t = type(x)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


_NP_SCALARS = (np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8, np.uint64,
               np.uint32, np.uint16, np.uint8)


def _dense(x: torch.Tensor) -> torch.Tensor:
    """A contiguous CPU copy of `x` whatever its strides (expanded, transposed, a view with an offset)
    and view bits (negated, conjugated); NotData for a layout that holds no plain values."""
    if x.layout != torch.strided or x.is_nested or x.is_quantized or x.is_complex() or x.is_meta:
        kind = "nested" if x.is_nested else "meta" if x.is_meta else f"{x.layout} / {x.dtype}"
        raise NotData(f"a {kind} tensor is not supported; return an ordinary (dense, real, CPU) tensor")
    try:
        with torch.no_grad():
            return x.detach().cpu().resolve_conj().resolve_neg().contiguous().clone()
    except (RuntimeError, NotImplementedError) as e:  # a device or tensor subclass we cannot read
        raise NotData(f"the returned tensor's values could not be read ({e}); return a plain CPU tensor") from e


def encode(x: Any, _depth: int = 0) -> Any:
    """Plain value -> JSON-able data; raises NotData naming the offending type."""
    if _depth > MAX_DEPTH:
        raise NotData("nested too deeply")
    t = type(x)
    if x is None or t in (bool, int, str):
        return x
    if t is float:
        return x if math.isfinite(x) else {"t": "float", "v": repr(x)}
    if t in (list, tuple):
        return {"t": t.__name__, "v": [encode(v, _depth + 1) for v in x]}
    if t is dict:
        return {
            "t": "dict",
            "v": [[encode(k, _depth + 1), encode(v, _depth + 1)] for k, v in x.items()],
        }
    if t in _NP_SCALARS:  # NumPy's own number types (never a subclass): the plain number they hold
        return encode(x.item(), _depth)
    if t is torch.Tensor:
        arr = _dense(x)
        dtype = str(arr.dtype).removeprefix("torch.")
        raw = arr.reshape(-1).view(torch.uint8).numpy().tobytes() if arr.numel() else b""  # shape travels apart
        return {
            "t": "tensor",
            "dtype": dtype,
            "shape": list(arr.shape),
            "b64": base64.b64encode(raw).decode(),
        }
    if t is np.ndarray:
        if x.dtype.kind not in "biuf":
            raise NotData(f"numpy array of dtype {x.dtype} is not supported")
        arr = np.ascontiguousarray(x)
        return {
            "t": "ndarray",
            "dtype": str(arr.dtype),
            "shape": list(arr.shape),
            "b64": base64.b64encode(arr.tobytes()).decode(),
        }
    hint = ""
    if isinstance(x, (bool, int, float, str, list, tuple, dict, np.generic)):
        base = (
            next(b for b in (bool, int, float, str, list, tuple, dict) if isinstance(x, b))
            if not isinstance(x, np.generic)
            else type(x.item())
        )
        hint = f" (return a plain {base.__name__}, e.g. {base.__name__}(value))"
    elif isinstance(x, torch.Tensor):
        hint = " (return a plain torch.Tensor)"
    raise NotData(f"returned a {_tname(x)}, which is not plain data{hint}")


_TORCH_DTYPES = {
    str(d).removeprefix("torch."): d
    for d in (
        torch.float64,
        torch.float32,
        torch.float16,
        torch.bfloat16,
        torch.int64,
        torch.int32,
        torch.int16,
        torch.int8,
        torch.uint8,
        torch.bool,
    )
}


def decode(data: Any, _depth: int = 0, _budget: list[int] | None = None) -> Any:
    """JSON data -> plain value (lists, tuples, dicts, tensors); raises NotData when malformed."""
    budget = _budget if _budget is not None else [MAX_ITEMS]
    budget[0] -= 1
    if budget[0] < 0 or _depth > MAX_DEPTH:
        raise NotData("result too large or nested too deeply")
    t = type(data)
    if data is None or t in (bool, int, str, float):
        return data
    if t is not dict or not isinstance(data.get("t"), str):
        raise NotData(f"malformed value of type {t.__name__}")
    tag = data["t"]
    if tag == "float" and data.get("v") in ("nan", "inf", "-inf"):
        return float(data["v"])
    if tag in ("list", "tuple") and type(data.get("v")) is list:
        items = [decode(v, _depth + 1, budget) for v in data["v"]]
        return items if tag == "list" else tuple(items)
    if tag == "dict" and type(data.get("v")) is list:
        out = {}
        for pair in data["v"]:
            if type(pair) is not list or len(pair) != 2:
                raise NotData("malformed dict entry")
            key = decode(pair[0], _depth + 1, budget)
            try:
                seen = key in out
            except TypeError as e:  # unhashable key such as a list
                raise NotData(f"dict key {_short(key)} is not hashable") from e
            if seen:  # Python would merge them (1 == 1.0 == True): refuse, never merge
                raise NotData(f"two dict keys that Python treats as equal: {_short(key)}")
            out[key] = decode(pair[1], _depth + 1, budget)
        return out
    if tag in ("tensor", "ndarray"):
        shape, b64, dtype = data.get("shape"), data.get("b64"), data.get("dtype")
        if (
            type(shape) is not list
            or not all(type(s) is int and s >= 0 for s in shape)
            or type(b64) is not str
            or type(dtype) is not str
        ):
            raise NotData("malformed array")
        raw = base64.b64decode(b64.encode(), validate=True)
        n = math.prod(shape)
        budget[0] -= n
        if budget[0] < 0:
            raise NotData("result too large")
        if tag == "ndarray":
            try:
                npdt = np.dtype(dtype)
            except TypeError as e:
                raise NotData(f"unknown dtype {dtype}") from e
            if npdt.kind not in "biuf" or len(raw) != n * npdt.itemsize:
                raise NotData("malformed array bytes")
            return np.frombuffer(raw, dtype=npdt).reshape(shape).copy()
        tdt = _TORCH_DTYPES.get(dtype)
        if tdt is None:
            raise NotData(f"unknown dtype {dtype}")
        itemsize = torch.empty((), dtype=tdt).element_size()
        if len(raw) != n * itemsize:
            raise NotData("malformed tensor bytes")
        if n == 0:
            return torch.empty(shape, dtype=tdt)
        return torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(tdt).reshape(shape).clone()
    raise NotData(f"unknown tag {tag!r}")


def _short(x: Any, limit: int = 80) -> str:
    s = repr(x)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    if isinstance(x, np.ndarray):
        return f"numpy array of shape {x.shape} and dtype {x.dtype}"
    if isinstance(x, (list, tuple, dict, str)):
        return f"{type(x).__name__} of length {len(x)}"
    return "None" if x is None else f"{type(x).__name__} {_short(x)}"


def _arrays_same(e: Any, g: Any, where: str, rtol: float, atol: float) -> tuple[bool, str]:
    if tuple(e.shape) != tuple(g.shape) or e.dtype != g.dtype:
        return False, f"{where}expected {_describe(e)}, got {_describe(g)}"
    et, gt = torch.as_tensor(e), torch.as_tensor(g)
    if et.is_floating_point():
        ok = torch.isclose(gt.double(), et.double(), rtol=rtol, atol=atol, equal_nan=True)
    else:
        ok = gt == et
    if bool(ok.all()):
        return True, ""
    bad = (~ok).nonzero()[0].tolist()
    idx = tuple(bad)
    n_bad = int((~ok).sum())
    near = et.is_floating_point() and bool(
        torch.isclose(gt.double(), et.double(), rtol=_NEAR, atol=atol, equal_nan=True).all()
    )
    return False, (
        f"{where}{n_bad} of {ok.numel()} values differ; first at index {idx}: "
        f"expected {et[idx].item()!r}, got {gt[idx].item()!r}"
        + (_last_digits(et[idx].item(), gt[idx].item(), rtol, atol) if near else "")
    )


_NEAR = 1e-3  # a value this close to the expected one differs "only in the last digits"


def _last_digits(e: float, g: float, rtol: float, atol: float) -> str:
    rel = abs(g - e) / max(abs(e), 1e-300)
    return (
        f" (they differ only in the last digits: relative difference {rel:.1e}, more than this "
        f"exercise allows (rtol {rtol:g}, atol {atol:g}); compute in float64 or Python floats)"
    )


def _is_number(x: Any) -> bool:
    """A real number of any type: int, float, or a 0-d tensor / array of a real dtype (not bool)."""
    if type(x) in (int, float):
        return True
    if isinstance(x, torch.Tensor):
        return x.ndim == 0 and x.dtype != torch.bool and not x.is_complex()
    return isinstance(x, np.ndarray) and x.ndim == 0 and x.dtype.kind in "iuf"


def _is_float(x: Any) -> bool:
    """A float expected as a value: a Python float or a 0-d floating tensor / array."""
    if type(x) is float:
        return True
    if isinstance(x, torch.Tensor):
        return x.ndim == 0 and x.is_floating_point()
    return isinstance(x, np.ndarray) and x.ndim == 0 and x.dtype.kind == "f"


def _numbers_same(e: Any, g: Any, at: str, rtol: float, atol: float) -> tuple[bool, str]:
    """A float against any real number, by value within rtol/atol (nan equals nan)."""
    ev, gv = float(e), float(g)
    if math.isclose(gv, ev, rel_tol=rtol, abs_tol=atol) or (math.isnan(gv) and math.isnan(ev)):
        return True, ""
    near = math.isfinite(ev) and math.isclose(gv, ev, rel_tol=_NEAR, abs_tol=atol)
    return False, f"{at}expected {_short(e)}, got {_short(g)}" + (_last_digits(ev, gv, rtol, atol) if near else "")


def strict_key(key: Any) -> str:
    """A dict key as text that tells types apart ((1, 2), (1.0, 2.0) and (True, 2) all differ)."""
    return json.dumps(encode(key), sort_keys=True)


def same(
    expected: Any,
    got: Any,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    where: str = "",
    ordered_keys: bool = False,
) -> tuple[bool, str]:
    """(True, "") when `got` equals `expected` (same types, dict keys by type and value, in the same
    order with `ordered_keys`; floats within rtol/atol), else (False, why)."""
    at = f"at {where}: " if where else ""
    more = {"ordered_keys": ordered_keys}
    if _is_float(expected) and _is_number(got):  # 0.6 and float32's 0.6000000238 are the same answer
        return _numbers_same(expected, got, at, rtol, atol)
    if type(expected) is not type(got):
        return False, f"{at}expected {_describe(expected)}, got {_describe(got)}"
    if isinstance(expected, (torch.Tensor, np.ndarray)):
        return _arrays_same(expected, got, at, rtol, atol)
    if type(expected) in (list, tuple):
        if len(expected) != len(got):
            return False, (
                f"{at}expected {type(expected).__name__} of length {len(expected)}, "
                f"got length {len(got)}: {_short(got)}"
            )
        for i, (e, g) in enumerate(zip(expected, got)):
            ok, why = same(e, g, rtol, atol, f"{where}[{i}]", **more)
            if not ok:
                return ok, why
        return True, ""
    if type(expected) is dict:
        want = {strict_key(k): k for k in expected}
        have = {strict_key(k): k for k in got}
        missing = [want[s] for s in want if s not in have]
        extra = [have[s] for s in have if s not in want]
        if missing or extra:
            parts = [
                f"{len(missing)} missing key(s), e.g. {_short(missing[0])}" if missing else "",
                f"{len(extra)} unexpected key(s), e.g. {_short(extra[0])}" if extra else "",
            ]
            hint = " (keys are compared by type too: 1, 1.0 and True differ)" if len(missing) == len(extra) else ""
            return False, f"{at}dict keys differ: " + "; ".join(p for p in parts if p) + hint
        if ordered_keys and list(want) != list(have):
            i = next(i for i, (a, b) in enumerate(zip(want, have)) if a != b)
            return False, (
                f"{at}dict keys in the wrong order: key {i} should be {_short(want[list(want)[i]])}, "
                f"got {_short(have[list(have)[i]])} (the order of first appearance is asked for)"
            )
        for s, k in want.items():
            ok, why = same(expected[k], got[have[s]], rtol, atol, f"{where}[{k!r}]", **more)
            if not ok:
                return ok, why
        return True, ""
    if expected == got:
        return True, ""
    if type(expected) is str:
        i = next(
            (i for i, (a, b) in enumerate(zip(expected, got)) if a != b),
            min(len(expected), len(got)),
        )
        return False, (
            f"{at}strings differ at character {i}: expected {_short(expected[i : i + 20])}, "
            f"got {_short(got[i : i + 20])} (lengths {len(expected)} and {len(got)})"
        )
    return False, f"{at}expected {_short(expected)}, got {_short(got)}"
