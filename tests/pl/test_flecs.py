"""FLeCS plots draw exactly the chosen edges, member weights and projected cells."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from anndata.tests.helpers import assert_equal
from matplotlib.colors import to_rgba
from matplotlib.patches import FancyArrowPatch

from celldyn.pl._flecs import affected_subnetwork, edge_posteriors, network, simulated_vs_observed
from celldyn.pl._network import _NEGATIVE, _POSITIVE, strongest_edges
from celldyn.tl._simulate import simulate


@pytest.fixture
def fitted(ring_flecs):
    return ring_flecs([[3.0, -0.1, -2.0, 0.5, 1.0], [2.0, -0.3, -2.2, 0.7, 1.2]])


def _arrows(ax):
    return [p for p in ax.patches if isinstance(p, FancyArrowPatch)]


def test_strongest_edges_and_network(fitted):
    table = strongest_edges(fitted, "flecs_weights", 3)
    assert list(zip(table["source"], table["target"], strict=True)) == [
        ("g0", "g1"),  # 2.5
        ("g2", "g3"),  # -2.1
        ("g4", "g0"),  # 1.1
    ]
    ax = network(fitted, n_edges=3, show=False)
    arrows = _arrows(ax)
    assert len(arrows) == 3
    colors = [to_rgba(c) for c in (_POSITIVE, _NEGATIVE, _POSITIVE)]
    assert [a.get_edgecolor() for a in arrows] == colors
    assert {t.get_text() for t in ax.texts} == {"g0", "g1", "g2", "g3", "g4"}
    plt.close("all")


def test_affected_subnetwork_plot_dashes_non_significant():
    sub = pd.DataFrame(
        {
            "source": ["a", "b", "c"],
            "target": ["b", "c", "a"],
            "change": [1.0, -0.5, 0.2],
            "significant": [True, False, True],
        }
    )
    ax = affected_subnetwork(sub, show=False)
    styles = [a.get_linestyle() for a in _arrows(ax)]
    assert styles == ["solid", "dashed", "solid"]
    plt.close("all")


def test_edge_posteriors_show_member_means(fitted, ring_flecs):
    other = ring_flecs([[0.0, -0.1, -2.0, 0.5, 1.0], [0.4, -0.3, -2.2, 0.7, 1.2]])
    edges = [("g0", "g1"), ("g1", "g0")]
    ax = edge_posteriors({"a": fitted, "b": other}, edges, show=False)
    means = [c.lines[0].get_ydata() for c in ax.containers]
    np.testing.assert_allclose(means[0], [2.5, np.nan])  # g1 -> g0 is not an edge
    np.testing.assert_allclose(means[1], [0.2, np.nan])
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["g0→g1", "g1→g0"]
    plt.close("all")


def test_simulated_cells_are_projected_on_the_observed_pca(fitted):
    out = simulate(fitted, start=[4, 9], t_max=1.0, n_steps=2)
    ax = simulated_vs_observed(fitted, out, show=False)
    observed = ax.collections[0].get_offsets()
    projected = ax.collections[1].get_offsets()
    assert observed.shape == (30, 2) and projected.shape == (out.n_obs, 2)
    # simulated cells at time 0 are the start cells themselves
    at_start = (out.obs["time"] == 0).to_numpy()
    np.testing.assert_allclose(projected[at_start], observed[[4, 9, 4, 9]], atol=1e-5)
    x = np.asarray(fitted.X, float)
    np.testing.assert_allclose(np.var(observed, 0), np.linalg.svd(x - x.mean(0))[1][:2] ** 2 / 30)
    plt.close("all")


def test_bad_input(fitted):
    with pytest.raises(KeyError, match="other_weights"):
        network(fitted, key="other")
    with pytest.raises(ValueError, match="n_edges"):
        network(fitted, n_edges=0)
    with pytest.raises(KeyError, match="zz"):
        edge_posteriors({"a": fitted}, [("g0", "zz")])
    with pytest.raises(KeyError, match="significant|change"):
        affected_subnetwork(pd.DataFrame({"source": ["a"], "target": ["b"]}))
    out = simulate(fitted, start=[0], t_max=1.0, n_steps=1)
    with pytest.raises(KeyError, match="nope"):
        simulated_vs_observed(fitted, out, color="nope")
    with pytest.raises(ValueError, match="components"):
        simulated_vs_observed(fitted, out, components=(0, 9))
    plt.close("all")


def test_nan_values_raise_naming_the_key(fitted, ring_flecs):
    out = simulate(fitted, start=[0, 1], t_max=1.0, n_steps=2)
    fitted.varp["flecs_weights"].data[2] = np.nan
    before = fitted.copy()
    with pytest.raises(ValueError, match=r"adata.varp\['flecs_weights'\] contains 1 NaN"):
        network(fitted)
    assert_equal(fitted, before)
    fitted.X[4, 2] = np.nan
    before = fitted.copy()
    with pytest.raises(ValueError, match="adata.X contains 1 NaN"):
        simulated_vs_observed(fitted, out)
    assert_equal(fitted, before)
    fitted.layers["expr"] = np.ones(fitted.shape, dtype=np.float32)
    fitted.layers["expr"][0, 0] = np.inf
    with pytest.raises(ValueError, match=r"adata.layers\['expr'\] contains 1 NaN"):
        simulated_vs_observed(fitted, out, layer="expr")
    good = ring_flecs([[1.0, 1.0, 1.0, 1.0, 1.0]])
    bad_x = out.copy()
    bad_x.X[1, 1] = np.nan
    with pytest.raises(ValueError, match="simulated.X contains 1 NaN"):
        simulated_vs_observed(good, bad_x)
    bad_time = out.copy()
    bad_time.obs["time"] = bad_time.obs["time"].astype(float)
    bad_time.obs.iloc[0, bad_time.obs.columns.get_loc("time")] = np.nan
    with pytest.raises(ValueError, match=r"simulated.obs\['time'\] has 1 missing"):
        simulated_vs_observed(good, bad_time)
    table = pd.DataFrame({"source": ["g0", "g1"], "target": ["g1", "g2"], "change": [1.0, np.nan]})
    with pytest.raises(ValueError, match="`subnetwork` column 'change' contains 1 NaN"):
        affected_subnetwork(table)
    plt.close("all")
