import anndata as ad
import numpy as np
import pandas as pd
import pytest
from anndata.tests.helpers import assert_equal
from scipy.stats import spearmanr

import celldyn as cd
from celldyn._readers import read_time_groups


def _adata(n_obs=60, seed=0):
    rng = np.random.default_rng(seed)
    adata = ad.AnnData(rng.normal(size=(n_obs, 3)).astype(np.float32))
    adata.obs_names = [f"c{i}" for i in range(n_obs)]
    return adata


@pytest.fixture(scope="module")
def _line_adata():
    """Cells along a noisy 1-D curve in 5 dimensions, with a kNN graph and the true order."""
    import scanpy as sc

    rng = np.random.default_rng(0)
    t = np.sort(rng.uniform(0, 1, 300))
    x = np.stack([t, t**2, np.sin(2 * t), 0.5 * t, np.zeros_like(t)], 1)
    x = x + 0.05 * rng.normal(size=x.shape)
    adata = ad.AnnData(x.astype(np.float32))
    adata.obs_names = [f"c{i}" for i in range(len(t))]
    adata.obs["true_t"] = t
    sc.pp.neighbors(adata, use_rep="X", n_neighbors=15)
    return adata


@pytest.fixture
def line_adata(_line_adata):
    return _line_adata.copy()


def test_numeric_time_key():
    adata = _adata()
    day = np.tile([5, 0, 2], 20)
    adata.obs["day"] = day
    cd.pp.time_groups(adata, time_key="day")
    out = adata.obs["celldyn_time"]
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out.to_numpy(), day.astype(float))
    info = adata.uns["celldyn_time"]
    np.testing.assert_array_equal(info["values"], [0.0, 2.0, 5.0])
    assert list(info["labels"]) == ["0", "2", "5"]
    np.testing.assert_array_equal(info["sizes"], [20, 20, 20])
    assert info["params"]["time_key"] == "day"
    groups = read_time_groups(adata, "celldyn_time")
    np.testing.assert_array_equal(groups.values, [0.0, 2.0, 5.0])
    np.testing.assert_array_equal(groups.codes, np.tile([2, 0, 1], 20))


def test_ordered_categorical_time_key():
    adata = _adata()
    stages = np.tile(["late", "early", "mid"], 20)
    adata.obs["stage"] = pd.Categorical(stages, categories=["early", "mid", "late"], ordered=True)
    out = cd.pp.time_groups(adata, time_key="stage", key_added="t", copy=True)
    assert "t" not in adata.obs  # copy=True leaves adata alone
    np.testing.assert_array_equal(out.obs["t"].to_numpy(), np.tile([2.0, 0.0, 1.0], 20))
    assert list(out.uns["t"]["labels"]) == ["early", "mid", "late"]
    np.testing.assert_array_equal(out.uns["t"]["values"], [0.0, 1.0, 2.0])
    groups = read_time_groups(out, "t")
    np.testing.assert_array_equal(groups.codes, np.tile([2, 0, 1], 20))


def test_ordered_numeric_categories_keep_their_values():
    adata = _adata()
    adata.obs["day"] = pd.Categorical(
        np.tile(["1", "3", "10"], 20), categories=["1", "3", "10"], ordered=True
    )
    cd.pp.time_groups(adata, time_key="day")
    np.testing.assert_array_equal(adata.uns["celldyn_time"]["values"], [1.0, 3.0, 10.0])
    assert set(adata.obs["celldyn_time"]) == {1.0, 3.0, 10.0}


@pytest.mark.parametrize("n_obs", [1000, 1003])
def test_pseudotime_quantile_bins(n_obs):
    adata = _adata(n_obs)
    pt = np.random.default_rng(3).uniform(0, 5, n_obs)
    adata.obs["pt"] = pt
    cd.pp.time_groups(adata, pseudotime_key="pt", n_groups=10)
    info = adata.uns["celldyn_time"]
    sizes = info["sizes"]
    assert len(sizes) == 10 and sizes.sum() == n_obs
    assert sizes.min() >= n_obs // 10 and sizes.max() <= n_obs // 10 + 1
    values = info["values"]
    assert np.all(np.diff(values) > 0)
    codes = read_time_groups(adata, "celldyn_time").codes
    for g in range(10):
        assert values[g] == pytest.approx(pt[codes == g].mean())
        if g < 9:  # bins are disjoint, ordered ranges
            assert pt[codes == g].max() < pt[codes == g + 1].min()
    assert info["labels"][0].startswith(f"{pt.min():.3g}-")


def test_default_n_groups_is_10_for_pseudotime_and_unused_for_time():
    adata = _adata(200)
    adata.obs["pt"] = np.linspace(0, 1, adata.n_obs)
    adata.obs["day"] = np.repeat([0, 1, 2, 3], 50)
    cd.pp.time_groups(adata, pseudotime_key="pt")
    assert len(adata.uns["celldyn_time"]["values"]) == 10
    assert adata.uns["celldyn_time"]["params"]["n_groups"] == 10
    cd.pp.time_groups(adata, time_key="day")
    assert len(adata.uns["celldyn_time"]["values"]) == 4
    assert adata.uns["celldyn_time"]["params"]["n_groups"] is None


def test_pseudotime_ties_merge_bins():
    adata = _adata(100)
    pt = np.concatenate([np.zeros(40), np.linspace(1, 2, 60)])
    adata.obs["pt"] = pt
    with pytest.warns(UserWarning, match="7 groups instead of 10"):
        cd.pp.time_groups(adata, pseudotime_key="pt", n_groups=10)
    info = adata.uns["celldyn_time"]
    np.testing.assert_array_equal(info["sizes"], [40, 10, 10, 10, 10, 10, 10])
    assert np.all(adata.obs["celldyn_time"].to_numpy()[:40] == 0.0)
    assert np.all(np.diff(info["values"]) > 0)


def test_dpt_from_root_follows_true_order(line_adata):
    root = line_adata.obs_names[np.argmin(line_adata.obs["true_t"])]
    cd.pp.time_groups(line_adata, pseudotime_key="dpt_pseudotime", root=root, n_groups=8)
    true_t = line_adata.obs["true_t"].to_numpy()
    dpt = line_adata.obs["dpt_pseudotime"].to_numpy()
    assert spearmanr(dpt, true_t).statistic > 0.9  # measured 0.99
    assert spearmanr(line_adata.obs["celldyn_time"], true_t).statistic > 0.9
    assert len(line_adata.uns["celldyn_time"]["values"]) == 8
    assert line_adata.uns["celldyn_time"]["params"]["root"] == root
    assert "X_diffmap" not in line_adata.obsm  # DPT ran on a private copy


def test_dpt_root_from_iroot_and_position(line_adata):
    end = int(np.argmax(line_adata.obs["true_t"]))
    by_position = cd.pp.time_groups(
        line_adata, pseudotime_key="dpt_pseudotime", root=end, copy=True
    )
    line_adata.uns["iroot"] = end
    cd.pp.time_groups(line_adata, pseudotime_key="dpt_pseudotime")
    true_t = line_adata.obs["true_t"].to_numpy()
    assert spearmanr(line_adata.obs["dpt_pseudotime"], true_t).statistic < -0.9
    np.testing.assert_allclose(by_position.obs["dpt_pseudotime"], line_adata.obs["dpt_pseudotime"])


def test_existing_dpt_is_reused_unless_root_given(line_adata):
    line_adata.obs["dpt_pseudotime"] = line_adata.obs["true_t"] * 2
    cd.pp.time_groups(line_adata, pseudotime_key="dpt_pseudotime", n_groups=4)
    np.testing.assert_array_equal(line_adata.obs["dpt_pseudotime"], line_adata.obs["true_t"] * 2)
    cd.pp.time_groups(line_adata, pseudotime_key="dpt_pseudotime", root="c0", n_groups=4)
    assert np.max(line_adata.obs["dpt_pseudotime"]) == pytest.approx(1.0)  # DPT is scaled to 1


def _with_nan(adata):
    adata.obs["pt"] = np.r_[np.nan, np.linspace(0, 1, adata.n_obs - 1)]


def _with_pt(adata):
    adata.obs["pt"] = np.linspace(0, 1, adata.n_obs)


def _constant_pt(adata):
    adata.obs["pt"] = np.ones(adata.n_obs)


def _strings(adata):
    adata.obs["stage"] = np.tile(["a", "b", "c"], adata.n_obs // 3)


@pytest.mark.parametrize(
    ("prepare", "kwargs", "error", "match"),
    [
        (_with_pt, {"time_key": "pt", "pseudotime_key": "pt"}, ValueError, "exactly one"),
        (_with_pt, {}, ValueError, "exactly one"),
        (_with_pt, {"pseudotime_key": "pt", "n_groups": 1}, ValueError, "n_groups"),
        (_with_pt, {"pseudotime_key": "pt", "n_groups": 2.5}, ValueError, "n_groups"),
        (_with_pt, {"pseudotime_key": "pt", "root": "c0"}, ValueError, "root"),
        (_with_pt, {"pseudotime_key": "missing"}, KeyError, "missing"),
        (_with_nan, {"pseudotime_key": "pt"}, ValueError, "NaN"),
        (_constant_pt, {"pseudotime_key": "pt"}, ValueError, "single distinct value"),
        (_strings, {"time_key": "stage"}, ValueError, "ordered categorical"),
        (_with_pt, {"time_key": "missing"}, KeyError, "missing"),
        (_with_pt, {"time_key": "pt", "n_groups": 5}, ValueError, "`n_groups` applies only to"),
        (_with_pt, {"time_key": "pt", "n_groups": 10}, ValueError, "n_groups=10 with time_key"),
        (_with_pt, {"pseudotime_key": "dpt_pseudotime"}, KeyError, "neighbors"),
    ],
)
def test_bad_input_leaves_adata_unchanged(prepare, kwargs, error, match):
    adata = _adata()
    prepare(adata)
    before = adata.copy()
    with pytest.raises(error, match=match):
        cd.pp.time_groups(adata, **kwargs)
    assert_equal(adata, before)


@pytest.mark.parametrize(
    ("root", "error", "match"),
    [
        (None, ValueError, "root cell"),
        ("nope", KeyError, "nope"),
        (10_000, ValueError, "out of range"),
        (1.5, TypeError, "root"),
    ],
)
def test_bad_root_leaves_adata_unchanged(line_adata, root, error, match):
    before = line_adata.copy()
    with pytest.raises(error, match=match):
        cd.pp.time_groups(line_adata, pseudotime_key="dpt_pseudotime", root=root)
    assert_equal(line_adata, before)
