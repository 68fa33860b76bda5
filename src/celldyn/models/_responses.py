r"""Perturbation responses computed by fitted models: the inputs of CLIPR.

For every perturbation :math:`q` a model gives :math:`v_q`, the change of its drift at the
control steady state, and :math:`l_q`, the shift of its steady state. Each model's
``perturbation_responses`` method builds a :class:`PerturbationResponses` with the helpers
here; :func:`celldyn.tl.perturbation_responses` calls it.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

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


def gene_positions(genes: pd.Index, perturbations: Sequence[str] | None) -> list[int]:
    """Positions in ``genes`` of the perturbed genes (default: every gene), checked."""
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
