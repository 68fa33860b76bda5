"""Cell-MNN plots: a UMAP of the per-cell operators and a heatmap of gene interactions."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from .. import _keys
from .._docs import fill_doc
from .._validate import check_finite
from ._utils import check_options, finish, label_colorbars


@fill_doc
def operators(
    adata: AnnData,
    color: str | list[str] | None = None,
    *,
    key: str = _keys.CELLMNN,
    n_neighbors: int = 15,
    random_state: int = 0,
    ax=None,
    show: bool | None = None,
    save: str | bool | None = None,
    return_fig: bool | None = None,
    **kwargs,
):
    """UMAP of the per-cell local operators of :func:`celldyn.tl.cellmnn`.

    Cells with similar local dynamics lie close together. The neighbor graph and UMAP are
    computed on a temporary AnnData of the flattened operators; ``adata`` is not modified.

    Parameters
    ----------
    adata
        Annotated data matrix with ``obsm['{key}_operator']``.
    color
        ``obs`` column(s) to colour by (e.g. the time or a lineage).
    key
        ``key_added`` of :func:`celldyn.tl.cellmnn`.
    n_neighbors
        Neighbors of the operator graph.
    random_state
        Seed of the UMAP.
    ax
        Matplotlib axes to draw into (one ``color`` only).
    {show_save}
    **kwargs
        Passed to :func:`scanpy.pl.umap` (``title``, ``legend_loc``, ``palette``, ...).

    Returns
    -------
    The :class:`~matplotlib.axes.Axes` (a list of them for several colours) when
    ``show=False`` (the default when ``ax`` is given), the
    :class:`~matplotlib.figure.Figure` with ``return_fig=True``, else ``None``. Each panel is
    titled by its colour (``'{key} operators'`` without one); colour bars are labelled.
    """
    import scanpy as sc

    check_options(show, save, return_fig)

    obsm_key = _keys.obsm.operator(key)
    if obsm_key not in adata.obsm:
        raise KeyError(f"adata.obsm has no {obsm_key!r}; run `celldyn.tl.cellmnn` first.")
    columns = [color] if isinstance(color, str) else list(color or [])
    missing = [c for c in columns if c not in adata.obs.columns]
    if missing:
        raise KeyError(f"adata.obs has no column(s) {missing}.")
    flat = np.asarray(adata.obsm[obsm_key], dtype=np.float32)
    check_finite(flat, f"adata.obsm[{obsm_key!r}]")
    tmp = AnnData(flat, obs=adata.obs[columns].copy())
    tmp.obsm["X_operator"] = flat
    sc.pp.neighbors(
        tmp,
        use_rep="X_operator",
        n_neighbors=min(n_neighbors, tmp.n_obs - 1),
        random_state=random_state,
    )
    sc.tl.umap(tmp, random_state=random_state)
    if not columns:
        kwargs.setdefault("title", f"{key} operators")
    drawn = sc.pl.umap(tmp, color=color, ax=ax, show=False, **kwargs)
    for panel, column in zip(drawn if isinstance(drawn, list) else [drawn], columns, strict=False):
        label_colorbars(panel, column)
    return finish(drawn, "operators", show=show, save=save, return_fig=return_fig, ax=ax)


@fill_doc
def interactions(
    adata: AnnData,
    *,
    key: str = _keys.CELLMNN,
    n_top: int = 20,
    cmap: str = "RdBu_r",
    ax=None,
    show: bool | None = None,
    save: str | bool | None = None,
    return_fig: bool | None = None,
):
    """Heatmap of the strongest gene interactions of :func:`celldyn.tl.cellmnn`.

    Genes are ranked by the summed absolute weight of their outgoing and incoming
    interactions; the ``n_top`` strongest are shown, regulators as rows and targets as
    columns, on a colour scale symmetric around 0 (red: activation, blue: repression).

    Parameters
    ----------
    adata
        Annotated data matrix with ``varp['{key}_interactions']`` (regulator × target).
    key
        ``key_added`` of :func:`celldyn.tl.cellmnn`.
    n_top
        Number of genes shown.
    cmap
        Diverging colour map.
    ax
        Matplotlib axes to draw into.
    {show_save}

    Returns
    -------
    The :class:`~matplotlib.axes.Axes` when ``show=False`` (the default when ``ax`` is given),
    the :class:`~matplotlib.figure.Figure` with ``return_fig=True``, else ``None``.
    """
    import matplotlib.pyplot as plt

    check_options(show, save, return_fig)

    varp_key = _keys.varp.interactions(key)
    if varp_key not in adata.varp:
        raise KeyError(f"adata.varp has no {varp_key!r}; run `celldyn.tl.cellmnn` first.")
    if int(n_top) != n_top or n_top < 1:
        raise ValueError(f"`n_top` must be a positive integer, got {n_top!r}.")
    matrix = adata.varp[varp_key]
    check_finite(matrix, f"adata.varp[{varp_key!r}]")
    strength = np.asarray(abs(matrix).sum(0)).ravel() + np.asarray(abs(matrix).sum(1)).ravel()
    top = np.sort(np.argsort(-strength, kind="stable")[: int(n_top)])
    block = matrix[top][:, top]
    block = block.toarray() if sp.issparse(block) else np.asarray(block)
    limit = float(np.abs(block).max()) or 1.0
    axes = ax
    if axes is None:
        _, axes = plt.subplots(figsize=(0.3 * len(top) + 2, 0.3 * len(top) + 1.5))
    image = axes.imshow(block, cmap=cmap, vmin=-limit, vmax=limit)
    names = adata.var_names[top]
    axes.set_xticks(range(len(top)), names, rotation=90)
    axes.set_yticks(range(len(top)), names)
    axes.set_xlabel("target")
    axes.set_ylabel("regulator")
    axes.set_title(f"varp[{varp_key!r}]: {len(top)} strongest genes")
    axes.figure.colorbar(image, ax=axes, label="interaction (regulator → target)")
    return finish(axes, "interactions", show=show, save=save, return_fig=return_fig, ax=ax)
