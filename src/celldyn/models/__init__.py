"""scvi-tools models over AnnData: setup, train, save/load, getters."""

from ._cellmnn import CellMNN
from ._flecs import FLeCS
from ._flecs_drug import FLeCSDrug
from ._lcd import LCD
from ._responses import PerturbationResponses
from ._results import FitResults

__all__ = ["CellMNN", "FLeCS", "FLeCSDrug", "FitResults", "LCD", "PerturbationResponses"]
