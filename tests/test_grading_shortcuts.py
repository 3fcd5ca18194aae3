"""For every exercise of sets 01-05, an answer that hands the work to the library or to PyTorch is
refused: check() says "not allowed in this exercise", and so does the sandboxed grader (set 04).
Where the shortcut gives the right values, the test proves it first, so the refusal is what stops it."""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F
from test_grading_references import _trusted_rnn_forward  # the one nn.RNN twin of the exercise

from minilm.grading import check
from minilm.grading.compare import decode, encode, same
from minilm.grading.grader import GradeOptions, grade
from minilm.grading.isolation import namespaces_available
from minilm.grading.sets import all_sets

ROOT = Path(__file__).resolve().parents[1]


def _char_tokenizer(stoi=None, itos=None):
    from minilm.data.tokenizers import CharTokenizer

    tok = CharTokenizer.__new__(CharTokenizer)
    tok.stoi = stoi or {c: i for i, c in (itos or {}).items()}
    table = itos or {i: c for c, i in stoi.items()}
    tok.chars = [table.get(i, "?") for i in range(max(table, default=-1) + 1)]
    return tok


def _count_pairs(chunks):
    from minilm.data import tokenizers

    out = {}
    for chunk in chunks:
        for pair, n in tokenizers.get_pair_counts(chunk).items():
            out[pair] = out.get(pair, 0) + n
    return out


def _apply_merges(ids, merges):
    import minilm.data.tokenizers as t

    ids = list(ids)
    for k, pair in enumerate(merges):
        ids = t.merge(ids, pair, 256 + k)
    return ids


def _bigram_nll(words, stoi, probs):
    pairs = [(stoi[a], stoi[b]) for w in words for a, b in zip("." + w, w + ".")]
    a, b = torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])
    return F.nll_loss(probs.log()[a], b).item()


def _mlp_forward(idx, C, W1, b1, W2, b2):
    x = F.embedding(idx, C).reshape(idx.shape[0], -1)
    return F.linear(torch.tanh(F.linear(x, W1.T, b1)), W2.T, b2)


def _clip(grads, max_norm):
    params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    torch.nn.utils.clip_grad_norm_(params, max_norm)
    return [p.grad for p in params]


def _tbptt(tokens, batch_size, T):
    from minilm.data.batching import train_val_split

    train_val_split(tokens)  # any use of minilm.data.batching
    raise AssertionError("not reached")


def _lr(step, max_lr, min_lr, warmup, max_steps):
    from minilm.training.loop import TrainConfig, get_lr

    cfg = TrainConfig(max_steps=max_steps, learning_rate=max_lr, min_lr=min_lr, warmup_steps=warmup)
    return get_lr(step, cfg)


def _num_params(vocab_size, block_size, n_layer, n_embd, bias, tied):
    from minilm.models.gpt import GPT, GPTConfig

    with torch.device("meta"):
        model = GPT(GPTConfig(block_size=block_size, vocab_size=vocab_size, n_layer=n_layer, n_head=1,
                              n_embd=n_embd, bias=bias))
    return model.num_params(non_embedding=False) + (0 if tied else vocab_size * n_embd)


def _estimate_loss(table, batches):
    from minilm.models.bigram import BigramConfig, BigramLM

    model = BigramLM(BigramConfig(vocab_size=table.shape[0]))
    with torch.no_grad():
        model.logits_table.weight.copy_(table)
    return sum(model(x, y)[1].item() for x, y in batches) / len(batches)


def _mfu(n_params, batch_size, block_size, grad_accum, step_time, peak):
    from minilm.models.gpt import GPTConfig, flops_per_token

    per_token = flops_per_token(GPTConfig(block_size=block_size), n_params)
    return per_token * batch_size * block_size * grad_accum / step_time / peak


def _decay_names(shapes):
    from minilm.training.optim import param_groups

    module = torch.nn.Module()
    for i, shape in enumerate(shapes.values()):
        module.register_parameter(f"p{i}", torch.nn.Parameter(torch.zeros(shape)))
    decay = {id(p) for p in param_groups(module, 0.1)[0]["params"]}
    return [n for n, p in zip(shapes, module.parameters()) if id(p) in decay]


SHORTCUTS = {
    "char_encode": lambda text, stoi: _char_tokenizer(stoi=stoi).encode(text),
    "char_decode": lambda ids, itos: _char_tokenizer(itos=itos).decode(ids),
    "count_pairs": _count_pairs,
    "apply_merges": _apply_merges,
    "train_bpe": lambda text, k: list(__import__("minilm").data.tokenizers.BPETokenizer.train(text, 256 + k).merges),
    "softmax": lambda z: torch.softmax(z, dim=-1),
    "cross_entropy": lambda z, t: F.cross_entropy(z, t),
    "bigram_probs": lambda n, k: F.normalize(n.float() + k, p=1, dim=1),
    "bigram_nll": _bigram_nll,
    "mlp_forward": _mlp_forward,
    "rnn_step": lambda x, h, W_xh, W_hh, b: torch.rnn_tanh_cell(x, h, W_xh.T, W_hh.T, b, torch.zeros_like(b)),
    "rnn_forward": _trusted_rnn_forward,  # nn.RNN with the exercise's weights
    "lstm_step": lambda *args: __import__("minilm.models.rnn", fromlist=["x"]).lstm_step(*args),
    "clip_grad_norm": _clip,
    "tbptt_batches": _tbptt,
    "causal_attention": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
    "split_heads": lambda x, n: __import__("minilm.models.attention", fromlist=["x"]).split_heads(x, n),
    "merge_heads": lambda y: __import__("minilm.models.attention", fromlist=["x"]).merge_heads(y),
    "embed": lambda idx, wte, wpe: F.embedding(idx, wte) + wpe[: idx.shape[1]],
    "layer_norm": lambda x, w, b, eps: F.layer_norm(x, (x.shape[-1],), w, b, eps),
    "warmup_cosine_lr": _lr,
    "gpt_num_params": _num_params,
    "estimate_loss": _estimate_loss,
    "mfu": _mfu,
    "decay_names": _decay_names,
}
EXERCISES = [ex for s in all_sets() if s.name[:2] in ("01", "02", "03", "04", "05") for ex in s.exercises]


def test_every_exercise_of_sets_01_to_05_has_a_shortcut_here():
    assert sorted(SHORTCUTS) == sorted(ex.id for ex in EXERCISES)


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda ex: ex.id)
def test_check_refuses_the_shortcut_through_the_library(ex, capsys):
    shortcut = SHORTCUTS[ex.id]
    right = 0
    for case in ex.public:  # unwatched, the shortcut is a real answer (where the library agrees)
        with contextlib.suppress(Exception):  # e.g. the tbptt one, which only shows a use
            got = decode(encode(ex.call(shortcut, *copy.deepcopy(case.args))))
            right += same(case.expected, got, ex.rtol, ex.atol)[0]
    check(ex.id, shortcut)
    out = capsys.readouterr().out
    refused = out.count("not allowed in this exercise")
    assert refused >= 1 and refused + out.count("[pass]") == len(ex.public), out  # passes: never reached it
    if ex.id not in ("train_bpe", "tbptt_batches", "estimate_loss", "mfu"):
        assert right == len(ex.public), f"{ex.id}: the shortcut should be right when nothing watches it"


def test_the_grader_refuses_pytorch_and_library_shortcuts_in_the_sandbox(tmp_path):
    """Set 04 answered by F.scaled_dot_product_attention, minilm.models.attention (an alias and a
    module object), F.embedding through nn.Embedding and F.layer_norm: 0 points, and the reason."""
    if not namespaces_available():  # pragma: no cover
        pytest.skip("this kernel/container refuses namespaces")
    nb = nbformat.read(ROOT / "solutions" / "04_attention.ipynb", as_version=4)
    bodies = {
        "causal_attention": "import torch.nn.functional as F\n\n\ndef causal_attention(q, k, v):\n"
        "    return F.scaled_dot_product_attention(q, k, v, is_causal=True)\n",
        "split_heads": "from minilm.models import attention as a\n\n\ndef split_heads(x, n_head):\n"
        "    return a.split_heads(x, n_head)\n",
        "merge_heads": "import minilm\n\n\ndef merge_heads(y):\n    return minilm.models.attention.merge_heads(y)\n",
        "embed": "import torch\n\n\ndef embed(idx, wte, wpe):\n    table = torch.nn.Embedding.from_pretrained(wte)\n"
        "    return table(idx) + wpe[: idx.shape[1]]\n",
        "layer_norm": "import torch.nn.functional as F\n\n\ndef layer_norm(x, weight, bias, eps):\n"
        "    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps)\n",
    }
    for cell in nb.cells:
        for ex_id, body in bodies.items():
            if cell.cell_type == "code" and cell.source.startswith(f"# EXERCISE: {ex_id}\n"):
                cell.source = f"# EXERCISE: {ex_id}\n{body}"
    subs = tmp_path / "subs"
    subs.mkdir()
    nbformat.write(nb, subs / "shortcuts.ipynb")
    shutil.copy(ROOT / "solutions" / "04_attention.ipynb", subs / "reference.ipynb")
    opts = GradeOptions(cell_timeout=10, timeout=60, seed=5)
    with open(os.devnull, "w") as devnull:
        rows = {r.student: r for r in grade("04", subs, tmp_path / "out", opts, log=devnull)}
    assert (rows["reference"].status, rows["reference"].total) == ("ok", 7.0)
    assert (rows["shortcuts"].status, rows["shortcuts"].total) == ("ok", 0.0)
    feedback = "\n".join(rows["shortcuts"].feedback)
    for name in ("torch.nn.functional.scaled_dot_product_attention", "minilm.models.attention.split_heads",
                 "minilm.models.attention.merge_heads", "torch.nn.Embedding",
                 "torch.nn.functional.layer_norm"):
        assert f"not allowed in this exercise: {name}" in feedback, feedback
