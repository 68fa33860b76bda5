"""Random directed graphs (scale-free or Erdős–Rényi) shared by the simulators.

Graphs are returned as boolean adjacency matrices ``adj[j, i]`` = "gene ``j`` regulates gene
``i``" (regulator row x target column), without self-loops.
"""

from __future__ import annotations

import numpy as np

from .._validate import check_in

TOPOLOGIES = ("scale_free", "erdos_renyi")
_ATTRACTIVENESS = 0.25


def random_graph(
    n_genes: int,
    n_edges: int,
    topology: str,
    rng: np.random.Generator,
    *,
    allowed: np.ndarray | None = None,
    hub_boost: np.ndarray | None = None,
) -> np.ndarray:
    """Draw a random directed graph without self-loops.

    Parameters
    ----------
    n_genes
        Number of nodes.
    n_edges
        Number of directed edges (capped by the number of allowed pairs).
    topology
        ``'scale_free'``: each edge picks a target uniformly and a regulator with probability
        proportional to ``0.25 + out-degree`` (preferential attachment on regulators), giving
        a few hub regulators and many genes that regulate nothing. ``'erdos_renyi'``: edges
        uniformly among all allowed pairs.
    rng
        Random generator.
    allowed
        Boolean ``(n_genes, n_genes)`` mask of pairs that may carry an edge (regulator x
        target); default all off-diagonal pairs.
    hub_boost
        Extra initial attachment weight per regulator (scale-free only).

    Returns
    -------
    Boolean adjacency, regulator (row) x target (column).
    """
    check_in(topology, TOPOLOGIES, "topology")
    if allowed is None:
        allowed = ~np.eye(n_genes, dtype=bool)
    allowed = allowed & ~np.eye(n_genes, dtype=bool)
    n_edges = int(min(n_edges, allowed.sum()))
    adj = np.zeros((n_genes, n_genes), dtype=bool)
    if topology == "erdos_renyi":
        pairs = np.flatnonzero(allowed)
        adj.flat[rng.choice(pairs, size=n_edges, replace=False)] = True
        return adj
    weight = np.full(n_genes, _ATTRACTIVENESS)
    if hub_boost is not None:
        weight += np.asarray(hub_boost, dtype=np.float64)
    out_degree = np.zeros(n_genes)
    targets = np.flatnonzero(allowed.any(axis=0))
    for _ in range(n_edges):
        while True:
            target = rng.choice(targets)
            candidates = np.flatnonzero(allowed[:, target] & ~adj[:, target])
            if candidates.size:
                break
        p = weight[candidates] + out_degree[candidates]
        regulator = rng.choice(candidates, p=p / p.sum())
        adj[regulator, target] = True
        out_degree[regulator] += 1
    return adj
