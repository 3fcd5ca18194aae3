"""One `generate()` for every model of the course: temperature, top-k, seeded sampling, stop token (02-07).

Works with any model of the contract: at each step it feeds the last `block_size` tokens,
takes the logits of the last position and samples one token. Recurrent models re-run their
window each step (simple and correct; notebook 06 adds a KV cache for the GPT).
"""

from __future__ import annotations

import torch
from torch import nn


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """logits (B, V) -> next tokens (B, 1): divide by temperature, keep the top_k, sample."""
    if temperature <= 0:
        return logits.argmax(dim=-1, keepdim=True)  # temperature 0: greedy
    logits = logits.float() / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, [-1]]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)  # (B, V)
    if generator is not None and generator.device != probs.device:
        # a CPU generator drives sampling on any device: sample on the CPU, move back
        return torch.multinomial(probs.cpu(), 1, generator=generator).to(probs.device)
    return torch.multinomial(probs, 1, generator=generator)


@torch.no_grad()
def generate(
    model: nn.Module,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    stop_token: int | None = None,
) -> torch.Tensor:
    """Extend idx (B, T) by up to max_new_tokens sampled tokens -> (B, T + n).

    With `stop_token`, a row that has emitted it keeps emitting `stop_token` (padding) and
    generation ends early, with n < max_new_tokens, once every row has emitted it; cut each
    row after its first `stop_token` to get the sequences. temperature 0 means greedy.
    """
    was_training = model.training
    model.eval()
    done = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)  # (B,)
    for _ in range(max_new_tokens):
        context = idx[:, -model.block_size:]  # (B, <= block_size): all a model can see
        logits, _ = model(context)
        nxt = sample_next(logits[:, -1, :], temperature, top_k, generator)  # (B, 1)
        if stop_token is not None:
            nxt = nxt.masked_fill(done.unsqueeze(1), stop_token)  # finished rows are padded
            done |= nxt.squeeze(1) == stop_token
        idx = torch.cat([idx, nxt], dim=1)  # (B, T + 1)
        if stop_token is not None and bool(done.all()):
            break
    model.train(was_training)
    return idx
