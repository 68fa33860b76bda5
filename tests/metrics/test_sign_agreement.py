"""sign_agreement: a confusion matrix computed by hand, orientation, TRRUST input."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from celldyn.metrics._sign_agreement import sign_agreement

GENES = ["A", "B", "C", "D"]


def _interactions():
    w = pd.DataFrame(0.0, index=GENES, columns=GENES)  # regulator x target
    w.loc["A", "B"] = 0.5  # reference +  -> TP
    w.loc["A", "C"] = 0.2  # reference -  -> FP
    w.loc["A", "D"] = -0.1  # reference + -> FN
    w.loc["B", "C"] = -0.3  # reference - -> TN
    w.loc["D", "A"] = 0.4  # reference +  -> TP
    w.loc["C", "A"] = 0.9  # reference lists both signs -> dropped
    w.loc["B", "A"] = -0.7  # reference weight 0 -> ignored
    return w


REFERENCE = pd.DataFrame(
    [
        ("A", "B", 1.0),
        ("A", "C", -1.0),
        ("A", "D", 1.0),
        ("B", "C", -1.0),
        ("B", "D", 1.0),  # predicted exactly 0 -> undetermined
        ("C", "A", -1.0),
        ("C", "A", 1.0),
        ("D", "A", 1.0),
        ("X", "A", 1.0),  # regulator not among the genes
        ("B", "A", 0.0),
    ],
    columns=["source", "target", "weight"],
)


def test_hand_computed_confusion_matrix():
    result = sign_agreement(_interactions(), REFERENCE)
    overall = result["overall"]
    assert {k: overall[k] for k in ("tp", "fp", "fn", "tn", "n_edges")} == {
        "tp": 2,
        "fp": 1,
        "fn": 1,
        "tn": 1,
        "n_edges": 5,
    }
    assert overall["precision"] == pytest.approx(2 / 3)
    assert overall["recall"] == pytest.approx(2 / 3)
    assert overall["f1"] == pytest.approx(2 / 3)
    assert overall["accuracy"] == pytest.approx(3 / 5)
    assert (overall["n_undetermined"], overall["n_conflicting"]) == (1, 1)

    per_tf = result["per_tf"]
    assert list(per_tf.index) == ["A", "B", "D"]  # sorted by number of edges
    a, b, d = (per_tf.loc[g] for g in ("A", "B", "D"))
    assert (a.tp, a.fp, a.fn, a.tn) == (1, 1, 1, 0)
    assert (a.precision, a.recall, a.f1) == pytest.approx((0.5, 0.5, 0.5))
    assert a.accuracy == pytest.approx(1 / 3)
    assert (b.tn, b.n_edges, b.accuracy) == (1, 1, 1.0)
    assert np.isnan(b.precision) and np.isnan(b.recall) and np.isnan(b.f1)  # undefined
    assert (d.precision, d.recall, d.f1) == (1.0, 1.0, 1.0)


def test_orientation_and_array_input():
    w = _interactions()
    transposed = sign_agreement(w.T.to_numpy(), REFERENCE, genes=GENES)["overall"]
    assert transposed["tp"] != 2 or transposed["fp"] != 1
    same = sign_agreement(w.to_numpy(), REFERENCE, genes=GENES)["overall"]
    assert same == sign_agreement(w, REFERENCE)["overall"]
    # a 'sign' column works like 'weight'
    signed = REFERENCE.rename(columns={"weight": "sign"})
    assert sign_agreement(w, signed)["overall"] == same


def test_flipping_every_sign_swaps_the_confusion_matrix():
    flipped = sign_agreement(-_interactions(), REFERENCE)["overall"]
    assert (flipped["tp"], flipped["fn"], flipped["fp"], flipped["tn"]) == (1, 2, 1, 1)
    assert flipped["accuracy"] == pytest.approx(2 / 5)
    assert flipped["precision"] == pytest.approx(1 / 2)
    assert flipped["recall"] == pytest.approx(1 / 3)
    assert flipped["f1"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))


# the project's shared data folder lies beside the repository (CI clones it there too)
TRRUST = Path(__file__).resolve().parents[3] / "shared/data/trrust/trrust_rawdata.human.tsv"


@pytest.mark.skipif(not TRRUST.exists(), reason="offline TRRUST table not present")
def test_trrust_reference_recovered_by_its_own_signs():
    from celldyn.datasets._trrust import read_trrust

    net = read_trrust(TRRUST)
    net = net[net["weight"] != 0].head(300)
    genes = sorted(set(net["source"]) | set(net["target"]))
    w = pd.DataFrame(0.0, index=genes, columns=genes)
    for source, target, weight in net[["source", "target", "weight"]].itertuples(index=False):
        w.loc[source, target] = weight
    overall = sign_agreement(w, net)["overall"]
    assert overall["n_edges"] == len(net)
    assert overall["accuracy"] == overall["f1"] == 1.0
    assert overall["tp"] == int((net["weight"] > 0).sum())


def test_bad_input():
    w = _interactions()
    with pytest.raises(ValueError, match="No reference edge"):
        sign_agreement(w, pd.DataFrame({"source": ["Y"], "target": ["Z"], "weight": [1.0]}))
    with pytest.raises(KeyError, match="weight"):
        sign_agreement(w, REFERENCE.drop(columns="weight"))
    with pytest.raises(ValueError, match="genes"):
        sign_agreement(w.to_numpy(), REFERENCE)
    with pytest.raises(ValueError, match="square"):
        sign_agreement(np.zeros((3, 4)), REFERENCE, genes=["A", "B", "C"])
    with pytest.raises(TypeError, match="DataFrame"):
        sign_agreement(w, REFERENCE.to_numpy())
    with pytest.raises(ValueError, match="NaN"):
        sign_agreement(w, REFERENCE.assign(weight=np.nan))
