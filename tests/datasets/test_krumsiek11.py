import numpy as np
import pytest

from celldyn.datasets import krumsiek11
from celldyn.datasets._krumsiek11 import _rule_signs, parse_boolean_model


@pytest.fixture(scope="module")
def _adata():
    return krumsiek11()


def test_ground_truth_network(_adata):
    net = _adata.uns["ground_truth_network"]
    assert list(net.columns) == ["source", "target", "sign", "weight"]
    assert len(net) == 30 and not net.duplicated(["source", "target"]).any()
    edges = {(s, t): sign for s, t, sign in zip(net.source, net.target, net.sign, strict=True)}
    assert edges[("Pu.1", "Gata1")] == -1  # Pu.1 represses Gata1
    assert edges[("Gata1", "Pu.1")] == -1  # and vice versa (the toggle)
    assert edges[("Gata1", "Fog1")] == 1
    assert edges[("Fog1", "Gata2")] == -1  # inside "not (Gata1 and Fog1)"
    self_loops = {s for (s, t) in edges if s == t}
    assert self_loops == {"Gata2", "Gata1", "Cebpa", "Pu.1"}
    assert set(net.source) | set(net.target) == set(_adata.var_names)
    # the boolean signs agree with the Hill coupling strengths of the same model file
    assert net.weight.notna().all()
    assert (np.sign(net.weight) == net.sign).all()
    assert (net.sign == 1).sum() == 15 and (net.sign == -1).sum() == 15


def test_time_and_obs(_adata):
    a = _adata
    assert a.shape == (640, 11)
    assert a.obs_names.is_unique
    assert list(a.obs["cell_type"].cat.categories) == ["Ery", "Mk", "Mo", "Neu", "progenitor"]
    time = a.obs["time"].to_numpy()
    assert time.dtype == np.float64
    np.testing.assert_array_equal(time, np.tile(np.arange(160.0), 4))
    assert list(a.obs["trajectory"].cat.categories) == ["0", "1", "2", "3"]
    # each trajectory starts in the progenitor state and ends in its own fate
    last = a.obs.groupby("trajectory", observed=True)["cell_type"].last()
    assert sorted(last) == ["Ery", "Mk", "Mo", "Neu"]
    assert (a.obs.loc[a.obs["time"] == 0, "cell_type"] == "progenitor").all()
    assert a.uns["iroot"] == 0


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("A and not (B or not C)", {"A": 1, "B": -1, "C": 1}),
        ("not not A", {"A": 1}),
        ("A and not A", {"A": 0}),
        ("(Pu.1 and cJun) and not Gfi1", {"Pu.1": 1, "cJun": 1, "Gfi1": -1}),
        ("", {}),
    ],
)
def test_rule_signs(rule, expected):
    assert _rule_signs(rule) == expected


@pytest.mark.parametrize("rule", ["(A and B", "A and", "A B", "A or )"])
def test_rule_signs_errors(rule):
    with pytest.raises(ValueError, match="rule|Rule"):
        _rule_signs(rule)


def test_parse_model_without_couplings(tmp_path):
    path = tmp_path / "m.txt"
    path.write_text("# a comment\nX = X and not Y\nY = X\n")
    net = parse_boolean_model(path)
    assert net[["source", "target", "sign"]].values.tolist() == [
        ["X", "X", 1],
        ["Y", "X", -1],
        ["X", "Y", 1],
    ]
    assert net.weight.isna().all()


def test_writes_to_h5ad(tmp_path):
    import anndata as ad

    from celldyn.datasets import krumsiek11

    adata = krumsiek11()
    assert adata.uns["highlights"]["0_159"] == "Mo"
    adata.write_h5ad(tmp_path / "k.h5ad")
    back = ad.read_h5ad(tmp_path / "k.h5ad")
    assert len(back.uns["ground_truth_network"]) == 30
