"""Cell trajectories through time groups: FLeCS "quantile" (OT chains), "knn" (OT + kNN paths)."""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from .. import _keys
from .._docs import fill_doc
from .._logging import logger
from .._readers import TimeGroups, read_time_groups
from .._validate import check_adata, check_in, check_int, get_rep
from .._write import write_results
from ._couplings import match, uniform_sample
from ._knn import forward_knn_graph, shortest_paths


def _allocate(total: int, weights: np.ndarray) -> np.ndarray:
    """Split ``total`` into integers proportional to ``weights`` (largest remainders)."""
    share = total * weights / weights.sum()
    out = np.floor(share).astype(np.int64)
    out[np.argsort(out - share, kind="stable")[: total - out.sum()]] += 1
    return out


def knn_pair_paths(
    x_source: np.ndarray,
    x_target: np.ndarray,
    sources: np.ndarray,
    targets: np.ndarray,
    *,
    k: int,
) -> tuple:
    """Shortest kNN-graph paths from source to target cells of two consecutive groups.

    The graph is :func:`~celldyn.pp._knn.forward_knn_graph` on the two groups' cells
    (source group first, so node ``i < n_source`` is source cell ``i`` and node
    ``n_source + j`` is target cell ``j``); paths are exact shortest paths (bidirectional
    A*, :func:`~celldyn.pp._knn.shortest_paths`). An unreachable target is replaced by the
    reachable target-group cell closest to it, or, if none is reachable, by the direct jump
    ``[source, target]``.

    Returns
    -------
    ``graph`` (CSR of edge lengths over the local nodes), ``nodes`` and ``offsets`` (path
    ``q`` is ``nodes[offsets[q]:offsets[q + 1]]``, local node ids), ``dist`` (path lengths)
    and ``status`` (0 reached, 1 redirected, 2 direct jump).
    """
    n_source = len(x_source)
    x_pair = np.concatenate([x_source, x_target])
    graph = forward_knn_graph(x_pair, n_source, k)
    nodes, offsets, dist, status = shortest_paths(
        graph, x_pair, sources, n_source + np.asarray(targets), fallback_start=n_source
    )
    return graph, nodes, offsets, dist, status


def _resample(
    x: np.ndarray, nodes: np.ndarray, offsets: np.ndarray, length: int, t0: float, t1: float
) -> tuple[np.ndarray, np.ndarray]:
    """Pick ``length`` evenly spaced cells of every path and their arc-length times.

    Position ``j`` of a path with ``n`` cells is its cell ``round(j (n - 1) / (length - 1))``
    (cells repeat when ``n < length``). Its time is ``t0 + (t1 - t0) s / S`` with ``s`` the
    path's arc length (sum of Euclidean steps) up to that cell and ``S`` its total length.
    """
    starts, n_cells = offsets[:-1], np.diff(offsets)
    frac = np.arange(length) / (length - 1)
    pos = starts[:, None] + np.floor(frac[None, :] * (n_cells[:, None] - 1) + 0.5).astype(np.int64)
    steps = np.zeros(len(nodes))
    steps[1:] = np.linalg.norm(x[nodes[1:]] - x[nodes[:-1]], axis=1)
    steps[starts] = 0.0
    arc = np.cumsum(steps)
    arc -= np.repeat(arc[starts], n_cells)
    total = arc[offsets[1:] - 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        u = np.where(total[:, None] > 0, arc[pos] / total[:, None], frac[None, :])
    return nodes[pos], t0 + (t1 - t0) * u


def _knn_trajectories(
    x: np.ndarray,
    groups: TimeGroups,
    n_trajectories: int,
    length: int,
    k: int,
    batch_size: int,
    rng: np.random.Generator,
) -> dict:
    sizes = np.bincount(groups.codes, minlength=groups.n_groups)
    per_pair = _allocate(n_trajectories, sizes[1:].astype(np.float64))
    indices, times, segment, n_cells, status = [], [], [], [], []
    for g in np.flatnonzero(per_pair):
        src, tgt = groups.members(g), groups.members(g + 1)
        sources = uniform_sample(len(src), int(per_pair[g]), rng)
        targets = match(x[src], x[tgt], sources, batch_size=batch_size, rng=rng)
        cells = np.concatenate([src, tgt])
        _, nodes, offsets, _, st = knn_pair_paths(x[src], x[tgt], sources, targets, k=k)
        idx, tim = _resample(x, cells[nodes], offsets, length, *groups.values[g : g + 2])
        indices.append(idx)
        times.append(tim)
        segment.append(np.full(len(sources), g, dtype=np.int64))
        n_cells.append(np.diff(offsets))
        status.append(st)
    status = np.concatenate(status)
    n_cells = np.concatenate(n_cells)
    counts = {
        "n_redirected": int(np.sum(status == 1)),
        "n_direct": int(np.sum(status == 2)),
        "n_short": int(np.sum(n_cells < length)),
    }
    if counts["n_redirected"] or counts["n_direct"]:
        logger.warning(
            "%d path(s) could not reach their matched cell in the kNN graph: %d end at the "
            "closest reachable cell, %d are a direct jump.",
            counts["n_redirected"] + counts["n_direct"],
            counts["n_redirected"],
            counts["n_direct"],
        )
    return {
        "indices": np.concatenate(indices),
        "times": np.concatenate(times),
        "segment": np.concatenate(segment),
        "n_path_cells": n_cells,
        "counts": counts,
    }


def _quantile_trajectories(
    x: np.ndarray,
    groups: TimeGroups,
    n_trajectories: int,
    length: int,
    batch_size: int,
    rng: np.random.Generator,
) -> dict:
    n_windows = groups.n_groups - length + 1
    sizes = np.bincount(groups.codes, minlength=groups.n_groups)
    start = np.repeat(np.arange(n_windows), _allocate(n_trajectories, sizes[:n_windows] * 1.0))
    members = [groups.members(g) for g in range(groups.n_groups)]
    pos = np.empty((n_trajectories, length), dtype=np.int64)  # position within its group
    for g in range(groups.n_groups):
        new = np.flatnonzero(start == g)
        pos[new, 0] = uniform_sample(len(members[g]), len(new), rng)
        active = np.flatnonzero((start <= g) & (g + 1 < start + length))
        if len(active):
            step = g - start[active]
            pos[active, step + 1] = match(
                x[members[g]],
                x[members[g + 1]],
                pos[active, step],
                batch_size=batch_size,
                rng=rng,
            )
    group = start[:, None] + np.arange(length)[None, :]
    indices = np.empty_like(pos)
    for g in range(groups.n_groups):
        at = group == g
        indices[at] = members[g][pos[at]]
    return {
        "indices": indices,
        "times": groups.values[group],
        "segment": start.astype(np.int64),
        "counts": {},
    }


@fill_doc
def trajectories(
    adata: AnnData,
    *,
    time_key: str = _keys.TIME,
    method: str = "knn",
    rep: str = "X_pca",
    n_trajectories: int = 1000,
    length: int = 10,
    k: int = 30,
    batch_size: int = 512,
    random_state: int = 0,
    key_added: str = _keys.TRAJECTORIES,
    copy: bool = False,
) -> AnnData | None:
    """Extract cell trajectories through consecutive time groups (FLeCS "cell paths").

    Both methods match cells of consecutive groups ``t_k -> t_{k+1}`` (read with
    :func:`celldyn._readers.read_time_groups`) by exact optimal transport on ``obsm[rep]``
    (squared Euclidean cost). Only the matches the trajectories need are computed: the
    matched cells are padded with random cells of both groups to ``batch_size`` cells and
    solved as an assignment problem (minibatch OT; a whole group pair when it is smaller
    than ``batch_size``, which is exactly the FLeCS reference's matching).

    ``method='knn'``
        For each pair of consecutive groups: source cells drawn uniformly from ``t_k``
        (the reference resamples the source group to the target's size), each matched to a
        ``t_{k+1}`` cell, then joined by the exact shortest path in a kNN graph of the two
        groups' cells (``k`` neighbours, symmetrised, edge weight = Euclidean distance in
        ``rep``, edges from ``t_{k+1}`` back to ``t_k`` removed so paths never go back in
        time), found by bidirectional A* search. Each path is
        resampled to ``length`` evenly spaced cells (cells repeat on paths shorter than
        ``length``; the reference drops such paths — ``n_path_cells`` lets you do so).
        ``times`` go linearly in arc length (cumulative Euclidean step length along the
        full path) from ``t_k`` to ``t_{k+1}``, i.e. constant speed along each path; they
        are non-decreasing and equal only where a cell repeats. Trajectories are spread over
        the pairs proportionally to the size of the later group (the reference builds one
        path per target cell). An unreachable matched cell is replaced by the reachable
        ``t_{k+1}`` cell closest to it (counted as ``n_redirected``), else the path is the
        direct jump source -> target (``n_direct``).
        The graph is built per group pair from ``rep`` (not ``obsp['distances']``, which may
        come from another representation and is not restricted to the two groups): exact
        brute-force kNN, ``O(n_pair^2 d)`` time, ``O(n_pair k)`` memory.
    ``method='quantile'``
        Chains of OT matches, one cell per group: a chain starting at a uniformly drawn
        cell of ``t_s`` is extended by matching its current cell to ``t_{s+1}``, and so on,
        for ``length`` consecutive groups (the reference's pseudotime-quantile paths).
        Windows start at every group ``s`` with ``s + length <= n_groups``, with trajectory
        counts proportional to the size of ``t_s``; ``times`` are the group values. If
        ``length`` exceeds the number of groups it is reduced to it (with a warning).

    Parameters
    ----------
    {adata}
    time_key
        Column of ``adata.obs`` with ordered time groups.
    method
        ``'knn'`` or ``'quantile'``.
    rep
        Representation in ``adata.obsm`` (``'X'`` for ``adata.X``).
    n_trajectories
        Number of trajectories.
    length
        Cells per trajectory (at least 2).
    k
        Neighbours of the kNN graph (``'knn'`` only).
    batch_size
        Cells per OT assignment problem.
    random_state
        Seed.
    key_added
        Key in ``adata.uns``.
    {copy}

    Returns
    -------
    The new AnnData when ``copy=True``, else ``None``; ``adata`` gains ``uns[key_added]``:

    ``'indices'``
        ``int64 (n_trajectories, length)``: ``obs`` positions along each trajectory.
    ``'times'``
        ``float64 (n_trajectories, length)``: time of each position (for ODE integration).
    ``'segment'``
        ``int64 (n_trajectories,)``: index of the first time group of each trajectory.
    ``'n_path_cells'``
        ``int64 (n_trajectories,)``, ``'knn'`` only: cells on the full shortest path.
    ``'params'``
        Parameters, plus ``'groups'`` (group values) and, for ``'knn'``, the counts
        ``'n_redirected'``, ``'n_direct'`` and ``'n_short'`` (paths with fewer cells than
        ``length``).
    """
    check_adata(adata)
    check_in(method, ("knn", "quantile"), "method")
    n_trajectories = check_int(n_trajectories, "n_trajectories", 1)
    length = check_int(length, "length", 2)
    k = check_int(k, "k", 1)
    batch_size = check_int(batch_size, "batch_size", 1)
    random_state = check_int(random_state, "random_state", 0)
    groups = read_time_groups(adata, time_key)
    x = get_rep(adata, rep)

    rng = np.random.default_rng(random_state)
    if method == "knn":
        result = _knn_trajectories(x, groups, n_trajectories, length, k, batch_size, rng)
    else:
        if length > groups.n_groups:
            logger.warning(
                "method='quantile' gives one cell per time group: `length` reduced from %d "
                "to the %d groups of adata.obs[%r].",
                length,
                groups.n_groups,
                time_key,
            )
            length = groups.n_groups
        result = _quantile_trajectories(x, groups, n_trajectories, length, batch_size, rng)
    params = {
        "time_key": time_key,
        "method": method,
        "rep": rep,
        "n_trajectories": n_trajectories,
        "length": length,
        "k": k,
        "batch_size": batch_size,
        "random_state": random_state,
        "groups": groups.values.copy(),
        **result.pop("counts"),
    }
    return write_results(adata, copy=copy, uns={key_added: {**result, "params": params}})
