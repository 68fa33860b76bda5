"""scvi-tools models over AnnData: setup, train, save/load, getters."""

from ._cellmnn import CellMNN
from ._flecs import FLeCS

__all__ = ["CellMNN", "FLeCS"]
