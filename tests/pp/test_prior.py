import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from anndata.tests.helpers import assert_equal

import celldyn as cd


def _adata(genes):
    adata = ad.AnnData(np.zeros((4, len(genes)), dtype=np.float32))
    adata.var_names = list(genes)
    return adata


def _genes(n):
    return [f"g{i}" for i in range(n)]


def _prior(adata):
    return adata.varp["celldyn_prior"].toarray()


def test_edge_lands_at_regulator_row_target_column():
    adata = _adata(["A", "B", "C"])
    cd.pp.prior_network(adata, pd.DataFrame({"source": ["A"], "target": ["C"]}))
    m = adata.varp["celldyn_prior"]
    assert sp.isspmatrix_csr(m) and m.dtype == np.float64
    expected = np.zeros((3, 3))
    expected[0, 2] = 1.0  # A -> C at [A, C]
    np.testing.assert_array_equal(m.toarray(), expected)
    info = adata.uns["celldyn_prior"]
    assert (info["n_edges"], info["n_regulators"], info["n_targets"]) == (1, 1, 1)
    assert info["genes_covered"] == pytest.approx(2 / 3)


def test_restriction_to_genes_and_counts():
    adata = _adata(_genes(10))
    net = pd.DataFrame(
        {
            "tf": ["g0", "g0", "g1", "g2", "g3", "g3", "zz", "g4", "g5", None],
            "gene": ["g1", "g2", "g1", "g0", "g9", "yy", "g1", "xx", "g6", "g7"],
        }
    )
    cd.pp.prior_network(adata, net, source="tf", target="gene", min_coverage=0.0)
    info = adata.uns["celldyn_prior"]
    assert info["n_edges_input"] == 10
    assert info["edges_kept_fraction"] == pytest.approx(0.6)
    assert info["n_edges"] == 6
    assert info["n_regulators"] == 5  # g0 g1 g2 g3 g5
    assert info["n_targets"] == 5  # g1 g2 g0 g9 g6
    assert info["genes_covered"] == pytest.approx(7 / 10)
    assert info["density"] == pytest.approx(6 / 100)
    m = _prior(adata)
    assert m[1, 1] == 1.0  # self loop kept
    assert m[3, 9] == 1.0 and m.sum() == 6


def test_weights_and_duplicates():
    adata = _adata(_genes(4))
    net = pd.DataFrame(
        {
            "source": ["g0", "g0", "g1", "g2", "g2"],
            "target": ["g1", "g1", "g2", "g3", "g3"],
            "mor": [1.0, 3.0, -0.5, 1.0, -1.0],
        }
    )
    with pytest.warns(UserWarning, match="1 of 3 edges have weight 0"):
        cd.pp.prior_network(adata, net, weight="mor")
    m = _prior(adata)
    assert m[0, 1] == 2.0  # duplicates merged into their mean
    assert m[1, 2] == -0.5
    assert m[2, 3] == 0.0 and adata.varp["celldyn_prior"].nnz == 2


def test_case_insensitive_mapping():
    adata = _adata(["Gata1", "Spi1", "Klf1"])
    net = pd.DataFrame({"source": ["GATA1", "spi1"], "target": ["KLF1", "gata1"]})
    before = adata.copy()
    with pytest.raises(ValueError, match="case_sensitive=False"):
        cd.pp.prior_network(adata, net)
    assert_equal(adata, before)
    cd.pp.prior_network(adata, net, case_sensitive=False)
    m = _prior(adata)
    assert m[0, 2] == 1.0 and m[1, 0] == 1.0 and m.sum() == 2


def test_case_insensitive_collisions():
    adata = _adata(["abc", "ABC", "Def", "ghi"])
    ok = pd.DataFrame({"source": ["DEF"], "target": ["GHI"]})
    cd.pp.prior_network(adata, ok, case_sensitive=False)  # colliding names unused: fine
    assert _prior(adata)[2, 3] == 1.0
    bad = pd.DataFrame({"source": ["Abc"], "target": ["ghi"]})
    before = adata.copy()
    with pytest.raises(ValueError, match="ambiguous"):
        cd.pp.prior_network(adata, bad, case_sensitive=False)
    assert_equal(adata, before)


def test_symmetrize_doubles_non_reciprocal_edges():
    adata = _adata(_genes(30))
    rng = np.random.default_rng(0)
    pairs = {tuple(p) for p in rng.integers(0, 30, size=(80, 2))}
    net = pd.DataFrame(
        {
            "source": [f"g{a}" for a, _ in pairs],
            "target": [f"g{b}" for _, b in pairs],
            "weight": rng.uniform(0.5, 2.0, len(pairs)),
        }
    )
    n_self = sum(a == b for a, b in pairs)
    n_recip = sum(a != b and (b, a) in pairs for a, b in pairs)
    n_one_way = len(pairs) - n_self - n_recip
    directed = cd.pp.prior_network(adata, net, weight="weight", copy=True)
    sym = cd.pp.prior_network(adata, net, weight="weight", symmetrize=True, copy=True)
    assert n_recip > 0 and n_one_way > 0
    assert directed.uns["celldyn_prior"]["n_edges"] == len(pairs)
    assert sym.uns["celldyn_prior"]["n_edges"] == n_self + n_recip + 2 * n_one_way
    d, s = _prior(directed), _prior(sym)
    np.testing.assert_array_equal(s != 0, (s != 0).T)
    np.testing.assert_array_equal(s[d != 0], d[d != 0])  # existing edges keep their weight
    added = (s != 0) & (d == 0)
    np.testing.assert_array_equal(s[added], d.T[added])  # reverse edges copy the forward weight


def test_random_edges_reach_density():
    adata = _adata(_genes(50))
    net = pd.DataFrame({"source": _genes(20), "target": _genes(50)[10:30]})
    net["weight"] = 3.0
    kwargs = {"weight": "weight", "add_random_edges": 0.1, "random_state": 1}
    out = cd.pp.prior_network(adata, net, copy=True, **kwargs)
    info = out.uns["celldyn_prior"]
    m = _prior(out)
    assert info["n_edges"] == 250 and np.count_nonzero(m) == 250
    assert info["density"] == pytest.approx(0.1)
    assert info["n_random_edges"] == 230
    assert np.count_nonzero(m == 3.0) == 20  # the prior edges are intact
    assert np.count_nonzero(m == 1.0) == 230
    random_edges = info["random_edges"]
    pos = {g: i for i, g in enumerate(out.var_names)}
    rows = random_edges["source"].map(pos).to_numpy()
    cols = random_edges["target"].map(pos).to_numpy()
    np.testing.assert_array_equal(m[rows, cols], 1.0)
    assert not random_edges.duplicated().any()
    assert info["genes_covered"] == pytest.approx(30 / 50)  # computed without random edges
    again = cd.pp.prior_network(adata, net, copy=True, **kwargs)
    np.testing.assert_array_equal(_prior(again), m)
    other = cd.pp.prior_network(adata, net, copy=True, **{**kwargs, "random_state": 2})
    assert not np.array_equal(_prior(other), m)


def test_random_edges_below_current_density_add_nothing():
    adata = _adata(_genes(5))
    net = pd.DataFrame({"source": ["g0", "g1", "g2"], "target": ["g1", "g2", "g3"]})
    cd.pp.prior_network(adata, net, add_random_edges=0.05)
    assert adata.uns["celldyn_prior"]["n_random_edges"] == 0
    assert adata.varp["celldyn_prior"].nnz == 3


def test_low_coverage_warning():
    adata = _adata(_genes(100))
    net = pd.DataFrame({"source": ["g0", "g1"], "target": ["g2", "g3"]})
    with pytest.warns(UserWarning, match="4.0% of the genes"):
        cd.pp.prior_network(adata, net)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cd.pp.prior_network(adata, net, min_coverage=0.04)


def test_accepts_decoupler_network():
    import decoupler as dc

    toy, net = dc.ds.toy()
    genes = list(toy.var_names) + sorted(net["source"].unique())
    adata = _adata(genes)
    cd.pp.prior_network(adata, net, weight="weight")
    m = _prior(adata)
    assert adata.uns["celldyn_prior"]["n_edges"] == len(net)
    assert m[genes.index("T2"), genes.index("G07")] == -3.0
    assert m[genes.index("T4"), genes.index("G09")] == pytest.approx(3.1)


@pytest.mark.parametrize(
    ("net", "kwargs", "error", "match"),
    [
        (pd.DataFrame({"src": ["g0"], "tgt": ["g1"]}), {}, KeyError, r"\['source', 'target'\]"),
        (pd.DataFrame({"source": ["g0"], "target": ["g1"]}), {"weight": "w"}, KeyError, "'w'"),
        (
            pd.DataFrame({"source": ["g0", "g1"], "target": ["g1", "g2"], "w": [1.0, np.nan]}),
            {"weight": "w"},
            ValueError,
            "1 NaN",
        ),
        (
            pd.DataFrame({"source": ["g0"], "target": ["g1"], "w": ["strong"]}),
            {"weight": "w"},
            ValueError,
            "numeric",
        ),
        (pd.DataFrame({"source": ["x"], "target": ["y"]}), {}, ValueError, "No edge"),
        (
            pd.DataFrame({"source": ["g0"], "target": ["g1"]}),
            {"add_random_edges": 1.5},
            ValueError,
            "density",
        ),
        (
            pd.DataFrame({"source": ["g0"], "target": ["g1"]}),
            {"add_random_edges": -0.1},
            ValueError,
            "density",
        ),
        (
            pd.DataFrame({"source": ["g0"], "target": ["g1"]}),
            {"min_coverage": 2.0},
            ValueError,
            "min_coverage",
        ),
        ([("g0", "g1")], {}, TypeError, "DataFrame"),
    ],
)
def test_bad_input_leaves_adata_unchanged(net, kwargs, error, match):
    adata = _adata(_genes(5))
    adata.varp["celldyn_prior"] = sp.identity(5, format="csr")
    before = adata.copy()
    with pytest.raises(error, match=match):
        cd.pp.prior_network(adata, net, **kwargs)
    assert_equal(adata, before)


def test_non_unique_var_names():
    adata = _adata(["g0", "g0", "g1"])
    with pytest.raises(ValueError, match="not unique"):
        cd.pp.prior_network(adata, pd.DataFrame({"source": ["g0"], "target": ["g1"]}))
    assert "celldyn_prior" not in adata.varp
