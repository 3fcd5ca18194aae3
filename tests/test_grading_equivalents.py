"""Forbidden sets by what an exercise computes (minilm/grading/sets/equivalents.py): per exercise, the
equivalents a student tried are forbidden, every name of every group resolves where its package is
installed, and the shortcuts the issue reported are refused by check()."""

from __future__ import annotations

import importlib.util
import inspect
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minilm.grading import check
from minilm.grading.forbid import _import, resolve
from minilm.grading.sets import SET_MODULES, find_exercise, get_set
from minilm.grading.sets.equivalents import COMPUTES, forbid

# exercise id -> the callables a student tried that hand back the answer (or all but a last trivial step)
TRIED = {
    "char_encode": ["minilm.data.tokenizers.CharTokenizer.encode"],
    "char_decode": ["minilm.data.tokenizers.CharTokenizer.decode"],
    "count_pairs": ["minilm.data.tokenizers.get_pair_counts"],
    "apply_merges": ["minilm.data.tokenizers.merge"],
    "train_bpe": ["minilm.data.tokenizers.BPETokenizer.train"],
    "softmax": ["torch.softmax", "torch.Tensor.softmax", "torch.nn.functional.softmax", "torch.nn.functional.softmin",
                "torch.special.softmax", "torch.log_softmax", "torch.logsumexp", "torch.Tensor.logsumexp",
                "torch.distributions.Categorical", "scipy.special.softmax", "sklearn.utils.extmath.softmax"],
    "cross_entropy": ["torch.nn.functional.cross_entropy", "torch.nn.functional.nll_loss",
                      "torch._C._nn.cross_entropy_loss", "torch._C._nn.nll_loss_nd",
                      "torch.distributions.Categorical.log_prob", "torch.nn.CrossEntropyLoss",
                      "torch.Tensor.log_softmax", "sklearn.metrics.log_loss",
                      "transformers.loss.loss_utils.fixed_cross_entropy"],
    "bigram_probs": ["torch.nn.functional.normalize", "sklearn.preprocessing.normalize",
                     "torch.distributions.Categorical", "torch.nn.functional.softmax"],
    "bigram_nll": ["torch.nn.functional.nll_loss", "torch._C._nn.nll_loss", "torch.distributions.Categorical.log_prob",
                   "sklearn.metrics.log_loss"],
    "mlp_forward": ["torch.nn.functional.linear", "torch._C._nn.linear", "torch.nn.Linear", "torch.nn.Embedding",
                    "torch.nn.functional.embedding"],
    "rnn_step": ["torch.nn.RNNCell", "torch.rnn_tanh_cell"],
    "rnn_forward": ["torch.nn.RNN", "torch.rnn_tanh"],
    "lstm_step": ["torch.nn.LSTMCell", "torch.lstm_cell", "torch.ops.aten._thnn_fused_lstm_cell"],
    "clip_grad_norm": ["torch.nn.utils.clip_grad_norm_", "torch.nn.utils.get_total_norm",
                       "torch.nn.utils.clip_grads_with_norm_"],
    "tbptt_batches": ["minilm.data.batching.get_batch"],
    "causal_attention": ["torch.nn.functional.scaled_dot_product_attention", "torch._C._nn.scaled_dot_product_attention",
                         "torch.ops.aten._scaled_dot_product_attention_math", "torch.nn.MultiheadAttention",
                         "torch.nn.TransformerEncoderLayer",
                         "transformers.models.gpt2.modeling_gpt2.eager_attention_forward"],
    "split_heads": ["minilm.models.attention.split_heads"],
    "merge_heads": ["minilm.models.attention.merge_heads"],
    "embed": ["torch.nn.functional.embedding", "torch.nn.Embedding", "torch.embedding"],
    "layer_norm": ["torch.nn.functional.layer_norm", "torch.nn.LayerNorm", "torch.native_layer_norm",
                   "torch.nn.functional.group_norm", "sklearn.preprocessing.scale"],
    "warmup_cosine_lr": ["minilm.training.loop.get_lr", "torch.optim.lr_scheduler.LambdaLR",
                         "transformers.get_cosine_schedule_with_warmup"],
    "gpt_num_params": ["torch.nn.Module.parameters", "minilm.models.gpt.GPT.num_params",
                       "transformers.modeling_utils.ModuleUtilsMixin.num_parameters"],
    "estimate_loss": ["minilm.training.loop.estimate_loss"],
    "mfu": ["minilm.models.gpt.GPT"],
    "decay_names": ["torch.nn.Module.named_parameters", "minilm.training.optim.configure_optimizer"],
    "top_k_filter": ["minilm.generation.sampling.top_k_filter", "transformers.TopKLogitsWarper"],
    "top_p_mask": ["minilm.generation.sampling.top_p_mask", "transformers.TopPLogitsWarper"],
    "sample_with_temperature": ["minilm.generation.sampling.sample_next", "transformers.TemperatureLogitsWarper"],
    "kv_attention_step": ["torch.nn.functional.scaled_dot_product_attention", "torch._C._nn.scaled_dot_product_attention"],
    "int8_quantize": ["minilm.generation.quantize.quantize_int8", "torch.quantize_per_channel",
                      "torch.ao.quantization.observer.PerChannelMinMaxObserver"],
    "int8_dequantize": ["minilm.generation.quantize.dequantize_int8", "torch.Tensor.dequantize"],
    "int4_pack": ["minilm.generation.quantize.pack_int4"],
    "lora_forward": ["torch.nn.functional.linear", "torch._C._nn.linear", "minilm.finetune.lora.LoRALinear"],
    "merge_lora": ["minilm.finetune.lora.LoRALinear.merge", "torch.nn.functional.linear"],
    "last_token_pool": ["minilm.finetune.classifier.last_token_pool"],
    "accuracy_confusion": ["torch.bincount", "torch.Tensor.bincount", "numpy.bincount", "torch.histc",
                           "sklearn.metrics.confusion_matrix", "sklearn.metrics.accuracy_score",
                           "minilm.finetune.classifier.confusion_matrix"],
    "count_trainable": ["torch.nn.Module.parameters", "minilm.finetune.lora.count_parameters"],
    "sentence_log_likelihood": ["torch.nn.functional.cross_entropy", "torch._C._nn.cross_entropy_loss",
                                "torch.nn.functional.nll_loss", "torch.distributions.Categorical.log_prob",
                                "torch.log_softmax", "torch.Tensor.log_softmax", "minilm.bias.likelihood.score_sentences"],
    "paired_preference": ["minilm.bias.likelihood.paired_preference"],
    "weat_effect_size": ["sklearn.metrics.pairwise.cosine_similarity", "torch.nn.functional.cosine_similarity",
                         "torch.nn.CosineSimilarity", "minilm.bias.weat.effect_size"],
    "swap_words": ["minilm.bias.counterfactual.swap_gendered"],
    "exact_match_rate": ["minilm.bias.memorisation.exact_match_rate"],
    "canary_exposure": ["minilm.bias.memorisation.exposure_from_rank"],
}
EXERCISES = [ex for name in SET_MODULES if name[:2] <= "08" for ex in get_set(name).exercises]  # sets 01-08


def installed(name: str) -> bool:
    return importlib.util.find_spec(name.split(".")[0]) is not None


def covered(name: str, forbidden: tuple[str, ...]) -> bool:
    """`name` is forbidden: named, inside a forbidden module or class, or the same object as a name."""
    if any(name == f or name.startswith(f + ".") for f in forbidden):
        return True
    obj = inspect.unwrap(_import(name))
    home = getattr(obj, "__module__", None) or ""
    for f in forbidden:
        target = _import(f)
        if target is obj:
            return True
        if isinstance(target, types.ModuleType) and (home == target.__name__ or home.startswith(target.__name__ + ".")):
            return True
    return False


def test_every_exercise_lists_the_equivalents_tried():
    assert sorted(TRIED) == sorted(ex.id for ex in EXERCISES)


@pytest.mark.parametrize("ex", EXERCISES, ids=lambda ex: ex.id)
def test_each_equivalent_tried_is_forbidden(ex):
    names = [n for n in TRIED[ex.id] if installed(n)]
    assert names, f"{ex.id}: nothing tried is installed here"
    missing = [n for n in names if not covered(n, ex.forbidden)]
    assert not missing, f"{ex.id}: these equivalents are not forbidden: {missing}"


def test_every_name_of_every_group_resolves_where_its_package_is_installed():
    for what, names in COMPUTES.items():
        for name in names:
            if installed(name):
                banned = resolve((name,))
                assert banned.names == (name,) and not getattr(banned, "skipped", []), f"{what}: {name}"


def test_groups_are_declared_once_and_combined_without_repeats():
    names = forbid("softmax", "log-softmax", library="minilm.models")
    assert names[0] == "minilm.models" and len(names) == len(set(names))
    assert set(COMPUTES["log-softmax"]) <= set(names)
    with pytest.raises(KeyError, match="the groups are"):
        forbid("no such thing")


def _warp(cls, logits, **kw):
    import transformers

    return getattr(transformers, cls)(**kw)(None, logits.clone())


SHORTCUTS = {  # what scored points before (issue 22), written as a student wrote it
    "top_k_filter": lambda logits, k: _warp("TopKLogitsWarper", logits, top_k=min(k, logits.shape[-1])),
    "top_p_mask": lambda p, top_p: _warp("TopPLogitsWarper", p.log(), top_p=top_p) > float("-inf"),
    "accuracy_confusion": lambda p, t, n: {"accuracy": (p == t).float().mean().item(),
                                           "confusion": (t * n + p).bincount(minlength=n * n).reshape(n, n).tolist()},
    "cross_entropy": lambda z, t: torch._C._nn.cross_entropy_loss(z, t),
    "sentence_log_likelihood": lambda z, t: float(torch.distributions.Categorical(logits=z).log_prob(t).sum()),
    "bigram_nll": lambda words, stoi, probs: -float(np.mean([
        torch.distributions.Categorical(probs=probs[stoi[a]]).log_prob(torch.tensor(stoi[b]))
        for w in words for a, b in zip("." + w, w + ".")])),
}
SHORTCUTS_NUMPY_SKLEARN = {
    "accuracy_confusion": lambda p, t, n: {"accuracy": float((p == t).float().mean()),
                                           "confusion": np.bincount((t * n + p).numpy(), minlength=n * n)
                                           .reshape(n, n).tolist()},
    "weat_effect_size": lambda X, Y, A, B: __import__("minilm.bias.weat", fromlist=["x"]).effect_size(
        X.numpy(), Y.numpy(), A.numpy(), B.numpy()),
}


def _sklearn_weat(X, Y, A, B):
    from sklearn.metrics.pairwise import cosine_similarity

    def s(w):
        return cosine_similarity(w, A).mean(1) - cosine_similarity(w, B).mean(1)

    sx, sy = s(X.numpy()), s(Y.numpy())
    return float((sx.mean() - sy.mean()) / np.concatenate([sx, sy]).std(ddof=1))


@pytest.mark.parametrize("ex_id, fn", [*SHORTCUTS.items(), *SHORTCUTS_NUMPY_SKLEARN.items(),
                                       ("weat_effect_size", _sklearn_weat),
                                       ("lora_forward", lambda x, W, b, A, B, al: F.linear(x, W + al / A.shape[0] * B @ A, b))],
                         ids=lambda v: v if isinstance(v, str) else "")
def test_check_refuses_the_shortcuts_that_scored(ex_id, fn, capsys):
    assert find_exercise(ex_id).forbidden
    if ex_id == "weat_effect_size" and not installed("sklearn"):
        pytest.skip("scikit-learn is not installed")
    check(ex_id, fn)
    out = capsys.readouterr().out
    assert "not allowed in this exercise" in out and "0 of" in out, out


# every NumPy name of every group, called as a student would: NumPy's functions are array-function
# dispatcher objects whose C implementation (numpy.bincount's) runs from C, unseen by a profile hook
NUMPY_CALLS = {
    "numpy.bincount": lambda: np.bincount(np.array([0, 2, 2]), minlength=4),
    "numpy.histogram": lambda: np.histogram(np.array([0.0, 1.0, 1.0]), bins=2),
    "numpy.histogram2d": lambda: np.histogram2d(np.array([0.0, 1.0]), np.array([1.0, 0.0]), bins=2),
    "numpy.histogramdd": lambda: np.histogramdd(np.array([[0.0, 1.0], [1.0, 0.0]]), bins=2),
}


def test_check_refuses_every_numpy_equivalent_through_its_dispatcher():
    from minilm.grading.forbid import NotAllowed, Watcher, call_watched

    named = sorted({n for names in COMPUTES.values() for n in names if n.startswith("numpy.")})
    assert sorted(NUMPY_CALLS) == named, "give every NumPy name of minilm/grading/sets/equivalents.py a call here"
    watcher = Watcher()
    for name, call in NUMPY_CALLS.items():
        with pytest.raises(NotAllowed, match=name):
            call_watched(watcher, resolve((name,)), call)
        call()  # outside a watched call it runs
    # a building block NumPy runs through its own dispatchers stays allowed
    allowed = call_watched(watcher, resolve(("numpy.bincount",)), lambda: int(np.unique(np.array([3, 1, 3])).sum()
                                                                              + np.add.reduce(np.ones(3))))
    assert allowed == 7
