"""Real time courses: embryoid body, BEELINE, SCODE, Moignard 2015, Guo 2010, dyngen.

Each loader reads a local copy (``path=``, e.g. ``../shared/data/<folder>``) or downloads the
files once from the public repository they are published in (pinned commits) into the cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _keys
from .._validate import check_in
from ._cache import fetch, get_cache_dir
from ._files import dataset_files

_GITHUB = "https://raw.githubusercontent.com"
EB_NPZ_URL = f"{_GITHUB}/KrishnaswamyLab/TrajectoryNet/master/data/eb_velocity_v5.npz"
_BRIDGE = (
    f"{_GITHUB}/haohaostats/bridge-grn/27d21d94f6f96f5d2a8a7b41d392cb12410e46ea/"
    "data/benchmark_datasets/STRING%20Dataset/{cell}/TFs%2B500/BL--ExpressionData.csv.gz"
)
_GENELINK = (
    f"{_GITHUB}/zpliulab/GENELink/4eb816af27f5fe0cb26f9230286401801b251129/"
    "Dataset/Benchmark%20Dataset/{kind}%20Dataset/{cell}/TFs%2B500/BL--network.csv"
)
_SCODE = f"{_GITHUB}/hmatsu1226/SCODE/d481cd807b9b44e8148d540cdac15cbcae159478/data{{n}}/{{file}}"
_MODERN_STATS = f"{_GITHUB}/aef1004/modern_stats/441fcce33fee3c72685aad5644b9438f01d6bca7/data"
_SCNS = (
    f"{_GITHUB}/swoodhouse/SCNS-Toolkit/5f882e66781bcc043e953f325cc013bdda1b73ad/"
    "Scripts/combined_embryo_model.net"
)
_PODS = f"{_GITHUB}/sods/ods/f62e5b8397d00eece211852e0b778d6d8f5c5e0f/datasets/guo_qpcr.csv"
_MIOFLOW = f"{_GITHUB}/KrishnaswamyLab/MIOFlow/c3633f7b6a2e54635f1ff020738038f14d121a69/data"

NETWORKS = "networks"
"""``uns`` key of a dataset's reference networks (dict of decoupler-format DataFrames)."""


def _network(source, target, weight=None, **extra) -> pd.DataFrame:
    """Build a decoupler-format network: ``source``, ``target``, ``weight`` (1 if unsigned)."""
    net = pd.DataFrame({"source": np.asarray(source, dtype=str)})
    net["target"] = np.asarray(target, dtype=str)
    net["weight"] = np.ones(len(net)) if weight is None else np.asarray(weight, dtype=float)
    for key, value in extra.items():
        net[key] = np.asarray(value)
    return net


def _dataset_info(citation: str, source: str) -> dict[str, str]:
    return {"citation": citation, "source": source}


# ----------------------------------------------------------------------------- embryoid body
_EB_FOLDER = "eb_trajectorynet_pca5"
_EB_FILES = ("data.npy", "sample_labels.npy")
_EB_DAYS = ("0-3", "6-9", "12-15", "18-21", "24-27")
EB_CITATION = "Moon et al. (2019) Nat. Biotechnol. 37:1482; TrajectoryNet, Tong et al. (2020) ICML"


def _eb_from_npz(folder: Path) -> None:
    """Write TrajectoryNet's first 5 PCs, standardised, and labels as the copy's two files."""
    with np.load(fetch(EB_NPZ_URL, f"{_EB_FOLDER}/eb_velocity_v5.npz"), allow_pickle=True) as npz:
        if "pcs" not in npz.files or "sample_labels" not in npz.files:
            raise ValueError(f"TrajectoryNet's EB file lacks 'pcs' or 'sample_labels': {npz.files}")
        pcs = np.asarray(npz["pcs"][:, :5], dtype=np.float64)
        labels = np.asarray(npz["sample_labels"])
    np.save(folder / "data.npy", (pcs - pcs.mean(0)) / pcs.std(0))
    np.save(folder / "sample_labels.npy", labels.astype(np.int64))


def eb(path: str | os.PathLike | None = None) -> AnnData:
    """Embryoid-body time course: TrajectoryNet's 5 standardised principal components.

    Human ES cells differentiating as embryoid bodies over 27 days, sampled in five windows
    (Moon et al. 2019, Nat. Biotechnol. 37:1482), as the 5-PC benchmark of TrajectoryNet
    (Tong et al. 2020, ICML), used by OT-CFM, MIOFlow and Cell-MNN: 16,819 cells.

    Parameters
    ----------
    path
        Folder with ``data.npy`` (cells x 5 PCs, each standardised) and ``sample_labels.npy``
        (time index 0-4), e.g. ``'../shared/data/eb_trajectorynet_pca5'``. Without it,
        TrajectoryNet's ``eb_velocity_v5.npz`` is downloaded once into the cache and its
        first 5 PCs are standardised the same way.

    Returns
    -------
    AnnData with ``X`` and ``obsm['X_pca']``: the 5 standardised PCs (``var_names``
    ``'PC1'``-``'PC5'``); ``obs['time']``: the window index 0-4 (float); ``obs['days']``:
    the collection window (``'0-3'``, ``'6-9'``, ``'12-15'``, ``'18-21'``, ``'24-27'``);
    ``uns['dataset']``: citation and source. There is no gene expression.
    """
    if path is None:
        folder = get_cache_dir() / _EB_FOLDER
        if not all((folder / f).is_file() for f in _EB_FILES):
            folder.mkdir(parents=True, exist_ok=True)
            _eb_from_npz(folder)
        path = folder
    files = dataset_files(_EB_FOLDER, path, dict.fromkeys(_EB_FILES))
    pcs = np.load(files["data.npy"])
    labels = np.load(files["sample_labels.npy"])
    if pcs.ndim != 2 or len(pcs) != len(labels):
        raise ValueError(f"EB data has shape {pcs.shape} but {len(labels)} labels.")
    obs = pd.DataFrame(index=[f"cell{i}" for i in range(len(labels))])
    obs[_keys.SAMPLE_TIME] = labels.astype(np.float64)
    obs["days"] = pd.Categorical(
        [_EB_DAYS[i] for i in labels.astype(int)], categories=list(_EB_DAYS), ordered=True
    )
    var = pd.DataFrame(index=[f"PC{i + 1}" for i in range(pcs.shape[1])])
    adata = AnnData(pcs.astype(np.float32), obs=obs, var=var)
    adata.obsm["X_pca"] = pcs.astype(np.float64)
    adata.uns["dataset"] = _dataset_info(EB_CITATION, "TrajectoryNet eb_velocity_v5.npz")
    return adata


# ----------------------------------------------------------------------------- BEELINE
_BEELINE = {
    "mESC": {
        "cell": "mESC",
        "pattern": r"_(\d+)h_",
        "networks": {
            "string": "STRING",
            "chip_nonspecific": "Non-Specific",
            "chip_celltype": "Specific",
            "lofgof": "Lofgof",
        },
        "citation": "Hayashi et al. (2018) Nat. Commun. 9:619; BEELINE, Pratapa et al. (2020) "
        "Nat. Methods 17:147",
    },
    "mDC": {
        "cell": "mDC",
        "pattern": r"LPS_(\d+)h_",
        "networks": {
            "string": "STRING",
            "chip_nonspecific": "Non-Specific",
            "chip_celltype": "Specific",
        },
        "citation": "Shalek et al. (2014) Nature 510:363; BEELINE, Pratapa et al. (2020) "
        "Nat. Methods 17:147",
    },
}
_BEELINE_FILES = {
    "string": "network_STRING.csv",
    "chip_nonspecific": "network_ChIP_nonspecific.csv",
    "chip_celltype": "network_ChIP_celltype_specific.csv",
    "lofgof": "network_LOFGOF.csv",
}
BEELINE_EXPRESSION = "ExpressionData_TFs500.csv.gz"


def _hours(cells: pd.Index, pattern: str) -> np.ndarray:
    hours = cells.str.extract(pattern)[0]
    if hours.isna().any():
        bad = list(cells[hours.isna().to_numpy()][:3])
        raise ValueError(f"Cannot read the capture time from cell name(s) {bad}.")
    return hours.astype(float).to_numpy()


def beeline(name: str = "mESC", path: str | os.PathLike | None = None) -> AnnData:
    """BEELINE real time course with its ground-truth networks ('TFs + 500 genes' version).

    ``'mESC'``: mouse ES cells to primitive endoderm, 421 cells x 1,120 genes at 0, 12, 24,
    48, 72 h (Hayashi et al. 2018, Nat. Commun. 9:619). ``'mDC'``: dendritic cells after LPS,
    383 cells x 821 genes at 1, 2, 4, 6 h (Shalek et al. 2014, Nature 510:363). Both as
    benchmarked by BEELINE (Pratapa et al. 2020, Nat. Methods 17:147), networks from GENELink
    (Chen & Liu 2022), expression from BRIDGE-GRN (both MIT).

    Parameters
    ----------
    name
        ``'mESC'`` or ``'mDC'``.
    path
        Folder with ``ExpressionData_TFs500.csv.gz`` and the ``network_*.csv`` files, e.g.
        ``'../shared/data/beeline_mesc'``; without it they are downloaded once.

    Returns
    -------
    AnnData with ``X``: BEELINE's log-normalised expression (float32, cells x genes, gene
    symbols upper-case as shipped); ``obs['time']``: capture time in hours;
    ``uns['networks']``: decoupler-format DataFrames (``source`` = regulator, ``target``,
    ``weight`` = 1; mDC's cell-type-specific ChIP-seq also ``score``) named ``'string'``,
    ``'chip_nonspecific'`` (DoRothEA/RegNetwork/TRRUST union), ``'chip_celltype'``
    (cell-type-specific ChIP-seq) and, for mESC, ``'lofgof'`` (loss/gain of function);
    ``uns['dataset']``: citation and source.
    """
    check_in(name, tuple(_BEELINE), "name")
    spec = _BEELINE[name]
    urls = {BEELINE_EXPRESSION: _BRIDGE.format(cell=spec["cell"])}
    for key, kind in spec["networks"].items():
        urls[_BEELINE_FILES[key]] = _GENELINK.format(kind=kind, cell=spec["cell"])
    files = dataset_files(f"beeline_{name.lower()}", path, urls)
    expression = pd.read_csv(files[BEELINE_EXPRESSION], index_col=0)
    obs = pd.DataFrame(index=expression.columns.astype(str))
    obs[_keys.SAMPLE_TIME] = _hours(obs.index, spec["pattern"])
    adata = AnnData(
        expression.T.to_numpy(np.float32), obs=obs, var=pd.DataFrame(index=expression.index)
    )
    networks = {}
    for key in spec["networks"]:
        raw = pd.read_csv(files[_BEELINE_FILES[key]])
        extra = {"score": raw["Score"].to_numpy(float)} if "Score" in raw else {}
        networks[key] = _network(raw["Gene1"], raw["Gene2"], **extra)
    adata.uns[NETWORKS] = networks
    adata.uns["dataset"] = _dataset_info(spec["citation"], "BEELINE via GENELink / BRIDGE-GRN")
    return adata


# ----------------------------------------------------------------------------- SCODE
_SCODE_SETS = {
    "mESC": {
        "folder": "scode_hayashi2018_mesc_pre",
        "n": 1,
        "files": ("exp_train.txt", "exp_test.txt", "time_train.txt", "time_test.txt"),
        "citation": "Hayashi et al. (2018) Nat. Commun. 9:619; SCODE, Matsumoto et al. (2017) "
        "Bioinformatics 33:2314",
    },
    "MEF": {
        "folder": "scode_treutlein2016_mef_reprog",
        "n": 2,
        "files": ("data.txt", "time.txt"),
        "citation": "Treutlein et al. (2016) Nature 534:391; SCODE, Matsumoto et al. (2017) "
        "Bioinformatics 33:2314",
    },
    "hESC": {
        "folder": "scode_chu2016_hesc_de",
        "n": 3,
        "files": ("data.txt", "time.txt"),
        "citation": "Chu et al. (2016) Genome Biol. 17:173; SCODE, Matsumoto et al. (2017) "
        "Bioinformatics 33:2314",
    },
}


def _read_table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", header=None)


def scode(name: str = "hESC", path: str | os.PathLike | None = None) -> AnnData:
    """Real time course of the SCODE paper: 100 variable TFs and a reference TF network.

    ``'hESC'``: ES cells to definitive endoderm, 758 cells at 0-96 h (Chu et al. 2016,
    Genome Biol. 17:173). ``'mESC'``: ES cells to primitive endoderm, 456 cells at 0-72 h
    (the data of BEELINE's mESC, Hayashi et al. 2018; SCODE's train and test cells joined).
    ``'MEF'``: fibroblasts reprogrammed to neurons, 373 cells at day 0-22 (Treutlein et al.
    2016, Nature 534:391). As shipped by SCODE (Matsumoto et al. 2017, Bioinformatics 33:2314,
    MIT).

    Parameters
    ----------
    name
        ``'hESC'``, ``'mESC'`` or ``'MEF'``.
    path
        Folder with SCODE's files (``tf.txt``, ``reference_TFTF_network.txt`` and the
        expression / time tables), e.g. ``'../shared/data/scode_chu2016_hesc_de'``; without
        it they are downloaded once.

    Returns
    -------
    AnnData with ``X``: SCODE's log-scale expression (float32, cells x 100 TFs);
    ``obs['time']``: capture time (hours; days for ``'MEF'``); ``obs['pseudotime']``: SCODE's
    pseudotime; ``'MEF'`` also ``obs['cell_state']`` and ``'mESC'`` ``obs['scode_split']``
    (``'train'``/``'test'``); ``uns['networks']['reference']``: SCODE's TF->TF reference
    (regulatorynetworks.org footprints; a noisy literature reference; self-loops kept);
    ``uns['dataset']``: citation and source.
    """
    check_in(name, tuple(_SCODE_SETS), "name")
    spec = _SCODE_SETS[name]
    names = ("tf.txt", "reference_TFTF_network.txt", *spec["files"])
    urls = {f: _SCODE.format(n=spec["n"], file=f) for f in names}
    files = dataset_files(spec["folder"], path, urls)
    genes = [g.strip() for g in files["tf.txt"].read_text().splitlines() if g.strip()]
    if name == "mESC":
        parts = [
            ("train", "exp_train.txt", "time_train.txt"),
            ("test", "exp_test.txt", "time_test.txt"),
        ]
    else:
        parts = [(None, "data.txt", "time.txt")]
    blocks, obs_parts = [], []
    for split, expression_file, time_file in parts:
        x = np.loadtxt(files[expression_file], ndmin=2).T
        times = _read_table(files[time_file])
        if len(times) != len(x) or x.shape[1] != len(genes):
            raise ValueError(
                f"SCODE {name}: {expression_file} has shape {x.shape[::-1]} (genes x cells) but "
                f"{len(genes)} genes in tf.txt and {len(times)} rows in {time_file}."
            )
        obs = pd.DataFrame(index=[f"{split or name}_{i}" for i in range(len(x))])
        if name == "MEF":
            obs["cell_state"] = pd.Categorical(times[0].astype(str))
            obs[_keys.SAMPLE_TIME] = times[2].astype(float).to_numpy()
            obs["pseudotime"] = times[1].astype(float).to_numpy()
        else:
            obs[_keys.SAMPLE_TIME] = times[0].astype(float).to_numpy()
            obs["pseudotime"] = times[1].astype(float).to_numpy()
        if split is not None:
            obs["scode_split"] = split
        blocks.append(x)
        obs_parts.append(obs)
    obs = pd.concat(obs_parts)
    if "scode_split" in obs:
        obs["scode_split"] = pd.Categorical(obs["scode_split"], categories=["train", "test"])
    adata = AnnData(
        np.concatenate(blocks).astype(np.float32), obs=obs, var=pd.DataFrame(index=genes)
    )
    reference = _read_table(files["reference_TFTF_network.txt"])
    # SCODE's columns: target, regulator, target index, regulator index (0-based, tf.txt).
    gene_index = pd.Index(genes)
    adata.uns[NETWORKS] = {
        "reference": _network(
            gene_index[reference[3].to_numpy()], gene_index[reference[2].to_numpy()]
        )
    }
    adata.uns["dataset"] = _dataset_info(spec["citation"], "SCODE example data")
    return adata


# ----------------------------------------------------------------------------- Moignard 2015
_MOIGNARD_STAGES = {"PS": 7.0, "NP": 7.5, "HF": 7.75, "4SG": 8.25, "4SFG": 8.25}
MOIGNARD_HOUSEKEEPING = ("Eif2b1", "Mrpl19", "Polr2a", "Ubc")
_MOIGNARD_FILES = {
    "moignard2015_dCt.csv": f"{_MODERN_STATS}/nbt.3154-S3.csv",
    "moignard2015_boolean_model_SCNS.net": _SCNS,
}
_SCNS_NAMES = {"Eto2": "Cbfa2t3h", "Pu1": "Sfpi1"}


def _scns_edges(text: str) -> pd.DataFrame:
    """Signed edges of an SCNS Boolean model (``A&^B -> T``; sign 0 if seen both ways)."""
    signs: dict[tuple[str, str], set[int]] = {}
    for line in text.splitlines():
        if "->" not in line:
            continue
        clause, target = (part.strip() for part in line.split("->"))
        for literal in clause.split("&"):
            literal = literal.strip()
            if literal:
                source = literal.lstrip("^")
                signs.setdefault((source, target), set()).add(-1 if literal[0] == "^" else 1)
    edges = sorted(signs)
    rename = np.vectorize(lambda g: _SCNS_NAMES.get(g, g), otypes=[str])
    return _network(
        rename([s for s, _ in edges]),
        rename([t for _, t in edges]),
        [s.pop() if len(s) == 1 else 0 for s in (signs[e] for e in edges)],
    )


def moignard15(path: str | os.PathLike | None = None) -> AnnData:
    """Early mouse blood development, single-cell qPCR (Moignard et al. 2015, Nat. Biotechnol.).

    3,934 cells x 46 genes from E7.0 to E8.25 (Moignard et al. 2015, Nat. Biotechnol.
    33:269), with the Boolean network the authors inferred from the same data (SCNS toolkit,
    MIT); that network is a reference, not an independent truth.

    Parameters
    ----------
    path
        Folder with ``moignard2015_dCt.csv`` and ``moignard2015_boolean_model_SCNS.net``,
        e.g. ``'../shared/data/moignard2015'``; without it they are downloaded once.

    Returns
    -------
    AnnData with ``X``: the normalised dCt values (float32; higher = more expression,
    ``-14`` = not detected); ``obs['stage']``: ``PS``, ``NP``, ``HF``, ``4SG``, ``4SFG``;
    ``obs['time']``: embryonic day (7.0, 7.5, 7.75, 8.25; the two 4-somite sorts share it);
    ``var['housekeeping']``: the 4 control genes usually dropped; ``uns['networks']
    ['boolean_model']``: signed edges of the Boolean model (``weight`` +1 / -1, 0 if both;
    self-loops kept; model names mapped to the data's gene names); ``uns['dataset']``.
    """
    files = dataset_files("moignard2015", path, _MOIGNARD_FILES)
    table = pd.read_csv(files["moignard2015_dCt.csv"], index_col=0)
    stage = table.index.astype(str).str.extract(r"^(PS|NP|HF|4SG|4SFG)")[0]
    if stage.isna().any():
        raise ValueError(f"Unknown stage in cell names {list(table.index[stage.isna()][:3])}.")
    obs = pd.DataFrame(index=table.index.astype(str))
    obs["stage"] = pd.Categorical(stage.to_numpy(), categories=list(_MOIGNARD_STAGES))
    obs[_keys.SAMPLE_TIME] = stage.map(_MOIGNARD_STAGES).to_numpy(float)
    var = pd.DataFrame(index=table.columns.astype(str))
    var["housekeeping"] = var.index.isin(MOIGNARD_HOUSEKEEPING)
    adata = AnnData(table.to_numpy(np.float32), obs=obs, var=var)
    model = files["moignard2015_boolean_model_SCNS.net"].read_text()
    adata.uns[NETWORKS] = {"boolean_model": _scns_edges(model)}
    adata.uns["dataset"] = _dataset_info(
        "Moignard et al. (2015) Nat. Biotechnol. 33:269", "Supplementary Table 3; SCNS toolkit"
    )
    return adata


# ----------------------------------------------------------------------------- Guo 2010
def guo10(path: str | os.PathLike | None = None) -> AnnData:
    """Mouse preimplantation embryo, single-cell qPCR (Guo et al. 2010, Dev. Cell 18:675).

    437 cells x 48 genes from the zygote to the 64-cell blastocyst, as shipped by the ``pods``
    dataset collection (each gene standardised across cells).

    Parameters
    ----------
    path
        Folder with ``guo_qpcr.csv``, e.g. ``'../shared/data/guo2010'``; without it the file
        is downloaded once.

    Returns
    -------
    AnnData with ``X``: standardised expression (float32, z-scores); ``obs['n_cells_embryo']``:
    the stage (1, 2, 4, ..., 64); ``obs['time']``: ``log2`` of it (cleavage rounds 0-6);
    ``obs['lineage']``: ``TE``, ``ICM``, ``EPI``, ``PE`` from the 32-cell stage on, else
    ``'none'``; ``uns['dataset']``: citation and source. No network ships with it.
    """
    files = dataset_files("guo2010", path, {"guo_qpcr.csv": _PODS})
    table = pd.read_csv(files["guo_qpcr.csv"], index_col=0)
    labels = table.index.astype(str).str.split()
    stage = labels.str[0].astype(int).to_numpy()
    obs = pd.DataFrame(index=[f"cell{i}" for i in range(len(table))])
    obs["label"] = table.index.astype(str).to_numpy()
    obs["n_cells_embryo"] = stage
    obs[_keys.SAMPLE_TIME] = np.log2(stage).astype(float)
    obs["lineage"] = pd.Categorical(labels.str[1].fillna("none").to_numpy())
    adata = AnnData(
        table.to_numpy(np.float32), obs=obs, var=pd.DataFrame(index=table.columns.astype(str))
    )
    adata.uns["dataset"] = _dataset_info(
        "Guo et al. (2010) Dev. Cell 18:675", "pods dataset collection (guo_qpcr.csv)"
    )
    return adata


# ----------------------------------------------------------------------------- dyngen
def dyngen_bifurcation(path: str | os.PathLike | None = None) -> AnnData:
    """Dyngen bifurcation (Cannoodt et al. 2021, Nat. Commun. 12:3942), from MIOFlow's data.

    1,000 cells x 135 genes of a third-party simulator with the simulated time of each cell,
    as used by MIOFlow (Huguet et al. 2022, NeurIPS). An independent generator family for
    checking defaults.

    Parameters
    ----------
    path
        Folder with ``expression.csv`` (cells x genes, ``log2(1 + x)``) and ``cell_info.csv``
        (``cell_id``, ``sim_time``), e.g. ``'../shared/data/dyngen_bif'``; without it they
        are downloaded once.

    Returns
    -------
    AnnData with ``X``: expression (float32); ``obs['sim_time']``: dyngen's simulation time;
    ``obs['simulation_i']``: dyngen's simulation index; ``uns['dataset']``. Bin ``sim_time``
    into snapshots with :func:`celldyn.pp.time_groups` (``pseudotime_key='sim_time'``).
    """
    urls = {
        "expression.csv": f"{_MIOFLOW}/dyngen_expression_bif.csv",
        "cell_info.csv": f"{_MIOFLOW}/cell_info.csv",
    }
    files = dataset_files("dyngen_bif", path, urls)
    expression = pd.read_csv(files["expression.csv"])
    info = pd.read_csv(files["cell_info.csv"], usecols=["cell_id", "simulation_i", "sim_time"])
    info = info[info["cell_id"].notna()]  # the shipped file ends with a stray empty row
    if len(info) != len(expression):
        raise ValueError(f"dyngen: {len(expression)} expression rows but {len(info)} cells.")
    obs = pd.DataFrame(index=info["cell_id"].astype(str).to_numpy())
    obs["sim_time"] = info["sim_time"].to_numpy(float)
    obs["simulation_i"] = info["simulation_i"].to_numpy(int)
    adata = AnnData(
        expression.to_numpy(np.float32),
        obs=obs,
        var=pd.DataFrame(index=expression.columns.astype(str)),
    )
    adata.uns["dataset"] = _dataset_info(
        "Cannoodt et al. (2021) Nat. Commun. 12:3942", "MIOFlow repository, data/dyngen"
    )
    return adata
