"""The generation panel: every control is there, the button streams the seeded sample into the box,
and sample_text (the no-widget path) gives the same text."""

from __future__ import annotations

import itertools

import pytest
import torch

from minilm.data.tokenizers import CharTokenizer
from minilm.generation.panel import generation_panel, sample_text, stream_text
from minilm.models.gpt import GPT, GPTConfig


def _model_and_tok():
    tok = CharTokenizer(sorted(set("abcdefgh \n:ROMEO")))
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=16, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16)).eval(), tok


def test_button_streams_the_same_text_as_sample_text():
    pytest.importorskip("ipywidgets")
    model, tok = _model_and_tok()
    panel = generation_panel(model, tok, prompt="ROMEO:", length=30)
    c = panel.controls
    assert set(c) == {"prompt", "temperature", "top_k", "top_p", "length", "seed"}
    c["temperature"].value, c["top_k"].value, c["top_p"].value, c["seed"].value = 0.9, 5, 0.9, 3
    panel.button.click()
    text = panel.output.value
    assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 30  # one character per token
    assert text == sample_text(model, tok, "ROMEO:", 0.9, 5, 0.9, 30, 3)
    assert text != sample_text(model, tok, "ROMEO:", 0.9, 5, 0.9, 30, 4)
    c["prompt"].value = "xyz"  # not in the vocabulary: an error in the status line, no crash
    panel.button.click()
    assert panel.status.value.startswith("error:") and not panel.button.disabled


def test_stream_text_grows_token_by_token_and_checks_arguments():
    model, tok = _model_and_tok()
    pieces = list(stream_text(model, tok, "ab", length=10, seed=1))
    assert [len(p) for p in pieces] == list(range(1, 11)) and all(b.startswith(a) for a, b in itertools.pairwise(pieces))
    with pytest.raises(ValueError, match="temperature"):
        next(stream_text(model, tok, "ab", temperature=-1.0))
