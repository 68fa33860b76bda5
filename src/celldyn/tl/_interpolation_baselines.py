"""Reference predictions of the cells at an unobserved time: OT interpolation, mean, nearest."""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from .. import _keys
from .._readers import read_time_groups
from .._validate import check_adata, check_in, check_int, get_rep

INTERPOLATION_BASELINES = ("ot", "nearest", "mean")
"""Methods of :func:`interpolation_baseline`."""


def interpolation_baseline(
    adata: AnnData,
    time: float,
    method: str = "ot",
    *,
    time_key: str = _keys.TIME,
    rep: str | None = "X_pca",
    n_cells: int | None = None,
    random_state: int | np.random.Generator = 0,
) -> np.ndarray:
    r"""Predict the cells at an intermediate time from the two neighbouring observed times.

    The neighbours are the latest time group of ``obs[time_key]`` before ``time`` and the
    earliest after it; a group at ``time`` itself (the held-out cells) is ignored, so the
    same ``adata`` serves a leave-one-timepoint-out evaluation. With
    :math:`a = (t - t_{prev}) / (t_{next} - t_{prev})`:

    - ``'ot'``: OT interpolation (McCann's displacement interpolation of the empirical
      measures, as in Schiebinger et al. 2019 and TrajectoryNet). An exact OT plan
      (:func:`ot.emd`, squared Euclidean cost; one problem, so the cost matrix holds
      ``n_prev · n_next`` entries) couples the cells of :math:`t_{prev}` and
      :math:`t_{next}`; ``n_cells`` pairs :math:`(i, j)` are drawn with probability
      :math:`P_{ij}` and each gives the cell :math:`(1 - a)\,x_i + a\,y_j`. Exact for a
      pure translation or any other motion along straight lines at constant speed.
    - ``'nearest'``: the cells of the nearer neighbouring time (the previous one on ties).
    - ``'mean'``: the cells of :math:`t_{prev}` shifted by
      :math:`a\,(\bar y - \bar x)`, the linear interpolation of the two population means.

    Parameters
    ----------
    adata
        Annotated data matrix with at least one time group on each side of ``time``;
        ``adata`` is not modified.
    time
        Time to predict, in the values of the time groups (numbers; for non-numeric ordered
        categories, the category position, see :func:`celldyn.pp.time_groups`).
    method
        ``'ot'``, ``'nearest'`` or ``'mean'``.
    time_key
        Column of ``adata.obs`` with ordered time groups.
    rep
        Key of ``adata.obsm`` with the coordinates, or ``None`` (or ``'X'``) for ``adata.X``.
    n_cells
        Number of predicted cells of ``'ot'``; default: the number of cells observed at
        ``time``, else the size of the previous group. (``'nearest'`` and ``'mean'`` return
        as many cells as the group they start from.)
    random_state
        Seed of the pairs drawn by ``'ot'``, or a :class:`numpy.random.Generator` used as is.

    Returns
    -------
    Predicted cells, ``float64`` array of shape ``(n, n_dims)`` in the coordinates of
    ``rep``.
    """
    check_adata(adata)
    check_in(method, INTERPOLATION_BASELINES, "method")
    if isinstance(time, bool) or not isinstance(time, int | float | np.number):
        raise TypeError(f"`time` must be a number, got {type(time).__name__}.")
    if not np.isfinite(time):
        raise ValueError(f"`time` must be finite, got {time!r}.")
    if n_cells is not None:
        n_cells = check_int(n_cells, "n_cells", 1)
    if not isinstance(random_state, np.random.Generator):
        random_state = check_int(random_state, "random_state", 0)
    groups = read_time_groups(adata, time_key, min_groups=2)
    x = get_rep(adata, "X" if rep is None else rep)

    values = groups.values
    at_time = np.isclose(values, time, rtol=1e-9, atol=1e-12)
    before = np.flatnonzero((values < time) & ~at_time)
    after = np.flatnonzero((values > time) & ~at_time)
    if len(before) == 0 or len(after) == 0:
        raise ValueError(
            f"`time`={time!r} must lie strictly between two observed time groups other than "
            f"itself; adata.obs[{time_key!r}] has the groups {values.tolist()}."
        )
    prev, nxt = before[-1], after[0]
    x_prev, x_next = x[groups.members(prev)], x[groups.members(nxt)]
    t_prev, t_next = values[prev], values[nxt]
    a = (time - t_prev) / (t_next - t_prev)

    if method == "nearest":
        return x_prev if time - t_prev <= t_next - time else x_next
    if method == "mean":
        return x_prev + a * (x_next.mean(0) - x_prev.mean(0))
    if n_cells is None:
        held_out = np.flatnonzero(at_time)
        n_cells = len(groups.members(held_out[0])) if len(held_out) else len(x_prev)
    return _ot_interpolate(x_prev, x_next, a, n_cells, np.random.default_rng(random_state))


def _ot_interpolate(
    x_prev: np.ndarray, x_next: np.ndarray, a: float, n_cells: int, rng: np.random.Generator
) -> np.ndarray:
    """``n_cells`` points ``(1 - a) x_i + a y_j`` for pairs drawn from the exact OT plan."""
    from ..pp._couplings import pair_plan

    size = max(len(x_prev), len(x_next))
    plan, _ = pair_plan(
        x_prev, x_next, method="exact", reg=0.05, max_cells=size, batch_size=size, rng=rng
    )
    pairs = rng.choice(plan.nnz, size=n_cells, p=plan.data / plan.data.sum())
    return (1 - a) * x_prev[plan.row[pairs]] + a * x_next[plan.col[pairs]]
