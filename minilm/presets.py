"""Presets: every size in a notebook (data slice, model size, steps) comes from here.

MINILM_PRESET = smoke | cpu | gpu. Default: gpu when CUDA is present, else cpu.
`smoke` is for tests (seconds per notebook), never for students.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

PRESETS = ("smoke", "cpu", "gpu")
T = TypeVar("T")


@dataclass(frozen=True)
class Preset:
    """The active preset; `pick(smoke=, cpu=, gpu=)` chooses the value for it."""

    name: str  # one of PRESETS

    def pick(self, *, smoke: T, cpu: T, gpu: T) -> T:
        """Return the value given for this preset: `steps = P.pick(smoke=20, cpu=2000, gpu=5000)`."""
        return {"smoke": smoke, "cpu": cpu, "gpu": gpu}[self.name]


def preset(name: str | None = None) -> Preset:
    """The preset named by `name`, else $MINILM_PRESET, else gpu with CUDA and cpu without."""
    if not name and not os.environ.get("MINILM_PRESET"):
        import torch  # only to ask for CUDA (so `import minilm` stays light)

        name = "gpu" if torch.cuda.is_available() else "cpu"
    name = name or os.environ["MINILM_PRESET"]
    name = name.strip().lower()
    if name not in PRESETS:
        raise ValueError(
            f"unknown preset {name!r} (from MINILM_PRESET or the argument); "
            f"use one of {', '.join(PRESETS)}, e.g. `export MINILM_PRESET=cpu`."
        )
    return Preset(name)
