"""Directed graph of the strongest entries of any regulator x target ``varp`` matrix."""

from __future__ import annotations

from anndata import AnnData

from .. import _keys
from .._validate import check_int, check_varp_key
from ._flecs import _draw_graph, strongest_edges


def effect_network(
    adata: AnnData,
    key: str = _keys.CLIPR_EFFECTS,
    *,
    n_edges: int = 30,
    self_loops: bool = False,
    random_state: int = 0,
    ax=None,
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

    Returns
    -------
    The matplotlib axes.
    """
    check_varp_key(adata, key, "Run `celldyn.tl.clipr` (or another tool writing it) first.")
    n_edges = check_int(n_edges, "n_edges", 1)
    edges = strongest_edges(adata, key, n_edges + (0 if self_loops else adata.n_vars))
    if not self_loops:
        edges = edges[edges["source"] != edges["target"]]
    edges = edges.head(n_edges)
    if edges.empty:
        raise ValueError(f"adata.varp[{key!r}] has no non-zero entry to draw.")
    return _draw_graph(edges, "weight", ax, random_state=random_state)
