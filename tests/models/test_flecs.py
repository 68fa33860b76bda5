"""FLeCS model: training, getters, save/load and recovery of a simulated network."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from sklearn.metrics import roc_auc_score

from celldyn.datasets import simulate_grn
from celldyn.metrics import grn_scores
from celldyn.models._flecs import FLeCS
from celldyn.module._flecs import (
    FLeCSModule,
    chord_velocities,
    fit_linear,
    fit_linear_blocks,
    fit_pairs,
    fit_velocities,
    flow_matching_pairs,
    integrate_trajectories,
    random_windows,
)
from celldyn.nn import GRNVectorField, SolverDivergedError, integrate
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


def test_time_grid_is_exact_on_the_grid_and_close_off_it():
    field = GRNVectorField(3, [0, 1, 2], [1, 2, 0], weight_init_std=1.0)
    x0 = torch.tensor([[0.5, 1.0, 0.2], [1.0, 0.1, 0.3], [0.2, 0.4, 0.9]])
    # trajectory 0 lies on the 5-point grid 0, 0.25, ..., 1 (its times shifted by 3);
    # the batch has 8 distinct shifted times, more than time_grid=5
    times = torch.tensor([[3.0, 3.25, 3.5, 4.0], [0.0, 0.13, 0.61, 0.97], [1.0, 1.3, 1.3, 1.9]])
    solver = {"method": "rk4", "options": {"step_size": 0.05}}
    out = integrate_trajectories(field, x0, times, time_grid=5, **solver)
    grid = torch.linspace(0, 1, 5)
    on_grid = field.gene_state(integrate(field, field.initial_state(x0), grid, **solver))
    assert torch.equal(out[0], on_grid[[0, 1, 2, 4], 0])
    exact = integrate_trajectories(field, x0, times, time_grid=None, **solver)
    assert torch.equal(out[:, 0], x0)
    # linear interpolation between grid times 0.25 apart: error ~1e-3 of states ~1
    torch.testing.assert_close(out, exact, rtol=0, atol=5e-3)
    assert (out - exact).abs().max() > 0  # trajectories 1, 2 were interpolated
    with pytest.raises(ValueError, match="time_grid"):
        integrate_trajectories(field, x0, times, time_grid=1)


def test_loss_counts_each_later_time_once():
    module = FLeCSModule(2, [0, 1], [1, 0])
    x = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [2.0, 1.0], [2.0, 1.0]]])
    t = torch.tensor([[0.0, 0.0, 1.0, 1.0]])  # a short path: cells repeat at equal times
    predicted = torch.zeros(1, 4, 2)
    inference = {"predicted": predicted, "observed": x, "times": t}
    loss = module.loss({"x": x, "t": t}, inference, {})
    # only position 2 counts (position 1 = start time, position 3 = repeat of position 2)
    assert float(loss.loss) == pytest.approx((2.0**2 + 1.0**2) / 2)
    inference["times"] = torch.zeros(1, 4)  # zero duration: nothing to fit, loss 0
    assert float(module.loss({"x": x, "t": t}, inference, {}).loss) == 0.0


def test_velocity_term_is_added_in_training_only():
    module = FLeCSModule(2, [0, 1], [1, 0], velocity_weight=0.5)
    x = torch.tensor([[[1.0, 0.0], [2.0, 1.0]]])
    t = torch.tensor([[0.0, 1.0]])
    inference = {"predicted": torch.zeros(1, 2, 2), "observed": x, "times": t}
    trajectory_only = float(module.loss({"x": x, "t": t}, inference, {}).loss)  # no targets yet
    points = torch.tensor([[1.0, 2.0], [0.5, 0.5], [2.0, 0.0]])
    velocities = torch.tensor([[1.0, -1.0], [0.0, 2.0], [3.0, 1.0]])
    module.set_velocity_targets(points, velocities)
    with torch.no_grad():
        error = (module.field.gene_velocity(points) - velocities).square().mean(1)
    scale = float(velocities.var(0).mean())
    module.train()
    losses = [float(module.loss({"x": x, "t": t}, inference, {}).loss) for _ in range(20)]
    # each step draws VELOCITY_BATCH targets with replacement: the term is their mean error
    assert min(losses) > trajectory_only
    assert np.mean(losses) - trajectory_only == pytest.approx(
        0.5 * float(error.mean()) / scale, rel=0.1
    )
    module.eval()
    assert float(module.loss({"x": x, "t": t}, inference, {}).loss) == trajectory_only
    with pytest.raises(ValueError, match="velocity_weight"):
        module.configure(**{**_settings(module), "velocity_weight": -1.0})


def _settings(module: FLeCSModule) -> dict:
    return {
        "method": module.method,
        "rtol": module.rtol,
        "atol": module.atol,
        "step_size": module.step_size,
        "adjoint": module.adjoint,
        "time_grid": module.time_grid,
        "l1": module.l1,
        "windows": module.windows or False,
        "flow_matching": module.flow_matching,
        "flow_matching_noise": module.flow_matching_noise,
        "max_num_steps": module.max_num_steps,
    }


def test_random_windows_are_contiguous_slices():
    torch.manual_seed(0)
    x = torch.arange(5 * 6 * 2, dtype=torch.float32).reshape(5, 6, 2)
    t = torch.arange(30, dtype=torch.float32).reshape(5, 6)
    lengths = set()
    for _ in range(30):
        xw, tw = random_windows(x, t, 3)
        lengths.add(tw.shape[1])
        start = (tw[:, 0] - t[:, 0]).long()
        for i in range(5):
            window = slice(int(start[i]), int(start[i]) + tw.shape[1])
            assert torch.equal(xw[i], x[i, window]) and torch.equal(tw[i], t[i, window])
    assert lengths == {3, 4, 5, 6}


def test_flow_matching_pairs_lie_on_segments():
    torch.manual_seed(0)
    x = torch.rand(50, 4, 3)
    t = torch.cumsum(torch.rand(50, 4), 1)
    pairs, times = flow_matching_pairs(x, t)
    assert pairs.shape == (50, 2, 3) and times.shape == (50, 2)
    assert torch.all(times[:, 0] == 0) and torch.all(times[:, 1] >= 0)
    for i in range(50):
        # the segment j and fractions s < u the sample was drawn from
        j = next(j for j in range(3) if _on_segment(pairs[i, 0], x[i, j], x[i, j + 1]))
        s = _fraction(pairs[i, 0], x[i, j], x[i, j + 1])
        u = _fraction(pairs[i, 1], x[i, j], x[i, j + 1])
        assert 0 <= s <= u <= 1
        assert float(times[i, 1]) == pytest.approx((u - s) * float(t[i, j + 1] - t[i, j]), 1e-4)
    noisy, _ = flow_matching_pairs(x, t, noise=0.5)
    assert not torch.allclose(noisy[:, 0], pairs[:, 0])


def test_chord_velocities_of_a_straight_path():
    # on x = a + b t every chord has slope b and its midpoint is on the path at the mid time
    a, b = torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.5, -1.0, 0.0])
    t = torch.tensor([[0.0, 0.5, 0.5, 2.0], [1.0, 1.2, 1.7, 3.0]])
    points, velocities = chord_velocities(a + b * t[..., None], t)
    # the pair of zero duration (a repeated cell) is left out
    assert points.shape == velocities.shape == (5, 3)
    torch.testing.assert_close(velocities, b.expand(5, -1))
    mid_times = torch.tensor([0.25, 1.25, 1.1, 1.45, 2.35])
    torch.testing.assert_close(points, a + b * mid_times[:, None])


def _field_with_random_parameters(seed: int) -> GRNVectorField:
    src, dst = [0, 1, 2, 3, 0, 2], [1, 2, 3, 0, 2, 0]
    field = GRNVectorField(4, src, dst, weight_init_std=1.5, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        field.bias.copy_(torch.randn(4, generator=generator))
        field._raw_decay.copy_(torch.rand(4, generator=generator))
    return field


def _assert_same_parameters(field, truth):
    """Edge weights, biases and decays within 0.01 of the true field's."""
    for learnt, true in [
        (field.prior_edge_weights(), truth.prior_edge_weights()),
        (field.bias, truth.bias),
        (field.decay, truth.decay),
    ]:
        torch.testing.assert_close(learnt, true, atol=1e-2, rtol=0)


def test_fit_velocities_recovers_a_known_field():
    truth = _field_with_random_parameters(1)
    points = 2 * torch.rand(300, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        velocities = truth.gene_velocity(points)
    field = GRNVectorField(4, truth.src, truth.dst, seed=0)
    assert fit_velocities(field, points, velocities) < 1e-7
    _assert_same_parameters(field, truth)


def test_fit_velocities_divergence_raises_and_restores():
    field = _field_with_random_parameters(0)
    before = field.prior_edge_weights().detach().clone()
    points = torch.rand(20, 4)
    velocities = torch.rand(20, 4)
    velocities[3, 1] = float("nan")
    with pytest.raises(SolverDivergedError, match="NaN or infinite"):
        fit_velocities(field, points, velocities)
    torch.testing.assert_close(field.prior_edge_weights(), before)


@pytest.mark.parametrize("protein_proxy", [False, True])
def test_fit_linear_reproduces_a_linear_field_at_the_mean(protein_proxy):
    """Velocities linear in the expression: the fitted field's Jacobian at the mean expression
    is the linear map on the prior's edges and the diagonal (a self loop included)."""
    rng = np.random.default_rng(0)
    src, dst = [0, 1, 2, 3, 0, 2], [1, 2, 3, 0, 0, 1]  # 0 -> 0 is a self loop
    x = 1.0 + 0.3 * rng.standard_normal((500, 4))
    linear = np.zeros((4, 4))  # regulator x target
    linear[src, dst] = rng.uniform(-0.3, 0.3, len(src))
    linear[np.arange(4), np.arange(4)] = [0.05, -0.4, -0.3, -0.5]  # gene 0: self-activating
    intercept = 0.5 - x.mean(0) @ linear + np.minimum(np.diag(linear), 0) * x.mean(0)
    velocities = intercept + x @ linear
    field = GRNVectorField(4, src, dst, protein_proxy=protein_proxy, translation_init=0.5)
    points, target = torch.tensor(x, dtype=torch.float32), torch.tensor(velocities).float()
    error = fit_linear(field, points, target, ridge=1e-9)
    mean = points.mean(0)
    jacobian = torch.func.jacrev(field.gene_velocity)(mean).detach().T  # regulator x target
    mask = torch.tensor(linear != 0)
    torch.testing.assert_close(
        jacobian[mask], torch.tensor(linear).float()[mask], atol=1e-4, rtol=0
    )
    assert float(jacobian[~mask].abs().max()) < 1e-6  # no edge, no effect
    torch.testing.assert_close(
        field.decay[:4], torch.tensor([1e-3, 0.4, 0.3, 0.5]), atol=1e-5, rtol=0
    )
    # the mean production level is what the velocities need there
    with torch.no_grad():
        at_mean = field.gene_velocity(mean)
    torch.testing.assert_close(at_mean, target.mean(0), atol=1e-4, rtol=0)
    assert error == pytest.approx(float((field.gene_velocity(points) - target).square().mean()))


def test_fit_linear_gives_the_same_fit_per_target_and_from_one_gram_matrix(monkeypatch):
    import celldyn.module._flecs as flecs_module

    rng = np.random.default_rng(1)
    src = np.concatenate([rng.choice(20, 3, replace=False) for _ in range(20)])
    dst = np.repeat(np.arange(20), 3)
    points = torch.tensor(2 * rng.random((300, 20)), dtype=torch.float32)
    velocities = torch.tensor(rng.standard_normal((300, 20)), dtype=torch.float32)
    fields = []
    for ratio in (float("inf"), 0.0):  # per target; one Gram matrix
        monkeypatch.setattr(flecs_module, "WHOLE_GRAM_RATIO", ratio)
        fields.append(GRNVectorField(20, src, dst))
        fit_linear(fields[-1], points, velocities)
    for a, b in zip(fields[0].parameters(), fields[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert float(fields[0].prior_edge_weights().abs().max()) > 0.1


def test_fit_linear_checks_its_input_and_leaves_the_field():
    field = _field_with_random_parameters(0)
    before = [p.detach().clone() for p in field.parameters()]
    points, velocities = torch.rand(20, 4), torch.rand(20, 4)
    velocities[3, 1] = float("nan")
    with pytest.raises(ValueError, match="must be finite"):
        fit_linear(field, points, velocities)
    with pytest.raises(ValueError, match="level"):
        fit_linear(field, points, torch.rand(20, 4), level=(0.5, 0.2))
    with pytest.raises(ValueError, match="ridge"):
        fit_linear(field, points, torch.rand(20, 4), ridge=0.0)
    for param, value in zip(field.parameters(), before, strict=True):
        torch.testing.assert_close(param, value)


def test_fit_pairs_recovers_a_known_field():
    truth = _field_with_random_parameters(1)
    starts = 2 * torch.rand(200, 4, generator=torch.Generator().manual_seed(0))
    gaps = torch.tensor([0.5, 1.0]).repeat_interleave(100)
    with torch.no_grad():
        ends = torch.cat(
            [
                integrate(
                    truth, starts[gaps == gap], torch.tensor([0.0, gap]), rtol=1e-7, atol=1e-9
                )[-1]
                for gap in (0.5, 1.0)
            ]
        )
    field = GRNVectorField(4, truth.src, truth.dst, seed=0)
    # measured 5.7e-9, parameters within 1.1e-3
    assert fit_pairs(field, starts, ends, gaps, rtol=1e-6, atol=1e-8) < 1e-6
    _assert_same_parameters(field, truth)


def test_fit_pairs_checks_gaps_and_restores_on_divergence():
    field = _field_with_random_parameters(0)
    before = field.prior_edge_weights().detach().clone()
    starts, ends = torch.rand(20, 4), torch.rand(20, 4)
    with pytest.raises(ValueError, match="gap"):
        fit_pairs(field, starts, ends, torch.zeros(20))
    ends[3, 1] = float("nan")
    with pytest.raises(SolverDivergedError, match="pair fit diverged"):
        fit_pairs(field, starts, ends, torch.ones(20))
    torch.testing.assert_close(field.prior_edge_weights(), before)


def _fraction(point, a, b):
    return float(((point - a) @ (b - a)) / ((b - a) @ (b - a)))


def _on_segment(point, a, b):
    s = _fraction(point, a, b)
    return -1e-5 <= s <= 1 + 1e-5 and torch.allclose(point, a + s * (b - a), atol=1e-5)


def test_adjoint_gradients_match_backprop(small):
    FLeCS.setup_anndata(small)
    model = FLeCS(small, weight_init_std=0.3)
    module = model.module
    tr = small.uns["celldyn_trajectories"]
    x = torch.as_tensor(np.asarray(small.X))[torch.as_tensor(tr["indices"][:8])]
    t = torch.as_tensor(tr["times"][:8], dtype=torch.float32)
    grads = []
    for adjoint in (False, True):
        module.zero_grad()
        module.adjoint, module.rtol, module.atol = adjoint, 1e-6, 1e-8
        out = module.inference(x, t)
        module.loss({"x": x, "t": t}, out, {}).loss.backward()
        grads.append(module.field.grn.weight.grad.clone())
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-3, atol=1e-6)


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
    # velocity warm start (default) + 50 epochs; without the warm start, 200 epochs gave 0.678
    model.train(max_epochs=50, batch_size=400, lr=0.1, **FAST)
    weights = model.get_weights().tocoo()
    candidates = pd.DataFrame(
        {"source": adata.var_names[weights.row], "target": adata.var_names[weights.col]}
    )
    truth = adata.uns["ground_truth_network"]
    scores = grn_scores(model.get_weights(), truth, genes=adata.var_names, candidates=candidates)
    # measured 0.939 (true edges vs random prior edges; 0.5 is chance)
    assert scores["auroc"] >= 0.85
    # |Pearson r| of regulator and target on the same candidate edges: measured 0.467
    correlation = np.abs(np.corrcoef(np.asarray(adata.X), rowvar=False))
    baseline = grn_scores(correlation, truth, genes=adata.var_names, candidates=candidates)
    assert scores["auroc"] >= baseline["auroc"] + 0.3
    velocity, true = model.get_velocity(), adata.layers["true_velocity"]
    cosine = (
        (velocity * true).sum(1) / np.linalg.norm(velocity, axis=1) / np.linalg.norm(true, axis=1)
    )
    assert cosine.mean() >= 0.95  # measured 0.987


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


@pytest.mark.parametrize("variant", [{"n_latent": 2}, {"protein_proxy": True}])
def test_latent_and_protein_variants(small, tmp_path, variant):
    FLeCS.setup_anndata(small)
    model = FLeCS(small, **variant)
    n = small.n_vars
    assert model.module.field.state_dim == n + 2 if "n_latent" in variant else 2 * n
    model.train(max_epochs=12, batch_size=32, lr=0.05, **FAST)
    loss = model.history["train_loss"].to_numpy().ravel()
    assert loss[-1] < 0.6 * loss[0]
    prior = sp.csr_matrix(small.varp["celldyn_prior"])
    weights = model.get_weights()  # gene x gene prior edges only, no latent edges
    assert set(zip(*weights.nonzero(), strict=True)) == set(zip(*prior.nonzero(), strict=True))
    assert model.get_decay().shape == model.get_bias().shape == (n,)
    velocity = model.get_velocity()
    assert velocity.shape == small.shape and np.all(np.isfinite(velocity))
    model.save(tmp_path / "variant", overwrite=True)
    loaded = FLeCS.load(tmp_path / "variant", adata=small)
    np.testing.assert_array_equal(loaded.get_velocity(), velocity)


def test_fixed_step_solver_and_early_stopping(small):
    FLeCS.setup_anndata(small)
    model = FLeCS(small)
    # an improvement must exceed 10 (never): stops after 1 + patience epochs
    model.train(
        max_epochs=30,
        lr=0.05,
        method="rk4",
        step_size=0.5,
        early_stopping=True,
        early_stopping_patience=2,
        early_stopping_min_delta=10.0,
        **FAST,
    )
    assert len(model.history["train_loss"]) == 3
    assert np.all(np.isfinite(model.history["validation_loss"].to_numpy(dtype=float)))
    assert model.module.method == "rk4" and model.module.solver_kwargs()["options"] == {
        "step_size": 0.5
    }


def test_diverging_training_raises(small):
    FLeCS.setup_anndata(small)
    model = FLeCS(small)
    with torch.no_grad():
        model.module.field.bias[0] = float("nan")
    with pytest.raises(SolverDivergedError, match="NaN or infinite"):
        model.train(max_epochs=1, warm_start=None, **FAST)  # the linear start resets the bias


def test_non_finite_loss_stops_training_at_once():
    """The first NaN/inf loss raises (in training and validation) instead of training on."""
    module = FLeCSModule(2, [0, 1], [1, 0])
    x = torch.tensor([[[1.0, 0.0], [2.0, 1.0]]])
    t = torch.tensor([[0.0, 1.0]])
    for bad in (float("nan"), float("inf")):
        predicted = torch.tensor([[[1.0, 0.0], [bad, 1.0]]])
        inference = {"predicted": predicted, "observed": x, "times": t}
        with pytest.raises(SolverDivergedError, match="FLeCS loss is NaN or infinite"):
            module.loss({"x": x, "t": t}, inference, {})
    module.configure(**{**_settings(module), "velocity_weight": 0.1})
    module.velocity_loss = lambda: torch.tensor(float("nan"))  # a velocity term gone bad
    module.train()
    inference = {"predicted": torch.zeros(1, 2, 2), "observed": x, "times": t}
    with pytest.raises(SolverDivergedError, match="FLeCS loss is NaN or infinite"):
        module.loss({"x": x, "t": t}, inference, {})


def test_training_solves_are_bounded():
    from celldyn.module._flecs import TRAIN_MAX_NUM_STEPS

    module = FLeCSModule(2, [0, 1], [1, 0])
    assert module.solver_kwargs()["options"] == {"max_num_steps": TRAIN_MAX_NUM_STEPS}
    module.configure(**{**_settings(module), "max_num_steps": 5})
    assert module.solver_kwargs()["options"] == {"max_num_steps": 5}
    module.configure(**{**_settings(module), "method": "rk4", "step_size": 0.1})
    assert module.solver_kwargs()["options"] == {"step_size": 0.1}  # fixed steps: no bound
    # a stiff field (decay 1e7) exceeds the bound instead of shrinking the step for hours
    module.configure(**{**_settings(module), "method": "dopri5", "step_size": None})
    with torch.no_grad():
        module.field._raw_decay.fill_(1e7)
    x, t = torch.rand(3, 2, 2), torch.tensor([[0.0, 1.0]] * 3)
    with pytest.raises(SolverDivergedError, match="max_num_steps=5 "):
        module.inference(x, t)


def test_diverging_lr_raises_promptly_naming_lr(small, capsys):
    """lr = 1e8 (issue: the fit never returned): the step bound stops it within seconds."""
    import time

    FLeCS.setup_anndata(small)
    model = FLeCS(small)
    start = time.perf_counter()
    with pytest.raises(SolverDivergedError, match=r"`lr` is too large \(now 100000000.0\)"):
        model.train(max_epochs=5, lr=1e8, warm_start=None, **FAST)
    assert time.perf_counter() - start < 60  # ~2 s here; 30 s with 10,000 steps, hours before
    with pytest.raises(SolverDivergedError, match=r"max_num_steps=30 .*`max_num_steps` \(now 30\)"):
        model.train(max_epochs=5, lr=1e8, warm_start=None, max_num_steps=30, **FAST)
    # the error is raised, without scvi-tools' misleading "Exception raised ... NameError"
    assert "Exception raised during training" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("option", "match"),
    [
        ({"time_grid": 1}, "time_grid"),
        ({"step_size": 0.0}, "step_size"),
        ({"l1": -1.0}, "l1"),
        ({"windows": 1}, "windows"),
        ({"flow_matching_noise": -0.1}, "flow_matching_noise"),
        ({"velocity_init": -1}, "velocity_init"),
        ({"velocity_init": 2.5}, "velocity_init"),
        ({"velocity_weight": -0.1}, "velocity_weight"),
        ({"velocity_weight": float("nan")}, "velocity_weight"),
        ({"velocity_bootstrap": -1}, "velocity_bootstrap"),
        ({"max_num_steps": 0}, "`max_num_steps` must be an integer >= 1, got 0"),
        ({"max_num_steps": 2.5}, "`max_num_steps`"),
    ],
)
def test_bad_training_options(small, option, match):
    FLeCS.setup_anndata(small)
    model = FLeCS(small)
    with pytest.raises(ValueError, match=match):
        model.train(max_epochs=1, **option, **FAST)


def _validation_losses(adata, **options) -> tuple[np.ndarray, np.ndarray]:
    FLeCS.setup_anndata(adata)
    torch.manual_seed(0)
    model = FLeCS(adata)
    # the trajectory error alone (no velocity warm start or term) unless asked: there the
    # augmentations matter most
    options = {"warm_start": None, "velocity_weight": 0.0, **options}
    model.train(max_epochs=15, batch_size=32, lr=0.05, **options, **FAST)
    return model.history["validation_loss"].to_numpy(dtype=float).ravel(), model.get_weights()


def test_windows_and_flow_matching_change_the_fit(small):
    # validation is always on the full trajectories, so the losses are comparable
    plain, w_plain = _validation_losses(small)
    windows, w_windows = _validation_losses(small, windows=2)
    flow, w_flow = _validation_losses(small, flow_matching=True, flow_matching_noise=0.2)
    # measured: plain 0.0724, windows 0.0694 (a mixture of lengths fits full paths better)
    assert windows[-1] < 0.98 * plain[-1]
    # measured 0.352 -> 0.098: fitting straight segments also fits the full paths, though at
    # equal epochs less well than plain training here (0.072)
    assert flow[-1] < 0.4 * flow[0]
    assert not np.allclose(w_windows.data, w_plain.data)
    assert not np.allclose(w_flow.data, w_plain.data)


def test_ot_target_needs_the_time_groups_of_the_trajectories(small):
    adata = small.copy()
    del adata.uns["celldyn_trajectories"]["params"]  # trajectories built outside celldyn
    FLeCS.setup_anndata(adata)
    model = FLeCS(adata)
    with pytest.raises(KeyError, match="velocity_target='chords'"):
        model.train(max_epochs=1, **FAST)
    with pytest.raises(KeyError, match="warm_start='velocities'"):
        model.train(max_epochs=1, velocity_target="chords", warm_start="ot_pairs", **FAST)
    model.train(max_epochs=1, velocity_target="chords", **FAST)
    assert np.isfinite(model.get_weights().data).all()


def test_warm_start_only_before_the_first_training(small, monkeypatch):
    import celldyn.models._flecs as flecs_model

    calls = []

    def counted(fit):
        def wrapped(*args, **kwargs):
            calls.append((fit.__name__, kwargs.get("max_iter")))
            return fit(*args, **kwargs)

        return wrapped

    for fit in (fit_linear_blocks, fit_velocities, fit_pairs):
        monkeypatch.setattr(flecs_model, fit.__name__, counted(fit))
    FLeCS.setup_anndata(small)
    for warm_start in ("linear", "velocities", "ot_pairs"):
        model = FLeCS(small)
        model.train(max_epochs=1, velocity_init=20, warm_start=warm_start, **FAST)
        model.train(max_epochs=1, velocity_init=20, warm_start=warm_start, **FAST)
        FLeCS(small).train(max_epochs=1, velocity_init=0, warm_start=warm_start, **FAST)
    FLeCS(small).train(max_epochs=1, **FAST)  # the default: the linear fit alone
    FLeCS(small).train(max_epochs=1, warm_start="velocities", **FAST)  # 500 by default
    FLeCS(small).train(max_epochs=1, warm_start="ot_pairs", **FAST)  # 300 by default
    FLeCS(small).train(max_epochs=1, warm_start=None, velocity_init=20, **FAST)  # none
    assert calls == [
        ("fit_linear_blocks", None),  # linear, then 20 iterations on the velocities
        ("fit_velocities", 20),
        ("fit_linear_blocks", None),  # velocity_init=0: the closed-form start only
        ("fit_velocities", 20),
        ("fit_pairs", 20),
        ("fit_linear_blocks", None),
        ("fit_velocities", 500),
        ("fit_pairs", 300),
    ]


@pytest.mark.parametrize("warm_start", ["linear", "velocities", "ot_pairs"])
def test_warm_start_fits_the_paths_better(small, warm_start):
    cold, _ = _validation_losses(small)
    warm, _ = _validation_losses(small, velocity_init=None, warm_start=warm_start)
    # measured: velocities 0.0076, ot_pairs 0.0037 vs cold 0.0678 (validation MSE on full
    # trajectories after 15 epochs)
    assert warm[-1] < 0.3 * cold[-1]


@pytest.fixture(scope="module")
def hill():
    """simulate_hill seed 0 through the README pipeline, 3 decoys per true edge."""
    import scanpy as sc

    from celldyn.datasets import simulate_hill

    adata = simulate_hill(random_state=0)
    truth = adata.uns["ground_truth_network"]
    prior_network(adata, truth, add_random_edges=4 * len(truth) / adata.n_vars**2)
    sc.pp.pca(adata, n_comps=10)
    time_groups(adata, time_key="time")
    trajectories(adata, method="knn", random_state=0)
    return adata


def _hill_auroc(adata, scores) -> float:
    prior = adata.varp["celldyn_prior"].tocoo()
    candidates = pd.DataFrame(
        {"source": adata.var_names[prior.row], "target": adata.var_names[prior.col]}
    )
    candidates = candidates[candidates.source != candidates.target]
    truth = adata.uns["ground_truth_network"]
    return grn_scores(scores, truth, genes=adata.var_names, candidates=candidates)["auroc"]


def test_ot_velocity_warm_start_recovers_a_hill_network(hill):
    """On a generator of another family, the warm start on OT velocities carries the network;
    the one on the chords of kNN paths does not (issue 13 diagnosis)."""
    auroc = {}
    for target in ("ot", "chords"):
        FLeCS.setup_anndata(hill)
        model = FLeCS(hill)
        model.train(max_epochs=1, velocity_target=target, warm_start="velocities", **FAST)
        auroc[target] = _hill_auroc(hill, model.get_weights())
    # measured: ot 0.764, chords 0.550 (OT-ridge on the same edges 0.847)
    assert auroc["ot"] >= 0.7
    assert auroc["ot"] >= auroc["chords"] + 0.1
    with pytest.raises(ValueError, match="velocity_target"):
        model.train(max_epochs=1, velocity_target="knn", **FAST)


def test_velocity_term_keeps_the_network_through_the_trajectory_fit(hill):
    """The trajectory fit alone pulls W away from the OT warm start; the velocity term of the
    default loss keeps it, and the edge effects rank the edges better than |W|."""
    scores = {}
    for weight in (0.0, 0.1):
        FLeCS.setup_anndata(hill)
        torch.manual_seed(0)
        model = FLeCS(hill)
        model.train(max_epochs=10, lr=0.05, velocity_weight=weight, warm_start="velocities", **FAST)
        scores[weight] = (model.get_weights(), model.get_edge_effects())
    auroc = {w: [_hill_auroc(hill, s) for s in pair] for w, pair in scores.items()}
    # measured (|W|, effects): weight 0: 0.644, 0.699; weight 0.1: 0.727, 0.859 (OT-ridge 0.859)
    assert auroc[0.1][0] >= auroc[0.0][0] + 0.05
    assert auroc[0.1][1] >= auroc[0.1][0] + 0.08
    assert auroc[0.1][1] >= 0.8


def test_ensemble_spread_says_which_top_edges_to_trust(hill):
    """A small raw spread does not mark true edges (strong edges spread more), but among the
    top-ranked edges a small relative spread effects_std / |effects| does (issue 13)."""
    from celldyn.tl import flecs

    adata = hill.copy()
    flecs(adata, n_models=8, resample=True, max_epochs=5, batch_size=32, lr=0.05, **FAST)
    prior = adata.varp["celldyn_prior"].tocoo()
    keep = prior.row != prior.col
    rows, cols = prior.row[keep], prior.col[keep]
    truth = adata.uns["ground_truth_network"]
    true = set(zip(truth["source"], truth["target"], strict=True))
    names = adata.var_names
    y = np.array([(names[i], names[j]) in true for i, j in zip(rows, cols, strict=True)])
    mean = np.abs(np.asarray(adata.varp["flecs_effects"][rows, cols]).ravel())
    std = np.asarray(adata.varp["flecs_effects_std"][rows, cols]).ravel()
    top = np.argsort(-mean)[: y.sum()]
    auroc = {
        "mean": roc_auc_score(y, mean),
        "small std": roc_auc_score(y, -std),
        "top-K: small relative std": roc_auc_score(y[top], -std[top] / mean[top]),
        "top-K: mean": roc_auc_score(y[top], mean[top]),
    }
    print(auroc)
    # measured: 0.856, 0.421; within the top K: 0.683 by the relative spread, 0.511 by |mean|
    assert auroc["mean"] >= 0.8
    assert auroc["small std"] < 0.5
    assert auroc["top-K: small relative std"] >= 0.6
    assert auroc["top-K: small relative std"] >= auroc["top-K: mean"] + 0.05


@pytest.fixture(scope="module")
def bursty():
    """simulate_bursty seed 1, log1p-normalised, through the README pipeline, 3 decoys/edge."""
    import scanpy as sc

    from celldyn.datasets import simulate_bursty

    adata = simulate_bursty(random_state=1)
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    truth = adata.uns["ground_truth_network"]
    prior_network(adata, truth, add_random_edges=4 * len(truth) / adata.n_vars**2, random_state=1)
    sc.pp.pca(adata, n_comps=adata.n_vars - 1)
    time_groups(adata, time_key="time")
    trajectories(adata, method="knn", random_state=1)
    return adata


def test_ot_pair_warm_start_recovers_delayed_regulation(bursty):
    """Regulation through proteins acts with a delay: the mRNA velocity between snapshots
    carries none of it, the flow over the whole gap to the OT barycentres does."""
    auroc = {}
    for warm_start in ("ot_pairs", "velocities"):
        FLeCS.setup_anndata(bursty)
        model = FLeCS(bursty)
        model.train(max_epochs=1, warm_start=warm_start, velocity_init=100, **FAST)
        auroc[warm_start] = _hill_auroc(bursty, model.get_edge_effects())
    # measured: ot_pairs 0.659, velocities 0.557 (|r| 0.645, OT-ridge 0.552 on these edges)
    assert auroc["ot_pairs"] >= 0.62
    assert auroc["ot_pairs"] >= auroc["velocities"] + 0.07
    with pytest.raises(ValueError, match="warm_start"):
        model.train(max_epochs=1, warm_start="pairs", **FAST)


@pytest.mark.parametrize("protein_proxy", [False, True])
def test_edge_effects_are_the_mean_jacobian_times_the_regulator_sd(small, protein_proxy):
    FLeCS.setup_anndata(small)
    model = FLeCS(small, protein_proxy=protein_proxy, weight_init_std=0.5)
    model.train(max_epochs=1, velocity_init=20, **FAST)
    effects = model.get_edge_effects().toarray()
    field = model.module.field
    x = torch.as_tensor(np.asarray(small.X, dtype=np.float32))
    jacobian = torch.func.vmap(torch.func.jacrev(field.gene_velocity))(x)  # cell, target, reg
    expected = (jacobian.mean(0).T * x.std(0, correction=0)[:, None]).detach().numpy()
    prior = small.varp["celldyn_prior"].toarray() != 0
    off_diagonal = prior & ~np.eye(small.n_vars, dtype=bool)  # the diagonal adds -decay
    np.testing.assert_allclose(effects[off_diagonal], expected[off_diagonal], rtol=1e-3, atol=1e-6)
    assert np.all(effects[~prior] == 0)


def _unregistered(adata):
    """A copy of ``adata`` without scvi-tools' entries (never registered)."""
    new = adata.copy()
    new.obs = new.obs.loc[:, [c for c in new.obs.columns if not c.startswith("_scvi")]]
    for key in [k for k in new.uns if k.startswith("_scvi")]:
        del new.uns[key]
    return new


def _set_x_nan(adata):
    adata.X = np.array(adata.X)
    adata.X[2, 1] = np.nan


FLECS_GETTERS = {
    "get_velocity": lambda m, a: m.get_velocity(a),
    "get_edge_effects": lambda m, a: m.get_edge_effects(a),
}
BAD_FLECS_INPUTS = {
    "missing_gene": (lambda a: a[:, 1:].copy(), ValueError, "var_names"),
    "reordered_genes": (lambda a: a[:, ::-1].copy(), ValueError, "same order"),
    "nan_x": (lambda a: _set_x_nan(a) or a, ValueError, r"adata\.X contains 1 NaN"),
    "view": (lambda a: a[:, 1:], ValueError, "var_names"),
}


@pytest.mark.parametrize("bad", list(BAD_FLECS_INPUTS))
@pytest.mark.parametrize("getter", list(FLECS_GETTERS))
def test_getters_check_new_adata_before_registering(small, getter, bad, assert_unchanged):
    model_data = _unregistered(small)
    FLeCS.setup_anndata(model_data)
    model = FLeCS(model_data)
    change, error, match = BAD_FLECS_INPUTS[bad]
    adata = change(_unregistered(small))
    before = adata.copy()
    with pytest.raises(error, match=match):
        FLECS_GETTERS[getter](model, adata)
    assert_unchanged(adata, before)
    assert not any(k.startswith("_scvi") for k in [*adata.uns, *adata.obs])
    # an error after registering (NaN parameters) also leaves a new AnnData as it was
    adata = _unregistered(small)
    before = adata.copy()
    with torch.no_grad():
        model.module.field.bias[0] = float("nan")
    with pytest.raises(SolverDivergedError, match="NaN"):
        FLECS_GETTERS[getter](model, adata)
    assert_unchanged(adata, before)


def test_getters_check_the_registered_layer(small, assert_unchanged):
    model_data = _unregistered(small)
    model_data.layers["expr"] = np.array(model_data.X)
    FLeCS.setup_anndata(model_data, layer="expr")
    model = FLeCS(model_data)
    adata = _unregistered(small)
    before = adata.copy()
    for getter in FLECS_GETTERS.values():
        with pytest.raises(KeyError, match="no layer 'expr'"):
            getter(model, adata)
        assert_unchanged(adata, before)
    adata.layers["expr"] = np.array(adata.X)
    adata.layers["expr"][0, 0] = np.inf
    before = adata.copy()
    for getter in FLECS_GETTERS.values():
        with pytest.raises(ValueError, match=r"adata\.layers\['expr'\] contains 1 NaN"):
            getter(model, adata)
        assert_unchanged(adata, before)
    adata.layers["expr"][0, 0] = adata.X[0, 0]
    np.testing.assert_array_equal(model.get_velocity(adata), model.get_velocity())
