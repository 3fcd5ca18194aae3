"""One `generate()` for every model of the course: greedy, temperature, top-k, top-p, seeded, streaming,
batched, and a KV cache for the GPT (02-07; taught in 06).

Works with any model of the contract: at each step it feeds the model a context, takes the logits
of the last position and samples one token. For the GPT, the KV cache is on by default
(`use_cache=None`): a `CachedDecoder` feeds the prompt once (prefill), then one token per step,
its keys and values kept in a KVCache.

One policy past block_size, for every entry point (generate, stream, the panel; cached or not).
GPT-2's positions are learned embeddings for 0..block_size-1, so a cache cannot slide: the cached
keys were computed at their old positions, and sliding would mean recomputing a whole block at
every step, exactly where sequences are long and the cache should pay. So when the context holds
block_size tokens, the next step starts over from the last `keep` of them plus the new token
(default: half a block; `shift_context`), one prefill, then block_size - keep cheap steps follow
(llama.cpp's "context shift" makes the same trade). A GPT decoded without the cache sees exactly
the same contexts, recomputed, so `use_cache` changes the speed and never the text: the same seed
gives the same tokens from generate, stream and the panel, cached or not (tests/test_generation.py
checks it past block_size; tests/test_kv_cache.py checks each cached logit against recomputing on
`decoder.context`). The price: just after a shift a step sees half a block of context instead of a
full one. Models without a cache (bigram, MLP, RNN, LSTM) store no positions and simply read the
last block_size tokens at every step.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn


def check_sampling_args(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Raise ValueError naming the argument when temperature < 0, top_k < 1 or top_p outside (0, 1]."""
    if not temperature >= 0:  # also catches NaN
        raise ValueError(f"temperature={temperature!r} must be >= 0 (0 means greedy)")
    if top_k is not None and (isinstance(top_k, bool) or int(top_k) != top_k or top_k < 1):
        raise ValueError(f"top_k={top_k!r} must be a whole number >= 1, or None for no top-k filter")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p={top_p!r} must be in (0, 1] (1 keeps every token), or None")


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """logits (B, V) -> logits with all but the k largest of each row set to -inf (ties with the k-th kept)."""
    kth = torch.topk(logits, min(k, logits.size(-1)), dim=-1).values[:, [-1]]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_mask(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """probs (B, V) -> bool (B, V), True for the nucleus: the most likely tokens whose mass reaches top_p.

    Sort each row from most to least likely; a token is in if the mass of the tokens before it
    is < top_p (so the most likely token is always in, and the set is the smallest whose mass
    reaches top_p). Every token as likely as the last one in is kept too, so ties never depend on
    the order a sort happens to leave them in."""
    sorted_probs, _ = torch.sort(probs, dim=-1, descending=True)  # (B, V)
    cum = torch.cumsum(sorted_probs, dim=-1)  # (B, V)
    mass_before = torch.cat([torch.zeros_like(cum[:, :1]), cum[:, :-1]], dim=-1)  # mass of the tokens before
    n_keep = (mass_before < top_p).sum(dim=-1, keepdim=True).clamp(min=1)  # (B, 1)
    threshold = sorted_probs.gather(-1, n_keep - 1)  # (B, 1): probability of the last token in
    return probs >= threshold


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                generator: torch.Generator | None = None, top_p: float | None = None) -> torch.Tensor:
    """logits (B, V) -> next tokens (B, 1): divide by temperature, keep the top_k, keep the top_p nucleus, sample.

    temperature 0 is greedy (argmax, no randomness). The draw uses `generator` (a seeded
    torch.Generator makes it reproducible); a CPU generator drives sampling on any device."""
    check_sampling_args(temperature, top_k, top_p)
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)  # temperature 0: greedy
    logits = logits.float() / temperature
    if top_k is not None:
        logits = top_k_filter(logits, int(top_k))
    probs = torch.softmax(logits, dim=-1)  # (B, V)
    if top_p is not None and top_p < 1:
        probs = probs * top_p_mask(probs, top_p)  # multinomial renormalises
    if generator is not None and generator.device != probs.device:
        return torch.multinomial(probs.cpu(), 1, generator=generator).to(probs.device)
    return torch.multinomial(probs, 1, generator=generator)


def check_prompt(model: nn.Module, idx: torch.Tensor) -> None:
    """Raise ValueError when idx is not (B, T) with 1 <= T <= block_size and every id in [0, vocab_size)."""
    if idx.dim() != 2 or idx.size(1) == 0 or idx.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"idx must be a (B, T) tensor of token ids with T >= 1; got shape "
                         f"{tuple(idx.shape)} and dtype {idx.dtype} (e.g. torch.tensor([tok.encode(text)]))")
    block_size = getattr(model, "block_size", None)
    if block_size is not None and idx.size(1) > block_size:
        raise ValueError(f"idx: the prompt has {idx.size(1)} tokens but the model reads at most "
                         f"block_size={block_size}; pass the last {block_size} (idx[:, -{block_size}:])")
    vocab_size = getattr(getattr(model, "config", None), "vocab_size", None)
    if vocab_size is not None and (int(idx.min()) < 0 or int(idx.max()) >= vocab_size):
        raise ValueError(f"idx: token ids must be in [0, {vocab_size - 1}] (vocab_size={vocab_size}); "
                         f"this prompt has ids from {int(idx.min())} to {int(idx.max())}")


def shift_context(context: torch.Tensor, tokens: torch.Tensor, block_size: int, keep: int) -> torch.Tensor:
    """The context (B, L) after feeding tokens (B, 1): appended, or, when L has reached block_size, the last
    `keep` tokens of context + tokens (the policy past block_size; the module docstring says why)."""
    grown = torch.cat([context, tokens], dim=1)  # (B, L + 1)
    return grown[:, -keep:] if context.size(1) >= block_size else grown


def default_keep(block_size: int) -> int:
    """How many tokens the policy keeps when the context is full: half a block (at least 1)."""
    return max(1, block_size // 2)


class CachedDecoder:
    """A GPT decoding with a KV cache and the re-prefill policy past block_size.

    `prefill(idx (B, T))` feeds the prompt and returns the last logits (B, V); `step(tokens (B, 1))`
    feeds one token per sequence and returns the logits after it (B, V). `context` (B, L) is what
    the cache holds: each returned logits row equals `model(context)[0][:, -1]` (recomputed).
    When the cache is full (L == block_size), `step` starts over from the last `keep` tokens of
    context + tokens (default block_size // 2), one prefill costing `keep` positions; then
    block_size - keep cheap steps follow.
    """

    def __init__(self, model: nn.Module, batch_size: int, keep: int | None = None) -> None:
        self.model = model
        self.block_size = model.block_size
        self.keep = keep if keep is not None else default_keep(self.block_size)
        if not 1 <= self.keep <= self.block_size:
            raise ValueError(f"keep={keep} must be in [1, block_size={self.block_size}]")
        self.cache = model.new_kv_cache(batch_size)
        self.context = torch.zeros(batch_size, 0, dtype=torch.long, device=self.cache.k.device)
        self.refills = 0  # how many times the policy re-prefilled

    def prefill(self, idx: torch.Tensor) -> torch.Tensor:
        """Empty the cache and feed idx (B, T <= block_size) -> logits of its last position (B, V)."""
        self.cache.reset()
        self.context = idx
        logits, _ = self.model(idx, kv_cache=self.cache)  # (B, T, V)
        return logits[:, -1, :]

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed tokens (B, 1) after the context -> logits after them (B, V)."""
        if self.cache.length >= self.block_size:  # full: positions cannot slide, so start over
            self.refills += 1
            return self.prefill(shift_context(self.context, tokens, self.block_size, self.keep))
        self.context = shift_context(self.context, tokens, self.block_size, self.keep)
        logits, _ = self.model(tokens, kv_cache=self.cache)  # (B, 1, V)
        return logits[:, -1, :]


def stream(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    stop_token: int | None = None,
    top_p: float | None = None,
    use_cache: bool | None = None,
) -> Iterator[torch.Tensor]:
    """An iterator of the next tokens (B, 1), one step at a time (the widget panel prints them as they come).

    The arguments are generate()'s, checked here, at the call. use_cache=None uses the cache where
    the model has one (GPT); with or without it, a GPT's contexts follow the one policy past
    block_size (the module docstring), so the tokens are the same. A row that has emitted
    `stop_token` keeps emitting it; the stream ends once every row has."""
    check_sampling_args(temperature, top_k, top_p)
    check_prompt(model, idx)
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 0")
    has_cache = hasattr(model, "new_kv_cache")
    if use_cache and not has_cache:
        raise ValueError(f"use_cache=True needs a model with a KV cache (the GPT); {type(model).__name__} has none")
    use_cache = has_cache if use_cache is None else use_cache
    return _steps(model, idx, max_new_tokens, temperature, top_k, generator, stop_token, top_p, use_cache)


@torch.no_grad()
def _steps(model: nn.Module, idx: torch.Tensor, max_new_tokens: int, temperature: float, top_k: int | None,
           generator: torch.Generator | None, stop_token: int | None, top_p: float | None,
           use_cache: bool) -> Iterator[torch.Tensor]:
    """The loop behind stream(): arguments already checked."""
    was_training = model.training
    model.eval()
    try:
        done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)  # (B,)
        decoder = CachedDecoder(model, idx.size(0)) if use_cache else None
        shifts = hasattr(model, "new_kv_cache")  # a GPT: the policy past block_size, cached or not
        keep = default_keep(model.block_size) if shifts else 0
        nxt = idx
        for i in range(max_new_tokens):
            if decoder is not None:  # the prompt once, then only the newest token
                logits = decoder.prefill(idx) if i == 0 else decoder.step(nxt)
            else:  # recompute on the whole context: the GPT's policy past block_size, or the last block
                logits = model(idx if shifts else idx[:, -model.block_size:])[0][:, -1, :]
            nxt = sample_next(logits, temperature, top_k, generator, top_p)  # (B, 1)
            if stop_token is not None:
                nxt = nxt.masked_fill(done.unsqueeze(1), stop_token)  # finished rows are padded
                done |= nxt.squeeze(1) == stop_token
            yield nxt
            if stop_token is not None and bool(done.all()):
                return
            if decoder is None:
                grown = torch.cat([idx, nxt], dim=1)  # (B, T + 1)
                idx = shift_context(idx, nxt, model.block_size, keep) if shifts else grown
    finally:
        model.train(was_training)


@torch.no_grad()
def generate(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    stop_token: int | None = None,
    top_p: float | None = None,
    use_cache: bool | None = None,
) -> torch.Tensor:
    """Extend idx (B, T) by up to max_new_tokens sampled tokens -> (B, T + n).

    temperature 0 means greedy; top_k keeps the k most likely tokens, top_p the nucleus of mass
    top_p (both may be combined); `generator` (seeded) makes a sample reproduce. Rows of a batch
    are independent prompts of equal length. With `stop_token`, a row that has emitted it keeps
    emitting `stop_token` (padding) and generation ends early once every row has; cut each row
    after its first `stop_token` to get the sequences. use_cache=None (the default) decodes a GPT
    with its KV cache, other models without; use_cache=False recomputes every step: the same
    tokens (the one policy past block_size of the module docstring), slower. Raises ValueError
    for temperature < 0, top_k < 1, top_p outside (0, 1], a prompt longer than block_size or ids
    outside the vocabulary.
    """
    steps = stream(model, idx, max_new_tokens, temperature, top_k, generator, stop_token, top_p, use_cache)
    return torch.cat([idx, *steps], dim=1)
