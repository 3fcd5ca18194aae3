"""Known near-miss answers for every exercise of sets 01-08: what students write when they are almost right.

NEAR_MISSES[exercise id][name] (sets 05-08 written in tests/grading_nearmiss_05_08.py) is a plain
function with the exercise's signature. Each one is wrong on some input the exercise promises to handle (off by one, wrong axis, missing renormalisation, an
unstable formula, an in-place change of the input, the blank stub that returns its input...), and
tests/test_grading_nearmiss.py proves that the public cases catch it and the drawn grading cases
catch it for every seed. Answers that call a forbidden function are not here: they are refused by
name (tests/test_grading_equivalents.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from grading_nearmiss_05_08 import S05, S06, S07, S08


def _first(*args):
    """The blank stub that hands back its first argument."""
    return args[0]


# ---------------------------------------------------------------- 01 text and tokens
def _pairs_of(chunk):
    return list(itertools.pairwise(chunk))


def _count(chunks, pairs_of=_pairs_of):
    counts = {}
    for chunk in chunks:
        for pair in pairs_of(chunk):
            counts[pair] = counts.get(pair, 0) + 1
    return counts


def _non_overlapping(chunk):
    out, i = [], 0
    while i < len(chunk) - 1:
        out.append((chunk[i], chunk[i + 1]))
        i += 2 if chunk[i] == chunk[i + 1] else 1
    return out


def _count_in_place(chunks):
    counts = {}
    for chunk in chunks:
        while len(chunk) > 1:
            pair = (chunk.pop(0), chunk[0])
            counts[pair] = counts.get(pair, 0) + 1
    return counts


def _merge(ids, merges, new_id=lambda k: 256 + k, right_to_left=False):
    for k, pair in enumerate(merges):
        ids = ids[::-1] if right_to_left else list(ids)
        look = pair[::-1] if right_to_left else pair
        out, i = [], 0
        while i < len(ids):
            if i + 1 < len(ids) and (ids[i], ids[i + 1]) == look:
                out.append(new_id(k))
                i += 2
            else:
                out.append(ids[i])
                i += 1
        ids = out[::-1] if right_to_left else out
    return ids


def _merge_in_place(ids, merges):
    for k, pair in enumerate(merges):
        i = 0
        while i < len(ids) - 1:
            if (ids[i], ids[i + 1]) == pair:
                ids[i : i + 2] = [256 + k]
            i += 1
    return ids


def _bpe(text, num_merges, to_ids=lambda t: list(t.encode("utf-8")), pick=None, count=_count):
    merges = []
    for _ in range(num_merges):
        counts = count([_merge(to_ids(text), merges)])
        if not counts:
            break
        merges.append(pick(counts) if pick else max(counts, key=counts.get))
    return merges


S01 = {
    "char_encode": {
        "stub": _first,
        "off_by_one": lambda text, stoi: [stoi[c] + 1 for c in text],
        "each_character_once": lambda text, stoi: [stoi[c] for c in dict.fromkeys(text)],
        "reversed": lambda text, stoi: [stoi[c] for c in reversed(text)],
        "drops_last": lambda text, stoi: [stoi[c] for c in text[:-1]],
        "code_points": lambda text, stoi: [ord(c) for c in text],
    },
    "char_decode": {
        "stub": _first,
        "sorted": lambda ids, itos: "".join(itos[i] for i in sorted(ids)),
        "drops_last": lambda ids, itos: "".join(itos[i] for i in ids[:-1]),
        "code_points": lambda ids, itos: "".join(chr(i) for i in ids),
        "list_of_characters": lambda ids, itos: [itos[i] for i in ids],
    },
    "count_pairs": {
        "stub": _first,
        "across_chunks": lambda chunks: _count([[i for c in chunks for i in c]]),
        "non_overlapping": lambda chunks: _count(chunks, _non_overlapping),
        "sorted_keys": lambda chunks: dict(sorted(_count(chunks).items())),
        "each_pair_once": lambda chunks: {p: 1 for p in _count(chunks)},
        "in_place": _count_in_place,
        "drops_last_pair": lambda chunks: _count(chunks, lambda c: _pairs_of(c)[:-1]),
    },
    "apply_merges": {
        "stub": lambda ids, merges: list(ids),
        "right_to_left": lambda ids, merges: _merge(ids, merges, right_to_left=True),
        "new_id_off_by_one": lambda ids, merges: _merge(ids, merges, new_id=lambda k: 255 + k),
        "in_place": _merge_in_place,
        "last_merge_only": lambda ids, merges: _merge(ids, merges[-1:]) if merges else list(ids),
    },
    "train_bpe": {
        "stub": lambda text, n: [],
        "code_points": lambda text, n: _bpe(text, n, to_ids=lambda t: [ord(c) for c in t]),
        "ties_to_largest_pair": lambda text, n: _bpe(text, n, pick=lambda c: max(c, key=lambda p: (c[p], p))),
        "ties_to_last_seen": lambda text, n: _bpe(text, n, pick=lambda c: max(reversed(list(c)), key=c.get)),
        "one_merge_short": lambda text, n: _bpe(text, max(n - 1, 0)),
        "non_overlapping_counts": lambda text, n: _bpe(text, n, count=lambda ch: _count(ch, _non_overlapping)),
    },
}


# ---------------------------------------------------------------- 02 bigram and MLP
def _softmax(z, dim=-1, shift=True):
    e = (z - z.max(dim=dim, keepdim=True).values if shift else z).exp()
    return e / e.sum(dim=dim, keepdim=True)


def _softmax_in_place(z):
    z -= z.max(dim=-1, keepdim=True).values
    z.exp_()
    return z / z.sum(dim=-1, keepdim=True)


def _log_softmax(z, dim=-1, shift=True):
    m = z.max(dim=dim, keepdim=True).values if shift else torch.zeros_like(z)
    return z - m - (z - m).exp().sum(dim=dim, keepdim=True).log()


def _ce(z, t, dim=-1, shift=True, reduce=torch.mean):
    return -reduce(_log_softmax(z, dim, shift)[torch.arange(len(t)), t])


def _bigram_nll(words, stoi, probs, start=True, end=True, per_word=False, log=torch.log):
    total, n = 0.0, 0
    for w in words:
        chars = ["."] * start + list(w) + ["."] * end
        for a, b in itertools.pairwise(chars):
            total -= log(probs[stoi[a], stoi[b]]).item()
            n += 1
    return total / (len(words) if per_word else n)


def _mlp(idx, C, W1, b1, W2, b2, act=torch.tanh, window=lambda e: e.reshape(e.shape[0], -1), bias=True):
    hidden = act(window(C[idx]) @ W1 + b1 * bias)
    return hidden @ W2 + b2 * bias


S02 = {
    "softmax": {
        "stub": _first,
        "no_max_shift": lambda z: _softmax(z, shift=False),
        "first_axis": lambda z: _softmax(z, dim=0),
        "not_normalised": lambda z: (z - z.max(dim=-1, keepdim=True).values).exp(),
        "one_sum_for_all": lambda z: (e := (z - z.max()).exp()) / e.sum(),
        "in_place": _softmax_in_place,
    },
    "cross_entropy": {
        "stub": lambda z, t: z,
        "no_max_shift": lambda z, t: _ce(z, t, shift=False),
        "sum_not_mean": lambda z, t: _ce(z, t, reduce=torch.sum),
        "first_axis": lambda z, t: _ce(z, t, dim=0),
        "probability_not_log": lambda z, t: -_softmax(z)[torch.arange(len(t)), t].mean(),
        "positive_sign": lambda z, t: -_ce(z, t),
    },
    "bigram_probs": {
        "stub": _first,
        "columns": lambda n, k: (s := n.float() + k) / s.sum(dim=0, keepdim=True),
        "k_ignored": lambda n, k: (s := n.float()) / s.sum(dim=1, keepdim=True),
        "k_after_normalising": lambda n, k: n.float() / n.float().sum(dim=1, keepdim=True).clamp(min=1) + k,
        "k_once_per_row": lambda n, k: (n.float() + torch.nn.functional.one_hot(torch.zeros(len(n), dtype=torch.long), n.shape[1]) * k)
        / (n.float().sum(dim=1, keepdim=True) + k),
    },
    "bigram_nll": {
        "stub": lambda words, stoi, probs: float(len(words)),
        "sum_not_mean": lambda words, stoi, probs: _bigram_nll(words, stoi, probs) * sum(len(w) + 1 for w in words),
        "no_end_token": lambda words, stoi, probs: _bigram_nll(words, stoi, probs, end=False) if any(words) else 0.0,
        "no_start_token": lambda words, stoi, probs: _bigram_nll(words, stoi, probs, start=False) if any(words) else 0.0,
        "mean_per_word": lambda words, stoi, probs: _bigram_nll(words, stoi, probs, per_word=True),
        "log2": lambda words, stoi, probs: _bigram_nll(words, stoi, probs, log=torch.log2),
    },
    "mlp_forward": {
        "stub": lambda idx, *w: idx,
        "no_tanh": lambda *a: _mlp(*a, act=lambda x: x),
        "relu": lambda *a: _mlp(*a, act=torch.relu),
        "no_biases": lambda *a: _mlp(*a, bias=False),
        "window_transposed": lambda *a: _mlp(*a, window=lambda e: e.transpose(1, 2).reshape(e.shape[0], -1)),
    },
}


# ---------------------------------------------------------------- 03 RNN and LSTM
def _rnn_step(x, h, W_xh, W_hh, b, act=torch.tanh, use_h=True):
    return act(x @ W_xh + (h @ W_hh if use_h else 0) + b)


def _rnn_forward(xs, h0, W_xh, W_hh, b, carry=True, before=False):
    h, out = h0, []
    for t in range(xs.shape[1]):
        new = _rnn_step(xs[:, t], h if carry else h0, W_xh, W_hh, b)
        out.append(h if before else new)
        h = new
    return torch.stack(out, dim=1)


def _lstm(x, h, c, w_ih, w_hh, b_ih, b_hh, order="ifgo", tanh_c=True, swap=False, one_bias=False):
    H = h.shape[1]
    z = x @ w_ih.T + h @ w_hh.T + b_ih + (0 if one_bias else b_hh)
    g = dict(zip(order, z.split(H, dim=1)))
    c_new = torch.sigmoid(g["f"]) * c + torch.sigmoid(g["i"]) * torch.tanh(g["g"])
    h_new = torch.sigmoid(g["o"]) * (torch.tanh(c_new) if tanh_c else c_new)
    return (c_new, h_new) if swap else (h_new, c_new)


def _clip(grads, max_norm, per_tensor=False, always=False, in_place=False, eps=1e-6):
    total = torch.sqrt(sum((g.float() ** 2).sum() for g in grads))
    out = []
    for g in grads:
        norm = g.float().norm() if per_tensor else total
        scale = max_norm / (norm + eps) if (always or norm > max_norm) else 1.0
        out.append(g.mul_(scale) if in_place else g * scale)
    return out


def _clip_inverted(grads, max_norm):
    total = torch.sqrt(sum((g.float() ** 2).sum() for g in grads))
    return [g * (total / max_norm) if total > max_norm else g.clone() for g in grads]


def _tbptt(tokens, B, T, n_of=lambda N, B: (N - 1) // B, shift=1, interleave=False, keep_short=True):
    n = n_of(tokens.shape[0], B)
    if interleave:
        x, y = tokens[: B * n].reshape(n, B).T, tokens[shift : B * n + shift].reshape(n, B).T
    else:
        x, y = tokens[: B * n].reshape(B, n), tokens[shift : B * n + shift].reshape(B, n)
    starts = range(0, n, T) if keep_short else range(0, n - T + 1, T)
    return [(x[:, s : s + T], y[:, s : s + T]) for s in starts]


S03 = {
    "rnn_step": {
        "stub": _first,
        "no_tanh": lambda *a: _rnn_step(*a, act=lambda x: x),
        "sigmoid": lambda *a: _rnn_step(*a, act=torch.sigmoid),
        "state_ignored": lambda *a: _rnn_step(*a, use_h=False),
        "no_bias": lambda x, h, W_xh, W_hh, b: _rnn_step(x, h, W_xh, W_hh, 0 * b),
    },
    "rnn_forward": {
        "stub": _first,
        "state_not_carried": lambda *a: _rnn_forward(*a, carry=False),
        "states_before_each_step": lambda *a: _rnn_forward(*a, before=True),
        "last_state_only": lambda *a: _rnn_forward(*a)[:, -1:],
        "time_reversed": lambda xs, *w: _rnn_forward(xs.flip(1), *w),
    },
    "lstm_step": {
        "stub": lambda x, h, c, *w: (h, c),
        "gates_i_f_o_g": lambda *a: _lstm(*a, order="ifog"),
        "no_tanh_on_cell": lambda *a: _lstm(*a, tanh_c=False),
        "returns_c_then_h": lambda *a: _lstm(*a, swap=True),
        "one_bias": lambda *a: _lstm(*a, one_bias=True),
    },
    "clip_grad_norm": {
        "stub": _first,
        "per_tensor_norms": lambda g, m: _clip(g, m, per_tensor=True),
        "always_rescales": lambda g, m: _clip(g, m, always=True),
        "in_place": lambda g, m: _clip(g, m, in_place=True),
        "scale_inverted": _clip_inverted,
    },
    "tbptt_batches": {
        "stub": lambda tokens, B, T: [(tokens, tokens)],
        "targets_not_shifted": lambda *a: _tbptt(*a, shift=0),
        "rows_off_by_one": lambda *a: _tbptt(*a, n_of=lambda N, B: N // B),
        "rows_interleaved": lambda *a: _tbptt(*a, interleave=True),
        "drops_short_chunk": lambda *a: _tbptt(*a, keep_short=False),
    },
}


# ---------------------------------------------------------------- 04 attention
def _attention(q, k, v, mask_diag=False, scale=None, dim=-1, mask=True, after=False):
    T, hs = q.shape[-2], q.shape[-1]
    att = (q @ k.transpose(-2, -1)) * (hs**-0.5 if scale is None else scale)
    future = torch.ones(T, T, dtype=torch.bool).triu(diagonal=0 if mask_diag else 1)
    if mask and not after:
        att = att.masked_fill(future, float("-inf"))
    w = torch.softmax(att, dim=dim)
    if after:
        w = w.masked_fill(future, 0.0)
    return w @ v


def _layer_norm(x, w, b, eps, unbiased=False, eps_outside=False, dim=-1, affine=True):
    mean = x.mean(dim=dim, keepdim=True)
    var = x.var(dim=dim, keepdim=True, unbiased=unbiased)
    y = (x - mean) / (var.sqrt() + eps if eps_outside else torch.sqrt(var + eps))
    return y * w + b if affine else y


S04 = {
    "causal_attention": {
        "stub": _first,
        "no_mask": lambda q, k, v: _attention(q, k, v, mask=False),
        "masks_the_diagonal_too": lambda q, k, v: _attention(q, k, v, mask_diag=True),
        "scale_1_over_hs": lambda q, k, v: _attention(q, k, v, scale=1 / q.shape[-1]),
        "no_scale": lambda q, k, v: _attention(q, k, v, scale=1.0),
        "mask_after_softmax": lambda q, k, v: _attention(q, k, v, after=True),
        "softmax_over_queries": lambda q, k, v: _attention(q, k, v, dim=-2),
    },
    "split_heads": {
        "stub": lambda x, n: x,
        "no_permute": lambda x, n: x.reshape(x.shape[0], n, x.shape[1], x.shape[2] // n),
        "heads_interleaved": lambda x, n: x.reshape(*x.shape[:2], x.shape[2] // n, n).permute(0, 3, 1, 2),
        "permute_of_time_and_channels": lambda x, n: x.reshape(x.shape[0], x.shape[1], n, -1).permute(0, 2, 3, 1),
    },
    "merge_heads": {
        "stub": _first,
        "no_permute": lambda y: y.reshape(y.shape[0], y.shape[2], -1),
        "heads_interleaved": lambda y: y.permute(0, 2, 3, 1).reshape(y.shape[0], y.shape[2], -1),
    },
    "embed": {
        "stub": lambda idx, wte, wpe: idx,
        "no_positions": lambda idx, wte, wpe: wte[idx],
        "positions_off_by_one": lambda idx, wte, wpe: wte[idx] + wpe[1 : idx.shape[1] + 1] if wpe.shape[0] > idx.shape[1] else wte[idx],
        "positions_reversed": lambda idx, wte, wpe: wte[idx] + wpe[: idx.shape[1]].flip(0),
    },
    "layer_norm": {
        "stub": _first,
        "unbiased_variance": lambda *a: _layer_norm(*a, unbiased=True),
        "eps_outside_the_root": lambda *a: _layer_norm(*a, eps_outside=True),
        "first_axis": lambda *a: _layer_norm(*a, dim=0),
        "no_gain_or_bias": lambda *a: _layer_norm(*a, affine=False),
        "eps_ignored": lambda x, w, b, eps: _layer_norm(x, w, b, 0.0),
    },
}


NEAR_MISSES: dict[str, dict[str, Callable]] = {**S01, **S02, **S03, **S04, **S05, **S06, **S07, **S08}
