"""Cell-MNN plots: operator UMAP, interaction heatmap, scvelo stream of the gene velocity."""

import matplotlib.pyplot as plt
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from anndata.tests.helpers import assert_equal

from celldyn.datasets import simulate_grn
from celldyn.pl import velocity_stream
from celldyn.pl._cellmnn import interactions, operators
from celldyn.tl._cellmnn import cellmnn


@pytest.fixture(scope="module")
def _fitted():
    import scanpy as sc

    adata = simulate_grn(8, 200, 4, random_state=1)
    sc.pp.pca(adata, n_comps=4)
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cellmnn(adata, time_key="time", n_components=3, max_epochs=2, accelerator="cpu", progress=False)
    torch.set_num_threads(n_threads)
    return adata


@pytest.fixture
def fitted(_fitted):
    return _fitted.copy()


def test_operator_umap_draws_every_cell_and_leaves_adata_alone(fitted):
    before_obsm, before_uns = set(fitted.obsm), set(fitted.uns)
    ax = operators(fitted, color="time", show=False)
    offsets = np.concatenate([c.get_offsets() for c in ax.collections if len(c.get_offsets())])
    assert len(offsets) == fitted.n_obs
    assert set(fitted.obsm) == before_obsm and set(fitted.uns) == before_uns
    plt.close("all")


def test_interaction_heatmap_shows_the_strongest_genes(fitted):
    n = fitted.n_vars
    w = np.zeros((n, n))
    w[2, 5], w[5, 2], w[6, 6] = 3.0, -2.0, 0.5  # genes 2 and 5 strongest, then 6
    fitted.varp["cellmnn_interactions"] = sp.csr_matrix(w)
    ax = interactions(fitted, n_top=3, show=False)
    image = ax.images[0].get_array()
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert names == list(fitted.var_names[[2, 5, 6]])
    np.testing.assert_array_equal(image, w[np.ix_([2, 5, 6], [2, 5, 6])])
    assert ax.get_ylabel() == "regulator" and ax.get_xlabel() == "target"
    assert ax.images[0].get_clim() == (-3.0, 3.0)
    plt.close("all")


def test_gene_velocity_streams_through_scvelo(fitted):
    import scanpy as sc

    sc.pp.neighbors(fitted, n_neighbors=10, use_rep="X_pca")
    sc.tl.umap(fitted, random_state=0)
    ax = velocity_stream(fitted, "cellmnn_velocity", color="time", show=False)
    assert len(ax.collections) > 1
    # the projection it logs as added is in adata, finite for every cell
    assert np.all(np.isfinite(fitted.obsm["cellmnn_velocity_umap"]))
    plt.close("all")


def test_bad_input(fitted):
    with pytest.raises(KeyError, match="mnn_operator"):
        operators(fitted, key="mnn")
    with pytest.raises(KeyError, match="lineage"):
        operators(fitted, color="lineage")
    with pytest.raises(KeyError, match="mnn_interactions"):
        interactions(fitted, key="mnn")
    with pytest.raises(ValueError, match="n_top"):
        interactions(fitted, n_top=0)


def _nan_operator(a):
    a.obsm["cellmnn_operator"][3, 0] = np.nan


def _nan_interaction(a):
    matrix = a.varp["cellmnn_interactions"]
    matrix = matrix.toarray() if sp.issparse(matrix) else np.array(matrix)
    matrix[0, 1] = np.nan
    a.varp["cellmnn_interactions"] = matrix


@pytest.mark.parametrize(
    ("corrupt", "plot", "match"),
    [
        (_nan_operator, operators, r"adata.obsm\['cellmnn_operator'\] contains 1 NaN"),
        (_nan_interaction, interactions, r"adata.varp\['cellmnn_interactions'\] contains 1 NaN"),
    ],
)
def test_nan_values_raise_naming_the_key(fitted, corrupt, plot, match):
    corrupt(fitted)
    before = fitted.copy()
    with pytest.raises(ValueError, match=match):
        plot(fitted)
    assert_equal(fitted, before)
    plt.close("all")
