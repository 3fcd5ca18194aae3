"""Notebook 09's chain on the course's own Tang GPT, each stage cached: base -> SFT -> DPO / RL.

    base, tok, data = chat_base()                       # pretrained_gpt("tang") + special tokens
    sft, history = run_sft(base, tok, splits, recipe)   # minutes the first time, seconds after
    rl, rl_history = run_rl(sft, tok, splits, recipe)

`recipe_for(preset)` reads every per-preset setting of the chain from minilm.recipes.ALIGN; the cpu values
were chosen on the validation instructions (benchmarks/align.py --sweep prints the sweeps). A stage's model is stored in
cache_root()/models/<name>-<preset>-<hash>.pt, the hash covering its parent, its settings and its data,
so a changed setting never loads a stale model.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from ..data.batching import char_data, get_batch, train_val_split
from ..data.datasets import cache_root, load_text
from ..presets import preset as active_preset
from ..recipes import settings
from ..runtime import get_device, set_seed
from ..training.checkpoint import load_checkpoint, save_checkpoint
from ..training.loop import History, TrainConfig, train
from ..training.zoo import VAL_FRACTION, load_model, pretrained_gpt
from .dpo import Pair, make_pairs, train_dpo
from .rl import train_grpo
from .sft import sft_batches
from .task import Task, acrostic_splits, sft_example, with_random_heads
from .template import END, ChatTokenizer, grow_vocab
from .verifier import HAN, reward

DATASET = "tang"
HAN_CHAR = re.compile(HAN)


@dataclass(frozen=True)
class AlignRecipe:
    """Every setting of the chain for one preset."""

    n_train: int  # training instructions used (SFT examples, DPO and RL prompts)
    n_val: int  # validation instructions: every choice is made on these
    n_test: int  # test instructions: the held-out pass rate, read once at the end
    sft: TrainConfig  # SFT steps and learning rate (the course's loop)
    sft_batch: int  # conversations per SFT step
    dpo_prompts: int  # training prompts sampled for preference pairs
    dpo_samples: int  # answers sampled per prompt
    dpo_temperature: float  # their sampling temperature
    dpo_steps: int
    dpo_lr: float
    dpo_beta: float
    dpo_batch: int  # pairs per DPO step
    dpo_nll: float  # weight of the SFT loss on the chosen answers added to DPO's (0: plain DPO)
    rl_steps: int
    rl_lr: float
    rl_prompts: int  # prompts per GRPO step
    rl_group: int  # answers per prompt (the group)
    rl_kl: float  # KL coefficient to the SFT model
    rl_temperature: float  # sampling temperature of the groups
    test_skip: int = 0  # held-out instructions passed over before the test ones (a retired test split)
    sft_random_heads: float = 0.0  # share of SFT examples whose heads are random characters (task.with_random_heads)


def recipe_for(preset: str | None = None) -> AlignRecipe:
    """The chain's settings for a preset ('smoke' | 'cpu' | 'gpu'; default the active one), from
    minilm.recipes.ALIGN."""
    row = settings("ALIGN", preset or active_preset().name)
    return AlignRecipe(**{**row, "sft": TrainConfig(**row["sft"])})


def chat_base(preset: str | None = None, device: torch.device | str | None = None,
              progress: bool = True) -> tuple[nn.Module, ChatTokenizer, torch.Tensor]:
    """(the preset's pretrained Tang GPT with the special tokens' rows added, its ChatTokenizer, the
    pretraining validation stream (N,)): the model comes from the zoo's cache or is trained now."""
    model, char_tok = pretrained_gpt(DATASET, preset, device=device, progress=progress)
    tok = ChatTokenizer(char_tok)
    grow_vocab(model, tok.vocab_size)
    return model.eval(), tok, char_data(DATASET, VAL_FRACTION)[2]


def task_splits(r: AlignRecipe) -> dict[str, list[Task]]:
    """The recipe's train / val / test instructions (test: from poems pretraining never saw)."""
    return acrostic_splits(load_text(DATASET), r.n_val, r.n_test, VAL_FRACTION, r.n_train, r.test_skip)


@torch.no_grad()
def plain_val_loss(model: nn.Module, val_data: torch.Tensor, n_batches: int = 20, batch_size: int = 16,
                   seed: int = 0) -> float:
    """The model's mean loss on plain Tang text it never trained on (the same batches every call):
    what alignment costs the language model."""
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    was = model.training
    model.eval()
    losses = [float(model(*get_batch(val_data, model.block_size, batch_size, device, g))[1]) for _ in range(n_batches)]
    model.train(was)
    return sum(losses) / len(losses)


def _digest(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


def cached_stage(name: str, key: dict, build: Callable[[], tuple[nn.Module, dict]], tok: ChatTokenizer,
                 device: torch.device | str, preset: str | None = None,
                 progress: bool = True) -> tuple[nn.Module, dict, dict]:
    """(model, history dict, info): loaded from cache_root()/models/<name>-<preset>-<hash of key>.pt when
    there, else `build()` and stored there. `key` must hold everything that shapes the model. info:
    {"key": the hash of `key`, "seconds": how long build() took, "cached": loaded or not}."""
    preset_name = preset or active_preset().name
    digest = _digest(key)
    path = cache_root() / "models" / f"{name}-{preset_name}-{digest}.pt"
    if path.exists():
        model, _ = load_model(path, device, progress=False, tokenizer=tok)
        ckpt = load_checkpoint(path, map_location="cpu")
        seconds = (ckpt.get("extra") or {}).get("seconds", float("nan"))
        if progress:
            print(f"loaded {name} from {path} (built in {seconds:.0f} s)")
        return model, ckpt.get("history") or {}, {"key": digest, "seconds": seconds, "cached": True}
    t0 = time.perf_counter()
    model, history = build()
    seconds = time.perf_counter() - t0
    save_checkpoint(path, model, None, 0, history=history,
                    extra={"key": json.dumps(key, default=str), "seconds": seconds})
    return model.eval(), history, {"key": digest, "seconds": seconds, "cached": False}


def fingerprint(model: nn.Module) -> str:
    """A 10-hex-digit sha256 of a model's weights: a stage's key names its parent by it."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:10]


def _key(parent: nn.Module, r: AlignRecipe, splits: dict[str, list[Task]], **settings) -> dict:
    data = hashlib.sha256("".join(t.heads for t in splits["train"]).encode()).hexdigest()[:10]
    return {"parent": fingerprint(parent), "data": data, "n_val": r.n_val, **settings}


def head_alphabet() -> str:
    """Every Chinese character of the pretraining part of the Tang text, sorted: where random heads come from."""
    pretraining_part = train_val_split(load_text(DATASET), VAL_FRACTION)[0]  # the cut acrostic_splits uses too
    return "".join(sorted(set(HAN_CHAR.findall(pretraining_part))))


def run_sft(base: nn.Module, tok: ChatTokenizer, splits: dict[str, list[Task]], r: AlignRecipe,
            device: torch.device | str | None = None, preset: str | None = None, progress: bool = True,
            random_heads: float | None = None, **overrides) -> tuple[nn.Module, History, dict]:
    """(SFT model, its History (masked train/val loss), info (cached_stage's)): a copy of `base` fine-tuned on the
    training instructions' conversations with the masked loss; overrides go to the TrainConfig. random_heads:
    the share of training instructions given random heads (default: the recipe's sft_random_heads)."""
    device = torch.device(device) if device is not None else get_device(verbose=False)
    cfg = replace(r.sft, **overrides)
    share = r.sft_random_heads if random_heads is None else random_heads

    def build() -> tuple[nn.Module, dict]:  # only when the stage is not in the cache
        train_tasks = with_random_heads(splits["train"], share, head_alphabet(), seed=0) if share else splits["train"]
        examples = {"train": [sft_example(t, tok, base.block_size + 1) for t in train_tasks],
                    "val": [sft_example(t, tok, base.block_size + 1) for t in splits["val"]]}
        set_seed(0)
        model = copy.deepcopy(base).to(device)
        get, gen = sft_batches(examples["train"], examples["val"], r.sft_batch, tok.id(END), device)
        history = train(model, get, replace(cfg, progress=progress), device, generator=gen)
        return model, asdict(history)

    key = _key(base, r, splits, sft=asdict(replace(cfg, progress=True)), batch=r.sft_batch,
               **({"random_heads": share} if share else {}))  # 0: the key it had before the option
    model, history, info = cached_stage("tang-sft", key, build, tok, device, preset, progress)
    return model, History.from_dict(history), info


def run_dpo(sft: nn.Module, tok: ChatTokenizer, splits: dict[str, list[Task]], r: AlignRecipe,
            device: torch.device | str | None = None, preset: str | None = None, progress: bool = True,
            **overrides) -> tuple[nn.Module, dict, dict]:
    """(DPO model, history with the pair counts, info (cached_stage's)): pairs sampled from `sft` on training prompts
    (and on validation prompts, for the validation margin and accuracy), then DPO against `sft` frozen.
    overrides: steps, lr, beta, temperature, nll (default: the recipe's)."""
    device = torch.device(device) if device is not None else get_device(verbose=False)
    s = {"steps": r.dpo_steps, "lr": r.dpo_lr, "beta": r.dpo_beta, "temperature": r.dpo_temperature,
         "nll": r.dpo_nll, **overrides}
    if s["nll"] == 0:
        del s["nll"]  # plain DPO keeps the cache key it had before the option existed

    def build() -> tuple[nn.Module, dict]:
        pairs = make_pairs(sft, tok, splits["train"][:r.dpo_prompts], r.dpo_samples, device, s["temperature"], seed=1)
        val_pairs = make_pairs(sft, tok, splits["val"], r.dpo_samples, device, s["temperature"], seed=2)
        policy = copy.deepcopy(sft)
        torch.manual_seed(0)
        hist = train_dpo(policy, sft, pairs, val_pairs, tok.id(END), device, s["steps"], s["lr"], s["beta"],
                         r.dpo_batch, eval_interval=max(1, s["steps"] // 4), nll_coef=s.get("nll", 0.0),
                         progress=progress)
        return policy, {**hist, "n_pairs": len(pairs), "n_own_pairs": sum(p.own for p in pairs),
                        "n_val_pairs": len(val_pairs)}

    key = _key(sft, r, splits, dpo=s, prompts=r.dpo_prompts, samples=r.dpo_samples, batch=r.dpo_batch)
    return cached_stage("tang-dpo", key, build, tok, device, preset, progress)


def run_rl(sft: nn.Module, tok: ChatTokenizer, splits: dict[str, list[Task]], r: AlignRecipe,
           device: torch.device | str | None = None, preset: str | None = None, progress: bool = True,
           callback: Callable | None = None, **overrides) -> tuple[nn.Module, dict, dict]:
    """(RL model, GRPO history (reward, KL per step), info (cached_stage's)): GRPO from `sft` on the training
    prompts with the verifier's reward. overrides: steps, lr, kl, group, prompts, temperature (default: the
    recipe's)."""
    device = torch.device(device) if device is not None else get_device(verbose=False)
    s = {"steps": r.rl_steps, "lr": r.rl_lr, "kl": r.rl_kl, "group": r.rl_group, "prompts": r.rl_prompts,
         "temperature": r.rl_temperature, **overrides}

    def build() -> tuple[nn.Module, dict]:
        policy = copy.deepcopy(sft)
        torch.manual_seed(0)
        hist = train_grpo(policy, sft, tok, splits["train"], reward, device, s["steps"], s["lr"], s["prompts"],
                          s["group"], s["kl"], temperature=s["temperature"], progress=progress, callback=callback)
        return policy, hist

    return cached_stage("tang-rl", _key(sft, r, splits, rl=s), build, tok, device, preset, progress)


__all__ = [
    "AlignRecipe",
    "Pair",
    "cached_stage",
    "chat_base",
    "fingerprint",
    "plain_val_loss",
    "recipe_for",
    "run_dpo",
    "run_rl",
    "run_sft",
    "task_splits",
]
