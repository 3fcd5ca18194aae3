"""The chain of notebook 09 at the smoke preset (minilm.align.pipeline): settings, caching, every stage runs."""

from __future__ import annotations

import torch

from minilm.align.pipeline import (
    chat_base,
    fingerprint,
    plain_val_loss,
    recipe_for,
    run_dpo,
    run_rl,
    run_sft,
    task_splits,
)
from minilm.recipes import ALIGN


def test_the_chain_runs_and_every_stage_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILM_CACHE_DIR", str(tmp_path))
    r = recipe_for("smoke")
    assert r.sft.max_steps == ALIGN["smoke"]["sft"]["max_steps"] and r.rl_group == ALIGN["smoke"]["rl_group"]
    base, tok, val_data = chat_base("smoke", "cpu", progress=False)
    assert base.config.vocab_size == tok.vocab_size == tok.base.vocab_size + 4
    splits = task_splits(r)
    assert [len(splits[s]) for s in ("train", "val", "test")] == [r.n_train, r.n_val, r.n_test]
    assert not {t.heads for t in splits["test"]} & {t.heads for t in splits["train"]}
    before = fingerprint(base)
    sft, history, info = run_sft(base, tok, splits, r, "cpu", "smoke", progress=False)
    assert not info["cached"] and history.steps[-1] == r.sft.max_steps
    assert fingerprint(base) == before  # the base model is copied, never trained in place
    again, _, info2 = run_sft(base, tok, splits, r, "cpu", "smoke", progress=False)
    assert info2["cached"] and info2["key"] == info["key"] and fingerprint(again) == fingerprint(sft)
    _, dh, _ = run_dpo(sft, tok, splits, r, "cpu", "smoke", progress=False)
    assert dh["n_pairs"] > 0 and len(dh["loss"]) == r.dpo_steps
    assert abs(dh["val_loss"][0] - torch.log(torch.tensor(2.0)).item()) < 1e-4  # the policy starts as the reference
    _, rh, _ = run_rl(sft, tok, splits, r, "cpu", "smoke", progress=False)
    assert len(rh["reward"]) == r.rl_steps and all(0 <= x <= 1 for x in rh["reward"])
    assert all(k >= 0 for k in rh["kl"])
    assert plain_val_loss(sft, val_data) > 0
