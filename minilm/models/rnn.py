"""Recurrent language models: a vanilla RNN and an LSTM, each a hand-written cell and a fast path (taught in 03).

A cell maps (x_t, state) -> state. The models keep their weights in `nn.RNN` / `nn.LSTM`
(one layer, batch_first) and run either PyTorch's fused kernel (`impl="torch"`, for training)
or a Python loop over time calling the hand-written step with the very same tensors
(`impl="hand"`, for reading). The state_dict is the same for both, so weights transfer;
tests/test_models_ladder.py proves the two paths and the cells equal nn.RNN / nn.LSTM.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import lm_loss


def rnn_step(x_t: torch.Tensor, h: torch.Tensor, weight_ih: torch.Tensor, weight_hh: torch.Tensor,
             bias_ih: torch.Tensor, bias_hh: torch.Tensor) -> torch.Tensor:
    """One RNN step: x_t (B, E), h (B, H) -> tanh(W_ih x_t + b_ih + W_hh h + b_hh) (B, H)."""
    return torch.tanh(x_t @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh)


def lstm_step(x_t: torch.Tensor, h: torch.Tensor, c: torch.Tensor, weight_ih: torch.Tensor,
              weight_hh: torch.Tensor, bias_ih: torch.Tensor, bias_hh: torch.Tensor):
    """One LSTM step: x_t (B, E), h, c (B, H) -> (h', c'), gates in PyTorch's order i, f, g, o."""
    gates = x_t @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh  # (B, 4H)
    i, f, g, o = gates.chunk(4, dim=1)  # each (B, H)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c = f * c + i * g  # forget some of the old memory, write some new
    h = o * torch.tanh(c)  # expose part of the memory
    return h, c


class RNNCell(nn.Module):
    """(x_t (B, E), h (B, H)) -> h' (B, H); parameters named like nn.RNNCell."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        k = hidden_size ** -0.5  # PyTorch's init: U(-1/sqrt(H), 1/sqrt(H))
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size).uniform_(-k, k))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size).uniform_(-k, k))
        self.bias_ih = nn.Parameter(torch.empty(hidden_size).uniform_(-k, k))
        self.bias_hh = nn.Parameter(torch.empty(hidden_size).uniform_(-k, k))

    def forward(self, x_t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return rnn_step(x_t, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)


class LSTMCell(nn.Module):
    """(x_t (B, E), (h, c) (B, H) each) -> (h', c'); parameters named like nn.LSTMCell."""

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        k = hidden_size ** -0.5
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size).uniform_(-k, k))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size).uniform_(-k, k))
        self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size).uniform_(-k, k))
        self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size).uniform_(-k, k))

    def forward(self, x_t: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]):
        h, c = state
        return lstm_step(x_t, h, c, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)


def layer_weights(module: nn.RNNBase) -> tuple[torch.Tensor, ...]:
    """(weight_ih, weight_hh, bias_ih, bias_hh) of layer 0 of an nn.RNN / nn.LSTM."""
    return (module.weight_ih_l0, module.weight_hh_l0, module.bias_ih_l0, module.bias_hh_l0)


@dataclass
class RNNConfig:
    """Sizes of the RNN and LSTM language models."""

    vocab_size: int = 27  # number of distinct tokens V
    block_size: int = 16  # sequence length trained on; generation crops the context to it
    n_embd: int = 64  # token embedding size E
    n_hidden: int = 64  # hidden state size H
    impl: str = "torch"  # "torch": nn.RNN / nn.LSTM kernel; "hand": Python loop over our cell


@dataclass
class LSTMConfig(RNNConfig):
    """Sizes of the LSTM language model (the same fields as RNNConfig)."""


class RNN(nn.Module):
    """Vanilla RNN LM: embed, h_t = tanh(W_ih x_t + W_hh h_{t-1} + b), logits = head(h_t)."""

    def __init__(self, config: RNNConfig):
        super().__init__()
        self.config = config
        self.block_size = config.block_size
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.rnn = nn.RNN(config.n_embd, config.n_hidden, batch_first=True)  # tanh
        self.h0 = nn.Parameter(torch.zeros(config.n_hidden))  # learned initial state
        self.lm_head = nn.Linear(config.n_hidden, config.vocab_size)

    def hidden_states(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) -> h (B, T, H), the hidden state after each token."""
        x = self.wte(idx)  # (B, T, E)
        B, T, _ = x.shape
        h = self.h0.expand(B, -1)  # (B, H)
        if self.config.impl == "torch":
            out, _ = self.rnn(x, h.unsqueeze(0).contiguous())  # h0 is (layers=1, B, H)
            return out
        hs = []
        for t in range(T):  # backpropagation through time runs back through this loop
            h = rnn_step(x[:, t], h, *layer_weights(self.rnn))
            hs.append(h)
        return torch.stack(hs, dim=1)  # (B, T, H)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """idx (B, T) -> logits (B, T, V), loss."""
        logits = self.lm_head(self.hidden_states(idx))  # (B, T, V)
        return logits, lm_loss(logits, targets)


class LSTM(nn.Module):
    """LSTM LM: embed, (h_t, c_t) = LSTMCell(x_t, (h_{t-1}, c_{t-1})), logits = head(h_t)."""

    def __init__(self, config: LSTMConfig):
        super().__init__()
        self.config = config
        self.block_size = config.block_size
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.lstm = nn.LSTM(config.n_embd, config.n_hidden, batch_first=True)
        self.h0 = nn.Parameter(torch.zeros(config.n_hidden))  # learned initial state
        self.c0 = nn.Parameter(torch.zeros(config.n_hidden))
        self.lm_head = nn.Linear(config.n_hidden, config.vocab_size)

    def hidden_states(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) -> h (B, T, H), the hidden state after each token."""
        x = self.wte(idx)  # (B, T, E)
        B, T, _ = x.shape
        h, c = self.h0.expand(B, -1), self.c0.expand(B, -1)  # (B, H) each
        if self.config.impl == "torch":
            state = (h.unsqueeze(0).contiguous(), c.unsqueeze(0).contiguous())  # (1, B, H) each
            out, _ = self.lstm(x, state)
            return out
        hs = []
        for t in range(T):
            h, c = lstm_step(x[:, t], h, c, *layer_weights(self.lstm))
            hs.append(h)
        return torch.stack(hs, dim=1)  # (B, T, H)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """idx (B, T) -> logits (B, T, V), loss."""
        logits = self.lm_head(self.hidden_states(idx))  # (B, T, V)
        return logits, lm_loss(logits, targets)
