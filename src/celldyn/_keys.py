"""The one place where AnnData key strings are built.

Default keys are constants; keys derived from a method's ``key_added`` (or a velocity's
``vkey``) are built by the namespace of the slot they live in, as in cellrank's ``Key``:
``_keys.layers.velocity('flecs')``, ``_keys.varp.weights('flecs')``. Every ``varp`` matrix
written by celldyn is oriented regulator (row) x target (column).
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
CELLMNN = "cellmnn"
"""Default ``key_added`` of :func:`celldyn.tl.cellmnn`."""
LCD = "lcd"
"""Default ``key_added`` of :func:`celldyn.tl.lcd`."""


class layers:
    """Keys of ``adata.layers``."""

    @staticmethod
    def velocity(method: str) -> str:
        """Key of a method's gene-space velocity, e.g. ``'flecs_velocity'``."""
        return f"{method}_velocity"

    @staticmethod
    def velocity_state(method: str) -> str:
        """Key of the states of a velocity when ``layers['Ms']`` holds other ones."""
        return f"{layers.velocity(method)}_state"


class var:
    """Keys of ``adata.var``."""

    @staticmethod
    def vkey_genes(vkey: str) -> str:
        """Mask of the genes the velocity ``layers[vkey]`` covers (scvelo's convention)."""
        return f"{vkey}_genes"

    @staticmethod
    def velocity_genes(method: str) -> str:
        """Mask of the genes a method's velocity covers."""
        return var.vkey_genes(layers.velocity(method))

    @staticmethod
    def param(method: str, name: str) -> str:
        """Key of a per-gene model parameter, e.g. ``'flecs_decay'``."""
        return f"{method}_{name}"

    @staticmethod
    def resolution(method: str) -> str:
        """Whether each regulator's row of an effect matrix is determined (CLIPR)."""
        return f"{method}_resolution"


class uns:
    """Keys of ``adata.uns``."""

    @staticmethod
    def vkey_params(vkey: str) -> str:
        """Parameters of the velocity ``layers[vkey]`` (``'embeddings'``, ``'xkey'``)."""
        return f"{vkey}_params"

    @staticmethod
    def velocity_params(method: str) -> str:
        """Parameters of a method's velocity."""
        return uns.vkey_params(layers.velocity(method))


class obsm:
    """Keys of ``adata.obsm``."""

    @staticmethod
    def basis(name: str) -> str:
        """Key of an embedding (scanpy's convention), e.g. ``'X_umap'``."""
        return f"X_{name}"

    @staticmethod
    def velocity_embedding(vkey: str, basis: str) -> str:
        """Key of a velocity projected on ``X_<basis>`` (scvelo's convention)."""
        return f"{vkey}_{basis}"

    @staticmethod
    def latent_states(method: str) -> str:
        """Key of a method's fitted per-cell latent states, e.g. ``'X_lcd'``."""
        return obsm.basis(method)

    @staticmethod
    def operator(method: str) -> str:
        """Key of a method's flattened per-cell local operator, e.g. ``'cellmnn_operator'``."""
        return f"{method}_operator"

    @staticmethod
    def drift(method: str) -> str:
        """Key of a method's per-cell constant drift, e.g. ``'cellmnn_drift'``."""
        return f"{method}_drift"

    @staticmethod
    def latent_velocity(method: str) -> str:
        """Key of a method's latent-space velocity, e.g. ``'velocity_cellmnn'``."""
        return f"velocity_{method}"


class varp:
    """Keys of ``adata.varp`` (regulator x target matrices)."""

    @staticmethod
    def weights(method: str) -> str:
        """Key of a method's weight matrix, e.g. ``'flecs_weights'``."""
        return f"{method}_weights"

    @staticmethod
    def effects(method: str) -> str:
        """Key of a method's mean direct edge effects."""
        return f"{method}_effects"

    @staticmethod
    def weights_std(method: str) -> str:
        """Key of the ensemble standard deviation of a method's weights."""
        return f"{varp.weights(method)}_std"

    @staticmethod
    def effects_std(method: str) -> str:
        """Key of the ensemble standard deviation of a method's edge effects."""
        return f"{varp.effects(method)}_std"

    @staticmethod
    def interactions(method: str) -> str:
        """Key of a method's gene interaction matrix."""
        return f"{method}_interactions"


class varm:
    """Keys of ``adata.varm``."""

    @staticmethod
    def rate_offsets(method: str, rate: str) -> str:
        """Genes x conditions rate offsets, e.g. ``'flecs_drug_decay_offset'``."""
        return f"{method}_{rate}_offset"
