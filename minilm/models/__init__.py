"""The ladder of language models; every one obeys forward(idx, targets=None) -> (logits, loss) (02-05)."""

from .base import LanguageModel, lm_loss
from .bigram import BigramConfig, BigramLM, CountBigram
from .gpt import GPT, GPTConfig
from .mlp import MLP, MLPConfig
from .rnn import (
    LSTM,
    RNN,
    LSTMCell,
    LSTMConfig,
    RecurrentLM,
    RNNCell,
    RNNConfig,
    lstm_step,
    rnn_step,
)

__all__ = [
    "GPT",
    "LSTM",
    "MLP",
    "RNN",
    "BigramConfig",
    "BigramLM",
    "CountBigram",
    "GPTConfig",
    "LSTMCell",
    "LSTMConfig",
    "LanguageModel",
    "MLPConfig",
    "RNNCell",
    "RNNConfig",
    "RecurrentLM",
    "lm_loss",
    "lstm_step",
    "rnn_step",
]
