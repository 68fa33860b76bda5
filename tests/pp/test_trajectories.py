import anndata as ad
import numpy as np
import pandas as pd
import pytest
from anndata.tests.helpers import assert_equal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.sparse.csgraph import dijkstra

import celldyn as cd
from celldyn.pp._knn import forward_knn_graph, knn, shortest_paths
from celldyn.pp._trajectories import _allocate, knn_pair_paths

KEY = "celldyn_trajectories"
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _cloud(sizes, n_dims, seed, times=None, shift=0.7):
    """Random point cloud drifting along the first axis with time; groups interleaved."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(size=(n, n_dims)) for n in sizes])
    group = np.repeat(np.arange(len(sizes)), sizes)
    x[:, 0] += shift * group
    times = np.arange(len(sizes), dtype=float) * 1.5 if times is None else np.asarray(times)
    perm = rng.permutation(len(x))
    adata = ad.AnnData(np.zeros((len(x), 1), dtype=np.float32))
    adata.obsm["X_pca"] = x[perm]
    adata.obs["celldyn_time"] = times[group[perm]]
    return adata


def _ramp(n_cells=1200, n_groups=6, seed=0):
    """Cells on a noisy 1-D ramp in 5-D: position along axis 0 grows with time."""
    rng = np.random.default_rng(seed)
    tau = rng.uniform(0, 1, n_cells)
    x = 0.05 * rng.normal(size=(n_cells, 5))
    x[:, 0] += 4 * tau
    adata = ad.AnnData(np.zeros((n_cells, 1), dtype=np.float32))
    adata.obsm["X_pca"] = x
    adata.obs["celldyn_time"] = np.minimum(np.floor(tau * n_groups), n_groups - 1)
    return adata


def _codes(adata):
    return np.unique(adata.obs["celldyn_time"].to_numpy(), return_inverse=True)[1]


# --- kNN graph and exact shortest paths -----------------------------------------------------


def test_knn_is_exact():
    x = np.random.default_rng(0).normal(size=(400, 6))
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    np.fill_diagonal(d, np.inf)
    np.testing.assert_array_equal(knn(x, 7), np.argsort(d, axis=1)[:, :7])


@SETTINGS
@given(
    n_a=st.integers(1, 25),
    n_b=st.integers(1, 25),
    n_dims=st.integers(1, 4),
    k=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_forward_graph_is_symmetrised_knn_without_backward_edges(n_a, n_b, n_dims, k, seed):
    x = np.random.default_rng(seed).normal(size=(n_a + n_b, n_dims))
    n = n_a + n_b
    graph = forward_knn_graph(x, n_a, k).toarray()
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    expected = np.zeros((n, n), dtype=bool)
    kk = min(k, n - 1)
    if kk >= 1:
        off = d + np.diag(np.full(n, np.inf))
        nbrs = np.argsort(off, axis=1)[:, :kk]
        expected[np.repeat(np.arange(n), kk), nbrs.ravel()] = True
        expected |= expected.T
    expected[n_a:, :n_a] = False  # no edge back in time
    np.testing.assert_array_equal(graph > 0, expected)
    np.testing.assert_allclose(graph[expected], d[expected])


@SETTINGS
@given(
    n_a=st.integers(1, 30),
    n_b=st.integers(1, 30),
    n_dims=st.integers(1, 4),
    k=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_raw_paths_are_exact_graph_shortest_paths(n_a, n_b, n_dims, k, seed):
    rng = np.random.default_rng(seed)
    x_a = rng.normal(size=(n_a, n_dims))
    x_b = rng.normal(size=(n_b, n_dims)) + rng.normal(size=n_dims)
    m = 12
    sources, targets = rng.integers(0, n_a, m), rng.integers(0, n_b, m)
    graph, nodes, offsets, dist, status = knn_pair_paths(x_a, x_b, sources, targets, k=k)
    dense = graph.toarray()
    full = dijkstra(graph, indices=np.unique(sources))
    row = {s: i for i, s in enumerate(np.unique(sources))}
    for q in range(m):
        path = nodes[offsets[q] : offsets[q + 1]]
        assert path[0] == sources[q]
        assert np.all((path >= 0) & (path < n_a + n_b))
        in_b = path >= n_a
        assert np.all(np.diff(in_b.astype(int)) >= 0)  # never goes back in time
        d_to_target = full[row[sources[q]], n_a + targets[q]]
        if status[q] == 0:
            assert path[-1] == n_a + targets[q]
            # A* is exact: same length as Dijkstra, and the path is made of graph edges
            assert dist[q] == pytest.approx(d_to_target, rel=1e-9, abs=1e-12)
        else:
            assert np.isinf(d_to_target)  # only unreachable targets are replaced
        if status[q] == 2:
            np.testing.assert_array_equal(path, [sources[q], n_a + targets[q]])
            assert not np.any(np.isfinite(full[row[sources[q]], n_a:]))
            continue
        steps = dense[path[:-1], path[1:]]
        assert np.all(steps > 0)
        assert steps.sum() == pytest.approx(dist[q], rel=1e-9, abs=1e-12)
        if status[q] == 1:  # redirected to the reachable later cell closest to the target
            reach = np.flatnonzero(np.isfinite(full[row[sources[q]], n_a:]))
            gap = np.linalg.norm(x_b[reach] - x_b[targets[q]], axis=1)
            assert path[-1] - n_a in reach[gap == gap.min()]
            assert dist[q] == pytest.approx(full[row[sources[q]], path[-1]], rel=1e-9)


def test_shortest_paths_on_large_graph_match_dijkstra():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1500, 12))
    x[:, 0] += np.linspace(0, 6, 1500)
    graph = forward_knn_graph(x, 700, 10)
    sources, targets = rng.integers(0, 700, 40), rng.integers(700, 1500, 40)
    nodes, offsets, dist, status = shortest_paths(graph, x, sources, targets)
    reference = dijkstra(graph, indices=sources)[np.arange(40), targets]
    assert np.all(status == 0)
    np.testing.assert_allclose(dist, reference, rtol=1e-10)
    assert len(nodes) == offsets[-1]


def test_allocate_is_proportional_and_exact():
    out = _allocate(10, np.array([1.0, 1.0, 2.0]))
    assert out.tolist() == [2, 3, 5] or out.tolist() == [3, 2, 5]
    assert _allocate(7, np.array([5.0, 9.0, 6.0])).sum() == 7


# --- pp.trajectories ----------------------------------------------------------------------


@SETTINGS
@given(
    sizes=st.lists(st.integers(1, 30), min_size=2, max_size=5),
    method=st.sampled_from(["knn", "quantile"]),
    n_trajectories=st.integers(1, 60),
    length=st.integers(2, 7),
    k=st.integers(1, 8),
    seed=st.integers(0, 2**16),
)
def test_trajectories_properties(sizes, method, n_trajectories, length, k, seed):
    times = np.cumsum(np.random.default_rng(seed).uniform(0.1, 2.0, len(sizes)))
    adata = _cloud(sizes, 3, seed, times=times)
    cd.pp.trajectories(
        adata,
        method=method,
        n_trajectories=n_trajectories,
        length=length,
        k=k,
        random_state=seed,
    )
    out = adata.uns[KEY]
    eff_length = length if method == "knn" else min(length, len(sizes))
    idx, tim, seg = out["indices"], out["times"], out["segment"]
    assert idx.shape == tim.shape == (n_trajectories, eff_length)
    assert idx.dtype == np.int64 and tim.dtype == np.float64
    assert np.all((idx >= 0) & (idx < adata.n_obs))
    codes = _codes(adata)
    group = codes[idx]
    assert np.all(np.diff(group, axis=1) >= 0)  # monotone in time group
    assert np.all(np.diff(tim, axis=1) >= 0)
    assert np.all(group[:, 0] == seg)
    if method == "knn":
        assert np.all(group[:, -1] == seg + 1)
        np.testing.assert_allclose(tim[:, 0], times[seg])
        np.testing.assert_allclose(tim[:, -1], times[seg + 1])
        assert np.all(out["n_path_cells"] >= 2)
        counts = np.bincount(seg, minlength=len(sizes) - 1)
        np.testing.assert_array_equal(counts, _allocate(n_trajectories, np.array(sizes[1:], float)))
    else:
        np.testing.assert_array_equal(group, seg[:, None] + np.arange(eff_length))
        np.testing.assert_allclose(tim, times[group])
    assert out["params"]["length"] == eff_length


def test_knn_times_follow_arc_length():
    adata = _ramp()
    cd.pp.trajectories(adata, n_trajectories=300, length=11, k=10)
    out = adata.uns[KEY]
    x = adata.obsm["X_pca"]
    exact = out["n_path_cells"] == 11  # every path cell is kept: steps are the path's edges
    assert exact.sum() > 10
    idx, tim = out["indices"][exact], out["times"][exact]
    steps = np.linalg.norm(np.diff(x[idx], axis=1), axis=2)
    expected = tim[:, :1] + (tim[:, -1:] - tim[:, :1]) * np.cumsum(steps, 1) / steps.sum(
        1, keepdims=True
    )
    np.testing.assert_allclose(tim[:, 1:], expected, rtol=1e-12)
    # short paths repeat cells, at equal times
    short = out["n_path_cells"] < 11
    rep = np.diff(out["indices"][short], axis=1) == 0
    assert rep.sum() > 0
    np.testing.assert_array_equal(np.diff(out["times"][short], axis=1)[rep], 0.0)


@pytest.mark.parametrize("method", ["knn", "quantile"])
def test_paths_move_forward_on_a_ramp(method):
    adata = _ramp()
    cd.pp.trajectories(adata, method=method, n_trajectories=300, length=6, k=10)
    pos = adata.obsm["X_pca"][adata.uns[KEY]["indices"], 0]
    gain = pos[:, -1] - pos[:, 0]
    assert np.mean(gain > 0) > 0.95
    steps = np.diff(pos, axis=1)
    assert np.mean(steps >= 0) > 0.7
    if method == "quantile":
        # one group per step (~0.67 along the ramp), matched by OT: close to the mean shift
        assert np.median(steps) == pytest.approx(4 / 6, abs=0.15)


def test_quantile_steps_cost_close_to_exact_ot():
    adata = _ramp()
    cd.pp.trajectories(adata, method="quantile", n_trajectories=300, length=6)
    cd.pp.couplings(adata)
    x = adata.obsm["X_pca"]
    idx = adata.uns[KEY]["indices"]  # 6 groups, length 6: every chain covers all groups
    step_cost = np.mean(np.sum(np.diff(x[idx], axis=1) ** 2, axis=2), axis=0)
    exact = adata.uns["celldyn_couplings"]["cost"]  # W2^2 between consecutive groups
    shuffled = np.stack([np.random.default_rng(c).permutation(idx[:, c]) for c in range(6)], 1)
    random_cost = np.mean(np.sum(np.diff(x[shuffled], axis=1) ** 2, axis=2), axis=0)
    assert np.all(step_cost < 1.15 * exact)
    assert np.all(step_cost < random_cost - 0.5 * (random_cost - exact))


def test_reproducible_with_seed():
    adata = _cloud([40, 50, 30], 4, 0)
    for method in ["knn", "quantile"]:
        a = cd.pp.trajectories(adata, method=method, n_trajectories=50, length=3, copy=True)
        b = cd.pp.trajectories(adata, method=method, n_trajectories=50, length=3, copy=True)
        c = cd.pp.trajectories(
            adata, method=method, n_trajectories=50, length=3, random_state=1, copy=True
        )
        np.testing.assert_array_equal(a.uns[KEY]["indices"], b.uns[KEY]["indices"])
        np.testing.assert_array_equal(a.uns[KEY]["times"], b.uns[KEY]["times"])
        assert not np.array_equal(a.uns[KEY]["indices"], c.uns[KEY]["indices"])


def test_quantile_length_capped_at_number_of_groups():
    adata = _cloud([20, 20, 20], 2, 1)
    cd.pp.trajectories(adata, method="quantile", n_trajectories=10, length=10)
    assert adata.uns[KEY]["indices"].shape == (10, 3)
    assert adata.uns[KEY]["params"]["length"] == 3


def test_quantile_windows_spread_over_start_groups():
    adata = _cloud([10, 30, 20, 40], 2, 2)
    cd.pp.trajectories(adata, method="quantile", n_trajectories=60, length=2)
    seg = adata.uns[KEY]["segment"]
    np.testing.assert_array_equal(np.bincount(seg), _allocate(60, np.array([10.0, 30, 20])))


def test_disconnected_groups_fall_back_and_are_counted():
    # two far-apart clusters per group and k=1: many matched pairs are unreachable
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(20, 2)) + [0, 50 * (i % 2)] for i in range(4)])
    adata = ad.AnnData(np.zeros((80, 1), dtype=np.float32), obsm={"X_pca": x})
    adata.obs["celldyn_time"] = np.repeat([0.0, 1.0], 40)
    cd.pp.trajectories(adata, n_trajectories=40, length=3, k=1)
    params = adata.uns[KEY]["params"]
    assert params["n_redirected"] + params["n_direct"] > 0
    assert adata.uns[KEY]["indices"].shape == (40, 3)


def test_float_and_categorical_time_and_unused_category():
    adata = _cloud([15, 15, 15], 2, 3, times=[0.25, 0.5, 2.0])
    cd.pp.trajectories(adata, n_trajectories=20, length=3)
    np.testing.assert_array_equal(adata.uns[KEY]["params"]["groups"], [0.25, 0.5, 2.0])
    labels = adata.obs["celldyn_time"].map({0.25: "d0", 0.5: "d1", 2.0: "d3"})
    adata.obs["day"] = pd.Categorical(labels, categories=["d0", "d1", "d2", "d3"], ordered=True)
    cd.pp.trajectories(adata, time_key="day", n_trajectories=20, length=3)
    # the empty category d2 is not a group: d1 cells are matched to d3 cells
    assert adata.uns[KEY]["params"]["groups"].tolist() == [0.0, 1.0, 2.0]


def test_copy_returns_new_object():
    adata = _cloud([10, 10], 2, 4)
    before = adata.copy()
    out = cd.pp.trajectories(adata, n_trajectories=5, length=2, key_added="paths", copy=True)
    assert_equal(adata, before)
    assert "paths" in out.uns


def _nan_rep(adata):
    adata.obsm["X_pca"][3, 1] = np.nan


def _one_group(adata):
    adata.obs["celldyn_time"] = 0.0


@pytest.mark.parametrize(
    ("corrupt", "kwargs", "error", "match"),
    [
        (None, {"time_key": "nope"}, KeyError, "nope"),
        (_one_group, {}, ValueError, "at least 2"),
        (None, {"rep": "X_umap"}, KeyError, "X_umap"),
        (_nan_rep, {}, ValueError, "NaN"),
        (None, {"n_trajectories": 0}, ValueError, "n_trajectories"),
        (None, {"n_trajectories": 2.5}, ValueError, "n_trajectories"),
        (None, {"length": 1}, ValueError, "length"),
        (None, {"k": 0}, ValueError, "`k`"),
        (None, {"method": "spline"}, ValueError, "method"),
        (None, {"batch_size": 0}, ValueError, "batch_size"),
    ],
)
def test_bad_input_leaves_adata_unchanged(corrupt, kwargs, error, match):
    adata = _cloud([10, 12, 9], 2, 5)
    if corrupt is not None:
        corrupt(adata)
    before = adata.copy()
    with pytest.raises(error, match=match):
        cd.pp.trajectories(adata, **kwargs)
    assert_equal(adata, before)
