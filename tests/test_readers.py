"""The readers of pp outputs (celldyn._readers) on the real Guo et al. (2010) time course."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import celldyn as cd
from celldyn._readers import (
    PriorEdges,
    TimeGroups,
    Trajectories,
    check_time_range,
    read_loadings,
    read_numeric_times,
    read_prior,
    read_time_groups,
    read_trajectories,
)

TRAJ = "celldyn_trajectories"
PRIOR = "celldyn_prior"


@pytest.fixture(scope="module")
def _guo(shared_data):
    """Guo 2010 qPCR (437 cells, 7 stages) through pca, time groups, trajectories, TRRUST."""
    import scanpy as sc

    adata = cd.datasets.guo10(path=shared_data("guo2010"))
    net = cd.datasets.trrust("mouse", path=shared_data("trrust") / "trrust_rawdata.mouse.tsv")
    with pytest.warns(UserWarning, match="weight 0"):
        cd.pp.prior_network(adata, net, min_coverage=0.0)
    sc.pp.pca(adata, n_comps=10)
    cd.pp.time_groups(adata, time_key="time")
    cd.pp.trajectories(adata, n_trajectories=50, length=4, random_state=0)
    return adata


@pytest.fixture
def guo(_guo):
    return _guo.copy()


def _set(adata, **entries):
    adata.uns[TRAJ] = {**adata.uns[TRAJ], **entries}


# ----------------------------------------------------------------------------- time groups
def test_time_groups_of_the_stages(guo):
    groups = read_time_groups(guo, "time")
    assert isinstance(groups, TimeGroups)
    np.testing.assert_array_equal(groups.values, np.log2([1, 2, 4, 8, 16, 32, 64]))
    assert groups.n_groups == 7
    np.testing.assert_array_equal(groups.values[groups.codes], guo.obs["time"].to_numpy())
    np.testing.assert_array_equal(groups.members(0), np.flatnonzero(guo.obs["n_cells_embryo"] == 1))


def test_numeric_times_and_their_errors(guo):
    np.testing.assert_array_equal(read_numeric_times(guo, "time").values, np.arange(7.0))
    stage = np.where(guo.obs["time"] < 3, "early", np.where(guo.obs["time"] < 5, "mid", "late"))
    guo.obs["stage"] = pd.Categorical(stage, categories=["early", "mid", "late"], ordered=True)
    assert read_time_groups(guo, "stage").n_groups == 3  # ordered labels are enough here
    with pytest.raises(ValueError, match="Cell-MNN uses the time differences"):
        read_numeric_times(guo, "stage")
    guo.obs["word"] = stage  # strings that are no numbers
    with pytest.raises(ValueError, match="neither numeric nor an ordered categorical"):
        read_numeric_times(guo, "word")
    guo.obs["two"] = (guo.obs["time"] > 3).astype(float)
    with pytest.raises(ValueError, match=r"has 2 distinct time group\(s\); at least 3"):
        read_numeric_times(guo, "two")
    guo.obs.loc[guo.obs_names[5], "time"] = np.nan
    with pytest.raises(ValueError, match=r"adata.obs\['time'\] has 1 NaN or infinite"):
        read_numeric_times(guo, "time")
    with pytest.raises(KeyError, match="nope"):
        read_numeric_times(guo, "nope")


def test_time_range(guo):
    groups = read_numeric_times(guo, "time")
    mask = check_time_range(groups, (1, 2))
    np.testing.assert_array_equal(mask, guo.obs["n_cells_embryo"].isin([2, 4]).to_numpy())
    assert check_time_range(groups, None).all()
    with pytest.raises(ValueError, match=r"No cells with time in \(6.5, 9.0\); observed times"):
        check_time_range(groups, (6.5, 9))


# ----------------------------------------------------------------------------- trajectories
def test_trajectories_record_holds_the_written_arrays(guo):
    entry = guo.uns[TRAJ]
    found = read_trajectories(guo, TRAJ)
    assert isinstance(found, Trajectories)
    assert (found.n_trajectories, found.length) == (50, 4)
    assert found.indices.dtype == np.int64 and found.times.dtype == np.float64
    np.testing.assert_array_equal(found.indices, entry["indices"])
    np.testing.assert_array_equal(found.times, entry["times"])
    assert found.params["time_key"] == "celldyn_time" and found.params["rep"] == "X_pca"
    found.params["time_key"] = "changed"  # a copy: the AnnData keeps its params
    assert entry["params"]["time_key"] == "celldyn_time"
    with pytest.raises(AttributeError):
        found.indices = None  # frozen


def test_trajectories_without_params_or_times(guo):
    del guo.uns[TRAJ]["params"]
    assert read_trajectories(guo, TRAJ).params == {}
    del guo.uns[TRAJ]["times"]
    with pytest.raises(KeyError, match="needs 'indices' and 'times'"):
        read_trajectories(guo, TRAJ)
    loose = read_trajectories(guo, TRAJ, require_times=False)
    np.testing.assert_array_equal(loose.times, np.tile(np.arange(4.0), (50, 1)))


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (
            lambda e: {"indices": e["indices"][:, :1], "times": e["times"][:, :1]},
            ValueError,
            r"length >= 2\); got \(50, 1\) and \(50, 1\)",
        ),
        (lambda e: {"indices": e["indices"][0]}, ValueError, r"same shape .* got \(4,\)"),
        (lambda e: {"times": e["times"][:, :3]}, ValueError, r"got \(50, 4\) and \(50, 3\)"),
        (
            lambda e: {"indices": e["indices"][:0], "times": e["times"][:0]},
            ValueError,
            r"holds no trajectories \(0 rows in 'indices'\)",
        ),
        (lambda e: {"indices": e["indices"].astype(float)}, TypeError, "must be integers"),
        (
            lambda e: {"indices": e["indices"] + 437},
            ValueError,
            r"\['indices'\] refer to cells outside \[0, 437\)",
        ),
        (lambda e: {"indices": e["indices"] - 437}, ValueError, r"outside \[0, 437\)"),
        (lambda e: {"times": e["times"][:, ::-1]}, ValueError, "must be finite, non-decreasing"),
        (
            lambda e: {"times": np.where(e["times"] > 2, np.nan, e["times"])},
            ValueError,
            "must be finite, non-decreasing",
        ),
        (
            lambda e: {"times": np.zeros_like(e["times"])},
            ValueError,
            "holds no usable trajectory: every one has zero duration",
        ),
    ],
)
def test_bad_trajectories(guo, change, error, match):
    _set(guo, **change(guo.uns[TRAJ]))
    before = {k: np.copy(v) for k, v in guo.uns[TRAJ].items() if k != "params"}
    with pytest.raises(error, match=match):
        read_trajectories(guo, TRAJ)
    for k, v in before.items():
        np.testing.assert_array_equal(guo.uns[TRAJ][k], v)


def test_float_indices_are_also_a_value_error(guo):
    """Some readers raised ValueError here, others TypeError: both clauses catch it."""
    _set(guo, indices=guo.uns[TRAJ]["indices"].astype(float))
    with pytest.raises(ValueError, match="must be integers"):
        read_trajectories(guo, TRAJ, require_progress=False)


def test_loose_checks_of_the_metrics(guo):
    times = guo.uns[TRAJ]["times"]
    _set(guo, times=times[:, ::-1].copy())  # decreasing: kept, the metric skips such steps
    found = read_trajectories(guo, TRAJ, require_progress=False)
    np.testing.assert_array_equal(found.times, times[:, ::-1])
    _set(guo, times=np.where(times > 2, np.inf, times))
    with pytest.raises(ValueError, match=r"\['times'\] must be finite\.$"):
        read_trajectories(guo, TRAJ, require_progress=False)


def test_subset_after_trajectories_is_caught(guo):
    subset = guo[guo.obs["time"] < 5].copy()
    with pytest.raises(ValueError, match=rf"outside \[0, {subset.n_obs}\): was adata subset"):
        read_trajectories(subset, TRAJ)


def test_missing_trajectories(guo):
    with pytest.raises(KeyError, match=r"Run `celldyn.pp.trajectories` first"):
        read_trajectories(guo, "nope")
    guo.uns[TRAJ] = np.zeros((3, 2), dtype=int)  # not a dict
    with pytest.raises(KeyError, match="needs 'indices' and 'times'"):
        read_trajectories(guo, TRAJ)


def test_consumers_share_the_reader(guo):
    """The metric and the plot raise the reader's message for the same bad entry."""
    _set(guo, indices=guo.uns[TRAJ]["indices"] + 437)
    with pytest.raises(ValueError, match=r"refer to cells outside \[0, 437\)"):
        cd.metrics.trajectory_quality(guo)
    with pytest.raises(ValueError, match=r"refer to cells outside \[0, 437\)"):
        cd.pl.trajectories(guo, basis="pca", color=None, show=False)


# ----------------------------------------------------------------------------- prior
def test_prior_edges_are_the_non_zeros_row_major(guo):
    edges = read_prior(guo, PRIOR)
    assert isinstance(edges, PriorEdges)
    rows, cols = np.nonzero(guo.varp[PRIOR].toarray())  # row-major
    assert edges.n_edges == len(rows) == 34
    np.testing.assert_array_equal(edges.src, rows)
    np.testing.assert_array_equal(edges.dst, cols)
    assert edges.src.dtype == edges.dst.dtype == np.int64


def test_prior_duplicates_are_summed_and_zeros_dropped(guo):
    n = guo.n_vars
    # (0, 1) twice summing to 0, (2, 3) twice summing to 2, an explicit zero at (4, 5)
    guo.varp[PRIOR] = sp.coo_matrix(
        ([1.0, -1.0, 1.0, 1.0, 0.0], ([0, 0, 2, 2, 4], [1, 1, 3, 3, 5])), shape=(n, n)
    ).tocsr()
    edges = read_prior(guo, PRIOR)
    np.testing.assert_array_equal(edges.src, [2])
    np.testing.assert_array_equal(edges.dst, [3])


def test_bad_prior(guo):
    n = guo.n_vars
    with pytest.raises(KeyError, match=r"Run `celldyn.pp.prior_network` first"):
        read_prior(guo, "nope")
    guo.varp["empty"] = sp.csr_matrix((n, n))
    with pytest.raises(ValueError, match=r"adata.varp\['empty'\] has no edges"):
        read_prior(guo, "empty")
    guo.varp["zeros"] = np.zeros((n, n))
    with pytest.raises(ValueError, match="no edges"):
        read_prior(guo, "zeros")
    nan = guo.varp[PRIOR].toarray()
    nan[np.nonzero(nan)[0][0], np.nonzero(nan)[1][0]] = np.nan
    guo.varp["nan"] = sp.csr_matrix(nan)
    with pytest.raises(ValueError, match=r"adata.varp\['nan'\] contains NaN or infinite"):
        read_prior(guo, "nan")


# ----------------------------------------------------------------------------- loadings
def test_loadings(guo):
    loadings = read_loadings(guo, "PCs", 5)
    np.testing.assert_array_equal(loadings, guo.varm["PCs"][:, :5])
    assert loadings.shape == (48, 5) and loadings.dtype == np.float64
    with pytest.raises(KeyError, match="no loadings 'nope'"):
        read_loadings(guo, "nope", 5)
    with pytest.raises(ValueError, match=r"varm\['PCs'\] has shape \(48, 10\); at least 11"):
        read_loadings(guo, "PCs", 11)
    guo.varm["PCs"][3, 2] = np.nan
    with pytest.raises(ValueError, match=r"adata.varm\['PCs'\] contains 1 NaN"):
        read_loadings(guo, "PCs", 5)
    assert read_loadings(guo, "PCs", 2).shape == (48, 2)  # the NaN lies beyond 2 columns
