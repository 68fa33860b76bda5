"""Tools: fit models and write their results into AnnData (scanpy's ``tl``)."""

from ._cellmnn import cellmnn
from ._flecs import flecs
from ._velocity_embedding import velocity_embedding

__all__ = ["cellmnn", "flecs", "velocity_embedding"]
