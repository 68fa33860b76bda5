import csv
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pooch
import pytest

from celldyn import datasets
from celldyn.datasets import _online, _trrust

_SHARED = [
    Path(__file__).resolve().parents[2] / "shared",
    Path(__file__).resolve().parents[3] / "shared",
    Path("/work/shared"),
]
_TRRUST_DIR = next(
    (p / "data" / "trrust" for p in _SHARED if (p / "data" / "trrust").is_dir()), None
)
needs_trrust = pytest.mark.skipif(_TRRUST_DIR is None, reason="shared TRRUST copy not found")


@pytest.fixture(autouse=True)
def cache(offline_cache):
    """Every test here starts from an empty cache, offline."""
    return offline_cache


def _expected_trrust(path):
    """Independent reference: modes and PMIDs per (TF, target) pair."""
    pairs = {}
    with open(path) as f:
        for tf, target, mode, pmids in csv.reader(f, delimiter="\t"):
            entry = pairs.setdefault((tf, target), [set(), set()])
            entry[0].add(mode)
            entry[1].update(pmids.split(";"))
    return pairs


@needs_trrust
@pytest.mark.parametrize("organism", ["human", "mouse"])
def test_trrust_from_shared_file(organism):
    path = _TRRUST_DIR / f"trrust_rawdata.{organism}.tsv"
    net = datasets.trrust(organism, path=path)
    expected = _expected_trrust(path)
    assert list(net.columns) == ["source", "target", "weight", "mode", "pmid"]
    assert len(net) == len(expected) and not net.duplicated(["source", "target"]).any()
    for s, t, w, mode, pmid in net.itertuples(index=False):
        modes, pmids = expected[(s, t)]
        known = modes - {"Unknown"}
        want = {frozenset({"Activation"}): 1.0, frozenset({"Repression"}): -1.0}.get(
            frozenset(known), 0.0
        )
        assert w == want
        assert mode == ("Mixed" if len(known) == 2 else next(iter(known), "Unknown"))
        assert set(pmid.split(";")) == pmids
    if organism == "human":
        assert len(net) == 8427
        counts = net["mode"].value_counts().to_dict()
        assert counts == {"Unknown": 3568, "Activation": 2937, "Repression": 1715, "Mixed": 207}
        row = net[(net.source == "AATF") & (net.target == "BAX")].iloc[0]
        assert (row.weight, row["mode"], row.pmid) == (-1.0, "Repression", "22909821")


def test_trrust_reads_cache_without_download(cache):
    cache.mkdir(parents=True)
    (cache / "trrust_rawdata.mouse.tsv").write_text(
        "Tf1\tG1\tActivation\t1\nTf1\tG1\tUnknown\t2;1\nTf2\tG1\tRepression\t3\n"
        "Tf2\tG2\tActivation\t4\nTf2\tG2\tRepression\t5\nTf3\tG3\tUnknown\t6\n"
    )
    net = datasets.trrust("mouse")
    assert net.values.tolist() == [
        ["Tf1", "G1", 1.0, "Activation", "1;2"],
        ["Tf2", "G1", -1.0, "Repression", "3"],
        ["Tf2", "G2", 0.0, "Mixed", "4;5"],
        ["Tf3", "G3", 0.0, "Unknown", "6"],
    ]


@pytest.mark.parametrize(
    ("loader", "url"),
    [
        (lambda: datasets.trrust("human"), _trrust.TRRUST_URL.format(organism="human")),
        (datasets.norman19, _online.NORMAN19_URL),
        (datasets.paul15, _online.PAUL15_URL),
    ],
)
def test_offline_error_names_url(loader, url, cache):
    with pytest.raises(ConnectionError, match="Could not download") as info:
        loader()
    assert url in str(info.value) and str(cache) in str(info.value)


def test_trrust_bad_input(tmp_path):
    with pytest.raises(ValueError, match="organism"):
        datasets.trrust("yeast")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        datasets.trrust(path=tmp_path / "missing.tsv")
    bad = tmp_path / "bad.tsv"
    bad.write_text("A\tB\tActivation\n")
    with pytest.raises(ValueError, match="4"):
        datasets.trrust(path=bad)
    bad.write_text("A\tB\tInhibition\t1\n")
    with pytest.raises(ValueError, match="Inhibition"):
        datasets.trrust(path=bad)


def test_cache_dir_precedence(tmp_path, monkeypatch):
    datasets.set_cache_dir(None)
    assert datasets.get_cache_dir() == Path(pooch.os_cache("celldyn"))
    monkeypatch.setenv("CELLDYN_DATA", str(tmp_path / "env"))
    assert datasets.get_cache_dir() == tmp_path / "env"
    datasets.set_cache_dir(tmp_path / "explicit")
    assert datasets.get_cache_dir() == tmp_path / "explicit"


def test_norman19_labels_from_cached_file(cache):
    cache.mkdir(parents=True)
    raw = ["control", "KLF1", "KLF1_CEBPE", "CEBPE_KLF1", "control", "AHR"]
    obs = pd.DataFrame({"perturbation": pd.Categorical(raw)}, index=[f"c{i}" for i in range(6)])
    ad.AnnData(np.ones((6, 3), dtype=np.float32), obs=obs).write_h5ad(
        cache / "NormanWeissman2019_filtered.h5ad"
    )
    a = datasets.norman19()
    assert a.obs["perturbation"].tolist() == [
        "control",
        "KLF1",
        "CEBPE+KLF1",
        "CEBPE+KLF1",
        "control",
        "AHR",
    ]
    assert list(a.obs["perturbation"].cat.categories) == ["control", "AHR", "CEBPE+KLF1", "KLF1"]
    assert a.obs["perturbation_scperturb"].tolist() == raw


@pytest.mark.internet
def test_trrust_download_matches_shared_copy(cache, monkeypatch):
    monkeypatch.undo()  # real downloads
    datasets.set_cache_dir(cache)
    net = datasets.trrust("human")
    assert len(net) > 8000 and set(net["mode"]) == {"Activation", "Repression", "Unknown", "Mixed"}


@pytest.mark.internet
def test_eb_download(cache, monkeypatch):
    monkeypatch.undo()
    datasets.set_cache_dir(cache)
    a = datasets.eb()
    assert a.shape == (16819, 5)
    assert sorted(np.unique(a.obs["time"])) == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_paul15_reads_cache_through_scanpy(cache):
    import h5py
    import scanpy as sc

    (cache / "paul15").mkdir(parents=True)
    genes = np.array([b"Gata1;x", b"Pu.1", b"Fli1"])
    with h5py.File(cache / "paul15" / "paul15.h5", "w") as f:
        f["data.debatched"] = np.arange(12, dtype=np.float64).reshape(3, 4)  # genes x cells
        f["data.debatched_rownames"] = genes
        f["data.debatched_colnames"] = np.array([b"c1", b"c2", b"c3", b"c4"])
        f["cluster.id"] = np.array([[1, 7, 7, 12]])
        f["info.genes_strings"] = np.array([b"Gata1", b"Pu.1"])
    before = sc.settings.datasetdir
    a = datasets.paul15()
    assert sc.settings.datasetdir.resolve() == before.resolve()
    assert a.shape == (4, 2) and sorted(a.var_names) == ["Gata1", "Pu.1"]
    assert a.obs["paul15_clusters"].tolist() == ["1Ery", "7MEP", "7MEP", "12Baso"]
