"""FLeCS model: training, getters, save/load and recovery of a simulated network."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from celldyn.datasets import simulate_grn
from celldyn.metrics import grn_scores
from celldyn.models._flecs import FLeCS
from celldyn.module._flecs import integrate_trajectories
from celldyn.nn import GRNVectorField, integrate
from celldyn.pp import prior_network, time_groups, trajectories

FAST = {"accelerator": "cpu", "progress": False}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _prepared(n_genes, n_cells, n_timepoints, n_trajectories):
    adata = simulate_grn(n_genes, n_cells, n_timepoints, random_state=0)
    net = adata.uns["ground_truth_network"]
    # the true edges plus about as many random false ones
    prior_network(adata, net, add_random_edges=2 * len(net) / n_genes**2)
    time_groups(adata, time_key="time")
    trajectories(adata, method="quantile", rep="X", n_trajectories=n_trajectories, length=6)
    return adata


@pytest.fixture(scope="module")
def small():
    return _prepared(8, 200, 4, 60)


def test_integrate_trajectories_matches_single_solves():
    field = GRNVectorField(3, [0, 1, 2], [1, 2, 0], weight_init_std=1.0)
    x0 = torch.tensor([[0.5, 1.0, 0.2], [1.0, 0.1, 0.3]])
    times = torch.tensor([[2.0, 2.5, 2.5, 3.0], [0.0, 0.2, 0.7, 0.9]])
    out = integrate_trajectories(field, x0, times, rtol=1e-7, atol=1e-9)
    assert out.shape == (2, 4, 3)
    for i in range(2):
        t = torch.unique(times[i] - times[i, 0])
        ref = integrate(field, x0[i], t, rtol=1e-7, atol=1e-9)
        expected = ref[torch.searchsorted(t, times[i] - times[i, 0])]
        torch.testing.assert_close(out[i], expected, rtol=1e-5, atol=1e-6)
    # a repeated time gives the same state; the first point is the start cell
    torch.testing.assert_close(out[0, 1], out[0, 2])
    torch.testing.assert_close(out[:, 0], x0)


def test_train_getters_and_save_load(small, tmp_path):
    FLeCS.setup_anndata(small)
    model = FLeCS(small)
    model.train(max_epochs=15, batch_size=32, lr=0.05, **FAST)
    loss = model.history["train_loss"].to_numpy().ravel()
    assert len(loss) == 15 and loss[-1] < 0.5 * loss[0]

    weights = model.get_weights()
    prior = sp.csr_matrix(small.varp["celldyn_prior"])
    assert sp.issparse(weights) and weights.shape == prior.shape
    # learnt weights sit exactly on the prior edges
    assert set(zip(*weights.nonzero(), strict=True)) == set(zip(*prior.nonzero(), strict=True))
    decay, bias = model.get_decay(), model.get_bias()
    assert decay.shape == bias.shape == (small.n_vars,) and np.all(decay >= 0)

    velocity = model.get_velocity()
    assert velocity.shape == small.shape and velocity.dtype == np.float32
    # the velocity is the FLeCS right-hand side with the reported parameters
    x = np.asarray(small.X, dtype=np.float64)
    expected = 1 / (1 + np.exp(-(x @ weights.toarray() + bias))) - decay * x
    np.testing.assert_allclose(velocity, expected, rtol=1e-4, atol=1e-5)

    model.save(tmp_path / "flecs", overwrite=True)
    loaded = FLeCS.load(tmp_path / "flecs", adata=small)
    np.testing.assert_array_equal(loaded.get_velocity(), velocity)
    np.testing.assert_array_equal(loaded.get_weights().toarray(), weights.toarray())


def test_recovers_simulated_network():
    adata = _prepared(12, 800, 6, 400)
    FLeCS.setup_anndata(adata)
    model = FLeCS(adata)
    model.train(max_epochs=200, batch_size=400, lr=0.1, **FAST)
    weights = model.get_weights().tocoo()
    candidates = pd.DataFrame(
        {"source": adata.var_names[weights.row], "target": adata.var_names[weights.col]}
    )
    truth = adata.uns["ground_truth_network"]
    scores = grn_scores(model.get_weights(), truth, genes=adata.var_names, candidates=candidates)
    # measured 0.68 (true edges vs random prior edges; 0.5 is chance)
    assert scores["auroc"] >= 0.6
    velocity, true = model.get_velocity(), adata.layers["true_velocity"]
    cosine = (
        (velocity * true).sum(1) / np.linalg.norm(velocity, axis=1) / np.linalg.norm(true, axis=1)
    )
    assert cosine.mean() >= 0.75  # measured 0.85


def test_bad_input(small):
    bad = small.copy()
    bad.varp["celldyn_prior"] = sp.csr_matrix(bad.varp["celldyn_prior"].shape)
    FLeCS.setup_anndata(bad)
    with pytest.raises(ValueError, match="no edges"):
        FLeCS(bad)
    with pytest.raises(KeyError, match="missing"):
        FLeCS(bad, prior="missing")
    with pytest.raises(KeyError, match="no layer"):
        FLeCS.setup_anndata(small.copy(), layer="nope")
    FLeCS.setup_anndata(small)
    model = FLeCS(small, trajectories="nothing")
    with pytest.raises(KeyError, match="nothing"):
        model.train(max_epochs=1, **FAST)


def test_nan_velocity_raises(small):
    from celldyn.nn import SolverDivergedError

    FLeCS.setup_anndata(small)
    model = FLeCS(small)
    with torch.no_grad():
        model.module.field.bias[0] = float("nan")
    with pytest.raises(SolverDivergedError, match="NaN"):
        model.get_velocity()


def test_seed_sets_initial_weights(small):
    FLeCS.setup_anndata(small)
    first, again, other = (FLeCS(small, seed=s).get_weights().data for s in (0, 0, 1))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
