"""FLeCSDrug: drug effects learnt on a frozen, hand-built FLeCS field from simulated paths."""

import numpy as np
import pandas as pd
import pytest
import torch
from anndata import AnnData

from celldyn.models import FLeCSDrug
from celldyn.nn import GRNVectorField, integrate

FAST = {"accelerator": "cpu", "progress": False}
N_GENES, N_FEATURES = 5, 3
TIMES = np.linspace(0.0, 2.0, 5)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _true_field() -> GRNVectorField:
    """Five genes: a repressive 3-cycle 0->1->2-|0, a 3<->4 toggle and 0->3."""
    src, dst = [0, 1, 2, 3, 4, 0], [1, 2, 0, 4, 3, 3]
    field = GRNVectorField(N_GENES, src, dst, decay_init=[0.6, 0.5, 0.7, 0.4, 0.5])
    with torch.no_grad():
        field.grn.weight.copy_(torch.tensor([2.0, 1.5, -2.0, -1.5, -1.5, 1.0]))
        field.bias.copy_(torch.tensor([0.5, -0.5, 0.0, 0.3, -0.2]))
    return field


def _true_offsets(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Known drug effects: linear maps of the features (production) and (decay)."""
    rng = np.random.default_rng(1)
    to_production = rng.normal(0.0, 1.0, (N_FEATURES, N_GENES))
    to_decay = rng.normal(0.0, 0.15, (N_FEATURES, N_GENES))
    return features @ to_production, features @ to_decay


def _simulate(field, features, conditions, n_per_condition, seed, noise=0.01):
    """Trajectories from random starts under each condition's true offsets (+ noise).

    Conditions without features (the control) get zero features, hence zero offsets.
    """
    rng = np.random.default_rng(seed)
    names = np.repeat(conditions, n_per_condition)
    production, decay = _true_offsets(features.reindex(names).fillna(0.0).to_numpy())
    x0 = torch.as_tensor(rng.uniform(0.0, 1.5, (len(names), N_GENES)), dtype=torch.float32)
    field.production_offset = torch.as_tensor(production, dtype=torch.float32)
    field.decay_offset = torch.as_tensor(decay, dtype=torch.float32)
    with torch.no_grad():
        paths = integrate(field, x0, torch.as_tensor(TIMES, dtype=torch.float32), rtol=1e-6)
    field.production_offset = field.decay_offset = None
    paths = paths.transpose(0, 1).numpy()  # (n_traj, length, genes)
    return paths + noise * rng.normal(size=paths.shape), names


def _as_adata(paths, names):
    """One cell per trajectory point; trajectories in uns['celldyn_trajectories']."""
    n_traj, length, _ = paths.shape
    adata = AnnData(paths.reshape(-1, N_GENES).astype(np.float32))
    adata.obs["drug"] = pd.Categorical(np.repeat(names, length))
    adata.uns["celldyn_trajectories"] = {
        "indices": np.arange(n_traj * length).reshape(n_traj, length),
        "times": np.tile(TIMES, (n_traj, 1)),
    }
    return adata


@pytest.fixture(scope="module")
def drug_data():
    """16 training drugs (8 trajectories each) + control, 4 held-out drugs."""
    rng = np.random.default_rng(0)
    names = [f"drug{i}" for i in range(20)]
    features = pd.DataFrame(rng.normal(size=(20, N_FEATURES)), index=names)
    field = _true_field()
    train, held_out = names[:16], names[16:]
    paths, labels = _simulate(field, features, [*train, "control"], 8, seed=2)
    return {
        "adata": _as_adata(paths, labels),
        "features": features,
        "field": field,
        "train": train,
        "held_out": _simulate(field, features, held_out, 8, seed=5),
    }


@pytest.fixture(scope="module")
def trained(drug_data):
    adata = drug_data["adata"].copy()
    FLeCSDrug.setup_anndata(adata, condition_key="drug")
    base = drug_data["field"]
    before = {k: v.clone() for k, v in base.state_dict().items()}
    torch.manual_seed(0)  # MLP initialisation (seeds 0-4 measured: see the floors below)
    model = FLeCSDrug(adata, base, drug_data["features"], n_hidden=32)
    model.train(max_epochs=150, batch_size=128, lr=0.02, validation_size=0.0, **FAST)
    return model, adata, before


def _pearson(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def test_base_frozen_bit_for_bit(trained, drug_data):
    model, _, before = trained
    loss = model.history["train_loss"].to_numpy().ravel()
    assert loss[-1] < 0.01 * loss[0]  # measured 0.061 -> 0.00015
    after = model.module.field.state_dict()
    assert before.keys() == after.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value), key
        assert torch.equal(drug_data["field"].state_dict()[key], value), key  # user's copy
    assert not any(p.requires_grad for p in model.module.field.parameters())


def test_learns_true_offsets(trained, drug_data):
    model, _, _ = trained
    production, decay = model.get_offsets(drug_data["train"])
    true_production, true_decay = _true_offsets(drug_data["features"].loc[drug_data["train"]])
    assert production.shape == decay.shape == (16, N_GENES)
    assert _pearson(production, true_production) >= 0.95  # measured 0.996 (seeds 0-4: >= 0.996)
    assert _pearson(decay, true_decay) >= 0.95  # measured 0.992 (seeds 0-4: >= 0.992)
    # names and feature rows give the same offsets; the control has none
    by_features = model.get_offsets(drug_data["features"].loc[drug_data["train"]])
    np.testing.assert_allclose(by_features[0], production, rtol=1e-6)
    zero_production, zero_decay = model.get_offsets(["control"])
    assert not zero_production.any() and not zero_decay.any()


def test_held_out_drug_beats_no_effect(trained, drug_data):
    model, _, _ = trained
    paths, names = drug_data["held_out"]
    times = np.tile(TIMES, (len(paths), 1))
    unseen = drug_data["features"].loc[names].to_numpy()  # features only, no name
    predicted = model.predict_trajectories(paths[:, 0], times, unseen)
    no_effect = model.predict_trajectories(paths[:, 0], times, ["control"] * len(paths))
    assert predicted.shape == paths.shape
    mse = ((predicted - paths)[:, 1:] ** 2).mean()
    baseline = ((no_effect - paths)[:, 1:] ** 2).mean()
    assert mse < 0.05 * baseline  # measured 0.0008 vs 0.090 (seeds 0-4: ratio <= 0.013)
    # the no-effect prediction is the base field's own solution (up to solver tolerance)
    with torch.no_grad():
        base = integrate(
            drug_data["field"],
            torch.as_tensor(paths[:4, 0], dtype=torch.float32),
            torch.as_tensor(TIMES, dtype=torch.float32),
        )
    np.testing.assert_allclose(no_effect[:4], base.transpose(0, 1).numpy(), atol=1e-3)


def test_velocity_under_each_condition(trained, drug_data):
    model, adata, _ = trained
    velocity = model.get_velocity()
    assert velocity.shape == adata.shape and velocity.dtype == np.float32
    field = drug_data["field"]
    x = torch.as_tensor(adata.X)
    control = (adata.obs["drug"] == "control").to_numpy()
    with torch.no_grad():
        np.testing.assert_allclose(
            velocity[control], field.gene_velocity(x[control]).numpy(), rtol=1e-5, atol=1e-6
        )
        cell = int(np.flatnonzero(~control)[0])
        production, decay = model.get_offsets([adata.obs["drug"].iloc[cell]])
        field.production_offset, field.decay_offset = torch.tensor(production), torch.tensor(decay)
        expected = field.gene_velocity(x[cell : cell + 1]).numpy()
        field.production_offset = field.decay_offset = None
    np.testing.assert_allclose(velocity[cell : cell + 1], expected, rtol=1e-5, atol=1e-6)


def test_save_load(trained, tmp_path):
    model, adata, _ = trained
    model.save(tmp_path / "drug", overwrite=True)
    loaded = FLeCSDrug.load(tmp_path / "drug", adata=adata)
    np.testing.assert_array_equal(loaded.get_velocity(), model.get_velocity())
    np.testing.assert_array_equal(loaded.get_offsets()[0], model.get_offsets()[0])


def test_bad_input(drug_data):
    adata, features, base = drug_data["adata"].copy(), drug_data["features"], drug_data["field"]
    with pytest.raises(KeyError, match="no column 'nope'"):
        FLeCSDrug.setup_anndata(adata, condition_key="nope")
    FLeCSDrug.setup_anndata(adata, condition_key="drug")
    with pytest.raises(KeyError, match=r"\['drug7'\] .* no row in `features`"):
        FLeCSDrug(adata, base, features.drop(index="drug7"))
    nan = features.copy()
    nan.iloc[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN .* \['drug2'\]"):
        FLeCSDrug(adata, base, nan)
    with pytest.raises(TypeError, match="DataFrame"):
        FLeCSDrug(adata, base, features.to_numpy())
    with pytest.raises(ValueError, match="models 3 genes"):
        FLeCSDrug(adata, GRNVectorField(3, [0], [1]), features)
    model = FLeCSDrug(adata, base, features)
    with pytest.raises(ValueError, match="3 columns"):
        model.get_offsets(np.zeros((2, 4)))
    with pytest.raises(KeyError, match="unknown_drug"):
        model.get_offsets(["unknown_drug"])
    with pytest.raises(ValueError, match="2-D feature matrix"):
        model.get_offsets(np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        model.get_offsets(np.full((1, 3), np.nan))
    mixed = adata.copy()
    mixed.uns["celldyn_trajectories"]["indices"][0, -1] = adata.n_obs - 1 - 5 * 16
    FLeCSDrug.setup_anndata(mixed, condition_key="drug")
    with pytest.raises(ValueError, match="mix cells of different treated conditions"):
        FLeCSDrug(mixed, base, features).train(max_epochs=1, **FAST)
    only_control = adata[adata.obs["drug"] == "control"].copy()
    only_control.uns["celldyn_trajectories"] = {
        "indices": np.arange(only_control.n_obs).reshape(-1, len(TIMES)),
        "times": np.tile(TIMES, (only_control.n_obs // len(TIMES), 1)),
    }
    FLeCSDrug.setup_anndata(only_control, condition_key="drug")
    with pytest.raises(ValueError, match="nothing to learn"):
        FLeCSDrug(only_control, base, features).train(max_epochs=1, **FAST)


def _set_drug(adata, index, label):
    labels = adata.obs["drug"].astype(object).to_numpy()
    labels[index] = label
    adata.obs["drug"] = labels


def _set_x_nan(adata):
    adata.X[1, 2] = np.nan


BAD_DRUG_INPUTS = {
    "missing_gene": (lambda a: a[:, 1:].copy(), ValueError, "var_names"),
    "nan_x": (lambda a: _set_x_nan(a) or a, ValueError, r"adata\.X contains 1 NaN"),
    "no_condition": (
        lambda a: a.obs.drop(columns="drug", inplace=True) or a,
        KeyError,
        "no column 'drug'",
    ),
    "missing_condition": (
        lambda a: _set_drug(a, 0, None) or a,
        ValueError,
        "missing condition labels",
    ),
    "unknown_condition": (
        lambda a: _set_drug(a, 0, "drug99") or a,
        KeyError,
        r"\['drug99'\] .* no row in `features`",
    ),
}


@pytest.mark.parametrize("bad", list(BAD_DRUG_INPUTS))
def test_get_velocity_checks_new_adata_before_registering(drug_data, bad, assert_unchanged):
    model_data = drug_data["adata"].copy()
    FLeCSDrug.setup_anndata(model_data, condition_key="drug")
    model = FLeCSDrug(model_data, drug_data["field"], drug_data["features"], n_hidden=8)
    change, error, match = BAD_DRUG_INPUTS[bad]
    adata = change(drug_data["adata"].copy())
    before = adata.copy()
    with pytest.raises(error, match=match):
        model.get_velocity(adata)
    assert_unchanged(adata, before)
    assert not any(k.startswith("_scvi") for k in [*adata.uns, *adata.obs])
    # an error after registering (NaN drug effects) also leaves a new AnnData as it was
    adata = drug_data["adata"].copy()
    before = adata.copy()
    with torch.no_grad():
        next(model.module.effect.parameters()).fill_(float("nan"))
    with pytest.raises(ValueError, match="`production_offset` contains NaN"):
        model.get_velocity(adata)
    assert_unchanged(adata, before)


def test_training_solves_are_bounded():
    """A stiff field stops at the training step bound; prediction keeps integrate's default."""
    from celldyn.module._flecs import TRAIN_MAX_NUM_STEPS
    from celldyn.module._flecs_drug import FLeCSDrugModule
    from celldyn.nn import SolverDivergedError

    module = FLeCSDrugModule(_true_field(), N_FEATURES, n_hidden=4)
    with torch.no_grad():
        module.field._raw_decay.fill_(1e7)  # stiff: dopri5 shrinks its step without end
    x, t = torch.rand(3, 2, N_GENES), torch.tensor([[0.0, 1.0]] * 3)
    features = torch.zeros(3, N_FEATURES)
    with pytest.raises(SolverDivergedError, match=f"max_num_steps={TRAIN_MAX_NUM_STEPS} "):
        module.inference(x, t, features)
    with pytest.raises(SolverDivergedError, match="max_num_steps=10000 "):
        module.integrate(x[:, 0], t, *module.effect(features))
