"""FLeCS torch module: a gene-network ODE fitted to cell trajectories."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from scvi.module.base import BaseModuleClass, LossOutput

from ..nn import GRNVectorField, integrate


def integrate_trajectories(
    field: GRNVectorField,
    x0: torch.Tensor,
    times: torch.Tensor,
    **solver_kwargs,
) -> torch.Tensor:
    """Integrate every trajectory from its first cell and return the genes at its times.

    Times are shifted so each trajectory starts at 0; the whole batch is integrated once on
    the sorted union of the shifted times (repeated times are allowed).

    Parameters
    ----------
    field
        The vector field.
    x0
        First cell's expression of each trajectory, ``(n_traj, n_genes)``.
    times
        Non-decreasing times of each trajectory, ``(n_traj, length)``.
    **solver_kwargs
        Passed to :func:`~celldyn.nn.integrate` (``method``, ``rtol``, ``atol``, ...).

    Returns
    -------
    Predicted expression ``(n_traj, length, n_genes)``.
    """
    shifted = times - times[:, :1]
    grid, position = torch.unique(shifted, sorted=True, return_inverse=True)
    if grid.numel() < 2:  # every trajectory has zero duration
        return x0[:, None].expand(-1, times.shape[1], -1)
    states = integrate(field, field.initial_state(x0), grid, **solver_kwargs)
    genes = field.gene_state(states)  # (n_grid, n_traj, n_genes)
    rows = torch.arange(x0.shape[0], device=x0.device)[:, None]
    return genes[position, rows]


class FLeCSModule(BaseModuleClass):
    """FLeCS: :class:`~celldyn.nn.GRNVectorField` trained on trajectories by MSE.

    Each training sample is a trajectory: expression ``x`` ``(length, n_genes)`` and times
    ``t`` ``(length,)``. The ODE is integrated from the first cell; the loss is the mean
    squared error between predicted and observed gene expression at the later cells.

    Parameters
    ----------
    n_genes
        Number of genes.
    src, dst
        Regulator (row) and target (column) gene index of each prior edge.
    method, rtol, atol
        Solver settings of :func:`~celldyn.nn.integrate` used in training.
    **field_kwargs
        Passed to :class:`~celldyn.nn.GRNVectorField` (``n_latent``, ``protein_proxy``,
        ``kernel``, ...).
    """

    def __init__(
        self,
        n_genes: int,
        src: Sequence[int] | torch.Tensor,
        dst: Sequence[int] | torch.Tensor,
        *,
        method: str = "dopri5",
        rtol: float = 1e-3,
        atol: float = 1e-4,
        **field_kwargs,
    ):
        super().__init__()
        self.field = GRNVectorField(n_genes, src, dst, **field_kwargs)
        self.method, self.rtol, self.atol = method, float(rtol), float(atol)

    def _get_inference_input(self, tensors):
        return {"x": tensors["x"], "t": tensors["t"]}

    def inference(self, x: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
        """Predict every trajectory from its first cell."""
        predicted = integrate_trajectories(
            self.field, x[:, 0], t, method=self.method, rtol=self.rtol, atol=self.atol
        )
        return {"predicted": predicted}

    def _get_generative_input(self, tensors, inference_outputs):
        return {}

    def generative(self) -> dict:
        """No generative step."""
        return {}

    def loss(self, tensors, inference_outputs, generative_outputs) -> LossOutput:
        """Mean squared error on the cells after the first of every trajectory."""
        error = (inference_outputs["predicted"][:, 1:] - tensors["x"][:, 1:]).square()
        per_trajectory = error.mean(dim=(1, 2))
        return LossOutput(loss=per_trajectory.mean(), reconstruction_loss=per_trajectory)
