"""Real datasets downloaded once into the celldyn cache: paul15, embryoid body, Norman 2019.

No checksums are pinned (none could be verified offline); a cached file is used as is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _keys
from ._cache import fetch, get_cache_dir

PAUL15_URL = "https://falexwolf.de/data/paul15.h5"
EB_URL = (
    "https://raw.githubusercontent.com/KrishnaswamyLab/TrajectoryNet/master/data/eb_velocity_v5.npz"
)
NORMAN19_URL = (
    "https://zenodo.org/records/13350497/files/NormanWeissman2019_filtered.h5ad?download=1"
)
_EB_OBSM = {
    "pcs": "X_pca",
    "phate": "X_phate",
    "pcs_delta": "velocity_pca",
    "delta_embedding": "velocity_phate",
}


def paul15() -> AnnData:
    """Myeloid progenitors of Paul et al. (2015), via :func:`scanpy.datasets.paul15`.

    The file is downloaded once into ``<cache>/paul15/paul15.h5`` (see
    :func:`celldyn.datasets.set_cache_dir`) and read by scanpy.

    Returns
    -------
    scanpy's AnnData unchanged (2730 cells x 3451 genes, ``obs['paul15_clusters']``,
    ``uns['iroot']``); it has no time labels.
    """
    import scanpy as sc

    fetch(PAUL15_URL, "paul15/paul15.h5")
    previous = sc.settings.datasetdir
    sc.settings.datasetdir = get_cache_dir()
    try:
        return sc.datasets.paul15()
    finally:
        sc.settings.datasetdir = previous


def _read_eb_npz(path: str | Path) -> AnnData:
    with np.load(path, allow_pickle=True) as npz:
        arrays = {key: npz[key] for key in npz.files}
    if "sample_labels" not in arrays or "pcs" not in arrays:
        raise ValueError(f"{str(path)!r} lacks 'sample_labels' or 'pcs'; found {sorted(arrays)}.")
    labels = np.asarray(arrays.pop("sample_labels"))
    n_obs = len(labels)
    pcs = np.asarray(arrays["pcs"], dtype=np.float32)
    obs = pd.DataFrame(index=[f"cell{i}" for i in range(n_obs)])
    obs["sample_labels"] = labels
    try:
        obs[_keys.SAMPLE_TIME] = labels.astype(np.float64)
    except ValueError:  # non-numeric labels: their sorted order
        obs[_keys.SAMPLE_TIME] = np.unique(labels, return_inverse=True)[1].astype(np.float64)
    obsm, uns = {}, {}
    for key, value in arrays.items():
        if value.ndim == 2 and value.shape[0] == n_obs:
            obsm[_EB_OBSM.get(key, key)] = np.asarray(value, dtype=np.float64)
        elif value.ndim == 1 and value.shape[0] == n_obs:
            obs[key] = value
        else:
            uns[key] = value
    var = pd.DataFrame(index=[f"PC{i + 1}" for i in range(pcs.shape[1])])
    adata = AnnData(pcs, obs=obs, var=var, obsm=obsm)
    if uns:
        adata.uns["eb_extra"] = uns
    return adata


def eb() -> AnnData:
    """Embryoid-body time course (Moon et al. 2019) as shipped by TrajectoryNet.

    Downloads ``eb_velocity_v5.npz`` once (``EB_URL``, TrajectoryNet's repository) into the
    cache. The file holds no gene expression, only embeddings of cells sampled at five time
    points (days 0–3, 6–9, 12–15, 18–21, 24–27, labelled 0–4).

    Returns
    -------
    AnnData with

    - ``X``: the shipped principal components (float32), ``var_names`` ``'PC1'…``.
    - ``obs['sample_labels']``: the shipped time label; ``obs['time']``: it as float (the
      rank of the label if it is not numeric).
    - ``obsm['X_pca']``, ``obsm['X_phate']``: the shipped PCA and PHATE coordinates;
      ``obsm['velocity_pca']``, ``obsm['velocity_phate']``: the shipped RNA-velocity
      displacements in them (``pcs_delta``, ``delta_embedding``).
    - any other per-cell array of the file under its own name in ``obs``/``obsm``, and
      anything else in ``uns['eb_extra']``.
    """
    return _read_eb_npz(fetch(EB_URL, "eb_velocity_v5.npz"))


def _norman_labels(labels: pd.Series) -> pd.Categorical:
    """Map scPerturb labels (``'control'``, ``'A'``, ``'A_B'``) to ``'control'``/``'A+B'``."""
    mapped = [
        None
        if pd.isna(label)
        else _keys.CONTROL
        if label == _keys.CONTROL
        else "+".join(sorted(str(label).split("_")))
        for label in labels
    ]
    others = sorted({m for m in mapped if m is not None} - {_keys.CONTROL})
    return pd.Categorical(mapped, categories=[_keys.CONTROL, *others])


def norman19() -> AnnData:
    """CRISPRa single/double perturbation screen of Norman et al. (2019), from scPerturb.

    Downloads ``NormanWeissman2019_filtered.h5ad`` (scPerturb, Zenodo record 13350497,
    ~1 GB) once into the cache.

    Returns
    -------
    scPerturb's AnnData (raw counts in ``X``) with

    - ``obs['perturbation']``: celldyn labels: ``'control'``, ``'A'`` or ``'A+B'`` (the two
      genes sorted alphabetically), categorical with ``'control'`` first.
    - ``obs['perturbation_scperturb']``: scPerturb's original label (``'A_B'`` for doubles).
    """
    import anndata

    adata = anndata.read_h5ad(fetch(NORMAN19_URL, "NormanWeissman2019_filtered.h5ad"))
    if _keys.PERTURBATION not in adata.obs:
        raise KeyError(
            f"The scPerturb file has no obs column {_keys.PERTURBATION!r}; "
            f"columns: {list(adata.obs.columns)}."
        )
    original = adata.obs[_keys.PERTURBATION]
    adata.obs["perturbation_scperturb"] = original
    adata.obs[_keys.PERTURBATION] = _norman_labels(original)
    return adata
