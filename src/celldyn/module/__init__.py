"""scvi-tools modules: torch only, no AnnData."""

from ._cellmnn import CellMNNModule
from ._flecs import (
    FLeCSModule,
    chord_velocities,
    fit_linear,
    fit_linear_blocks,
    fit_pairs,
    fit_velocities,
    flow_matching_pairs,
    integrate_trajectories,
)
from ._flecs_drug import FLeCSDrugModule
from ._lcd import LCDModule

__all__ = [
    "CellMNNModule",
    "FLeCSDrugModule",
    "FLeCSModule",
    "LCDModule",
    "chord_velocities",
    "fit_linear",
    "fit_linear_blocks",
    "fit_pairs",
    "fit_velocities",
    "flow_matching_pairs",
    "integrate_trajectories",
]
