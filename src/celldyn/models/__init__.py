"""scvi-tools models over AnnData: setup, train, save/load, getters."""

from ._cellmnn import CellMNN

__all__ = ["CellMNN"]
