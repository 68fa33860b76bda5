"""Readers of what :mod:`celldyn.pp` writes: the one place these entries are read and checked.

Every consumer (``models``, ``tl``, ``pl``, ``metrics`` and ``pp`` itself) reads the time
groups of ``obs``, the trajectories of ``uns``, the prior network of ``varp`` and the PCA
loadings of ``varm`` through these functions (and the FLeCS fits that
:func:`celldyn.tl.flecs` stores in ``uns``), so a bad entry fails with the same clear
message wherever it is read. Each reader returns a small frozen record of checked arrays
(:class:`TimeGroups`, :class:`Trajectories`, :class:`PriorEdges`) and never writes into
``adata``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from . import _keys
from ._validate import check_adata, check_finite, check_obs_key, check_uns_key, check_varp_key

_MIN_NUMERIC_TIMES = 3


@dataclass(frozen=True)
class TimeGroups:
    """Cells grouped by an ordered time label.

    Attributes
    ----------
    values
        Sorted numeric time of each group, shape ``(n_groups,)``.
    labels
        Original label of each group (same order as ``values``).
    codes
        Group index of every cell, shape ``(n_obs,)``.
    """

    values: np.ndarray
    labels: np.ndarray
    codes: np.ndarray

    @property
    def n_groups(self) -> int:
        """Number of time groups."""
        return len(self.values)

    def members(self, group: int) -> np.ndarray:
        """Positions (``obs`` indices) of the cells in ``group``."""
        return np.flatnonzero(self.codes == group)


@dataclass(frozen=True)
class Trajectories:
    """Checked trajectories of ``adata.uns[key]`` (:func:`celldyn.pp.trajectories`).

    Attributes
    ----------
    indices
        ``obs`` position of every cell along every trajectory, int64
        ``(n_trajectories, length)`` with ``length >= 2``.
    times
        Time of every cell along every trajectory, float64, same shape as ``indices``.
    params
        Copy of ``adata.uns[key]['params']`` (empty if absent), e.g. ``'time_key'`` and
        ``'rep'`` of the time groups and representation the trajectories were built on.
    """

    indices: np.ndarray
    times: np.ndarray
    params: dict

    @property
    def n_trajectories(self) -> int:
        """Number of trajectories."""
        return self.indices.shape[0]

    @property
    def length(self) -> int:
        """Number of cells along each trajectory."""
        return self.indices.shape[1]


@dataclass(frozen=True)
class PriorEdges:
    """Edges of the prior network ``adata.varp[key]`` (:func:`celldyn.pp.prior_network`).

    The non-zeros of the regulator (row) × target (column) matrix, in row-major order.

    Attributes
    ----------
    src
        Regulator (row) index of every edge, int64 ``(n_edges,)``.
    dst
        Target (column) index of every edge, int64 ``(n_edges,)``.
    """

    src: np.ndarray
    dst: np.ndarray

    @property
    def n_edges(self) -> int:
        """Number of edges."""
        return len(self.src)


class _IndicesTypeError(TypeError, ValueError):
    """Non-integer trajectory indices: a :class:`TypeError` that is also a :class:`ValueError`.

    Some readers reported this case as a ``ValueError``; both ``except`` clauses keep working.
    """


def read_time_groups(adata: AnnData, time_key: str, *, min_groups: int = 2) -> TimeGroups:
    """Read ordered time groups from ``adata.obs[time_key]``.

    Numeric columns are ordered by value; ordered categoricals by category order (their
    numeric value is then the category position); unordered categoricals and strings are
    accepted only when every label parses as a number.

    Parameters
    ----------
    adata
        Annotated data matrix.
    time_key
        Column of ``adata.obs``.
    min_groups
        Minimum number of distinct groups required.

    Returns
    -------
    The groups, see :class:`TimeGroups`.
    """
    check_obs_key(adata, time_key)
    col = adata.obs[time_key]
    if isinstance(col.dtype, pd.CategoricalDtype) and col.cat.ordered:
        if col.isna().any():
            raise ValueError(f"adata.obs[{time_key!r}] has {int(col.isna().sum())} missing values.")
        present = [c for c in col.cat.categories if (col == c).any()]
        labels = np.asarray(present, dtype=object)
        lookup = {c: i for i, c in enumerate(present)}
        codes = col.map(lookup).to_numpy(dtype=np.int64)
        values = np.arange(len(present), dtype=np.float64)
        try:
            numeric = np.asarray(present, dtype=np.float64)
            if np.all(np.diff(numeric) > 0):
                values = numeric
        except (TypeError, ValueError):
            pass
    else:
        try:
            is_categorical = isinstance(col.dtype, pd.CategoricalDtype)
            numeric = pd.to_numeric(col.astype(object) if is_categorical else col)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"adata.obs[{time_key!r}] is neither numeric nor an ordered categorical; "
                "convert it with `pd.Categorical(..., ordered=True)` or map it to numbers."
            ) from err
        numeric = numeric.to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(numeric)):
            n_bad = int(np.sum(~np.isfinite(numeric)))
            raise ValueError(f"adata.obs[{time_key!r}] has {n_bad} NaN or infinite values.")
        values, codes = np.unique(numeric, return_inverse=True)
        labels = values.astype(object)
    if len(values) < min_groups:
        raise ValueError(
            f"adata.obs[{time_key!r}] has {len(values)} distinct time group(s); "
            f"at least {min_groups} are needed."
        )
    return TimeGroups(values=values, labels=labels, codes=codes.astype(np.int64))


def read_numeric_times(adata: AnnData, time_key: str) -> TimeGroups:
    """Time groups of ``obs[time_key]``: at least 3, with numeric values (not just ordered).

    Raises a :class:`ValueError` if an ordered categorical's labels are not numbers: models
    that integrate over time (Cell-MNN) need the time differences, not only the order.
    """
    groups = read_time_groups(adata, time_key, min_groups=_MIN_NUMERIC_TIMES)
    try:
        numeric = np.asarray(groups.labels, dtype=np.float64)
    except (TypeError, ValueError):
        numeric = None
    if numeric is None or not np.allclose(numeric, groups.values):
        raise ValueError(
            f"adata.obs[{time_key!r}] must hold numeric times (Cell-MNN uses the time "
            f"differences); got labels {list(groups.labels)[:5]}."
        )
    return groups


def check_time_range(groups: TimeGroups, time_range: Sequence[float] | None) -> np.ndarray:
    """Boolean mask of cells whose time lies in the closed ``time_range`` (all if ``None``).

    Raises a :class:`ValueError` if no cell lies in the range.
    """
    times = groups.values[groups.codes]
    if time_range is None:
        return np.ones(len(times), dtype=bool)
    lo, hi = (float(x) for x in time_range)
    mask = (times >= lo) & (times <= hi)
    if not mask.any():
        raise ValueError(
            f"No cells with time in {(lo, hi)}; observed times are {groups.values.tolist()}."
        )
    return mask


def read_trajectories(
    adata: AnnData,
    key: str,
    *,
    require_times: bool = True,
    require_progress: bool = True,
) -> Trajectories:
    """Read and check the trajectories ``adata.uns[key]`` (:func:`celldyn.pp.trajectories`).

    Parameters
    ----------
    adata
        Annotated data matrix; ``indices`` must be positions in it.
    key
        Key of the trajectories in ``adata.uns``.
    require_times
        Whether ``'times'`` must be present; if not and it is absent, the times are the unit
        steps ``0, 1, ..., length - 1`` of every trajectory.
    require_progress
        Whether the times must be non-decreasing along every trajectory and at least one
        trajectory must span a positive time (what fitting a model needs).

    Returns
    -------
    The trajectories, see :class:`Trajectories`.

    Raises
    ------
    KeyError
        If ``uns[key]`` or its ``'indices'`` (or required ``'times'``) is missing.
    TypeError
        If ``'indices'`` are not integers (the error is also a :class:`ValueError`).
    ValueError
        If there is no trajectory, the shapes differ or are not ``(n, length >= 2)``, an
        index is outside ``[0, n_obs)``, a time is not finite, or (``require_progress``) the
        times decrease or never increase.
    """
    check_uns_key(adata, key, "Run `celldyn.pp.trajectories` first.")
    entry = adata.uns[key]
    needed = {"indices", "times"} if require_times else {"indices"}
    if not isinstance(entry, dict) or not needed <= set(entry):
        raise KeyError(f"adata.uns[{key!r}] needs {' and '.join(repr(k) for k in sorted(needed))}.")
    indices = np.asarray(entry["indices"])
    if "times" in entry:
        times = np.asarray(entry["times"], dtype=np.float64)
    elif indices.ndim == 2:
        times = np.tile(np.arange(indices.shape[1], dtype=np.float64), (len(indices), 1))
    else:
        times = np.empty(0)
    if indices.ndim >= 1 and len(indices) == 0:
        raise ValueError(
            f"adata.uns[{key!r}] holds no trajectories (0 rows in 'indices'); rerun "
            "`celldyn.pp.trajectories` (e.g. with more cells per time group)."
        )
    if indices.ndim != 2 or indices.shape[1] < 2 or times.shape != indices.shape:
        raise ValueError(
            f"adata.uns[{key!r}] must hold 'indices' and 'times' of the same shape "
            f"(n_trajectories, length >= 2); got {indices.shape} and {times.shape}."
        )
    if not np.issubdtype(indices.dtype, np.integer):
        raise _IndicesTypeError(f"adata.uns[{key!r}]['indices'] must be integers.")
    if indices.min() < 0 or indices.max() >= adata.n_obs:
        raise ValueError(
            f"adata.uns[{key!r}]['indices'] refer to cells outside [0, {adata.n_obs}): "
            "was adata subset after `celldyn.pp.trajectories`? Rerun it on the subset, or use "
            "a view (adata[mask]) of the original AnnData where one is accepted."
        )
    finite = np.all(np.isfinite(times))
    if require_progress:
        if not finite or np.any(np.diff(times, axis=1) < 0):
            raise ValueError(f"adata.uns[{key!r}]['times'] must be finite, non-decreasing.")
        if not np.any(times[:, -1] > times[:, 0]):
            raise ValueError(
                f"adata.uns[{key!r}] holds no usable trajectory: every one has zero "
                "duration (its 'times' never increase), so there is nothing to fit."
            )
    elif not finite:
        raise ValueError(f"adata.uns[{key!r}]['times'] must be finite.")
    return Trajectories(
        indices=indices.astype(np.int64), times=times, params=dict(entry.get("params", {}))
    )


def read_prior(adata: AnnData, key: str) -> PriorEdges:
    """Read the edges of the prior network ``adata.varp[key]`` (:func:`celldyn.pp.prior_network`).

    Duplicate entries of a sparse matrix are summed; explicit zeros are no edges.

    Returns
    -------
    The edges in row-major order, see :class:`PriorEdges`.

    Raises
    ------
    KeyError
        If ``varp[key]`` is missing.
    ValueError
        If it has no non-zero entry or NaN or infinite values.
    """
    check_varp_key(adata, key, "Run `celldyn.pp.prior_network` first.")
    matrix = sp.coo_matrix(adata.varp[key])
    matrix.sum_duplicates()
    keep = matrix.data != 0
    if not keep.any():
        raise ValueError(f"adata.varp[{key!r}] has no edges (no non-zero entries).")
    if not np.all(np.isfinite(matrix.data)):
        raise ValueError(f"adata.varp[{key!r}] contains NaN or infinite values.")
    return PriorEdges(src=matrix.row[keep].astype(np.int64), dst=matrix.col[keep].astype(np.int64))


def read_loadings(adata: AnnData, key: str, n_components: int) -> np.ndarray:
    """First ``n_components`` columns of ``varm[key]`` (genes × components), checked.

    Raises a :class:`KeyError` if they are missing and a :class:`ValueError` naming
    ``adata.varm[key]`` if they have too few columns or NaN or infinite values.
    """
    if key not in adata.varm:
        raise KeyError(
            f"adata.varm has no loadings {key!r} (e.g. 'PCs' from `sc.pp.pca`). "
            f"Available: {list(adata.varm)}."
        )
    matrix = np.asarray(adata.varm[key], dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] < n_components:
        raise ValueError(
            f"adata.varm[{key!r}] has shape {matrix.shape}; "
            f"at least {n_components} columns are needed."
        )
    matrix = matrix[:, :n_components]
    check_finite(matrix, f"adata.varm[{key!r}]")
    return matrix


def stored_flecs_models(adata: AnnData, key: str) -> Mapping[str, Mapping]:
    """Return the checked ``uns[key]['models']`` (``{'0': arrays, ...}``) of a FLeCS fit."""
    check_adata(adata)
    entry = adata.uns.get(key)
    if entry is None:
        raise KeyError(
            f"adata.uns has no entry {key!r}. Run `celldyn.tl.flecs(adata, key_added={key!r})` "
            "first."
        )
    members = entry.get("models") if isinstance(entry, Mapping) else None
    if not isinstance(members, Mapping) or not members:
        raise KeyError(
            f"adata.uns[{key!r}] has no fitted models ('models'); refit with `celldyn.tl.flecs`."
        )
    names = sorted(members, key=int)
    for name in names:
        n_genes = int(members[name].get("n_genes", -1))
        if n_genes != adata.n_vars:
            raise ValueError(
                f"adata.uns[{key!r}]['models'][{name!r}] models {n_genes} genes but adata has "
                f"{adata.n_vars}; the genes must be those the model was fitted on."
            )
    return {name: members[name] for name in names}


def load_flecs_fields(adata: AnnData, key: str = _keys.FLECS) -> list:
    """Rebuild every fitted ensemble member of :func:`celldyn.tl.flecs`.

    Parameters
    ----------
    adata
        Annotated data matrix with ``uns[key]['models']``.
    key
        ``key_added`` of :func:`celldyn.tl.flecs`.

    Returns
    -------
    One :class:`~celldyn.nn.GRNVectorField` per member, in member order (float32, CPU,
    evaluation mode).
    """
    from .nn import GRNVectorField

    models = stored_flecs_models(adata, key)
    return [GRNVectorField.from_arrays(arrays).eval() for arrays in models.values()]
