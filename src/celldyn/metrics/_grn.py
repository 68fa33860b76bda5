"""Scores of an inferred gene regulatory network against a known one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._validate import check_finite

_EDGE_COLUMNS = ("source", "target")


def _edges(
    obj: Any, name: str, genes: Sequence[str] | None, value_columns: Sequence[str]
) -> tuple[pd.DataFrame, pd.Index, bool]:
    """Read a network as an edge list ``source, target, value``.

    Returns the edges, every gene the input names, and whether the input carries values
    (an edge list with one of ``value_columns``, or any matrix). Matrix entries that are zero
    are not edges.
    """
    if isinstance(obj, pd.DataFrame) and set(_EDGE_COLUMNS) <= set(obj.columns):
        col = next((c for c in value_columns if c in obj.columns), None)
        if col is None and name == "predicted":
            raise ValueError(
                f"`predicted` edge list needs a score column: one of {list(value_columns)}."
            )
        values = obj[col] if col is not None else pd.Series(1.0, index=obj.index)
        edges = pd.DataFrame(
            {
                "source": obj["source"].astype(str).to_numpy(),
                "target": obj["target"].astype(str).to_numpy(),
                "value": pd.to_numeric(values, errors="raise").to_numpy(dtype=np.float64),
            }
        )
        nodes = pd.Index(np.unique(np.concatenate([edges["source"], edges["target"]])))
        has_values = col is not None
    elif isinstance(obj, pd.DataFrame | np.ndarray) or sp.issparse(obj):
        if isinstance(obj, pd.DataFrame):
            rows, cols = obj.index.astype(str), obj.columns.astype(str)
            mat = sp.coo_matrix(obj.to_numpy(dtype=np.float64))
        else:
            if genes is None:
                raise ValueError(f"`{name}` is an unnamed matrix: pass `genes=` (its row names).")
            mat = sp.coo_matrix(obj, dtype=np.float64)
            if mat.shape != (len(genes), len(genes)):
                raise ValueError(
                    f"`{name}` has shape {mat.shape} but `genes` has {len(genes)} entries; a "
                    "square regulator x target matrix over `genes` is expected."
                )
            rows = cols = pd.Index(genes).astype(str)
        if rows.has_duplicates or cols.has_duplicates:
            raise ValueError(f"`{name}` names a gene more than once in its rows or columns.")
        mat.eliminate_zeros()
        edges = pd.DataFrame({"source": rows[mat.row], "target": cols[mat.col], "value": mat.data})
        nodes = rows.union(cols)
        has_values = True
    else:
        raise TypeError(
            f"`{name}` must be a DataFrame (edge list with 'source' and 'target' columns, or a "
            f"regulator x target matrix) or an array with `genes=`, got {type(obj).__name__}."
        )
    check_finite(edges["value"].to_numpy(), f"`{name}`")
    return edges, nodes, has_values


def _positions(
    edges: pd.DataFrame, genes: pd.Index, universe: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``universe`` (sorted pair codes) of the edges, and which edges are in it."""
    src, tgt = genes.get_indexer(edges["source"]), genes.get_indexer(edges["target"])
    codes = src.astype(np.int64) * len(genes) + tgt
    pos = np.clip(np.searchsorted(universe, codes), 0, max(len(universe) - 1, 0))
    inside = (src >= 0) & (tgt >= 0) & (universe[pos] == codes)
    return pos, inside


def _early_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """BEELINE's early precision: precision among the top-k edges, k = number of true edges.

    Ties with the k-th score are included; edges scored 0 never count as predicted.
    """
    k = int(labels.sum())
    positive = scores[scores > 0]
    if positive.size == 0:
        return 0.0
    kth = np.partition(scores, scores.size - k)[scores.size - k]
    top = scores >= max(kth, positive.min())
    return float(labels[top].mean())


def grn_scores(
    predicted: pd.DataFrame | np.ndarray | sp.spmatrix,
    truth: pd.DataFrame | np.ndarray | sp.spmatrix,
    *,
    genes: Sequence[str] | None = None,
    candidates: pd.DataFrame | None = None,
    self_loops: bool = False,
) -> dict[str, float]:
    """Score a predicted directed gene regulatory network against a ground truth.

    Edges are ranked by ``|score|``. Candidate edges missing from ``predicted`` score 0.

    Parameters
    ----------
    predicted
        Either a scored edge list (DataFrame with ``source``, ``target`` and a ``score`` or
        ``weight`` column), or a regulator (row) x target (column) matrix: a DataFrame with
        gene names as index and columns, or an array / sparse matrix with ``genes``
        (e.g. ``adata.varp["flecs_weights"]`` with ``genes=adata.var_names``).
    truth
        Either an edge list (DataFrame with ``source``, ``target``, optional ``sign`` or
        ``weight`` column, decoupler format; duplicated pairs keep their first row) or a
        regulator x target matrix whose non-zero entries are the true edges.
    genes
        Row/column names of array inputs (both arrays, if both are arrays).
    candidates
        Edge list (``source``, ``target``) of the edges to score, e.g. a prior network.
        Default: all ordered pairs of the genes named by both ``predicted`` and ``truth``
        (an edge list names the genes in its ``source`` and ``target`` columns, a matrix
        those of its rows and columns).
    self_loops
        Keep candidate edges ``g -> g``.

    Returns
    -------
    Dictionary with

    ``'auroc'``, ``'auprc'``
        Areas under the ROC and precision-recall curves (:func:`sklearn.metrics.roc_auc_score`,
        :func:`sklearn.metrics.average_precision_score`).
    ``'auprc_ratio'``
        AUPRC divided by the edge density (the AUPRC of a random predictor).
    ``'early_precision'``, ``'epr'``
        Precision among the top-k edges (k = number of true edges, ties included, zero scores
        excluded) and its ratio to the density, as defined by BEELINE.
    ``'sign_accuracy'``
        Among true candidate edges with a non-zero sign, the fraction whose predicted score has
        that sign. ``nan`` when the truth carries no signs (an edge list without ``sign`` or
        ``weight`` column, or no signed edge among the candidates).
    ``'n_true_edges'``, ``'n_candidates'``
        Number of true edges among the candidates and number of candidate edges.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    pred, pred_genes, _ = _edges(predicted, "predicted", genes, ("score", "weight"))
    true, true_genes, signed = _edges(truth, "truth", genes, ("sign", "weight"))
    if pred.duplicated(["source", "target"]).any():
        raise ValueError("`predicted` lists some (source, target) pairs more than once.")
    true = true.drop_duplicates(["source", "target"])

    if candidates is None:
        all_genes = pred_genes.intersection(true_genes)
        if all_genes.empty:
            raise ValueError("`predicted` and `truth` have no gene in common.")
        n = len(all_genes)
        universe = np.arange(n * n, dtype=np.int64)
        if not self_loops:
            universe = universe[universe // n != universe % n]
    else:
        cand, cand_genes, _ = _edges(candidates, "candidates", genes, ())
        if not self_loops:
            cand = cand[cand["source"] != cand["target"]]
        all_genes = pred_genes.union(true_genes).union(cand_genes)
        src, tgt = all_genes.get_indexer(cand["source"]), all_genes.get_indexer(cand["target"])
        universe = np.unique(src.astype(np.int64) * len(all_genes) + tgt)
    if universe.size == 0:
        raise ValueError("There are no candidate edges to score.")

    scores = np.zeros(universe.size)
    pos, inside = _positions(pred, all_genes, universe)
    scores[pos[inside]] = pred["value"].to_numpy()[inside]
    true_sign = np.zeros(universe.size)
    labels = np.zeros(universe.size, dtype=bool)
    pos, inside = _positions(true, all_genes, universe)
    labels[pos[inside]] = True
    true_sign[pos[inside]] = np.sign(true["value"].to_numpy()[inside]) if signed else 0.0

    n_true = int(labels.sum())
    if n_true == 0:
        raise ValueError("No true edge of `truth` is among the candidate edges.")
    if n_true == universe.size:
        raise ValueError("Every candidate edge is a true edge: the scores are undefined.")
    density = n_true / universe.size
    magnitude = np.abs(scores)
    auprc = float(average_precision_score(labels, magnitude))
    early = _early_precision(labels, magnitude)
    has_sign = labels & (true_sign != 0)
    sign_accuracy = (
        float(np.mean(np.sign(scores[has_sign]) == true_sign[has_sign]))
        if has_sign.any()
        else float("nan")
    )
    return {
        "auroc": float(roc_auc_score(labels, magnitude)),
        "auprc": auprc,
        "auprc_ratio": auprc / density,
        "early_precision": early,
        "epr": early / density,
        "sign_accuracy": sign_accuracy,
        "n_true_edges": n_true,
        "n_candidates": int(universe.size),
    }
