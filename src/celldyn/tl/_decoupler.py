"""Export a learned gene network as a decoupler network DataFrame."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .._docs import fill_doc
from .._validate import (
    check_adata,
    check_finite,
    check_int,
    check_positive,
    check_unique_var_names,
    check_varp_key,
)


@fill_doc
def to_decoupler(
    adata: AnnData,
    key: str,
    *,
    threshold: float | None = None,
    top_k: int | None = None,
    self_loops: bool = False,
) -> pd.DataFrame:
    """Export a regulator x target matrix of ``adata.varp`` as a decoupler network.

    Works for every network celldyn learns, all stored regulator (row) x target (column):
    FLeCS weights and edge effects (``'flecs_weights'``, ``'flecs_effects'``), Cell-MNN
    gene interactions (``'cellmnn_interactions'``), CLIPR effects (``'clipr_effects'``),
    GRN baselines and the prior itself. Every non-zero entry is an edge ``source → target``
    with its signed value as ``weight``, ready for ``decoupler.mt.ulm`` and the other
    decoupler methods (``dc.mt.ulm(adata, net)``).

    Parameters
    ----------
    {adata}
    key
        Key of ``adata.varp`` (sparse or dense, regulator x target).
    threshold
        Keep only edges with ``|weight| >= threshold``; ``None`` keeps every non-zero entry.
        Dense matrices (Cell-MNN, CLIPR) have an entry for every pair: set ``threshold``
        or ``top_k`` to keep the strong ones.
    top_k
        Keep at most this many edges per target, the largest ``|weight|`` (ties: lower
        regulator index first); applied after ``threshold``.
    self_loops
        Keep the diagonal. Off by default: for CLIPR and Cell-MNN it holds each gene's
        self-effect (mostly its decay), not a regulation.

    Returns
    -------
    DataFrame with columns ``source``, ``target`` (gene names) and ``weight`` (float, signed),
    one row per edge, sorted by source then target. Nothing is written into ``adata``.

    Raises
    ------
    KeyError
        If ``adata.varp`` has no ``key``.
    ValueError
        If the matrix holds NaN or infinite values, an option is invalid, or no edge is left.
    """
    check_adata(adata)
    check_varp_key(adata, key, f"Available: {list(adata.varp)}.")
    check_unique_var_names(adata)
    if threshold is not None:
        check_positive(threshold, "threshold", strict=False)
    if top_k is not None:
        top_k = check_int(top_k, "top_k", 1)
    matrix = adata.varp[key]
    check_finite(matrix, f"adata.varp[{key!r}]")
    entries = sp.coo_matrix(matrix)
    entries.sum_duplicates()
    rows, cols, weights = entries.row, entries.col, entries.data.astype(np.float64)
    keep = weights != 0
    if not self_loops:
        keep &= rows != cols
    if threshold is not None:
        keep &= np.abs(weights) >= threshold
    rows, cols, weights = rows[keep], cols[keep], weights[keep]
    if top_k is not None:
        order = np.lexsort((rows, -np.abs(weights), cols))  # by target, strongest first
        rows, cols, weights = rows[order], cols[order], weights[order]
        rank = np.arange(len(cols)) - np.searchsorted(cols, cols)
        keep = rank < top_k
        rows, cols, weights = rows[keep], cols[keep], weights[keep]
    if len(weights) == 0:
        raise ValueError(
            f"No edge of adata.varp[{key!r}] is left (threshold={threshold!r}, "
            f"self_loops={self_loops})."
        )
    order = np.lexsort((cols, rows))
    names = np.asarray(adata.var_names, dtype=str)
    return pd.DataFrame(
        {
            "source": names[rows[order]],
            "target": names[cols[order]],
            "weight": weights[order],
        }
    )
