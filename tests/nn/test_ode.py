import numpy as np
import pytest
import torch
from torch import nn

from celldyn.nn import GRNVectorField, SolverDivergedError, integrate


class _Linear(nn.Module):
    """dy/dt = -k * y."""

    def __init__(self, k):
        super().__init__()
        self.k = nn.Parameter(torch.as_tensor(k, dtype=torch.float64))

    def forward(self, t, y):
        return -self.k * y


@pytest.mark.parametrize("adjoint", [False, True])
def test_linear_decay_matches_exponential(adjoint):
    k = torch.tensor([0.5, 1.0, 3.0], dtype=torch.float64)
    y0 = torch.tensor([[1.0, 2.0, -1.0], [0.5, 0.0, 4.0]], dtype=torch.float64)
    t = torch.linspace(0, 2, 5, dtype=torch.float64)
    field = _Linear(k)
    sol = integrate(field, y0, t, rtol=1e-8, atol=1e-10, adjoint=adjoint)
    expected = y0[None] * torch.exp(-k[None, None] * t[:, None, None])
    assert sol.shape == (5, 2, 3)
    torch.testing.assert_close(sol, expected, rtol=1e-6, atol=1e-8)
    # gradient of sum y(T) w.r.t. k: -T * y0 * exp(-k T)
    sol[-1].sum().backward()
    grad = (-2.0 * y0 * torch.exp(-2.0 * k)).sum(0)
    torch.testing.assert_close(field.k.grad, grad, rtol=1e-5, atol=1e-7)


def test_fixed_step_solver_and_time_as_list():
    sol = integrate(
        _Linear(1.0),
        torch.ones(3, dtype=torch.float64),
        [0.0, 0.5, 1.0],
        method="rk4",
        options={"step_size": 0.01},
    )
    np.testing.assert_allclose(
        sol[:, 0].detach().numpy(), np.exp(-np.array([0.0, 0.5, 1.0])), rtol=1e-8
    )


def test_flecs_without_edges_relaxes_to_sigmoid_bias_over_decay():
    # W = 0: dG/dt = sigmoid(b) - alpha G  =>  G(t) = s/alpha + (G0 - s/alpha) exp(-alpha t)
    field = GRNVectorField(
        4, [0, 1], [1, 2], weight_init_std=0.0, decay_init=[0.5, 1.0, 2.0, 0.25]
    ).double()
    with torch.no_grad():
        field.bias.copy_(torch.tensor([-1.0, 0.0, 1.0, 2.0]))
    g0 = torch.tensor([[0.0, 1.0, 3.0, 0.2]], dtype=torch.float64)
    t = torch.linspace(0, 3, 4, dtype=torch.float64)
    sol = integrate(field, field.initial_state(g0), t, rtol=1e-9, atol=1e-11)
    s = torch.sigmoid(field.bias.detach())
    alpha = field.decay.detach()
    expected = s / alpha + (g0 - s / alpha) * torch.exp(-alpha * t[:, None, None])
    torch.testing.assert_close(field.gene_state(sol), expected, rtol=1e-6, atol=1e-8)


class _Explosive(nn.Module):
    """dy/dt = y^2: blows up at t = 1 / y0."""

    def forward(self, t, y):
        return y * y


class _NaNAfter(nn.Module):
    def forward(self, t, y):
        return -y + (float("nan") if float(t) > 0.3 else 0.0)


@pytest.mark.parametrize(
    ("field", "method", "options"),
    [
        (_Explosive(), "dopri5", None),
        (_Explosive(), "euler", {"step_size": 0.05}),
        (_NaNAfter(), "dopri5", None),
        (_NaNAfter(), "rk4", {"step_size": 0.1}),
        (_Linear(1.0), "dopri5", {"max_num_steps": 2}),
    ],
)
def test_divergence_raises_instead_of_nan(field, method, options):
    y0 = torch.ones(2, dtype=torch.float64)
    with pytest.raises(SolverDivergedError, match="NaN|diverged"):
        integrate(
            field, y0, torch.tensor([0.0, 3.0], dtype=torch.float64), method=method, options=options
        )


def test_flecs_with_huge_positive_feedback_stays_bounded_but_nan_weights_raise():
    # production is a sigmoid (<= 1) and decay >= 0, so even huge positive feedback with the
    # decay offset driving decay to 0 gives G(t) <= G(0) + t: finite, no false alarm ...
    field = GRNVectorField(3, [0, 1, 2], [1, 2, 0], weight_init_std=0.0).double()
    with torch.no_grad():
        field.grn.weight.fill_(1e3)
    field.decay_offset = torch.full((3,), -10.0, dtype=torch.float64)
    y0 = field.initial_state(torch.ones(1, 3, dtype=torch.float64))
    sol = integrate(field, y0, [0.0, 2.0])
    assert bool(torch.isfinite(sol).all())
    np.testing.assert_allclose(sol[-1].detach().numpy(), 3.0, rtol=1e-4)
    # ... but a NaN injected into a weight raises instead of returning NaN
    with torch.no_grad():
        field.grn.weight[0] = float("nan")
    with pytest.raises(SolverDivergedError, match="NaN"):
        integrate(field, y0, [0.0, 1.0])


def test_divergence_error_is_a_runtime_error():
    assert issubclass(SolverDivergedError, RuntimeError)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"t": [0.0, 1.0, 0.5]}, ValueError, "strictly"),
        ({"t": [0.0]}, ValueError, "at least 2"),
        ({"t": [0.0, float("inf")]}, ValueError, "NaN or infinite"),
        ({"y0": torch.tensor([float("nan")])}, ValueError, "y0"),
        ({"y0": torch.tensor([1])}, TypeError, "floating-point"),
        ({"field": 3}, TypeError, "callable"),
        ({"field": lambda t, y: -y, "adjoint": True}, TypeError, "nn.Module"),
        ({"rtol": -1.0}, ValueError, r"`rtol` must be a finite positive number, got -1"),
        ({"rtol": 0.0}, ValueError, r"`rtol` must be a finite positive"),
        ({"atol": -1e-4}, ValueError, r"`atol` must be a finite positive"),
        ({"atol": float("nan")}, ValueError, r"`atol` must be a finite positive"),
        ({"rtol": "tight"}, ValueError, r"`rtol` must be a finite positive number, got 'tight'"),
        ({"rtol": True}, ValueError, r"`rtol` must be a finite positive"),
        ({"rtol": -1.0, "method": "rk4"}, ValueError, r"`rtol`"),  # checked for fixed steps too
        ({"options": {"max_num_steps": 0}}, ValueError, r"`max_num_steps` must be an integer >= 1"),
        ({"options": {"max_num_steps": 1.5}}, ValueError, r"`max_num_steps`"),
    ],
)
def test_bad_input(kwargs, error, match):
    args = {"field": _Linear(1.0), "y0": torch.ones(2, dtype=torch.float64), "t": [0.0, 1.0]}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        integrate(args.pop("field"), args.pop("y0"), args.pop("t"), **args)


def test_training_through_kernels_and_odeint_recovers_strong_edges():
    # known 6-gene FLeCS system: a ring of strong edges plus weak and medium shortcuts
    src = torch.tensor([0, 1, 2, 3, 4, 5, 0, 2, 1, 4])
    dst = torch.tensor([1, 2, 3, 4, 5, 0, 3, 5, 4, 1])
    w_true = torch.tensor([3.0, -3.0, 2.5, -2.5, 3.0, -3.0, 0.3, -0.3, 2.0, -2.0])
    truth = GRNVectorField(6, src, dst, decay_init=1.0)
    with torch.no_grad():
        truth.grn.weight.copy_(w_true)
        truth.bias.fill_(-1.0)
    torch.manual_seed(0)
    y0 = torch.rand(48, 6)
    t = torch.linspace(0, 3, 7)
    solver = {"method": "rk4", "options": {"step_size": 0.1}}
    with torch.no_grad():
        data = integrate(truth, y0, t, **solver)

    model = GRNVectorField(6, src, dst, decay_init=1.0, weight_init_std=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.2)
    losses = []
    for _ in range(100):
        optimizer.zero_grad()
        loss = torch.mean((integrate(model, y0, t, **solver) - data) ** 2)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] / losses[-1] > 50
    strong = w_true.abs() >= 2.0
    learnt = model.prior_edge_weights().detach()
    assert torch.equal(torch.sign(learnt[strong]), torch.sign(w_true[strong]))


def test_adaptive_solve_is_bounded(monkeypatch):
    """A stiff field shrinks dopri5's step without end: the step bound ends the solve."""
    import celldyn.nn._ode as ode

    monkeypatch.setattr(ode, "MAX_NUM_STEPS", 300)
    stiff = lambda t, y: -1e7 * y  # noqa: E731
    with pytest.raises(SolverDivergedError, match="diverged: more than max_num_steps=300 "):
        integrate(stiff, torch.ones(3, 2), [0.0, 1.0])
    with pytest.raises(SolverDivergedError, match=r"max_num_steps=50 .*stuck at t=.* of \[0, 1\]"):
        integrate(stiff, torch.ones(3, 2), [0.0, 1.0], options={"max_num_steps": 50})
    # fixed-step solvers take no such option and are not bounded by it
    out = integrate(
        lambda t, y: -y, torch.ones(2), [0.0, 1.0], method="rk4", options={"step_size": 0.05}
    )
    assert torch.allclose(out[-1], torch.full((2,), float(np.exp(-1.0))), atol=1e-3)


def test_step_bound_covers_the_whole_solve():
    """The bound counts the steps of all output times together: a solve of ~1,000 steps
    over 10 output times (~100 each) fails a bound of 500, which torchdiffeq's per-output-time
    option would let through; so a field with 32 output times cannot take 32 x the bound."""
    wave = lambda t, y: 40 * torch.cos(40 * t) * torch.ones_like(y)  # noqa: E731
    solve = {"rtol": 1e-6, "atol": 1e-8}
    t = torch.linspace(0, 10, 11)
    out = integrate(wave, torch.zeros(2), t, **solve)  # default bound MAX_NUM_STEPS
    torch.testing.assert_close(out[:, 0], torch.sin(40 * t), atol=1e-4, rtol=0)
    with pytest.raises(SolverDivergedError, match="max_num_steps=500 "):
        integrate(wave, torch.zeros(2), t, options={"max_num_steps": 500}, **solve)
    integrate(wave, torch.zeros(2), t[:2], options={"max_num_steps": 500}, **solve)  # ~100


class _Decay(nn.Module):
    def __init__(self, rate: float):
        super().__init__()
        self.rate = nn.Parameter(torch.tensor(rate))

    def forward(self, t, y):
        return -self.rate * y


def test_step_bound_covers_the_adjoint_backward_solve():
    # y0 = 0 stays 0 (a few growing steps forward); the adjoint state decays at rate 1e4
    # backward in time, which needs thousands of steps
    field = _Decay(1e4)
    y = integrate(field, torch.zeros(2), [0.0, 1.0], adjoint=True, options={"max_num_steps": 100})
    with pytest.raises(SolverDivergedError, match=r"max_num_steps=100 solver steps \(adjoint\)"):
        y[-1].sum().backward()
    field = _Decay(1.0)
    y = integrate(field, torch.ones(2), [0.0, 1.0], adjoint=True, options={"max_num_steps": 100})
    y[-1].sum().backward()
    assert float(field.rate.grad) == pytest.approx(-2 * np.exp(-1.0), rel=5e-3)
