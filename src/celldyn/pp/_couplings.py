"""Optimal-transport couplings between consecutive time groups, and minibatch OT matching."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

from .. import _keys
from .._docs import fill_doc
from .._readers import read_time_groups
from .._validate import check_adata, check_in, check_int, check_positive, check_uns_key, get_rep
from .._write import write_results

_KEPT_MASS = 0.99
"""Share of each row's and each column's mass kept when an entropic plan is sparsified..."""
_MAX_KEPT = 32
"""... by at most this many entries per row and per column."""
_EMD_MAX_ITER = 10**9
"""Network-simplex iteration cap of ``ot.emd``: high enough to always reach the optimum."""


def uniform_sample(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` positions in ``range(n)``, as uniform as possible, in random order.

    Every position appears ``size // n`` times, plus ``size % n`` distinct random ones once
    more: subsampling without replacement when ``size <= n``, stratified upsampling else.
    """
    reps = np.tile(np.arange(n, dtype=np.int64), size // n)
    extra = rng.choice(n, size % n, replace=False).astype(np.int64)
    return rng.permutation(np.concatenate([reps, extra]))


def match(
    x_source: np.ndarray,
    x_target: np.ndarray,
    sources: np.ndarray,
    *,
    batch_size: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Match each of the given source cells to a target cell by minibatch exact OT.

    Only the needed matches are computed. The ``m`` requested sources are split at random
    into ``ceil(m / batch_size)`` batches. Each batch is padded with uniformly drawn extra
    source cells up to ``max(batch, min(batch_size, n_target))`` cells and matched to as
    many uniformly drawn target cells (without replacement when possible) by exact OT with
    squared-Euclidean cost — between two equal-size uniform sets that is an assignment
    problem. When a batch covers the whole target group this is the FLeCS reference's
    matching (source resampled to the target's size, then OT); otherwise it is minibatch OT.

    Parameters
    ----------
    x_source, x_target
        Coordinates of the cells of the source and target group.
    sources
        Positions (rows of ``x_source``) that need a match; repeats allowed.
    batch_size
        Cells per assignment problem (cost grows about cubically with it).
    rng
        Random generator.

    Returns
    -------
    Positions (rows of ``x_target``) matched to each entry of ``sources``.
    """
    sources = np.asarray(sources, dtype=np.int64)
    n_s, n_t = len(x_source), len(x_target)
    out = np.empty(len(sources), dtype=np.int64)
    order = rng.permutation(len(sources))
    for part in np.array_split(order, -(-len(sources) // batch_size)):
        size = max(len(part), min(batch_size, n_t))
        src = np.concatenate([sources[part], uniform_sample(n_s, size - len(part), rng)])
        tgt = uniform_sample(n_t, size, rng)
        rows, cols = linear_sum_assignment(cdist(x_source[src], x_target[tgt], "sqeuclidean"))
        out[part] = tgt[cols[np.argsort(rows)][: len(part)]]
    return out


def _mass_split(
    n: int, n_batches: int, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split ``n`` cells of mass ``1/n`` into ``n_batches`` batches of mass ``1/n_batches``.

    Cells are shuffled and laid end to end on ``[0, 1)``; batch ``b`` takes the cells (or
    parts of cells) covering ``[b / n_batches, (b + 1) / n_batches)``. A cell cut by a batch
    boundary is shared between two batches, so the batch masses sum to every cell's mass.
    Returns ``(cells, masses)`` per batch; integer arithmetic keeps the masses exact.
    """
    perm = rng.permutation(n)
    out = []
    for b in range(n_batches):
        lo, hi = b * n, (b + 1) * n  # batch interval, in units of 1 / (n * n_batches)
        first, last = lo // n_batches, -(-hi // n_batches)  # cells overlapping the interval
        pos = np.arange(first, last)
        overlap = np.minimum((pos + 1) * n_batches, hi) - np.maximum(pos * n_batches, lo)
        out.append((perm[pos], overlap / (n * n_batches)))
    return out


def _sparsify(plan: np.ndarray, a: np.ndarray, b: np.ndarray) -> sp.coo_matrix:
    """Keep the entries of a dense plan that carry its mass, then restore its marginals.

    Per row and per column, the largest entries are kept until they hold ``_KEPT_MASS`` of
    its mass or number ``_MAX_KEPT`` (union of the row and the column choices, so at most
    ``_MAX_KEPT * (n_rows + n_cols)`` entries); the kept support is then rescaled by
    iterative proportional fitting so that its marginals are ``a`` and ``b`` again.
    """

    def top_mass(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n_top = min(_MAX_KEPT, p.shape[1])
        top = np.argpartition(-p, n_top - 1, axis=1)[:, :n_top]
        vals = np.take_along_axis(p, top, axis=1)
        order = np.argsort(-vals, axis=1)
        top = np.take_along_axis(top, order, axis=1)
        vals = np.take_along_axis(vals, order, axis=1)
        before = np.cumsum(vals, axis=1) - vals
        keep = before < _KEPT_MASS * p.sum(axis=1)[:, None]  # mass held before this entry
        rows = np.broadcast_to(np.arange(p.shape[0])[:, None], top.shape)
        return rows[keep], top[keep]

    r1, c1 = top_mass(plan)
    c2, r2 = top_mass(plan.T)
    n_t = plan.shape[1]
    keys = np.unique(np.concatenate([r1, r2]) * n_t + np.concatenate([c1, c2]))
    rows, cols = keys // n_t, keys % n_t
    vals = plan[rows, cols]
    for _ in range(1000):
        vals *= (a / np.bincount(rows, vals, len(a)))[rows]
        vals *= (b / np.bincount(cols, vals, len(b)))[cols]
        if np.max(np.abs(np.bincount(rows, vals, len(a)) / a - 1)) < 1e-10:
            break
    return sp.coo_matrix((vals, (rows, cols)), shape=plan.shape)


def _solve(
    xs: np.ndarray, xt: np.ndarray, a: np.ndarray, b: np.ndarray, method: str, reg: float
) -> sp.coo_matrix:
    """OT plan between weighted point sets, squared-Euclidean cost divided by its mean."""
    import ot

    cost = cdist(xs, xt, "sqeuclidean")
    scale = cost.mean()
    if scale > 0:
        cost /= scale
    total = a.sum()
    a, b = a / total, b / total
    if method == "exact":
        return sp.coo_matrix(ot.emd(a, b, cost, numItermax=_EMD_MAX_ITER) * total)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(did not converge|numerical errors).*")
        plan = ot.sinkhorn(a, b, cost, reg)
        if not np.all(np.isfinite(plan)) or plan.sum() <= 0:  # underflow: log-domain solver
            plan = ot.sinkhorn(a, b, cost, reg, method="sinkhorn_log")
    return _sparsify(plan * total, a * total, b * total)


def pair_plan(
    xs: np.ndarray,
    xt: np.ndarray,
    *,
    method: str,
    reg: float,
    max_cells: int,
    batch_size: int,
    rng: np.random.Generator,
) -> tuple[sp.coo_matrix, int]:
    """OT plan with uniform marginals between two groups, minibatched when they are large.

    Returns the ``(n_source, n_target)`` plan (total mass 1) and the number of batches used.
    """
    n_s, n_t = len(xs), len(xt)
    if max(n_s, n_t) <= max_cells:
        src = [(np.arange(n_s), np.full(n_s, 1 / n_s))]
        tgt = [(np.arange(n_t), np.full(n_t, 1 / n_t))]
    else:
        n_batches = -(-max(n_s, n_t) // batch_size)
        src, tgt = _mass_split(n_s, n_batches, rng), _mass_split(n_t, n_batches, rng)
    rows, cols, vals = [], [], []
    for (si, sa), (ti, tb) in zip(src, tgt, strict=True):
        plan = _solve(xs[si], xt[ti], sa, tb, method, reg)
        rows.append(si[plan.row])
        cols.append(ti[plan.col])
        vals.append(plan.data)
    plan = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_s, n_t)
    )
    plan.sum_duplicates()
    return plan, len(src)


@fill_doc
def couplings(
    adata: AnnData,
    *,
    time_key: str = _keys.TIME,
    rep: str = "X_pca",
    method: str = "exact",
    reg: float = 0.05,
    max_cells: int = 5000,
    batch_size: int | None = None,
    random_state: int = 0,
    key_added: str = _keys.COUPLINGS,
    copy: bool = False,
) -> AnnData | None:
    """Optimal-transport couplings between consecutive time groups.

    For each pair of consecutive groups ``t_k -> t_{k+1}`` (read with
    :func:`celldyn._readers.read_time_groups`), a transport plan with uniform marginals is
    computed on ``adata.obsm[rep]`` with the squared Euclidean cost. The cost matrix is
    divided by its mean in every OT problem (exact OT does not change; ``reg`` is relative
    to the mean squared distance between the two groups).

    - ``method='exact'``: :func:`ot.emd` (network simplex, run to optimality).
    - ``method='sinkhorn'``: :func:`ot.sinkhorn` (entropic, ``reg``; log-domain if the plain
      iterations underflow), then sparsified: per
      source row and per target column, the largest entries carrying 99% of its mass are kept
      and the kept entries are rescaled (iterative proportional fitting) so that the
      marginals are uniform again.
    - When a group has more than ``max_cells`` cells, minibatch OT: both groups are shuffled
      and cut into ``ceil(max(n_k, n_{k+1}) / batch_size)`` batches of equal mass (a cell on
      a cut is shared by two batches), batch ``i`` of ``t_k`` is transported to batch ``i``
      of ``t_{k+1}``, and the batch plans are summed. The marginals stay exactly uniform;
      the plan approximates the full one (minibatch OT, Fatras et al. 2020).

    Parameters
    ----------
    {adata}
    time_key
        Column of ``adata.obs`` with ordered time groups.
    rep
        Representation in ``adata.obsm`` (``'X'`` for ``adata.X``).
    method
        ``'exact'`` or ``'sinkhorn'``.
    reg
        Entropic regularisation of ``'sinkhorn'`` (relative to the mean squared distance).
    max_cells
        Largest group solved as one OT problem.
    batch_size
        Cells per minibatch for larger groups; defaults to ``max_cells``.
    random_state
        Seed of the minibatch shuffles.
    key_added
        Key in ``adata.obsp`` and ``adata.uns``.
    {copy}

    Returns
    -------
    The new AnnData when ``copy=True``, else ``None``; ``adata`` gains:

    ``obsp[key_added]``
        Sparse CSR ``(n_obs, n_obs)`` plan: entry ``(i, j)`` is the mass sent from cell ``i``
        at ``t_k`` to cell ``j`` at ``t_{k+1}``; nonzero only between consecutive groups;
        each block sums to 1, with row sums ``1 / n_k`` and column sums ``1 / n_{k+1}``.
    ``uns[key_added]``
        ``'params'``, ``'groups'`` (group time values), ``'cost'`` (transport cost
        ``sum_ij P_ij ||x_i - x_j||^2`` of each pair, in squared units of ``rep``) and
        ``'n_batches'`` (OT problems per pair; 1 = not minibatched).
    """
    check_adata(adata)
    check_in(method, ("exact", "sinkhorn"), "method")
    check_positive(reg, "reg")
    max_cells = check_int(max_cells, "max_cells", 2)
    batch_size = max_cells if batch_size is None else check_int(batch_size, "batch_size", 2)
    random_state = check_int(random_state, "random_state", 0)
    groups = read_time_groups(adata, time_key)
    x = get_rep(adata, rep)

    rng = np.random.default_rng(random_state)
    rows, cols, vals, costs, n_batches = [], [], [], [], []
    for g in range(groups.n_groups - 1):
        src, tgt = groups.members(g), groups.members(g + 1)
        plan, n_b = pair_plan(
            x[src],
            x[tgt],
            method=method,
            reg=reg,
            max_cells=max_cells,
            batch_size=batch_size,
            rng=rng,
        )
        sq = np.sum((x[src[plan.row]] - x[tgt[plan.col]]) ** 2, axis=1)
        costs.append(float(np.dot(plan.data, sq)))
        n_batches.append(n_b)
        rows.append(src[plan.row])
        cols.append(tgt[plan.col])
        vals.append(plan.data)
    n = adata.n_obs
    matrix = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )
    params = {
        "time_key": time_key,
        "rep": rep,
        "method": method,
        "reg": float(reg),
        "max_cells": max_cells,
        "batch_size": batch_size,
        "random_state": random_state,
    }
    info = {
        "params": params,
        "groups": groups.values.copy(),
        "cost": np.asarray(costs),
        "n_batches": np.asarray(n_batches, dtype=np.int64),
    }
    return write_results(adata, copy=copy, obsp={key_added: matrix}, uns={key_added: info})


def couplings_for_cellrank(adata: AnnData, *, key: str = _keys.COUPLINGS) -> dict[tuple, AnnData]:
    """Return the couplings of :func:`celldyn.pp.couplings` per time pair, as cellrank reads them.

    cellrank's ``RealTimeKernel`` takes ``couplings``: a dict keyed by ``(t_k, t_{k+1})``
    pairs of categories of its categorical ``time_key`` column, each an AnnData whose ``X``
    is the source x target plan, ``obs_names`` the source cells and ``var_names`` the target
    cells. ``obsp[key]`` itself is a transport plan over all cells, not a transition matrix:
    the cells of the last time group send no mass, so cellrank's ``PrecomputedKernel``
    rejects it; ``RealTimeKernel`` row-normalises the blocks and adds transitions within the
    last group (its ``self_transitions``).

    Parameters
    ----------
    adata
        Annotated data matrix with ``obsp[key]`` and ``uns[key]`` from
        :func:`celldyn.pp.couplings`, and the time column they were computed from.
    key
        ``key_added`` of :func:`celldyn.pp.couplings`.

    Returns
    -------
    ``{(t_k, t_{k+1}): AnnData}`` for each pair of consecutive time groups; the keys are the
    labels of ``adata.obs[time_key]`` (``time_key`` as recorded in ``uns[key]['params']``),
    so ``adata.obs[time_key].astype('category')`` is the matching cellrank time column. Each
    ``X`` is a sparse CSR block (total mass 1, row sums ``1 / n_k``). Nothing is written.

    Examples
    --------
    >>> adata.obs["day"] = adata.obs["celldyn_time"].astype("category")  # doctest: +SKIP
    >>> rtk = cr.kernels.RealTimeKernel(  # doctest: +SKIP
    ...     adata, time_key="day", couplings=cd.pp.couplings_for_cellrank(adata)
    ... ).compute_transition_matrix()
    """
    check_adata(adata)
    check_uns_key(adata, key, "Run `celldyn.pp.couplings` first.")
    if key not in adata.obsp:
        raise KeyError(f"adata.obsp has no entry {key!r}. Run `celldyn.pp.couplings` first.")
    time_key = adata.uns[key].get("params", {}).get("time_key")
    if time_key is None:
        raise KeyError(f"adata.uns[{key!r}]['params'] records no 'time_key'.")
    if not adata.obs_names.is_unique:
        raise ValueError("adata.obs_names are not unique; run `adata.obs_names_make_unique()`.")
    groups = read_time_groups(adata, time_key)
    stored = np.asarray(adata.uns[key].get("groups", []), dtype=np.float64)
    plan = sp.csr_matrix(adata.obsp[key])
    entries = plan.tocoo()
    consecutive = groups.codes[entries.col] == groups.codes[entries.row] + 1
    if not np.array_equal(stored, groups.values) or not consecutive[entries.data != 0].all():
        raise ValueError(
            f"adata.obsp[{key!r}] does not match the time groups of adata.obs[{time_key!r}] "
            "(changed since `celldyn.pp.couplings`?); rerun `celldyn.pp.couplings`."
        )
    column = adata.obs[time_key]
    labels = []
    for g in range(groups.n_groups):
        found = pd.unique(column.iloc[groups.members(g)])
        if len(found) != 1:
            raise ValueError(
                f"adata.obs[{time_key!r}] has several labels {list(found)} for one time group; "
                "cellrank needs one category per group."
            )
        labels.append(found[0].item() if isinstance(found[0], np.generic) else found[0])
    out = {}
    for g in range(groups.n_groups - 1):
        src, tgt = groups.members(g), groups.members(g + 1)
        out[labels[g], labels[g + 1]] = AnnData(
            plan[src][:, tgt],
            obs=pd.DataFrame(index=adata.obs_names[src]),
            var=pd.DataFrame(index=adata.obs_names[tgt]),
        )
    return out
