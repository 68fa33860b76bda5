"""Getters of every model: checks before registering, ``indices`` and ``batch_size``.

A getter given an AnnData the model cannot read raises a clear error and leaves it exactly as
it was (no ``_scvi_uuid``/``_scvi_manager_uuid`` in ``uns``); ``indices`` gives rows of the
full result and ``batch_size`` does not change the numbers.
"""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from celldyn.datasets import simulate_perturbations
from celldyn.models import LCD, CellMNN, FLeCS, FLeCSDrug
from celldyn.models._inference import batched, check_indices
from celldyn.nn import GRNVectorField

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_CELLS, N_GENES = 50, 6
ROWS = [7, 0, 49, 7, -1]  # any order, repeats and a negative position


def _expression_adata() -> ad.AnnData:
    """Cells × genes with a prior network and a drug column (never registered)."""
    rng = np.random.default_rng(0)
    adata = ad.AnnData(rng.uniform(0, 2, (N_CELLS, N_GENES)).astype(np.float32))
    adata.var_names = [f"g{i}" for i in range(N_GENES)]
    prior = (rng.random((N_GENES, N_GENES)) < 0.4).astype(np.float32)
    adata.varp["celldyn_prior"] = sp.csr_matrix(prior)
    adata.obs["drug"] = pd.Categorical(rng.choice(["control", "a", "b"], N_CELLS))
    return adata


def _cellmnn_adata() -> ad.AnnData:
    rng = np.random.default_rng(0)
    adata = ad.AnnData(rng.normal(size=(N_CELLS, 4)).astype(np.float32))
    adata.obs["time"] = np.repeat([0.0, 1.0, 2.0, 3.0, 4.0], N_CELLS // 5)
    adata.obsm["X_pca"] = rng.normal(size=(N_CELLS, 3))
    adata.varm["PCs"] = np.linalg.qr(rng.normal(size=(4, 3)))[0]
    return adata


@pytest.fixture(scope="module")
def flecs():
    adata = _expression_adata()
    FLeCS.setup_anndata(adata)
    return FLeCS(adata, weight_init_std=0.5)


@pytest.fixture(scope="module")
def flecs_drug():
    adata = _expression_adata()
    FLeCSDrug.setup_anndata(adata, condition_key="drug")
    base = GRNVectorField(N_GENES, [0, 1, 2, 3], [1, 2, 3, 0], weight_init_std=0.5)
    features = pd.DataFrame(np.random.default_rng(1).normal(size=(2, 3)), index=["a", "b"])
    torch.manual_seed(0)
    return FLeCSDrug(adata, base, features, n_hidden=8)


@pytest.fixture(scope="module")
def cellmnn():
    adata = _cellmnn_adata()
    CellMNN.setup_anndata(adata, time_key="time", n_components=2)
    torch.manual_seed(0)
    return CellMNN(adata, init_scale=1.0)


@pytest.fixture(scope="module")
def lcd():
    adata = simulate_perturbations(4, n_cells=12, n_doubles=0, counts=True, random_state=0)
    LCD.setup_anndata(adata, size_factor_key="size_factor")
    torch.manual_seed(0)
    return LCD(adata)


def _drop_genes(adata):
    return adata[:, 1:].copy()


def _nan_x(adata):
    adata.X[3, 2] = np.nan
    return adata


def _pop(slot: str, key: str):
    def change(adata):
        getattr(adata, slot).pop(key)
        return adata

    return change


def _drop_obs(key: str):
    def change(adata):
        adata.obs = adata.obs.drop(columns=key)
        return adata

    return change


def _unknown_drug(adata):
    adata.obs["drug"] = adata.obs["drug"].cat.add_categories("c")
    adata.obs.iloc[4, adata.obs.columns.get_loc("drug")] = "c"
    return adata


def _fewer_cells(adata):
    return adata[:-3].copy()


# model fixture, fresh AnnData, {getter name: call}, {bad input: (change, error, match)}
CASES = {
    "FLeCS": (
        "flecs",
        _expression_adata,
        {
            "get_velocity": lambda m, a: m.get_velocity(a),
            "get_edge_effects": lambda m, a: m.get_edge_effects(a),
        },
        {
            "missing_gene": (_drop_genes, ValueError, "var_names"),
            "nan_x": (_nan_x, ValueError, "NaN"),
        },
    ),
    "FLeCSDrug": (
        "flecs_drug",
        _expression_adata,
        {"get_velocity": lambda m, a: m.get_velocity(a)},
        {
            "missing_gene": (_drop_genes, ValueError, "var_names"),
            "no_condition": (_drop_obs("drug"), KeyError, "drug"),
            "unknown_condition": (_unknown_drug, KeyError, r"\['c'\]"),
        },
    ),
    "CellMNN": (
        "cellmnn",
        _cellmnn_adata,
        {
            "predict": lambda m, a: m.predict(0.0, 1.0, adata=a),
            "get_operators": lambda m, a: m.get_operators(a),
            "get_drift": lambda m, a: m.get_drift(a),
            "get_latent_velocity": lambda m, a: m.get_latent_velocity(a),
            "get_gene_velocity": lambda m, a: m.get_gene_velocity(a),
            "get_interactions": lambda m, a: m.get_interactions(a),
        },
        {
            "no_rep": (_pop("obsm", "X_pca"), KeyError, "X_pca"),
            "no_time": (_drop_obs("time"), KeyError, "time"),
        },
    ),
    "LCD": (
        "lcd",
        lambda: None,  # replaced by a copy of the training data below
        {"get_latent": lambda m, a: m.get_latent(a)},
        {"other_cells": (_fewer_cells, ValueError, "training AnnData")},
    ),
}
BAD = [
    (model, getter, bad)
    for model, (_, _, getters, bads) in CASES.items()
    for getter in getters
    for bad in bads
]


def _fresh(request, model_name):
    fixture, make, _, _ = CASES[model_name]
    model = request.getfixturevalue(fixture)
    adata = make()
    if adata is None:
        adata = model.adata.copy()
        for key in [k for k in adata.uns if k.startswith("_scvi")]:
            del adata.uns[key]
    return model, adata


@pytest.mark.parametrize(("model_name", "getter", "bad"), BAD)
def test_bad_adata_raises_and_is_left_unchanged(request, model_name, getter, bad, assert_unchanged):
    model, adata = _fresh(request, model_name)
    change, error, match = CASES[model_name][3][bad]
    adata = change(adata)
    before = adata.copy()
    uns_keys = set(adata.uns)
    with pytest.raises(error, match=match):
        CASES[model_name][2][getter](model, adata)
    assert set(adata.uns) == uns_keys
    assert "_scvi_uuid" not in adata.uns and "_scvi_manager_uuid" not in adata.uns
    assert_unchanged(adata, before)


@pytest.mark.parametrize("model_name", list(CASES))
def test_good_adata_gives_the_training_result(request, model_name):
    model, adata = _fresh(request, model_name)
    for name, getter in CASES[model_name][2].items():
        new, own = getter(model, adata), getter(model, None)
        if isinstance(new, pd.DataFrame):
            pd.testing.assert_frame_equal(new, own)
        elif sp.issparse(new):
            np.testing.assert_allclose(new.toarray(), own.toarray(), rtol=1e-6, err_msg=name)
        else:
            np.testing.assert_allclose(new, own, rtol=1e-6, err_msg=name)


PER_CELL = {
    "flecs": ["get_velocity"],
    "flecs_drug": ["get_velocity"],
    "cellmnn": ["get_operators", "get_drift", "get_latent_velocity", "get_gene_velocity"],
    "lcd": ["get_latent"],
}
INDEXED = [(fixture, getter) for fixture, getters in PER_CELL.items() for getter in getters]


@pytest.mark.parametrize(("fixture", "getter"), INDEXED)
def test_indices_give_rows_of_the_full_result(request, fixture, getter):
    model = request.getfixturevalue(fixture)
    full = getattr(model, getter)()
    np.testing.assert_allclose(getattr(model, getter)(indices=ROWS), full[ROWS], rtol=1e-6)
    mask = np.arange(model.adata.n_obs) % 3 == 0
    np.testing.assert_allclose(getattr(model, getter)(indices=mask), full[mask], rtol=1e-6)
    assert getattr(model, getter)(indices=[]).shape == (0, *full.shape[1:])
    with pytest.raises(ValueError, match="`indices`"):
        getattr(model, getter)(indices=[model.adata.n_obs])
    with pytest.raises(ValueError, match="`indices`"):
        getattr(model, getter)(indices=[0.5])


@pytest.mark.parametrize(
    ("fixture", "getter"),
    [(f, g) for f, g in INDEXED if g != "get_latent"] + [("flecs", "get_edge_effects")],
)
def test_batch_size_does_not_change_the_numbers(request, fixture, getter):
    model = request.getfixturevalue(fixture)
    full = getattr(model, getter)()
    for batch_size in (1, 7, 10_000):
        out = getattr(model, getter)(batch_size=batch_size)
        if sp.issparse(out):
            out, expected = out.toarray(), full.toarray()
        else:
            expected = full
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="`batch_size`"):
        getattr(model, getter)(batch_size=0)


def test_cellmnn_indices_within_a_time_range(cellmnn):
    in_range = cellmnn.adata.obs["time"].between(1.0, 3.0).to_numpy()
    full = cellmnn.get_operators()
    rows = np.array([45, 10, 0, 25, 12])
    out = cellmnn.get_operators(time_range=(1.0, 3.0), indices=rows)
    np.testing.assert_allclose(out, full[rows[in_range[rows]]], rtol=1e-5, atol=1e-8)


def test_lcd_drift_batch_size(lcd):
    x = lcd.get_latent()[:20]
    drift = lcd.get_drift(x, "control")
    np.testing.assert_allclose(lcd.get_drift(x, "control", batch_size=3), drift, rtol=1e-5)
    shifts = x[:2] - x.mean(0)
    response = lcd.get_drift_response(x, shifts)
    np.testing.assert_allclose(
        lcd.get_drift_response(x, shifts, batch_size=6), response, rtol=1e-4, atol=1e-6
    )


def test_batched_helper():
    x, y = np.arange(10.0).reshape(5, 2), np.arange(5)

    def fn(a, b):
        return a * 2, None, (a.sum(1) + b)[:, None]

    doubled, nothing, summed = batched(fn, x, y, device="cpu", batch_size=2)
    np.testing.assert_array_equal(doubled, x * 2)
    assert nothing is None
    np.testing.assert_array_equal(summed[:, 0], x.sum(1) + y)
    np.testing.assert_array_equal(batched(lambda a: a + 1, x, device="cpu"), x + 1)
    with pytest.raises(ValueError, match="different lengths"):
        batched(fn, x, y[:3], device="cpu")
    assert isinstance(check_indices(None, 3), slice)
    with pytest.raises(ValueError, match="mask"):
        check_indices(np.ones(2, dtype=bool), 3)
