"""celldyn results used as they are by scvelo, cellrank and decoupler (issue 17)."""

import logging

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import celldyn as cd
from celldyn.datasets import simulate_grn

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = {"batch_size": 32, "accelerator": "cpu", "progress": False}
VKEYS = ["flecs_velocity", "cellmnn_velocity"]


@pytest.fixture(scope="module")
def _fitted():
    """FLeCS and Cell-MNN fitted (a few epochs) on a small simulation, with OT couplings."""
    import scanpy as sc

    adata = simulate_grn(12, 240, 4, random_state=0)
    net = adata.uns["ground_truth_network"]
    cd.pp.prior_network(adata, net, add_random_edges=0.3)
    cd.pp.time_groups(adata, time_key="time")
    cd.pp.trajectories(adata, method="quantile", rep="X", n_trajectories=60, length=4)
    cd.tl.flecs(adata, max_epochs=3, lr=0.05, **FAST)
    sc.pp.pca(adata, n_comps=5)
    sc.pp.neighbors(adata, n_neighbors=10)
    adata.obsm["X_umap"] = adata.obsm["X_pca"][:, :2].copy()  # a cheap 2-d embedding
    cd.tl.cellmnn(adata, time_key="time", n_components=4, max_epochs=2, **FAST)
    cd.pp.couplings(adata, rep="X_pca")
    return adata


@pytest.fixture
def fitted(_fitted):
    return _fitted.copy()


# --- velocities: scvelo and cellrank with their defaults ------------------------------------


def test_velocity_writers_record_their_state(fitted):
    np.testing.assert_array_equal(fitted.layers["Ms"], fitted.X.astype(np.float32))
    for vkey in VKEYS:
        assert fitted.uns[f"{vkey}_params"] == {"embeddings": [], "xkey": "Ms"}


@pytest.mark.parametrize("vkey", VKEYS)
def test_scvelo_runs_on_velocity_layers_without_glue(fitted, vkey):
    import scvelo as scv

    scv.tl.velocity_graph(fitted, vkey=vkey, show_progress_bar=False)  # default xkey='Ms'
    graph = fitted.uns[f"{vkey}_graph"]
    assert graph.shape == (fitted.n_obs,) * 2 and graph.nnz > fitted.n_obs
    # the graph is the one of the model's own states (adata.X), passed explicitly
    reference = fitted.copy()
    reference.layers["state"] = np.asarray(fitted.X)
    scv.tl.velocity_graph(reference, vkey=vkey, xkey="state", show_progress_bar=False)
    np.testing.assert_allclose(graph.toarray(), reference.uns[f"{vkey}_graph"].toarray())

    scv.tl.velocity_confidence(fitted, vkey=vkey)
    for column in (f"{vkey}_confidence", f"{vkey}_confidence_transition"):
        values = fitted.obs[column].to_numpy()
        assert np.all(np.isfinite(values)) and np.all(np.abs(values) <= 1 + 1e-6)
    ax = scv.pl.velocity_embedding_stream(fitted, vkey=vkey, basis="umap", show=False)
    assert len(ax.collections) > 1  # streamlines
    assert np.all(np.isfinite(fitted.obsm[f"{vkey}_umap"]))
    plt.close("all")


def test_flecs_velocity_projects_like_the_truth(fitted):
    """The projected FLeCS velocity (graph on layers['Ms']) points where the true one does."""
    import scvelo as scv

    for vkey in ("flecs_velocity", "true_velocity"):
        scv.tl.velocity_graph(fitted, vkey=vkey, show_progress_bar=False)
        scv.tl.velocity_embedding(fitted, vkey=vkey, basis="umap")
    a, b = fitted.obsm["flecs_velocity_umap"], fitted.obsm["true_velocity_umap"]
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert np.median(cosine) > 0.9  # measured 0.999


def test_existing_different_ms_is_kept(fitted):
    user_ms = 2 * np.asarray(fitted.X, dtype=np.float32)
    fitted.layers["Ms"] = user_ms.copy()
    with pytest.warns(UserWarning, match=r"layers\['Ms'\] differs from adata.X"):
        cd.tl.knockout(fitted, fitted.var_names[0], start=[0], n_steps=2, key_added="ko")
    np.testing.assert_array_equal(fitted.layers["Ms"], user_ms)
    np.testing.assert_array_equal(fitted.layers["ko_velocity_state"], fitted.X)
    assert fitted.uns["ko_velocity_params"]["xkey"] == "ko_velocity_state"
    # cd.tl.velocity_embedding uses the recorded state, not the user's Ms
    cd.tl.velocity_embedding(fitted, "ko_velocity")
    fitted.layers["Ms"] = fitted.layers.pop("ko_velocity_state")
    reference = cd.tl.velocity_embedding(fitted, "ko_velocity", xkey="Ms", copy=True)
    np.testing.assert_allclose(fitted.obsm["ko_velocity_umap"], reference.obsm["ko_velocity_umap"])


def test_velocity_stream_writes_what_it_logs(fitted, caplog):
    with caplog.at_level(logging.INFO, logger="celldyn"):
        ax = cd.pl.velocity_stream(fitted, "flecs_velocity", color="time", show=False)
    assert len(ax.collections) > 1
    assert "added 'flecs_velocity_umap' (adata.obsm)" in caplog.text
    assert np.all(np.isfinite(fitted.obsm["flecs_velocity_umap"]))
    assert fitted.uns["flecs_velocity_params"]["embeddings"] == ["umap"]
    # scvelo's own plot now reuses it
    scvelo_ax = __import__("scvelo").pl.velocity_embedding_stream(
        fitted, vkey="flecs_velocity", show=False
    )
    assert len(scvelo_ax.collections) > 1
    plt.close("all")


def test_velocity_stream_failure_leaves_adata_unchanged(fitted, assert_unchanged):
    before = fitted.copy()
    with pytest.raises((KeyError, ValueError)):
        cd.pl.velocity_stream(fitted, "flecs_velocity", color="no_such_column")
    assert_unchanged(fitted, before)
    plt.close("all")


def test_cellrank_velocity_kernel(fitted):
    cr = pytest.importorskip("cellrank", reason="cellrank is not installed")
    if tuple(int(p) for p in np.__version__.split(".")[:2]) >= (2, 4):
        pytest.skip(
            "cellrank 2.0.7's VelocityKernel calls np.testing.assert_array_equal(x=, y=), "
            "keywords numpy 2.4 removed"
        )
    for vkey in VKEYS:
        kernel = cr.kernels.VelocityKernel(fitted, vkey=vkey).compute_transition_matrix()
        np.testing.assert_allclose(np.asarray(kernel.transition_matrix.sum(1)).ravel(), 1.0)


# --- OT couplings: cellrank's RealTimeKernel ------------------------------------------------


def test_couplings_for_cellrank_blocks(fitted):
    blocks = cd.pp.couplings_for_cellrank(fitted)
    times = sorted(np.unique(fitted.obs["celldyn_time"]))
    assert list(blocks) == list(zip(times[:-1], times[1:], strict=True))
    plan = fitted.obsp["celldyn_couplings"].tocsr()
    position = pd.Series(np.arange(fitted.n_obs), index=fitted.obs_names)
    for (t1, t2), block in blocks.items():
        src = fitted.obs_names[fitted.obs["celldyn_time"] == t1]
        tgt = fitted.obs_names[fitted.obs["celldyn_time"] == t2]
        assert list(block.obs_names) == list(src) and list(block.var_names) == list(tgt)
        assert sp.issparse(block.X) and block.X.sum() == pytest.approx(1.0)
        expected = plan[position[src].to_numpy()][:, position[tgt].to_numpy()]
        np.testing.assert_array_equal(block.X.toarray(), expected.toarray())


def test_couplings_for_cellrank_bad_input(fitted, assert_unchanged):
    before = fitted.copy()
    with pytest.raises(KeyError, match="celldyn.pp.couplings"):
        cd.pp.couplings_for_cellrank(fitted, key="other")
    assert_unchanged(fitted, before)
    fitted.obs["celldyn_time"] = fitted.obs["celldyn_time"].sample(frac=1, random_state=0).values
    with pytest.raises(ValueError, match="rerun `celldyn.pp.couplings`"):
        cd.pp.couplings_for_cellrank(fitted)


def test_cellrank_real_time_kernel(fitted):
    cr = pytest.importorskip("cellrank", reason="cellrank is not installed")
    fitted.obs["day"] = fitted.obs["celldyn_time"].astype("category")
    blocks = cd.pp.couplings_for_cellrank(fitted)
    kernel = cr.kernels.RealTimeKernel(fitted, time_key="day", couplings=blocks)
    kernel.compute_transition_matrix(threshold=None, self_transitions="diagonal")
    transitions = sp.csr_matrix(kernel.transition_matrix)
    np.testing.assert_allclose(np.asarray(transitions.sum(1)).ravel(), 1.0)
    # each cell moves to the next group with its row of the OT plan, row-normalised
    (t1, t2), block = next(iter(blocks.items()))
    src = np.flatnonzero(fitted.obs["day"] == t1)
    tgt = np.flatnonzero(fitted.obs["day"] == t2)
    rows = block.X.toarray()
    np.testing.assert_allclose(
        transitions[src][:, tgt].toarray(), rows / rows.sum(1, keepdims=True), rtol=1e-6
    )


def test_obsp_couplings_are_not_a_transition_matrix(fitted):
    """Why RealTimeKernel, not PrecomputedKernel: the last group sends no mass."""
    rows = np.asarray(fitted.obsp["celldyn_couplings"].sum(1)).ravel()
    last = fitted.obs["celldyn_time"].to_numpy() == fitted.obs["celldyn_time"].max()
    assert np.all(rows[last] == 0) and np.all(rows[~last] > 0)


# --- networks: decoupler ---------------------------------------------------------------------


def test_to_decoupler_flecs_weights(fitted):
    net = cd.tl.to_decoupler(fitted, "flecs_weights", self_loops=True)
    weights = sp.coo_matrix(fitted.varp["flecs_weights"])
    nonzero = weights.data != 0
    assert list(net.columns) == ["source", "target", "weight"] and len(net) == nonzero.sum()
    names = fitted.var_names
    expected = dict(
        zip(
            zip(names[weights.row[nonzero]], names[weights.col[nonzero]], strict=True),
            weights.data[nonzero],
            strict=True,
        )
    )
    got = dict(zip(zip(net["source"], net["target"], strict=True), net["weight"], strict=True))
    assert got.keys() == expected.keys()
    np.testing.assert_allclose([got[k] for k in expected], list(expected.values()), rtol=1e-6)
    assert (net["weight"] < 0).any() and (net["weight"] > 0).any()  # signs kept


def test_to_decoupler_threshold_top_k_and_self_loops(fitted):
    m = np.array([[5.0, -3.0, 0.5], [1.0, 0.0, -2.0], [-4.0, 2.0, 9.0]])
    fitted = fitted[:, :3].copy()
    fitted.varp["toy"] = m
    net = cd.tl.to_decoupler(fitted, "toy")
    assert len(net) == 6 and not (net["source"] == net["target"]).any()
    strong = cd.tl.to_decoupler(fitted, "toy", threshold=2.0)
    assert sorted(strong["weight"]) == [-4.0, -3.0, -2.0, 2.0]
    top = cd.tl.to_decoupler(fitted, "toy", top_k=1, self_loops=True)
    g = list(fitted.var_names)
    assert top.set_index("target")["weight"].to_dict() == {g[0]: 5.0, g[1]: -3.0, g[2]: 9.0}
    assert list(top["source"]) == [g[0], g[0], g[2]]  # sorted by source, then target


def test_to_decoupler_dense_cellmnn_interactions(fitted):
    dense = fitted.varp["cellmnn_interactions"]
    assert isinstance(dense, np.ndarray)
    net = cd.tl.to_decoupler(fitted, "cellmnn_interactions", top_k=3)
    assert net.groupby("target").size().max() == 3 and net["target"].nunique() == fitted.n_vars
    rows = fitted.var_names.get_indexer(net["source"])
    cols = fitted.var_names.get_indexer(net["target"])
    np.testing.assert_allclose(net["weight"], dense[rows, cols], rtol=1e-6)
    for target, edges in net.groupby("target"):
        col = fitted.var_names.get_loc(target)
        others = np.delete(np.abs(dense[:, col]), col)
        assert edges["weight"].abs().min() >= np.sort(others)[-3] - 1e-7


def test_decoupler_ulm_on_exported_network(fitted):
    import decoupler as dc

    net = cd.tl.to_decoupler(fitted, "flecs_effects")
    dc.mt.ulm(fitted, net, tmin=2)
    scores = fitted.obsm["score_ulm"]
    counts = net.groupby("source").size()
    assert sorted(scores.columns) == sorted(counts.index[counts >= 2])
    assert np.all(np.isfinite(scores.to_numpy()))
    # the signs of the weights reach decoupler: flipping them flips every score
    flipped = net.assign(weight=-net["weight"])
    other = fitted.copy()
    dc.mt.ulm(other, flipped, tmin=2)
    np.testing.assert_allclose(other.obsm["score_ulm"], -scores, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    ("change", "kwargs", "error", "match"),
    [
        (None, {"key": "missing"}, KeyError, r"adata.varp has no entry 'missing'\. Available"),
        (None, {"key": "flecs_weights", "top_k": 0}, ValueError, "`top_k` must be an integer"),
        (None, {"key": "flecs_weights", "threshold": -1}, ValueError, "`threshold` must be"),
        (None, {"key": "flecs_weights", "threshold": 1e9}, ValueError, "No edge of"),
        (
            lambda a: a.varp.__setitem__("bad", np.full((a.n_vars,) * 2, np.nan)),
            {"key": "bad"},
            ValueError,
            r"adata.varp\['bad'\] contains",
        ),
    ],
)
def test_to_decoupler_bad_input(fitted, change, kwargs, error, match, assert_unchanged):
    if change is not None:
        change(fitted)
    before = fitted.copy()
    with pytest.raises(error, match=match):
        cd.tl.to_decoupler(fitted, **kwargs)
    assert_unchanged(fitted, before)


def test_prior_network_keeps_decoupler_weights():
    import anndata as ad
    import decoupler as dc

    _, net = dc.ds.toy()
    genes = sorted(set(net["source"]) | set(net["target"]))
    adata = ad.AnnData(np.zeros((3, len(genes)), dtype=np.float32))
    adata.var_names = genes
    cd.pp.prior_network(adata, net)
    prior = adata.varp["celldyn_prior"]
    rows, cols = genes.index("T2"), genes.index("G07")
    assert prior[rows, cols] == -3.0 and adata.uns["celldyn_prior"]["params"]["weight"] == "weight"
    unweighted = cd.pp.prior_network(adata, net.drop(columns="weight"), copy=True)
    assert set(unweighted.varp["celldyn_prior"].data) == {1.0}
    ignored = cd.pp.prior_network(adata, net, weight=None, copy=True)
    assert set(ignored.varp["celldyn_prior"].data) == {1.0}
    with pytest.raises(KeyError, match=r"no column\(s\) \['mor'\]"):
        cd.pp.prior_network(adata, net, weight="mor")
    # a weight of 0 (e.g. a sign "both") would drop the edge: the default keeps every edge
    mixed = net.assign(weight=np.where(np.arange(len(net)) == 0, 0.0, net["weight"]))
    with pytest.warns(UserWarning, match="every edge is stored with weight 1"):
        kept = cd.pp.prior_network(adata, mixed, copy=True)
    assert kept.varp["celldyn_prior"].nnz == len(net) and set(kept.varp["celldyn_prior"].data) == {
        1.0
    }
    assert kept.uns["celldyn_prior"]["params"]["weight"] is None
    with pytest.warns(UserWarning, match="1 of .* edges have weight 0 and are dropped"):
        dropped = cd.pp.prior_network(adata, mixed, weight="weight", copy=True)
    assert dropped.varp["celldyn_prior"].nnz == len(net) - 1
