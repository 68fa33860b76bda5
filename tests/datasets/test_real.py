"""Real-data loaders read the project's copies in ../shared/data (skipped where absent).

Expected shapes and counts are the ones verified in each folder's SOURCE.md.
"""

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from celldyn import datasets
from celldyn.datasets import _screens, _timecourses


def _time_counts(adata) -> dict[float, int]:
    return adata.obs["time"].value_counts().sort_index().to_dict()


def test_eb(shared_data):
    folder = shared_data("eb_trajectorynet_pca5")
    a = datasets.eb(path=folder)
    assert a.shape == (16819, 5) and list(a.var_names) == [f"PC{i}" for i in range(1, 6)]
    assert _time_counts(a) == {0.0: 2381, 1.0: 4163, 2.0: 3278, 3.0: 3665, 4.0: 3332}
    np.testing.assert_array_equal(a.obsm["X_pca"], np.load(folder / "data.npy"))
    np.testing.assert_allclose(a.obsm["X_pca"].std(0), 1, atol=1e-6)
    assert a.obs["days"].iloc[0] == "0-3" and a.obs["days"].cat.ordered


def test_eb_download_is_standardised_like_the_copy(offline_cache):
    rng = np.random.default_rng(0)
    folder = offline_cache / "eb_trajectorynet_pca5"
    folder.mkdir(parents=True)
    pcs = rng.normal(3.0, 2.0, size=(40, 20))
    labels = np.repeat(np.arange(5), 8)
    np.savez(folder / "eb_velocity_v5.npz", pcs=pcs, sample_labels=labels)
    a = datasets.eb()
    z = pcs[:, :5]
    np.testing.assert_allclose(a.obsm["X_pca"], (z - z.mean(0)) / z.std(0))
    np.testing.assert_array_equal(a.obs["time"], labels.astype(float))


@pytest.mark.parametrize(
    ("name", "folder", "shape", "times", "networks"),
    [
        (
            "mESC",
            "beeline_mesc",
            (421, 1120),
            {0.0: 90, 12.0: 68, 24.0: 90, 48.0: 82, 72.0: 91},
            {"string": 7762, "chip_nonspecific": 6893, "chip_celltype": 29613, "lofgof": 4169},
        ),
        (
            "mDC",
            "beeline_mdc",
            (383, 821),
            {1.0: 96, 2.0: 96, 4.0: 95, 6.0: 96},
            {"string": 4815, "chip_nonspecific": 3067, "chip_celltype": 756},
        ),
    ],
)
def test_beeline(shared_data, name, folder, shape, times, networks):
    a = datasets.beeline(name, path=shared_data(folder))
    assert a.shape == shape and _time_counts(a) == times
    assert {k: len(v) for k, v in a.uns["networks"].items()} == networks
    raw = pd.read_csv(shared_data(folder) / "network_ChIP_nonspecific.csv")
    net = a.uns["networks"]["chip_nonspecific"]
    assert list(net.columns[:3]) == ["source", "target", "weight"]
    assert (net["source"].to_numpy() == raw["Gene1"].to_numpy()).all()
    assert (net["target"].to_numpy() == raw["Gene2"].to_numpy()).all()
    zeros = {"mESC": 0.119, "mDC": 0.217}[name]  # SOURCE.md: 11.9 % / 21.7 % zeros
    assert abs((a.X == 0).mean() - zeros) < 0.001
    if name == "mDC":
        assert a.uns["networks"]["chip_celltype"]["score"].iloc[0] == 171


@pytest.mark.parametrize(
    ("name", "folder", "n_cells", "times", "n_edges"),
    [
        (
            "hESC",
            "scode_chu2016_hesc_de",
            758,
            {0: 92, 12: 102, 24: 66, 36: 172, 72: 138, 96: 188},
            375,
        ),
        ("mESC", "scode_hayashi2018_mesc_pre", 456, {0: 92, 12: 91, 24: 93, 48: 87, 72: 93}, 616),
        ("MEF", "scode_treutlein2016_mef_reprog", 373, {0: 73, 2: 128, 5: 55, 20: 33, 22: 84}, 666),
    ],
)
def test_scode(shared_data, name, folder, n_cells, times, n_edges):
    path = shared_data(folder)
    a = datasets.scode(name, path=path)
    assert a.shape == (n_cells, 100) and _time_counts(a) == times
    net = a.uns["networks"]["reference"]
    assert len(net) == n_edges
    # SCODE's rows are (target, regulator, target index, regulator index): the regulator is
    # the source of our edge.
    first = pd.read_csv(path / "reference_TFTF_network.txt", sep="\t", header=None).iloc[0]
    assert net.iloc[0]["target"].upper() == first[0].upper()
    assert net.iloc[0]["source"].upper() == first[1].upper()
    if name == "mESC":
        assert a.obs["scode_split"].value_counts().to_dict() == {"train": 356, "test": 100}


def test_moignard15(shared_data):
    path = shared_data("moignard2015")
    a = datasets.moignard15(path=path)
    assert a.shape == (3934, 46)
    assert a.obs["stage"].value_counts().to_dict() == {
        "HF": 1005,
        "4SG": 983,
        "4SFG": 770,
        "PS": 624,
        "NP": 552,
    }
    assert abs((a.X == -14).mean() - 0.406) < 0.001 and a.var["housekeeping"].sum() == 4
    # The parsed Boolean model equals the edge list SOURCE.md derived from the same file.
    ours = a.uns["networks"]["boolean_model"]
    theirs = pd.read_csv(path / "moignard2015_boolean_model_edges.csv")
    key = ["source", "target"]
    merged = ours.merge(
        theirs.rename(columns={"source": "s", "target": "t"}).assign(
            source=lambda d: d["source_in_data"], target=lambda d: d["target_in_data"]
        ),
        on=key,
        how="outer",
        indicator=True,
    )
    assert (merged["_merge"] == "both").all() and len(merged) == 63
    assert (merged["weight"] == merged["sign"]).all()


def test_scns_edges_signs():
    net = _timecourses._scns_edges("A&^B -> T\nB -> T\n^Pu1 -> Eto2\n")
    got = {(s, t): w for s, t, w in net[["source", "target", "weight"]].itertuples(index=False)}
    assert got == {("A", "T"): 1.0, ("B", "T"): 0.0, ("Sfpi1", "Cbfa2t3h"): -1.0}


def test_guo10(shared_data):
    a = datasets.guo10(path=shared_data("guo2010"))
    assert a.shape == (437, 48)
    assert a.obs["n_cells_embryo"].value_counts().sort_index().to_dict() == {
        1: 9,
        2: 19,
        4: 23,
        8: 43,
        16: 75,
        32: 109,
        64: 159,
    }
    np.testing.assert_array_equal(np.unique(a.obs["time"]), np.arange(7.0))
    assert a.obs["lineage"].value_counts()["TE"] == 156
    np.testing.assert_allclose(a.X.mean(0), 0, atol=1e-5)


def test_dyngen_bifurcation(shared_data):
    a = datasets.dyngen_bifurcation(path=shared_data("dyngen_bif"))
    assert a.shape == (1000, 135) and a.obs_names[0] == "cell1"
    assert a.obs["sim_time"].iloc[1] == pytest.approx(86.08333333)


def test_norman19_subset(shared_data):
    path = shared_data("norman2019_perturbench_devel")
    a = datasets.norman19_subset(path=path)
    assert a.shape == (3375, 500)
    labels = a.obs["perturbation"]
    assert labels.cat.categories[0] == "control" and labels.nunique() == 34
    doubles = [p for p in labels.cat.categories if "+" in p]
    assert len(doubles) == 15 and all(d == "+".join(sorted(d.split("+"))) for d in doubles)
    singles = set(labels.cat.categories) - set(doubles) - {"control"}
    complete = [d for d in doubles if set(d.split("+")) <= singles]
    assert sorted(complete) == sorted(_screens.NORMAN19_HELD_OUT)
    # The recovered counts equal the ones verified for SOURCE.md, and rebuild X.
    shipped = ad.read_h5ad(path / "norman2019_k562_subset.h5ad")
    assert (a.obs_names == shipped.obs_names).all()
    assert abs(a.layers["counts"] - shipped.layers["counts_recovered"]).max() == 0
    assert np.median(np.asarray(a.layers["counts"].sum(1)).ravel()) == 126
    factor = shipped.obs["norm_scale_factor"].to_numpy()[:, None]
    rebuilt = np.log1p(a.layers["counts"].toarray() * factor)
    np.testing.assert_allclose(rebuilt, a.X.toarray(), atol=1e-5)


def test_recover_counts_exact_and_rejects_non_multiples():
    rng = np.random.default_rng(0)
    counts = rng.poisson(2.0, size=(30, 12)).astype(float)
    counts[0] = 0  # an empty cell
    factor = rng.uniform(0.5, 40.0, size=(30, 1))
    recovered = _screens.recover_counts(sp.csr_matrix(np.log1p(counts * factor)))
    np.testing.assert_array_equal(recovered.toarray(), counts)
    with pytest.raises(ValueError, match="Cell 0"):
        _screens.recover_counts(np.log1p(np.array([[1.0, 1.37, 2.0]])))


def test_papalexi21_subset(shared_data):
    path = shared_data("papalexi2021_eccite_sceptre")
    a = datasets.papalexi21_subset(path=path)
    # the conversion of sceptre's R data equals the h5ad made for SOURCE.md
    everything = datasets.papalexi21_subset(path=path, unassigned=True)
    shipped = ad.read_h5ad(path / "papalexi2021_eccite_sceptre_subset.h5ad")
    assert (everything.var_names == shipped.var_names).all()
    assert abs(everything.X - shipped.X).max() == 0
    assert abs(everything.obsm["grna_counts"] - shipped.obsm["grna_counts"]).max() == 0
    for column in ("bio_rep", "grna_max_id", "grna_assigned", "perturbation", "guide_id"):
        assert (everything.obs[column].to_numpy() == shipped.obs[column].to_numpy()).all()
    np.testing.assert_allclose(everything.obs["grna_max_frac"], shipped.obs["grna_max_frac"])
    assert a.shape == (16192, 299) and "unassigned" not in set(a.obs["perturbation"])
    counts = a.obs["perturbation"].value_counts()
    assert counts["control"] == 1923 and counts["IFNGR1"] == 1064 and counts["SPI1"] == 33
    assert a.obs["perturbation"].cat.categories[0] == "control" and len(counts) == 26
    x = a.layers["counts"]
    assert sp.issparse(x) and np.array_equal(x.data, np.round(x.data))
    measured = set(a.var_names[a.var["is_perturbation_target"]])
    assert measured == {"CMTM6", "IFNGR2", "JAK2", "NFKBIA", "STAT1", "STAT2", "STAT3"} | {
        "TNFRSF14",
        "UBE2L6",
    }
    assert everything.n_obs == 20729


def test_sachs(shared_data):
    path = shared_data("sachs2005")
    a = datasets.sachs(path=path)
    assert a.shape == (11672, 11)
    counts = a.obs["perturbation"].value_counts()
    assert counts["control"] == 853 and counts["ICAM2+LY294002"] == 927 and len(counts) == 14
    # the 14 Excel files read here equal the concatenated table made for SOURCE.md
    raw = pd.read_csv(path / "sachs2005_14conditions.csv")
    np.testing.assert_array_equal(
        a.layers["intensity"], raw[list(a.var_names)].to_numpy(np.float32)
    )
    np.testing.assert_allclose(np.exp(a.X), a.layers["intensity"], rtol=1e-5)
    for column in ("condition_id", "condition", "base_stimulus"):
        assert (a.obs[column].to_numpy() == raw[column].to_numpy()).all()
    for key, file in [
        ("consensus", "sachs_consensus_network.csv"),
        ("cdt", "sachs_network_cdt_variant.csv"),
    ]:
        ours = a.uns["networks"][key]
        theirs = pd.read_csv(path / file)
        assert set(zip(ours.source, ours.target, strict=True)) == set(
            zip(theirs.source, theirs.target, strict=True)
        )
    ours = a.uns["networks"]["consensus"].set_index(["source", "target"])["in_17_arc_network"]
    theirs = pd.read_csv(path / "sachs_consensus_network.csv").set_index(["source", "target"])
    assert (ours.sort_index() == theirs["in_17_arc_network"].sort_index()).all()
    assert set(a.uns["perturbation_targets"].values()) <= set(a.var_names)


def test_cache_dir_pointed_at_copies_serves_loaders(shared_data, offline_cache):
    """With $CELLDYN_DATA at a folder of copies, loaders need neither path nor internet."""
    folder = shared_data("beeline_mdc")
    datasets.set_cache_dir(folder.parent)
    assert datasets.beeline("mDC").shape == (383, 821)


def test_bad_input(tmp_path, offline_cache):
    with pytest.raises(ValueError, match="name"):
        datasets.beeline("hESC")
    with pytest.raises(ValueError, match="name"):
        datasets.scode("K562")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        datasets.guo10(path=tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"lacks the file\(s\) \['guo_qpcr.csv'\]"):
        datasets.guo10(path=tmp_path / "empty")


def test_dataset_files_without_url_needs_a_copy(offline_cache, tmp_path):
    from celldyn.datasets._files import dataset_files

    with pytest.raises(FileNotFoundError, match="no public download"):
        dataset_files("local_only", None, {"data.npy": None})
    (offline_cache / "local_only").mkdir(parents=True)
    (offline_cache / "local_only" / "data.npy").write_bytes(b"x")
    assert dataset_files("local_only", None, {"data.npy": None})["data.npy"].is_file()


@pytest.mark.parametrize(
    "loader",
    [
        lambda: datasets.beeline("mESC"),
        datasets.eb,
        lambda: datasets.scode("MEF"),
        datasets.moignard15,
        datasets.guo10,
        datasets.dyngen_bifurcation,
        datasets.norman19_subset,
        datasets.papalexi21_subset,
        datasets.sachs,
    ],
)
def test_offline_error_names_the_url(loader, offline_cache):
    with pytest.raises(ConnectionError, match="Could not download https://") as info:
        loader()
    assert str(offline_cache) in str(info.value)


@pytest.mark.internet
@pytest.mark.parametrize(
    ("loader", "folder"),
    [
        (lambda path: datasets.beeline("mDC", path=path), "beeline_mdc"),
        (lambda path: datasets.scode("hESC", path=path), "scode_chu2016_hesc_de"),
        (lambda path: datasets.moignard15(path=path), "moignard2015"),
        (lambda path: datasets.guo10(path=path), "guo2010"),
        (lambda path: datasets.dyngen_bifurcation(path=path), "dyngen_bif"),
        (lambda path: datasets.norman19_subset(path=path), "norman2019_perturbench_devel"),
        (lambda path: datasets.papalexi21_subset(path=path), "papalexi2021_eccite_sceptre"),
        (lambda path: datasets.sachs(path=path), "sachs2005"),
    ],
)
def test_download_equals_the_shared_copy(loader, folder, shared_data, tmp_path):
    """The public source gives the same AnnData as the project's copy (needs internet)."""
    local = loader(shared_data(folder))
    datasets.set_cache_dir(tmp_path / "cache")
    try:
        downloaded = loader(None)
    finally:
        datasets.set_cache_dir(None)
    assert downloaded.shape == local.shape and (downloaded.obs_names == local.obs_names).all()
    np.testing.assert_array_equal(
        downloaded.X.toarray() if sp.issparse(downloaded.X) else downloaded.X,
        local.X.toarray() if sp.issparse(local.X) else local.X,
    )
