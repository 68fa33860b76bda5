import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from celldyn.metrics import grn_scores

GENES = ["A", "B", "C", "D"]
# 3 true edges among the 12 ordered pairs without self-loops: density 1/4
TRUTH = pd.DataFrame({"source": ["A", "B", "C"], "target": ["B", "C", "D"], "sign": [1, -1, 1]})


def _matrix(entries, genes=GENES, fill=0.0):
    """Regulator x target DataFrame from {(source, target): value}."""
    m = pd.DataFrame(fill, index=genes, columns=genes)
    for (s, t), v in entries.items():
        m.loc[s, t] = v
    return m


def test_perfect_predictor():
    pred = _matrix({("A", "B"): 2.0, ("B", "C"): -3.0, ("C", "D"): 1.0}, fill=0.1)
    res = grn_scores(pred, TRUTH)
    assert res["auroc"] == pytest.approx(1.0)
    assert res["auprc"] == pytest.approx(1.0)
    assert res["auprc_ratio"] == pytest.approx(4.0)
    assert res["early_precision"] == 1.0
    assert res["epr"] == pytest.approx(4.0)
    assert res["sign_accuracy"] == 1.0
    assert (res["n_true_edges"], res["n_candidates"]) == (3, 12)


def test_reversed_predictor():
    # true edges get the weakest scores, every other pair a strong one
    pred = _matrix({("A", "B"): 0.1, ("B", "C"): -0.1, ("C", "D"): 0.1}, fill=1.0)
    res = grn_scores(pred, TRUTH)
    assert res["auroc"] == pytest.approx(0.0)
    assert res["early_precision"] == 0.0
    assert res["epr"] == 0.0


def test_random_predictor_is_at_chance():
    rng = np.random.default_rng(0)
    n = 30
    genes = [f"g{i}" for i in range(n)]
    truth = (rng.random((n, n)) < 0.1).astype(float)
    aurocs, ratios = [], []
    for seed in range(40):
        pred = np.random.default_rng(seed + 1).normal(size=(n, n))
        res = grn_scores(pred, truth, genes=genes)
        aurocs.append(res["auroc"])
        ratios.append(res["epr"])
    assert np.mean(aurocs) == pytest.approx(0.5, abs=0.02)
    assert np.mean(ratios) == pytest.approx(1.0, abs=0.2)


def test_hand_computed_example():
    # |scores| ranked: A>B 0.9 (true), A>C 0.8, B>C 0.7 (true), C>D 0.7 (true), the rest 0.1
    pred = _matrix({("A", "B"): 0.9, ("A", "C"): 0.8, ("B", "C"): -0.7, ("C", "D"): -0.7}, fill=0.1)
    res = grn_scores(pred, TRUTH)
    # top-3 by score includes the tie at 0.7: 4 edges, 3 of them true
    assert res["early_precision"] == pytest.approx(3 / 4)
    assert res["epr"] == pytest.approx(3.0)
    # AP = 1/3 * 1 + (1 - 1/3) * 3/4
    assert res["auprc"] == pytest.approx(5 / 6)
    assert res["auprc_ratio"] == pytest.approx(10 / 3)
    # 0.9 beats all 9 negatives, each 0.7 beats 8 of them
    assert res["auroc"] == pytest.approx(25 / 27)
    # signs: A>B + (right), B>C - (right), C>D predicted - but true + (wrong)
    assert res["sign_accuracy"] == pytest.approx(2 / 3)


def test_early_precision_ignores_zero_scores():
    one = grn_scores(_matrix({("A", "B"): 0.5}), TRUTH)
    assert one["early_precision"] == 1.0  # only one edge predicted at all, and it is true
    assert one["epr"] == pytest.approx(4.0)
    assert grn_scores(_matrix({}), TRUTH)["early_precision"] == 0.0


def test_sign_accuracy_needs_signed_truth():
    pred = _matrix({("A", "B"): 1.0, ("B", "C"): 1.0, ("C", "D"): 1.0})
    unsigned = TRUTH[["source", "target"]]
    res = grn_scores(pred, unsigned)
    assert np.isnan(res["sign_accuracy"])
    assert res["auroc"] == pytest.approx(1.0)
    # a sign-0 truth edge is a true edge but does not enter the sign accuracy
    zero = TRUTH.assign(sign=[1, 0, -1])
    res = grn_scores(pred, zero)
    assert res["sign_accuracy"] == pytest.approx(1 / 2)
    assert res["n_true_edges"] == 3
    # signs from a `weight` column (decoupler format)
    weighted = TRUTH.rename(columns={"sign": "weight"}).assign(weight=[0.5, -2.0, 3.0])
    assert grn_scores(pred, weighted)["sign_accuracy"] == pytest.approx(2 / 3)


def test_input_formats_agree():
    rng = np.random.default_rng(0)
    n = 12
    genes = [f"g{i}" for i in range(n)]
    truth_mat = (rng.random((n, n)) < 0.15) * rng.choice([-1.0, 1.0], size=(n, n))
    # a ring so that every gene appears in the edge list (it names only genes with edges)
    truth_mat[np.arange(n), (np.arange(n) + 1) % n] = 1.0
    pred_mat = 2 * truth_mat + rng.normal(size=(n, n))
    src, tgt = np.meshgrid(genes, genes, indexing="ij")
    pred_edges = pd.DataFrame(
        {"source": src.ravel(), "target": tgt.ravel(), "score": pred_mat.ravel()}
    )
    nz = truth_mat != 0
    truth_edges = pd.DataFrame({"source": src[nz], "target": tgt[nz], "sign": truth_mat[nz]})
    reference = grn_scores(pred_mat, truth_mat, genes=genes)
    assert 0.6 < reference["auroc"] < 1.0
    for pred in (
        pred_edges,
        pred_edges.rename(columns={"score": "weight"}).sample(frac=1.0, random_state=0),
        pd.DataFrame(pred_mat, index=genes, columns=genes),
        sp.csr_matrix(pred_mat),
    ):
        for truth in (truth_edges, pd.DataFrame(truth_mat, index=genes, columns=genes)):
            assert grn_scores(pred, truth, genes=genes) == pytest.approx(reference)


def test_candidates_and_self_loops():
    pred = _matrix({("A", "B"): 0.9, ("A", "C"): 0.95, ("B", "C"): 0.2, ("B", "D"): 0.1})
    prior = pd.DataFrame({"source": ["A", "A", "B", "B", "B"], "target": ["B", "C", "C", "D", "B"]})
    res = grn_scores(pred, TRUTH, candidates=prior)
    # candidates A>B (T, .9), A>C (F, .95), B>C (T, .2), B>D (F, .1); the self-loop B>B dropped
    assert (res["n_candidates"], res["n_true_edges"]) == (4, 2)
    assert res["auroc"] == pytest.approx(2 / 4)  # .9 and .2 each beat only .1
    assert res["early_precision"] == pytest.approx(1 / 2)
    assert res["epr"] == pytest.approx(1.0)
    assert grn_scores(pred, TRUTH, candidates=prior, self_loops=True)["n_candidates"] == 5
    assert grn_scores(pred, TRUTH, self_loops=True)["n_candidates"] == 16


def test_only_common_genes_are_scored():
    # predicted knows an extra gene E; truth an extra gene F: universe over A-D only
    pred = _matrix({("A", "B"): 1.0, ("E", "A"): 5.0}, genes=[*GENES, "E"])
    truth = pd.concat([TRUTH, pd.DataFrame({"source": ["F"], "target": ["A"], "sign": [1]})])
    res = grn_scores(pred, truth)
    assert (res["n_candidates"], res["n_true_edges"]) == (12, 3)


@pytest.mark.parametrize(
    ("pred", "truth", "kwargs", "error", "match"),
    [
        (
            _matrix({}, genes=["X", "Y"]),
            TRUTH,
            {},
            ValueError,
            "no gene in common",
        ),
        (
            _matrix({("A", "B"): 1.0}),
            TRUTH,
            {"candidates": pd.DataFrame({"source": ["A"], "target": ["C"]})},
            ValueError,
            "No true edge of `truth` is among the candidate edges",
        ),
        (
            _matrix({("A", "B"): 1.0}),
            TRUTH,
            {"candidates": pd.DataFrame({"source": ["A"], "target": ["B"]})},
            ValueError,
            "Every candidate edge is a true edge",
        ),
        (np.eye(4), TRUTH, {}, ValueError, "unnamed matrix: pass `genes=`"),
        (np.eye(3), TRUTH, {"genes": GENES}, ValueError, r"shape \(3, 3\) but `genes` has 4"),
        (
            _matrix({("A", "B"): np.nan}),
            TRUTH,
            {},
            ValueError,
            r"`predicted` contains 1 NaN",
        ),
        (
            pd.DataFrame({"source": ["A", "A"], "target": ["B", "B"], "score": [1.0, 2.0]}),
            TRUTH,
            {},
            ValueError,
            "more than once",
        ),
        (
            pd.DataFrame({"source": ["A"], "target": ["B"]}),
            TRUTH,
            {},
            ValueError,
            r"needs a score column: one of \['score', 'weight'\]",
        ),
        ([[1.0]], TRUTH, {}, TypeError, "`predicted` must be a DataFrame"),
        (_matrix({}), "edges.csv", {}, TypeError, "`truth` must be a DataFrame"),
    ],
)
def test_bad_input(pred, truth, kwargs, error, match):
    with pytest.raises(error, match=match):
        grn_scores(pred, truth, **kwargs)
