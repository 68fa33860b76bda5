"""Directed graph of the strongest entries of any regulator x target ``varp`` matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .. import _keys
from .._docs import fill_doc
from .._validate import check_finite, check_int, check_varp_key
from ._utils import check_options, finish

_POSITIVE, _NEGATIVE = "#c0392b", "#2e6da4"  # activation red, repression blue
_SIGN_LABELS = ("activation (+)", "repression (−)")


def strongest_edges(adata: AnnData, varp_key: str, n_edges: int) -> pd.DataFrame:
    """Return the ``n_edges`` largest ``|W|`` entries of ``varp[varp_key]`` (regulator × target).

    Returns a DataFrame with ``source``, ``target`` and ``weight``, strongest first (ties in
    row-major order).
    """
    if varp_key not in adata.varp:
        raise KeyError(
            f"adata.varp has no {varp_key!r}; run the tool that writes it first "
            "(e.g. `celldyn.tl.flecs`, `celldyn.tl.clipr`)."
        )
    if isinstance(n_edges, bool) or int(n_edges) != n_edges or n_edges < 1:
        raise ValueError(f"`n_edges` must be a positive integer, got {n_edges!r}.")
    check_finite(adata.varp[varp_key], f"adata.varp[{varp_key!r}]")
    matrix = sp.coo_matrix(adata.varp[varp_key])
    matrix.sum_duplicates()  # row-major order
    keep = matrix.data != 0
    rows, cols, values = matrix.row[keep], matrix.col[keep], matrix.data[keep]
    order = np.argsort(-np.abs(values), kind="stable")[: int(n_edges)]
    names = np.asarray(adata.var_names)
    return pd.DataFrame(
        {"source": names[rows[order]], "target": names[cols[order]], "weight": values[order]}
    )


def draw_graph(
    edges: pd.DataFrame,
    weight: str,
    ax,
    *,
    title: str,
    dashed=None,
    random_state: int = 0,
    sign_labels: tuple[str, str] = _SIGN_LABELS,
):
    """Draw a directed graph: width ~ ``|weight|``, red for positive, blue for negative.

    The axes get ``title`` and a legend of the edge colours (``sign_labels``: positive,
    negative) and, when some edges are ``dashed``, of the dashed style.
    """
    import matplotlib.pyplot as plt
    import networkx as nx
    from matplotlib.lines import Line2D

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    graph = nx.DiGraph()
    graph.add_edges_from(zip(edges["source"], edges["target"], strict=True))
    position = nx.spring_layout(graph, seed=random_state)
    values = edges[weight].to_numpy(dtype=np.float64)
    scale = float(np.abs(values).max()) or 1.0
    styles = ["dashed" if d else "solid" for d in (dashed if dashed is not None else [])]
    nx.draw_networkx_nodes(graph, position, ax=ax, node_color="#eeeeee", edgecolors="black")
    nx.draw_networkx_labels(graph, position, ax=ax, font_size=8)
    nx.draw_networkx_edges(
        graph,
        position,
        ax=ax,
        edgelist=list(zip(edges["source"], edges["target"], strict=True)),
        width=0.5 + 3.0 * np.abs(values) / scale,
        edge_color=[_POSITIVE if v >= 0 else _NEGATIVE for v in values],
        style=styles or "solid",
        arrows=True,
        arrowstyle="-|>",
        connectionstyle="arc3,rad=0.1",
    )
    handles = [
        Line2D([], [], color=color, lw=2, label=label)
        for color, label in zip((_POSITIVE, _NEGATIVE), sign_labels, strict=True)
    ]
    if "dashed" in styles:
        handles.append(Line2D([], [], color="grey", lw=2, ls="--", label="not significant"))
    ax.legend(handles=handles, loc="best", fontsize=8)
    ax.set_title(title)
    ax.set_axis_off()
    return ax


@fill_doc
def effect_network(
    adata: AnnData,
    key: str = _keys.CLIPR_EFFECTS,
    *,
    n_edges: int = 30,
    self_loops: bool = False,
    random_state: int = 0,
    ax=None,
    show: bool | None = None,
    save: str | bool | None = None,
    return_fig: bool | None = None,
):
    """Directed graph of the strongest effects of a regulator x target matrix.

    Works for any ``varp`` matrix oriented regulator (row) x target (column): CLIPR effects
    (:func:`celldyn.tl.clipr`), FLeCS weights, Cell-MNN interactions. The ``n_edges`` entries
    of largest absolute value are drawn as arrows from regulator to target, width
    proportional to the absolute value, red for positive (activation) and blue for negative
    (repression) effects.

    Parameters
    ----------
    adata
        Annotated data matrix with ``varp[key]``.
    key
        ``varp`` key of the matrix, e.g. ``'clipr_effects'`` or ``'flecs_weights'``.
    n_edges
        Number of edges drawn.
    self_loops
        Also consider the diagonal (self-effects such as decay, usually the strongest).
    random_state
        Seed of the spring layout.
    ax
        Matplotlib axes to draw into.
    {show_save}

    Returns
    -------
    The :class:`~matplotlib.axes.Axes` when ``show=False`` (the default when ``ax`` is given),
    the :class:`~matplotlib.figure.Figure` with ``return_fig=True``, else ``None``. The
    axes are titled and have a legend of the edge colours.
    """
    check_options(show, save, return_fig)
    check_varp_key(adata, key, "Run `celldyn.tl.clipr` (or another tool writing it) first.")
    n_edges = check_int(n_edges, "n_edges", 1)
    edges = strongest_edges(adata, key, n_edges + (0 if self_loops else adata.n_vars))
    if not self_loops:
        edges = edges[edges["source"] != edges["target"]]
    edges = edges.head(n_edges)
    if edges.empty:
        raise ValueError(f"adata.varp[{key!r}] has no non-zero entry to draw.")
    title = f"{key}: {len(edges)} strongest edges (regulator → target)"
    drawn = draw_graph(edges, "weight", ax, title=title, random_state=random_state)
    return finish(drawn, "effect_network", show=show, save=save, return_fig=return_fig, ax=ax)
