"""The model cache: "the pretrained GPT for this preset", loaded from disk or trained there and then (05+).

    model, tok = pretrained_gpt("tinyshakespeare")  # seconds when cached, minutes when not

Models live in `cache_root()/models/<dataset>-<preset>-<hash>.pt`, where the hash covers
everything that shapes the weights (model config, training recipe, tokenizer, seed, data), so a
changed recipe never loads a stale model. Files are written atomically (checkpoint.py) and
loaded with `weights_only=True`, so every notebook stands alone: whatever an earlier notebook
trained, a later one gets from here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from .batching import batch_fn, char_data
from .checkpoint import load_checkpoint, save_checkpoint
from .data import cache_root
from .models.gpt import GPT, GPTConfig, gpt_config_for
from .optim import configure_optimizer, maybe_compile
from .presets import preset as active_preset
from .runtime import get_device, set_seed
from .tokenizers import CharTokenizer
from .training import History, TrainConfig, train

SEED = 1337
VAL_FRACTION = 0.1


@dataclass
class Recipe:
    """How the zoo trains the GPT of one preset: model shape, loop settings and batch size."""

    model: GPTConfig  # the architecture (vocab_size filled in from the tokenizer)
    train: TrainConfig  # steps, learning rate schedule, evaluation
    batch_size: int  # sequences per step


def recipe_for(preset: str, vocab_size: int) -> Recipe:
    """The training recipe of a preset: smoke (seconds), cpu (about 90 s on 2 cores), gpu (minutes on a T4)."""
    model = gpt_config_for(preset, vocab_size)
    if preset == "smoke":
        cfg = TrainConfig(max_steps=30, learning_rate=3e-3, min_lr=3e-4, warmup_steps=5,
                          eval_interval=15, eval_iters=2, weight_decay=0.1)
        return Recipe(model, cfg, batch_size=8)
    if preset == "cpu":
        # tuned with benchmarks/gpt.py: val ~1.78 in ~90 s on 2 cores (nanoGPT's baby GPT: 1.89)
        cfg = TrainConfig(max_steps=2000, learning_rate=3e-3, min_lr=3e-4, warmup_steps=100,
                          eval_interval=250, eval_iters=20, weight_decay=0.1)
        return Recipe(model, cfg, batch_size=16)
    # gpu: nanoGPT's shakespeare-char recipe (val 1.4697 on an A100 in its README)
    cfg = TrainConfig(max_steps=5000, learning_rate=1e-3, min_lr=1e-4, warmup_steps=100,
                      eval_interval=250, eval_iters=200, weight_decay=0.1)
    return Recipe(model, cfg, batch_size=64)


def model_path(dataset: str, preset: str, recipe: Recipe, tok: CharTokenizer) -> Path:
    """cache_root()/models/<dataset>-<preset>-<hash of recipe, tokenizer and seed>.pt."""
    train_cfg = {k: v for k, v in asdict(recipe.train).items() if k not in {"progress", "eval_interval"}}
    key = json.dumps([asdict(recipe.model), train_cfg, recipe.batch_size, tok.chars, SEED,
                      VAL_FRACTION], sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:10]
    return cache_root() / "models" / f"{dataset}-{preset}-{digest}.pt"


def pretrained_gpt(
    dataset: str = "tinyshakespeare",
    preset: str | None = None,
    device: torch.device | str | None = None,
    compile: bool | None = None,
    progress: bool = True,
) -> tuple[GPT, CharTokenizer]:
    """(model in eval mode on device, tokenizer): the char-level GPT of `preset`, from the cache or trained now."""
    name = preset or active_preset().name
    device = torch.device(device) if device is not None else get_device()
    tok, train_data, val_data = char_data(dataset, VAL_FRACTION)
    recipe = recipe_for(name, tok.vocab_size)
    path = model_path(dataset, name, recipe, tok)
    if path.exists():
        ckpt = load_checkpoint(path, map_location=device)
        model = GPT(GPTConfig(**ckpt["config"]))
        model.load_state_dict(ckpt["model"])
        if progress:
            print(f"loaded {path} (val loss {ckpt['history']['val_loss'][-1]:.4f})")
        return model.to(device).eval(), tok
    print(f"no cached model at {path}: training it now ({name} preset, "
          f"{recipe.train.max_steps} steps); later calls load it in seconds")
    model, history = train_gpt(recipe, train_data, val_data, device, compile=compile,
                               progress=progress)
    save_pretrained(model, history, dataset, name)
    return model.eval(), tok


def save_pretrained(model: GPT, history: History, dataset: str = "tinyshakespeare",
                    preset: str | None = None) -> Path:
    """Store a GPT trained by `recipe_for(preset)` where `pretrained_gpt` will find it (notebook 05)."""
    name = preset or active_preset().name
    tok = char_data(dataset, VAL_FRACTION)[0]
    recipe = recipe_for(name, tok.vocab_size)
    if asdict(model.config) != asdict(recipe.model):
        raise ValueError(f"this model's config is not the {name} preset's: {model.config}")
    path = model_path(dataset, name, recipe, tok)
    return save_checkpoint(path, model, None, history.steps[-1], train_config=recipe.train,
                           history=history, extra={"dataset": dataset, "preset": name})


def train_gpt(
    recipe: Recipe,
    train_data: torch.Tensor,
    val_data: torch.Tensor,
    device: torch.device | str,
    compile: bool | None = None,
    progress: bool = True,
    **overrides,
) -> tuple[GPT, History]:
    """Train a fresh GPT by `recipe` (seeded) with the shared loop; overrides go to its TrainConfig."""
    set_seed(SEED)
    model = GPT(recipe.model).to(device)
    cfg = replace(recipe.train, progress=progress, **overrides)
    optimizer = configure_optimizer(model, cfg.learning_rate, cfg.weight_decay, cfg.betas, device)
    get, generator = batch_fn(train_data, val_data, recipe.model.block_size, recipe.batch_size,
                              device, seed=SEED)
    runner = maybe_compile(model, device, compile)
    history = train(runner, get, cfg, device, optimizer=optimizer, generator=generator)
    return model, history  # the plain module (not the compiled wrapper): its state_dict saves cleanly
