"""Sentence log-likelihood under any minilm LM, and the paired-likelihood probe of CrowS-Pairs (notebook 08).

A causal LM gives every sentence a probability: log p(s) = sum_t log p(s_t | s_<t). The probe
shows the model two sentences that differ only in the group they mention (CrowS-Pairs: "sent_more"
is the more stereotyping one) and counts how often it prefers `sent_more`; an unbiased model would
sit at 50%. For masked LMs Nangia et al. (2020) score only the shared tokens (pseudo-likelihood);
for a causal LM the usual adaptation (e.g. EleutherAI's lm-evaluation-harness) compares the
whole sentences' log-likelihoods, as here.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

CROWS_COLUMNS = ("sent_more", "sent_less", "stereo_antistereo", "bias_type")


class Encoder(Protocol):
    """Anything with encode(str) -> list[int]: CharTokenizer, BPETokenizer, a GPT-2 tokenizer."""

    def encode(self, text: str) -> list[int]: ...


@dataclass
class SentenceScore:
    """The log-likelihood of one text: `per_token` holds log p(token | everything before), in nats."""

    text: str
    per_token: list[float]  # one entry per token of the text (the prefix is context, not scored)

    @property
    def total(self) -> float:
        """Summed log-likelihood log p(text | prefix), nats."""
        return float(sum(self.per_token))

    @property
    def mean(self) -> float:
        """Mean log-likelihood per token (comparable across lengths), nats."""
        return self.total / max(len(self.per_token), 1)


def _block_size(model: torch.nn.Module) -> int:
    config = getattr(model, "config", None)
    size = getattr(config, "block_size", None) or getattr(model, "block_size", None)
    if not size:
        raise ValueError("the model has no block_size (model.config.block_size): pass block_size=")
    return int(size)


def _windows(n: int, block: int, stride: int) -> list[tuple[int, int, int]]:
    """(start, end, first_new) triples: inputs ids[start:end], targets ids[start+1:end+1]; each target
    index t in (previous end, end] is scored by exactly one window, with at least block - stride tokens of
    context once the sequence is longer than the block."""
    out, last = [], 0  # targets 1..n-1 (index 0 has nothing before it)
    while last < n - 1:
        end = min(last + stride, n - 1) if out else min(block, n - 1)
        start = max(0, end - block)
        out.append((start, end, last + 1))
        last = end
    return out


@torch.no_grad()
def token_log_probs(
    model: torch.nn.Module, sequences: Sequence[Sequence[int]], block_size: int | None = None,
    stride: int | None = None, batch_size: int = 64,
) -> list[torch.Tensor]:
    """For each id sequence (length n >= 1), log p(ids[t] | ids[max(0, t-block):t]) for t = 1..n-1: (n-1,).

    Sequences longer than the model's block are scored in overlapping windows (`stride` new targets
    per window, default half the block): every target is scored once, with the longest context that
    fits. `model(idx)` must return logits (B, T, V) (or a tuple whose first item they are)."""
    block = block_size or _block_size(model)
    stride = stride or max(1, block // 2)
    device = next(model.parameters()).device
    rows: list[tuple[int, list[int], int, int]] = []  # (sequence, window ids, first new target offset, end)
    for i, ids in enumerate(sequences):
        ids = list(ids)
        for start, end, first_new in _windows(len(ids), block, stride):
            rows.append((i, ids[start:end + 1], first_new - start - 1, start))
    out = [torch.empty(max(len(s) - 1, 0)) for s in sequences]
    was_training = model.training
    model.eval()
    try:
        rows.sort(key=lambda r: len(r[1]))
        for b in range(0, len(rows), batch_size):
            chunk = rows[b:b + batch_size]
            width = max(len(r[1]) for r in chunk) - 1
            x = torch.zeros(len(chunk), width, dtype=torch.long)
            y = torch.zeros(len(chunk), width, dtype=torch.long)
            for j, (_, w, _, _) in enumerate(chunk):
                x[j, :len(w) - 1] = torch.tensor(w[:-1])
                y[j, :len(w) - 1] = torch.tensor(w[1:])
            result = model(x.to(device))
            logits = result[0] if isinstance(result, tuple) else result  # (B, T, V)
            logp = F.log_softmax(logits.float(), dim=-1).gather(-1, y.to(device).unsqueeze(-1)).squeeze(-1).cpu()
            for j, (i, w, first, start) in enumerate(chunk):
                n_targets = len(w) - 1
                # target at row position k is sequence index start + k + 1
                out[i][start + first:start + n_targets] = logp[j, first:n_targets]
    finally:
        model.train(was_training)
    return out


def score_sentences(
    model: torch.nn.Module, tokenizer: Encoder, texts: Sequence[str], prefix: str = "\n",
    block_size: int | None = None, batch_size: int = 64,
) -> list[SentenceScore]:
    """Log-likelihood of each text given `prefix` (default a newline: "a line starts here"), per token.

    The prefix is context only; it gives the text's first token something to be predicted from.
    `tokenizer.encode` must know every character of prefix + text (a CharTokenizer raises on others;
    see `encodable`)."""
    if not prefix:
        raise ValueError("prefix must be non-empty: the first token of a text needs context to be scored")
    pre = tokenizer.encode(prefix)
    seqs = [pre + tokenizer.encode(t) for t in texts]
    logps = token_log_probs(model, seqs, block_size, batch_size=batch_size)
    return [SentenceScore(t, lp[len(pre) - 1:].tolist()) for t, lp in zip(texts, logps)]


def encodable(tokenizer: Encoder, text: str) -> bool:
    """Whether `tokenizer` can encode `text` (a char tokenizer cannot encode characters it never saw)."""
    try:
        tokenizer.encode(text)
    except (KeyError, ValueError):
        return False
    return True


@dataclass
class Pair:
    """One CrowS-Pairs item: the more and the less stereotyping sentence, its direction and bias type."""

    sent_more: str
    sent_less: str
    direction: str  # "stereo" or "antistereo"
    bias_type: str  # e.g. "gender", "race-color"


def load_pairs(path: str | Path | None = None) -> list[Pair]:
    """The CrowS-Pairs CSV (default: the registry's "crows-pairs") as Pairs; a missing column is an error."""
    if path is None:
        from ..data.datasets import path as data_path

        path = data_path("crows-pairs")
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in CROWS_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: the pair file has no column(s) {', '.join(missing)}; a CrowS-Pairs file "
                             f"needs {', '.join(CROWS_COLUMNS)} (it has {', '.join(reader.fieldnames or [])})")
        return [Pair(r["sent_more"], r["sent_less"], r["stereo_antistereo"], r["bias_type"]) for r in reader]


def bootstrap_ci(values: Sequence[float], n_boot: int = 1000, level: float = 0.95, seed: int = 0,
                 statistic: Callable[[np.ndarray], float] = np.mean) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic` over `values` (resampled with replacement)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    rng = np.random.default_rng(seed)
    stats = np.array([statistic(v[rng.integers(0, v.size, v.size)]) for _ in range(n_boot)])
    alpha = (1 - level) / 2
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha))


def preference(ll_more: Sequence[float], ll_less: Sequence[float]) -> float:
    """Share of pairs with ll_more[i] > ll_less[i] (strictly: a tie is no preference)."""
    if len(ll_more) != len(ll_less) or not ll_more:
        raise ValueError(f"preference needs two equal, non-empty lists; got {len(ll_more)} and {len(ll_less)}")
    return sum(m > s for m, s in zip(ll_more, ll_less)) / len(ll_more)


@dataclass
class PairedResult:
    """How often the model preferred sent_more: overall and per bias type, with bootstrap intervals."""

    preference: float  # fraction of pairs with log p(sent_more) > log p(sent_less); 0.5 = no preference
    ci: tuple[float, float]  # 95% bootstrap interval of `preference`
    n_pairs: int  # pairs scored
    n_skipped: int  # pairs the tokenizer could not encode
    by_type: dict[str, tuple[float, tuple[float, float], int]]  # bias type -> (preference, ci, n)
    deltas: list[float]  # log p(sent_more) - log p(sent_less) per scored pair


def paired_preference(
    model: torch.nn.Module, tokenizer: Encoder, pairs: Sequence[Pair], prefix: str = "\n",
    n_boot: int = 1000, seed: int = 0, batch_size: int = 64,
) -> PairedResult:
    """The CrowS-Pairs score of a causal LM: the share of pairs whose sent_more it finds likelier."""
    usable = [p for p in pairs if encodable(tokenizer, prefix + p.sent_more) and encodable(tokenizer, prefix + p.sent_less)]
    if not usable:
        raise ValueError(f"none of the {len(pairs)} pairs can be encoded by this tokenizer")
    texts = [t for p in usable for t in (p.sent_more, p.sent_less)]
    scores = score_sentences(model, tokenizer, texts, prefix, batch_size=batch_size)
    deltas = [scores[2 * i].total - scores[2 * i + 1].total for i in range(len(usable))]
    wins = np.array([d > 0 for d in deltas], dtype=float)
    by_type: dict[str, tuple[float, tuple[float, float], int]] = {}
    for kind in sorted({p.bias_type for p in usable}):
        w = wins[[i for i, p in enumerate(usable) if p.bias_type == kind]]
        by_type[kind] = (float(w.mean()), bootstrap_ci(w, n_boot, seed=seed), int(w.size))
    overall = preference([scores[2 * i].total for i in range(len(usable))],
                         [scores[2 * i + 1].total for i in range(len(usable))])
    return PairedResult(overall, bootstrap_ci(wins, n_boot, seed=seed), len(usable),
                        len(pairs) - len(usable), by_type, deltas)
