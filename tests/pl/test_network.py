"""pl.effect_network draws exactly the strongest off-diagonal entries of a varp matrix."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import scipy.sparse as sp
from anndata import AnnData
from anndata.tests.helpers import assert_equal
from matplotlib.colors import to_rgba
from matplotlib.patches import FancyArrowPatch

from celldyn.pl._network import _NEGATIVE, _POSITIVE, effect_network


@pytest.fixture
def adata():
    effects = np.array(
        [
            [-5.0, 2.0, 0.0, 0.1],
            [0.0, -5.0, -3.0, 0.0],
            [0.5, 0.0, -5.0, 0.0],
            [0.0, 0.0, 0.2, -5.0],
        ]
    )
    a = AnnData(np.zeros((3, 4), dtype=np.float32))
    a.var_names = ["a", "b", "c", "d"]
    a.varp["clipr_effects"] = effects
    a.varp["sparse"] = sp.csr_matrix(effects)
    return a


def _arrows(ax):
    return [p for p in ax.patches if isinstance(p, FancyArrowPatch)]


@pytest.mark.parametrize("key", ["clipr_effects", "sparse"])
def test_draws_the_strongest_off_diagonal_edges(adata, key):
    ax = effect_network(adata, key, n_edges=2, show=False)
    arrows = _arrows(ax)
    assert len(arrows) == 2  # b -> c (-3) and a -> b (+2); the -5 diagonal is skipped
    colors = sorted(tuple(a.get_edgecolor()) for a in arrows)
    assert colors == sorted([to_rgba(_POSITIVE), to_rgba(_NEGATIVE)])
    assert {t.get_text() for t in ax.texts} == {"a", "b", "c"}
    plt.close("all")


def test_self_loops_and_all_edges(adata):
    ax = effect_network(adata, n_edges=100, show=False)
    assert len(_arrows(ax)) == 5  # every non-zero off-diagonal entry
    ax = effect_network(adata, n_edges=1, self_loops=True, show=False)
    assert {t.get_text() for t in ax.texts} == {"a"}  # the first -5 self-effect
    plt.close("all")


def test_bad_input(adata):
    with pytest.raises(KeyError, match="nope"):
        effect_network(adata, "nope")
    with pytest.raises(ValueError, match="n_edges"):
        effect_network(adata, n_edges=0)
    adata.varp["zero"] = np.diag([1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="no non-zero"):
        effect_network(adata, "zero")


def test_nan_effects_raise_naming_the_key(adata):
    adata.varp["clipr_effects"][0, 1] = np.nan
    before = adata.copy()
    with pytest.raises(ValueError, match=r"adata.varp\['clipr_effects'\] contains 1 NaN"):
        effect_network(adata)
    assert_equal(adata, before)
    adata.varp["sparse"].data[0] = np.inf
    with pytest.raises(ValueError, match=r"adata.varp\['sparse'\] contains 1 NaN or infinite"):
        effect_network(adata, "sparse")
