"""Hand-written int8/int4 quantization and magnitude pruning: round-trip errors, real file sizes,
exact sparsity, loaded models that match; and the measurement helper."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from minilm.generation import measure
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


def test_int8_and_int4_round_trips_by_hand():
    """Worked examples: the stored integers and the errors, computed by hand from the rules of the module."""
    q, scale = quantize_int8(torch.tensor([[2.54, -1.0, 0.047, 0.011]]))
    assert scale.item() == pytest.approx(2.54 / 127)  # 0.02: the largest weight maps to 127
    assert q.tolist() == [[127, -50, 2, 1]]  # 2.54/0.02, -1/0.02, 2.35 -> 2, 0.55 -> 1
    err = (dequantize_int8(q, scale) - torch.tensor([[2.54, -1.0, 0.047, 0.011]])).abs()[0].tolist()
    assert err == pytest.approx([0.0, 0.0, 0.007, 0.009], abs=1e-6)  # 0.04 for 0.047, 0.02 for 0.011
    assert max(err) <= scale.item() / 2
    # int4: one group of 4, scale 1.4 / 7 = 0.2 stored in fp16 (0.199951...), values -7..7
    w = torch.tensor([[1.4, -0.5, 0.33, 0.0]])
    packed, scales = quantize_int4(w, group_size=4)
    s16 = float(torch.tensor(0.2, dtype=torch.float16))
    assert scales.item() == s16
    assert unpack_int4(packed).tolist() == [[7, -3, 2, 0]]  # 1.4/s16 = 7.0002 -> 7, -2.5006 -> -3, 1.65 -> 2
    assert packed.tolist() == [[(7 + 8) | ((-3 + 8) << 4), (2 + 8) | ((0 + 8) << 4)]]
    back = dequantize_int4(packed, scales)[0].tolist()
    assert back == pytest.approx([7 * s16, -3 * s16, 2 * s16, 0.0], abs=1e-6)
    errs = [abs(b - a) for a, b in zip([1.4, -0.5, 0.33, 0.0], back)]
    assert errs == pytest.approx([1.4 - 7 * s16, 3 * s16 - 0.5, 2 * s16 - 0.33, 0.0], abs=1e-6)
    assert max(errs) == pytest.approx(3 * s16 - 0.5, abs=1e-6) and max(errs) <= s16 / 2 + 1e-6  # 0.0999 < 0.1


def test_int4_uses_15_symmetric_levels():
    """quantize_int4 stores -7..7 (15 levels, symmetric like int8's -127..127); -8, which the nibble could
    hold, is never produced."""
    w = torch.randn(64, 128)
    levels = unpack_int4(quantize_int4(w, group_size=32)[0])
    assert int(levels.min()) == -7 and int(levels.max()) == 7 and len(levels.unique()) == 15


class _ClockedModel(nn.Module):
    """A stand-in for a GPT whose every forward pass costs `cost(T)` seconds of a fake clock (T: tokens fed)."""

    def __init__(self, clock: list[float], cost) -> None:
        super().__init__()
        self.gpt = _gpt()
        self.config, self.block_size, self.clock, self.cost = self.gpt.config, self.gpt.block_size, clock, cost
        self.gpt.register_forward_pre_hook(lambda _m, args: clock.__setitem__(0, clock[0] + cost(args[0].shape[1])))

    def forward(self, idx, targets=None, kv_cache=None):
        return self.gpt(idx, targets, kv_cache=kv_cache)

    def new_kv_cache(self, batch_size):
        return self.gpt.new_kv_cache(batch_size)


def test_tokens_per_second_and_step_times_with_a_fake_clock(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(measure.time, "perf_counter", lambda: clock[0])
    flat = _ClockedModel(clock, lambda T: 0.01)  # every forward pass: 10 ms
    for n, b in ((8, 1), (20, 4)):
        # cached: one prefill + n - 1 steps = n forward passes = n * 10 ms for b * n tokens
        assert tokens_per_second(flat, n_tokens=n, batch_size=b, use_cache=True) == pytest.approx(100 * b)
        assert tokens_per_second(flat, n_tokens=n, batch_size=b, use_cache=False) == pytest.approx(100 * b)
    linear = _ClockedModel(clock, lambda T: 0.001 * T)  # 1 ms per token fed
    # uncached from a 1-token prompt: the passes read 1, 2, ..., n tokens: n (n + 1) / 2 ms for n tokens
    assert tokens_per_second(linear, n_tokens=10, use_cache=False) == pytest.approx(10 / 0.055)
    assert tokens_per_second(linear, n_tokens=10, use_cache=True, prompt_len=5) == pytest.approx(10 / 0.014)
    # one step at position p: p + 1 tokens without the cache, one with it (the prefix is not timed)
    assert step_times(linear, [0, 10, 31], use_cache=False, repeats=3) == pytest.approx([0.001, 0.011, 0.032])
    assert step_times(linear, [0, 10, 31], use_cache=True, repeats=3) == pytest.approx([0.001] * 3)


def test_val_loss_against_hand_computed_values():
    val = torch.randint(0, 40, (500,), generator=torch.Generator().manual_seed(0))
    uniform = _gpt()
    with torch.no_grad():
        uniform.transformer.wte.weight.zero_()  # tied output layer: every logit 0, the loss is log(40)
    assert val_loss(uniform, val, n_batches=3) == pytest.approx(math.log(40), abs=1e-5)

    class Shift(nn.Module):  # "loss" = mean of targets - inputs: 1 exactly when y is x shifted by one
        block_size = 16

        def forward(self, x, y):
            return None, (y - x).float().mean()

    Shift.parameters = lambda self: iter([torch.zeros(1)])
    assert val_loss(Shift(), torch.arange(300), n_batches=4, batch_size=5) == 1.0
    with pytest.raises(ValueError, match="needs more than block_size"):
        val_loss(Shift(), torch.arange(17))


def test_measure_variants(tmp_path):
    model = _gpt()
    val = torch.randint(0, 40, (500,))
    rows = measure_variants(model, val, tmp_path, sparsities=(0.5,), n_tokens=8, n_batches=2, repeats=3)
    assert [r.name for r in rows] == ["fp32", "int8", "int4", "pruned 50%"]
    assert rows[0].size_ratio == 1.0 and rows[1].size_ratio > 3 and rows[2].size_ratio > rows[1].size_ratio
    assert all(r.file_bytes == (tmp_path / f).stat().st_size
               for r, f in zip(rows, ["fp32.pt", "int8.pt", "int4.pt", "pruned50.pt"]))
    assert rows[0].val_loss == pytest.approx(val_loss(model, val, n_batches=2))
    assert abs(rows[1].loss_delta) < 0.05
    for r in rows:
        assert r.loss_delta == pytest.approx(r.val_loss - rows[0].val_loss)
        assert r.speed_ratio == pytest.approx(r.tokens_per_s / rows[0].tokens_per_s)
        assert len(r.tokens_per_s_runs) == 3 and r.tokens_per_s == max(r.tokens_per_s_runs)


def test_variants_are_timed_in_turns(monkeypatch):
    """interleaved_rates: one run of every model per round (a change in load hits them alike), each warmed up."""
    from minilm.generation.measure import interleaved_rates

    clock, order = [0.0], []
    monkeypatch.setattr(measure.time, "perf_counter", lambda: clock[0])
    models = [_ClockedModel(clock, lambda T, c=c: c) for c in (0.01, 0.02)]
    for name, m in zip("ab", models):
        m.gpt.register_forward_pre_hook(lambda _m, _a, name=name: order.append(name))
    runs = interleaved_rates(models, n_tokens=5, repeats=3)
    assert runs == [pytest.approx([100.0] * 3), pytest.approx([50.0] * 3)]  # 5 passes of 10 ms, of 20 ms
    assert "".join(order) == "a" * 5 + "b" * 5 + ("a" * 5 + "b" * 5) * 3  # warm-ups, then rounds
