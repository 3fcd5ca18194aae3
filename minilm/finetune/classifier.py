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

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..models.base import lm_loss
from ..models.gpt import GPT
from ..training.loop import History, TrainConfig, train
from .lora import apply_lora, count_parameters, mark_only_lora_trainable
from .reviews import check_labels

Pooling = Literal["last", "mean", "max"]
Mode = Literal["head", "full", "lora"]
GPT_LORA_PATTERN = r"attn\.c_attn|attn\.c_proj"  # LoRA on every attention projection of minilm's GPT


# ----------------------------------------------------------------------------------- pooling


def padding_mask(x: torch.Tensor) -> torch.Tensor:
    """x (B, T) ids with PAD = -1 -> mask (B, T) bool, True at real tokens."""
    return x >= 0


def _require_a_real_token(mask: torch.Tensor) -> None:
    if not bool(mask.any(dim=1).all()):
        raise ValueError("a row of the padding mask has no real token: nothing to pool")


def last_token_pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """h (B, T, C), mask (B, T) bool -> (B, C): the hidden state at each row's last real (True) position."""
    _require_a_real_token(mask)
    T = mask.shape[1]
    last = (torch.arange(T, device=mask.device) * mask).argmax(dim=1)  # (B,) index of the last True
    return h[torch.arange(h.shape[0], device=h.device), last]


def mean_pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """h (B, T, C), mask (B, T) bool -> (B, C): the mean over each row's real positions."""
    m = mask.unsqueeze(-1).to(h.dtype)  # (B, T, 1)
    return (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)


def max_pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """h (B, T, C), mask (B, T) bool -> (B, C): each feature's largest value over the row's real positions
    (max over time, as in Kim 2014's CNN: one strong word can decide)."""
    _require_a_real_token(mask)
    return h.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)


def pool(h: torch.Tensor, mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    if pooling == "last":
        return last_token_pool(h, mask)
    if pooling == "mean":
        return mean_pool(h, mask)
    if pooling == "max":
        return max_pool(h, mask)
    raise ValueError(f"pooling={pooling!r}; use 'last', 'mean' or 'max'")


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


def activation_bytes(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Bytes of the tensors autograd saves for the backward pass of model(x, y) (the activations), each
    storage counted once. Saved tensors that share storage with a parameter (a weight, or a view of one
    such as its transpose) are the weights themselves, not activations: they are left out."""
    param_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: set[int] = set()
    total = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = t.untyped_storage().data_ptr()
        if key not in seen and key not in param_storages:  # a storage saved twice is held once
            seen.add(key)
            total[0] += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        _, loss = model(x, y)
    loss.backward()
    model.zero_grad(set_to_none=True)
    return total[0]


def training_memory_bytes(model: nn.Module, get_batch: Callable[[str], tuple[torch.Tensor, torch.Tensor]],
                          device: torch.device | str) -> int:
    """Peak memory of one training step, measured. CUDA: torch.cuda.max_memory_allocated over a forward and
    backward. CPU: parameters + gradients + AdamW's two states for the trainable ones + the activations
    autograd saves for the backward pass (`activation_bytes`: parameters are not counted a second time)."""
    device = torch.device(device)
    x, y = get_batch("train")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        _, loss = model(x, y)
        loss.backward()
        model.zero_grad(set_to_none=True)
        return torch.cuda.max_memory_allocated(device)
    params = list(model.parameters())
    weights = sum(p.numel() * p.element_size() for p in params)
    trainable = sum(p.numel() * p.element_size() for p in params if p.requires_grad)
    return weights + 3 * trainable + activation_bytes(model, x, y)


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
