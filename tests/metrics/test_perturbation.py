"""Unseen-perturbation scores: exact values on constructed data and the baselines' ranking."""

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

from celldyn.metrics import energy_distance, mmd
from celldyn.metrics._perturbation import perturbation_scores, perturbation_table, top_de_genes


@pytest.fixture(scope="module")
def cells():
    rng = np.random.default_rng(0)
    ctrl = rng.normal(size=(300, 30))
    change = np.zeros(30)
    change[:5] = [3.0, -2.0, 1.5, -1.0, 0.8]
    obs = rng.normal(size=(300, 30)) + change
    return ctrl, obs, rng.normal(size=(300, 30)) + change


def test_scores_of_known_predictions(cells):
    ctrl, obs, fresh = cells  # fresh: an independent sample of the observed distribution
    exact = perturbation_scores(obs, obs, ctrl)
    assert exact["rmse_mean"] == exact["rmse_mean_de"] == 0.0
    assert exact["pearson_delta"] == pytest.approx(1.0)
    assert exact["pearson_delta_de"] == pytest.approx(1.0)
    assert exact["energy_distance"] == pytest.approx(0.0, abs=1e-12)
    same = perturbation_scores(fresh, obs, ctrl)
    assert abs(same["mmd"]) < 0.01 and same["pearson_delta_de"] > 0.95

    scaled = ctrl.mean(0) + 2 * (obs - ctrl.mean(0))  # twice the change: correlation stays 1
    scores = perturbation_scores(scaled, obs, ctrl)
    assert scores["pearson_delta"] == pytest.approx(1.0)
    delta = obs.mean(0) - ctrl.mean(0)
    assert scores["rmse_mean"] == pytest.approx(np.sqrt(np.mean(delta**2)))
    assert scores["energy_distance"] == pytest.approx(energy_distance(scaled, obs))

    none = perturbation_scores(ctrl, obs, ctrl)
    assert np.isnan(none["pearson_delta"]) and np.isnan(none["pearson_delta_de"])
    assert none["rmse_mean"] == pytest.approx(np.sqrt(np.mean(delta**2)))
    # a sample of the observed law is close, the unchanged control far
    assert abs(same["mmd"]) < 0.01 < 0.1 < none["mmd"]
    assert same["energy_distance"] < none["energy_distance"] / 10


def test_mmd_uses_one_kernel_for_every_prediction(cells):
    from celldyn.nn._kernels import median_bandwidth

    ctrl, obs, _ = cells
    import torch

    h = median_bandwidth(torch.from_numpy(obs), torch.from_numpy(ctrl))
    pred = obs[:150] + 0.5
    expected = mmd(pred, obs, kernel="multiscale_rbf", bandwidth=h, unbiased=True)
    assert perturbation_scores(pred, obs, ctrl)["mmd"] == pytest.approx(expected)


def test_top_de_genes_are_the_changed_ones(cells):
    ctrl, obs, _ = cells
    assert set(top_de_genes(obs, ctrl, 5)) == {0, 1, 2, 3, 4}
    assert list(top_de_genes(obs, ctrl, 2)) == [0, 1]
    scores = perturbation_scores(ctrl + np.eye(30)[7] * 5, obs, ctrl, n_top_de=5)
    assert scores["rmse_mean_de"] == pytest.approx(
        np.sqrt(np.mean((obs.mean(0) - ctrl.mean(0))[:5] ** 2))
    )


def test_table_scores_every_prediction(cells):
    ctrl, obs, _ = cells
    genes = [f"g{i}" for i in range(30)]
    observed = AnnData(
        np.concatenate([ctrl, obs, obs + 1]),
        obs=pd.DataFrame(
            {"perturbation": ["control"] * 300 + ["A+B"] * 300 + ["C+D"] * 300},
            index=[f"o{i}" for i in range(900)],
        ),
        var=pd.DataFrame(index=genes),
    )
    pred = AnnData(
        np.concatenate([obs, ctrl]),
        obs=pd.DataFrame(
            {"perturbation": ["A+B"] * 300 + ["C+D"] * 300}, index=[f"p{i}" for i in range(600)]
        ),
        var=pd.DataFrame(index=genes),
    )
    table = perturbation_table(pred, observed)
    assert list(table.index) == ["A+B", "C+D"] and table.index.name == "perturbation"
    assert table.loc["A+B", "rmse_mean"] == 0.0
    expected = perturbation_scores(ctrl, obs + 1, ctrl)
    assert table.loc["C+D"].to_dict() == pytest.approx(expected, nan_ok=True)
    with pytest.raises(ValueError, match="E"):
        perturbation_table(pred, observed, perturbations=["E"])
    with pytest.raises(ValueError, match="same genes"):
        perturbation_table(pred[:, ::-1].copy(), observed)
    with pytest.raises(KeyError, match="condition"):
        perturbation_table(pred, observed, perturbation_key="condition")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"pred": np.ones((5, 3))}, "same number of dimensions"),
        ({"pred": np.full((5, 30), np.nan)}, "NaN"),
        ({"n_top_de": 0}, "n_top_de"),
        ({"pred": np.ones((1, 30))}, "at least 2"),
    ],
)
def test_bad_input(cells, kwargs, match):
    ctrl, obs, _ = cells
    args = {"pred": obs, "obs": obs, "ctrl": ctrl, **kwargs}
    with pytest.raises(ValueError, match=match):
        perturbation_scores(args.pop("pred"), args.pop("obs"), args.pop("ctrl"), **args)
