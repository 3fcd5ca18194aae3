"""minilm: the helper library of a course that builds language models from raw text to a GPT and an assistant.

The subpackages follow the course's chain (docs/architecture.md opens with the map):

    data -> models -> training -> generation -> finetune -> align -> bias -> cli      grading (beside them)

The core beside them: `runtime` (device, precision, seeds), `presets` (smoke / cpu / gpu), `recipes` (what
each preset changes, for every recipe of the course, in one file), `plotting`, `notebook_setup`.

`import minilm` loads nothing heavy (not even torch); a front-door function, a core module or a
subpackage is imported the first time it is used
(`minilm.training.zoo.load_model(...)` works after a plain `import minilm`).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

SUBPACKAGES = ("data", "models", "training", "generation", "finetune", "align", "bias", "grading", "cli")
CORE = ("runtime", "presets", "recipes", "plotting", "notebook_setup")
# the core's front door: `P = minilm.preset()`, `device = minilm.get_device()`, ...
FRONT_DOOR = {"Preset": "presets", "preset": "presets", "about": "runtime", "autocast": "runtime",
              "get_device": "runtime", "grad_scaler": "runtime", "precision_for": "runtime", "set_seed": "runtime"}

__all__ = ["Preset", "about", "autocast", "get_device", "grad_scaler", "precision_for", "preset", "set_seed"]


def __getattr__(name: str):
    """Import on first use: a subpackage (`minilm.training`), a core module, or a front-door name."""
    if name in SUBPACKAGES or name in CORE:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    if name in FRONT_DOOR:
        value = getattr(importlib.import_module(f".{FRONT_DOOR[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'minilm' has no attribute {name!r}; its subpackages are {', '.join(SUBPACKAGES)}")


def __dir__() -> list[str]:
    return sorted({*globals(), *SUBPACKAGES, *CORE, *FRONT_DOOR})
