"""Known near-miss answers of sets 05-08 (tests/grading_nearmiss.py holds 01-04 and the whole table)."""

from __future__ import annotations

import math
import re

import torch


def _first(*args):
    """The blank stub that hands back its first argument."""
    return args[0]


# ---------------------------------------------------------------- 05 pretraining
def _lr(step, max_lr, min_lr, warmup, max_steps, plus_one=True, floor=True, cosine=True, end_at=None):
    if step < warmup:
        return max_lr * (step + plus_one) / warmup
    if step >= (max_steps if end_at is None else end_at):
        return min_lr
    ratio = (step - warmup) / (max_steps - warmup)
    shape = 0.5 * (1.0 + math.cos(math.pi * ratio)) if cosine else 1.0 - ratio
    return min_lr + shape * (max_lr - min_lr * floor)


def _n_params(V, block, L, C, bias, tied, final_ln=True, positions=True, head_always=False, ln_bias=True):
    b = 1 if bias else 0
    ln = C + b * C * ln_bias
    per_block = 2 * ln + (C * 3 * C + b * 3 * C) + (C * C + b * C) + (C * 4 * C + b * 4 * C) + (4 * C * C + b * C)
    head = V * C if (head_always or not tied) else 0
    return V * C + block * C * positions + L * per_block + ln * final_ln + head


def _loss(table, batches, per_token=False, index_y=False):
    losses, counts = [], []
    for x, y in batches:
        logits = table[y if index_y else x].reshape(-1, table.shape[1])
        losses.append(torch.nn.functional.cross_entropy(logits, y.reshape(-1), reduction="sum").item())
        counts.append(y.numel())
    return sum(losses) / sum(counts) if per_token else sum(l / c for l, c in zip(losses, counts)) / len(losses)


S05 = {
    "warmup_cosine_lr": {
        "stub": lambda step, *a: step,
        "warmup_from_zero": lambda *a: _lr(*a, plus_one=False),
        "floor_not_subtracted": lambda *a: _lr(*a, floor=False),
        "linear_decay": lambda *a: _lr(*a, cosine=False),
        "warmup_one_step_longer": lambda s, hi, lo, wu, n: hi * (s + 1) / wu if s <= wu and wu else _lr(s, hi, lo, wu, n),
    },
    "gpt_num_params": {
        "stub": lambda V, *a: V,
        "no_final_layer_norm": lambda *a: _n_params(*a, final_ln=False),
        "no_position_table": lambda *a: _n_params(*a, positions=False),
        "head_counted_when_tied": lambda *a: _n_params(*a, head_always=True),
        "layer_norms_without_bias": lambda *a: _n_params(*a, ln_bias=False),
    },
    "estimate_loss": {
        "stub": lambda table, batches: 0.0,
        "mean_over_all_tokens": lambda t, b: _loss(t, b, per_token=True),
        "indexes_targets": lambda t, b: _loss(t, b, index_y=True),
        "last_batch_only": lambda t, b: _loss(t, b[-1:]),
    },
    "mfu": {
        "stub": lambda n, *a: float(n),
        "no_accumulation": lambda n, B, T, acc, dt, peak: 6 * n * B * T / dt / peak,
        "two_flops_per_parameter": lambda n, B, T, acc, dt, peak: 2 * n * B * T * acc / dt / peak,
        "times_step_time": lambda n, B, T, acc, dt, peak: 6 * n * B * T * acc * dt / peak,
    },
    "decay_names": {
        "stub": lambda shapes: list(shapes),
        "more_than_two_dims": lambda shapes: [n for n, s in shapes.items() if len(s) > 2],
        "one_dim_or_more": lambda shapes: [n for n, s in shapes.items() if len(s) >= 1],
        "by_name": lambda shapes: [n for n in shapes if n.endswith("weight")],
        "sorted": lambda shapes: sorted(n for n, s in shapes.items() if len(s) >= 2),
    },
}



# ---------------------------------------------------------------- 06 generation and fast inference
def _top_k(logits, k, offset=0, strict=False, fill=float("-inf"), in_place=False):
    k = min(k, logits.shape[-1])
    kth = torch.sort(logits, dim=-1, descending=True).values[:, min(k - 1 + offset, logits.shape[-1] - 1)][:, None]
    drop = logits <= kth if strict else logits < kth
    return logits.masked_fill_(drop, fill) if in_place else logits.masked_fill(drop, fill)


def _top_k_no_ties(logits, k):
    k = min(k, logits.shape[-1])
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, logits.topk(k, dim=-1).indices, True)
    return logits.masked_fill(~keep, float("-inf"))


def _top_p(probs, top_p, before_le=False, cum_only=False, strict=False, sorted_order=False, no_ties=False):
    sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    cum = torch.cumsum(sorted_probs, dim=-1)
    before = torch.cat([torch.zeros_like(cum[:, :1]), cum[:, :-1]], dim=-1)
    mass = cum if cum_only else before
    n_keep = ((mass <= top_p) if before_le else (mass < top_p)).sum(dim=-1, keepdim=True).clamp(min=1)
    if no_ties or sorted_order:
        in_sorted = torch.arange(probs.shape[-1]) < n_keep
        return in_sorted if sorted_order else torch.zeros_like(in_sorted).scatter(-1, order, in_sorted)
    threshold = sorted_probs.gather(-1, n_keep - 1)
    return probs > threshold if strict else probs >= threshold


def _sample(logits, temperature, seed, how="divide"):
    if temperature == 0 or how == "greedy":
        return logits.argmax(dim=-1, keepdim=True)
    scaled = {"divide": logits / temperature, "multiply": logits * temperature, "ignore": logits}[how]
    return torch.multinomial(torch.softmax(scaled, dim=-1), 1, generator=torch.Generator().manual_seed(seed))


def _kv(q, k_new, v_new, k_cache, v_cache, scale=None, new_first=False, causal=False, keep_cache=False):
    k = torch.cat([k_new, k_cache] if new_first else [k_cache, k_new], dim=2)
    v = torch.cat([v_new, v_cache] if new_first else [v_cache, v_new], dim=2)
    scores = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5 if scale is None else scale)
    if causal:  # the training-time mask, applied to one query row: only the first key survives
        scores = scores.masked_fill(torch.ones(1, k.shape[2], dtype=torch.bool).triu(1), float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v
    return (out, k_cache, v_cache) if keep_cache else (out, k, v)


def _quantize(w, levels=127.0, rounding=torch.round, per_row=True, zero_rows=True):
    scale = (w.abs().amax(dim=1) if per_row else w.abs().amax().expand(w.shape[0])) / levels
    if zero_rows:
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return rounding(w / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


def _quantize_columns(w):
    q, scale = _quantize(w.T)
    return q.T, scale


def _pack(q, swap=False, twos_complement=False):
    nibbles = (q.to(torch.int32) & 15) if twos_complement else (q.to(torch.int32) + 8)
    low, high = nibbles[:, ::2], nibbles[:, 1::2]
    if swap:
        low, high = high, low
    return (low + high * 16).to(torch.uint8)


S06 = {
    "top_k_filter": {
        "stub": lambda logits, k: logits.clone(),
        "keeps_one_more": lambda l, k: _top_k(l, k, offset=1),
        "drops_the_kth": lambda l, k: _top_k(l, k, strict=True),
        "ties_dropped": _top_k_no_ties,
        "zero_not_minus_inf": lambda l, k: _top_k(l, k, fill=0.0),
        "in_place": lambda l, k: _top_k(l, k, in_place=True),
    },
    "top_p_mask": {
        "stub": _first,
        "keeps_everything": lambda p, top_p: torch.ones_like(p, dtype=torch.bool),
        "one_token_too_few": lambda p, top_p: _top_p(p, top_p, cum_only=True),
        "less_or_equal": lambda p, top_p: _top_p(p, top_p, before_le=True),
        "mask_in_sorted_order": lambda p, top_p: _top_p(p, top_p, sorted_order=True),
        "ties_at_the_edge_dropped": lambda p, top_p: _top_p(p, top_p, no_ties=True),
        "strictly_above_the_last": lambda p, top_p: _top_p(p, top_p, strict=True),
    },
    "sample_with_temperature": {
        "stub": lambda logits, t, seed: logits,
        "multiplies_by_temperature": lambda l, t, s: _sample(l, t, s, how="multiply"),
        "temperature_ignored": lambda l, t, s: _sample(l, t, s, how="ignore"),
        "always_greedy": lambda l, t, s: _sample(l, t, s, how="greedy"),
        "last_maximum_at_zero": lambda l, t, s: (l.shape[-1] - 1 - l.flip(-1).argmax(dim=-1, keepdim=True)) if t == 0 else _sample(l, t, s),
    },
    "kv_attention_step": {
        "stub": lambda q, k_new, v_new, k_cache, v_cache: (q, k_new, v_new),
        "no_scale": lambda *a: _kv(*a, scale=1.0),
        "scale_1_over_hs": lambda *a: _kv(*a, scale=1 / a[0].shape[-1]),
        "new_token_first": lambda *a: _kv(*a, new_first=True),
        "causal_mask_on_one_query": lambda *a: _kv(*a, causal=True),
        "cache_not_extended": lambda *a: _kv(*a, keep_cache=True),
    },
    "int8_quantize": {
        "stub": _first,
        "divides_by_128": lambda w: _quantize(w, levels=128.0),
        "truncates": lambda w: _quantize(w, rounding=torch.trunc),
        "one_scale_for_all_rows": lambda w: _quantize(w, per_row=False),
        "zero_row_not_handled": lambda w: _quantize(w, zero_rows=False),
        "per_column": _quantize_columns,
    },
    "int8_dequantize": {
        "stub": _first,
        "scale_per_column": lambda q, s: q.float() * s[None, :],
        "divides": lambda q, s: q.float() / s[:, None],
        "float64": lambda q, s: q.double() * s.double()[:, None],
    },
    "int4_pack": {
        "stub": _first,
        "halves_swapped": lambda q: _pack(q, swap=True),
        "twos_complement_nibbles": lambda q: _pack(q, twos_complement=True),
        "int8_result": lambda q: _pack(q).to(torch.int8),
    },
}


# ---------------------------------------------------------------- 07 fine-tuning
def _lora(x, W, b, A, B, alpha, scaling=lambda a, r: a / r, base=True, bias=True):
    y = x @ W.T + b * bias if base else 0
    return y + scaling(alpha, A.shape[0]) * ((x @ A.T) @ B.T)


def _merge_in_place(W, A, B, alpha):
    return W.add_((alpha / A.shape[0]) * (B @ A))


def _pool(h, mask, how="last"):
    rows = torch.arange(h.shape[0])
    if how == "count":
        return h[rows, mask.sum(dim=1) - 1]
    if how == "first":
        return h[rows, mask.int().argmax(dim=1)]
    if how == "end":
        return h[:, -1]
    return (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)


def _metrics(pred, labels, n, transposed=False, count=False, size_from_data=False, percent=False):
    n = max(pred.max().item(), labels.max().item()) + 1 if size_from_data else n
    confusion = [[0] * n for _ in range(n)]
    for p, t in zip(pred.tolist(), labels.tolist()):
        confusion[p if transposed else t][t if transposed else p] += 1
    correct = sum(confusion[c][c] for c in range(n))
    acc = correct if count else correct / len(labels) * (100 if percent else 1)
    return {"accuracy": acc, "confusion": confusion}


def _trainable(shapes, keep, lora=True, anywhere=False, scalar=1, swap=False):
    trainable = total = 0
    for name, shape in shapes.items():
        n = math.prod(shape) if shape else scalar
        total += n
        kept = any((p in name) if anywhere else name.startswith(p) for p in keep)
        trainable += n if (kept or (lora and "lora_" in name)) else 0
    return [total, trainable] if swap else [trainable, total]


S07 = {
    "lora_forward": {
        "stub": _first,
        "alpha_not_divided_by_rank": lambda *a: _lora(*a, scaling=lambda al, r: al),
        "rank_over_alpha": lambda *a: _lora(*a, scaling=lambda al, r: r / al),
        "base_layer_only": lambda *a: _lora(*a, scaling=lambda al, r: 0.0),
        "no_bias": lambda *a: _lora(*a, bias=False),
        "update_only": lambda *a: _lora(*a, base=False),
    },
    "merge_lora": {
        "stub": lambda W, A, B, alpha: W.clone(),
        "alpha_not_divided_by_rank": lambda W, A, B, alpha: W + alpha * (B @ A),
        "in_place": _merge_in_place,
        "subtracts": lambda W, A, B, alpha: W - (alpha / A.shape[0]) * (B @ A),
    },
    "last_token_pool": {
        "stub": _first,
        "count_minus_one": lambda h, m: _pool(h, m, "count"),
        "first_real_token": lambda h, m: _pool(h, m, "first"),
        "last_position": lambda h, m: _pool(h, m, "end"),
        "mean_of_real_tokens": lambda h, m: _pool(h, m, "mean"),
    },
    "accuracy_confusion": {
        "stub": lambda pred, labels, n: pred,
        "rows_predicted": lambda *a: _metrics(*a, transposed=True),
        "count_not_share": lambda *a: _metrics(*a, count=True),
        "size_from_the_data": lambda *a: _metrics(*a, size_from_data=True),
        "percent": lambda *a: _metrics(*a, percent=True),
    },
    "count_trainable": {
        "stub": lambda shapes, keep: shapes,
        "lora_matrices_forgotten": lambda s, k: _trainable(s, k, lora=False),
        "prefix_anywhere_in_the_name": lambda s, k: _trainable(s, k, anywhere=True),
        "scalar_counts_zero": lambda s, k: _trainable(s, k, scalar=0),
        "total_first": lambda s, k: _trainable(s, k, swap=True),
    },
}


# ---------------------------------------------------------------- 08 bias probes
def _loglik(logits, targets, shift=True, reduce=torch.sum, dim=-1, sign=1.0, offset=0):
    m = logits.max(dim=dim, keepdim=True).values if shift else torch.zeros(1)
    logp = logits - m - (logits - m).exp().sum(dim=dim, keepdim=True).log()
    T = len(targets) - offset
    return sign * float(reduce(logp[torch.arange(T), targets[offset:]]))


def _weat(X, Y, A, B, unit=True, unbiased=True, pooled=False, flip=False):
    def norm(v):
        return v / v.norm(dim=1, keepdim=True) if unit else v

    def s(w):
        return (norm(w) @ norm(A).T).mean(dim=1) - (norm(w) @ norm(B).T).mean(dim=1)

    sx, sy = s(X), s(Y)
    spread = (sx.std() + sy.std()) / 2 if pooled else torch.cat([sx, sy]).std(unbiased=unbiased)
    return float((sy.mean() - sx.mean() if flip else sx.mean() - sy.mean()) / spread)


def _swap(text, pairs, whole_words=True, keep_case=True, upper=True, both_ways=True):
    table = {}
    for a, b in pairs:
        table[a] = b
        if both_ways:
            table[b] = a

    def repl(m):
        word = m.group(0)
        other = table.get(word.lower())
        if other is None or not keep_case:
            return other if other is not None else word
        if upper and word.isupper() and len(word) > 1:
            return other.upper()
        return other[0].upper() + other[1:] if word[0].isupper() else other

    if whole_words:
        return re.sub(r"[A-Za-z]+", repl, text)
    pattern = "|".join(sorted(map(re.escape, table), key=len, reverse=True))
    return re.sub(pattern, repl, text, flags=re.IGNORECASE) if table else text


S08 = {
    "sentence_log_likelihood": {
        "stub": lambda logits, targets: logits,
        "no_max_shift": lambda l, t: _loglik(l, t, shift=False),
        "mean_not_sum": lambda l, t: _loglik(l, t, reduce=torch.mean),
        "negative_log_likelihood": lambda l, t: _loglik(l, t, sign=-1.0),
        "first_axis": lambda l, t: _loglik(l, t, dim=0) if l.shape[0] > 1 else _loglik(l, t, shift=False) * 2,
        "targets_one_late": lambda l, t: _loglik(l, t, offset=1),
    },
    "paired_preference": {
        "stub": _first,
        "ties_count": lambda more, less: sum(m >= s for m, s in zip(more, less)) / len(more),
        "count_not_share": lambda more, less: float(sum(m > s for m, s in zip(more, less))),
        "the_other_way": lambda more, less: sum(m < s for m, s in zip(more, less)) / len(more),
        "one_pair_too_many": lambda more, less: sum(m > s for m, s in zip(more, less)) / (len(more) + 1),
    },
    "weat_effect_size": {
        "stub": _first,
        "population_std": lambda *a: _weat(*a, unbiased=False),
        "dot_not_cosine": lambda *a: _weat(*a, unit=False),
        "mean_of_two_stds": lambda *a: _weat(*a, pooled=True),
        "sign_flipped": lambda *a: _weat(*a, flip=True),
    },
    "swap_words": {
        "stub": _first,
        "inside_other_words_too": lambda t, p: _swap(t, p, whole_words=False),
        "case_lost": lambda t, p: _swap(t, p, keep_case=False),
        "capitals_only": lambda t, p: _swap(t, p, upper=False),
        "one_way_only": lambda t, p: _swap(t, p, both_ways=False),
    },
    "exact_match_rate": {
        "stub": lambda generated, reference, p: generated,
        "prefix_one_short": lambda g, r, p: (g[:, p - 1 :] == r[:, p - 1 :]).all(dim=1).float().mean().item(),
        "prefix_one_long": lambda g, r, p: (g[:, p + 1 :] == r[:, p + 1 :]).all(dim=1).float().mean().item(),
        "whole_rows": lambda g, r, p: (g == r).all(dim=1).float().mean().item(),
        "share_of_tokens": lambda g, r, p: (g[:, p:] == r[:, p:]).float().mean().item(),
    },
    "canary_exposure": {
        "stub": _first,
        "ties_against_the_canary": lambda c, s: math.log2(len(s) + 1) - math.log2(1 + sum(x >= c for x in s)),
        "natural_log": lambda c, s: math.log(len(s) + 1) - math.log(1 + sum(x > c for x in s)),
        "candidates_without_the_canary": lambda c, s: math.log2(len(s)) - math.log2(1 + sum(x > c for x in s)),
        "rank_from_zero": lambda c, s: math.log2(len(s) + 1) - math.log2(sum(x > c for x in s)),
    },
}
