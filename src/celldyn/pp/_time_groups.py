"""Ordered time groups from experimental time or pseudotime."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _keys
from .._docs import fill_doc
from .._readers import read_time_groups
from .._validate import check_adata, check_int, check_obs_key
from .._write import write_results

_DEFAULT_N_GROUPS = 10
_DPT_N_DCS = 10
"""Diffusion components of DPT (scanpy's default), fewer on graphs of fewer cells."""
_MIN_DPT_CELLS = 4


@fill_doc
def time_groups(
    adata: AnnData,
    *,
    time_key: str | None = None,
    pseudotime_key: str | None = None,
    n_groups: int | None = None,
    root: str | int | None = None,
    key_added: str = _keys.TIME,
    copy: bool = False,
) -> AnnData | None:
    """Assign every cell an ordered, numeric time group.

    Pass exactly one of ``time_key`` (experimental time) or ``pseudotime_key``.

    - ``time_key``: a numeric column, or an ordered categorical (ordered by category order;
      the group value is the number the labels parse to, else the category position).
    - ``pseudotime_key``: cells are binned into ``n_groups`` quantile bins of (nearly) equal
      size; the value of a group is the mean pseudotime of its cells. Tied pseudotimes always
      share a bin, so ties can merge bins: fewer groups are then returned, with a warning
      (never an empty group).
    - ``pseudotime_key='dpt_pseudotime'`` when that column is missing, or whenever ``root`` is
      given: diffusion pseudotime is computed first (:func:`scanpy.tl.diffmap` and
      :func:`scanpy.tl.dpt` on a private copy; needs :func:`scanpy.pp.neighbors`) from the
      root cell ``root``, else ``adata.uns['iroot']``; 10 diffusion components (fewer, at most
      ``n_obs - 1``, on small graphs; at least 4 cells are needed).

    ``obs[key_added]`` is written as ``float64`` (not categorical) because the models need the
    numeric time; :func:`celldyn._readers.read_time_groups` reads it back, and the original
    labels are kept in ``uns[key_added]['labels']``.

    Parameters
    ----------
    {adata}
    time_key
        Column of ``adata.obs`` with experimental time (numeric or ordered categorical).
    pseudotime_key
        Column of ``adata.obs`` with a continuous pseudotime.
    n_groups
        Number of quantile bins of the pseudotime (an integer >= 2; ``None``: 10). Only
        for ``pseudotime_key``: with ``time_key`` every distinct time is a group, and
        passing ``n_groups`` raises a :class:`ValueError`.
    root
        Root cell for DPT: an ``obs`` name or an integer position.
    key_added
        ``obs`` column and ``uns`` key to write.
    {copy}

    Returns
    -------
    The new AnnData when ``copy=True``, else ``None``; ``adata`` gains:

    ``obs[key_added]``
        ``float64`` time value of each cell's group.
    ``obs['dpt_pseudotime']``
        Only when DPT was computed.
    ``uns[key_added]``
        ``'params'``, ``'values'`` (sorted group values), ``'labels'`` (original labels or
        pseudotime ranges, as strings) and ``'sizes'`` (cells per group).
    """
    check_adata(adata)
    if (time_key is None) == (pseudotime_key is None):
        raise ValueError("Pass exactly one of `time_key` or `pseudotime_key`.")
    if time_key is not None and n_groups is not None:
        raise ValueError(
            f"`n_groups` applies only to `pseudotime_key` (got n_groups={n_groups!r} with "
            f"time_key={time_key!r}): every distinct time of `time_key` is a group."
        )
    if pseudotime_key is not None:
        n_groups = check_int(_DEFAULT_N_GROUPS if n_groups is None else n_groups, "n_groups", 2)
    compute_dpt = pseudotime_key == _keys.DPT_PSEUDOTIME and (
        root is not None or pseudotime_key not in adata.obs.columns
    )
    if root is not None and not compute_dpt:
        raise ValueError(f"`root` is only used with pseudotime_key={_keys.DPT_PSEUDOTIME!r}.")

    obs = {}
    if time_key is not None:
        groups = read_time_groups(adata, time_key)
        values, codes = groups.values, groups.codes
        labels = np.array([_label(x) for x in groups.labels], dtype=object)
    else:
        if compute_dpt:
            pseudotime = _dpt(adata, root)
            obs[_keys.DPT_PSEUDOTIME] = pseudotime
        else:
            pseudotime = _read_pseudotime(adata, pseudotime_key)
        values, labels, codes = _quantile_bins(pseudotime, n_groups)

    obs[key_added] = values[codes]
    params = {
        "time_key": time_key,
        "pseudotime_key": pseudotime_key,
        "n_groups": n_groups,
        "root": root if root is None or isinstance(root, str) else int(root),
    }
    info = {
        "params": params,
        "values": values,
        "labels": labels,
        "sizes": np.bincount(codes, minlength=len(values)),
    }
    return write_results(adata, copy=copy, obs=obs, uns={key_added: info})


def _label(x: object) -> str:
    """Group label as a string (``2.0`` → ``'2'``)."""
    return f"{x:g}" if isinstance(x, float | np.floating) else str(x)


def _read_pseudotime(adata: AnnData, key: str) -> np.ndarray:
    """``adata.obs[key]`` as finite ``float64``."""
    check_obs_key(adata, key)
    try:
        pseudotime = pd.to_numeric(adata.obs[key]).to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"adata.obs[{key!r}] must be numeric.") from err
    if not np.all(np.isfinite(pseudotime)):
        n_bad = int(np.sum(~np.isfinite(pseudotime)))
        raise ValueError(f"adata.obs[{key!r}] has {n_bad} NaN or infinite values.")
    return pseudotime


def _quantile_bins(
    pseudotime: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Equal-size bins of sorted pseudotime, ties kept together; empty bins dropped."""
    n = len(pseudotime)
    order = np.argsort(pseudotime, kind="stable")
    ranked = pseudotime[order]
    bins = np.arange(n) * n_groups // n
    # a tied value goes to the bin of its first occurrence, so ties never straddle bins
    bins = bins[np.searchsorted(ranked, ranked, side="left")]
    _, compact = np.unique(bins, return_inverse=True)
    codes = np.empty(n, dtype=np.int64)
    codes[order] = compact
    found = int(compact.max()) + 1
    if found < 2:
        raise ValueError("The pseudotime has a single distinct value: no groups can be formed.")
    if found < n_groups:
        warnings.warn(
            f"Tied pseudotime values merged bins: {found} groups instead of {n_groups}.",
            UserWarning,
            stacklevel=3,
        )
    sizes = np.bincount(codes)
    values = np.bincount(codes, weights=pseudotime) / sizes
    lo = np.full(found, np.inf)
    hi = np.full(found, -np.inf)
    np.minimum.at(lo, codes, pseudotime)
    np.maximum.at(hi, codes, pseudotime)
    labels = np.array([f"{a:.3g}-{b:.3g}" for a, b in zip(lo, hi, strict=True)], dtype=object)
    return values, labels, codes


def _dpt(adata: AnnData, root: str | int | None) -> np.ndarray:
    """Diffusion pseudotime from ``root`` computed on a minimal private copy of the graph."""
    import scanpy as sc

    if "neighbors" not in adata.uns:
        raise KeyError(
            "adata.uns has no entry 'neighbors': DPT needs a kNN graph, "
            "run `sc.pp.neighbors(adata)` first."
        )
    neighbors = dict(adata.uns["neighbors"])
    graph_keys = [
        neighbors.get("connectivities_key", "connectivities"),
        neighbors.get("distances_key", "distances"),
    ]
    for key in graph_keys:
        if key not in adata.obsp:
            raise KeyError(f"adata.obsp has no {key!r}: rerun `sc.pp.neighbors(adata)`.")
    iroot = _root_index(adata, root)
    if adata.n_obs < _MIN_DPT_CELLS:
        raise ValueError(
            f"DPT needs at least {_MIN_DPT_CELLS} cells (a diffusion map of 3 or more "
            f"components), got {adata.n_obs}."
        )

    tmp = AnnData(obs=pd.DataFrame(index=adata.obs_names))
    for key in graph_keys:
        tmp.obsp[key] = adata.obsp[key]
    tmp.uns["neighbors"] = neighbors
    tmp.uns["iroot"] = iroot
    sc.tl.diffmap(tmp)
    # scanpy's diffmap has at most n_obs - 1 components; dpt's default n_dcs=10 needs 10
    sc.tl.dpt(tmp, n_dcs=min(_DPT_N_DCS, tmp.obsm["X_diffmap"].shape[1]))
    pseudotime = tmp.obs[_keys.DPT_PSEUDOTIME].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(pseudotime)):
        n_bad = int(np.sum(~np.isfinite(pseudotime)))
        raise ValueError(
            f"DPT is undefined for {n_bad} cell(s) not connected to the root; "
            "use a connected graph (more neighbors) or drop those cells."
        )
    return pseudotime


def _root_index(adata: AnnData, root: str | int | None) -> int:
    """Position of the root cell from ``root`` or ``adata.uns['iroot']``."""
    if root is None:
        if "iroot" not in adata.uns:
            raise ValueError(
                "DPT needs a root cell: pass `root` (an obs name or position) "
                "or set `adata.uns['iroot']`."
            )
        root = adata.uns["iroot"]
    if isinstance(root, str):
        if root not in adata.obs_names:
            raise KeyError(f"Root cell {root!r} is not in adata.obs_names.")
        loc = adata.obs_names.get_loc(root)
        if not isinstance(loc, int | np.integer):
            raise ValueError(f"Root cell name {root!r} is not unique in adata.obs_names.")
        return int(loc)
    if isinstance(root, bool) or not isinstance(root, int | np.integer):
        raise TypeError(f"`root` must be an obs name or an integer position, got {root!r}.")
    if not 0 <= root < adata.n_obs:
        raise ValueError(f"Root position {root} is out of range for {adata.n_obs} cells.")
    return int(root)
