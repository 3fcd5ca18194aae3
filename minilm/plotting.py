"""Plots for the notebooks: each function takes data and returns a matplotlib Figure (02+).

The notebook decides whether to show or save it; the library never calls show() or savefig().
Figures are made without pyplot (none is left open behind the notebook's back), as `Figure`, a
matplotlib Figure that renders its own PNG for the notebook: a cell that ends with one shows it
exactly once, in JupyterLab, classic Jupyter, Colab and nbconvert alike, whether or not pyplot
was ever used in the kernel. (A plain Figure made outside pyplot shows only as the text
"<Figure size ... with 1 Axes>" until pyplot has loaded the notebook's image formatter.)
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib.figure


class Figure(matplotlib.figure.Figure):
    """A matplotlib Figure that a notebook displays as a PNG wherever it is the cell's result."""

    def _repr_png_(self) -> bytes:
        """The figure as PNG bytes: IPython calls this to display it (no pyplot needed)."""
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()


def figure(figsize: tuple[float, float], nrows: int = 1, ncols: int = 1):
    """(Figure, axes) outside pyplot, like plt.subplots: one Axes, or an array of them for a grid."""
    fig = Figure(figsize=figsize)
    axes = fig.subplots(nrows, ncols)
    return fig, axes


def plot_losses(history, title: str = "loss", ax=None, label: str = "") -> Figure:
    """Train/val loss estimates against step (and the per-step loss, faint) from a History."""
    if ax is None:
        fig, ax = figure((7, 4))
    else:
        fig = ax.figure
    prefix = f"{label} " if label else ""
    if history.step_loss:
        ax.plot(range(1, len(history.step_loss) + 1), history.step_loss, alpha=0.25,
                lw=0.8, label=f"{prefix}train (each step)")
    ax.plot(history.steps, history.train_loss, "o-", ms=3, label=f"{prefix}train (estimate)")
    ax.plot(history.steps, history.val_loss, "s-", ms=3, label=f"{prefix}val (estimate)")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss (nats / token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_curves(curves: dict[str, tuple[Sequence[float], Sequence[float]]], xlabel: str,
                ylabel: str, title: str = "", logy: bool = False) -> Figure:
    """One line per name: curves = {name: (xs, ys)}; e.g. val loss against wall time per model."""
    fig, ax = figure((7, 4))
    for name, (xs, ys) in curves.items():
        ax.plot(list(xs), list(ys), "o-", ms=3, label=name)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_matrix(matrix, labels: Sequence[str] | None = None, title: str = "", ax=None,
                colorbar: bool = True) -> Figure:
    """A (V, V) table (e.g. bigram counts or probabilities) as an image, rows and columns labelled by token."""
    if ax is None:
        fig, ax = figure((7, 7))
    else:
        fig = ax.figure
    im = ax.imshow(matrix, cmap="Blues")
    if labels is not None:
        ax.set_xticks(range(len(labels)), labels)
        ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("next token")
    ax.set_ylabel("current token")
    ax.set_title(title)
    if colorbar:
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig
