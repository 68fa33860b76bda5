"""Scanpy's ``show``/``save``/``return_fig`` convention, shared by every ``celldyn.pl`` plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .._logging import logger


def check_options(show, save, return_fig) -> None:
    """Raise a :class:`TypeError` for a ``show``, ``save`` or ``return_fig`` of a wrong type."""
    for name, value in (("show", show), ("return_fig", return_fig)):
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"`{name}` must be True, False or None, got {value!r}.")
    if save is not None and not isinstance(save, bool | str):
        raise TypeError(f"`save` must be a bool, a str or None, got {type(save).__name__}.")


def figure_path(name: str, save: bool | str) -> Path:
    """Where ``save`` writes the figure of plot ``name`` (scanpy's settings and rule)."""
    from matplotlib.figure import Figure
    from scanpy import settings

    formats = Figure().canvas.get_supported_filetypes()
    stem, ext = name, settings.file_format_figs
    if isinstance(save, str):
        base, dot, suffix = save.rpartition(".")
        if dot and suffix.lower() in formats:
            save, ext = base, suffix.lower()
        stem = f"{name}{save}"
    return Path(settings.figdir) / f"{stem}{settings.plot_suffix}.{ext}"


def finish(
    axes,
    name: str,
    *,
    show: bool | None,
    save: bool | str | None,
    return_fig: bool | None,
    ax=None,
):
    """Save and show the figure of ``axes``; return what a ``celldyn.pl`` function returns.

    Parameters
    ----------
    axes
        The drawn :class:`~matplotlib.axes.Axes`, or a list of them (one figure).
    name
        Name of the plot, the start of the file name of ``save``.
    show, save, return_fig
        The plot function's arguments (see :data:`celldyn._docs.doc_show_save`).
    ax
        The ``ax`` the caller was given, if any.

    Returns
    -------
    The figure with ``return_fig``; ``None`` when shown; else ``axes``.
    """
    import matplotlib.pyplot as plt
    from scanpy import settings

    first = axes[0] if isinstance(axes, Sequence) else axes
    figure = first.figure
    save = settings.autosave if save is None else save
    if show is None:
        show = False if ax is not None else settings.autoshow
    if save:
        path = figure_path(name, save)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, bbox_inches="tight")
        logger.warning("saving figure to file %s", path)  # as scanpy: saving always says where
    if return_fig:
        return figure
    if show:
        plt.show()
        return None
    if save and ax is None:
        plt.close(figure)  # saved and not shown: do not let it pile up (as scanpy)
    return axes


def label_colorbars(ax, label: str) -> None:
    """Label the colour bars of the artists drawn on ``ax`` that have no label yet."""
    for artist in [*ax.collections, *ax.images]:
        colorbar = getattr(artist, "colorbar", None)
        if colorbar is None:
            continue
        long_axis = colorbar.ax.yaxis if colorbar.orientation == "vertical" else colorbar.ax.xaxis
        if not long_axis.get_label_text():
            colorbar.set_label(label)
