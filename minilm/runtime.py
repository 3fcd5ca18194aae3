"""Device, precision policy, CPU threads and seeding: chosen once, here, for every notebook (taught in 00)."""

from __future__ import annotations

import contextlib
import os
import platform
import random
import time
from dataclasses import dataclass

import numpy as np
import torch

_ANNOUNCED: set[str] = set()
_THREADS: dict[str, object] = {}  # what configure_threads chose: {"n": int, "why": str}, once per process


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one, else os.cpu_count())."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def choose_threads(cores: int, load: float | None, default: int, env: dict[str, str] | None = None) -> tuple[int, str]:
    """How many threads PyTorch should use on this CPU -> (n, a sentence saying why).

    `cores`: usable cores; `load`: the 1-minute load average (the processes already running or
    waiting, other notebooks and programs; None where the OS has none); `default`: PyTorch's own
    choice (its physical cores, never raised). In order: $MINILM_THREADS wins; $OMP_NUM_THREADS
    (already applied by PyTorch) is kept; under torchrun the cores are shared by $LOCAL_WORLD_SIZE
    processes; then one thread per core the load leaves free, at least 1. Why: with more threads
    than free cores, PyTorch's threads wait for each other at every operation and a small model
    can run many times slower (issue 20 measured a training 40x slower on a busy 2-core machine)."""
    env = os.environ if env is None else env
    if env.get("MINILM_THREADS", "").strip():
        value = env["MINILM_THREADS"].strip()
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"MINILM_THREADS={value!r} must be a whole number >= 1 (the CPU threads PyTorch "
                             "may use); unset it to let minilm choose from the free cores")
        return int(value), "set by MINILM_THREADS"
    if env.get("OMP_NUM_THREADS", "").strip():
        return default, f"OMP_NUM_THREADS={env['OMP_NUM_THREADS'].strip()} kept"
    procs = env.get("LOCAL_WORLD_SIZE", "1")
    share = max(1, cores // int(procs)) if procs.isdigit() and int(procs) > 1 else cores
    busy = 0 if load is None else int(load + 0.5)  # cores other work keeps busy, rounded
    n = max(1, min(default, share - busy))
    if load is None:
        return n, f"{cores} cores, load unknown"
    if n < default:
        return n, (f"{cores} cores, load average {load:.1f}: PyTorch's default of {default} would oversubscribe "
                   "them and can slow training many times; MINILM_THREADS=N overrides")
    return n, f"{cores} cores, load average {load:.1f}"


def configure_threads(verbose: bool = True) -> int:
    """Choose and set PyTorch's CPU thread count once per process (later calls return it) -> the count.

    Called by get_device and by the training loop, before any training; printed by about()."""
    if not _THREADS:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        n, why = choose_threads(usable_cores(), load, torch.get_num_threads())
        torch.set_num_threads(n)
        _THREADS.update(n=n, why=why)
        if verbose:
            print(f"minilm: {n} CPU thread{'s' if n > 1 else ''} ({why})")
    return int(_THREADS["n"])


def threads_summary() -> str:
    """'1 (2 cores, load average 1.9: ...)': the threads in use and why (configure_threads' choice)."""
    why = _THREADS.get("why", "not chosen by minilm yet")
    return f"{torch.get_num_threads()} ({why})"


def get_device(override: str | None = None, verbose: bool = True) -> torch.device:
    """Pick the device: `override`, else $MINILM_DEVICE, else cuda > mps > cpu (printed once).

    The first call also chooses the CPU threads (`configure_threads`)."""
    configure_threads(verbose)
    name = override or os.environ.get("MINILM_DEVICE")
    if name:
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"device {name!r} was asked for (argument or MINILM_DEVICE) but CUDA is not "
                "available here; unset MINILM_DEVICE or pass 'cpu'."
            )
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError(f"device {name!r} was asked for but MPS is not available here.")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    elif torch.backends.mps.is_available():
        device = torch.device("mps")
    else:
        device = torch.device("cpu")
    if verbose and str(device) not in _ANNOUNCED:
        _ANNOUNCED.add(str(device))
        print(f"minilm: using device {describe_device(device)}")
    return device


def describe_device(device: torch.device | str) -> str:
    """A one-line description: 'cuda (NVIDIA T4, 15.0 GiB)', 'cpu (2 threads)'."""
    device = torch.device(device)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"cuda ({props.name}, {props.total_memory / 2**30:.1f} GiB)"
    if device.type == "mps":
        return f"mps (Apple {platform.machine()})"
    return f"cpu ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})"


@dataclass(frozen=True)
class Precision:
    """The precision policy for one device: autocast dtype (None = fp32) and whether to scale grads."""

    dtype: torch.dtype | None  # torch.bfloat16, torch.float16 or None (plain fp32)
    use_grad_scaler: bool  # True only for fp16, whose small gradients underflow without scaling

    @property
    def name(self) -> str:
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.dtype, "fp32")


def bf16_native(device: torch.device | str) -> bool:
    """True when CUDA device `device` (not the current one) computes in bf16 natively: compute
    capability 8.0 or newer (A100, L4, H100), or an AMD GPU; False on a T4 (7.5), whose bf16 is emulated."""
    if torch.version.hip:  # ROCm: every GPU PyTorch supports has bf16
        return True
    major, _ = torch.cuda.get_device_capability(torch.device(device))  # torch 2.2+, any index
    return major >= 8


def precision_for(device: torch.device | str) -> Precision:
    """bf16 autocast on GPUs with native bf16, fp16 + GradScaler on those without (T4), fp32 else."""
    device = torch.device(device)
    if device.type == "cuda":
        if bf16_native(device):
            return Precision(torch.bfloat16, False)
        return Precision(torch.float16, True)
    return Precision(None, False)


def autocast(device: torch.device | str):
    """A context manager applying the precision policy of `device` (a no-op on CPU and MPS)."""
    device = torch.device(device)
    policy = precision_for(device)
    if policy.dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=policy.dtype)


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast is running `device_type` ('cuda', 'cpu') in right now; None when it is off."""
    if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4: one API for every device type
        if not torch.is_autocast_enabled(device_type):
            return None
        return torch.get_autocast_dtype(device_type)
    if device_type == "cuda":  # torch 2.2, 2.3: separate CUDA and CPU functions
        return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None
    if device_type == "cpu":
        return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
    return None


def grad_scaler(device: torch.device | str):
    """A GradScaler that is enabled only when the precision policy needs one (fp16); torch 2.2+."""
    device = torch.device(device)
    enabled = precision_for(device).use_grad_scaler
    if hasattr(torch.amp, "GradScaler"):  # torch >= 2.3
        return torch.amp.GradScaler(device.type, enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)  # torch 2.2: CUDA's only (disabled elsewhere)


def synchronize(device: torch.device | str) -> None:
    """Wait until every operation queued on `device` has finished (GPUs run asynchronously)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def matmul_flops(n: int, device: torch.device | str, dtype: torch.dtype = torch.float32,
                 seconds: float = 0.25, rounds: int = 5) -> float:
    """FLOP/s of (n, n) @ (n, n) on `device`: the best of `rounds` timed loops after a warm-up (built in 00).

    The peak that model FLOPs utilisation divides by (notebook 05)."""
    device = torch.device(device)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):  # warm-up: memory allocation, kernel selection
        a @ b
    synchronize(device)
    t = time.perf_counter()
    a @ b
    synchronize(device)
    one = time.perf_counter() - t
    reps = max(1, min(10_000, int(seconds / rounds / max(one, 1e-7))))  # each round: ~seconds / rounds
    best = float("inf")
    for _ in range(rounds):
        synchronize(device)
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 * reps / best  # n^3 multiply-adds = 2 n^3 FLOPs per product


def set_seed(seed: int) -> None:
    """Seed Python's random, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def about() -> None:
    """Print versions, device, precision policy and preset: paste this into a bug report."""
    import sys

    from . import __version__
    from .presets import preset

    device = get_device(verbose=False)
    print(f"minilm     {__version__}")
    print(f"python     {sys.version.split()[0]} ({platform.system()} {platform.machine()})")
    print(f"torch      {torch.__version__} (CUDA {torch.version.cuda or 'none'})")
    print(f"numpy      {np.__version__}")
    print(f"device     {describe_device(device)}")
    print(f"threads    {threads_summary()}")
    print(f"precision  {precision_for(device).name}")
    print(f"preset     {preset().name}")
