"""Plots for the notebooks: each function takes data and returns a matplotlib Figure (02+).

The notebook decides whether to show or save it; the library never calls show() or savefig().
Figures are made without pyplot, so a cell that ends with one shows it exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure


def _figure(figsize: tuple[float, float]):
    """A Figure outside pyplot: shown once when a notebook cell returns it, never leaked."""
    fig = Figure(figsize=figsize)
    return fig, fig.add_subplot()


def plot_losses(history, title: str = "loss", ax=None, label: str = "") -> Figure:
    """Train/val loss estimates against step (and the per-step loss, faint) from a History."""
    if ax is None:
        fig, ax = _figure((7, 4))
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
    fig, ax = _figure((7, 4))
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


def plot_matrix(matrix, labels: Sequence[str] | None = None, title: str = "") -> Figure:
    """A (V, V) table (e.g. bigram counts or probabilities) as an image with token labels."""
    fig, ax = _figure((7, 7))
    im = ax.imshow(matrix, cmap="Blues")
    if labels is not None:
        ax.set_xticks(range(len(labels)), labels)
        ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("next token")
    ax.set_ylabel("current token")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig
