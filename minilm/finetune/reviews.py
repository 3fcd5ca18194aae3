"""rt-polarity for classifiers: the course's fixed train/val/test split, labels, and text encoded once (07).

The data is the rt-polarity set (Pang and Lee 2005, 5,331 + 5,331 snippets). It has no official
split; `rt_polarity_split` makes one from a hash of each text (duplicates dropped, so no text is in
two parts), the same on every machine and Python version. Tune on "val"; report "test" once.
Texts are encoded once by `encode_texts`: cut to the block size, right-padded with PAD = -1.
`pretraining_text` is the unlabelled text of 07's pretraining: the train snippets and the 2,000 full
reviews of movie_reviews.zip, minus every review line that could leak a val or test snippet.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from ..data import datasets

PAD = -1  # padding id in encoded batches (the classifier turns it into a mask)
LABELS = ("negative", "positive")  # rt-polarity: 0 = negative, 1 = positive
SPLIT_SEED = 2005
SPLIT_FRACTIONS = {"test": 0.1, "val": 0.1}  # the rest is train
OVERLAP_WORDS = 8  # a review line sharing this many consecutive words with a val/test snippet is dropped


class Tokenizer(Protocol):
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...


@dataclass(frozen=True)
class Split:
    """One part of a labelled dataset: texts and their labels (0 .. n_classes - 1)."""

    texts: list[str]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.texts)


def load_rt_polarity() -> Split:
    """Every rt-polarity snippet (positive then negative file order), label 1 = positive, 0 = negative."""
    texts, labels = [], []
    for name, label in (("rt-polarity.pos", 1), ("rt-polarity.neg", 0)):
        raw = datasets.path("rt-polarity", name).read_bytes().decode("utf-8", errors="replace")
        for line in raw.splitlines():
            if line.strip():
                texts.append(line.strip())
                labels.append(label)
    return Split(texts, labels)


def load_movie_reviews(n: int | None = None) -> list[str]:
    """The full reviews of movie_reviews.zip (Pang and Lee 2004, 2,000 reviews, one sentence a line), each
    one string; negative and positive alternate (cv000 neg, cv000 pos, cv001 neg, ...), so the first `n`
    are balanced. Their labels are not used: this is unlabelled text for pretraining."""
    with zipfile.ZipFile(datasets.path("movie_reviews")) as z:
        names = sorted((n for n in z.namelist() if n.endswith(".txt")),
                       key=lambda name: (name.rsplit("/", 1)[-1], name))
        names = names if n is None else names[:n]
        return [z.read(name).decode("utf-8", errors="replace").strip() for name in names]


def word_runs(text: str, n: int = OVERLAP_WORDS) -> set[tuple[str, ...]]:
    """Every run of `n` consecutive words of `text` (split on white space) as a tuple."""
    words = text.split()
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def pretraining_text(split: dict[str, Split], n_reviews: int | None = None) -> tuple[str, dict[str, int]]:
    """(text, counts): the unlabelled text GPT-1's first stage reads: the train part's snippets, one a line,
    then `n_reviews` full movie reviews (None: all 2,000; 0: none).

    No sentence that is evaluated may be in it. A review line is dropped when it is identical to any
    rt-polarity snippet, or shares a run of OVERLAP_WORDS words with a snippet outside the train part
    (the val and test texts of `split` and of the full fixed split). `counts` says how many were dropped."""
    train = set(split["train"].texts)
    held_out = {t for part in ("val", "test") if part in split for t in split[part].texts}
    held_out |= {t for t in load_rt_polarity().texts if t not in train}
    every_snippet = train | held_out | set(load_rt_polarity().texts)
    held_runs = set().union(*(word_runs(t) for t in held_out))
    kept: list[str] = []
    counts = {"review_lines": 0, "dropped_identical": 0, "dropped_shared_run": 0}
    for review in load_movie_reviews(n_reviews) if n_reviews != 0 else []:
        lines = []
        for line in review.splitlines():
            line = line.strip()
            if not line:
                continue
            counts["review_lines"] += 1
            if line in every_snippet:
                counts["dropped_identical"] += 1
            elif word_runs(line) & held_runs:
                counts["dropped_shared_run"] += 1
            else:
                lines.append(line)
        kept.append("\n".join(lines))
    counts["reviews"] = len(kept)
    counts["train_snippets"] = len(split["train"])
    text = "\n".join(split["train"].texts + kept) + "\n"
    return text, counts


def _bucket(text: str, seed: int) -> float:
    """A number in [0, 1) fixed by the text and the seed (sha256): where the text falls in the split."""
    digest = hashlib.sha256(f"{seed}:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def make_split(full: Split, seed: int = SPLIT_SEED, fractions: dict[str, float] | None = None) -> dict[str, Split]:
    """{"train", "val", "test"}: a deterministic split by a hash of each text. Texts that occur more than
    once are kept once (with their label; a text with both labels is dropped), so the parts are disjoint."""
    fr = fractions or SPLIT_FRACTIONS
    labels_of: dict[str, set[int]] = {}
    order: list[str] = []
    for text, label in zip(full.texts, full.labels):
        if text not in labels_of:
            labels_of[text] = set()
            order.append(text)
        labels_of[text].add(label)
    parts: dict[str, Split] = {k: Split([], []) for k in ("train", "val", "test")}
    for text in order:
        if len(labels_of[text]) != 1:
            continue  # contradictory duplicates carry no label
        u = _bucket(text, seed)
        part = "test" if u < fr["test"] else "val" if u < fr["test"] + fr["val"] else "train"
        parts[part].texts.append(text)
        parts[part].labels.append(next(iter(labels_of[text])))
    return parts


def rt_polarity_split(seed: int = SPLIT_SEED) -> dict[str, Split]:
    """The course's fixed split of rt-polarity: about 80 / 10 / 10 % train / val / test."""
    return make_split(load_rt_polarity(), seed)


def subsample(split: Split, n: int, seed: int = 0) -> Split:
    """`n` examples of `split`, balanced across labels (n // n_classes each, rest from the first), seeded."""
    if not 1 <= n <= len(split):
        raise ValueError(f"n={n} must be between 1 and the {len(split)} examples of the split")
    g = torch.Generator().manual_seed(seed)
    by_label: dict[int, list[int]] = {}
    for i, label in enumerate(split.labels):
        by_label.setdefault(label, []).append(i)
    classes = sorted(by_label)
    chosen: list[int] = []
    for c in classes:
        idx = by_label[c]
        perm = torch.randperm(len(idx), generator=g).tolist()
        chosen += [idx[j] for j in perm[: min(len(idx), n // len(classes))]]
    rest = [i for i in torch.randperm(len(split), generator=g).tolist() if i not in set(chosen)]
    chosen += rest[: n - len(chosen)]
    chosen.sort()
    return Split([split.texts[i] for i in chosen], [split.labels[i] for i in chosen])


def check_labels(labels: Sequence[int], n_classes: int) -> torch.Tensor:
    """Labels as an int64 tensor (N,); a label outside 0 .. n_classes - 1 is an error naming it."""
    y = torch.as_tensor(list(labels), dtype=torch.long)
    bad = ((y < 0) | (y >= n_classes)).nonzero().flatten()
    if bad.numel():
        i = int(bad[0])
        raise ValueError(
            f"labels must be class ids 0 .. {n_classes - 1} (n_classes={n_classes}); label {int(y[i])} at "
            f"position {i} is not ({bad.numel()} such labels). Map class names to ids first, or raise n_classes."
        )
    return y


def tokenizer_fingerprint(tokenizer: Tokenizer) -> str:
    """A short hash of a minilm tokenizer's vocabulary (BPE merges or characters): which tokenizer it is."""
    state = getattr(tokenizer, "merges", None) or getattr(tokenizer, "chars", None)
    if state is None:
        state = [tokenizer.vocab_size, tokenizer.encode("The quick brown fox, 123!")]
    return hashlib.sha256(json.dumps([type(tokenizer).__name__, state]).encode()).hexdigest()[:12]


def check_tokenizer(model: nn.Module, tokenizer: Tokenizer) -> None:
    """Raise ValueError when `tokenizer` is not the one `model` (a GPT) was trained with.

    Checked: the vocabulary size against the embedding's rows, and, when the model carries a
    `tokenizer_fingerprint` (set when it is loaded with its tokenizer), the tokenizer itself."""
    gpt = getattr(model, "gpt", model)  # a GPTClassifier or a GPT
    rows = gpt.transformer.wte.weight.shape[0]
    if tokenizer.vocab_size != rows:
        raise ValueError(
            f"this tokenizer has {tokenizer.vocab_size} tokens but the checkpoint's embedding has {rows} rows: "
            "it is not the tokenizer the model was trained with. Load the tokenizer saved with the "
            "checkpoint (e.g. `gpt, tok = review_gpt(...)`) and encode with that."
        )
    expected = getattr(gpt, "tokenizer_fingerprint", None)
    if expected is not None and tokenizer_fingerprint(tokenizer) != expected:
        raise ValueError(
            f"this tokenizer (fingerprint {tokenizer_fingerprint(tokenizer)}) has the right size but is not "
            f"the one the checkpoint was trained with (fingerprint {expected}): the same ids would mean other "
            "text. Use the tokenizer saved with the checkpoint."
        )


def encode_texts(texts: Sequence[str], tokenizer: Tokenizer, block_size: int, truncate: bool = True,
                 vocab_size: int | None = None) -> torch.Tensor:
    """Texts -> ids (N, T) int64, right-padded with PAD = -1, T = min(block_size, longest); done once.

    With `truncate`, a text longer than `block_size` tokens keeps its first `block_size`; without,
    it is an error naming it. An empty text is an error (nothing to pool). `vocab_size` checks ids."""
    if block_size < 1:
        raise ValueError(f"block_size={block_size} must be >= 1")
    encoded = [tokenizer.encode(t) for t in texts]
    for i, ids in enumerate(encoded):
        if not ids:
            raise ValueError(f"text {i} ({texts[i]!r}) encodes to no tokens: remove empty texts first")
        if len(ids) > block_size and not truncate:
            raise ValueError(
                f"text {i} is {len(ids)} tokens long but the model reads at most block_size={block_size}: "
                "pass truncate=True to keep its first block_size tokens, or use a model with a longer block_size"
            )
        if vocab_size is not None and max(ids) >= vocab_size:
            raise ValueError(f"text {i} encodes to id {max(ids)}, outside the model's vocabulary 0..{vocab_size - 1}: "
                             "the tokenizer does not match the model")
    T = min(block_size, max((len(ids) for ids in encoded), default=1))
    out = torch.full((len(encoded), T), PAD, dtype=torch.long)
    for i, ids in enumerate(encoded):
        ids = ids[:T]
        out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def encode_for(model: nn.Module, tokenizer: Tokenizer, texts: Sequence[str], truncate: bool = True) -> torch.Tensor:
    """`encode_texts` for a GPT or GPTClassifier: checks the tokenizer first and uses the model's block size."""
    check_tokenizer(model, tokenizer)
    gpt = getattr(model, "gpt", model)  # a GPTClassifier or a GPT
    return encode_texts(texts, tokenizer, gpt.block_size, truncate, gpt.config.vocab_size)
