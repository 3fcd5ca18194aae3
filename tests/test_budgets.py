"""Notebook budgets are measured, not typed: the README's course-map times are what benchmarks/budgets.json
holds (rendered by benchmarks/budgets.py), and the script measures a notebook's time and headline figures."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import nbformat

from minilm.notebook_setup import SETUP_CELL

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("budgets", ROOT / "benchmarks" / "budgets.py")
budgets = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(budgets)


def test_the_readme_course_map_times_are_the_json():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    data = budgets.load(budgets.JSON_PATH)
    assert budgets.render_readme(readme, data) == readme, (
        "the README's course-map times differ from benchmarks/budgets.json: measure with "
        "`python benchmarks/budgets.py` (or rewrite the README from the JSON: --render-only)")
    columns, rows = budgets.course_map_rows(readme)
    assert {"cpu preset", "gpu preset"} <= set(columns)
    assert {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")} <= set(rows)
    for stem, (_, cells) in rows.items():  # every time cell is a measurement or says it is none
        entry = data["notebooks"].get(stem) or {}
        for preset, column in budgets.PRESET_COLUMNS.items():
            text = cells[columns[column]].strip()
            assert (text == budgets.NOT_MEASURED) == (preset not in entry), (stem, preset, text)


def test_every_measurement_in_the_json_is_complete():
    for stem, entry in budgets.load(budgets.JSON_PATH)["notebooks"].items():
        assert (ROOT / "notebooks" / f"{stem}.ipynb").is_file(), f"budgets.json measures a missing notebook {stem}"
        for preset, m in entry.items():
            assert preset in budgets.PRESET_COLUMNS and m["seconds"] > 0 and m["measured"][:2] == "20"
            assert {"platform", "cpus", "torch", "load_average"} <= set(m["machine"]) and "status" in m


def test_headline_lines():
    text = "loss 3\nHEADLINE: val_loss=1.80\nHEADLINE: val_loss=1.7812\nHEADLINE: kv_speedup_x=6.1\n" \
           "  HEADLINE: indented=1\nHEADLINE: Bad=1\nHEADLINE: note=fast\n"
    assert budgets.parse_headlines(text) == {"val_loss": 1.7812, "kv_speedup_x": 6.1, "note": "fast"}


def test_both_times():
    quiet = {"load_average": 0.5, "cpus": 2}
    warm = {"seconds": 100, "status": "ok", "machine": quiet}
    assert budgets.both_times(warm) == "1.7 min"
    assert budgets.both_times({**warm, "alone": {"seconds": 750, "status": "ok", "machine": {"load_average": 7,
                                                                                        "cpus": 2}}}) \
        == "1.7 min; on its own 12 min (busy machine)"
    assert budgets.both_times(None) == "not yet measured"


def test_cell_text():
    quiet = {"load_average": 0.5, "cpus": 2}
    assert budgets.cell_text(None) == "not yet measured"
    assert budgets.cell_text({"seconds": 42, "status": "ok", "machine": quiet}) == "< 1 min"
    assert budgets.cell_text({"seconds": 150, "status": "ok", "machine": quiet}) == "2.5 min"
    assert budgets.cell_text({"seconds": 1500, "status": "ok", "machine": quiet}) == "25 min"
    assert budgets.cell_text({"seconds": 150, "status": "ok", "machine": {"load_average": 9, "cpus": 2}}) \
        == "2.5 min (busy machine)"
    assert budgets.cell_text({"seconds": 5, "status": "error: boom"}).startswith("failed")


README = """# x

| notebook | what it builds | cpu preset | gpu preset | Colab |
|---|---|---|---|---|
| [00](notebooks/00_demo.ipynb) | **Demo.** a \\| b | typed | typed | badge |
| [01](notebooks/01_other.ipynb) | **Other.** | typed | typed | badge |
| 02 | **Later** (coming). | | | |

after
"""


def test_the_script_measures_a_notebook_and_writes_the_json_and_the_readme(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SETUP_CELL),
                nbformat.v4.new_code_cell("import os\nprint(f\"HEADLINE: preset_is_cpu={int(os.environ['MINILM_PRESET'] "
                                          "== 'cpu')}\")\nprint('HEADLINE: val_loss=1.5')")]
    nbformat.write(nb, folder / "00_demo.ipynb")
    nbformat.write(nbformat.v4.new_notebook(), folder / "01_other.ipynb")
    readme, out = tmp_path / "README.md", tmp_path / "budgets.json"
    readme.write_text(README)
    assert budgets.main(["--notebooks", str(folder), "--json", str(out), "--readme", str(readme), "--only", "00"]) == 0
    entry = json.loads(out.read_text())["notebooks"]["00_demo"]["cpu"]
    assert entry["status"] == "ok" and entry["headline"] == {"preset_is_cpu": 1.0, "val_loss": 1.5}
    assert 0 < entry["seconds"] < 120
    text = readme.read_text()
    row = next(line for line in text.splitlines() if "00_demo" in line)
    assert f"| {budgets.cell_text(entry)} | not yet measured | badge |" in row and "a \\| b" in row
    assert "| [01](notebooks/01_other.ipynb) | **Other.** | not yet measured | not yet measured |" in text
    assert "| 02 | **Later** (coming). | | | |" in text and text.endswith("after\n")


def test_alone_runs_a_notebook_in_an_empty_cache_then_warm(tmp_path):
    """--alone: the first run meets an empty cache (what a student opening the notebook first meets), the
    second the cache the first left; both land in the JSON and in the README's cell."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SETUP_CELL), nbformat.v4.new_code_cell(
        "import os, pathlib\nmarker = pathlib.Path(os.environ['MINILM_CACHE_DIR']) / 'model.pt'\n"
        "print(f'HEADLINE: empty_cache={int(not marker.exists())}')\nmarker.write_text('trained')")]
    nbformat.write(nb, folder / "00_demo.ipynb")
    readme, out = tmp_path / "README.md", tmp_path / "budgets.json"
    readme.write_text(README)
    assert budgets.main(["--notebooks", str(folder), "--json", str(out), "--readme", str(readme), "--alone",
                         "--keep-cache", str(tmp_path / "caches")]) == 0
    entry = json.loads(out.read_text())["notebooks"]["00_demo"]["cpu"]
    assert entry["alone"]["headline"] == {"empty_cache": 1.0} and entry["headline"] == {"empty_cache": 0.0}
    assert entry["after"].startswith("a second run") and "load_average_end" in entry["machine"]
    assert (tmp_path / "caches" / "00_demo" / "model.pt").read_text() == "trained"
    row = next(line for line in readme.read_text().splitlines() if "00_demo" in line)
    assert f"| {budgets.cell_text(entry)}; on its own {budgets.cell_text(entry['alone'])} |" in row


_RUN_TIME_LINE = re.compile(r"\*\*(?:Expected )?run time:\*\*(.*?)(?:\n\n|$)", re.IGNORECASE | re.DOTALL)
_CPU_CLAIM = re.compile(r"under (?:a|1) minute|about (\d+(?:\.\d+)?) minutes?", re.IGNORECASE)


_ALONE = re.compile(r"on its own\b(.*)", re.IGNORECASE | re.DOTALL)


def stated_cpu_seconds(markdown: str, alone: bool = False) -> tuple[float, bool] | None:
    """(seconds, is_an_upper_bound) of the first cpu run-time claim of a notebook's "**Run time:**" paragraph
    (after its predecessors); with `alone`, of the first claim after the words "on its own"."""
    m = _RUN_TIME_LINE.search(markdown)
    if not m:
        return None
    text = m.group(1)
    if alone:
        rest = _ALONE.search(text)
        if not rest:
            return None
        text = rest.group(1)
    claim = _CPU_CLAIM.search(text)
    if not claim:
        return None
    return (60.0, True) if claim.group(1) is None else (float(claim.group(1)) * 60, False)


def test_stated_cpu_seconds():
    assert stated_cpu_seconds("**Run time:** cpu preset about 5 minutes on a quiet CPU; gpu preset 2") == (300, False)
    assert stated_cpu_seconds("x\n**Expected run time:** under a minute under the `cpu` preset") == (60, True)
    assert stated_cpu_seconds("**Expected run time:** about 2 minutes with the cpu preset") == (120, False)
    assert stated_cpu_seconds("no claim here") is None
    both = ("**Expected run time:** about 2 minutes with the cpu preset after notebook 05; on its own, with an "
            "empty cache, about 12.5 minutes, most of them training 05's model.")
    assert stated_cpu_seconds(both) == (120, False) and stated_cpu_seconds(both, alone=True) == (750, False)
    assert stated_cpu_seconds("**Run time:** about 2 minutes", alone=True) is None


def test_the_run_time_a_notebook_states_is_the_measured_one():
    """The "Run time" each notebook promises a student (cpu preset) is the measured one of budgets.json, after
    its predecessors and, where measured, on its own (an empty cache): within a minute, or within 40 % for
    longer runs ("under a minute": measured under 90 s)."""
    data = budgets.load(budgets.JSON_PATH)["notebooks"]
    wrong = []
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        text = "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        stated = stated_cpu_seconds(text)
        assert stated is not None, f"{path.name} states no cpu run time ('**Run time:** cpu preset about N minutes')"
        measured = (data.get(path.stem) or {}).get("cpu")
        if not measured:
            continue  # not measured yet: the README says so
        pairs = [("after its predecessors", stated, measured["seconds"])]
        if measured.get("alone"):  # measured on its own too: the notebook must say it
            alone = stated_cpu_seconds(text, alone=True)
            assert alone is not None, f"{path.name} states no time 'on its own' (budgets.json measured one)"
            pairs.append(("on its own", alone, measured["alone"]["seconds"]))
        for what, (claim, bound), s in pairs:
            ok = s <= 1.5 * claim if bound else abs(claim - s) <= max(60.0, 0.4 * s)
            if not ok:
                wrong.append(f"{path.name} ({what}): states {claim / 60:g} min, measured {s / 60:.1f} min")
    assert not wrong, "run times in the notebooks differ from benchmarks/budgets.json: " + "; ".join(wrong)
