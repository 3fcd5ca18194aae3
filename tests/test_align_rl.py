"""GRPO by hand (minilm.align.rl): group-relative advantages, the clipped loss, the KL estimate, a training run."""

from __future__ import annotations

import math

import pytest
import torch

from minilm.align.rl import clipped_policy_loss, group_advantages, kl_to_reference, train_grpo
from minilm.align.task import Task
from minilm.align.template import ChatTokenizer, grow_vocab
from minilm.data.tokenizers import CharTokenizer
from minilm.models.gpt import GPT, GPTConfig


def test_group_advantages_by_hand():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.5, 0.5, 0.5, 0.5], [1.0, 0.0, 0.0, 0.0]])
    a = group_advantages(r, eps=0.0 + 1e-12)
    torch.testing.assert_close(a[0], torch.tensor([1.0, -1.0, -1.0, 1.0]))  # mean 0.5, std 0.5
    assert torch.equal(a[1], torch.zeros(4))  # all equal: nothing to learn from this group
    s = math.sqrt(3) / 4  # mean 0.25, population std sqrt(3)/4
    torch.testing.assert_close(a[2], torch.tensor([0.75 / s, -0.25 / s, -0.25 / s, -0.25 / s]))
    torch.testing.assert_close(a.sum(dim=1), torch.zeros(3), atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="prompts, group size"):
        group_advantages(torch.ones(4))


@pytest.mark.parametrize("ratio, adv, expected", [
    (1.5, 1.0, -1.2),   # a good answer made more likely: the gain is clipped at 1 + 0.2
    (1.5, -1.0, 1.5),   # a bad answer made more likely: not clipped, the full penalty
    (0.5, 1.0, -0.5),   # a good answer made less likely: the full loss
    (0.5, -1.0, 0.8),   # a bad answer made less likely: clipped at 1 - 0.2
    (1.0, 2.0, -2.0),
])
def test_clipped_loss_by_hand(ratio, adv, expected):
    logp_old = torch.tensor([[-1.0, -2.0, 0.0]])
    logp = logp_old + math.log(ratio)
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    loss = clipped_policy_loss(logp, logp_old, torch.tensor([adv]), mask, clip=0.2)
    assert math.isclose(float(loss), expected, rel_tol=1e-5)


def test_at_ratio_one_the_gradient_is_the_policy_gradient():
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.2, -0.1]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    adv = torch.tensor([2.0, -1.0])
    clipped_policy_loss(logp, logp.detach(), adv, mask).backward()
    # -(1/N) sum_i A_i/|o_i| sum_t grad log pi: per token -A_i / (N |o_i|) on answer tokens
    expected = torch.tensor([[-2.0 / 4, -2.0 / 4, 0.0], [1.0 / 6, 1.0 / 6, 1.0 / 6]])
    torch.testing.assert_close(logp.grad, expected)


def test_kl_estimate():
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    lp = torch.tensor([[-1.0, -2.0, -3.0]])
    assert float(kl_to_reference(lp, lp, mask)) == 0.0
    ref = lp + torch.tensor([[math.log(2), 0.0, 5.0]])  # the masked position does not count
    assert math.isclose(float(kl_to_reference(lp, ref, mask)), (2 - math.log(2) - 1) / 2, rel_tol=1e-6)
    assert float(kl_to_reference(lp, lp - 1.0, mask)) > 0  # >= 0 either way


def test_grpo_raises_a_reward_a_tiny_model_can_find():
    heads = "春處夜花"
    tok = ChatTokenizer(CharTokenizer.from_text("春眠不覺曉處聞啼鳥夜來風雨聲花落知多少，。五言藏頭詩"))
    torch.manual_seed(0)
    policy = grow_vocab(GPT(GPTConfig(block_size=48, vocab_size=tok.base.vocab_size, n_layer=1, n_head=2,
                                      n_embd=32)), tok.vocab_size)
    ref = GPT(policy.config)
    ref.load_state_dict(policy.state_dict())
    tasks = [Task(heads, "")]

    def starts_with_head(answer: str, h: str) -> float:  # a reward a random model sometimes earns
        return float(answer[:1] == h[0])

    hist = train_grpo(policy, ref, tok, tasks, starts_with_head, "cpu", steps=25, lr=3e-3, prompts_per_step=2,
                      group_size=8, kl_coef=0.01, progress=False)
    assert len(hist["reward"]) == 25 and all(k >= 0 for k in hist["kl"])
    assert sum(hist["reward"][-5:]) / 5 > sum(hist["reward"][:5]) / 5 + 0.2, hist["reward"]
    assert len(hist["flat"]) == 25 and all(0.0 <= f <= 1.0 for f in hist["flat"])
    # a reward that pays every answer alike: every group is flat (all advantages 0) and nothing moves
    before = [p.detach().clone() for p in policy.parameters()]
    flat = train_grpo(policy, None, tok, tasks, lambda answer, heads: 0.5, "cpu", steps=2, lr=3e-3,
                      prompts_per_step=2, group_size=4, progress=False)
    assert flat["flat"] == [1.0, 1.0]
    assert all(torch.equal(a, b) for a, b in zip(before, policy.parameters()))
    with pytest.raises(ValueError, match="group_size"):
        train_grpo(policy, ref, tok, tasks, starts_with_head, "cpu", steps=1, group_size=1)
