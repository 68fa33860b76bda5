"""Velocity stream plots, delegated to scvelo."""

from __future__ import annotations

import copy

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

    If ``obsm['<vkey>_<basis>']`` is missing it is first computed and written into ``adata``
    with :func:`celldyn.tl.velocity_embedding` (as scvelo's own plots do), so later plots
    reuse it; if the plot then fails, those fields are removed again.

    Parameters
    ----------
    adata
        Annotated data matrix with ``layers[vkey]`` and ``obsm['X_<basis>']``.
    vkey
        Velocity layer, e.g. ``'flecs_velocity'``.
    basis
        Embedding to plot on.
    xkey
        Layer of cell states for the projection (``None``: the recorded
        ``uns['<vkey>_params']['xkey']``, else ``adata.X``).
    **kwargs
        Passed to :func:`scvelo.pl.velocity_embedding_stream` (``color``, ``ax``, ``show``,
        ``save``, ...).

    Returns
    -------
    What scvelo returns (the axes when ``show=False``). When it was missing, writes
    ``obsm['<vkey>_<basis>']`` and ``uns['<vkey>_params']['embeddings']``
    (:func:`celldyn.tl.velocity_embedding`).
    """
    import scvelo as scv

    basis_key = f"X_{basis}"
    if basis_key not in adata.obsm:
        raise KeyError(f"adata.obsm has no embedding {basis_key!r}; compute it first.")
    check_finite(adata.obsm[basis_key], f"adata.obsm[{basis_key!r}]")
    embedded = _keys.velocity_embedding(vkey, basis)
    kwargs.setdefault("show", False)
    if embedded in adata.obsm:
        check_finite(adata.obsm[embedded], f"adata.obsm[{embedded!r}]")
        return scv.pl.velocity_embedding_stream(adata, vkey=vkey, basis=basis, **kwargs)
    params_key = f"{vkey}_params"
    params = copy.deepcopy(adata.uns.get(params_key))
    velocity_embedding(adata, vkey, basis=basis, xkey=xkey)
    try:
        return scv.pl.velocity_embedding_stream(adata, vkey=vkey, basis=basis, **kwargs)
    except BaseException:
        del adata.obsm[embedded]
        if params is None:
            del adata.uns[params_key]
        else:
            adata.uns[params_key] = params
        raise
