"""GPT-2's real weights in minilm's own GPT (06-08), from the Hugging Face Hub (online only).

`load_gpt2()` puts them into minilm's GPT (`gpt_from_hf`, which undoes Hugging Face's Conv1D layout: its
c_attn, c_proj and c_fc weights are stored (in, out), the transpose of nn.Linear's (out, in)). Without a
network (or without `transformers`) it raises `models.hub.PretrainedUnavailable`, whose message says why.
"""

from __future__ import annotations

import torch
from torch import nn

from .hub import HF_EXTRA, PretrainedUnavailable, user_chose_offline

# Hugging Face's Conv1D layers (weight (in, out)); nn.Linear stores (out, in), so these are transposed
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def gpt_from_hf(hf_model: nn.Module):
    """minilm's GPT with the weights of a transformers GPT2LMHeadModel (any size), in eval mode.

    The architectures match piece by piece (pre-LayerNorm blocks, tanh GELU, tied embeddings);
    what differs is the layout of the four Conv1D weights of each block, transposed here. A config
    this GPT cannot represent (another activation, an untied head, a custom MLP width) is an error."""
    from .gpt import GPT, GPTConfig

    cfg = hf_model.config
    problems = []
    if getattr(cfg, "activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
        problems.append(f"activation_function={cfg.activation_function!r} (minilm's GPT uses tanh GELU)")
    if getattr(cfg, "n_inner", None) not in (None, 4 * cfg.n_embd):
        problems.append(f"n_inner={cfg.n_inner} (minilm's MLP is 4 * n_embd = {4 * cfg.n_embd} wide)")
    if abs(getattr(cfg, "layer_norm_epsilon", 1e-5) - 1e-5) > 1e-12:
        problems.append(f"layer_norm_epsilon={cfg.layer_norm_epsilon} (minilm uses 1e-5)")
    if not getattr(cfg, "scale_attn_weights", True) or getattr(cfg, "scale_attn_by_inverse_layer_idx", False) \
            or getattr(cfg, "reorder_and_upcast_attn", False):
        problems.append("non-standard attention scaling")
    sd = hf_model.state_dict()
    if "lm_head.weight" in sd and not torch.equal(sd["lm_head.weight"], sd["transformer.wte.weight"]):
        problems.append("an output layer not tied to the embedding (minilm's GPT ties them)")
    if problems:
        raise ValueError("this GPT-2 config cannot be loaded into minilm's GPT: " + "; ".join(problems))
    config = GPTConfig(block_size=cfg.n_positions, vocab_size=cfg.vocab_size, n_layer=cfg.n_layer,
                       n_head=cfg.n_head, n_embd=cfg.n_embd, dropout=0.0, bias=True)
    model = GPT(config)
    ours = model.state_dict()
    missing = [k for k in ours if k not in sd and k != "lm_head.weight"]
    if missing:
        raise ValueError(f"the Hugging Face model lacks {len(missing)} weights minilm's GPT needs, e.g. {missing[:3]}")
    with torch.no_grad():
        for key, target in ours.items():
            source = sd["transformer.wte.weight"] if key == "lm_head.weight" else sd[key]
            if key.endswith(CONV1D_WEIGHTS):
                source = source.t()  # Conv1D (in, out) -> Linear (out, in)
            if source.shape != target.shape:
                raise ValueError(f"{key}: shape {tuple(source.shape)} from Hugging Face, {tuple(target.shape)} here")
            target.copy_(source)
    return model.eval()


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether huggingface.co answers on port 443 within `timeout` seconds (no hanging when offline)."""
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_gpt2(name: str = "gpt2", device: torch.device | str | None = None):
    """(minilm GPT with the real GPT-2 weights `name`, its Hugging Face tokenizer), from the Hub or its cache.

    Raises PretrainedUnavailable with the reason (no `transformers`, offline, unknown name) when the
    weights cannot be had here, so a notebook can skip its GPT-2 section and carry on."""
    try:
        from transformers import AutoTokenizer, GPT2LMHeadModel
    except ImportError as e:
        raise PretrainedUnavailable(f"loading GPT-2 needs the package transformers: run `{HF_EXTRA}`") from e
    from huggingface_hub import constants, try_to_load_from_cache

    user_offline = user_chose_offline()
    cached = isinstance(try_to_load_from_cache(name, "config.json"), str)
    saved = constants.HF_HUB_OFFLINE
    try:
        if not user_offline and not cached and not _hub_reachable():
            raise ConnectionError("huggingface.co:443 did not answer within 3 s")
        constants.HF_HUB_OFFLINE = user_offline or (cached and not _hub_reachable())
        hf = GPT2LMHeadModel.from_pretrained(name)
        tokenizer = AutoTokenizer.from_pretrained(name)
    except Exception as e:  # offline: OSError / connection errors of every kind; bad name: OSError
        why = ("HF_HUB_OFFLINE is set, so the Hub is never contacted" if user_offline else
               "the Hugging Face Hub could not be reached (no internet?)")
        raise PretrainedUnavailable(
            f"the GPT-2 weights {name!r} are not available here: {why}, and they are not in the local "
            f"Hugging Face cache ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}). "
            "They download once (about 500 MB for 'gpt2') on a machine with internet, e.g. Colab."
        ) from e
    finally:
        constants.HF_HUB_OFFLINE = saved
    model = gpt_from_hf(hf)
    if device is not None:
        model = model.to(device)
    return model, tokenizer
