"""Grading speed: grade N copies of a correct set-01 submission and print seconds per submission.

    python benchmarks/grading.py [--copies 50] [--jobs 1] [--set 01_text_tokens]

Target: median <= 3 s per submission per core (otter-grader's `otter run` took 4-5.5 s here).
Prints the median and max time of one submission in its sandbox (notebook cells + every exercise on
its grading inputs), the end-to-end time per submission including the grader's own work (parsing,
reference outputs, comparison), the one-off sandbox start-up, and submissions/s per core; then the
cost of the forbidden-call watcher: CPU time of each exercise's reference on its grading inputs,
watched (as check() and the grader run answers) and not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from minilm.grading.authoring import load_reference
from minilm.grading.forbid import Watcher, call_watched, resolve
from minilm.grading.grader import GradeOptions, Grader
from minilm.grading.sets import get_set
from minilm.grading.zygote import Zygote

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--set", default="01_text_tokens")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="minilm-bench-"))
    try:
        subs = tmp / "submissions"
        subs.mkdir()
        for i in range(args.copies):
            shutil.copy(ROOT / "solutions" / f"{args.set}.ipynb", subs / f"student{i:03d}.ipynb")
        t0 = time.perf_counter()
        Zygote(tmp / "zygote.log", tmp).close()
        startup = time.perf_counter() - t0
        grader = Grader(args.set, tmp / "out", GradeOptions(jobs=args.jobs, seed=1))
        log = tmp / "log.txt"
        start = time.perf_counter()
        with open(log, "w") as f:
            rows = grader.grade_folder(subs, log=f)
        wall = time.perf_counter() - start
        first = log.read_text().splitlines()[0]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    assert all(r.status == "ok" and r.total == grader.set.max_points for r in rows), (
        "a copy was not graded 9/9"
    )
    secs = [r.seconds for r in rows]
    per_sub_end_to_end = wall * args.jobs / len(rows)
    print(
        f"set {args.set}: {len(rows)} copies of the reference solution, --jobs {args.jobs}, "
        f"{os.cpu_count()} CPUs; {first.split('; ')[-1]}"
    )
    print(
        f"sandbox start-up (once per job: imports torch, numpy, matplotlib, minilm): {startup:.1f} s"
    )
    print(
        f"in the sandbox: median {statistics.median(secs):.3f} s, max {max(secs):.3f} s per submission"
    )
    print(
        f"end to end (incl. sandbox start-up, reference outputs, comparison): {wall:.1f} s in total, "
        f"{per_sub_end_to_end:.3f} s per submission per core, "
        f"{len(rows) / wall / args.jobs:.2f} submissions/s per core"
    )
    print(
        f"target: median <= 3 s per submission per core -> "
        f"{'met' if statistics.median(secs) <= 3 and per_sub_end_to_end <= 3 else 'NOT met'}"
    )
    watcher_cost(args.set)


def watcher_cost(set_name: str, repeats: int = 5) -> None:
    """Print the CPU time of each reference on its grading inputs, watched and not."""
    import copy
    import random

    exercise_set, reference = get_set(set_name), load_reference(set_name, ROOT / "solutions")
    for ex in exercise_set.exercises:
        cases = ex.grading(random.Random(f"bench:{ex.id}"))
        banned, watcher, seconds = resolve(tuple(ex.forbidden)), Watcher(), []
        for watched in (False, True):
            t0 = time.process_time()
            for _ in range(repeats):
                for args in cases:
                    a = copy.deepcopy(args)
                    if watched:
                        call_watched(watcher, banned, ex.call, reference[ex.id], *a)
                    else:
                        ex.call(reference[ex.id], *a)
            seconds.append((time.process_time() - t0) / repeats)
        print(
            f"watcher, {ex.id}: {seconds[0] * 1e3:.1f} ms unwatched, {seconds[1] * 1e3:.1f} ms watched "
            f"({seconds[1] / max(seconds[0], 1e-9):.1f}x) for its {len(cases)} grading cases"
        )


if __name__ == "__main__":
    main()
