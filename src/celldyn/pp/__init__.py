"""Preprocessing: recipe, time groups, OT couplings, trajectories, prior networks."""

from ._couplings import couplings, couplings_for_cellrank
from ._fingerprints import morgan_fingerprints
from ._prior import prior_network
from ._recipe import recipe
from ._time_groups import time_groups
from ._trajectories import trajectories

__all__ = [
    "couplings",
    "couplings_for_cellrank",
    "morgan_fingerprints",
    "prior_network",
    "recipe",
    "time_groups",
    "trajectories",
]
