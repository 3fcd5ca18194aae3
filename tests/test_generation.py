"""generate(): reproducible with a seeded generator, honours top_k, temperature and stop_token."""

from __future__ import annotations

import pytest
import torch

from minilm.generation.sampling import generate, sample_next
from minilm.models import LSTM, MLP, BigramConfig, CountBigram, LSTMConfig, MLPConfig

V = 9


def _models():
    torch.manual_seed(0)
    yield CountBigram(BigramConfig(vocab_size=V)).fit(torch.randint(0, V, (300,)))
    yield MLP(MLPConfig(vocab_size=V, block_size=3, n_embd=4, n_hidden=8))
    yield LSTM(LSTMConfig(vocab_size=V, block_size=5, n_embd=4, n_hidden=8))


def test_reproducible_with_seeded_generator_and_crops_context():
    for model in _models():
        start = torch.zeros(2, 1, dtype=torch.long)
        a = generate(model, start, 12, generator=torch.Generator().manual_seed(1))
        b = generate(model, start, 12, generator=torch.Generator().manual_seed(1))
        c = generate(model, start, 12, generator=torch.Generator().manual_seed(2))
        assert a.shape == (2, 13) and torch.equal(a, b) and not torch.equal(a, c)
        assert torch.equal(a[:, :1], start)


def test_top_k_and_greedy():
    logits = torch.tensor([[0.0, 3.0, 2.0, -1.0, 2.5]])
    g = torch.Generator().manual_seed(0)
    draws = torch.cat([sample_next(logits, top_k=2, generator=g) for _ in range(300)])
    assert set(draws.view(-1).tolist()) == {1, 4}
    assert sample_next(logits, temperature=0.0).item() == 1
    draws = torch.cat([sample_next(logits, temperature=100.0, generator=g) for _ in range(300)])
    assert len(set(draws.view(-1).tolist())) == 5  # hot: nearly uniform


def test_top_k_1_is_greedy_in_generate():
    model = list(_models())[1]
    start = torch.tensor([[1], [2]])
    greedy = generate(model, start, 8, temperature=0.0)
    top1 = generate(model, start, 8, top_k=1, generator=torch.Generator().manual_seed(3))
    assert torch.equal(greedy, top1)


def test_stop_token_pads_finished_rows_and_stops_early():
    bigram = CountBigram(BigramConfig(vocab_size=3, smoothing=0.0))
    bigram.counts[:] = torch.tensor([[0.0, 1, 1], [0, 0, 1], [1, 0, 0]], dtype=torch.float64)
    # from 1: always 2 (the stop token); from 0: 1 or 2
    out = generate(bigram, torch.tensor([[1], [0]]), 50, stop_token=2,
                   generator=torch.Generator().manual_seed(0))
    assert out.size(1) <= 3  # every row ended within two steps, so generation stopped
    assert out[0, 1] == 2 and (out[0, 1:] == 2).all()  # row 0 finished, then padded
    assert (out[1] == 2).any()
    no_stop = generate(bigram, torch.tensor([[1]]), 10, generator=torch.Generator().manual_seed(0))
    assert no_stop.size(1) == 11  # without stop_token it runs the full length


def _char_gpt(block_size=16):
    from minilm.data.tokenizers import CharTokenizer
    from minilm.models.gpt import GPT, GPTConfig

    tok = CharTokenizer(sorted(set("abcdefgh \n:ROMEO")))
    torch.manual_seed(0)
    cfg = GPTConfig(block_size=block_size, vocab_size=tok.vocab_size, n_layer=2, n_head=2, n_embd=16)
    return GPT(cfg).eval(), tok


def test_every_entry_point_gives_the_same_tokens_past_block_size():
    """One decoding policy: generate (default, cached, uncached), stream and the panel, same seed, 3 blocks long."""
    from minilm.generation.panel import generation_panel, sample_text
    from minilm.generation.sampling import stream

    model, tok = _char_gpt(block_size=16)
    prompt = torch.tensor([tok.encode("ROMEO:")])
    n = 3 * 16 + 5  # several shifts of the context
    kw = {"temperature": 0.9, "top_k": 8}

    def seeded():
        return torch.Generator().manual_seed(11)

    default = generate(model, prompt, n, generator=seeded(), **kw)
    cached = generate(model, prompt, n, generator=seeded(), use_cache=True, **kw)
    plain = generate(model, prompt, n, generator=seeded(), use_cache=False, **kw)
    streamed = torch.cat([prompt, *stream(model, prompt, n, generator=seeded(), **kw)], dim=1)
    assert default.shape == (1, 6 + n)
    for other in (cached, plain, streamed):
        assert torch.equal(default, other)
    text = tok.decode(default[0].tolist())
    assert sample_text(model, tok, "ROMEO:", temperature=0.9, top_k=8, length=n, seed=11) == text
    pytest.importorskip("ipywidgets")
    panel = generation_panel(model, tok, prompt="ROMEO:", length=n)
    c = panel.controls
    c["temperature"].value, c["top_k"].value, c["top_p"].value, c["seed"].value = 0.9, 8, 1.0, 11
    panel.button.click()
    assert panel.output.value == text


def test_the_policy_past_block_size_is_the_context_shift():
    """Tokens equal a plain-Python reference: a full context of block_size tokens keeps its last half."""
    model, _ = _char_gpt(block_size=8)

    def reference(window):
        g, ctx, out = torch.Generator().manual_seed(5), [1, 2, 3], []
        with torch.no_grad():
            for _ in range(30):
                out.append(int(sample_next(model(torch.tensor([window(ctx)]))[0][:, -1], 1.5, generator=g)))
                ctx.append(out[-1])
                if window is shift and len(ctx) > 8:
                    ctx = ctx[-4:]
        return out

    def shift(ctx):
        return ctx

    want = reference(shift)
    for use_cache in (None, False):
        got = generate(model, torch.tensor([[1, 2, 3]]), 30, temperature=1.5, use_cache=use_cache,
                       generator=torch.Generator().manual_seed(5))
        assert got[0, 3:].tolist() == want
    slide = reference(lambda ctx: ctx[-8:])  # another policy: the last 8 tokens at every step
    assert slide[:5] == want[:5] and slide != want  # the same while the context fits, not after


def test_hf_twin_computes_what_the_course_gpt_computes():
    """measure.hf_twin: transformers' GPT2LMHeadModel with the course GPT's weights gives its logits and its
    greedy tokens (the reference 06 times the KV cache against); a Llama-style GPT is refused."""
    transformers = pytest.importorskip("transformers")
    from minilm.generation.measure import hf_decode_rates, hf_twin
    from minilm.models.gpt import GPT, GPTConfig

    model, _ = _char_gpt(block_size=32)
    hf = hf_twin(model)
    assert isinstance(hf, transformers.GPT2LMHeadModel)
    idx = torch.randint(0, model.config.vocab_size, (3, 20), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert (hf(idx).logits - model(idx)[0]).abs().max() < 1e-5
        want = hf.generate(idx[:, :4], max_new_tokens=25, min_new_tokens=25, do_sample=False, pad_token_id=0,
                           attention_mask=torch.ones(3, 4, dtype=torch.long))
    assert torch.equal(generate(model, idx[:, :4], 25, temperature=0.0), want)
    rates = hf_decode_rates(hf, n_tokens=6, batch_size=2, repeats=3)
    assert len(rates) == 3 and all(r > 0 for r in rates)
    with pytest.raises(ValueError, match="hf_twin needs a GPT-2-style model"):
        hf_twin(GPT(GPTConfig.modern(block_size=16, vocab_size=20, n_layer=1, n_head=2, n_embd=16)))
