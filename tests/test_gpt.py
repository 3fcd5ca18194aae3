"""The GPT: the model contract, GPT-2's parameter names, tying, initialisation, optimiser groups (notebooks 04-05)."""

import math

import pytest
import torch

from minilm.models.gpt import GPT, GPTConfig, flops_per_token
from minilm.training.optim import (
    compile_supported,
    configure_optimizer,
    fused_supported,
    maybe_compile,
    param_groups,
)
from minilm.training.zoo import gpt_config_for, gpt_sizes

TINY = GPTConfig(block_size=16, vocab_size=37, n_layer=2, n_head=2, n_embd=32)

# GPT-2 small (124M) state_dict keys and shapes as Hugging Face's GPT2LMHeadModel holds them,
# apart from its non-persistent attn.bias buffers; HF's Conv1D stores c_attn/c_proj/c_fc
# transposed, (in, out), where nn.Linear holds (out, in): GPT2_SHAPES lists the nn.Linear view.
GPT2_GLOBAL = {
    "transformer.wte.weight": (50257, 768),
    "transformer.wpe.weight": (1024, 768),
    "transformer.ln_f.weight": (768,),
    "transformer.ln_f.bias": (768,),
    "lm_head.weight": (50257, 768),
}
GPT2_LAYER = {
    "ln_1.weight": (768,),
    "ln_1.bias": (768,),
    "attn.c_attn.weight": (2304, 768),
    "attn.c_attn.bias": (2304,),
    "attn.c_proj.weight": (768, 768),
    "attn.c_proj.bias": (768,),
    "ln_2.weight": (768,),
    "ln_2.bias": (768,),
    "mlp.c_fc.weight": (3072, 768),
    "mlp.c_fc.bias": (3072,),
    "mlp.c_proj.weight": (768, 3072),
    "mlp.c_proj.bias": (768,),
}
GPT2_SHAPES = {
    **GPT2_GLOBAL,
    **{f"transformer.h.{i}.{k}": s for i in range(12) for k, s in GPT2_LAYER.items()},
}


def test_gpt2_small_state_dict_keys_and_shapes():
    with torch.device("meta"):  # shapes only, no memory, no init cost
        model = GPT(GPTConfig(block_size=1024, vocab_size=50257, n_layer=12, n_head=12, n_embd=768))
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == GPT2_SHAPES
    # GPT-2 small has 124,439,808 parameters counted once (tied lm_head), 85M without embeddings
    assert model.num_params(non_embedding=False) == 124_439_808
    assert model.num_params() == 124_439_808 - 1024 * 768


def test_contract_shapes_and_loss():
    torch.manual_seed(0)
    model = GPT(TINY)
    assert model.block_size == 16 and model.config is TINY
    idx = torch.randint(0, 37, (3, 10))
    logits, loss = model(idx)
    assert logits.shape == (3, 10, 37) and loss is None
    targets = torch.randint(0, 37, (3, 10))
    targets[0, :4] = -1  # ignored positions
    logits, loss = model(idx, targets)
    ref = torch.nn.functional.cross_entropy(logits[targets != -1], targets[targets != -1])
    torch.testing.assert_close(loss, ref)
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="block_size=16"):  # the heat maps of notebook 04 too
        model.attention_maps(torch.zeros(1, 17, dtype=torch.long))


def test_tied_embeddings():
    model = GPT(TINY)
    assert model.lm_head.weight is model.transformer.wte.weight
    n_unique = sum(p.numel() for p in {id(p): p for p in model.state_dict(keep_vars=True).values()}.values())
    assert model.num_params(non_embedding=False) == n_unique


def test_init_statistics_and_loss_at_init():
    torch.manual_seed(0)
    cfg = GPTConfig(block_size=64, vocab_size=500, n_layer=4, n_head=4, n_embd=256)
    model = GPT(cfg)
    sd = model.state_dict()
    assert abs(sd["transformer.wte.weight"].std().item() - 0.02) < 1e-3
    assert abs(sd["transformer.h.0.mlp.c_fc.weight"].std().item() - 0.02) < 1e-3
    scaled = 0.02 / math.sqrt(2 * cfg.n_layer)
    for name in ("attn.c_proj.weight", "mlp.c_proj.weight"):
        assert abs(sd[f"transformer.h.3.{name}"].std().item() - scaled) < 1e-3
    assert sd["transformer.h.1.attn.c_attn.bias"].abs().max() == 0
    assert torch.equal(sd["transformer.ln_f.weight"], torch.ones(256))
    idx, targets = torch.randint(0, 500, (2, 8, 64))
    _, loss = model(idx, targets)
    assert abs(loss.item() - math.log(500)) < 0.1  # near-uniform predictions at init


def test_sdpa_and_explicit_models_agree():
    torch.manual_seed(0)
    fast = GPT(TINY)
    slow = GPT(GPTConfig(**{**TINY.__dict__, "sdpa": False}))
    slow.load_state_dict(fast.state_dict())
    idx = torch.randint(0, 37, (2, 16))
    torch.testing.assert_close(slow(idx)[0], fast(idx)[0], atol=1e-5, rtol=1e-5)
    maps = fast.attention_maps(idx)
    assert len(maps) == 2 and maps[0].shape == (2, 2, 16, 16)
    torch.testing.assert_close(maps[1].sum(-1), torch.ones(2, 2, 16))


def test_loss_goes_down():
    torch.manual_seed(0)
    model = GPT(TINY)
    opt = configure_optimizer(model, lr=3e-3, weight_decay=0.1)
    data = torch.arange(200) % 37  # a counting sequence: perfectly predictable
    x = torch.stack([data[i : i + 16] for i in range(0, 160, 10)])
    y = torch.stack([data[i + 1 : i + 17] for i in range(0, 160, 10)])
    losses = []
    for _ in range(60):
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


def test_optimizer_groups_decay_only_matrices():
    model = GPT(TINY)
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    # per block: c_attn, attn.c_proj, c_fc, mlp.c_proj weights; plus wte (= lm_head) and wpe
    assert len(decay["params"]) == 4 * TINY.n_layer + 2
    # per block: ln_1 w/b, ln_2 w/b and 4 Linear biases; plus ln_f w/b
    assert len(no_decay["params"]) == 8 * TINY.n_layer + 2
    n = sum(p.numel() for g in (decay, no_decay) for p in g["params"])
    assert n == model.num_params(non_embedding=False)
    opt = configure_optimizer(model, lr=1e-3, device="cpu")
    assert bool(opt.defaults.get("fused")) == fused_supported("cpu")
    assert not fused_supported("mps")


def test_fused_adamw_matches_the_plain_one():
    """The fused kernel configure_optimizer picks computes the same update as the textbook AdamW."""
    if not fused_supported("cpu"):
        pytest.skip("fused AdamW on CPU needs torch >= 2.4")
    torch.manual_seed(0)
    a = GPT(TINY).double()  # in float64, so the key biases' rounding-noise gradients (their true
    b = GPT(TINY).double()  # gradient is 0: softmax ignores them) stay far below Adam's eps
    b.load_state_dict(a.state_dict())
    opt_a = configure_optimizer(a, lr=1e-2, device="cpu")
    opt_b = torch.optim.AdamW(param_groups(b, 0.1), lr=1e-2, betas=(0.9, 0.99))
    idx = torch.randint(0, 37, (4, 16))
    for model, opt in ((a, opt_a), (b, opt_b)):
        for _ in range(3):
            model(idx, idx.roll(1, dims=1))[1].backward()
            opt.step()
            opt.zero_grad()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, atol=1e-9, rtol=1e-7)


def test_compile_off_by_default_on_cpu():
    model = GPT(TINY)
    assert compile_supported("cpu") is False
    assert maybe_compile(model, "cpu") is model
    assert maybe_compile(model, "cpu", enabled=False) is model


@pytest.mark.parametrize("preset", ["smoke", "cpu", "gpu"])
def test_preset_configs(preset):
    sizes = gpt_sizes(preset, vocab_size=65)
    counts = [GPT(cfg).num_params() for cfg in sizes.values()] if preset != "gpu" else None
    assert list(sizes) == ["small", "medium", "large"]
    assert gpt_config_for(preset, 65) == sizes["medium"]
    if counts:
        assert counts == sorted(counts) and len(set(counts)) == 3
    assert gpt_config_for("cpu", 65, dropout=0.5).dropout == 0.5
    assert flops_per_token(sizes["medium"], 1000) > 6000
