import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp
from anndata.tests.helpers import assert_equal

import celldyn as cd
from celldyn.pp._diffusion import diffuse, markov_operator

N_CELLS, N_GENES = 300, 500


@pytest.fixture(scope="module")
def two_clusters():
    """Poisson counts of two clusters differing in 60 marker genes, and the cluster labels."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], N_CELLS // 2)
    base = rng.gamma(2.0, 1.0, size=N_GENES)
    fold = np.ones((2, N_GENES))
    markers = rng.choice(N_GENES, 60, replace=False)
    fold[0, markers[:30]] = 4.0
    fold[1, markers[30:]] = 4.0
    counts = rng.poisson(base * fold[labels]).astype(np.float32)
    return counts, labels


def _adata(counts, sparse=True):
    x = sp.csr_matrix(counts) if sparse else counts.copy()
    adata = ad.AnnData(x)
    adata.obs_names = [f"c{i}" for i in range(adata.n_obs)]
    adata.var_names = [f"g{i}" for i in range(adata.n_vars)]
    return adata


def _within_variance(x, labels):
    return sum(((x[labels == k] - x[labels == k].mean(0)) ** 2).sum() for k in (0, 1))


def _between_distance(x, labels):
    return np.linalg.norm(x[labels == 0].mean(0) - x[labels == 1].mean(0))


def test_counts_layer_is_input_and_subset(two_clusters):
    counts, _ = two_clusters
    adata = _adata(counts)
    cd.pp.recipe(adata, n_top_genes=100, denoise=None)
    assert adata.n_vars == 100
    assert adata.var["highly_variable"].all()
    genes = [int(name[1:]) for name in adata.var_names]
    np.testing.assert_array_equal(adata.layers["counts"].toarray(), counts[:, genes])
    assert adata.uns["celldyn_recipe"]["n_top_genes"] == 100
    assert adata.obsm["X_pca"].shape == (N_CELLS, 50)
    assert adata.varm["PCs"].shape == (100, 50)
    assert "log1p" in adata.uns


def test_counts_from_layer_keep_dtype(two_clusters):
    counts, _ = two_clusters
    adata = _adata(counts, sparse=False)
    adata.layers["raw"] = counts.astype(np.int64)
    adata.X = np.zeros_like(counts)  # X is ignored when `layer` is given
    out = cd.pp.recipe(adata, layer="raw", n_top_genes=50, denoise=None, copy=True)
    assert adata.n_vars == N_GENES and "counts" not in adata.layers  # copy leaves adata as is
    assert out.layers["counts"].dtype == np.int64
    np.testing.assert_array_equal(out.layers["counts"], out.layers["raw"])


@pytest.mark.parametrize("target_sum", [1e4, None])
def test_normalized_totals(two_clusters, target_sum):
    counts, _ = two_clusters
    adata = _adata(counts)
    cd.pp.recipe(adata, target_sum=target_sum, subset=False, denoise=None)
    expected = target_sum or float(np.median(counts.sum(1)))
    assert adata.uns["celldyn_recipe"]["target_sum"] == pytest.approx(expected)
    assert adata.uns["celldyn_recipe"]["params"]["target_sum"] == target_sum
    totals = np.expm1(adata.layers["log_normalized"].toarray().astype(np.float64)).sum(1)
    np.testing.assert_allclose(totals, expected, rtol=1e-4)
    # without denoising X is the log-normalized data
    np.testing.assert_array_equal(adata.X.toarray(), adata.layers["log_normalized"].toarray())
    assert adata.n_vars == N_GENES
    assert adata.var["highly_variable"].sum() == 500  # n_top_genes=4000 capped at n_vars


def test_hvg_without_subset(two_clusters):
    counts, _ = two_clusters
    adata = _adata(counts)
    cd.pp.recipe(adata, n_top_genes=120, subset=False, denoise=None)
    assert adata.n_vars == N_GENES
    assert adata.var["highly_variable"].sum() == 120
    # PCA loadings live on the highly variable genes only
    loadings = np.abs(adata.varm["PCs"]).sum(1)
    assert np.all(loadings[~adata.var["highly_variable"].to_numpy()] == 0)
    assert np.all(loadings[adata.var["highly_variable"].to_numpy()] > 0)


def test_denoise_shrinks_within_cluster_variance(two_clusters):
    counts, labels = two_clusters
    plain = _adata(counts)
    smooth = _adata(counts)
    cd.pp.recipe(plain, n_top_genes=200, denoise=None)
    cd.pp.recipe(smooth, n_top_genes=200, denoise="knn", n_neighbors=30, diffusion_t=3)
    np.testing.assert_array_equal(plain.var_names, smooth.var_names)
    x_plain, x_smooth = plain.X.toarray(), smooth.X
    assert isinstance(x_smooth, np.ndarray) and x_smooth.dtype == np.float32
    # measured: within-cluster variance ratio 0.003, between-cluster distance ratio 1.00
    assert _within_variance(x_smooth, labels) / _within_variance(x_plain, labels) < 0.05
    ratio = _between_distance(x_smooth, labels) / _between_distance(x_plain, labels)
    assert 0.8 < ratio < 1.2
    # the un-denoised data is kept
    np.testing.assert_allclose(smooth.layers["log_normalized"].toarray(), x_plain, atol=1e-6)
    assert smooth.uns["celldyn_recipe"]["n_neighbors"] == 30


@pytest.mark.parametrize("denoise", ["knn", None])
def test_sparse_and_dense_agree(two_clusters, denoise):
    counts, _ = two_clusters
    a_sparse, a_dense = _adata(counts), _adata(counts, sparse=False)
    cd.pp.recipe(a_sparse, n_top_genes=200, denoise=denoise, n_pcs=10)
    cd.pp.recipe(a_dense, n_top_genes=200, denoise=denoise, n_pcs=10)
    np.testing.assert_array_equal(a_sparse.var_names, a_dense.var_names)
    p_sparse, p_dense = a_sparse.obsm["X_pca"], a_dense.obsm["X_pca"]
    signs = np.sign((p_sparse * p_dense).sum(0))
    np.testing.assert_allclose(p_sparse, p_dense * signs, atol=2e-3)


def test_diffusion_matches_dense_power():
    rng = np.random.default_rng(1)
    c = sp.random(12, 12, density=0.3, random_state=2)
    c = c + c.T
    x = rng.normal(size=(12, 4))
    op = markov_operator(c)
    np.testing.assert_allclose(np.asarray(op.sum(1)).ravel(), 1.0)
    assert np.all(op.diagonal() > 0)  # self loops
    dense = np.diag(1 / (c.toarray() + np.eye(12)).sum(1)) @ (c.toarray() + np.eye(12))
    expected = np.linalg.matrix_power(dense, 3) @ x
    np.testing.assert_allclose(diffuse(x, op, 3), expected, rtol=1e-12)
    np.testing.assert_allclose(diffuse(sp.csr_matrix(x), op, 3), expected, rtol=1e-12)
    np.testing.assert_array_equal(diffuse(x, op, 0), x)


def test_non_integer_counts_warn(two_clusters):
    counts, _ = two_clusters
    adata = _adata(counts * 0.5)
    with pytest.warns(UserWarning, match="non-integer"):
        cd.pp.recipe(adata, n_top_genes=50, denoise=None)


def _negative(a):
    a.X[0, 0] = -1.0


def _nan(a):
    a.X[3, 3] = np.nan


def _empty_cell(a):
    a.X[5] = 0.0


def _constant(a):
    a.X = sp.csr_matrix(np.ones(a.shape, dtype=np.float32))


def _proportional_cells(a):
    profile = np.arange(1, a.n_vars + 1, dtype=np.float32)
    a.X = np.outer(np.arange(1, a.n_obs + 1) % 3 + 1, profile).astype(np.float32)


def _constant_layer(a):
    a.layers["raw"] = np.full(a.shape, 2.0, dtype=np.float32)


def _undetected_genes(a):
    x = np.array(a.X)
    x[:, :150] = 0.0  # 30% of the genes never detected: cell_ranger's mean bins collapse
    a.X = sp.csr_matrix(x)


@pytest.mark.parametrize(
    ("corrupt", "kwargs", "error", "match"),
    [
        (_negative, {}, ValueError, "negative"),
        (_nan, {}, ValueError, "NaN"),
        (_empty_cell, {}, ValueError, "zero total counts"),
        (None, {"n_top_genes": 0}, ValueError, "n_top_genes"),
        (None, {"n_top_genes": 2.5}, ValueError, "n_top_genes"),
        (None, {"n_pcs": 0}, ValueError, "n_pcs"),
        (None, {"n_neighbors": 1}, ValueError, "n_neighbors"),
        (None, {"diffusion_t": 0}, ValueError, "diffusion_t"),
        (None, {"denoise": "magic"}, ValueError, "denoise"),
        (None, {"target_sum": -1.0}, ValueError, "target_sum"),
        (None, {"layer": "spliced"}, KeyError, "spliced"),
        (_constant, {}, ValueError, r"Only 0 gene\(s\) of adata.X vary across cells"),
        (_proportional_cells, {}, ValueError, r"Only 0 gene\(s\) of adata.X vary"),
        (_constant_layer, {"layer": "raw"}, ValueError, r"of adata.layers\['raw'\] vary"),
        (_undetected_genes, {}, ValueError, r"of adata.X share .* \(150 are zero in every cell"),
    ],
)
def test_bad_input_leaves_adata_unchanged(two_clusters, corrupt, kwargs, error, match):
    counts, _ = two_clusters
    adata = _adata(counts[:60], sparse=False)
    adata.obsm["X_pca"] = np.ones((60, 2))
    if corrupt is not None:
        corrupt(adata)
    before = adata.copy()
    with pytest.raises(error, match=match):
        cd.pp.recipe(adata, **kwargs)
    assert_equal(adata, before)


def test_not_anndata():
    with pytest.raises(TypeError, match="AnnData"):
        cd.pp.recipe(np.ones((3, 3)))


def test_asking_for_all_genes_keeps_all_genes():
    import celldyn as cd

    adata = cd.datasets.simulate_grn(n_genes=20, n_cells=300, n_timepoints=3, counts=True)
    cd.pp.recipe(adata, n_top_genes=20, denoise=None)
    assert adata.n_vars == 20
    assert adata.var["highly_variable"].all()
