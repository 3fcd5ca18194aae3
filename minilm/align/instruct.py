"""The same stages on a real LLM, offline (notebook 09, part 2): SFT and DPO of SmolLM2-135M-Instruct with LoRA.

The data is Raschka's chapter 7 set (the `instruct` dataset: 1,100 instructions, each with an answer and
with a polite `chosen` and an impolite `rejected` answer), split as his book does: the first 85 % train,
the next 10 % test, the last 5 % validation. The prompt is rendered by the model's own chat template
(transformers' tokenizer: `apply_chat_template`); an answer is its ids plus the end-of-turn token.

    model, tok = load_smollm2()                           # minilm GPT with SmolLM2's weights
    items = split_items(instruction_items(preference=True))
    pairs = preference_pairs(items["train"][:256], tok)
    add_lora(model, rank=8)                               # LoRA's B starts at 0: the model is unchanged
    hist = train_dpo(model, model, pairs, val_pairs, pad_id(tok), "cpu", ...)

`train_dpo` computes the reference's log-probabilities before its first step, so the policy itself (LoRA
still at zero) is the frozen reference: no second copy of the 135M weights. Every function here only
turns data into the ids and pairs that `sft`, `dpo` and the course's training loop already take.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..data.datasets import cache_root, path
from ..finetune.lora import apply_lora, count_parameters, mark_only_lora_trainable
from ..generation.sampling import generate
from ..models.llama import LOADER_VERSION, SMOLLM2_BYTES, SMOLLM2_FILE
from ..presets import preset as active_preset
from ..recipes import settings
from ..training.loop import TrainConfig, train
from .chat import IM_END
from .dpo import Pair, pair_xy, train_dpo
from .sft import pad_batch, sft_loss

DATASET = "instruct"
FILES = {False: "instruct/instruction-data.json", True: "instruct/instruction-data-with-preference.json"}
END_OF_TURN = IM_END  # SmolLM2's (ChatML's) end of a turn: the chat panel's, one constant
LORA_TARGETS = r"attn\.(c_attn|c_proj)$|mlp\.(c_fc|c_proj)$"  # every matrix of every block


def instruction_items(preference: bool = False) -> list[dict]:
    """The 1,100 items, in the file's order: dicts {instruction, input, output} (+ chosen, rejected when
    `preference`)."""
    items = json.loads(path(DATASET, FILES[preference]).read_text(encoding="utf-8"))
    need = {"instruction", "input", "output"} | ({"chosen", "rejected"} if preference else set())
    bad = [i for i, e in enumerate(items) if not need <= set(e)]
    if bad:
        raise ValueError(f"{FILES[preference]}: items {bad[:5]} lack one of {sorted(need)}; the file is not "
                         "Raschka's (fetch('instruct') checks its sha256)")
    return items


def split_items(items: Sequence[dict]) -> dict[str, list[dict]]:
    """Raschka's split, in order: train the first 85 %, test the next 10 %, val the rest (935/110/55 of 1,100)."""
    n_train, n_test = int(0.85 * len(items)), int(0.10 * len(items))
    return {"train": list(items[:n_train]), "test": list(items[n_train:n_train + n_test]),
            "val": list(items[n_train + n_test:])}


def user_text(item: dict) -> str:
    """The user's turn: the instruction, then the input (when there is one) after a blank line."""
    return item["instruction"] + (f"\n\n{item['input']}" if item["input"] else "")


def end_id(tok) -> int:
    """The id of the end-of-turn token of a transformers chat tokenizer (else its end of text: GPT-2's)."""
    i = tok.convert_tokens_to_ids(END_OF_TURN)
    return i if isinstance(i, int) and i != tok.unk_token_id else tok.eos_token_id


def pad_id(tok) -> int:
    """A padding id (never scored: its targets are -1): the tokenizer's own, else its end of turn."""
    return tok.pad_token_id if tok.pad_token_id is not None else end_id(tok)


ALPACA = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
          "request.\n\n### Instruction:\n{instruction}{input}\n\n### Response:\n")  # Raschka's (GPT-2 has no template)


def prompt_ids(tok, item: dict) -> list[int]:
    """The model's chat template around the user's turn, ending where the assistant's answer starts. A
    tokenizer without a chat template (GPT-2's) gets Raschka's Alpaca-style prompt instead."""
    if getattr(tok, "chat_template", None) is None:
        extra = f"\n\n### Input:\n{item['input']}" if item["input"] else ""
        return tok.encode(ALPACA.format(instruction=item["instruction"], input=extra), add_special_tokens=False)
    text = tok.apply_chat_template([{"role": "user", "content": user_text(item)}], add_generation_prompt=True,
                                   tokenize=False)
    return tok.encode(text, add_special_tokens=False)


def answer_ids(tok, text: str) -> list[int]:
    """An assistant answer's ids, closed by the end-of-turn token (the model learns to stop)."""
    return tok.encode(text, add_special_tokens=False) + [end_id(tok)]


def sft_rows(tok, items: Sequence[dict], block_size: int) -> list[tuple[list[int], list[int]]]:
    """(x, y) per item for the masked SFT loss: y is -1 on the prompt, the answer's ids after it (cut to
    block_size): what `sft.pad_batch` and `sft.sft_loss` take."""
    return [pair_xy(prompt_ids(tok, e), answer_ids(tok, e["output"]), block_size) for e in items]


def preference_pairs(tok, items: Sequence[dict]) -> list[Pair]:
    """One DPO pair per item: its prompt, the chosen (polite) and the rejected (impolite) answer."""
    return [Pair(prompt_ids(tok, e), answer_ids(tok, e["chosen"]), answer_ids(tok, e["rejected"]), own=False)
            for e in items]


def last_blocks_pattern(n_layer: int, last: int | None, pattern: str = LORA_TARGETS) -> str:
    """`pattern` restricted to the last `last` of n_layer blocks (None: every block): blocks are named
    "transformer.h.<i>", so last_blocks_pattern(30, 2) matches h.28 and h.29's matrices only."""
    if last is None:
        return pattern
    if not 1 <= last <= n_layer:
        raise ValueError(f"LoRA on the last {last} blocks (a recipe's sft_/dpo_lora_layers): give 1..{n_layer} "
                         f"(the model has {n_layer} blocks), or None for all of them")
    blocks = "|".join(str(i) for i in range(n_layer - last, n_layer))
    return rf"\.h\.({blocks})\.(?:{pattern})"


def add_lora(model: nn.Module, rank: int = 8, alpha: float = 16.0, pattern: str = LORA_TARGETS,
             last: int | None = None) -> tuple[int, int]:
    """LoRA on the block matrices `pattern` names, in the last `last` blocks only (None: all), everything
    else frozen; -> (trainable, total) parameters. Below the first block with LoRA nothing is trained, so
    the backward pass stops there: LoRA on the last half of the blocks halves a step's backward cost."""
    apply_lora(model, last_blocks_pattern(model.config.n_layer, last, pattern), rank=rank, alpha=alpha)
    mark_only_lora_trainable(model)
    return count_parameters(model)


@torch.no_grad()
def masked_val_loss(model: nn.Module, rows: Sequence[tuple[list[int], list[int]]], pad: int,
                    batch_size: int = 8) -> float:
    """Mean cross-entropy per answer token over `rows` (from `sft_rows`): every answer token counts once."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for s in range(0, len(rows), batch_size):
        x, y = pad_batch(rows[s:s + batch_size], pad, device)
        n = int((y >= 0).sum())
        total += float(sft_loss(model(x)[0], y)) * n
        count += n
    model.train(was)
    return total / max(count, 1)


def normalise(text: str) -> str:
    """Lower case, punctuation and extra spaces removed: "Jane Austen." -> "jane austen"."""
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def short_answer_items(items: Sequence[dict], max_words: int = 3) -> list[dict]:
    """The items whose reference answer has at most `max_words` words ("Hg.", "Jane Austen."): the ones an
    exact match can judge."""
    return [e for e in items if len(e["output"].split()) <= max_words]


@torch.no_grad()
def answer(model: nn.Module, tok, item: dict, max_new_tokens: int = 32) -> str:
    """The model's greedy answer to one item (KV cache; stops at the end-of-turn token)."""
    device = next(model.parameters()).device
    ids = prompt_ids(tok, item)
    idx = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)
    out = generate(model.eval(), idx, max_new_tokens, temperature=0.0, stop_token=end_id(tok))[0, len(ids):]
    out = out.tolist()
    return tok.decode(out[:out.index(end_id(tok))] if end_id(tok) in out else out).strip()


def exact_match(model: nn.Module, tok, items: Sequence[dict], max_new_tokens: int = 32) -> tuple[float, list[str]]:
    """(share of items whose normalised greedy answer equals the normalised reference, the answers)."""
    answers = [answer(model, tok, e, max_new_tokens) for e in items]
    hits = [normalise(a) == normalise(e["output"]) for a, e in zip(answers, items, strict=True)]
    return sum(hits) / max(len(hits), 1), answers


@dataclass(frozen=True)
class LLMRecipe:
    """The real-LLM stage's settings for one preset (minilm.recipes.ALIGN_LLM)."""

    n_layer: int | None  # blocks of SmolLM2 kept (None: all 30; the smoke preset cuts it)
    block_size: int  # longest prompt + answer scored (longer ones are cut)
    lora_rank: int
    lora_alpha: float
    sft_items: int  # training items used by SFT
    sft_steps: int
    sft_lr: float
    sft_batch: int
    sft_lora_layers: int | None  # SFT's LoRA on the last this many blocks (None: all)
    dpo_pairs: int  # training pairs used by DPO (their reference log-probs are computed once)
    dpo_steps: int
    dpo_lr: float
    dpo_beta: float
    dpo_batch: int
    dpo_lora_layers: int | None  # DPO's LoRA on the last this many blocks (None: all)
    dpo_shuffle: bool  # True: each pair once per pass, in a shuffled order; False: batches drawn with replacement
    n_val: int | None  # validation items scored (None: all 55)
    n_test: int | None  # test items scored, once, at the end (None: all 110)


def llm_recipe(preset: str | None = None) -> LLMRecipe:
    """The settings for a preset ('smoke' | 'cpu' | 'gpu'; default the active one)."""
    return LLMRecipe(**settings("ALIGN_LLM", preset or active_preset().name))


def _lora_file(name: str, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return cache_root() / "models" / f"{name}-{digest}.pt"


def cached_lora(name: str, key: dict, model: nn.Module, build: Callable[[], dict],
                progress: bool = True) -> tuple[dict, dict]:
    """Train the LoRA weights of `model` (already wrapped by add_lora) with `build() -> history`, or load
    them from cache_root()/models/<name>-<hash of key>.pt when there -> (history, info {"seconds",
    "cached"}). Only the LoRA matrices are stored (a few MB); the 135M frozen weights come from the GGUF
    file, so `key` must name everything else that shapes them."""
    file = _lora_file(name, key)
    if file.exists():
        saved = torch.load(file, map_location="cpu", weights_only=True)
        missing = set(saved["lora"]) - {n for n, _ in model.named_parameters()}
        if missing:
            raise ValueError(f"{file} holds LoRA weights this model lacks ({sorted(missing)[:3]}): call "
                             "add_lora with the recipe's rank first, or delete the file to train again")
        model.load_state_dict(saved["lora"], strict=False)
        if progress:
            print(f"loaded {name} from {file} (trained in {saved['seconds']:.0f} s)")
        return saved["history"], {"seconds": saved["seconds"], "cached": True}
    t0 = time.perf_counter()
    history = build()
    seconds = time.perf_counter() - t0
    lora = {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad}
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f"{file.name}.partial-{os.getpid()}")  # one per process: concurrent runs never mix
    torch.save({"lora": lora, "history": history, "seconds": seconds, "key": key}, tmp)
    tmp.replace(file)  # atomic: an interrupted run leaves no half file under the real name
    return history, {"seconds": seconds, "cached": False}


def _key(model: nn.Module, r: LLMRecipe, stage: str) -> dict:
    c = model.config
    shared = ("n_layer", "block_size", "lora_rank", "lora_alpha", "n_val")  # the other stage's settings stay out
    setting = {k: v for k, v in r.__dict__.items() if k in shared or k.startswith(f"{stage}_")}
    return {"stage": stage, "recipe": setting, "model": [c.n_layer, c.n_embd, c.vocab_size, c.block_size],
            "weights": [SMOLLM2_FILE, SMOLLM2_BYTES, LOADER_VERSION]}


def run_llm_sft(model: nn.Module, tok, items: dict[str, list[dict]], r: LLMRecipe,
                progress: bool = True) -> tuple[dict, dict]:
    """SFT of `model` (LoRA added here) on the first r.sft_items training items' answers with the masked
    loss, by the course's training loop -> (history {"steps", "train_loss", "val_loss", "step_loss"}, info
    {"seconds", "cached", "trainable", "total"}: cached_lora's, plus the LoRA and all parameter counts)."""
    counts = add_lora(model, r.lora_rank, r.lora_alpha, last=r.sft_lora_layers)
    rows = {s: sft_rows(tok, items[s][:n], r.block_size)
            for s, n in (("train", r.sft_items), ("val", r.n_val))}
    device = next(model.parameters()).device
    cfg = TrainConfig(max_steps=r.sft_steps, learning_rate=r.sft_lr, lr_schedule="constant", weight_decay=0.0,
                      eval_interval=max(1, r.sft_steps), eval_iters=2, checkpoint_interval=0, progress=progress)
    generator = torch.Generator().manual_seed(0)

    def get(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        picks = torch.randint(len(rows[split]), (r.sft_batch,), generator=generator).tolist()
        return pad_batch([rows[split][i] for i in picks], pad_id(tok), device)

    def build() -> dict:
        torch.manual_seed(0)
        h = train(model, get, cfg, device, generator=generator)
        model.eval()
        return {"steps": h.steps, "train_loss": h.train_loss, "val_loss": h.val_loss, "step_loss": h.step_loss}

    history, info = cached_lora("smollm2-sft", _key(model, r, "sft"), model, build, progress)
    return history, {**info, "trainable": counts[0], "total": counts[1]}


def run_llm_dpo(model: nn.Module, tok, items: dict[str, list[dict]], r: LLMRecipe,
                progress: bool = True) -> tuple[dict, dict]:
    """DPO of `model` (LoRA added here; the reference is `model` before the first step) on the first
    r.dpo_pairs training pairs, with the validation margin and accuracy at the start, half way and at the
    end -> (train_dpo's history, info as run_llm_sft's)."""
    counts = add_lora(model, r.lora_rank, r.lora_alpha, last=r.dpo_lora_layers)
    pairs = preference_pairs(tok, items["train"][:r.dpo_pairs])
    val = preference_pairs(tok, items["val"][:r.n_val])
    device = next(model.parameters()).device

    def build() -> dict:
        torch.manual_seed(0)
        return train_dpo(model, model, pairs, val, pad_id(tok), device, steps=r.dpo_steps, lr=r.dpo_lr,
                         beta=r.dpo_beta, batch_size=r.dpo_batch, eval_interval=max(1, r.dpo_steps // 2),
                         eval_batch=r.dpo_batch, progress=progress, shuffle=r.dpo_shuffle)

    history, info = cached_lora("smollm2-dpo", _key(model, r, "dpo"), model, build, progress)
    return history, {**info, "trainable": counts[0], "total": counts[1]}


__all__ = [
    "ALPACA",
    "END_OF_TURN",
    "LORA_TARGETS",
    "LLMRecipe",
    "add_lora",
    "answer",
    "answer_ids",
    "cached_lora",
    "end_id",
    "exact_match",
    "instruction_items",
    "last_blocks_pattern",
    "llm_recipe",
    "masked_val_loss",
    "normalise",
    "pad_id",
    "preference_pairs",
    "prompt_ids",
    "run_llm_dpo",
    "run_llm_sft",
    "sft_rows",
    "short_answer_items",
    "split_items",
    "user_text",
]
