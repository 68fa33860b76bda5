"""Interpolation baselines: OT interpolation is exact for straight constant-speed motion."""

import numpy as np
import pytest
from anndata import AnnData
from anndata.tests.helpers import assert_equal
from scipy.spatial.distance import cdist

from celldyn.metrics import wasserstein
from celldyn.tl import interpolation_baseline


def _course(n: int = 20, *, scale: float = 1.0, seed: int = 0) -> AnnData:
    """Cells at t = 0, 1, 2 moving along straight lines: x(t) = x0 (1 + (scale-1) t/2) + c t/2."""
    rng = np.random.default_rng(seed)
    x0 = rng.normal(size=(n, 3))
    shift = np.array([6.0, -2.0, 3.0])
    cells = [x0 * (1 + (scale - 1) * t / 2) + shift * t / 2 for t in (0, 1, 2)]
    order = [np.arange(n), rng.permutation(n), rng.permutation(n)]  # no order to exploit
    x = np.concatenate([c[o] for c, o in zip(cells, order, strict=True)])
    adata = AnnData(np.zeros((3 * n, 2), dtype=np.float32), obsm={"X_pca": x})
    adata.obs["time"] = np.repeat([0.0, 1.0, 2.0], n)
    return adata


def _at(adata: AnnData, t: float) -> np.ndarray:
    return adata.obsm["X_pca"][adata.obs["time"].to_numpy() == t]


def test_ot_is_exact_for_a_translation():
    adata = _course()
    before = adata.copy()
    observed = _at(adata, 1.0)
    pred = interpolation_baseline(adata, 1.0, time_key="time")
    assert pred.shape == observed.shape  # default: as many cells as observed at t
    assert cdist(pred, observed).min(1).max() < 1e-10  # every predicted cell is an observed one
    many = interpolation_baseline(adata, 1.0, time_key="time", n_cells=20_000)
    # measured W1 0.033 (multinomial draws from 20 cells; 0 in the limit); the nearest copy
    # is off by |shift| / 2 = 3.5
    assert wasserstein(many, observed) < 0.06
    assert wasserstein(
        interpolation_baseline(adata, 1.0, "nearest", time_key="time"), observed
    ) == (pytest.approx(3.5))
    assert_equal(adata, before)


def test_ot_beats_the_mean_shift_on_a_dilation():
    adata = _course(scale=3.0)
    observed = _at(adata, 1.0)
    ot = interpolation_baseline(adata, 1.0, time_key="time", n_cells=20_000)
    mean = interpolation_baseline(adata, 1.0, "mean", time_key="time")
    assert cdist(ot, observed).min(1).max() < 1e-10
    np.testing.assert_allclose(mean.mean(0), observed.mean(0))  # the mean shift is right ...
    # ... the spread is not: measured W1 0.066 (OT) vs 1.424 (mean shift)
    assert wasserstein(ot, observed) < 0.1
    assert wasserstein(mean, observed) > 1.2


def test_the_held_out_group_is_ignored():
    adata = _course()
    pred = interpolation_baseline(adata, 1.0, time_key="time", random_state=3)
    moved = adata.copy()
    moved.obsm["X_pca"][moved.obs["time"].to_numpy() == 1.0] += 100.0
    np.testing.assert_array_equal(
        interpolation_baseline(moved, 1.0, time_key="time", random_state=3), pred
    )
    dropped = adata[adata.obs["time"] != 1.0].copy()
    np.testing.assert_array_equal(
        interpolation_baseline(dropped, 1.0, time_key="time", random_state=3), pred
    )
    np.testing.assert_array_equal(
        interpolation_baseline(adata, 1.0, time_key="time", random_state=np.random.default_rng(3)),
        pred,
    )
    assert not np.array_equal(
        interpolation_baseline(adata, 1.0, time_key="time", random_state=4), pred
    )
    # an unobserved time between 0 and 2: as many cells as at t = 0, at the right place
    half = interpolation_baseline(dropped, 0.5, time_key="time", n_cells=7)
    assert half.shape == (7, 3)
    assert cdist(half, _at(adata, 0.0) + np.array([1.5, -0.5, 0.75])).min(1).max() < 1e-10


def test_nearest_and_mean():
    adata = _course()
    x0, x1, x2 = _at(adata, 0.0), _at(adata, 1.0), _at(adata, 2.0)
    for t, expected in [(0.4, x0), (0.6, x1), (1.0, x0), (1.2, x1), (1.6, x2)]:
        pred = interpolation_baseline(adata, t, "nearest", time_key="time")
        np.testing.assert_array_equal(pred, expected)
    gap = adata[adata.obs["time"] != 1.0].copy()
    for t, expected in [(0.9, x0), (1.0, x0), (1.1, x2)]:  # 1.0: a tie, the previous group
        np.testing.assert_array_equal(
            interpolation_baseline(gap, t, "nearest", time_key="time"), expected
        )
    mean = interpolation_baseline(adata, 1.0, "mean", time_key="time")
    np.testing.assert_allclose(mean, x0 + 0.5 * (x2.mean(0) - x0.mean(0)))
    np.testing.assert_allclose(np.sort(mean, 0), np.sort(x1, 0))  # a translation: exact
    # rep=None reads X
    adata.X = np.asarray(adata.obsm["X_pca"][:, :2], dtype=np.float32)
    nearest_x = interpolation_baseline(adata, 0.4, "nearest", time_key="time", rep=None)
    np.testing.assert_allclose(nearest_x, x0[:, :2], rtol=1e-6)


@pytest.mark.parametrize(
    ("time", "kwargs", "error", "match"),
    [
        (0.0, {}, ValueError, "strictly between two observed time groups"),
        (2.0, {}, ValueError, "strictly between two observed time groups"),
        (3.5, {}, ValueError, "strictly between"),
        (np.nan, {}, ValueError, "`time` must be finite"),
        ("1", {}, TypeError, "`time` must be a number"),
        (1.0, {"method": "linear"}, ValueError, "`method` must be one of"),
        (1.0, {"time_key": "day"}, KeyError, "no column 'day'"),
        (1.0, {"rep": "X_umap"}, KeyError, "no representation 'X_umap'"),
        (1.0, {"n_cells": 0}, ValueError, "`n_cells` must be an integer >= 1"),
        (1.0, {"random_state": -1}, ValueError, "`random_state`"),
    ],
)
def test_bad_input_leaves_adata_unchanged(time, kwargs, error, match):
    adata = _course()
    before = adata.copy()
    with pytest.raises(error, match=match):
        interpolation_baseline(adata, time, **{"time_key": "time", **kwargs})
    assert_equal(adata, before)


def test_one_neighbour_or_nan_is_an_error():
    adata = _course()
    two = adata[adata.obs["time"] != 2.0].copy()
    with pytest.raises(ValueError, match=r"groups \[0.0, 1.0\]"):
        interpolation_baseline(two, 1.0, time_key="time")
    nan = adata.copy()
    nan.obsm["X_pca"][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        interpolation_baseline(nan, 1.0, time_key="time")


def _dying_course(seed: int = 0) -> AnnData:
    """Times 0-4: cluster A moves one unit right per time; cluster B stays and dies.

    B keeps a quarter of its cells per time unit (200, 50, 12, 3, 1 cells), A has 200.
    """
    rng = np.random.default_rng(seed)
    blocks, times = [], []
    for t, n_b in enumerate([200, 50, 12, 3, 1]):
        a = rng.normal(scale=0.3, size=(200, 2)) + [t, 0.0]
        b = rng.normal(scale=0.3, size=(n_b, 2)) + [0.0, 8.0]
        blocks += [a, b]
        times += [t] * (200 + n_b)
    adata = AnnData(np.zeros((len(times), 1), dtype=np.float32), obsm={"X_pca": np.vstack(blocks)})
    adata.obs["time"] = np.asarray(times, dtype=float)
    return adata


def test_unbalanced_lets_a_dying_population_shrink_in_place():
    adata = _dying_course()
    before = adata.copy()
    observed = _at(adata, 1.0)
    balanced = interpolation_baseline(adata, 1.0, "ot", time_key="time")
    chosen = interpolation_baseline(adata, 1.0, "unbalanced", time_key="time")
    # balanced OT must send 188 of B's 200 cells to A: the midpoints lie half way between
    # the clusters. Measured W1: 2.23 (balanced) vs 0.19 (reg_m chosen on t = 0, 2, 3, 4)
    assert wasserstein(balanced, observed) > 1.5
    assert wasserstein(chosen, observed) < 0.4
    # the right share of B survives: 50 of 250 observed (0.2); measured 0.18
    share = np.mean(chosen[:, 1] > 4.0)
    assert 0.12 < share < 0.28
    # a large reg_m is close to the balanced interpolation (measured 1.80)
    loose = interpolation_baseline(adata, 1.0, "unbalanced", time_key="time", reg_m=1e4)
    assert wasserstein(loose, observed) > 1.5
    assert_equal(adata, before)


def test_unbalanced_never_looks_at_the_predicted_time():
    adata = _dying_course()
    pred = interpolation_baseline(adata, 1.0, "unbalanced", time_key="time", random_state=2)
    moved = adata.copy()
    moved.obsm["X_pca"][moved.obs["time"].to_numpy() == 1.0] += 100.0
    np.testing.assert_array_equal(
        interpolation_baseline(moved, 1.0, "unbalanced", time_key="time", random_state=2), pred
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "ot", "reg_m": 1.0}, "`reg_m` is an option of method='unbalanced'"),
        ({"method": "unbalanced", "reg_m": 0.0}, "`reg_m` must be"),
        ({"method": "unbalanced"}, "needs three time groups besides the predicted one"),
    ],
)
def test_unbalanced_bad_input(kwargs, match):
    adata = _course()  # three time groups: nothing to choose reg_m on
    before = adata.copy()
    with pytest.raises(ValueError, match=match):
        interpolation_baseline(adata, 1.0, time_key="time", **kwargs)
    assert_equal(adata, before)
    # with reg_m given, three groups are enough; a translation is nearly exact (measured W1
    # 0.16, the entropic blur; the nearest copy is off by 3.5)
    pred = interpolation_baseline(
        adata, 1.0, "unbalanced", time_key="time", reg_m=10.0, n_cells=20_000
    )
    assert wasserstein(pred, _at(adata, 1.0)) < 0.3
