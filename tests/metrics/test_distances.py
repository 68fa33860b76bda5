import numpy as np
import pytest
import scipy.sparse as sp
import scipy.stats
import torch
from scipy.spatial.distance import cdist, pdist

from celldyn.metrics import energy_distance, mmd, wasserstein
from celldyn.nn import _kernels
from celldyn.nn._kernels import energy_distance_torch, mmd_torch

KERNELS = ("rbf", "laplace", "multiscale_rbf")


def _brute_mmd(x, y, kernel, bandwidth, unbiased):
    """Squared MMD from explicit kernel matrices (the textbook formula)."""
    if bandwidth is None:
        d = pdist(np.vstack([x, y]))
        bandwidth = np.median(d[d > 0])
    if np.ndim(bandwidth) == 0:
        scales = (0.25, 0.5, 1.0, 2.0, 4.0) if kernel == "multiscale_rbf" else (1.0,)
        hs = [bandwidth * s for s in scales]
    else:
        hs = list(bandwidth)

    def k(a, b):
        d = cdist(a, b)
        if kernel == "laplace":
            return sum(np.exp(-d / h) for h in hs)
        return sum(np.exp(-(d**2) / (2 * h**2)) for h in hs)

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    n, m = len(x), len(y)
    if unbiased:
        exx = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        eyy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    else:
        exx, eyy = kxx.mean(), kyy.mean()
    return exx + eyy - 2 * kxy.mean()


@pytest.fixture
def small_sets():
    rng = np.random.default_rng(3)
    return rng.normal(size=(7, 3)), rng.normal(size=(9, 3)) + 0.4


# --- Wasserstein ---------------------------------------------------------------------------


def test_wasserstein_point_masses():
    assert wasserstein(np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]])) == pytest.approx(5.0)
    # several copies of each point: still all mass moves the same distance
    x, y = np.zeros((3, 2)), np.tile([[3.0, 4.0]], (2, 1))
    assert wasserstein(x, y) == pytest.approx(5.0)


@pytest.mark.parametrize(("n", "m", "shift"), [(200, 200, 1.0), (200, 350, 0.5), (40, 17, 2.0)])
def test_wasserstein_matches_scipy_1d(n, m, shift):
    rng = np.random.default_rng(n + m)
    a, b = rng.normal(size=n), rng.normal(size=m) + shift
    assert wasserstein(a, b) == pytest.approx(scipy.stats.wasserstein_distance(a, b), rel=1e-9)


def test_wasserstein_shifted_gaussians():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 2))
    # an exact translation costs exactly its length
    assert wasserstein(x, x + [3.0, 4.0]) == pytest.approx(5.0, abs=1e-9)
    # independent samples: close to the shift
    y = rng.normal(size=(300, 2)) + [3.0, 4.0]
    assert wasserstein(x, y) == pytest.approx(5.0, abs=0.15)


def test_wasserstein_subsampling():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(1000, 2)), rng.normal(size=(800, 2)) + [3.0, 4.0]
    full = wasserstein(x, y)
    sub = wasserstein(x, y, max_samples=150, random_state=7)
    assert sub == wasserstein(x, y, max_samples=150, random_state=7)
    assert sub != wasserstein(x, y, max_samples=150, random_state=8)
    assert sub == pytest.approx(full, abs=0.4)
    # a limit above both sizes changes nothing
    assert wasserstein(x, y, max_samples=5000) == full


# --- MMD -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kernel", KERNELS)
def test_mmd_identical_sets_is_zero(kernel):
    x = np.random.default_rng(0).normal(size=(60, 4))
    # three kernel means of order 1 cancel: rounding leaves about 1e-12 (seen: -1.9e-12 on CI),
    # far below the MMD of two different samples of this size (about 1e-2)
    assert mmd(x, x, kernel=kernel) == pytest.approx(0.0, abs=1e-10)
    assert mmd(x, x.copy(), kernel=kernel, bandwidth=0.3) == pytest.approx(0.0, abs=1e-10)


def test_mmd_unbiased_is_zero_in_expectation():
    unbiased, biased = [], []
    for seed in range(30):
        rng = np.random.default_rng(seed)
        x, y = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
        unbiased.append(mmd(x, y, unbiased=True))
        biased.append(mmd(x, y))
    se = np.std(unbiased) / np.sqrt(len(unbiased))
    assert abs(np.mean(unbiased)) < 3 * se
    assert min(unbiased) < 0  # the U-statistic is not clipped
    assert np.mean(biased) > 5 * se  # the V-statistic is biased upwards


@pytest.mark.parametrize("kernel", KERNELS)
def test_mmd_increases_with_shift(kernel):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(100, 2)), rng.normal(size=(100, 2))
    values = [mmd(x, y + [s, 0.0], kernel=kernel, bandwidth=1.0) for s in (0.0, 0.5, 1.0, 2.0)]
    assert np.all(np.diff(values) > 0)
    assert values[0] < 0.1 * values[-1]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("bandwidth", [None, 0.7, (0.5, 2.0)])
def test_mmd_matches_brute_force(small_sets, kernel, unbiased, bandwidth):
    x, y = small_sets
    expected = _brute_mmd(x, y, kernel, bandwidth, unbiased)
    got = mmd(x, y, kernel=kernel, bandwidth=bandwidth, unbiased=unbiased)
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-14)


@pytest.mark.parametrize("unbiased", [False, True])
def test_mmd_row_blocks_match_brute_force(small_sets, monkeypatch, unbiased):
    # tiny blocks: 1-2 rows at a time, diagonal offsets of every block are exercised
    monkeypatch.setattr(_kernels, "_BLOCK_ELEMENTS", 10)
    x, y = small_sets
    expected = _brute_mmd(x, y, "laplace", 0.9, unbiased)
    assert mmd(x, y, kernel="laplace", bandwidth=0.9, unbiased=unbiased) == pytest.approx(
        expected, rel=1e-10
    )


def test_mmd_accepts_1d_and_sparse():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=30), rng.normal(size=40) + 1
    assert mmd(a, b) == pytest.approx(mmd(a[:, None], b[:, None]))
    assert mmd(sp.csr_matrix(a[:, None]), b[:, None]) == pytest.approx(mmd(a, b))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("unbiased", [False, True])
def test_mmd_torch_gradcheck(kernel, unbiased):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    y = torch.randn(4, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b: mmd_torch(a, b, kernel=kernel, bandwidths=1.3, unbiased=unbiased), (x, y)
    )


def test_mmd_torch_float32_and_zero_gradient_at_optimum():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 5)), rng.normal(size=(64, 5)) + 0.5
    v32 = mmd_torch(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32))
    assert v32.dtype == torch.float32
    assert float(v32) == pytest.approx(mmd(x, y), rel=1e-4)
    z = torch.tensor(x, requires_grad=True)
    mmd_torch(z, torch.tensor(x), kernel="laplace").backward()
    assert torch.all(z.grad.abs() < 1e-12)  # identical sets: a minimum, finite gradient


# --- energy distance -----------------------------------------------------------------------


@pytest.mark.parametrize(("n", "m"), [(50, 50), (80, 33)])
def test_energy_distance_matches_scipy_1d(n, m):
    rng = np.random.default_rng(n * m)
    a, b = rng.normal(size=n), rng.exponential(size=m)
    # scipy returns the square root of 2E|X-Y| - E|X-X'| - E|Y-Y'|
    assert energy_distance(a, b) == pytest.approx(scipy.stats.energy_distance(a, b) ** 2, rel=1e-9)


def test_energy_distance_brute_force_2d(small_sets):
    x, y = small_sets
    expected = 2 * cdist(x, y).mean() - cdist(x, x).mean() - cdist(y, y).mean()
    assert energy_distance(x, y) == pytest.approx(expected, rel=1e-12)
    assert energy_distance(x, x) == pytest.approx(0.0, abs=1e-14)


def test_energy_distance_torch_gradcheck():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(5, 2, dtype=torch.float64, generator=gen, requires_grad=True)
    y = torch.randn(6, 2, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(energy_distance_torch, (x, y))


# --- bad input -----------------------------------------------------------------------------

GOOD = np.zeros((4, 2))


@pytest.mark.parametrize("fn", [wasserstein, mmd, energy_distance])
@pytest.mark.parametrize(
    ("x", "y", "match"),
    [
        (np.array([[0.0, np.nan]]), GOOD, r"`x` contains 1 NaN"),
        (GOOD, np.array([[np.inf, 0.0]]), r"`y` contains 1 NaN or infinite"),
        (GOOD, np.zeros((4, 3)), "same number of dimensions, got 2 and 3"),
        (np.zeros((0, 2)), GOOD, r"`x` is empty"),
        (GOOD, np.zeros((3, 0)), r"`y` is empty"),
        (np.zeros((2, 2, 2)), GOOD, "must be 1-D or 2-D"),
    ],
)
def test_bad_input(fn, x, y, match):
    with pytest.raises(ValueError, match=match):
        fn(x, y)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kernel": "gauss"}, r"`kernel` must be one of \('rbf', 'laplace', 'multiscale_rbf'\)"),
        ({"bandwidth": -1.0}, "Bandwidths must be finite positive"),
        ({"bandwidth": []}, "Bandwidths must be finite positive"),
        ({"bandwidth": [1.0, np.nan]}, "Bandwidths must be finite positive"),
    ],
)
def test_mmd_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mmd(GOOD, GOOD + 1, **kwargs)


def test_mmd_unbiased_needs_two_points():
    with pytest.raises(ValueError, match="at least 2 points"):
        mmd(np.zeros((1, 2)), GOOD, unbiased=True)


@pytest.mark.parametrize("max_samples", [0, -3, 1.5, 2.0, np.nan, True, "10"])
def test_wasserstein_bad_max_samples(max_samples):
    # 1.5 used to draw int(1.5) = 1 point per set and return a wrong distance
    with pytest.raises(ValueError, match=r"`max_samples` must be an integer >= 1, got"):
        wasserstein(GOOD, GOOD + 1, max_samples=max_samples)


def test_wasserstein_max_samples_numpy_integer():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(50, 2)), rng.normal(size=(40, 2))
    assert wasserstein(x, y, max_samples=np.int64(30)) == wasserstein(x, y, max_samples=30)
