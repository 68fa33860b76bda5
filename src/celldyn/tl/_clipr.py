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
from collections.abc import Sequence

import numpy as np
from anndata import AnnData

from .. import _keys
from .._docs import fill_doc
from .._perturbations import SEPARATOR
from .._validate import check_adata, check_finite, check_in, check_positive
from .._write import write_results


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


def _ridge(squared_singular_values: np.ndarray, alpha: float) -> float:
    """Tikhonov weight of CLIPR: ``alpha`` times the median non-zero squared singular value."""
    s2 = np.asarray(squared_singular_values)
    nonzero = s2[s2 > s2.max(initial=0.0) * (len(s2) * np.finfo(float).eps) ** 2]
    return float(alpha * np.median(nonzero)) if len(nonzero) else 0.0


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
    :math:`\lambda = \alpha` times the median non-zero squared singular value of :math:`L` (so the
    result does not depend on the units of the shifts, and one dominant direction, e.g. a
    slow mode that every perturbation moves, does not swamp the others);
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
    if alpha == 0:
        return np.linalg.lstsq(l_, -v, rcond=None)[0]
    ridge = _ridge(np.linalg.svd(l_, compute_uv=False) ** 2, alpha)
    if ridge == 0:  # every shift is zero: nothing is identified
        return np.zeros((n_genes, n_genes))
    return np.linalg.solve(l_.T @ l_ + ridge * np.eye(n_genes), -(l_.T @ v))


def regulator_resolution(shifts: np.ndarray, *, alpha: float = 1e-3) -> np.ndarray:
    r"""How much of each regulator's row of effects the shifts determine (0 to 1).

    The diagonal of the resolution matrix :math:`(L^\top L + \lambda I)^{-1} L^\top L` of
    :func:`clipr_effects` (same ``alpha``): 1 where gene ``j``'s direction lies in the span
    of the shifts, so its effects on every gene are identified; 0 where no shift moves it,
    so its row is zero by regularisation and says nothing.

    Parameters
    ----------
    shifts
        ``(n_perturbations, n_genes)`` steady-state shifts.
    alpha
        Relative Tikhonov regularisation of :func:`clipr_effects`.

    Returns
    -------
    ``(n_genes,)`` float64 array.
    """
    l_ = _as_responses(shifts, "shifts")
    check_positive(alpha, "alpha", strict=False)
    _, s, vt = np.linalg.svd(l_, full_matrices=False)
    s2 = s**2
    if alpha == 0:
        filters = (s > s.max(initial=0.0) * max(l_.shape) * np.finfo(float).eps).astype(float)
    else:
        ridge = _ridge(s2, alpha)
        filters = s2 / (s2 + ridge) if ridge > 0 else np.zeros_like(s2)
    return (filters[:, None] * vt**2).sum(0)


def _target_velocities(
    labels: Sequence[str], targets: dict[str, str], genes: Sequence[str], shifts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``v_q = Σ ±e_t`` over the measured targets ``t`` of each label's interventions.

    The sign of an intervention is that of its target's own shift, in the condition where it
    acts alone if there is one (else in the row itself): ``-e_t`` for a knockdown, ``+e_t``
    for an activation (CRISPRa). Returns the rows and a mask of the labels whose every
    intervention has a measured target.
    """
    index = {g: i for i, g in enumerate(genes)}
    alone = {label: row for row, label in enumerate(labels) if SEPARATOR not in label}
    v = np.zeros((len(labels), len(genes)))
    usable = np.ones(len(labels), dtype=bool)
    for row, label in enumerate(labels):
        parts = label.split(SEPARATOR)
        usable[row] = all(p in targets for p in parts)
        for p in parts:
            if p in targets:
                t = index[targets[p]]
                v[row, t] += 1.0 if shifts[alone.get(p, row), t] > 0 else -1.0
    return v, usable


@fill_doc
def clipr(
    adata: AnnData,
    *,
    model,
    perturbations: Sequence[str] | None = None,
    alpha: float = 1e-3,
    strength: float = 0.1,
    velocities: str = "auto",
    key_added: str = _keys.CLIPR_EFFECTS,
    copy: bool = False,
) -> AnnData | None:
    r"""Causal gene x gene effects of a fitted model by CLIPR.

    For every perturbation the model gives its initial velocity :math:`v_q` at the control
    steady state and its steady-state shift :math:`l_q`
    (:func:`~celldyn.tl.perturbation_responses`); under a linear drift
    :math:`f_q(x) = A x + b + c_q` they satisfy :math:`v_q = -A\,l_q` whatever the drift's
    offset, so :math:`A = -V L^{+}` (Tikhonov-regularised, :func:`~celldyn.tl.clipr_effects`).
    For a nonlinear model :math:`A` is the Jacobian of its drift at the control steady state,
    to first order in ``strength``.

    **Identifiability**: ``A`` is determined only by at least ``d`` perturbations with
    independent shifts (``d`` genes; for Cell-MNN ``d`` is the rank of its gene-space
    operator, at most ``n_components``). Fewer raise an
    :class:`~celldyn.tl.IdentifiabilityWarning`, and only the span of the shifts is
    determined. For FLeCS and Cell-MNN the default (every gene knocked down once) meets the
    condition; for LCD the screen must shift the law in at least ``d`` independent directions
    (e.g. every gene knocked down once). Which regulators (rows) are determined is written as
    ``var[f'{key_added}_resolution']`` (:func:`~celldyn.tl.regulator_resolution`): a row with
    resolution near 0 is zero by regularisation, not an absence of effects.

    **Which velocities** (``velocities``). FLeCS and Cell-MNN knock each gene down explicitly,
    so their :math:`v_q` are exact for the model. LCD's :math:`v_q` are read from a drift
    fitted to the conditions' laws, an estimate; where its interventions act on measured genes
    (:attr:`~celldyn.models.LCD.intervention_targets_`), the intervention directions
    :math:`v_q = \sum_{j \in q} \pm e_j` rank effects better (simulated screens from two
    generator families, user guide "CLIPR"); the sign of each is that of its target's own
    shift (``-`` for a knockdown, ``+`` for CRISPRa), read where it acts alone. The
    default ``'auto'`` uses them for LCD whenever the conditions whose every intervention
    has a measured target identify the effects (their directions span the rank needed), and
    the model's velocities otherwise.
    With ``velocities='model'`` every condition counts, whatever its interventions act on:
    :math:`v_q` is read from the control drift at the shifted law, which needs no target.

    Parameters
    ----------
    adata
        Annotated data matrix with the model's genes, in the model's order.
    model
        A trained :class:`~celldyn.models.LCD` (its learnt drift and latent states; the
        perturbations are its conditions), :class:`~celldyn.models.FLeCS` (knockdown =
        production offset ``-strength``; steady states by integrating the ODE from the
        training cells' mean) or :class:`~celldyn.models.CellMNN` (its mean gene-space
        operator as a linear drift; knockdown = constant shift ``-strength``; raises if that
        operator is not stable). See :func:`~celldyn.tl.perturbation_responses`.
    perturbations
        LCD: condition labels (``'A'``, ``'A+B'``), default every trained condition. FLeCS,
        Cell-MNN: genes knocked down, one perturbation each, default every gene.
    alpha
        Relative Tikhonov regularisation of :func:`~celldyn.tl.clipr_effects`.
    strength
        FLeCS, Cell-MNN: knockdown size (small values: first-order responses of a nonlinear
        model).
    velocities
        ``'auto'``: ``'targets'`` for LCD when the conditions with measured targets identify
        the effects, ``'model'`` otherwise (see above).
        ``'model'``: :math:`v_q` from the model's drift. ``'targets'``: the direction of the
        perturbed genes, :math:`v_q = \sum_{j \in q} \pm e_j` with the sign of each target's
        own shift (for LCD the interventions' measured targets; conditions with an
        intervention without one are left out, and naming one in ``perturbations`` raises),
        so only the model's shifts are used. This is exact when every intervention has the
        same strength in the model's units; otherwise the effects on each target gene ``i``
        (column ``i``) are divided by gene ``i``'s strength, which changes magnitudes but not
        signs.
    key_added
        ``varp`` and ``uns`` key of the results.
    {copy}

    Returns
    -------
    ``None``, or the copy when ``copy=True``; writes

    - ``var[f'{key_added}_resolution']``: how much of each regulator's row the shifts
      determine, 0 to 1 (:func:`~celldyn.tl.regulator_resolution`).
    - ``varp[key_added]``: dense float32 ``(n_vars, n_vars)`` effect matrix oriented regulator
      (row) x target (column): entry ``[j, i]`` is the effect of gene ``j`` on gene ``i``
      (:math:`A_{ij}`); the diagonal holds the self-effects (decay, negative when stable).
    - ``uns[key_added]``: ``params`` (``model``, ``alpha``, ``strength``, ``velocities``:
      the velocities used, ``'auto'`` resolved),
      ``perturbations`` (labels used, in order), ``rank`` (dimension spanned by the
      shifts), ``min_rank`` (dimension needed) and ``identifiable`` (``rank >= min_rank``).

    Raises
    ------
    ValueError
        If the model has no stable steady state (Cell-MNN) or reaches none (FLeCS), or
        ``velocities='targets'`` meets an intervention without a measured target.
    ~celldyn.nn.SolverDivergedError
        If integrating the FLeCS ODE diverges; nothing is written.
    """
    from ._responses import check_model, perturbation_responses

    check_adata(adata)
    check_model(model)
    check_positive(alpha, "alpha", strict=False)
    check_positive(strength, "strength")
    check_in(velocities, ("auto", "model", "targets"), "velocities")
    if not model.adata.var_names.equals(adata.var_names):
        raise ValueError(
            "`adata` must have the model's genes in the model's order (adata.var_names equal "
            "to model.adata.var_names)."
        )
    responses = perturbation_responses(model, perturbations, strength=strength)
    labels, v, shifts = responses.labels, responses.velocities, responses.shifts
    targets, usable = _target_velocities(labels, responses.targets, list(adata.var_names), shifts)
    if velocities == "auto":
        identified = (
            not responses.explicit_knockdowns
            and usable.any()
            and (usable.all() or perturbations is None)
            and np.linalg.matrix_rank(targets[usable]) >= responses.min_rank
        )
        velocities = "targets" if identified else "model"
    if velocities == "targets":
        v = targets
        dropped = [q for q, ok in zip(labels, usable, strict=True) if not ok]
        if (perturbations is not None and dropped) or not usable.any():
            raise ValueError(
                f"velocities='targets' needs every intervention to act on a measured gene; "
                f"{dropped[:10]} do not. Map interventions to genes with `targets=` in "
                "LCD.setup_anndata, or use velocities='model'."
            )
        labels = [q for q, ok in zip(labels, usable, strict=True) if ok]
        v, shifts = v[usable], shifts[usable]
    effects = clipr_effects(v, shifts, alpha=alpha, min_rank=responses.min_rank)
    rank = int(np.linalg.matrix_rank(shifts))
    results = {
        "params": {
            "model": type(model).__name__,
            "alpha": float(alpha),
            "strength": float(strength),
            "velocities": velocities,
        },
        "perturbations": np.asarray(labels, dtype=object),
        "rank": rank,
        "min_rank": int(responses.min_rank),
        "identifiable": rank >= responses.min_rank,
    }
    return write_results(
        adata,
        copy=copy,
        var={_keys.var.resolution(key_added): regulator_resolution(shifts, alpha=alpha)},
        varp={key_added: effects.astype(np.float32)},
        uns={key_added: results},
    )
