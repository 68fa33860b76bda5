"""Compare FLeCS ensembles of two conditions edge by edge, and pick the affected subnetwork."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _keys
from .._readers import stored_flecs_models
from .._validate import check_int
from ..nn import GRNVectorField


def _member_weights(adata: AnnData, key: str, name: str) -> tuple[pd.Series, set[str]]:
    """Per-member prior-edge weights, indexed by ``(source, target)``, and knocked-out genes."""
    models = stored_flecs_models(adata, key)
    if len(models) < 2:
        raise ValueError(
            f"{name}.uns[{key!r}] has {len(models)} fitted model; the t-test needs at least 2 "
            "ensemble members per condition (`celldyn.tl.flecs(..., n_models=...)`)."
        )
    rows = []
    for arrays in models.values():
        rows.append(GRNVectorField.stored_prior_weights(arrays))
    first = next(iter(models.values()))
    genes = np.asarray(adata.var_names)
    index = pd.MultiIndex.from_arrays(
        [genes[np.asarray(first["src"])], genes[np.asarray(first["dst"])]],
        names=["source", "target"],
    )
    knocked = set(adata.uns[key].get("params", {}).get("knockout", []))
    return pd.DataFrame(np.stack(rows, axis=1), index=index), knocked


def _shared_edges(a: pd.DataFrame, b: pd.DataFrame, knocked: set[str]) -> pd.MultiIndex:
    """Edges of both fits; edges of only one must leave a knocked-out gene."""
    only = a.index.symmetric_difference(b.index)
    unexplained = [edge for edge in only if edge[0] not in knocked]
    if unexplained:
        raise ValueError(
            f"The two fits have different prior edges, e.g. {unexplained[:3]}; they must share "
            "the prior network (up to the outgoing edges of knocked-out genes)."
        )
    return a.index.intersection(b.index, sort=False)


def differential_edges(
    adata_a: AnnData,
    adata_b: AnnData,
    *,
    key: str = _keys.FLECS,
    key_b: str | None = None,
    threshold: float | None = None,
) -> pd.DataFrame:
    """Welch's t-test per edge between the FLeCS ensembles of two conditions.

    Each condition is fitted with :func:`celldyn.tl.flecs` and ``n_models >= 2``; the members'
    weights of an edge are the samples. Edges removed in one condition by
    ``tl.flecs(..., knockout=...)`` are left out; every other edge must be in both fits.

    Parameters
    ----------
    adata_a, adata_b
        The two conditions (same genes), e.g. wild type and knockout.
    key
        ``key_added`` of :func:`celldyn.tl.flecs` in ``adata_a``.
    key_b
        Same in ``adata_b``; ``None`` uses ``key``.
    threshold
        Significance level; ``None`` is ``1 / n_edges`` (one false positive expected).

    Returns
    -------
    DataFrame with one row per tested edge, sorted by ``p`` (ties by ``|t|``, largest first):
    ``source`` and ``target`` (regulator and target gene), ``mean_a`` and ``mean_b`` (ensemble
    mean weights), ``change`` (``mean_b - mean_a``), ``uncertainty`` (standard error of the
    change, ``sqrt(s_a^2/n_a + s_b^2/n_b)``), ``t`` (Welch's statistic of b vs a), ``p``
    (two-sided; NaN when both conditions have zero spread) and ``significant``
    (``p <= threshold``); ``attrs['threshold']`` holds the threshold.
    """
    from scipy import stats

    key_b = key if key_b is None else key_b
    if not adata_a.var_names.equals(adata_b.var_names):
        raise ValueError("adata_a and adata_b must have the same genes (var_names) in order.")
    weights_a, knocked_a = _member_weights(adata_a, key, "adata_a")
    weights_b, knocked_b = _member_weights(adata_b, key_b, "adata_b")
    edges = _shared_edges(weights_a, weights_b, knocked_a | knocked_b)
    a, b = weights_a.loc[edges].to_numpy(), weights_b.loc[edges].to_numpy()
    threshold = 1.0 / len(edges) if threshold is None else float(threshold)
    if not 0 < threshold <= 1:
        raise ValueError(f"`threshold` must be in (0, 1], got {threshold!r}.")
    with np.errstate(divide="ignore", invalid="ignore"):
        test = stats.ttest_ind(b, a, axis=1, equal_var=False)
    uncertainty = np.sqrt(a.var(1, ddof=1) / a.shape[1] + b.var(1, ddof=1) / b.shape[1])
    table = pd.DataFrame(
        {
            "source": edges.get_level_values(0),
            "target": edges.get_level_values(1),
            "mean_a": a.mean(1),
            "mean_b": b.mean(1),
            "change": b.mean(1) - a.mean(1),
            "uncertainty": uncertainty,
            "t": test.statistic,
            "p": test.pvalue,
        }
    )
    table["significant"] = table["p"] <= threshold
    order = np.lexsort((-np.abs(table["t"].fillna(0).to_numpy()), table["p"].fillna(2).to_numpy()))
    table = table.iloc[order].reset_index(drop=True)
    table.attrs["threshold"] = threshold
    return table


def affected_subnetwork(
    scores: pd.DataFrame, n_genes: int = 33, *, score: str = "p"
) -> pd.DataFrame:
    """Greedily pick the ``n_genes`` genes most affected between conditions.

    The rule of the FLeCS paper: take the ``n_genes // 2`` best-ranked edges, then walk down
    the ranking adding each edge that keeps the number of distinct genes at most ``n_genes``,
    until there are ``n_genes`` genes (or no edges left); return the subgraph the chosen genes
    induce. Ties keep the order of ``scores``.

    Parameters
    ----------
    scores
        Edge table with ``source``, ``target`` and ``score`` columns, e.g. from
        :func:`celldyn.tl.differential_edges`.
    n_genes
        Number of genes to select (at least 2).
    score
        Column to rank by: ascending for ``'p'``, by decreasing absolute value otherwise.

    Returns
    -------
    The rows of ``scores`` whose source and target are both selected, in ranking order (index
    reset); their genes are the selected genes.
    """
    n_genes = check_int(n_genes, "n_genes", 2)
    missing = {"source", "target", score} - set(scores.columns)
    if missing:
        raise KeyError(f"`scores` lacks the column(s) {sorted(missing)}.")
    values = scores[score].to_numpy(dtype=np.float64)
    key = values if score == "p" else -np.abs(values)
    ranked = scores.iloc[np.argsort(np.nan_to_num(key, nan=np.inf), kind="stable")]
    chosen: dict[str, None] = {}  # insertion-ordered set
    for position, (source, target) in enumerate(
        zip(ranked["source"], ranked["target"], strict=True)
    ):
        new = {source, target} - chosen.keys()
        if position < n_genes // 2 or len(chosen) + len(new) <= n_genes:
            chosen.update(dict.fromkeys(sorted(new)))
        if len(chosen) == n_genes and position >= n_genes // 2 - 1:
            break
    inside = ranked["source"].isin(chosen) & ranked["target"].isin(chosen)
    return ranked[inside].reset_index(drop=True)
