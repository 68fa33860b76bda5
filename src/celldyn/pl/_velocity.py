"""Velocity stream plots, delegated to scvelo."""

from __future__ import annotations

import copy

from anndata import AnnData

from .. import _keys
from .._docs import fill_doc
from .._validate import check_finite
from ..tl import velocity_embedding
from ._utils import check_options, finish, label_colorbars


@fill_doc
def velocity_stream(
    adata: AnnData,
    vkey: str,
    *,
    basis: str = "umap",
    xkey: str | None = None,
    color: str | list[str] | None = None,
    title: str | list[str] | None = None,
    legend_loc: str = "right margin",
    frameon: bool | str = True,
    ax=None,
    show: bool | None = None,
    save: str | bool | None = None,
    return_fig: bool | None = None,
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
    color
        ``obs`` column(s) or gene(s) to colour the cells by; several give one panel each.
    title
        Panel title(s); ``None``: ``'<vkey>'``, or ``'<vkey>: <color>'`` for each colour.
    legend_loc
        Where the legend of a categorical colour goes (scanpy's and scvelo's values:
        ``'right margin'``, ``'on data'``, ``'best'``, ``'none'``, ...).
    frameon
        Draw the frame and the axis labels (``'UMAP1'``, ``'UMAP2'``).
    ax
        Matplotlib axes to draw into (one ``color`` only).
    {show_save}
    **kwargs
        Passed to :func:`scvelo.pl.velocity_embedding_stream` (``density``, ``palette``,
        ``size``, ...).

    Returns
    -------
    The :class:`~matplotlib.axes.Axes` (a list of them for several colours) when
    ``show=False`` (the default when ``ax`` is given), the
    :class:`~matplotlib.figure.Figure` with ``return_fig=True``, else ``None``. A numeric
    colour's colour bar is labelled with its name. When it was missing, writes
    ``obsm['<vkey>_<basis>']`` and ``uns['<vkey>_params']['embeddings']``
    (:func:`celldyn.tl.velocity_embedding`).
    """
    import scvelo as scv

    check_options(show, save, return_fig)
    basis_key = _keys.obsm.basis(basis)
    if basis_key not in adata.obsm:
        raise KeyError(f"adata.obsm has no embedding {basis_key!r}; compute it first.")
    check_finite(adata.obsm[basis_key], f"adata.obsm[{basis_key!r}]")
    colors = [color] if isinstance(color, str) else list(color or [])
    if title is None:
        title = [f"{vkey}: {c}" for c in colors] if colors else vkey
        title = title[0] if len(colors) == 1 else title
    settings = {
        "vkey": vkey,
        "basis": basis,
        "color": color,
        "title": title,
        "legend_loc": legend_loc,
        "frameon": frameon,
        "ax": ax,
        "show": False,
        **kwargs,
    }
    embedded = _keys.obsm.velocity_embedding(vkey, basis)
    params_key = _keys.uns.vkey_params(vkey)
    missing = embedded not in adata.obsm
    if missing:
        params = copy.deepcopy(adata.uns.get(params_key))
        velocity_embedding(adata, vkey, basis=basis, xkey=xkey)
    else:
        check_finite(adata.obsm[embedded], f"adata.obsm[{embedded!r}]")
    try:
        drawn = scv.pl.velocity_embedding_stream(adata, **settings)
    except BaseException:
        if missing:  # leave adata as it was
            del adata.obsm[embedded]
            if params is None:
                del adata.uns[params_key]
            else:
                adata.uns[params_key] = params
        raise
    panels = drawn if isinstance(drawn, list) else [drawn]
    for panel, column in zip(panels, colors, strict=False):
        label_colorbars(panel, column)
    return finish(drawn, "velocity_stream", show=show, save=save, return_fig=return_fig, ax=ax)
