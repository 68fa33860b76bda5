import matplotlib.pyplot as plt
import numpy as np
import pytest
from anndata.tests.helpers import assert_equal

import celldyn as cd


def test_stream_plot_writes_the_projection_it_computes(curve_adata):
    reference = cd.tl.velocity_embedding(curve_adata, "true_velocity", copy=True)
    ax = cd.pl.velocity_stream(curve_adata, "true_velocity", color="t", show=False)
    np.testing.assert_array_equal(
        curve_adata.obsm["true_velocity_umap"], reference.obsm["true_velocity_umap"]
    )
    assert curve_adata.uns["true_velocity_params"]["embeddings"] == ["umap"]
    # streamlines are drawn as line collections on the axes
    assert len(ax.collections) > 1
    plt.close("all")


def test_trajectory_plot_draws_requested_paths(curve_adata):
    order = np.argsort(curve_adata.obs["t"].to_numpy())
    curve_adata.uns["celldyn_trajectories"] = {"indices": order[: 10 * 20].reshape(20, 10)}
    ax = cd.pl.trajectories(curve_adata, n_show=7, color=None, show=False)
    assert len(ax.lines) == 7
    plt.close("all")


@pytest.mark.parametrize(
    ("key", "match"),
    [
        ("X_umap", r"adata.obsm\['X_umap'\] contains 1 NaN"),
        ("true_velocity_umap", r"adata.obsm\['true_velocity_umap'\] contains 1 NaN"),
    ],
)
def test_stream_plot_nan_raises_naming_the_key(curve_adata, key, match):
    curve_adata.obsm["true_velocity_umap"] = np.ones((curve_adata.n_obs, 2))
    curve_adata.uns["true_velocity_params"] = {"embeddings": ["umap"]}
    curve_adata.obsm[key][5, 0] = np.nan
    before = curve_adata.copy()
    with pytest.raises(ValueError, match=match):
        cd.pl.velocity_stream(curve_adata, "true_velocity")
    assert_equal(curve_adata, before)


def test_stream_plot_missing_basis_raises(curve_adata):
    with pytest.raises(KeyError, match="X_tsne"):
        cd.pl.velocity_stream(curve_adata, "true_velocity", basis="tsne")
