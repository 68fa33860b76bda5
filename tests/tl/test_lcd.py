import numpy as np
import pytest

import celldyn as cd

FAST = {"max_epochs": 3, "score_epochs": 3, "batch_size": 1024, "progress": False}


@pytest.fixture(scope="module")
def _screen():
    return cd.datasets.simulate_perturbations(
        5, n_cells=40, n_doubles=1, counts=True, random_state=1
    )


@pytest.fixture
def screen(_screen):
    return _screen.copy()


def _unchanged(adata, before):
    assert list(adata.obs.columns) == list(before.obs.columns)
    assert set(adata.uns) == set(before.uns)
    assert set(adata.obsm) == set(before.obsm)
    np.testing.assert_array_equal(adata.X, before.X)


@pytest.mark.usefixtures("one_torch_thread")
def test_lcd_writes_latents_and_parameters(screen):
    before = screen.copy()
    out = cd.tl.lcd(screen, copy=True, mixing_steps=50, **FAST)
    _unchanged(screen, before)
    latent = out.obsm["X_lcd"]
    assert latent.shape == (screen.n_obs, 5) and latent.dtype == np.float32
    assert np.isfinite(latent).all()
    result = out.uns["lcd"]
    labels = list(result["perturbation_labels"])
    assert labels[0] == "control" and set(labels) == set(screen.obs["perturbation"])
    assert list(result["interventions"]) == sorted(screen.var_names)
    assert result["targets"] == {g: g for g in screen.var_names}
    mixing = result["mixing"]
    np.testing.assert_allclose(mixing, -mixing.T)
    assert np.exp(np.log(result["diffusion"]).mean()) == pytest.approx(1.0, rel=1e-5)
    assert np.all(result["gene_scale"] > 0) and np.all(result["inverse_dispersion"] > 0)
    sigmas = result["sigmas"]
    assert result["drift_sigma"] in sigmas  # a level the network was fitted at
    assert len(result["history"]["observation_train_loss"]) == 3
    assert len(result["history"]["score_train_loss"]) == 3
    assert len(result["history"]["mixing_objective"]) == 50
    assert result["params"]["max_epochs"] == 3


@pytest.mark.usefixtures("one_torch_thread")
def test_lcd_layer_and_custom_labels(screen):
    screen.layers["raw"] = screen.X.copy()
    screen.X = np.log1p(screen.X)
    screen.obs["condition"] = screen.obs["perturbation"].astype(str).replace("control", "NT")
    assert (
        cd.tl.lcd(
            screen,
            perturbation_key="condition",
            control="NT",
            layer="raw",
            key_added="k",
            mixing_steps=10,
            **FAST,
        )
        is None
    )
    assert screen.obsm["X_k"].shape == (screen.n_obs, 5)
    assert screen.uns["k"]["perturbation_labels"][0] == "NT"


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        (("control", "G1"), "no control cells"),
        (("G1", "G1+"), "cannot be parsed"),
    ],
)
def test_lcd_bad_labels(screen, replace, message):
    screen.obs["perturbation"] = screen.obs["perturbation"].astype(str).replace(*replace)
    before = screen.copy()
    with pytest.raises(ValueError, match=message):
        cd.tl.lcd(screen, **FAST)
    _unchanged(screen, before)


@pytest.mark.usefixtures("one_torch_thread")
def test_lcd_interventions_without_measured_targets(screen):
    """A drug and an unmeasured gene are labels like any other; `targets` maps the drug."""
    labels = screen.obs["perturbation"].astype(str)
    screen.obs["perturbation"] = labels.replace({"G1": "DRUG", "G2": "XYZ"}).to_numpy()
    before = screen.copy()
    with pytest.raises(ValueError, match="not in adata.var_names"):
        cd.tl.lcd(screen, targets={"DRUG": "NOTAGENE"}, **FAST)
    _unchanged(screen, before)
    cd.tl.lcd(screen, targets={"DRUG": "G1", "G3": None}, mixing_steps=10, **FAST)
    result = screen.uns["lcd"]
    assert "DRUG" in result["interventions"] and "XYZ" in result["interventions"]
    genes = {g for q in screen.obs["perturbation"] if q != "control" for g in q.split("+")}
    expected = {g: g for g in genes & set(screen.var_names) - {"G3"}}
    assert result["targets"] == {"DRUG": "G1", **expected}
    assert result["params"]["targets"] == {"DRUG": "G1", "G3": ""}
    assert np.isfinite(screen.obsm["X_lcd"]).all()


def test_lcd_single_condition_and_missing_key(screen):
    one = screen[screen.obs["perturbation"] == "control"].copy()
    before = one.copy()
    with pytest.raises(ValueError, match="at least 2"):
        cd.tl.lcd(one, **FAST)
    _unchanged(one, before)
    with pytest.raises(KeyError, match="nope"):
        cd.tl.lcd(screen, perturbation_key="nope", **FAST)
    with pytest.raises(KeyError, match="nolayer"):
        cd.tl.lcd(screen, layer="nolayer", **FAST)


def test_lcd_rejects_non_counts(screen):
    screen.X = np.log1p(screen.X)
    before = screen.copy()
    with pytest.raises(ValueError, match="raw counts"):
        cd.tl.lcd(screen, **FAST)
    _unchanged(screen, before)


def test_lcd_rejects_duplicated_var_names(screen, assert_unchanged):
    screen.var_names = ["G0", "G1", "G1", "G3", "G4"]
    before = screen.copy()
    with pytest.raises(ValueError, match="var_names are not unique"):
        cd.tl.lcd(screen, **FAST)
    assert_unchanged(screen, before)


@pytest.mark.usefixtures("one_torch_thread")
def test_lcd_divergence_raises_and_writes_nothing(screen, assert_unchanged):
    from celldyn.nn import SolverDivergedError

    before = screen.copy()
    with pytest.raises(SolverDivergedError, match="stage 1.*`lr`"):
        cd.tl.lcd(screen, lr=1e6, posterior_draws=2, mixing_steps=5, **FAST)
    assert_unchanged(screen, before)
