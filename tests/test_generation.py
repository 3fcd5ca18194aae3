"""generate(): reproducible with a seeded generator, honours top_k, temperature and stop_token."""

from __future__ import annotations

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
