"""Figures are visible: library figures render in a fresh kernel, and the check that rides on nbval
(tests/notebook_outputs.py, run by conftest.py on every cell of notebooks/) catches invisible ones."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient
from notebook_outputs import figure_problems

from minilm.plotting import Figure, plot_curves, plot_losses, plot_matrix
from minilm.training.loop import History

FIRST_USE = """from minilm.plotting import plot_curves
plot_curves({"a": ([0, 1, 2], [3.0, 2.0, 1.5])}, "step", "loss")"""
AFTER_PYPLOT = """import matplotlib.pyplot as plt
plt.plot([1, 2]); plt.show()"""


def _run(*sources: str) -> list[list[dict]]:
    """Execute the cells in a fresh kernel (as JupyterLab, Colab or nbconvert would); their outputs."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    return [cell.outputs for cell in nb.cells]


def _images(outputs: list[dict]) -> int:
    return sum("image/png" in o.get("data", {}) for o in outputs)


@pytest.fixture(scope="module")
def executed():
    return _run(FIRST_USE, AFTER_PYPLOT, FIRST_USE)


def test_a_library_figure_shows_once_in_a_fresh_kernel(executed):
    first = executed[0]
    assert _images(first) == 1, first  # pyplot was never used in this kernel
    assert figure_problems(FIRST_USE, first) == []


def test_and_once_after_pyplot_has_been_used(executed):
    assert _images(executed[1]) == 1
    assert _images(executed[2]) == 1, executed[2]  # the inline backend's formatter does not double it


def test_every_plotting_function_returns_a_self_rendering_figure():
    history = History(steps=[0, 1], train_loss=[2.0, 1.0], val_loss=[2.1, 1.2], step_loss=[2.0, 1.5])
    figures = [plot_losses(history), plot_curves({"a": ([0], [1.0])}, "x", "y", logy=True),
               plot_matrix([[1, 2], [3, 4]], labels=["a", "b"])]
    for fig in figures:
        assert isinstance(fig, Figure)
        assert fig._repr_png_().startswith(b"\x89PNG")


TEXT_ONLY = [{"output_type": "execute_result", "data": {"text/plain": "<Figure size 700x400 with 1 Axes>"}}]
IMAGE = [{"output_type": "display_data", "data": {"image/png": "iVBOR", "text/plain": "<Figure size 700x400 with 1 Axes>"}}]


@pytest.mark.parametrize("source, outputs, bad", [
    ("plot_losses(h)", TEXT_ONLY, True),  # the bug: a figure with no image formatter
    ("plot_losses(h)", IMAGE, False),
    ("fig = plot_losses(h)", [], True),  # made, never shown
    ("fig, ax = plt.subplots()\nax.plot(x)\nplt.show()", IMAGE, False),
    ("fig, ax = plt.subplots()\nax.plot(x)", [], True),
    ("def plot_it(h):\n    return h  # plot_losses(h) later", [], False),  # a definition, a comment
    ("x = 1\nx", [{"output_type": "execute_result", "data": {"text/plain": "1"}}], False),
    ("interact(lambda t: plt.show(), t=(0, 1))",
     [{"output_type": "display_data", "data": {"application/vnd.jupyter.widget-view+json": {}}}], False),
])
def test_figure_problems(source, outputs, bad):
    assert bool(figure_problems(source, outputs)) == bad
