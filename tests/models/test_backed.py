"""Models train from an AnnData opened in backed mode (``read_h5ad(..., backed='r')``), dense
or sparse.

Cell-MNN reads only ``obsm[rep]`` and ``obs`` (in memory in backed mode), so ``X`` stays on
disk. FLeCS reads blocks and minibatches of cells from it, never the whole matrix
(``tests/models/test_flecs_streaming.py``; here its trajectories' ``rep`` is ``X`` itself,
which OT reads whole). LCD reads the whole registered matrix into memory (a dense array)
before training: backed mode works for it but does not lower its memory.
"""

import anndata as ad
import numpy as np
import pytest
import scanpy as sc
import scipy.sparse as sp
import torch

from celldyn.datasets import simulate_grn, simulate_perturbations
from celldyn.models import LCD, CellMNN, FLeCS
from celldyn.pp import prior_network, time_groups, trajectories

FAST = {"accelerator": "cpu", "progress": False}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _grn():
    adata = simulate_grn(8, 200, 4, random_state=0)
    prior_network(adata, adata.uns["ground_truth_network"], add_random_edges=0.2)
    time_groups(adata, time_key="time")
    trajectories(adata, method="quantile", rep="X", n_trajectories=40, length=4)
    sc.pp.pca(adata, n_comps=5)
    return adata


def _screen():
    return simulate_perturbations(5, n_cells=50, counts=True, random_state=0)


def _flecs(adata):
    FLeCS.setup_anndata(adata)
    model = FLeCS(adata)
    model.train(max_epochs=2, velocity_init=20, **FAST)
    return model.get_velocity()


def _cellmnn(adata):
    CellMNN.setup_anndata(adata, time_key="time", n_components=4)
    model = CellMNN(adata)
    model.train(max_epochs=2, batch_size=64, **FAST)
    return model.get_operators()


def _lcd(adata):
    LCD.setup_anndata(adata)
    model = LCD(adata, n_hidden=16)
    model.train(2, score_epochs=2, mixing_steps=10, **FAST)
    return model.get_latent()


@pytest.mark.parametrize(
    ("data", "fit"),
    [
        (_grn, _flecs),
        (_grn, _cellmnn),
        (_screen, _lcd),
    ],
    ids=["flecs", "cellmnn", "lcd"],
)
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_fit_from_backed_anndata_equals_in_memory(tmp_path, data, fit, sparse):
    adata = data()
    if sparse:  # anndata reads a backed sparse X as its own dataset type, not scipy's
        adata.X = sp.csr_matrix(adata.X)
    adata.write_h5ad(tmp_path / "data.h5ad")
    backed = ad.read_h5ad(tmp_path / "data.h5ad", backed="r")
    assert backed.isbacked
    torch.manual_seed(0)
    in_memory = fit(ad.read_h5ad(tmp_path / "data.h5ad"))
    torch.manual_seed(0)
    np.testing.assert_allclose(fit(backed), in_memory, rtol=1e-5, atol=1e-6)


def test_cellmnn_never_reads_x_of_a_backed_anndata(tmp_path, monkeypatch):
    import h5py

    _grn().write_h5ad(tmp_path / "data.h5ad")
    backed = ad.read_h5ad(tmp_path / "data.h5ad", backed="r")
    read = h5py.Dataset.__getitem__
    names = []

    def spy(dataset, key):
        names.append(dataset.name)
        return read(dataset, key)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    operators = _cellmnn(backed)
    assert np.isfinite(operators).all()
    assert not [name for name in names if name.startswith("/X")]
