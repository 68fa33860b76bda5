"""Real perturbation screens: Norman 2019 subset, Papalexi 2021 subset, Sachs 2005.

Labels follow celldyn's format in ``obs['perturbation']``: ``'control'``, ``'A'``, ``'A+B'``.
"""

from __future__ import annotations

import os

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


def papalexi21_subset(
    path: str | os.PathLike | None = None, *, unassigned: bool = False
) -> AnnData:
    """Papalexi et al. (2021) ECCITE-seq: THP-1 CRISPR knockouts under IFN-gamma, 299 genes.

    20,729 cells x 299 genes (289 random genes, one mitochondrial and the 9 measured targets
    CMTM6, IFNGR2, JAK2, NFKBIA, STAT1, STAT2, STAT3, TNFRSF14, UBE2L6), 25 single-gene
    knockouts and non-targeting controls (Papalexi et al. 2021, Nat. Genet. 53:322; the real
    example data of sceptre 0.0.4, GPL-3). A cell's perturbation is its dominant gRNA's
    target (at least 5 UMIs and 80% of its gRNA UMIs; others are ``'unassigned'``).

    Parameters
    ----------
    path
        Folder with ``papalexi2021_eccite_sceptre_subset.h5ad``, e.g.
        ``'../shared/data/papalexi2021_eccite_sceptre'``. The file is a conversion of
        sceptre's R data made for this subset; there is no public download of it.
    unassigned
        Keep the 4,537 cells without a confident gRNA (``obs['perturbation'] ==
        'unassigned'``); by default they are dropped.

    Returns
    -------
    AnnData with ``X`` and ``layers['counts']``: raw UMI counts (sparse float32);
    ``obs['perturbation']``: ``'control'`` or the knocked-out gene, categorical with
    ``'control'`` first; ``obs['bio_rep']``, ``obs['guide_id']`` and the gRNA numbers;
    ``var['is_perturbation_target']``; ``obsm['grna_counts']``; ``uns['dataset']``.
    """
    import anndata

    name = "papalexi2021_eccite_sceptre_subset.h5ad"
    files = dataset_files("papalexi2021_eccite_sceptre", path, {name: None})
    adata = anndata.read_h5ad(files[name])
    labels = adata.obs[_keys.PERTURBATION].astype(str)
    if not unassigned:
        adata = adata[(labels != "unassigned").to_numpy()].copy()
        labels = adata.obs[_keys.PERTURBATION].astype(str)
    others = sorted(set(labels) - {_keys.CONTROL})
    adata.obs[_keys.PERTURBATION] = pd.Categorical(labels, categories=[_keys.CONTROL, *others])
    adata.X = sp.csr_matrix(adata.X, dtype=np.float32)
    adata.layers[_keys.COUNTS] = adata.X.copy()
    for key in ("source_note", "control_label"):
        adata.uns.pop(key, None)
    adata.uns["dataset"] = _dataset_info(
        "Papalexi et al. (2021) Nat. Genet. 53:322", "sceptre 0.0.4 lowmoi_example_data"
    )
    return adata


# ----------------------------------------------------------------------------- Sachs 2005
SACHS_PROTEINS = ("Raf", "Mek", "Plcg", "PIP2", "PIP3", "Erk", "Akt", "PKA", "PKC", "P38", "Jnk")
_SACHS_LABELS = {
    1: "control",
    2: "ICAM2",
    3: "AKTi",
    4: "G06976",
    5: "psitectorigenin",
    6: "U0126",
    7: "LY294002",
    8: "PMA",
    9: "b2cAMP",
    10: "ICAM2+AKTi",
    11: "ICAM2+G06976",
    12: "ICAM2+psitectorigenin",
    13: "ICAM2+U0126",
    14: "ICAM2+LY294002",
}
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


def sachs(path: str | os.PathLike | None = None) -> AnnData:
    """Sachs et al. (2005): 11 phospho-proteins by flow cytometry under 14 interventions.

    11,672 primary human CD4+ T cells (Sachs et al. 2005, Science 308:523): CD3/CD28
    stimulation (the control), ICAM-2, five inhibitors, their combinations with ICAM-2 (real
    double interventions), and PMA / beta2-cAMP without CD3/CD28.

    Parameters
    ----------
    path
        Folder with ``sachs2005_14conditions.csv`` (the 14 supplementary Excel files
        concatenated, values unchanged), e.g. ``'../shared/data/sachs2005'``. There is no
        public download of this table.

    Returns
    -------
    AnnData with ``X``: ``log`` of the fluorescence intensities (float32; raw values >= 1);
    ``layers['intensity']``: the raw intensities; ``obs['perturbation']``: ``'control'``,
    a reagent (``'ICAM2'``, ``'AKTi'``, ``'G06976'``, ``'psitectorigenin'``, ``'U0126'``,
    ``'LY294002'``, ``'PMA'``, ``'b2cAMP'``) or ``'ICAM2+<inhibitor>'``;
    ``obs['condition']``, ``obs['base_stimulus']`` (``'none'`` for PMA and b2cAMP, which
    differ from the control in more than their reagent), ``obs['targeted_node']``;
    ``uns['perturbation_targets']``: reagent -> protein it acts on (:data:`SACHS_TARGETS`);
    ``uns['networks']``: ``'consensus'`` (20 arcs; ``in_17_arc_network`` marks the 17
    validated ones) and ``'cdt'`` (18 arcs of the CausalDiscoveryToolbox); ``uns['dataset']``.
    """
    name = "sachs2005_14conditions.csv"
    files = dataset_files("sachs2005", path, {name: None})
    table = pd.read_csv(files[name])
    missing = [c for c in ("condition_id", *SACHS_PROTEINS) if c not in table]
    if missing:
        raise KeyError(f"{str(files[name])!r} lacks the column(s) {missing}.")
    intensity = table[list(SACHS_PROTEINS)].to_numpy(np.float32)
    if not np.isfinite(intensity).all() or intensity.min() <= 0:
        raise ValueError("Sachs intensities must be finite and positive.")
    obs = table.drop(columns=list(SACHS_PROTEINS)).fillna({"added_reagents": ""})
    obs.index = [f"cell{i}" for i in range(len(obs))]
    obs[_keys.PERTURBATION] = pd.Categorical(
        obs["condition_id"].map(_SACHS_LABELS), categories=list(_SACHS_LABELS.values())
    )
    adata = AnnData(np.log(intensity), obs=obs, var=pd.DataFrame(index=list(SACHS_PROTEINS)))
    adata.layers["intensity"] = intensity
    adata.uns["perturbation_targets"] = dict(SACHS_TARGETS)
    consensus = _edge_list(_SACHS_CONSENSUS)
    consensus["in_17_arc_network"] = np.arange(len(consensus)) < 17
    adata.uns[NETWORKS] = {"consensus": consensus, "cdt": _edge_list(_SACHS_CDT)}
    adata.uns["dataset"] = _dataset_info(
        "Sachs et al. (2005) Science 308:523", "Science supplementary data, 14 conditions"
    )
    return adata
