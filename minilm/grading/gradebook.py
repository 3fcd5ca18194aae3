"""The gradebook of one set in one --out folder: kept across runs, so re-grading a few students keeps the rest.

Every run's rows are stored in `results.json` (the whole Row of each student: points, feedback,
identity); a new run replaces the rows of the students it graded and keeps every other row. From
the stored rows `write_outputs` writes everything a teacher reads or uploads:

- `gradebook.csv`: one row per student, after a "(max points)" row with each exercise's and the set's
  maximum; a "grader error" row has no points at all (empty cells: not a grade of 0);
- `feedback/<student>.txt`, `grading.json` (seed, limits, counts, the runs so far);
- `canvas-import.csv` / `moodle-grading-worksheet.csv` when students came from that LMS (minilm.grading.lms);
- `summary.txt` and `summary.png`: the class at a glance (minilm.grading.summary).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from .lms import write_canvas, write_moodle
from .spec import ExerciseSet
from .summary import write_summary
from .verdict import STATUSES, Row, csv_cell, feedback_names, fmt_points, safe_text

RESULTS = "results.json"
MAX_ROW = "(max points)"


class GradebookError(RuntimeError):
    """--out holds another set's gradebook, or one this grader cannot read."""


@dataclass
class Merge:
    """What a run did to the gradebook it found: rows replaced, added, kept (unchanged), refused."""

    replaced: list[tuple[Row, Row]] = field(default_factory=list)  # (old, new)
    added: list[Row] = field(default_factory=list)
    kept: int = 0  # rows of earlier runs left as they were
    refused: list[Row] = field(default_factory=list)  # grader errors that did not replace a grade

    def describe(self) -> str:
        """One paragraph for the teacher: what changed in the gradebook."""
        if not self.replaced and not self.kept and not self.refused:
            return f"{len(self.added)} new row(s)"
        parts = [f"replaced {len(self.replaced)} row(s)"]
        parts += [f"  {safe_text(o.student, 80)}: {o.status} {fmt_points(o.total)} -> {n.status} "
                  f"{fmt_points(n.total)}" for o, n in self.replaced[:20]]
        parts += [f"  ... and {len(self.replaced) - 20} more"] if len(self.replaced) > 20 else []
        parts.append(f"added {len(self.added)}, kept {self.kept} from earlier runs unchanged")
        if self.refused:
            parts.append(f"kept the earlier grade of {len(self.refused)} student(s) the grader failed on now: "
                         + ", ".join(safe_text(r.student, 60) for r in self.refused[:10]))
        return "\n".join(parts)


def load_rows(out: Path, set_name: str) -> list[Row]:
    """The rows stored in `out` by earlier runs of this set ([] when there are none)."""
    path = out / RESULTS
    if not path.exists():
        if (out / "gradebook.csv").exists():
            raise GradebookError(
                f"{out} holds a gradebook.csv but no {RESULTS} (an older minilm wrote it): grade into a new "
                "--out folder, or pass --fresh to replace that gradebook")
        return []
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        names = {f.name for f in fields(Row)}
        rows = [Row(**{k: v for k, v in r.items() if k in names}) for r in stored["rows"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise GradebookError(f"{path} cannot be read ({type(e).__name__}: {e}); pass --fresh to start "
                             "this gradebook again") from None
    if stored.get("set") != set_name:
        raise GradebookError(f"{out} holds the gradebook of set {stored.get('set')}, not {set_name}: "
                             "give each set its own --out folder (e.g. grades/02)")
    return rows


def merge(old: list[Row], new: list[Row]) -> tuple[list[Row], Merge]:
    """`old` with the rows of `new` in place of their students' (a grader error never replaces a grade)."""
    by_student = {r.student: r for r in old}
    report = Merge()
    for r in new:
        before = by_student.get(r.student)
        if before is None:
            report.added.append(r)
        elif r.status == "grader error" and before.status != "grader error":
            report.refused.append(r)
            continue
        else:
            report.replaced.append((before, r))
        by_student[r.student] = r
    report.kept = len(old) - len(report.replaced)  # the refused keep theirs too
    return sorted(by_student.values(), key=lambda r: safe_text(r.student)), report


def _points(r: Row, x: float) -> str:
    return "" if r.status == "grader error" else fmt_points(x)


def write_outputs(out: Path, ex_set: ExerciseSet, rows: list[Row], manifest: dict) -> dict[str, Path]:
    """Write every file the module's docstring lists from `rows` (all students); {what: path} written."""
    ids = [ex.id for ex in ex_set.exercises]
    names = feedback_names(sorted((r.student for r in rows), key=lambda s: s.encode("utf-8", "surrogatepass")))
    stored = {"set": ex_set.name, "rows": [asdict(r) for r in rows]}
    tmp = out / (RESULTS + ".tmp")
    tmp.write_text(json.dumps(stored) + "\n", encoding="utf-8")  # ASCII: lone surrogates kept as \udcxx
    os.replace(tmp, out / RESULTS)
    fb_dir = out / "feedback"
    fb_dir.mkdir(exist_ok=True)
    with open(out / "gradebook.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["student", "name", "lms", "lms_id", "file", "late", "status", *ids, "penalty", "total",
                    "seconds", "feedback"])
        w.writerow([MAX_ROW, "", "", "", "", "", "max points", *(fmt_points(ex.points) for ex in ex_set.exercises),
                    "", fmt_points(ex_set.max_points), "", ""])
        for r in rows:
            w.writerow([csv_cell(r.student), csv_cell(r.name or r.student), r.lms, r.lms_id, csv_cell(r.file),
                        "yes" if r.late else "", r.status, *(_points(r, r.points.get(i, 0.0)) for i in ids),
                        _points(r, r.penalty) if r.penalty else "", _points(r, r.total), f"{r.seconds:.2f}",
                        csv_cell(names[r.student])])
    for r in rows:
        score = "none: the grader failed (not a grade)" if r.status == "grader error" else (
            f"{fmt_points(r.total)} / {fmt_points(ex_set.max_points)}")
        head = [f"Set {ex_set.name}, student {safe_text(r.student, 300)}", f"Status: {r.status}",
                f"Score: {score}", ""]
        text = "\n".join(safe_text(line) for line in head + r.feedback) + "\n"
        (fb_dir / names[r.student]).write_text(text, encoding="utf-8")
    written = {"gradebook": out / "gradebook.csv", "feedback": fb_dir}
    if any(r.lms == "canvas" for r in rows):
        written["canvas"] = out / "canvas-import.csv"
        write_canvas(written["canvas"], rows, manifest.get("assignment") or f"minilm {ex_set.name}",
                     ex_set.max_points)
    if any(r.lms == "moodle" for r in rows):
        written["moodle"] = out / "moodle-grading-worksheet.csv"
        write_moodle(written["moodle"], rows, ex_set.max_points)
    written.update(write_summary(out, ex_set, rows))
    manifest = {**manifest, "students": len(rows), "counts": {s: sum(r.status == s for r in rows) for s in STATUSES},
                "exercise_points": {ex.id: ex.points for ex in ex_set.exercises}}
    (out / "grading.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return written
