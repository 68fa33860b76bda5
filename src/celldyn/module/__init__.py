"""scvi-tools modules: torch only, no AnnData."""

from ._cellmnn import CellMNNModule
from ._flecs import FLeCSModule

__all__ = ["CellMNNModule", "FLeCSModule"]
