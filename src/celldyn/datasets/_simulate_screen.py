"""Perturbation screens from a linear SDE with heterogeneous noise, knockdowns and depth.

A second generator family for CLIPR and LCD, independent of
:func:`~celldyn.datasets.simulate_perturbations` in every convention that a method could
be tuned to: Gaussian effect sizes with a chosen sign mix and density, stability by scaling
the network rather than the self-decay, per-gene noise levels and knockdown strengths, a
chosen control mean and negative binomial counts at a chosen depth.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.linalg
from anndata import AnnData

from .. import _keys
from .._validate import check_positive
from ._simulate_perturbations import _conditions, _label

_DECAY_RANGE = (0.5, 1.5)
_MAX_ABSCISSA = -0.1  # the network is scaled down until every eigenvalue's real part is below


def _check_range(value: Sequence[float], name: str) -> tuple[float, float]:
    low, high = (float(v) for v in value)
    if not 0 < low <= high or not np.isfinite(high):
        raise ValueError(f"`{name}` must be a pair 0 < low <= high, got {value!r}.")
    return low, high


def _network(
    n_genes: int,
    density: float,
    effect_scale: float,
    positive_fraction: float,
    acyclic: bool,
    rng: np.random.Generator,
) -> tuple[np.ndarray, float]:
    """Drift matrix ``A = W − diag(decay)`` and the factor ``W`` was scaled by for stability."""
    mask = rng.random((n_genes, n_genes)) < density
    np.fill_diagonal(mask, False)
    if acyclic:
        order = rng.permutation(n_genes)
        mask &= order[:, None] > order[None, :]  # target later than regulator
    sign = np.where(rng.random((n_genes, n_genes)) < positive_fraction, 1.0, -1.0)
    w = np.where(mask, sign * effect_scale * np.abs(rng.standard_normal((n_genes, n_genes))), 0)
    decay = np.diag(rng.uniform(*_DECAY_RANGE, size=n_genes))
    factor = 1.0
    while np.linalg.eigvals(factor * w - decay).real.max() > _MAX_ABSCISSA:
        factor *= 0.9
    return factor * w - decay, factor


def simulate_diffusion_screen(
    n_genes: int = 15,
    *,
    density: float = 0.15,
    effect_scale: float = 1.0,
    positive_fraction: float = 0.5,
    acyclic: bool = False,
    noise_range: tuple[float, float] = (0.5, 1.5),
    knockdown_range: tuple[float, float] = (1.0, 3.0),
    depth: float = 20.0,
    dispersion: float | None = None,
    n_cells: int = 250,
    singles: Sequence[str | int] | None = None,
    n_doubles: int = 10,
    random_state: int = 0,
) -> AnnData:
    """Simulate a knockdown screen from a linear SDE with heterogeneous noise and counts.

    Cells of condition ``q`` are draws from the stationary law ``N(μ_q, Σ)`` of
    ``dx = (A x + b + c_q) dt + diag(σ) dW``, observed as counts. ``A = W − diag(λ)``: each
    ordered pair of genes is an edge with probability ``density``, of weight
    ``±effect_scale·|N(0, 1)|`` (positive with probability ``positive_fraction``), scaled
    down by factors of 0.9 until every eigenvalue of ``A`` has real part below −0.1;
    ``λ ~ U(0.5, 1.5)``, ``σ_g ~ U(noise_range)``. ``b`` puts the control mean at
    ``μ_0 ~ U(−0.5, 1.5)``. Knocking down gene ``j`` adds ``−δ_j e_j`` to ``c_q``, with
    ``δ_j ~ U(knockdown_range)`` drawn once per gene; a double adds both. Counts are
    Poisson (``dispersion=None``) or negative binomial (inverse dispersion ``dispersion``)
    with mean ``softplus(x_g) · depth · s_g · l_n``, ``s_g ~ LogNormal(0, 0.5)`` per gene and
    ``l_n ~ LogNormal(0, 0.3)`` per cell (mean 1).

    Parameters
    ----------
    n_genes
        Number of genes (at least 2), named ``'g0'…``.
    density
        Probability of each directed edge, in ``[0, 1]``.
    effect_scale
        Scale of the edge weights before the stability scaling.
    positive_fraction
        Probability that an edge activates, in ``[0, 1]``.
    acyclic
        Restrict the edges to a random causal order.
    noise_range
        Range of the per-gene noise levels ``σ_g``.
    knockdown_range
        Range of the per-gene knockdown strengths ``δ_j``.
    depth
        Mean count scale: a gene at ``softplus(x) = 1`` has ``depth · s_g`` counts on average.
    dispersion
        Inverse dispersion of negative binomial counts; ``None`` for Poisson.
    n_cells
        Cells per condition.
    singles
        Genes (names or indices) knocked down alone; ``None`` means every gene once.
    n_doubles
        Number of random distinct pairs of ``singles`` knocked down together.
    random_state
        Seed; the result is reproducible for a fixed seed.

    Returns
    -------
    AnnData with cells grouped by condition (control first) and

    - ``X``: float32 counts; ``layers['latent']``: float32 ``x``.
    - ``obs['perturbation']``: categorical ``'control'``, ``'g3'``, ``'g3+g7'``;
      ``obs['size_factor']``: ``l_n``.
    - ``uns['ground_truth_effects']``: ``(n_genes, n_genes)`` regulator (row) x target
      (column), entry ``[j, i] = A[i, j]`` (``Aᵀ``; the diagonal holds ``−λ``).
    - ``uns['ground_truth_network']``: ``source``, ``target``, ``weight``, ``sign``, one row
      per edge.
    - ``uns['simulation']``: ``conditions``, ``shifts`` (``c_q``), ``means`` (``μ_q``),
      ``covariance`` (``Σ``), ``noise`` (``σ``), ``knockdown`` (``δ``), ``gene_scale``
      (``depth · s_g``), ``network_scaling`` and the settings (``dispersion`` only for
      negative binomial counts).
    """
    if int(n_genes) != n_genes or n_genes < 2:
        raise ValueError(f"`n_genes` must be an integer >= 2, got {n_genes!r}.")
    n_genes = int(n_genes)
    for value, name in ((density, "density"), (positive_fraction, "positive_fraction")):
        if not 0 <= value <= 1:
            raise ValueError(f"`{name}` must lie in [0, 1], got {value!r}.")
    check_positive(effect_scale, "effect_scale", strict=False)
    check_positive(depth, "depth")
    if dispersion is not None:
        check_positive(dispersion, "dispersion")
    noise_range = _check_range(noise_range, "noise_range")
    knockdown_range = _check_range(knockdown_range, "knockdown_range")
    if int(n_cells) != n_cells or n_cells < 1:
        raise ValueError(f"`n_cells` must be a positive integer, got {n_cells!r}.")
    n_cells = int(n_cells)
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)):
        raise TypeError(f"`random_state` must be an integer seed, got {random_state!r}.")
    rng = np.random.default_rng(random_state)
    genes = [f"g{i}" for i in range(n_genes)]
    conditions = _conditions(genes, singles, n_doubles, rng)

    a, factor = _network(n_genes, density, effect_scale, positive_fraction, acyclic, rng)
    noise = rng.uniform(*noise_range, size=n_genes)
    knockdown = rng.uniform(*knockdown_range, size=n_genes)
    control_mean = rng.uniform(-0.5, 1.5, size=n_genes)
    shifts = np.zeros((len(conditions), n_genes))
    for q, condition in enumerate(conditions):
        shifts[q, list(condition)] = -knockdown[list(condition)]
    means = control_mean - np.linalg.solve(a, shifts.T).T
    covariance = scipy.linalg.solve_continuous_lyapunov(a, -np.diag(noise**2))
    covariance = (covariance + covariance.T) / 2
    chol = np.linalg.cholesky(covariance)
    z = rng.standard_normal((len(conditions), n_cells, n_genes))
    x = (means[:, None, :] + z @ chol.T).reshape(-1, n_genes)

    gene_scale = depth * np.exp(0.5 * rng.standard_normal(n_genes))
    size_factor = np.exp(0.3 * rng.standard_normal(len(x)))
    size_factor /= size_factor.mean()
    rate = np.logaddexp(0.0, x) * gene_scale * size_factor[:, None]
    if dispersion is not None:
        rate = rng.gamma(dispersion, rate / dispersion)
    counts = rng.poisson(rate)

    labels = [_label(c, genes) for c in conditions]
    obs = pd.DataFrame(
        {
            _keys.PERTURBATION: pd.Categorical(np.repeat(labels, n_cells), categories=labels),
            "size_factor": size_factor,
        },
        index=[f"cell{i}" for i in range(len(x))],
    )
    source, target = np.nonzero((a - np.diag(np.diag(a))).T)
    network = pd.DataFrame(
        {
            "source": np.asarray(genes, dtype=object)[source],
            "target": np.asarray(genes, dtype=object)[target],
            "weight": a[target, source],
            "sign": np.sign(a[target, source]).astype(int),
        }
    )
    simulation = {
        "model": "linear_sde",
        "conditions": np.asarray(labels, dtype=object),
        "shifts": shifts,
        "means": means,
        "covariance": covariance,
        "noise": noise,
        "knockdown": knockdown,
        "gene_scale": gene_scale,
        "network_scaling": float(factor),
        "density": float(density),
        "effect_scale": float(effect_scale),
        "positive_fraction": float(positive_fraction),
        "acyclic": bool(acyclic),
        "depth": float(depth),
        "n_cells": n_cells,
        "random_state": int(random_state),
    }
    if dispersion is not None:
        simulation["dispersion"] = float(dispersion)
    return AnnData(
        counts.astype(np.float32),
        obs=obs,
        var=pd.DataFrame(index=genes),
        layers={_keys.LATENT: x.astype(np.float32)},
        uns={
            "ground_truth_effects": a.T.copy(),
            "ground_truth_network": network,
            "simulation": simulation,
        },
    )
