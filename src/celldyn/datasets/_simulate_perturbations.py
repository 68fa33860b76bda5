"""Perturbation screens from stationary diffusions with a known causal effect matrix.

Each condition ``q`` (control, single and double knockdowns) is the stationary law of
``dx = f_q(x) dt + √2 dW`` with ``f_q(x) = A·x + b + c_q`` (linear, sampled exactly) or
``f_q(x) = diag(A)·x + tanh((A − diag(A))·x) + b + c_q`` (nonlinear, Euler–Maruyama).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd
import scipy.linalg
from anndata import AnnData

from .. import _keys
from .._validate import check_in, check_positive
from ._graphs import TOPOLOGIES, random_graph

_EFFECT_RANGE = (0.5, 1.5)
_DIAGONAL_RANGE = (1.0, 2.0)
_STABILITY_MARGIN = 0.5
_GENE_SCALE = 20.0
_BURN_IN_RELAXATIONS = 5.0


def _effect_matrix(
    n_genes: int, n_edges: int, graph: str, acyclic: bool, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """Stable ``A`` with ``A[i, j]`` = effect of gene ``j`` on gene ``i``; returns the shift."""
    allowed = None
    if acyclic:
        rank = rng.permutation(n_genes)
        allowed = rank[:, None] < rank[None, :]
    adj = random_graph(n_genes, n_edges, graph, rng, allowed=allowed)  # regulator x target
    magnitude = rng.uniform(*_EFFECT_RANGE, size=(n_genes, n_genes))
    sign = np.where(rng.random((n_genes, n_genes)) < 0.5, 1.0, -1.0)
    a = np.where(adj, magnitude * sign, 0.0).T
    a[np.diag_indices(n_genes)] = -rng.uniform(*_DIAGONAL_RANGE, size=n_genes)
    top = np.linalg.eigvals(a).real.max()
    shift = max(0.0, top + _STABILITY_MARGIN)
    a[np.diag_indices(n_genes)] -= shift
    return a, shift


def _conditions(
    genes: list[str], singles: Sequence[str | int] | None, n_doubles: int, rng
) -> list[tuple[int, ...]]:
    if singles is None:
        single_idx = list(range(len(genes)))
    else:
        lookup = {g: i for i, g in enumerate(genes)}
        single_idx = []
        for s in singles:
            if isinstance(s, (int, np.integer)) and 0 <= s < len(genes):
                single_idx.append(int(s))
            elif s in lookup:
                single_idx.append(lookup[s])
            else:
                raise ValueError(f"`singles` entry {s!r} is neither a gene name nor an index.")
        if len(set(single_idx)) != len(single_idx):
            raise ValueError("`singles` has repeated genes.")
        single_idx.sort()
    pairs = list(combinations(single_idx, 2))
    if int(n_doubles) != n_doubles or not 0 <= n_doubles <= len(pairs):
        raise ValueError(
            f"`n_doubles` must be an integer in [0, {len(pairs)}] (pairs of the singles), "
            f"got {n_doubles!r}."
        )
    chosen = rng.choice(len(pairs), size=int(n_doubles), replace=False) if n_doubles else []
    doubles = sorted(pairs[i] for i in chosen)
    return [(), *[(i,) for i in single_idx], *doubles]


def _label(condition: tuple[int, ...], genes: list[str]) -> str:
    return "+".join(genes[i] for i in condition) if condition else _keys.CONTROL


def _nonlinear_samples(
    a: np.ndarray, shifts: np.ndarray, start: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, float, int]:
    """Run Euler–Maruyama of the saturating drift from ``start`` (rows) to stationarity."""
    diag = np.diag(a).copy()
    off_t = (a - np.diag(diag)).T
    eigenvalues = np.linalg.eigvals(a)
    dt = min(0.05, 0.1 / np.abs(eigenvalues).max())
    n_steps = math.ceil(_BURN_IN_RELAXATIONS / np.abs(eigenvalues.real).min() / dt)
    x = start.copy()
    sd = math.sqrt(2 * dt)
    for _ in range(n_steps):
        drift = np.tanh(x @ off_t)
        drift += x * diag
        drift += shifts
        x += dt * drift
        x += sd * rng.standard_normal(x.shape)
    return x, dt, n_steps


def simulate_perturbations(
    n_genes: int = 20,
    *,
    graph: str = "erdos_renyi",
    edges_per_gene: float = 2.0,
    acyclic: bool = False,
    n_cells: int = 200,
    singles: Sequence[str | int] | None = None,
    n_doubles: int = 10,
    nonlinear: bool = False,
    counts: bool = False,
    perturbation_strength: float = 2.0,
    random_state: int = 0,
) -> AnnData:
    """Simulate a single/double knockdown screen with a known causal effect matrix.

    Cells of condition ``q`` are independent draws from the stationary law of the diffusion
    ``dx = f_q(x) dt + √2 dW``. ``A[i, j]`` (effect of gene ``j`` on gene ``i``) is
    ``±U(0.5, 1.5)`` on the edges of a random graph and ``−U(1, 2)`` on the diagonal, with the
    diagonal lowered where needed so every eigenvalue has real part ``≤ −0.5``; ``b ~ N(0, 1)``.
    Knocking down gene ``j`` adds ``−perturbation_strength·e_j`` to ``c_q`` (``c_ctrl = 0``);
    a double adds both single shifts.

    - Linear (default): ``f_q(x) = A x + b + c_q``, sampled exactly from
      ``N(−A⁻¹(b + c_q), Σ)`` with ``AΣ + ΣAᵀ + 2I = 0``. The CLIPR identity
      ``c_q = −A·l_q`` holds exactly for the mean shift ``l_q = μ_q − μ_ctrl``.
    - ``nonlinear=True``: ``f_q(x) = diag(A)·x + tanh((A − diag(A))·x) + b + c_q`` (each
      gene's summed regulatory input saturates; ``A`` is the Jacobian wherever that input is
      0), sampled by Euler–Maruyama (step ``min(0.05, 0.1/ρ(A))``) started from the linear
      model's samples and run for 5 relaxation times of ``A``; two knockdowns reaching the
      same gene then act non-additively on the means.

    Parameters
    ----------
    n_genes
        Number of genes (at least 2), named ``'G0'…``.
    graph
        ``'erdos_renyi'`` or ``'scale_free'`` (preferential attachment on regulators).
    edges_per_gene
        Number of edges per gene (``round(edges_per_gene * n_genes)`` edges in all).
    acyclic
        Restrict the graph to a DAG (random causal order); otherwise cycles may occur.
    n_cells
        Cells per condition.
    singles
        Genes (names or indices) knocked down alone; ``None`` means every gene once.
    n_doubles
        Number of random distinct pairs of ``singles`` knocked down together.
    nonlinear
        Use the saturating drift (see above).
    counts
        Observe ``X`` as Poisson counts of ``softplus(x) × gene_scale × size_factor``.
    perturbation_strength
        Knockdown shift of the drift.
    random_state
        Seed; the result is reproducible for a fixed seed.

    Returns
    -------
    AnnData with cells grouped by condition (control first) and

    - ``X``: float32 latent state ``x``, or Poisson counts (float32) when ``counts=True``.
    - ``layers['latent']``: float32 ``x`` (only when ``counts=True``).
    - ``obs['perturbation']``: categorical ``'control'``, ``'G3'``, ``'G3+G7'`` (genes in
      index order).
    - ``obs['size_factor']``: per-cell library size factor (``counts=True`` only).
    - ``uns['ground_truth_effects']``: dense ``(n_genes, n_genes)`` matrix oriented regulator
      (row) x target (column): entry ``[j, i]`` = effect of gene ``j`` on gene ``i`` =
      ``A[i, j]`` (so it is ``Aᵀ``; the diagonal holds the self-decay).
    - ``uns['ground_truth_network']``: DataFrame ``source``, ``target``, ``weight``
      (= ``A[target, source]``), ``sign``, one row per off-diagonal non-zero of ``A``.
    - ``uns['simulation']``: ``bias`` (``b``), ``conditions`` (labels, in ``obs`` order),
      ``shifts`` (``c_q`` per condition, rows as ``conditions``), ``perturbation_strength``,
      ``diagonal_shift`` and the other settings; linear: exact ``means`` (rows as
      ``conditions``) and ``covariance``; nonlinear: ``dt``, ``n_steps``; counts:
      ``gene_scale``.
    """
    if int(n_genes) != n_genes or n_genes < 2:
        raise ValueError(f"`n_genes` must be an integer >= 2, got {n_genes!r}.")
    n_genes = int(n_genes)
    check_in(graph, TOPOLOGIES, "graph")
    check_positive(edges_per_gene, "edges_per_gene", strict=False)
    if int(n_cells) != n_cells or n_cells < 1:
        raise ValueError(f"`n_cells` must be a positive integer, got {n_cells!r}.")
    n_cells = int(n_cells)
    check_positive(perturbation_strength, "perturbation_strength", strict=False)
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)):
        raise TypeError(f"`random_state` must be an integer seed, got {random_state!r}.")
    rng = np.random.default_rng(random_state)
    genes = [f"G{i}" for i in range(n_genes)]
    conditions = _conditions(genes, singles, n_doubles, rng)

    a, diagonal_shift = _effect_matrix(
        n_genes, round(edges_per_gene * n_genes), graph, acyclic, rng
    )
    bias = rng.standard_normal(n_genes)
    shifts = np.zeros((len(conditions), n_genes))
    for q, condition in enumerate(conditions):
        shifts[q, list(condition)] = -perturbation_strength
    means = -np.linalg.solve(a, (bias + shifts).T).T
    covariance = scipy.linalg.solve_continuous_lyapunov(a, -2.0 * np.eye(n_genes))
    covariance = (covariance + covariance.T) / 2
    chol = np.linalg.cholesky(covariance)
    z = rng.standard_normal((len(conditions), n_cells, n_genes))
    x = (means[:, None, :] + z @ chol.T).reshape(-1, n_genes)

    labels = [_label(c, genes) for c in conditions]
    simulation = {
        "model": "nonlinear" if nonlinear else "linear",
        "bias": bias,
        "conditions": np.asarray(labels, dtype=object),
        "shifts": shifts,
        "perturbation_strength": float(perturbation_strength),
        "diagonal_shift": float(diagonal_shift),
        "graph": graph,
        "edges_per_gene": float(edges_per_gene),
        "acyclic": bool(acyclic),
        "n_cells": n_cells,
        "counts": bool(counts),
        "random_state": int(random_state),
    }
    if nonlinear:
        per_cell_shift = np.repeat(bias + shifts, n_cells, axis=0)
        x, dt, n_steps = _nonlinear_samples(a, per_cell_shift, x, rng)
        simulation.update(dt=float(dt), n_steps=int(n_steps))
    else:
        simulation.update(means=means, covariance=covariance)

    obs = pd.DataFrame(
        {_keys.PERTURBATION: pd.Categorical(np.repeat(labels, n_cells), categories=labels)},
        index=[f"cell{i}" for i in range(len(conditions) * n_cells)],
    )
    layers = {}
    if counts:
        gene_scale = _GENE_SCALE * np.exp(0.5 * rng.standard_normal(n_genes))
        size_factor = np.exp(0.3 * rng.standard_normal(len(obs)))
        size_factor /= size_factor.mean()
        rate = np.logaddexp(0.0, x) * gene_scale * size_factor[:, None]
        layers[_keys.LATENT] = x.astype(np.float32)
        x = rng.poisson(rate)
        obs["size_factor"] = size_factor
        simulation["gene_scale"] = gene_scale

    source, target = np.nonzero((a - np.diag(np.diag(a))).T)
    network = pd.DataFrame(
        {
            "source": np.asarray(genes, dtype=object)[source],
            "target": np.asarray(genes, dtype=object)[target],
            "weight": a[target, source],
            "sign": np.sign(a[target, source]).astype(np.int64),
        }
    )
    adata = AnnData(
        np.asarray(x, dtype=np.float32), obs=obs, var=pd.DataFrame(index=genes), layers=layers
    )
    adata.uns[_keys.GROUND_TRUTH_EFFECTS] = a.T.copy()
    adata.uns[_keys.GROUND_TRUTH_NETWORK] = network
    adata.uns[_keys.SIMULATION] = simulation
    return adata
