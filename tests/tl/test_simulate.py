"""tl.simulate and tl.knockout on hand-made networks with known answers."""

import numpy as np
import pandas as pd
import pytest
import torch
from anndata import AnnData
from anndata.tests.helpers import assert_equal

from celldyn.nn import GRNVectorField, integrate
from celldyn.tl._simulate import knockout, simulate

GENES = [f"g{i}" for i in range(6)]
# g0 -> g1 (+2), g1 -> g2 (-3), g0 -> g3 (-2), g4 -> g5 (+1.5): g4 and g5 are not downstream of g0
EDGES = [(0, 1, 2.0), (1, 2, -3.0), (0, 3, -2.0), (4, 5, 1.5)]
BIAS = np.array([0.5, -1.0, 0.3, 0.0, 1.0, -0.5])
DECAY = np.array([0.5, 0.4, 0.6, 0.5, 0.3, 0.7])


def _field(weight_factor=1.0):
    src, dst, w = zip(*EDGES, strict=True)
    field = GRNVectorField(6, list(src), list(dst), decay_init=torch.tensor(DECAY), kernel="dense")
    with torch.no_grad():
        field.grn.weight.copy_(torch.tensor(w) * weight_factor)
        field.bias.copy_(torch.tensor(BIAS))
    return field


@pytest.fixture
def adata():
    rng = np.random.default_rng(0)
    adata = AnnData(
        rng.uniform(0.5, 2.0, (20, 6)).astype(np.float32),
        obs=pd.DataFrame(
            {"t": np.repeat([0.0, 1.0, 2.0, 3.0], 5)}, index=[f"c{i}" for i in range(20)]
        ),
    )
    adata.var_names = GENES
    adata.uns["traj"] = {
        "indices": np.array([[0, 5, 10], [5, 10, 15]]),
        "times": np.array([[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]]),
        "params": {"time_key": "t"},
    }
    adata.uns["flecs"] = {
        "params": {"trajectories": "traj"},
        "models": {"0": _field().to_arrays(), "1": _field(0.5).to_arrays()},
    }
    return adata


def test_simulate_shape_obs_and_agreement_with_integrate(adata):
    before = adata.copy()
    out = simulate(adata, start=["c3", "c7", "c11"], t_max=2.0, n_steps=5)
    assert_equal(adata, before)
    assert out.shape == (2 * 3 * 6, 6) and list(out.var_names) == GENES
    assert out.obs["trajectory"].nunique() == 6
    np.testing.assert_allclose(out.obs["time"].to_numpy()[:6], np.linspace(0, 2, 6))
    assert list(out.obs["start_cell"].iloc[[0, 6, 12, 18]]) == ["c3", "c7", "c11", "c3"]
    assert list(out.obs["member"].iloc[[0, 17, 18]]) == [0, 0, 1]
    x0 = torch.as_tensor(adata.X[[3, 7, 11]])
    with torch.no_grad():
        for member, factor in enumerate((1.0, 0.5)):
            field = _field(factor)
            expected = integrate(field, field.initial_state(x0), torch.linspace(0, 2, 6))
            got = out.X[out.obs["member"].to_numpy() == member].reshape(3, 6, 6)
            # adaptive steps are shared by both members: equal within the solver tolerance
            np.testing.assert_allclose(got, expected.permute(1, 0, 2).numpy(), atol=2e-4)
    fixed = {"method": "rk4", "options": {"step_size": 0.1}}
    out = simulate(adata, start=["c3", "c7", "c11"], t_max=2.0, n_steps=5, **fixed)
    with torch.no_grad():
        field = _field(1.0)
        expected = integrate(field, field.initial_state(x0), torch.linspace(0, 2, 6), **fixed)
    got = out.X[out.obs["member"].to_numpy() == 0].reshape(3, 6, 6)
    np.testing.assert_allclose(got, expected.permute(1, 0, 2).numpy(), rtol=1e-6, atol=1e-7)


def test_simulate_defaults_from_trajectories(adata):
    out = simulate(adata)
    assert set(out.obs["start_cell"]) == {f"c{i}" for i in range(5)}  # earliest time group
    assert out.obs["time"].max() == pytest.approx(3.0)  # trajectories span 0..3
    assert out.uns["simulation"]["n_steps"] == 10


def test_knockout_changes_only_descendants_in_edge_direction(adata):
    out = knockout(adata, "g0", start=np.arange(20), t_max=3.0, n_steps=6)
    wt = out[out.obs["condition"] == "wild_type"].X
    ko = out[out.obs["condition"] == "knockout"].X
    late = (out[out.obs["condition"] == "wild_type"].obs["time"] > 0).to_numpy()
    diff = (wt - ko)[late]
    # genes not downstream of g0 (g0 itself, g4, g5) follow exactly the same path
    assert np.all(diff[:, [0, 4, 5]] == 0.0)
    # direct targets move with the sign of the removed edge (g0 > 0): wt - ko has the edge sign
    assert np.all(diff[:, 1] > 0) and np.all(diff[:, 3] < 0)
    # g2 is repressed by g1, which the knockout lowers: g2 rises
    assert np.all(diff[:, 2] < 0)
    assert out.uns["simulation"]["genes"] == ["g0"]


def test_knockout_of_all_regulators_gives_sigmoid_b_over_alpha(adata):
    t_max = 40.0
    out = knockout(adata, ["g0"], start=[0, 1], t_max=t_max, n_steps=8, rtol=1e-7, atol=1e-9)
    ko = out[(out.obs["condition"] == "knockout") & (out.obs["member"] == 0)]
    steady = 1 / (1 + np.exp(-BIAS[1])) / DECAY[1]
    times = ko.obs["time"].to_numpy()
    x0 = np.repeat(adata.X[[0, 1], 1], 9)
    analytic = steady + (x0 - steady) * np.exp(-DECAY[1] * times)
    np.testing.assert_allclose(ko.X[:, 1], analytic, rtol=1e-4)
    np.testing.assert_allclose(ko.X[times == t_max, 1], steady, rtol=1e-5)


def test_knockdown_scale_and_velocity_written(adata):
    knockout(adata, "g4", scale=0.5, start=[0], t_max=1.0, n_steps=2, key_added="ko")
    x = torch.as_tensor(adata.X)
    with torch.no_grad():
        expected = np.mean(
            [_field(f).knockout([4], 0.5).gene_velocity(x).numpy() for f in (1.0, 0.5)], 0
        )
    np.testing.assert_allclose(adata.layers["ko_velocity"], expected, atol=1e-7)
    assert adata.var["ko_velocity_genes"].all()
    assert adata.uns["ko_velocity_params"] == {"embeddings": [], "xkey": "Ms"}


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda a: knockout(a, "nope", start=[0]), KeyError, "nope"),
        (lambda a: knockout(a, "g0", key="missing", start=[0]), KeyError, "missing"),
        (lambda a: knockout(a, "g0", scale=-1, start=[0]), ValueError, "scale"),
        (lambda a: simulate(a, start=["zz"]), KeyError, "zz"),
        (lambda a: simulate(a, start=[99]), ValueError, "outside"),
        (lambda a: simulate(a, t_max=-1.0), ValueError, "t_max"),
        (lambda a: simulate(a, n_steps=0), ValueError, "n_steps"),
        (lambda a: simulate(a, layer="nolayer"), KeyError, "nolayer"),
        (lambda a: simulate(a, start=[0], rtol=-1), ValueError, "`rtol` must be a finite posi"),
        (lambda a: simulate(a, start=[0], atol=0.0), ValueError, "`atol` must be a finite posi"),
        (lambda a: simulate(a, start=[0], rtol=np.nan), ValueError, "`rtol`"),
        (lambda a: knockout(a, "g0", start=[0], rtol=-1, key_added="ko"), ValueError, "`rtol`"),
        (lambda a: knockout(a, "g0", start=[0], atol=-1, key_added="ko"), ValueError, "`atol`"),
    ],
)
def test_bad_input_leaves_adata_unchanged(adata, call, error, match):
    before = adata.copy()
    with pytest.raises(error, match=match):
        call(adata)
    assert_equal(adata, before)


def test_default_start_needs_a_time_key(adata):
    del adata.uns["traj"]["params"]
    with pytest.raises(KeyError, match="time_key"):
        simulate(adata)
    del adata.uns["traj"]
    with pytest.raises(KeyError, match="pass `start`"):
        simulate(adata, t_max=1.0)


def test_default_t_max_needs_time_points(adata):
    adata.uns["traj"]["times"] = np.zeros((0, 3))
    before = adata.copy()
    with pytest.raises(ValueError, match="pass `t_max`"):
        simulate(adata, start=[0])
    assert_equal(adata, before)


def test_not_fitted(adata):
    del adata.uns["flecs"]["models"]
    before = adata.copy()
    with pytest.raises(KeyError, match="no fitted models"):
        simulate(adata, start=[0])
    assert_equal(adata, before)
