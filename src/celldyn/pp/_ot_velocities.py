"""Velocities of cells from exact OT matches between consecutive time groups."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._readers import TimeGroups
from ._couplings import pair_plan

OT_MAX_CELLS = 5000
"""Largest time group solved as one exact OT problem (minibatch OT above, as in
:func:`celldyn.pp.couplings`)."""


def ot_partners(
    z: np.ndarray, groups: TimeGroups, random_state: int = 0
) -> tuple[np.ndarray, sp.csr_matrix, np.ndarray]:
    r"""OT partners at the next time group of every cell of every time group but the last.

    For consecutive groups :math:`t_k, t_{k+1}` an exact OT plan :math:`P` (squared Euclidean
    cost on ``z``; minibatch OT for groups over :data:`OT_MAX_CELLS` cells) matches the cells;
    cell :math:`i` of :math:`t_k` has the partners :math:`j` with weights
    :math:`P_{ij} / \sum_j P_{ij}`. An exact plan has fewer non-zeros than the two groups
    have cells, so the partners take little memory whatever the number of genes.

    Parameters
    ----------
    z
        Representation ``(n_obs, d)`` the plans are computed on (e.g. ``obsm['X_pca']``).
    groups
        Time groups (:func:`celldyn._readers.read_time_groups`).
    random_state
        Seed of the minibatches of groups over :data:`OT_MAX_CELLS` cells.

    Returns
    -------
    Positions of the cells used (obs rows), their partner weights as a sparse
    ``(n_used, n_obs)`` matrix over obs rows (each row sums to 1) and the time from each
    cell's group to the next, ``(n_used,)``.
    """
    rng = np.random.default_rng(random_state)
    cells, plans, gaps = [], [], []
    for g in range(groups.n_groups - 1):
        source, target = groups.members(g), groups.members(g + 1)
        plan, _ = pair_plan(
            z[source],
            z[target],
            method="exact",
            reg=0.05,
            max_cells=OT_MAX_CELLS,
            batch_size=OT_MAX_CELLS,
            rng=rng,
        )
        plan = plan.tocsr()
        weights = plan.multiply(1.0 / plan.sum(1)).tocsr()  # each row sums to 1
        n_obs = len(groups.codes)
        columns = target[weights.indices]  # obs rows
        plans.append(sp.csr_matrix((weights.data, columns, weights.indptr), (len(source), n_obs)))
        cells.append(source)
        gaps.append(np.full(len(source), groups.values[g + 1] - groups.values[g], dtype=float))
    if not cells:
        return np.zeros(0, np.int64), sp.csr_matrix((0, len(groups.codes))), np.zeros(0)
    return np.concatenate(cells), sp.vstack(plans, format="csr"), np.concatenate(gaps)


def ot_barycentres(
    x: np.ndarray, z: np.ndarray, groups: TimeGroups, random_state: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""OT barycentre at the next time group of every cell of every time group but the last.

    Cell :math:`i` of :math:`t_k` goes to the barycentre
    :math:`\bar x_i = \sum_j P_{ij} x_j / \sum_j P_{ij}` of its partners
    (:func:`ot_partners`).

    Parameters
    ----------
    x
        Expression ``(n_obs, n_genes)`` whose barycentres are returned.
    z, groups, random_state
        As in :func:`ot_partners`.

    Returns
    -------
    Positions of the cells used (obs rows), their barycentres ``(n_used, n_genes)`` and the
    time from each cell's group to the next, ``(n_used,)``.
    """
    cells, partners, gaps = ot_partners(z, groups, random_state)
    return cells, partners @ x, gaps


def secants(start: np.ndarray, end: np.ndarray, gaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Midpoints ``(start + end) / 2`` and slopes ``(end - start) / gaps`` of segments.

    The slope of a segment is a second-order estimate of the derivative at its midpoint.
    ``start`` and ``end`` are ``(n, n_genes)``, ``gaps`` ``(n,)``.
    """
    step = end - start
    return start + 0.5 * step, step / gaps[:, None]


def ot_velocities(
    x: np.ndarray, z: np.ndarray, groups: TimeGroups, random_state: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Barycentric OT velocities of the cells of every time group but the last.

    Each cell :math:`i` goes to its OT barycentre :math:`\bar x_i` at the next time group
    (:func:`ot_barycentres`), with the velocity :math:`(\bar x_i - x_i) / (t_{k+1} - t_k)`
    placed at the midpoint :math:`(x_i + \bar x_i) / 2` (:func:`secants`).

    Parameters
    ----------
    x, z, groups, random_state
        As in :func:`ot_barycentres`.

    Returns
    -------
    Positions of the cells used (obs rows), their velocities and midpoints, in the units of
    ``x`` (per unit of the group values).
    """
    cells, barycentres, gaps = ot_barycentres(x, z, groups, random_state)
    midpoints, velocities = secants(x[cells], barycentres, gaps)
    return cells, velocities, midpoints
