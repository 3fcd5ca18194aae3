"""The KV cache: cached logits equal full recomputation (both attention paths, batch > 1, 200 steps,
GPT-2-style and modern: rotary positions offset by the cache length, grouped-query attention), within
and past block_size (on exactly the context the re-prefill policy keeps); greedy tokens equal and equal
to transformers' GPT-2 loaded by minilm's own loader; the cache kept in the compute dtype under
autocast, with bytes_per_token of that dtype; sampling reproducible with a seeded generator; top-p
semantics; bad arguments named."""

from __future__ import annotations

import pytest
import torch

from minilm.generation.sampling import (
    CachedDecoder,
    generate,
    sample_next,
    stream,
    top_k_filter,
    top_p_mask,
)
from minilm.models.attention import KVCache, explicit_attention, fused_attention
from minilm.models.gpt import GPT, GPTConfig
from minilm.models.gpt2 import gpt_from_hf


def _gpt(sdpa: bool, block_size: int = 256, seed: int = 0, modern: bool = False) -> GPT:
    torch.manual_seed(seed)
    cfg = GPTConfig(block_size=block_size, vocab_size=23, n_layer=2, n_head=4, n_embd=32, sdpa=sdpa)
    if modern:  # RMSNorm, rotary positions, SwiGLU, 2 query heads per key/value head
        cfg = GPTConfig.modern(block_size=block_size, vocab_size=23, n_layer=2, n_head=4, n_embd=32, sdpa=sdpa,
                               n_kv_head=2)
    model = GPT(cfg).eval()
    with torch.no_grad():  # larger than init weights, so that attention is far from uniform
        for p in model.parameters():
            p.mul_(4.0)
    return model


@pytest.mark.parametrize("modern", [False, True], ids=["gpt2", "modern"])
@pytest.mark.parametrize("sdpa", [True, False], ids=["sdpa", "explicit"])
def test_cached_logits_equal_recomputation_for_200_steps(sdpa, modern):
    model = _gpt(sdpa, block_size=256, modern=modern)
    B = 3
    gen = torch.Generator().manual_seed(1)
    seq = torch.randint(0, 23, (B, 5), generator=gen)
    decoder = CachedDecoder(model, B)
    with torch.no_grad():
        logits = decoder.prefill(seq)
        worst = 0.0
        for _ in range(200):
            full = model(seq)[0][:, -1, :]  # recomputed from scratch on the whole sequence
            worst = max(worst, (logits - full).abs().max().item())
            nxt = torch.randint(0, 23, (B, 1), generator=gen)
            seq = torch.cat([seq, nxt], dim=1)
            logits = decoder.step(nxt)
    assert seq.shape[1] == 205 <= model.block_size and decoder.refills == 0
    assert torch.equal(decoder.context, seq)  # the cache holds the whole sequence
    assert worst <= 1e-5, worst


@pytest.mark.parametrize("modern", [False, True], ids=["gpt2", "modern"])
@pytest.mark.parametrize("sdpa", [True, False], ids=["sdpa", "explicit"])
@pytest.mark.parametrize("keep", [None, 5])
def test_past_block_size_equals_recomputation_on_the_kept_context(sdpa, keep, modern):
    model = _gpt(sdpa, block_size=16, modern=modern)
    B = 2
    gen = torch.Generator().manual_seed(2)
    seq = torch.randint(0, 23, (B, 3), generator=gen)
    decoder = CachedDecoder(model, B, keep=keep)
    kept = keep or 8
    with torch.no_grad():
        logits = decoder.prefill(seq)
        for step in range(60):
            ctx = decoder.context
            assert torch.equal(ctx, seq[:, -ctx.shape[1]:])  # the context is the sequence's tail
            assert (kept if step > 13 else 3) <= ctx.shape[1] <= 16
            full = model(ctx)[0][:, -1, :]
            assert (logits - full).abs().max().item() <= 1e-5, step
            nxt = torch.randint(0, 23, (B, 1), generator=gen)
            seq = torch.cat([seq, nxt], dim=1)
            logits = decoder.step(nxt)
    assert decoder.refills >= 3
    # the policy: full at 16, restart from the last `kept` tokens, so L goes kept, kept+1, .., 16
    lengths = []
    with torch.no_grad():
        d = CachedDecoder(model, 1, keep=keep)
        d.prefill(torch.zeros(1, 16, dtype=torch.long))
        for _ in range(20):
            d.step(torch.zeros(1, 1, dtype=torch.long))
            lengths.append(d.context.shape[1])
    assert lengths[:2] == [kept, kept + 1] and max(lengths) == 16


@pytest.mark.parametrize("sdpa", [True, False], ids=["sdpa", "explicit"])
def test_greedy_tokens_equal_with_and_without_cache(sdpa):
    model = _gpt(sdpa, block_size=64)
    prompt = torch.randint(0, 23, (4, 7), generator=torch.Generator().manual_seed(3))
    a = generate(model, prompt, 50, temperature=0.0, use_cache=False)
    b = generate(model, prompt, 50, temperature=0.0, use_cache=True)
    assert a.shape == (4, 57) and torch.equal(a, b)


def test_sampled_tokens_equal_with_and_without_cache_and_reproduce():
    model = _gpt(True, block_size=64)
    prompt = torch.randint(0, 23, (2, 4), generator=torch.Generator().manual_seed(4))
    runs = [generate(model, prompt, 40, temperature=0.9, top_k=10, top_p=0.9, use_cache=c,
                     generator=torch.Generator().manual_seed(7)) for c in (False, True, True)]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[1], runs[2])
    other = generate(model, prompt, 40, temperature=0.9, use_cache=True, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(runs[0], other)


def test_both_attention_paths_agree_with_a_cache_offset():
    q = torch.randn(2, 3, 4, 8)
    k, v = torch.randn(2, 3, 10, 8), torch.randn(2, 3, 10, 8)  # 6 cached keys, then 4 new queries
    a, b = explicit_attention(q, k, v), fused_attention(q, k, v)
    assert (a - b).abs().max() < 1e-5
    # query t sits at position 6 + t: attending to the first 7 + t keys without a mask gives the same
    for t in range(4):
        ref = torch.nn.functional.scaled_dot_product_attention(q[:, :, t:t + 1], k[:, :, :7 + t], v[:, :, :7 + t])
        assert (a[:, :, t:t + 1] - ref).abs().max() < 1e-5


def test_kv_cache_bookkeeping_and_errors():
    model = _gpt(True, block_size=8)
    cache = model.new_kv_cache(2)
    assert isinstance(cache, KVCache) and cache.nbytes == 2 * 2 * 2 * 4 * 8 * 8 * 4
    assert cache.bytes_per_token() == 2 * 2 * 32 * 4
    model(torch.zeros(2, 5, dtype=torch.long), kv_cache=cache)
    assert cache.length == 5
    with pytest.raises(ValueError, match="after the 5 cached positions is longer than block_size=8"):
        model(torch.zeros(2, 4, dtype=torch.long), kv_cache=cache)
    with pytest.raises(ValueError, match="batch 3"):
        model(torch.zeros(3, 1, dtype=torch.long), kv_cache=cache)
    logits, loss = model(torch.zeros(2, 8, dtype=torch.long), torch.zeros(2, 8, dtype=torch.long))
    assert logits.shape == (2, 8, 23) and loss is not None  # the plain forward is unchanged


def test_sampling_reproduces_with_a_seeded_generator_for_every_strategy():
    logits = torch.randn(4, 30, generator=torch.Generator().manual_seed(0))
    for kwargs in ({}, {"temperature": 0.5}, {"top_k": 5}, {"top_p": 0.8}, {"top_k": 8, "top_p": 0.6}):
        a = [sample_next(logits, generator=torch.Generator().manual_seed(1), **kwargs) for _ in range(2)]
        assert torch.equal(a[0], a[1])
        g = torch.Generator().manual_seed(1)
        draws = torch.cat([sample_next(logits, generator=g, **kwargs) for _ in range(50)], dim=1)
        assert len(set(draws[0].tolist())) > 1  # random, not greedy
    assert torch.equal(sample_next(logits, temperature=0.0), logits.argmax(-1, keepdim=True))


def test_top_p_keeps_the_smallest_nucleus_ties_and_the_most_likely_token():
    probs = torch.tensor([[0.5, 0.25, 0.125, 0.125], [0.1, 0.6, 0.2, 0.1]])
    assert top_p_mask(probs, 0.5).tolist() == [[True, False, False, False], [False, True, False, False]]
    assert top_p_mask(probs, 0.6).tolist() == [[True, True, False, False], [False, True, False, False]]
    # 0.5 + 0.25 = 0.75 < 0.8: the next token is needed, and its tie (0.125) comes with it
    assert top_p_mask(probs, 0.8).tolist()[0] == [True, True, True, True]
    assert top_p_mask(probs, 0.8).tolist()[1] == [False, True, True, False]
    assert top_p_mask(probs, 1e-9).sum(-1).tolist() == [1, 1]  # always the most likely token
    assert top_p_mask(probs, 1.0).all()
    g = torch.Generator().manual_seed(0)
    draws = {sample_next(probs.log(), top_p=0.6, generator=g)[0].item() for _ in range(200)}
    assert draws == {0, 1}
    assert top_k_filter(torch.tensor([[1.0, 3.0, 3.0, 0.0]]), 1).isfinite().tolist() == [[False, True, True, False]]


def test_bad_arguments_name_the_argument_and_its_range():
    model = _gpt(True, block_size=8)
    p = torch.zeros(1, 2, dtype=torch.long)
    for kwargs, match in [({"temperature": -0.1}, "temperature=-0.1 must be >= 0"),
                          ({"top_k": 0}, r"top_k=0 must be a whole number >= 1"),
                          ({"top_p": 0.0}, r"top_p=0.0 must be in \(0, 1\]"),
                          ({"top_p": 1.5}, r"top_p=1.5 must be in \(0, 1\]")]:
        with pytest.raises(ValueError, match=match):
            generate(model, p, 3, **kwargs)
        with pytest.raises(ValueError, match=match):
            stream(model, p, 3, **kwargs)  # at the call, before the first token
    with pytest.raises(ValueError, match=r"idx: the prompt has 9 tokens but the model reads at most block_size=8"):
        generate(model, torch.zeros(1, 9, dtype=torch.long), 3)
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 22\] \(vocab_size=23\)"):
        generate(model, torch.tensor([[3, 23]]), 3, use_cache=True)
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 22\]"):
        generate(model, torch.tensor([[-1]]), 3)


def test_stream_yields_what_generate_returns_in_batches():
    model = _gpt(True, block_size=32)
    prompt = torch.randint(0, 23, (3, 2), generator=torch.Generator().manual_seed(5))
    pieces = list(stream(model, prompt, 12, generator=torch.Generator().manual_seed(9), top_p=0.9))
    assert len(pieces) == 12 and all(t.shape == (3, 1) for t in pieces)
    full = generate(model, prompt, 12, generator=torch.Generator().manual_seed(9), top_p=0.9, use_cache=True)
    assert torch.equal(torch.cat([prompt, *pieces], dim=1), full)


def test_cached_greedy_decoding_matches_hugging_face_gpt2_with_the_same_weights():
    """The trusted reference: transformers' GPT2LMHeadModel, random weights copied into minilm's GPT."""
    transformers = pytest.importorskip("transformers")
    transformers.utils.logging.set_verbosity_error()
    torch.manual_seed(0)
    hf_cfg = transformers.GPT2Config(vocab_size=23, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                                     bos_token_id=0, eos_token_id=None, pad_token_id=0)
    hf = transformers.GPT2LMHeadModel(hf_cfg).eval()
    model = gpt_from_hf(hf)  # the course's own loader (it transposes HF's Conv1D weights)
    assert model.config.block_size == 32 and model.config.n_head == 4
    prompt = torch.randint(0, 23, (2, 3), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert (model(prompt)[0] - hf(prompt).logits).abs().max() < 1e-5
        want = hf.generate(prompt, max_new_tokens=29, min_new_tokens=29, do_sample=False, use_cache=True,
                           pad_token_id=0)
    got = generate(model, prompt, 29, temperature=0.0, use_cache=True)
    assert torch.equal(got, want)


@pytest.mark.parametrize("sdpa", [True, False], ids=["sdpa", "explicit"])
def test_chunks_after_a_cache_equal_one_full_pass(sdpa):
    model = _gpt(sdpa, block_size=24)
    seq = torch.randint(0, 23, (3, 24), generator=torch.Generator().manual_seed(6))
    cache = model.new_kv_cache(3)
    with torch.no_grad():
        full = model(seq)[0]
        parts = [model(seq[:, a:b], kv_cache=cache)[0] for a, b in [(0, 5), (5, 9), (9, 10), (10, 24)]]
    assert cache.length == 24
    assert (torch.cat(parts, dim=1) - full).abs().max() <= 1e-5


@pytest.mark.parametrize("modern", [False, True], ids=["gpt2", "modern"])
def test_the_cache_keeps_the_compute_dtype_under_autocast(modern):
    """Under autocast (bf16 on the CPU here) keys are computed in bf16: the cache stores bf16, half the
    bytes per token, and its logits equal the uncached autocast forward's."""
    model = _gpt(True, block_size=32, modern=modern)
    seq = torch.randint(0, 23, (2, 20), generator=torch.Generator().manual_seed(8))
    fp32 = model.new_kv_cache(2)
    assert fp32.dtype == torch.float32
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        made_inside = model.new_kv_cache(2)
        assert made_inside.dtype == torch.bfloat16  # the compute dtype, from the start
        full = model(seq)[0]
        parts = [model(seq[:, a:b], kv_cache=fp32)[0] for a, b in [(0, 6), (6, 7), (7, 20)]]
    assert fp32.dtype == torch.bfloat16  # made outside autocast, switched at its first use
    assert fp32.k.dtype == fp32.v.dtype == torch.bfloat16
    assert fp32.bytes_per_token() == made_inside.bytes_per_token() == model.new_kv_cache(2).bytes_per_token() // 2
    assert fp32.bytes_per_token() == 2 * 2 * (2 if modern else 4) * 8 * 2  # k+v, layers, kv heads, hs, bf16
    assert (torch.cat(parts, dim=1).float() - full.float()).abs().max() < 0.1  # bf16 rounding only
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # and generation runs on it
        out = generate(model, seq[:, :4], 20, temperature=0.0, use_cache=True)
    assert out.shape == (2, 24)
