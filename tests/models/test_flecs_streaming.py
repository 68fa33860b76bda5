"""FLeCS and FLeCSDrug read the expression on demand and never hold all of a backed ``X``.

Trajectory minibatches hold cell positions and read their rows; the OT velocity targets are
the sparse OT partners of every cell, read a batch or a block at a time; the linear warm
start accumulates its Gram matrices block by block; the getters read blocks of cells. A fit
from a backed AnnData (``read_h5ad(..., backed='r')``) equals the in-memory fit.
"""

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import scipy.sparse as sp
import torch

import celldyn._validate as validate
import celldyn.models._cell_pairs as cell_pairs
import celldyn.models._rows as rows_module
import celldyn.module._flecs as flecs_module
from celldyn.datasets import simulate_grn
from celldyn.models import FLeCS, FLeCSDrug
from celldyn.models._cell_pairs import CellPairs
from celldyn.models._rows import ExpressionRows
from celldyn.module import chord_velocities, fit_linear, fit_linear_blocks
from celldyn.nn import GRNVectorField
from celldyn.pp import prior_network, time_groups, trajectories
from celldyn.pp._ot_velocities import ot_partners, ot_velocities

FAST = {"accelerator": "cpu", "progress": False}
BLOCK = 50
"""Rows per block read in the tests that count the rows read (patched in)."""

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _grn(n_cells: int = 300) -> ad.AnnData:
    adata = simulate_grn(8, n_cells, 4, random_state=0)
    prior_network(adata, adata.uns["ground_truth_network"], add_random_edges=0.2)
    time_groups(adata, time_key="time")
    sc.pp.pca(adata, n_comps=5)
    # OT and trajectories on obsm['X_pca'], which backed mode keeps in memory
    trajectories(adata, method="quantile", rep="X_pca", n_trajectories=40, length=4)
    return adata


@pytest.fixture(scope="module")
def grn():
    return _grn()


def _write(adata: ad.AnnData, path, sparse: bool) -> ad.AnnData:
    """Write ``adata`` (X sparse or dense) to ``path`` and open it backed."""
    adata = adata.copy()
    if sparse:
        adata.X = sp.csr_matrix(adata.X)
    adata.write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    assert backed.isbacked
    return backed


def _flecs_outputs(adata: ad.AnnData, **train) -> dict[str, np.ndarray]:
    FLeCS.setup_anndata(adata)
    torch.manual_seed(0)
    model = FLeCS(adata)
    model.train(max_epochs=2, batch_size=16, **train, **FAST)
    responses = model.perturbation_responses([adata.var_names[0]])  # from the mean expression
    return {
        "velocity": model.get_velocity(batch_size=BLOCK),
        "weights": model.get_weights().toarray(),
        "effects": model.get_edge_effects(batch_size=BLOCK).toarray(),
        "control": responses.control_state,
        "response": responses.velocities,
        "selected": model.get_velocity(indices=[5, -1, 5, 0]),
    }


@pytest.mark.parametrize(
    "train",
    [{}, {"velocity_init": 10}, {"velocity_target": "chords"}, {"velocity_bootstrap": 1}],
    ids=["default", "linear+lbfgs", "chords", "bootstrap"],
)
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_backed_fit_equals_in_memory(grn, tmp_path, sparse, train):
    backed = _write(grn, tmp_path / "data.h5ad", sparse)
    in_memory = _flecs_outputs(ad.read_h5ad(tmp_path / "data.h5ad"), **train)
    from_disk = _flecs_outputs(backed, **train)
    for key, value in in_memory.items():
        np.testing.assert_allclose(from_disk[key], value, rtol=1e-6, atol=1e-7, err_msg=key)
    assert backed.isbacked and backed.X.shape == grn.shape  # X stays on disk


def test_backed_drug_fit_equals_in_memory(tmp_path):
    adata = _grn()
    adata.obs["drug"] = np.where(adata.obs["time"] > adata.obs["time"].min(), "d1", "control")
    trajectories(adata, method="quantile", rep="X_pca", n_trajectories=30, length=3)
    features = pd.DataFrame({"f0": [1.0], "f1": [0.5]}, index=["d1"])
    base = GRNVectorField(8, [0, 1, 2], [1, 2, 3], weight_init_std=0.5)
    velocities = []
    for data in (ad.read_h5ad(_path(adata, tmp_path)), _write(adata, tmp_path / "b.h5ad", True)):
        FLeCSDrug.setup_anndata(data, condition_key="drug")
        torch.manual_seed(0)
        model = FLeCSDrug(data, base, features, n_hidden=4)
        model.train(max_epochs=2, batch_size=8, **FAST)
        velocities.append(model.get_velocity(batch_size=BLOCK))
    np.testing.assert_allclose(velocities[1], velocities[0], rtol=1e-6, atol=1e-7)


def _path(adata: ad.AnnData, tmp_path):
    adata.write_h5ad(tmp_path / "a.h5ad")
    return tmp_path / "a.h5ad"


def _small_blocks(monkeypatch) -> None:
    """Read blocks of BLOCK rows and draw velocity batches of 16 targets."""
    for module in (validate, rows_module, cell_pairs):
        monkeypatch.setattr(module, "BACKED_BLOCK", BLOCK)
    monkeypatch.setattr(flecs_module, "VELOCITY_BATCH", 16)


@pytest.fixture
def x_reads(monkeypatch) -> list[int]:
    """Rows of every read of a dense backed ``X`` (blocks and batches made small)."""
    _small_blocks(monkeypatch)
    read = h5py.Dataset.__getitem__
    sizes = []

    def spy(dataset, key):
        out = read(dataset, key)
        if dataset.name == "/X":
            sizes.append(len(out))
        return out

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    return sizes


def test_a_backed_x_is_never_read_whole(grn, tmp_path, x_reads):
    sizes = x_reads
    backed = _write(grn, tmp_path / "data.h5ad", sparse=False)
    outputs = _flecs_outputs(backed)
    assert np.isfinite(outputs["velocity"]).all()
    # blocks of the NaN check, moments and velocity targets (starts and their partners,
    # at most 3 × BLOCK cells), trajectory minibatches (16 × 4 cells), velocity batches
    # (16 targets, at most 48 cells), getter blocks (BLOCK cells)
    assert len(sizes) > grn.n_obs // BLOCK
    assert max(sizes) <= 3 * BLOCK < grn.n_obs


def test_nan_in_a_backed_x_is_found_block_by_block(grn, tmp_path, x_reads):
    adata = grn.copy()
    adata.X[-1, 3] = np.nan  # in the last block
    for sparse in (False, True):
        backed = _write(adata, tmp_path / f"nan{sparse}.h5ad", sparse)
        FLeCS.setup_anndata(backed)
        model = FLeCS(backed)
        with pytest.raises(ValueError, match=r"adata\.X contains 1 NaN or infinite"):
            model.train(max_epochs=1, **FAST)
        with pytest.raises(ValueError, match=r"adata\.X contains 1 NaN or infinite"):
            model.get_velocity()
        assert backed.isbacked and not model.is_trained_
    assert x_reads and max(x_reads) <= BLOCK  # the dense X, block by block


def test_in_memory_x_is_left_as_it_was(grn):
    adata = grn.copy()
    adata.X = sp.csr_matrix(adata.X.astype(np.float64))
    before = adata.X.copy()
    _flecs_outputs(adata)
    assert sp.issparse(adata.X) and adata.X.dtype == np.float64
    assert (adata.X != before).nnz == 0


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_expression_rows_read_any_positions_as_in_memory(grn, tmp_path, sparse):
    backed = _write(grn, tmp_path / "data.h5ad", sparse)
    x = np.asarray(grn.X, dtype=np.float32)
    positions = np.array([7, 3, 7, -1, 0])
    for matrix in (backed.X, sp.csr_matrix(grn.X) if sparse else grn.X):
        rows = ExpressionRows(matrix)
        np.testing.assert_array_equal(rows[positions], x[positions])
        np.testing.assert_array_equal(rows[10:20], x[10:20])
        view = rows.subset(np.array([4, 2, 9]))
        np.testing.assert_array_equal(view[1:], x[[2, 9]])
        cells = torch.tensor([[4, 2], [9, 4]])
        batch = rows.gather({"cells": cells, "t": torch.zeros(2, 2)})
        np.testing.assert_array_equal(batch["x"].numpy(), x[cells.numpy()])
        moments = rows.moments()
        np.testing.assert_allclose(moments.mean.numpy(), x.mean(0, dtype=np.float64), rtol=1e-10)
        np.testing.assert_allclose(
            moments.var(ddof=0).sqrt().numpy(), x.std(0, dtype=np.float64), rtol=1e-10
        )


def test_cell_pairs_give_the_ot_and_chord_velocities(grn):
    x = np.asarray(grn.X, dtype=np.float32)
    rows = ExpressionRows(x)
    z, groups = grn.obsm["X_pca"], _groups(grn)
    cells, velocities, midpoints = ot_velocities(x, z, groups)
    pairs = CellPairs(rows, *ot_partners(z, groups))
    assert np.array_equal(pairs.starts, cells)
    assert pairs.partners.nnz < 2 * grn.n_obs  # an exact plan: a few partners per cell
    points, targets = pairs.batch(np.arange(len(pairs)))
    np.testing.assert_allclose(points.numpy(), midpoints, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(targets.numpy(), velocities, rtol=1e-6, atol=1e-6)
    blocks = list(pairs.blocks(size=37))
    assert len(blocks) == -(-len(pairs) // 37)
    torch.testing.assert_close(torch.cat([b[1] for b in blocks]), targets)
    paths = grn.uns["celldyn_trajectories"]
    indices, times = paths["indices"], paths["times"]
    chords = CellPairs.chords(rows, indices, times)
    chords = chords.batch(np.arange(len(chords)))
    expected = chord_velocities(torch.from_numpy(x[indices]), torch.as_tensor(times))
    for got, want in zip(chords, expected, strict=True):
        torch.testing.assert_close(got, want.float(), rtol=1e-5, atol=1e-5)


def _groups(adata):
    from celldyn._readers import read_time_groups

    return read_time_groups(adata, "time")


@pytest.mark.parametrize("whole", [False, True], ids=["per-target", "one-gram"])
def test_fit_linear_from_blocks_equals_the_fit_on_all_points(monkeypatch, whole):
    monkeypatch.setattr(flecs_module, "WHOLE_GRAM_RATIO", 0.0 if whole else 1e9)
    gen = torch.Generator().manual_seed(0)
    points, velocities = torch.rand(500, 6, generator=gen), torch.randn(500, 6, generator=gen)
    src, dst = [0, 1, 2, 3, 4, 5, 0, 2], [1, 2, 3, 4, 5, 0, 0, 2]
    fields = [GRNVectorField(6, src, dst) for _ in range(2)]
    error = fit_linear(fields[0], points, velocities)
    blocks = lambda: zip(points.split(64), velocities.split(64), strict=True)  # noqa: E731
    assert fit_linear_blocks(fields[1], blocks) == pytest.approx(error, rel=1e-6)
    for a, b in zip(fields[0].parameters(), fields[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="finite"):
        fit_linear_blocks(fields[1], lambda: [(points, velocities), (points * np.nan, velocities)])
