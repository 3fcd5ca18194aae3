"""`minilm pretrain`: a GPT trained by `minilm.training.train` on a prepared token folder, in one process or many (issue 13).

    minilm prepare tinyshakespeare --tokenizer char --out data/shakespeare-char
    minilm pretrain --data data/shakespeare-char --preset gpu
    torchrun --nproc_per_node 4 -m minilm.cli pretrain --data data/corpus --n_layer 12 --n_embd 768 --batch_size 256

Every field of `GPTConfig`, `TrainConfig` and `PretrainOptions` is an option `--name value`
parsed with the field's type (`--dropout 0.1`, `--bias false`, `--betas 0.9,0.95`,
`--grad_clip none`, `--lr_schedule constant`); `--n-layer` is `--n_layer` (dashes or underscores,
`--help` shows underscores); `--preset` takes the defaults of that preset's recipe
(`minilm.recipes.GPT`), so `--preset gpu` on tinyshakespeare trains exactly the zoo's gpu GPT. An
unknown name or a value of the wrong type is an `OptionError` that names it, suggests the nearest
option and points at `--help`, which lists them all.

The run checkpoints as run `pretrain` in `<out>/checkpoints/` and resumes by default: run the
same command again after a crash, a kill or Ctrl-C. At the end rank 0 writes `<out>/model.pt`
(the zoo's model format), `<out>/tokenizer.json` and `<out>/run.json` (settings and history);
in a notebook, `model, tok = minilm.training.zoo.load_model("<out>")`.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import inspect
import json
import re
import shutil
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from ..data.tokenfile import TOKENIZER, TokenFile
from ..models.base import check_choices
from ..models.gpt import GPT, GPTConfig
from ..presets import preset as active_preset
from ..runtime import set_seed
from ..training import distributed, zoo
from ..training.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from ..training.loop import History, TrainConfig, check_resumable, make_optimizer, train
from ..training.optim import maybe_compile


@dataclass
class PretrainOptions:
    """What `minilm pretrain` needs besides the model's shape and the loop's settings."""

    data: str = ""  # the folder `minilm prepare` wrote (required)
    out: str | None = None  # folder for model.pt, tokenizer.json, run.json, checkpoints/ (None: runs/<data name>)
    preset: Literal["smoke", "cpu", "gpu"] | None = None  # defaults from this preset's recipe (None: minilm.preset())
    size: Literal["small", "medium", "large"] = "medium"  # which of the preset's three GPT sizes
    batch_size: int | None = None  # sequences per micro-step over all processes (None: the preset's)
    seed: int = 1337  # model initialisation and batch order (the zoo's seed by default)
    device: str | None = None  # cpu, cuda, mps (None: a GPU where there is one; under torchrun GPU LOCAL_RANK)
    compile: bool | None = None  # torch.compile (None: where minilm.training.optim.compile_supported says so)

    def __post_init__(self) -> None:
        check_choices(self)


SECTIONS = (GPTConfig, TrainConfig, PretrainOptions)
RUN_NAME = "pretrain"


class OptionError(ValueError):
    """An option `minilm pretrain` does not know, or a value it cannot read; the message lists them all."""


# ---------------------------------------------------------------- options from dataclass fields


def _is_optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def type_name(tp: Any) -> str:
    """How the option listing writes a field's type: 'int', 'float | none', 'cosine|constant', 'float,float'."""
    if _is_optional(tp):
        return f"{type_name(next(a for a in typing.get_args(tp) if a is not type(None)))} | none"
    if typing.get_origin(tp) is Literal:
        return "|".join(str(c) for c in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return ",".join(type_name(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in {"true", "1", "yes", "on"}:
        return True
    if low in {"false", "0", "no", "off"}:
        return False
    raise ValueError(text)


def converter(tp: Any) -> Callable[[str], Any]:
    """A function str -> value of type `tp` (bool, int, float, str, Literal, tuple, Optional of these)."""
    if _is_optional(tp):
        inner = converter(next(a for a in typing.get_args(tp) if a is not type(None)))
        return lambda text: None if text.strip().lower() == "none" else inner(text)
    if tp is bool:
        return _parse_bool
    if tp in (int, float, str):
        return tp
    if typing.get_origin(tp) is Literal:
        choices = typing.get_args(tp)

        def choice(text: str) -> Any:
            if text not in choices:
                raise ValueError(text)
            return text
        return choice
    if typing.get_origin(tp) is tuple:
        parts = [converter(a) for a in typing.get_args(tp)]

        def pair(text: str) -> tuple:
            items = [s for s in re.split(r"[,\s]+", text.strip("()[] ")) if s]
            if len(items) != len(parts):
                raise ValueError(text)
            return tuple(f(s) for f, s in zip(parts, items))
        return pair
    raise TypeError(f"no option parser for the type {tp!r}")


def _typed(tp: Any) -> Callable[[str], Any]:
    parse, name = converter(tp), type_name(tp)

    def typed(text: str) -> Any:
        try:
            return parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {name}, got {text!r}") from None
    return typed


def _comments(cls: type) -> dict[str, str]:
    """The trailing comment of each field in the dataclass's source (the course's one-comment-per-field rule)."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    return dict(re.findall(r"^\s+(\w+):[^#\n]*#\s*(.+)$", source, flags=re.MULTILINE))


def option_table() -> list[tuple[str, str, str, str]]:
    """(--name, type, default, what) for every option, GPTConfig's, then TrainConfig's, then PretrainOptions'."""
    rows = []
    for cls in SECTIONS:
        hints, notes = typing.get_type_hints(cls), _comments(cls)
        for f in fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            rows.append((f"--{f.name}", type_name(hints[f.name]), repr(default), notes.get(f.name, "")))
    return rows


def _listing() -> str:
    rows = option_table()
    width = max(len(r[0]) + len(r[1]) for r in rows) + 3
    lines = [f"  {f'{name} {kind}':<{width}} {what} (default {default})" for name, kind, default, what in rows]
    return "valid options (a preset may change the defaults):\n" + "\n".join(lines)


USAGE = "minilm pretrain --data DIR [--preset smoke|cpu|gpu] [--size small|medium|large] [--OPTION VALUE ...]"
DESCRIPTION = """Train a GPT on a token folder that `minilm prepare` wrote, in one process or many (torchrun).
Every option is a field of the model's, the training loop's or the run's settings; a preset gives
the defaults. The run saves checkpoints and resumes: after a crash or Ctrl-C, run the same command
again. At the end <out>/model.pt loads with minilm.training.zoo.load_model("<out>").

examples:
  minilm prepare tinyshakespeare --tokenizer char --out data/shakespeare-char
  minilm pretrain --data data/shakespeare-char --preset cpu --max_steps 2000
  torchrun --nproc_per_node 4 -m minilm.cli pretrain --data data/corpus --n_layer 12 --batch_size 256"""
MORE = "run `minilm pretrain --help` for every option, its type and its default"


def underscored(argv: list[str]) -> list[str]:
    """`--n-layer 3` and `--max-steps=10` as `--n_layer 3`, `--max_steps=10`: both spellings are accepted."""
    out = []
    for a in argv:
        name, eq, value = a.partition("=")
        out.append(("--" + name[2:].replace("-", "_") + eq + value) if a.startswith("--") and len(a) > 2 else a)
    return out


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        hint = ""
        if "unrecognized arguments:" in message:
            known = [f.name for cls in SECTIONS for f in fields(cls)]
            for word in message.split("unrecognized arguments:")[1].split():
                close = difflib.get_close_matches(word.lstrip("-").replace("-", "_"), known, n=2)
                if word.startswith("-") and close:
                    hint += f"\n{word}: did you mean {' or '.join('--' + c for c in close)}?"
        raise OptionError(f"minilm pretrain: {message}{hint}\n{MORE}")


def build_parser() -> argparse.ArgumentParser:
    """The parser of `minilm pretrain`: one `--name value` per field of SECTIONS, defaults left unset."""
    parser = _Parser(prog="minilm pretrain", usage=USAGE, allow_abbrev=False, description=DESCRIPTION,
                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_listing())
    names = [f.name for cls in SECTIONS for f in fields(cls)]
    assert len(names) == len(set(names)), "a field name appears in two sections"
    for cls in SECTIONS:
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            tp = hints[f.name]
            extra = {"nargs": "?", "const": True} if bool in (tp, *typing.get_args(tp)) else {}
            parser.add_argument(f"--{f.name}", type=_typed(tp), default=argparse.SUPPRESS,
                                metavar=type_name(tp).upper(), help=argparse.SUPPRESS, **extra)
    return parser


def parse_options(argv: list[str]) -> tuple[dict, dict, PretrainOptions]:
    """(GPTConfig overrides, TrainConfig overrides, PretrainOptions) from the command line; OptionError if wrong."""
    given = vars(build_parser().parse_args(underscored(argv)))
    split = [{f.name: given[f.name] for f in fields(cls) if f.name in given} for cls in SECTIONS]
    try:
        opts = PretrainOptions(**split[2])
    except ValueError as e:
        raise OptionError(f"minilm pretrain: {e}\n{MORE}") from None
    if not opts.data:
        raise OptionError(f"minilm pretrain: --data DIR is required (a folder `minilm prepare` wrote)\n{MORE}")
    return split[0], split[1], opts


# ---------------------------------------------------------------- the run


@dataclass
class Plan:
    """Everything a pretrain run is, resolved: the model's shape, the loop's settings, batch and folders."""

    model: GPTConfig
    train: TrainConfig
    options: PretrainOptions
    batch_size: int
    out: Path


def plan(model_over: dict, train_over: dict, opts: PretrainOptions, tokens: TokenFile) -> Plan:
    """Apply the options over the preset's recipe (the zoo's) for this token folder."""
    name = opts.preset or active_preset().name
    recipe = zoo.preset_recipe(name)
    over = {"vocab_size": tokens.vocab_size, **model_over}  # more than the data's (e.g. 64-aligned) is fine
    if over["vocab_size"] < tokens.vocab_size:
        raise ValueError(f"--vocab_size {over['vocab_size']} is smaller than the data's vocabulary "
                         f"({tokens.vocab_size})")
    model = zoo.gpt_config_for(name, **over, size=opts.size)
    out = Path(opts.out or Path("runs") / f"{Path(opts.data).resolve().name}-{name}")
    train_cfg = replace(recipe.train, run_name=RUN_NAME, resume=True,
                        checkpoint_dir=str(out / "checkpoints"), **train_over)
    return Plan(model, train_cfg, replace(opts, preset=name), opts.batch_size or recipe.batch_size, out)


def build(p: Plan) -> GPT:
    """The planned GPT, seeded: the same initial weights in every process (and the zoo's, for its recipe).

    A shape it refuses (n_embd not divisible by n_head, ...) and a checkpoint of this run saved with
    other settings are ValueErrors here, before any process joins a group."""
    set_seed(p.options.seed)
    model = GPT(p.model)
    ckpt = checkpoint_path(p.train.run_name, p.train.checkpoint_dir)
    if p.train.resume and ckpt.exists():
        check_resumable(load_checkpoint(ckpt), p.train, model)
    return model


def run(p: Plan, tokens: TokenFile, model: GPT) -> GPT:
    """Train `model` (from `build`) with minilm.training.train (DDP under torchrun); rank 0 writes the result."""
    strategy, device = distributed.setup(p.options.device)
    try:
        model.to(device)
        optimizer = make_optimizer(model, p.train)
        runner = distributed.wrap(maybe_compile(model, device, p.options.compile), strategy)
        if strategy.rank:
            set_seed(p.options.seed + strategy.rank)  # dropout draws of its own in each process
        get, generator = tokens.batches(p.model.block_size, p.batch_size, device, p.options.seed,
                                        strategy.rank, strategy.world_size)
        if strategy.is_main:
            print(f"pretrain: {model.num_params():,} parameters, {p.model.n_layer} layers x {p.model.n_embd}, "
                  f"block {p.model.block_size}, batch {p.batch_size} over {strategy.world_size} process(es) "
                  f"on {device}; {p.train.max_steps} steps; checkpoints in {p.train.checkpoint_dir}")
        history = train(runner, get, p.train, device, optimizer=optimizer, generator=generator,
                        strategy=strategy)
        if strategy.is_main:
            write_result(p, tokens, model, history, strategy.world_size, str(device))
        strategy.finish()  # every rank waits for rank 0's files, then all leave the group together
        return model
    finally:
        distributed.teardown()


def write_result(p: Plan, tokens: TokenFile, model: GPT, history: History, world_size: int, device: str) -> None:
    """<out>/model.pt (zoo format), tokenizer.json and run.json (settings, history)."""
    p.out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tokens.folder / TOKENIZER, p.out / TOKENIZER)
    save_checkpoint(p.out / "model.pt", model, None, history.steps[-1], train_config=p.train, history=history,
                    extra={"data": str(tokens.folder), "preset": p.options.preset, "batch_size": p.batch_size})
    record = {"model": asdict(p.model), "train": asdict(p.train), "options": asdict(p.options),
              "batch_size": p.batch_size, "world_size": world_size, "device": device,
              "data": tokens.meta, "history": asdict(history)}
    (p.out / "run.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"val loss {history.val_loss[-1]:.4f} at step {history.steps[-1]}; wrote {p.out}/model.pt: "
          f"load it with `model, tok = minilm.training.zoo.load_model({str(p.out)!r})`")


def check_data(folder: str) -> None:
    """A sentence (FileNotFoundError) when `folder` is not a complete folder `minilm prepare` wrote."""
    path = Path(folder).expanduser()
    make = f"make one with `minilm prepare <dataset or text file> --out {folder}`"
    if not path.exists():
        raise FileNotFoundError(f"--data {folder}: there is no such folder; {make}")
    if not path.is_dir():
        raise FileNotFoundError(f"--data {folder} is a file: give the folder `minilm prepare --out` wrote "
                                "(meta.json, tokens.bin, tokenizer.json), not a text file; " + make)
    missing = [n for n in ("meta.json", "tokens.bin", TOKENIZER) if not (path / n).is_file()]
    if "meta.json" not in missing and missing:
        raise FileNotFoundError(f"--data {folder} lacks {', '.join(missing)}: its preparation did not "
                                f"finish or files were removed; {make}")


def main(argv: list[str] | None = None) -> int:
    """`minilm pretrain [--name value ...]`: 0 when trained, 2 for a wrong option, 130 when interrupted."""
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        build_parser().print_help()
        return 0
    try:
        model_over, train_over, opts = parse_options(argv)
        check_data(opts.data)
        tokens = TokenFile.open(opts.data)
        p = plan(model_over, train_over, opts, tokens)
        model = build(p)
    except (OptionError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        run(p, tokens, model)
    except KeyboardInterrupt as e:  # the loop's own message is a notebook's advice: say the command's
        where = (f"stopped at step {e.step}; the checkpoint {e.checkpoint} holds it"
                 if hasattr(e, "step") else f"interrupted; checkpoints (if any) are in {p.train.checkpoint_dir}")
        print(f"\n{where}: run the same command again to resume", file=sys.stderr)
        return 130
    return 0
