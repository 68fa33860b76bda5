"""Reference predictions of the cells at an unobserved time: OT interpolation, mean, nearest."""

from __future__ import annotations

import warnings

import numpy as np
from anndata import AnnData

from .. import _keys
from .._readers import read_time_groups
from .._validate import check_adata, check_in, check_int, check_positive, get_rep

INTERPOLATION_BASELINES = ("ot", "unbalanced", "nearest", "mean")
"""Methods of :func:`interpolation_baseline`."""
REG_M_GRID = (10.0, 1.0, 0.3, 0.1, 0.03)
"""Marginal relaxations that ``'unbalanced'`` chooses from with ``reg_m=None``."""
ENTROPIC_REG = 0.01
"""Entropic regularisation of ``'unbalanced'``, in units of the median squared distance."""
SELECTION_SAMPLES = 2000
"""Cells per set in the W1 that chooses ``reg_m`` (:func:`celldyn.metrics.wasserstein`)."""


def interpolation_baseline(
    adata: AnnData,
    time: float,
    method: str = "ot",
    *,
    time_key: str = _keys.TIME,
    rep: str | None = "X_pca",
    n_cells: int | None = None,
    reg_m: float | None = None,
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
    - ``'unbalanced'``: the same with unbalanced OT (:func:`ot.unbalanced.sinkhorn_unbalanced`,
      squared Euclidean cost divided by its median, entropic regularisation 0.01; also one
      dense problem): the cells of :math:`t_{next}` keep
      their mass, those of :math:`t_{prev}` may change theirs at the price ``reg_m`` times
      its KL divergence, so cells that divide, die or were sampled in other proportions need
      not travel. A cell of :math:`t_{prev}` whose plan mass is :math:`g_i` times its share
      grows geometrically, so pairs are drawn with probability
      :math:`\propto P_{ij}\,g_i^{a - 1}`.
      ``reg_m=None`` chooses it from 10, 1, 0.3, 0.1, 0.03 on the other time groups only:
      each interior group is predicted from its neighbours among them and the value with
      the lowest mean W1 is used (the group at ``time`` is never looked at).
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
        ``'ot'``, ``'unbalanced'``, ``'nearest'`` or ``'mean'``.
    time_key
        Column of ``adata.obs`` with ordered time groups.
    rep
        Key of ``adata.obsm`` with the coordinates, or ``None`` (or ``'X'``) for ``adata.X``.
    n_cells
        Number of predicted cells of ``'ot'`` and ``'unbalanced'``; default: the number of
        cells observed at ``time``, else the size of the previous group. (``'nearest'`` and
        ``'mean'`` return as many cells as the group they start from.)
    reg_m
        ``'unbalanced'`` only: the marginal relaxation (a positive number; larger is closer
        to ``'ot'``), or ``None`` to choose it as described above (needs three time groups
        other than the one at ``time``).
    random_state
        Seed of the pairs drawn by ``'ot'`` and ``'unbalanced'``, or a
        :class:`numpy.random.Generator` used as is.

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
    if reg_m is not None:
        if method != "unbalanced":
            raise ValueError(f"`reg_m` is an option of method='unbalanced', not {method!r}.")
        check_positive(reg_m, "reg_m")
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
    rng = np.random.default_rng(random_state)
    if method == "ot":
        return _ot_interpolate(x_prev, x_next, a, n_cells, rng)
    if reg_m is None:
        others = [x[groups.members(k)] for k in np.flatnonzero(~at_time)]
        reg_m = _choose_reg_m(others, values[~at_time], rng)
    return _unbalanced_interpolate(x_prev, x_next, a, n_cells, rng, reg_m)


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


def _unbalanced_interpolate(
    x_prev: np.ndarray,
    x_next: np.ndarray,
    a: float,
    n_cells: int,
    rng: np.random.Generator,
    reg_m: float,
) -> np.ndarray:
    """``n_cells`` points ``(1 - a) x_i + a y_j``, pairs drawn from the unbalanced plan."""
    import ot

    from ..nn import SolverDivergedError

    cost = ot.dist(x_prev, x_next)
    cost /= max(float(np.median(cost)), 1e-300)
    p = np.full(len(x_prev), 1.0 / len(x_prev))
    q = np.full(len(x_next), 1.0 / len(x_next))
    for method in ("sinkhorn", "sinkhorn_stabilized"):  # the second if the first overflows
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*(did not converge|numerical errors).*")
            warnings.filterwarnings("ignore", category=RuntimeWarning)
            plan = ot.unbalanced.sinkhorn_unbalanced(
                p, q, cost, ENTROPIC_REG, (reg_m, np.inf), method=method, numItermax=5000
            )
        if np.all(np.isfinite(plan)) and plan.sum() > 0:
            break
    growth = plan.sum(1) * len(x_prev)
    weights = plan * np.power(np.maximum(growth, 1e-300), a - 1.0)[:, None]
    if not np.all(np.isfinite(weights)) or weights.sum() <= 0:
        raise SolverDivergedError(
            f"The unbalanced OT plan with reg_m={reg_m} has no finite mass; try a larger reg_m."
        )
    pairs = rng.choice(weights.size, size=n_cells, p=(weights / weights.sum()).ravel())
    rows, cols = np.unravel_index(pairs, weights.shape)
    return (1 - a) * x_prev[rows] + a * x_next[cols]


def _choose_reg_m(cells: list[np.ndarray], values: np.ndarray, rng: np.random.Generator) -> float:
    """Return the value of :data:`REG_M_GRID` that best predicts the interior ``cells``.

    Each group is subsampled to :data:`SELECTION_SAMPLES` cells first, so the choice costs
    a bounded number of small OT problems.
    """
    from ..metrics import wasserstein

    if len(cells) < 3:
        raise ValueError(
            "Choosing `reg_m` needs three time groups besides the predicted one (an interior "
            f"one to test on); there are {len(cells)}. Pass `reg_m`."
        )
    cells = [
        c[np.sort(rng.choice(len(c), SELECTION_SAMPLES, replace=False))]
        if len(c) > SELECTION_SAMPLES
        else c
        for c in cells
    ]
    errors = {}
    for reg_m in REG_M_GRID:
        scores = []
        for k in range(1, len(cells) - 1):
            a = (values[k] - values[k - 1]) / (values[k + 1] - values[k - 1])
            pred = _unbalanced_interpolate(
                cells[k - 1], cells[k + 1], a, SELECTION_SAMPLES, rng, reg_m
            )
            scores.append(wasserstein(pred, cells[k]))
        errors[reg_m] = float(np.mean(scores))
    return min(errors, key=errors.get)
