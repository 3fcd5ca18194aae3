"""The modern block's pieces, each written by hand in minilm and checked against a trusted reference:
RMSNorm against torch.nn.RMSNorm (and the formula), rotary embeddings against transformers' Llama code
(and the property that a score depends only on the relative position), SwiGLU against transformers'
LlamaMLP, grouped-query attention against full multi-head attention with repeated key/value heads
(and the KV-cache bytes it saves); then the course's machinery on a modern GPT: the training loop,
checkpoints, quantization, LoRA; and configs: defaults are GPT-2's, cache keys unchanged."""

from __future__ import annotations

import json
import math

import pytest
import torch

from minilm.models.attention import (
    CausalSelfAttention,
    apply_rope,
    explicit_attention,
    fused_attention,
    repeat_kv,
    rope_cache,
)
from minilm.models.gpt import GPT, GPT2_FIELDS, GPTConfig, RMSNorm, SwiGLU

transformers = pytest.importorskip("transformers")
llama = pytest.importorskip("transformers.models.llama.modeling_llama")


def _llama_config(**kw):
    base = {"vocab_size": 50, "hidden_size": 60, "intermediate_size": 70, "num_hidden_layers": 2, "num_attention_heads": 6,
                "num_key_value_heads": 2, "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 500.0}
    return transformers.LlamaConfig(**{**base, **kw})


def test_rmsnorm_equals_torch_and_the_formula():
    x = torch.randn(3, 5, 12) * 3 + 1
    ours = RMSNorm(12, eps=1e-5)
    with torch.no_grad():
        ours.weight.copy_(torch.randn(12))
    by_hand = x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + 1e-5) * ours.weight
    assert torch.allclose(ours(x), by_hand, atol=1e-6)
    if hasattr(torch.nn, "RMSNorm"):  # PyTorch >= 2.4
        ref = torch.nn.RMSNorm(12, eps=1e-5)
        with torch.no_grad():
            ref.weight.copy_(ours.weight)
        assert torch.allclose(ours(x), ref(x), atol=1e-6)
    # unlike LayerNorm, the mean is not removed: a constant vector keeps its sign
    assert (RMSNorm(4)(torch.full((1, 4), 3.0)) > 0.99).all()


def test_rope_equals_transformers_llama_rotary_code():
    hs, T, theta = 10, 17, 500.0  # head size not a power of two
    cfg = _llama_config(hidden_size=60, num_attention_heads=6)  # head_dim 10
    rotary = llama.LlamaRotaryEmbedding(cfg)
    q, k = torch.randn(2, 6, T, hs), torch.randn(2, 2, T, hs)
    pos = torch.arange(3, 3 + T)[None]  # positions after 3 earlier tokens
    cos_ref, sin_ref = rotary(q, pos)  # (1, T, hs)
    cos, sin = rope_cache(64, hs, theta)
    assert torch.allclose(cos[3:3 + T], cos_ref[0], atol=1e-6) and torch.allclose(sin[3:3 + T], sin_ref[0], atol=1e-6)
    q_ref, k_ref = llama.apply_rotary_pos_emb(q, k, cos_ref, sin_ref)
    assert torch.allclose(apply_rope(q, cos[3:3 + T], sin[3:3 + T]), q_ref, atol=1e-6)
    assert torch.allclose(apply_rope(k, cos[3:3 + T], sin[3:3 + T]), k_ref, atol=1e-6)


def test_rope_score_depends_only_on_relative_position_and_keeps_lengths():
    hs = 10
    cos, sin = rope_cache(200, hs, 10000.0)
    q, k = torch.randn(hs), torch.randn(hs)

    def score(m: int, n: int) -> float:
        return (apply_rope(q[None], cos[m:m + 1], sin[m:m + 1]) @ apply_rope(k[None], cos[n:n + 1], sin[n:n + 1]).T).item()

    for m, n, shift in [(5, 2, 40), (9, 9, 100), (3, 7, 150)]:
        assert math.isclose(score(m, n), score(m + shift, n + shift), rel_tol=1e-4, abs_tol=1e-4)
    assert abs(score(5, 2) - score(5, 4)) > 1e-3  # another distance, another score
    rotated = apply_rope(q[None].expand(200, hs), cos, sin)
    assert torch.allclose(rotated.norm(dim=-1), q.norm().expand(200), atol=1e-5)  # rotations keep lengths
    assert torch.allclose(rotated[0], q)  # position 0: no turn


def test_swiglu_equals_transformers_llama_mlp():
    cfg = _llama_config(hidden_size=12, intermediate_size=22)
    ref = llama.LlamaMLP(cfg)
    ours = SwiGLU(GPTConfig.modern(n_embd=12, n_head=3, mlp_hidden=22))
    with torch.no_grad():
        ours.c_fc.weight.copy_(torch.cat([ref.gate_proj.weight, ref.up_proj.weight]))
        ours.c_proj.weight.copy_(ref.down_proj.weight)
    x = torch.randn(2, 7, 12)
    assert torch.allclose(ours(x), ref(x), atol=1e-6)
    g, u = x @ ref.gate_proj.weight.T, x @ ref.up_proj.weight.T
    assert torch.allclose(ours(x), (g * torch.sigmoid(g) * u) @ ref.down_proj.weight.T, atol=1e-6)
    # as many weights as GPT-2's 4C GELU MLP (8C/3 rounded up to a multiple of 8)
    assert GPTConfig.modern(n_embd=384, n_head=6).mlp_width == 1024


@pytest.mark.parametrize("sdpa", [True, False], ids=["sdpa", "explicit"])
def test_grouped_query_attention_equals_repeating_the_key_value_heads(sdpa):
    torch.manual_seed(0)
    C, nh, n_kv, hs = 60, 6, 2, 10
    gqa = CausalSelfAttention(C, nh, sdpa=sdpa, n_kv_head=n_kv)
    mha = CausalSelfAttention(C, nh, sdpa=sdpa)
    with torch.no_grad():  # full attention whose k and v heads are copies: head j uses kv head j // 3
        W, b = gqa.c_attn.weight, gqa.c_attn.bias
        wq, wk, wv = W.split([C, n_kv * hs, n_kv * hs])
        bq, bk, bv = b.split([C, n_kv * hs, n_kv * hs])
        rep = lambda t: t.reshape(n_kv, hs, *t.shape[1:]).repeat_interleave(nh // n_kv, 0).reshape(C, *t.shape[1:])
        mha.c_attn.weight.copy_(torch.cat([wq, rep(wk), rep(wv)]))
        mha.c_attn.bias.copy_(torch.cat([bq, rep(bk), rep(bv)]))
        mha.c_proj.load_state_dict(gqa.c_proj.state_dict())
    x = torch.randn(2, 9, C)
    cos, sin = rope_cache(9, hs)
    assert torch.allclose(gqa(x), mha(x), atol=1e-5)
    assert torch.allclose(gqa(x, rope=(cos, sin)), mha(x, rope=(cos, sin)), atol=1e-5)
    q, k, v = torch.randn(2, 6, 4, hs), torch.randn(2, 2, 7, hs), torch.randn(2, 2, 7, hs)
    assert torch.equal(repeat_kv(k, 3), llama.repeat_kv(k, 3))  # transformers' own repeat
    full = explicit_attention(q, repeat_kv(k, 3), repeat_kv(v, 3))  # 3 cached keys, then 4 queries
    assert torch.allclose(explicit_attention(q, k, v), full, atol=1e-6)
    assert torch.allclose(fused_attention(q, k, v), full, atol=1e-5)
    with pytest.raises(ValueError, match="n_head=6 must be a multiple of n_kv_head=4"):
        CausalSelfAttention(C, nh, n_kv_head=4)


def test_grouped_query_attention_shrinks_the_kv_cache_by_n_head_over_n_kv_head():
    sizes = {}
    for n_kv in (6, 2, 1):
        model = GPT(GPTConfig.modern(block_size=16, vocab_size=20, n_layer=3, n_head=6, n_embd=60, n_kv_head=n_kv))
        cache = model.new_kv_cache(2)
        sizes[n_kv] = cache.bytes_per_token()
        assert sizes[n_kv] == 2 * 3 * n_kv * 10 * 4  # k and v, layers, kv heads, head size, fp32
        assert cache.nbytes == 2 * sizes[n_kv] * 16
        assert cache.k.shape == (3, 2, n_kv, 16, 10)
    assert sizes[6] == 3 * sizes[2] == 6 * sizes[1]
    full = GPT(GPTConfig.modern(block_size=16, vocab_size=20, n_layer=3, n_head=6, n_embd=60, n_kv_head=2))
    assert full.num_params() < GPT(GPTConfig.modern(block_size=16, vocab_size=20, n_layer=3, n_head=6,
                                                    n_embd=60)).num_params()


def test_default_config_is_gpt2_and_its_cache_key_is_unchanged():
    cfg = GPTConfig()
    assert list(cfg.key_dict()) == list(GPT2_FIELDS)  # the 8 fields hashed before the modern block
    # the JSON the zoo hashed for this config before the modern block existed
    old = json.dumps({"block_size": 256, "vocab_size": 65, "n_layer": 6, "n_head": 6, "n_embd": 384,
                      "dropout": 0.0, "bias": True, "sdpa": True}, sort_keys=True)
    assert json.dumps(cfg.key_dict(), sort_keys=True) == old
    modern = GPTConfig.modern(n_kv_head=2)
    assert {"norm", "position", "mlp", "n_kv_head"} <= set(modern.key_dict())
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=2, n_embd=8))
    assert [n for n, _ in model.named_parameters()][:2] == ["transformer.wte.weight", "transformer.wpe.weight"]
    assert isinstance(model.transformer.h[0].ln_1, torch.nn.LayerNorm)
    for bad, match in [({"norm": "batchnorm"}, "norm='batchnorm' is not one of"),
                       ({"n_head": 4, "n_kv_head": 3}, "n_head=4 must be a multiple of n_kv_head=3"),
                       ({"n_embd": 18, "n_head": 2, "position": "rope"}, "head size n_embd / n_head = 9 must be even")]:
        with pytest.raises(ValueError, match=match):
            GPTConfig(**bad)


def _modern(**kw) -> GPT:
    torch.manual_seed(0)
    cfg = {"block_size": 32, "vocab_size": 29, "n_layer": 2, "n_head": 6, "n_embd": 60, "n_kv_head": 2, "tie_weights": False}
    return GPT(GPTConfig.modern(**{**cfg, **kw}))


def test_training_loop_and_checkpoint_work_on_a_modern_gpt(tmp_path):
    from minilm.training.checkpoint import model_from_checkpoint, save_checkpoint
    from minilm.training.loop import TrainConfig, train

    model = _modern()
    assert "wpe" not in model.transformer and not any("wpe" in n for n in model.state_dict())
    assert model.lm_head.weight is not model.transformer.wte.weight  # untied
    data = torch.arange(600) % 29  # a cycle: learnable
    g = torch.Generator().manual_seed(0)

    def batch(split):
        i = torch.randint(0, len(data) - 33, (8,), generator=g)
        x = torch.stack([data[j:j + 32] for j in i.tolist()])
        return x, torch.stack([data[j + 1:j + 33] for j in i.tolist()])

    history = train(model, batch, TrainConfig(max_steps=60, learning_rate=3e-3, eval_interval=30, eval_iters=2,
                                              progress=False), "cpu")
    assert history.val_loss[-1] < 0.5 * math.log(29), history.val_loss  # it learned the cycle
    path = save_checkpoint(tmp_path / "m.pt", model.eval(), None, 60)
    again = model_from_checkpoint(path, GPT, GPTConfig).eval()
    x = torch.randint(0, 29, (2, 20))
    with torch.no_grad():
        assert torch.equal(again(x)[0], model(x)[0])


def test_quantization_and_lora_work_on_a_modern_gpt(tmp_path):
    from minilm.finetune.lora import apply_lora, merge_lora
    from minilm.generation.quantize import load_variant, save_variant

    model = _modern(tie_weights=True).eval()
    x = torch.randint(0, 29, (2, 20))
    with torch.no_grad():
        ref = model(x)[0]
        fp32 = save_variant(model, tmp_path / "fp32.pt", "fp32")
        int8 = save_variant(model, tmp_path / "int8.pt", "int8")
        assert torch.allclose(load_variant(tmp_path / "fp32.pt")(x)[0], ref, atol=1e-6)
        q = load_variant(tmp_path / "int8.pt")
        assert 0 < (q(x)[0] - ref).abs().max() < 0.05  # int8: close, not equal
    assert int8 < 0.4 * fp32
    untied = _modern()  # its own output layer is saved too
    save_variant(untied, tmp_path / "untied.pt", "int8")
    with torch.no_grad():
        assert (load_variant(tmp_path / "untied.pt")(x)[0] - untied(x)[0]).abs().max() < 0.05
    names = apply_lora(model, r"attn\.c_attn|mlp\.c_fc", rank=4, alpha=8)
    assert len(names) == 4
    with torch.no_grad():
        assert torch.allclose(model(x)[0], ref, atol=1e-6)  # B = 0: nothing changes yet
        for layer in model.modules():
            if hasattr(layer, "lora_B"):
                layer.lora_B.normal_()
        adapted = model(x)[0]
        assert (adapted - ref).abs().max() > 1e-3
        merge_lora(model)
        assert torch.allclose(model(x)[0], adapted, atol=1e-4)


def test_the_architecture_benchmark_pairs_seeds_and_reads_its_intervals(tmp_path, monkeypatch):
    """benchmarks/modern.py: three arms on the same recipe, paired by seed; a verdict only from the interval."""
    import importlib.util
    import json
    from pathlib import Path

    monkeypatch.setenv("MINILM_PRESET", "smoke")
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "modern.py"
    spec = importlib.util.spec_from_file_location("bench_modern", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.interval([1.0, 3.0]) == (2.0, pytest.approx(12.706 * 2 ** 0.5 / 2 ** 0.5))
    out = tmp_path / "m.json"
    assert bench.main(["--seeds", "2", "--steps", "4", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert set(result["runs"]) == {"gpt2", "modern", "modern-gqa"}
    assert [r["seed"] for r in result["runs"]["modern"]] == [0, 1]
    gqa, mha = (result["runs"][k][0]["kv_bytes_per_token"] for k in ("modern-gqa", "modern"))
    assert gqa * 2 == mha
    for name, row in result["summary"].items():
        if name != "gpt2":
            lo, hi = row["paired_diff"] - row["paired_diff_ci95"], row["paired_diff"] + row["paired_diff_ci95"]
            assert (row["verdict"] == "no difference measured") == (lo <= 0 <= hi)
