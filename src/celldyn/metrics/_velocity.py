"""Velocity scores: confidence (scvelo's definition, via scvelo) and cosine to a reference."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from .. import _keys
from .._validate import check_adata, check_finite, check_layer
from .._write import write_results


def _distances(adata: AnnData, neighbors_key: str | None) -> sp.csr_matrix:
    """Return the kNN distance graph written by :func:`scanpy.pp.neighbors`."""
    key = "neighbors" if neighbors_key is None else neighbors_key
    obsp_key = adata.uns.get(key, {}).get("distances_key", "distances")
    if key not in adata.uns or obsp_key not in adata.obsp:
        raise KeyError(
            f"No neighbors graph found (adata.uns[{key!r}] / adata.obsp[{obsp_key!r}]). "
            "Run `sc.pp.neighbors(adata)` (or `scv.pp.neighbors`) first, or pass "
            "`neighbors_key`."
        )
    dist = sp.csr_matrix(adata.obsp[obsp_key], dtype=np.float64)
    if (np.diff(dist.indptr) == 0).any():
        raise ValueError(f"Some cells have no neighbors in adata.obsp[{obsp_key!r}].")
    return dist


def _dense(adata: AnnData, vkey: str) -> np.ndarray:
    v = adata.layers[vkey]
    return np.asarray(v.toarray() if sp.issparse(v) else v, dtype=np.float64)


def _modelled_genes(adata: AnnData, vkey: str) -> np.ndarray:
    """Genes a velocity layer models: not all-NaN, and marked in ``var[f"{vkey}_genes"]``."""
    genes = ~np.all(np.isnan(_dense(adata, vkey)), axis=0)
    mask_key = _keys.var.vkey_genes(vkey)
    if mask_key in adata.var:
        genes &= adata.var[mask_key].to_numpy(dtype=bool)
    return genes


def _velocity(adata: AnnData, vkey: str) -> np.ndarray:
    """Dense velocities of the genes the method models."""
    check_layer(adata, vkey)
    genes = _modelled_genes(adata, vkey)
    if not genes.any():
        raise ValueError(f"adata.layers[{vkey!r}] has no modelled (non-NaN) velocity gene.")
    v = _dense(adata, vkey)[:, genes]
    check_finite(v, f"adata.layers[{vkey!r}] (modelled genes)")
    return v


def velocity_confidence(
    adata: AnnData,
    vkey: str = "velocity",
    *,
    neighbors_key: str | None = None,
    key_added: str | None = None,
) -> np.ndarray:
    """Per-cell velocity confidence: how well a cell's velocity agrees with its neighbours'.

    scvelo's definition (:func:`scvelo.tl.velocity_confidence`): the mean Pearson correlation
    (across genes) between a cell's velocity and each of its kNN neighbours' velocities,
    clipped at 0. scvelo computes it on a light AnnData holding only the velocities and the
    neighbors graph, so ``adata`` is not modified unless ``key_added`` is given. Only modelled
    genes enter: those not entirely NaN in the layer and, if present, marked in
    ``adata.var[f"{vkey}_genes"]``.

    Parameters
    ----------
    adata
        Annotated data matrix with a velocity layer and a kNN graph from
        :func:`scanpy.pp.neighbors` (required; it is not computed here).
    vkey
        Layer with the velocities, e.g. ``'flecs_velocity'``.
    neighbors_key
        ``key_added`` used in :func:`scanpy.pp.neighbors` (default ``'neighbors'``).
    key_added
        If given, also write the confidences to ``adata.obs[key_added]``.

    Returns
    -------
    Array of shape ``(n_obs,)`` with values in ``[0, 1]`` (``nan`` for a cell whose velocity
    is constant across genes). With ``key_added``, sets ``adata.obs[key_added]``.
    """
    import scvelo

    check_adata(adata)
    v = _velocity(adata, vkey)
    dist = _distances(adata, neighbors_key)

    light = AnnData(
        X=sp.csr_matrix(v.shape, dtype=np.float32),
        layers={"velocity": v},
        obsp={"distances": dist},
    )
    # Pre-setting this column skips scvelo's transition confidence, which would need a
    # velocity graph and the 'Ms' layer.
    light.obs["velocity_confidence_transition"] = 0.0
    verbosity = scvelo.settings.verbosity
    scvelo.settings.verbosity = 0
    try:
        scvelo.tl.velocity_confidence(light, vkey="velocity")
    finally:
        scvelo.settings.verbosity = verbosity
    confidence = light.obs["velocity_confidence"].to_numpy(dtype=np.float64)

    if key_added is not None:
        write_results(adata, obs={key_added: confidence})
    return confidence


def velocity_cosine(
    adata: AnnData,
    vkey: str,
    reference: str,
    *,
    key_added: str | None = None,
) -> np.ndarray:
    """Per-cell cosine similarity between two velocity layers (e.g. a model and the truth).

    Only genes modelled by both layers enter (not all-NaN, and marked in
    ``adata.var[f"{vkey}_genes"]`` when present), so a model covering a subset of the genes is
    compared on that subset.

    Parameters
    ----------
    adata
        Annotated data matrix.
    vkey
        Layer with the velocities to score, e.g. ``'flecs_velocity'``.
    reference
        Layer with the reference velocities, e.g. ``'true_velocity'`` of the simulators.
    key_added
        If given, also write the similarities to ``adata.obs[key_added]``.

    Returns
    -------
    Array of shape ``(n_obs,)`` with values in ``[-1, 1]`` (``nan`` where either velocity is
    zero on the compared genes). With ``key_added``, sets ``adata.obs[key_added]``.
    """
    check_adata(adata)
    check_layer(adata, vkey)
    check_layer(adata, reference)
    shared = _modelled_genes(adata, vkey) & _modelled_genes(adata, reference)
    if not shared.any():
        raise ValueError(f"adata.layers[{vkey!r}] and [{reference!r}] share no modelled gene.")
    v, r = _dense(adata, vkey)[:, shared], _dense(adata, reference)[:, shared]
    check_finite(v, f"adata.layers[{vkey!r}] (modelled genes)")
    check_finite(r, f"adata.layers[{reference!r}] (modelled genes)")
    norms = np.linalg.norm(v, axis=1) * np.linalg.norm(r, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = np.where(norms > 0, np.sum(v * r, axis=1) / norms, np.nan)
    if key_added is not None:
        write_results(adata, obs={key_added: cosine})
    return cosine
