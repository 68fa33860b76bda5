"""Tools: fit models and write their results into AnnData (scanpy's ``tl``)."""

from ._cellmnn import cellmnn
from ._differential import affected_subnetwork, differential_edges
from ._flecs import flecs
from ._simulate import knockout, simulate
from ._velocity_embedding import velocity_embedding

__all__ = [
    "affected_subnetwork",
    "cellmnn",
    "differential_edges",
    "flecs",
    "knockout",
    "simulate",
    "velocity_embedding",
]
