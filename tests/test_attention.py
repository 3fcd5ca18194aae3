"""The written-out attention equals PyTorch's fused kernel, forward and gradients (notebook 04)."""

import math

import pytest
import torch
import torch.nn.functional as F

from minilm.models.attention import (
    CausalSelfAttention,
    attention_probs,
    causal_mask,
    explicit_attention,
    fused_attention,
    merge_heads,
    split_heads,
)

SHAPES = [(1, 1, 1, 4), (2, 1, 5, 8), (3, 4, 7, 16), (2, 6, 33, 8), (1, 12, 64, 64)]  # B, nh, T, hs


@pytest.mark.parametrize("B,nh,T,hs", SHAPES)
def test_explicit_equals_sdpa_forward_and_grads(B, nh, T, hs):
    g = torch.Generator().manual_seed(B * 1000 + nh * 100 + T)
    q, k, v = (torch.randn(B, nh, T, hs, generator=g, dtype=torch.float64) for _ in range(3))
    ours = [t.clone().requires_grad_() for t in (q, k, v)]
    ref = [t.clone().requires_grad_() for t in (q, k, v)]
    y = explicit_attention(*ours)
    y_ref = F.scaled_dot_product_attention(*ref, is_causal=True)
    torch.testing.assert_close(y, y_ref)
    w = torch.randn(y.shape, generator=g, dtype=torch.float64)  # a random upstream gradient
    (y * w).sum().backward()
    (y_ref * w).sum().backward()
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a.grad, b.grad)


def test_probs_are_causal_rows_that_sum_to_one():
    q, k = torch.randn(2, 3, 9, 4), torch.randn(2, 3, 9, 4)
    p = attention_probs(q, k)
    torch.testing.assert_close(p.sum(-1), torch.ones(2, 3, 9))
    assert (p.masked_select(~causal_mask(9)) == 0).all()  # nothing above the diagonal
    assert torch.equal(p[..., 0, 0], torch.ones(2, 3))  # the first token can only see itself
    manual = torch.softmax((q[0, 0] @ k[0, 0].T / math.sqrt(4)).masked_fill(
        torch.ones(9, 9).triu(1).bool(), float("-inf")), dim=-1)
    torch.testing.assert_close(p[0, 0], manual)


def test_future_tokens_do_not_change_the_past():
    torch.manual_seed(0)
    attn = CausalSelfAttention(n_embd=16, n_head=4, sdpa=False).eval()
    x = torch.randn(1, 10, 16)
    y = attn(x)
    x2 = x.clone()
    x2[:, 6:] = torch.randn(1, 4, 16)  # change only the last four tokens
    torch.testing.assert_close(attn(x2)[:, :6], y[:, :6])
    assert not torch.allclose(attn(x2)[:, 6:], y[:, 6:])


def test_split_and_merge_heads_round_trip():
    x = torch.randn(2, 5, 12)
    h = split_heads(x, 3)
    assert h.shape == (2, 3, 5, 4)
    torch.testing.assert_close(h[:, 1], x[..., 4:8])  # head 1 owns channels 4..7
    torch.testing.assert_close(merge_heads(h), x)


@pytest.mark.parametrize("n_embd,n_head,T", [(8, 1, 3), (16, 4, 11), (48, 6, 20)])
def test_module_same_weights_both_paths(n_embd, n_head, T):
    torch.manual_seed(n_embd + T)
    fast = CausalSelfAttention(n_embd, n_head, dropout=0.3, sdpa=True).double()
    slow = CausalSelfAttention(n_embd, n_head, dropout=0.3, sdpa=False).double()
    slow.load_state_dict(fast.state_dict())
    fast.eval(), slow.eval()  # dropout off
    x = torch.randn(2, T, n_embd, dtype=torch.float64)
    y_fast, y_slow = fast(x), slow(x)
    torch.testing.assert_close(y_slow, y_fast)
    y_fast.square().sum().backward()
    y_slow.square().sum().backward()
    for (name, a), b in zip(fast.named_parameters(), slow.parameters()):
        torch.testing.assert_close(b.grad, a.grad, msg=name)


def test_against_nn_multihead_attention():
    """Our module computes what nn.MultiheadAttention computes with a causal mask and copied weights."""
    torch.manual_seed(1)
    C, nh, T = 24, 3, 7
    ours = CausalSelfAttention(C, nh, sdpa=False).eval()
    mha = torch.nn.MultiheadAttention(C, nh, batch_first=True).eval()
    with torch.no_grad():
        mha.in_proj_weight.copy_(ours.c_attn.weight)
        mha.in_proj_bias.copy_(ours.c_attn.bias)
        mha.out_proj.weight.copy_(ours.c_proj.weight)
        mha.out_proj.bias.copy_(ours.c_proj.bias)
    x = torch.randn(2, T, C)
    mask = ~causal_mask(T)  # nn.MultiheadAttention: True = not allowed
    y_ref, _ = mha(x, x, x, attn_mask=mask, need_weights=False)
    torch.testing.assert_close(ours(x), y_ref, atol=1e-5, rtol=1e-5)


def test_fused_dropout_only_in_training():
    q = k = v = torch.randn(1, 2, 5, 4)
    torch.testing.assert_close(fused_attention(q, k, v, 0.9, training=False), explicit_attention(q, k, v))
