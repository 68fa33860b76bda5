"""scvi-tools modules: torch only, no AnnData."""

from ._cellmnn import CellMNNModule

__all__ = ["CellMNNModule"]
