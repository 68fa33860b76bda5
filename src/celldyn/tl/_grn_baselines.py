"""Reference gene regulatory network scores: correlation, GENIE3-style forests, OT + ridge."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .. import _keys
from .._readers import TimeGroups, read_prior, read_time_groups
from .._validate import (
    check_adata,
    check_finite,
    check_in,
    check_int,
    check_layer,
    check_positive,
    get_rep,
)
from ..pp._ot_velocities import ot_velocities

GRN_BASELINES = ("correlation", "forest", "ot_ridge")
"""Methods of :func:`grn_baseline`."""

_CHUNK = 10_000_000
"""Largest number of floats held by one block of per-edge products."""


def grn_baseline(
    adata: AnnData,
    method: str = "ot_ridge",
    *,
    layer: str | None = None,
    time_key: str = _keys.TIME,
    prior_key: str | None = _keys.PRIOR,
    rep: str | None = None,
    alpha: float = 1.0,
    n_estimators: int = 100,
    max_cells: int | None = 5000,
    random_state: int = 0,
) -> pd.DataFrame:
    r"""Score the candidate edges of a gene regulatory network with a simple baseline.

    The candidate edges are the non-zeros of the prior network ``adata.varp[prior_key]``
    (regulator row × target column, written by :func:`celldyn.pp.prior_network`), self loops
    excluded; without a prior, every ordered pair of distinct genes. Each method scores them
    from the expression ``adata.X`` (or ``layers[layer]``, dense or sparse):

    - ``'correlation'``: Pearson :math:`r` of regulator and target over all cells (signed;
      0 where a gene is constant).
    - ``'forest'``: GENIE3-style (Huynh-Thu et al. 2010). For each target, a scikit-learn
      :class:`~sklearn.ensemble.RandomForestRegressor` (``n_estimators`` trees,
      ``max_features='sqrt'``, ``n_jobs=1``, seeded with ``random_state``) predicts the
      target from its candidate regulators (in ``var_names`` order); the weight is the
      impurity importance (non-negative, summing to 1 per target). Cost: one forest per
      target, each about ``n_estimators · n_cells · log(n_cells) · sqrt(n_regulators)``;
      it is bounded by ``max_cells`` (the forests see a random subset of that many cells).
    - ``'ot_ridge'``: regression on optimal-transport velocities. For each pair of
      consecutive time groups :math:`t_k, t_{k+1}` of ``obs[time_key]``, an exact OT plan
      :math:`P` (squared Euclidean cost on ``rep``; minibatch OT for groups over 5000 cells,
      as in :func:`celldyn.pp.couplings`) matches the cells; each cell :math:`i` of
      :math:`t_k` goes to the barycentre :math:`\bar x_i = \sum_j P_{ij} x_j / \sum_j P_{ij}`
      of its partners (in expression space), with the velocity
      :math:`v_i = (\bar x_i - x_i) / (t_{k+1} - t_k)` taken at the midpoint
      :math:`(x_i + \bar x_i) / 2` (cells of the last group are not used). Then for each
      target :math:`g`, a ridge regression with intercept,
      :math:`\min_\beta \|v_g - F\beta\|^2 + \alpha\|\beta\|^2` (as
      :class:`sklearn.linear_model.Ridge`), of the velocity on the standardised midpoint
      expression :math:`F` of its candidate regulators plus its own expression (a covariate
      that absorbs decay; its coefficient is not an edge). The weight is the regulator's
      coefficient: signed, in units of the target's expression per unit time per standard
      deviation of the regulator. Cost: the OT problems plus one ``(k + 1) × (k + 1)`` solve
      per target with ``k`` regulators (one shared solve without a prior).

    Parameters
    ----------
    adata
        Annotated data matrix; ``adata`` is not modified.
    method
        ``'correlation'``, ``'forest'`` or ``'ot_ridge'``.
    layer
        Expression layer (``None``: ``X``).
    time_key
        Column of ``adata.obs`` with ordered time groups, at least 2 (``'ot_ridge'`` only).
    prior_key
        ``varp`` key of the prior network. ``None``, or the default key when ``adata.varp``
        has no such entry: all ordered pairs of distinct genes are candidates.
    rep
        Representation the OT plans are computed on (``'ot_ridge'`` only): a key of
        ``adata.obsm`` or ``'X'``. ``None``: ``obsm['X_pca']`` when present, else the
        expression.
    alpha
        Ridge penalty of ``'ot_ridge'`` (positive; on standardised features and summed
        squared errors, as in scikit-learn).
    n_estimators
        Trees per forest (``'forest'``).
    max_cells
        Cells each forest is fitted on (``'forest'``; a random subset when there are more;
        ``None``: all cells).
    random_state
        Seed of the forests, their cell subset and the OT minibatches.

    Returns
    -------
    Scored candidate edges in decoupler format, one row per candidate edge (in regulator,
    then target order of ``var_names``): ``source`` (regulator), ``target`` and ``weight``
    (the method's score, see above). It plugs into
    ``celldyn.metrics.grn_scores(pred, truth, candidates=pred)``, which ranks by
    ``|weight|``.
    """
    check_adata(adata)
    check_in(method, GRN_BASELINES, "method")
    check_layer(adata, layer)
    check_positive(alpha, "alpha")
    n_estimators = check_int(n_estimators, "n_estimators", 1)
    if max_cells is not None:
        max_cells = check_int(max_cells, "max_cells", 2)
    random_state = check_int(random_state, "random_state", 0)
    groups = read_time_groups(adata, time_key) if method == "ot_ridge" else None
    if method == "ot_ridge" and rep is not None:
        get_rep(adata, rep)  # checked before the expression is read
    src, tgt = _candidates(adata, prior_key)
    if len(src) == 0:
        raise ValueError("There are no candidate edges to score (self loops are not scored).")
    expression = adata.X if layer is None else adata.layers[layer]
    name = "adata.X" if layer is None else f"adata.layers[{layer!r}]"
    check_finite(expression, name)
    x = expression.toarray() if sp.issparse(expression) else np.asarray(expression)
    x = np.array(x, dtype=np.float64)  # always a copy: adata is never modified

    if method == "correlation":
        weight = _correlation(x, src, tgt)
    elif method == "forest":
        weight = _forest(x, src, tgt, n_estimators, max_cells, random_state)
    else:
        if rep is None:
            z = get_rep(adata, "X_pca") if "X_pca" in adata.obsm else x
        else:
            z = get_rep(adata, rep)
        weight = _ot_ridge(x, z, groups, src, tgt, alpha, random_state)
    return pd.DataFrame(
        {
            "source": np.asarray(adata.var_names[src], dtype=str),
            "target": np.asarray(adata.var_names[tgt], dtype=str),
            "weight": weight,
        }
    )


def _candidates(adata: AnnData, prior_key: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Regulator and target index of the candidate edges, row-major, without self loops."""
    n = adata.n_vars
    if prior_key is None or (prior_key == _keys.PRIOR and prior_key not in adata.varp):
        src, tgt = np.divmod(np.arange(n * n, dtype=np.int64), n)
    else:
        edges = read_prior(adata, prior_key)
        src, tgt = edges.src, edges.dst
    keep = src != tgt
    return src[keep], tgt[keep]


def _standardise(x: np.ndarray) -> np.ndarray:
    """Columns centred and scaled to unit variance (constant columns: zero)."""
    sd = x.std(0)
    return (x - x.mean(0)) / np.where(sd > 0, sd, 1.0)


def _correlation(x: np.ndarray, src: np.ndarray, tgt: np.ndarray) -> np.ndarray:
    """Pearson r of every edge's regulator and target (0 where a gene is constant).

    Up to ``sqrt(_CHUNK)`` genes, :func:`numpy.corrcoef` of all genes; above, blocks of
    regulators of standardised expression (the same up to rounding).
    """
    n_genes = x.shape[1]
    if n_genes**2 <= _CHUNK:
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.corrcoef(x, rowvar=False)
        return np.nan_to_num(r.reshape(n_genes, n_genes)[src, tgt])
    z = _standardise(x)
    out = np.empty(len(src))
    step = max(1, _CHUNK // n_genes)
    for start in range(0, n_genes, step):
        block = (src >= start) & (src < start + step)
        r = z[:, start : start + step].T @ z / len(z)
        out[block] = r[src[block] - start, tgt[block]]
    return np.clip(out, -1.0, 1.0)


def _by_target(src: np.ndarray, tgt: np.ndarray):
    """Yield ``(target, regulators, edge positions)``, regulators in ascending order."""
    order = np.lexsort((src, tgt))
    bounds = np.flatnonzero(np.diff(tgt[order])) + 1
    for part in np.split(order, bounds):
        if len(part):
            yield int(tgt[part[0]]), src[part], part


def _forest(
    x: np.ndarray,
    src: np.ndarray,
    tgt: np.ndarray,
    n_estimators: int,
    max_cells: int | None,
    random_state: int,
) -> np.ndarray:
    """GENIE3-style impurity importances of every edge."""
    from sklearn.ensemble import RandomForestRegressor

    if max_cells is not None and len(x) > max_cells:
        rng = np.random.default_rng(random_state)
        x = x[np.sort(rng.choice(len(x), max_cells, replace=False))]
    out = np.zeros(len(src))
    for target, regulators, edges in _by_target(src, tgt):
        forest = RandomForestRegressor(
            n_estimators=n_estimators, max_features="sqrt", random_state=random_state, n_jobs=1
        )
        forest.fit(x[:, regulators], x[:, target])
        out[edges] = forest.feature_importances_
    return out


def _ot_ridge(
    x: np.ndarray,
    z: np.ndarray,
    groups: TimeGroups,
    src: np.ndarray,
    tgt: np.ndarray,
    alpha: float,
    random_state: int,
) -> np.ndarray:
    """Ridge coefficients of the OT velocity on the standardised midpoint expression."""
    _, velocity, midpoint = ot_velocities(x, z, groups, random_state)
    features, velocity = _standardise(midpoint), velocity - velocity.mean(0)
    n_genes = x.shape[1]
    out = np.zeros(len(src))
    if len(src) == n_genes * (n_genes - 1):  # all pairs: every target shares all features
        gram = features.T @ features + alpha * np.eye(n_genes)
        coef = np.linalg.solve(gram, features.T @ velocity)  # regulator x target
        return coef[src, tgt]
    for target, regulators, edges in _by_target(src, tgt):
        f = features[:, np.append(regulators, target)]
        gram = f.T @ f + alpha * np.eye(f.shape[1])
        out[edges] = np.linalg.solve(gram, f.T @ velocity[:, target])[:-1]
    return out
