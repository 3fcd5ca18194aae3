"""Checks that ride on nbval's run of the lecture notebooks (`make test` passes --nbval-lax): a cell of
notebooks/ that makes a figure fails unless its outputs hold the image (tests/notebook_outputs.py).

nbval executes each notebook once, cell by cell, in a fresh kernel like JupyterLab's, and keeps each
cell's outputs on its test item; this hook reads them, so the check costs no second execution and
covers every notebook that lands in notebooks/.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "tests"))
from notebook_outputs import figure_problems

LECTURES = Path(__file__).resolve().parent / "notebooks"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    result = yield  # nbval runs the cell; a cell that raised never gets here
    outputs = getattr(item, "test_outputs", None)
    if outputs is not None and Path(str(item.fspath)).resolve().parent == LECTURES:
        problems = figure_problems(item.cell.source, outputs)
        if problems:
            pytest.fail(f"{Path(str(item.fspath)).name}, cell {item.cell_num}: " + "; ".join(problems)
                        + "\n--- cell source ---\n" + item.cell.source, pytrace=False)
    return result
