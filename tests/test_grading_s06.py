"""Set 06 (generation): the reference solutions agree with trusted implementations (minilm.generation,
minilm.generation.quantize, F.scaled_dot_product_attention) on every grading input, and check() refuses an answer
that hands the work to them."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from minilm.generation.quantize import dequantize_int8, pack_int4, quantize_int8
from minilm.generation.sampling import sample_next, top_k_filter, top_p_mask
from minilm.grading import check
from minilm.grading.authoring import load_reference
from minilm.grading.compare import decode, encode, same
from minilm.grading.sets import get_set

ROOT = Path(__file__).resolve().parents[1]
SET = get_set("06_generation")


def _kv_step(q, k_new, v_new, k_cache, v_cache):
    k, v = torch.cat([k_cache, k_new], dim=2), torch.cat([v_cache, v_new], dim=2)
    return F.scaled_dot_product_attention(q, k, v), k, v  # one query, the last position: no mask


TRUSTED = {
    "top_k_filter": top_k_filter,
    "top_p_mask": top_p_mask,
    "sample_with_temperature": lambda z, t, seed: sample_next(z, t, generator=torch.Generator().manual_seed(seed)),
    "kv_attention_step": _kv_step,
    "int8_quantize": quantize_int8,
    "int8_dequantize": dequantize_int8,
    "int4_pack": pack_int4,
}


def test_every_exercise_has_a_trusted_twin():
    assert sorted(TRUSTED) == sorted(ex.id for ex in SET.exercises) and len(SET.exercises) >= 5


@pytest.mark.parametrize("ex", SET.exercises, ids=lambda ex: ex.id)
def test_reference_agrees_with_the_trusted_implementation(ex):
    reference = load_reference(SET.name, ROOT / "solutions")
    checked = 0
    for seed in ("1:alice", "2:bob", "3:carol"):
        for args in ex.grading(random.Random(f"{seed}:{ex.id}")):
            got = ex.call(reference[ex.id], *copy.deepcopy(args))
            want = TRUSTED[ex.id](*copy.deepcopy(args))
            ok, why = same(tuple(want) if isinstance(want, tuple) else want, got, ex.rtol, ex.atol)
            assert ok, f"{ex.id}: reference differs from the trusted implementation: {why}"
            checked += 1
    assert checked >= 15


@pytest.mark.parametrize("ex", SET.exercises, ids=lambda ex: ex.id)
def test_check_refuses_the_shortcut_through_the_library(ex, capsys):
    shortcut = TRUSTED[ex.id]
    right = sum(same(case.expected, decode(encode(ex.call(shortcut, *copy.deepcopy(case.args)))),
                     ex.rtol, ex.atol)[0] for case in ex.public)
    assert right == len(ex.public), f"{ex.id}: unwatched, the shortcut is a right answer"
    check(ex.id, shortcut)
    out = capsys.readouterr().out
    assert out.count("not allowed in this exercise") == len(ex.public), out


def test_top_p_reference_handles_the_boundary_and_ties_as_documented():
    reference = load_reference(SET.name, ROOT / "solutions")["top_p_mask"]
    probs = torch.tensor([[0.5, 0.25, 0.125, 0.125]])
    assert reference(probs, 0.75).tolist() == [[True, True, False, False]]  # 0.75 before the third: out
    assert reference(probs, 0.7500001).tolist() == [[True, True, True, True]]  # in, with its tie
