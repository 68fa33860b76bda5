"""Representative subsets of generated cells (greedy support points)."""

import numpy as np
import pytest

from celldyn.metrics import energy_distance
from celldyn.models._representative import REFERENCE_SIZE, representative_subset


@pytest.fixture(scope="module")
def pool():
    rng = np.random.default_rng(0)
    return rng.normal(size=(2500, 20)) * np.linspace(0.5, 2.0, 20)


def test_subset_represents_the_pool_better_than_random_rows(pool):
    n = 100
    picked = representative_subset(pool, n)
    assert len(picked) == n and len(np.unique(picked)) == n
    assert np.all(np.diff(picked) > 0) and picked[-1] < len(pool)
    rng = np.random.default_rng(1)
    randoms = [rng.choice(len(pool), n, replace=False) for _ in range(20)]

    def mean_error(rows):
        return np.linalg.norm(pool[rows].mean(0) - pool.mean(0))

    random_errors = [mean_error(r) for r in randoms]
    # measured: mean error 0.098 against 0.37-0.72 (median 0.62) for random rows
    assert mean_error(picked) < 0.3 * np.median(random_errors), (
        mean_error(picked),
        random_errors,
    )
    random_energy = [energy_distance(pool[r], pool) for r in randoms]
    # measured: energy distance to the pool 0.030 against 0.057-0.097 (median 0.083)
    assert energy_distance(pool[picked], pool) < 0.6 * np.median(random_energy)
    spread = np.median(pool[picked].std(0) / pool.std(0))
    # measured: median sd ratio over the columns 0.99 (random rows 0.98-1.02): the picked
    # rows are not concentrated near the mean
    assert 0.93 < spread < 1.05, spread


def test_subset_is_deterministic_and_takes_all_rows_when_asked_for_as_many(pool):
    assert len(pool) > REFERENCE_SIZE  # the reference rows are a random subset here
    np.testing.assert_array_equal(representative_subset(pool, 30), representative_subset(pool, 30))
    np.testing.assert_array_equal(representative_subset(pool[:10], 10), np.arange(10))
    np.testing.assert_array_equal(representative_subset(pool[:10], 50), np.arange(10))
