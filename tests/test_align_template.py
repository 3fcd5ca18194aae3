"""The chat format (minilm.align.template): special tokens, a grown vocabulary, the rendered ids and mask."""

from __future__ import annotations

import pytest
import torch

from minilm.align.template import (
    ASSISTANT,
    END,
    SYSTEM,
    USER,
    ChatTokenizer,
    grow_vocab,
    prompt_ids,
    render,
)
from minilm.data.tokenizers import CharTokenizer
from minilm.models.gpt import GPT, GPTConfig

BASE = CharTokenizer(list("abc"))  # a=0, b=1, c=2
TOK = ChatTokenizer(BASE)  # <|system|>=3, <|user|>=4, <|assistant|>=5, <|end|>=6
S, U, A, E = 3, 4, 5, 6


def test_special_tokens_come_after_the_old_vocabulary():
    assert TOK.vocab_size == 7
    assert [TOK.id(t) for t in (SYSTEM, USER, ASSISTANT, END)] == [S, U, A, E]
    assert TOK.encode("abc") == BASE.encode("abc") == [0, 1, 2]  # old ids keep their meaning
    assert TOK.encode("a<|end|>b<|user|>") == [0, E, 1, U]
    assert TOK.decode([U, 0, 2, E]) == "<|user|>ac<|end|>"
    with pytest.raises(ValueError, match="outside the vocabulary"):
        TOK.decode([7])
    with pytest.raises(ValueError, match="not a special token"):
        TOK.id("<|tool|>")


def test_render_by_hand():
    conv = [{"role": "system", "content": "ab"}, {"role": "user", "content": "c"},
            {"role": "assistant", "content": "ba"}]
    ids, mask = render(conv, TOK)
    assert ids == [S, 0, 1, E, U, 2, E, A, 1, 0, E]
    assert mask == [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1]  # the answer and its end token, not the header


def test_multi_turn_masks_every_assistant_turn_only():
    conv = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
            {"role": "user", "content": "cc"}, {"role": "assistant", "content": "a"}]
    ids, mask = render(conv, TOK)
    assert ids == [U, 0, E, A, 1, E, U, 2, 2, E, A, 0, E]
    assert mask == [0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 1, 1]
    assert [i for i, m in zip(ids, mask) if m] == [1, E, 0, E]


def test_empty_system_prompt_is_left_out_and_generation_prompt():
    conv = [{"role": "user", "content": "ab"}]
    with_empty = [{"role": "system", "content": ""}, *conv]
    assert render(with_empty, TOK) == render(conv, TOK) == ([U, 0, 1, E], [0, 0, 0, 0])
    assert prompt_ids(with_empty, TOK) == [U, 0, 1, E, A]
    assert render(conv, TOK, add_generation_prompt=True)[1] == [0, 0, 0, 0, 0]


def test_truncation_by_the_context_length():
    conv = [{"role": "user", "content": "abc"}, {"role": "assistant", "content": "cba"}]
    ids, _ = render(conv, TOK)
    assert len(ids) == 10
    cut_ids, cut_mask = render(conv, TOK, max_len=8)
    assert cut_ids == ids[:8] == [U, 0, 1, 2, E, A, 2, 1]
    assert cut_mask == [0, 0, 0, 0, 0, 0, 1, 1]  # the rest of the answer is not trained on
    assert render(conv, TOK, max_len=5)[1] == [0] * 5  # cut before the answer: nothing to train
    with pytest.raises(ValueError, match="max_len"):
        render(conv, TOK, max_len=0)


def test_bad_messages_are_refused():
    with pytest.raises(ValueError, match="role"):
        render([{"role": "tool", "content": "a"}], TOK)
    with pytest.raises(ValueError, match="role"):
        render([{"role": "user"}], TOK)


@pytest.mark.parametrize("tied", [True, False])
def test_grow_vocab_keeps_the_old_ids_meaning(tied):
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=8, vocab_size=3, n_layer=1, n_head=2, n_embd=8)).eval()
    if not tied:
        model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone() * 2)
    idx = torch.tensor([[0, 2, 1, 1]])
    before = model(idx)[0]
    grow_vocab(model, TOK.vocab_size)
    after = model(idx)[0]
    assert after.shape == (1, 4, 7) and model.config.vocab_size == 7
    torch.testing.assert_close(after[..., :3], before, rtol=1e-6, atol=1e-6)  # old logits unchanged
    assert (model.lm_head.weight is model.transformer.wte.weight) == tied
    model(torch.tensor([[U, 0, E, A]]))  # the new ids are usable
    with pytest.raises(ValueError, match="only grow"):
        grow_vocab(model, 5)
