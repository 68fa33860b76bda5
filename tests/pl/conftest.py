"""Shared fixtures of the plot tests."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from anndata import AnnData

from celldyn.nn import GRNVectorField

SRC, DST = [0, 1, 2, 3, 4], [1, 2, 3, 4, 0]


def _ring_flecs(member_weights) -> AnnData:
    rng = np.random.default_rng(0)
    adata = AnnData(rng.uniform(0.2, 2.0, (30, 5)).astype(np.float32))
    adata.var_names = [f"g{i}" for i in range(5)]
    models = {}
    for m, weights in enumerate(member_weights):
        field = GRNVectorField(5, SRC, DST)
        with torch.no_grad():
            field.grn.weight.copy_(torch.as_tensor(weights, dtype=torch.float32))
        models[str(m)] = field.to_arrays()
    adata.uns["flecs"] = {"params": {}, "models": models}
    mean = np.mean(member_weights, 0)
    adata.varp["flecs_weights"] = sp.csr_matrix((mean, (SRC, DST)), shape=(5, 5))
    return adata


@pytest.fixture
def ring_flecs():
    """Factory: genes g0-g4 with a fitted FLeCS ring g0 → g1 → ... → g0, one member per list
    of five edge weights (``uns['flecs']`` and the mean ``varp['flecs_weights']``)."""
    return _ring_flecs
