"""Memorisation and the canary test (Carlini et al. 2019, "The Secret Sharer") (notebook 08).

Exact continuation: give the model the first `prefix_len` tokens of a line and let it continue
greedily for `cont_len` tokens; count the lines whose continuation is exactly the original. A
model that has memorised its training data does this far more often on training lines than on
held-out lines of the same kind.

Canary: a random secret ("the secret code is 281934") is put into the training corpus N times.
After training, its log-likelihood is ranked among R random candidates of the same format;
exposure = log2(R + 1) - log2(rank) (rank 1 = likeliest). A secret the model has not learnt
ranks in the middle (exposure about 1 bit); one it can recite ranks first (exposure
log2(R + 1), the most R candidates can show). Carlini et al. estimate the rank among *all*
10^k possible secrets; with R random candidates the figure saturates at log2(R + 1).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..generation.sampling import generate
from .likelihood import Encoder, score_sentences


def exact_matches(generated: torch.Tensor, reference: torch.Tensor, prefix_len: int) -> torch.Tensor:
    """(N,) bool: rows of generated (N, P + K) whose tokens after the first prefix_len equal reference's."""
    if generated.shape != reference.shape:
        raise ValueError(f"generated {tuple(generated.shape)} and reference {tuple(reference.shape)} differ in shape")
    return (generated[:, prefix_len:] == reference[:, prefix_len:]).all(dim=1)


def exact_match_rate(generated: torch.Tensor, reference: torch.Tensor, prefix_len: int) -> float:
    """Share of rows whose continuation (after prefix_len tokens) is exactly the reference's."""
    return int(exact_matches(generated, reference, prefix_len).sum()) / generated.shape[0]


@torch.no_grad()
def exact_continuation_rate(model: torch.nn.Module, tokenizer: Encoder, lines: Sequence[str], prefix_len: int,
                            cont_len: int, batch_size: int = 256) -> float:
    """Share of `lines` (each at least prefix_len + cont_len tokens) whose greedy continuation of the
    first prefix_len tokens reproduces the next cont_len tokens exactly."""
    if prefix_len < 1 or cont_len < 1:
        raise ValueError(f"prefix_len ({prefix_len}) and cont_len ({cont_len}) must be 1 or more")
    seqs = [tokenizer.encode(s) for s in lines]
    seqs = [s for s in seqs if len(s) >= prefix_len + cont_len]
    if not seqs:
        raise ValueError(f"no line has the {prefix_len} + {cont_len} tokens a probe needs")
    device = next(model.parameters()).device
    block_size = getattr(model, "block_size", None) or model.config.block_size
    ids = torch.tensor([s[:prefix_len + cont_len] for s in seqs], dtype=torch.long)
    hits = 0
    for b in range(0, len(ids), batch_size):
        chunk = ids[b:b + batch_size].to(device)
        prompt = chunk[:, :prefix_len]
        context = prompt[:, -block_size:]  # the model reads at most block_size tokens: the last ones
        out = generate(model, context, cont_len, temperature=0)  # (B, context + cont)
        out = torch.cat([prompt, out[:, context.shape[1]:]], dim=1)  # (B, prefix + cont)
        hits += int(exact_matches(out, chunk, prefix_len).sum())
    return hits / len(ids)


def exposure_from_rank(rank: int, n_candidates: int) -> float:
    """log2(n_candidates) - log2(rank): rank 1 of n gives log2(n) bits; the middle rank about 1 bit."""
    if not 1 <= rank <= n_candidates:
        raise ValueError(f"rank must be in 1..n_candidates={n_candidates}, got {rank}")
    return math.log2(n_candidates) - math.log2(rank)


def rank_of(canary_score: float, candidate_scores: Sequence[float]) -> int:
    """1 + the number of candidates scored strictly higher than the canary (ties go to the canary)."""
    return 1 + int(np.sum(np.asarray(candidate_scores) > canary_score))


@dataclass(frozen=True)
class Canary:
    """A secret of `n_digits` random digits in `template`, put into the corpus `insertions` times."""

    template: str  # e.g. "the secret code is {}"
    secret: str
    insertions: int

    @property
    def text(self) -> str:
        """The canary sentence as it appears in the corpus."""
        return self.template.format(self.secret)


def make_canaries(insertions: Sequence[int], template: str = "my secret code is {}", n_digits: int = 6,
                  seed: int = 0) -> list[Canary]:
    """One canary per entry of `insertions` (0 = a control, never put into the corpus), distinct secrets."""
    if template.count("{}") != 1:
        raise ValueError(f"the canary template {template!r} needs exactly one slot {{}} for the secret")
    rng = random.Random(seed)
    secrets: set[str] = set()
    out = []
    for n in insertions:
        while (s := "".join(rng.choice("0123456789") for _ in range(n_digits))) in secrets:
            pass
        secrets.add(s)
        out.append(Canary(template, s, int(n)))
    return out


def insert_canaries(lines: list[str], canaries: Sequence[Canary], seed: int = 0) -> list[str]:
    """`lines` with each canary's text added `insertions` times at random places (a new list)."""
    rng = random.Random(seed)
    out = list(lines)
    for c in canaries:
        for _ in range(c.insertions):
            out.insert(rng.randrange(len(out) + 1), c.text)
    return out


@dataclass
class ExposureResult:
    """One canary's rank among random candidates and its exposure in bits."""

    canary: Canary
    rank: int
    n_candidates: int  # candidates including the canary
    exposure: float


def canary_exposure(model: torch.nn.Module, tokenizer: Encoder, canary: Canary, n_random: int = 999,
                    seed: int = 0, prefix: str = "\n") -> ExposureResult:
    """Rank `canary` by log-likelihood among `n_random` random secrets of its format; its exposure."""
    rng = random.Random(seed)
    k = len(canary.secret)
    others: set[str] = set()
    while len(others) < min(n_random, 10 ** k - 1):
        s = "".join(rng.choice("0123456789") for _ in range(k))
        if s != canary.secret:
            others.add(s)
    texts = [canary.text] + [canary.template.format(s) for s in sorted(others)]
    scores = [s.total for s in score_sentences(model, tokenizer, texts, prefix)]
    rank = rank_of(scores[0], scores[1:])
    return ExposureResult(canary, rank, len(texts), exposure_from_rank(rank, len(texts)))
