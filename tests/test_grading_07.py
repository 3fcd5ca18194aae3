"""Exercise set 07: the reference agrees with minilm's own (trusted, separately tested) code on the grading
inputs, and an answer that hands the work to minilm.finetune.lora / minilm.finetune / F.linear is refused by check()."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from minilm.grading import check
from minilm.grading.authoring import load_reference
from minilm.grading.compare import decode, encode, same
from minilm.grading.sets import get_set

ROOT = Path(__file__).resolve().parents[1]
SET = get_set("07_fine_tuning")


def _lora_module(x, W, b, A, B, alpha):
    from minilm.finetune.lora import LoRALinear

    base = torch.nn.Linear(W.shape[1], W.shape[0])
    with torch.no_grad():
        base.weight.copy_(W)
        base.bias.copy_(b)
    layer = LoRALinear(base, rank=A.shape[0], alpha=alpha)
    with torch.no_grad():
        layer.lora_A.copy_(A)
        layer.lora_B.copy_(B)
        return layer(x)


def _merge_module(W, A, B, alpha):
    from minilm.finetune.lora import LoRALinear

    layer = LoRALinear(torch.nn.Linear(W.shape[1], W.shape[0], bias=False), rank=A.shape[0], alpha=alpha)
    with torch.no_grad():
        layer.base.weight.copy_(W)
        layer.lora_A.copy_(A)
        layer.lora_B.copy_(B)
        layer.merge()
        return layer.base.weight.detach().clone()


def _metrics(pred, labels, n):
    from minilm import finetune as ft

    return {"accuracy": ft.accuracy(pred, labels), "confusion": ft.confusion_matrix(pred, labels, n).tolist()}


def _count(shapes, keep):
    import re

    from minilm.finetune.lora import count_parameters, mark_only_lora_trainable

    module = torch.nn.Module()
    params = torch.nn.ParameterDict({n.replace(".", "_"): torch.nn.Parameter(torch.zeros(s)) for n, s in shapes.items()})
    module.p = params
    names = {n.replace(".", "_"): n for n in shapes}
    for key, p in params.items():
        p.requires_grad_("lora_" in names[key] or any(names[key].startswith(k) for k in keep))
    del re, mark_only_lora_trainable
    return list(count_parameters(module))


TRUSTED = {
    "lora_forward": _lora_module,
    "merge_lora": _merge_module,
    "last_token_pool": lambda h, mask: __import__("minilm.finetune", fromlist=["x"]).last_token_pool(h, mask),
    "accuracy_confusion": _metrics,
    "count_trainable": _count,
}
SHORTCUTS = {
    "lora_forward": _lora_module,
    "merge_lora": _merge_module,
    "last_token_pool": TRUSTED["last_token_pool"],
    "accuracy_confusion": _metrics,
    "count_trainable": _count,
}
SHORTCUTS_PYTORCH = {
    "lora_forward": lambda x, W, b, A, B, alpha: F.linear(x, W + alpha / A.shape[0] * B @ A, b),
    "accuracy_confusion": lambda p, t, n: {
        "accuracy": (p == t).float().mean().item(),
        "confusion": torch.bincount(t * n + p, minlength=n * n).reshape(n, n).tolist()},
}


def test_every_exercise_has_a_trusted_twin_and_a_shortcut():
    assert sorted(TRUSTED) == sorted(SHORTCUTS) == sorted(ex.id for ex in SET.exercises)


@pytest.mark.parametrize("ex", SET.exercises, ids=lambda ex: ex.id)
def test_reference_agrees_with_the_library(ex):
    reference = load_reference(SET.name, ROOT / "solutions")[ex.id]
    for seed in range(3):
        for args in ex.grading(random.Random(f"{seed}:{ex.id}")):
            want = TRUSTED[ex.id](*copy.deepcopy(args))
            got = reference(*copy.deepcopy(args))
            ok, why = same(decode(encode(want)), decode(encode(got)), max(ex.rtol, 1e-5), max(ex.atol, 1e-5))
            assert ok, f"{ex.id}{args}: {why}"


@pytest.mark.parametrize("ex", SET.exercises, ids=lambda ex: ex.id)
def test_check_refuses_the_library_shortcut(ex, capsys):
    for shortcut in (SHORTCUTS[ex.id], SHORTCUTS_PYTORCH.get(ex.id)):
        if shortcut is None:
            continue
        check(ex.id, shortcut)
        out = capsys.readouterr().out
        assert "not allowed in this exercise" in out, out
