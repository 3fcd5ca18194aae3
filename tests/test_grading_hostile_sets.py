"""Hostile submissions for sets 01-09, graded in the sandbox at the level the machine gives and at
the weaker one (`--allow-unsandboxed`, as in a default Docker container): every escape class of
issue 22 against every set, and a correct submission that still gets full marks.

Sets 06-08: one notebook per class (tests/test_grading_forbid_construction.py builds them). Sets
01-05: four notebooks per set, each attacking every exercise of the set it can with a different
class, so that together they try, per set: the library's twin in a process forked in an earlier
cell, on a `threading` thread and on a raw `_thread`, a forbidden function called from C
(`functools.partial`, `map`), the library's source pasted a few lines lower, its module file
exec'd, a renamed and reformatted copy, and the named equivalents (method forms, the kernels under
the Python wrappers, the scipy/scikit-learn/transformers twins, `torch.distributions`; in set 01,
whose only forbidden code is the library's tokenizers module, its other twins: the package's
re-exports, byte-level BPE decoding for characters, the fast `_merge_at`). Set 09: four notebooks the
same way, plus the library's routes outside `minilm.align` (`minilm.models.base.lm_loss`, the
per-token scorer `minilm.bias.likelihood.token_log_probs` behind a model that returns the given logits).

Starting the sandbox (the zygotes) is most of the cost, so every set is graded with the same two
zygotes: one start per isolation level for the nine sets.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import nbformat
import pytest
import test_grading_forbid_construction as construction

from minilm.grading.sets import get_set

ROOT = Path(__file__).resolve().parents[1]
SETS = {**construction.SETS, "01": "01_text_tokens", "02": "02_bigram_mlp", "03": "03_rnn_lstm", "04": "04_attention", "05": "05_pretraining",
        "09": "09_assistant"}
FUTURE = "from __future__ import annotations  # the library's type hints name its own classes\n"
NOT_ALLOWED, COPY, FORKED = "not allowed in this exercise", "copy of", "raised PermissionError"

RAW_THREAD = construction.RAW_THREAD  # _thread.start_new_thread, filled with an expression
THREAD = construction.THREAD  # threading.Thread
FORK = construction.FORK_SERVER  # a process forked in an earlier cell serves SERVER(*args)


def _thread(raw: bool, name: str, params: str, expr: str, result: str = 'box["out"]') -> str:
    return (RAW_THREAD if raw else THREAD).format(name=name, params=params, expr=expr, result=result)


def _src(dotted: str, shift: int = 0) -> str:
    return construction._source(dotted, shift)


def _exec_module(module: str, package: str) -> str:
    """A cell that runs the library module's file (a copy of every function in it) as `_ns`."""
    return (f"import sys, types, {module}\n_mod = types.ModuleType('my_copy')\nsys.modules['my_copy'] = _mod\n"
            f"_ns = _mod.__dict__\n_ns['__package__'] = '{package}'\n"
            f"exec(compile(open(sys.modules['{module}'].__file__).read(), 'mine.py', 'exec'), _ns)\n")


# ---------------------------------------------------------------- set 01
_TOK = "minilm.data.tokenizers"  # forbidden as a whole in every exercise of set 01
_ENC_SELF = "types.SimpleNamespace(stoi=stoi)"  # what CharTokenizer.encode reads of its `self`
_DEC_SELF = ("types.SimpleNamespace(chars=[itos.get(i, '?') for i in range(1 + max(itos, default=-1))], "
             "vocab_size=1 + max(itos, default=-1))")  # what CharTokenizer.decode reads
_ONE_CHUNK = r"pattern=r'[\s\S]+'"  # the library's BPE with the text as one chunk learns the exercise's merges
_JOINED = "[x for c in chunks for x in [*c, None]]"  # the chunks as one list, None between them
_UNJOINED = "{p: n for p, n in box['out'].items() if None not in p}"  # ... and the pairs across chunks dropped
_APPLY = "\n\ndef apply_merges(ids, merges):\n    for k, pair in enumerate(merges):\n        ids = {call}(ids, pair, 256 + k)\n    return ids\n"
_SUM_COUNTS = "    counts = {}\n    for one in {each}:\n        for p, n in one.items():\n            counts[p] = counts.get(p, 0) + n\n    return counts\n"
S01 = {
    "s01_threads_fork_pasted": {
        "extra": FORK.replace("{compute}", f"__import__('{_TOK}', fromlist=['x']).get_pair_counts"),
        "char_encode": (NOT_ALLOWED, _thread(False, "char_encode", "text, stoi", f"{_TOK}.CharTokenizer.encode({_ENC_SELF}, text)")
                        .replace("import threading", f"import threading, types, {_TOK}")),
        "char_decode": (NOT_ALLOWED, _thread(True, "char_decode", "ids, itos", f"{_TOK}.CharTokenizer.decode({_DEC_SELF}, ids)")
                        .replace("import _thread", f"import _thread, types, {_TOK}")),
        "count_pairs": (FORKED, "def count_pairs(chunks):\n" + _SUM_COUNTS.replace("{each}", "(SERVER(c) for c in chunks)")),
        "apply_merges": (COPY, _src(f"{_TOK}.merge", 3).replace("def merge(", "def my_merge(") + _APPLY.format(call="my_merge")),
        "train_bpe": (NOT_ALLOWED, ("import functools\nfrom minilm.data.tokenizers import BPETokenizer\n\ndef train_bpe(text, num_merges):\n"
                      f"    learn = functools.partial(BPETokenizer.train, {_ONE_CHUNK})  # called from C\n"
                      "    return learn(text, 256 + num_merges).merges\n")),
    },
    "s01_exec_module_c_callers": {
        "char_encode": (NOT_ALLOWED, ("import types\nfrom minilm.data.tokenizers import CharTokenizer\n\ndef char_encode(text, stoi):\n"
                        f"    return next(map(CharTokenizer.encode, [{_ENC_SELF}], [text]))  # called from C\n")),
        "char_decode": (COPY, _exec_module(_TOK, "minilm.data") + f"\n\ndef char_decode(ids, itos):\n    return _ns['CharTokenizer'].decode({_DEC_SELF}, ids)\n"),
        "count_pairs": (NOT_ALLOWED, _thread(False, "count_pairs", "chunks", f"{_TOK}.get_pair_counts({_JOINED})", _UNJOINED)
                        .replace("import threading", f"import threading, {_TOK}")),
        "apply_merges": (NOT_ALLOWED, "import functools\nfrom minilm.data.tokenizers import merge\n" + _APPLY.format(call="functools.partial(merge)")),
        "train_bpe": (NOT_ALLOWED, _thread(True, "train_bpe", "text, num_merges", f"{_TOK}.BPETokenizer.train(text, 256 + num_merges, {_ONE_CHUNK}).merges")
                      .replace("import _thread", f"import _thread, {_TOK}")),
    },
    "s01_renamed_equivalents": {
        "char_encode": (NOT_ALLOWED, textwrap.dedent('''\
            from minilm.data import CharTokenizer  # the same class, exported by the package

            def char_encode(text, stoi):
                chars = sorted(stoi)
                return [stoi[chars[i]] for i in CharTokenizer(chars).encode(text)]
            ''')),
        "char_decode": (NOT_ALLOWED, textwrap.dedent('''\
            from minilm.data import BPETokenizer

            def char_decode(ids, itos):  # byte-level BPE without merges decodes UTF-8 bytes
                return BPETokenizer([]).decode([b for i in ids for b in itos[i].encode("utf-8")])
            ''')),
        "count_pairs": (NOT_ALLOWED, "from minilm.data.tokenizers import get_pair_counts  # map calls it from C\n\n"
                        "def count_pairs(chunks):\n" + _SUM_COUNTS.replace("{each}", "map(get_pair_counts, chunks)")),
        "apply_merges": (COPY, textwrap.dedent('''\
            def join_pair(seq, pr, nid):
                """Mine."""
                x, y = pr
                res = []
                j, m = 0, len(seq)
                while j < m:
                    if seq[j] == x and j + 1 < m and seq[j + 1] == y:
                        res.append(
                            nid
                        )
                        j += 2
                    else:
                        res.append(seq[j]); j += 1
                return res
            ''') + _APPLY.format(call="join_pair")),
        "train_bpe": (COPY, textwrap.dedent('''\
            def merge_hits(seq, pr, nid):  # the fast merge, renamed
                x, y = pr
                res = []
                where = []
                lo, m = 0, len(seq)
                while True:
                    try:
                        j = seq.index(x, lo)
                    except ValueError:
                        break
                    if j + 1 < m and seq[j + 1] == y:
                        res.extend(seq[lo:j])
                        res.append(nid)
                        where.append(j)
                        lo = j + 2
                    else:
                        res.extend(seq[lo:j + 1])
                        lo = j + 1
                res.extend(seq[lo:])
                return res, where


            def train_bpe(text, num_merges):
                ids, merges = list(text.encode("utf-8")), []
                for k in range(num_merges):
                    counts = {}
                    for pair in zip(ids, ids[1:]):
                        counts[pair] = counts.get(pair, 0) + 1
                    if not counts:
                        break
                    merges.append(max(counts, key=counts.get))
                    ids, _ = merge_hits(ids, merges[-1], 256 + k)
                return merges
            ''')),
    },
    "s01_exec_file_twins": {
        "extra": _exec_module(_TOK, "minilm.data"),
        "char_encode": (COPY, f"import types\n\ndef char_encode(text, stoi):\n    return _ns['CharTokenizer'].encode({_ENC_SELF}, text)\n"),
        "char_decode": (NOT_ALLOWED, ("import functools, types\nfrom minilm.data.tokenizers import CharTokenizer\n\ndef char_decode(ids, itos):\n"
                        f"    return functools.partial(CharTokenizer.decode)({_DEC_SELF}, ids)  # called from C\n")),
        # get_pair_counts is too short to be compared (copies.MIN_INSTRUCTIONS); the exec'd namespace this answer
        # names holds copies of the module's longer functions, and those are found
        "count_pairs": (COPY, (f"def count_pairs(chunks):\n    box = {{'out': _ns['get_pair_counts']({_JOINED})}}\n"
                               f"    return {_UNJOINED}\n")),
        "apply_merges": (NOT_ALLOWED, "from minilm.data.tokenizers import _merge_at  # the fast twin: (merged ids, where)\n"
                         + _APPLY.format(call="_merge_at").replace("256 + k)", "256 + k)[0]")),
        "train_bpe": (NOT_ALLOWED, _thread(False, "train_bpe", "text, num_merges", f"{_TOK}.BPETokenizer.train(text, 256 + num_merges, {_ONE_CHUNK}).merges")
                      .replace("import threading", f"import threading, {_TOK}")),
    },
}

# ---------------------------------------------------------------- set 02
S02 = {
    "s02_threads_fork_pasted": {
        "extra": FORK.replace("{compute}", "lambda counts, k: F.normalize(counts.float() + k, p=1, dim=1)"),
        "softmax": (NOT_ALLOWED, _thread(True, "softmax", "logits", "logits.softmax(-1)")),  # method form
        "cross_entropy": (COPY, FUTURE + "import torch\nimport torch.nn.functional as F\n" + _src("minilm.models.base.lm_loss", 3)
                          + "\n\ndef cross_entropy(logits, targets):\n    return lm_loss(logits[None], targets[None])\n"),
        "bigram_probs": (FORKED, "def bigram_probs(counts, k):\n    return SERVER(counts, k)\n"),
        "bigram_nll": (NOT_ALLOWED, textwrap.dedent('''\
            import torch, torch.nn.functional as F

            def bigram_nll(words, stoi, probs):
                a, b = [], []
                for w in words:
                    chars = ["."] + list(w) + ["."]
                    a += [stoi[c] for c in chars[:-1]]
                    b += [stoi[c] for c in chars[1:]]
                return float(next(map(F.nll_loss, [probs.log()[a]], [torch.tensor(b)])))  # called from C
            ''')),
        "mlp_forward": (NOT_ALLOWED, _thread(False, "mlp_forward", "idx, C, W1, b1, W2, b2",  # the kernel under F.linear
                        "torch._C._nn.linear(torch.tanh(torch._C._nn.linear(C[idx].reshape(idx.shape[0], -1), W1.T, b1)), W2.T, b2)")),
    },
    "s02_exec_module_twins": {
        "cross_entropy": (COPY, _exec_module("minilm.models.base", "minilm.models")
                          + "\n\ndef cross_entropy(logits, targets):\n    return _ns['lm_loss'](logits[None], targets[None])\n"),
        "softmax": (NOT_ALLOWED, ("import scipy.special, torch\n\ndef softmax(logits):\n"
                    "    return torch.from_numpy(scipy.special.softmax(logits.numpy(), axis=-1))\n")),
        "bigram_probs": (NOT_ALLOWED, ("import torch\nfrom sklearn.preprocessing import normalize\n\ndef bigram_probs(counts, k):\n"
                         "    return torch.from_numpy(normalize((counts.double() + k).numpy(), norm='l1')).float()\n")),
        "bigram_nll": (NOT_ALLOWED, textwrap.dedent('''\
            from sklearn.metrics import log_loss

            def bigram_nll(words, stoi, probs):
                pairs = [(stoi[x], stoi[y]) for w in words for x, y in zip("." + w, w + ".")]
                return float(log_loss([y for _, y in pairs], probs[[x for x, _ in pairs]].double().numpy(),
                                      labels=list(range(probs.shape[0]))))
            ''')),
        "mlp_forward": (NOT_ALLOWED, ("import torch\n\ndef mlp_forward(idx, C, W1, b1, W2, b2):\n"
                        "    x = torch.embedding(C, idx).reshape(idx.shape[0], -1)  # the kernel under F.embedding\n"
                        "    return torch.tanh(x @ W1 + b1) @ W2 + b2\n")),
    },
    "s02_renamed_distributions": {
        "cross_entropy": (COPY, textwrap.dedent('''\
            import torch.nn.functional as nnf


            def my_loss(z, t):
                """Mine."""
                if t is None:
                    return None
                b, n, v = z.shape
                return nnf.cross_entropy(
                    z.reshape(b * n, v).float(),
                    t.reshape(b * n),
                    ignore_index=-1,
                )


            def cross_entropy(logits, targets):
                return my_loss(logits[None], targets[None])
            ''')),
        "softmax": (NOT_ALLOWED, "import torch\n\ndef softmax(logits):\n    return torch.distributions.Categorical(logits=logits).probs\n"),
        "bigram_probs": (NOT_ALLOWED, ("import torch\n\ndef bigram_probs(counts, k):\n"
                         "    return torch.distributions.Categorical(probs=counts.float() + k).probs\n")),
        "bigram_nll": (NOT_ALLOWED, textwrap.dedent('''\
            import torch

            def bigram_nll(words, stoi, probs):
                pairs = [(stoi[x], stoi[y]) for w in words for x, y in zip("." + w, w + ".")]
                rows = torch.tensor([x for x, _ in pairs])
                dist = torch.distributions.Categorical(probs=probs[rows])
                return -float(dist.log_prob(torch.tensor([y for _, y in pairs])).mean())
            ''')),
        "mlp_forward": (NOT_ALLOWED, ("import functools, torch, torch.nn.functional as F\n\ndef mlp_forward(idx, C, W1, b1, W2, b2):\n"
                        "    layer = functools.partial(F.linear)  # called from C\n"
                        "    return layer(torch.tanh(layer(C[idx].reshape(idx.shape[0], -1), W1.T, b1)), W2.T, b2)\n")),
    },
    "s02_kernels_methods": {
        "cross_entropy": (NOT_ALLOWED, ("from transformers.loss.loss_utils import fixed_cross_entropy\n\n"
                          "def cross_entropy(logits, targets):\n    return fixed_cross_entropy(logits, targets)\n")),
        "softmax": (NOT_ALLOWED, ("import torch\nfrom sklearn.utils.extmath import softmax as sk\n\ndef softmax(logits):\n"
                    "    flat = logits.reshape(-1, logits.shape[-1]).double().numpy().copy()\n"
                    "    return torch.from_numpy(sk(flat)).float().reshape(logits.shape)\n")),
        "bigram_probs": (NOT_ALLOWED, "def bigram_probs(counts, k):\n    return (counts.float() + k).log().softmax(dim=1)\n"),
        "bigram_nll": (NOT_ALLOWED, textwrap.dedent('''\
            import torch

            def bigram_nll(words, stoi, probs):
                pairs = [(stoi[x], stoi[y]) for w in words for x, y in zip("." + w, w + ".")]
                lp = probs.log()[[x for x, _ in pairs]]
                return float(torch._C._nn.nll_loss(lp, torch.tensor([y for _, y in pairs])))
            ''')),
        "mlp_forward": (NOT_ALLOWED, textwrap.dedent('''\
            import torch

            def mlp_forward(idx, C, W1, b1, W2, b2):
                emb = torch.nn.Embedding.from_pretrained(C)
                hidden = torch.nn.Linear(W1.shape[0], W1.shape[1])
                with torch.no_grad():
                    hidden.weight.copy_(W1.T)
                    hidden.bias.copy_(b1)
                return torch.tanh(hidden(emb(idx).reshape(idx.shape[0], -1))) @ W2 + b2
            ''')),
    },
}

# ---------------------------------------------------------------- set 03
_RNN = "x_t, h, W_xh, W_hh, b"
_GRADS_AS_PARAMS = ("    params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]\n"
                    "    for p, g in zip(params, grads):\n        p.grad = g.clone()\n")
S03 = {
    "s03_threads_fork_pasted": {
        "extra": FORK.replace("{compute}", "lambda xs, h0, W_xh, W_hh, b: torch.nn.RNN(W_xh.shape[0], W_xh.shape[1], batch_first=True)(xs, h0[None])[0]"),
        "lstm_step": (COPY, FUTURE + "import torch\n" + _src("minilm.models.rnn.lstm_step", 3)),
        "rnn_step": (NOT_ALLOWED, _thread(True, "rnn_step", _RNN, "torch.rnn_tanh_cell(x_t, h, W_xh.T, W_hh.T, b)")),
        "rnn_forward": (FORKED, "def rnn_forward(xs, h0, W_xh, W_hh, b):\n    return SERVER(xs, h0, W_xh, W_hh, b)\n"),
        "clip_grad_norm": (NOT_ALLOWED, ("import functools, torch\n\ndef clip_grad_norm(grads, max_norm):\n"
                           "    total = functools.partial(torch.nn.utils.get_total_norm, norm_type=2.0)(grads)  # from C\n"
                           "    scale = max_norm / (total + 1e-6)\n"
                           "    return [g.clone() if total <= max_norm else g * scale for g in grads]\n")),
        "tbptt_batches": (NOT_ALLOWED, _thread(False, "tbptt_batches", "tokens, batch_size, T",
                          "[minilm.data.batching.get_batch(tokens, T, batch_size)]").replace("import threading", "import threading, minilm.data.batching")),
    },
    "s03_exec_module_kernels": {
        "lstm_step": (COPY, _exec_module("minilm.models.rnn", "minilm.models") + "\nlstm_step = _ns['lstm_step']\n"),
        "rnn_step": (NOT_ALLOWED, ("import torch\n\ndef rnn_step(x_t, h, W_xh, W_hh, b):\n"
                     "    return next(map(torch.rnn_tanh_cell, [x_t], [h], [W_xh.T], [W_hh.T], [b]))  # called from C\n")),
        "rnn_forward": (NOT_ALLOWED, _thread(True, "rnn_forward", "xs, h0, W_xh, W_hh, b",
                        "torch.rnn_tanh(xs, h0[None], [W_xh.T.contiguous(), W_hh.T.contiguous(), b, torch.zeros_like(b)], "
                        "True, 1, 0.0, False, False, True)[0]")),
        "clip_grad_norm": (NOT_ALLOWED, ("import torch\n\ndef clip_grad_norm(grads, max_norm):\n"
                           "    total = torch.stack(torch._foreach_norm([g.float() for g in grads])).norm()\n"
                           "    return [g.clone() if total <= max_norm else g * (max_norm / (total + 1e-6)) for g in grads]\n")),
    },
    "s03_renamed_modules": {
        "lstm_step": (COPY, textwrap.dedent('''\
            import torch as tt


            def lstm_step(xx, hh, cc, w1, w2, b1, b2):
                z = xx @ w1.T + b1 + hh @ w2.T + b2
                a, f, g, o = z.chunk(
                    4, dim=1
                )
                a, f, g, o = tt.sigmoid(a), tt.sigmoid(f), tt.tanh(g), tt.sigmoid(o)
                cc = f * cc + a * g
                hh = o * tt.tanh(cc)
                return hh, cc
            ''')),
        "rnn_step": (NOT_ALLOWED, textwrap.dedent('''\
            import torch

            def rnn_step(x_t, h, W_xh, W_hh, b):
                cell = torch.nn.RNNCell(W_xh.shape[0], W_xh.shape[1])
                with torch.no_grad():
                    cell.weight_ih.copy_(W_xh.T)
                    cell.weight_hh.copy_(W_hh.T)
                    cell.bias_ih.copy_(b)
                    cell.bias_hh.zero_()
                return cell(x_t, h).detach()
            ''')),
        "rnn_forward": (NOT_ALLOWED, _thread(False, "rnn_forward", "xs, h0, W_xh, W_hh, b",
                        "torch.nn.RNN(W_xh.shape[0], W_xh.shape[1], batch_first=True)(xs, h0[None])[0]")),
        "clip_grad_norm": (NOT_ALLOWED, "import functools, torch\n\ndef clip_grad_norm(grads, max_norm):\n" + _GRADS_AS_PARAMS
                           + "    functools.partial(torch.nn.utils.clip_grad_norm_, max_norm=max_norm)(params)  # from C\n"
                           "    return [p.grad for p in params]\n"),
    },
    "s03_aten_twins": {
        "lstm_step": (NOT_ALLOWED, ("import torch\n\ndef lstm_step(x_t, h, c, weight_ih, weight_hh, bias_ih, bias_hh):\n"
                      "    return torch.lstm_cell(x_t, (h, c), weight_ih, weight_hh, bias_ih, bias_hh)\n")),
        "rnn_step": (NOT_ALLOWED, ("import torch\n\ndef rnn_step(x_t, h, W_xh, W_hh, b):\n"
                     "    return torch.ops.aten.rnn_tanh_cell(x_t, h, W_xh.T, W_hh.T, b)\n")),
        "rnn_forward": (NOT_ALLOWED, ("import torch\n\ndef rnn_forward(xs, h0, W_xh, W_hh, b):\n"  # rnn_step's refusal alone would zero it too
                        "    w = [W_xh.T.contiguous(), W_hh.T.contiguous(), b, torch.zeros_like(b)]\n"
                        "    return torch.ops.aten.rnn_tanh.input(xs, h0[None], w, True, 1, 0.0, False, False, True)[0]\n")),
        "clip_grad_norm": (NOT_ALLOWED, "import torch\n\ndef clip_grad_norm(grads, max_norm):\n" + _GRADS_AS_PARAMS
                           + "    total = torch.sqrt(sum((g.float() ** 2).sum() for g in grads))\n"
                           "    if total > max_norm:\n        torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)\n"
                           "    return [p.grad for p in params]\n"),
    },
}

# ---------------------------------------------------------------- set 04
_ATTN = ["minilm.models.attention.causal_mask", "minilm.models.attention.repeat_kv",
         "minilm.models.attention.attention_probs", "minilm.models.attention.explicit_attention"]
S04 = {
    "s04_threads_fork_pasted": {
        "extra": FORK.replace("{compute}", "__import__('minilm.models.attention', fromlist=['x']).merge_heads"),
        "causal_attention": (COPY, FUTURE + "import math\nimport torch\nimport torch.nn.functional as F\n\n"
                             + "\n\n".join(_src(d, 2) for d in _ATTN) + "\n\ncausal_attention = explicit_attention\n"),
        "split_heads": (NOT_ALLOWED, _thread(True, "split_heads", "x, n_head", "minilm.models.attention.split_heads(x, n_head)")
                        .replace("import _thread", "import _thread, minilm.models.attention")),
        "merge_heads": (FORKED, "def merge_heads(y):\n    return SERVER(y)\n"),
        "embed": (NOT_ALLOWED, ("import functools, torch.nn.functional as F\n\ndef embed(idx, wte, wpe):\n"
                  "    return functools.partial(F.embedding)(idx, wte) + wpe[: idx.shape[1]]  # from C\n")),
        "layer_norm": (NOT_ALLOWED, ("import torch\n\ndef layer_norm(x, weight, bias, eps):\n"
                       "    return torch.native_layer_norm(x, (x.shape[-1],), weight, bias, eps)[0]\n")),
    },
    "s04_exec_module_c_callers": {
        "causal_attention": (COPY, _exec_module("minilm.models.attention", "minilm.models")
                             + "\ncausal_attention = _ns['explicit_attention']\n"),
        "split_heads": (NOT_ALLOWED, ("from minilm.models import attention\n\ndef split_heads(x, n_head):\n"
                        "    return next(map(attention.split_heads, [x], [n_head]))  # called from C\n")),
        "merge_heads": (NOT_ALLOWED, ("import functools\nfrom minilm.models import attention\n\ndef merge_heads(y):\n"
                        "    return functools.partial(attention.merge_heads)(y)\n")),
        "embed": (NOT_ALLOWED, _thread(False, "embed", "idx, wte, wpe", "torch.embedding(wte, idx) + wpe[: idx.shape[1]]")),
        "layer_norm": (NOT_ALLOWED, ("import torch.nn.functional as F\n\ndef layer_norm(x, weight, bias, eps):\n"
                       "    return next(map(F.layer_norm, [x], [(x.shape[-1],)], [weight], [bias], [eps]))\n")),
    },
    "s04_renamed_twins": {
        "causal_attention": (COPY, textwrap.dedent('''\
            import math as m
            import torch as tt
            import torch.nn.functional as nnf


            def lower(n, dev=None, keys=None):
                s = n if keys is None else keys
                return tt.ones(n, s, dtype=tt.bool, device=dev).tril(diagonal=s - n)


            def rep(z, r):
                return z if r == 1 else z.repeat_interleave(r, dim=-3)


            def weights(a, b):
                n, d, s = a.shape[-2], a.shape[-1], b.shape[-2]
                if a.dim() >= 3 and b.shape[-3] != a.shape[-3]:
                    b = rep(b, a.shape[-3] // b.shape[-3])
                sc = (a @ b.transpose(-2, -1)) / m.sqrt(d)
                sc = sc.masked_fill(~lower(n, a.device, s), float("-inf"))
                return nnf.softmax(sc, dim=-1)


            def causal_attention(q, k, v):
                return weights(q, k) @ v
            ''')),
        "embed": (NOT_ALLOWED, ("import torch\n\ndef embed(idx, wte, wpe):\n"
                  "    return torch.nn.Embedding.from_pretrained(wte)(idx) + wpe[: idx.shape[1]]\n")),
        "layer_norm": (NOT_ALLOWED, ("import torch\nfrom sklearn.preprocessing import scale\n\ndef layer_norm(x, weight, bias, eps):\n"
                       "    flat = torch.from_numpy(scale(x.reshape(-1, x.shape[-1]).double().numpy(), axis=1))\n"
                       "    return flat.float().reshape(x.shape) * weight + bias\n")),
    },
    "s04_kernels_modules": {
        "causal_attention": (NOT_ALLOWED, ("import torch\n\ndef causal_attention(q, k, v):\n"
                             "    return torch._C._nn.scaled_dot_product_attention(q, k, v, is_causal=True)\n")),
        "embed": (NOT_ALLOWED, ("import torch.nn.functional as F\n\ndef embed(idx, wte, wpe):\n"
                  "    return F.embedding(idx, wte) + wpe[: idx.shape[1]]\n")),
        "layer_norm": (NOT_ALLOWED, textwrap.dedent('''\
            import torch

            def layer_norm(x, weight, bias, eps):
                ln = torch.nn.LayerNorm(x.shape[-1], eps=eps)
                with torch.no_grad():
                    ln.weight.copy_(weight)
                    ln.bias.copy_(bias)
                    return ln(x)
            ''')),
    },
}

# ---------------------------------------------------------------- set 05
_LR = "step, max_lr, min_lr, warmup_steps, max_steps"
_CFG = ("types.SimpleNamespace(warmup_steps=warmup_steps, learning_rate=max_lr, min_lr=min_lr, max_steps=max_steps, "
        "lr_schedule='cosine', lr_decay_steps=None)")
_TABLE_MODEL = textwrap.dedent('''\
    class Table(torch.nn.Module):
        def __init__(self, table):
            super().__init__()
            self.table = table

        def forward(self, x, y):
            logits = self.table[x]
            return logits, F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
    ''')
S05 = {
    "s05_threads_fork_pasted": {
        "extra": FORK.replace("{compute}", "lambda *a: __import__('minilm.models.gpt', fromlist=['x']).GPT"),
        "warmup_cosine_lr": (COPY, FUTURE + "import math, types\n" + _src("minilm.training.loop.get_lr", 3)
                             + f"\n\ndef warmup_cosine_lr({_LR}):\n    return get_lr(step, {_CFG})\n"),
        "gpt_num_params": (FORKED, ("def gpt_num_params(vocab_size, block_size, n_layer, n_embd, bias, tied):\n"
                           "    return SERVER(vocab_size, block_size, n_layer, n_embd, bias, tied)\n")),
        "estimate_loss": (NOT_ALLOWED, _thread(True, "estimate_loss", "table, batches",
                          "sum(lm_loss(table[x], y).item() for x, y in batches) / len(batches)")
                          .replace("import _thread", "import _thread\nfrom minilm.models.base import lm_loss")),
        "mfu": (NOT_ALLOWED, ("import functools, types\nfrom minilm.models.gpt import flops_per_token\n\n"
                "def mfu(n_params, batch_size, block_size, grad_accum_steps, step_time_s, peak_flops):\n"
                "    flops = functools.partial(flops_per_token, types.SimpleNamespace(n_layer=0, n_embd=0, block_size=0))\n"
                "    return flops(n_params) * batch_size * block_size * grad_accum_steps / step_time_s / peak_flops\n")),
    },
    "s05_exec_module_c_callers": {
        "warmup_cosine_lr": (COPY, "import types\n" + _exec_module("minilm.training.loop", "minilm.training")
                             + f"\n\ndef warmup_cosine_lr({_LR}):\n    return _ns['get_lr'](step, {_CFG})\n"),
        "estimate_loss": (NOT_ALLOWED, "import functools, torch, torch.nn.functional as F\n"
                          "from minilm.training.loop import estimate_loss as library\n\n\n" + _TABLE_MODEL
                          + "\n\ndef estimate_loss(table, batches):\n    it = iter(batches)\n"
                          "    run = functools.partial(library, eval_iters=len(batches), device='cpu', splits=('val',))\n"
                          "    return run(Table(table), lambda split: next(it))['val']\n"),
        "mfu": (NOT_ALLOWED, ("import types\nfrom minilm.models.gpt import flops_per_token\n\n"
                "def mfu(n_params, batch_size, block_size, grad_accum_steps, step_time_s, peak_flops):\n"
                "    cfg = types.SimpleNamespace(n_layer=0, n_embd=0, block_size=0)\n"
                "    flops = next(map(flops_per_token, [cfg], [n_params]))  # called from C\n"
                "    return flops * batch_size * block_size * grad_accum_steps / step_time_s / peak_flops\n")),
        "decay_names": (NOT_ALLOWED, textwrap.dedent('''\
            import torch

            def decay_names(shapes):
                m = torch.nn.Module()
                names = list(shapes)
                for i, s in enumerate(shapes.values()):
                    m.register_parameter(f"p{i}", torch.nn.Parameter(torch.empty(s, device="meta")))
                return [names[int(k[1:])] for k, p in m.named_parameters() if p.dim() >= 2]
            ''')),
    },
    "s05_renamed_threads": {
        "warmup_cosine_lr": (COPY, textwrap.dedent(f'''\
            import math as mm
            import types


            def sched(i, c):
                if c.warmup_steps > 0 and i < c.warmup_steps:
                    return c.learning_rate * (i + 1) / c.warmup_steps
                if c.lr_schedule == "constant":
                    return c.learning_rate
                if c.lr_schedule != "cosine":
                    raise ValueError(f"unknown lr_schedule {{c.lr_schedule!r}}; use 'cosine' or 'constant'")
                d = c.lr_decay_steps if c.lr_decay_steps is not None else c.max_steps
                if i >= d:
                    return c.min_lr
                r = (i - c.warmup_steps) / max(1, d - c.warmup_steps)
                k = 0.5 * (1.0 + mm.cos(mm.pi * r))
                return c.min_lr + k * (c.learning_rate - c.min_lr)


            def warmup_cosine_lr({_LR}):
                return sched(step, {_CFG})
            ''')),
        "gpt_num_params": (NOT_ALLOWED, _thread(False, "gpt_num_params", "vocab_size, block_size, n_layer, n_embd, bias, tied",
                           "sum(p.numel() for p in torch.nn.Embedding(vocab_size, n_embd, device='meta').parameters())")),
        "decay_names": (NOT_ALLOWED, textwrap.dedent('''\
            import functools, torch
            from minilm.training.optim import param_groups

            def decay_names(shapes):
                m = torch.nn.Module()
                names = list(shapes)
                for i, s in enumerate(shapes.values()):
                    m.register_parameter(f"p{i}", torch.nn.Parameter(torch.empty(s, device="meta")))
                decay = functools.partial(param_groups, weight_decay=0.1)(m)[0]["params"]  # called from C
                return [names[i] for i, p in enumerate(m._parameters.values()) if any(p is d for d in decay)]
            ''')),
    },
    "s05_transformers_twins": {
        "warmup_cosine_lr": (NOT_ALLOWED, textwrap.dedent(f'''\
            import torch
            from transformers import get_cosine_schedule_with_warmup

            def warmup_cosine_lr({_LR}):
                opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=max_lr)
                sched = get_cosine_schedule_with_warmup(opt, warmup_steps, max_steps)
                for _ in range(step):
                    opt.step()
                    sched.step()
                return max(min_lr, opt.param_groups[0]["lr"])
            ''')),
        "gpt_num_params": (NOT_ALLOWED, textwrap.dedent('''\
            import torch
            from transformers import GPT2Config, GPT2LMHeadModel

            def gpt_num_params(vocab_size, block_size, n_layer, n_embd, bias, tied):
                cfg = GPT2Config(vocab_size=vocab_size, n_positions=block_size, n_layer=n_layer, n_embd=n_embd,
                                 n_head=1, tie_word_embeddings=tied)
                with torch.device("meta"):
                    return GPT2LMHeadModel(cfg).num_parameters()
            ''')),
        "estimate_loss": (NOT_ALLOWED, "import torch, torch.nn.functional as F\nfrom minilm.data.names import dataset_loss\n\n\n"
                          + _TABLE_MODEL + "\n\ndef estimate_loss(table, batches):\n    m = Table(table)\n"
                          "    return sum(dataset_loss(m, type('D', (), {'x': x, 'y': y})()) for x, y in batches) / len(batches)\n"),
    },
}

# ---------------------------------------------------------------- set 09
_AL = "minilm.align"  # forbidden as a whole in every exercise of set 09
_CHAT = textwrap.dedent('''\
    from minilm.align.template import ASSISTANT, END, ROLES  # plain strings: no code


    class Tok:  # what render reads of a ChatTokenizer: ids travel as characters
        def __init__(self, specials):
            self.ids = {**{ROLES[r]: i for r, i in specials.items() if r in ROLES}, END: specials["end"]}

        def encode(self, text):
            return [ord(c) - 256 for c in text]

        def id(self, special):
            return self.ids[special]


    def talk(messages):
        return [{"role": r, "content": "".join(chr(256 + i) for i in c)} for r, c in messages]
    ''')
_SFT_TARGETS = "torch.where(mask[:, 1:].bool(), ids[:, 1:], -1)"  # -1 where not trained
_VERDICT = "{'form': v.form, 'heads': v.heads, 'passed': v.passed}"
_DPO = "pi_chosen, pi_rejected, ref_chosen, ref_rejected, beta"
S09 = {
    "s09_threads_fork_pasted": {
        "extra": FORK.replace("{compute}", f"__import__('{_AL}.rl', fromlist=['x']).group_advantages"),
        "render_mask": (COPY, FUTURE + _CHAT + "\n" + _src(f"{_AL}.template.render", 3)
                        + "\n\ndef render_mask(messages, specials):\n    return list(render(talk(messages), Tok(specials)))\n"),
        "masked_sft_loss": (NOT_ALLOWED, _thread(False, "masked_sft_loss", "logits, ids, mask", f"{_AL}.sft.sft_loss(logits, {_SFT_TARGETS})")
                            .replace("import threading", f"import threading, {_AL}.sft")),
        "sequence_logprob": (NOT_ALLOWED, _thread(True, "sequence_logprob", "logits, targets", f"{_AL}.dpo.sequence_logprobs(logits, targets)")
                             .replace("import _thread", f"import _thread, {_AL}.dpo")),
        "dpo_loss": (NOT_ALLOWED, (f"import functools\nfrom {_AL}.dpo import dpo_loss as library\n\ndef dpo_loss({_DPO}):\n"
                     "    return functools.partial(library, beta=beta)(pi_chosen, pi_rejected, ref_chosen, ref_rejected)[0]  # from C\n")),
        "group_advantages": (FORKED, "def group_advantages(rewards, eps):\n    return SERVER(rewards, eps)\n"),
        "check_acrostic": (NOT_ALLOWED, (f"from {_AL}.verifier import check\n\ndef check_acrostic(answer, heads):\n"
                           f"    v = next(map(check, [answer], [heads]))  # called from C\n    return {_VERDICT}\n")),
    },
    "s09_exec_module_renamed_twins": {
        "render_mask": (COPY, _CHAT + _exec_module(f"{_AL}.template", _AL)
                        + "\n\ndef render_mask(messages, specials):\n    return list(_ns['render'](talk(messages), Tok(specials)))\n"),
        "masked_sft_loss": (NOT_ALLOWED, ("import torch\n\ndef masked_sft_loss(logits, ids, mask):  # the kernel under F.cross_entropy\n"
                            f"    t = {_SFT_TARGETS}.reshape(-1)\n"
                            "    return torch.nan_to_num(torch._C._nn.cross_entropy_loss(logits.reshape(t.shape[0], -1).float(), t, None, 1, -1, 0.0))\n")),
        "sequence_logprob": (NOT_ALLOWED, ("import torch.nn.functional as F\n\ndef sequence_logprob(logits, targets):\n"
                             "    logp = logits.float().log_softmax(-1).transpose(1, 2)  # (B, V, T)\n"
                             "    return -F.nll_loss(logp, targets, ignore_index=-1, reduction='none').sum(-1)\n")),
        "group_advantages": (COPY, textwrap.dedent('''\
            def group_advantages(r, eps=1e-6):
                """Mine."""
                if r.dim() != 2:
                    raise ValueError(
                        f"rewards must be (prompts, group size), got shape {tuple(r.shape)}"
                    )
                m = r.mean(dim=1, keepdim=True)
                s = r.std(dim=1, keepdim=True, unbiased=False)
                return (r - m) / (s + eps)
            ''')),
        "check_acrostic": (COPY, textwrap.dedent('''\
            import re
            from dataclasses import dataclass

            CJK = "[\\u4e00-\\u9fff]"
            SHAPE = re.compile(f"^({CJK}{{5}})，({CJK}{{5}})。({CJK}{{5}})，({CJK}{{5}})。$")
            FOUR = 4


            @dataclass(frozen=True)
            class V:
                form: bool
                heads: int
                passed: bool


            def ok_heads(h):
                if not re.fullmatch(f"{CJK}{{{FOUR}}}", h or ""):
                    raise ValueError(f"bad heads {h!r}")


            def pieces(a):
                return [x for x in re.split("[，。]", a) if x]


            def verdict(a, h):
                ok_heads(h)
                f = SHAPE.match(a) is not None
                ls = pieces(a)
                n = sum(1 for i, x in enumerate(ls[:FOUR]) if x[0] == h[i])
                return V(form=f, heads=n, passed=f and n == FOUR)


            def check_acrostic(answer, heads):
                v = verdict(answer, heads)
                return {"form": v.form, "heads": v.heads, "passed": v.passed}
            ''')),
    },
    "s09_equivalents_c_callers": {
        "render_mask": (NOT_ALLOWED, (_CHAT + f"import functools\nfrom {_AL}.template import render\n\n\ndef render_mask(messages, specials):\n"
                        "    return list(functools.partial(render)(talk(messages), Tok(specials)))  # called from C\n")),
        "masked_sft_loss": (NOT_ALLOWED, ("import torch\n\ndef masked_sft_loss(logits, ids, mask):\n"
                            "    keep = mask[:, 1:].bool()\n"
                            "    logp = torch.distributions.Categorical(logits=logits.float()).log_prob(ids[:, 1:])  # (B, L-1)\n"
                            "    return -(logp * keep).sum() / keep.sum().clamp(min=1)\n")),
        "sequence_logprob": (NOT_ALLOWED, ("import torch\n\ndef sequence_logprob(logits, targets):  # the ATen operator under F.nll_loss\n"
                             "    B, T, V = logits.shape\n    logp = logits.float().log_softmax(-1).reshape(B * T, V)\n"
                             "    return -torch.ops.aten.nll_loss_nd(logp, targets.reshape(-1), None, 0, -1).reshape(B, T).sum(-1)\n")),
        "dpo_loss": (COPY, _exec_module(f"{_AL}.dpo", _AL) + f"\n\ndef dpo_loss({_DPO}):\n"
                     "    return _ns['dpo_loss'](pi_chosen, pi_rejected, ref_chosen, ref_rejected, beta)[0]\n"),
        "group_advantages": (NOT_ALLOWED, _thread(True, "group_advantages", "rewards, eps", f"{_AL}.rl.group_advantages(rewards, eps)")
                             .replace("import _thread", f"import _thread, {_AL}.rl")),
        "check_acrostic": (NOT_ALLOWED, _thread(False, "check_acrostic", "answer, heads", f"{_AL}.verifier.check(answer, heads)",
                           _VERDICT.replace("v.", 'box["out"].')).replace("import threading", f"import threading, {_AL}.verifier")),
    },
    "s09_library_routes": {  # the library's other code that computes the answer
        "masked_sft_loss": (NOT_ALLOWED, ("import torch\nfrom minilm.models.base import lm_loss  # F.cross_entropy with ignore_index=-1\n\n"
                            f"def masked_sft_loss(logits, ids, mask):\n    return torch.nan_to_num(lm_loss(logits, {_SFT_TARGETS}))\n")),
        "sequence_logprob": (NOT_ALLOWED, textwrap.dedent('''\
            import torch
            from minilm.bias.likelihood import token_log_probs  # log p(target) at every position


            class Rows(torch.nn.Module):  # row b's logits, for the sequence that starts with b
                def __init__(self, logits):
                    super().__init__()
                    self.logits = torch.nn.Parameter(logits.float(), requires_grad=False)

                def forward(self, idx):
                    return self.logits[idx[:, 0]][:, : idx.shape[1]]


            def sequence_logprob(logits, targets):
                B, T, _ = logits.shape
                rows = [[b, *t.clamp(min=0).tolist()] for b, t in enumerate(targets)]
                logp = torch.stack(token_log_probs(Rows(logits), rows, block_size=T))  # (B, T)
                return (logp * (targets >= 0)).sum(-1)
            ''')),
    },
}
HOSTILE = {"01": S01, "02": S02, "03": S03, "04": S04, "05": S05, "09": S09}


def _notebook(set_id: str, answers: dict[str, str], extra: str = "") -> nbformat.NotebookNode:
    """The reference notebook's setup and exercise cells, `extra` after the setup, and the answers given."""
    construction.SETS.setdefault(set_id, SETS[set_id])
    nb = construction._notebook(set_id, extra=extra)
    for cell in nb.cells:
        for ex_id, answer in answers.items():
            if cell.source.startswith(f"# EXERCISE: {ex_id}\n"):
                cell.source = f"# EXERCISE: {ex_id}\n{answer}"
    return nb


def write_submissions(folder: Path) -> dict[str, dict[str, dict[str, str]]]:
    """Every set's folder of submissions under `folder`: set -> student -> {exercise attacked: what its feedback says}."""
    expected: dict[str, dict[str, dict[str, str]]] = {}
    for set_id in sorted(SETS):
        sub = folder / set_id
        if set_id in HOSTILE:
            sub.mkdir(parents=True)
            nbformat.write(_notebook(set_id, {}), sub / "reference.ipynb")
            expected[set_id] = {"reference": {}}
            for student, spec in HOSTILE[set_id].items():
                answers = {k: v[1] for k, v in spec.items() if k != "extra"}
                nbformat.write(_notebook(set_id, answers, spec.get("extra", "")), sub / f"{student}.ipynb")
                expected[set_id][student] = {k: v[0] for k, v in spec.items() if k != "extra"}
        else:  # 06-08: one class per notebook
            attacked = construction._write_submissions(set_id, sub)
            expected[set_id] = {"reference": {}}
            for student, ex_id in attacked.items():
                marker = FORKED if student == "forked_earlier" else (
                    COPY if student in ("pasted_source", "exec_module_file", "renamed_copy") else NOT_ALLOWED)
                expected[set_id][student] = {ex_id: marker}
    return expected


class _Lent:
    """A started zygote lent to one grading run: closing it gives it back (see grade_sets)."""

    def __init__(self, zygote, free: list) -> None:
        self.zygote, self.free = zygote, free

    def run(self, request: dict, timeout: float):
        return self.zygote.run(request, timeout)

    def alive(self) -> bool:
        return self.zygote.alive()

    def close(self) -> None:
        (self.free.append(self.zygote) if self.zygote.alive() else self.zygote.close())


def grade_sets(folder: Path, out: Path, allow_unsandboxed: bool = False) -> dict:
    """Grade every set's folder under `folder` with one pair of zygotes (their start is most of the
    time): set -> {"level": ..., "rows": {student: [status, points, feedback]}}."""
    from minilm.grading import grader as grader_module
    from minilm.grading.grader import GradeOptions, Grader
    from minilm.grading.zygote import Zygote

    home = Path(tempfile.mkdtemp(prefix="minilm-zygotes-"))
    os.chmod(home, 0o711)
    out.mkdir(parents=True, exist_ok=True)
    free = [Zygote(out / "sandbox.log", home) for _ in range(2)]
    started = list(free)

    def lend(log_path, cwd):
        while free:
            z = free.pop()
            if z.alive():
                return _Lent(z, free)
        return Zygote(log_path, cwd)  # one died: a fresh one, as the grader would start

    report = {}
    opts = GradeOptions(jobs=2, cell_timeout=10, timeout=60, seed=7, allow_unsandboxed=allow_unsandboxed)
    original = grader_module.Zygote
    grader_module.Zygote = lend
    try:
        for set_id in sorted(p.name for p in folder.iterdir()):
            g = Grader(set_id, out / set_id, opts)
            with open(os.devnull, "w") as devnull:
                rows = g.grade_folder(folder / set_id, log=devnull)
            report[set_id] = {"level": g.level, "rows": {r.student: [r.status, dict(r.points), "\n".join(r.feedback)]
                                                         for r in rows}}
    finally:
        grader_module.Zygote = original
        for z in started:
            z.close()
        shutil.rmtree(home, ignore_errors=True)
    return report


def check_set(set_id: str, report: dict, expected: dict[str, dict[str, str]]) -> None:
    """Each attacked exercise scores 0 with the reason in its feedback line; the rest scores in full."""
    full = {ex.id: float(ex.points) for ex in get_set(set_id).exercises}
    rows = report[set_id]["rows"]
    assert set(rows) == set(expected), sorted(rows)
    for student, attacked in expected.items():
        status, points, feedback = rows[student]
        assert status == "ok", (student, status, feedback)
        assert {k: v for k, v in points.items() if k not in attacked} == {k: v for k, v in full.items() if k not in attacked}, (
            student, points, feedback)
        for ex_id, marker in attacked.items():
            assert points[ex_id] == 0.0, (student, ex_id, feedback)
            line = next(ln for ln in feedback.splitlines() if ln.startswith(f"{ex_id}: "))
            where = feedback if marker == FORKED else line  # the fork is refused in its own cell
            assert marker in where, (student, ex_id, line)


@pytest.fixture(scope="module")
def sandboxed(tmp_path_factory):
    from minilm.grading.isolation import namespaces_available

    if not namespaces_available():  # pragma: no cover
        pytest.skip("this kernel/container refuses namespaces")
    subs = tmp_path_factory.mktemp("subs")
    expected = write_submissions(subs)
    return grade_sets(subs, tmp_path_factory.mktemp("out")), expected


@pytest.mark.slow  # one sandbox start and 73 notebooks for the nine sets: about a minute on 2 cores
@pytest.mark.parametrize("set_id", sorted(SETS))
def test_hostile_submissions_score_nothing_on_what_they_attack_in_the_sandbox(set_id, sandboxed):
    report, expected = sandboxed
    assert report[set_id]["level"].startswith(("uid+namespaces", "namespaces")), report[set_id]["level"]
    check_set(set_id, report, expected[set_id])


# ---------------------------------------------------------------- the weaker level
_READABLE: list[tuple[str | None, str]] = []  # made once per test process


def readable_python() -> tuple[str | None, str]:
    """A Python whose installation every user may read, with this environment's packages: (path, "")
    or (None, why not). As root the weaker level runs each child under a uid of its own, which must
    read the Python installation; this one often lives where it cannot (pyenv under /root, mode 700).
    Made once per process from /usr/bin/python3 (a venv that adds this environment's site-packages)
    in a folder removed at exit."""
    here = Path(sys.executable)
    if os.geteuid() == 0 and not construction._others_can_run((ROOT / "minilm").resolve()):
        return None, (f"as root, this checkout ({ROOT}) is not readable by other users (a clone in a mode-700 "
                      "folder such as `mktemp -d` makes): the weaker level's child uid cannot import minilm from it, "
                      "and the grader refuses, as it should; clone into a folder others may read to run this test")
    if os.geteuid() != 0 or construction._others_can_run(here.resolve()):
        return sys.executable, ""
    if _READABLE:
        return _READABLE[0]
    system = Path("/usr/bin/python3")
    version = subprocess.run([str(system), "-c", "import sys; print(sys.version_info[:2])"], check=False,
                             capture_output=True, text=True) if system.exists() else None
    if version is None or not construction._others_can_run(system.resolve()):
        _READABLE.append((None, (f"as root, {here.resolve()} is not readable by other users (the weaker level's "
                                "child uid must read it) and there is no /usr/bin/python3 they can read")))
    elif version.stdout.strip() != str(tuple(sys.version_info[:2])):
        _READABLE.append((None, (f"as root, {here.resolve()} is not readable by other users (the weaker level's "
                                f"child uid must read it), and /usr/bin/python3 is Python {version.stdout.strip()}, "
                                f"not {sys.version_info[:2]}: this environment's packages do not load in it")))
    else:
        folder = Path(tempfile.mkdtemp(prefix="minilm-python-"))
        atexit.register(shutil.rmtree, folder, True)
        os.chmod(folder, 0o755)
        venv = folder / "venv"
        subprocess.run([str(system), "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
        site = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip()
        ours = [p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p)]
        (Path(site) / "minilm_tests.pth").write_text("import site; " + "; ".join(f"site.addsitedir({p!r})" for p in ours) + "\n")
        _READABLE.append((str(venv / "bin" / "python"), ""))
    return _READABLE[0]


WEAK_DRIVER = """
import json, sys
from pathlib import Path
sys.path.insert(0, "tests")
from test_grading_hostile_sets import grade_sets
print(json.dumps(grade_sets(Path(sys.argv[1]), Path(sys.argv[2]), allow_unsandboxed=True)))
"""


@pytest.fixture(scope="module")
def weaker(tmp_path_factory):
    from minilm.grading import seccomp

    if not seccomp.available():  # pragma: no cover
        pytest.skip("no seccomp syscall table for this architecture")
    python, why = readable_python()
    if python is None:  # pragma: no cover - depends on the machine
        pytest.skip(why)
    subs = tmp_path_factory.mktemp("weak_subs")
    expected = write_submissions(subs)
    out = tmp_path_factory.mktemp("weak")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(ROOT / "tests" / "docker_like.py"), "--", python, "-c", WEAK_DRIVER, str(subs), str(out)]
    done = subprocess.run(cmd, check=False, cwd=ROOT, capture_output=True, text=True, timeout=1200, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), expected


@pytest.mark.slow  # as above, under tests/docker_like.py
@pytest.mark.parametrize("set_id", sorted(SETS))
def test_hostile_submissions_score_nothing_at_the_weaker_level_too(set_id, weaker):
    """As in a default Docker container: no namespaces, `--allow-unsandboxed` (uid level as root, else process)."""
    report, expected = weaker
    assert report[set_id]["level"].startswith("uid" if os.geteuid() == 0 else "process"), report[set_id]["level"]
    check_set(set_id, report, expected[set_id])
