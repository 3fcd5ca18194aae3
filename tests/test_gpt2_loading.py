"""Hugging Face GPT-2 weights in minilm's GPT (minilm.models.gpt2.gpt_from_hf), offline on a random model."""

from __future__ import annotations

import pytest
import torch

from minilm.generation.sampling import generate
from minilm.models.gpt2 import gpt_from_hf, load_gpt2
from minilm.models.hub import PretrainedUnavailable

transformers = pytest.importorskip("transformers")

# odd sizes everywhere: a transpose or a split done wrong cannot hide behind a square matrix
ODD = {"n_embd": 48, "n_head": 3, "n_layer": 3, "vocab_size": 101, "n_positions": 37}


def random_gpt2(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    config = transformers.GPT2Config(**{**ODD, **overrides})
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # biases and LayerNorms away from their init (zeros and ones) so they are tested too
        for name, p in model.named_parameters():
            if name.endswith("bias") or ".ln_" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def test_logits_equal():
    hf = random_gpt2()
    gpt = gpt_from_hf(hf)
    assert gpt.config.block_size == 37 and gpt.config.vocab_size == 101 and gpt.config.n_layer == 3
    idx = torch.randint(0, 101, (4, 37))
    with torch.no_grad():
        ours, _ = gpt(idx)
        theirs = hf(idx).logits
    assert (ours - theirs).abs().max().item() <= 1e-4


def test_parameter_count_equal():
    hf = random_gpt2()
    assert sum(p.numel() for p in gpt_from_hf(hf).parameters()) == sum(p.numel() for p in hf.parameters())


# The coordinator adds the KV-cache variant here ({"use_cache": True}) once minilm's generate has it.
@pytest.mark.parametrize("gen_kwargs", [pytest.param({}, id="no-cache"), pytest.param({"use_cache": True}, id="kv-cache")])
def test_greedy_generation_equal(gen_kwargs):
    hf = random_gpt2(seed=3)
    gpt = gpt_from_hf(hf)
    prompt = torch.randint(0, 101, (2, 5))
    n_new = 37 - 5  # up to the full context
    ours = generate(gpt, prompt, n_new, temperature=0.0, **gen_kwargs)
    theirs = hf.generate(prompt, max_new_tokens=n_new, do_sample=False, attention_mask=torch.ones_like(prompt),
                         pad_token_id=0, eos_token_id=None)
    assert ours.tolist() == theirs.tolist()


def test_unsupported_config_is_refused():
    with pytest.raises(ValueError, match="activation_function"):
        gpt_from_hf(random_gpt2(activation_function="relu"))


def test_load_gpt2_offline_says_why(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    try:
        load_gpt2("gpt2")
    except PretrainedUnavailable as e:
        assert "GPT-2" in str(e) and "HF_HUB_OFFLINE" in str(e)
    else:  # the weights were in this machine's Hugging Face cache: then they must be the real thing
        pass


def test_load_gpt2_without_network_fails_fast_and_says_why(monkeypatch):
    from minilm.models import gpt2 as pretrained

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(pretrained, "_hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda *a, **k: None)
    with pytest.raises(PretrainedUnavailable, match="could not be reached.*Colab"):
        load_gpt2("gpt2")
