"""Velocity stream plots, delegated to scvelo."""

from __future__ import annotations

from anndata import AnnData

from .. import _keys
from .._validate import check_finite
from ..tl import velocity_embedding


def velocity_stream(
    adata: AnnData,
    vkey: str,
    *,
    basis: str = "umap",
    xkey: str | None = None,
    **kwargs,
):
    """Plot a velocity layer as streamlines on an embedding, with scvelo.

    Delegates to :func:`scvelo.pl.velocity_embedding_stream`.

    If ``obsm['<vkey>_<basis>']`` is missing it is computed on a copy with
    :func:`celldyn.tl.velocity_embedding`; ``adata`` itself is not modified.

    Parameters
    ----------
    adata
        Annotated data matrix with ``layers[vkey]`` and ``obsm['X_<basis>']``.
    vkey
        Velocity layer, e.g. ``'flecs_velocity'``.
    basis
        Embedding to plot on.
    xkey
        Layer of cell states for the projection (``None``: ``adata.X``).
    **kwargs
        Passed to :func:`scvelo.pl.velocity_embedding_stream` (``color``, ``ax``, ``show``,
        ``save``, ...).

    Returns
    -------
    What scvelo returns (the axes when ``show=False``).
    """
    import scvelo as scv

    basis_key = f"X_{basis}"
    if basis_key not in adata.obsm:
        raise KeyError(f"adata.obsm has no embedding {basis_key!r}; compute it first.")
    check_finite(adata.obsm[basis_key], f"adata.obsm[{basis_key!r}]")
    embedded = _keys.velocity_embedding(vkey, basis)
    if embedded in adata.obsm:
        check_finite(adata.obsm[embedded], f"adata.obsm[{embedded!r}]")
    else:
        adata = velocity_embedding(adata, vkey, basis=basis, xkey=xkey, copy=True)
    kwargs.setdefault("show", False)
    return scv.pl.velocity_embedding_stream(adata, vkey=vkey, basis=basis, **kwargs)
