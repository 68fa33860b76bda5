"""Rows of a registered expression matrix, read on demand (from disk for a backed AnnData)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS

from .._validate import BACKED_BLOCK, is_backed
from ..module._moments import ColumnMoments


class ExpressionRows:
    """Dense float32 rows of an expression matrix, never converted or read whole.

    Indexing with a slice or integer positions returns those rows as a dense float32 array
    (so :func:`~celldyn.models._inference.batched` takes it like an array). A matrix of a
    backed AnnData (``read_h5ad(..., backed='r')``, dense or sparse) is read at the sorted
    unique positions, once per request, and re-indexed; only the rows asked for are in
    memory.

    Parameters
    ----------
    matrix
        ``(n_obs, n_genes)`` dense or sparse matrix, in memory or backed.
    rows
        Positions of the rows this view holds (``None``: all).
    """

    def __init__(self, matrix, rows: np.ndarray | None = None):
        self.matrix = matrix
        self.rows = rows
        self.backed = is_backed(matrix)

    @property
    def n_vars(self) -> int:
        """Number of genes (columns)."""
        return self.matrix.shape[1]

    def __len__(self) -> int:
        return self.matrix.shape[0] if self.rows is None else len(self.rows)

    def subset(self, positions: np.ndarray | slice) -> ExpressionRows:
        """Return the view of the rows at ``positions`` (nothing is read)."""
        if isinstance(positions, slice) and positions == slice(None):
            return self
        return ExpressionRows(self.matrix, self._positions(positions))

    def __getitem__(self, positions: np.ndarray | slice) -> np.ndarray:
        positions = self._positions(positions)
        if not self.backed:
            return _dense(self.matrix[positions])
        unique, inverse = np.unique(positions, return_inverse=True)
        if len(unique) and unique[-1] - unique[0] == len(unique) - 1:  # a block: one slice
            return _dense(self.matrix[unique[0] : unique[-1] + 1])[inverse]
        return _dense(self.matrix[unique])[inverse]

    def _positions(self, positions: np.ndarray | slice) -> np.ndarray:
        """Matrix rows of view positions (a slice or integers, numpy style)."""
        n = len(self)
        if isinstance(positions, slice):
            local = np.arange(*positions.indices(n))
        else:
            local = np.asarray(positions, dtype=np.int64)
            local = np.where(local < 0, local + n, local)
        return local if self.rows is None else self.rows[local]

    def blocks(self, size: int | None = None) -> Iterator[torch.Tensor]:
        """Consecutive blocks of ``size`` rows (``None``: :data:`BACKED_BLOCK`), as tensors."""
        size = BACKED_BLOCK if size is None else size
        for start in range(0, len(self), size):
            yield torch.from_numpy(self[start : start + size])

    def moments(self) -> ColumnMoments:
        """Mean and variance of every gene over the rows (float64, block by block)."""
        moments = ColumnMoments()
        for block in self.blocks():
            moments.update(block)
        return moments

    def gather(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Replace the cell positions ``'cells'`` of a minibatch by their expression ``'x'``.

        The transform of :class:`~celldyn.models._data.TensorDataModule` for samples that
        hold cells (trajectories ``(n, length)``): ``x`` is ``(*cells.shape, n_genes)``.
        """
        batch = dict(batch)
        cells = batch.pop("cells")
        x = torch.from_numpy(self[cells.reshape(-1).numpy()])
        return {"x": x.reshape(*cells.shape, self.n_vars), **batch}


def _dense(block) -> np.ndarray:
    """Return a row block as a dense float32 array (not copied when it already is one)."""
    block = block.toarray() if sp.issparse(block) else np.asarray(block)
    return block.astype(np.float32, copy=False)


def registered_rows(model, adata: AnnData) -> ExpressionRows:
    """Return the expression rows of ``adata`` registered with a FLeCS model (not read)."""
    manager = model.get_anndata_manager(adata, required=True)
    return ExpressionRows(manager.get_from_registry(REGISTRY_KEYS.X_KEY))
