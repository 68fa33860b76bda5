import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from celldyn.datasets import simulate_grn
from celldyn.datasets._graphs import random_graph


@pytest.fixture(scope="module")
def _sim():
    return simulate_grn(20, 1000, 8, random_state=3)


@pytest.fixture(scope="module")
def _branching():
    return simulate_grn(20, 1200, 6, branching=True, random_state=1)


def _weights(adata):
    genes = list(adata.var_names)
    net = adata.uns["ground_truth_network"]
    w = np.zeros((len(genes), len(genes)))
    w[net.source.map(genes.index), net.target.map(genes.index)] = net.weight
    return w


def _drift(adata, g):
    sim = adata.uns["simulation"]
    return expit(g @ _weights(adata) + sim["bias"]) - sim["decay"] * g


def test_layout_and_keys(_sim):
    a = _sim
    assert a.shape == (1000, 20)
    assert list(a.var_names[:3]) == ["G0", "G1", "G2"]
    assert a.X.dtype == np.float32 and a.layers["true_velocity"].dtype == np.float32
    assert (a.X >= 0).all()
    times = a.obs["time"].to_numpy()
    np.testing.assert_allclose(np.unique(times), np.linspace(0, 5, 8))
    assert np.all(np.diff(times) >= 0)
    assert (pd.Series(times).value_counts() == 125).all()
    net = a.uns["ground_truth_network"]
    assert list(net.columns) == ["source", "target", "weight", "sign"]
    assert len(net) == 40 and (net.source != net.target).all()
    assert (np.sign(net.weight) == net.sign).all()
    assert {"decay", "bias", "init_state", "timepoints"} <= set(a.uns["simulation"])


def test_reproducible():
    a, b = simulate_grn(8, 200, 4, random_state=7), simulate_grn(8, 200, 4, random_state=7)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.layers["true_velocity"], b.layers["true_velocity"])
    pd.testing.assert_frame_equal(a.uns["ground_truth_network"], b.uns["ground_truth_network"])
    c = simulate_grn(8, 200, 4, random_state=8)
    assert not np.allclose(a.X, c.X)


def test_true_velocity_is_the_drift(_sim):
    expected = _drift(_sim, _sim.X.astype(np.float64))
    np.testing.assert_allclose(_sim.layers["true_velocity"], expected, atol=1e-5)


def test_true_velocity_matches_finite_differences():
    # without noise every cell of a snapshot sits on the same path; one Euler step per interval
    a = simulate_grn(10, 110, 11, noise=0, init_spread=0, t_max=1.0, dt=0.1, random_state=2)
    times = a.obs["time"].to_numpy()
    path = np.array([a.X[times == t][0] for t in np.unique(times)], dtype=np.float64)
    velocity = np.array([a.layers["true_velocity"][times == t][0] for t in np.unique(times)])
    np.testing.assert_allclose(np.diff(path, axis=0) / 0.1, velocity[:-1], atol=1e-4)
    assert np.abs(velocity).max() > 0.3


def test_dynamics_not_degenerate(_sim):
    times = _sim.obs["time"].to_numpy()
    means = np.array([_sim.X[times == t].mean(0) for t in np.unique(times)])
    assert (np.ptp(means, axis=0) > 0.1).sum() >= 15  # most genes change over time
    late = np.abs(_sim.layers["true_velocity"][times == times.max()]).mean(0)
    early = np.abs(_sim.layers["true_velocity"][times == 0]).mean(0)
    assert (late > 0.01).sum() >= 15 and late.max() > 0.1
    assert late.mean() < early.mean()  # relaxing, but still moving at t_max


def test_branching_gives_two_lineages(_branching):
    a = _branching
    lineage = a.obs["lineage"]
    assert list(lineage.cat.categories) == ["A", "B"]
    assert 0.35 < (lineage == "A").mean() < 0.65
    times = a.obs["time"].to_numpy()
    start = times == 0
    np.testing.assert_array_equal(a.X[start, 0], a.X[start, 1])  # symmetric start
    last = times == times.max()
    lab = lineage[last].to_numpy()
    toggle_a, toggle_b = a.X[last, 0], a.X[last, 1]
    assert np.all((toggle_a > toggle_b) == (lab == "A"))
    # the downstream genes alone separate the two fates into two clusters
    clusters = KMeans(2, n_init=5, random_state=0).fit_predict(a.X[last, 2:])
    assert adjusted_rand_score(clusters, lab) > 0.8
    net = a.uns["ground_truth_network"]
    into_toggle = net[net.target.isin(["G0", "G1"])]
    assert set(zip(into_toggle.source, into_toggle.target, into_toggle.sign, strict=True)) == {
        ("G0", "G0", 1),
        ("G1", "G1", 1),
        ("G0", "G1", -1),
        ("G1", "G0", -1),
    }


def test_counts_mode():
    a = simulate_grn(15, 600, 5, counts=True, random_state=4)
    x = a.X
    assert x.dtype == np.float32 and (x >= 0).all() and np.array_equal(x, np.round(x))
    g = a.layers["expression"].astype(np.float64)
    np.testing.assert_allclose(a.layers["true_velocity"], _drift(a, g), atol=1e-5)
    rate = g * a.uns["simulation"]["gene_scale"] * a.obs["size_factor"].to_numpy()[:, None]
    assert abs(x.sum() / rate.sum() - 1) < 0.01
    assert np.corrcoef(x.ravel(), rate.ravel())[0, 1] > 0.9


def test_given_network():
    net = pd.DataFrame(
        {"source": ["a", "b", "c", "a"], "target": ["b", "c", "a", "c"], "weight": [2.0, -3, 1, 1]}
    )
    a = simulate_grn(n_cells=100, n_timepoints=4, network=net)
    assert list(a.var_names) == ["a", "b", "c"]
    truth = a.uns["ground_truth_network"].set_index(["source", "target"])["weight"]
    assert truth.to_dict() == net.set_index(["source", "target"])["weight"].to_dict()
    np.testing.assert_allclose(a.layers["true_velocity"], _drift(a, a.X.astype(float)), atol=1e-5)


def test_erdos_renyi_and_scale_free_graphs():
    rng = np.random.default_rng(0)
    sf = random_graph(200, 400, "scale_free", rng)
    er = random_graph(200, 400, "erdos_renyi", rng)
    assert sf.sum() == er.sum() == 400 and not sf.diagonal().any()
    assert sf.sum(1).max() > 2 * er.sum(1).max()  # hub regulators
    assert (sf.sum(1) == 0).sum() > 2 * (er.sum(1) == 0).sum()  # many non-regulators
    a = simulate_grn(10, 100, 3, topology="erdos_renyi", n_edges=15)
    assert len(a.uns["ground_truth_network"]) == 15


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_genes": 1}, "n_genes"),
        ({"n_timepoints": 1}, "n_timepoints"),
        ({"topology": "small_world"}, "topology"),
        ({"noise": -1.0}, "noise"),
        ({"n_cells": 3, "n_timepoints": 4}, "n_cells"),
        ({"n_edges": 0}, "n_edges"),
        (
            {"branching": True, "network": pd.DataFrame({"source": ["a"], "target": ["b"]})},
            "branching",
        ),
        ({"network": pd.DataFrame({"source": ["a"], "tgt": ["b"]})}, "target"),
        ({"network": pd.DataFrame({"source": ["a", "a"], "target": ["b", "b"]})}, "duplicated"),
        ({"network": pd.DataFrame({"source": ["a"], "target": ["b"], "weight": [np.nan]})}, "NaN"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises((ValueError, KeyError, TypeError), match=match):
        simulate_grn(**kwargs)


def test_bad_seed_and_network_type():
    with pytest.raises(TypeError, match="random_state"):
        simulate_grn(random_state=None)
    with pytest.raises(TypeError, match="DataFrame"):
        simulate_grn(network={"source": ["a"], "target": ["b"]})


def test_h5ad_round_trip(tmp_path):
    import anndata

    a = simulate_grn(6, 60, 3, branching=True, counts=True)
    a.write_h5ad(tmp_path / "g.h5ad")
    b = anndata.read_h5ad(tmp_path / "g.h5ad")
    pd.testing.assert_frame_equal(
        b.uns["ground_truth_network"], a.uns["ground_truth_network"], check_dtype=False
    )
    np.testing.assert_array_equal(b.uns["simulation"]["bias"], a.uns["simulation"]["bias"])
    assert b.obs["lineage"].tolist() == a.obs["lineage"].tolist()
