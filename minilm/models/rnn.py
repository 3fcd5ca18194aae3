"""Recurrent language models: one model parameterised by its cell, a vanilla RNN or an LSTM (taught in 03).

A cell maps (x_t, state) -> state. `RecurrentLM` embeds the tokens, loops a cell over time and
turns each hidden state into next-token logits, as makemore's RNN does with its RNNCell and
GRUCell. `RNN` and `LSTM` are that model with the tanh cell and with the LSTM cell. The weights
live in `nn.RNN` / `nn.LSTM` (one layer, batch_first), and the model runs either PyTorch's fused
kernel (`impl="torch"`, for training) or a Python loop over time calling the hand-written step
with the very same tensors (`impl="hand"`, for reading); notebook 03 shows the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..runtime import autocast_dtype
from .base import check_choices, lm_loss


def rnn_step(x_t: torch.Tensor, h: torch.Tensor, weight_ih: torch.Tensor, weight_hh: torch.Tensor,
             bias_ih: torch.Tensor, bias_hh: torch.Tensor) -> torch.Tensor:
    """One RNN step: x_t (B, E), h (B, H) -> tanh(W_ih x_t + b_ih + W_hh h + b_hh) (B, H)."""
    return torch.tanh(x_t @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh)


def lstm_step(x_t: torch.Tensor, h: torch.Tensor, c: torch.Tensor, weight_ih: torch.Tensor,
              weight_hh: torch.Tensor, bias_ih: torch.Tensor,
              bias_hh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step: x_t (B, E), h, c (B, H) -> (h', c'), gates in PyTorch's order i, f, g, o."""
    gates = x_t @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh  # (B, 4H)
    i, f, g, o = gates.chunk(4, dim=1)  # each (B, H)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c = f * c + i * g  # forget some of the old memory, write some new
    h = o * torch.tanh(c)  # expose part of the memory
    return h, c


class _Cell(nn.Module):
    """The four weights of one recurrent cell, named and initialised like nn.RNNCell / nn.LSTMCell."""

    def __init__(self, input_size: int, hidden_size: int, gates: int) -> None:
        super().__init__()
        k = hidden_size ** -0.5  # PyTorch's init: U(-1/sqrt(H), 1/sqrt(H))
        self.weight_ih = nn.Parameter(torch.empty(gates * hidden_size, input_size).uniform_(-k, k))
        self.weight_hh = nn.Parameter(torch.empty(gates * hidden_size, hidden_size).uniform_(-k, k))
        self.bias_ih = nn.Parameter(torch.empty(gates * hidden_size).uniform_(-k, k))
        self.bias_hh = nn.Parameter(torch.empty(gates * hidden_size).uniform_(-k, k))

    def weights(self) -> tuple[torch.Tensor, ...]:
        return self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh


class RNNCell(_Cell):
    """(x_t (B, E), h (B, H)) -> h' (B, H); parameters named like nn.RNNCell."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size, gates=1)

    def forward(self, x_t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """x_t (B, E), h (B, H) -> h' (B, H)."""
        return rnn_step(x_t, h, *self.weights())


class LSTMCell(_Cell):
    """(x_t (B, E), (h, c) (B, H) each) -> (h', c'); parameters named like nn.LSTMCell."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size, gates=4)

    def forward(self, x_t: torch.Tensor,
                state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """x_t (B, E), (h, c) (B, H) each -> (h', c')."""
        return lstm_step(x_t, *state, *self.weights())


def layer_weights(module: nn.RNNBase) -> tuple[torch.Tensor, ...]:
    """(weight_ih, weight_hh, bias_ih, bias_hh) of layer 0 of an nn.RNN / nn.LSTM."""
    return (module.weight_ih_l0, module.weight_hh_l0, module.bias_ih_l0, module.bias_hh_l0)


def recurrent_kernel_dtype(device_type: str, autocast: torch.dtype | None) -> torch.dtype | None:
    """The dtype cuDNN's RNN / LSTM kernel must run in outside autocast, or None to leave it to autocast.

    PyTorch's autocast casts the cuDNN recurrent kernel to fp16 whatever dtype autocast was given
    (bf16 included). Under fp16 autocast the precision policy's GradScaler protects the small
    gradients; under bf16 there is no scaler, so the kernel leaves autocast and runs in fp32.
    """
    if device_type == "cuda" and autocast is not None and autocast != torch.float16:
        return torch.float32
    return None


@dataclass
class RNNConfig:
    """Sizes of the RNN and LSTM language models."""

    vocab_size: int = 27  # number of distinct tokens V
    block_size: int = 16  # sequence length trained on; generation crops the context to it
    n_embd: int = 64  # token embedding size E
    n_hidden: int = 64  # hidden state size H
    impl: Literal["torch", "hand"] = "torch"  # "torch": nn.RNN / nn.LSTM kernel; "hand": our step in a loop

    def __post_init__(self) -> None:
        check_choices(self)


@dataclass
class LSTMConfig(RNNConfig):
    """Sizes of the LSTM language model (the same fields as RNNConfig)."""


def _rnn_cell(x_t: torch.Tensor, state: tuple[torch.Tensor, ...], weights) -> tuple[torch.Tensor, ...]:
    return (rnn_step(x_t, state[0], *weights),)  # the RNN's state is (h,)


def _lstm_cell(x_t: torch.Tensor, state: tuple[torch.Tensor, ...], weights) -> tuple[torch.Tensor, ...]:
    return lstm_step(x_t, *state, *weights)  # the LSTM's state is (h, c)


_CELLS = {"rnn": (nn.RNN, _rnn_cell), "lstm": (nn.LSTM, _lstm_cell)}  # PyTorch's layer, our step


class RecurrentLM(nn.Module):
    """Embed, loop `cell` ('rnn' or 'lstm') over time from a learned initial state, logits = head(h_t)."""

    def __init__(self, config: RNNConfig, cell: Literal["rnn", "lstm"]) -> None:
        super().__init__()
        if cell not in _CELLS:
            raise ValueError(f"unknown cell {cell!r}; use one of {', '.join(_CELLS)}")
        layer, self.step = _CELLS[cell]
        self.config = config
        self.cell = cell
        self.block_size = config.block_size
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.rnn = layer(config.n_embd, config.n_hidden, batch_first=True)  # holds the cell's weights
        self.h0 = nn.Parameter(torch.zeros(config.n_hidden))  # learned initial state
        if cell == "lstm":
            self.c0 = nn.Parameter(torch.zeros(config.n_hidden))  # and the LSTM's initial memory
        self.lm_head = nn.Linear(config.n_hidden, config.vocab_size)

    def initial_state(self, batch: int) -> tuple[torch.Tensor, ...]:
        """The learned initial state for a batch: (h0,) for the RNN, (h0, c0) for the LSTM, each (B, H)."""
        state = (self.h0, self.c0) if self.cell == "lstm" else (self.h0,)
        return tuple(s.expand(batch, -1) for s in state)

    def run_cell(self, x: torch.Tensor) -> torch.Tensor:
        """Embedded inputs x (B, T, E) -> hidden states (B, T, H), by `config.impl`."""
        state = self.initial_state(x.size(0))
        if self.config.impl == "hand":
            hs = []
            for t in range(x.size(1)):  # backpropagation through time runs back through this loop
                state = self.step(x[:, t], state, layer_weights(self.rnn))
                hs.append(state[0])
            return torch.stack(hs, dim=1)  # (B, T, H)
        state = tuple(s.unsqueeze(0).contiguous() for s in state)  # (layers=1, B, H) each
        dtype = recurrent_kernel_dtype(x.device.type, autocast_dtype(x.device.type))
        if dtype is not None:  # leave autocast: see recurrent_kernel_dtype
            with torch.autocast(device_type=x.device.type, enabled=False):
                return self._kernel(x.to(dtype), tuple(s.to(dtype) for s in state))
        return self._kernel(x, state)

    def _kernel(self, x: torch.Tensor, state: tuple[torch.Tensor, ...]) -> torch.Tensor:
        out, _ = self.rnn(x, state if self.cell == "lstm" else state[0])  # nn.RNN takes h, nn.LSTM (h, c)
        return out  # (B, T, H)

    def hidden_states(self, idx: torch.Tensor) -> torch.Tensor:
        """idx (B, T) -> h (B, T, H), the hidden state after each token."""
        return self.run_cell(self.wte(idx))  # (B, T, E) -> (B, T, H)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx (B, T) -> logits (B, T, V), and the mean cross-entropy against targets (B, T) or None."""
        logits = self.lm_head(self.hidden_states(idx))  # (B, T, V)
        return logits, lm_loss(logits, targets)


class RNN(RecurrentLM):
    """Vanilla RNN LM: embed, h_t = tanh(W_ih x_t + W_hh h_{t-1} + b), logits = head(h_t)."""

    def __init__(self, config: RNNConfig) -> None:
        super().__init__(config, "rnn")


class LSTM(RecurrentLM):
    """LSTM LM: embed, (h_t, c_t) = LSTM cell(x_t, (h_{t-1}, c_{t-1})), logits = head(h_t)."""

    def __init__(self, config: LSTMConfig) -> None:
        super().__init__(config, "lstm")
