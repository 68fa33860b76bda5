"""tl.flecs: every written field, consistency with the model, bad input leaves adata as is."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from anndata.tests.helpers import assert_equal

import celldyn as cd
from celldyn.datasets import simulate_grn
from celldyn.pp import prior_network, time_groups, trajectories
from celldyn.tl._flecs import flecs

FAST = {"max_epochs": 10, "batch_size": 32, "lr": 0.05, "accelerator": "cpu", "progress": False}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def _prepared():
    adata = simulate_grn(8, 200, 4, random_state=0)
    net = adata.uns["ground_truth_network"]
    prior_network(adata, net, add_random_edges=2 * len(net) / 64)
    time_groups(adata, time_key="time")
    trajectories(adata, method="quantile", rep="X", n_trajectories=60, length=4)
    return adata


@pytest.fixture
def adata(_prepared):
    return _prepared.copy()


def test_writes_every_field(adata):
    before = adata.copy()
    flecs(adata, **FAST)
    prior = sp.csr_matrix(adata.varp["celldyn_prior"])
    weights = adata.varp["flecs_weights"]
    assert sp.isspmatrix_csr(weights) or isinstance(weights, sp.csr_array)
    assert set(zip(*weights.nonzero(), strict=True)) == set(zip(*prior.nonzero(), strict=True))
    decay = adata.var["flecs_decay"].to_numpy()
    bias = adata.var["flecs_bias"].to_numpy()
    assert np.all(decay > 0) and np.all(np.isfinite(bias))
    velocity = adata.layers["flecs_velocity"]
    assert velocity.dtype == np.float32 and velocity.shape == adata.shape
    x = np.asarray(adata.X, dtype=np.float64)
    expected = 1 / (1 + np.exp(-(x @ weights.toarray() + bias))) - decay * x
    np.testing.assert_allclose(velocity, expected, rtol=1e-4, atol=1e-5)
    assert adata.var["flecs_velocity_genes"].all()
    assert adata.uns["flecs_velocity_params"] == {"embeddings": [], "xkey": "Ms"}
    np.testing.assert_array_equal(adata.layers["Ms"], x.astype(np.float32))  # scvelo's state
    history = adata.uns["flecs"]["history"]["train_loss"]
    assert isinstance(history, list) and len(history) == FAST["max_epochs"]
    assert history[-1] < history[0]
    assert adata.uns["flecs"]["params"]["max_epochs"] == FAST["max_epochs"]
    # nothing else changed, no scvi registration leaked into adata
    assert not any(k.startswith("_scvi") for k in adata.uns)
    assert_equal(adata.obs, before.obs)
    assert set(adata.uns) == set(before.uns) | {"flecs", "flecs_velocity_params"}


def test_reproducible_and_copy(adata):
    out = flecs(adata, copy=True, key_added="f1", **FAST)
    assert "f1_velocity" not in adata.layers
    flecs(adata, key_added="f1", **FAST)
    np.testing.assert_array_equal(out.layers["f1_velocity"], adata.layers["f1_velocity"])


def _no_edges(a):
    a.varp["celldyn_prior"] = sp.csr_matrix(a.varp["celldyn_prior"].shape)


def _nan_x(a):
    a.X[0, 0] = np.nan


def _bad_times(a):
    a.uns["celldyn_trajectories"]["times"] = a.uns["celldyn_trajectories"]["times"][:, ::-1]


@pytest.mark.parametrize(
    ("change", "kwargs", "error", "match"),
    [
        (None, {"prior": "missing"}, KeyError, "missing"),
        (_no_edges, {}, ValueError, "no edges"),
        (None, {"trajectories": "gone"}, KeyError, "gone"),
        (_bad_times, {}, ValueError, "non-decreasing"),
        (_nan_x, {}, ValueError, "NaN"),
        (None, {"layer": "nope"}, KeyError, "nope"),
        (None, {"rtol": -1}, ValueError, "`rtol` must be a finite positive number, got -1"),
        (None, {"atol": 0.0}, ValueError, "`atol` must be a finite positive number"),
        (None, {"rtol": 1e-3, "atol": np.inf}, ValueError, "`atol`"),
    ],
)
def test_bad_input_leaves_adata_unchanged(adata, change, kwargs, error, match):
    if change is not None:
        change(adata)
    before = adata.copy()
    with pytest.raises(error, match=match):
        flecs(adata, **{**FAST, **kwargs})
    assert_equal(adata, before)


def test_ensemble_mean_std_and_stored_members(adata, tmp_path):
    import anndata as ad

    from celldyn.tl import load_flecs_fields

    fast = {**FAST, "max_epochs": 3}
    flecs(adata, n_models=3, **fast)
    fields = load_flecs_fields(adata)
    assert len(fields) == 3
    member_w = np.stack([f.prior_edge_weights().detach().numpy() for f in fields])
    n_prior = fields[0].n_prior_edges
    src, dst = fields[0].src[:n_prior].numpy().copy(), fields[0].dst[:n_prior].numpy().copy()
    mean = np.asarray(adata.varp["flecs_weights"][src, dst]).ravel()
    std = np.asarray(adata.varp["flecs_weights_std"][src, dst]).ravel()
    np.testing.assert_allclose(mean, member_w.mean(0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(std, member_w.std(0, ddof=1), rtol=1e-5, atol=1e-7)
    assert np.all(std > 0)
    effects_std = np.asarray(adata.varp["flecs_effects_std"][src, dst]).ravel()
    assert np.all(np.isfinite(effects_std)) and np.all(effects_std > 0)
    x = torch.as_tensor(np.asarray(adata.X, dtype=np.float32))
    with torch.no_grad():
        velocities = [f.gene_velocity(x).numpy() for f in fields]
    np.testing.assert_allclose(adata.layers["flecs_velocity"], np.mean(velocities, 0), atol=1e-6)
    decay = np.mean([f.decay.detach().numpy() for f in fields], 0)
    np.testing.assert_allclose(adata.var["flecs_decay"], decay, rtol=1e-6)
    assert set(adata.uns["flecs"]["member_histories"]) == {"0", "1", "2"}
    # member 0 is the single fit with the same seed
    single = flecs(adata, copy=True, key_added="one", **fast)
    np.testing.assert_allclose(
        single.varp["one_weights"][src, dst].A1, member_w[0], rtol=1e-6, atol=1e-7
    )
    assert "one_weights_std" not in single.varp and "one_effects_std" not in single.varp
    # the stored members survive an h5ad round trip
    adata.write_h5ad(tmp_path / "f.h5ad")
    again = load_flecs_fields(ad.read_h5ad(tmp_path / "f.h5ad"))
    for f, g in zip(fields, again, strict=True):
        with torch.no_grad():
            assert torch.equal(f.gene_velocity(x), g.gene_velocity(x))


def test_knockout_removes_outgoing_prior_edges(adata):
    prior = sp.csr_matrix(adata.varp["celldyn_prior"])
    gene = adata.var_names[int(np.argmax(np.diff(prior.indptr)))]  # most outgoing edges
    row = adata.var_names.get_loc(gene)
    flecs(adata, knockout=[gene], **{**FAST, "max_epochs": 2})
    weights = adata.varp["flecs_weights"]
    assert weights[row].nnz == 0
    kept = prior.copy()
    kept[row] = 0
    kept.eliminate_zeros()
    assert set(zip(*weights.nonzero(), strict=True)) == set(zip(*kept.nonzero(), strict=True))
    assert adata.uns["flecs"]["params"]["knockout"] == [gene]
    assert adata.varp["celldyn_prior"][row].nnz == prior[row].nnz  # the prior itself is kept


def test_load_fields_errors(adata):
    from celldyn.tl import load_flecs_fields

    with pytest.raises(KeyError, match="tl.flecs"):
        load_flecs_fields(adata, key="flecs")
    adata.uns["flecs"] = {"params": {}}
    with pytest.raises(KeyError, match="no fitted models"):
        load_flecs_fields(adata)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"knockout": ["not_a_gene"]}, KeyError, "not_a_gene"),
        ({"n_models": 0}, ValueError, "n_models"),
    ],
)
def test_bad_intervention_input_leaves_adata_unchanged(adata, kwargs, error, match):
    before = adata.copy()
    with pytest.raises(error, match=match):
        flecs(adata, **{**FAST, **kwargs})
    assert_equal(adata, before)


def test_resampled_members_see_bootstrap_trajectories(adata):
    fast = {**FAST, "max_epochs": 12}
    flecs(adata, n_models=2, resample=True, key_added="boot", **fast)
    flecs(adata, n_models=2, key_added="seed", **fast)
    assert adata.uns["boot"]["params"]["resample"] is True
    # members trained on different resamples spread more than members differing by seed only
    boot = adata.varp["boot_weights_std"].data.mean()
    seed = adata.varp["seed_weights_std"].data.mean()
    print(f"mean weight std: resampled {boot:.4f}, seeds only {seed:.4f}")
    assert boot > 1.1 * seed


def test_diverging_fit_raises_promptly(assert_unchanged):
    """lr = 1e8 makes the field stiff (decays ~1e8): the training solver's step bound
    (default, not patched) stops the fit in seconds with an error naming `lr` (before the
    bound it ran for 15 min; with a per-output-time bound of 10,000 steps, ~30 s)."""
    import time

    from celldyn.nn import SolverDivergedError

    adata = cd.datasets.simulate_grn(8, 200, 4, random_state=0)
    cd.pp.prior_network(adata, adata.uns["ground_truth_network"])
    cd.pp.time_groups(adata, time_key="time")
    cd.pp.trajectories(adata, method="quantile", rep="X", n_trajectories=60, length=4)
    before = adata.copy()
    start = time.perf_counter()
    with pytest.raises(SolverDivergedError, match=r"max_num_steps=1000.*lower it") as info:
        cd.tl.flecs(adata, lr=1e8, max_epochs=5, accelerator="cpu", progress=False)
    elapsed = time.perf_counter() - start
    assert "`lr` is too large (now 100000000.0)" in str(info.value)
    assert elapsed < 60, f"the diverging fit took {elapsed:.0f} s"  # ~3 s here
    assert_unchanged(adata, before)


def _no_trajectories(a):
    entry = a.uns["celldyn_trajectories"]
    entry["indices"], entry["times"] = entry["indices"][:0], entry["times"][:0]


def _empty_trajectories(a):
    a.uns["celldyn_trajectories"].update(indices=np.zeros(0, int), times=np.zeros(0))


def _zero_durations(a):
    entry = a.uns["celldyn_trajectories"]
    entry["times"] = np.zeros_like(entry["times"])


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (_no_trajectories, r"adata.uns\['celldyn_trajectories'\] holds no trajectories"),
        (_empty_trajectories, r"adata.uns\['celldyn_trajectories'\] holds no trajectories"),
        (_zero_durations, r"adata.uns\['celldyn_trajectories'\] holds no usable trajectory"),
    ],
)
def test_zero_trajectories_raise_before_writing(adata, assert_unchanged, change, match):
    """No trajectory (or none that moves in time) is a clear ValueError naming the key, not
    numpy's "zero-size array" error."""
    change(adata)
    before = adata.copy()
    with pytest.raises(ValueError, match=match):
        flecs(adata, **FAST)
    assert_unchanged(adata, before)


def test_resampled_ensemble_with_ot_warm_start():
    """Bootstrap members keep what the OT warm start reads (time groups, rep, params)."""
    adata = cd.datasets.simulate_grn(8, 300, 4, random_state=0)
    cd.pp.prior_network(adata, adata.uns["ground_truth_network"], add_random_edges=0.3)
    cd.pp.time_groups(adata, time_key="time")
    cd.pp.trajectories(adata, method="quantile", rep="X", n_trajectories=60, length=4)
    cd.tl.flecs(
        adata,
        n_models=2,
        resample=True,
        max_epochs=2,
        velocity_target="ot",
        accelerator="cpu",
        progress=False,
    )
    std = adata.varp["flecs_weights_std"]
    assert std.nnz > 0 and np.isfinite(std.data).all()
