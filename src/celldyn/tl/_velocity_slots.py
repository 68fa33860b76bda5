"""The AnnData fields of a gene-space velocity, with the cell states scvelo and cellrank read.

scvelo's :func:`~scvelo.tl.velocity_graph` and cellrank's ``VelocityKernel`` compare a
velocity with the displacements between neighboring cells in a state layer, ``xkey='Ms'`` by
default, and scvelo's :func:`~scvelo.tl.velocity_confidence` always reads ``layers['Ms']``
(dense). Every celldyn velocity is a derivative of the expression its model was fitted on, so
that expression is written as ``layers['Ms']`` next to the velocity, unless the user's
``layers['Ms']`` holds something else, which is never overwritten.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from .. import _keys


def _dense32(x) -> np.ndarray:
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float32)


def velocity_slots(
    adata: AnnData,
    method: str,
    velocity: np.ndarray,
    *,
    layer: str | None = None,
    genes: np.ndarray | None = None,
    **slots: Mapping[str, Any],
) -> dict[str, dict[str, Any]]:
    """Return ``slots`` for :func:`~celldyn._write.write_results` with a velocity's fields added.

    Parameters
    ----------
    adata
        The annotated data matrix the velocity belongs to (read only).
    method
        Prefix of the keys (a function's ``key_added``).
    velocity
        Cells x genes velocity.
    layer
        Layer of the states the velocity is a derivative of; ``None``: ``adata.X``.
    genes
        Boolean mask of the genes the model covers; ``None``: all.
    **slots
        Other fields to write, ``slot=mapping`` as for ``write_results``.

    Returns
    -------
    ``slots`` plus ``layers['<method>_velocity']`` (dense float32),
    ``var['<method>_velocity_genes']``, ``uns['<method>_velocity_params']``
    (``{'embeddings': [], 'xkey': xkey}``) and the state layer ``xkey``: ``layers['Ms']`` (dense
    float32 copy of the states) when ``adata`` has none; nothing when ``layers['Ms']`` already
    holds these states; otherwise ``layers['<method>_velocity_state']``, with a warning.
    """
    state = _dense32(adata.X if layer is None else adata.layers[layer])
    layers = {_keys.layers.velocity(method): np.asarray(velocity, dtype=np.float32)}
    xkey = _keys.MOMENTS
    if xkey not in adata.layers:
        layers[xkey] = state
    elif not np.array_equal(_dense32(adata.layers[xkey]), state, equal_nan=True):
        xkey = _keys.layers.velocity_state(method)
        layers[xkey] = state
        source = "adata.X" if layer is None else f"layers[{layer!r}]"
        warnings.warn(
            f"adata.layers['Ms'] differs from {source}, the states of "
            f"{_keys.layers.velocity(method)!r}; it is left as is and the states are written to "
            f"layers[{xkey!r}]. Pass xkey={xkey!r} to scvelo and cellrank (scvelo's "
            "velocity_confidence always reads layers['Ms']).",
            UserWarning,
            stacklevel=3,
        )
    out = {slot: dict(fields) for slot, fields in slots.items()}
    out.setdefault("layers", {}).update(layers)
    mask = np.ones(adata.n_vars, dtype=bool) if genes is None else np.asarray(genes, dtype=bool)
    out.setdefault("var", {})[_keys.var.velocity_genes(method)] = mask
    params = {"embeddings": [], "xkey": xkey}
    out.setdefault("uns", {})[_keys.uns.velocity_params(method)] = params
    return out


def recorded_xkey(adata: AnnData, vkey: str) -> str | None:
    """Return the state layer recorded for ``layers[vkey]`` (``uns[f"{vkey}_params"]["xkey"]``)."""
    params = adata.uns.get(_keys.uns.vkey_params(vkey))
    return params.get("xkey") if isinstance(params, Mapping) else None
