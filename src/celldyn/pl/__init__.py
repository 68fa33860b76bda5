"""Plots; velocity plots delegate to scvelo."""

from ._trajectories import trajectories
from ._velocity import velocity_stream

__all__ = ["trajectories", "velocity_stream"]
