"""Datasets: simulators with known ground truth, shipped data and cached online loaders.

Simulators: :func:`simulate_grn` (time courses from a FLeCS-type gene network),
:func:`simulate_perturbations` (single/double knockdown screens with a known effect matrix).
Offline: :func:`krumsiek11`. Online, downloaded once into :func:`get_cache_dir`:
:func:`paul15`, :func:`eb`, :func:`norman19`, :func:`trrust`.
"""

from ._cache import get_cache_dir, set_cache_dir
from ._krumsiek11 import krumsiek11
from ._online import eb, norman19, paul15
from ._simulate_grn import simulate_grn
from ._simulate_perturbations import simulate_perturbations
from ._trrust import trrust

__all__ = [
    "eb",
    "get_cache_dir",
    "krumsiek11",
    "norman19",
    "paul15",
    "set_cache_dir",
    "simulate_grn",
    "simulate_perturbations",
    "trrust",
]
