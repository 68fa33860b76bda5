r"""CLIPR: a causal gene x gene effect matrix from perturbation responses.

Under a linear drift :math:`f_q(x) = A x + b + c_q`, perturbation :math:`q` moves the
stationary mean by :math:`l_q = -A^{-1} c_q` and its drift at the control steady state is
:math:`v_q = c_q`, so :math:`v_q = -A\,l_q` whatever :math:`b` is: with :math:`V` and
:math:`L` the matrices of velocities and shifts, :math:`A = -V L^{+}`. The same identity
holds to first order for any smooth drift (then :math:`A` is its Jacobian at the control
steady state), which is why CLIPR applies to every model with perturbation responses.
"""

from __future__ import annotations

import warnings

import numpy as np

from .._validate import check_finite, check_positive


class IdentifiabilityWarning(UserWarning):
    """The perturbation shifts span fewer dimensions than CLIPR needs to identify ``A``."""


def _as_responses(values: object, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(
            f"`{name}` must be a non-empty 2-D array (perturbations x genes), got shape "
            f"{array.shape}."
        )
    check_finite(array, f"`{name}`")
    return array


def clipr_effects(
    velocities: np.ndarray,
    shifts: np.ndarray,
    *,
    alpha: float = 1e-3,
    min_rank: int | None = None,
) -> np.ndarray:
    r"""Causal effect matrix from perturbation velocities and steady-state shifts (CLIPR).

    Solves :math:`v_q = -A\,l_q` for all perturbations :math:`q` by Tikhonov-regularised
    least squares, :math:`A^\top = -(L^\top L + \lambda I)^{-1} L^\top V` with
    :math:`\lambda = \alpha\,\mathrm{tr}(L^\top L)/d` (``alpha`` is relative to the mean
    eigenvalue of :math:`L^\top L`, so the result does not depend on the units of the shifts);
    ``alpha=0`` gives the minimum-norm solution :math:`A = -V L^{+}`.

    **Identifiability**: ``A`` is determined only if the shifts span all ``d`` genes, i.e. at
    least ``d`` perturbations with linearly independent shifts (e.g. one knockdown of every
    gene). With fewer, an :class:`IdentifiabilityWarning` is raised and the result is the
    regularised solution on the span of the shifts (zero effect from directions never
    perturbed).

    Parameters
    ----------
    velocities
        ``(n_perturbations, n_genes)``: row ``q`` is :math:`v_q`, the change of the drift that
        perturbation ``q`` causes at the control steady state (its initial velocity).
    shifts
        ``(n_perturbations, n_genes)``: row ``q`` is :math:`l_q`, the shift of the steady state
        (stationary mean) under perturbation ``q``.
    alpha
        Relative Tikhonov regularisation (``>= 0``).
    min_rank
        Dimension the shifts must span; default ``n_genes``. A model whose drift lives on a
        subspace (e.g. Cell-MNN on ``n_components`` loadings) passes that dimension.

    Returns
    -------
    ``(n_genes, n_genes)`` float64 matrix oriented regulator (row) x target (column):
    entry ``[j, i]`` is the effect of gene ``j`` on the rate of gene ``i``, i.e.
    :math:`A_{ij}` (the matrix is :math:`A^\top`; its diagonal holds the self-effects).
    """
    v = _as_responses(velocities, "velocities")
    l_ = _as_responses(shifts, "shifts")
    if v.shape != l_.shape:
        raise ValueError(
            f"`velocities` and `shifts` must have the same shape, got {v.shape} and {l_.shape}."
        )
    check_positive(alpha, "alpha", strict=False)
    n_perturbations, n_genes = l_.shape
    needed = n_genes if min_rank is None else int(min_rank)
    rank = int(np.linalg.matrix_rank(l_))
    if rank < needed:
        warnings.warn(
            f"CLIPR needs at least {needed} perturbations with independent steady-state shifts "
            f"to identify the effect matrix; the {n_perturbations} shifts given span only "
            f"{rank} dimension(s). Effects are determined only on that span.",
            IdentifiabilityWarning,
            stacklevel=2,
        )
    gram = l_.T @ l_
    if alpha == 0:
        return np.linalg.lstsq(l_, -v, rcond=None)[0]
    ridge = alpha * np.trace(gram) / n_genes
    if ridge == 0:  # every shift is zero: nothing is identified
        return np.zeros((n_genes, n_genes))
    return np.linalg.solve(gram + ridge * np.eye(n_genes), -(l_.T @ v))
