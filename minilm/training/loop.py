"""One training loop for every language model of the course (written out by hand in 02, used 02-07).

    cfg = TrainConfig(max_steps=2000, learning_rate=3e-3, eval_interval=200, run_name="my-run", resume=True)
    history = train(model, get_batch, cfg, device, generator=g)   # interrupted? run the cell again

`get_batch("train" | "val")` returns `(x, y)`, both `(B, T)` int64 on `device`. Pass the
`torch.Generator` that `get_batch` draws from as `generator=`: checkpoints capture its state, so
a resumed run replays exactly the batches of an uninterrupted one.

Evaluation draws its batches through the same `get_batch`, on streams of its own
(`eval_streams`): for each estimate, `generator` and the global RNGs are set to
`cfg.eval_seed`, then put back where training left them. Every evaluation thus measures the
same batches, and evaluating (when, how often, or an extra final one) never changes the batches
training sees; evaluation keeps no state between estimates, so a checkpoint needs none for it.

With a `run_name`, the run saves a checkpoint every `checkpoint_interval` steps (by default at
every evaluation), at the end, and where it was interrupted. A checkpoint holds everything the
loop's future depends on: weights, optimizer and GradScaler state, step, every RNG (torch, CUDA,
NumPy, Python, the batch generator), the history and the config. An interrupt (Ctrl-C, a notebook's stop button) lets the
current step finish, saves a checkpoint at that step and raises KeyboardInterrupt, so nothing
is lost; `resume=True` continues from the checkpoint, on the CPU to bit-identical weights. To use
your own optimizer (e.g. parameter groups for a GPT) pass `optimizer=`; the schedule sets `lr`
on each of its groups, scaled by a group's optional `"lr_scale"` entry.
"""

from __future__ import annotations

import contextlib
import math
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..models.base import check_choices
from ..runtime import autocast, configure_threads, grad_scaler
from .checkpoint import (
    checkpoint_path,
    load_checkpoint,
    restore_checkpoint,
    save_checkpoint,
    unwrap,
)
from .distributed import SingleProcess
from .optim import configure_optimizer

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class TrainConfig:
    """Everything the loop needs; override with `dataclasses.replace(cfg, max_steps=...)`."""

    max_steps: int = 1000  # optimisation steps in total (a resumed run stops here too)
    learning_rate: float = 1e-3  # peak learning rate
    min_lr: float = 1e-4  # floor of the cosine decay
    warmup_steps: int = 0  # linear warmup from lr/warmup to lr
    lr_schedule: Literal["cosine", "constant"] = "cosine"  # warmup then cosine down to min_lr, or constant
    lr_decay_steps: int | None = None  # cosine reaches min_lr here (None: max_steps)
    weight_decay: float = 0.01  # AdamW decoupled weight decay (on matrices only, see make_optimizer)
    betas: tuple[float, float] = (0.9, 0.99)  # AdamW betas
    eps: float = 1e-8  # AdamW epsilon
    grad_clip: float | None = 1.0  # clip the global gradient norm to this (None: no clipping)
    grad_accum_steps: int = 1  # micro-batches per optimisation step
    eval_interval: int = 100  # estimate train/val loss every this many steps (and at the end)
    eval_iters: int = 20  # batches averaged per estimate
    eval_seed: int = 12345  # evaluation batches come from this seed: the same batches every time
    checkpoint_interval: int | None = None  # checkpoint every this many steps (None: every eval_interval; 0: none)
    checkpoint_dir: str | None = None  # None: $MINILM_CHECKPOINT_DIR or cache_root()/checkpoints
    run_name: str | None = None  # checkpoint file <checkpoint_dir>/<run_name>.pt (None: no checkpoints)
    resume: bool = False  # continue from the run's checkpoint when one exists
    progress: bool = True  # show a tqdm progress bar with the loss

    def __post_init__(self) -> None:
        check_choices(self)
        for name in ("eval_interval", "eval_iters", "grad_accum_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)} must be 1 or more")
        if self.max_steps < 0 or (self.checkpoint_interval or 0) < 0:
            raise ValueError("TrainConfig.max_steps and checkpoint_interval must be 0 or more")

    @property
    def save_every(self) -> int:
        """Steps between periodic checkpoints of a named run (0: none; the end and interrupts always save)."""
        return self.eval_interval if self.checkpoint_interval is None else self.checkpoint_interval


# The fields that change what a step does; a checkpoint resumes only under the same values.
# (max_steps and lr_decay_steps may change: that extends a run; evaluation and bookkeeping may too.)
RESUME_FIELDS = ("learning_rate", "min_lr", "warmup_steps", "lr_schedule", "weight_decay", "betas",
                 "eps", "grad_clip", "grad_accum_steps")


@dataclass
class History:
    """What a run measured: estimates at eval steps, plus the loss of every step."""

    steps: list[int] = field(default_factory=list)  # steps at which losses were estimated
    train_loss: list[float] = field(default_factory=list)  # estimated train loss at `steps`
    val_loss: list[float] = field(default_factory=list)  # estimated val loss at `steps`
    lr: list[float] = field(default_factory=list)  # learning rate at `steps`
    tokens_per_s: list[float] = field(default_factory=list)  # training throughput since the last eval
    wall_time: list[float] = field(default_factory=list)  # training seconds since the start at `steps`
    step_loss: list[float] = field(default_factory=list)  # loss of every optimisation step (noisy)

    @classmethod
    def from_dict(cls, d: dict | None) -> History:
        """Rebuild a History from `asdict(history)` (as stored in a checkpoint)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: list(v) for k, v in (d or {}).items() if k in names})


def get_lr(step: int, cfg: TrainConfig) -> float:
    """The learning rate at `step`: linear warmup, then cosine to `min_lr` (or constant). Pure."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return cfg.learning_rate
    if cfg.lr_schedule != "cosine":
        raise ValueError(f"unknown lr_schedule {cfg.lr_schedule!r}; use 'cosine' or 'constant'")
    decay_steps = cfg.lr_decay_steps if cfg.lr_decay_steps is not None else cfg.max_steps
    if step >= decay_steps:
        return cfg.min_lr
    ratio = (step - cfg.warmup_steps) / max(1, decay_steps - cfg.warmup_steps)
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))  # 1 -> 0
    return cfg.min_lr + coeff * (cfg.learning_rate - cfg.min_lr)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """The optimizer of every run in the course: AdamW with cfg's lr, betas, eps and weight decay (on
    matrices only) on the device of `model`'s parameters (`minilm.training.optim.configure_optimizer`). Notebook 05."""
    device = next(model.parameters()).device
    return configure_optimizer(model, cfg.learning_rate, cfg.weight_decay, cfg.betas, device, eps=cfg.eps)


@contextlib.contextmanager
def eval_streams(generator: torch.Generator | None, seed: int) -> Iterator[None]:
    """Inside: `generator` and the global RNGs (torch CPU, NumPy, Python) start from `seed`; after: they
    are back where they were. Evaluation runs inside, so it never moves training's random streams."""
    saved = generator.get_state() if generator is not None else None
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):  # torch's CPU generator comes back on exit
        torch.default_generator.manual_seed(seed)  # (torch.manual_seed would reseed CUDA too)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        if generator is not None:
            generator.manual_seed(seed)
        try:
            yield
        finally:
            if generator is not None:
                generator.set_state(saved)
            np.random.set_state(np_state)
            random.setstate(py_state)


@torch.no_grad()
def estimate_loss(
    model: nn.Module, get_batch: Callable[[str], Batch], eval_iters: int,
    device: torch.device | str, splits: tuple[str, ...] = ("train", "val"),
) -> dict[str, float]:
    """Mean loss over `eval_iters` batches of each split, in eval mode and without gradients."""
    was_training = model.training
    model.eval()
    out = {}
    for split in splits:
        losses = torch.zeros(eval_iters)
        for k in range(eval_iters):
            x, y = get_batch(split)
            with autocast(device):
                _, loss = model(x, y)
            losses[k] = loss.float().item()
        out[split] = losses.mean().item()
    model.train(was_training)
    return out


class _Interrupt:
    """While a checkpointed run trains, the first SIGINT (Ctrl-C, a notebook's stop button) only asks the
    loop to stop after the current step; a second one stops at once. Main thread only (signals)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\ninterrupted: finishing this step and saving a checkpoint (interrupt again to stop now)")

    def __enter__(self) -> _Interrupt:  # noqa: PYI034 (Self needs Python 3.11)
        if self.enabled:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled:
            signal.signal(signal.SIGINT, self._previous if self._previous is not None
                          else signal.default_int_handler)


def _saved_config(saved: dict, config):
    """The saved config dict as `config`'s class (fields added since it was saved take their defaults, so a
    checkpoint from before a new option still resumes); the dict itself when it does not fit the class."""
    try:
        return type(config)(**saved)
    except (TypeError, ValueError):
        return saved


def check_resumable(ckpt: dict, cfg: TrainConfig, model: nn.Module) -> None:
    """Raise ValueError when checkpoint `ckpt` was trained with other RESUME_FIELDS or another model config."""
    def plain(v):  # a tuple may come back from a checkpoint as a list
        return tuple(v) if isinstance(v, list | tuple) else v

    saved, now = ckpt.get("train_config") or {}, asdict(cfg)
    diff = [f"{k}: {saved[k]!r} there, {now[k]!r} here" for k in RESUME_FIELDS
            if k in saved and plain(saved[k]) != plain(now[k])]
    config = getattr(unwrap(model), "config", None)
    if ckpt.get("config") is not None and config is not None and _saved_config(ckpt["config"], config) != config:
        diff.append(f"model config: {ckpt['config']} there, {asdict(config)} here")
    if diff:
        raise ValueError(
            f"the checkpoint of run {cfg.run_name!r} was saved with other settings ("
            + "; ".join(diff) + "). To continue it, use its settings; to start afresh, pick another "
            f"run_name or delete it: minilm.training.checkpoint.checkpoint_path({cfg.run_name!r}).unlink()"
        )


def train(
    model: nn.Module,
    get_batch: Callable[[str], Batch],
    cfg: TrainConfig,
    device: torch.device | str,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    generator: torch.Generator | None = None,
    strategy: SingleProcess | None = None,
) -> History:
    """Train `model` for `cfg.max_steps` steps on batches from `get_batch`; returns the History. Notebook 02.

    `strategy` (default: one process) is `minilm.training.distributed.DDPStrategy` under torchrun, `model` then
    a DistributedDataParallel: rank 0 alone writes, evaluations are averaged over the processes."""
    strategy = strategy or SingleProcess()
    configure_threads()  # once per process, before any training: threads for the cores that are free
    device = torch.device(device)
    model.to(device)
    model.train()
    if optimizer is None:
        optimizer = make_optimizer(model, cfg)
    scaler = grad_scaler(device)
    history, step, elapsed = History(), 0, 0.0
    ckpt_file = checkpoint_path(cfg.run_name, cfg.checkpoint_dir) if cfg.run_name else None
    ckpt = None
    if cfg.resume and ckpt_file is not None and ckpt_file.exists():
        ckpt = load_checkpoint(ckpt_file)  # on the CPU: RNG states must stay there
        check_resumable(ckpt, cfg, model)
        step = restore_checkpoint(ckpt, model, optimizer, generator=generator, scaler=scaler)
        history = History.from_dict(ckpt["history"])
        elapsed = (ckpt.get("extra") or {}).get("train_seconds", 0.0)
        if strategy.is_main and cfg.progress:
            print(f"resumed {ckpt_file} at step {step}")
    strategy.resumed(ckpt)
    if step >= cfg.max_steps:  # the run had already finished
        return history

    tokens, t0 = 0, time.perf_counter()

    def save(at: int) -> None:
        if ckpt_file is not None:
            seconds = elapsed + time.perf_counter() - t0  # training time so far, evaluation excluded
            strategy.save(lambda shared: save_checkpoint(
                ckpt_file, model, optimizer, at, train_config=asdict(cfg), history=history,
                generator=generator, scaler=scaler, extra={"train_seconds": seconds, **shared}))

    # Step losses wait on the device in a buffer allocated once (no host sync per step; a list of
    # tiny tensors would also fragment the CPU heap so that RSS grows with every step).
    pending = torch.zeros(max(cfg.eval_interval, cfg.save_every, 1), device=device)
    n_pending = 0
    shown: dict[str, str] = {}  # what the progress bar shows: step loss, last train/val estimate
    bar = tqdm(total=cfg.max_steps, initial=step, disable=not cfg.progress or not strategy.is_main,
               dynamic_ncols=True)
    with _Interrupt(enabled=ckpt_file is not None) as interrupt, contextlib.closing(bar):
        while True:
            evaluated = bool(history.steps) and history.steps[-1] == step  # e.g. a run extended on resume
            if (step % cfg.eval_interval == 0 or step == cfg.max_steps) and not evaluated:
                history.step_loss.extend(pending[:n_pending].tolist())
                n_pending = 0
                now = time.perf_counter()
                elapsed += now - t0
                with eval_streams(generator, cfg.eval_seed):
                    losses = strategy.mean(estimate_loss(model, get_batch, cfg.eval_iters, device))
                history.steps.append(step)
                history.train_loss.append(losses["train"])
                history.val_loss.append(losses["val"])
                history.lr.append(get_lr(min(step, cfg.max_steps - 1), cfg))
                history.tokens_per_s.append(tokens / max(now - t0, 1e-9))
                history.wall_time.append(elapsed)
                shown.update(train=f"{losses['train']:.4f}", val=f"{losses['val']:.4f}")
                bar.set_postfix(shown)
                tokens, t0 = 0, time.perf_counter()  # evaluation time is not training time
            if step == cfg.max_steps:
                break
            lr = get_lr(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            for micro in range(cfg.grad_accum_steps):
                x, y = get_batch("train")
                # under DistributedDataParallel, gradients are all-reduced on the last micro-batch only
                sync = micro == cfg.grad_accum_steps - 1 or not hasattr(model, "no_sync")
                with contextlib.nullcontext() if sync else model.no_sync():
                    with autocast(device):
                        _, loss = model(x, y)
                    scaler.scale(loss / cfg.grad_accum_steps).backward()
                tokens += x.numel() * strategy.world_size
            if cfg.grad_clip is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            pending[n_pending] = loss.detach().float()  # the last micro-batch's loss
            n_pending += 1
            step += 1
            bar.update(1)
            if not bar.disable and step % 10 == 0:
                shown["loss"] = f"{pending[n_pending - 1].item():.4f}"
                bar.set_postfix(shown)
            stop = interrupt.enabled and strategy.any(interrupt.requested)  # all processes stop together
            periodic = cfg.save_every and step % cfg.save_every == 0
            if (periodic and step < cfg.max_steps) or stop:
                history.step_loss.extend(pending[:n_pending].tolist())
                n_pending = 0
                save(step)
            if stop:
                stopped = KeyboardInterrupt(f"stopped at step {step}; the checkpoint {ckpt_file} holds it: "
                                            "run the cell again (resume=True) to continue")
                stopped.step, stopped.checkpoint = step, ckpt_file  # a command says its own advice with these
                raise stopped
    save(cfg.max_steps)
    return history
