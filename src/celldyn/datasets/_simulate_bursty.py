"""Time-course simulator of bursty transcription driven by a known network (harissa family).

Two-state promoters whose ON rate depends on regulator *proteins*, mRNA made in bursts, and
proteins translated from mRNA, after Herbach et al. 2017 (BMC Syst. Biol. 11:105) and the
harissa package (Herbach 2019); a stimulus at ``t = 0`` switches the input genes on.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy.special import expit

from .. import _keys
from .._validate import check_positive
from ._simulate_grn import _cells_per_timepoint
from ._simulate_hill import _check_fraction, _check_seed, _check_sizes, _truth_frame

_THETA_RANGE = (4.0, 8.0)
_MRNA_DECAY_RANGE = (0.7, 1.3)
_BASAL_SD = 0.5
_BASAL_OFF = -6.0  # input genes before the stimulus
_BASAL_ON = 6.0  # input genes after the stimulus
_P_HALF = 0.5  # protein level at which a regulator's effect is centred
_BURN_IN = 3.0  # pre-stimulus relaxation of promoters and mRNA, in time units


def _random_graph(n_genes, n_edges, n_inputs, rng) -> np.ndarray:
    """Adjacency (regulator × target): a random tree from the inputs, then random extra edges.

    Every non-input gene gets one regulator among the inputs and the genes before it (so the
    stimulus reaches every gene); the remaining edges go uniformly to pairs with a non-input
    target. Inputs have no regulators.
    """
    adj = np.zeros((n_genes, n_genes), dtype=bool)
    for i in range(n_inputs, n_genes):
        adj[rng.integers(i), i] = True
    free = ~adj & ~np.eye(n_genes, dtype=bool)
    free[:, :n_inputs] = False
    extra = min(max(0, n_edges - (n_genes - n_inputs)), int(free.sum()))
    adj.flat[rng.choice(np.flatnonzero(free), size=extra, replace=False)] = True
    return adj


def simulate_bursty(
    n_genes: int = 20,
    n_cells: int = 1400,
    n_timepoints: int = 7,
    *,
    density: float = 0.1,
    n_inputs: int = 1,
    activation_fraction: float = 0.6,
    burst_size: float = 5.0,
    burst_frequency: float = 0.3,
    k_off: float = 10.0,
    protein_decay: float = 0.25,
    t_max: float = 24.0,
    dt: float = 0.05,
    random_state: int = 0,
) -> AnnData:
    """Simulate mRNA counts of a stimulated network of bursty genes (harissa-like).

    The mechanistic model of Herbach et al. 2017 (harissa), integrated by tau-leaping with
    step ``dt`` and vectorised over cells. Gene ``i`` has a promoter that switches OFF → ON
    at rate ``k_on,i = k_min + (k_max − k_min) · sigmoid(β_i + Σ_j θ_ji P_j)`` and back at
    rate ``k_off``; while ON it makes mRNA at rate ``s_i = burst_size · k_off`` (bursts of
    mean ``burst_size`` molecules); mRNA decays at ``d0_i ~ U(0.7, 1.3)``. The protein
    follows ``dP_i/dt = d1 · (M_i / m_i − P_i)`` (``d1 = protein_decay``, slower than mRNA, so
    regulation acts with a delay; ``m_i`` = mean mRNA of a fully active gene, so ``P`` is in
    about ``[0, 1]``). ``k_max = burst_frequency``, ``k_min = 0.02 · k_max``.

    The network: the first ``n_inputs`` genes are inputs (no regulators); every other gene
    has a regulator among the inputs and earlier genes, plus random edges up to
    ``round(density · n_genes · (n_genes − 1))`` in total. Edge weights
    ``θ_ji = ±U(4, 8)`` (activating with probability ``activation_fraction``); basal
    ``β_i = −0.5 · Σ_j θ_ji + N(0, 0.5²)`` (a gene is half on when its regulators sit at
    ``P = 0.5``). Before ``t = 0`` the inputs are off (``β = −6``); cells start at the
    pre-stimulus fixed point of the mean dynamics, relax for 3 time units, then the stimulus
    switches the inputs on (``β = +6``). Each cell is observed once, at one of
    ``n_timepoints`` equally spaced times in ``[0, t_max]``.

    No true velocity is returned: the mRNA jumps, so it has no drift that matches the data.

    Parameters
    ----------
    n_genes
        Number of genes (more than ``n_inputs``).
    n_cells
        Number of cells (at least ``n_timepoints``).
    n_timepoints
        Number of snapshot times (at least 2).
    density
        Fraction of ordered gene pairs with an edge, in ``(0, 1]``; at least one regulator
        per non-input gene.
    n_inputs
        Number of stimulated input genes (at least 1).
    activation_fraction
        Probability that an edge activates, in ``[0, 1]``.
    burst_size
        Mean number of mRNA molecules per burst.
    burst_frequency
        Largest promoter ON rate ``k_max`` (bursts per unit time of a fully active gene).
    k_off
        Promoter OFF rate (``k_off · dt`` must stay below 1).
    protein_decay
        Protein decay rate ``d1``.
    t_max
        Last snapshot time after the stimulus.
    dt
        Largest tau-leaping step (the steps divide the snapshot interval exactly).
    random_state
        Seed; the result is reproducible for a fixed seed.

    Returns
    -------
    AnnData with ``var_names`` ``'G0'…`` (inputs first) and

    - ``X``: mRNA counts (float32 integers, many zeros).
    - ``layers['protein']``: float32 protein levels ``P``.
    - ``obs['time']``: snapshot time after the stimulus; cells are ordered by time.
    - ``uns['ground_truth_network']``: DataFrame ``source``, ``target``, ``weight`` (``θ``),
      ``sign``; one row per edge.
    - ``uns['simulation']``: ``theta`` (regulator × target), ``basal`` (after the stimulus),
      ``k_on_min``, ``k_on_max``, ``k_off``, ``transcription``, ``mrna_decay``,
      ``mrna_scale`` (``m``), ``protein_decay``, ``inputs``, ``timepoints`` and the scalar
      settings.
    """
    _check_sizes(n_genes, n_cells, n_timepoints)
    n_genes, n_cells, n_timepoints = int(n_genes), int(n_cells), int(n_timepoints)
    if isinstance(n_inputs, bool) or int(n_inputs) != n_inputs or not 1 <= n_inputs < n_genes:
        raise ValueError(f"`n_inputs` must be an integer in [1, n_genes), got {n_inputs!r}.")
    n_inputs = int(n_inputs)
    if not np.isfinite(density) or not 0 < density <= 1:
        raise ValueError(f"`density` must be in (0, 1], got {density!r}.")
    _check_fraction(activation_fraction, "activation_fraction")
    for value, name in [
        (burst_size, "burst_size"),
        (burst_frequency, "burst_frequency"),
        (k_off, "k_off"),
        (protein_decay, "protein_decay"),
        (t_max, "t_max"),
        (dt, "dt"),
    ]:
        check_positive(value, name)
    _check_seed(random_state)
    if k_off * dt >= 1 or burst_frequency * dt >= 1:
        raise ValueError(
            f"`dt` ({dt}) is too large for tau-leaping: `k_off * dt` and "
            "`burst_frequency * dt` must be below 1."
        )
    rng = np.random.default_rng(random_state)

    n_edges = max(1, round(density * n_genes * (n_genes - 1)))
    adj = _random_graph(n_genes, n_edges, n_inputs, rng)
    sign = np.where(rng.random(adj.shape) < activation_fraction, 1.0, -1.0)
    theta = np.where(adj, sign * rng.uniform(*_THETA_RANGE, size=adj.shape), 0.0)
    basal = -_P_HALF * theta.sum(0) + rng.normal(0.0, _BASAL_SD, n_genes)
    basal[:n_inputs] = _BASAL_ON
    basal_before = basal.copy()
    basal_before[:n_inputs] = _BASAL_OFF
    k_max = float(burst_frequency)
    k_min = 0.02 * k_max
    transcription = float(burst_size) * k_off
    mrna_decay = rng.uniform(*_MRNA_DECAY_RANGE, size=n_genes)
    mrna_scale = k_max / (k_max + k_off) * transcription / mrna_decay

    def k_on(p, b):
        return k_min + (k_max - k_min) * expit(p @ theta + b)

    # pre-stimulus fixed point of the mean dynamics: P = <M>/m with <M> of the telegraph model
    p_star = np.zeros(n_genes)
    for _ in range(200):
        kon = k_on(p_star, basal_before)
        p_star = kon / (kon + k_off) * transcription / mrna_decay / mrna_scale
    kon = k_on(p_star, basal_before)
    on = rng.random((n_cells, n_genes)) < kon / (kon + k_off)
    mrna = rng.poisson(p_star * mrna_scale, size=(n_cells, n_genes)).astype(np.int64)
    protein = np.tile(p_star, (n_cells, 1))

    n_per = _cells_per_timepoint(n_cells, n_timepoints)
    timepoints = np.linspace(0.0, t_max, n_timepoints)
    n_sub = max(1, math.ceil((timepoints[1] - timepoints[0]) / dt - 1e-9))
    step = (timepoints[1] - timepoints[0]) / n_sub
    p_off = -math.expm1(-k_off * step)
    p_decay = -np.expm1(-mrna_decay * step)
    p_relax = -math.expm1(-protein_decay * step)

    def advance(sl, b, n_steps):
        o, m, p = on[sl], mrna[sl], protein[sl]
        for _ in range(n_steps):
            u = rng.random(o.shape)
            switch_on = u < -np.expm1(-k_on(p, b) * step)
            o[:] = np.where(o, u >= p_off, switch_on)
            p += p_relax * (m / mrna_scale - p)  # exact for M frozen over the step
            m -= rng.binomial(m, p_decay)
            m += rng.poisson(transcription * step * o)

    advance(slice(None), basal_before, max(1, round(_BURN_IN / step)))
    # Paths are stored latest-snapshot first, so the cells still to be observed are a prefix.
    obs_mrna = np.empty(mrna.shape, dtype=np.float32)
    obs_protein = np.empty(protein.shape, dtype=np.float32)
    for k in range(n_timepoints):
        start = int(n_per[k + 1 :].sum())
        rows = slice(start, start + n_per[k])
        obs_mrna[rows], obs_protein[rows] = mrna[rows], protein[rows]
        if k < n_timepoints - 1:
            advance(slice(0, start), basal, n_sub)

    genes = [f"G{i}" for i in range(n_genes)]
    obs = pd.DataFrame(
        {_keys.SAMPLE_TIME: np.repeat(timepoints, n_per)},
        index=[f"cell{i}" for i in range(n_cells)],
    )
    simulation = {
        "model": (
            "two-state promoter, k_on = k_on_min + (k_on_max - k_on_min) * "
            "sigmoid(theta^T P + basal); bursty mRNA; dP/dt = protein_decay * (M / mrna_scale - P)"
        ),
        "theta": theta,
        "basal": basal,
        "k_on_min": k_min,
        "k_on_max": k_max,
        "k_off": float(k_off),
        "transcription": transcription,
        "mrna_decay": mrna_decay,
        "mrna_scale": mrna_scale,
        "protein_decay": float(protein_decay),
        "inputs": np.asarray(genes[:n_inputs], dtype=object),
        "timepoints": timepoints,
        "density": float(density),
        "activation_fraction": float(activation_fraction),
        "burst_size": float(burst_size),
        "t_max": float(t_max),
        "dt": float(step),
        "random_state": int(random_state),
    }
    adata = AnnData(
        obs_mrna[::-1].copy(),
        obs=obs,
        var=pd.DataFrame(index=genes),
        layers={"protein": obs_protein[::-1].copy()},
    )
    adata.uns[_keys.GROUND_TRUTH_NETWORK] = _truth_frame(theta, genes)
    adata.uns[_keys.SIMULATION] = simulation
    return adata
