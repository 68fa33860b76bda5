"""Ordered time groups read from ``adata.obs``: the shared reader used by pp, tl and models."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from anndata import AnnData

from ._validate import check_obs_key


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
