"""A failing case as code a student can paste into a cell and run: `call_text(name, params, args)`.

Plain values are written out in full (Python literals that give back exactly the same value),
tensors as `torch.tensor([...], dtype=...)` with every value, and tensors a spec made with
`spec.seeded` as their seeded constructor (`torch.manual_seed(123); x = torch.randn(2, 3, 4)`),
hoisted into a variable named after the parameter. check() and the grader's feedback use it; a
test proves that running the text rebuilds every grading input of every set exactly.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .spec import RECIPE

INLINE = 60  # an argument longer than this goes on its own line, as a variable
_FLOAT_DEFAULT = {torch.float32: "", torch.int64: "", torch.bool: ""}  # what torch.tensor infers


def _float(x: float, np_type: Any = None) -> str:
    if math.isnan(x):
        return "float('nan')"
    if math.isinf(x):
        return "float('inf')" if x > 0 else "float('-inf')"
    return str(np_type(x)) if np_type is not None else repr(x)


def _nested(values: Any, fmt: Any) -> str:
    if isinstance(values, list):
        return "[" + ", ".join(_nested(v, fmt) for v in values) + "]"
    return fmt(values)


def _tensor(t: torch.Tensor) -> str:
    dtype = "" if t.dtype in _FLOAT_DEFAULT else f", dtype={t.dtype}"
    if t.numel() == 0:
        return f"torch.empty({tuple(t.shape)}{dtype or ', dtype=' + str(t.dtype)})"
    if t.dtype.is_floating_point:
        np_type = np.float64 if t.dtype == torch.float64 else np.float32
        body = _nested(t.detach().cpu().double().tolist(), lambda v: _float(v, np_type))
    else:
        body = _nested(t.detach().cpu().tolist(), repr)
    return f"torch.tensor({body}{dtype})"


def as_code(value: Any, hoist: list[str] | None = None, name: str = "x") -> str:
    """A Python expression for `value` (needs `import torch` / `import numpy as np`); tensors made
    by spec.seeded are appended to `hoist` as `torch.manual_seed(s); name = code` lines."""
    t = type(value)
    if value is None or t in (bool, int, str):
        return repr(value)
    if t is float:
        return _float(value)
    if t in (list, tuple):
        items = [as_code(v, hoist, f"{name}_{i}") for i, v in enumerate(value)]
        if t is tuple:
            return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
        return "[" + ", ".join(items) + "]"
    if t is dict:
        parts = [f"{as_code(k, hoist, name)}: {as_code(v, hoist, f'{name}_{i}')}" for i, (k, v) in enumerate(value.items())]
        return "{" + ", ".join(parts) + "}"
    if isinstance(value, torch.Tensor):
        recipe = getattr(value, RECIPE, None)
        if recipe is not None and hoist is not None:
            seed, code = recipe
            hoist.append(f"torch.manual_seed({seed}); {name} = {code}")
            return name
        return _tensor(value)
    if isinstance(value, np.ndarray):
        body = _nested(value.tolist(), repr)
        return f"np.array({body}, dtype=np.{value.dtype})"
    return repr(value)


def call_text(fn_name: str, params: list[str], args: tuple, show_call: str = "") -> str:
    """Lines that rebuild `args` and call `fn_name` on them (paste-able into a notebook cell)."""
    names = list(params) + [f"arg{i}" for i in range(len(params), len(args))]
    lines: list[str] = []
    parts = []
    for name, value in zip(names, args):
        code = as_code(value, lines, name)
        if len(code) > INLINE and code != name:
            lines.append(f"{name} = {code}")
            code = name
        parts.append(code)
    call = show_call.format(*parts, id=fn_name) if show_call else f"{fn_name}({', '.join(parts)})"
    return "\n".join(lines + [call])
