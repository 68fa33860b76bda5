"""tl.differential_edges (Welch's t-test on ensemble members) and tl.affected_subnetwork."""

import numpy as np
import pandas as pd
import pytest
import torch
from anndata import AnnData
from anndata.tests.helpers import assert_equal

from celldyn.nn import GRNVectorField
from celldyn.tl._differential import affected_subnetwork, differential_edges

GENES = [f"g{i}" for i in range(6)]
SRC = [0, 0, 1, 1, 2, 3, 3, 4, 5, 5]
DST = [1, 2, 2, 3, 4, 4, 5, 0, 1, 3]


def _condition(member_weights, src=SRC, dst=DST, knockout=None, n_genes=6):
    """AnnData whose ``uns['flecs']['models']`` holds one field per row of ``member_weights``."""
    models = {}
    for i, weights in enumerate(member_weights):
        field = GRNVectorField(n_genes, src, dst)
        with torch.no_grad():
            field.grn.weight.copy_(torch.as_tensor(weights))
        models[str(i)] = field.to_arrays()
    adata = AnnData(np.ones((3, n_genes), dtype=np.float32))
    adata.var_names = GENES if n_genes == 6 else [f"g{i}" for i in range(n_genes)]
    params = {} if knockout is None else {"knockout": knockout}
    adata.uns["flecs"] = {"params": params, "models": models}
    return adata


@pytest.fixture
def conditions():
    rng = np.random.default_rng(2)  # a seed where no null edge passes p <= 1 / 10 by chance
    base = rng.normal(size=len(SRC))
    a = base + 0.05 * rng.normal(size=(6, len(SRC)))
    b = base + 0.05 * rng.normal(size=(6, len(SRC)))
    b[:, 3] += 0.5  # edge g1 -> g3 truly changes
    return _condition(a), _condition(b), a, b


def test_finds_the_changed_edge_only(conditions):
    adata_a, adata_b, a, b = conditions
    before = adata_a.copy()
    table = differential_edges(adata_a, adata_b)
    assert_equal(adata_a, before)
    assert table.attrs["threshold"] == pytest.approx(1 / len(SRC))
    assert len(table) == len(SRC)
    top = table.iloc[0]
    assert (top["source"], top["target"]) == ("g1", "g3")
    assert top["p"] < 1e-6 and top["change"] == pytest.approx(b[:, 3].mean() - a[:, 3].mean())
    assert table["significant"].tolist() == [True] + [False] * (len(SRC) - 1)
    assert table["p"].iloc[1] > table.attrs["threshold"]
    # Welch: t = change / standard error, the same numbers scipy gives edge by edge
    np.testing.assert_allclose(table["t"], table["change"] / table["uncertainty"], rtol=1e-6)
    from scipy import stats

    expected = stats.ttest_ind(b[:, 3], a[:, 3], equal_var=False)
    assert top["t"] == pytest.approx(expected.statistic, rel=1e-6)
    assert top["p"] == pytest.approx(expected.pvalue, rel=1e-6)


def test_null_edges_are_calibrated():
    # 2,025 edges with no change (unequal spreads, 5 members): about 5% have p <= 0.05
    n = 45
    src, dst = np.divmod(np.arange(n * n), n)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, n * n))
    b = 2 * rng.normal(size=(5, n * n))
    table = differential_edges(
        _condition(a, src, dst, n_genes=n), _condition(b, src, dst, n_genes=n)
    )
    fraction = float((table["p"] <= 0.05).mean())
    assert 0.035 < fraction < 0.065
    assert table["significant"].sum() <= 5  # threshold 1 / 2025: about one false positive


def test_knockout_condition_drops_the_removed_edges(conditions):
    adata_a, _, a, _ = conditions
    keep = [i for i, s in enumerate(SRC) if s != 1]  # g1 knocked out: no edges leave g1
    src, dst = [SRC[i] for i in keep], [DST[i] for i in keep]
    rng = np.random.default_rng(1)
    b = a[:, keep] + 0.05 * rng.normal(size=(6, len(keep)))
    b[:, 0] -= 1.0  # edge g0 -> g1
    adata_b = _condition(b, src, dst, knockout=["g1"])
    table = differential_edges(adata_a, adata_b)
    assert len(table) == len(keep) and "g1" not in set(table["source"])
    assert (table["source"].iloc[0], table["target"].iloc[0]) == ("g0", "g1")
    assert table["significant"].sum() == 1
    # without the recorded knockout, different edge sets are an error
    del adata_b.uns["flecs"]["params"]["knockout"]
    with pytest.raises(ValueError, match="different prior edges"):
        differential_edges(adata_a, adata_b)


def test_differential_bad_input(conditions):
    adata_a, adata_b, a, _ = conditions
    single = _condition(a[:1])
    with pytest.raises(ValueError, match="at least 2"):
        differential_edges(adata_a, single)
    with pytest.raises(KeyError, match="other"):
        differential_edges(adata_a, adata_b, key_b="other")
    renamed = adata_b.copy()
    renamed.var_names = [f"x{i}" for i in range(6)]
    with pytest.raises(ValueError, match="same genes"):
        differential_edges(adata_a, renamed)
    with pytest.raises(ValueError, match="threshold"):
        differential_edges(adata_a, adata_b, threshold=0.0)


def _scores(edges):
    return pd.DataFrame(edges, columns=["source", "target", "p"])


def test_affected_subnetwork_even_k():
    scores = _scores(
        [("A", "B", 0.001), ("C", "D", 0.002), ("E", "F", 0.003), ("A", "C", 0.5), ("B", "E", 0.6)]
    )
    sub = affected_subnetwork(scores, 4)
    # top 2 edges give A, B, C, D; the induced subgraph adds A -> C
    assert list(zip(sub["source"], sub["target"], strict=True)) == [
        ("A", "B"),
        ("C", "D"),
        ("A", "C"),
    ]


def test_affected_subnetwork_odd_k_skips_edges_that_overshoot():
    scores = _scores(
        [("A", "B", 0.01), ("C", "D", 0.02), ("E", "F", 0.03), ("A", "E", 0.04), ("F", "A", 0.05)]
    )
    sub = affected_subnetwork(scores, 5)
    # top 5 // 2 = 2 edges: A, B, C, D; E -> F would make 6 genes: skipped; A -> E adds E
    assert sorted(set(sub["source"]) | set(sub["target"])) == ["A", "B", "C", "D", "E"]
    assert list(zip(sub["source"], sub["target"], strict=True)) == [
        ("A", "B"),
        ("C", "D"),
        ("A", "E"),
    ]


def test_affected_subnetwork_ties_and_small_tables():
    # equal p: the table order decides, so B -> C (first) is taken and D -> E is not
    scores = _scores([("B", "C", 0.1), ("D", "E", 0.1), ("A", "B", 0.01)])
    sub = affected_subnetwork(scores, 3)
    assert list(zip(sub["source"], sub["target"], strict=True)) == [("A", "B"), ("B", "C")]
    # fewer genes than k: everything
    assert len(affected_subnetwork(scores, 33)) == 3
    # ranking by |t| instead of p
    by_t = pd.DataFrame({"source": ["A", "C"], "target": ["B", "D"], "t": [1.0, -5.0]})
    assert affected_subnetwork(by_t, 2, score="t")["source"].tolist() == ["C"]


def test_affected_subnetwork_bad_input():
    with pytest.raises(KeyError, match="p"):
        affected_subnetwork(pd.DataFrame({"source": ["A"], "target": ["B"]}))
    with pytest.raises(ValueError, match="n_genes"):
        affected_subnetwork(_scores([("A", "B", 0.1)]), 1)


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_fitted_conditions_find_the_edge_that_changed():
    # two time courses of the same network except the strongest edge, whose sign is flipped
    from celldyn.datasets import simulate_grn
    from celldyn.pp import prior_network, time_groups, trajectories
    from celldyn.tl import flecs

    base = simulate_grn(n_genes=10, n_cells=600, n_timepoints=6, random_state=0)
    net = base.uns["ground_truth_network"][["source", "target", "weight"]].copy()
    changed = net.index[np.argmax(np.abs(net["weight"].to_numpy()))]
    flipped = net.copy()
    flipped.loc[changed, "weight"] *= -1
    fitted = []
    for network in (net, flipped):
        adata = simulate_grn(n_cells=600, n_timepoints=6, network=network, random_state=1)
        prior_network(adata, net)
        time_groups(adata, time_key="time")
        trajectories(adata, method="quantile", rep="X", n_trajectories=100, length=6)
        flecs(
            adata,
            n_models=3,
            resample=True,
            max_epochs=20,
            batch_size=50,
            lr=0.05,
            accelerator="cpu",
            progress=False,
        )
        fitted.append(adata)
    table = differential_edges(*fitted)
    top = table.iloc[0]
    assert (top["source"], top["target"]) == tuple(net.loc[changed, ["source", "target"]])
    assert top["significant"]
    # the learnt weight flips with the true one (measured +2.09 -> -4.61, true +3.66 -> -3.66;
    # without the velocity warm start both were about -0.4 and only their spread set them apart)
    assert np.sign(top["mean_a"]) == np.sign(net.loc[changed, "weight"]) == -np.sign(top["mean_b"])
    # significant edges are inputs of the target whose regulation changed (measured: 2) or
    # negligible changes (measured: G3 -> G0, change 0.036 = 0.5 % of the flip's, p = 0.035;
    # the threshold p <= 1/|E| expects one false positive among the |E| = 20 edges)
    significant = table[table["significant"]]
    others = significant[significant["target"] != top["target"]]
    assert len(significant) <= 4 and len(others) <= 1
    assert np.all(np.abs(others["change"]) < 0.02 * abs(top["change"]))
