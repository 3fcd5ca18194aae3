"""Fine-tuning a pretrained Transformer for classification, through the one training loop (taught in 07).

    split = rt_polarity_split()                          # fixed, seeded: train / val / test
    X = encode_texts(split["train"].texts, tok, block_size=64)  # (N, T) ids, -1 = padding, once
    clf = GPTClassifier(gpt, n_classes=2, pooling="last")
    prepare(clf, "lora")                                 # "head" | "full" | "lora"
    result = finetune(clf, data, TrainConfig(max_steps=300, ...), batch_size=32, device=device)
    accuracy(predict(clf, X_test), y_test); confusion_matrix(...)

Sequences are padded on the right with PAD = -1 (the convention of `lm_loss`: -1 is "no token").
The classifier reads the padding mask as `x >= 0` and feeds the model `x.clamp(min=0)`: under the
causal mask a real token never sees the padding after it, so the last real token's hidden state
is exactly the one of the unpadded sequence. The classifiers follow the contract of
`minilm.training.train`: forward(x, y) -> (logits (B, n_classes), loss), so fine-tuning is
train() with a batch function over the labelled examples (no second loop).

The data is the rt-polarity set (Pang and Lee 2005, 5,331 + 5,331 snippets). It has no official
split; `rt_polarity_split` makes one from a hash of each text (duplicates dropped, so no text is in
two parts), the same on every machine and Python version. Tune on "val"; report "test" once.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from . import data as datasets
from .lora import apply_lora, count_parameters, mark_only_lora_trainable
from .models.base import lm_loss
from .models.gpt import GPT
from .training import History, TrainConfig, train

PAD = -1  # padding id in encoded batches (the classifier turns it into a mask)
LABELS = ("negative", "positive")  # rt-polarity: 0 = negative, 1 = positive
SPLIT_SEED = 2005
SPLIT_FRACTIONS = {"test": 0.1, "val": 0.1}  # the rest is train
Pooling = Literal["last", "mean"]
Mode = Literal["head", "full", "lora"]
GPT_LORA_PATTERN = r"attn\.c_attn|attn\.c_proj"  # LoRA on every attention projection of minilm's GPT


class Tokenizer(Protocol):
    vocab_size: int

    def encode(self, text: str) -> list[int]: ...


# ------------------------------------------------------------------------------------ data


@dataclass(frozen=True)
class Split:
    """One part of a labelled dataset: texts and their labels (0 .. n_classes - 1)."""

    texts: list[str]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.texts)


def load_rt_polarity() -> Split:
    """Every rt-polarity snippet (positive then negative file order), label 1 = positive, 0 = negative."""
    texts, labels = [], []
    for name, label in (("rt-polarity.pos", 1), ("rt-polarity.neg", 0)):
        raw = datasets.path("rt-polarity", name).read_bytes().decode("utf-8", errors="replace")
        for line in raw.splitlines():
            if line.strip():
                texts.append(line.strip())
                labels.append(label)
    return Split(texts, labels)


def _bucket(text: str, seed: int) -> float:
    """A number in [0, 1) fixed by the text and the seed (sha256): where the text falls in the split."""
    digest = hashlib.sha256(f"{seed}:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def make_split(full: Split, seed: int = SPLIT_SEED, fractions: dict[str, float] | None = None) -> dict[str, Split]:
    """{"train", "val", "test"}: a deterministic split by a hash of each text. Texts that occur more than
    once are kept once (with their label; a text with both labels is dropped), so the parts are disjoint."""
    fr = fractions or SPLIT_FRACTIONS
    labels_of: dict[str, set[int]] = {}
    order: list[str] = []
    for text, label in zip(full.texts, full.labels):
        if text not in labels_of:
            labels_of[text] = set()
            order.append(text)
        labels_of[text].add(label)
    parts: dict[str, Split] = {k: Split([], []) for k in ("train", "val", "test")}
    for text in order:
        if len(labels_of[text]) != 1:
            continue  # contradictory duplicates carry no label
        u = _bucket(text, seed)
        part = "test" if u < fr["test"] else "val" if u < fr["test"] + fr["val"] else "train"
        parts[part].texts.append(text)
        parts[part].labels.append(next(iter(labels_of[text])))
    return parts


def rt_polarity_split(seed: int = SPLIT_SEED) -> dict[str, Split]:
    """The course's fixed split of rt-polarity: about 80 / 10 / 10 % train / val / test."""
    return make_split(load_rt_polarity(), seed)


def subsample(split: Split, n: int, seed: int = 0) -> Split:
    """`n` examples of `split`, balanced across labels (n // n_classes each, rest from the first), seeded."""
    if not 1 <= n <= len(split):
        raise ValueError(f"n={n} must be between 1 and the {len(split)} examples of the split")
    g = torch.Generator().manual_seed(seed)
    by_label: dict[int, list[int]] = {}
    for i, label in enumerate(split.labels):
        by_label.setdefault(label, []).append(i)
    classes = sorted(by_label)
    chosen: list[int] = []
    for c in classes:
        idx = by_label[c]
        perm = torch.randperm(len(idx), generator=g).tolist()
        chosen += [idx[j] for j in perm[: min(len(idx), n // len(classes))]]
    rest = [i for i in torch.randperm(len(split), generator=g).tolist() if i not in set(chosen)]
    chosen += rest[: n - len(chosen)]
    chosen.sort()
    return Split([split.texts[i] for i in chosen], [split.labels[i] for i in chosen])


def check_labels(labels: Sequence[int], n_classes: int) -> torch.Tensor:
    """Labels as an int64 tensor (N,); a label outside 0 .. n_classes - 1 is an error naming it."""
    y = torch.as_tensor(list(labels), dtype=torch.long)
    bad = ((y < 0) | (y >= n_classes)).nonzero().flatten()
    if bad.numel():
        i = int(bad[0])
        raise ValueError(
            f"labels must be class ids 0 .. {n_classes - 1} (n_classes={n_classes}); label {int(y[i])} at "
            f"position {i} is not ({bad.numel()} such labels). Map class names to ids first, or raise n_classes."
        )
    return y


def tokenizer_fingerprint(tokenizer: Tokenizer) -> str:
    """A short hash of a minilm tokenizer's vocabulary (BPE merges or characters): which tokenizer it is."""
    state = getattr(tokenizer, "merges", None) or getattr(tokenizer, "chars", None)
    if state is None:
        state = [tokenizer.vocab_size, tokenizer.encode("The quick brown fox, 123!")]
    return hashlib.sha256(json.dumps([type(tokenizer).__name__, state]).encode()).hexdigest()[:12]


def check_tokenizer(model: nn.Module, tokenizer: Tokenizer) -> None:
    """Raise ValueError when `tokenizer` is not the one `model` (a GPT) was trained with.

    Checked: the vocabulary size against the embedding's rows, and, when the model carries a
    `tokenizer_fingerprint` (set when it is loaded with its tokenizer), the tokenizer itself."""
    gpt = model.gpt if isinstance(model, GPTClassifier) else model
    rows = gpt.transformer.wte.weight.shape[0]
    if tokenizer.vocab_size != rows:
        raise ValueError(
            f"this tokenizer has {tokenizer.vocab_size} tokens but the checkpoint's embedding has {rows} rows: "
            "it is not the tokenizer the model was trained with. Load the tokenizer saved with the "
            "checkpoint (e.g. `gpt, tok = review_gpt(...)`) and encode with that."
        )
    expected = getattr(gpt, "tokenizer_fingerprint", None)
    if expected is not None and tokenizer_fingerprint(tokenizer) != expected:
        raise ValueError(
            f"this tokenizer (fingerprint {tokenizer_fingerprint(tokenizer)}) has the right size but is not "
            f"the one the checkpoint was trained with (fingerprint {expected}): the same ids would mean other "
            "text. Use the tokenizer saved with the checkpoint."
        )


def encode_texts(texts: Sequence[str], tokenizer: Tokenizer, block_size: int, truncate: bool = True,
                 vocab_size: int | None = None) -> torch.Tensor:
    """Texts -> ids (N, T) int64, right-padded with PAD = -1, T = min(block_size, longest); done once.

    With `truncate`, a text longer than `block_size` tokens keeps its first `block_size`; without,
    it is an error naming it. An empty text is an error (nothing to pool). `vocab_size` checks ids."""
    if block_size < 1:
        raise ValueError(f"block_size={block_size} must be >= 1")
    encoded = [tokenizer.encode(t) for t in texts]
    for i, ids in enumerate(encoded):
        if not ids:
            raise ValueError(f"text {i} ({texts[i]!r}) encodes to no tokens: remove empty texts first")
        if len(ids) > block_size and not truncate:
            raise ValueError(
                f"text {i} is {len(ids)} tokens long but the model reads at most block_size={block_size}: "
                "pass truncate=True to keep its first block_size tokens, or use a model with a longer block_size"
            )
        if vocab_size is not None and max(ids) >= vocab_size:
            raise ValueError(f"text {i} encodes to id {max(ids)}, outside the model's vocabulary 0..{vocab_size - 1}: "
                             "the tokenizer does not match the model")
    T = min(block_size, max((len(ids) for ids in encoded), default=1))
    out = torch.full((len(encoded), T), PAD, dtype=torch.long)
    for i, ids in enumerate(encoded):
        ids = ids[:T]
        out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def encode_for(model: nn.Module, tokenizer: Tokenizer, texts: Sequence[str], truncate: bool = True) -> torch.Tensor:
    """`encode_texts` for a GPT or GPTClassifier: checks the tokenizer first and uses the model's block size."""
    check_tokenizer(model, tokenizer)
    gpt = model.gpt if isinstance(model, GPTClassifier) else model
    return encode_texts(texts, tokenizer, gpt.block_size, truncate, gpt.config.vocab_size)


# ----------------------------------------------------------------------------------- pooling


def padding_mask(x: torch.Tensor) -> torch.Tensor:
    """x (B, T) ids with PAD = -1 -> mask (B, T) bool, True at real tokens."""
    return x >= 0


def last_token_pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """h (B, T, C), mask (B, T) bool -> (B, C): the hidden state at each row's last real (True) position."""
    if not bool(mask.any(dim=1).all()):
        raise ValueError("a row of the padding mask has no real token: nothing to pool")
    T = mask.shape[1]
    last = (torch.arange(T, device=mask.device) * mask).argmax(dim=1)  # (B,) index of the last True
    return h[torch.arange(h.shape[0], device=h.device), last]


def mean_pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """h (B, T, C), mask (B, T) bool -> (B, C): the mean over each row's real positions."""
    m = mask.unsqueeze(-1).to(h.dtype)  # (B, T, 1)
    return (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


def pool(h: torch.Tensor, mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    if pooling == "last":
        return last_token_pool(h, mask)
    if pooling == "mean":
        return mean_pool(h, mask)
    raise ValueError(f"pooling={pooling!r}; use 'last' or 'mean'")


# ------------------------------------------------------------------------------- classifiers


class GPTClassifier(nn.Module):
    """A minilm GPT with a linear head on a pooled hidden state: forward(x (B, T), y (B,) | None) ->
    (logits (B, n_classes), loss). `lm_coef` > 0 adds GPT-1's auxiliary language-modelling loss."""

    def __init__(self, gpt: GPT, n_classes: int = 2, pooling: Pooling = "last", dropout: float = 0.1,
                 lm_coef: float = 0.0) -> None:
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"n_classes={n_classes} must be >= 2")
        pool(torch.zeros(1, 1, 1), torch.ones(1, 1, dtype=torch.bool), pooling)  # validates pooling
        self.gpt, self.pooling, self.n_classes, self.lm_coef = gpt, pooling, n_classes, lm_coef
        self.block_size = gpt.block_size
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(gpt.config.n_embd, n_classes)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        mask = padding_mask(x)  # (B, T)
        h = self.gpt.features(x.clamp(min=0))  # (B, T, C); padding after the text is never seen by it
        logits = self.head(self.dropout(pool(h, mask, self.pooling)))  # (B, n_classes)
        if y is None:
            return logits, None
        loss = F.cross_entropy(logits.float(), y)
        if self.lm_coef > 0 and self.training:
            lm_logits = self.gpt.lm_head(h[:, :-1])  # (B, T-1, V): predict each next real token
            loss = loss + self.lm_coef * lm_loss(lm_logits, x[:, 1:])  # PAD targets (-1) are ignored
        return logits, loss


class EncoderClassifier(nn.Module):
    """A Hugging Face encoder (e.g. MiniLM's BertModel) + mean pooling + a linear head; same contract."""

    def __init__(self, encoder: nn.Module, hidden_size: int, pad_token_id: int, n_classes: int = 2,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.encoder, self.pad_token_id, self.n_classes = encoder, pad_token_id, n_classes
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, T) ids with PAD = -1 -> mean-pooled hidden states (B, hidden) (sentence-transformers' pooling)."""
        mask = padding_mask(x)
        out = self.encoder(input_ids=x.masked_fill(~mask, self.pad_token_id), attention_mask=mask.long())
        return mean_pool(out.last_hidden_state, mask)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits = self.head(self.dropout(self.features(x)))
        return logits, (F.cross_entropy(logits.float(), y) if y is not None else None)


class LinearProbe(nn.Module):
    """A linear head on fixed features: forward(x (B, D) float, y (B,) | None) -> (logits (B, n_classes), loss)."""

    def __init__(self, dim: int, n_classes: int = 2) -> None:
        super().__init__()
        self.head = nn.Linear(dim, n_classes)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits = self.head(x)
        return logits, (F.cross_entropy(logits, y) if y is not None else None)


class HFTokenizer:
    """A Hugging Face tokenizer with minilm's `encode(text) -> ids` and `vocab_size` ([CLS] ... [SEP] included)."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = len(tokenizer)
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=True)["input_ids"]


def prepare(model: nn.Module, mode: Mode, lora_pattern: str | None = None, rank: int = 8,
            alpha: float = 16.0, lora_dropout: float = 0.0) -> tuple[int, int]:
    """Set what trains: "head" (body frozen), "full" (everything) or "lora" (adapters + head). Returns
    (trainable, total) parameters. The body is `model.gpt` or `model.encoder`; the head is `model.head`."""
    body = getattr(model, "gpt", None) or getattr(model, "encoder", None)
    if body is None:
        raise TypeError(f"prepare() needs a GPTClassifier or EncoderClassifier, got {type(model).__name__}")
    if mode == "full":
        for p in model.parameters():
            p.requires_grad_(True)
    elif mode == "head":
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("head."))
    elif mode == "lora":
        pattern = lora_pattern or (GPT_LORA_PATTERN if isinstance(model, GPTClassifier) else r"query|value")
        apply_lora(body, pattern, rank=rank, alpha=alpha, dropout=lora_dropout)
        mark_only_lora_trainable(model, keep=r"^head\.")
    else:
        raise ValueError(f"mode={mode!r}; use 'head', 'full' or 'lora'")
    return count_parameters(model)


# ----------------------------------------------------------------------- training and evaluation


def classification_batches(
    data: dict[str, tuple[torch.Tensor, torch.Tensor]], batch_size: int, device: torch.device | str,
    seed: int = 0,
) -> tuple[Callable[[str], tuple[torch.Tensor, torch.Tensor]], torch.Generator]:
    """(get_batch(split) -> (x, y) on device, its generator) for train(): `batch_size` random examples of
    data[split] = (X (N, T) or (N, D), y (N,)). Id batches are cut to their longest real sequence."""
    generator = torch.Generator().manual_seed(seed)
    for split, (X, y) in data.items():
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"data[{split!r}] has {X.shape[0]} inputs but {y.shape[0]} labels")

    def get(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        X, y = data[split]
        idx = torch.randint(X.shape[0], (batch_size,), generator=generator)
        xb = X[idx]
        if xb.dtype == torch.long:  # ids: drop the columns that are padding in every row
            xb = xb[:, : max(1, int(padding_mask(xb).sum(1).max()))]
        return xb.to(device), y[idx].to(device)

    return get, generator


@torch.no_grad()
def predict(model: nn.Module, X: torch.Tensor, batch_size: int = 256, device: torch.device | str | None = None) -> torch.Tensor:
    """Predicted classes (N,) for inputs X (N, T) ids or (N, D) features, in eval mode."""
    device = device or next(model.parameters()).device
    was = model.training
    model.eval()
    out = []
    for i in range(0, X.shape[0], batch_size):
        xb = X[i: i + batch_size]
        if xb.dtype == torch.long:
            xb = xb[:, : max(1, int(padding_mask(xb).sum(1).max()))]
        logits, _ = model(xb.to(device))
        out.append(logits.argmax(dim=-1).cpu())
    model.train(was)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def accuracy(pred: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of predictions equal to the labels, both (N,)."""
    if pred.shape != labels.shape or pred.numel() == 0:
        raise ValueError(f"pred {tuple(pred.shape)} and labels {tuple(labels.shape)} must be the same non-empty shape")
    return (pred == labels).float().mean().item()


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(n_classes, n_classes) int64 counts: row = true class, column = predicted class."""
    check_labels(labels.tolist(), n_classes)
    check_labels(pred.tolist(), n_classes)
    flat = labels.long() * n_classes + pred.long()
    return torch.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def training_memory_bytes(model: nn.Module, get_batch: Callable[[str], tuple[torch.Tensor, torch.Tensor]],
                          device: torch.device | str) -> int:
    """Peak memory of one training step, measured. CUDA: torch.cuda.max_memory_allocated over a forward and
    backward. CPU: parameters + gradients + AdamW's two states for the trainable ones + the activations
    autograd saves for the backward pass (counted by saved-tensor hooks)."""
    device = torch.device(device)
    x, y = get_batch("train")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        _, loss = model(x, y)
        loss.backward()
        model.zero_grad(set_to_none=True)
        return torch.cuda.max_memory_allocated(device)
    saved = [0]
    seen: set[int] = set()

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = t.untyped_storage().data_ptr()
        if key not in seen:  # a storage saved twice is held once
            seen.add(key)
            saved[0] += t.untyped_storage().nbytes()
        return t

    params = [p for p in model.parameters()]
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _, loss = model(x, y)
    loss.backward()
    model.zero_grad(set_to_none=True)
    weights = sum(p.numel() * p.element_size() for p in params)
    trainable = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    return weights + 3 * trainable + saved[0]


@dataclass
class FinetuneResult:
    """What a fine-tuning run measured."""

    history: History
    seconds: float  # training wall time (evaluation excluded)
    trainable: int  # parameters that trained
    total: int  # parameters in the model
    memory_bytes: int  # peak memory of a training step (see training_memory_bytes)


def finetune(model: nn.Module, data: dict[str, tuple[torch.Tensor, torch.Tensor]], cfg: TrainConfig,
             batch_size: int, device: torch.device | str, seed: int = 0) -> FinetuneResult:
    """Fine-tune `model` (forward(x, y) -> (logits, loss)) with minilm.training.train on data["train"],
    estimating the loss on data["val"]; the trainable parameters are those `prepare` left on."""
    if "train" not in data or "val" not in data:
        raise ValueError(f"data needs 'train' and 'val' parts, got {sorted(data)} (never tune on 'test')")
    n_classes = getattr(model, "n_classes", None) or model.head.out_features
    for _, y in data.values():
        check_labels(y.tolist(), n_classes)
    model.to(device)
    get, generator = classification_batches({k: data[k] for k in ("train", "val")}, batch_size, device, seed)
    memory = training_memory_bytes(model, get, device)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    history = train(model, get, cfg, device, generator=generator)
    seconds = history.wall_time[-1] if history.wall_time else time.perf_counter() - t0
    trainable, total = count_parameters(model)
    return FinetuneResult(history, seconds, trainable, total, memory)


# ---------------------------------------------------------------- the GPT-1 recipe at small scale


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
    "cpu": ReviewRecipe(1024, 3, 4, 128, 64, 0.1, 16, 1500, 3e-3),
    "gpu": ReviewRecipe(2048, 6, 6, 384, 64, 0.2, 64, 4000, 1e-3),
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


FINETUNE_RECIPES: dict[str, FinetuneRecipe] = {
    "smoke": FinetuneRecipe(8, 1.0, 4, 8, {"scratch": 1e-3, "full": 5e-4, "head": 3e-3, "lora": 3e-3,
                                            "encoder": 1e-3, "probe": 1e-2}),
    "cpu": FinetuneRecipe(16, 3.0, 60, 400, {"scratch": 1e-3, "full": 5e-4, "head": 3e-3, "lora": 3e-3,
                                              "encoder": 1e-3, "probe": 1e-2}),
    "gpu": FinetuneRecipe(32, 4.0, 100, 1500, {"scratch": 1e-3, "full": 3e-4, "head": 3e-3, "lora": 2e-3,
                                                "encoder": 5e-4, "probe": 1e-2}),
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
