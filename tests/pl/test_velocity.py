import matplotlib.pyplot as plt
import numpy as np

import celldyn as cd


def test_stream_plot_does_not_modify_input(curve_adata):
    before = set(curve_adata.obsm)
    ax = cd.pl.velocity_stream(curve_adata, "true_velocity", color="t")
    assert set(curve_adata.obsm) == before
    # streamlines are drawn as line collections on the axes
    assert len(ax.collections) > 1
    plt.close("all")


def test_trajectory_plot_draws_requested_paths(curve_adata):
    order = np.argsort(curve_adata.obs["t"].to_numpy())
    curve_adata.uns["celldyn_trajectories"] = {"indices": order[: 10 * 20].reshape(20, 10)}
    ax = cd.pl.trajectories(curve_adata, n_show=7, color=None)
    assert len(ax.lines) == 7
    plt.close("all")
