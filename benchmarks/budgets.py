"""Notebook budgets, measured: run every notebook under a preset, record its wall time and headline figures in
benchmarks/budgets.json, and write the README's course-map times from that file (issue 13).

    MINILM_DATA_DIR=../shared/data python benchmarks/budgets.py                  # every notebook, cpu preset
    MINILM_DATA_DIR=../shared/data python benchmarks/budgets.py --only 00 03     # some of them
    python benchmarks/budgets.py --preset gpu                                     # on a machine with a GPU
    MINILM_DATA_DIR=../shared/data python benchmarks/budgets.py --alone --only 06  # on its own, then warm
    python benchmarks/budgets.py --render-only                                    # README from the JSON only

Two times per notebook, because a notebook may need what an earlier one trains (06 loads 05's GPT,
and trains it first when the cache has none):

- after its predecessors (`seconds`): the notebooks run in order (00, 01, ...), top to bottom with
  nbclient, in one fresh cache for the whole sweep (MINILM_CACHE_DIR in a temporary folder; datasets
  from MINILM_DATA_DIR): the times of a student who works through the course in order. With
  --alone, the second run of the notebook in the cache its own first run left stands in for it
  (`after` says which); that is the same time when everything it loads is what its predecessors
  train (06: 05's model), and a lower bound when it also caches something of its own;
- on its own (`alone`, --alone): the notebook alone in an empty cache, as a student who opens it
  first meets it.

A notebook's headline figures
are the lines it prints of the form

    HEADLINE: <name>=<number>        e.g.  HEADLINE: val_loss=1.7812   HEADLINE: kv_speedup_x=6.1

(name: lower case, digits and underscores, the unit in the name; the last value of a name wins;
see docs/architecture.md). Only the measured preset's entries change; the others stay as they
were. A notebook the JSON has no entry for reads "not yet measured" in the README, and a time
measured while the machine was busy (load average above 1.5 per core at the start) says so. Run
the measurements with `nice` on a busy machine: `machine.load_average` records how busy it was.
tests/test_budgets.py fails when the README's table and the JSON disagree.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
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


def run_notebook(path: Path, cell_timeout: float, save_to: Path | None = None) -> dict:
    """Execute one notebook top to bottom (environment as it is now); its wall time, status and headlines.

    `save_to`: a folder to write the executed notebook to (its outputs, to look at the figures)."""
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
    if save_to is not None:
        save_to.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, save_to / path.name)
    return {"seconds": round(time.perf_counter() - start, 1), "status": status,
            "headline": parse_headlines(stdout_of(nb))}


class _Env:
    """MINILM_PRESET=preset and MINILM_CACHE_DIR=cache for a `with` block, the old values back after it."""

    KEYS = ("MINILM_PRESET", "MINILM_CACHE_DIR", "MINILM_CHECKPOINT_DIR")

    def __init__(self, preset: str, cache: str) -> None:
        self.preset, self.cache = preset, cache

    def __enter__(self) -> None:
        self.saved = {k: os.environ.get(k) for k in self.KEYS}
        os.environ.update(MINILM_PRESET=self.preset, MINILM_CACHE_DIR=self.cache)
        os.environ.pop("MINILM_CHECKPOINT_DIR", None)

    def __exit__(self, *exc) -> None:
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def measure_one(path: Path, preset: str, cell_timeout: float, label: str, save_to: Path | None = None) -> dict:
    """Run one notebook in the environment as set, printing a line -> its entry (time, machine, headlines)."""
    when = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    print(f"{path.name} ({preset} preset, {label}) ...", end=" ", flush=True)
    entry = {"measured": when, "machine": machine(), **run_notebook(path, cell_timeout, save_to)}
    if hasattr(os, "getloadavg"):  # how busy the machine stayed: the 1-minute load average at the end too
        entry["machine"]["load_average_end"] = os.getloadavg()[0]
    print(f"{entry['seconds']:.0f} s, {entry['status']}, headline {entry['headline'] or 'none printed'}")
    return entry


def sweep(notebooks: list[Path], preset: str, cell_timeout: float, save_to: Path | None = None) -> dict[str, dict]:
    """Run the notebooks in order under `preset` with one fresh cache; {stem: entry} (after its predecessors)."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="minilm-budgets-") as cache, _Env(preset, cache):
        for path in notebooks:
            results[path.stem] = {**measure_one(path, preset, cell_timeout, "after its predecessors", save_to),
                                  "after": "the notebooks before it, in order, in one fresh cache"}
    return results


def alone(notebooks: list[Path], preset: str, cell_timeout: float, save_to: Path | None = None,
          keep_cache: Path | None = None) -> dict[str, dict]:
    """Each notebook in its own empty cache, then again in the cache that left -> {stem: warm entry with
    `alone`: the first run}. `keep_cache`: a folder to keep those caches in (emptied first), not a temporary one."""
    results = {}
    for path in notebooks:
        with tempfile.TemporaryDirectory(prefix="minilm-budgets-") as tmp:
            cache = Path(tmp) if keep_cache is None else keep_cache / path.stem
            if keep_cache is not None:
                shutil.rmtree(cache, ignore_errors=True)
                cache.mkdir(parents=True)
            with _Env(preset, str(cache)):
                first = measure_one(path, preset, cell_timeout, "on its own, empty cache")
                warm = measure_one(path, preset, cell_timeout, "again, warm cache", save_to)
        results[path.stem] = {**warm, "after": "a second run in the cache its own first run left", "alone": first}
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


def both_times(entry: dict | None) -> str:
    """The README cell: the time after its predecessors, and on its own where that was measured."""
    text = cell_text(entry)
    if entry and entry.get("alone"):
        text += f"; on its own {cell_text(entry['alone'])}"
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
            cells[columns[column]] = f" {both_times(entry.get(preset))} "
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
    parser.add_argument("--alone", action="store_true",
                        help="each notebook on its own in an empty cache, then again warm (not in order)")
    parser.add_argument("--save-executed", type=Path, metavar="DIR", help="write the executed notebooks here")
    parser.add_argument("--keep-cache", type=Path, metavar="DIR", help="with --alone: keep the caches here")
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
        if args.alone:
            measured = alone(notebooks, args.preset, args.cell_timeout, args.save_executed, args.keep_cache)
        else:
            measured = sweep(notebooks, args.preset, args.cell_timeout, args.save_executed)
        for stem, entry in measured.items():
            old = budgets["notebooks"].setdefault(stem, {}).get(args.preset) or {}
            if not args.alone and old.get("alone"):
                entry["alone"] = old["alone"]  # an in-order sweep keeps the last on-its-own time
            budgets["notebooks"][stem][args.preset] = entry
        args.json.write_text(json.dumps(budgets, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
        print(f"wrote {args.json}")
    args.readme.write_text(render_readme(args.readme.read_text(encoding="utf-8"), budgets), encoding="utf-8")
    print(f"wrote the course-map times of {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
