import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

from celldyn.metrics import velocity_confidence

N_OBS, N_GENES = 200, 30


@pytest.fixture(scope="module")
def _vel_adata():
    import scanpy as sc

    rng = np.random.default_rng(0)
    adata = ad.AnnData(rng.normal(size=(N_OBS, N_GENES)).astype(np.float32))
    sc.pp.neighbors(adata, use_rep="X", n_neighbors=10)
    direction = rng.normal(size=N_GENES)
    smooth = direction + 0.05 * rng.normal(size=(N_OBS, N_GENES))
    adata.layers["smooth_velocity"] = smooth.astype(np.float32)
    adata.layers["random_velocity"] = rng.normal(size=(N_OBS, N_GENES)).astype(np.float32)
    return adata


@pytest.fixture
def vel_adata(_vel_adata):
    return _vel_adata.copy()


def _brute_confidence(adata, v):
    """Mean Pearson correlation (across genes) of each cell's velocity with its kNN's, >= 0."""
    dist = sp.csr_matrix(adata.obsp["distances"])
    out = np.empty(adata.n_obs)
    for i in range(adata.n_obs):
        nbrs = dist.indices[dist.indptr[i] : dist.indptr[i + 1]]
        out[i] = np.mean([np.corrcoef(v[i], v[j])[0, 1] for j in nbrs])
    return np.clip(out, 0, None)


def _snapshot(adata):
    return {
        "obs": adata.obs.copy(),
        "var": adata.var.copy(),
        "layers": {k: np.array(v) for k, v in adata.layers.items()},
        "uns": set(adata.uns),
        "obsp": {k: v.copy() for k, v in adata.obsp.items()},
    }


def _assert_unchanged(adata, snap):
    assert adata.obs.equals(snap["obs"])
    assert adata.var.equals(snap["var"])
    assert set(adata.layers) == set(snap["layers"])
    for k, v in snap["layers"].items():
        np.testing.assert_array_equal(adata.layers[k], v)
    assert set(adata.uns) == snap["uns"]
    assert set(adata.obsp) == set(snap["obsp"])
    for k, v in snap["obsp"].items():
        assert (adata.obsp[k] != v).nnz == 0


def test_smooth_field_is_confident(vel_adata):
    conf = velocity_confidence(vel_adata, "smooth_velocity")
    assert conf.shape == (N_OBS,)
    assert conf.min() > 0.98
    assert conf.mean() == pytest.approx(1.0, abs=0.01)


def test_random_field_is_not_confident(vel_adata):
    conf = velocity_confidence(vel_adata, "random_velocity")
    assert conf.mean() < 0.05
    assert conf.min() == 0.0  # negative correlations are clipped, as in scvelo


def test_matches_definition(vel_adata):
    rng = np.random.default_rng(1)
    v = vel_adata.layers["random_velocity"] + rng.normal(size=N_GENES)  # partly shared
    vel_adata.layers["mixed_velocity"] = v
    conf = velocity_confidence(vel_adata, vkey="mixed_velocity")
    np.testing.assert_allclose(conf, _brute_confidence(vel_adata, v), atol=1e-5)
    assert 0.2 < conf.mean() < 0.9


def test_unmodelled_and_masked_genes_are_left_out(vel_adata):
    v = vel_adata.layers["random_velocity"] + np.linspace(-1, 1, N_GENES)
    expected = _brute_confidence(vel_adata, v[:, 10:])
    with_nan = v.copy()
    with_nan[:, :10] = np.nan  # genes the method does not model
    vel_adata.layers["nan_velocity"] = with_nan
    np.testing.assert_allclose(velocity_confidence(vel_adata, "nan_velocity"), expected, atol=1e-5)
    # the same genes excluded by the scvelo-style `<vkey>_genes` mask instead
    vel_adata.layers["masked_velocity"] = v
    vel_adata.var["masked_velocity_genes"] = np.arange(N_GENES) >= 10
    np.testing.assert_allclose(
        velocity_confidence(vel_adata, "masked_velocity"), expected, atol=1e-5
    )


def test_adata_unchanged_without_key_added(vel_adata):
    snap = _snapshot(vel_adata)
    velocity_confidence(vel_adata, "smooth_velocity")
    _assert_unchanged(vel_adata, snap)


def test_key_added_writes_obs(vel_adata):
    conf = velocity_confidence(vel_adata, "smooth_velocity", key_added="smooth_confidence")
    np.testing.assert_array_equal(vel_adata.obs["smooth_confidence"].to_numpy(), conf)
    assert list(vel_adata.obs.columns) == ["smooth_confidence"]


def test_neighbors_key_and_sparse_layer(vel_adata):
    import scanpy as sc

    sc.pp.neighbors(vel_adata, use_rep="X", n_neighbors=5, key_added="nn5")
    vel_adata.layers["sparse_velocity"] = sp.csr_matrix(vel_adata.layers["smooth_velocity"])
    conf = velocity_confidence(vel_adata, "sparse_velocity", neighbors_key="nn5")
    adata5 = ad.AnnData(vel_adata.X, obsp={"distances": vel_adata.obsp["nn5_distances"]})
    expected = _brute_confidence(adata5, vel_adata.layers["smooth_velocity"])
    np.testing.assert_allclose(conf, expected, atol=1e-5)


@pytest.mark.parametrize(
    ("setup", "kwargs", "error", "match"),
    [
        (None, {"vkey": "missing_velocity"}, KeyError, "no layer 'missing_velocity'"),
        (None, {"vkey": "smooth_velocity", "neighbors_key": "nn"}, KeyError, "sc.pp.neighbors"),
        (
            "drop_neighbors",
            {"vkey": "smooth_velocity"},
            KeyError,
            r"Run `sc.pp.neighbors\(adata\)`",
        ),
        ("partial_nan", {"vkey": "bad_velocity"}, ValueError, "contains 1 NaN or infinite"),
        ("all_nan", {"vkey": "bad_velocity"}, ValueError, "no modelled"),
        ("isolated_cell", {"vkey": "smooth_velocity"}, ValueError, "no neighbors"),
    ],
)
def test_bad_input(vel_adata, setup, kwargs, error, match):
    if setup == "drop_neighbors":
        del vel_adata.uns["neighbors"]
        del vel_adata.obsp["distances"]
    elif setup in ("partial_nan", "all_nan"):
        v = vel_adata.layers["smooth_velocity"].copy()
        if setup == "partial_nan":
            v[3, 4] = np.nan
        else:
            v[:] = np.nan
        vel_adata.layers["bad_velocity"] = v
    elif setup == "isolated_cell":
        d = vel_adata.obsp["distances"].tolil()
        d[0, :] = 0
        vel_adata.obsp["distances"] = d.tocsr()
    snap = _snapshot(vel_adata)
    with pytest.raises(error, match=match):
        velocity_confidence(vel_adata, key_added="conf", **kwargs)
    _assert_unchanged(vel_adata, snap)


def test_not_anndata():
    with pytest.raises(TypeError, match="Expected an AnnData object, got ndarray"):
        velocity_confidence(np.zeros((3, 3)), "velocity")


def test_velocity_cosine_matches_formula_on_shared_genes(vel_adata):
    from celldyn.metrics import velocity_cosine

    v = vel_adata.layers["smooth_velocity"].astype(np.float64)
    r = vel_adata.layers["random_velocity"].astype(np.float64)
    vel_adata.layers["smooth_velocity"][:, :5] = np.nan  # genes the model does not cover
    expected = np.sum(v[:, 5:] * r[:, 5:], 1) / (
        np.linalg.norm(v[:, 5:], axis=1) * np.linalg.norm(r[:, 5:], axis=1)
    )
    cosine = velocity_cosine(vel_adata, "smooth_velocity", "random_velocity")
    np.testing.assert_allclose(cosine, expected, rtol=1e-5)
    same = velocity_cosine(vel_adata, "random_velocity", "random_velocity", key_added="self")
    np.testing.assert_allclose(same, 1.0, rtol=1e-6)
    np.testing.assert_allclose(vel_adata.obs["self"], same)


def test_velocity_cosine_zero_velocity_is_nan_and_mask_respected(vel_adata):
    from celldyn.metrics import velocity_cosine

    vel_adata.layers["smooth_velocity"][0] = 0.0
    vel_adata.var["smooth_velocity_genes"] = np.arange(N_GENES) >= 10
    cosine = velocity_cosine(vel_adata, "smooth_velocity", "smooth_velocity")
    assert np.isnan(cosine[0]) and np.allclose(cosine[1:], 1.0)
    vel_adata.layers["random_velocity"][:, 10:] = np.nan
    with pytest.raises(ValueError, match="share no modelled gene"):
        velocity_cosine(vel_adata, "smooth_velocity", "random_velocity")


def test_velocity_cosine_bad_input_leaves_adata_unchanged(vel_adata):
    from celldyn.metrics import velocity_cosine

    vel_adata.layers["bad"] = vel_adata.layers["random_velocity"].copy()
    vel_adata.layers["bad"][3, 3] = np.inf
    snap = _snapshot(vel_adata)
    with pytest.raises(KeyError, match="nope"):
        velocity_cosine(vel_adata, "nope", "random_velocity", key_added="x")
    with pytest.raises(ValueError, match="infinite"):
        velocity_cosine(vel_adata, "bad", "random_velocity", key_added="x")
    _assert_unchanged(vel_adata, snap)
