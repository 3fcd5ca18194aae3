"""Reading submitted notebooks: find them in a folder, turn each into a list of code cells (or a reason).

Only the grader reads the files (json + nbformat, no code runs here). Old formats (v1-v3) are upgraded
to v4. IPython syntax (`%magic`, `%%cell magic`, `!shell`, `x = !cmd`) is turned into plain Python
by IPython's own transformer, as Jupyter does it: a `%` or `!` that starts a line inside an
expression or a string stays what it is. The child answers the resulting `get_ipython()` calls.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_NOTEBOOK_BYTES = 20 << 20  # larger files are refused as invalid notebooks


def plain_python(source: str) -> str:
    """A code cell as the plain Python Jupyter would run (magics become get_ipython() calls)."""
    from IPython.core.inputtransformer2 import TransformerManager

    if "%" not in source and "!" not in source and "?" not in source:
        return source
    try:
        out = TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - whatever IPython cannot read, Python will report
        return source
    return source if out.rstrip("\n") == source.rstrip("\n") else out


@dataclass
class Submission:
    """One student's file: the code cells to run, or why there are none."""

    student: str  # file name without .ipynb (the student id an LMS export uses)
    path: Path  # the file
    cells: list[str] | None = None  # code cells, or None for an invalid notebook
    problem: str = ""  # why the notebook is invalid
    notes: list[str] = field(default_factory=list)  # e.g. "converted from nbformat 3"


def find_submissions(folder: str | Path, set_name: str = "") -> list[tuple[str, Path]]:
    """[(student, notebook)] for every student in `folder`, as minilm.grading.lms.collect finds them
    (LMS file names, a folder per student, several notebooks: the one named like the set, else the newest).

    Outside an LMS's naming the student id is the file name without `.ipynb`; when two entries would
    share an id (`a.ipynb` and a folder `a`), both keep their full names: every entry appears once.
    """
    from .lms import collect

    return [(f.student, f.path) for f in collect(folder, set_name)]


def _normal(source: str) -> str:
    return "\n".join(line.rstrip() for line in source.strip().splitlines())


def handed_out_cells(solution_notebook: Any, exercise_notebook: str | Path | None = None) -> set[str]:
    """The code cells a student was given (generated from the solutions notebook, and those of the
    exercises notebook on disk if there is one), whitespace-normalised, for `untouched`."""
    from .authoring import make_exercise_notebook, read_notebook

    cells = {_normal(plain_python(c.source)) for c in make_exercise_notebook(solution_notebook).cells if c.cell_type == "code"}
    if exercise_notebook is not None and Path(exercise_notebook).is_file():
        cells |= {_normal(plain_python(c.source)) for c in read_notebook(exercise_notebook).cells if c.cell_type == "code"}
    return cells


def untouched(sub: Submission, handed_out: set[str]) -> bool:
    """Whether the notebook holds no code of the student's: every non-empty code cell is one handed out."""
    return sub.cells is not None and all(not c.strip() or _normal(c) in handed_out for c in sub.cells)


def read_submission(student: str, path: Path) -> Submission:
    """Parse one submission; never raises (a bad file gets `cells=None` and a `problem`)."""
    import nbformat

    sub = Submission(student, path)
    try:
        if path.is_dir():
            sub.problem = "a folder with no .ipynb file in it"
            return sub
        if path.is_symlink() or not path.is_file():
            sub.problem = "not a regular file (a symbolic link or a special file)"
            return sub
        if not path.name.endswith(".ipynb"):
            sub.problem = f"not a notebook file ({path.name})"
            return sub
        if path.stat().st_size > MAX_NOTEBOOK_BYTES:
            sub.problem = f"file larger than {MAX_NOTEBOOK_BYTES >> 20} MB"
            return sub
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            text = f.read(MAX_NOTEBOOK_BYTES + 1).decode("utf-8")
        raw = json.loads(text)
        if not isinstance(raw, dict) or not isinstance(raw.get("nbformat"), int):
            sub.problem = "JSON, but not a notebook (no nbformat version)"
            return sub
        version = raw["nbformat"]
        with warnings.catch_warnings():  # e.g. missing cell ids: not the student's problem
            warnings.simplefilter("ignore")
            nb = nbformat.reads(text, as_version=4)
        if version != 4:
            sub.notes.append(f"converted from nbformat {version} to 4")
        cells = []
        for cell in nb.cells:
            if cell.get("cell_type") == "code":
                source = cell.get("source", "")
                if not isinstance(source, str):
                    raise ValueError("a code cell's source is not text")
                cells.append(plain_python(source))
        sub.cells = cells
    except UnicodeDecodeError:
        sub.problem = "not UTF-8 text"
    except json.JSONDecodeError as e:
        sub.problem = f"not valid JSON ({e.msg}, line {e.lineno})"
    except Exception as e:  # noqa: BLE001 - nbformat raises many kinds; all mean "invalid"
        sub.problem = f"not a readable notebook ({type(e).__name__}: {str(e)[:200]})"
    return sub
