"""Cell-MNN building blocks: an MLP mapping a cell state to a bounded linear operator.

Convention (column vectors, used everywhere): a state ``z`` of shape ``(d,)`` evolves as
``dz/dt = A z + b``, so ``A[i, j]`` is the effect of coordinate ``j`` on the rate of
coordinate ``i``; ``b`` is an optional constant drift (``b = 0``: linear, ``z(t0 + dt) =
expm(A dt) z(t0)``; else affine, solved in closed form through the augmented state ``(z, 1)``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

PARAMETRIZATIONS = ("direct", "eigen")
"""Operator parametrizations accepted by :class:`OperatorMLP`."""
_DET_EPS = 1e-4


class Operator(NamedTuple):
    """Output of :class:`OperatorMLP`.

    Attributes
    ----------
    matrix
        Operators ``A``, shape ``(batch, d, d)``.
    basis
        Eigenbasis ``P`` of ``A = P diag(λ) P⁻¹`` (``parametrization='eigen'``), else ``None``.
    drift
        Constant drifts ``b``, shape ``(batch, d)`` (``affine=True``), else ``None``.
    """

    matrix: torch.Tensor
    basis: torch.Tensor | None
    drift: torch.Tensor | None = None


def bound_norm(raw: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Rescale matrices so their Frobenius norm is ``max_norm * tanh(‖raw‖_F / max_norm)``.

    Smooth, close to the identity map for small matrices, and ``‖A‖₂ ≤ ‖A‖_F < max_norm``.
    """
    norm = torch.linalg.matrix_norm(raw, keepdim=True).clamp_min(1e-12)
    return raw * (max_norm * torch.tanh(norm / max_norm) / norm)


def propagate(
    operator: torch.Tensor,
    z0: torch.Tensor,
    dt: torch.Tensor,
    drift: torch.Tensor | None = None,
) -> torch.Tensor:
    """Closed-form solution of ``dz/dt = A z + b`` at several horizons.

    Without ``drift`` this is ``expm(A dt) z0``; with it, the exponential of the augmented
    operator ``[[A, b], [0, 0]]`` applied to ``(z0, 1)``.

    Parameters
    ----------
    operator
        Operators ``A``, shape ``(batch, d, d)``.
    z0
        Initial states, shape ``(batch, d)``.
    dt
        Horizons (negative values integrate backwards), shape ``(batch, n_times)``.
    drift
        Constant drifts ``b``, shape ``(batch, d)``, or ``None`` (``b = 0``).

    Returns
    -------
    States of shape ``(batch, n_times, d)``.
    """
    if drift is not None:
        operator = nn.functional.pad(torch.cat([operator, drift[..., None]], -1), (0, 0, 0, 1))
        z0 = nn.functional.pad(z0, (0, 1), value=1.0)
    flows = torch.linalg.matrix_exp(operator[:, None] * dt[..., None, None])
    states = (flows @ z0[:, None, :, None]).squeeze(-1)
    return states if drift is None else states[..., :-1]


def invertibility_penalty(basis: torch.Tensor) -> torch.Tensor:
    """Mean of ``1 / (|det P| + 1e-4)``: keeps the eigenbases ``P`` away from singular."""
    return (1.0 / (torch.linalg.det(basis).abs() + _DET_EPS)).mean()


class OperatorMLP(nn.Module):
    """MLP ``(z, t, condition) -> A``: a local linear operator for every cell state.

    The operator is bounded, so ``expm(A dt)`` stays finite for any finite horizon:

    - ``'direct'``: the MLP outputs the ``d²`` entries of ``A``, rescaled by
      :func:`bound_norm` so ``‖A‖_F < max_rate`` and ``‖expm(A dt)‖₂ ≤ exp(max_rate |dt|)``.
    - ``'eigen'``: ``A = P diag(λ) P⁻¹`` with ``P = I + MLP output`` and real eigenvalues
      ``λ = max_rate * tanh(raw / max_rate)``; the last ``n_zero_eigenvalues`` are fixed at 0.
      ``‖expm(A dt)‖₂ ≤ cond(P) exp(max_rate |dt|)``; train it with
      :func:`invertibility_penalty`.

    With ``affine=True`` the MLP also outputs a constant drift ``b`` (``dz/dt = A z + b``),
    rescaled like ``A`` so ``‖b‖ < max_rate``: without it every cell's flow keeps the origin
    of the coordinates fixed, so a population that must pass near the origin (e.g. centred
    PCA coordinates of a time course) can only get there by rotating around it.

    The last layer is scaled by ``init_scale``, so ``A`` starts near 0 (``'direct'``) or
    with eigenvalues near 0 and ``P`` near the identity (``'eigen'``), and ``b`` near 0.

    Parameters
    ----------
    n_latent
        Dimension ``d`` of the state.
    n_conditions
        Number of categories of a one-hot condition input (``0``: no condition).
    n_hidden
        Width of the hidden layers.
    n_layers
        Number of hidden layers.
    parametrization
        ``'direct'`` or ``'eigen'``.
    n_zero_eigenvalues
        ``'eigen'`` only: number of eigenvalues fixed at 0 (conserved directions).
    max_rate
        Bound on the operator (see above), in units of 1 / time.
    init_scale
        Factor applied to the initial weights and bias of the output layer.
    affine
        Also output a constant drift ``b`` (see above).
    """

    def __init__(
        self,
        n_latent: int,
        *,
        n_conditions: int = 0,
        n_hidden: int = 64,
        n_layers: int = 3,
        parametrization: str = "direct",
        n_zero_eigenvalues: int = 0,
        max_rate: float = 10.0,
        init_scale: float = 0.01,
        affine: bool = False,
    ):
        super().__init__()
        if parametrization not in PARAMETRIZATIONS:
            raise ValueError(
                f"`parametrization` must be one of {PARAMETRIZATIONS}, got {parametrization!r}."
            )
        if parametrization == "direct" and n_zero_eigenvalues:
            raise ValueError("`n_zero_eigenvalues` needs `parametrization='eigen'`.")
        if not 0 <= n_zero_eigenvalues < n_latent:
            raise ValueError(
                f"`n_zero_eigenvalues` must be in [0, {n_latent}), got {n_zero_eigenvalues}."
            )
        if not max_rate > 0:
            raise ValueError(f"`max_rate` must be positive, got {max_rate}.")
        self.n_latent = n_latent
        self.n_conditions = n_conditions
        self.parametrization = parametrization
        self.n_free_eigenvalues = n_latent - n_zero_eigenvalues
        self.max_rate = float(max_rate)
        self.affine = bool(affine)
        n_out = n_latent * n_latent + (n_latent if self.affine else 0)
        if parametrization == "eigen":
            n_out += self.n_free_eigenvalues
        layers, n_in = [], n_latent + 1 + n_conditions
        for _ in range(n_layers):
            layers += [nn.Linear(n_in, n_hidden), nn.SiLU()]
            n_in = n_hidden
        out = nn.Linear(n_in, n_out)
        with torch.no_grad():
            out.weight.mul_(init_scale)
            out.bias.mul_(init_scale)
        self.net = nn.Sequential(*layers, out)

    def forward(
        self, z: torch.Tensor, t: torch.Tensor, condition: torch.Tensor | None = None
    ) -> Operator:
        """Operators at states ``z`` ``(batch, d)``, times ``t`` ``(batch,)``.

        ``condition`` holds integer categories ``(batch,)`` when ``n_conditions > 0``.
        """
        inputs = [z, t[:, None].to(z.dtype)]
        if self.n_conditions:
            if condition is None:
                raise ValueError("This OperatorMLP is conditional: pass `condition`.")
            inputs.append(nn.functional.one_hot(condition.long(), self.n_conditions).to(z.dtype))
        raw = self.net(torch.cat(inputs, dim=-1))
        d = self.n_latent
        drift = None
        if self.affine:
            drift = bound_norm(raw[:, -d:, None], self.max_rate)[..., 0]
            raw = raw[:, :-d]
        if self.parametrization == "direct":
            return Operator(bound_norm(raw.view(-1, d, d), self.max_rate), None, drift)
        basis = raw[:, : d * d].view(-1, d, d) + torch.eye(d, dtype=raw.dtype, device=raw.device)
        rates = self.max_rate * torch.tanh(raw[:, d * d :] / self.max_rate)
        rates = nn.functional.pad(rates, (0, d - self.n_free_eigenvalues))
        # A = P diag(λ) P⁻¹ solves A P = P diag(λ), i.e. Pᵀ Aᵀ = (P diag(λ))ᵀ
        scaled = basis * rates[:, None, :]
        matrix = torch.linalg.solve(basis.mT, scaled.mT).mT
        return Operator(matrix, basis, drift)
