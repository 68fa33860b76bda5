"""Plots; velocity plots delegate to scvelo."""

from ._cellmnn import interactions, operators
from ._flecs import affected_subnetwork, edge_posteriors, network, simulated_vs_observed
from ._network import effect_network
from ._trajectories import trajectories
from ._velocity import velocity_stream

__all__ = [
    "affected_subnetwork",
    "edge_posteriors",
    "effect_network",
    "interactions",
    "network",
    "operators",
    "simulated_vs_observed",
    "trajectories",
    "velocity_stream",
]
