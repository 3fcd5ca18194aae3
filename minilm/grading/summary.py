"""The class at a glance, written beside the gradebook: `summary.txt` and `summary.png`.

Per exercise: the mean points, the share of students with full marks, and the most common reason
for losing the points (the first failing case's message, as the feedback files give it, with its
numbers and quoted values replaced by "…", so that the same mistake on other inputs counts once). The figure:
the distribution of total scores, and per exercise the share with full marks. Students the grader
failed on ("grader error") are left out: they have no grade.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from matplotlib.ticker import MaxNLocator

from ..plotting import figure
from .spec import ExerciseSet
from .verdict import Row, fmt_points, safe_text

_VALUES = re.compile(r"'[^']*'|\"[^\"]*\"|(?<![\w.])-?\d+(?:\.\d+)?(?:e-?\d+)?(?!\w)")


def failure_kind(message: str) -> str:
    """A failure message with its values (numbers, quoted text) replaced by "…", so that two students
    who failed the same way on different inputs count as one kind: "expected 3, got 4" -> "expected …, got …"."""
    return _VALUES.sub("…", message)


def class_summary(ex_set: ExerciseSet, rows: list[Row]) -> dict:
    """{"students", "mean_total", "max_points", "statuses", "exercises": {id: {"max", "mean", "full_share",
    "common_failure", "common_failure_count"}}} over the graded rows (grader errors left out)."""
    graded = [r for r in rows if r.status != "grader error"]
    n = len(graded)
    exercises = {}
    for ex in ex_set.exercises:
        got = [r.points.get(ex.id, 0.0) for r in graded]
        reasons = Counter(failure_kind(r.reasons[ex.id]) for r in graded
                          if r.reasons.get(ex.id) not in (None, "", "not attempted"))
        common, count = reasons.most_common(1)[0] if reasons else ("", 0)
        exercises[ex.id] = {
            "max": ex.points,
            "mean": sum(got) / n if n else 0.0,
            "full_share": sum(p >= ex.points for p in got) / n if n else 0.0,
            "common_failure": common,
            "common_failure_count": count,
        }
    return {
        "students": n,
        "mean_total": sum(r.total for r in graded) / n if n else 0.0,
        "max_points": ex_set.max_points,
        "statuses": dict(Counter(r.status for r in rows)),
        "exercises": exercises,
    }


def summary_text(ex_set: ExerciseSet, summary: dict) -> str:
    """The summary as the teacher reads it (summary.txt)."""
    head = (f"Set {ex_set.name}: {summary['students']} students graded, mean score "
            f"{summary['mean_total']:.2f} / {fmt_points(summary['max_points'])}")
    lines = [head,
             "statuses: " + ", ".join(f"{s} {c}" for s, c in sorted(summary["statuses"].items())), ""]
    width = max(len(i) for i in summary["exercises"])
    lines.append(f"{'exercise':<{width}}  mean / max   full marks   most common failure")
    for ex_id, e in summary["exercises"].items():
        why = (f"{safe_text(e['common_failure'], 150)} ({e['common_failure_count']} students)"
               if e["common_failure"] else "-")
        lines.append(f"{ex_id:<{width}}  {e['mean']:5.2f} / {fmt_points(e['max']):<4} {e['full_share']:8.0%}     {why}")
    return "\n".join(lines) + "\n"


def summary_figure(ex_set: ExerciseSet, rows: list[Row]):
    """Figure: left, how many students got each total score; right, per exercise the share with full marks."""
    summary = class_summary(ex_set, rows)
    graded = [r.total for r in rows if r.status != "grader error"]
    fig, (left, right) = figure((11, 4), 1, 2)
    top = float(ex_set.max_points)
    left.hist(graded, bins=min(20, max(1, int(top) + 1)), range=(0, top + 1e-9) if top else None,
              color="tab:blue", edgecolor="white")
    left.yaxis.set_major_locator(MaxNLocator(integer=True))  # whole students
    left.set(xlabel=f"total score (of {fmt_points(top)})", ylabel="students",
             title=f"{ex_set.name}: scores of {len(graded)} students")
    ids = list(summary["exercises"])
    shares = [100 * summary["exercises"][i]["full_share"] for i in ids]
    right.barh(ids[::-1], shares[::-1], color="tab:green")
    right.set(xlim=(0, 100), xlabel="students with full marks (%)", title="per exercise")
    fig.tight_layout()
    return fig


def write_summary(out: Path, ex_set: ExerciseSet, rows: list[Row]) -> dict[str, Path]:
    """Write summary.txt and summary.png into `out`; {what: path}."""
    (out / "summary.txt").write_text(summary_text(ex_set, class_summary(ex_set, rows)), encoding="utf-8")
    summary_figure(ex_set, rows).savefig(out / "summary.png", dpi=100)
    return {"summary": out / "summary.txt", "figure": out / "summary.png"}
