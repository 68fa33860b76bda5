"""Metrics: distances between cell populations, velocity confidence, GRN recovery scores.

Metrics return values; they write into AnnData only when ``key_added`` is given.
"""

from ._distances import energy_distance, mmd, wasserstein
from ._grn import grn_scores
from ._perturbation import perturbation_scores, perturbation_table
from ._sign_agreement import sign_agreement
from ._trajectory_quality import trajectory_quality
from ._velocity import velocity_confidence, velocity_cosine

__all__ = [
    "energy_distance",
    "grn_scores",
    "mmd",
    "perturbation_scores",
    "perturbation_table",
    "sign_agreement",
    "trajectory_quality",
    "velocity_confidence",
    "velocity_cosine",
    "wasserstein",
]
