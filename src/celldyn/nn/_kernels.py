"""Differentiable torch kernels: squared MMD and energy distance between two point sets.

These functions are the single implementation behind :func:`celldyn.metrics.mmd` and
:func:`celldyn.metrics.energy_distance`, and the modules use them as training losses
(:class:`~celldyn.module._cellmnn.CellMNNModule`).
Inputs are 2-D tensors ``(n_points, n_dims)``; gradients flow to both sets (bandwidths chosen
by the median heuristic are treated as constants). Kernel sums are accumulated over row
blocks, so without autograd memory stays ``O(block_size * m)`` instead of ``O(n * m)``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence

import torch

KERNELS = ("rbf", "laplace", "multiscale_rbf")
"""Kernel names accepted by :func:`mmd_torch`."""
MULTISCALE_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
"""Bandwidth multipliers of ``'multiscale_rbf'``: RBF kernels at ``h * f`` are summed."""
MEDIAN_MAX_POINTS = 2000
"""At most this many (evenly spaced) pooled points enter the median heuristic."""
_BLOCK_ELEMENTS = 2**22


def pairwise_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between the rows of ``x`` ``(n, d)`` and ``y`` ``(m, d)``.

    Computed from coordinate differences (not the Gram-matrix shortcut), so coincident
    points are exactly 0 apart and get a zero gradient.
    """
    return torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")


def median_bandwidth(x: torch.Tensor, y: torch.Tensor) -> float:
    """Median heuristic: median non-zero Euclidean distance within the pooled sample.

    At most :data:`MEDIAN_MAX_POINTS` evenly spaced points of ``concat(x, y)`` are used.
    Returns ``1.0`` when all points coincide.
    """
    with torch.no_grad():
        z = torch.cat([x, y]).detach()
        if z.shape[0] > MEDIAN_MAX_POINTS:
            z = z[torch.linspace(0, z.shape[0] - 1, MEDIAN_MAX_POINTS).long()]
        i, j = torch.triu_indices(z.shape[0], z.shape[0], offset=1, device=z.device)
        d = pairwise_distances(z, z)[i, j]
        d = d[d > 0]
        return float(d.quantile(0.5)) if d.numel() else 1.0


def _kernel_fn(kernel: str, bandwidths: Sequence[float]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Map distances to the sum of kernel values over ``bandwidths``."""
    if kernel == "laplace":
        return lambda d: sum(torch.exp(-d / h) for h in bandwidths)
    return lambda d: sum(torch.exp(-d.square() / (2.0 * h * h)) for h in bandwidths)


def resolve_bandwidths(
    x: torch.Tensor,
    y: torch.Tensor,
    kernel: str,
    bandwidths: float | Sequence[float] | None,
) -> tuple[float, ...]:
    """Bandwidths used by :func:`mmd_torch` (see there)."""
    if kernel not in KERNELS:
        raise ValueError(f"`kernel` must be one of {KERNELS}, got {kernel!r}.")
    if bandwidths is not None and not isinstance(bandwidths, numbers.Real):
        hs = tuple(float(h) for h in bandwidths)
    else:
        base = median_bandwidth(x, y) if bandwidths is None else float(bandwidths)
        hs = tuple(base * f for f in MULTISCALE_FACTORS) if kernel == "multiscale_rbf" else (base,)
    if not hs or not all(h > 0 and h < float("inf") for h in hs):
        raise ValueError(f"Bandwidths must be finite positive numbers, got {hs}.")
    return hs


def mean_pairwise(
    a: torch.Tensor,
    b: torch.Tensor,
    fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    exclude_diagonal: bool = False,
) -> torch.Tensor:
    """Mean of ``fn(distance)`` over all pairs of rows of ``a`` and ``b``.

    With ``exclude_diagonal`` (``a`` is ``b``), the pairs ``(i, i)`` are left out (U-statistic).
    """
    n, m = a.shape[0], b.shape[0]
    block = max(1, _BLOCK_ELEMENTS // max(m, 1))
    total = a.new_zeros(())
    for s in range(0, n, block):
        k = fn(pairwise_distances(a[s : s + block], b))
        total = total + k.sum()
        if exclude_diagonal:  # the pairs (i, i) of this row block lie on diagonal offset s
            total = total - k.diagonal(offset=s).sum()
    return total / (n * (n - 1)) if exclude_diagonal else total / (n * m)


def mmd_torch(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    kernel: str = "rbf",
    bandwidths: float | Sequence[float] | None = None,
    unbiased: bool = False,
) -> torch.Tensor:
    """Squared maximum mean discrepancy between the point sets ``x`` and ``y``.

    Kernels (``h`` a bandwidth, ``d`` the Euclidean distance): ``'rbf'`` ``exp(-d²/(2h²))``,
    ``'laplace'`` ``exp(-d/h)``, ``'multiscale_rbf'`` the sum of RBF kernels at
    ``h * (1/4, 1/2, 1, 2, 4)`` (:data:`MULTISCALE_FACTORS`). With several bandwidths the
    kernels are summed.

    Parameters
    ----------
    x, y
        Tensors of shape ``(n, d)`` and ``(m, d)``.
    kernel
        ``'rbf'``, ``'laplace'`` or ``'multiscale_rbf'``.
    bandwidths
        ``None``: ``h`` from the median heuristic (:func:`median_bandwidth`, no gradient);
        a number: ``h``; a sequence: these bandwidths, used as given for any kernel.
    unbiased
        ``False``: biased V-statistic (``>= 0``, ``0`` for identical sets). ``True``: unbiased
        U-statistic without the ``i = j`` terms (can be negative; needs ``n, m >= 2``).

    Returns
    -------
    0-d tensor with the squared MMD, differentiable with respect to ``x`` and ``y``.
    """
    if unbiased and min(x.shape[0], y.shape[0]) < 2:
        raise ValueError("The unbiased MMD needs at least 2 points in each set.")
    fn = _kernel_fn(kernel, resolve_bandwidths(x, y, kernel, bandwidths))
    kxx = mean_pairwise(x, x, fn, exclude_diagonal=unbiased)
    kyy = mean_pairwise(y, y, fn, exclude_diagonal=unbiased)
    return kxx + kyy - 2.0 * mean_pairwise(x, y, fn)


def _identity(d: torch.Tensor) -> torch.Tensor:
    return d


def energy_distance_torch(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Energy distance ``2E|X-Y| - E|X-X'| - E|Y-Y'|`` between empirical distributions.

    All pairs, including ``i = j``, enter the expectations (V-statistic), so the value is
    ``>= 0`` and ``0`` for identical sets. Differentiable with respect to ``x`` and ``y``.
    """
    return (
        2.0 * mean_pairwise(x, y, _identity)
        - mean_pairwise(x, x, _identity)
        - mean_pairwise(y, y, _identity)
    )


def _sum_abs_differences(u: torch.Tensor) -> torch.Tensor:
    """Per column of ``u`` ``(n, d)``: ``Σ_{i<j} |u_i - u_j|``, from the sorted values."""
    n = u.shape[0]
    ranks = torch.arange(n, dtype=u.dtype, device=u.device)
    return (torch.sort(u, dim=0).values * (2.0 * ranks - (n - 1))[:, None]).sum(0)


def marginal_energy_distance_torch(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean over the coordinates of the energy distances of the 1-D marginals of ``x`` and ``y``.

    For coordinate ``k``: ``2E|X_k - Y_k| - E|X_k - X'_k| - E|Y_k - Y'_k|`` (V-statistic,
    like :func:`energy_distance_torch`), computed from sorted values in ``O(n log n)``.
    Unlike a kernel on the joint distance, it is linear in each coordinate's scale, and its
    gradient with respect to a point's coordinate is bounded by a constant whatever that
    coordinate's spread, so small coordinates are matched as closely as large ones.

    Parameters
    ----------
    x, y
        Tensors of shape ``(n, d)`` and ``(m, d)``.

    Returns
    -------
    0-d tensor, ``>= 0``, differentiable with respect to ``x`` and ``y``.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"Expected (n, d) and (m, d) tensors, got {tuple(x.shape)}, {tuple(y.shape)}."
        )
    n, m = x.shape[0], y.shape[0]
    within_x, within_y = _sum_abs_differences(x), _sum_abs_differences(y)
    cross = _sum_abs_differences(torch.cat([x, y])) - within_x - within_y
    per_coordinate = 2.0 * cross / (n * m) - 2.0 * within_x / n**2 - 2.0 * within_y / m**2
    return per_coordinate.mean()
