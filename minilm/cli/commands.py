"""The `minilm` command: `about`, `make-exercises`, `grade` (see docs/instructors.md), `prepare`, `pretrain` (README)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _about(args: argparse.Namespace) -> int:
    import minilm

    minilm.about()
    return 0


def _make_exercises(args: argparse.Namespace) -> int:
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
    from ..grading.grader import GradeOptions, grade

    opts = GradeOptions(
        jobs=args.jobs,
        cell_timeout=args.cell_timeout,
        timeout=args.timeout,
        memory_mb=args.memory_mb,
        seed=args.seed,
        solutions=args.solutions,
        allow_unsandboxed=args.allow_unsandboxed,
        hide=args.hide or [],
    )
    try:
        rows = grade(args.set, args.submissions, args.out, opts)
    except (RuntimeError, KeyError, FileNotFoundError, NotADirectoryError) as e:
        print(f"error: {str(e).strip(chr(39))}", file=sys.stderr)
        return 2
    print(
        f"{len(rows)} submissions graded: {Path(args.out) / 'gradebook.csv'}, feedback in "
        f"{Path(args.out) / 'feedback'}"
    )
    failed = [r.student for r in rows if r.status == "grader error"]
    if failed:
        print(
            f"error: the grader itself failed on {len(failed)} submission(s) (status 'grader error', "
            "see their feedback files and sandbox.log); re-run to grade them",
            file=sys.stderr,
        )
        return 1
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from ..data.tokenfile import prepare

    try:
        prepare(args.source, args.tokenizer, args.out, val_fraction=args.val_fraction)
    except (ValueError, FileNotFoundError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from .pretrain import main as pretrain

    return pretrain(args.options)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `minilm` console script."""
    parser = argparse.ArgumentParser(prog="minilm", description="minilm course tools")
    sub = parser.add_subparsers(dest="command", required=True)

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
        "submissions", help="folder of notebooks, one per student (file name = student id)"
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
