import numpy as np
import pytest

import celldyn as cd


def _cosine(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_projection_follows_true_direction(curve_adata):
    cd.tl.velocity_embedding(curve_adata, "true_velocity")
    projected = curve_adata.obsm["true_velocity_umap"]
    truth = curve_adata.layers["true_velocity"][:, :2]
    assert np.mean(_cosine(projected, truth)) > 0.9
    assert curve_adata.uns["true_velocity_params"]["embeddings"] == ["umap"]


def test_nan_genes_are_ignored(curve_adata):
    reference = cd.tl.velocity_embedding(curve_adata, "true_velocity", copy=True)
    curve_adata.layers["true_velocity"][:, 2] = np.nan
    cd.tl.velocity_embedding(curve_adata, "true_velocity")
    # gene 2 carries no velocity in the truth, so dropping it keeps the projection direction
    cos = _cosine(curve_adata.obsm["true_velocity_umap"], reference.obsm["true_velocity_umap"])
    assert np.mean(cos) > 0.95


def test_copy_leaves_input_untouched(curve_adata):
    out = cd.tl.velocity_embedding(curve_adata, "true_velocity", copy=True)
    assert "true_velocity_umap" in out.obsm
    assert "true_velocity_umap" not in curve_adata.obsm


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda a: a.obsp.pop("connectivities"), "neighbors"),
        (lambda a: a.obsm.pop("X_umap"), "X_umap"),
        (lambda a: a.layers.pop("true_velocity"), "true_velocity"),
    ],
)
def test_bad_input(curve_adata, mutate, match):
    mutate(curve_adata)
    before = curve_adata.copy()
    with pytest.raises(KeyError, match=match):
        cd.tl.velocity_embedding(curve_adata, "true_velocity")
    assert set(curve_adata.obsm) == set(before.obsm)
    assert set(curve_adata.uns) == set(before.uns)


def test_all_nan_velocity_rejected(curve_adata):
    curve_adata.layers["true_velocity"][:] = np.nan
    with pytest.raises(ValueError, match="no gene with finite velocity"):
        cd.tl.velocity_embedding(curve_adata, "true_velocity")
    assert "true_velocity_umap" not in curve_adata.obsm
