"""The chat format (notebook 09): special tokens added to a trained tokenizer, and a template that turns a
conversation into token ids plus a mask of the tokens the model is trained to produce.

    tok = ChatTokenizer(char_tok)                  # 4 new ids after the old vocabulary
    grow_vocab(model, tok.vocab_size)              # embedding (and output) rows grow; old ids keep their meaning
    ids, mask = render([{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}], tok)

A conversation renders as `<|role|> content <|end|>` per message, in order. The mask is 1 exactly on an
assistant message's content and its `<|end|>` (what the model must learn to say, and to stop), 0 on
everything else, the `<|assistant|>` header included (the template writes it, not the model).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import nn

SYSTEM, USER, ASSISTANT, END = "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"
SPECIALS = (SYSTEM, USER, ASSISTANT, END)
ROLES = {"system": SYSTEM, "user": USER, "assistant": ASSISTANT}


class Tokenizer(Protocol):
    """A trained tokenizer: encode(str) -> ids, decode(ids) -> str, vocab_size."""

    vocab_size: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


class ChatTokenizer:
    """A trained tokenizer plus special tokens, appended after its vocabulary without retraining it.

    Old ids keep their meaning (base.encode(text) == encode(text) for plain text); special token k
    gets id base.vocab_size + k. `encode` treats the special strings in a text as single tokens."""

    def __init__(self, base: Tokenizer, specials: Sequence[str] = SPECIALS) -> None:
        if len(set(specials)) != len(specials) or not all(specials):
            raise ValueError(f"special tokens must be distinct non-empty strings, got {list(specials)}")
        self.base = base
        self.specials = list(specials)
        self.special_ids = {s: base.vocab_size + k for k, s in enumerate(self.specials)}

    @property
    def vocab_size(self) -> int:
        """The base vocabulary plus the special tokens."""
        return self.base.vocab_size + len(self.specials)

    def id(self, special: str) -> int:
        """The id of a special token, e.g. tok.id(END)."""
        if special not in self.special_ids:
            raise ValueError(f"{special!r} is not a special token of this tokenizer; it has {self.specials}")
        return self.special_ids[special]

    def encode(self, text: str) -> list[int]:
        """str -> ids: special token strings become their one id, the rest goes through the base tokenizer."""
        ids: list[int] = []
        start = 0
        while start < len(text):
            hits = [(text.find(s, start), s) for s in self.specials]
            hits = [(i, s) for i, s in hits if i >= 0]
            if not hits:
                break
            i, s = min(hits)
            ids += self.base.encode(text[start:i]) + [self.special_ids[s]]
            start = i + len(s)
        return ids + self.base.encode(text[start:])

    def decode(self, ids: Sequence[int]) -> str:
        """ids -> str; special ids become their strings."""
        out, run = [], []
        for i in ids:
            i = int(i)
            if i >= self.base.vocab_size:
                out.append(self.base.decode(run))
                run = []
                k = i - self.base.vocab_size
                if k >= len(self.specials):
                    raise ValueError(f"id {i} is outside the vocabulary 0..{self.vocab_size - 1}")
                out.append(self.specials[k])
            else:
                run.append(i)
        return "".join(out) + self.base.decode(run)

    def __repr__(self) -> str:
        return f"ChatTokenizer({self.base!r} + {self.specials})"


@torch.no_grad()
def grow_vocab(model: nn.Module, vocab_size: int, seed: int = 0) -> nn.Module:
    """Give a trained GPT-like model `vocab_size` token rows; rows 0..old-1 are copied, so old ids mean
    what they meant. New embedding rows start at the mean of the old rows plus N(0, 0.02) noise (a new
    token starts as an "average" token); a separate (untied) output layer grows the same way.

    Needs `model.transformer.wte` (nn.Embedding (V, C)) and `model.lm_head` (nn.Linear C -> V), as the
    course's GPT has. Returns the model (changed in place; model.config.vocab_size updated)."""
    wte = getattr(getattr(model, "transformer", None), "wte", None)
    head = getattr(model, "lm_head", None)
    if not isinstance(wte, nn.Embedding) or not isinstance(head, nn.Linear):
        raise TypeError(f"grow_vocab needs model.transformer.wte (nn.Embedding) and model.lm_head (nn.Linear); "
                         f"{type(model).__name__} has other names: grow its embedding and output layer by hand")
    old, dim = wte.weight.shape
    if vocab_size < old:
        raise ValueError(f"vocab_size={vocab_size} is smaller than the model's {old} rows; it can only grow")
    tied = head.weight is wte.weight
    g = torch.Generator().manual_seed(seed)

    def grown(weight: torch.Tensor) -> torch.Tensor:  # (old, C) -> (vocab_size, C)
        noise = 0.02 * torch.randn(vocab_size - old, dim, generator=g).to(weight)
        new_rows = weight.mean(dim=0, keepdim=True) + noise  # (new, C)
        return torch.cat([weight, new_rows], dim=0)

    new_wte = nn.Embedding(vocab_size, dim).to(wte.weight)
    new_wte.weight.copy_(grown(wte.weight))
    model.transformer.wte = new_wte
    new_head = nn.Linear(dim, vocab_size, bias=head.bias is not None).to(head.weight)
    if tied:
        new_head.weight = new_wte.weight  # still one matrix
    else:
        new_head.weight.copy_(grown(head.weight))
    if head.bias is not None:
        new_head.bias.copy_(torch.cat([head.bias, head.bias.new_zeros(vocab_size - old)]))
    model.lm_head = new_head
    if hasattr(model, "config"):
        model.config.vocab_size = vocab_size
    return model


def render(conversation: Sequence[dict], tok: ChatTokenizer, max_len: int | None = None,
           add_generation_prompt: bool = False) -> tuple[list[int], list[int]]:
    """A conversation -> (ids, mask), two lists of equal length L.

    conversation: [{"role": "system" | "user" | "assistant", "content": str}, ...] in order; a system
    message with empty content is left out (the same ids as no system message). Each message renders as
    `<|role|> content <|end|>`; mask[t] is 1 where ids[t] is an assistant message's content or its
    `<|end|>`, else 0. add_generation_prompt=True appends `<|assistant|>` (mask 0): the prompt a model
    answers. max_len cuts the result to its first max_len tokens (a conversation longer than the context:
    the cut-off answer tokens are simply not trained on)."""
    ids: list[int] = []
    mask: list[int] = []
    for k, message in enumerate(conversation):
        role, content = message.get("role"), message.get("content")
        if role not in ROLES or not isinstance(content, str):
            raise ValueError(f"message {k} must be {{'role': one of {list(ROLES)}, 'content': str}}; got {message!r}")
        if role == "system" and content == "":
            continue
        body = tok.encode(content) + [tok.id(END)]
        train = 1 if role == "assistant" else 0
        ids += [tok.id(ROLES[role])] + body
        mask += [0] + [train] * len(body)
    if add_generation_prompt:
        ids.append(tok.id(ASSISTANT))
        mask.append(0)
    if max_len is not None:
        if max_len < 1:
            raise ValueError(f"max_len={max_len} must be >= 1 (the model's block_size + 1 for training)")
        ids, mask = ids[:max_len], mask[:max_len]
    return ids, mask


def prompt_ids(conversation: Sequence[dict], tok: ChatTokenizer) -> list[int]:
    """The ids a model continues to answer `conversation` (its last message is the user's): render(...,
    add_generation_prompt=True)'s ids."""
    return render(conversation, tok, add_generation_prompt=True)[0]
