"""Quality of extracted cell trajectories: finite-difference speed and L-smoothness."""

from __future__ import annotations

import numpy as np
from anndata import AnnData

from .. import _keys
from .._readers import read_trajectories
from .._validate import check_adata, get_rep


def _compress(valid: np.ndarray, *arrays: np.ndarray) -> list[np.ndarray]:
    """Move each row's valid entries to the left (order kept), NaN-padding the rest."""
    order = np.argsort(~valid, axis=1, kind="stable")
    keep = np.take_along_axis(valid, order, axis=1)
    out = []
    for a in arrays:
        a = np.take_along_axis(a, order[..., None] if a.ndim == 3 else order, axis=1)
        out.append(np.where(keep[..., None] if a.ndim == 3 else keep, a, np.nan))
    return out


def trajectory_quality(
    adata: AnnData,
    *,
    trajectories: str = _keys.TRAJECTORIES,
    rep: str = "X_pca",
) -> dict:
    """Speed and smoothness of trajectories (the FLeCS trajectory-quality figures).

    Along each trajectory ``x_0, ..., x_{L-1}`` (cells of ``obsm[rep]`` at positions
    ``uns[trajectories]['indices']``, times ``uns[trajectories]['times']``, unit steps if
    absent), finite differences give the step velocities
    ``v_j = (x_{j+1} - x_j) / (t_{j+1} - t_j)``. Steps with ``t_{j+1} <= t_j`` (a cell
    repeated on a short path) carry no velocity and are skipped. Then

    - velocity norm: ``||v_j||`` per step;
    - smoothness ratio: ``||v_{j+1} - v_j|| / ||x_{j+1} - x_j||`` for consecutive kept
      steps — the change of velocity per distance travelled, a finite-difference estimate
      of the Lipschitz constant of the velocity field along the path (NaN where the step
      has zero length);
    - L-smoothness of a trajectory: the maximum of its smoothness ratios, the smallest
      ``L`` with ``||v(x) - v(y)|| <= L ||x - y||`` between consecutive steps.

    A straight line travelled at constant speed ``c`` has velocity norms ``c`` and
    L-smoothness 0. The FLeCS reference's notebook with these figures is not public; this
    follows the definitions above.

    Parameters
    ----------
    adata
        Annotated data matrix with ``uns[trajectories]`` (:func:`celldyn.pp.trajectories`).
    trajectories
        Key of the trajectories in ``adata.uns``.
    rep
        Representation in ``adata.obsm`` (``'X'`` for ``adata.X``) where distances are taken.

    Returns
    -------
    Dictionary (nothing is written into ``adata``):

    ``'velocity_norm'``
        ``(n_trajectories, L - 1)``, kept steps first, NaN-padded.
    ``'smoothness'``
        ``(n_trajectories, L - 2)`` smoothness ratios, NaN-padded.
    ``'mean_velocity_norm'``, ``'lipschitz'``
        ``(n_trajectories,)`` mean velocity norm and L-smoothness (NaN if undefined).
    ``'summary'``
        Medians and means over trajectories of both, plus ``'n_trajectories'`` and
        ``'n_skipped_steps'``.
    """
    check_adata(adata)
    # times may be absent (unit steps), decrease or stand still: such steps are skipped
    found = read_trajectories(adata, trajectories, require_times=False, require_progress=False)
    idx, times = found.indices, found.times
    x = get_rep(adata, rep)

    pts = x[idx]
    dx = np.diff(pts, axis=1)
    dt = np.diff(times, axis=1)
    valid = dt > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        vel = dx / np.where(valid, dt, 1.0)[..., None]
    vel, dx = _compress(valid, vel, dx)
    speed = np.linalg.norm(vel, axis=2)
    step = np.linalg.norm(dx, axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.linalg.norm(np.diff(vel, axis=1), axis=2) / step[:, :-1]
    ratio[~np.isfinite(ratio)] = np.nan

    def row_stat(f, a: np.ndarray) -> np.ndarray:
        out = np.full(a.shape[0], np.nan)
        has = ~np.all(np.isnan(a), axis=1) if a.shape[1] else np.zeros(a.shape[0], bool)
        out[has] = f(a[has], axis=1)
        return out

    mean_speed = row_stat(np.nanmean, speed)
    lipschitz = row_stat(np.nanmax, ratio)

    def stat(f, a: np.ndarray) -> float:
        return float(f(a)) if np.any(np.isfinite(a)) else float("nan")

    summary = {
        "n_trajectories": int(idx.shape[0]),
        "n_skipped_steps": int(np.sum(~valid)),
        "median_velocity_norm": stat(np.nanmedian, mean_speed),
        "mean_velocity_norm": stat(np.nanmean, mean_speed),
        "median_lipschitz": stat(np.nanmedian, lipschitz),
        "mean_lipschitz": stat(np.nanmean, lipschitz),
    }
    return {
        "velocity_norm": speed,
        "smoothness": ratio,
        "mean_velocity_norm": mean_speed,
        "lipschitz": lipschitz,
        "summary": summary,
    }
