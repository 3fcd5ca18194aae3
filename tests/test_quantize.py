"""Hand-written int8/int4 quantization and magnitude pruning: round-trip errors, real file sizes,
exact sparsity, loaded models that match; and the measurement helper."""

from __future__ import annotations

import pytest
import torch

from minilm.generation.measure import measure_variants, step_times, tokens_per_second, val_loss
from minilm.generation.quantize import (
    QuantizedLinear,
    dequantize_int4,
    dequantize_int8,
    load_variant,
    pack_int4,
    prune_model,
    prune_tensor,
    quantize_int4,
    quantize_int8,
    save_variant,
    unpack_int4,
)
from minilm.models.gpt import GPT, GPTConfig


def _gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=32, vocab_size=40, n_layer=2, n_head=2, n_embd=64)).eval()


def test_int8_per_channel_round_trip_error_is_at_most_half_a_step():
    w = torch.randn(48, 80) * torch.logspace(-3, 1, 48)[:, None]  # rows of very different scales
    q, scale = quantize_int8(w)
    assert q.dtype == torch.int8 and q.shape == w.shape and scale.shape == (48,)
    assert q.abs().max() == 127 and q.abs().amax(dim=1).eq(127).all()  # every row uses the full range
    err = (dequantize_int8(q, scale) - w).abs()
    assert (err <= scale[:, None] / 2 + 1e-7).all()  # within half a quantization step, per row
    # against a per-tensor scale, small rows keep far more precision
    per_tensor = w.abs().max() / 127
    assert err[:8].max() < (torch.round(w[:8] / per_tensor) * per_tensor - w[:8]).abs().max() / 10
    zero_q, zero_s = quantize_int8(torch.zeros(3, 4))
    assert torch.equal(dequantize_int8(zero_q, zero_s), torch.zeros(3, 4))


def test_int4_packs_two_values_per_byte_with_group_scales():
    w = torch.randn(16, 64)
    packed, scales = quantize_int4(w, group_size=16)
    assert packed.dtype == torch.uint8 and packed.shape == (16, 32) and scales.shape == (16, 4)
    back = dequantize_int4(packed, scales)
    step = scales.float().repeat_interleave(16, dim=1)  # (16, 64): each weight's group scale
    assert ((back - w).abs() <= step / 2 + 1e-3 * step).all()
    # the packing itself: low nibble = even column, high = odd, stored as value + 8
    v = torch.tensor([[7.0, -7.0, 0.0, 3.0]])
    p, s = quantize_int4(v, group_size=4)
    assert s.item() == 1.0 and p.tolist() == [[15 | (1 << 4), 8 | (11 << 4)]]
    with pytest.raises(ValueError, match="group_size=5"):
        quantize_int4(w, 5)
    q = torch.randint(-8, 8, (5, 12), dtype=torch.int8)
    assert torch.equal(unpack_int4(pack_int4(q)), q) and pack_int4(q).shape == (5, 6)
    assert pack_int4(torch.tensor([[-8, 7]], dtype=torch.int8)).tolist() == [[0xF0]]


def test_pruning_sparsity_is_exact_and_removes_the_smallest():
    w = torch.randn(37, 29)
    for s in (0.0, 0.3, 0.5, 0.7, 0.9):
        p = prune_tensor(w, s)
        n_zero = int((p == 0).sum())
        assert n_zero == round(s * w.numel())
        kept = p != 0
        if n_zero:
            assert w[~kept].abs().max() <= w[kept].abs().min()
        assert torch.equal(p[kept], w[kept])
    ties = torch.ones(10)
    assert int((prune_tensor(ties, 0.5) == 0).sum()) == 5  # ties broken, count still exact
    with pytest.raises(ValueError, match=r"sparsity=1.0 must be in \[0, 1\)"):
        prune_tensor(w, 1.0)
    model = prune_model(_gpt(), 0.7)
    for block in model.transformer.h:
        for lin in (block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj):
            assert int((lin.weight == 0).sum()) == round(0.7 * lin.weight.numel())


def test_files_are_real_and_their_sizes_shrink(tmp_path):
    model = _gpt()
    idx = torch.randint(0, 40, (2, 32))
    ref = model(idx)[0]
    sizes = {s: save_variant(model, tmp_path / f"{s}.pt", s) for s in ("fp32", "int8", "int4")}
    assert all(sizes[s] == (tmp_path / f"{s}.pt").stat().st_size for s in sizes)
    n_params = model.num_params(non_embedding=False)
    assert sizes["fp32"] >= 4 * n_params
    assert sizes["fp32"] / sizes["int8"] > 3.0 and sizes["fp32"] / sizes["int4"] > 4.5
    assert torch.equal(load_variant(tmp_path / "fp32.pt")(idx)[0], ref)
    for scheme, tol in (("int8", 0.05), ("int4", 0.5)):
        q = load_variant(tmp_path / f"{scheme}.pt")
        assert isinstance(q.transformer.h[0].attn.c_attn, QuantizedLinear)
        dense = load_variant(tmp_path / f"{scheme}.pt", keep_quantized=False)
        out = q(idx)[0]
        assert (out - dense(idx)[0]).abs().max() < 1e-4
        assert 0 < (out - ref).abs().max() < tol
    pruned = prune_model(_gpt(), 0.9)
    size = save_variant(pruned, tmp_path / "p90.pt", "pruned")
    assert size < sizes["fp32"] / 3
    back = load_variant(tmp_path / "p90.pt")
    assert torch.equal(back.transformer.h[1].mlp.c_fc.weight, pruned.transformer.h[1].mlp.c_fc.weight)
    assert torch.equal(back(idx)[0], pruned(idx)[0])
    with pytest.raises(ValueError, match="scheme='int2'"):
        save_variant(model, tmp_path / "x.pt", "int2")
    torch.save({"a": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a file of minilm.generation.quantize.save_variant"):
        load_variant(tmp_path / "other.pt")


def test_measurement_helper(tmp_path):
    model = _gpt()
    val = torch.randint(0, 40, (500,))
    assert tokens_per_second(model, n_tokens=8) > 0
    assert val_loss(model, val, n_batches=2) == val_loss(model, val, n_batches=2)  # fixed batches
    assert len(step_times(model, [0, 10, 31], use_cache=True, repeats=1)) == 3
    rows = measure_variants(model, val, tmp_path, sparsities=(0.5,), n_tokens=8, n_batches=2)
    assert [r.name for r in rows] == ["fp32", "int8", "int4", "pruned 50%"]
    assert rows[0].size_ratio == 1.0 and rows[1].size_ratio > 3 and rows[2].size_ratio > rows[1].size_ratio
    assert all(r.file_bytes == (tmp_path / f).stat().st_size
               for r, f in zip(rows, ["fp32.pt", "int8.pt", "int4.pt", "pruned50.pt"]))
    assert abs(rows[1].loss_delta) < 0.05
