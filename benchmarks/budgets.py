"""Notebook budgets, measured: run every notebook under a preset, record its wall time and headline figures in
benchmarks/budgets.json, and write the README's course-map times from that file (issue 13).

    MINILM_DATA_DIR=../shared/data python benchmarks/budgets.py                  # every notebook, cpu preset
    MINILM_DATA_DIR=../shared/data python benchmarks/budgets.py --only 00 03     # some of them
    python benchmarks/budgets.py --preset gpu                                     # on a machine with a GPU
    python benchmarks/budgets.py --render-only                                    # README from the JSON only

The notebooks run in order (00, 01, ...), top to bottom with nbclient, in a fresh cache for the
whole sweep (MINILM_CACHE_DIR in a temporary folder; datasets from MINILM_DATA_DIR): the times of a
student who works through the course in order on a fresh machine. A notebook's headline figures
are the lines it prints of the form

    HEADLINE: <name>=<number>        e.g.  HEADLINE: val_loss=1.7812   HEADLINE: kv_speedup_x=6.1

(name: lower case, digits and underscores, the unit in the name; the last value of a name wins;
see docs/architecture.md). Only the measured preset's entries change; the others stay as they
were. A notebook the JSON has no entry for reads "not yet measured" in the README, and a time
measured while the machine was busy (load average above 1.5 per core at the start) says so.
tests/test_budgets.py fails when the README's table and the JSON disagree.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JSON_PATH = ROOT / "benchmarks" / "budgets.json"
README = ROOT / "README.md"
HEADLINE = re.compile(r"^HEADLINE: ([a-z][a-z0-9_]*)=(\S+)\s*$", re.MULTILINE)
PRESET_COLUMNS = {"cpu": "cpu preset", "gpu": "gpu preset"}
NOT_MEASURED = "not yet measured"
BUSY = 1.5  # load average per core above which a timing is marked as taken on a busy machine


def parse_headlines(text: str) -> dict[str, float | str]:
    """{name: value} of every `HEADLINE: name=value` line in `text` (numbers as floats; the last one wins)."""
    out: dict[str, float | str] = {}
    for name, value in HEADLINE.findall(text):
        try:
            out[name] = float(value)
        except ValueError:
            out[name] = value
    return out


def stdout_of(nb) -> str:
    """Everything the notebook's cells printed to stdout, in order."""
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []) if o.get("output_type") == "stream" and o.get("name") == "stdout")


def machine() -> dict:
    """What the timings were taken on."""
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    info = {"platform": platform.platform(), "cpus": os.cpu_count(), "torch": torch.__version__,
            "load_average": load, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    return info


def run_notebook(path: Path, cell_timeout: float) -> dict:
    """Execute one notebook top to bottom (environment as it is now); its wall time, status and headlines."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=cell_timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start, status = time.perf_counter(), "ok"
    try:
        client.execute()
    except CellExecutionError as e:
        status = f"error: {str(e).strip().splitlines()[-1][:200]}"
    except (TimeoutError, RuntimeError) as e:  # a cell over its time, a dead kernel
        status = f"error: {type(e).__name__}: {str(e)[:200]}"
    return {"seconds": round(time.perf_counter() - start, 1), "status": status,
            "headline": parse_headlines(stdout_of(nb))}


def sweep(notebooks: list[Path], preset: str, cell_timeout: float) -> dict[str, dict]:
    """Run the notebooks in order under `preset` with one fresh cache; {stem: entry}."""
    saved = {k: os.environ.get(k) for k in ("MINILM_PRESET", "MINILM_CACHE_DIR", "MINILM_CHECKPOINT_DIR")}
    results = {}
    with tempfile.TemporaryDirectory(prefix="minilm-budgets-") as cache:
        os.environ.update(MINILM_PRESET=preset, MINILM_CACHE_DIR=cache)
        os.environ.pop("MINILM_CHECKPOINT_DIR", None)
        try:
            for path in notebooks:
                when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
                print(f"{path.name} ({preset} preset) ...", end=" ", flush=True)
                entry = {"measured": when, "machine": machine(), **run_notebook(path, cell_timeout)}
                print(f"{entry['seconds']:.0f} s, {entry['status']}, headline {entry['headline'] or 'none printed'}")
                results[path.stem] = entry
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return results


def cell_text(entry: dict | None) -> str:
    """The README cell of one measurement: '< 1 min', '2.4 min', '14 min', 'not yet measured', ..."""
    if not entry:
        return NOT_MEASURED
    if entry.get("status", "ok") != "ok":
        return "failed in the last measurement (see benchmarks/budgets.json)"
    s = entry["seconds"]
    text = "< 1 min" if s < 60 else f"{s / 60:.1f} min" if s < 600 else f"{s / 60:.0f} min"
    m = entry.get("machine") or {}
    if m.get("load_average") is not None and m.get("cpus") and m["load_average"] / m["cpus"] > BUSY:
        text += " (busy machine)"
    return text


_CELL = re.compile(r"(?<!\\)\|")  # a column separator: a pipe that is not escaped


def course_map_rows(readme: str) -> tuple[dict[str, int], dict[str, tuple[int, list[str]]]]:
    """({column name: index}, {notebook stem: (line number, cells)}) of the README's course-map table."""
    lines = readme.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("| notebook |"))
    columns = {c.strip(): k for k, c in enumerate(_CELL.split(lines[head]))}
    rows = {}
    for i in range(head + 2, len(lines)):
        if not lines[i].startswith("|"):
            break
        m = re.search(r"\]\(notebooks/(\d\d_[A-Za-z0-9_]+)\.ipynb\)", lines[i])
        if m:
            rows[m.group(1)] = (i, _CELL.split(lines[i]))
    return columns, rows


def render_readme(readme: str, budgets: dict) -> str:
    """The README with the cpu / gpu time of every linked course-map row taken from `budgets`."""
    lines = readme.splitlines(keepends=True)
    columns, rows = course_map_rows(readme)
    for stem, (i, cells) in rows.items():
        entry = budgets["notebooks"].get(stem) or {}
        for preset, column in PRESET_COLUMNS.items():
            cells[columns[column]] = f" {cell_text(entry.get(preset))} "
        end = "\n" if lines[i].endswith("\n") else ""
        lines[i] = "|".join(cells).rstrip("\n") + end
    return "".join(lines)


def load(path: Path) -> dict:
    """The budgets file, or an empty one."""
    if path.is_file():
        return json.loads(path.read_text())
    return {"format": 1, "headline_convention": "a printed line 'HEADLINE: <name>=<number>'", "notebooks": {}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=["cpu", "gpu"], default="cpu", help="the preset to measure (cpu)")
    parser.add_argument("--only", nargs="+", metavar="NN", help="only these notebooks (their numbers)")
    parser.add_argument("--notebooks", type=Path, default=ROOT / "notebooks", help="folder of notebooks")
    parser.add_argument("--json", type=Path, default=JSON_PATH, help="the budgets file to update")
    parser.add_argument("--readme", type=Path, default=README, help="the README whose course map to rewrite")
    parser.add_argument("--cell-timeout", type=float, default=3600, help="seconds a cell may take (3600)")
    parser.add_argument("--render-only", action="store_true", help="rewrite the README from the JSON, run nothing")
    args = parser.parse_args(argv)
    budgets = load(args.json)
    if not args.render_only:
        if args.preset == "gpu":
            import torch

            if not torch.cuda.is_available():
                parser.error("--preset gpu measures on a GPU, and PyTorch sees none here")
        notebooks = sorted(args.notebooks.glob("[0-9][0-9]_*.ipynb"))
        if args.only:
            notebooks = [p for p in notebooks if p.name[:2] in args.only]
        if not notebooks:
            parser.error(f"no notebook to run in {args.notebooks} (--only {args.only})")
        for stem, entry in sweep(notebooks, args.preset, args.cell_timeout).items():
            budgets["notebooks"].setdefault(stem, {})[args.preset] = entry
        args.json.write_text(json.dumps(budgets, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
        print(f"wrote {args.json}")
    args.readme.write_text(render_readme(args.readme.read_text(encoding="utf-8"), budgets), encoding="utf-8")
    print(f"wrote the course-map times of {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
