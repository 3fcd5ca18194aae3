"""The training loop: the pure lr schedule, estimate_loss, a run that learns, history, plots."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest
import torch
from matplotlib.figure import Figure

from minilm.models import LSTM, MLP, LSTMConfig, MLPConfig
from minilm.plotting import plot_curves, plot_losses
from minilm.training.checkpoint import (
    checkpoint_path,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from minilm.training.loop import (
    History,
    TrainConfig,
    estimate_loss,
    eval_streams,
    get_lr,
    make_optimizer,
    train,
)

CFG = TrainConfig(max_steps=100, learning_rate=1.0, min_lr=0.1, warmup_steps=10)


def test_get_lr_warmup_cosine_floor():
    lrs = [get_lr(s, CFG) for s in range(120)]
    assert lrs == [get_lr(s, CFG) for s in range(120)]  # pure: same input, same output
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a < b for a, b in itertools.pairwise(lrs[:10]))  # warmup rises linearly
    assert all(a >= b for a, b in itertools.pairwise(lrs[10:]))  # then never rises
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[55] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert lrs[99] > 0.1 and all(lr == pytest.approx(0.1) for lr in lrs[100:])  # the floor


def test_get_lr_constant_and_decay_steps():
    constant = replace(CFG, lr_schedule="constant")
    assert [get_lr(s, constant) for s in (10, 50, 500)] == [1.0, 1.0, 1.0]
    assert get_lr(0, constant) == pytest.approx(0.1)  # warmup applies to both
    short = replace(CFG, lr_decay_steps=50)
    assert get_lr(50, short) == pytest.approx(0.1) and get_lr(49, short) > 0.1
    with pytest.raises(ValueError):
        get_lr(20, replace(CFG, lr_schedule="linear"))


def _task(seed: int = 0):
    """Data with structure: token t+1 = (token t + 1) mod V with prob 0.9."""
    g = torch.Generator().manual_seed(seed)
    V = 7
    data = [0]
    for _ in range(3000):
        step = 1 if torch.rand(1, generator=g).item() < 0.9 else 3
        data.append((data[-1] + step) % V)
    data = torch.tensor(data)
    train_data, val_data = data[:2500], data[2500:]

    def get_batch(split):
        src = train_data if split == "train" else val_data
        ix = torch.randint(0, len(src) - 9, (16,), generator=g)
        return torch.stack([src[i:i + 8] for i in ix]), torch.stack([src[i + 1:i + 9] for i in ix])

    return V, get_batch, g


def test_train_learns_and_returns_history(tmp_path):
    torch.manual_seed(0)
    V, get_batch, g = _task()
    model = MLP(MLPConfig(vocab_size=V, block_size=3, n_embd=8, n_hidden=32))
    cfg = TrainConfig(max_steps=60, learning_rate=1e-2, eval_interval=20, eval_iters=4,
                      checkpoint_dir=str(tmp_path), run_name="mlp", progress=False)
    h = train(model, get_batch, cfg, "cpu", generator=g)
    assert h.steps == [0, 20, 40, 60] and len(h.step_loss) == 60
    assert len(h.train_loss) == len(h.val_loss) == len(h.lr) == len(h.wall_time) == 4
    assert h.val_loss[-1] < 0.6 * h.val_loss[0]  # uniform is log 7 = 1.95; the task allows ~0.5
    assert all(t > 0 for t in h.tokens_per_s[1:]) and h.wall_time == sorted(h.wall_time)
    assert model.training  # left in train mode
    ckpt = load_checkpoint(checkpoint_path("mlp", tmp_path))
    assert ckpt["step"] == 60 and History.from_dict(ckpt["history"]) == h
    rebuilt = model_from_checkpoint(ckpt, MLP, MLPConfig)
    x, _ = get_batch("val")
    assert torch.equal(rebuilt(x)[0], model(x)[0])
    again = train(model, get_batch, replace(cfg, resume=True), "cpu", generator=g)
    assert again == h  # a finished run resumes to its end at once
    assert isinstance(plot_losses(h), Figure)
    assert isinstance(plot_curves({"a": ([0, 1], [2.0, 1.0])}, "x", "y"), Figure)


def test_train_with_own_optimizer_and_grad_accum():
    torch.manual_seed(0)
    V, get_batch, _ = _task(1)
    model = LSTM(LSTMConfig(vocab_size=V, block_size=8, n_embd=8, n_hidden=16))
    opt = torch.optim.SGD([{"params": model.parameters(), "lr_scale": 0.5}], lr=0.0)
    cfg = TrainConfig(max_steps=3, learning_rate=0.2, lr_schedule="constant", grad_accum_steps=2,
                      eval_interval=10, eval_iters=1, progress=False)
    h = train(model, get_batch, cfg, "cpu", optimizer=opt)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)  # lr * lr_scale, set by the loop
    assert h.steps == [0, 3] and len(h.step_loss) == 3


def test_estimate_loss_no_grad_and_restores_mode():
    V, get_batch, _ = _task()
    model = MLP(MLPConfig(vocab_size=V, block_size=3, n_embd=4, n_hidden=8))
    model.eval()
    out = estimate_loss(model, get_batch, 3, "cpu")
    assert set(out) == {"train", "val"} and not model.training
    assert all(p.grad is None for p in model.parameters())


def test_make_optimizer_decays_matrices_only():
    model = MLP(MLPConfig(vocab_size=5, block_size=2, n_embd=3, n_hidden=4))
    opt = make_optimizer(model, TrainConfig(weight_decay=0.1))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and all(p.dim() == 2 for p in decay["params"])
    assert no_decay["weight_decay"] == 0.0 and all(p.dim() == 1 for p in no_decay["params"])


def test_checkpoint_round_trip_weights_only(tmp_path):
    torch.manual_seed(0)
    model = LSTM(LSTMConfig(vocab_size=5, block_size=4, n_embd=3, n_hidden=4))
    opt = make_optimizer(model, TrainConfig())
    model(torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 4, dtype=torch.long))[1].backward()
    opt.step()
    g = torch.Generator().manual_seed(5)
    path = save_checkpoint(tmp_path / "c.pt", model, opt, 7, train_config=TrainConfig(),
                           history=History(steps=[0]), generator=g)
    ckpt = torch.load(path, weights_only=True)  # only tensors and plain values inside
    assert ckpt["step"] == 7 and ckpt["config"]["n_hidden"] == 4 and ckpt["model_class"] == "LSTM"
    assert ckpt["train_config"]["betas"] == (0.9, 0.99)
    rebuilt = model_from_checkpoint(path, LSTM, LSTMConfig)
    for k, v in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[k], v)
    opt2 = make_optimizer(rebuilt, TrainConfig())
    opt2.load_state_dict(ckpt["optimizer"])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_extending_a_finished_run_does_not_repeat_its_last_evaluation(tmp_path):
    torch.manual_seed(0)
    V, get_batch, g = _task(2)
    model = MLP(MLPConfig(vocab_size=V, block_size=3, n_embd=4, n_hidden=8))
    cfg = TrainConfig(max_steps=20, eval_interval=10, eval_iters=2, checkpoint_dir=str(tmp_path),
                      run_name="ext", progress=False)
    train(model, get_batch, cfg, "cpu", generator=g)
    h = train(model, get_batch, replace(cfg, max_steps=40, resume=True), "cpu", generator=g)
    assert h.steps == [0, 10, 20, 30, 40] and len(h.step_loss) == 40


def test_checkpoint_of_a_compiled_model_holds_the_plain_keys(tmp_path):
    class Wrapper(torch.nn.Module):  # what torch.compile returns: the module under _orig_mod
        def __init__(self, inner):
            super().__init__()
            self._orig_mod = inner

    model = MLP(MLPConfig(vocab_size=5, block_size=2, n_embd=3, n_hidden=4))
    path = save_checkpoint(tmp_path / "c.pt", Wrapper(model), step=1)
    ckpt = load_checkpoint(path)
    assert set(ckpt["model"]) == set(model.state_dict()) and ckpt["model_class"] == "MLP"
    rebuilt = model_from_checkpoint(ckpt, MLP, MLPConfig)
    assert all(torch.equal(rebuilt.state_dict()[k], v) for k, v in model.state_dict().items())


def _mlp_run(eval_interval: int, lr: float = 1e-2, max_steps: int = 30):
    torch.manual_seed(0)
    V, get_batch, g = _task(3)
    model = MLP(MLPConfig(vocab_size=V, block_size=3, n_embd=4, n_hidden=8))
    cfg = TrainConfig(max_steps=max_steps, learning_rate=lr, lr_schedule="constant",
                      eval_interval=eval_interval, eval_iters=3, progress=False)
    return model, train(model, get_batch, cfg, "cpu", generator=g)


def test_evaluating_never_changes_the_batches_training_sees():
    """get_batch draws train batches and evaluation batches from one generator: evaluation runs on
    its own streams, so evaluating every step or once gives the same weights."""
    often, h_often = _mlp_run(eval_interval=1)
    rarely, h_rarely = _mlp_run(eval_interval=30)
    assert h_often.steps == list(range(31)) and h_rarely.steps == [0, 30]
    for k, v in often.state_dict().items():
        assert torch.equal(v, rarely.state_dict()[k]), k
    assert h_often.step_loss == h_rarely.step_loss
    assert h_often.val_loss[-1] == h_rarely.val_loss[-1]  # the same batches measured, the same weights


def test_every_evaluation_measures_the_same_batches():
    _, h = _mlp_run(eval_interval=5, lr=0.0)  # weights never move: only the batches could differ
    assert len(set(h.val_loss)) == 1 and len(set(h.train_loss)) == 1


def test_eval_streams_restore_every_rng():
    g = torch.Generator().manual_seed(7)
    before = (g.get_state(), torch.get_rng_state())
    with eval_streams(g, 99):
        a = torch.randint(0, 1000, (5,), generator=g), torch.rand(3)
    assert torch.equal(g.get_state(), before[0]) and torch.equal(torch.get_rng_state(), before[1])
    with eval_streams(g, 99):
        b = torch.randint(0, 1000, (5,), generator=g), torch.rand(3)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_resume_refuses_a_checkpoint_trained_with_other_settings(tmp_path):
    V, get_batch, g = _task(4)
    model = MLP(MLPConfig(vocab_size=V, block_size=3, n_embd=4, n_hidden=8))
    cfg = TrainConfig(max_steps=4, eval_interval=2, eval_iters=1, checkpoint_dir=str(tmp_path),
                      run_name="r", resume=True, progress=False)
    train(model, get_batch, cfg, "cpu", generator=g)
    with pytest.raises(ValueError, match=r"learning_rate: 0.001 there, 0.002 here.*unlink"):
        train(model, get_batch, replace(cfg, learning_rate=2e-3), "cpu", generator=g)
    other = MLP(MLPConfig(vocab_size=V, block_size=3, n_embd=4, n_hidden=9))
    with pytest.raises(ValueError, match="model config"):
        train(other, get_batch, cfg, "cpu", generator=g)
    h = train(model, get_batch, replace(cfg, max_steps=6, eval_iters=2), "cpu", generator=g)
    assert h.steps == [0, 2, 4, 6]  # more steps, other evaluation settings: allowed


def test_train_config_checks_its_options():
    with pytest.raises(ValueError, match="lr_schedule='cosin'"):
        TrainConfig(lr_schedule="cosin")
    with pytest.raises(ValueError, match="eval_interval"):
        TrainConfig(eval_interval=0)


def test_make_optimizer_passes_every_setting():
    model = MLP(MLPConfig(vocab_size=5, block_size=2, n_embd=3, n_hidden=4))
    cfg = TrainConfig(learning_rate=0.3, betas=(0.8, 0.9), eps=1e-5, weight_decay=0.2)
    group = make_optimizer(model, cfg).param_groups[0]
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (0.3, (0.8, 0.9), 1e-5, 0.2)


def test_a_shorter_first_session_then_resume_gives_the_uninterrupted_weights(tmp_path):
    """Session 1 stops at step 25 (evaluating there, off the interval), session 2 runs on to 40."""
    def session(max_steps: int, folder):
        torch.manual_seed(0)
        V, get_batch, g = _task(5)
        model = MLP(MLPConfig(vocab_size=V, block_size=3, n_embd=4, n_hidden=8))
        cfg = TrainConfig(max_steps=max_steps, lr_decay_steps=40, warmup_steps=5, eval_interval=10,
                          eval_iters=2, checkpoint_interval=4, checkpoint_dir=str(folder), run_name="s",
                          resume=True, progress=False)
        opt = make_optimizer(model, cfg)
        return model, opt, train(model, get_batch, cfg, "cpu", optimizer=opt, generator=g)

    ref, ref_opt, ref_h = session(40, tmp_path / "a")
    session(25, tmp_path / "b")
    model, opt, h = session(40, tmp_path / "b")
    for k, v in ref.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    for a, b in zip(opt.state_dict()["state"].values(), ref_opt.state_dict()["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert h.step_loss == ref_h.step_loss and h.steps == [0, 10, 20, 25, 30, 40]
    assert [v for s, v in zip(h.steps, h.val_loss) if s != 25] == ref_h.val_loss  # the same batches


def test_a_named_run_checkpoints_at_every_evaluation_by_default(tmp_path):
    V, get_batch, g = _task(6)
    draws = []

    def dies_at_step_15(split):
        if split == "train" and torch.is_grad_enabled():
            draws.append(1)
            if len(draws) > 15:
                raise ConnectionError("disconnected")
        return get_batch(split)

    model = MLP(MLPConfig(vocab_size=V, block_size=3, n_embd=4, n_hidden=8))
    cfg = TrainConfig(max_steps=30, eval_interval=10, eval_iters=1, checkpoint_dir=str(tmp_path),
                      run_name="d", progress=False)
    assert cfg.checkpoint_interval is None and cfg.save_every == 10
    with pytest.raises(ConnectionError):
        train(model, dies_at_step_15, cfg, "cpu", generator=g)
    assert load_checkpoint(checkpoint_path("d", tmp_path))["step"] == 10
    assert replace(cfg, checkpoint_interval=0).save_every == 0


def test_a_checkpoint_saved_before_new_config_fields_still_resumes():
    """A GPTConfig saved before the modern-block fields existed resumes; a different model is refused."""
    from dataclasses import asdict

    from minilm.models.gpt import GPT, GPT2_FIELDS, GPTConfig
    from minilm.training.loop import check_resumable

    cfg = TrainConfig(max_steps=4, run_name="old")
    model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=2, n_embd=8))
    old = {k: v for k, v in asdict(model.config).items() if k in GPT2_FIELDS}  # as an older minilm saved it
    check_resumable({"config": old, "train_config": asdict(cfg)}, cfg, model)
    with pytest.raises(ValueError, match="model config"):
        check_resumable({"config": dict(old, n_embd=16), "train_config": asdict(cfg)}, cfg, model)
    with pytest.raises(ValueError, match="model config"):
        check_resumable({"config": dict(old, mlp="swiglu"), "train_config": asdict(cfg)}, cfg, model)
