"""Every committed notebook is clean (no outputs), starts with the setup cell and its objectives, is
named NN_name.ipynb and is on the README's course map; no data file is committed anywhere.

(Executing the notebooks is nbval's job: `make test` runs `pytest --nbval-lax` over notebooks/,
solutions/ and exercises/ with MINILM_PRESET=smoke.)
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import nbformat
import pytest

from minilm.data.datasets import DATASETS
from minilm.notebook_setup import INSTALL_SOURCE, SETUP_CELL

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("notebooks", "solutions", "exercises")
NOTEBOOKS = sorted(p for folder in FOLDERS for p in (ROOT / folder).glob("*.ipynb"))
NAME = re.compile(r"^\d\d_[a-z0-9]+(?:_[a-z0-9]+)*\.ipynb$")
SKIP_DIRS = {
    ".git",
    ".venv",
    "venv",
    "env",
    ".minilm_cache",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".ipynb_checkpoints",
    "build",
    "dist",
    "node_modules",
}


def ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


def code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


@pytest.fixture(params=NOTEBOOKS, ids=ids(NOTEBOOKS))
def nb(request):
    """The notebook read as nbformat 4 (no conversion: an old version is a failure here)."""
    path = request.param
    node = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    assert node.nbformat == 4, f"{path.name}: nbformat {node.nbformat}, expected 4"
    return path, node


def test_notebooks_exist():
    assert (ROOT / "notebooks" / "00_start_here.ipynb").is_file()


def test_valid_nbformat(nb):
    nbformat.validate(nb[1])


def test_no_outputs_no_execution_counts(nb):
    path, nb = nb
    dirty = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.outputs or c.execution_count)
    ]
    assert not dirty, (
        f"{path.name}: cells {dirty} hold outputs or execution counts; clear them before committing"
    )


def test_first_code_cell_is_the_setup_cell(nb):
    path, nb = nb
    cells = code_cells(nb)
    assert cells and cells[0].source == SETUP_CELL, (
        f"{path.name}: the first code cell must be exactly minilm.notebook_setup.SETUP_CELL"
    )
    assert all(SETUP_CELL not in c.source for c in cells[1:]), (
        f"{path.name}: the setup cell appears twice"
    )


def test_objectives_and_run_time_follow_the_setup_cell(nb):
    path, nb = nb
    first = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    assert first + 1 < len(nb.cells), f"{path.name}: nothing after the setup cell"
    cell = nb.cells[first + 1]
    assert cell.cell_type == "markdown", (
        f"{path.name}: the cell after the setup cell must be markdown"
    )
    text = cell.source.lower()
    for words in ("objectives", "run time", "cpu", "gpu"):
        assert words in text, f"{path.name}: the cell after the setup cell must state {words!r}"


def test_objectives_cell_has_the_colab_badge_of_this_notebook(nb):
    """Lectures, solutions and exercises alike open in Colab from their own badge (minilm make-exercises
    writes the exercises' badge; a solutions notebook points at itself)."""
    from minilm.grading.authoring import colab_badge

    path, nb = nb
    first = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    badge = colab_badge(f"{path.parent.name}/{path.name}")
    assert badge in nb.cells[first + 1].source, f"{path.name}: the cell after the setup cell needs {badge}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_file_name(path):
    assert NAME.match(path.name), (
        f"{path}: notebooks are named NN_name.ipynb (lower case, underscores)"
    )


def test_setup_cell_installs_from_the_one_source():
    assert INSTALL_SOURCE in SETUP_CELL and "MINILM_INSTALL_SOURCE" in SETUP_CELL
    compile(SETUP_CELL, "SETUP_CELL", "exec")


# --- the README's course map ---------------------------------------------------------------

README = (ROOT / "README.md").read_text(encoding="utf-8") if (ROOT / "README.md").exists() else ""
LINKED = set(re.findall(r"\]\((notebooks/\d\d_[A-Za-z0-9_]+\.ipynb)\)", README))


def test_readme_course_map_links_exist():
    assert LINKED, "the README's course map links no notebook"
    missing = sorted(p for p in LINKED if not (ROOT / p).is_file())
    assert not missing, f"the README links notebooks that do not exist: {missing}"


def test_every_notebook_is_on_the_course_map():
    present = {f"notebooks/{p.name}" for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert not present - LINKED, (
        f"notebooks missing from the README's course map: {sorted(present - LINKED)}"
    )


def test_unlinked_course_map_rows_are_marked_coming():
    # A row of the course map table without a notebook link must say the notebook is coming.
    rows = [line for line in README.splitlines() if re.match(r"^\|\s*(\[)?\d\d\b", line)]
    assert len(rows) >= 9, "the course map should list notebooks 00..08"
    for row in rows:
        if "](notebooks/" not in row:
            assert "coming" in row.lower(), (
                f"course-map row without a notebook link and not marked coming: {row}"
            )


def test_colab_badges_point_at_existing_notebooks():
    badge = re.compile(
        r"colab\.research\.google\.com/github/[^/]+/[^/]+/blob/[^/]+/(notebooks/[^)\s]+\.ipynb)"
    )
    for target in badge.findall(README):
        assert (ROOT / target).is_file(), f"a Colab badge points at {target}, which does not exist"


def test_readme_lists_every_dataset_with_its_license():
    for ds in DATASETS.values():
        rows = [line for line in README.splitlines() if line.startswith(f"| `{ds.name}` |")]
        assert len(rows) == 1, f"the README's datasets table should have one row for {ds.name}"
        assert ds.license in rows[0], (
            f"{ds.name}: the README should state its license {ds.license!r}"
        )


# --- no data committed ---------------------------------------------------------------------


def repo_files(min_bytes: int):
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        for name in files:
            p = Path(folder) / name
            if p.is_file() and not p.is_symlink() and p.stat().st_size > min_bytes:
                yield p


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_no_data_file_is_committed():
    data_hashes = {f.sha256: f.path for ds in DATASETS.values() for f in ds.files}
    mirror = os.environ.get("MINILM_DATA_DIR")
    if mirror and Path(mirror).is_dir():  # also the mirror's files outside the registry (e.g. BBQ)
        for p in Path(mirror).rglob("*"):
            if p.is_file() and p.stat().st_size > 20_000:
                data_hashes.setdefault(sha256(p), str(p.relative_to(mirror)))
    copies = [
        (str(p.relative_to(ROOT)), data_hashes[h])
        for p in repo_files(20_000)
        if (h := sha256(p)) in data_hashes
    ]
    assert not copies, f"data files are committed (delete them; fetch via minilm.data): {copies}"


LECTURE_NOTEBOOKS = [p for p in NOTEBOOKS if p.parent.name == "notebooks"]
HEADLINE_PRINT = re.compile(r'^\s*print\(f?"HEADLINE: [a-z][a-z0-9_{}\[\]\'.()]*=', re.MULTILINE)


@pytest.mark.parametrize("path", LECTURE_NOTEBOOKS, ids=ids(LECTURE_NOTEBOOKS))
def test_lecture_prints_its_headline_figures(path):
    """Each lecture prints its key figures as `HEADLINE: name=value` lines (docs/architecture.md), which
    benchmarks/budgets.py records beside the notebook's run time."""
    nb = nbformat.read(path, as_version=4)
    found = [c for c in code_cells(nb) if HEADLINE_PRINT.search(c.source)]
    assert found, f"{path.name}: no cell prints a 'HEADLINE: name=value' line"
