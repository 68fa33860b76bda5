"""Scores of predicted perturbation responses against observed cells (unseen combinations)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .. import _keys
from .._validate import check_int, check_layer, check_obs_key
from ._distances import _check_pair


def _subsample(x: np.ndarray, max_cells: int | None, rng: np.random.Generator) -> np.ndarray:
    if max_cells is None or len(x) <= max_cells:
        return x
    return x[np.sort(rng.choice(len(x), max_cells, replace=False))]


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; ``nan`` when either vector is constant."""
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")


def top_de_genes(obs: np.ndarray, ctrl: np.ndarray, n_top: int) -> np.ndarray:
    """Return the ``n_top`` genes (indices) of largest Welch ``|t|`` between ``obs`` and ``ctrl``.

    Genes constant in both sets have ``t = 0``; ties keep the gene order.
    """
    diff = obs.mean(0) - ctrl.mean(0)
    se = np.sqrt(obs.var(0, ddof=1) / len(obs) + ctrl.var(0, ddof=1) / len(ctrl))
    t = np.divide(np.abs(diff), se, out=np.zeros_like(diff), where=se > 0)
    return np.argsort(-t, kind="stable")[: min(n_top, len(t))]


def perturbation_scores(
    pred: np.ndarray,
    obs: np.ndarray,
    ctrl: np.ndarray,
    *,
    n_top_de: int = 20,
    max_cells: int | None = 2000,
    random_state: int = 0,
) -> dict[str, float]:
    """Score predicted cells of one perturbation against the observed ones.

    Distribution distances compare ``pred`` with ``obs``; mean-change scores compare the
    predicted change ``mean(pred) - mean(ctrl)`` with the observed ``mean(obs) - mean(ctrl)``.

    Parameters
    ----------
    pred
        Predicted cells ``(n_pred, n_genes)``.
    obs
        Observed cells of the same perturbation ``(n_obs, n_genes)``.
    ctrl
        Observed control cells ``(n_ctrl, n_genes)``.
    n_top_de
        Number of differentially expressed genes (largest Welch ``|t|`` between ``obs`` and
        ``ctrl``) the ``*_de`` scores use.
    max_cells
        At most this many cells of each set (uniform subsample) enter the MMD and energy
        distance, whose cost is quadratic; ``None``: all.
    random_state
        Seed of the subsampling.

    Returns
    -------
    Dictionary with

    ``'mmd'``
        Unbiased squared MMD (U-statistic, can be slightly negative) with the multi-scale RBF
        kernel of :func:`celldyn.metrics.mmd`; the base bandwidth is the median distance of
        the pooled ``obs`` and ``ctrl`` cells, so every prediction is scored with the same
        kernel.
    ``'energy_distance'``
        :func:`celldyn.metrics.energy_distance` between ``pred`` and ``obs``.
    ``'rmse_mean'``, ``'rmse_mean_de'``
        Root mean squared difference of the predicted and observed mean expression, over all
        genes and over the top DE genes.
    ``'pearson_delta'``, ``'pearson_delta_de'``
        Pearson correlation of the predicted and observed mean change, over all genes and over
        the top DE genes (``nan`` when a change is constant, e.g. a no-change prediction).
    """
    import torch

    from ..nn._kernels import median_bandwidth
    from ._distances import energy_distance, mmd

    pred, obs = _check_pair(pred, obs)
    ctrl, _ = _check_pair(ctrl, obs)
    n_top_de = check_int(n_top_de, "n_top_de", 1)
    if max_cells is not None:
        max_cells = check_int(max_cells, "max_cells", 2)
    if min(len(pred), len(obs), len(ctrl)) < 2:
        raise ValueError("`pred`, `obs` and `ctrl` need at least 2 cells each.")
    rng = np.random.default_rng(random_state)
    pred_s, obs_s, ctrl_s = (_subsample(a, max_cells, rng) for a in (pred, obs, ctrl))
    bandwidth = median_bandwidth(torch.from_numpy(obs_s), torch.from_numpy(ctrl_s))
    delta_pred = pred.mean(0) - ctrl.mean(0)
    delta_obs = obs.mean(0) - ctrl.mean(0)
    de = top_de_genes(obs, ctrl, n_top_de)
    error = delta_pred - delta_obs
    return {
        "mmd": mmd(pred_s, obs_s, kernel="multiscale_rbf", bandwidth=bandwidth, unbiased=True),
        "energy_distance": energy_distance(pred_s, obs_s),
        "rmse_mean": float(np.sqrt(np.mean(error**2))),
        "rmse_mean_de": float(np.sqrt(np.mean(error[de] ** 2))),
        "pearson_delta": _pearson(delta_pred, delta_obs),
        "pearson_delta_de": _pearson(delta_pred[de], delta_obs[de]),
    }


def _expression(adata: AnnData, layer: str | None) -> np.ndarray:
    check_layer(adata, layer)
    x = adata.X if layer is None else adata.layers[layer]
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)


def perturbation_table(
    pred: AnnData,
    obs: AnnData,
    *,
    perturbations: Sequence[str] | None = None,
    perturbation_key: str = _keys.PERTURBATION,
    control: str = _keys.CONTROL,
    layer: str | None = None,
    pred_layer: str | None = None,
    **kwargs,
) -> pd.DataFrame:
    """Score every predicted perturbation against the observed cells with that label.

    Parameters
    ----------
    pred
        Predicted cells, e.g. from :meth:`celldyn.models.LCD.predict` or
        :func:`celldyn.tl.perturbation_baseline`, with ``obs[perturbation_key]``.
    obs
        Observed cells with ``obs[perturbation_key]``, including the ``control`` cells, over
        the same genes (``var_names``) as ``pred``.
    perturbations
        Labels to score; default every label of ``pred`` but the control.
    perturbation_key
        Column of ``obs`` with the labels (``'control'``, ``'A'``, ``'A+B'``).
    control
        Label of the control cells.
    layer, pred_layer
        Layers of ``obs`` and ``pred`` to compare (``None``: ``X``).
    **kwargs
        Passed to :func:`perturbation_scores` (``n_top_de``, ``max_cells``, ``random_state``).

    Returns
    -------
    DataFrame indexed by perturbation with the columns of :func:`perturbation_scores`.
    """
    for name, adata in (("pred", pred), ("obs", obs)):
        if not isinstance(adata, AnnData):
            raise TypeError(f"`{name}` must be an AnnData, got {type(adata).__name__}.")
        check_obs_key(adata, perturbation_key)
    if not pred.var_names.equals(obs.var_names):
        raise ValueError("`pred` and `obs` must have the same genes (var_names) in the same order.")
    pred_labels = pred.obs[perturbation_key].astype(str).to_numpy()
    obs_labels = obs.obs[perturbation_key].astype(str).to_numpy()
    if perturbations is None:
        perturbations = [p for p in pd.unique(pred_labels) if p != control]
    missing = [p for p in [control, *perturbations] if p not in set(obs_labels)]
    missing += [p for p in perturbations if p not in set(pred_labels)]
    if missing:
        raise ValueError(f"Perturbation(s) {missing} have no cells in `obs` or `pred`.")
    x_pred = _expression(pred, pred_layer)
    x_obs = _expression(obs, layer)
    ctrl = x_obs[obs_labels == control]
    rows = {
        p: perturbation_scores(x_pred[pred_labels == p], x_obs[obs_labels == p], ctrl, **kwargs)
        for p in perturbations
    }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(perturbation_key)
