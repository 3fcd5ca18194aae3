"""09's real-LLM stage (minilm.align.instruct): Raschka's data and split, the masked rows, the pairs, the LoRA
cache, and DPO with the LoRA-at-zero model as its own reference. A byte-level stand-in for a transformers
chat tokenizer keeps these fast; tests/test_chat.py and notebook 09 run the real SmolLM2 tokenizer."""

from __future__ import annotations

import copy
import re
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F

from minilm.align import instruct
from minilm.align.dpo import pair_logprobs, reference_logprobs
from minilm.models.gpt import GPT, GPTConfig

END = 257  # the stand-in's <|im_end|>
PAD = 256


class ByteChatTokenizer:
    """Bytes 0-255, <pad> 256, <|im_end|> 257, <|im_start|> 258; apply_chat_template as ChatML, in text."""

    pad_token_id, eos_token_id, unk_token_id = PAD, END, None
    chat_template = "ChatML"
    specials: ClassVar[dict[str, int]] = {"<pad>": PAD, "<|im_end|>": END, "<|im_start|>": 258}

    def convert_tokens_to_ids(self, token: str) -> int:
        return self.specials[token]

    def apply_chat_template(self, messages, add_generation_prompt=False, tokenize=True):
        assert not tokenize
        text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
        return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids, i = [], 0
        while i < len(text):
            for s, sid in self.specials.items():
                if text.startswith(s, i):
                    ids.append(sid)
                    i += len(s)
                    break
            else:
                ids.extend(text[i].encode())
                i += 1
        return ids

    def decode(self, ids) -> str:
        inv = {v: k for k, v in self.specials.items()}
        return "".join(inv[i] if i in inv else bytes([i]).decode(errors="replace") for i in ids)


ITEMS = [{"instruction": f"Say {w}.", "input": "" if k % 2 else "please", "output": w.capitalize() + ".",
          "chosen": f"Sure: {w}.", "rejected": f"No, figure out {w} yourself."}
         for k, w in enumerate(["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"])]


def tiny(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig.modern(block_size=96, vocab_size=259, n_layer=2, n_head=4, n_embd=32, n_kv_head=2))


def recipe(**kw) -> instruct.LLMRecipe:
    row = {"n_layer": None, "block_size": 96, "lora_rank": 4, "lora_alpha": 8.0, "sft_items": 8,
           "sft_steps": 6, "sft_lr": 1e-2, "sft_batch": 4, "sft_lora_layers": None, "dpo_lora_layers": None,
           "dpo_pairs": 8, "dpo_steps": 8, "dpo_lr": 1e-2,
           "dpo_beta": 0.1, "dpo_batch": 4, "dpo_shuffle": False, "n_val": 2, "n_test": 2}
    return instruct.LLMRecipe(**{**row, **kw})


def test_raschkas_split_of_the_real_files():
    for preference in (False, True):
        items = instruct.instruction_items(preference)
        s = instruct.split_items(items)
        assert [len(s[k]) for k in ("train", "test", "val")] == [935, 110, 55]
        assert s["train"] + s["test"] + s["val"] == items  # in the file's order: train, test, val
    assert {"chosen", "rejected"} <= set(items[0])
    short = instruct.short_answer_items(s["test"])
    assert short and all(len(e["output"].split()) <= 3 for e in short)


def test_rows_score_the_answer_and_its_end_token_only():
    tok = ByteChatTokenizer()
    e = ITEMS[0]
    prompt = instruct.prompt_ids(tok, e)
    assert tok.decode(prompt) == ("<|im_start|>user\nSay one.\n\nplease<|im_end|>\n<|im_start|>assistant\n")
    (x, y), = instruct.sft_rows(tok, [e], 96)
    answer = tok.encode("One.") + [END]
    assert x == (prompt + answer)[:-1]
    assert y == [-1] * (len(prompt) - 1) + answer  # position t predicts token t + 1: the answer's ids only
    (x, y), = instruct.sft_rows(tok, [e], 10)  # cut by the context
    assert len(x) == len(y) == 10


def test_a_tokenizer_without_a_template_gets_raschkas_prompt():
    tok = ByteChatTokenizer()
    tok.chat_template = None  # as GPT-2's
    text = tok.decode(instruct.prompt_ids(tok, ITEMS[0]))
    assert text.startswith("Below is an instruction") and text.endswith("please\n\n### Response:\n")
    assert "### Input:" in text and "### Input:" not in tok.decode(instruct.prompt_ids(tok, ITEMS[1]))


def test_masked_val_loss_is_cross_entropy_over_the_answer_tokens():
    tok, model = ByteChatTokenizer(), tiny().eval()
    rows = instruct.sft_rows(tok, ITEMS[:5], 96)
    total, count = 0.0, 0
    for x, y in rows:
        logits, _ = model(torch.tensor([x]))
        total += float(F.cross_entropy(logits[0].detach(), torch.tensor(y), ignore_index=-1, reduction="sum"))
        count += sum(t >= 0 for t in y)
    assert instruct.masked_val_loss(model, rows, PAD, batch_size=2) == pytest.approx(total / count, rel=1e-5)


def test_pairs_end_both_answers_with_the_end_of_turn():
    tok = ByteChatTokenizer()
    p, = instruct.preference_pairs(tok, ITEMS[:1])
    assert p.chosen[-1] == p.rejected[-1] == END and p.prompt == instruct.prompt_ids(tok, ITEMS[0])
    assert tok.decode(p.rejected[:-1]) == ITEMS[0]["rejected"]


def test_normalise_and_end_and_pad_ids():
    assert instruct.normalise(" Jane  Austen. ") == instruct.normalise("jane austen") == "jane austen"
    assert instruct.normalise("Hg.") != instruct.normalise("Hg is mercury")
    tok = ByteChatTokenizer()
    assert instruct.end_id(tok) == END and instruct.pad_id(tok) == PAD


def test_lora_at_zero_is_the_reference_and_dpo_raises_the_margin(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILM_CACHE_DIR", str(tmp_path))
    tok, r = ByteChatTokenizer(), recipe()
    items = instruct.split_items(ITEMS * 4)
    base, model = tiny(), tiny()
    pairs = instruct.preference_pairs(tok, items["train"][:r.dpo_pairs])
    trainable, total = instruct.add_lora(model, r.lora_rank, r.lora_alpha)
    assert 0 < trainable < total / 5
    ref = reference_logprobs(base, pairs, PAD, "cpu")
    same = reference_logprobs(model, pairs, PAD, "cpu")  # LoRA's B = 0: the wrapped model is the base model
    assert torch.allclose(ref[0], same[0], atol=1e-5) and torch.allclose(ref[1], same[1], atol=1e-5)

    model = tiny()
    hist, info = instruct.run_llm_dpo(model, tok, items, r, progress=False)
    assert not info["cached"] and hist["val_margin"][0] == pytest.approx(0.0, abs=1e-6)
    assert hist["val_margin"][-1] > 0.05 and hist["val_accuracy"][-1] == 1.0
    with torch.no_grad():
        c, rj = pair_logprobs(model.eval(), pairs, PAD, "cpu", 96)
    assert float(((c - ref[0]) - (rj - ref[1])).mean()) > 0  # chosen up relative to rejected, against the base
    frozen = {n: p for n, p in base.named_parameters()}
    for n, p in model.named_parameters():  # the base weights did not move
        plain = n.replace(".base.", ".")
        if not p.requires_grad and plain in frozen:
            assert torch.equal(p, frozen[plain]), n

    again = tiny()
    hist2, info2 = instruct.run_llm_dpo(again, tok, items, r, progress=False)  # from the cache, no training
    assert info2["cached"] and hist2 == hist
    for (n, p), (_, q) in zip(model.named_parameters(), again.named_parameters(), strict=True):
        assert torch.equal(p, q), n
    changed = instruct.run_llm_dpo(tiny(), tok, items, recipe(dpo_lr=5e-3), progress=False)[1]
    assert not changed["cached"]  # another setting, another file
    assert instruct.run_llm_dpo(tiny(), tok, items, recipe(sft_lr=1.0), progress=False)[1]["cached"]  # SFT's: not DPO's


def test_sft_lowers_the_masked_loss_on_its_own_answers(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILM_CACHE_DIR", str(tmp_path))
    tok, r = ByteChatTokenizer(), recipe(sft_steps=30, sft_lr=2e-2)
    items = instruct.split_items(ITEMS * 4)
    model = tiny()
    rows = instruct.sft_rows(tok, items["train"][:r.sft_items], r.block_size)
    before = instruct.masked_val_loss(copy.deepcopy(model), rows, PAD)
    hist, info = instruct.run_llm_sft(model, tok, items, r, progress=False)
    after = instruct.masked_val_loss(model, rows, PAD)
    assert after < before - 0.2, (before, after)  # a random model, LoRA on 2 small blocks only
    assert len(hist["step_loss"]) == r.sft_steps and info["trainable"] < info["total"]


def test_a_cached_lora_of_another_shape_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILM_CACHE_DIR", str(tmp_path))
    model = tiny()
    instruct.add_lora(model, 4)
    instruct.cached_lora("x", {"k": 1}, model, lambda: {"done": True}, progress=False)
    other = tiny()
    with pytest.raises(ValueError, match="add_lora"):
        instruct.cached_lora("x", {"k": 1}, other, dict, progress=False)  # no LoRA on this one


def test_lora_on_the_last_blocks_only_and_dpo_with_a_shuffled_pass(tmp_path, monkeypatch):
    assert instruct.last_blocks_pattern(30, None) == instruct.LORA_TARGETS
    regex = re.compile(instruct.last_blocks_pattern(30, 2))
    assert regex.search("transformer.h.28.attn.c_attn") and regex.search("transformer.h.29.mlp.c_proj")
    assert not regex.search("transformer.h.27.attn.c_attn") and not regex.search("transformer.h.2.attn.c_attn")
    assert not regex.search("transformer.h.29.ln_1")
    for bad in (0, 31):
        with pytest.raises(ValueError, match="lora_layers"):
            instruct.last_blocks_pattern(30, bad)
    model = tiny()  # 2 blocks: LoRA on the last one only
    trainable, _ = instruct.add_lora(model, 4, 8.0, last=1)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all(".h.1." in n for n in names)
    assert 2 * trainable == instruct.add_lora(tiny(), 4, 8.0)[0]  # two alike blocks: half the LoRA weights
    # the recipe's switches reach train_dpo: last-block LoRA + a shuffled pass still learns the pairs
    monkeypatch.setenv("MINILM_CACHE_DIR", str(tmp_path))
    tok, r = ByteChatTokenizer(), recipe(dpo_lora_layers=1, dpo_shuffle=True)
    hist, info = instruct.run_llm_dpo(tiny(), tok, instruct.split_items(ITEMS * 4), r, progress=False)
    assert not info["cached"] and hist["val_margin"][-1] > 0.05
    assert info["trainable"] == trainable
