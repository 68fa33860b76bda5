"""Plots; velocity plots delegate to scvelo."""

from ._cellmnn import interactions, operators
from ._trajectories import trajectories
from ._velocity import velocity_stream

__all__ = ["interactions", "operators", "trajectories", "velocity_stream"]
