"""Tools: fit models and write their results into AnnData (scanpy's ``tl``)."""

from .._readers import load_flecs_fields
from ._cellmnn import cellmnn
from ._clipr import IdentifiabilityWarning, clipr, clipr_effects, regulator_resolution
from ._decoupler import to_decoupler
from ._differential import affected_subnetwork, differential_edges
from ._drug import drug_effects
from ._flecs import flecs
from ._grn_baselines import grn_baseline
from ._interpolation_baselines import interpolation_baseline
from ._lcd import lcd
from ._perturbation_baselines import perturbation_baseline
from ._responses import perturbation_responses
from ._simulate import knockout, simulate
from ._velocity_embedding import velocity_embedding

__all__ = [
    "IdentifiabilityWarning",
    "affected_subnetwork",
    "cellmnn",
    "clipr",
    "clipr_effects",
    "differential_edges",
    "drug_effects",
    "flecs",
    "grn_baseline",
    "interpolation_baseline",
    "knockout",
    "lcd",
    "load_flecs_fields",
    "perturbation_baseline",
    "perturbation_responses",
    "regulator_resolution",
    "simulate",
    "to_decoupler",
    "velocity_embedding",
]
