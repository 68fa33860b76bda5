"""Extracted trajectories drawn over an embedding."""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from .. import _keys
from .._docs import fill_doc
from .._readers import read_trajectories
from .._validate import check_finite, check_int
from ._utils import check_options, finish, label_colorbars


def _trajectory_rows(adata: AnnData, key: str) -> tuple[np.ndarray, int]:
    """Trajectories as positions in ``adata`` and their total number.

    On a view (``adata[mask]``) the indices, which refer to the whole AnnData, are mapped to
    the view's rows and only the trajectories lying entirely inside it are kept.
    """
    # anndata keeps no public link from a view to its rows in the whole object
    parent, rows = (adata._adata_ref, adata._oidx) if adata.is_view else (adata, slice(None))
    indices = read_trajectories(parent, key, require_times=False, require_progress=False).indices
    if not adata.is_view:
        return indices, len(indices)
    position = np.full(parent.n_obs, -1, dtype=np.int64)
    position[np.arange(parent.n_obs)[rows]] = np.arange(adata.n_obs)
    mapped = position[indices]
    inside = mapped[(mapped >= 0).all(axis=1)]
    if len(inside) == 0:
        raise ValueError(
            f"None of the {len(indices)} trajectories of adata.uns[{key!r}] lies entirely "
            "within this view of adata."
        )
    return inside, len(inside)


@fill_doc
def trajectories(
    adata: AnnData,
    *,
    key: str = _keys.TRAJECTORIES,
    basis: str = "umap",
    n_show: int = 100,
    color: str | None = _keys.TIME,
    random_state: int = 0,
    ax=None,
    show: bool | None = None,
    save: str | bool | None = None,
    return_fig: bool | None = None,
):
    """Draw extracted trajectories (:func:`celldyn.pp.trajectories`) over an embedding.

    Works on views (``adata[mask]``): only the trajectories whose cells all lie in the view
    are drawn.

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
        ``obs`` column or gene to colour the cells by (passed to :func:`scanpy.pl.embedding`);
        ``None`` for no colour.
    random_state
        Seed for choosing the trajectories shown.
    ax
        Matplotlib axes to draw into.
    {show_save}

    Returns
    -------
    The :class:`~matplotlib.axes.Axes` when ``show=False`` (the default when ``ax`` is given),
    the :class:`~matplotlib.figure.Figure` with ``return_fig=True``, else ``None``. The title
    says how many trajectories are drawn; a colour bar is labelled with ``color``.
    """
    import matplotlib.pyplot as plt
    import scanpy as sc

    check_options(show, save, return_fig)

    indices, n_total = _trajectory_rows(adata, key)
    n_show = check_int(n_show, "n_show", 1)
    basis_key = _keys.obsm.basis(basis)
    if basis_key not in adata.obsm:
        raise KeyError(f"adata.obsm has no embedding {basis_key!r}; compute it first.")
    if color is not None and color not in adata.obs.columns and color not in adata.var_names:
        raise KeyError(
            f"`color` {color!r} is neither a column of adata.obs nor a gene of "
            "adata.var_names; pass color=None to draw the cells without colour."
        )
    coords = np.asarray(adata.obsm[basis_key])[:, :2]
    check_finite(coords, f"adata.obsm[{basis_key!r}]")
    rng = np.random.default_rng(random_state)
    shown = indices[rng.choice(len(indices), size=min(n_show, len(indices)), replace=False)]
    axes = ax
    if axes is None:
        _, axes = plt.subplots(figsize=(5, 5))
    sc.pl.embedding(adata, basis=basis, color=color, ax=axes, show=False, alpha=0.4)
    for path in shown:
        axes.plot(*coords[path].T, color="black", linewidth=0.6, alpha=0.7)
        axes.scatter(*coords[path[-1]], color="black", s=6)
    if color is not None:
        label_colorbars(axes, color)
    axes.set_title(f"{len(shown)} of {n_total} trajectories")
    return finish(axes, "trajectories", show=show, save=save, return_fig=return_fig, ax=ax)
