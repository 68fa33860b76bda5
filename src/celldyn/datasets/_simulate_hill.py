"""Time-course simulator with a known network of Hill-kinetics regulation.

A second generator family next to :func:`simulate_grn` (whose drift is the FLeCS model
itself): production is a saturating average of activating / repressing Hill functions
(as in GeneNetWeaver, Marbach et al. 2009, and the SERGIO / BoolODE family of simulators).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _keys
from .._validate import check_positive
from ._graphs import random_graph
from ._simulate_grn import _cells_per_timepoint, poisson_counts

_DECAY_RANGE = (0.3, 1.0)
_LEVEL_RANGE = (1.0, 3.0)
_BASAL_FRACTION = 0.05
_THRESHOLD_SD = 0.3


def hill_drift(
    x: np.ndarray,
    sign: np.ndarray,
    threshold: np.ndarray,
    hill_n: float,
    max_rate: np.ndarray,
    basal: np.ndarray,
    decay: np.ndarray,
) -> np.ndarray:
    """Hill-kinetics drift for cells in rows of ``x``.

    ``dx_i/dt = basal_i + max_rate_i · mean_j h_ji(x_j) − decay_i · x_i`` over the regulators
    ``j`` of ``i`` (``sign[j, i] != 0``, regulator row × target column), with
    ``h = r / (1 + r)`` for activation (``sign = +1``), ``1 / (1 + r)`` for repression
    (``sign = −1``) and ``r = (x_j / threshold[j, i])^hill_n``. Genes without regulators
    produce at the constant rate ``basal_i + max_rate_i``.
    """
    src, tgt = np.nonzero(sign)
    n_genes = sign.shape[0]
    r = (np.maximum(x[:, src], 0.0) / threshold[src, tgt]) ** hill_n
    term = np.where(sign[src, tgt] > 0, r, 1.0) / (1.0 + r)
    n_reg = np.bincount(tgt, minlength=n_genes)
    incidence = np.zeros((len(tgt), n_genes))
    incidence[np.arange(len(tgt)), tgt] = 1.0 / n_reg[tgt]
    production = term @ incidence + (n_reg == 0)
    return basal + max_rate * production - decay * x


def _check_sizes(n_genes, n_cells, n_timepoints) -> None:
    if isinstance(n_genes, bool) or int(n_genes) != n_genes or n_genes < 2:
        raise ValueError(f"`n_genes` must be an integer >= 2, got {n_genes!r}.")
    if isinstance(n_cells, bool) or int(n_cells) != n_cells or n_cells < 1:
        raise ValueError(f"`n_cells` must be a positive integer, got {n_cells!r}.")
    if isinstance(n_timepoints, bool) or int(n_timepoints) != n_timepoints or n_timepoints < 2:
        raise ValueError(f"`n_timepoints` must be an integer >= 2, got {n_timepoints!r}.")
    if n_cells < n_timepoints:
        raise ValueError(f"`n_cells` ({n_cells}) must be at least `n_timepoints` ({n_timepoints}).")


def _check_fraction(value: float, name: str) -> None:
    if not np.isfinite(value) or not 0 <= value <= 1:
        raise ValueError(f"`{name}` must be in [0, 1], got {value!r}.")


def _check_seed(random_state) -> None:
    if isinstance(random_state, bool) or not isinstance(random_state, int | np.integer):
        raise TypeError(f"`random_state` must be an integer seed, got {random_state!r}.")


def _truth_frame(weights: np.ndarray, genes: list[str]) -> pd.DataFrame:
    src, tgt = np.nonzero(weights)
    names = np.asarray(genes, dtype=object)
    return pd.DataFrame(
        {
            "source": names[src],
            "target": names[tgt],
            "weight": weights[src, tgt],
            "sign": np.sign(weights[src, tgt]).astype(np.int64),
        }
    )


def simulate_hill(
    n_genes: int = 30,
    n_cells: int = 1500,
    n_timepoints: int = 5,
    *,
    density: float = 0.08,
    activation_fraction: float = 0.5,
    hill_n: float = 2.0,
    noise: float = 0.02,
    counts: bool = False,
    library_size: float = 1000.0,
    init_max: float = 0.5,
    t_max: float = 4.0,
    dt: float = 0.05,
    random_state: int = 0,
) -> AnnData:
    """Simulate a time course from a random network with Hill-kinetics regulation.

    A generator family other than FLeCS' sigmoid-of-a-weighted-sum (:func:`simulate_grn`):
    Hill-function regulation as in GeneNetWeaver (Marbach et al. 2009) and SERGIO / BoolODE.
    The graph is Erdős–Rényi with ``round(density · n_genes · (n_genes − 1))`` directed edges
    (no self loops; genes without regulators are inputs). Each edge ``j → i`` activates with
    probability ``activation_fraction``, else represses, with threshold
    ``K_ji = 0.5 · L_j · exp(0.3·N(0, 1))`` around the regulator's typical level. Gene ``i``
    follows (see :func:`hill_drift`)

    ``dx_i = (b_i + v_i · mean_j h_ji(x_j) − γ_i x_i) dt + noise · x_i · dW``

    with decay ``γ_i ~ U(0.3, 1)``, maximal level ``L_i ~ U(1, 3)``, ``v_i = γ_i L_i`` and
    basal rate ``b_i = 0.05 v_i``; it is integrated by Euler–Maruyama (clipped at 0). Each
    cell is an independent path from a random, mostly low initial state
    ``x_i(0) ~ U(0, init_max · L_i)`` (so most gene means move over the time span), observed
    once at one of ``n_timepoints`` equally spaced times in ``[0, t_max]`` (equal numbers of
    cells per time), as in scRNA-seq snapshots.

    Parameters
    ----------
    n_genes
        Number of genes (at least 2).
    n_cells
        Number of cells (at least ``n_timepoints``).
    n_timepoints
        Number of snapshot times (at least 2).
    density
        Fraction of the ordered gene pairs that carry an edge, in ``(0, 1]`` (at least 1 edge).
    activation_fraction
        Probability that an edge activates, in ``[0, 1]``.
    hill_n
        Hill coefficient (positive).
    noise
        Multiplicative noise ``σ`` of the SDE (non-negative).
    counts
        Observe ``X`` as Poisson counts (see Returns).
    library_size
        Mean number of counts per cell when ``counts=True``.
    init_max
        Initial states are uniform in ``[0, init_max · L_i]``.
    t_max
        Last snapshot time.
    dt
        Largest Euler–Maruyama step (the steps divide the snapshot interval exactly).
    random_state
        Seed; the result is reproducible for a fixed seed.

    Returns
    -------
    AnnData with ``var_names`` ``'G0'…`` and

    - ``X``: float32 expression ``x`` (non-negative), or, when ``counts=True``, Poisson counts
      of ``x × gene_scale × size_factor`` (float32).
    - ``layers['expression']``: the expression ``x`` (only when ``counts=True``).
    - ``layers['true_velocity']``: float32 drift at each cell's state.
    - ``obs['time']``: snapshot time of each cell; cells are ordered by time.
    - ``obs['size_factor']``: per-cell library size factor (``counts=True`` only).
    - ``uns['ground_truth_network']``: DataFrame ``source``, ``target``, ``weight``
      (+1 activation, −1 repression), ``sign``; one row per edge.
    - ``uns['simulation']``: ``max_rate`` (``v``), ``basal``, ``decay``, ``level`` (``L``),
      ``threshold`` (regulator × target, 0 off the edges), ``hill_n``, ``timepoints`` and the
      scalar settings; ``gene_scale`` and ``library_size`` when ``counts=True``.
    """
    _check_sizes(n_genes, n_cells, n_timepoints)
    n_genes, n_cells, n_timepoints = int(n_genes), int(n_cells), int(n_timepoints)
    if not np.isfinite(density) or not 0 < density <= 1:
        raise ValueError(f"`density` must be in (0, 1], got {density!r}.")
    _check_fraction(activation_fraction, "activation_fraction")
    check_positive(hill_n, "hill_n")
    check_positive(noise, "noise", strict=False)
    check_positive(library_size, "library_size")
    check_positive(init_max, "init_max")
    check_positive(t_max, "t_max")
    check_positive(dt, "dt")
    _check_seed(random_state)
    rng = np.random.default_rng(random_state)

    n_edges = max(1, round(density * n_genes * (n_genes - 1)))
    adj = random_graph(n_genes, n_edges, "erdos_renyi", rng)
    sign = np.where(rng.random((n_genes, n_genes)) < activation_fraction, 1.0, -1.0) * adj
    decay = rng.uniform(*_DECAY_RANGE, size=n_genes)
    level = rng.uniform(*_LEVEL_RANGE, size=n_genes)
    max_rate = decay * level
    basal = _BASAL_FRACTION * max_rate
    threshold = 0.5 * level[:, None] * np.exp(_THRESHOLD_SD * rng.standard_normal(sign.shape))
    threshold = np.where(adj, threshold, 0.0)
    params = (sign, threshold, float(hill_n), max_rate, basal, decay)

    n_per = _cells_per_timepoint(n_cells, n_timepoints)
    timepoints = np.linspace(0.0, t_max, n_timepoints)
    n_sub = max(1, math.ceil((timepoints[1] - timepoints[0]) / dt - 1e-9))
    step = (timepoints[1] - timepoints[0]) / n_sub

    # Paths are stored latest-snapshot first, so the cells still to be observed are a prefix.
    state = level * rng.uniform(0.0, init_max, size=(n_cells, n_genes))
    observed = np.empty_like(state)
    for k in range(n_timepoints):
        start = int(n_per[k + 1 :].sum())  # rows [0, start) are observed later than t_k
        observed[start : start + n_per[k]] = state[start : start + n_per[k]]
        if k == n_timepoints - 1:
            break
        g = state[:start]
        for _ in range(n_sub):
            g += hill_drift(g, *params) * step
            if noise > 0:
                g += noise * math.sqrt(step) * g * rng.standard_normal(g.shape)
            np.maximum(g, 0.0, out=g)
    expression = observed[::-1]
    velocity = hill_drift(expression, *params)

    genes = [f"G{i}" for i in range(n_genes)]
    obs = pd.DataFrame(
        {_keys.SAMPLE_TIME: np.repeat(timepoints, n_per)},
        index=[f"cell{i}" for i in range(n_cells)],
    )
    simulation = {
        "model": "dx/dt = basal + max_rate * mean(hill) - decay * x; dx += noise * x * dW",
        "max_rate": max_rate,
        "basal": basal,
        "decay": decay,
        "level": level,
        "threshold": threshold,
        "hill_n": float(hill_n),
        "timepoints": timepoints,
        "density": float(density),
        "activation_fraction": float(activation_fraction),
        "noise": float(noise),
        "init_max": float(init_max),
        "t_max": float(t_max),
        "dt": float(step),
        "counts": bool(counts),
        "random_state": int(random_state),
    }
    layers = {_keys.TRUE_VELOCITY: velocity.astype(np.float32)}
    if counts:
        x, gene_scale, size_factor = poisson_counts(
            expression, rng, library_size=float(library_size)
        )
        layers[_keys.EXPRESSION] = expression.astype(np.float32)
        obs["size_factor"] = size_factor
        simulation.update(gene_scale=gene_scale, library_size=float(library_size))
    else:
        x = expression.astype(np.float32)

    adata = AnnData(x, obs=obs, var=pd.DataFrame(index=genes), layers=layers)
    adata.uns[_keys.GROUND_TRUTH_NETWORK] = _truth_frame(sign, genes)
    adata.uns[_keys.SIMULATION] = simulation
    return adata
