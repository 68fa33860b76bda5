"""FLeCS drug module: condition-dependent rate offsets on a frozen FLeCS vector field."""

from __future__ import annotations

import copy
from contextlib import contextmanager

import torch
from scvi.module.base import BaseModuleClass, LossOutput

from ..nn import DrugEffect, GRNVectorField
from ..nn._ode import ADAPTIVE_METHODS
from ._flecs import TRAIN_MAX_NUM_STEPS, integrate_trajectories, trajectory_mse


def _frozen_copy(field: GRNVectorField) -> GRNVectorField:
    """Deep copy of ``field`` without offsets and with every parameter frozen."""
    offsets = (field.production_offset, field.decay_offset)
    field.production_offset = field.decay_offset = None  # offsets may be non-leaf tensors
    try:
        frozen = copy.deepcopy(field)
    finally:
        field.production_offset, field.decay_offset = offsets
    return frozen.train().requires_grad_(False)  # train mode like the rest of the module


class FLeCSDrugModule(BaseModuleClass):
    """Frozen :class:`~celldyn.nn.GRNVectorField` plus trainable :class:`~celldyn.nn.DrugEffect`.

    Each training sample is a trajectory: expression ``x`` ``(length, n_genes)``, times ``t``
    ``(length,)`` and the features ``c`` ``(n_features,)`` of its condition. The effect network
    turns ``c`` into production and decay offsets, which are set on the field; the trajectory
    is integrated from its first cell and the loss is the mean squared error on the later cells.

    Parameters
    ----------
    base
        Fitted FLeCS field. It is deep-copied and frozen (no gradients reach it).
    n_features
        Length of the condition feature vectors.
    n_hidden
        Hidden width of the two effect MLPs.
    method, rtol, atol
        Solver settings of :func:`~celldyn.nn.integrate` used in training and prediction.
    """

    def __init__(
        self,
        base: GRNVectorField,
        n_features: int,
        *,
        n_hidden: int = 64,
        method: str = "dopri5",
        rtol: float = 1e-3,
        atol: float = 1e-4,
    ):
        super().__init__()
        if not isinstance(base, GRNVectorField):
            raise TypeError(f"`base` must be a GRNVectorField, got {type(base).__name__}.")
        self.field = _frozen_copy(base)
        self.effect = DrugEffect(n_features, self.field.n_genes, n_hidden=n_hidden)
        self.method, self.rtol, self.atol = method, float(rtol), float(atol)

    @contextmanager
    def offsets(self, production: torch.Tensor, decay: torch.Tensor):
        """Set production and decay offsets ``(..., n_genes)`` on the field for a ``with`` block."""
        self.field.production_offset, self.field.decay_offset = production, decay
        try:
            yield self.field
        finally:
            self.field.production_offset = self.field.decay_offset = None

    def integrate(
        self,
        x0: torch.Tensor,
        t: torch.Tensor,
        production: torch.Tensor,
        decay: torch.Tensor,
        *,
        max_num_steps: int | None = None,
    ) -> torch.Tensor:
        """Integrate each trajectory from ``x0`` under its own offsets.

        Parameters
        ----------
        x0
            Start expression ``(n_traj, n_genes)``.
        t
            Non-decreasing times ``(n_traj, length)``.
        production, decay
            Offsets ``(n_traj, n_genes)`` (e.g. from :attr:`effect`).
        max_num_steps
            Most steps of an adaptive solver over the solve; ``None``: the default of
            :func:`~celldyn.nn.integrate`. Training passes :data:`TRAIN_MAX_NUM_STEPS`.

        Returns
        -------
        Predicted expression ``(n_traj, length, n_genes)``.
        """
        bounded = max_num_steps is not None and self.method in ADAPTIVE_METHODS
        options = {"max_num_steps": max_num_steps} if bounded else None
        with self.offsets(production, decay) as field:
            return integrate_trajectories(
                field, x0, t, method=self.method, rtol=self.rtol, atol=self.atol, options=options
            )

    def _get_inference_input(self, tensors):
        return {"x": tensors["x"], "t": tensors["t"], "features": tensors["features"]}

    def inference(
        self, x: torch.Tensor, t: torch.Tensor, features: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Predict every trajectory from its first cell under its condition."""
        offsets = self.effect(features)
        predicted = self.integrate(x[:, 0], t, *offsets, max_num_steps=TRAIN_MAX_NUM_STEPS)
        return {"predicted": predicted}

    def _get_generative_input(self, tensors, inference_outputs):
        return {}

    def generative(self) -> dict:
        """No generative step."""
        return {}

    def loss(self, tensors, inference_outputs, generative_outputs) -> LossOutput:
        """Squared error at the later cells of every trajectory (:func:`trajectory_mse`)."""
        per_trajectory = trajectory_mse(inference_outputs["predicted"], tensors["x"], tensors["t"])
        return LossOutput(loss=per_trajectory.mean(), reconstruction_loss=per_trajectory)
