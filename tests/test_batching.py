"""Batching: contiguous train/val split and get_batch (shapes, dtype, shift by one, reproducibility)."""

from __future__ import annotations

import pytest
import torch

from minilm.data.batching import encode_corpus, get_batch, train_val_split
from minilm.data.tokenizers import CharTokenizer


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_get_batch_shapes_dtype_and_shift():
    data = torch.arange(1000, dtype=torch.int32) * 3  # int32 in, int64 out
    x, y = get_batch(data, block_size=16, batch_size=5, device="cpu", generator=_gen(0))
    assert x.shape == y.shape == (5, 16)
    assert x.dtype == y.dtype == torch.int64 and x.device.type == "cpu"
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is x shifted by one
    for row_x, row_y in zip(x, y):  # each row is a contiguous window of data, y the next token
        start = int(row_x[0]) // 3
        assert torch.equal(row_x, data[start:start + 16].long())
        assert torch.equal(row_y, data[start + 1:start + 17].long())


def test_get_batch_is_reproducible_with_a_seeded_generator():
    data = torch.randint(0, 50, (5000,), generator=_gen(1))
    a = get_batch(data, 8, 4, "cpu", _gen(42))
    b = get_batch(data, 8, 4, "cpu", _gen(42))
    c = get_batch(data, 8, 4, "cpu", _gen(43))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    g = _gen(7)  # successive calls on one generator give different batches
    assert not torch.equal(get_batch(data, 8, 4, "cpu", g)[0], get_batch(data, 8, 4, "cpu", g)[0])


def test_get_batch_reaches_every_offset_and_the_last_token():
    data = torch.arange(12)
    block = 4
    starts = set()
    g = _gen(0)
    for _ in range(50):
        x, y = get_batch(data, block, 8, "cpu", g)
        starts.update(x[:, 0].tolist())
        assert int(y.max()) <= 11
    assert starts == set(range(12 - block))  # offsets 0..7: the last y ends at data[11]


def test_get_batch_minimal_and_too_short_data():
    data = torch.arange(5)
    x, y = get_batch(data, 4, 3, "cpu", _gen(0))  # exactly block_size + 1 tokens: one window
    assert torch.equal(x, torch.arange(4).expand(3, 4)) and torch.equal(y, x + 1)
    with pytest.raises(ValueError, match="needs 6"):
        get_batch(data, 5, 1, "cpu", _gen(0))
    with pytest.raises(ValueError, match="1-D"):
        get_batch(torch.zeros(2, 10, dtype=torch.long), 4, 1, "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_get_batch_on_cuda():
    x, y = get_batch(torch.arange(100), 8, 2, "cuda", _gen(0))
    assert x.device.type == y.device.type == "cuda" and torch.equal(x[:, 1:], y[:, :-1])


def test_train_val_split_is_contiguous():
    data = torch.arange(100)
    train, val = train_val_split(data, 0.1)
    assert len(train) == 90 and len(val) == 10
    assert torch.equal(torch.cat([train, val]), data) and int(val[0]) == 90
    a, b = train_val_split("abcdefghij", 0.2)
    assert (a, b) == ("abcdefgh", "ij")
    assert train_val_split([1, 2, 3], 0.0) == ([1, 2, 3], [])


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_train_val_split_rejects_bad_fractions(fraction):
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(torch.arange(10), fraction)


def test_train_val_split_rejects_an_empty_side():
    with pytest.raises(ValueError, match="empty"):
        train_val_split(torch.arange(3), 0.01)


def test_encode_corpus():
    tok = CharTokenizer.from_text("hello")
    ids = encode_corpus("hello", tok)
    assert ids.dtype == torch.int64 and ids.tolist() == tok.encode("hello")
