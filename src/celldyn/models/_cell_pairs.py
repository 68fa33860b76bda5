"""Velocity targets as pairs of cells (OT partners or trajectory chords), read on demand."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
import torch

from .._validate import BACKED_BLOCK
from ..pp._ot_velocities import secants
from ._rows import ExpressionRows


class CellPairs:
    """Velocity targets that are computed from the expression only when asked for.

    Target ``k`` goes from cell ``starts[k]`` to the weighted mean of its partner cells (row
    ``k`` of ``partners``, weights summing to 1) in time ``gaps[k]``; its velocity is the
    slope of that segment, placed at its midpoint (:func:`~celldyn.pp._ot_velocities.secants`).
    A request reads only its targets' cells (once each); the targets themselves hold a few
    numbers per cell, not cells × genes.

    Parameters
    ----------
    rows
        Expression rows of all cells (obs positions).
    starts
        Start cell of every target, ``(n_targets,)``.
    partners
        Sparse ``(n_targets, n_obs)`` partner weights over obs positions.
    gaps
        Time from start to end of every target, positive, ``(n_targets,)``.
    """

    def __init__(
        self, rows: ExpressionRows, starts: np.ndarray, partners: sp.csr_matrix, gaps: np.ndarray
    ):
        self.rows, self.starts, self.partners, self.gaps = rows, starts, partners.tocsr(), gaps

    @classmethod
    def chords(cls, rows: ExpressionRows, indices: np.ndarray, times: np.ndarray) -> CellPairs:
        """Consecutive cells of trajectories ``indices`` at ``times`` (``(n, length)``).

        Pairs of zero duration (repeated cells of short kNN paths) are left out, as in
        :func:`~celldyn.module.chord_velocities`.
        """
        durations = times[:, 1:] - times[:, :-1]
        keep = durations > 0
        ends = indices[:, 1:][keep]
        partners = sp.csr_matrix(
            (np.ones(len(ends)), ends, np.arange(len(ends) + 1)), shape=(len(ends), len(rows))
        )
        return cls(rows, indices[:, :-1][keep], partners, durations[keep])

    def __len__(self) -> int:
        return len(self.starts)

    def resample(self, picks: np.ndarray) -> CellPairs:
        """Return the targets ``picks`` (e.g. a bootstrap resample, with repeats)."""
        return CellPairs(self.rows, self.starts[picks], self.partners[picks], self.gaps[picks])

    def ends(self, picks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Start and end expression ``(n_picks, n_genes)`` of the targets ``picks``."""
        partners = self.partners[picks]
        k = len(partners.indptr) - 1
        cells, inverse = np.unique(
            np.concatenate([self.starts[picks], partners.indices]), return_inverse=True
        )
        x = self.rows[cells]  # every cell read once
        weights = sp.csr_matrix((partners.data, inverse[k:], partners.indptr), (k, len(cells)))
        return x[inverse[:k]], weights @ x

    def batch(self, picks: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Midpoints and velocities (float32 tensors ``(n_picks, n_genes)``) of ``picks``."""
        start, end = self.ends(picks)
        midpoints, velocities = secants(start, end, self.gaps[picks])
        return (
            torch.as_tensor(midpoints, dtype=torch.float32),
            torch.as_tensor(velocities, dtype=torch.float32),
        )

    def blocks(self, size: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """:meth:`batch` of consecutive blocks of ``size`` targets (``None``: BACKED_BLOCK)."""
        size = BACKED_BLOCK if size is None else size
        for start in range(0, len(self), size):
            yield self.batch(np.arange(start, min(start + size, len(self))))
