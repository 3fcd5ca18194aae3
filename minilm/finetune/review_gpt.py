"""GPT-1's recipe at small scale (07): a GPT pretrained on unlabelled review text, and the fine-tuning settings.

`review_gpt(preset)` trains a BPE tokenizer and a GPT on `reviews.pretraining_text`: the train split's
snippets plus the full reviews of movie_reviews.zip (never a val or test sentence), and caches both in
cache_root()/models like the zoo (checkpointing as it trains, so an interrupted run resumes);
`finetune_config(preset, n_labels, mode)` gives each fine-tuning run its steps and learning rate. The
settings (in `minilm.recipes`) were chosen on the val split.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..data import datasets
from ..models.gpt import GPT
from ..recipes import settings
from ..training.loop import History, TrainConfig, train
from .reviews import Split, check_labels, pretraining_text, rt_polarity_split, tokenizer_fingerprint


@dataclass(frozen=True)
class ReviewRecipe:
    """Pretraining a GPT on unlabelled review text (BPE trained on that text too), per preset."""

    bpe_vocab: int  # BPE vocabulary trained on the pretraining text
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int  # also the classifier's longest input (reviews are cut to it)
    dropout: float
    batch_size: int
    steps: int  # language-model pretraining steps
    learning_rate: float
    reviews: int | None = None  # full movie reviews added to the train snippets (None: all 2,000; 0: none)


def review_recipe(preset: str) -> ReviewRecipe:
    """The review GPT's pretraining recipe of `preset`, from `minilm.recipes.REVIEW_GPT`."""
    return ReviewRecipe(**settings("REVIEW_GPT", preset))


def review_gpt_config(recipe: ReviewRecipe, vocab_size: int):
    from ..models.gpt import GPTConfig

    return GPTConfig(block_size=recipe.block_size, vocab_size=vocab_size, n_layer=recipe.n_layer,
                     n_head=recipe.n_head, n_embd=recipe.n_embd, dropout=recipe.dropout)


def review_gpt(preset: str, device: torch.device | str = "cpu", split: dict[str, Split] | None = None,
               progress: bool = True, seed: int = 1337):
    """(GPT pretrained on unlabelled review text, its BPETokenizer, History): cached in
    cache_root()/models/review-lm-<hash of recipe and text>.pt (+ .tokenizer.json), trained when missing.

    The text is `pretraining_text(split, recipe.reviews)`: the train part's snippets and full movie
    reviews, never a val or test sentence. The last 5 % of its tokens (reviews) measure the LM's val
    loss. A first training run checkpoints as it goes (run `<file stem>` in the checkpoint folder) and
    resumes when called again. The model carries `tokenizer_fingerprint`, so `check_tokenizer` refuses
    any other tokenizer."""
    from dataclasses import asdict

    from ..data.batching import batch_fn
    from ..data.tokenizers import BPETokenizer
    from ..models.gpt import GPTConfig
    from ..runtime import set_seed
    from ..training.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint

    recipe = review_recipe(preset)
    split = split or rt_polarity_split()
    text, counts = pretraining_text(split, recipe.reviews)
    text_sha = hashlib.sha256(text.encode("utf-8")).hexdigest()  # the very text it learns from
    key = hashlib.sha256(json.dumps([asdict(recipe), seed, 2, text_sha]).encode())
    path = datasets.cache_root() / "models" / f"review-lm-{key.hexdigest()[:12]}.pt"  # same recipe, same file
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
        tmp_tok = path.with_suffix(".partial-tokenizer.json")  # kept for a resumed run: BPE takes minutes
        tok = BPETokenizer.load(tmp_tok) if tmp_tok.exists() else BPETokenizer.train(text, recipe.bpe_vocab)
        tmp_tok.parent.mkdir(parents=True, exist_ok=True)
        tok.save(tmp_tok)
        ids = torch.tensor(tok.encode(text), dtype=torch.long)
        n_val = max(recipe.block_size + 2, ids.numel() // 20)  # the last 5 % (reviews) to watch overfitting
        train_ids, val_ids = ids[:-n_val], ids[-n_val:]
        if progress:
            print(f"pretraining text: {counts['train_snippets']:,} train snippets + {counts['reviews']:,} reviews "
                  f"({counts['review_lines']:,} lines; dropped as possible leaks of val/test: "
                  f"{counts['dropped_identical']} identical to a snippet, {counts['dropped_shared_run']} sharing "
                  f"a run of 8 words); BPE ({tok.vocab_size} tokens) on {len(text):,} characters -> "
                  f"{ids.numel():,} tokens ({time.perf_counter() - t0:.0f} s); pretraining {recipe.steps} steps "
                  f"(checkpoints as run {path.stem!r}: if this is interrupted, call it again to continue)")
        set_seed(seed)
        gpt = GPT(review_gpt_config(recipe, tok.vocab_size))
        cfg = TrainConfig(max_steps=recipe.steps, learning_rate=recipe.learning_rate,
                          min_lr=recipe.learning_rate / 10, warmup_steps=max(1, recipe.steps // 20),
                          eval_interval=max(1, recipe.steps // 4), eval_iters=10, weight_decay=0.1,
                          progress=progress, run_name=path.stem, resume=True)
        get, generator = batch_fn(train_ids, val_ids, recipe.block_size, recipe.batch_size, device, seed=seed)
        history = train(gpt, get, cfg, device, generator=generator)
        tok.save(tok_path)
        save_checkpoint(path, gpt, None, recipe.steps, train_config=cfg, history=history,
                        extra={"dataset": "rt-polarity train + movie_reviews", "preset": preset, **counts})
        tmp_tok.unlink(missing_ok=True)
    gpt.tokenizer_fingerprint = tokenizer_fingerprint(tok)
    return gpt.to(device).eval(), tok, history


def fresh_twin(gpt: GPT, seed: int = 1337) -> GPT:
    """The same architecture as `gpt`, freshly initialised (the from-scratch baseline), same tokenizer."""
    from ..runtime import set_seed

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


def finetune_recipe(preset: str) -> FinetuneRecipe:
    """How each way of fine-tuning trains under `preset`, from `minilm.recipes.FINETUNE`."""
    return FinetuneRecipe(**settings("FINETUNE", preset))


def finetune_config(preset: str, n_labels: int, mode: str, progress: bool = False,
                    max_steps: int | None = None) -> TrainConfig:
    """The TrainConfig of one fine-tuning run: steps from the number of labels, lr from the mode."""
    r = finetune_recipe(preset)
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


# t quantiles t_{0.975, df} for df = 1 .. 30 (two-sided 95 %); beyond 30 the normal's 1.96 is within 4 %
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def paired_gap(a: Sequence[float], b: Sequence[float]) -> dict[str, float | int | str]:
    """The paired gap a - b over seeds (run i of a and of b share seed i: same labelled subsample, same
    batch order): {"n", "mean", "sd", "lo", "hi", "verdict"}, [lo, hi] its 95 % t interval. The verdict is
    "ahead" when lo > 0, "behind" when hi < 0, else "no difference measured" (one seed: no interval)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired_gap needs the same number (>= 1) of runs on both sides, got {len(a)} and {len(b)}")
    gaps = [x - y for x, y in zip(a, b)]
    n, mean = len(gaps), statistics.mean(gaps)
    if n == 1:
        return {"n": 1, "mean": mean, "sd": float("nan"), "lo": float("-inf"), "hi": float("inf"),
                "verdict": "no difference measured"}
    sd = statistics.stdev(gaps)
    half = (_T975[n - 2] if n - 1 <= len(_T975) else 1.96) * sd / n ** 0.5
    lo, hi = mean - half, mean + half
    verdict = "ahead" if lo > 0 else "behind" if hi < 0 else "no difference measured"
    return {"n": n, "mean": mean, "sd": sd, "lo": lo, "hi": hi, "verdict": verdict}
