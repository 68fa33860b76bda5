"""Time-course simulator with a known gene regulatory network (FLeCS model family).

Cells follow the SDE ``dG = (sigmoid(Wᵀ·G + b) − α∘G) dt + σ dW`` from a progenitor state;
each cell is one independent path observed once, at one of ``n_timepoints`` snapshot times.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy.special import expit

from .. import _keys
from .._validate import check_finite, check_in, check_positive
from ._graphs import TOPOLOGIES, random_graph

_WEIGHT_RANGE = (1.0, 4.0)
_P_ACTIVATION = 0.6
_DECAY_RANGE = (0.3, 1.0)
_BIAS_SD = 0.5
_TOGGLE_WEIGHT = 6.0
_GENE_SCALE = 20.0


def grn_drift(g: np.ndarray, weights: np.ndarray, bias: np.ndarray, decay: np.ndarray):
    """FLeCS drift ``sigmoid(G @ W + b) − decay * G`` for cells in rows of ``g``.

    ``weights[j, i]`` is the effect of regulator ``j`` on target ``i``.
    """
    return expit(g @ weights + bias) - decay * g


def _euler_maruyama_step(g, weights, bias, decay, step, noise_sd, rng) -> None:
    """Advance the float32 states ``g`` in place by one step, clipped at 0."""
    h = g @ weights
    h += bias
    h *= 0.5  # sigmoid(u) = (1 + tanh(u / 2)) / 2, much faster than expit on float32
    np.tanh(h, out=h)
    h += 1.0
    h *= 0.5
    h -= decay * g
    h *= step
    g += h
    if noise_sd > 0:
        z = rng.standard_normal(g.shape, dtype=np.float32)
        z *= noise_sd
        g += z
    np.maximum(g, 0.0, out=g)


def _network_from_frame(network: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    if not isinstance(network, pd.DataFrame):
        raise TypeError(f"`network` must be a pandas DataFrame, got {type(network).__name__}.")
    missing = {"source", "target"} - set(network.columns)
    if missing:
        raise KeyError(
            f"`network` lacks column(s) {sorted(missing)}; decoupler format needs "
            "'source', 'target' and optionally 'weight'."
        )
    if network.empty:
        raise ValueError("`network` has no edges.")
    if network.duplicated(["source", "target"]).any():
        raise ValueError("`network` has duplicated (source, target) edges.")
    weight = (
        network["weight"].to_numpy(dtype=np.float64)
        if "weight" in network.columns
        else np.ones(len(network))
    )
    check_finite(weight, "network['weight']")
    source = network["source"].astype(str).to_numpy()
    target = network["target"].astype(str).to_numpy()
    genes = list(pd.unique(np.concatenate([source, target])))
    if len(genes) < 2:
        raise ValueError("`network` must involve at least 2 genes.")
    index = {g: i for i, g in enumerate(genes)}
    w = np.zeros((len(genes), len(genes)))
    w[[index[s] for s in source], [index[t] for t in target]] = weight
    return w, genes


def _random_weights(
    n_genes: int, n_edges: int, topology: str, branching: bool, rng: np.random.Generator
) -> np.ndarray:
    allowed = ~np.eye(n_genes, dtype=bool)
    boost = None
    if branching:
        # The toggle pair (genes 0 and 1) gets no input from the rest, so its symmetry is only
        # broken by noise; it is seeded as a hub so both fates reach many downstream genes.
        allowed[:, :2] = False
        boost = np.zeros(n_genes)
        boost[:2] = n_genes / 4
    adj = random_graph(n_genes, n_edges, topology, rng, allowed=allowed, hub_boost=boost)
    magnitude = rng.uniform(*_WEIGHT_RANGE, size=(n_genes, n_genes))
    sign = np.where(rng.random((n_genes, n_genes)) < _P_ACTIVATION, 1.0, -1.0)
    w = np.where(adj, magnitude * sign, 0.0)
    if branching:
        w[0, 0] = w[1, 1] = _TOGGLE_WEIGHT
        w[0, 1] = w[1, 0] = -_TOGGLE_WEIGHT
    return w


def _cells_per_timepoint(n_cells: int, n_timepoints: int) -> np.ndarray:
    counts = np.full(n_timepoints, n_cells // n_timepoints)
    counts[: n_cells % n_timepoints] += 1
    return counts


def poisson_counts(
    expression: np.ndarray, rng: np.random.Generator, *, library_size: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Poisson counts of ``expression × gene_scale × size_factor``, the simulators' counts.

    ``size_factor = exp(0.3·z)`` per cell (mean 1) and ``gene_scale = c · exp(0.5·z)`` per
    gene (``z ~ N(0, 1)``); ``c`` is ``_GENE_SCALE``, or with ``library_size`` set so that the
    mean expected library size is that. Returns float32 counts, ``gene_scale`` and
    ``size_factor``.
    """
    gene_scale = np.exp(0.5 * rng.standard_normal(expression.shape[1]))
    size_factor = np.exp(0.3 * rng.standard_normal(expression.shape[0]))
    size_factor /= size_factor.mean()
    if library_size is None:
        gene_scale *= _GENE_SCALE
    else:
        gene_scale *= library_size / max((size_factor * (expression @ gene_scale)).mean(), 1e-12)
    x = rng.poisson(expression * gene_scale * size_factor[:, None]).astype(np.float32)
    return x, gene_scale, size_factor


def simulate_grn(
    n_genes: int = 20,
    n_cells: int = 1000,
    n_timepoints: int = 8,
    *,
    network: pd.DataFrame | None = None,
    n_edges: int | None = None,
    topology: str = "scale_free",
    branching: bool = False,
    counts: bool = False,
    noise: float = 0.02,
    t_max: float = 5.0,
    init_spread: float = 0.2,
    dt: float = 0.1,
    random_state: int = 0,
) -> AnnData:
    """Simulate a differentiation time course from a known signed gene network.

    The dynamics are the FLeCS model ``dG/dt = sigmoid(Wᵀ·G + b) − α∘G`` (``W[j, i]`` is the
    effect of regulator ``j`` on target ``i``; non-zero only on network edges), integrated as
    an SDE ``dG = drift dt + noise·dW`` by Euler–Maruyama (states clipped at 0). Every cell is
    an independent path started from a progenitor state and observed once, at one of
    ``n_timepoints`` equally spaced snapshot times in ``[0, t_max]`` (equal numbers of cells
    per time). Random networks get edge weights ``±U(1, 4)`` (60 % activations), decays
    ``α ~ U(0.3, 1)`` and biases ``b_i = −Σ_j W[j, i]·0.5/α_j + N(0, 0.5²)`` so each gene sits
    near the sensitive middle of its sigmoid; the progenitor state has about half the genes
    on (``0.9/α``) and half off (``0.05/α``), scaled per cell by ``exp(init_spread·N(0, 1))``.

    Parameters
    ----------
    n_genes
        Number of genes of a random network (ignored when ``network`` is given).
    n_cells
        Number of cells.
    n_timepoints
        Number of snapshot times (at least 2).
    network
        Decoupler-format DataFrame (``source``, ``target``, optional ``weight``, default 1)
        used as ``W`` instead of a random network; its genes, in order of first appearance,
        become ``var_names``.
    n_edges
        Number of random edges (default ``2 * n_genes``).
    topology
        ``'scale_free'`` (preferential attachment on regulators) or ``'erdos_renyi'``.
    branching
        Embed a symmetric toggle switch (mutual repression, self-activation, weight 6, decay 1,
        bias 0, no other input) in genes 0 and 1, started at its unstable symmetric point, so
        noise sends each cell to one of two lineages that the toggle genes pass on downstream.
        Only for random networks.
    counts
        Observe ``X`` as Poisson counts of ``G × gene_scale × size_factor`` (see Returns).
    noise
        Diffusion coefficient ``σ`` of the SDE.
    t_max
        Last snapshot time.
    init_spread
        Log-normal spread of the progenitor state across cells.
    dt
        Largest Euler–Maruyama step (the steps divide the snapshot interval exactly).
    random_state
        Seed; the result is reproducible for a fixed seed.

    Returns
    -------
    AnnData with ``var_names`` ``'G0'…`` (or the network's genes) and

    - ``X``: float32 noiseless expression ``G`` (non-negative), or Poisson counts (float32)
      when ``counts=True``.
    - ``layers['expression']``: the noiseless ``G`` (only when ``counts=True``).
    - ``layers['true_velocity']``: float32 drift at each cell's state, same units as ``G``.
    - ``obs['time']``: float snapshot time of each cell; cells are ordered by time.
    - ``obs['lineage']``: categorical ``'A'``/``'B'`` (``branching=True`` only): the fate the
      cell's own path reached at ``t_max`` (``'A'`` = first toggle gene high).
    - ``obs['size_factor']``: per-cell library size factor (``counts=True`` only).
    - ``uns['ground_truth_network']``: DataFrame ``source``, ``target``, ``weight`` (= ``W``
      entry), ``sign`` (+1/−1), one row per non-zero entry, self-loops included.
    - ``uns['simulation']``: ``decay``, ``bias``, ``init_state`` (progenitor), ``timepoints``
      and the scalar settings; ``gene_scale`` when ``counts=True``.
    """
    if network is None:
        if int(n_genes) != n_genes or n_genes < 2:
            raise ValueError(f"`n_genes` must be an integer >= 2, got {n_genes!r}.")
        n_genes = int(n_genes)
    if int(n_cells) != n_cells or n_cells < 1:
        raise ValueError(f"`n_cells` must be a positive integer, got {n_cells!r}.")
    if int(n_timepoints) != n_timepoints or n_timepoints < 2:
        raise ValueError(f"`n_timepoints` must be an integer >= 2, got {n_timepoints!r}.")
    if n_cells < n_timepoints:
        raise ValueError(f"`n_cells` ({n_cells}) must be at least `n_timepoints` ({n_timepoints}).")
    check_in(topology, TOPOLOGIES, "topology")
    check_positive(noise, "noise", strict=False)
    check_positive(t_max, "t_max")
    check_positive(init_spread, "init_spread", strict=False)
    check_positive(dt, "dt")
    if branching and network is not None:
        raise ValueError(
            "`branching=True` embeds a toggle switch in a random network; "
            "it cannot be combined with a given `network`."
        )
    if branching and n_genes < 3:
        raise ValueError("`branching=True` needs `n_genes >= 3` (2 toggle genes + targets).")
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)):
        raise TypeError(f"`random_state` must be an integer seed, got {random_state!r}.")
    rng = np.random.default_rng(random_state)

    if network is None:
        if n_edges is None:
            n_edges = 2 * n_genes
        if int(n_edges) != n_edges or n_edges < 1:
            raise ValueError(f"`n_edges` must be a positive integer, got {n_edges!r}.")
        weights = _random_weights(n_genes, int(n_edges), topology, branching, rng)
        genes = [f"G{i}" for i in range(n_genes)]
    else:
        weights, genes = _network_from_frame(network)
    n_genes = len(genes)

    decay = rng.uniform(*_DECAY_RANGE, size=n_genes)
    bias = -(weights * (0.5 / decay)[:, None]).sum(axis=0) + rng.normal(0, _BIAS_SD, n_genes)
    init_state = np.where(rng.random(n_genes) < 0.5, 0.9, 0.05) / decay
    if branching:
        decay[:2] = 1.0
        bias[:2] = 0.0
        init_state[:2] = 0.5  # the unstable symmetric point of the toggle

    n_per = _cells_per_timepoint(n_cells, n_timepoints)
    timepoints = np.linspace(0.0, t_max, n_timepoints)
    n_sub = max(1, math.ceil((timepoints[1] - timepoints[0]) / dt - 1e-9))
    step = (timepoints[1] - timepoints[0]) / n_sub

    # Paths are stored latest-snapshot first, so the cells still to be observed are a prefix.
    state = init_state * np.exp(init_spread * rng.standard_normal((n_cells, n_genes)))
    if branching:
        state[:, 1] = state[:, 0]
    state = state.astype(np.float32)
    params32 = [np.asarray(p, dtype=np.float32) for p in (weights, bias, decay)]
    noise_sd = np.float32(noise * math.sqrt(step))
    observed = np.empty_like(state)
    for k in range(n_timepoints):
        start = int(n_per[k + 1 :].sum())  # rows [0, start) are observed later than t_k
        observed[start : start + n_per[k]] = state[start : start + n_per[k]]
        if k == n_timepoints - 1:
            break
        g = state if branching else state[:start]
        for _ in range(n_sub):
            _euler_maruyama_step(g, *params32, np.float32(step), noise_sd, rng)
    order = np.arange(n_cells)[::-1]
    expression = observed[order]
    velocity = grn_drift(expression.astype(np.float64), weights, bias, decay)
    time = np.repeat(timepoints, n_per)

    obs = pd.DataFrame({_keys.SAMPLE_TIME: time}, index=[f"cell{i}" for i in range(n_cells)])
    if branching:
        fate = np.where(state[order, 0] >= state[order, 1], "A", "B")
        obs[_keys.LINEAGE] = pd.Categorical(fate, categories=["A", "B"])
    simulation = {
        "model": "dG/dt = sigmoid(W^T G + bias) - decay * G; dG += noise * dW",
        "decay": decay,
        "bias": bias,
        "init_state": init_state,
        "timepoints": timepoints,
        "noise": float(noise),
        "t_max": float(t_max),
        "dt": float(step),
        "init_spread": float(init_spread),
        "topology": topology if network is None else "given",
        "branching": bool(branching),
        "counts": bool(counts),
        "random_state": int(random_state),
    }
    layers = {_keys.TRUE_VELOCITY: velocity.astype(np.float32)}
    if counts:
        x, gene_scale, size_factor = poisson_counts(expression, rng)
        layers[_keys.EXPRESSION] = expression.astype(np.float32)
        obs["size_factor"] = size_factor
        simulation["gene_scale"] = gene_scale
    else:
        x = expression.astype(np.float32)

    src, tgt = np.nonzero(weights)
    truth = pd.DataFrame(
        {
            "source": np.asarray(genes, dtype=object)[src],
            "target": np.asarray(genes, dtype=object)[tgt],
            "weight": weights[src, tgt],
            "sign": np.sign(weights[src, tgt]).astype(np.int64),
        }
    )
    adata = AnnData(x, obs=obs, var=pd.DataFrame(index=genes), layers=layers)
    adata.uns[_keys.GROUND_TRUTH_NETWORK] = truth
    adata.uns[_keys.SIMULATION] = simulation
    return adata
