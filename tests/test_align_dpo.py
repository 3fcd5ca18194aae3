"""DPO by hand (minilm.align.dpo): sequence log-probs, the loss against the paper's formula, training, pairs."""

from __future__ import annotations

import math

import pytest
import torch

from minilm.align.dpo import (
    LOG2,
    Pair,
    dpo_loss,
    make_pairs,
    pair_xy,
    sequence_logprobs,
    token_logprobs,
    train_dpo,
)
from minilm.align.task import Task
from minilm.align.template import ChatTokenizer, grow_vocab
from minilm.align.verifier import check
from minilm.data.tokenizers import CharTokenizer
from minilm.models.gpt import GPT, GPTConfig


def test_sequence_logprobs_by_hand():
    probs = torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.3, 0.3, 0.4]]])  # (1, 4, 3)
    y = torch.tensor([[-1, 1, 2, -1]])  # the prompt and the padding are not scored
    assert math.isclose(float(sequence_logprobs(probs.log(), y)), math.log(0.8) + math.log(0.6), rel_tol=1e-6)
    assert token_logprobs(probs.log(), y)[0, 0] == 0.0
    uniform = torch.zeros(2, 5, 4)
    y = torch.tensor([[0, 1, 2, -1, -1], [3, 3, 3, 3, 3]])
    torch.testing.assert_close(sequence_logprobs(uniform, y), torch.tensor([3, 5]) * math.log(0.25))


def paper(p_w: float, p_l: float, r_w: float, r_l: float, beta: float) -> float:
    """Rafailov et al. (2023), eq. 7, on probabilities: -log sigma(beta log(pi_w/ref_w) - beta log(pi_l/ref_l))."""
    z = beta * math.log(p_w / r_w) - beta * math.log(p_l / r_l)
    return -math.log(1 / (1 + math.exp(-z)))


@pytest.mark.parametrize("p_w, p_l, r_w, r_l, beta", [
    (0.2, 0.05, 0.1, 0.1, 0.5), (1e-3, 1e-2, 1e-2, 1e-3, 0.1), (0.3, 0.3, 0.3, 0.3, 1.0), (0.5, 0.01, 0.02, 0.4, 2.0),
])
def test_dpo_loss_equals_the_papers_formula(p_w, p_l, r_w, r_l, beta):
    lp = [torch.tensor([math.log(v)]) for v in (p_w, p_l, r_w, r_l)]
    loss, chosen, _ = dpo_loss(*lp, beta=beta)
    assert math.isclose(float(loss), paper(p_w, p_l, r_w, r_l, beta), rel_tol=1e-5)
    assert math.isclose(float(chosen), beta * math.log(p_w / r_w), rel_tol=1e-5, abs_tol=1e-7)


def test_a_hand_computed_case_and_log2_when_policy_is_reference():
    loss, c, r = dpo_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0]), 0.5)
    assert (float(c), float(r)) == (0.5, -0.5)
    assert math.isclose(float(loss), math.log(1 + math.exp(-1.0)), rel_tol=1e-6)  # 0.31326...
    torch.manual_seed(0)
    lp = torch.randn(4) * 10
    same = dpo_loss(lp, lp.flip(0), lp, lp.flip(0), beta=0.3)[0]
    assert math.isclose(float(same), LOG2, rel_tol=1e-6) and math.isclose(LOG2, 0.6931471805599453)


def test_the_gradient_raises_chosen_and_lowers_rejected():
    pi_w, pi_l = torch.tensor([-2.0], requires_grad=True), torch.tensor([-2.5], requires_grad=True)
    beta = 0.1
    loss, _, _ = dpo_loss(pi_w, pi_l, torch.tensor([-2.2]), torch.tensor([-2.4]), beta)
    loss.backward()
    z = beta * ((-2.0 + 2.2) - (-2.5 + 2.4))
    expected = beta / (1 + math.exp(z))  # beta * sigmoid(-z)
    assert pi_w.grad.item() < 0 < pi_l.grad.item()  # gradient descent raises log pi(chosen), lowers log pi(rejected)
    assert math.isclose(-pi_w.grad.item(), expected, rel_tol=1e-5) and math.isclose(pi_l.grad.item(), expected, rel_tol=1e-5)
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(pi_w, pi_l, pi_w, pi_l, beta=0.0)


def test_pair_xy_scores_only_the_answer():
    x, y = pair_xy([5, 1, 2, 6], [3, 4, 7], block_size=16)
    assert x == [5, 1, 2, 6, 3, 4] and y == [-1, -1, -1, 3, 4, 7]
    assert pair_xy([5, 1, 2, 6], [3, 4, 7], block_size=4) == ([5, 1, 2, 6], [-1, -1, -1, 3])


def test_train_dpo_moves_the_policy_toward_the_chosen_answers():
    torch.manual_seed(0)
    ref = GPT(GPTConfig(block_size=16, vocab_size=10, n_layer=1, n_head=2, n_embd=16)).eval()
    policy = GPT(ref.config)
    policy.load_state_dict(ref.state_dict())
    pairs = [Pair([1, 2], [3, 4, 9], [5, 6, 9]), Pair([2, 1], [7, 7, 9], [8, 8, 9])]
    hist = train_dpo(policy, ref, pairs, pairs, pad_id=9, device="cpu", steps=30, lr=1e-2, beta=0.5,
                     batch_size=2, eval_interval=10, progress=False)
    assert math.isclose(hist["val_loss"][0], LOG2, rel_tol=1e-5) and hist["val_margin"][0] == 0.0
    assert hist["val_loss"][-1] < 0.1 and hist["val_accuracy"][-1] == 1.0 and hist["val_margin"][-1] > 2
    for p in ref.parameters():  # the reference is frozen: untouched
        assert p.grad is None
    with_nll = GPT(ref.config)
    with_nll.load_state_dict(ref.state_dict())
    h2 = train_dpo(with_nll, ref, pairs, pairs, pad_id=9, device="cpu", steps=30, lr=1e-2, beta=0.5, batch_size=2,
                   eval_interval=30, nll_coef=1.0, progress=False)
    assert h2["val_accuracy"][-1] == 1.0 and h2["loss"][0] > hist["loss"][0]  # the SFT term adds to the loss


@pytest.mark.parametrize("shuffle", [False, True])
def test_shuffled_passes_give_every_pair_once_per_pass(monkeypatch, shuffle):
    import minilm.align.dpo as dpo_module
    torch.manual_seed(0)
    ref = GPT(GPTConfig(block_size=16, vocab_size=10, n_layer=1, n_head=2, n_embd=16)).eval()
    policy = GPT(ref.config)
    policy.load_state_dict(ref.state_dict())
    pairs = [Pair([1, k % 8], [3, 4, 9], [5, 6, 9]) for k in range(1, 7)]  # 6 distinct prompts
    trained, scored = [], dpo_module.pair_logprobs

    def recording(model, batch, *args):
        if torch.is_grad_enabled():  # a training step (scoring runs under no_grad)
            trained.append([pairs.index(p) for p in batch])
        return scored(model, batch, *args)

    monkeypatch.setattr(dpo_module, "pair_logprobs", recording)
    train_dpo(policy, ref, pairs, pairs, pad_id=9, device="cpu", steps=9, lr=1e-3, batch_size=4, eval_interval=9,
              progress=False, shuffle=shuffle)
    seen = [i for batch in trained for i in batch]  # 36 picks: 6 passes of the 6 pairs when shuffled
    assert len(trained) == 9 and len(seen) == 36
    passes = [sorted(seen[k:k + 6]) for k in range(0, 36, 6)]
    assert (passes == [list(range(6))] * 6) == shuffle  # with replacement, some pass repeats a pair


def test_make_pairs_chosen_passes_rejected_fails():
    poem = "春眠不覺曉，處處聞啼鳥。夜來風雨聲，花落知多少。"
    tok = ChatTokenizer(CharTokenizer.from_text(poem + "五言藏頭詩"))
    torch.manual_seed(0)
    model = grow_vocab(GPT(GPTConfig(block_size=64, vocab_size=tok.base.vocab_size, n_layer=1, n_head=2,
                                     n_embd=16)), tok.vocab_size)
    task = Task("春處夜花", poem)
    assert make_pairs(model, tok, [task], 3, "cpu", fallback=False) == []  # a random model never passes
    (pair,) = make_pairs(model, tok, [task], 3, "cpu")
    assert not pair.own and tok.decode(pair.chosen) == poem + "<|end|>"
    assert not check(tok.decode(pair.rejected).replace("<|end|>", ""), task.heads).passed


def test_the_same_functions_serve_a_llama_style_model():
    """SmolLM2 loads into minilm's GPT with the modern options (minilm.models.llama): DPO, the grown
    vocabulary and the KV-cache answers work on that architecture too (a tiny random one here)."""
    torch.manual_seed(0)
    cfg = GPTConfig.modern(block_size=32, vocab_size=12, n_layer=1, n_head=4, n_kv_head=2, n_embd=16,
                           tie_weights=False)
    ref = GPT(cfg).eval()
    before = ref(torch.tensor([[1, 2, 3]]))[0]
    grow_vocab(ref, 14)
    torch.testing.assert_close(ref(torch.tensor([[1, 2, 3]]))[0][..., :12], before, rtol=1e-5, atol=1e-6)
    policy = GPT(ref.config)
    policy.load_state_dict(ref.state_dict())
    pairs = [Pair([1, 2, 12], [3, 4, 13], [5, 6, 13]), Pair([2, 1, 12], [7, 7, 13], [8, 8, 13])]
    hist = train_dpo(policy, ref, pairs, pairs, pad_id=13, device="cpu", steps=20, lr=1e-2, beta=0.5,
                     batch_size=2, eval_interval=10, progress=False)
    assert math.isclose(hist["val_loss"][0], LOG2, rel_tol=1e-5) and hist["val_accuracy"][-1] == 1.0
