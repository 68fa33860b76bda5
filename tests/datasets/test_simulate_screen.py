"""simulate_diffusion_screen: layout, the stationary law it claims, and its settings."""

import numpy as np
import pytest

from celldyn.datasets import simulate_diffusion_screen


@pytest.fixture(scope="module")
def screen():
    return simulate_diffusion_screen(8, n_cells=3000, n_doubles=3, random_state=2)


def test_layout_and_ground_truth(screen):
    labels = list(screen.obs["perturbation"].cat.categories)
    assert labels[0] == "control" and labels[1:9] == [f"g{i}" for i in range(8)]
    assert len(labels) == 12 and all(q.count("+") == 1 for q in labels[9:])
    assert screen.shape == (12 * 3000, 8) and screen.X.dtype == np.float32
    assert np.all(screen.X == np.round(screen.X)) and screen.X.min() >= 0
    assert screen.layers["latent"].shape == screen.shape
    effects = screen.uns["ground_truth_effects"]  # regulator x target = A^T
    a = effects.T
    assert np.linalg.eigvals(a).real.max() < -0.1
    assert np.all((-np.diag(a) >= 0.5) & (-np.diag(a) <= 1.5))
    net = screen.uns["ground_truth_network"]
    genes = list(screen.var_names)
    rows, cols = net.source.map(genes.index), net.target.map(genes.index)
    np.testing.assert_array_equal(net.weight, effects[rows, cols])
    assert len(net) == np.count_nonzero(effects - np.diag(np.diag(effects)))


def test_latent_cells_follow_the_stationary_law(screen):
    sim = screen.uns["simulation"]
    a = screen.uns["ground_truth_effects"].T
    noise = np.diag(sim["noise"] ** 2)
    np.testing.assert_allclose(a @ sim["covariance"] + sim["covariance"] @ a.T, -noise, atol=1e-9)
    x = screen.layers["latent"].astype(np.float64)
    labels = screen.obs["perturbation"].to_numpy()
    for q, mean in zip(sim["conditions"], sim["means"], strict=True):
        cells = x[labels == q]
        se = np.sqrt(np.diag(sim["covariance"]) / len(cells))
        assert np.all(np.abs(cells.mean(0) - mean) < 5 * se), q
    # the mean shift of knocking down g_j is A^{-1} delta_j e_j: the CLIPR identity holds
    shifts = sim["means"][1:9] - sim["means"][0]
    np.testing.assert_allclose(a @ shifts.T, np.diag(sim["knockdown"]), atol=1e-9)
    np.testing.assert_allclose(sim["shifts"][1:9], -np.diag(sim["knockdown"]))
    control = x[labels == "control"]
    np.testing.assert_allclose(np.cov(control.T), sim["covariance"], atol=0.1)


def test_counts_follow_depth_and_dispersion():
    shallow = simulate_diffusion_screen(6, depth=2.0, n_doubles=0, random_state=0)
    deep = simulate_diffusion_screen(6, depth=40.0, n_doubles=0, random_state=0)
    np.testing.assert_allclose(deep.X.mean(0) / shallow.X.mean(0), 20.0, rtol=0.1)
    poisson = simulate_diffusion_screen(6, n_doubles=0, n_cells=2000, random_state=1)
    nb = simulate_diffusion_screen(6, n_doubles=0, n_cells=2000, dispersion=2.0, random_state=1)
    assert "dispersion" not in poisson.uns["simulation"]
    assert nb.uns["simulation"]["dispersion"] == 2.0
    assert np.all(nb.X.var(0) > 1.5 * poisson.X.var(0))


def test_network_settings():
    dense = simulate_diffusion_screen(30, density=0.3, n_doubles=0, n_cells=1, random_state=0)
    sparse = simulate_diffusion_screen(30, density=0.05, n_doubles=0, n_cells=1, random_state=0)
    n_pairs = 30 * 29
    assert abs(len(dense.uns["ground_truth_network"]) / n_pairs - 0.3) < 0.05
    assert abs(len(sparse.uns["ground_truth_network"]) / n_pairs - 0.05) < 0.03
    active = simulate_diffusion_screen(30, positive_fraction=1.0, n_doubles=0, n_cells=1)
    assert (active.uns["ground_truth_network"]["sign"] == 1).all()
    dag = simulate_diffusion_screen(12, acyclic=True, n_doubles=0, n_cells=1, random_state=3)
    off = dag.uns["ground_truth_effects"] != 0
    np.fill_diagonal(off, False)
    # a DAG's adjacency is nilpotent
    assert not np.linalg.matrix_power(off.astype(float), 12).any()
    again = simulate_diffusion_screen(12, acyclic=True, n_doubles=0, n_cells=1, random_state=3)
    np.testing.assert_array_equal(dag.X, again.X)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_genes": 1}, "n_genes"),
        ({"density": 1.5}, "density"),
        ({"positive_fraction": -0.1}, "positive_fraction"),
        ({"noise_range": (0.0, 1.0)}, "noise_range"),
        ({"knockdown_range": (2.0, 1.0)}, "knockdown_range"),
        ({"depth": 0.0}, "depth"),
        ({"dispersion": -1.0}, "dispersion"),
        ({"n_cells": 0}, "n_cells"),
        ({"n_doubles": 100}, "n_doubles"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_diffusion_screen(**{"n_genes": 5, **kwargs})
    with pytest.raises(TypeError, match="random_state"):
        simulate_diffusion_screen(5, random_state=0.5)
