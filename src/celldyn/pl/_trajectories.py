"""Extracted trajectories drawn over an embedding."""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from .. import _keys
from .._validate import check_uns_key


def trajectories(
    adata: AnnData,
    *,
    key: str = _keys.TRAJECTORIES,
    basis: str = "umap",
    n_show: int = 100,
    color: str | None = _keys.TIME,
    random_state: int = 0,
    ax=None,
):
    """Draw extracted trajectories (:func:`celldyn.pp.trajectories`) over an embedding.

    Parameters
    ----------
    adata
        Annotated data matrix with ``uns[key]['indices']`` and ``obsm['X_<basis>']``.
    key
        Key of the trajectories in ``adata.uns``.
    basis
        Embedding to draw on.
    n_show
        Number of randomly chosen trajectories to draw.
    color
        ``obs`` column to colour the cells by (passed to :func:`scanpy.pl.embedding`).
    random_state
        Seed for choosing the trajectories shown.
    ax
        Matplotlib axes to draw into.

    Returns
    -------
    The matplotlib axes.
    """
    import matplotlib.pyplot as plt
    import scanpy as sc

    check_uns_key(adata, key, "Run `celldyn.pp.trajectories` first.")
    basis_key = f"X_{basis}"
    if basis_key not in adata.obsm:
        raise KeyError(f"adata.obsm has no embedding {basis_key!r}; compute it first.")
    indices = np.asarray(adata.uns[key]["indices"])
    rng = np.random.default_rng(random_state)
    shown = indices[rng.choice(len(indices), size=min(n_show, len(indices)), replace=False)]
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    color = color if color is not None and color in adata.obs else None
    sc.pl.embedding(adata, basis=basis, color=color, ax=ax, show=False, alpha=0.4)
    coords = np.asarray(adata.obsm[basis_key])[:, :2]
    for path in shown:
        ax.plot(*coords[path].T, color="black", linewidth=0.6, alpha=0.7)
        ax.scatter(*coords[path[-1]], color="black", s=6)
    ax.set_title(f"{len(shown)} of {len(indices)} trajectories")
    return ax
