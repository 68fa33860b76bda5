"""Datasets: simulators with known ground truth, real data and cached online loaders.

Simulators: :func:`simulate_grn` (time courses from a FLeCS-type gene network),
:func:`simulate_hill` (time courses from a Hill-kinetics network), :func:`simulate_bursty`
(bursty mRNA counts of a stimulated network, harissa-like), :func:`simulate_perturbations`
(single/double knockdown screens with a known effect matrix),
:func:`simulate_diffusion_screen` (the same from a second, independently built linear SDE
family with heterogeneous noise, knockdowns and count depth).
Offline: :func:`krumsiek11`. Real data, read from a local folder (``path=``) or downloaded
once into :func:`get_cache_dir`: time courses :func:`eb`, :func:`beeline`, :func:`scode`,
:func:`moignard15`, :func:`guo10`, :func:`dyngen_bifurcation`; perturbation screens
:func:`norman19_subset`, :func:`papalexi21_subset`, :func:`sachs`; the full :func:`norman19`,
:func:`paul15` and the :func:`trrust` network.
"""

from ._cache import get_cache_dir, set_cache_dir
from ._krumsiek11 import krumsiek11
from ._online import norman19, paul15
from ._screens import norman19_subset, papalexi21_subset, sachs
from ._simulate_bursty import simulate_bursty
from ._simulate_grn import simulate_grn
from ._simulate_hill import simulate_hill
from ._simulate_perturbations import simulate_perturbations
from ._simulate_screen import simulate_diffusion_screen
from ._timecourses import beeline, dyngen_bifurcation, eb, guo10, moignard15, scode
from ._trrust import trrust

__all__ = [
    "beeline",
    "dyngen_bifurcation",
    "eb",
    "get_cache_dir",
    "guo10",
    "krumsiek11",
    "moignard15",
    "norman19",
    "norman19_subset",
    "papalexi21_subset",
    "paul15",
    "sachs",
    "scode",
    "set_cache_dir",
    "simulate_bursty",
    "simulate_diffusion_screen",
    "simulate_grn",
    "simulate_hill",
    "simulate_perturbations",
    "trrust",
]
