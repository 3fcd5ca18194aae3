"""The names dataset modelled as makemore does: each name is `. c1 c2 ... cn .` in a row (02, 03, benchmark).

Token 0 ('.') marks both the start and the end. Each name becomes one row of length
block_size: x = [0, c1, ..., cn, 0, 0, ...] and y = [c1, ..., cn, 0, -1, -1, ...]; the
targets after the end are -1, which the loss ignores, so the loss is the mean NLL per
character (end token included) and comparable with makemore's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .tokenizers import CharTokenizer

END = "."  # token 0: start and end of a name


@dataclass
class NamesData:
    """Encoded names: rows x, y (N, block_size), the tokenizer and the words themselves."""

    x: torch.Tensor  # (N, block_size) int64 inputs, starting with 0
    y: torch.Tensor  # (N, block_size) int64 targets, -1 after the end
    tokenizer: CharTokenizer  # '.' is id 0, then a..z
    words: list[str]  # the names, in row order


def names_tokenizer(words: list[str]) -> CharTokenizer:
    """The tokenizer of the names: '.' (id 0) then every letter that occurs, sorted."""
    return CharTokenizer([END] + sorted(set("".join(words))))


def split_names(words: list[str], n_test: int = 1000, seed: int = 3407) -> tuple[list[str], list[str]]:
    """A seeded permutation, then the last `n_test` names are held out: (train, test)."""
    perm = torch.randperm(len(words), generator=torch.Generator().manual_seed(seed)).tolist()
    return [words[i] for i in perm[:-n_test]], [words[i] for i in perm[-n_test:]]


def encode_names(words: list[str], tokenizer: CharTokenizer, block_size: int) -> NamesData:
    """Rows x, y (N, block_size) as described above; names longer than block_size - 1 are cut."""
    x = torch.zeros(len(words), block_size, dtype=torch.long)
    y = torch.full((len(words), block_size), -1, dtype=torch.long)
    for i, w in enumerate(words):
        ids = tokenizer.encode(w)[: block_size - 1]
        x[i, 1 : 1 + len(ids)] = torch.tensor(ids, dtype=torch.long)
        y[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        y[i, len(ids)] = 0  # predict the end
    return NamesData(x, y, tokenizer, list(words))


def load_names(block_size: int = 16, n_test: int = 1000, seed: int = 3407):
    """names.txt -> (train NamesData, test NamesData); block_size 16 = the longest name + 1."""
    from .datasets import load_text

    words = [w.strip() for w in load_text("names").splitlines() if w.strip()]
    tok = names_tokenizer(words)
    train_words, test_words = split_names(words, n_test, seed)
    return encode_names(train_words, tok, block_size), encode_names(test_words, tok, block_size)


def row_sampler(data: NamesData, batch_size: int, device: torch.device | str,
                generator: torch.Generator | None = None):
    """A function () -> (x, y) (B, block_size) of random rows (with replacement) on `device`."""
    def sample() -> tuple[torch.Tensor, torch.Tensor]:
        ix = torch.randint(0, data.x.size(0), (batch_size,), generator=generator)
        return data.x[ix].to(device), data.y[ix].to(device)

    return sample


@torch.no_grad()
def dataset_loss(model: torch.nn.Module, data: NamesData, batch_size: int = 500,
                 device: torch.device | str = "cpu") -> float:
    """Mean NLL per target token over the whole set (every row once, -1 targets ignored)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, data.x.size(0), batch_size):
        x, y = data.x[i:i + batch_size].to(device), data.y[i:i + batch_size].to(device)
        _, loss = model(x, y)
        n = int((y != -1).sum())
        total += loss.item() * n
        count += n
    model.train(was_training)
    return total / count


def decode_name(ids: list[int], tokenizer: CharTokenizer) -> str:
    """Generated ids after the start token -> the name (cut at the first end token)."""
    ids = list(ids)
    if 0 in ids:
        ids = ids[: ids.index(0)]
    return tokenizer.decode(ids)
