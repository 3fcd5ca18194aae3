"""minilm: the helper library of a course that builds language models from raw text to a GPT."""

__version__ = "0.1.0"

from .presets import Preset, preset
from .runtime import about, autocast, get_device, grad_scaler, precision_for, set_seed

__all__ = [
    "Preset",
    "about",
    "autocast",
    "get_device",
    "grad_scaler",
    "precision_for",
    "preset",
    "set_seed",
]
