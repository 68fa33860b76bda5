"""Real perturbation screens: Norman 2019 subset, Papalexi 2021 subset, Sachs 2005.

Labels follow celldyn's format in ``obs['perturbation']``: ``'control'``, ``'A'``, ``'A+B'``.
"""

from __future__ import annotations

import os
import warnings
from urllib.parse import quote

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .. import _keys
from .._perturbations import SEPARATOR
from ._files import dataset_files
from ._timecourses import NETWORKS, _dataset_info, _network

_PERTURBENCH_DEVEL = (
    "https://raw.githubusercontent.com/altoslabs/perturbench/"
    "d357dfae3b50968e800e9f5f273ff145080ae67c/src/perturbench/data/resources/devel.h5ad"
)
_SCEPTRE_RDA = (
    "https://raw.githubusercontent.com/Katsevich-Lab/sceptre/"
    "823bcdae9df321db501a59aa6b7acc1975052b9f/data/lowmoi_example_data.rda"
)
NORMAN19_HELD_OUT = (
    "KLF1+MAP2K6",
    "KLF1+TGFBR2",
    "MAP2K3+MAP2K6",
    "MAP2K3+SLC38A2",
    "MAPK1+TGFBR2",
)
"""Norman subset doubles whose two singles are both measured (the unseen-double split)."""


def _sorted_label(label: str) -> str:
    return label if label == _keys.CONTROL else SEPARATOR.join(sorted(label.split(SEPARATOR)))


def recover_counts(normalized: sp.spmatrix | np.ndarray, max_divisor: int = 10) -> sp.csr_matrix:
    """Integer counts behind ``log1p`` of library-size-normalised counts, cell by cell.

    Each cell's ``expm1`` values are multiples of one unit (its normalisation factor): the
    smallest non-zero value divided by the smallest ``k <= max_divisor`` that makes every
    ratio an integer (to 1e-6).

    Raises
    ------
    ValueError
        If a cell's values are not integer multiples of one unit.
    """
    x = sp.csr_matrix(normalized, dtype=np.float64)
    counts = x.copy()
    counts.data = np.expm1(counts.data)
    for i in range(x.shape[0]):
        row = counts.data[counts.indptr[i] : counts.indptr[i + 1]]
        if row.size == 0:
            continue
        for k in range(1, max_divisor + 1):
            ratio = row / (row.min() / k)
            if np.abs(ratio - np.round(ratio)).max() < 1e-6:
                row[:] = np.round(ratio)
                break
        else:
            raise ValueError(f"Cell {i}: the normalised values are not multiples of one unit.")
    counts.eliminate_zeros()
    return counts.astype(np.float32)


def norman19_subset(path: str | os.PathLike | None = None) -> AnnData:
    """Norman et al. (2019) K562 CRISPRa singles and doubles: PerturBench's small subset.

    3,375 cells x 500 highly variable genes: control, 18 single-gene and 15 double
    activations, about 100 cells each (Norman et al. 2019, Science 365:786; subset made by
    PerturBench, Wu et al. 2024, arXiv:2408.10609, BSD-3). Only TMSB4X of the 31 targets is
    a measured gene. :data:`NORMAN19_HELD_OUT` lists the 5 doubles whose two singles are
    present.

    Parameters
    ----------
    path
        Folder with PerturBench's ``perturbench_devel.h5ad``, e.g.
        ``'../shared/data/norman2019_perturbench_devel'``; without it the file is downloaded
        once. Its Norman cells are kept (the McFaline-Figueroa cells are dropped).

    Returns
    -------
    AnnData with ``X``: ``log1p`` of the library-size-normalised counts as shipped (sparse);
    ``layers['counts']``: the integer UMI counts recovered from ``X``
    (:func:`recover_counts`; median 126 UMIs per cell over these genes);
    ``obs['perturbation']``: ``'control'``, ``'A'`` or ``'A+B'`` (genes sorted),
    categorical with ``'control'`` first; ``obs['condition']`` and the other shipped columns;
    ``uns['dataset']``: citation and source.
    """
    import anndata

    files = dataset_files(
        "norman2019_perturbench_devel", path, {"perturbench_devel.h5ad": _PERTURBENCH_DEVEL}
    )
    devel = anndata.read_h5ad(files["perturbench_devel.h5ad"])
    for column in ("dataset", "condition"):
        if column not in devel.obs:
            raise KeyError(f"PerturBench's devel.h5ad has no obs column {column!r}.")
    adata = devel[devel.obs["dataset"].astype(str) == "norman19"].copy()
    adata.layers[_keys.COUNTS] = recover_counts(adata.X)  # from the float64 values
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    labels = [_sorted_label(str(c)) for c in adata.obs["condition"]]
    others = sorted(set(labels) - {_keys.CONTROL})
    adata.obs[_keys.PERTURBATION] = pd.Categorical(labels, categories=[_keys.CONTROL, *others])
    adata.uns["dataset"] = _dataset_info(
        "Norman et al. (2019) Science 365:786; PerturBench, Wu et al. (2024) arXiv:2408.10609",
        "PerturBench devel.h5ad (dataset == 'norman19')",
    )
    return adata


def _dgt_matrix(obj) -> sp.csr_matrix:
    """Turn a ``dgTMatrix`` read by ``rdata`` (0-based triplets) into its transpose, as CSR."""
    n_rows, n_cols = (int(d) for d in obj.Dim)
    matrix = sp.coo_matrix((obj.x, (obj.i, obj.j)), shape=(n_rows, n_cols), dtype=np.float32)
    return matrix.T.tocsr()


def _assign_grnas(grna: sp.csr_matrix, names: np.ndarray, targets: dict) -> pd.DataFrame:
    """Each cell's dominant gRNA: kept if it has >= 5 UMIs and >= 80% of the cell's gRNA UMIs."""
    dense = grna.toarray()
    best = dense.argmax(1)
    top = dense[np.arange(len(dense)), best]
    total = dense.sum(1)
    fraction = np.divide(top, total, out=np.zeros_like(top), where=total > 0)
    assigned = (top >= 5) & (fraction >= 0.8)
    guide = np.where(assigned, names[best], "unassigned")
    target = np.array([targets.get(g, "unassigned") for g in guide], dtype=object)
    target[target == "non-targeting"] = _keys.CONTROL
    return pd.DataFrame(
        {
            "grna_n_umis_total": total,
            "grna_max_id": names[best],
            "grna_max_umis": top,
            "grna_max_frac": fraction,
            "grna_assigned": assigned,
            _keys.PERTURBATION: target,
            "guide_id": guide,
        }
    )


def papalexi21_subset(
    path: str | os.PathLike | None = None, *, unassigned: bool = False
) -> AnnData:
    """Papalexi et al. (2021) ECCITE-seq: THP-1 CRISPR knockouts under IFN-gamma, 299 genes.

    20,729 cells x 299 genes (289 random genes, one mitochondrial and the 9 measured targets
    CMTM6, IFNGR2, JAK2, NFKBIA, STAT1, STAT2, STAT3, TNFRSF14, UBE2L6), 25 single-gene
    knockouts and non-targeting controls (Papalexi et al. 2021, Nat. Genet. 53:322), read
    from the real example data of sceptre 0.0.4 (``lowmoi_example_data.rda``, GPL-3; with
    ``rdata``). A cell's perturbation is the target of its dominant gRNA when that gRNA has at
    least 5 UMIs and 80% of the cell's gRNA UMIs; other cells are ``'unassigned'``.

    Parameters
    ----------
    path
        Folder with ``lowmoi_example_data_sceptre_823bcda.rda``, e.g.
        ``'../shared/data/papalexi2021_eccite_sceptre'``; without it the file is downloaded
        once from sceptre's repository (commit 823bcda).
    unassigned
        Keep the 4,537 cells without a confident gRNA (``obs['perturbation'] ==
        'unassigned'``); by default they are dropped.

    Returns
    -------
    AnnData with ``X`` and ``layers['counts']``: raw UMI counts (sparse float32);
    ``obs['perturbation']``: ``'control'`` or the knocked-out gene, categorical with
    ``'control'`` first; ``obs['bio_rep']``, ``obs['n_umis_panel']``, ``obs['guide_id']`` and
    the gRNA numbers behind the assignment; ``var['is_perturbation_target']``;
    ``obsm['grna_counts']`` (cells x 110 gRNAs) with ``uns['grna_names']`` and
    ``uns['grna_target_data_frame']``; ``uns['dataset']``.
    """
    import rdata

    name = "lowmoi_example_data_sceptre_823bcda.rda"
    files = dataset_files("papalexi2021_eccite_sceptre", path, {name: _SCEPTRE_RDA})
    with warnings.catch_warnings():  # rdata has no constructor for dgTMatrix: raw slots
        warnings.simplefilter("ignore", UserWarning)
        data = rdata.read_rda(files[name])["lowmoi_example_data"]
    counts = _dgt_matrix(data["response_matrix"])
    grna = _dgt_matrix(data["grna_matrix"])
    genes = np.asarray(data["response_matrix"].Dimnames[0], dtype=str)
    grna_names = np.asarray(data["grna_matrix"].Dimnames[0], dtype=str)
    table = data["grna_target_data_frame"].reset_index(drop=True)
    obs = _assign_grnas(grna, grna_names, dict(zip(table.grna_id, table.grna_target, strict=True)))
    obs.insert(0, "bio_rep", data["extra_covariates"]["bio_rep"].astype(str).to_numpy())
    obs.insert(1, "n_umis_panel", np.asarray(counts.sum(1)).ravel())
    obs.index = [f"cell_{i:05d}" for i in range(len(obs))]
    var = pd.DataFrame(index=genes)
    var["is_perturbation_target"] = var.index.isin(set(table.grna_target))
    adata = AnnData(counts, obs=obs, var=var)
    adata.obsm["grna_counts"] = grna
    adata.uns["grna_names"] = grna_names
    adata.uns["grna_target_data_frame"] = table.astype(str)
    if not unassigned:
        adata = adata[adata.obs[_keys.PERTURBATION] != "unassigned"].copy()
    labels = adata.obs[_keys.PERTURBATION].astype(str)
    others = sorted(set(labels) - {_keys.CONTROL})
    adata.obs[_keys.PERTURBATION] = pd.Categorical(labels, categories=[_keys.CONTROL, *others])
    adata.layers[_keys.COUNTS] = adata.X.copy()
    adata.uns["dataset"] = _dataset_info(
        "Papalexi et al. (2021) Nat. Genet. 53:322", "sceptre 0.0.4 lowmoi_example_data.rda"
    )
    return adata


# ----------------------------------------------------------------------------- Sachs 2005
SACHS_PROTEINS = ("Raf", "Mek", "Plcg", "PIP2", "PIP3", "Erk", "Akt", "PKA", "PKC", "P38", "Jnk")
"""The 11 measured (phospho-)proteins, in the column order of every supplementary file."""
_SACHS_CONDITIONS = (  # file stem, label, base stimulus, intended target (Sachs et al. 2005)
    ("cd3cd28", "control", "CD3+CD28", "none"),
    ("cd3cd28icam2", "ICAM2", "CD3+CD28", "none (ICAM-2, general stimulus)"),
    ("cd3cd28+aktinhib", "AKTi", "CD3+CD28", "Akt (inhibited)"),
    ("cd3cd28+g0076", "G06976", "CD3+CD28", "PKC (inhibited)"),
    ("cd3cd28+psitect", "psitectorigenin", "CD3+CD28", "PIP2 (inhibited)"),
    ("cd3cd28+u0126", "U0126", "CD3+CD28", "Mek (inhibited)"),
    ("cd3cd28+ly", "LY294002", "CD3+CD28", "PIP3 (PI3K inhibited)"),
    ("pma", "PMA", "none", "PKC (activated)"),
    ("b2camp", "b2cAMP", "none", "PKA (activated)"),
    ("cd3cd28icam2+aktinhib", "ICAM2+AKTi", "CD3+CD28", "Akt (inhibited)"),
    ("cd3cd28icam2+g0076", "ICAM2+G06976", "CD3+CD28", "PKC (inhibited)"),
    ("cd3cd28icam2+psit", "ICAM2+psitectorigenin", "CD3+CD28", "PIP2 (inhibited)"),
    ("cd3cd28icam2+u0126", "ICAM2+U0126", "CD3+CD28", "Mek (inhibited)"),
    ("cd3cd28icam2+ly", "ICAM2+LY294002", "CD3+CD28", "PIP3 (PI3K inhibited)"),
)
_SNARLES = (
    "https://raw.githubusercontent.com/snarles/causal/"
    "2f4c6ab8a17c46e6429d0616c72466397cd27618/sachs_data"
)
SACHS_TARGETS = {
    "AKTi": "Akt",
    "G06976": "PKC",
    "psitectorigenin": "PIP2",
    "U0126": "Mek",
    "LY294002": "PIP3",
    "PMA": "PKC",
    "b2cAMP": "PKA",
}
"""Sachs 2005 reagents -> the protein each acts on (inhibits; PMA and b2cAMP activate)."""
# bnlearn's 17 validated arcs plus the 3 the Sachs et al. model missed (in_17_arc False).
_SACHS_CONSENSUS = (
    "PKC>PKA PKC>Raf PKA>Raf PKC>Mek PKA>Mek Raf>Mek Mek>Erk PKA>Erk Erk>Akt PKA>Akt "
    "PKC>P38 PKA>P38 PKC>Jnk PKA>Jnk Plcg>PIP3 Plcg>PIP2 PIP3>PIP2 Plcg>PKC PIP2>PKC PIP3>Akt"
)
_SACHS_CDT = (
    "PIP2>PKC Plcg>PIP2 Plcg>PKC PIP2>PIP3 PIP3>Plcg PIP3>Akt PKC>Raf PKC>Mek "
    "PKC>Jnk PKC>P38 PKA>Raf PKA>Mek PKA>Erk PKA>Akt PKA>Jnk PKA>P38 Raf>Mek Mek>Erk"
)


def _edge_list(text: str) -> pd.DataFrame:
    pairs = [edge.split(">") for edge in text.split()]
    return _network([s for s, _ in pairs], [t for _, t in pairs])


def _sachs_files() -> dict[str, str]:
    """Local name (``raw_xls/NN_<stem>.xls``) -> URL of each condition's supplementary file."""
    return {
        f"raw_xls/{i:02d}_{stem}.xls": f"{_SNARLES}/{i}.%20{quote(stem)}.xls"
        for i, (stem, *_) in enumerate(_SACHS_CONDITIONS, start=1)
    }


def sachs(path: str | os.PathLike | None = None) -> AnnData:
    """Sachs et al. (2005): 11 phospho-proteins by flow cytometry under 14 interventions.

    11,672 primary human CD4+ T cells (Sachs et al. 2005, Science 308:523): CD3/CD28
    stimulation (the control), ICAM-2, five inhibitors, their combinations with ICAM-2 (real
    double interventions), and PMA / beta2-cAMP without CD3/CD28. Read from the paper's 14
    supplementary Excel files (with ``xlrd``), as redistributed in ``snarles/causal``.

    Parameters
    ----------
    path
        Folder with ``raw_xls/NN_<condition>.xls`` (the 14 files, numbered as in the paper),
        e.g. ``'../shared/data/sachs2005'``; without it they are downloaded once.

    Returns
    -------
    AnnData with ``X``: ``log`` of the fluorescence intensities (float32; raw values >= 1);
    ``layers['intensity']``: the raw intensities; ``obs['perturbation']``: ``'control'``,
    a reagent (``'ICAM2'``, ``'AKTi'``, ``'G06976'``, ``'psitectorigenin'``, ``'U0126'``,
    ``'LY294002'``, ``'PMA'``, ``'b2cAMP'``) or ``'ICAM2+<inhibitor>'``;
    ``obs['condition_id']`` (1-14), ``obs['condition']`` (file stem),
    ``obs['base_stimulus']`` (``'none'`` for PMA and b2cAMP, which differ from the control
    in more than their reagent), ``obs['targeted_node']``;
    ``uns['perturbation_targets']``: reagent -> protein it acts on (:data:`SACHS_TARGETS`);
    ``uns['networks']``: ``'consensus'`` (20 arcs; ``in_17_arc_network`` marks the 17
    validated ones) and ``'cdt'`` (18 arcs of the CausalDiscoveryToolbox); ``uns['dataset']``.
    """
    files = dataset_files("sachs2005", path, _sachs_files())
    blocks, obs = [], []
    for i, (file, (stem, label, base, target)) in enumerate(
        zip(files.values(), _SACHS_CONDITIONS, strict=True), start=1
    ):
        table = pd.read_excel(file)
        if table.shape[1] != len(SACHS_PROTEINS):
            raise ValueError(f"{str(file)!r} has {table.shape[1]} columns, expected 11.")
        blocks.append(table.to_numpy(np.float32))
        info = {"condition_id": i, "condition": stem, _keys.PERTURBATION: label}
        info.update(base_stimulus=base, targeted_node=target)
        obs.append(pd.DataFrame(info, index=range(len(table))))
    intensity = np.concatenate(blocks)
    if not np.isfinite(intensity).all() or intensity.min() <= 0:
        raise ValueError("Sachs intensities must be finite and positive.")
    obs = pd.concat(obs, ignore_index=True)
    obs.index = [f"cell{i}" for i in range(len(obs))]
    labels = [label for _, label, _, _ in _SACHS_CONDITIONS]
    obs[_keys.PERTURBATION] = pd.Categorical(obs[_keys.PERTURBATION], categories=labels)
    adata = AnnData(np.log(intensity), obs=obs, var=pd.DataFrame(index=list(SACHS_PROTEINS)))
    adata.layers["intensity"] = intensity
    adata.uns["perturbation_targets"] = dict(SACHS_TARGETS)
    consensus = _edge_list(_SACHS_CONSENSUS)
    consensus["in_17_arc_network"] = np.arange(len(consensus)) < 17
    adata.uns[NETWORKS] = {"consensus": consensus, "cdt": _edge_list(_SACHS_CDT)}
    adata.uns["dataset"] = _dataset_info(
        "Sachs et al. (2005) Science 308:523", "Science supplementary data (14 Excel files)"
    )
    return adata
