"""GPT-1's recipe at small scale (07): a GPT pretrained on the review text, and the fine-tuning settings.

`review_gpt(preset)` trains a BPE tokenizer and a GPT on the train split's reviews (never val or
test) and caches both; `finetune_config(preset, n_labels, mode)` gives each fine-tuning run its
steps and learning rate. The settings were chosen on the val split.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import data as datasets
from .models.gpt import GPT
from .sentiment import Split, check_labels, rt_polarity_split, tokenizer_fingerprint
from .training import History, TrainConfig, train


@dataclass(frozen=True)
class ReviewRecipe:
    """Pretraining a GPT on the review text of the train split (BPE trained on that text too), per preset."""

    bpe_vocab: int  # BPE vocabulary trained on the train-split reviews
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int  # also the classifier's longest input (reviews are cut to it)
    dropout: float
    batch_size: int
    steps: int  # language-model pretraining steps
    learning_rate: float


REVIEW_RECIPES: dict[str, ReviewRecipe] = {
    "smoke": ReviewRecipe(300, 1, 2, 32, 32, 0.0, 8, 20, 3e-3),
    # cpu, the vocabulary chosen on val (full fine-tune, every label, 1,600 steps at lr 1e-3): BPE 1,024
    # 0.688 (last-token pooling) / 0.693 (mean); 4,096 0.735 / 0.733; 8,192 0.739 (pretraining 1.8x longer).
    # With 1,024 tokens most words are cut into pieces; with 4,096 most of a review's words are one token,
    # and a word's vector can carry its sentiment (a bag-of-words logistic regression scores val 0.761:
    # `benchmarks/finetune_sweep.py --bag-of-words`).
    "cpu": ReviewRecipe(4096, 3, 4, 128, 64, 0.1, 16, 1500, 3e-3),
    # gpu: the cpu vocabulary carried over, not measured on val
    "gpu": ReviewRecipe(4096, 6, 6, 384, 64, 0.2, 64, 4000, 1e-3),
}


def review_recipe(preset: str) -> ReviewRecipe:
    if preset not in REVIEW_RECIPES:
        raise ValueError(f"unknown preset {preset!r}; use one of {', '.join(REVIEW_RECIPES)}")
    return REVIEW_RECIPES[preset]


def review_gpt_config(recipe: ReviewRecipe, vocab_size: int):
    from .models.gpt import GPTConfig

    return GPTConfig(block_size=recipe.block_size, vocab_size=vocab_size, n_layer=recipe.n_layer,
                     n_head=recipe.n_head, n_embd=recipe.n_embd, dropout=recipe.dropout)


def review_gpt(preset: str, device: torch.device | str = "cpu", split: dict[str, Split] | None = None,
               progress: bool = True, seed: int = 1337):
    """(GPT pretrained on the train-split reviews, its BPETokenizer, History): cached in
    cache_root()/models/rt-polarity-lm-<preset>-<hash>.pt (+ .tokenizer.json), trained when missing.

    Only the train part's text is used (never val or test). The model carries
    `tokenizer_fingerprint`, so `check_tokenizer` refuses any other tokenizer."""
    from dataclasses import asdict

    from .batching import batch_fn
    from .checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
    from .models.gpt import GPTConfig
    from .runtime import set_seed
    from .tokenizers import BPETokenizer

    recipe = review_recipe(preset)
    split = split or rt_polarity_split()
    text = "\n".join(split["train"].texts) + "\n"
    text_sha = hashlib.sha256(text.encode("utf-8")).hexdigest()  # the very text it learns from
    key = hashlib.sha256(json.dumps([asdict(recipe), seed, 1, text_sha]).encode())
    path = datasets.cache_root() / "models" / f"rt-polarity-lm-{preset}-{key.hexdigest()[:10]}.pt"
    tok_path = path.with_suffix(".tokenizer.json")
    if path.exists() and tok_path.exists():
        ckpt = load_checkpoint(path)
        gpt = model_from_checkpoint(ckpt, GPT, GPTConfig)
        tok = BPETokenizer.load(tok_path)
        history = History.from_dict(ckpt.get("history"))
        if progress:
            print(f"loaded {path} (val loss {history.val_loss[-1]:.3f})")
    else:
        t0 = time.perf_counter()
        tok = BPETokenizer.train(text, recipe.bpe_vocab)
        ids = torch.tensor(tok.encode(text), dtype=torch.long)
        n_val = max(recipe.block_size + 2, ids.numel() // 20)  # 5 % of the train text to watch overfitting
        train_ids, val_ids = ids[:-n_val], ids[-n_val:]
        if progress:
            print(f"BPE ({tok.vocab_size} tokens) on {len(text):,} characters of train-split reviews -> "
                  f"{ids.numel():,} tokens ({time.perf_counter() - t0:.0f} s); pretraining {recipe.steps} steps")
        set_seed(seed)
        gpt = GPT(review_gpt_config(recipe, tok.vocab_size))
        cfg = TrainConfig(max_steps=recipe.steps, learning_rate=recipe.learning_rate,
                          min_lr=recipe.learning_rate / 10, warmup_steps=max(1, recipe.steps // 20),
                          eval_interval=max(1, recipe.steps // 4), eval_iters=10, weight_decay=0.1,
                          progress=progress)
        get, generator = batch_fn(train_ids, val_ids, recipe.block_size, recipe.batch_size, device, seed=seed)
        history = train(gpt, get, cfg, device, generator=generator)
        save_checkpoint(path, gpt, None, recipe.steps, train_config=cfg, history=history,
                        extra={"dataset": "rt-polarity", "preset": preset})
        tok.save(tok_path)
    gpt.tokenizer_fingerprint = tokenizer_fingerprint(tok)
    return gpt.to(device).eval(), tok, history


def fresh_twin(gpt: GPT, seed: int = 1337) -> GPT:
    """The same architecture as `gpt`, freshly initialised (the from-scratch baseline), same tokenizer."""
    from .runtime import set_seed

    set_seed(seed)
    twin = GPT(gpt.config)
    if hasattr(gpt, "tokenizer_fingerprint"):
        twin.tokenizer_fingerprint = gpt.tokenizer_fingerprint
    return twin


@dataclass(frozen=True)
class FinetuneRecipe:
    """How long and how fast each way of fine-tuning trains, per preset (set on the val split, never test)."""

    batch_size: int
    epochs: float  # passes over the labelled examples ...
    min_steps: int  # ... but at least this many steps (100 labels) ...
    max_steps: int  # ... and at most this many (all labels)
    lr: dict[str, float]  # peak learning rate per mode: "scratch", "full", "head", "lora", "encoder"
    lora_pattern: str = r"wte|c_attn|c_proj|c_fc"  # the GPT's layers that get LoRA adapters (re.search)
    lora_rank: int = 8

    def lora_kwargs(self) -> dict:
        """The LoRA arguments of `prepare(model, "lora", **recipe.lora_kwargs())` for the review GPT."""
        return {"lora_pattern": self.lora_pattern, "rank": self.lora_rank}


FINETUNE_RECIPES: dict[str, FinetuneRecipe] = {
    "smoke": FinetuneRecipe(8, 1.0, 4, 8, {"scratch": 1e-3, "full": 5e-4, "head": 3e-3, "lora": 3e-3,
                                            "encoder": 1e-3, "probe": 1e-2},
                            r"wte|c_attn|c_proj|c_fc", 2),
    # cpu: 400 steps (< 1 epoch of all labels) left both models undertrained (val 0.63); 1,600 steps at
    # lr 1e-3 gave val 0.688 pretrained vs 0.665 from scratch (chosen on val; test never looked at)
    # LoRA on cpu, val accuracy after 1,600 steps. BPE 1,024 (full fine-tune: val 0.685): attention only
    # (c_attn, c_proj) rank 8: lr 1e-3 0.588, 3e-3 0.589, 1e-2 0.490 (diverged); every projection (attention
    # and MLP c_fc/c_proj) rank 4: lr 1e-3 0.619, 3e-3 0.588, 5e-3 0.487, 1e-2 0.480. BPE 4,096 (full: val
    # 0.735): every projection rank 4 0.650; the same with the token embedding's weights trained as well
    # 0.733 (so the gap is in the word vectors); every projection + a LoRA on the embedding (wte) rank 4,
    # lr 1e-3: 0.728 with 3.6 % of the parameters; the embedding alone, rank 8: 0.715
    # Full fine-tune, every label, two fine-tuning seeds each (`finetune_sweep.py --seeds 2`; val, mean):
    # last-token pooling 0.731 (sd 0.002); max pooling 0.744 (0.732 and 0.756: sd 0.017, within val's
    # noise of ~0.014, so the recipe keeps last-token pooling, GPT-1's); fine-tuning dropout 0.3: last
    # 0.737 (one seed), max 0.723; dropout 0.5: last 0.735 (one seed), max 0.733. None is clear of the noise.
    # At 1,000 labels (312 steps, the labelled subsample fixed, fine-tuning seeds varied; val means): full
    # lr 1e-3 0.650 (3 seeds, sd 0.007) against 0.623 from scratch (3 seeds, sd 0.003); full lr 3e-4 0.632;
    # LoRA 0.638; max pooling 0.651 pretrained, 0.602 from scratch (2 seeds each). The recipe stays.
    "cpu": FinetuneRecipe(16, 5.0, 60, 1600, {"scratch": 1e-3, "full": 1e-3, "head": 3e-3, "lora": 1e-3,
                                              "encoder": 1e-3, "probe": 1e-2}, r"wte|c_attn|c_proj|c_fc", 4),
    # gpu: the cpu choice carried over (rank 8 is about 3 % of this GPT), not measured on val
    "gpu": FinetuneRecipe(32, 4.0, 100, 1500, {"scratch": 1e-3, "full": 3e-4, "head": 3e-3, "lora": 1e-3,
                                                "encoder": 5e-4, "probe": 1e-2}, r"wte|c_attn|c_proj|c_fc", 8),
}


def finetune_config(preset: str, n_labels: int, mode: str, progress: bool = False,
                    max_steps: int | None = None) -> TrainConfig:
    """The TrainConfig of one fine-tuning run: steps from the number of labels, lr from the mode."""
    r = FINETUNE_RECIPES[preset]
    if mode not in r.lr:
        raise ValueError(f"mode={mode!r}; use one of {', '.join(r.lr)}")
    steps = max_steps or int(min(r.max_steps, max(r.min_steps, r.epochs * n_labels / r.batch_size)))
    lr = r.lr[mode]
    return TrainConfig(max_steps=steps, learning_rate=lr, min_lr=lr / 10, warmup_steps=max(1, steps // 10),
                       eval_interval=steps, eval_iters=4, weight_decay=0.01, progress=progress)


def split_tensors(split: dict[str, Split], encode: Callable[[list[str]], torch.Tensor], n_classes: int = 2,
                  train: Split | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{part: (X, y)} for every part, X by `encode(texts)`; `train` replaces the train part (a subsample)."""
    parts = dict(split, **({"train": train} if train is not None else {}))
    return {k: (encode(v.texts), check_labels(v.labels, n_classes)) for k, v in parts.items()}
