"""Torch building blocks: GRN product kernels, the FLeCS vector field, ODE integration, MMD.

The differentiable MMD and energy distances (training losses, and the implementation of
:func:`celldyn.metrics.mmd` and :func:`celldyn.metrics.energy_distance`) are in ``nn._kernels``.
"""

from ._drug_effect import DrugEffect
from ._grn_linear import GRNLinear, select_kernel
from ._ode import SolverDivergedError, integrate
from ._operator_mlp import OperatorMLP, propagate
from ._score import ScoreNet
from ._vector_field import GRNVectorField

__all__ = [
    "DrugEffect",
    "GRNLinear",
    "GRNVectorField",
    "OperatorMLP",
    "ScoreNet",
    "SolverDivergedError",
    "integrate",
    "propagate",
    "select_kernel",
]
