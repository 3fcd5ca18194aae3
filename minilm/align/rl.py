"""Reinforcement learning with a checkable reward, GRPO-style (notebook 09; Shao et al. 2024, DeepSeekMath).

One step: take P prompts, sample G answers to each from the current policy, score every answer with the
verifier, and turn the scores into group-relative advantages A = (r - mean of the group) / (std + eps):
an answer is pushed up when it beat its siblings, down when it lost to them, and a group whose answers
all scored the same teaches nothing. Then a clipped policy-gradient step on the answer tokens,

    loss = -mean_tokens min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A) + kl_coef * KL(pi || ref),

with ratio = pi(token) / pi_old(token) (pi_old: the policy that sampled) and the KL estimated per token
by exp(ref - pi) - (ref - pi) - 1 (the "k3" estimator, always >= 0), keeping the policy near `ref`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from ..training.loop import TrainConfig, make_optimizer
from .dpo import pair_xy, token_logprobs
from .sft import pad_batch
from .task import Task, answer_text, complete
from .template import END, ChatTokenizer, prompt_ids


def group_advantages(rewards: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """rewards (P, G): G answers to each of P prompts -> advantages (P, G): each reward minus its group's
    mean, divided by the group's standard deviation (population, i.e. over G) + eps. Equal rewards -> 0."""
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be (prompts, group size), got shape {tuple(rewards.shape)}")
    mean = rewards.mean(dim=1, keepdim=True)  # (P, 1)
    std = rewards.std(dim=1, keepdim=True, unbiased=False)  # (P, 1)
    return (rewards - mean) / (std + eps)


def clipped_policy_loss(logp: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor,
                        mask: torch.Tensor, clip: float = 0.2) -> torch.Tensor:
    """The clipped surrogate, to minimise: logp, logp_old (N, T) per-token log-probs of the sampled
    answers under the policy now and when sampling, advantages (N,), mask (N, T) 1 on answer tokens ->
    scalar: -(mean over answers of the mean over their tokens of min(ratio A, clip(ratio) A))."""
    ratio = torch.exp(logp - logp_old)  # (N, T)
    adv = advantages.unsqueeze(1)  # (N, 1)
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)  # (N, T)
    per_answer = (surrogate * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)  # (N,)
    return -per_answer.mean()


def kl_to_reference(logp: torch.Tensor, logp_ref: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token KL(pi || ref) estimate, exp(ref - pi) - (ref - pi) - 1, averaged over masked tokens:
    logp, logp_ref, mask (N, T) -> scalar >= 0 (0 where pi == ref)."""
    d = logp_ref - logp
    k3 = torch.exp(d) - d - 1  # (N, T)
    return (k3 * mask).sum() / mask.sum().clamp(min=1)


def rollout(policy: nn.Module, tok: ChatTokenizer, tasks: Sequence[Task], group_size: int,
            reward_fn: Callable[[str, str], float], generator: torch.Generator, device: torch.device | str,
            temperature: float = 1.0) -> tuple[list[list[int]], list[list[int]], torch.Tensor]:
    """Sample group_size answers to each task -> (prompts (P*G lists), answers (P*G lists), rewards (P, G))."""
    prompts = [prompt_ids(t.conversation(), tok) for t in tasks for _ in range(group_size)]
    answers = complete(policy, tok, prompts, temperature=temperature, generator=generator, device=device)
    heads = [t.heads for t in tasks for _ in range(group_size)]
    rewards = torch.tensor([reward_fn(answer_text(a, tok), h) for a, h in zip(answers, heads, strict=True)])
    return prompts, answers, rewards.view(len(tasks), group_size)


def train_grpo(
    policy: nn.Module, reference: nn.Module | None, tok: ChatTokenizer, tasks: Sequence[Task],
    reward_fn: Callable[[str, str], float], device: torch.device | str, steps: int = 50, lr: float = 1e-5,
    prompts_per_step: int = 8, group_size: int = 8, kl_coef: float = 0.05, clip: float = 0.2,
    inner_steps: int = 2, temperature: float = 1.0, seed: int = 0, progress: bool = True,
    callback: Callable[[int, dict], None] | None = None,
) -> dict[str, list[float]]:
    """Train `policy` (in place) by GRPO on `tasks`; returns {"step", "reward", "kl", "passed", "flat"} per
    step (mean reward of the step's samples, the KL estimate, share of samples scoring 1, share of groups
    whose answers all scored alike: their advantages are all 0, so they teach nothing).

    Each step samples prompts_per_step x group_size answers, then takes `inner_steps` clipped gradient
    steps on them (the first has ratio 1; the clip matters for the next). kl_coef=0: no KL term (the KL
    to `reference` is still measured); reference=None: none at all. `callback(step, history)` runs after
    each step (e.g. to draw the reward curve live)."""
    if group_size < 2:
        raise ValueError(f"group_size={group_size}: group-relative advantages need at least 2 answers per prompt")
    opt = make_optimizer(policy, TrainConfig(learning_rate=lr, weight_decay=0.0))
    g = torch.Generator().manual_seed(seed)
    pad = tok.id(END)  # right padding; its targets are -1
    hist: dict[str, list[float]] = {"step": [], "reward": [], "kl": [], "passed": [], "flat": []}
    use_ref = reference is not None  # the KL is measured whenever there is a reference, trained on if kl_coef > 0
    bar = tqdm(range(1, steps + 1), disable=not progress, desc="GRPO")
    for step in bar:
        pick = torch.randint(len(tasks), (prompts_per_step,), generator=g).tolist()
        prompts, answers, rewards = rollout(policy, tok, [tasks[i] for i in pick], group_size, reward_fn, g,
                                            device, temperature)
        adv = group_advantages(rewards).flatten().to(device)  # (N,)
        x, y = pad_batch([pair_xy(p, a, policy.block_size) for p, a in zip(prompts, answers, strict=True)],
                         pad, device)  # (N, T)
        mask = (y >= 0).float()
        with torch.no_grad():
            policy.eval()
            logp_old = token_logprobs(policy(x)[0], y)
            logp_ref = token_logprobs(reference(x)[0], y) if use_ref else None
        policy.train()
        kl = torch.zeros(())
        for _ in range(inner_steps):
            logp = token_logprobs(policy(x)[0], y)  # (N, T)
            loss = clipped_policy_loss(logp, logp_old, adv, mask, clip)
            if use_ref:
                kl = kl_to_reference(logp, logp_ref, mask)
                loss = loss + kl_coef * kl if kl_coef > 0 else loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            opt.step()
        hist["step"].append(step)
        hist["reward"].append(float(rewards.mean()))
        hist["kl"].append(float(kl.detach()))
        hist["passed"].append(float((rewards >= 1.0).float().mean()))
        hist["flat"].append(float((rewards == rewards[:, :1]).all(dim=1).float().mean()))  # (P, G) -> share
        bar.set_postfix(reward=f"{hist['reward'][-1]:.3f}")
        if callback is not None:
            callback(step, hist)
    policy.eval()
    return hist
