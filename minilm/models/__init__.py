"""The models (notebooks 02-05; real pretrained ones in 06-09): the ladder from a bigram to a GPT, every one
obeying the contract forward(idx (B, T), targets=None) -> (logits (B, T, V), loss), and real weights loaded
into minilm's own classes.

- `base`: `LanguageModel` (the typed contract), `lm_loss`, `check_choices`
- `bigram`, `mlp`, `rnn` (RNN and LSTM cells by hand), `attention` (causal self-attention, the KV cache), `gpt`
- `gpt2`: GPT-2's weights from the Hub (online) into `GPT`: `load_gpt2`, `gpt_from_hf`
- `gpt` also holds the modern block's pieces (`GPTConfig.modern`: `RMSNorm`, `SwiGLU`, rotary positions
  and grouped-query attention from `attention`); `llama`: SmolLM2-135M-Instruct offline (and any
  Llama-architecture transformers model) into `GPT`: `load_smollm2`, `gpt_from_llama`
- `hub`: `PretrainedUnavailable`, the error a notebook catches to skip a real-model section

Imports only the core (runtime); nothing else of minilm.
"""

from .base import LanguageModel, lm_loss
from .bigram import BigramConfig, BigramLM, CountBigram
from .gpt import GPT, GPTConfig, RMSNorm, SwiGLU
from .gpt2 import gpt_from_hf, load_gpt2
from .hub import PretrainedUnavailable
from .llama import gpt_from_llama, load_smollm2
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
    "PretrainedUnavailable",
    "RMSNorm",
    "RNNCell",
    "RNNConfig",
    "RecurrentLM",
    "SwiGLU",
    "gpt_from_hf",
    "gpt_from_llama",
    "lm_loss",
    "load_gpt2",
    "load_smollm2",
    "lstm_step",
    "rnn_step",
]
