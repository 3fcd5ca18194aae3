"""Supervised fine-tuning (notebook 09): next-token training on rendered conversations, with the loss
averaged over the assistant's tokens only.

    x, y = masked_targets(ids, mask)       # y[t] = ids[t + 1] where mask[t + 1] == 1, else -1 (ignored)
    get, gen = sft_batches(train_examples, val_examples, batch_size, pad_id, device)
    history = train(model, get, cfg, device, generator=gen)   # the course's loop; the GPT's loss skips -1

The course's GPT already ignores targets of -1 in its loss (`minilm.models.base.lm_loss`), so the
training loop needs no change: masking is all in the targets. `sft_loss` writes that loss out.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import torch

Example = tuple[list[int], list[int]]  # (ids, mask) from template.render


def masked_targets(ids: Sequence[int], mask: Sequence[int]) -> tuple[list[int], list[int]]:
    """(ids, mask) of length L -> (x, y) of length L - 1: x = ids[:-1]; y[t] = ids[t + 1] if mask[t + 1]
    else -1. The prediction made at position t is trained only when the token after it is the assistant's."""
    if len(ids) != len(mask):
        raise ValueError(f"ids ({len(ids)}) and mask ({len(mask)}) must have the same length")
    if len(ids) < 2:
        raise ValueError(f"a training example needs at least 2 tokens, got {len(ids)}")
    x = list(ids[:-1])
    y = [t if m else -1 for t, m in zip(ids[1:], mask[1:], strict=True)]
    return x, y


def sft_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the trained positions: logits (B, T, V), targets (B, T) with -1 where
    not trained -> scalar. Equal to F.cross_entropy(..., ignore_index=-1); 0 (with a gradient) when no
    position is trained."""
    logp = torch.log_softmax(logits.float(), dim=-1)  # (B, T, V)
    keep = targets >= 0  # (B, T)
    picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T): log p(target)
    return -(picked * keep).sum() / keep.sum().clamp(min=1)


def pad_batch(pairs: Sequence[tuple[list[int], list[int]]], pad_id: int,
              device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """[(x, y), ...] of various lengths -> x (B, T) padded with pad_id, y (B, T) padded with -1 (on the right).

    Right padding never changes the real tokens' logits: attention is causal, so a pad only sees what
    comes before it, and its target -1 keeps it out of the loss."""
    T = max(len(x) for x, _ in pairs)
    xs = torch.full((len(pairs), T), pad_id, dtype=torch.long)
    ys = torch.full((len(pairs), T), -1, dtype=torch.long)
    for b, (x, y) in enumerate(pairs):
        xs[b, :len(x)] = torch.tensor(x, dtype=torch.long)
        ys[b, :len(y)] = torch.tensor(y, dtype=torch.long)
    return xs.to(device), ys.to(device)


def sft_batches(
    train_examples: Sequence[Example], val_examples: Sequence[Example], batch_size: int, pad_id: int,
    device: torch.device | str, seed: int = 1337,
) -> tuple[Callable[[str], tuple[torch.Tensor, torch.Tensor]], torch.Generator]:
    """(get_batch(split) -> (x, y) (B, T) on device, its seeded generator): what `minilm.training.train` takes.

    Each batch is `batch_size` examples drawn at random from the split, turned into masked targets
    and right-padded to the longest. Draws come from the returned torch.Generator (pass it to train()
    so checkpoints capture it)."""
    if not train_examples or not val_examples:
        raise ValueError("sft_batches needs at least one training and one validation example")
    splits = {"train": [masked_targets(*e) for e in train_examples],
              "val": [masked_targets(*e) for e in val_examples]}
    generator = torch.Generator().manual_seed(seed)

    def get(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        data = splits[split]
        picks = torch.randint(len(data), (batch_size,), generator=generator).tolist()
        return pad_batch([data[i] for i in picks], pad_id, device)

    return get, generator


@torch.no_grad()
def masked_loss(model: torch.nn.Module, examples: Sequence[Example], pad_id: int,
                device: torch.device | str, batch_size: int = 64) -> float:
    """The SFT loss of `model` over all of `examples` (every trained token counts once): a float."""
    was = model.training
    model.eval()
    total, count = 0.0, 0
    pairs = [masked_targets(*e) for e in examples]
    for i in range(0, len(pairs), batch_size):
        x, y = pad_batch(pairs[i:i + batch_size], pad_id, device)
        logits, _ = model(x)
        n = int((y >= 0).sum())
        total += float(sft_loss(logits, y)) * n
        count += n
    model.train(was)
    return total / max(count, 1)


def shuffled(items: Sequence, seed: int) -> list:
    """A copy of `items` in a seeded random order."""
    out = list(items)
    random.Random(seed).shuffle(out)
    return out
