"""What a reader of an executed notebook sees, checked: every figure a cell makes is an image in its outputs.

Used by the repository's conftest.py on the outputs nbval collects while it runs each cell of
notebooks/ (no second execution), and unit-tested in test_notebook_outputs.py.
"""

from __future__ import annotations

import re

IMAGE_TYPES = ("image/png", "image/svg+xml", "image/jpeg")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"  # a widget may draw its figure itself
# what IPython prints for a matplotlib Figure that has no image formatter: "<Figure size 700x400 with 1 Axes>"
FIGURE_AS_TEXT = re.compile(r"<(?:matplotlib\.figure\.)?Figure size [\d.]+x[\d.]+ with \d+ Axes>")
# calls that make a figure: minilm.plotting's plot_*() and pyplot's figure makers
MAKES_FIGURE = re.compile(r"(?<![\w.])(?:plot_\w+|plt\.(?:subplots|subplot|figure|show|imshow|plot|bar|hist))\(")


def _code(source: str) -> str:
    """The source without comments and without `def` lines (defining plot_x() makes no figure)."""
    lines = [line.split("#", 1)[0] for line in source.splitlines()]
    return "\n".join(line for line in lines if not line.lstrip().startswith("def "))


def figure_problems(source: str, outputs: list[dict]) -> list[str]:
    """Why this cell's figures are not visible ([] when they are): outputs as nbformat/nbval hold them."""
    problems = []
    datas = [o.get("data", {}) for o in outputs if o.get("output_type") in ("display_data", "execute_result")]
    for data in datas:
        text = data.get("text/plain", "")
        text = "".join(text) if isinstance(text, list) else text
        if FIGURE_AS_TEXT.search(text) and not any(t in data for t in IMAGE_TYPES):
            problems.append(f"a figure was shown as text only ({FIGURE_AS_TEXT.search(text).group()}): "
                            "no image formatter was active for it")
    shown = any(t in data for data in datas for t in IMAGE_TYPES + (WIDGET_VIEW,))
    if MAKES_FIGURE.search(_code(source)) and not shown:
        problems.append("the cell makes a figure but its outputs hold no image")
    return problems
