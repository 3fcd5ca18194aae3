"""Submissions as an LMS delivers them, and grades as it takes them back (docs/instructors.md, section 4).

Who a file belongs to comes from the LMS's own file names:

- Canvas ("Download Submissions"): one flat folder of `name_userid_submissionid_filename`, with
  `name_LATE_userid_submissionid_filename` for a late one (Canvas's own marker; a resubmission's file
  name gets `-1`, `-2`);
- Moodle ("Download all submissions"): one folder per student, `Full Name_ID_assignsubmission_file_`
  (or, without folders, `Full Name_ID_assignsubmission_file_filename`), ID being Moodle's participant id;
- anything else: the file name without .ipynb (or the folder's name) is the student.

A student with several notebooks (a Moodle folder with a resubmission and a scratch copy, two Canvas
files) is graded on one, by the rule `choose_notebook` states: the notebook named like the set, else
the newest. Grades go back as a Canvas gradebook import CSV and a Moodle grading worksheet CSV.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .verdict import csv_cell

CANVAS = re.compile(r"^(?P<name>[^_]*?[^\W\d_][^_]*?)(?P<late>_LATE)?_(?P<user>\d+)_(?P<sub>\d+)_(?P<file>.+)$")
MOODLE = re.compile(r"^(?P<name>.+?)_(?P<user>\d+)_assignsubmission_(?P<plugin>[a-z]+)_(?P<file>.*)$")
_PENALTY = re.compile(r"^\s*(?P<pct>\d+(?:\.\d+)?)\s*%\s*(?P<per>/\s*day)?\s*$")


@dataclass
class Found:
    """One student's submission as found in the folder: who, which file, and what the LMS said."""

    student: str  # the gradebook's key: "name_userid" for an LMS file, else the file's stem
    path: Path  # the notebook graded (or the entry itself when there is none to grade)
    name: str = ""  # the name the LMS wrote ("smithjohn", "Jane Doe"); the student id otherwise
    lms: str = ""  # "canvas", "moodle" or ""
    lms_id: str = ""  # Canvas user id or Moodle participant id
    late: bool = False  # the LMS marked it late (Canvas `_LATE_`)
    notes: list[str] = field(default_factory=list)  # how a notebook was chosen among several


def identify(name: str) -> tuple[str, str, str, bool, str] | None:
    """(lms, display name, lms id, late, rest of the file name) of an LMS file or folder name, or None."""
    m = MOODLE.match(name)
    if m:
        return "moodle", m["name"], m["user"], False, m["file"]
    m = CANVAS.match(name)
    if m and m["name"] != "LATE":
        return "canvas", m["name"], m["user"], bool(m["late"]), m["file"]
    return None


def named_like(set_name: str, file_name: str) -> bool:
    """Whether a notebook's name is the set's: `02_bigram_mlp.ipynb`, `02_bigram_mlp-1.ipynb`, `02 (copy).ipynb`."""
    stem = re.sub(r"[^a-z0-9]+", "_", file_name.lower().removesuffix(".ipynb"))
    number = set_name.split("_", 1)[0]
    return set_name.lower() in stem or re.match(rf"^(set_?|ex(ercises?)?_?)?{number}(?!\d)", stem) is not None


def choose_notebook(set_name: str, notebooks: list[tuple[Path, str]]) -> tuple[Path, str]:
    """The notebook graded among several [(path, shown name)], and why: those named like the set
    (`named_like`) if any, else all; of these the newest (modification time; a tie: the last name)."""
    like = [nb for nb in notebooks if named_like(set_name, nb[1])]
    pool = like or notebooks
    path, shown = max(pool, key=lambda nb: (nb[0].lstat().st_mtime, nb[1]))
    if len(notebooks) == 1:
        return path, ""
    names = ", ".join(sorted(n for _, n in notebooks))
    why = "the newest of those named like the set" if len(like) > 1 else (
        "the one named like the set" if like else "the newest (none is named like the set)")
    return path, (f"{len(notebooks)} notebooks were submitted ({names}); graded {shown}: {why} "
                  f"{set_name}, as the course's rule says")


def collect(folder: str | Path, set_name: str) -> list[Found]:
    """Every student in `folder` once, with the notebook to grade (see the module's docstring)."""
    groups: dict[str, list] = {}  # student -> [(path, shown name, Found template)]
    plain: list[tuple[str, Path, str]] = []
    for entry in sorted(Path(folder).iterdir()):
        if entry.name.startswith("."):
            continue
        who = identify(entry.name)
        is_dir = entry.is_dir() and not entry.is_symlink()
        if who is None:
            plain.append((entry.name if is_dir else entry.name.removesuffix(".ipynb"), entry, entry.name))
            continue
        lms, name, lms_id, late, rest = who
        key = f"{name}_{lms_id}"
        template = Found(key, entry, name, lms, lms_id, late)
        items = groups.setdefault(key, [])
        if is_dir:
            items += [(p, p.name, template) for p in sorted(entry.glob("*.ipynb")) if not p.name.startswith(".")]
            if not any(t is template for *_, t in items):
                items.append((entry, entry.name, template))  # a folder with no notebook: invalid
        else:
            items.append((entry, rest or entry.name, template))
    counts: dict[str, int] = {}
    for student, _, _ in plain:
        counts[student] = counts.get(student, 0) + 1
    out = []
    for student, entry, full in plain:  # two entries with one id (a.ipynb and a/) keep their full names
        student = student if counts[student] == 1 and student not in groups else full
        found = Found(student, entry, student)
        if entry.is_dir() and not entry.is_symlink():
            inner = [(p, p.name) for p in sorted(entry.glob("*.ipynb")) if not p.name.startswith(".")]
            if inner:
                found.path, note = choose_notebook(set_name, inner)
                found.notes += [note] if note else []
        out.append(found)
    for key, items in groups.items():
        notebooks = [(p, shown) for p, shown, _ in items if p.name.endswith(".ipynb") and not p.is_dir()]
        chosen = choose_notebook(set_name, notebooks) if notebooks else (items[0][0], "")
        t = next((t for p, _, t in items if p == chosen[0]), items[0][2])
        found = Found(key, chosen[0], t.name, t.lms, t.lms_id, t.late)
        found.notes += [chosen[1]] if chosen[1] else []
        out.append(found)
    return sorted(out, key=lambda f: f.student)


# ---------------------------------------------------------------- late submissions


@dataclass(frozen=True)
class LateRule:
    """`--deadline` and `--late-penalty`: a share of the score off a late submission, once or per day."""

    deadline: dt.datetime | None = None  # with a time zone; None: only the LMS's marker says "late"
    percent: float = 0.0  # share of the score taken off (0-100)
    per_day: bool = False  # per started day after the deadline (needs the deadline)


def parse_late_rule(deadline: str | None, penalty: str | None) -> LateRule:
    """LateRule from the command line: `--deadline 2026-10-05T23:59+02:00 --late-penalty 10%/day`."""
    when = None
    if deadline:
        try:
            when = dt.datetime.fromisoformat(deadline)
        except ValueError:
            raise ValueError(f"--deadline {deadline!r} is not a date and time; write it as "
                             "2026-10-05T23:59 (local time) or 2026-10-05T23:59+02:00") from None
        when = when if when.tzinfo else when.astimezone()  # a naive time is this machine's local time
    if not penalty:
        return LateRule(when)
    m = _PENALTY.match(penalty)
    if not m or float(m["pct"]) > 100:
        raise ValueError(f"--late-penalty {penalty!r}: write a share of the score, once (10%) or per "
                         "started day after the deadline (10%/day), at most 100%")
    if m["per"] and when is None:
        raise ValueError(f"--late-penalty {penalty}: a penalty per day needs --deadline")
    return LateRule(when, float(m["pct"]), bool(m["per"]))


def lateness(found: Found, rule: LateRule) -> tuple[bool, int, str]:
    """(late?, started days late, how we know) for one submission: the LMS's marker, or the
    notebook's modification time (an LMS's zip keeps each file's time) after the deadline."""
    days, how = 0, ""
    if rule.deadline is not None and found.path.exists():
        submitted = dt.datetime.fromtimestamp(found.path.lstat().st_mtime, dt.timezone.utc)
        over = (submitted - rule.deadline).total_seconds()
        if over > 0:
            days = math.ceil(over / 86400)
            how = f"the file's time {submitted.astimezone(rule.deadline.tzinfo):%Y-%m-%d %H:%M} is after the deadline"
    if found.late and not days:
        days, how = 1, "the LMS marked it late"
    return days > 0, days, how


def penalty_points(score: float, days: int, rule: LateRule) -> float:
    """Points taken off `score` for a submission `days` late (0 when on time or without a rule)."""
    if days <= 0:
        return 0.0
    share = min(100.0, rule.percent * (days if rule.per_day else 1)) / 100.0
    return round(score * share, 4)


def stamp(row: Any, found: Found, folder: Path, rule: LateRule) -> Any:
    """`row` (a verdict.Row) with who it is, which file was graded, and lateness and its penalty applied."""
    row.name, row.lms, row.lms_id = found.name or found.student, found.lms, found.lms_id
    try:
        row.file = str(found.path.relative_to(folder))
    except ValueError:
        row.file = found.path.name
    late, days, how = lateness(found, rule)
    row.late = late
    if late:
        row.penalty = min(row.total, penalty_points(row.total, days, rule))
        row.total = round(row.total - row.penalty, 4)
        took = (f" {rule.percent:g}%{' per started day' if rule.per_day else ''} is taken off: "
                f"-{row.penalty:g} points" if row.penalty else " (no penalty)")
        row.feedback.insert(0, f"Late: {how}" + (f", {days} started day(s) late" if rule.per_day else "")
                            + f";{took}.")
    return row


# ---------------------------------------------------------------- exports


def write_canvas(path: Path, rows: list, assignment: str, max_points: float) -> int:
    """A Canvas gradebook import CSV (Grades > Import): Student, ID, SIS User ID, SIS Login ID, Section,
    then one column headed `assignment` (an existing column's exact header, "Name (id)", updates it);
    a "Points Possible" row as Canvas exports have. Rows: students with a Canvas id and a grade."""
    graded = [r for r in rows if r.lms == "canvas" and r.status != "grader error"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Student", "ID", "SIS User ID", "SIS Login ID", "Section", assignment])
        w.writerow(["    Points Possible", "", "", "", "", f"{max_points:g}"])
        for r in sorted(graded, key=lambda r: r.student):
            w.writerow([csv_cell(r.name), r.lms_id, "", "", "", f"{r.total:g}"])
    return len(graded)


def write_moodle(path: Path, rows: list, max_points: float) -> int:
    """A Moodle grading worksheet (Assignment > View all submissions > Upload grading worksheet):
    Identifier "Participant <id>" (the id in Moodle's folder names), Full name, Grade, Maximum Grade,
    Feedback comments (status and points per exercise). Rows: students with a Moodle id and a grade."""
    graded = [r for r in rows if r.lms == "moodle" and r.status != "grader error"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["Identifier", "Full name", "Grade", "Maximum Grade", "Feedback comments"])
        for r in sorted(graded, key=lambda r: r.student):
            parts = ", ".join(f"{k} {v:g}" for k, v in r.points.items())
            late = f"; late, -{r.penalty:g}" if r.penalty else ("; late" if r.late else "")
            w.writerow([f"Participant {r.lms_id}", csv_cell(r.name), f"{r.total:g}", f"{max_points:g}",
                        f"{r.status}: {parts}{late}"])
    return len(graded)
