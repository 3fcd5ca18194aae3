"""The `minilm` command: `about`, `make-exercises`, `grade` (see docs/instructors.md), `prepare`, `pretrain` (README)."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

# what each extra installs that a command imports (pyproject.toml's [project.optional-dependencies])
EXTRA_MODULES = {"grade": ("nbformat", "IPython")}


def missing_extra(command: str, extra: str) -> str | None:
    """A sentence naming the extra to install when a module of it is missing here, else None."""
    missing = []
    for m in EXTRA_MODULES[extra]:
        try:
            found = importlib.util.find_spec(m) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(m)
    if not missing:
        return None
    return (f"`minilm {command}` needs the `{extra}` extra, which is not installed here (missing: "
            f"{', '.join(missing)}). Install it with: pip install 'minilm[{extra}]' (or, in a checkout, "
            f"pip install -e '.[{extra}]'). On Colab, grade elsewhere: docs/instructors.md, 'Grading on Colab'.")


class _Parser(argparse.ArgumentParser):
    """argparse that accepts --any-option as --any_option and the other way round (one spelling shown)."""

    def parse_known_args(self, args=None, namespace=None):
        known = {s for a in self._actions for s in a.option_strings}
        args = list(sys.argv[1:] if args is None else args)
        for i, a in enumerate(args):
            if a == "--":
                break
            name, eq, value = a.partition("=")
            if name.startswith("--") and name not in known:
                other = "--" + (name[2:].replace("_", "-") if "_" in name else name[2:].replace("-", "_"))
                if other in known:
                    args[i] = other + eq + value
        return super().parse_known_args(args, namespace)


def _about(args: argparse.Namespace) -> int:
    import minilm

    minilm.about()
    return 0


def _make_exercises(args: argparse.Namespace) -> int:
    problem = missing_extra("make-exercises", "grade")
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from ..grading.authoring import AuthoringError, find_solutions_dir, make_exercises

    try:
        solutions = find_solutions_dir(args.solutions)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    exercises = Path(args.exercises) if args.exercises else solutions.parent / "exercises"
    try:
        stale = make_exercises(solutions, exercises, check_only=args.check)
    except AuthoringError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    verb = "out of date" if args.check else "written"
    for path in stale:
        print(f"{verb}: {path}")
    if not stale:
        print(f"{exercises} is up to date with {solutions}")
    return 1 if args.check and stale else 0


def _grade(args: argparse.Namespace) -> int:
    problem = missing_extra("grade", "grade")
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    from ..grading.gradebook import GradebookError
    from ..grading.grader import GradeOptions, Grader

    opts = GradeOptions(
        jobs=args.jobs, cell_timeout=args.cell_timeout, timeout=args.timeout, memory_mb=args.memory_mb,
        seed=args.seed, solutions=args.solutions, allow_unsandboxed=args.allow_unsandboxed,
        hide=args.hide or [], fresh=args.fresh, deadline=args.deadline, late_penalty=args.late_penalty,
        assignment=args.assignment,
    )
    out = Path(args.out)
    if not Path(args.submissions).is_dir():
        print(f"error: {args.submissions} is not a folder: give the folder of submissions (unzip the "
              "LMS's download into one)", file=sys.stderr)
        return 2
    try:
        grader = Grader(args.set, out, opts)
    except (GradebookError, ValueError, KeyError, FileNotFoundError, NotADirectoryError) as e:
        print(f"error: {str(e).strip(chr(39))}", file=sys.stderr)
        return 2
    stopped = ""
    try:
        rows = grader.grade_folder(args.submissions)
    except (RuntimeError, FileNotFoundError, NotADirectoryError, OSError) as e:
        stopped = str(e).strip(chr(39))
    except KeyboardInterrupt:
        stopped = "interrupted (Ctrl-C)"
    if stopped:
        if grader.merge is None:
            print(f"error: {stopped}\nNo gradebook was written: {out / 'gradebook.csv'} is as it was before "
                  "this run. Fix the cause and run the same command again.", file=sys.stderr)
            return 2
        print(f"error: the grading run stopped: {stopped}\n{len(grader.not_graded)} submission(s) were not "
              f"graded and have no new row in {out / 'gradebook.csv'} (see not_graded in grading.json); "
              "run the same command again to grade them.", file=sys.stderr)
        return 2
    print(f"{len(rows)} submissions graded into {out / 'gradebook.csv'}: {grader.merge.describe()}")
    print("written: " + ", ".join(str(p) for k, p in grader.written.items()))
    failed = [r.student for r in rows if r.status == "grader error"]
    if failed:
        print(
            f"error: the grader itself failed on {len(failed)} submission(s) (status 'grader error', no points: "
            "not a grade; left out of the LMS files; see their feedback files and sandbox.log); re-run "
            "with those notebooks alone to grade them",
            file=sys.stderr,
        )
        return 1
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from ..data.datasets import DataError
    from ..data.tokenfile import prepare

    try:
        prepare(args.source, args.tokenizer, args.out, val_fraction=args.val_fraction)
    except (ValueError, FileNotFoundError, KeyError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from .pretrain import main as pretrain

    return pretrain(args.options)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `minilm` console script."""
    parser = _Parser(prog="minilm", description="minilm course tools")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("about", help="print versions, device, precision policy and preset")
    p.set_defaults(func=_about)

    p = sub.add_parser("make-exercises", help="generate exercises/ from solutions/")
    p.add_argument("--solutions", help="solutions folder (default: ./solutions)")
    p.add_argument("--exercises", help="output folder (default: exercises/ next to solutions/)")
    p.add_argument(
        "--check", action="store_true", help="only report out-of-date files (exit 1 if any)"
    )
    p.set_defaults(func=_make_exercises)

    p = sub.add_parser("grade", help="grade a folder of submitted notebooks")
    p.add_argument("set", help="exercise set, e.g. 01 or 01_text_tokens")
    p.add_argument(
        "submissions", help="folder of notebooks as Canvas or Moodle downloads them, or one per student "
        "(file name = student id); several in a student's folder: the one named like the set, else the newest"
    )
    p.add_argument(
        "--out", required=True, help="folder for gradebook.csv, feedback/ and grading.json"
    )
    p.add_argument("--jobs", type=int, default=1, help="submissions graded in parallel (default 1)")
    p.add_argument(
        "--cell-timeout", type=float, default=30.0, help="CPU seconds per cell / exercise (30)"
    )
    p.add_argument(
        "--timeout", type=float, default=300.0, help="CPU seconds per submission in total (300)"
    )
    p.add_argument(
        "--memory-mb", type=int, default=2048, help="memory a submission may allocate (2048)"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the grading inputs (default: the one in --out/grading.json, else fresh)",
    )
    p.add_argument("--solutions", help="folder of the reference solutions notebooks (default: ./solutions)")
    p.add_argument(
        "--hide", action="append", help="another path the submissions must not see (repeatable)"
    )
    p.add_argument(
        "--allow-unsandboxed",
        action="store_true",
        help="grade even where namespaces are unavailable (submissions can read your files)",
    )
    p.add_argument("--fresh", action="store_true",
                   help="start the gradebook in --out again (default: students not in this folder keep their rows)")
    p.add_argument("--deadline", help="date and time (2026-10-05T23:59, local time, or with +02:00): a "
                   "notebook whose file time is later is late (Canvas's _LATE_ marks it late anyway)")
    p.add_argument("--late-penalty", help="share of the score off a late submission: 10%% once, or 10%%/day "
                   "per started day after --deadline")
    p.add_argument("--assignment", help="header of the grade column in canvas-import.csv: an existing Canvas "
                   "column's exact header, e.g. 'Set 02 (12345)' (default 'minilm <set>')")
    p.set_defaults(func=_grade)

    p = sub.add_parser("prepare", help="tokenize a dataset or a text file into a memory-mapped token folder")
    p.add_argument("source", help="a course dataset name (e.g. tinyshakespeare) or a UTF-8 text file")
    p.add_argument("--tokenizer", default="char", help="char (default), bpe, or bpe:VOCAB (e.g. bpe:4096)")
    p.add_argument("--out", required=True, help="folder for tokens.bin, tokenizer.json, meta.json")
    p.add_argument("--val-fraction", type=float, default=0.1, help="last part kept for validation (0.1)")
    p.set_defaults(func=_prepare)

    # prefix_chars="+": every --option goes to minilm.cli.pretrain's own parser (one option per config field)
    p = sub.add_parser("pretrain", add_help=False, prefix_chars="+",
                       help="train a GPT on a prepared folder (also under torchrun); --help lists the options")
    p.add_argument("options", nargs=argparse.REMAINDER)
    p.set_defaults(func=_pretrain)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
