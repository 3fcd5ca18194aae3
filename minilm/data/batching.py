"""Batching: a token stream -> train/val split -> random (x, y) blocks, y shifted by one (notebook 01)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import torch

from .datasets import load_text
from .tokenizers import CharTokenizer

S = TypeVar("S", bound=Sequence)


class Tokenizer(Protocol):
    """Anything with encode(str) -> list[int] (CharTokenizer, BPETokenizer)."""

    def encode(self, text: str) -> list[int]: ...


def encode_corpus(text: str, tokenizer: Tokenizer) -> torch.Tensor:
    """The whole text as one LongTensor of ids, shape (N,). Notebook 01."""
    return torch.tensor(tokenizer.encode(text), dtype=torch.long)


def train_val_split(data: S, val_fraction: float = 0.1) -> tuple[S, S]:
    """Contiguous split: the first (1 - val_fraction) of `data` for training, the rest for validation.

    Contiguous rather than shuffled, so no validation block overlaps a training block. Works on a
    tensor (N,), a list or a str. Notebook 01.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction} must be in [0, 1)")
    n = len(data)
    n_train = round(n * (1.0 - val_fraction))
    if n_train == 0 or (val_fraction > 0 and n_train == n):
        raise ValueError(f"cannot split {n} items with val_fraction={val_fraction}: one side would be empty")
    return data[:n_train], data[n_train:]


def get_batch(
    data: torch.Tensor,
    block_size: int,
    batch_size: int,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch_size` random blocks of `data` (N,): x (B, T) int64 on `device` and y = x shifted by one.

    Offsets are drawn from `generator` (a CPU torch.Generator; None uses the global RNG), so a
    seeded generator gives the same batches every run. y[b, t] is the token that follows
    x[b, t]: the target the model must predict. Notebook 01.
    """
    if data.dim() != 1:
        raise ValueError(f"data must be a 1-D tensor of token ids, got shape {tuple(data.shape)}")
    if block_size < 1 or batch_size < 1:
        raise ValueError(f"block_size={block_size} and batch_size={batch_size} must be >= 1")
    n = data.numel()
    if n < block_size + 1:
        raise ValueError(
            f"data has {n} tokens but one block of block_size={block_size} needs {block_size + 1} "
            "(x plus the token after it for y); use a smaller block_size or more text."
        )
    starts = torch.randint(n - block_size, (batch_size,), generator=generator)  # (B,)
    idx = starts[:, None] + torch.arange(block_size + 1)  # (B, T + 1)
    chunk = data[idx.to(data.device)].long()  # (B, T + 1)
    x, y = chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()  # (B, T) each
    device = torch.device(device)
    if device.type == "cuda" and chunk.device.type == "cpu":
        x, y = x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    else:
        x, y = x.to(device), y.to(device)
    return x, y


def char_data(dataset: str, val_fraction: float = 0.1) -> tuple[CharTokenizer, torch.Tensor, torch.Tensor]:
    """A course corpus at character level: its tokenizer and the train / val token streams (N,). Notebook 03, 05."""
    text = load_text(dataset)
    tok = CharTokenizer.from_text(text)
    train_data, val_data = train_val_split(encode_corpus(text, tok), val_fraction)
    return tok, train_data, val_data


def batch_fn(
    train_data: torch.Tensor, val_data: torch.Tensor, block_size: int, batch_size: int,
    device: torch.device | str, seed: int = 1337,
) -> tuple[Callable[[str], tuple[torch.Tensor, torch.Tensor]], torch.Generator]:
    """(get_batch(split) -> (x, y) (B, T) on device, its seeded generator): what train() takes.

    "train" and "val" batches come from the one generator; pass it as train(generator=...), so that
    checkpoints capture it and the loop can run each evaluation on its own stream
    (`minilm.training.eval_streams`): evaluating never changes which batches training gets."""
    generator = torch.Generator().manual_seed(seed)

    def get(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        data = train_data if split == "train" else val_data
        return get_batch(data, block_size, batch_size, device, generator)

    return get, generator  # pass the generator to train() so checkpoints capture its state
