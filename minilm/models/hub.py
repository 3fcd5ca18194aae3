"""What every real pretrained model from outside the course shares (06-09): the install hint, the error a
notebook catches to skip a section, and whether minilm itself switched the Hub off.

`PretrainedUnavailable` is raised by `models.gpt2.load_gpt2` (online only), `models.llama` (SmolLM2 from
its PyPI package) and `finetune.encoder.minilm_encoder` (MiniLM from its PyPI package) with a message that
says why the model cannot be had here and what fixes it.
"""

from __future__ import annotations

import os

HF_EXTRA = "pip install 'minilm[hf]'"

_offline_set_by_minilm = False  # True once minilm switched HF_HUB_OFFLINE on itself (for a local model)


class PretrainedUnavailable(RuntimeError):
    """A pretrained model cannot be loaded here (package missing, or no network for the Hub)."""


def hub_offline_for_local_files() -> None:
    """Set HF_HUB_OFFLINE=1 (the files are local: never reach for the Hub), remembering that minilm
    did it, so `user_chose_offline()` still lets GPT-2 download when the user did not ask for offline."""
    global _offline_set_by_minilm
    if "HF_HUB_OFFLINE" not in os.environ:
        os.environ["HF_HUB_OFFLINE"] = "1"
        _offline_set_by_minilm = True


def user_chose_offline() -> bool:
    """Whether HF_HUB_OFFLINE is set by the user (not by `hub_offline_for_local_files`)."""
    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0") and not _offline_set_by_minilm
