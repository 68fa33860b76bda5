"""The one place where AnnData key strings are built.

Every ``varp`` matrix written by celldyn is oriented regulator (row) x target (column).
"""

from __future__ import annotations

TIME = "celldyn_time"
"""Default ``obs`` column of ordered time groups (:func:`celldyn.pp.time_groups`)."""
COUPLINGS = "celldyn_couplings"
"""Default ``obsp``/``uns`` key of OT couplings (:func:`celldyn.pp.couplings`)."""
TRAJECTORIES = "celldyn_trajectories"
"""Default ``uns`` key of extracted trajectories (:func:`celldyn.pp.trajectories`)."""
PRIOR = "celldyn_prior"
"""Default ``varp``/``uns`` key of the prior network (:func:`celldyn.pp.prior_network`)."""
COUNTS = "counts"
"""Layer holding raw counts after :func:`celldyn.pp.recipe`."""
LOG_NORMALIZED = "log_normalized"
"""Layer holding the log-normalized, not denoised data after :func:`celldyn.pp.recipe`."""
RECIPE = "celldyn_recipe"
"""``uns`` key of the parameters of :func:`celldyn.pp.recipe`."""
DPT_PSEUDOTIME = "dpt_pseudotime"
"""``obs`` column of scanpy's diffusion pseudotime (computed by :func:`celldyn.pp.time_groups`)."""
GROUND_TRUTH_NETWORK = "ground_truth_network"
"""``uns`` key of a simulator's or dataset's known network (source, target, sign/weight)."""
TRUE_VELOCITY = "true_velocity"
"""Layer of known velocities written by the simulators."""
SAMPLE_TIME = "time"
"""``obs`` column of the (numeric) sampling time written by :mod:`celldyn.datasets`."""
EXPRESSION = "expression"
"""Layer of noiseless simulated expression when a simulator's ``X`` holds counts."""
LATENT = "latent"
"""Layer of the latent state of :func:`celldyn.datasets.simulate_perturbations` counts."""
LINEAGE = "lineage"
"""``obs`` column of the simulated lineage (fate) of each cell."""
SIMULATION = "simulation"
"""``uns`` key of a simulator's parameters."""
PERTURBATION = "perturbation"
"""``obs`` column of perturbation labels: ``'control'``, ``'A'``, ``'A+B'``."""
CONTROL = "control"
"""Label of unperturbed cells in ``obs['perturbation']``."""
GROUND_TRUTH_EFFECTS = "ground_truth_effects"
"""``uns`` key of a simulator's dense regulator x target causal effect matrix."""
CLIPR_EFFECTS = "clipr_effects"
"""Default ``varp``/``uns`` key of :func:`celldyn.tl.clipr` (regulator x target effects)."""
MOMENTS = "Ms"
"""Layer of the cell states scvelo and cellrank read by default (``xkey='Ms'``)."""


FLECS = "flecs"
"""Default ``key_added`` of :func:`celldyn.tl.flecs` (and ``key`` of the tools reading it)."""
FLECS_DRUG = "flecs_drug"
"""Default ``key_added`` of :func:`celldyn.tl.drug_effects`."""


def velocity(method: str) -> str:
    """``layers`` key of a method's gene-space velocity, e.g. ``'flecs_velocity'``."""
    return f"{method}_velocity"


def vkey_genes(vkey: str) -> str:
    """``var`` key of the mask of genes the velocity ``layers[vkey]`` covers (scvelo)."""
    return f"{vkey}_genes"


def vkey_params(vkey: str) -> str:
    """``uns`` key of the parameters of the velocity ``layers[vkey]`` (scvelo)."""
    return f"{vkey}_params"


def velocity_genes(method: str) -> str:
    """``var`` key of the boolean mask of genes a method models."""
    return vkey_genes(velocity(method))


def velocity_params(method: str) -> str:
    """``uns`` key of the velocity parameters (``'embeddings'`` for scvelo, ``'xkey'``)."""
    return vkey_params(velocity(method))


def velocity_state(method: str) -> str:
    """``layers`` key of the states of a velocity when ``layers['Ms']`` holds other ones."""
    return f"{velocity(method)}_state"


def velocity_embedding(vkey: str, basis: str) -> str:
    """``obsm`` key of a velocity projected on ``X_<basis>``."""
    return f"{vkey}_{basis}"


def weights(method: str) -> str:
    """``varp`` key of a method's regulator x target weight matrix."""
    return f"{method}_weights"


def effects(method: str) -> str:
    """``varp`` key of a method's regulator x target mean direct edge effects."""
    return f"{method}_effects"


def weights_std(method: str) -> str:
    """``varp`` key of the ensemble standard deviation of a method's weights."""
    return f"{weights(method)}_std"


def effects_std(method: str) -> str:
    """``varp`` key of the ensemble standard deviation of a method's edge effects."""
    return f"{effects(method)}_std"


def var_param(method: str, name: str) -> str:
    """``var`` key of a per-gene model parameter, e.g. ``'flecs_decay'``."""
    return f"{method}_{name}"


def rate_offsets(method: str, rate: str) -> str:
    """``varm`` key of genes x conditions rate offsets, e.g. ``'flecs_drug_decay_offset'``."""
    return f"{method}_{rate}_offset"


CELLMNN = "cellmnn"
"""Default ``key_added`` of :func:`celldyn.tl.cellmnn`."""
LCD = "lcd"
"""Default ``key_added`` of :func:`celldyn.tl.lcd`."""


def latent_states(method: str) -> str:
    """``obsm`` key of a method's fitted per-cell latent states, e.g. ``'X_lcd'``."""
    return f"X_{method}"


def operator(method: str) -> str:
    """``obsm`` key of a method's flattened per-cell local operator, e.g. ``'cellmnn_operator'``."""
    return f"{method}_operator"


def drift(method: str) -> str:
    """``obsm`` key of a method's per-cell constant drift, e.g. ``'cellmnn_drift'``."""
    return f"{method}_drift"


def latent_velocity(method: str) -> str:
    """``obsm`` key of a method's latent-space velocity, e.g. ``'velocity_cellmnn'``."""
    return f"velocity_{method}"


def interactions(method: str) -> str:
    """``varp`` key of a method's regulator x target gene interaction matrix."""
    return f"{method}_interactions"
