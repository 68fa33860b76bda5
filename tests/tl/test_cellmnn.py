"""tl.cellmnn: every written field, its consistency with the operators, bad input."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from celldyn.datasets import simulate_grn
from celldyn.tl._cellmnn import cellmnn

FAST = {"max_epochs": 3, "batch_size": 128, "accelerator": "cpu", "progress": False}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def _grn_adata():
    import scanpy as sc

    adata = simulate_grn(10, 240, 4, random_state=0)
    mask = np.ones(adata.n_vars, dtype=bool)
    mask[-1] = False  # the last gene stays out of the PCA: zero loadings
    sc.pp.pca(adata, n_comps=5, mask_var=mask)
    return adata


@pytest.fixture
def grn_adata(_grn_adata):
    return _grn_adata.copy()


@pytest.fixture(scope="module")
def fitted(_grn_adata):
    return cellmnn(_grn_adata, time_key="time", n_components=4, holdout=[5 / 3], copy=True, **FAST)


def test_writes_every_field_consistently(fitted):
    adata, d = fitted, 4
    n, g = adata.shape
    flat = adata.obsm["cellmnn_operator"]
    assert flat.shape == (n, d * d) and flat.dtype == np.float32
    operators = flat.reshape(n, d, d)
    z = adata.obsm["X_pca"][:, :d]
    velocity, drift = adata.obsm["velocity_cellmnn"], adata.obsm["cellmnn_drift"]
    assert drift.shape == (n, d) and drift.dtype == np.float32
    np.testing.assert_allclose(
        velocity, np.einsum("cij,cj->ci", operators, z) + drift, rtol=1e-4, atol=1e-5
    )
    loadings = adata.varm["PCs"][:, :d]
    covered = adata.var["cellmnn_velocity_genes"].to_numpy()
    assert covered.tolist() == [True] * (g - 1) + [False]
    genes = adata.layers["cellmnn_velocity"]
    assert genes.dtype == np.float32 and isinstance(genes, np.ndarray)
    assert np.isnan(genes[:, ~covered]).all()
    np.testing.assert_allclose(
        genes[:, covered], (velocity @ loadings.T)[:, covered], rtol=1e-4, atol=1e-5
    )
    assert adata.uns["cellmnn_velocity_params"] == {"embeddings": [], "xkey": "Ms"}
    np.testing.assert_array_equal(adata.layers["Ms"], adata.X.astype(np.float32))
    interactions = adata.varp["cellmnn_interactions"]
    assert sp.issparse(interactions)  # one gene has no loadings
    expected = loadings @ operators.astype(np.float64).mean(0).T @ loadings.T
    np.testing.assert_allclose(interactions.toarray(), expected, rtol=1e-3, atol=1e-6)
    assert interactions[:, -1].nnz == 0 and interactions[-1].nnz == 0

    uns = adata.uns["cellmnn"]
    assert uns["params"]["holdout"].tolist() == [pytest.approx(5 / 3)]
    assert uns["params"]["n_components"] == d and "batch_key" not in uns["params"]
    assert len(uns["history"]["train_loss"]) == 3
    assert all(np.isfinite(uns["history"]["validation_loss"]))
    ranges, range_ops = uns["interactions"]["time_ranges"], uns["interactions"]["operators"]
    times = np.unique(adata.obs["time"])
    np.testing.assert_allclose(ranges, np.stack([times[:-1], times[1:]], 1))
    assert range_ops.shape == (3, d, d)
    t = adata.obs["time"].to_numpy()
    in_first = (t >= ranges[0, 0]) & (t <= ranges[0, 1])
    np.testing.assert_allclose(range_ops[0], operators[in_first].mean(0), rtol=1e-4, atol=1e-6)


def test_one_call_reads_the_times_twice_and_runs_the_operator_mlp_once(grn_adata, monkeypatch):
    import celldyn.models._cellmnn as model_module

    calls = {"times": 0, "operators": 0}
    read, operators = model_module.read_numeric_times, model_module.CellMNN._internal_operators

    def counted_read(*args, **kwargs):
        calls["times"] += 1
        return read(*args, **kwargs)

    def counted_operators(*args, **kwargs):
        calls["operators"] += 1
        return operators(*args, **kwargs)

    monkeypatch.setattr(model_module, "read_numeric_times", counted_read)
    monkeypatch.setattr(model_module.CellMNN, "_internal_operators", counted_operators)
    cellmnn(grn_adata, time_key="time", n_components=4, interactions="expression_scaled", **FAST)
    # the check before registering and the model's own read; one pass over the cells
    assert calls == {"times": 2, "operators": 1}
    assert "cellmnn_interactions" in grn_adata.varp


def test_expression_scaled_interactions(grn_adata):
    adata = cellmnn(
        grn_adata, time_key="time", n_components=4, interactions="expression_scaled", **FAST
    )
    assert adata is None
    n, d = grn_adata.n_obs, 4
    operators = grn_adata.obsm["cellmnn_operator"].astype(np.float64).reshape(n, d, d)
    v, z = grn_adata.varm["PCs"][:, :d], grn_adata.obsm["X_pca"][:, :d]
    x = z @ v.T
    # mean over cells of w_{j->i} = (V A_c Vᵀ)[i, j] x_{c,j}, regulator j x target i
    by_hand = np.einsum("ip,cpq,jq,cj->ji", v, operators, v, x) / n
    written = grn_adata.varp["cellmnn_interactions"].toarray()
    np.testing.assert_allclose(written, by_hand, rtol=1e-3, atol=1e-6)
    summary = grn_adata.uns["cellmnn"]["interactions"]
    assert summary["kind"] == "expression_scaled"
    assert grn_adata.uns["cellmnn"]["params"]["interactions"] == "expression_scaled"
    t = grn_adata.obs["time"].to_numpy()
    first = (t >= summary["time_ranges"][0, 0]) & (t <= summary["time_ranges"][0, 1])
    from_moments = np.einsum("jq,jr,pqr,ip->ji", v, v, summary["moments"][0], v)
    expected = np.einsum("ip,cpq,jq,cj->ji", v, operators[first], v, x[first]) / first.sum()
    np.testing.assert_allclose(from_moments, expected, rtol=1e-3, atol=1e-6)


def test_result_survives_h5ad(fitted, tmp_path):
    import anndata as ad

    path = tmp_path / "cellmnn.h5ad"
    fitted.write_h5ad(path)
    back = ad.read_h5ad(path)
    np.testing.assert_array_equal(back.obsm["cellmnn_operator"], fitted.obsm["cellmnn_operator"])
    assert back.uns["cellmnn"]["params"]["time_key"] == "time"


def test_reproducible_and_copy_leaves_input_alone(grn_adata):
    before = grn_adata.copy()
    first = cellmnn(grn_adata, time_key="time", random_state=3, copy=True, **FAST)
    second = cellmnn(grn_adata, time_key="time", random_state=3, copy=True, **FAST)
    other = cellmnn(grn_adata, time_key="time", random_state=4, copy=True, **FAST)
    key = "cellmnn_operator"
    np.testing.assert_array_equal(first.obsm[key], second.obsm[key])
    assert not np.allclose(first.obsm[key], other.obsm[key])
    assert key not in grn_adata.obsm and set(grn_adata.uns) == set(before.uns)
    assert list(grn_adata.obs.columns) == list(before.obs.columns)


def test_in_place_with_custom_key_and_without_loadings(grn_adata):
    assert cellmnn(grn_adata, time_key="time", loadings=None, key_added="mnn", **FAST) is None
    assert grn_adata.obsm["mnn_operator"].shape == (grn_adata.n_obs, 25)
    assert "velocity_mnn" in grn_adata.obsm and "mnn" in grn_adata.uns
    assert "mnn_velocity" not in grn_adata.layers and "mnn_interactions" not in grn_adata.varp


def test_joint_training_over_datasets(grn_adata):
    grn_adata.obs["dataset"] = np.where(np.arange(grn_adata.n_obs) % 2, "a", "b")
    cellmnn(grn_adata, time_key="time", batch_key="dataset", **FAST)
    assert grn_adata.uns["cellmnn"]["params"]["batch_key"] == "dataset"
    assert "_scvi_batch" not in grn_adata.obs  # registration happens on a working copy


def _set_strings(adata):
    adata.obs["time"] = np.repeat(["a", "b", "c", "d"], 60)


def _set_two_times(adata):
    adata.obs["time"] = np.repeat([0.0, 1.0], 120)


@pytest.mark.parametrize(
    ("change", "kwargs", "error", "match"),
    [
        (None, {"time_key": "day"}, KeyError, "day"),
        (_set_two_times, {}, ValueError, "at least 3"),
        (_set_strings, {}, ValueError, "numeric"),
        (None, {"rep": "X_umap"}, KeyError, "X_umap"),
        (None, {"n_components": 8}, ValueError, "at least 8 columns"),
        (None, {"holdout": [2.5]}, ValueError, "not an observed time"),
        (None, {"loadings": "loadings"}, KeyError, "loadings"),
        (None, {"batch_key": "donor"}, KeyError, "donor"),
        (None, {"model_kwargs": {"parametrization": "svd"}}, ValueError, "parametrization"),
        (None, {"interactions": "scaled"}, ValueError, "interactions"),
    ],
)
def test_bad_input_leaves_adata_unchanged(grn_adata, change, kwargs, error, match):
    if change is not None:
        change(grn_adata)
    before = grn_adata.copy()
    with pytest.raises(error, match=match):
        cellmnn(grn_adata, **{"time_key": "time", **FAST, **kwargs})
    pd.testing.assert_frame_equal(grn_adata.obs, before.obs)
    pd.testing.assert_frame_equal(grn_adata.var, before.var)
    assert set(grn_adata.obsm) == set(before.obsm)
    assert set(grn_adata.uns) == set(before.uns)
    assert set(grn_adata.layers) == set(before.layers) and set(grn_adata.varp) == set()


@pytest.mark.parametrize(("row", "value"), [(0, np.nan), (3, np.inf)])
def test_nan_loadings_raise_before_training(grn_adata, row, value, monkeypatch, assert_unchanged):
    from celldyn.models._cellmnn import CellMNN

    original = grn_adata.varm["PCs"][row, 1]
    grn_adata.varm["PCs"][row, 1] = value
    before = grn_adata.copy()
    monkeypatch.setattr(CellMNN, "train", lambda *a, **k: pytest.fail("trained on bad loadings"))
    with pytest.raises(ValueError, match=r"adata.varm\['PCs'\] contains 1 NaN or infinite"):
        cellmnn(grn_adata, time_key="time", n_components=4, **FAST)
    assert_unchanged(grn_adata, before)
    assert "cellmnn_velocity" not in grn_adata.layers and "cellmnn" not in grn_adata.uns
    assert "cellmnn_interactions" not in grn_adata.varp
    # loadings columns beyond n_components are not read
    monkeypatch.undo()
    grn_adata.varm["PCs"][row, 1] = original
    grn_adata.varm["PCs"][row, 4] = value
    out = cellmnn(grn_adata, time_key="time", n_components=4, copy=True, **FAST)
    assert np.isfinite(out.varp["cellmnn_interactions"].toarray()).all()
