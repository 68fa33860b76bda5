import anndata as ad
import numpy as np
import pytest
from anndata.tests.helpers import assert_equal

import celldyn as cd

KEY = "celldyn_trajectories"


def _adata(x, indices, times=None):
    adata = ad.AnnData(np.zeros((len(x), 1), dtype=np.float32), obsm={"X_pca": np.asarray(x)})
    entry = {"indices": np.asarray(indices, dtype=np.int64)}
    if times is not None:
        entry["times"] = np.asarray(times, dtype=np.float64)
    adata.uns[KEY] = entry
    return adata


def test_straight_line_at_constant_speed():
    direction = np.array([3.0, -4.0, 0.0])  # norm 5
    x = np.arange(8)[:, None] * direction
    # two trajectories: forward at dt = 0.5 (speed 10), and every other cell at dt = 2 (speed 5)
    adata = _adata(x, [[0, 1, 2, 3], [0, 2, 4, 6]], [[0, 0.5, 1, 1.5], [1, 3, 5, 7]])
    res = cd.metrics.trajectory_quality(adata)
    np.testing.assert_allclose(res["velocity_norm"], [[10, 10, 10], [5, 5, 5]])
    np.testing.assert_allclose(res["smoothness"], 0.0, atol=1e-12)
    np.testing.assert_allclose(res["lipschitz"], 0.0, atol=1e-12)
    np.testing.assert_allclose(res["mean_velocity_norm"], [10, 5])
    assert res["summary"]["mean_velocity_norm"] == pytest.approx(7.5)
    assert res["summary"]["n_trajectories"] == 2


def test_circle_has_known_speed_and_lipschitz():
    # uniform motion on a circle of radius r: chords of length c = 2 r sin(theta / 2) every dt;
    # velocities c / dt rotate by theta, so ||v_{j+1} - v_j|| / ||x_{j+1} - x_j|| = c / (dt r)
    r, theta, dt = 2.0, 0.3, 0.1
    ang = theta * np.arange(6)
    x = r * np.stack([np.cos(ang), np.sin(ang)], 1)
    adata = _adata(x, [np.arange(6)], [dt * np.arange(6)])
    res = cd.metrics.trajectory_quality(adata)
    chord = 2 * r * np.sin(theta / 2)
    np.testing.assert_allclose(res["velocity_norm"], chord / dt)
    np.testing.assert_allclose(res["smoothness"], chord / (dt * r))
    assert res["lipschitz"][0] == pytest.approx(chord / (dt * r))


def test_repeated_cells_are_skipped():
    x = np.arange(5)[:, None] * np.array([1.0, 0.0])
    adata = _adata(x, [[0, 0, 1, 2, 2, 3]], [[0, 0, 1, 2, 2, 3]])
    res = cd.metrics.trajectory_quality(adata)
    np.testing.assert_allclose(res["velocity_norm"], [[1, 1, 1, np.nan, np.nan]])
    np.testing.assert_allclose(res["smoothness"], [[0, 0, np.nan, np.nan]])
    assert res["summary"]["n_skipped_steps"] == 2


def test_unit_steps_without_times():
    x = np.arange(4)[:, None] * np.array([0.0, 2.0])
    res = cd.metrics.trajectory_quality(_adata(x, [[0, 1, 2, 3]]))
    np.testing.assert_allclose(res["velocity_norm"], 2.0)


def test_on_extracted_trajectories_writes_nothing():
    rng = np.random.default_rng(0)
    tau = rng.uniform(0, 1, 400)
    x = np.stack([4 * tau, 0.05 * rng.normal(size=400), 0.05 * rng.normal(size=400)], 1)
    adata = ad.AnnData(np.zeros((400, 1), dtype=np.float32), obsm={"X_pca": x})
    adata.obs["celldyn_time"] = np.floor(tau * 4)
    res = {}
    for method in ["knn", "quantile"]:
        cd.pp.trajectories(adata, method=method, n_trajectories=50, length=4, k=8)
        before = adata.copy()
        res[method] = cd.metrics.trajectory_quality(adata)
        assert_equal(adata, before)
        assert res[method]["velocity_norm"].shape == (50, 3)
        assert res[method]["lipschitz"].shape == (50,)
    # quantile chains jump one group (~1 along the ramp) per unit of time
    assert res["quantile"]["summary"]["median_velocity_norm"] == pytest.approx(1.0, abs=0.2)


@pytest.mark.parametrize(
    ("entry", "kwargs", "error", "match"),
    [
        (None, {}, KeyError, "celldyn_trajectories"),
        ({"indices": np.array([[0, 1]])}, {"rep": "X_umap"}, KeyError, "X_umap"),
        ({"indices": np.array([[0, 9]])}, {}, ValueError, "outside"),
        ({"indices": np.array([[0], [1]])}, {}, ValueError, "length >= 2"),
        ({"indices": np.array([[0.0, 1.0]])}, {}, ValueError, "integer"),
        ({"indices": np.array([[0, 1]]), "times": np.zeros((2, 2))}, {}, ValueError, "times"),
        ({"times": np.zeros((1, 2))}, {}, KeyError, "indices"),
    ],
)
def test_bad_input(entry, kwargs, error, match):
    adata = ad.AnnData(np.zeros((3, 1), dtype=np.float32), obsm={"X_pca": np.eye(3)})
    if entry is not None:
        adata.uns[KEY] = entry
    before = adata.copy()
    with pytest.raises(error, match=match):
        cd.metrics.trajectory_quality(adata, **kwargs)
    assert_equal(adata, before)


def test_nan_in_rep_is_rejected():
    x = np.eye(3)
    x[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        cd.metrics.trajectory_quality(_adata(x, [[0, 1, 2]]))
