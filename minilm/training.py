"""One training loop for every language model of the course (written out by hand in 02, used 02-07).

    cfg = TrainConfig(max_steps=2000, learning_rate=3e-3, eval_interval=200)
    history = train(model, get_batch, cfg, device, generator=g)

`get_batch("train" | "val")` returns `(x, y)`, both `(B, T)` int64 on `device`. Pass the
`torch.Generator` that `get_batch` draws from as `generator=` so checkpoints capture it and a
resumed run replays exactly the same batches. To use your own optimizer (e.g. parameter
groups for a GPT) pass `optimizer=`; the schedule sets `lr` on each of its groups, scaled by a
group's optional `"lr_scale"` entry.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields

import torch
from torch import nn
from tqdm.auto import tqdm

from .checkpoint import checkpoint_path, load_checkpoint, restore_checkpoint, save_checkpoint
from .optim import configure_optimizer
from .runtime import autocast, grad_scaler

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class TrainConfig:
    """Everything the loop needs; override with `dataclasses.replace(cfg, max_steps=...)`."""

    max_steps: int = 1000  # optimisation steps in total (a resumed run stops here too)
    learning_rate: float = 1e-3  # peak learning rate
    min_lr: float = 1e-4  # floor of the cosine decay
    warmup_steps: int = 0  # linear warmup from lr/warmup to lr
    lr_schedule: str = "cosine"  # "cosine" (warmup, cosine down to min_lr) or "constant"
    lr_decay_steps: int | None = None  # cosine reaches min_lr here (None: max_steps)
    weight_decay: float = 0.01  # AdamW decoupled weight decay (on matrices only, see make_optimizer)
    betas: tuple[float, float] = (0.9, 0.99)  # AdamW betas
    eps: float = 1e-8  # AdamW epsilon
    grad_clip: float | None = 1.0  # clip the global gradient norm to this (None: no clipping)
    grad_accum_steps: int = 1  # micro-batches per optimisation step
    eval_interval: int = 100  # estimate train/val loss every this many steps (and at the end)
    eval_iters: int = 20  # batches averaged per estimate
    checkpoint_interval: int = 0  # save a checkpoint every this many steps (0: only at the end)
    checkpoint_dir: str | None = None  # None: $MINILM_CHECKPOINT_DIR or cache_root()/checkpoints
    run_name: str | None = None  # checkpoint file <checkpoint_dir>/<run_name>.pt (None: no checkpoints)
    resume: bool = False  # continue from the run's checkpoint when one exists
    progress: bool = True  # show a tqdm progress bar with the loss


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
    """AdamW with weight decay on matrices (dim >= 2) only: `minilm.optim.configure_optimizer` with cfg's settings."""
    device = next(model.parameters()).device
    return configure_optimizer(model, cfg.learning_rate, cfg.weight_decay, cfg.betas, device, eps=cfg.eps)


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


def train(
    model: nn.Module,
    get_batch: Callable[[str], Batch],
    cfg: TrainConfig,
    device: torch.device | str,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    generator: torch.Generator | None = None,
) -> History:
    """Train `model` for `cfg.max_steps` steps on batches from `get_batch`; returns the History."""
    device = torch.device(device)
    model.to(device)
    model.train()
    if optimizer is None:
        optimizer = make_optimizer(model, cfg)
    scaler = grad_scaler(device)
    history = History()
    step = 0
    ckpt_file = checkpoint_path(cfg.run_name, cfg.checkpoint_dir) if cfg.run_name else None
    if cfg.resume and ckpt_file is not None and ckpt_file.exists():
        ckpt = load_checkpoint(ckpt_file)  # on the CPU: RNG states must stay there
        step = restore_checkpoint(ckpt, model, optimizer, generator=generator, scaler=scaler)
        history = History.from_dict(ckpt["history"])
        print(f"resumed {ckpt_file} at step {step}")
    if step >= cfg.max_steps:  # the run had already finished
        return history

    def save(at: int) -> None:
        if ckpt_file is not None:
            save_checkpoint(ckpt_file, model, optimizer, at, train_config=asdict(cfg),
                            history=history, generator=generator, scaler=scaler)

    elapsed = history.wall_time[-1] if history.wall_time else 0.0
    tokens, t0 = 0, time.perf_counter()
    # Step losses wait on the device in a buffer allocated once (no host sync per step; a list of
    # tiny tensors would also fragment the CPU heap so that RSS grows with every step).
    pending = torch.zeros(max(cfg.eval_interval, cfg.checkpoint_interval, 1), device=device)
    n_pending = 0
    shown: dict[str, str] = {}  # what the progress bar shows: step loss, last train/val estimate
    bar = tqdm(total=cfg.max_steps, initial=step, disable=not cfg.progress, dynamic_ncols=True)
    while True:
        evaluated = bool(history.steps) and history.steps[-1] == step  # e.g. a run extended on resume
        if (step % cfg.eval_interval == 0 or step == cfg.max_steps) and not evaluated:
            history.step_loss.extend(pending[:n_pending].tolist())
            n_pending = 0
            now = time.perf_counter()
            elapsed += now - t0
            losses = estimate_loss(model, get_batch, cfg.eval_iters, device)
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
        for _ in range(cfg.grad_accum_steps):
            x, y = get_batch("train")
            with autocast(device):
                _, loss = model(x, y)
            scaler.scale(loss / cfg.grad_accum_steps).backward()
            tokens += x.numel()
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
        if cfg.progress and step % 10 == 0:
            shown["loss"] = f"{pending[n_pending - 1].item():.4f}"
            bar.set_postfix(shown)
        if cfg.checkpoint_interval and step % cfg.checkpoint_interval == 0 and step < cfg.max_steps:
            history.step_loss.extend(pending[:n_pending].tolist())
            n_pending = 0
            save(step)
    bar.close()
    save(cfg.max_steps)
    return history

