"""scvi-tools modules: torch only, no AnnData."""

from ._cellmnn import CellMNNModule
from ._flecs import FLeCSModule
from ._flecs_drug import FLeCSDrugModule

__all__ = ["CellMNNModule", "FLeCSDrugModule", "FLeCSModule"]
