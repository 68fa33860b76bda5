"""The energy distance of 1-D marginals (a Cell-MNN loss term)."""

import numpy as np
import pytest
import scipy.stats
import torch

from celldyn.nn._kernels import energy_distance_torch, marginal_energy_distance_torch


def test_matches_the_1d_energy_distance_of_every_coordinate():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 3)), rng.normal(size=(25, 3)) * [1.0, 2.0, 0.1] + [0.0, 0.5, 0.0]
    value = float(marginal_energy_distance_torch(torch.as_tensor(x), torch.as_tensor(y)))
    per_coordinate = [
        float(energy_distance_torch(torch.as_tensor(x[:, [k]]), torch.as_tensor(y[:, [k]])))
        for k in range(3)
    ]
    assert value == pytest.approx(np.mean(per_coordinate), rel=1e-12)
    # scipy's energy distance is the square root of the 1-D energy distance
    scipy_value = [scipy.stats.energy_distance(x[:, k], y[:, k]) ** 2 for k in range(3)]
    np.testing.assert_allclose(per_coordinate, scipy_value, rtol=1e-10)


def test_zero_for_identical_sets_and_linear_in_scale():
    rng = np.random.default_rng(1)
    x = torch.as_tensor(rng.normal(size=(30, 4)))
    y = torch.as_tensor(rng.normal(size=(20, 4)) + 0.3)
    assert float(marginal_energy_distance_torch(x, x)) == pytest.approx(0.0, abs=1e-12)
    base = float(marginal_energy_distance_torch(x, y))
    assert float(marginal_energy_distance_torch(3 * x, 3 * y)) == pytest.approx(3 * base)


def test_a_small_coordinate_gets_as_much_gradient_as_a_large_one():
    """The joint energy distance hardly sees a coordinate 100x smaller; the marginal one does."""
    rng = np.random.default_rng(2)
    scale = torch.tensor([1.0, 0.01], dtype=torch.float64)
    y = torch.as_tensor(rng.normal(size=(200, 2))) * scale
    x = (torch.as_tensor(rng.normal(size=(200, 2))) * scale * 1.5).requires_grad_()
    marginal = torch.autograd.grad(marginal_energy_distance_torch(x, y), x)[0].abs().sum(0)
    joint = torch.autograd.grad(energy_distance_torch(x, y), x)[0].abs().sum(0)
    # measured 0.71 and 0.05 (data seeds 0-3: 0.71-1.41 and 0.05-0.09)
    assert float(marginal[1] / marginal[0]) > 0.5
    assert float(joint[1] / joint[0]) < 0.15


def test_gradcheck_and_bad_shapes():
    rng = np.random.default_rng(3)
    x = torch.as_tensor(rng.normal(size=(6, 2)), dtype=torch.float64).requires_grad_()
    y = torch.as_tensor(rng.normal(size=(5, 2)), dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(marginal_energy_distance_torch, (x, y))
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        marginal_energy_distance_torch(x, y[:, :1])
