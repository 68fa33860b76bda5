"""Column means and variances accumulated over row blocks (data read block by block)."""

from __future__ import annotations

import torch


class ColumnMoments:
    """Count, mean and variance of every column of the row blocks seen so far.

    Blocks are merged exactly (Chan, Golub and LeVeque's pairwise update, in float64), so
    the result does not depend on how the rows were split up to rounding.
    """

    def __init__(self):
        self.n = 0
        self.mean: torch.Tensor | float = 0.0
        self._m2: torch.Tensor | float = 0.0

    def update(self, block: torch.Tensor) -> None:
        """Add the rows of a ``(n_rows, n_columns)`` block."""
        k = len(block)
        if not k:
            return
        block = block.double()
        mean = block.mean(0)
        delta = mean - self.mean
        total = self.n + k
        self._m2 = self._m2 + (block - mean).square().sum(0) + delta.square() * self.n * k / total
        self.mean = self.mean + delta * k / total
        self.n = total

    def var(self, ddof: int = 1) -> torch.Tensor:
        """Variance with ``ddof`` delta degrees of freedom (0 for ``ddof`` rows or fewer)."""
        return self._m2 / max(self.n - ddof, 1)
