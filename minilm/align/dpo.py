"""Direct preference optimisation, by hand (notebook 09; Rafailov et al. 2023, "Direct Preference Optimization").

For a prompt x, a chosen answer y_w and a rejected one y_l, with the policy pi and a frozen reference:

    loss = -log sigmoid( beta * [ (log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log ref(y_l|x)) ] )

log pi(y|x) is the sum of the answer tokens' log-probabilities (`sequence_logprobs`). While pi == ref
the bracket is 0 and the loss is log 2; its gradient raises log pi(y_w|x) and lowers log pi(y_l|x).
Works with any model of the course's contract: forward(idx (B, T)) -> (logits (B, T, V), loss).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..training.loop import TrainConfig, make_optimizer
from .sft import pad_batch
from .task import Task, answer_text, complete
from .template import END, ChatTokenizer, prompt_ids
from .verifier import check


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) at every position: logits (B, T, V), targets (B, T) with -1 where not scored ->
    (B, T), 0 where the target is -1."""
    logp = torch.log_softmax(logits.float(), dim=-1)  # (B, T, V)
    picked = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T)
    return picked * (targets >= 0)


def sequence_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(answer | prompt): logits (B, T, V), targets (B, T) (-1 on the prompt and padding) -> (B,),
    the sum of the scored tokens' log-probabilities."""
    return token_logprobs(logits, targets).sum(dim=-1)


def dpo_loss(pi_chosen: torch.Tensor, pi_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float = 0.1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DPO loss from sequence log-probs, each (B,) -> (mean loss (scalar), chosen reward (B,),
    rejected reward (B,)). A reward is beta * (log pi - log ref): how much more likely the policy made
    the answer than the reference does; the loss is -log sigmoid(chosen reward - rejected reward)."""
    if beta <= 0:
        raise ValueError(f"beta={beta} must be > 0 (typical: 0.1)")
    chosen = beta * (pi_chosen - ref_chosen)  # (B,)
    rejected = beta * (pi_rejected - ref_rejected)  # (B,)
    loss = -F.logsigmoid(chosen - rejected).mean()
    return loss, chosen.detach(), rejected.detach()


@dataclass(frozen=True)
class Pair:
    """One preference: a prompt's ids and two answers' ids (answers end with <|end|> when they ended)."""

    prompt: list[int]
    chosen: list[int]
    rejected: list[int]
    own: bool = True  # the chosen answer is the model's own (False: the corpus poem, see make_pairs)


def make_pairs(model: nn.Module, tok: ChatTokenizer, tasks: Sequence[Task], n_samples: int,
               device: torch.device | str, temperature: float = 1.0, seed: int = 0,
               fallback: bool = True) -> list[Pair]:
    """Preference pairs from the model's own answers: n_samples answers to each task (at `temperature`),
    judged by the verifier; chosen: an answer that passes, rejected: the failing answer with the highest
    reward, a near miss (right form, a head wrong), so that the pair differs where the task is decided.
    When no answer passes, `fallback` takes the task's corpus poem as the chosen answer (a weak model
    still gets pairs); else the task gives none, as does a task whose answers all pass. Pair.own is
    False for the fallback pairs."""
    g = torch.Generator().manual_seed(seed)
    end = tok.id(END)
    prompts = [prompt_ids(t.conversation(), tok) for t in tasks for _ in range(n_samples)]
    answers = complete(model, tok, prompts, temperature=temperature, generator=g, device=device)
    pairs = []
    for k, task in enumerate(tasks):
        group = answers[k * n_samples:(k + 1) * n_samples]
        verdicts = [check(answer_text(a, tok), task.heads) for a in group]
        good = [a for a, v in zip(group, verdicts, strict=True) if v.passed]
        bad = [i for i, v in enumerate(verdicts) if not v.passed]
        if bad and (good or fallback):
            chosen = good[0] if good else tok.encode(task.poem) + [end]
            nearest = max(bad, key=lambda i: verdicts[i].reward)  # the first of the best failures
            pairs.append(Pair(prompts[k * n_samples], chosen, group[nearest], own=bool(good)))
    return pairs


def pair_xy(prompt: Sequence[int], answer: Sequence[int], block_size: int) -> tuple[list[int], list[int]]:
    """(x, y) for scoring `answer` after `prompt`: x = (prompt + answer)[:-1], y = -1 on the prompt and
    the answer's ids after it, both cut to block_size positions."""
    ids = list(prompt) + list(answer)
    x, y = ids[:-1], [-1] * (len(prompt) - 1) + list(answer)
    return x[:block_size], y[:block_size]


def pair_logprobs(model: nn.Module, pairs: Sequence[Pair], pad_id: int, device: torch.device | str,
                  block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p(chosen), log p(rejected)), each (B,), of `model` on `pairs` (one batched forward pass)."""
    rows = [pair_xy(p.prompt, p.chosen, block_size) for p in pairs] + \
           [pair_xy(p.prompt, p.rejected, block_size) for p in pairs]
    x, y = pad_batch(rows, pad_id, device)  # (2B, T)
    logits, _ = model(x)
    lp = sequence_logprobs(logits, y)  # (2B,)
    return lp[:len(pairs)], lp[len(pairs):]


@torch.no_grad()
def dpo_metrics(policy: nn.Module, pairs: Sequence[Pair], ref_logps: tuple[torch.Tensor, torch.Tensor],
                beta: float, pad_id: int, device: torch.device | str, batch_size: int = 64) -> dict[str, float]:
    """On `pairs` (reference log-probs precomputed): mean loss, reward margin (chosen - rejected reward)
    and preference accuracy (share of pairs whose chosen reward is strictly the higher: a tie, as at the
    start when policy == reference, counts as not preferred)."""
    was = policy.training
    policy.eval()
    losses, margins = [], []
    for s in range(0, len(pairs), batch_size):
        pc, pr = pair_logprobs(policy, pairs[s:s + batch_size], pad_id, device, policy.block_size)
        loss, c, r = dpo_loss(pc, pr, ref_logps[0][s:s + batch_size], ref_logps[1][s:s + batch_size], beta)
        losses.append(float(loss) * len(c))
        margins.append(c - r)
    policy.train(was)
    m = torch.cat(margins)
    return {"loss": sum(losses) / len(pairs), "margin": float(m.mean()), "accuracy": float((m > 0).float().mean())}


@torch.no_grad()
def reference_logprobs(reference: nn.Module, pairs: Sequence[Pair], pad_id: int, device: torch.device | str,
                       batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """The frozen reference's (log p(chosen), log p(rejected)) for all pairs, each (N,): computed once."""
    was = reference.training
    reference.eval()
    out = [pair_logprobs(reference, pairs[s:s + batch_size], pad_id, device, reference.block_size)
           for s in range(0, len(pairs), batch_size)]
    reference.train(was)
    return torch.cat([c for c, _ in out]), torch.cat([r for _, r in out])


def train_dpo(policy: nn.Module, reference: nn.Module, pairs: Sequence[Pair], val_pairs: Sequence[Pair],
              pad_id: int, device: torch.device | str, steps: int = 100, lr: float = 1e-5, beta: float = 0.1,
              batch_size: int = 16, eval_interval: int = 25, seed: int = 0, nll_coef: float = 0.0,
              progress: bool = True, eval_batch: int = 64, shuffle: bool = False) -> dict[str, list[float]]:
    """Train `policy` (in place) on `pairs` by DPO against the frozen `reference`; returns the history
    {"step", "loss", "val_loss", "val_margin", "val_accuracy"} (val_* at every eval_interval steps).

    nll_coef > 0 adds that times the chosen answers' mean per-token negative log-likelihood (the SFT
    loss on them; Pang et al. 2024's "RPO"): DPO alone may lower the chosen answers' probability too,
    as long as the rejected ones fall faster. AdamW from the course's `make_optimizer` (no weight
    decay), constant lr, gradients clipped to 1. shuffle=False draws each batch's pairs at random, with
    replacement (steps * batch_size draws of N pairs leave about e^-1 = 37 % unseen when they are equal);
    shuffle=True takes the pairs in a shuffled order, each once per pass, a new order each pass.
    eval_batch: pairs per forward pass when scoring (lower it for a large vocabulary: the logits of
    2 * eval_batch sequences are held at once).

    `reference` may be `policy` itself when the policy starts equal to it (LoRA's B at zero): the
    reference's log-probabilities are all computed before the first step."""
    if not pairs or not val_pairs:
        raise ValueError("train_dpo needs training and validation pairs; make more samples per prompt or more prompts")
    ref_train = reference_logprobs(reference, pairs, pad_id, device, eval_batch)
    ref_val = reference_logprobs(reference, val_pairs, pad_id, device, eval_batch)
    opt = make_optimizer(policy, TrainConfig(learning_rate=lr, weight_decay=0.0))
    g = torch.Generator().manual_seed(seed)
    hist: dict[str, list[float]] = {k: [] for k in ("step", "loss", "val_step", "val_loss", "val_margin",
                                                    "val_accuracy")}

    def evaluate(step: int) -> None:
        m = dpo_metrics(policy, val_pairs, ref_val, beta, pad_id, device, eval_batch)
        hist["val_step"].append(step)
        for k in ("loss", "margin", "accuracy"):
            hist[f"val_{k}"].append(m[k])

    evaluate(0)
    policy.train()
    order = torch.empty(0, dtype=torch.long)  # shuffle: the pairs this pass has still to give
    for step in tqdm(range(1, steps + 1), disable=not progress, desc="DPO"):
        if shuffle:
            while len(order) < batch_size:
                order = torch.cat([order, torch.randperm(len(pairs), generator=g)])
            pick, order = order[:batch_size], order[batch_size:]
        else:
            pick = torch.randint(len(pairs), (batch_size,), generator=g)
        batch = [pairs[i] for i in pick.tolist()]
        pc, pr = pair_logprobs(policy, batch, pad_id, device, policy.block_size)
        loss, _, _ = dpo_loss(pc, pr, ref_train[0][pick], ref_train[1][pick], beta)
        if nll_coef > 0:
            n_tokens = torch.tensor([sum(t >= 0 for t in pair_xy(p.prompt, p.chosen, policy.block_size)[1])
                                     for p in batch], device=pc.device).clamp(min=1)  # (B,)
            loss = loss + nll_coef * (-pc / n_tokens).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        hist["step"].append(step)
        hist["loss"].append(float(loss.detach()))
        if step % eval_interval == 0 or step == steps:
            evaluate(step)
    policy.eval()
    return hist


LOG2 = math.log(2.0)  # the DPO loss while the policy equals the reference
