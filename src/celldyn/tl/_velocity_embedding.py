"""Project a gene-space velocity layer onto an embedding, through scvelo."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from .. import _keys
from .._docs import fill_doc
from .._validate import check_adata, check_finite, check_layer
from .._write import write_results
from ._velocity_slots import recorded_xkey


def _check_neighbors(adata: AnnData) -> None:
    if "neighbors" not in adata.uns or "connectivities" not in adata.obsp:
        raise KeyError(
            "adata has no neighbor graph (uns['neighbors'], obsp['connectivities']); "
            "run `sc.pp.neighbors(adata)` first."
        )


@fill_doc
def velocity_embedding(
    adata: AnnData,
    vkey: str,
    *,
    basis: str = "umap",
    xkey: str | None = None,
    copy: bool = False,
) -> AnnData | None:
    """Project a velocity layer onto ``X_<basis>`` with scvelo's velocity graph.

    scvelo's :func:`~scvelo.tl.velocity_graph` and :func:`~scvelo.tl.velocity_embedding`
    run on a lightweight working object, so only the fields listed below are written.

    Parameters
    ----------
    adata
        Annotated data matrix with ``layers[vkey]``, ``obsm['X_<basis>']`` and a
        neighbor graph (``sc.pp.neighbors``).
    vkey
        Velocity layer, e.g. ``'flecs_velocity'``. Genes with NaN velocity are ignored
        (and so are genes where ``var['<vkey>_genes']`` is ``False``).
    basis
        Embedding to project on.
    xkey
        Layer of the cell states the velocity acts on; ``None`` uses the layer recorded in
        ``uns['<vkey>_params']['xkey']`` by the function that wrote the velocity, else
        ``adata.X``.
    {copy}

    Returns
    -------
    Returns ``None`` or a copy (``copy=True``), and writes

    ``adata.obsm['<vkey>_<basis>']``
        Velocity vectors in the embedding.
    ``adata.uns['<vkey>_params']['embeddings']``
        Embeddings with a projected velocity, as scvelo's plots expect.
    """
    import scvelo as scv

    check_adata(adata)
    check_layer(adata, vkey)
    if xkey is None:
        xkey = recorded_xkey(adata, vkey)
    check_layer(adata, xkey)
    _check_neighbors(adata)
    basis_key = _keys.obsm.basis(basis)
    if basis_key not in adata.obsm:
        raise KeyError(f"adata.obsm has no embedding {basis_key!r}; compute it first.")

    velocity = np.asarray(adata.layers[vkey], dtype=np.float64)
    genes = np.all(np.isfinite(velocity), axis=0)
    mask_key = _keys.var.vkey_genes(vkey)
    if mask_key in adata.var:
        genes &= adata.var[mask_key].to_numpy(dtype=bool)
    if not genes.any():
        raise ValueError(f"adata.layers[{vkey!r}] has no gene with finite velocity.")
    states = adata.layers[xkey] if xkey is not None else adata.X
    states = states[:, genes]
    states = states.toarray() if sp.issparse(states) else np.asarray(states)
    check_finite(states, "cell states")

    work = AnnData(
        X=np.asarray(states, dtype=np.float32),
        obsm={basis_key: np.asarray(adata.obsm[basis_key])},
        obsp={k: adata.obsp[k] for k in ("connectivities", "distances") if k in adata.obsp},
        uns={"neighbors": dict(adata.uns["neighbors"])},
    )
    work.layers["velocity"] = velocity[:, genes]
    work.layers["state"] = work.X
    verbosity, scv.settings.verbosity = scv.settings.verbosity, 0
    try:
        scv.tl.velocity_graph(work, vkey="velocity", xkey="state", show_progress_bar=False)
        scv.tl.velocity_embedding(work, basis=basis, vkey="velocity")
    finally:
        scv.settings.verbosity = verbosity
    projected = np.asarray(work.obsm[_keys.obsm.velocity_embedding("velocity", basis)])
    if not np.all(np.isfinite(projected)):
        n_bad = int(np.sum(~np.all(np.isfinite(projected), axis=1)))
        raise ValueError(
            f"The velocity projected on {basis_key!r} is NaN or infinite for {n_bad} of "
            f"{adata.n_obs} cells: scvelo's velocity graph is undefined where a cell's state "
            f"equals its neighbors' ({'adata.X' if xkey is None else f'layers[{xkey!r}]'} "
            "constant or all zero?)."
        )

    params_key = _keys.uns.vkey_params(vkey)
    params = dict(adata.uns.get(params_key, {}))
    params["embeddings"] = sorted({*params.get("embeddings", []), basis})
    return write_results(
        adata,
        copy=copy,
        obsm={_keys.obsm.velocity_embedding(vkey, basis): projected},
        uns={params_key: params},
    )
