"""What a student can act on: paste-able failing calls, public cases that cover the grading cases,
forbidden calls, changed inputs and strict dict keys, as check() reports them (every set)."""

from __future__ import annotations

import copy
import itertools
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from minilm.grading import check
from minilm.grading.authoring import load_reference
from minilm.grading.checker import params_of
from minilm.grading.compare import encode
from minilm.grading.forbid import Watcher, call_watched, resolve
from minilm.grading.pasteable import call_text
from minilm.grading.sets import all_sets

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = [(s, ex) for s in all_sets() for ex in s.exercises]
IDS = [f"{s.name}:{ex.id}" for s, ex in EXERCISES]


def input_classes(value, path: str) -> set[tuple[str, str]]:
    """The kinds of input a case holds, by place: tensors by dtype and number of dimensions,
    containers as empty or not, scalars by type."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return {(path, f"{type(value).__name__} {value.dtype} {value.ndim}-D")}
    if type(value) in (list, tuple, dict, str) and len(value) == 0:
        return {(path, f"empty {type(value).__name__}")}
    if type(value) in (list, tuple):
        return {(path, type(value).__name__)}.union(*(input_classes(v, path + "[]") for v in value))
    if type(value) is dict:
        out = {(path, "dict")}
        for k, v in value.items():
            out |= input_classes(k, path + "{key}") | input_classes(v, path + "{value}")
        return out
    return {(path, type(value).__name__)}


@pytest.mark.parametrize("exercise_set, ex", EXERCISES, ids=IDS)
def test_public_cases_cover_every_kind_of_input_the_grader_uses(exercise_set, ex):
    """So that an answer that passes check() fails at grading only for reasons the feedback names
    (LayerNorm over the wrong dimension fails a public case with 3-D input)."""
    public = set().union(*(input_classes(a, f"arg{i}") for c in ex.public for i, a in enumerate(c.args)))
    graded = set()
    for seed in ("1:a", "2:b", "3:c"):
        for args in ex.grading(random.Random(f"{seed}:{ex.id}")):
            graded |= set().union(*(input_classes(a, f"arg{i}") for i, a in enumerate(args)))
    assert not graded - public, f"{ex.id}: the grading cases use inputs no public case has: {sorted(graded - public)}"


@pytest.mark.parametrize("exercise_set, ex", EXERCISES, ids=IDS)
def test_a_failing_call_pasted_into_a_cell_rebuilds_the_grading_input_exactly(exercise_set, ex):
    reference = load_reference(exercise_set.name, ROOT / "solutions")
    params = params_of(reference[ex.id])
    for args in ex.grading(random.Random(f"9:zoe:{ex.id}")) + [c.args for c in ex.public]:
        text = call_text(ex.id, params, args, ex.show_call)
        seen: list = []

        def record(*given, _seen=seen):
            _seen.append(given)

        namespace = {"torch": torch, "np": np, ex.id: record}
        exec(compile(text, "<pasted>", "exec"), namespace)  # noqa: S102 - our own text
        assert len(seen) == 1, text
        assert encode(seen[0]) == encode(tuple(args)), f"{ex.id}: pasting\n{text}\ngives other inputs"


def test_big_tensors_are_shown_as_their_seeded_constructor():
    ex = {e.id: e for _, e in EXERCISES}["layer_norm"]
    args = ex.draw(random.Random("1:a:layer_norm"))[2]  # a (2, 3, 8) input
    text = call_text("layer_norm", ["x", "weight", "bias", "eps"], args)
    first = text.splitlines()[0]
    assert first.startswith("torch.manual_seed(") and "; x = torch.randn(2, 3, 8)" in first, text
    assert text.splitlines()[-1] == "layer_norm(x, weight, bias, 1e-05)"


def test_reference_solutions_use_nothing_their_exercise_forbids():
    for exercise_set in all_sets():
        reference = load_reference(exercise_set.name, ROOT / "solutions")
        for ex in exercise_set.exercises:
            banned, watcher = resolve(tuple(ex.forbidden)), Watcher()
            for args in ex.grading(random.Random(f"4:ref:{ex.id}")):
                call_watched(watcher, banned, ex.call, reference[ex.id], *copy.deepcopy(args))


def test_every_forbidden_name_resolves_and_every_exercise_declares_some():
    for _, ex in EXERCISES:
        assert ex.forbidden, f"{ex.id} forbids nothing: name the library's twin and PyTorch's"
        assert resolve(tuple(ex.forbidden)).names == tuple(ex.forbidden)


def test_check_says_a_forbidden_call_is_not_allowed_however_it_is_reached(capsys):
    import importlib.util

    import torch.nn.functional as F

    from minilm.models import attention as a

    copy_spec = importlib.util.spec_from_file_location("copy_of_attention", a.__file__)
    copied = importlib.util.module_from_spec(copy_spec)
    copy_spec.loader.exec_module(copied)
    ln = F.layer_norm
    shortcuts = {
        "layer_norm": [
            lambda x, w, b, eps: ln(x, (x.shape[-1],), w, b, eps),
            lambda x, w, b, eps: torch.nn.LayerNorm(x.shape[-1], eps=eps)(x) * w + b,
            lambda x, w, b, eps: torch.ops.aten.layer_norm(x, [x.shape[-1]], w, b, eps),
            lambda x, w, b, eps: __import__("minilm").models.attention.F.layer_norm(x, (x.shape[-1],), w, b, eps),
        ],
        "split_heads": [lambda x, n: copied.split_heads(x, n), lambda x, n: a.split_heads(x, n)],
        "softmax": [lambda x: torch.Tensor.softmax(x, -1), lambda x: x.softmax(-1), lambda x: torch.special.softmax(x, -1)],
    }
    for ex_id, fns in shortcuts.items():
        for fn in fns:
            check(ex_id, fn)
            out = capsys.readouterr().out
            assert "0 of" in out and "not allowed in this exercise" in out, out
            assert "because the exercise asks you to write it" in out


def test_check_fails_an_answer_that_changes_its_input(capsys):
    def apply_merges(ids, merges):
        for k, pair in enumerate(merges):
            i = 0
            while i < len(ids) - 1:
                if (ids[i], ids[i + 1]) == pair:
                    ids[i : i + 2] = [256 + k]
                i += 1
        return ids

    check("apply_merges", apply_merges)
    out = capsys.readouterr().out
    assert "modified its input (argument 1)" in out


def test_check_compares_dict_keys_by_type_and_order(capsys):
    def as_floats(chunks):
        out = {}
        for c in chunks:
            for p in itertools.pairwise(c):
                out[(float(p[0]), float(p[1]))] = out.get((float(p[0]), float(p[1])), 0) + 1
        return out

    def sorted_keys(chunks):
        out = {}
        for c in chunks:
            for p in itertools.pairwise(c):
                out[p] = out.get(p, 0) + 1
        return dict(sorted(out.items(), reverse=True))

    check("count_pairs", as_floats)
    out = capsys.readouterr().out
    assert "(1.0, 2.0)" in out and "compared by type" in out
    check("count_pairs", sorted_keys)
    out = capsys.readouterr().out
    assert "wrong order" in out and "order of first appearance" in out


def test_layer_norm_over_the_wrong_dimension_fails_a_public_case(capsys):
    def layer_norm(x, weight, bias, eps):  # normalises over dim 1: right only for 2-D input
        mean = x.mean(dim=1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=1, keepdim=True)
        return (x - mean) / torch.sqrt(var + eps) * weight + bias

    check("layer_norm", layer_norm)
    out = capsys.readouterr().out
    assert "[FAIL]" in out and "torch.manual_seed" not in out  # public cases are written out in full


def test_a_thread_started_before_the_graded_call_is_watched_too():
    """A worker kept in a global (started at cell time) cannot run the forbidden call unseen."""
    import json
    import queue
    import threading

    from minilm.grading.forbid import NotAllowed

    watcher = Watcher()
    watcher.watch_new_threads()  # what the grader's child does before any student code
    try:
        todo, done = queue.Queue(), queue.Queue()
        worker = threading.Thread(target=lambda: [done.put(f()) for f in iter(todo.get, None)], daemon=True)
        worker.start()

        def answer():
            todo.put(lambda: json.dumps([1]))
            return done.get()

        with pytest.raises(NotAllowed, match="json.dumps"):
            call_watched(watcher, resolve(("json.dumps",)), answer)
        assert call_watched(watcher, resolve(("json.dumps",)), lambda: 2) == 2  # and it is re-armed
        todo.put(None)
    finally:
        threading.setprofile(None)
