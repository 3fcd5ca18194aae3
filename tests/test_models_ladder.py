"""Every model of the ladder obeys the contract; the hand-written cells equal PyTorch's."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from minilm.models import (
    LSTM,
    MLP,
    RNN,
    BigramConfig,
    BigramLM,
    CountBigram,
    LSTMCell,
    LSTMConfig,
    MLPConfig,
    RNNCell,
    RNNConfig,
)
from minilm.models.base import LanguageModel
from minilm.models.rnn import RecurrentLM, layer_weights, recurrent_kernel_dtype

V, B, T = 11, 3, 8


def make(name: str, **kw) -> nn.Module:
    if name == "count_bigram":
        return CountBigram(BigramConfig(vocab_size=V)).fit(torch.randint(0, V, (500,)))
    if name == "bigram":
        return BigramLM(BigramConfig(vocab_size=V))
    if name == "mlp":
        return MLP(MLPConfig(vocab_size=V, block_size=4, n_embd=5, n_hidden=16))
    if name == "rnn":
        return RNN(RNNConfig(vocab_size=V, block_size=T, n_embd=5, n_hidden=16, **kw))
    return LSTM(LSTMConfig(vocab_size=V, block_size=T, n_embd=5, n_hidden=16, **kw))


MODELS = ["count_bigram", "bigram", "mlp", "rnn", "lstm"]
TRAINABLE = ["bigram", "mlp", "rnn", "lstm"]


@pytest.mark.parametrize("name", MODELS)
def test_contract_shapes_and_loss(name):
    torch.manual_seed(0)
    model = make(name)
    idx = torch.randint(0, V, (B, T))
    targets = torch.randint(0, V, (B, T))
    targets[0, 5:] = -1  # padding after the end of a sequence
    logits, loss = model(idx)
    assert logits.shape == (B, T, V) and loss is None
    assert isinstance(model.block_size, int) and model.block_size >= 1
    assert hasattr(model, "config")
    logits, loss = model(idx, targets)
    expected = F.cross_entropy(logits.view(-1, V), targets.view(-1), ignore_index=-1)
    torch.testing.assert_close(loss, expected)
    keep = targets.view(-1) != -1
    by_hand = F.cross_entropy(logits.view(-1, V)[keep], targets.view(-1)[keep])
    torch.testing.assert_close(loss, by_hand)


@pytest.mark.parametrize("name", TRAINABLE)
def test_loss_goes_down(name):
    torch.manual_seed(0)
    model = make(name)
    x = torch.randint(0, V, (8, T))
    y = torch.roll(x, -1, dims=1)  # learnable: the next token is a fixed function of the past
    opt = torch.optim.AdamW(model.parameters(), lr=3e-2)
    first = model(x, y)[1].item()
    for _ in range(30):
        _, loss = model(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model(x, y)[1].item() < 0.8 * first


def test_mlp_position_sees_only_its_window():
    torch.manual_seed(0)
    model = make("mlp")  # block_size 4
    idx = torch.randint(0, V, (1, T))
    changed = idx.clone()
    changed[0, 1] = (idx[0, 1] + 1) % V
    a, _ = model(idx)
    b, _ = model(changed)
    assert torch.equal(a[0, 0], b[0, 0])  # the past does not see the future
    assert not torch.allclose(a[0, 1:5], b[0, 1:5])  # positions 1..4 see token 1
    assert torch.equal(a[0, 5:], b[0, 5:])  # position 5 sees tokens 2..5 only


@pytest.mark.parametrize("E,H,batch", [(3, 4, 1), (5, 16, 3), (16, 7, 5)])
def test_lstm_cell_matches_nn_lstm(E, H, batch):
    torch.manual_seed(E * H)
    ref = nn.LSTM(E, H, batch_first=True)
    cell = LSTMCell(E, H)
    with torch.no_grad():
        for mine, theirs in zip((cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh),
                                layer_weights(ref)):
            mine.copy_(theirs)
    x = torch.randn(batch, 6, E)
    h0, c0 = torch.randn(batch, H), torch.randn(batch, H)
    out, (hT, cT) = ref(x, (h0.unsqueeze(0), c0.unsqueeze(0)))
    h, c, hs = h0, c0, []
    for t in range(x.size(1)):
        h, c = cell(x[:, t], (h, c))
        hs.append(h)
    torch.testing.assert_close(torch.stack(hs, 1), out)
    torch.testing.assert_close(h, hT[0])
    torch.testing.assert_close(c, cT[0])
    ref_cell = nn.LSTMCell(E, H)
    ref_cell.load_state_dict(cell.state_dict())  # same parameter names as nn.LSTMCell
    torch.testing.assert_close(torch.stack(ref_cell(x[:, 0], (h0, c0))), torch.stack(cell(x[:, 0], (h0, c0))))


@pytest.mark.parametrize("E,H,batch", [(3, 4, 1), (5, 16, 3)])
def test_rnn_cell_matches_nn_rnn(E, H, batch):
    torch.manual_seed(E + H)
    ref = nn.RNN(E, H, nonlinearity="tanh", batch_first=True)
    cell = RNNCell(E, H)
    cell.load_state_dict(dict(zip(["weight_ih", "weight_hh", "bias_ih", "bias_hh"], layer_weights(ref))))
    x, h = torch.randn(batch, 7, E), torch.randn(batch, H)
    out, _ = ref(x, h.unsqueeze(0))
    hs = []
    for t in range(x.size(1)):
        h = cell(x[:, t], h)
        hs.append(h)
    torch.testing.assert_close(torch.stack(hs, 1), out)


@pytest.mark.parametrize("name", ["rnn", "lstm"])
def test_hand_and_torch_paths_agree_and_share_weights(name):
    torch.manual_seed(0)
    fast, hand = make(name, impl="torch"), make(name, impl="hand")
    hand.load_state_dict(fast.state_dict())  # the same parameters: weights transfer
    idx = torch.randint(0, V, (B, T))
    targets = torch.randint(0, V, (B, T))
    lf, loss_f = fast(idx, targets)
    lh, loss_h = hand(idx, targets)
    torch.testing.assert_close(lh, lf)
    loss_f.backward()
    loss_h.backward()
    for (n, pf), (_, ph) in zip(fast.named_parameters(), hand.named_parameters()):
        torch.testing.assert_close(ph.grad, pf.grad, msg=f"gradient of {n}")


def test_count_bigram_probabilities_and_loss_by_hand():
    data = torch.tensor([0, 1, 2, 1, 2, 0, 2, 2, 1, 0])
    model = CountBigram(BigramConfig(vocab_size=3, smoothing=0.5)).fit(data)
    P = model.probs()
    torch.testing.assert_close(P.sum(1), torch.ones(3, dtype=torch.float64))
    N = torch.zeros(3, 3)
    for a, b in zip(data[:-1].tolist(), data[1:].tolist()):
        N[a, b] += 1
    assert torch.equal(model.counts, N.double())
    x, y = data[:-1].view(1, -1), data[1:].view(1, -1)
    _, loss = model(x, y)
    nll = -sum(((N[a, b] + 0.5) / (N[a] + 0.5).sum()).log() for a, b in zip(x[0], y[0])) / len(x[0])
    torch.testing.assert_close(loss, nll.float())


def test_count_bigram_skips_ignored_targets():
    model = CountBigram(BigramConfig(vocab_size=3))
    model.update(torch.tensor([[0, 1, 2]]), torch.tensor([[1, 2, -1]]))
    assert model.counts.sum() == 2 and model.counts[0, 1] == 1 and model.counts[1, 2] == 1


def test_neural_bigram_approaches_the_count_table():
    g = torch.Generator().manual_seed(0)
    table = torch.softmax(torch.randn(5, 5, generator=g) * 2, dim=1)
    data = [0]
    for _ in range(4000):
        data.append(torch.multinomial(table[data[-1]], 1, generator=g).item())
    data = torch.tensor(data)
    counts = CountBigram(BigramConfig(vocab_size=5, smoothing=0.0)).fit(data)
    neural = BigramLM(BigramConfig(vocab_size=5))
    opt = torch.optim.Adam(neural.parameters(), lr=0.1)
    x, y = data[:-1].view(1, -1), data[1:].view(1, -1)
    for _ in range(200):
        _, loss = neural(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (neural.probs() - counts.probs()).abs().max() < 0.01
    torch.testing.assert_close(loss, counts(x, y)[1], atol=1e-3, rtol=0)


def test_names_rows_like_makemore():
    from minilm.data.names import (
        dataset_loss,
        decode_name,
        encode_names,
        names_tokenizer,
        split_names,
    )

    words = ["emma", "bo", "alexandra"]
    tok = names_tokenizer(words)
    assert tok.chars[0] == "." and tok.vocab_size == 1 + len(set("".join(words)))
    data = encode_names(words, tok, block_size=6)
    e, m, a = tok.stoi["e"], tok.stoi["m"], tok.stoi["a"]
    assert data.x[0].tolist() == [0, e, m, m, a, 0]
    assert data.y[0].tolist() == [e, m, m, a, 0, -1]  # predict the end, then nothing
    assert data.y[2, -1] == 0 and (data.y[2] != -1).all()  # cut to block_size - 1 letters
    train, test = split_names([str(i) for i in range(50)], n_test=10, seed=1)
    assert len(test) == 10 and sorted(train + test) == sorted(str(i) for i in range(50))
    assert split_names([str(i) for i in range(50)], n_test=10, seed=1) == (train, test)
    model = CountBigram(BigramConfig(vocab_size=tok.vocab_size)).update(data.x, data.y)
    _, loss = model(data.x, data.y)
    torch.testing.assert_close(torch.tensor(dataset_loss(model, data, batch_size=2)), loss, rtol=1e-5, atol=1e-6)
    assert decode_name([e, m, m, a, 0, 0], tok) == "emma"


ALL_MODELS = MODELS + ["gpt"]


def _any(name: str) -> nn.Module:
    if name == "gpt":
        from minilm.models import GPT, GPTConfig
        return GPT(GPTConfig(block_size=T, vocab_size=V, n_layer=1, n_head=2, n_embd=8))
    return make(name)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_model_satisfies_the_typed_contract(name):
    model = _any(name)
    assert isinstance(model, LanguageModel)  # config, block_size, forward
    hints, contract = typing.get_type_hints(type(model).forward), typing.get_type_hints(LanguageModel.forward)
    assert {k: hints.get(k) for k in contract} == contract, f"{name}.forward's annotations"  # extras allowed
    assert dataclasses.is_dataclass(model.config)


def test_the_protocol_rejects_what_breaks_the_contract():
    class NoBlockSize(nn.Module):
        def forward(self, idx, targets=None):
            return idx, None

    assert not isinstance(NoBlockSize(), LanguageModel)


def test_rnn_and_lstm_are_one_model_with_two_cells():
    rnn, lstm = make("rnn"), make("lstm")
    assert type(rnn).__mro__[1] is RecurrentLM and type(lstm).__mro__[1] is RecurrentLM
    assert isinstance(rnn.rnn, nn.RNN) and isinstance(lstm.rnn, nn.LSTM)
    assert len(rnn.initial_state(3)) == 1 and len(lstm.initial_state(3)) == 2
    assert RecurrentLM(RNNConfig(vocab_size=V), "lstm").state_dict().keys() == lstm.state_dict().keys()
    with pytest.raises(ValueError, match="unknown cell"):
        RecurrentLM(RNNConfig(), "gru")


def test_config_options_are_checked():
    with pytest.raises(ValueError, match=r"RNNConfig.impl='Hand' is not one of 'torch', 'hand'"):
        RNNConfig(impl="Hand")
    with pytest.raises(ValueError, match="LSTMConfig.impl"):
        LSTMConfig(impl="cudnn")


@pytest.mark.parametrize("device, autocast, expected", [
    ("cuda", torch.bfloat16, torch.float32),  # cuDNN would run in fp16 with no GradScaler: fp32
    ("cuda", torch.float16, None),  # fp16 autocast comes with the GradScaler: leave it
    ("cuda", None, None),  # no autocast: nothing to do
    ("cpu", torch.bfloat16, None),  # the policy never autocasts the CPU; no cuDNN there
    ("mps", torch.float16, None),
])
def test_recurrent_kernel_dtype_decision(device, autocast, expected):
    assert recurrent_kernel_dtype(device, autocast) == expected


@pytest.mark.parametrize("name", ["rnn", "lstm"])
def test_the_recurrent_kernel_leaves_autocast_when_the_decision_says_so(name, monkeypatch):
    """Simulated on the CPU: the decision says fp32, so the kernel runs in fp32 outside autocast."""
    import minilm.models.rnn as rnn_module

    asked, seen = [], []
    monkeypatch.setattr(rnn_module, "recurrent_kernel_dtype",
                        lambda device, dtype: asked.append((device, dtype)) or torch.float32)
    model = make(name)
    model.rnn.register_forward_pre_hook(
        lambda mod, args: seen.append((args[0].dtype, torch.is_autocast_enabled("cpu"))))
    idx = torch.randint(0, V, (B, T))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, loss = model(idx, idx)
    assert asked == [("cpu", torch.bfloat16)] and seen == [(torch.float32, False)]
    loss.backward()
    assert model.rnn.weight_hh_l0.grad is not None
