"""Integrating vector fields with torchdiffeq, turning divergence into a clear error."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .._validate import check_int, check_positive

ADAPTIVE_METHODS = ("dopri8", "dopri5", "bosh3", "fehlberg2", "adaptive_heun")
"""torchdiffeq's adaptive solvers, whose number of steps :func:`integrate` bounds."""
MAX_NUM_STEPS = 10_000
"""Default bound on the steps an adaptive solver attempts in one solve (all output times)."""
# AssertionError messages torchdiffeq raises when an adaptive solve breaks down.
_DIVERGENCE_MESSAGES = ("underflow in dt", "non-finite values", "max_num_steps exceeded")


class SolverDivergedError(RuntimeError):
    """An ODE solve produced NaN/inf values or its adaptive step size collapsed."""


class _FiniteGuard(nn.Module):
    """Wraps a vector field; raises :class:`SolverDivergedError` on a non-finite derivative."""

    def __init__(self, field: Callable):
        super().__init__()
        self.field = field

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        dy = self.field(t, y)
        # one reduction instead of an elementwise mask: NaN/inf anywhere makes the sum non-finite
        # (a sum overflowing to inf means the state has blown up anyway)
        if not bool(torch.isfinite(dy.detach().sum())):
            raise SolverDivergedError(
                f"The vector field returned NaN or infinite values at t={float(t):.4g} "
                f"(state magnitude up to {float(y.detach().abs().max()):.3g})."
            )
        return dy


class _StepBound(_FiniteGuard):
    """:class:`_FiniteGuard` that also ends a solve after ``max_num_steps`` adaptive steps.

    torchdiffeq calls ``callback_step`` before every attempted step (accepted or rejected)
    and ``callback_step_adjoint`` in the backward solve of the adjoint method; each solve
    is counted on its own, over all its output times.
    """

    def __init__(self, field: Callable, max_num_steps: int, span: tuple[float, float]):
        super().__init__(field)
        self.max_num_steps, self.span = max_num_steps, span
        self.steps = {"forward": 0, "adjoint": 0}

    def _count(self, direction: str, t0: torch.Tensor, y0: torch.Tensor, dt: torch.Tensor):
        self.steps[direction] += 1
        if self.steps[direction] > self.max_num_steps:
            states = y0 if isinstance(y0, tuple | list) else (y0,)  # adjoint: a tuple
            size = max((float(s.detach().abs().max()) for s in states if s.numel()), default=0)
            raise SolverDivergedError(
                f"The ODE solve diverged: more than max_num_steps={self.max_num_steps} solver "
                f"steps ({direction}), stuck at t={float(t0.detach()):.4g} of "
                f"[{self.span[0]:.4g}, {self.span[1]:.4g}] with step size "
                f"{float(dt.detach()):.3g} (state magnitude up to {size:.3g}): the field is "
                "exploding or very stiff."
            )

    def callback_step(self, t0, y0, dt) -> None:
        """Count one forward step."""
        self._count("forward", t0, y0, dt)

    def callback_step_adjoint(self, t0, y0, dt) -> None:
        """Count one step of the adjoint's backward solve."""
        self._count("adjoint", t0, y0, dt)


def check_tolerances(**tolerances: object) -> None:
    """Raise a :class:`ValueError` naming the first tolerance that is not finite and > 0."""
    for name, value in tolerances.items():
        check_positive(value, name)


def _as_times(t, like: torch.Tensor) -> torch.Tensor:
    times = torch.as_tensor(
        np.asarray(t) if not isinstance(t, torch.Tensor) else t,
        dtype=like.dtype,
        device=like.device,
    )
    if times.ndim != 1 or times.numel() < 2:
        raise ValueError(f"`t` must be one-dimensional with at least 2 time points, got {t!r}.")
    if not bool(torch.isfinite(times).all()):
        raise ValueError("`t` contains NaN or infinite values.")
    steps = times[1:] - times[:-1]
    if not (bool((steps > 0).all()) or bool((steps < 0).all())):
        raise ValueError("`t` must be strictly increasing or strictly decreasing.")
    return times


def integrate(
    field: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    y0: torch.Tensor,
    t: torch.Tensor | Sequence[float] | np.ndarray,
    *,
    method: str = "dopri5",
    rtol: float = 1e-3,
    atol: float = 1e-4,
    adjoint: bool = False,
    options: dict | None = None,
) -> torch.Tensor:
    """Solve ``dy/dt = field(t, y)`` from ``y0`` and return the states at times ``t``.

    A thin wrapper of :func:`torchdiffeq.odeint` (or :func:`~torchdiffeq.odeint_adjoint`) that
    never returns NaN and never runs unbounded: a non-finite derivative or state, a collapsing
    adaptive step ("underflow in dt") or more than ``options["max_num_steps"]`` steps of an
    adaptive solver in the whole solve (all output times together; default
    :data:`MAX_NUM_STEPS`; a stiff or exploding field otherwise shrinks the step without end)
    raise :class:`SolverDivergedError`. The backward solve of ``adjoint=True`` has the same bound.
    Gradients flow to ``y0`` and to the field's parameters by backpropagation through the
    solver steps (or by the adjoint method when ``adjoint=True``, which saves memory but is
    usually several times slower; then only ``field.parameters()`` receive gradients).

    Parameters
    ----------
    field
        Vector field ``f(t, y) -> dy/dt``, e.g. :class:`~celldyn.nn.GRNVectorField`. Must be a
        :class:`torch.nn.Module` when ``adjoint=True``.
    y0
        Initial state, shape ``(..., state_dim)``; must be finite.
    t
        Strictly monotone output times (at least 2); ``t[0]`` is the time of ``y0``.
    method
        Any torchdiffeq solver: ``"dopri5"``, ``"rk4"``, ``"euler"``, ``"bosh3"``, ...
    rtol, atol
        Tolerances of adaptive solvers (finite, positive; checked for every method).
    adjoint
        Use the adjoint method for gradients.
    options
        Solver options passed to torchdiffeq (e.g. ``{"step_size": 0.1}`` for fixed-step
        solvers), and for adaptive ones ``max_num_steps``: the most steps of the whole solve
        (default :data:`MAX_NUM_STEPS`; unlike torchdiffeq's option, not per output time).

    Returns
    -------
    Tensor of shape ``(len(t), *y0.shape)``.

    Raises
    ------
    SolverDivergedError
        If the solution blows up or the solver cannot proceed.
    ValueError
        If ``rtol`` or ``atol`` is not a finite positive number, ``max_num_steps`` not an
        integer >= 1, or ``y0``/``t`` is invalid.
    """
    from torchdiffeq import odeint, odeint_adjoint

    if not callable(field):
        raise TypeError(f"`field` must be callable f(t, y), got {type(field).__name__}.")
    if adjoint and not isinstance(field, nn.Module):
        raise TypeError("`adjoint=True` needs `field` to be a torch.nn.Module.")
    if not isinstance(y0, torch.Tensor) or not y0.is_floating_point():
        raise TypeError("`y0` must be a floating-point torch.Tensor.")
    if not bool(torch.isfinite(y0.detach()).all()):
        raise ValueError("`y0` contains NaN or infinite values.")
    check_tolerances(rtol=rtol, atol=atol)
    times = _as_times(t, y0)
    if method in ADAPTIVE_METHODS:
        options = dict(options or {})
        max_num_steps = check_int(options.pop("max_num_steps", MAX_NUM_STEPS), "max_num_steps", 1)
        guarded = _StepBound(field, max_num_steps, (float(times[0]), float(times[-1])))
    else:
        guarded = _FiniteGuard(field)
    solve = odeint_adjoint if adjoint else odeint
    settings = dict(method=method, rtol=rtol, atol=atol, options=options)
    try:
        solution = solve(guarded, y0, times, **settings)
    except AssertionError as err:
        if any(message in str(err) for message in _DIVERGENCE_MESSAGES):
            raise SolverDivergedError(
                f"The ODE solve diverged ({err}) with method={method!r}, rtol={rtol}, "
                f"atol={atol}. Try a shorter time span, a smaller step, or smaller weights."
            ) from err
        raise
    if not bool(torch.isfinite(solution.detach().sum())):
        raise SolverDivergedError(
            f"The ODE solve with method={method!r} produced NaN or infinite states. Try a "
            "shorter time span, a smaller step, or smaller weights."
        )
    return solution
