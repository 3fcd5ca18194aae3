"""The model cache and the one recipe of each preset: "the pretrained GPT for this preset", loaded from disk
or trained there and then (04-08).

    model, tok = pretrained_gpt("tinyshakespeare")  # seconds when cached, minutes when not

`minilm.recipes.GPT` is the only place a preset's GPT is defined (`preset_recipe` reads it): its three
sizes (for notebook 05's loss-against-parameters plot; "medium" is the model every notebook uses), its
dropout, its training settings and its batch size. Models live in `cache_root()/models/<dataset>-<preset>-<hash>.pt`,
where the hash covers everything that shapes the weights or the stored history (model config,
every training setting, batch size, tokenizer, seed, data, the loop's version), so a changed
recipe never loads a stale model. A first-time training run checkpoints as it goes
(`MINILM_CHECKPOINT_DIR`, on Colab a Drive folder) and resumes when the cell is run again.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch

from ..data.batching import batch_fn, char_data
from ..data.datasets import DATASETS, cache_root
from ..data.tokenfile import TOKENIZER, Tokenizer, load_tokenizer
from ..data.tokenizers import CharTokenizer
from ..models.gpt import GPT, GPTConfig
from ..presets import PRESETS
from ..presets import preset as active_preset
from ..recipes import settings
from ..runtime import get_device, set_seed
from .checkpoint import checkpoint_path, load_checkpoint, model_from_checkpoint, save_checkpoint
from .loop import History, TrainConfig, make_optimizer, train
from .optim import maybe_compile

SEED = 1337
VAL_FRACTION = 0.1
# Bump when the training loop changes the weights a recipe gives (2: evaluation on its own streams).
LOOP_VERSION = 2
# TrainConfig fields that change neither the weights nor the history: left out of the cache key.
NOT_IN_KEY = frozenset({"progress", "checkpoint_dir", "run_name", "resume"})

SIZES = ("small", "medium", "large")


@dataclass(frozen=True)
class PresetRecipe:
    """A preset's GPT, all of it: three sizes (n_layer, n_head, n_embd, block_size), dropout, batch, training."""

    sizes: dict[str, tuple[int, int, int, int]]  # size -> (n_layer, n_head, n_embd, block_size)
    dropout: float  # after attention and MLP
    batch_size: int  # sequences per step
    train: TrainConfig  # steps, schedule, evaluation, checkpoints


@dataclass
class Recipe:
    """How the zoo trains the GPT of one preset: model shape, loop settings and batch size."""

    model: GPTConfig  # the architecture (vocab_size filled in from the tokenizer)
    train: TrainConfig  # steps, learning rate schedule, evaluation, checkpoints
    batch_size: int  # sequences per step


def preset_recipe(preset: str) -> PresetRecipe:
    """The GPT recipe of a preset, from `minilm.recipes.GPT` (the one place it is defined)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    row = settings("GPT", preset)
    return PresetRecipe(row["sizes"], row["dropout"], row["batch_size"], TrainConfig(**row["train"]))


def gpt_config_for(preset: str, vocab_size: int, size: str = "medium", **overrides) -> GPTConfig:
    """The GPT config of a preset ('smoke' | 'cpu' | 'gpu') and size ('small' | 'medium' | 'large'). Notebook 05."""
    table = preset_recipe(preset)
    if size not in table.sizes:
        raise ValueError(f"unknown size {size!r}; use one of {', '.join(SIZES)}")
    n_layer, n_head, n_embd, block_size = table.sizes[size]
    config = GPTConfig(block_size=block_size, vocab_size=vocab_size, n_layer=n_layer, n_head=n_head,
                       n_embd=n_embd, dropout=table.dropout)
    return replace(config, **overrides)


def gpt_sizes(preset: str, vocab_size: int) -> dict[str, GPTConfig]:
    """{'small': ..., 'medium': ..., 'large': ...}: three GPT configs for the loss-vs-parameters plot (05)."""
    return {size: gpt_config_for(preset, vocab_size, size) for size in SIZES}


def recipe_for(preset: str, vocab_size: int) -> Recipe:
    """The training recipe of a preset: smoke (seconds), cpu (about 90 s on 2 cores), gpu (minutes on a T4)."""
    table = preset_recipe(preset)
    return Recipe(gpt_config_for(preset, vocab_size), replace(table.train), table.batch_size)


def recipe_key(dataset: str, recipe: Recipe, tok: CharTokenizer, extra: dict | None = None) -> str:
    """A 10-hex-digit hash of everything that shapes the trained weights and their history; `extra`
    (JSON-serialisable) adds whatever else does, e.g. a digest of a corpus built in a notebook."""
    train_cfg = {f.name: getattr(recipe.train, f.name) for f in fields(recipe.train)
                 if f.name not in NOT_IN_KEY}
    data = [f.sha256 for f in DATASETS[dataset].files] if dataset in DATASETS else dataset
    parts = [recipe.model.key_dict(), train_cfg, recipe.batch_size, tok.chars, SEED, VAL_FRACTION, data,
             LOOP_VERSION]
    key = json.dumps(parts + [extra] if extra else parts, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:10]


def model_path(dataset: str, preset: str, recipe: Recipe, tok: CharTokenizer,
               extra: dict | None = None) -> Path:
    """cache_root()/models/<dataset>-<preset>-<recipe_key>.pt."""
    return cache_root() / "models" / f"{dataset}-{preset}-{recipe_key(dataset, recipe, tok, extra)}.pt"


def run_name_for(dataset: str, preset: str, recipe: Recipe, tok: CharTokenizer) -> str:
    """The checkpoint run name of the zoo's training of this recipe (notebook 05 trains under it too)."""
    return f"zoo-{dataset}-{preset}-{recipe_key(dataset, recipe, tok)}"


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
        return load_model(path, device, progress=progress, tokenizer=tok)
    run = run_name_for(dataset, name, recipe, tok)
    print(f"no cached model at {path}: training it now ({name} preset, {recipe.train.max_steps} steps, "
          f"checkpoints as run {run!r}: if this is interrupted, run the cell again to continue); "
          "later calls load it in seconds")
    model, history = train_gpt(recipe, train_data, val_data, device, compile=compile,
                               progress=progress, run_name=run)
    save_pretrained(model, history, dataset, name)
    return model.eval(), tok


def load_model(
    path: str | Path, device: torch.device | str | None = None, progress: bool = True,
    tokenizer: Tokenizer | None = None,
) -> tuple[GPT, Tokenizer]:
    """(GPT in eval mode on device, tokenizer) from a model file: the zoo's cache or a `minilm pretrain` folder.

    `path` is a model file or a folder holding model.pt; the tokenizer is `tokenizer`, else the
    tokenizer.json beside the model file. Notebook 05 (and any notebook, for a pretrain run)."""
    path = Path(path).expanduser()
    file = path / "model.pt" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{file} does not exist: `minilm pretrain --out {file.parent}` writes model.pt "
                                "when the run finishes (an interrupted run has only checkpoints/: run the "
                                "same command again to finish it)")
    device = torch.device(device) if device is not None else get_device()
    ckpt = load_checkpoint(file, map_location=device)
    model = model_from_checkpoint(ckpt, GPT, GPTConfig)
    if tokenizer is None:
        tokenizer = load_tokenizer(file.parent / TOKENIZER)
    if progress:
        val = ((ckpt.get("history") or {}).get("val_loss") or [float("nan")])[-1]
        print(f"loaded {file} (val loss {val:.4f})")
    return model.to(device).eval(), tokenizer


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
    run_name: str | None = None,
    seed: int = SEED,
    **overrides,
) -> tuple[GPT, History]:
    """Train a fresh GPT by `recipe` (seeded by `seed`) with the shared loop; overrides go to its TrainConfig.

    With `run_name` the run checkpoints every `checkpoint_interval` steps and, unless overrides
    say resume=False, resumes from its checkpoint when called again (after a disconnect; once the
    run has finished, at once)."""
    set_seed(seed)
    model = GPT(recipe.model).to(device)
    if run_name is not None:
        overrides = {"resume": True, **overrides, "run_name": run_name}
    cfg = replace(recipe.train, progress=progress, **overrides)
    optimizer = make_optimizer(model, cfg)
    get, generator = batch_fn(train_data, val_data, recipe.model.block_size, recipe.batch_size,
                              device, seed=seed)
    runner = maybe_compile(model, device, compile)
    history = train(runner, get, cfg, device, optimizer=optimizer, generator=generator)
    return model, history  # the plain module (not the compiled wrapper): its state_dict saves cleanly


# ---------------------------------------------------------------- any corpus, trained once and cached (08)

def _stage_recipe(recipe: Recipe, steps: int, final: int) -> Recipe:
    """`recipe` stopped at `steps` of a run whose cosine schedule ends at `final` (so stages chain)."""
    return Recipe(recipe.model, replace(recipe.train, max_steps=steps, lr_decay_steps=final), recipe.batch_size)


def _load_with_history(path: Path, device: torch.device, tok: Tokenizer, progress: bool) -> tuple[GPT, History]:
    model, _ = load_model(path, device, progress=progress, tokenizer=tok)
    history = History.from_dict(load_checkpoint(path, map_location="cpu").get("history"))
    return model, history


def train_stages(
    name: str,
    recipe: Recipe,
    train_data: torch.Tensor,
    val_data: torch.Tensor,
    tok: Tokenizer,
    stages: list[int] | tuple[int, ...],
    extra: dict | None = None,
    preset: str | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    seed: int = SEED,
) -> list[tuple[GPT, History]]:
    """One training run of `recipe` on a corpus of your own, stopped and cached at each of `stages` steps.

    Stage k is `recipe` with max_steps=stages[k] and the cosine schedule of the last stage, resumed
    from stage k-1's checkpoint: the models are snapshots of a single run, e.g. for "memorisation as
    training goes on". `name` and `extra` (a digest of the corpus, say) name the models in
    cache_root()/models, like `model_path(name, preset, recipe, tok, extra)`; a model is loaded when
    it and its run checkpoint are both there, else trained. Notebook 08."""
    stages = list(stages)
    if not stages or any(b <= a for a, b in itertools.pairwise(stages)) or stages[0] < 1:
        raise ValueError(f"stages must be increasing step counts >= 1, got {stages}")
    preset_name = preset or active_preset().name
    device = torch.device(device) if device is not None else get_device(verbose=False)
    out: list[tuple[GPT, History]] = []
    prev_ckpt: Path | None = None
    for i, steps in enumerate(stages):
        r = _stage_recipe(recipe, steps, stages[-1])
        key = recipe_key(name, r, tok, {**(extra or {}), "seed": seed})
        path = cache_root() / "models" / f"{name}-{preset_name}-{key}.pt"
        run = f"{name}-{preset_name}-{key}"
        run_ckpt = checkpoint_path(run, r.train.checkpoint_dir)
        if path.exists() and run_ckpt.exists():
            out.append(_load_with_history(path, device, tok, progress))
        else:
            if prev_ckpt is not None and not run_ckpt.exists():
                run_ckpt.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(prev_ckpt, run_ckpt)  # continue the previous stage's run
                if progress:  # the loop's "resumed ... at step N" below is this run's previous stage
                    print(f"{name} (seed {seed}): stage {i + 1} of {len(stages)} trains on from the step-"
                          f"{stages[i - 1]} snapshot just saved to step {steps} (the same run, not an earlier one)")
            model, history = train_gpt(r, train_data, val_data, device, progress=progress, run_name=run, seed=seed)
            save_checkpoint(path, model, None, history.steps[-1], train_config=r.train, history=history,
                            extra={"dataset": name, "preset": preset_name, **(extra or {})})
            out.append((model.eval(), history))
        prev_ckpt = run_ckpt
    return out


def load_or_train(
    name: str,
    recipe: Recipe,
    train_data: torch.Tensor,
    val_data: torch.Tensor,
    tok: Tokenizer,
    extra: dict | None = None,
    preset: str | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    seed: int = SEED,
) -> tuple[GPT, History]:
    """(model in eval mode, history): a GPT trained by `recipe` on your own token streams, from the cache
    when the same recipe, tokenizer, seed and `extra` (e.g. a sha256 of the corpus) trained it before."""
    return train_stages(name, recipe, train_data, val_data, tok, [recipe.train.max_steps], extra, preset,
                        device, progress, seed)[0]
