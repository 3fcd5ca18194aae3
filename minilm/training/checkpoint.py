"""Checkpoints that survive a kill: atomic save, `weights_only=True` load, RNG capture (taught in 05).

A checkpoint is one file, `<checkpoint_dir>/<run_name>.pt`, holding only tensors and plain
Python values (dicts, lists, tuples, numbers, strings), so it loads with
`torch.load(weights_only=True)`:

    {"model": state_dict, "optimizer": state_dict | None, "scaler": state_dict | None,
     "step": int, "config": dict, "model_class": str, "train_config": dict | None,
     "history": dict | None, "rng": {...}, "extra": dict | None, "format": 1}

"rng" holds torch's CPU and CUDA states, Python's and NumPy's, and the batch generator's; train()
puts its training seconds in "extra". Evaluation needs nothing here: it is re-seeded from
train_config["eval_seed"] at every estimate (see minilm.training).

`save_checkpoint` writes a temporary file in the same folder, flushes and fsyncs it, then
`os.replace`s it over the old one (atomic on POSIX and Windows): a kill at any moment leaves
either the old complete checkpoint or the new complete one, never half a file. Temporary
files left by a killed save are never read, and the next save of the same run removes them.
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_VAR = "MINILM_CHECKPOINT_DIR"
# Test hook, "<step>:<path>": a save at step >= <step> creates the file <path> once its temporary
# file is fully written, then sleeps before renaming, so a test can SIGKILL the process mid-save.
PAUSE_VAR = "MINILM_TEST_PAUSE_IN_SAVE"
FORMAT = 1
_TMP_SUFFIX = ".tmp"


def default_checkpoint_dir() -> Path:
    """$MINILM_CHECKPOINT_DIR, else cache_root()/checkpoints (on Colab: point it at Google Drive)."""
    value = os.environ.get(CHECKPOINT_VAR)
    if value:
        return Path(value).expanduser()
    from ..data.datasets import cache_root

    return cache_root() / "checkpoints"


def checkpoint_path(run_name: str, checkpoint_dir: str | os.PathLike | None = None) -> Path:
    """The checkpoint file of run `run_name`: <checkpoint_dir or default>/<run_name>.pt."""
    folder = Path(checkpoint_dir).expanduser() if checkpoint_dir else default_checkpoint_dir()
    return folder / f"{run_name}.pt"


def _tmp_files(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.*{_TMP_SUFFIX}"))


def capture_rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every RNG a training run draws from: torch CPU, CUDA, Python, NumPy and the batch generator."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),  # (version, tuple of 625 ints, gauss) -- plain values
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)),
                  int(np_state[2]), int(np_state[3]), float(np_state[4])),
        "generator": generator.get_state() if generator is not None else None,
    }


def restore_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Put back what `capture_rng_state` captured (the batch generator only if one is given)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if generator is not None:
        if state["generator"] is None:
            raise ValueError("the checkpoint holds no batch-generator state, but a generator was given")
        generator.set_state(state["generator"])


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside torch.compile's (`_orig_mod`) and DistributedDataParallel's (`module`) wrappers."""
    while True:
        if isinstance(model, torch.nn.parallel.DistributedDataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), torch.nn.Module):
            model = model._orig_mod
        else:
            return model


def _as_dict(obj: Any) -> dict | None:
    if obj is None or isinstance(obj, dict):
        return obj
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    raise TypeError(f"expected a dataclass or a dict, got {type(obj).__name__}")


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    step: int = 0,
    *,
    train_config: Any = None,
    history: Any = None,
    generator: torch.Generator | None = None,
    scaler: torch.amp.GradScaler | None = None,
    extra: dict | None = None,
) -> Path:
    """Atomically write model, optimizer, step, configs, history and RNG states to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in _tmp_files(path):  # left by a save that was killed: never read, now removed
        stale.unlink(missing_ok=True)
    model = unwrap(model)  # torch.compile's or DDP's wrapper: save the plain module's keys
    config = getattr(model, "config", None)
    state = {
        "format": FORMAT,
        "model": model.state_dict(),
        "model_class": type(model).__name__,
        "config": _as_dict(config) if config is not None else None,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "step": int(step),
        "train_config": _as_dict(train_config),
        "history": _as_dict(history),
        "rng": capture_rng_state(generator),
        "extra": extra,
    }
    tmp = path.parent / f".{path.name}.{os.getpid()}{_TMP_SUFFIX}"
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())  # the bytes are on disk before the rename makes them visible
        pause = os.environ.get(PAUSE_VAR)
        if pause and step >= int(pause.split(":", 1)[0]):
            Path(pause.split(":", 1)[1]).touch()
            time.sleep(3600)  # the test kills us here
        os.replace(tmp, path)  # atomic: readers see the old file or the new one
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        except OSError:
            pass  # some network / FUSE file systems (Google Drive) refuse fsync on folders
        finally:
            os.close(fd)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with `torch.load(weights_only=True)`: tensors and plain values only."""
    return torch.load(Path(path), map_location=map_location, weights_only=True)


def restore_checkpoint(
    ckpt: dict,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    generator: torch.Generator | None = None,
    scaler: torch.amp.GradScaler | None = None,
    restore_rng: bool = True,
) -> int:
    """Load the states of a loaded checkpoint into model/optimizer/scaler/RNGs; returns its step."""
    unwrap(model).load_state_dict(ckpt["model"])
    if optimizer is not None and ckpt.get("optimizer") is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    if scaler is not None and ckpt.get("scaler") is not None:
        scaler.load_state_dict(ckpt["scaler"])
    if restore_rng:
        restore_rng_state(ckpt["rng"], generator)
    return int(ckpt["step"])


def model_from_checkpoint(
    ckpt: dict | str | os.PathLike, model_cls: type, config_cls: type,
    map_location: str | torch.device = "cpu",
) -> torch.nn.Module:
    """Rebuild a model from what a checkpoint holds: `model_cls(config_cls(**ckpt["config"]))`."""
    if not isinstance(ckpt, dict):
        ckpt = load_checkpoint(ckpt, map_location=map_location)
    model = model_cls(config_cls(**ckpt["config"]))
    model.load_state_dict(ckpt["model"])
    return model
