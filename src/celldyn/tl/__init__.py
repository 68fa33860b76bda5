"""Tools: fit models and write their results into AnnData (scanpy's ``tl``)."""

from ._cellmnn import cellmnn
from ._flecs import flecs
from ._simulate import knockout, simulate
from ._velocity_embedding import velocity_embedding

__all__ = ["cellmnn", "flecs", "knockout", "simulate", "velocity_embedding"]
