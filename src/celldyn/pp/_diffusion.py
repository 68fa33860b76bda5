"""Diffusion smoothing of cell states on a kNN graph (in the spirit of MAGIC)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def markov_operator(connectivities: sp.spmatrix | np.ndarray) -> sp.csr_matrix:
    """Row-stochastic Markov operator of a cell-cell graph, with self loops.

    Parameters
    ----------
    connectivities
        Symmetric non-negative ``(n_obs, n_obs)`` graph weights, e.g.
        ``adata.obsp['connectivities']``.

    Returns
    -------
    Sparse CSR matrix ``M = D⁻¹ (C + I)`` whose rows sum to one.
    """
    c = sp.csr_matrix(connectivities, dtype=np.float64)
    c = c + sp.identity(c.shape[0], dtype=np.float64, format="csr")
    row_sums = np.asarray(c.sum(axis=1)).ravel()
    return sp.csr_matrix(sp.diags(1.0 / row_sums) @ c)


def diffuse(x: sp.spmatrix | np.ndarray, operator: sp.spmatrix, t: int) -> np.ndarray:
    """Apply ``t`` diffusion steps, ``Mᵗ·X``, as ``t`` sparse-dense products.

    ``Mᵗ`` itself is never formed, so memory stays ``O(nnz(M) + n_obs · n_features)``.

    Parameters
    ----------
    x
        Data of shape ``(n_obs, n_features)``; sparse input is densified (the result is dense).
    operator
        Sparse Markov operator of shape ``(n_obs, n_obs)``, see :func:`markov_operator`.
    t
        Number of diffusion steps (``0`` returns a dense copy of ``x``).

    Returns
    -------
    Dense ``float64`` array of shape ``(n_obs, n_features)``.
    """
    out = x.toarray() if sp.issparse(x) else np.array(x)
    out = out.astype(np.float64, copy=False)
    for _ in range(t):
        out = operator @ out
    return np.asarray(out)
