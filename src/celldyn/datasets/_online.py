"""Large real datasets downloaded once into the celldyn cache: paul15, the full Norman 2019.

No checksums are pinned (none could be verified offline); a cached file is used as is.
"""

from __future__ import annotations

import pandas as pd
from anndata import AnnData

from .. import _keys
from ._cache import fetch, get_cache_dir

PAUL15_URL = "https://falexwolf.de/data/paul15.h5"
NORMAN19_URL = (
    "https://zenodo.org/records/13350497/files/NormanWeissman2019_filtered.h5ad?download=1"
)


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
