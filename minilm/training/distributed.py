"""Data parallelism for `minilm pretrain`: torchrun + DistributedDataParallel, and the strategy train() runs under (issue 13).

    torchrun --nproc_per_node 4 -m minilm.cli pretrain --data DIR --preset gpu

torchrun starts one process per GPU (or per CPU worker) and gives each RANK, WORLD_SIZE,
LOCAL_RANK and the rendezvous address. `setup()` reads them, joins the process group (nccl on
GPUs, gloo on CPUs) and returns a `DDPStrategy`; without torchrun it returns `SingleProcess`,
train()'s default, whose hooks do nothing. Every process holds the same model (DDP broadcasts
rank 0's weights when it wraps the model) and reads its own slice of every global batch
(`tokenfile.TokenFile.batches`); DDP averages the gradients, so N processes take the steps one
process would take on the whole batch, up to the order of float additions.

What train() asks of a strategy (`SingleProcess` is the interface):
- `is_main`, `world_size`: only rank 0 shows the progress bar and writes checkpoints.
- `mean(losses)`: evaluation estimates averaged over the group (each rank measured its slice).
- `any(flag)`: whether any process was interrupted, so that all stop at the same step.
- `save(write)`: every rank's RNG states gathered, rank 0 writes, the others wait for it.
- `resumed(ckpt)`: every rank resumed at the same step, each with its own RNG states.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn

from .checkpoint import capture_rng_state, restore_rng_state


class SingleProcess:
    """The strategy of a run in one process (train()'s default): nothing to share with anyone."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """True in the process that writes checkpoints, logs and the progress bar (rank 0)."""
        return self.rank == 0

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """`values` averaged over the processes (here: themselves)."""
        return values

    def any(self, flag: bool) -> bool:
        """True when `flag` is true in any process (here: `flag`)."""
        return flag

    def save(self, write: Callable[[dict], None]) -> None:
        """Call `write(extra)` on rank 0 with what the checkpoint must hold for the group (here: {})."""
        write({})

    def resumed(self, ckpt: dict | None) -> None:
        """Called after resuming from `ckpt` (None: a fresh start) and before the first step."""

    def finish(self) -> None:
        """Called once the run's result is written, before the process leaves its group (here: nothing)."""


class DDPStrategy(SingleProcess):
    """A process of a torchrun group: collectives on a gloo group (CPU) so that they never sync the GPU."""

    def __init__(self, rank: int, world_size: int, device: torch.device, cpu_group) -> None:
        self.rank, self.world_size, self.device, self.cpu_group = rank, world_size, device, cpu_group

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Each key averaged over the group (all-reduce of one float64 tensor)."""
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
        dist.all_reduce(t, group=self.cpu_group)
        return {k: v / self.world_size for k, v in zip(keys, t.tolist())}

    def any(self, flag: bool) -> bool:
        """True when any process of the group has `flag` set."""
        t = torch.tensor([int(flag)])
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.cpu_group)
        return bool(t.item())

    def save(self, write: Callable[[dict], None]) -> None:
        """Rank 0 writes with every rank's RNG states (dropout draws differ by rank); the rest wait."""
        states = [None] * self.world_size
        dist.all_gather_object(states, capture_rng_state(), group=self.cpu_group)
        if self.is_main:
            write({"world_size": self.world_size, "rng_per_rank": states})
        dist.barrier(group=self.cpu_group)  # nobody runs ahead (or exits) while rank 0 writes

    def finish(self) -> None:
        """Wait until every process is done (rank 0 writes the result) before any leaves the group: a rank
        that tears its group down while another still talks to it can abort at exit (gloo's threads)."""
        dist.barrier(group=self.cpu_group)

    def resumed(self, ckpt: dict | None) -> None:
        """Check that every rank resumed at the same step; restore this rank's own RNG states."""
        step = int(ckpt["step"]) if ckpt is not None else 0
        steps = [None] * self.world_size
        dist.all_gather_object(steps, step, group=self.cpu_group)
        if len(set(steps)) > 1:
            raise RuntimeError(f"the processes resumed at different steps {steps}: the checkpoint folder "
                               "must be one that every node sees (a shared file system)")
        extra = (ckpt or {}).get("extra") or {}
        saved = extra.get("rng_per_rank")
        if saved and extra.get("world_size") == self.world_size:
            restore_rng_state(saved[self.rank])  # rank 0's states were restored with the checkpoint
        elif saved and self.is_main:
            print(f"resumed a run of {extra.get('world_size')} processes with {self.world_size}: the same "
                  "global batches, but float sums and dropout draws differ from the original run")


def world_size() -> int:
    """The number of processes torchrun started (WORLD_SIZE), 1 without torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: str | None = None, timeout_s: float = 1800) -> tuple[SingleProcess, torch.device]:
    """(strategy, device) of this process: under torchrun, join the group (nccl on GPUs, gloo on CPUs).

    `device` ('cpu', 'cuda', None: a GPU where there is one) picks the kind; under torchrun each
    process takes GPU LOCAL_RANK of its machine."""
    from ..runtime import get_device

    if world_size() == 1:
        return SingleProcess(), get_device(device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (device is None or device.startswith("cuda"))
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"LOCAL_RANK {local_rank} but this machine has {torch.cuda.device_count()} "
                               "GPUs: start at most one process per GPU (--nproc_per_node)")
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    timeout = datetime.timedelta(seconds=timeout_s)
    dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timeout)
    cpu_group = dist.new_group(backend="gloo", timeout=timeout) if use_cuda else dist.group.WORLD
    return DDPStrategy(rank, dist.get_world_size(), dev, cpu_group), dev


def wrap(model: nn.Module, strategy: SingleProcess) -> nn.Module:
    """`model` inside DistributedDataParallel under a DDPStrategy; the model itself in one process."""
    if not isinstance(strategy, DDPStrategy):
        return model
    ids = [strategy.device.index] if strategy.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def teardown() -> None:
    """Leave the process group (when one was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
