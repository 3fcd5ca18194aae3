"""Authoring: read `# EXERCISE:` cells from solutions/, generate exercises/, load the reference solutions.

An answer cell starts with `# EXERCISE: <id>`, defines a function or class named <id>, and wraps
its answer in `### BEGIN SOLUTION` / `### END SOLUTION`; the next code cell calls `check("<id>", <id>)`.
`make_exercise_notebook` replaces each answer by `raise NotImplementedError` and strips outputs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
STUB = "raise NotImplementedError  # your code here"
_EXERCISE = re.compile(r"\A# EXERCISE: *([A-Za-z_][A-Za-z0-9_]*) *$", re.MULTILINE)
_BADGE = re.compile(
    r"\[!\[Open In Colab\]\(https://colab\.research\.google\.com/assets/colab-badge\.svg\)\]"
    r"\(https://colab\.research\.google\.com/github/[^)\s]+\)"
)


class AuthoringError(ValueError):
    """A solutions notebook that breaks the authoring rules (docs/instructors.md)."""


def exercise_id(source: str) -> str | None:
    """The id of an answer cell (its first line is `# EXERCISE: <id>`), else None."""
    m = _EXERCISE.match(source)
    return m.group(1) if m else None


def strip_solutions(source: str, where: str = "cell") -> str:
    """Replace every BEGIN/END SOLUTION block by `raise NotImplementedError`, keeping its indentation."""
    out, inside, indent = [], False, ""
    for n, line in enumerate(source.split("\n"), 1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise AuthoringError(f"{where}, line {n}: {BEGIN} inside another solution block")
            inside, indent = True, line[: len(line) - len(line.lstrip())]
            out.append(indent + STUB)
        elif stripped == END:
            if not inside:
                raise AuthoringError(f"{where}, line {n}: {END} without {BEGIN}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise AuthoringError(f"{where}: {BEGIN} is never closed by {END}")
    return "\n".join(out)


def solution_lines(source: str) -> list[str]:
    """The stripped, non-empty lines inside the solution blocks of a cell (what must not leak)."""
    lines, inside = [], False
    for line in source.split("\n"):
        s = line.strip()
        if s in (BEGIN, END):
            inside = s == BEGIN
        elif inside and s and not s.startswith("#"):
            lines.append(s)
    return lines


def read_notebook(path: str | Path) -> Any:
    """Read a notebook as nbformat v4."""
    return nbformat.read(str(path), as_version=4)


def exercise_cells(nb: Any, where: str = "notebook") -> list[tuple[str, str]]:
    """[(id, source)] of the answer cells, checked against the authoring rules."""
    found: list[tuple[str, str]] = []
    cells = [c for c in nb.cells if c.cell_type == "code"]
    for i, cell in enumerate(cells):
        ex_id = exercise_id(cell.source)
        if ex_id is None:
            if BEGIN in cell.source:
                raise AuthoringError(
                    f"{where}: a cell has {BEGIN} but does not start with '# EXERCISE: <id>'"
                )
            continue
        label = f"{where}, exercise {ex_id}"
        if BEGIN not in cell.source:
            raise AuthoringError(f"{label}: no {BEGIN} / {END} block")
        if not re.search(rf"^(def|class) {ex_id}\b", cell.source, re.MULTILINE):
            raise AuthoringError(f"{label}: the cell must define a function or class named {ex_id}")
        nxt = cells[i + 1].source if i + 1 < len(cells) else ""
        if not re.search(rf"check\(\s*[\"']{ex_id}[\"']", nxt):
            raise AuthoringError(f'{label}: the next code cell must call check("{ex_id}", {ex_id})')
        if ex_id in dict(found):
            raise AuthoringError(f"{label}: defined twice")
        strip_solutions(cell.source, label)  # raises on unbalanced markers
        found.append((ex_id, cell.source))
    return found


def colab_badge(path: str) -> str:
    """The "Open In Colab" badge of the notebook at `path` in the course repository (as the lectures have)."""
    from ..notebook_setup import GITHUB_REPO

    url = f"https://colab.research.google.com/github/{GITHUB_REPO}/blob/main/{path}"
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def with_badge(markdown: str, path: str) -> str:
    """`markdown` with its Colab badge pointing at `path` (added under the title if it has none)."""
    if _BADGE.search(markdown):
        return _BADGE.sub(lambda m: colab_badge(path), markdown, count=1)
    title, _, rest = markdown.partition("\n")
    return f"{title}\n\n{colab_badge(path)}\n" + (f"\n{rest.lstrip(chr(10))}" if rest.strip() else "")


def make_exercise_notebook(solution: Any, where: str = "notebook", path: str | None = None) -> Any:
    """The student's notebook: answers replaced by stubs, outputs and execution counts stripped; with
    `path` (e.g. "exercises/01_text_tokens.ipynb"), the cell after the setup cell gets its Colab badge."""
    exercise_cells(solution, where)  # validate first
    nb = nbformat.v4.new_notebook(
        metadata={
            k: v for k, v in solution.metadata.items() if k in ("kernelspec", "language_info")
        }
    )
    first_code = next((i for i, c in enumerate(solution.cells) if c.cell_type == "code"), None)
    for i, cell in enumerate(solution.cells):
        source = strip_solutions(cell.source, where) if cell.cell_type == "code" else cell.source
        if path and first_code is not None and i == first_code + 1 and cell.cell_type == "markdown":
            source = with_badge(source, path)
        if cell.cell_type == "code":
            new = nbformat.v4.new_code_cell(source)
        elif cell.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(source)
        else:
            new = nbformat.v4.new_raw_cell(source)
        if "id" in cell:
            new["id"] = cell["id"]
        nb.cells.append(new)
    return nb


def notebook_text(nb: Any) -> str:
    """The exact text we write for a notebook (stable, so a test can compare files byte for byte)."""
    return nbformat.writes(nb) + "\n"


def make_exercises(
    solutions_dir: str | Path, exercises_dir: str | Path, check_only: bool = False
) -> list[Path]:
    """Regenerate exercises/ from solutions/; with check_only, return the files that are out of date."""
    solutions_dir, exercises_dir = Path(solutions_dir), Path(exercises_dir)
    stale = []
    for src in sorted(solutions_dir.glob("[0-9]*.ipynb")):
        dst = exercises_dir / src.name
        text = notebook_text(make_exercise_notebook(read_notebook(src), str(src), f"exercises/{src.name}"))
        if not dst.exists() or dst.read_text(encoding="utf-8") != text:
            stale.append(dst)
            if not check_only:
                exercises_dir.mkdir(parents=True, exist_ok=True)
                dst.write_text(text, encoding="utf-8")
    return stale


def find_solutions_dir(explicit: str | Path | None = None, set_name: str | None = None) -> Path:
    """`explicit`, else ./solutions, else the solutions/ folder next to an editable minilm checkout;
    a clear error (where reference solutions come from, how to pass them) when there is none."""
    candidates = (
        [Path(explicit)]
        if explicit
        else [Path.cwd() / "solutions", Path(__file__).resolve().parents[2] / "solutions"]
    )
    for c in candidates:
        if c.is_dir() and (set_name is None or (c / f"{set_name}.ipynb").is_file()):
            return c.resolve()
    from ..notebook_setup import GITHUB_REPO

    repo = f"https://github.com/{GITHUB_REPO}"
    wanted = f"{set_name}.ipynb" if set_name else "the solutions notebooks"
    raise FileNotFoundError(
        f"no reference solutions found: {wanted} is not in {' nor in '.join(map(str, candidates))}. "
        "The reference solutions are not part of the minilm package (pip install minilm has none): they "
        f"are the notebooks solutions/NN_topic.ipynb of the course repository ({repo}, or your "
        "course's private copy of it). Pass their folder with --solutions DIR, e.g. "
        "`minilm grade 01 submissions/ --out grades/01 --solutions ~/minilm/solutions`."
    )


def load_reference(set_name: str, solutions_dir: str | Path | None = None) -> dict[str, Any]:
    """{id: object} from the answer cells of solutions/<set_name>.ipynb, run in order in one namespace."""
    path = find_solutions_dir(solutions_dir, set_name) / f"{set_name}.ipynb"
    namespace: dict[str, Any] = {"__name__": f"minilm_reference_{set_name}"}
    objects = {}
    for ex_id, source in exercise_cells(read_notebook(path), str(path)):
        exec(compile(source, f"{path}:{ex_id}", "exec"), namespace)  # noqa: S102 - the instructor's code
        objects[ex_id] = namespace[ex_id]
    return objects
