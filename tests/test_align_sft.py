"""Supervised fine-tuning (minilm.align.sft): masked targets, the masked loss, padding, the course's loop."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from minilm.align.sft import masked_loss, masked_targets, pad_batch, sft_batches, sft_loss
from minilm.models.gpt import GPT, GPTConfig
from minilm.training.loop import TrainConfig, train


def test_masked_targets_by_hand():
    ids, mask = [5, 1, 2, 6, 3, 4, 6], [0, 0, 0, 0, 1, 1, 1]
    x, y = masked_targets(ids, mask)
    assert x == [5, 1, 2, 6, 3, 4]
    assert y == [-1, -1, -1, 3, 4, 6]  # position t predicts ids[t+1]; trained only where mask[t+1] == 1
    with pytest.raises(ValueError, match="same length"):
        masked_targets([1, 2], [0])


def test_sft_loss_by_hand_and_against_cross_entropy():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]]))  # (1, 3, 3)
    y = torch.tensor([[-1, 1, 2]])
    assert math.isclose(float(sft_loss(logits, y)), -(math.log(0.8) + math.log(0.6)) / 2, rel_tol=1e-6)
    torch.manual_seed(0)
    logits, y = torch.randn(3, 7, 11), torch.randint(0, 11, (3, 7))
    y[0, :4] = -1
    y[2, 1] = -1
    torch.testing.assert_close(sft_loss(logits, y), F.cross_entropy(logits.view(-1, 11), y.view(-1), ignore_index=-1))
    none = sft_loss(logits.requires_grad_(), torch.full((3, 7), -1))
    assert float(none.detach()) == 0.0
    none.backward()  # no trained token: a zero loss that still backpropagates


def test_changing_a_prompt_target_changes_nothing_an_answer_target_changes_the_loss():
    torch.manual_seed(1)
    ids, mask = [7, 1, 2, 3, 8, 4, 5, 9], [0, 0, 0, 0, 0, 1, 1, 1]
    logits = torch.randn(1, 7, 10)
    loss = sft_loss(logits, torch.tensor([masked_targets(ids, mask)[1]]))
    for t in range(1, len(ids)):
        changed = list(ids)
        changed[t] = (ids[t] + 1) % 10  # a different target for position t - 1 (logits kept)
        new = sft_loss(logits, torch.tensor([masked_targets(changed, mask)[1]]))
        if mask[t]:
            assert not torch.equal(new, loss), f"answer token {t}"
        else:
            assert torch.equal(new, loss), f"prompt token {t}"


def tiny_gpt(vocab: int = 12) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=16, vocab_size=vocab, n_layer=1, n_head=2, n_embd=16)).eval()


def test_right_padding_changes_no_real_logit_and_no_loss():
    model = tiny_gpt()
    a = masked_targets([1, 2, 3, 4, 5, 6], [0, 0, 1, 1, 1, 1])
    b = masked_targets([7, 8, 9], [0, 1, 1])
    x, y = pad_batch([a, b], pad_id=11)
    assert x.tolist()[1] == [7, 8, 11, 11, 11] and y.tolist()[1] == [8, 9, -1, -1, -1]
    logits = model(x)[0]
    alone = model(torch.tensor([b[0]]))[0]
    torch.testing.assert_close(logits[1, :2], alone[0], rtol=1e-5, atol=1e-6)
    by_hand = (4 * sft_loss(model(torch.tensor([a[0]]))[0], torch.tensor([a[1]])) + 2 * sft_loss(alone, torch.tensor([b[1]]))) / 6
    torch.testing.assert_close(sft_loss(logits, y), by_hand, rtol=1e-5, atol=1e-6)  # every trained token once
    torch.testing.assert_close(model(x, y)[1], sft_loss(logits, y), rtol=1e-5, atol=1e-6)  # the GPT's own loss agrees


def test_sft_with_the_course_loop_learns_the_answers():
    model = tiny_gpt()
    examples = [([1, 2, 10, 3 + k % 3, 4 + k % 3, 11], [0, 0, 0, 1, 1, 1]) for k in range(6)]
    get, gen = sft_batches(examples, examples, batch_size=4, pad_id=11, device="cpu")
    x, y = get("train")
    assert x.shape == y.shape == (4, 5) and (y[:, :2] == -1).all()
    before = masked_loss(model, examples, 11, "cpu")
    cfg = TrainConfig(max_steps=40, learning_rate=1e-2, eval_interval=20, eval_iters=2, progress=False)
    train(model, get, cfg, "cpu", generator=gen)
    after = masked_loss(model, examples, 11, "cpu")
    assert after < before / 2, (before, after)
