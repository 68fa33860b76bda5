"""Activation/repression sign agreement of inferred interactions with a signed reference."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._validate import check_finite

_COUNTS = ("tp", "fp", "fn", "tn")


def _as_frame(interactions, genes: Sequence[str] | None) -> pd.DataFrame:
    if isinstance(interactions, pd.DataFrame):
        frame = interactions
        if genes is not None:
            frame = frame.set_axis(list(genes), axis=0).set_axis(list(genes), axis=1)
    else:
        matrix = interactions.toarray() if sp.issparse(interactions) else np.asarray(interactions)
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"`interactions` must be a square matrix, got shape {matrix.shape}.")
        if genes is None:
            raise ValueError("Pass `genes` (row/column names) with an array of interactions.")
        if len(genes) != matrix.shape[0]:
            raise ValueError(f"`genes` has {len(genes)} names for {matrix.shape[0]} rows.")
        frame = pd.DataFrame(matrix, index=list(genes), columns=list(genes))
    frame = frame.astype(np.float64)
    if frame.index.has_duplicates or frame.columns.has_duplicates:
        raise ValueError("`interactions` has duplicated gene names.")
    return frame


def _reference_signs(reference_net: pd.DataFrame) -> tuple[pd.Series, int]:
    """One sign per (source, target); pairs listed with both signs are dropped."""
    if not isinstance(reference_net, pd.DataFrame):
        raise TypeError(
            f"`reference_net` must be a pandas DataFrame, got {type(reference_net).__name__}."
        )
    sign_col = next((c for c in ("weight", "sign") if c in reference_net.columns), None)
    missing = {"source", "target"} - set(reference_net.columns)
    if missing or sign_col is None:
        raise KeyError(
            "`reference_net` needs decoupler columns 'source', 'target' and a signed 'weight' "
            f"(or 'sign'); it has {list(reference_net.columns)}."
        )
    weight = reference_net[sign_col].to_numpy(dtype=np.float64)
    check_finite(weight, f"reference_net[{sign_col!r}]")
    net = pd.DataFrame(
        {
            "source": reference_net["source"].astype(str).to_numpy(),
            "target": reference_net["target"].astype(str).to_numpy(),
            "sign": np.sign(weight),
        }
    )
    net = net[net["sign"] != 0]
    signs = net.groupby(["source", "target"])["sign"].agg(["min", "max"])
    conflicting = signs["min"] != signs["max"]
    return signs.loc[~conflicting, "max"], int(conflicting.sum())


def _scores(frame: pd.DataFrame) -> pd.DataFrame:
    """Precision, recall, F1 (positive class: activation) and accuracy from the counts."""
    tp, fp, fn, tn = (frame[c].to_numpy(dtype=np.float64) for c in _COUNTS)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        recall = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
        n_edges = tp + fp + fn + tn
        accuracy = np.where(n_edges > 0, (tp + tn) / n_edges, np.nan)
    f1 = np.where(np.isnan(precision) | np.isnan(recall), np.nan, f1)
    out = frame.astype(np.int64)
    out["n_edges"] = n_edges.astype(np.int64)
    out["accuracy"] = accuracy
    out["precision"], out["recall"], out["f1"] = precision, recall, f1
    return out


def sign_agreement(
    interactions: pd.DataFrame | np.ndarray | sp.spmatrix,
    reference_net: pd.DataFrame,
    *,
    genes: Sequence[str] | None = None,
) -> dict:
    """Agreement of the signs of inferred interactions with a signed reference network.

    For every reference edge ``source → target`` whose genes are both in ``interactions``,
    the predicted sign is the sign of ``interactions[source, target]`` (regulator row,
    target column). The positive class is **activation**: a true positive is an activation
    predicted positive, a false positive a repression predicted positive, a false negative
    an activation predicted negative, a true negative a repression predicted negative.
    Edges predicted exactly 0 (or NaN) are not scored; pairs listed with both signs in the
    reference are dropped; reference weights of 0 are ignored.

    Parameters
    ----------
    interactions
        Regulator (row) × target (column) matrix: a DataFrame labelled by genes, or an
        array / sparse matrix with ``genes``, e.g. ``adata.varp['cellmnn_interactions']``.
    reference_net
        Decoupler-format DataFrame with ``source``, ``target`` and ``weight`` (``+1``
        activation, ``-1`` repression; only the sign is used), or ``sign`` instead of
        ``weight`` (e.g. ``uns['ground_truth_network']`` or :func:`celldyn.datasets.trrust`).
    genes
        Names of the rows/columns of ``interactions`` (required for arrays, overrides the
        labels of a DataFrame).

    Returns
    -------
    dict with

    - ``'overall'``: dict of ``tp``, ``fp``, ``fn``, ``tn``, ``n_edges``, ``accuracy``
      (fraction of edges with the right sign), ``precision``, ``recall``, ``f1`` (NaN when
      undefined, e.g. precision without positive predictions), ``n_undetermined`` (edges
      predicted 0 or NaN) and ``n_conflicting`` (reference pairs with both signs).
    - ``'per_tf'``: DataFrame indexed by source (TF) with the same scores, sorted by
      ``n_edges`` (descending).
    """
    frame = _as_frame(interactions, genes)
    signs, n_conflicting = _reference_signs(reference_net)
    sources = signs.index.get_level_values("source")
    targets = signs.index.get_level_values("target")
    keep = sources.isin(frame.index) & targets.isin(frame.columns)
    if not keep.any():
        raise ValueError(
            "No reference edge has both its source and target among the interaction genes."
        )
    signs, sources, targets = signs[keep], sources[keep], targets[keep]
    predicted = frame.to_numpy()[
        frame.index.get_indexer(sources), frame.columns.get_indexer(targets)
    ]
    scored = np.isfinite(predicted) & (predicted != 0)
    truth_pos = signs.to_numpy()[scored] > 0
    pred_pos = predicted[scored] > 0
    edges = pd.DataFrame(
        {
            "source": np.asarray(sources)[scored],
            "tp": truth_pos & pred_pos,
            "fp": ~truth_pos & pred_pos,
            "fn": truth_pos & ~pred_pos,
            "tn": ~truth_pos & ~pred_pos,
        }
    )
    per_tf = _scores(edges.groupby("source")[list(_COUNTS)].sum())
    per_tf = per_tf.sort_values("n_edges", ascending=False, kind="stable")
    overall = _scores(edges[list(_COUNTS)].sum().to_frame().T).iloc[0].to_dict()
    overall = {
        k: (int(v) if k in _COUNTS or k == "n_edges" else float(v)) for k, v in overall.items()
    }
    overall["n_undetermined"] = int((~scored).sum())
    overall["n_conflicting"] = n_conflicting
    return {"overall": overall, "per_tf": per_tf}
