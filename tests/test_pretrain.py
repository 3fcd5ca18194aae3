"""`minilm pretrain`: every config field is an option of its type (dashes or underscores), a wrong name or value
fails with a suggestion and a pointer to --help, a wrong --data or Ctrl-C gets the command's own sentence,
the preset's defaults are the zoo's recipe (bit for bit the zoo's training), the result loads like a zoo
model, and train() keeps DDP's gradient all-reduce for the last micro-batch of each step."""

from __future__ import annotations

import contextlib
import re
import types
import typing
from dataclasses import fields
from typing import Literal

import pytest
import torch
from torch import nn

import minilm.recipes
from minilm.cli import commands as cli
from minilm.cli.pretrain import (
    SECTIONS,
    OptionError,
    PretrainOptions,
    build,
    option_table,
    parse_options,
    plan,
)
from minilm.cli.pretrain import main as pretrain_main
from minilm.data.batching import char_data
from minilm.data.tokenfile import TokenFile, prepare
from minilm.models.gpt import GPT, GPTConfig
from minilm.training import zoo
from minilm.training.loop import TrainConfig, train


def samples(tp) -> list[tuple[str, object]]:
    """(text on the command line, the value it must give) for a field type."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = next(a for a in typing.get_args(tp) if a is not type(None))
        return [("none", None), *samples(inner)]
    if tp is bool:
        return [("true", True), ("false", False), ("0", False), ("yes", True)]
    if tp is int:
        return [("7", 7)]
    if tp is float:
        return [("0.25", 0.25), ("3e-4", 3e-4)]
    if tp is str:
        return [("some/where", "some/where")]
    if typing.get_origin(tp) is Literal:
        return [(c, c) for c in typing.get_args(tp)]
    if typing.get_origin(tp) is tuple:
        return [("0.5,0.75", (0.5, 0.75)), ("0.5 0.75", (0.5, 0.75))]
    raise AssertionError(f"no sample for {tp}")


FIELDS = [(cls, f.name) for cls in SECTIONS for f in fields(cls)]


@pytest.mark.parametrize(("cls", "name"), FIELDS, ids=[f"{c.__name__}.{n}" for c, n in FIELDS])
def test_every_field_is_an_option_of_its_type(cls, name):
    tp = typing.get_type_hints(cls)[name]
    section = SECTIONS.index(cls)
    for text, value in samples(tp):
        argv = ["--data", "d", f"--{name}", text] if name != "data" else [f"--{name}", text]
        parsed = parse_options(argv)
        got = getattr(parsed[2], name) if section == 2 else parsed[section][name]
        assert got == value and type(got) is type(value), (name, text, got)
        assert all(name not in parsed[k] for k in (0, 1) if k != section)  # lands in its own section only


def test_the_listing_names_every_field_with_its_type_and_comment():
    rows = {r[0]: r for r in option_table()}
    assert set(rows) == {f"--{n}" for _, n in FIELDS}
    assert rows["--betas"][1] == "float,float" and rows["--grad_clip"][1] == "float | none"
    assert rows["--lr_schedule"][1] == "cosine|constant" and rows["--n_layer"][3].startswith("Transformer blocks")


def test_a_bare_bool_flag_is_true():
    model_over, train_over, _ = parse_options(["--data", "d", "--resume", "--bias", "false"])
    assert train_over["resume"] is True and model_over["bias"] is False
    assert parse_options(["--data", "d", "--bias"])[0]["bias"] is True


@pytest.mark.parametrize(("argv", "says"), [
    (["--n_layers", "3"], "did you mean --n_layer"),
    (["--n-layers", "3"], "did you mean --n_layer"),
    (["--max_step", "10"], "--max_step: did you mean --max_steps"),
    (["--lr", "3e-4"], "unrecognized arguments: --lr"),  # no abbreviations: --lr is not --lr_schedule
    (["--n_layer", "six"], "--n_layer: expected int, got 'six'"),
    (["--dropout", "lots"], "--dropout: expected float, got 'lots'"),
    (["--betas", "0.9"], "--betas: expected float,float, got '0.9'"),
    (["--lr_schedule", "linear"], "expected cosine|constant, got 'linear'"),
    (["--bias", "maybe"], "expected bool, got 'maybe'"),
    (["--grad_clip", "off"], "expected float | none, got 'off'"),
    (["--preset", "tpu"], "expected smoke|cpu|gpu | none, got 'tpu'"),
    (["stray"], "unrecognized arguments: stray"),
])
def test_a_wrong_name_or_type_names_it_and_points_at_help_not_at_every_option(argv, says):
    with pytest.raises(OptionError) as e:
        parse_options(["--data", "d", *argv])
    message = str(e.value)
    assert says in message and message.endswith("run `minilm pretrain --help` for every option, its type and its default")
    assert "valid options" not in message and len(message.splitlines()) <= 3


def test_dashes_and_underscores_are_both_accepted_and_help_shows_one(capsys, monkeypatch):
    assert parse_options(["--data", "d", "--n-layer", "3", "--max-steps=7", "--grad_clip", "none"])[:2] == (
        {"n_layer": 3}, {"max_steps": 7, "grad_clip": None})
    assert cli.main(["pretrain", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--max_steps" in out and "--max-steps" not in out
    from minilm.data import tokenfile

    seen = {}
    monkeypatch.setattr(tokenfile, "prepare", lambda *a, **kw: seen.update(args=a, kw=kw))
    assert cli.main(["prepare", "tinyshakespeare", "--val_fraction", "0.2", "--out", "o"]) == 0
    assert seen == {"args": ("tinyshakespeare", "char", "o"), "kw": {"val_fraction": 0.2}}
    assert cli.main(["prepare", "tinyshakespeare", "--val-fraction", "0.3", "--out", "o"]) == 0
    assert seen["kw"] == {"val_fraction": 0.3}
    with pytest.raises(SystemExit):
        cli.main(["prepare", "--help"])
    assert "--val-fraction" in capsys.readouterr().out


def test_data_is_required_and_the_command_reports_errors(tmp_path, capsys):
    with pytest.raises(OptionError, match="--data DIR is required"):
        parse_options(["--n_layer", "2"])
    assert cli.main(["pretrain", "--data", str(tmp_path), "--n_layerz", "2"]) == 2
    err = capsys.readouterr().err
    assert "did you mean --n_layer" in err and "--help" in err and "--grad_accum_steps int" not in err
    assert cli.main(["pretrain", "--data", str(tmp_path / "none")]) == 2
    assert "--data " + str(tmp_path / "none") + ": there is no such folder" in capsys.readouterr().err
    assert cli.main(["pretrain", "--data", str(tmp_path)]) == 2
    assert "not a prepared token folder" in capsys.readouterr().err
    (tmp_path / "file.txt").write_text("text")
    assert cli.main(["pretrain", "--data", str(tmp_path / "file.txt")]) == 2
    assert "is a file: give the folder" in capsys.readouterr().err
    assert cli.main(["pretrain", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: minilm pretrain --data DIR [--preset smoke|cpu|gpu]") and "--max_steps" in out
    assert "issue 13" not in out and "minilm.training.train`" not in out  # no internal references
    with pytest.raises(FileNotFoundError, match="model.pt does not exist: `minilm pretrain --out"):
        zoo.load_model(tmp_path, "cpu")


def test_a_prepared_folder_with_a_file_missing_is_named(shakespeare, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in shakespeare.folder.iterdir():
        if f.name != "tokens.bin":
            (broken / f.name).write_bytes(f.read_bytes())
    assert pretrain_main(["--data", str(broken)]) == 2
    assert f"--data {broken} lacks tokens.bin" in capsys.readouterr().err


@pytest.fixture(scope="module")
def shakespeare(tmp_path_factory) -> TokenFile:
    return TokenFile.open(prepare("tinyshakespeare", "char", tmp_path_factory.mktemp("ts"), progress=False))


def test_the_plan_is_the_presets_recipe_with_the_options_over_it(shakespeare, tmp_path, capsys):
    for name in minilm.recipes.GPT:
        recipe = zoo.preset_recipe(name)
        p = plan({}, {}, PretrainOptions(data=str(shakespeare.folder), preset=name, out=str(tmp_path)), shakespeare)
        assert p.model == zoo.gpt_config_for(name, 65) and p.batch_size == recipe.batch_size
        assert p.train.max_steps == recipe.train.max_steps and p.train.resume and p.train.run_name == "pretrain"
    p = plan({"n_layer": 1, "vocab_size": 128}, {"max_steps": 3, "betas": (0.8, 0.9)},
             PretrainOptions(data="d", preset="gpu", size="small", batch_size=5), shakespeare)
    assert (p.model.n_layer, p.model.vocab_size, p.model.n_embd) == (1, 128, 128)
    assert (p.train.max_steps, p.train.betas, p.batch_size) == (3, (0.8, 0.9), 5)
    with pytest.raises(ValueError, match="smaller than the data's vocabulary"):
        plan({"vocab_size": 10}, {}, PretrainOptions(data="d", preset="smoke"), shakespeare)
    with pytest.raises(ValueError, match="n_embd=32 must be (divisible by|a multiple of) n_head=5"):
        build(plan({"n_head": 5}, {}, PretrainOptions(data="d", preset="smoke"), shakespeare))
    assert pretrain_main(["--data", str(shakespeare.folder), "--preset", "smoke", "--n_head", "3"]) == 2
    assert re.search("error: n_embd=32 must be (divisible by|a multiple of) n_head=3", capsys.readouterr().err)


def test_pretrain_trains_the_zoos_gpt_bit_for_bit_and_loads_like_a_zoo_model(shakespeare, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--data", str(shakespeare.folder), "--preset", "smoke", "--out", str(out), "--progress", "false"]
    assert pretrain_main(argv) == 0
    assert "load it with `model, tok = minilm.training.zoo.load_model(" in capsys.readouterr().out
    tok, train_data, val_data = char_data("tinyshakespeare")
    reference, _ = zoo.train_gpt(zoo.recipe_for("smoke", tok.vocab_size), train_data, val_data, "cpu",
                                       compile=False, progress=False)
    model, loaded_tok = zoo.load_model(out, "cpu")
    assert isinstance(model, GPT) and not model.training and loaded_tok.chars == tok.chars
    for name, tensor in reference.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    assert (out / "checkpoints" / "pretrain.pt").is_file() and (out / "run.json").is_file()
    assert pretrain_main([*argv, "--progress", "true"]) == 0  # run again: resumes the finished run at once
    assert "resumed" in capsys.readouterr().out
    assert pretrain_main([*argv, "--learning_rate", "0.1"]) == 2  # not the run its checkpoint holds
    assert "was saved with other settings (learning_rate: 0.003 there, 0.1 here)" in capsys.readouterr().err


def test_ctrl_c_in_the_command_gives_the_commands_advice_only(shakespeare, tmp_path, capsys, monkeypatch):
    import os
    import signal

    import minilm.cli.pretrain as command

    def train_then_ctrl_c(model, get_batch, *args, **kwargs):
        calls = []

        def get(split):
            calls.append(split)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C in the terminal, while a step runs
            return get_batch(split)
        return train(model, get, *args, **kwargs)

    monkeypatch.setattr(command, "train", train_then_ctrl_c)
    argv = ["--data", str(shakespeare.folder), "--preset", "smoke", "--out", str(tmp_path), "--progress", "false",
            "--eval_interval", "1000"]
    assert pretrain_main(argv) == 130
    said = capsys.readouterr()
    assert "resume=True" not in said.err + said.out and "run the cell again" not in said.err + said.out
    assert "stopped at step " in said.err and said.err.rstrip().endswith("run the same command again to resume")
    assert (tmp_path / "checkpoints" / "pretrain.pt").is_file()


class NoSyncRecorder(nn.Module):
    """A model with DDP's no_sync(): records, for each forward and each backward, whether it ran inside."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.synced, self.forwards, self.backwards = inner, True, [], []
        inner.lm_head.weight.register_hook(lambda g: self.backwards.append(self.synced))

    @contextlib.contextmanager
    def no_sync(self):
        self.synced = False
        try:
            yield
        finally:
            self.synced = True

    def forward(self, x, y=None):
        if torch.is_grad_enabled():
            self.forwards.append(self.synced)
        return self.inner(x, y)


def test_gradient_accumulation_syncs_only_on_the_last_micro_batch():
    model = NoSyncRecorder(GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=2, n_embd=16)))
    data = torch.randint(0, 11, (500,), generator=torch.Generator().manual_seed(0))

    def get(split):
        ix = torch.randint(0, 490, (4,))
        return torch.stack([data[i:i + 8] for i in ix]), torch.stack([data[i + 1:i + 9] for i in ix])

    train(model, get, TrainConfig(max_steps=2, grad_accum_steps=3, eval_iters=1, progress=False), "cpu")
    assert model.forwards == [False, False, True] * 2 and model.backwards == [False, False, True] * 2
