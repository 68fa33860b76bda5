"""Input checks that raise clear errors before anything is written into AnnData."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import scipy.sparse as sp
from anndata import AnnData


def check_adata(adata: object) -> AnnData:
    """Raise a :class:`TypeError` unless ``adata`` is an :class:`~anndata.AnnData`."""
    if not isinstance(adata, AnnData):
        raise TypeError(f"Expected an AnnData object, got {type(adata).__name__}.")
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(f"AnnData is empty (shape {adata.shape}).")
    return adata


def check_obs_key(adata: AnnData, key: str) -> None:
    """Raise a :class:`KeyError` naming ``key`` if it is not a column of ``adata.obs``."""
    if key not in adata.obs.columns:
        raise KeyError(
            f"adata.obs has no column {key!r}. Available columns: {list(adata.obs.columns)}."
        )


def check_uns_key(adata: AnnData, key: str, hint: str = "") -> None:
    """Raise a :class:`KeyError` if ``key`` is not in ``adata.uns``."""
    if key not in adata.uns:
        raise KeyError(f"adata.uns has no entry {key!r}. {hint}".strip())


def check_varp_key(adata: AnnData, key: str, hint: str = "") -> None:
    """Raise a :class:`KeyError` if ``key`` is not in ``adata.varp``."""
    if key not in adata.varp:
        raise KeyError(f"adata.varp has no entry {key!r}. {hint}".strip())


def check_layer(adata: AnnData, layer: str | None) -> None:
    """Raise a :class:`KeyError` if ``layer`` is given but absent from ``adata.layers``."""
    if layer is not None and layer not in adata.layers:
        raise KeyError(f"adata.layers has no layer {layer!r}. Available: {list(adata.layers)}.")


def check_expression(adata: AnnData, layer: str | None) -> np.ndarray | sp.spmatrix:
    """Return ``adata.X`` (``layer=None``) or ``adata.layers[layer]`` after checking it.

    Raises a :class:`KeyError` for a missing layer and a :class:`ValueError` naming the matrix
    when it holds NaN or infinite values.
    """
    check_layer(adata, layer)
    x = adata.X if layer is None else adata.layers[layer]
    check_finite(x, "adata.X" if layer is None else f"adata.layers[{layer!r}]")
    return x


def check_var_names(adata: AnnData, var_names: Iterable[object], what: str) -> None:
    """Raise a :class:`ValueError` unless ``adata.var_names`` are ``var_names`` in order."""
    expected = [str(g) for g in var_names]
    if list(adata.var_names.astype(str)) != expected:
        unknown = sorted(set(adata.var_names.astype(str)) - set(expected))[:5]
        missing = sorted(set(expected) - set(adata.var_names.astype(str)))[:5]
        raise ValueError(
            f"adata.var_names must be the {len(expected)} genes of {what}, in the same order; "
            f"got {adata.n_vars} (unknown: {unknown}, missing: {missing})."
        )


def check_unique_var_names(adata: AnnData) -> None:
    """Raise a :class:`ValueError` naming ``adata.var_names`` if they are not unique."""
    if not adata.var_names.is_unique:
        duplicated = adata.var_names[adata.var_names.duplicated()].unique().tolist()
        raise ValueError(
            f"adata.var_names are not unique (duplicated: {duplicated[:5]}); run "
            "`adata.var_names_make_unique()` first."
        )


BACKED_BLOCK = 8192
"""Rows per read when a matrix of a backed AnnData is checked or reduced block by block."""


def is_backed(x: object) -> bool:
    """Whether ``x`` is a matrix of a backed AnnData (an h5py dataset or anndata's sparse one)."""
    return hasattr(x, "to_memory") or type(x).__module__.startswith("h5py")


def in_memory(x: object) -> object:
    """``x``, with a sparse matrix of a backed AnnData (``read_h5ad(..., backed='r')``) read whole.

    Dense backed matrices (h5py datasets) are read by :func:`numpy.asarray`; anndata's backed
    sparse datasets are not (they become object arrays), so they are read here.
    """
    return x.to_memory() if hasattr(x, "to_memory") else x


def get_rep(adata: AnnData, rep: str, *, min_dims: int = 1) -> np.ndarray:
    """Return ``adata.obsm[rep]`` as a dense float array after checking it.

    Parameters
    ----------
    adata
        Annotated data matrix.
    rep
        Key in ``adata.obsm`` (``'X'`` means ``adata.X``).
    min_dims
        Minimum number of columns required.

    Returns
    -------
    Dense ``float64`` array of shape ``(n_obs, n_dims)``.
    """
    if rep == "X":
        x = adata.X
    elif rep in adata.obsm:
        x = adata.obsm[rep]
    else:
        raise KeyError(
            f"adata.obsm has no representation {rep!r}. Available: {list(adata.obsm)}. "
            "Run `sc.pp.pca` (or `celldyn.pp.recipe`) first or pass another `rep`."
        )
    x = in_memory(x)
    x = x.toarray() if sp.issparse(x) else np.asarray(x)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < min_dims:
        raise ValueError(
            f"Representation {rep!r} has shape {x.shape}; at least {min_dims} columns are needed."
        )
    check_finite(x, f"adata.obsm[{rep!r}]" if rep != "X" else "adata.X")
    return x


def check_finite(x: np.ndarray | sp.spmatrix, name: str) -> None:
    """Raise a :class:`ValueError` naming ``name`` if ``x`` holds NaN or infinite values.

    A matrix of a backed AnnData is checked :data:`BACKED_BLOCK` rows at a time, never
    read whole.
    """
    blocks = (x[s : s + BACKED_BLOCK] for s in range(0, x.shape[0], BACKED_BLOCK))
    n_bad = sum(_n_not_finite(block) for block in (blocks if is_backed(x) else [x]))
    if n_bad:
        raise ValueError(f"{name} contains {n_bad} NaN or infinite values.")


def _n_not_finite(x: np.ndarray | sp.spmatrix) -> int:
    data = x.data if sp.issparse(x) else np.asarray(x)
    if data.dtype.kind not in "fc":
        return 0
    return int(np.size(data) - np.count_nonzero(np.isfinite(data)))


def check_in(value: object, allowed: Iterable[object], name: str) -> None:
    """Raise a :class:`ValueError` unless ``value`` is one of ``allowed``."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {allowed}, got {value!r}.")


def check_positive(value: float, name: str, *, strict: bool = True) -> None:
    """Raise a :class:`ValueError` unless ``value`` is a positive (or non-negative) number."""
    kind = "positive" if strict else "non-negative"
    try:
        number = None if isinstance(value, bool | str | bytes) else float(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not np.isfinite(number) or (number <= 0 if strict else number < 0):
        raise ValueError(f"`{name}` must be a finite {kind} number, got {value!r}.")


def check_int(value: object, name: str, minimum: int) -> int:
    """Return ``value`` as an int; :class:`ValueError` unless it is an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def gene_indices(adata: AnnData, genes, name: str = "genes") -> list[int]:
    """Positions in ``adata.var_names`` of one gene name or a list of them (unique, non-empty)."""
    names = [genes] if isinstance(genes, str) else list(genes)
    if not names:
        raise ValueError(f"`{name}` is empty; give at least one gene name.")
    unknown = [g for g in names if g not in adata.var_names]
    if unknown:
        raise KeyError(f"`{name}` has genes not in adata.var_names: {unknown}.")
    if len(set(names)) != len(names):
        raise ValueError(f"`{name}` has repeated genes: {names}.")
    return [int(i) for i in adata.var_names.get_indexer(names)]
