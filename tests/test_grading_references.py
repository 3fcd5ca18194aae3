"""The reference solutions of sets 02-05 agree with trusted implementations on every grading input.

tests/test_grading_authoring.py proves the stored public outputs equal the reference; this proves the
reference itself right, against torch (softmax, F.cross_entropy, nn.RNN, nn.LSTMCell,
clip_grad_norm_, F.scaled_dot_product_attention, F.layer_norm) and the library (get_lr, GPT).
"""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from minilm.grading.authoring import load_reference
from minilm.grading.compare import same
from minilm.grading.sets import get_set
from minilm.models.attention import merge_heads, split_heads
from minilm.models.gpt import GPT, GPTConfig
from minilm.training.loop import TrainConfig, get_lr

ROOT = Path(__file__).resolve().parents[1]
SEEDS = ["1:alice", "2:bob", "3:carol"]


def _trusted_rnn_forward(xs, h0, W_xh, W_hh, b):
    rnn = nn.RNN(W_xh.shape[0], W_xh.shape[1], batch_first=True)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(W_xh.T)
        rnn.weight_hh_l0.copy_(W_hh.T)
        rnn.bias_ih_l0.copy_(b)
        rnn.bias_hh_l0.zero_()
        return rnn(xs, h0.unsqueeze(0))[0]


def _trusted_lstm_step(x_t, h, c, w_ih, w_hh, b_ih, b_hh):
    cell = nn.LSTMCell(w_ih.shape[1], h.shape[1])
    with torch.no_grad():
        for p, w in zip(
            (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh), (w_ih, w_hh, b_ih, b_hh)
        ):
            p.copy_(w)
        return cell(x_t, (h, c))


def _trusted_clip(grads, max_norm):
    params = [nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    torch.nn.utils.clip_grad_norm_(params, max_norm)
    return [p.grad for p in params]


def _trusted_tbptt(tokens, batch_size, T):
    n = (len(tokens) - 1) // batch_size
    out, rows = [], range(batch_size)
    for s in range(0, n, T):
        cols = range(s, min(s + T, n))
        x = torch.tensor([[int(tokens[b * n + t]) for t in cols] for b in rows])
        y = torch.tensor([[int(tokens[b * n + t + 1]) for t in cols] for b in rows])
        out.append((x, y))
    return out


def _count_gpt(vocab_size, block_size, n_layer, n_embd, bias, tied):
    with torch.device("meta"):  # shapes only: GPT-2 sizes cost no memory or time
        model = GPT(
            GPTConfig(
                block_size=block_size,
                vocab_size=vocab_size,
                n_layer=n_layer,
                n_head=1,
                n_embd=n_embd,
                bias=bias,
            )
        )
    return model.num_params(non_embedding=False) + (0 if tied else vocab_size * n_embd)


def _estimate_loss(table, batches):
    per_batch = [F.cross_entropy(table[x].flatten(0, 1), y.flatten()).item() for x, y in batches]
    return sum(per_batch) / len(per_batch)


TRUSTED = {
    "softmax": lambda z: torch.softmax(z, dim=-1),
    "cross_entropy": lambda z, t: F.cross_entropy(z, t),
    "bigram_probs": lambda n, k: ((n.double() + k) / (n.double() + k).sum(1, keepdim=True)).float(),
    "rnn_step": lambda x, h, W_xh, W_hh, b: _trusted_rnn_forward(x[:, None], h, W_xh, W_hh, b)[
        :, 0
    ],
    "rnn_forward": _trusted_rnn_forward,
    "lstm_step": _trusted_lstm_step,
    "clip_grad_norm": _trusted_clip,
    "tbptt_batches": _trusted_tbptt,
    "causal_attention": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
    "split_heads": split_heads,
    "merge_heads": merge_heads,
    "embed": lambda idx, wte, wpe: nn.functional.embedding(idx, wte) + wpe[: idx.shape[1]],
    "layer_norm": lambda x, w, b, eps: F.layer_norm(x, (x.shape[-1],), w, b, eps),
    "warmup_cosine_lr": lambda s, hi, lo, wu, n: get_lr(
        s, TrainConfig(max_steps=n, learning_rate=hi, min_lr=lo, warmup_steps=wu)
    ),
    "gpt_num_params": _count_gpt,
    "estimate_loss": _estimate_loss,
}


@pytest.mark.parametrize(
    "set_name", ["02_bigram_mlp", "03_rnn_lstm", "04_attention", "05_pretraining"]
)
def test_reference_agrees_with_trusted_implementations(set_name):
    exercise_set = get_set(set_name)
    reference = load_reference(set_name, ROOT / "solutions")
    checked = 0
    for ex in exercise_set.exercises:
        if ex.id not in TRUSTED:
            continue
        for seed in SEEDS:
            for args in ex.grading(random.Random(f"{seed}:{ex.id}")):
                got = ex.call(reference[ex.id], *copy.deepcopy(args))
                want = TRUSTED[ex.id](*copy.deepcopy(args))
                want = [tuple(w) for w in want] if ex.id == "tbptt_batches" else want
                want = tuple(want) if ex.id == "lstm_step" else want
                ok, why = same(want, got, ex.rtol, ex.atol)
                assert ok, f"{ex.id}: reference differs from the trusted implementation: {why}"
                checked += 1
    assert checked >= 30


def test_gpt2_small_parameter_count():
    reference = load_reference("05_pretraining", ROOT / "solutions")
    assert reference["gpt_num_params"](50257, 1024, 12, 768, True, True) == 124_439_808


def test_nll_and_mfu_and_decay_names_by_hand():
    """The three references without a library twin, on cases worked out by hand."""
    ref02 = load_reference("02_bigram_mlp", ROOT / "solutions")
    probs = torch.tensor([[0.5, 0.5], [0.25, 0.75]])
    nll = ref02["bigram_nll"](["a", ""], {".": 0, "a": 1}, probs)  # pairs .a a. ..
    assert nll == pytest.approx(
        -(2 * torch.tensor(0.5).log() + torch.tensor(0.25).log()).item() / 3
    )
    ref05 = load_reference("05_pretraining", ROOT / "solutions")
    assert ref05["mfu"](1_000_000, 2, 10, 3, 0.5, 1e9) == pytest.approx(6 * 1e6 * 60 / 0.5 / 1e9)
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=2, n_head=2, n_embd=8, bias=True))
    shapes = {n: list(p.shape) for n, p in model.named_parameters()}
    assert ref05["decay_names"](shapes) == [n for n, p in model.named_parameters() if p.dim() >= 2]
