"""Distances between two populations of cells: exact W1, squared MMD, energy distance."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from .._validate import check_finite, check_int


def _check_pair(x: object, y: object) -> tuple[np.ndarray, np.ndarray]:
    """Return ``x`` and ``y`` as finite float64 arrays ``(n, d)``, ``(m, d)``.

    1-D inputs are read as ``n`` points in one dimension.
    """
    arrays = []
    for name, a in (("x", x), ("y", y)):
        a = a.toarray() if sp.issparse(a) else a
        a = np.asarray(a, dtype=np.float64)
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim != 2:
            raise ValueError(f"`{name}` must be 1-D or 2-D (points x dims), got shape {a.shape}.")
        if a.shape[0] == 0 or a.shape[1] == 0:
            raise ValueError(f"`{name}` is empty (shape {a.shape}).")
        check_finite(a, f"`{name}`")
        arrays.append(a)
    if arrays[0].shape[1] != arrays[1].shape[1]:
        raise ValueError(
            f"`x` and `y` must have the same number of dimensions, got {arrays[0].shape[1]} "
            f"and {arrays[1].shape[1]}."
        )
    return arrays[0], arrays[1]


def wasserstein(
    x: np.ndarray,
    y: np.ndarray,
    *,
    max_samples: int | None = None,
    random_state: int = 0,
) -> float:
    """Exact 1-Wasserstein distance (earth mover's distance) between two point sets.

    Solves the exact optimal transport problem with POT (:func:`ot.emd2`) for uniform weights
    and the Euclidean ground cost.

    Parameters
    ----------
    x, y
        Points of shape ``(n, d)`` and ``(m, d)`` (1-D arrays are ``d = 1``), e.g.
        ``adata[adata.obs["time"] == t].obsm["X_pca"]``.
    max_samples
        If a set has more points, a uniform random subset of this size (an integer >= 1,
        without replacement) is used: the exact solver needs an ``n x m`` cost matrix.
    random_state
        Seed of the subsampling.

    Returns
    -------
    The W1 distance, in the units of ``x``.
    """
    import ot

    x, y = _check_pair(x, y)
    if max_samples is not None:
        max_samples = check_int(max_samples, "max_samples", 1)
        rng = np.random.default_rng(random_state)
        x, y = (
            a[np.sort(rng.choice(a.shape[0], max_samples, replace=False))]
            if a.shape[0] > max_samples
            else a
            for a in (x, y)
        )
    cost = ot.dist(x, y, metric="euclidean")
    a = np.full(x.shape[0], 1.0 / x.shape[0])
    b = np.full(y.shape[0], 1.0 / y.shape[0])
    return float(ot.emd2(a, b, cost, numItermax=max(100_000, 50 * cost.size)))


def mmd(
    x: np.ndarray,
    y: np.ndarray,
    *,
    kernel: str = "rbf",
    bandwidth: float | Sequence[float] | None = None,
    unbiased: bool = False,
) -> float:
    """Squared maximum mean discrepancy between two point sets.

    Computed in float64 by :func:`celldyn.nn._kernels.mmd_torch`, the function the models
    use as a training loss.

    Parameters
    ----------
    x, y
        Points of shape ``(n, d)`` and ``(m, d)`` (1-D arrays are ``d = 1``).
    kernel
        ``'rbf'`` ``exp(-d²/(2h²))``, ``'laplace'`` ``exp(-d/h)`` (``d`` Euclidean), or
        ``'multiscale_rbf'``: the sum of RBF kernels at bandwidths ``h * (1/4, 1/2, 1, 2, 4)``.
    bandwidth
        ``h``. ``None``: median heuristic (median non-zero pairwise distance of the pooled
        points). A sequence: these bandwidths (for any kernel); their kernels are summed.
    unbiased
        ``False``: biased V-statistic (``>= 0``, exactly ``0`` for identical sets).
        ``True``: unbiased U-statistic (mean ``0`` under equal distributions, can be negative).

    Returns
    -------
    The squared MMD.
    """
    import torch

    from ..nn._kernels import mmd_torch

    x, y = _check_pair(x, y)
    with torch.no_grad():
        value = mmd_torch(
            torch.from_numpy(x),
            torch.from_numpy(y),
            kernel=kernel,
            bandwidths=bandwidth,
            unbiased=unbiased,
        )
    return float(value)


def energy_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Energy distance ``2E|X-Y| - E|X-X'| - E|Y-Y'|`` between two point sets.

    Expectations run over all pairs of the empirical distributions (including ``i = j``), so
    the value is ``>= 0`` and ``0`` for identical sets. This is the square of
    :func:`scipy.stats.energy_distance` (which returns the square root) in one dimension.

    Parameters
    ----------
    x, y
        Points of shape ``(n, d)`` and ``(m, d)`` (1-D arrays are ``d = 1``).

    Returns
    -------
    The energy distance, in the units of ``x``.
    """
    import torch

    from ..nn._kernels import energy_distance_torch

    x, y = _check_pair(x, y)
    with torch.no_grad():
        return float(energy_distance_torch(torch.from_numpy(x), torch.from_numpy(y)))
