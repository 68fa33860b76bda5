"""CLIPR: the pure effect-matrix solver, the model responses and tl.clipr."""

import warnings

import numpy as np
import pytest

from celldyn.datasets import simulate_perturbations
from celldyn.metrics import grn_scores
from celldyn.tl._clipr import IdentifiabilityWarning, clipr_effects


def _exact_responses(adata):
    """Exact v_q = c_q and l_q = mu_q - mu_ctrl of the linear simulator (perturbed rows)."""
    sim = adata.uns["simulation"]
    return sim["shifts"][1:], sim["means"][1:] - sim["means"][0]


@pytest.fixture(scope="module")
def linear_screen():
    return simulate_perturbations(12, n_cells=400, n_doubles=5, random_state=1)


def test_exact_recovery_at_small_alpha(linear_screen):
    v, l_ = _exact_responses(linear_screen)
    truth = linear_screen.uns["ground_truth_effects"]  # regulator x target = A^T
    for alpha in (0.0, 1e-12):
        effects = clipr_effects(v, l_, alpha=alpha)
        np.testing.assert_allclose(effects, truth, atol=1e-6)


def test_tikhonov_shrinks_and_converges(linear_screen):
    v, l_ = _exact_responses(linear_screen)
    truth = linear_screen.uns["ground_truth_effects"]
    alphas = [1e-6, 1e-3, 1e-1, 1.0, 100.0]
    norms = [np.linalg.norm(clipr_effects(v, l_, alpha=a)) for a in alphas]
    errors = [np.linalg.norm(clipr_effects(v, l_, alpha=a) - truth) for a in alphas]
    assert np.all(np.diff(norms) < 0)  # more regularisation, smaller effects
    assert np.all(np.diff(errors) > 0)
    assert errors[0] < 1e-4 * np.linalg.norm(truth)
    # alpha is relative: rescaling the perturbation strength changes nothing
    np.testing.assert_allclose(
        clipr_effects(10 * v, 10 * l_, alpha=0.1), clipr_effects(v, l_, alpha=0.1), atol=1e-10
    )


def test_sampled_means_recover_the_network(linear_screen):
    x = np.asarray(linear_screen.X, dtype=np.float64)
    labels = linear_screen.obs["perturbation"].to_numpy()
    conditions = list(linear_screen.uns["simulation"]["conditions"])
    means = np.stack([x[labels == c].mean(0) for c in conditions])
    effects = clipr_effects(linear_screen.uns["simulation"]["shifts"][1:], means[1:] - means[0])
    genes = linear_screen.var_names
    scores = grn_scores(effects, linear_screen.uns["ground_truth_effects"], genes=genes)
    assert scores["auroc"] > 0.9, scores
    assert scores["sign_accuracy"] > 0.9, scores


def test_warns_when_not_identifiable(linear_screen):
    v, l_ = _exact_responses(linear_screen)
    few = slice(0, 8)  # 8 single knockdowns of 12 genes
    with pytest.warns(IdentifiabilityWarning, match="at least 12 perturbations"):
        effects = clipr_effects(v[few], l_[few])
    assert effects.shape == (12, 12)
    repeated = np.repeat(l_[:6], 3, axis=0)  # 18 perturbations, still only 6 directions
    with pytest.warns(IdentifiabilityWarning, match="span only 6"):
        clipr_effects(np.repeat(v[:6], 3, axis=0), repeated)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clipr_effects(v, l_)  # 12 singles + 5 doubles: identifiable, no warning
        clipr_effects(v[few], l_[few], min_rank=8)


@pytest.mark.parametrize(
    ("velocities", "shifts", "kwargs", "match"),
    [
        (np.ones((3, 2)), np.ones((3, 3)), {}, "same shape"),
        (np.ones(3), np.ones(3), {}, "2-D"),
        (np.full((2, 2), np.nan), np.ones((2, 2)), {}, "NaN"),
        (np.ones((2, 2)), np.eye(2), {"alpha": -1.0}, "alpha"),
    ],
)
def test_bad_input(velocities, shifts, kwargs, match):
    with pytest.raises(ValueError, match=match):
        clipr_effects(velocities, shifts, **kwargs)
