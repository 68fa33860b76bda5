import itertools

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from anndata.tests.helpers import assert_equal
from scipy.optimize import linprog
from scipy.spatial.distance import cdist

import celldyn as cd


def _groups_adata(sizes, n_dims=3, seed=0, shift=1.0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(size=(n, n_dims)) + g * shift for g, n in enumerate(sizes)])
    time = np.repeat(np.arange(len(sizes), dtype=float) * 0.5, sizes)
    perm = rng.permutation(len(x))  # groups interleaved in obs order
    adata = ad.AnnData(np.zeros((len(x), 2), dtype=np.float32))
    adata.obsm["X_pca"] = x[perm]
    adata.obs["celldyn_time"] = time[perm]
    return adata


def _blocks(adata, key="celldyn_couplings"):
    values, codes = np.unique(adata.obs["celldyn_time"].to_numpy(), return_inverse=True)
    plan = adata.obsp[key]
    return plan, codes, len(values)


def _lp_cost(xs, xt):
    """Optimal transport cost with uniform marginals by linear programming (ground truth)."""
    n, m = len(xs), len(xt)
    cost = cdist(xs, xt, "sqeuclidean")
    a_eq = np.zeros((n + m, n * m))
    for i in range(n):
        a_eq[i, i * m : (i + 1) * m] = 1
    for j in range(m):
        a_eq[n + j, j::m] = 1
    b_eq = np.concatenate([np.full(n, 1 / n), np.full(m, 1 / m)])
    return linprog(cost.ravel(), A_eq=a_eq, b_eq=b_eq, bounds=(0, None)).fun


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"method": "sinkhorn"},
        {"max_cells": 20},  # minibatch: groups exceed max_cells
        {"method": "sinkhorn", "max_cells": 20, "batch_size": 15},
    ],
)
def test_blocks_are_couplings_with_uniform_marginals(kwargs):
    sizes = [30, 47, 25]
    adata = _groups_adata(sizes)
    cd.pp.couplings(adata, **kwargs)
    plan, codes, n_groups = _blocks(adata)
    assert sp.issparse(plan) and plan.format == "csr"
    assert plan.shape == (adata.n_obs, adata.n_obs)
    assert np.all(plan.data > 0)
    rows, cols = plan.nonzero()
    np.testing.assert_array_equal(codes[cols], codes[rows] + 1)  # only consecutive blocks
    for g in range(n_groups - 1):
        s, t = codes == g, codes == g + 1
        block = plan[s][:, t]
        assert block.sum() == pytest.approx(1.0, abs=1e-9)
        np.testing.assert_allclose(np.asarray(block.sum(1)).ravel(), 1 / s.sum(), rtol=1e-6)
        np.testing.assert_allclose(np.asarray(block.sum(0)).ravel(), 1 / t.sum(), rtol=1e-6)
    uns = adata.uns["celldyn_couplings"]
    np.testing.assert_array_equal(uns["groups"], [0.0, 0.5, 1.0])
    assert len(uns["cost"]) == n_groups - 1
    expected_batches = 1 if "max_cells" not in kwargs else -(-47 // kwargs.get("batch_size", 20))
    assert uns["n_batches"].tolist() == [expected_batches] * 2
    assert uns["params"]["method"] == kwargs.get("method", "exact")


def test_exact_equals_brute_force_assignment():
    adata = _groups_adata([6, 6], n_dims=2, seed=3)
    cd.pp.couplings(adata)
    _, codes, _ = _blocks(adata)
    xs, xt = adata.obsm["X_pca"][codes == 0], adata.obsm["X_pca"][codes == 1]
    cost = cdist(xs, xt, "sqeuclidean")
    brute = min(cost[np.arange(6), list(p)].sum() for p in itertools.permutations(range(6))) / 6
    assert adata.uns["celldyn_couplings"]["cost"][0] == pytest.approx(brute, rel=1e-10)
    # an optimal plan between equal uniform sets is a permutation: one entry per row
    plan = adata.obsp["celldyn_couplings"]
    assert plan.nnz == 6
    np.testing.assert_allclose(plan.data, 1 / 6)


def test_exact_equals_linear_program_for_unequal_groups():
    adata = _groups_adata([7, 11, 5], n_dims=2, seed=4)
    cd.pp.couplings(adata)
    _, codes, _ = _blocks(adata)
    x = adata.obsm["X_pca"]
    for g, cost in enumerate(adata.uns["celldyn_couplings"]["cost"]):
        assert cost == pytest.approx(_lp_cost(x[codes == g], x[codes == g + 1]), rel=1e-7)


def test_sinkhorn_and_minibatch_costs_close_to_exact():
    adata = _groups_adata([150, 180], n_dims=4, seed=5)
    exact = cd.pp.couplings(adata, copy=True).uns["celldyn_couplings"]["cost"][0]
    sink = cd.pp.couplings(adata, method="sinkhorn", reg=0.01, copy=True)
    mini = cd.pp.couplings(adata, max_cells=100, copy=True)
    assert exact <= sink.uns["celldyn_couplings"]["cost"][0] <= 1.05 * exact
    assert exact <= mini.uns["celldyn_couplings"]["cost"][0] <= 1.25 * exact
    # the sparsified entropic plan stays sparse: at most 32 entries per row and column
    assert sink.obsp["celldyn_couplings"].nnz <= 32 * (150 + 180)


def test_minibatch_is_reproducible():
    adata = _groups_adata([60, 70], seed=6)
    a = cd.pp.couplings(adata, max_cells=25, random_state=1, copy=True)
    b = cd.pp.couplings(adata, max_cells=25, random_state=1, copy=True)
    c = cd.pp.couplings(adata, max_cells=25, random_state=2, copy=True)
    assert (a.obsp["celldyn_couplings"] != b.obsp["celldyn_couplings"]).nnz == 0
    assert (a.obsp["celldyn_couplings"] != c.obsp["celldyn_couplings"]).nnz > 0


def test_copy_and_key_added():
    adata = _groups_adata([10, 12])
    before = adata.copy()
    out = cd.pp.couplings(adata, key_added="ot", copy=True)
    assert_equal(adata, before)
    assert "ot" in out.obsp and "ot" in out.uns
    assert cd.pp.couplings(adata) is None
    assert "celldyn_couplings" in adata.obsp


def _nan_rep(adata):
    adata.obsm["X_pca"][0, 0] = np.nan


def _one_group(adata):
    adata.obs["celldyn_time"] = 1.0


@pytest.mark.parametrize(
    ("corrupt", "kwargs", "error", "match"),
    [
        (None, {"time_key": "nope"}, KeyError, "nope"),
        (_one_group, {}, ValueError, "at least 2"),
        (None, {"rep": "X_umap"}, KeyError, "X_umap"),
        (_nan_rep, {}, ValueError, "NaN"),
        (None, {"method": "greedy"}, ValueError, "method"),
        (None, {"reg": 0.0}, ValueError, "reg"),
        (None, {"max_cells": 1}, ValueError, "max_cells"),
        (None, {"batch_size": 1.5}, ValueError, "batch_size"),
    ],
)
def test_bad_input_leaves_adata_unchanged(corrupt, kwargs, error, match):
    adata = _groups_adata([10, 12])
    if corrupt is not None:
        corrupt(adata)
    before = adata.copy()
    with pytest.raises(error, match=match):
        cd.pp.couplings(adata, **kwargs)
    assert_equal(adata, before)
