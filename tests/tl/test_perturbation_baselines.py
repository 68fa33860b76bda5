"""Perturbation baselines: exact additivity under a linear drift, not under the nonlinear one."""

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData

from celldyn.datasets import simulate_perturbations
from celldyn.tl._perturbation_baselines import perturbation_baseline


def _split(adata):
    """Training cells (control + singles) and the labels of the held-out doubles."""
    labels = adata.obs["perturbation"].astype(str)
    doubles = [p for p in labels.unique() if "+" in p]
    return adata[~labels.isin(doubles)].copy(), doubles


def test_additive_is_exact_for_the_means_of_a_linear_drift():
    adata = simulate_perturbations(8, n_cells=2, n_doubles=6, random_state=0)
    sim = adata.uns["simulation"]
    conditions = list(sim["conditions"])
    exact = AnnData(  # one cell per condition at its exact stationary mean
        sim["means"].astype(np.float32),
        obs=pd.DataFrame({"perturbation": conditions}, index=conditions),
        var=pd.DataFrame(index=adata.var_names),
    )
    train, doubles = _split(exact)
    pred = perturbation_baseline(train, doubles, method="additive")
    assert pred.n_obs == len(doubles) and list(pred.obs["perturbation"]) == doubles
    truth = sim["means"][[conditions.index(d) for d in doubles]]
    np.testing.assert_allclose(pred.X, truth, atol=1e-5)


def _additivity_z2(nonlinear: bool) -> float:
    """Mean squared z-score of (observed - additive) double means; about 1 if additive."""
    n = 400
    adata = simulate_perturbations(
        10, n_cells=n, n_doubles=10, nonlinear=nonlinear, perturbation_strength=4, random_state=1
    )
    train, doubles = _split(adata)
    pred = perturbation_baseline(train, doubles, method="additive")
    x, labels = np.asarray(adata.X, dtype=np.float64), adata.obs["perturbation"].astype(str)
    z = []
    for d in doubles:
        var = sum(x[labels == p].var(0) for p in [*d.split("+"), "control", d])
        predicted = np.asarray(pred[pred.obs["perturbation"] == d].X).mean(0)
        z.append((x[labels == d].mean(0) - predicted) / np.sqrt(var / n))
    return float(np.mean(np.square(z)))


def test_additive_fails_on_the_nonlinear_simulator():
    # 100 z-scores: under additivity the mean z^2 is 1 +- 0.14 (chi-square); measured 1.01 / 1.94
    assert _additivity_z2(nonlinear=False) < 1.3
    assert _additivity_z2(nonlinear=True) > 1.6


def test_mean_and_no_change_baselines():
    adata = simulate_perturbations(6, n_cells=50, n_doubles=3, random_state=0)
    train, doubles = _split(adata)
    x, labels = np.asarray(train.X, dtype=np.float64), train.obs["perturbation"].astype(str)
    ctrl = x[labels == "control"]
    singles = [p for p in labels.unique() if p != "control"]
    mean_shift = np.mean([x[labels == p].mean(0) - ctrl.mean(0) for p in singles], axis=0)
    mean = perturbation_baseline(train, doubles, method="mean")
    none = perturbation_baseline(train, doubles, method="no_change")
    for d in doubles:
        cells = np.asarray(mean[mean.obs["perturbation"] == d].X)
        np.testing.assert_allclose(cells, ctrl + mean_shift, atol=1e-5)
        np.testing.assert_allclose(none[none.obs["perturbation"] == d].X, ctrl, atol=1e-6)
    assert mean.X.dtype == np.float32 and list(mean.var_names) == list(adata.var_names)


@pytest.mark.parametrize(
    ("perturbations", "kwargs", "error", "match"),
    [
        (["G0+G1"], {"method": "median"}, ValueError, "method"),
        (["G0+G9"], {}, ValueError, "G9"),
        ([], {}, ValueError, "non-empty"),
        (["G0", "G0"], {}, ValueError, "more than once"),
        (["G0"], {"perturbation_key": "nope"}, KeyError, "nope"),
        (["G0"], {"layer": "nope"}, KeyError, "nope"),
    ],
)
def test_bad_input(perturbations, kwargs, error, match):
    adata = simulate_perturbations(6, n_cells=5, n_doubles=0, random_state=0)
    adata = adata[adata.obs["perturbation"] != "G5"].copy()
    before = adata.copy()
    with pytest.raises(error, match=match):
        perturbation_baseline(adata, perturbations, **kwargs)
    with pytest.raises(ValueError, match="G5"):  # the single G5 was never observed
        perturbation_baseline(adata, ["G0+G5"], method="additive")
    np.testing.assert_array_equal(adata.X, before.X)
    assert adata.obs.equals(before.obs)


def test_targets_need_not_be_measured():
    """Real screens (Norman 2019) perturb genes outside the measured panel: labels suffice."""
    adata = simulate_perturbations(6, n_cells=50, n_doubles=3, random_state=0)
    train, doubles = _split(adata)
    renamed = train.copy()
    rename = {g: f"X{g}" for g in adata.var_names}  # targets no longer name measured genes
    renamed.obs["perturbation"] = [
        "+".join(rename[g] for g in p.split("+")) if p != "control" else p
        for p in train.obs["perturbation"].astype(str)
    ]
    new_doubles = ["+".join(rename[g] for g in d.split("+")) for d in doubles]
    ours = perturbation_baseline(renamed, new_doubles)
    reference = perturbation_baseline(train, doubles)
    np.testing.assert_array_equal(ours.X, reference.X)


@pytest.mark.parametrize("layer", [None, "expr"])
@pytest.mark.parametrize("method", ["additive", "mean", "no_change"])
def test_nan_expression_raises(layer, method, assert_unchanged):
    adata = simulate_perturbations(6, n_cells=5, n_doubles=0, random_state=0)
    x = np.array(adata.X, dtype=np.float32)
    x[3, 2] = np.nan  # a control cell: every baseline reads it
    if layer is None:
        adata.X = x
    else:
        adata.layers[layer] = x
    before = adata.copy()
    name = r"adata\.X" if layer is None else r"adata\.layers\['expr'\]"
    with pytest.raises(ValueError, match=rf"{name} contains 1 NaN"):
        perturbation_baseline(adata, ["G0+G1"], method=method, layer=layer)
    assert_unchanged(adata, before)
