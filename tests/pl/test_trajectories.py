"""pl.trajectories: views, a missing colour and NaN coordinates."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
from anndata.tests.helpers import assert_equal

import celldyn as cd


@pytest.fixture
def adata(curve_adata):
    order = np.argsort(curve_adata.obs["t"].to_numpy())
    # 30 trajectories of 10 consecutive cells along t: rows 0-14 use the first 150 cells
    curve_adata.uns["celldyn_trajectories"] = {"indices": order.reshape(30, 10)}
    return curve_adata


def _drawn_paths(ax):
    return [line.get_xydata() for line in ax.lines]


def test_view_draws_its_trajectories_in_its_own_rows(adata):
    indices = adata.uns["celldyn_trajectories"]["indices"]
    keep = np.zeros(adata.n_obs, dtype=bool)
    keep[indices[:15].ravel()] = True
    keep[indices[15, :5]] = True  # half of a trajectory: not drawn
    view = adata[keep]
    assert view.is_view
    ax = cd.pl.trajectories(view, n_show=100, color="t", show=False)
    paths = _drawn_paths(ax)
    assert len(paths) == 15 and ax.get_title() == "15 of 15 trajectories"
    umap = adata.obsm["X_umap"][:, :2]
    expected = {tuple(map(tuple, umap[row])) for row in indices[:15]}
    assert {tuple(map(tuple, p)) for p in paths} == expected
    plt.close("all")


@pytest.mark.parametrize("subset", [lambda a: a[::-1], lambda a: a[::-1][:, :2][::-1]])
def test_reordered_views_draw_the_same_cells_as_the_whole_object(adata, subset):
    whole = np.concatenate(_drawn_paths(cd.pl.trajectories(adata, n_show=5, color="t", show=False)))
    view = np.concatenate(
        _drawn_paths(cd.pl.trajectories(subset(adata), n_show=5, color="t", show=False))
    )
    np.testing.assert_array_equal(view, whole)
    plt.close("all")


def test_view_without_a_whole_trajectory_raises(adata):
    with pytest.raises(ValueError, match="None of the 30 trajectories .* within this view"):
        cd.pl.trajectories(adata[:5], color=None)


def test_subset_copy_with_stale_indices_raises(adata):
    subset = adata[:100].copy()
    before = subset.copy()
    with pytest.raises(ValueError, match=r"\['indices'\] refer to cells outside \[0, 100\)"):
        cd.pl.trajectories(subset, color=None)
    assert_equal(subset, before)


@pytest.mark.parametrize(
    ("change", "kwargs", "error", "match"),
    [
        (None, {"color": "not_a_column"}, KeyError, "`color` 'not_a_column' is neither"),
        (None, {"color": "celldyn_time"}, KeyError, "`color` 'celldyn_time'.*color=None"),
        (None, {"n_show": 0}, ValueError, "`n_show` must be an integer >= 1"),
        (None, {"basis": "tsne"}, KeyError, "X_tsne"),
        (None, {"key": "nope"}, KeyError, "nope"),
        ("nan_umap", {}, ValueError, r"adata.obsm\['X_umap'\] contains 1 NaN"),
    ],
)
def test_bad_input_leaves_adata_unchanged(adata, change, kwargs, error, match):
    if change == "nan_umap":
        adata.obsm["X_umap"][7, 1] = np.nan
    before = adata.copy()
    with pytest.raises(error, match=match):
        cd.pl.trajectories(adata, **{"color": "t", **kwargs})
    assert_equal(adata, before)
    plt.close("all")
