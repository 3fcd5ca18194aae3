"""The ladder of language models; every one obeys forward(idx, targets=None) -> (logits, loss) (02-05)."""

from .base import lm_loss
from .bigram import BigramConfig, BigramLM, CountBigram
from .mlp import MLP, MLPConfig
from .rnn import LSTM, RNN, LSTMCell, LSTMConfig, RNNCell, RNNConfig, lstm_step, rnn_step

__all__ = [
    "BigramConfig",
    "BigramLM",
    "CountBigram",
    "LSTM",
    "LSTMCell",
    "LSTMConfig",
    "MLP",
    "MLPConfig",
    "RNN",
    "RNNCell",
    "RNNConfig",
    "lm_loss",
    "lstm_step",
    "rnn_step",
]
from .gpt import GPT, GPTConfig  # noqa: E402,F401  (issue 5; lead: add both to __all__)
