r"""Perturbation responses of fitted models: initial velocities and steady-state shifts.

For every perturbation :math:`q` a model gives :math:`v_q`, the change of its drift at the
control steady state, and :math:`l_q`, the shift of its steady state; CLIPR
(:func:`celldyn.tl.clipr_effects`) turns them into a causal effect matrix.

- LCD (:class:`~celldyn.models.LCD`): the shift of the mean latent state of each condition
  and the first-order change of the control drift when its law is translated by that shift.
- FLeCS (:class:`~celldyn.models.FLeCS`, or a bare :class:`~celldyn.nn.GRNVectorField`):
  knocking down gene :math:`j` adds ``-strength`` to its production input
  (:attr:`~celldyn.nn.GRNVectorField.production_offset`). The control steady state is the
  fixed point reached by integrating the ODE from the training cells' mean, the perturbed
  one by integrating from there; :math:`v_q = f_q(G^*) - f(G^*)`.
- Cell-MNN (:class:`~celldyn.models.CellMNN`): the mean operator in gene space
  :math:`M` (the transpose of :meth:`~celldyn.models.CellMNN.get_interactions`) is a linear
  drift :math:`dx/dt = M (x - x^*)`; knocking down gene :math:`j` adds
  :math:`c_q = -\mathrm{strength}\,e_j`, so :math:`v_q = c_q` and
  :math:`l_q = -M^{+} c_q` (the drift acts on the span of the loadings only).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._validate import check_positive

_CHUNK = 256
_MAX_ROUNDS = 30
_RELAXATIONS = 5.0
_MIN_RATE = 1e-2
_STEADY_TOL = 1e-10
_FLOOR_TOL = 1e-7
_EIGEN_TOL = 1e-8


@dataclass(frozen=True)
class PerturbationResponses:
    """Responses of a model to a set of perturbations (rows in the order of ``labels``).

    Attributes
    ----------
    labels
        Perturbation labels.
    velocities
        ``(n_perturbations, n_genes)``: :math:`v_q`, the drift change at the control steady
        state.
    shifts
        ``(n_perturbations, n_genes)``: :math:`l_q`, the steady-state shift.
    control_state
        ``(n_genes,)``: the control steady state (``None`` for Cell-MNN, whose steady state is
        the origin of its representation).
    min_rank
        Dimension the model's drift acts on (the rank CLIPR needs from ``shifts``).
    targets
        Intervention (a part of a label) -> the measured gene it acts on, for those that act
        on one (FLeCS, Cell-MNN: every gene on itself; LCD:
        :attr:`~celldyn.models.LCD.intervention_targets_`).
    explicit_knockdowns
        Whether ``velocities`` are the model's response to an explicit knockdown of each
        target (FLeCS, Cell-MNN), rather than read from a drift fitted to the conditions'
        laws (LCD), which estimates them.
    """

    labels: list[str]
    velocities: np.ndarray
    shifts: np.ndarray
    control_state: np.ndarray | None
    min_rank: int
    targets: dict[str, str]
    explicit_knockdowns: bool


def _gene_positions(genes: pd.Index, perturbations: Sequence[str] | None) -> list[int]:
    if perturbations is None:
        return list(range(len(genes)))
    if isinstance(perturbations, str):
        raise TypeError("`perturbations` must be a sequence of gene names, not a string.")
    missing = [p for p in perturbations if p not in genes]
    if missing:
        raise KeyError(f"Perturbed gene(s) {missing} are not among the model's genes.")
    if len(set(perturbations)) != len(perturbations):
        raise ValueError("`perturbations` names a gene more than once.")
    return [int(genes.get_loc(p)) for p in perturbations]


def _steady_state(field, state, offset, *, method: str = "dopri5"):
    """Integrate ``field`` (with ``offset`` on production) until every derivative vanishes."""
    import torch

    from ..nn import integrate

    rates = [field.decay]
    if field.protein_proxy:
        rates.append(field.protein_decay)
    slowest = float(torch.cat(rates).min().clamp(min=_MIN_RATE))
    horizon = _RELAXATIONS / slowest
    field.production_offset = offset
    previous = float("inf")
    try:
        for _ in range(_MAX_ROUNDS):
            state = integrate(field, state, [0.0, horizon], method=method, rtol=1e-10, atol=1e-12)
            state = state[-1]
            speed = float(field(0.0, state).abs().max())
            scale = 1.0 + float(state.abs().max())
            # converged, or stalled at the solver's precision floor close to a fixed point
            stalled = speed > 0.5 * previous and speed < _FLOOR_TOL * scale
            if speed < _STEADY_TOL * scale or stalled:
                return state
            previous = speed
    finally:
        field.production_offset = None
    raise ValueError(
        f"The FLeCS ODE reached no steady state within {_MAX_ROUNDS * horizon:.3g} time units "
        f"(largest remaining derivative {speed:.3g}); it may oscillate. CLIPR needs a stable "
        "fixed point."
    )


def field_responses(
    field,
    start: np.ndarray,
    genes: Sequence[int],
    *,
    strength: float = 0.1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Responses of a FLeCS vector field to production knockdowns of single genes.

    Parameters
    ----------
    field
        A :class:`~celldyn.nn.GRNVectorField` (not modified; computed in float64 on CPU).
    start
        ``(n_genes,)`` expression the control steady state is searched from.
    genes
        Indices of the knocked-down genes, one perturbation each.
    strength
        Production offset ``-strength`` added to each knocked-down gene.

    Returns
    -------
    ``velocities``, ``shifts`` (both ``(len(genes), n_genes)``) and the control steady state
    ``(n_genes,)``.

    Raises
    ------
    ValueError
        If the ODE reaches no steady state.
    ~celldyn.nn.SolverDivergedError
        If the integration diverges.
    """
    import torch

    field = copy.deepcopy(field).to(device="cpu", dtype=torch.float64)
    field.production_offset = field.decay_offset = None
    n = field.n_genes
    with torch.no_grad():
        x0 = field.initial_state(torch.as_tensor(start, dtype=torch.float64)[None])
        control = _steady_state(field, x0, None)
        base = field.gene_state(field(0.0, control))
        velocities, shifts = [], []
        for s in range(0, len(genes), _CHUNK):
            chunk = list(genes[s : s + _CHUNK])
            offset = torch.zeros(len(chunk), n, dtype=torch.float64)
            offset[torch.arange(len(chunk)), torch.as_tensor(chunk)] = -float(strength)
            field.production_offset = offset
            velocities.append(field.gene_state(field(0.0, control)) - base)
            field.production_offset = None
            perturbed = _steady_state(field, control.expand(len(chunk), -1).clone(), offset)
            shifts.append(field.gene_state(perturbed - control))
    return (
        torch.cat(velocities).numpy(),
        torch.cat(shifts).numpy(),
        field.gene_state(control)[0].numpy(),
    )


def linear_drift_responses(
    drift: np.ndarray, genes: Sequence[int], *, strength: float = 0.1
) -> tuple[np.ndarray, np.ndarray, int]:
    """Responses of the linear drift ``dx/dt = drift @ (x - x*)`` to constant knockdowns.

    Parameters
    ----------
    drift
        ``(n_genes, n_genes)`` matrix, column-vector convention (``drift[i, j]`` is the effect
        of gene ``j`` on the rate of gene ``i``); it may be rank-deficient (a drift on a
        subspace), but its non-zero eigenvalues must have negative real parts.
    genes
        Indices of the knocked-down genes; perturbation ``q`` adds ``-strength * e_j``.
    strength
        Size of the knockdown.

    Returns
    -------
    ``velocities`` (the shifts ``c_q``), ``shifts`` (``-drift⁺ c_q``), both
    ``(len(genes), n_genes)``, and the rank of ``drift``.

    Raises
    ------
    ValueError
        If an eigenvalue has a non-negative real part (no stable steady state).
    """
    eigenvalues = np.linalg.eigvals(drift)
    scale = max(float(np.abs(eigenvalues).max()), np.finfo(float).tiny)
    active = np.abs(eigenvalues) > _EIGEN_TOL * scale
    if not np.any(active) or np.any(eigenvalues[active].real >= 0):
        top = float(eigenvalues[active].real.max()) if np.any(active) else 0.0
        raise ValueError(
            "The linear drift is not stable: an eigenvalue has real part "
            f"{top:.3g} >= 0, so there is no steady state to perturb."
        )
    c = np.zeros((len(genes), drift.shape[0]))
    c[np.arange(len(genes)), list(genes)] = -float(strength)
    shifts = -c @ np.linalg.pinv(drift).T
    return c, shifts, int(np.count_nonzero(active))


def _cellmnn_drift(model, loadings: str) -> np.ndarray:
    """Gene-space mean operator of a Cell-MNN model (column-vector convention)."""
    interactions = model.get_interactions(loadings=loadings)  # regulator x target
    genes = model.adata.var_names
    pos = genes.get_indexer(interactions.index)
    drift = np.zeros((len(genes), len(genes)))
    drift[np.ix_(pos, pos)] = interactions.to_numpy(np.float64).T
    return drift


def lcd_responses(
    model,
    perturbations: Sequence[str] | None = None,
    *,
    n_samples: int = 500,
    random_state: int = 0,
) -> PerturbationResponses:
    """Responses of a fitted LCD model to its perturbation conditions.

    ``l_q`` is the shift of the mean latent state: of the fitted states for a trained
    condition, of ``n_samples`` stationary samples (:meth:`~celldyn.models.LCD.sample_latent`,
    the same seed for the condition and the control) for any other label. ``v_q`` is the
    change of the control drift when its law is translated by ``l_q``, to first order, mean
    over the control cells' fitted states (:meth:`~celldyn.models.LCD.get_drift_response`).
    """
    latent = model.get_latent()
    labels = model.adata.obs[model.perturbation_key].astype(str).to_numpy()
    if perturbations is None:
        perturbations = [q for q in model.perturbation_labels_ if q != model.control]
    if isinstance(perturbations, str) or len(perturbations) == 0:
        raise ValueError("`perturbations` must be a non-empty sequence of condition labels.")
    ctrl = latent[labels == model.control]
    shifts, sampled_control = [], None
    for q in perturbations:
        model._check_label(q)
        if q in model.perturbation_labels_:
            shifts.append(latent[labels == q].mean(0) - ctrl.mean(0))
            continue
        if sampled_control is None:
            sampled_control = model.sample_latent(
                model.control, n_samples, random_state=random_state
            ).mean(0)
        sample = model.sample_latent(q, n_samples, random_state=random_state)
        shifts.append(sample.mean(0) - sampled_control)
    shifts = np.stack(shifts)
    return PerturbationResponses(
        [str(q) for q in perturbations],
        model.get_drift_response(ctrl, shifts),
        shifts,
        ctrl.mean(0),
        latent.shape[1],
        dict(model.intervention_targets_),
        explicit_knockdowns=False,
    )


def check_model(model) -> None:
    """Raise unless ``model`` is a trained model with perturbation responses."""
    from ..models import LCD, CellMNN, FLeCS

    if not isinstance(model, LCD | FLeCS | CellMNN):
        raise TypeError(
            f"`model` must be a trained LCD, FLeCS or CellMNN model, got {type(model).__name__}."
        )
    if not getattr(model, "is_trained_", False):
        raise ValueError(f"The {type(model).__name__} model is not trained; call `train` first.")


def perturbation_responses(
    model,
    perturbations: Sequence[str] | None = None,
    *,
    strength: float = 0.1,
    start: np.ndarray | None = None,
    loadings: str = "PCs",
    n_samples: int = 500,
    random_state: int = 0,
) -> PerturbationResponses:
    r"""Compute the initial velocities and steady-state shifts of a model's perturbations.

    These are the inputs of :func:`celldyn.tl.clipr_effects`.

    - LCD: perturbations are condition labels (``'A'``, ``'A+B'``; default every trained
      condition); :math:`l_q` is the shift of the mean latent state (fitted states for trained
      conditions, ``n_samples`` stationary samples otherwise) and :math:`v_q` the change of
      the control drift when its law is translated by :math:`l_q`,
      :math:`f_{ctrl}(x - l_q) - f_{ctrl}(x) \approx -J_f(x)\,l_q`, mean over the control
      cells' fitted states (:meth:`~celldyn.models.LCD.get_drift_response`; exact for shift
      interventions on a linear diffusion, where :math:`f_q(x) = f_{ctrl}(x - l_q)`). CLIPR
      then returns the mean Jacobian of the learnt drift at the control cells.
      ``strength``, ``start`` and ``loadings`` do not apply.
    - FLeCS: knocking down gene :math:`j` adds ``-strength`` to its production input
      (:attr:`~celldyn.nn.GRNVectorField.production_offset`). The control steady state
      :math:`G^*` is the fixed point reached by integrating the ODE from ``start``, the
      perturbed one by integrating from :math:`G^*`; :math:`v_q = f_q(G^*) - f(G^*)` and
      :math:`l_q` is the difference of the fixed points.
    - Cell-MNN: the mean operator in gene space :math:`M` (the transpose of
      :meth:`~celldyn.models.CellMNN.get_interactions`) is the linear drift
      :math:`dx/dt = M (x - x^*)`; knocking down gene :math:`j` adds
      :math:`c_q = -\mathrm{strength}\,e_j`, so :math:`v_q = c_q` and
      :math:`l_q = -M^{+} c_q`. :math:`M` acts on the span of the loadings only, so the
      shifts span ``rank(M)`` dimensions (``min_rank``).

    Parameters
    ----------
    model
        A trained :class:`~celldyn.models.LCD`, :class:`~celldyn.models.FLeCS` or
        :class:`~celldyn.models.CellMNN`.
    perturbations
        LCD: condition labels. FLeCS, Cell-MNN: genes knocked down, one perturbation each;
        default every gene of the model.
    strength
        Knockdown size: the production offset (FLeCS) or the constant drift shift (Cell-MNN).
        The CLIPR identity is exact for a linear drift and first-order otherwise, so small
        values recover the Jacobian of a nonlinear model at its control steady state.
    start
        FLeCS: ``(n_genes,)`` expression the control steady state is searched from; default
        the mean expression of the model's training cells.
    loadings
        Cell-MNN: key of ``model.adata.varm`` with the loadings of its representation.
    n_samples, random_state
        LCD: stationary samples per condition absent from training, and their seed.

    Returns
    -------
    :class:`PerturbationResponses` with labels, velocities, shifts, the control steady state,
    the rank the shifts need and the interventions' measured targets.
    """
    from ..models import LCD, FLeCS

    check_model(model)
    check_positive(strength, "strength")
    if isinstance(model, LCD):
        return lcd_responses(model, perturbations, n_samples=n_samples, random_state=random_state)
    genes = model.adata.var_names
    positions = _gene_positions(genes, perturbations)
    labels = [str(genes[p]) for p in positions]
    if isinstance(model, FLeCS):
        if start is None:
            start = model._expression(model.adata).mean(0)
        start = np.asarray(start, dtype=np.float64)
        if start.shape != (len(genes),) or not np.all(np.isfinite(start)):
            raise ValueError(f"`start` must be a finite vector of length {len(genes)}.")
        velocities, shifts, control = field_responses(
            model.module.field, start, positions, strength=strength
        )
        return PerturbationResponses(
            labels,
            velocities,
            shifts,
            control,
            len(genes),
            {g: g for g in labels},
            explicit_knockdowns=True,
        )
    drift = _cellmnn_drift(model, loadings)
    velocities, shifts, rank = linear_drift_responses(drift, positions, strength=strength)
    return PerturbationResponses(
        labels,
        velocities,
        shifts,
        None,
        rank,
        {g: g for g in labels},
        explicit_knockdowns=True,
    )
