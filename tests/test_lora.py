"""LoRA by hand (minilm.finetune.lora) against nn.Linear and Hugging Face models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from minilm.finetune.lora import (
    LoRAEmbedding,
    LoRALinear,
    TiedLoRAOutput,
    apply_lora,
    count_parameters,
    mark_only_lora_trainable,
    merge_lora,
    unmerge_lora,
)
from minilm.models.gpt import GPT, GPTConfig


def tiny_gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=16, vocab_size=37, n_layer=2, n_head=2, n_embd=24)).eval()


def randomise_lora(model: nn.Module) -> None:
    """Give every B a non-zero value, as training would, so the update is really there."""
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, LoRALinear):
            nn.init.normal_(m.lora_B, std=0.1)
        if isinstance(m, LoRAEmbedding):  # its A starts at zero
            nn.init.normal_(m.lora_A, std=0.1)


def test_lora_linear_matches_its_formula():
    torch.manual_seed(0)
    base = nn.Linear(7, 5)
    layer = LoRALinear(base, rank=3, alpha=6.0)
    nn.init.normal_(layer.lora_B)
    x = torch.randn(4, 2, 7)
    expected = x @ base.weight.T + base.bias + 2.0 * (x @ layer.lora_A.T @ layer.lora_B.T)
    torch.testing.assert_close(layer(x), expected)
    assert layer.delta_weight().shape == (5, 7)


def test_fresh_lora_leaves_outputs_unchanged():
    model = tiny_gpt()
    idx = torch.randint(0, 37, (3, 16))
    before, _ = model(idx)
    names = apply_lora(model, r"attn\.c_attn|mlp\.c_fc", rank=4, alpha=8)
    assert len(names) == 4
    after, _ = model(idx)
    assert torch.equal(before, after)  # B = 0: exactly nothing changes


def test_merged_and_unmerged_agree():
    model = tiny_gpt()
    idx = torch.randint(0, 37, (3, 16))
    apply_lora(model, r"c_attn|c_proj|c_fc", rank=4, alpha=8)
    randomise_lora(model)
    unmerged, _ = model(idx)
    base_before = model.transformer.h[0].attn.c_attn.base.weight.clone()
    assert merge_lora(model) == 8
    merged, _ = model(idx)
    assert (unmerged - merged).abs().max().item() <= 1e-5
    assert not torch.equal(model.transformer.h[0].attn.c_attn.base.weight, base_before)
    unmerge_lora(model)
    again, _ = model(idx)
    assert (again - unmerged).abs().max().item() <= 1e-5
    torch.testing.assert_close(model.transformer.h[0].attn.c_attn.base.weight, base_before)


def test_lora_embedding_matches_its_formula():
    torch.manual_seed(0)
    base = nn.Embedding(11, 6)
    layer = LoRAEmbedding(base, rank=2, alpha=4.0)
    idx = torch.randint(0, 11, (3, 5))
    assert torch.equal(layer(idx), base(idx))  # A = 0: a fresh adapter changes nothing
    nn.init.normal_(layer.lora_A)
    delta = 2.0 * (layer.lora_B @ layer.lora_A).T  # (vocab, dim)
    torch.testing.assert_close(layer(idx), base.weight[idx] + delta[idx])
    torch.testing.assert_close(layer.delta_weight(), delta)


def test_lora_on_a_tied_embedding_keeps_the_output_layer_tied():
    """GPT ties lm_head to wte: LoRA on wte also reaches lm_head, merged or not, and nothing else is copied."""
    model = tiny_gpt()
    idx = torch.randint(0, 37, (3, 16))
    before, _ = model(idx)
    n_params = sum(p.numel() for p in model.parameters())
    names = apply_lora(model, r"wte|c_attn|lm_head", rank=3, alpha=6)
    assert names == ["transformer.wte", "transformer.h.0.attn.c_attn", "transformer.h.1.attn.c_attn"]
    assert isinstance(model.transformer.wte, LoRAEmbedding) and isinstance(model.lm_head, TiedLoRAOutput)
    assert model.lm_head.weight is model.transformer.wte.weight
    assert torch.equal(model(idx)[0], before)
    randomise_lora(model)
    unmerged, _ = model(idx)
    with torch.no_grad():  # the same model by hand: both ends of the tie read E + delta_E
        E = model.transformer.wte.weight + model.transformer.wte.delta_weight()
        h = model.features(idx)
        torch.testing.assert_close(unmerged, h @ E.T)
    merge_lora(model)
    merged, _ = model(idx)
    assert (unmerged - merged).abs().max().item() <= 1e-5
    unmerge_lora(model)
    assert (model(idx)[0] - unmerged).abs().max().item() <= 1e-5
    lora = 3 * (37 + 24) + 2 * 3 * (24 + 72)
    assert sum(p.numel() for p in model.parameters()) == n_params + lora  # no second copy of the adapter
    mark_only_lora_trainable(model)
    model(idx, idx)[1].backward()
    assert model.transformer.wte.lora_A.grad is not None and model.transformer.wte.weight.grad is None


def test_lora_on_a_tied_output_layer_alone_is_refused():
    with pytest.raises(ValueError, match="tied to the embedding transformer.wte"):
        apply_lora(tiny_gpt(), r"lm_head")


def test_only_lora_and_head_get_gradients():
    model = tiny_gpt()
    head = nn.Linear(24, 2)
    model.head = head  # a head registered on the model, kept trainable by name
    apply_lora(model, r"attn\.c_attn", rank=2)
    mark_only_lora_trainable(model, keep=r"^head\.")
    idx = torch.randint(0, 37, (2, 16))
    loss = head(model.features(idx)[:, -1]).sum()
    loss.backward()
    for name, p in model.named_parameters():
        lora_or_head = "lora_" in name or name.startswith("head.")
        assert p.requires_grad == lora_or_head, name
        assert (p.grad is not None) == lora_or_head, name
    trainable, total = count_parameters(model)
    assert trainable == 2 * (2 * 24 + 72 * 2) + 24 * 2 + 2
    assert total == sum(p.numel() for p in model.parameters())


def test_pattern_matching_nothing_is_an_error():
    model = tiny_gpt()
    with pytest.raises(ValueError, match="matches no Linear layer.*c_attn"):
        apply_lora(model, r"q_proj")


def test_bad_rank_is_an_error():
    with pytest.raises(ValueError, match="rank=9"):
        LoRALinear(nn.Linear(4, 8), rank=9)


def test_lora_on_a_hugging_face_model():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=40, max_position_embeddings=20)
    torch.manual_seed(0)
    bert = transformers.BertModel(config).eval()
    ids = torch.randint(0, 50, (2, 9))
    before = bert(input_ids=ids).last_hidden_state
    names = apply_lora(bert, r"attention\.self\.(query|value)", rank=4)
    assert len(names) == 4 and all(n.endswith(("query", "value")) for n in names)
    assert torch.equal(bert(input_ids=ids).last_hidden_state, before)
    mark_only_lora_trainable(bert)
    randomise_lora(bert)
    out = bert(input_ids=ids).last_hidden_state
    out.sum().backward()
    grads = {n for n, p in bert.named_parameters() if p.grad is not None}
    assert grads and all("lora_" in n for n in grads)
    merge_lora(bert)
    assert (bert(input_ids=ids).last_hidden_state - out).abs().max().item() <= 1e-5


def test_lora_on_gpt2_conv1d():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=41, n_positions=12, n_embd=16,
                                                              n_layer=1, n_head=2)).eval()
    ids = torch.randint(0, 41, (2, 12))
    before = hf(ids).logits
    apply_lora(hf, r"attn\.c_attn", rank=2)  # a Conv1D: weight stored (in, out)
    assert torch.equal(hf(ids).logits, before)
    randomise_lora(hf)
    unmerged = hf(ids).logits
    merge_lora(hf)
    assert (hf(ids).logits - unmerged).abs().max().item() <= 1e-5
