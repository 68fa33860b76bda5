"""GRN baselines: exact correlations, forest importances, OT + ridge recovers a known network."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata import AnnData
from anndata.tests.helpers import assert_equal

from celldyn.datasets import simulate_grn
from celldyn.metrics import grn_scores
from celldyn.pp import prior_network
from celldyn.tl import _grn_baselines, grn_baseline
from celldyn.tl._grn_baselines import GRN_BASELINES


@pytest.fixture(scope="module")
def _simulated():
    """simulate_grn (10 genes, 20 true edges) with a prior = truth + about as many decoys."""
    out = []
    for seed in range(3):
        adata = simulate_grn(n_genes=10, n_cells=600, random_state=seed)
        net = adata.uns["ground_truth_network"]
        prior_network(adata, net, add_random_edges=2 * len(net) / 100, random_state=seed)
        out.append(adata)
    return out


@pytest.fixture
def simulated(_simulated):
    return [adata.copy() for adata in _simulated]


def _toy() -> AnnData:
    """Genes with exactly known correlations to ``a``: 1, -1, 0 and a constant gene."""
    a = np.array([1.0, 2.0, 3.0, 4.0])
    x = np.stack([a, 2 * a + 1, 5 - a, [1.0, -1.0, -1.0, 1.0], np.full(4, 3.0)], axis=1)
    return AnnData(x, var=pd.DataFrame(index=["a", "b", "c", "d", "e"]))


def test_correlation_is_exact_on_a_toy_matrix():
    adata = _toy()
    before = adata.copy()
    pred = grn_baseline(adata, "correlation")
    assert list(pred.columns) == ["source", "target", "weight"]
    assert len(pred) == 5 * 4 and not (pred["source"] == pred["target"]).any()
    w = pred.set_index(["source", "target"])["weight"]
    assert w["a", "b"] == pytest.approx(1.0) and w["b", "a"] == pytest.approx(1.0)
    assert w["a", "c"] == pytest.approx(-1.0) and w["c", "b"] == pytest.approx(-1.0)
    assert w["a", "d"] == pytest.approx(0.0, abs=1e-12)
    assert (w.xs("e", level="target") == 0).all() and (w.xs("e", level="source") == 0).all()
    assert_equal(adata, before)
    # sparse input, a layer, and the block path used for many genes give the same numbers
    adata.layers["counts"] = sp.csr_matrix(adata.X)
    adata.X = np.zeros_like(adata.X)
    pd.testing.assert_frame_equal(grn_baseline(adata, "correlation", layer="counts"), pred)
    blocks = _grn_baselines._correlation(_toy().X, *_grn_baselines._candidates(_toy(), None))
    np.testing.assert_allclose(blocks, pred["weight"], atol=1e-12)


def test_correlation_block_path(monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 7))
    src, tgt = np.divmod(np.arange(49), 7)
    keep = src != tgt
    full = _grn_baselines._correlation(x, src[keep], tgt[keep])
    monkeypatch.setattr(_grn_baselines, "_CHUNK", 10)  # blocks of one regulator
    np.testing.assert_allclose(_grn_baselines._correlation(x, src[keep], tgt[keep]), full)


def test_prior_edges_are_the_candidates(simulated):
    adata = simulated[0]
    prior = sp.coo_matrix(adata.varp["celldyn_prior"])
    off = prior.row != prior.col
    pred = grn_baseline(adata, "correlation")
    assert list(pred["source"]) == list(adata.var_names[prior.row[off]])
    assert list(pred["target"]) == list(adata.var_names[prior.col[off]])
    assert pred["weight"].dtype == np.float64
    del adata.varp["celldyn_prior"]  # no prior: all ordered pairs
    assert len(grn_baseline(adata, "correlation")) == 10 * 9


def test_forest_finds_the_regulator():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(300, 4))
    x[:, 3] = x[:, 0] ** 2 + 0.05 * rng.normal(size=300)  # g0 -> g3, nonlinear, r ~ 0
    adata = AnnData(x, var=pd.DataFrame(index=[f"g{i}" for i in range(4)]))
    pred = grn_baseline(adata, "forest", n_estimators=20)
    w = pred.set_index(["source", "target"])["weight"]
    # measured: importance 0.666 for g0 -> g3 against 0.171 / 0.163 for the unrelated genes,
    # where the correlation of g0 and g3 is -0.05 (smaller than that of g1: -0.08)
    assert w["g0", "g3"] > 0.55
    assert w["g0", "g3"] > 3 * max(w["g1", "g3"], w["g2", "g3"])
    assert (pred["weight"] >= 0).all()
    np.testing.assert_allclose(pred.groupby("target")["weight"].sum(), 1.0)
    # 100 of the 300 cells: measured 0.565
    again = grn_baseline(adata, "forest", n_estimators=20, max_cells=100)
    assert again.set_index(["source", "target"])["weight"]["g0", "g3"] > 0.45
    assert grn_baseline(adata, "forest", n_estimators=20).equals(pred)  # seeded


def test_ot_ridge_ranks_true_edges_above_decoys(simulated):
    scores = {m: [] for m in GRN_BASELINES}
    signs = []
    for adata in simulated:
        before = adata.copy()
        truth = adata.uns["ground_truth_network"]
        for method in GRN_BASELINES:
            pred = grn_baseline(adata, method, time_key="time", n_estimators=50)
            s = grn_scores(pred, truth, candidates=pred)
            assert s["n_true_edges"] == 20
            scores[method].append(s["auroc"])
            if method == "ot_ridge":
                signs.append(s["sign_accuracy"])
        assert_equal(adata, before)
    # measured AUROC (seeds 0-2, 35-40 candidates): ot_ridge 0.706 / 0.755 / 0.820 (mean
    # 0.760), correlation 0.396 / 0.254 / 0.482 (0.377), forest with 50 trees 0.500 / 0.385 /
    # 0.573 (0.486); sign accuracy of ot_ridge 0.95 / 0.75 / 0.80
    assert min(scores["ot_ridge"]) > 0.65
    assert np.mean(scores["ot_ridge"]) > 0.72
    assert np.mean(scores["ot_ridge"]) > np.mean(scores["correlation"]) + 0.2
    assert np.mean(scores["ot_ridge"]) > np.mean(scores["forest"]) + 0.1
    assert np.mean(signs) > 0.75


def test_ot_ridge_rep_and_sparse_input(simulated):
    adata = simulated[0]
    base = grn_baseline(adata, time_key="time")
    # a rotation of the expression (all principal axes) has the same OT plans
    x = np.asarray(adata.X, dtype=np.float64)
    _, _, vt = np.linalg.svd(x - x.mean(0), full_matrices=False)
    adata.obsm["X_pca"] = (x - x.mean(0)) @ vt.T
    rotated = grn_baseline(adata, time_key="time")
    np.testing.assert_allclose(rotated["weight"], base["weight"], atol=1e-8)
    adata.obsm["X_pca"] = adata.obsm["X_pca"][:, :1]  # one component: other plans
    assert not np.allclose(grn_baseline(adata, time_key="time")["weight"], base["weight"])
    adata.X = sp.csr_matrix(adata.X)
    sparse = grn_baseline(adata, time_key="time", rep="X")
    np.testing.assert_allclose(sparse["weight"], base["weight"], atol=1e-8)


def _nan(adata):
    adata.X[0, 0] = np.nan


def _sparse_nan(adata):
    x = sp.csr_matrix(adata.X)
    x.data[0] = np.nan
    adata.X = x


def _one_time(adata):
    adata.obs["time"] = 0.0


@pytest.mark.parametrize(
    ("edit", "kwargs", "error", "match"),
    [
        (None, {"method": "lasso"}, ValueError, "`method` must be one of"),
        (None, {"layer": "spliced"}, KeyError, "no layer 'spliced'"),
        (None, {"time_key": "day"}, KeyError, "no column 'day'"),
        (_one_time, {}, ValueError, "1 distinct time group"),
        (_nan, {}, ValueError, "adata.X contains 1 NaN"),
        (_sparse_nan, {"method": "correlation"}, ValueError, "adata.X contains 1 NaN"),
        (None, {"prior_key": "collectri"}, KeyError, "no entry 'collectri'"),
        (None, {"rep": "X_umap"}, KeyError, "no representation 'X_umap'"),
        (None, {"alpha": 0.0}, ValueError, "`alpha` must be a finite positive"),
        (None, {"n_estimators": 0, "method": "forest"}, ValueError, "`n_estimators`"),
    ],
)
def test_bad_input_leaves_adata_unchanged(simulated, edit, kwargs, error, match):
    adata = simulated[0]
    if edit is not None:
        edit(adata)
    before = adata.copy()
    with pytest.raises(error, match=match):
        grn_baseline(adata, **{"time_key": "time", **kwargs})
    assert_equal(adata, before)


def test_prior_with_only_self_loops():
    adata = _toy()
    adata.varp["celldyn_prior"] = sp.csr_matrix(np.eye(5))
    with pytest.raises(ValueError, match="no candidate edges"):
        grn_baseline(adata, "correlation")
