"""Cell-MNN's mean-path term: the pushed mean between training times follows a spline."""

import anndata as ad
import numpy as np
import pytest
import torch
from scipy.interpolate import CubicSpline

from celldyn.models._cellmnn import CellMNN, _SnapshotDataModule
from celldyn.module._cellmnn import MEAN_PATH_POINTS, mean_path_error

TRAIN = {"accelerator": "cpu", "progress": False}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _snapshots(means, n_per_time=30, seed=0):
    """Cells around ``means[g]`` at time ``g``, each group's noise centred exactly."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(len(means), n_per_time, means.shape[1]))
    z = (means[:, None] + noise - noise.mean(1, keepdims=True)).reshape(-1, means.shape[1])
    return z, np.repeat(np.arange(len(means)), n_per_time)


def _datamodule(z, codes, train_groups, condition=None, points=MEAN_PATH_POINTS):
    return _SnapshotDataModule(
        z,
        codes,
        np.zeros(len(z), dtype=np.int64) if condition is None else condition,
        np.linspace(0.0, 1.0, len(train_groups)),
        np.asarray(train_groups),
        batch_size=len(z),
        n_partners=8,
        validation_size=0.0,
        random_state=0,
        mean_path_points=points,
    )


def _batch(data):
    return data._collate(data.train_idx, "train", np.random.default_rng(0))


def test_spline_of_the_training_means_leaves_the_held_out_time_out():
    means = np.array([[0.0, 1.0], [1.0, 3.0], [50.0, -50.0], [2.0, 2.5], [2.5, 1.0]])
    z, codes = _snapshots(means)
    data = _datamodule(z, codes, [True, True, False, True, True])
    times = np.linspace(0.0, 1.0, 5)
    train = [0, 1, 3, 4]
    spline = CubicSpline(times[train], means[train], bc_type="natural")
    path_times, path_means = data.path["path_times"], data.path["path_means"]
    assert path_times.shape == (1, 5, MEAN_PATH_POINTS)
    for s, g in ((0, 1), (1, 3), (3, 4)):  # intervals skip the held-out time 2
        grid = path_times[0, s].numpy()
        assert np.all((grid > times[s]) & (grid < times[g]))
        np.testing.assert_allclose(path_means[0, s].numpy(), spline(grid), atol=1e-5)
    assert "path_means" in _batch(data)
    assert "path_means" not in _batch(_datamodule(z, codes, [True] * 5, points=0))


def test_term_is_zero_on_the_spline_and_grows_off_it():
    velocity = np.array([0.5, -1.0])
    times = np.linspace(0.0, 1.0, 4)
    means = np.array([1.0, 2.0]) + times[:, None] * velocity  # the spline is this line
    z, codes = _snapshots(means)
    batch = _batch(_datamodule(z, codes, [True] * 4))
    start = batch["group"] < 3
    z0 = batch["z"][start]
    matrix = torch.zeros(len(z0), 2, 2)
    tensors = {
        k: v[start] if k in ("z", "t", "group", "condition") else v for k, v in batch.items()
    }
    drift = torch.as_tensor(velocity, dtype=torch.float32).expand(len(z0), 2)
    assert float(mean_path_error(matrix, z0, drift, tensors)) < 1e-10
    shift = torch.tensor([0.3, 0.0])
    error = float(mean_path_error(matrix, z0, drift + shift, tensors))
    lags = np.arange(1, MEAN_PATH_POINTS + 1) / (MEAN_PATH_POINTS + 1) * (times[1] - times[0])
    np.testing.assert_allclose(error, np.mean(np.square(0.3 * lags)) / 2, rtol=1e-5)


def test_spline_per_condition():
    z_a, codes_a = _snapshots(np.array([[0.0], [1.0], [4.0]]))
    z_b, codes_b = _snapshots(np.array([[0.0], [-1.0], [-1.5]]))
    condition = np.repeat([0, 1], len(z_a))
    data = _datamodule(
        np.concatenate([z_a, z_b]), np.concatenate([codes_a, codes_b]), [True] * 3, condition
    )
    path_means = data.path["path_means"]
    assert path_means.shape == (2, 3, MEAN_PATH_POINTS, 1)
    assert torch.all(path_means[0, 0] > 0) and torch.all(path_means[1, 0] < 0)


def _adata():
    rng = np.random.default_rng(0)
    t = np.repeat(np.arange(4.0), 40)
    z = np.stack([np.sin(t), 0.5 * t], 1) + 0.3 * rng.normal(size=(len(t), 2))
    adata = ad.AnnData(np.zeros((len(t), 1), dtype=np.float32), obsm={"X_pca": z})
    adata.obs["time"] = t
    CellMNN.setup_anndata(adata, time_key="time", n_components=2)
    return adata


def _fit(adata, **kwargs):
    torch.manual_seed(0)
    model = CellMNN(adata, n_hidden=16, n_layers=2, **kwargs)
    model.train(holdout=[2.0], max_epochs=4, batch_size=64, n_partners=32, **TRAIN)
    return model


def test_zero_weight_leaves_loss_and_fit_unchanged():
    adata = _adata()
    default, zero = _fit(adata), _fit(adata, lambda_mean_path=0.0)
    np.testing.assert_array_equal(default.predict(1.0, 2.0), zero.predict(1.0, 2.0))
    np.testing.assert_array_equal(
        default.history["train_loss"].to_numpy(), zero.history["train_loss"].to_numpy()
    )
    # with weight 0 the loss ignores a spline in the minibatch
    z, codes = _snapshots(np.array([[0.0, 1.0], [1.0, 3.0], [2.0, 2.5]]))
    batch = _batch(_datamodule(z, codes, [True] * 3))
    plain = {k: v for k, v in batch.items() if not k.startswith("path_")}
    module = zero.module
    losses = [
        module.loss(b, module.inference(b["z"], b["t"], b["condition"]), {}) for b in (batch, plain)
    ]
    assert torch.equal(losses[0].loss, losses[1].loss)
    assert "mean_path" not in losses[0].extra_metrics


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf")])
def test_bad_weight_raises(value):
    with pytest.raises(ValueError, match="lambda_mean_path"):
        CellMNN(_adata(), lambda_mean_path=value)


def test_trains_logs_and_survives_save_load(tmp_path):
    adata = _adata()
    model = _fit(adata, lambda_mean_path=1.0)
    assert {"mean_path_train", "mean_path_validation"} <= set(model.history)
    assert np.all(np.isfinite(model.history["mean_path_train"].to_numpy(float)))
    model.save(str(tmp_path), overwrite=True)
    loaded = CellMNN.load(str(tmp_path), adata=adata)
    assert loaded.module.lambda_mean_path == 1.0
    np.testing.assert_array_equal(loaded.predict(1.0, 2.0), model.predict(1.0, 2.0))
