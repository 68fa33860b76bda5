import numpy as np
import pandas as pd
import pytest

from celldyn.datasets import simulate_perturbations


@pytest.fixture(scope="module")
def _lin():
    return simulate_perturbations(12, n_cells=1000, n_doubles=8, random_state=5)


def _means(adata):
    labels = list(adata.uns["simulation"]["conditions"])
    lab = adata.obs["perturbation"].to_numpy()
    return labels, np.array([adata.X[lab == q].mean(0) for q in labels])


def _nonadditivity_z2(adata):
    """Mean squared z-score of l_AB − l_A − l_B over doubles and genes (≈1 if additive)."""
    lab = adata.obs["perturbation"].to_numpy()
    x = adata.X.astype(np.float64)
    mean = {q: x[lab == q].mean(0) for q in np.unique(lab)}
    var = {q: x[lab == q].var(0, ddof=1) / (lab == q).sum() for q in np.unique(lab)}
    z = []
    for q in adata.uns["simulation"]["conditions"]:
        if "+" in q:
            g1, g2 = q.split("+")
            conds = (q, g1, g2, "control")
            diff = mean[q] - mean[g1] - mean[g2] + mean["control"]
            z.append(diff / np.sqrt(sum(var[c] for c in conds)))
    return float(np.mean(np.square(z)))


def test_labels_and_layout(_lin):
    a = _lin
    labels = list(a.obs["perturbation"].cat.categories)
    assert labels[0] == "control" and labels[1:13] == [f"G{i}" for i in range(12)]
    doubles = labels[13:]
    assert len(doubles) == 8 and len(set(doubles)) == 8
    for d in doubles:
        i, j = (int(g[1:]) for g in d.split("+"))
        assert i < j
    assert (a.obs["perturbation"].value_counts() == 1000).all()
    assert list(a.uns["simulation"]["conditions"]) == labels
    assert a.X.dtype == np.float32 and a.shape == (21 * 1000, 12)


def test_stable_and_effects_orientation(_lin):
    effects = _lin.uns["ground_truth_effects"]  # regulator x target = A.T
    a_mat = effects.T
    assert np.linalg.eigvals(a_mat).real.max() <= -0.5 + 1e-9
    assert (np.diag(a_mat) < 0).all()
    net = _lin.uns["ground_truth_network"]
    genes = list(_lin.var_names)
    rows, cols = net.source.map(genes.index), net.target.map(genes.index)
    np.testing.assert_array_equal(net.weight, effects[rows, cols])
    off = effects - np.diag(np.diag(effects))
    assert np.count_nonzero(off) == len(net) == 24  # edges_per_gene * n_genes


def test_means_match_stationary_gaussian(_lin):
    sim = _lin.uns["simulation"]
    a_mat = _lin.uns["ground_truth_effects"].T
    labels, emp = _means(_lin)
    exact = -np.linalg.solve(a_mat, (sim["bias"] + sim["shifts"]).T).T
    np.testing.assert_allclose(sim["means"], exact)
    se = np.sqrt(np.diag(sim["covariance"]) / 1000)
    assert np.abs((emp - exact) / se).max() < 5
    lyap = a_mat @ sim["covariance"] + sim["covariance"] @ a_mat.T + 2 * np.eye(12)
    np.testing.assert_allclose(lyap, 0, atol=1e-10)
    ctrl = _lin.X[_lin.obs["perturbation"] == "control"]
    np.testing.assert_allclose(np.cov(ctrl.T), sim["covariance"], atol=0.25)


def test_clipr_identity_exact(_lin):
    sim = _lin.uns["simulation"]
    a_mat = _lin.uns["ground_truth_effects"].T
    shifts_l = sim["means"] - sim["means"][0]  # l_q = mu_q - mu_ctrl
    np.testing.assert_allclose(-shifts_l @ a_mat.T, sim["shifts"], atol=1e-10)  # -A l_q = c_q
    labels = list(sim["conditions"])
    for q, label in enumerate(labels):
        knocked = [] if label == "control" else [labels.index(g) - 1 for g in label.split("+")]
        expected = np.zeros(12)
        expected[knocked] = -2.0
        np.testing.assert_array_equal(sim["shifts"][q], expected)


def test_reproducible():
    a = simulate_perturbations(5, n_cells=20, n_doubles=2, random_state=1)
    b = simulate_perturbations(5, n_cells=20, n_doubles=2, random_state=1)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.uns["ground_truth_effects"], b.uns["ground_truth_effects"])
    assert not np.array_equal(a.X, simulate_perturbations(5, n_cells=20, random_state=2).X)


def test_nonlinear_doubles_are_not_additive():
    kwargs = dict(
        n_genes=6,
        edges_per_gene=2.5,
        n_cells=2000,
        n_doubles=5,
        perturbation_strength=4.0,
        random_state=1,
    )
    linear = simulate_perturbations(**kwargs)
    nonlinear = simulate_perturbations(nonlinear=True, **kwargs)
    z_lin, z_nl = _nonadditivity_z2(linear), _nonadditivity_z2(nonlinear)
    assert z_lin < 2.5  # additive up to sampling noise
    assert z_nl > 8
    sim = nonlinear.uns["simulation"]
    assert sim["model"] == "nonlinear" and sim["n_steps"] > 100 and "means" not in sim
    np.testing.assert_array_equal(
        nonlinear.uns["ground_truth_effects"], linear.uns["ground_truth_effects"]
    )


def test_counts_and_singles():
    a = simulate_perturbations(
        6, n_cells=300, singles=["G1", "G4", 5], n_doubles=3, counts=True, random_state=2
    )
    assert list(a.obs["perturbation"].cat.categories) == [
        "control",
        "G1",
        "G4",
        "G5",
        "G1+G4",
        "G1+G5",
        "G4+G5",
    ]
    x = a.X
    assert (x >= 0).all() and np.array_equal(x, np.round(x))
    latent = a.layers["latent"].astype(np.float64)
    rate = np.logaddexp(0, latent) * a.uns["simulation"]["gene_scale"]
    rate *= a.obs["size_factor"].to_numpy()[:, None]
    assert abs(x.sum() / rate.sum() - 1) < 0.02
    # knockdown lowers the knocked gene's latent mean and its counts
    lab = a.obs["perturbation"].to_numpy()
    assert latent[lab == "G4", 4].mean() < latent[lab == "control", 4].mean() - 0.5
    assert x[lab == "G4", 4].mean() < x[lab == "control", 4].mean()


def test_graph_options():
    a = simulate_perturbations(15, graph="scale_free", acyclic=True, n_cells=5, n_doubles=0)
    off = a.uns["ground_truth_effects"].copy()
    np.fill_diagonal(off, 0)
    assert not np.linalg.matrix_power(off != 0, 15).any()  # DAG: no walk of length n
    assert len(a.uns["ground_truth_network"]) == 30
    assert list(a.obs["perturbation"].cat.categories)[-1] == "G14"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_genes": 1}, "n_genes"),
        ({"graph": "complete"}, "graph"),
        ({"singles": ["G99"]}, "singles"),
        ({"singles": ["G1", 1]}, "repeated"),
        ({"n_genes": 4, "n_doubles": 7}, "n_doubles"),
        ({"n_cells": 0}, "n_cells"),
        ({"perturbation_strength": float("nan")}, "perturbation_strength"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_perturbations(**kwargs)


def test_bad_seed():
    with pytest.raises(TypeError, match="random_state"):
        simulate_perturbations(random_state=1.5)


def test_uns_writes_to_h5ad(tmp_path):
    a = simulate_perturbations(4, n_cells=10, n_doubles=1, counts=True)
    a.write_h5ad(tmp_path / "p.h5ad")
    import anndata

    b = anndata.read_h5ad(tmp_path / "p.h5ad")
    pd.testing.assert_frame_equal(
        b.uns["ground_truth_network"], a.uns["ground_truth_network"], check_dtype=False
    )
    np.testing.assert_array_equal(b.uns["ground_truth_effects"], a.uns["ground_truth_effects"])
