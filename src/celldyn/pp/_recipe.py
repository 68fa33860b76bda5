"""Preprocessing recipe: normalize, log, highly variable genes, diffusion denoising, PCA."""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .. import _keys
from .._docs import fill_doc
from .._logging import logger
from .._validate import check_adata, check_finite, check_in, check_int, check_layer, check_positive
from .._write import write_results
from ._diffusion import diffuse, markov_operator

_HVG_COLUMNS = ("highly_variable", "means", "dispersions", "dispersions_norm")


@fill_doc
def recipe(
    adata: AnnData,
    *,
    n_top_genes: int = 4000,
    denoise: Literal["knn"] | None = "knn",
    layer: str | None = None,
    target_sum: float | None = None,
    n_pcs: int = 50,
    n_neighbors: int = 30,
    diffusion_t: int = 3,
    subset: bool = True,
    random_state: int = 0,
    copy: bool = False,
) -> AnnData | None:
    """Normalize, log-transform, select genes, denoise and embed raw counts.

    Steps: per-cell normalization to ``target_sum`` (:func:`scanpy.pp.normalize_total`),
    ``log1p``, highly variable genes (:func:`scanpy.pp.highly_variable_genes`,
    ``flavor='cell_ranger'``), optional subsetting to them, optional diffusion denoising in the
    spirit of MAGIC, and PCA (:func:`scanpy.tl.pca`).

    Denoising (``denoise='knn'``) builds a kNN graph (:func:`scanpy.pp.neighbors`) on a
    temporary PCA of the log data, forms the Markov operator ``M`` (row-normalized
    connectivities with self loops) and replaces the data by ``Mᵗ·X``, computed as ``t`` sparse
    products (no dense ``n_obs × n_obs`` matrix). The temporary PCA and graph are not kept: run
    :func:`scanpy.pp.neighbors` afterwards on the final ``X_pca``.

    Everything is computed on a private copy; ``adata`` is modified only at the end, so a
    failure leaves it unchanged.

    Parameters
    ----------
    adata
        Annotated data matrix with raw counts (sparse or dense).
    n_top_genes
        Number of highly variable genes; capped at ``n_vars`` (then every gene is kept).
        Below ``n_vars`` the genes must be rankable: a :class:`ValueError` is raised when no
        gene has a normalized dispersion (every gene alone in its mean-expression bin, which
        happens with a few dozen genes or fewer).
    denoise
        ``'knn'`` for diffusion denoising, ``None`` to skip it.
    layer
        Layer holding the raw counts; ``None`` uses ``adata.X``.
    target_sum
        Total count of every cell after normalization; ``None`` uses the median total count.
    n_pcs
        Number of principal components; capped at ``min(n_obs, n_genes) - 1``.
    n_neighbors
        Neighbors of the denoising graph; capped at ``n_obs - 1``.
    diffusion_t
        Number of diffusion steps ``t``.
    subset
        Keep only the highly variable genes. Otherwise all genes are kept (and denoised), and
        PCA uses the highly variable ones.
    random_state
        Seed of PCA and the kNN graph.
    {copy}

    Returns
    -------
    The new AnnData when ``copy=True``, else ``None``; ``adata`` (subset to the highly
    variable genes when ``subset=True``) gains:

    ``X``
        Log-normalized data, denoised when ``denoise='knn'`` (then dense ``float32``).
    ``layers['counts']``
        The raw counts, exactly as given.
    ``layers['log_normalized']``
        Log-normalized data before denoising (same sparsity as the input).
    ``var['highly_variable']``, ``var['means']``, ``var['dispersions']``
        Gene selection statistics, with ``var['dispersions_norm']``.
    ``obsm['X_pca']``, ``varm['PCs']``, ``uns['pca']``
        PCA of ``X`` (on the highly variable genes).
    ``uns['log1p']``
        Scanpy's marker that ``X`` is log-transformed.
    ``uns['celldyn_recipe']``
        ``'params'`` plus the values actually used: ``'target_sum'``, ``'n_top_genes'``,
        ``'n_pcs'``, ``'n_neighbors'`` (``None`` without denoising).
    """
    import scanpy as sc

    check_adata(adata)
    check_layer(adata, layer)
    check_in(denoise, ("knn", None), "denoise")
    check_int(n_top_genes, "n_top_genes", 1)
    check_int(n_pcs, "n_pcs", 1)
    check_int(n_neighbors, "n_neighbors", 2)
    check_int(diffusion_t, "diffusion_t", 1)
    if target_sum is not None:
        check_positive(target_sum, "target_sum")
    if min(adata.shape) < 2:
        raise ValueError(f"recipe needs at least 2 cells and 2 genes, got shape {adata.shape}.")
    source = f"adata.layers[{layer!r}]" if layer is not None else "adata.X"
    counts = _checked_counts(adata.layers[layer] if layer is not None else adata.X, source)
    totals = np.asarray(counts.sum(axis=1), dtype=np.float64).ravel()
    if np.any(totals <= 0):
        raise ValueError(
            f"{int(np.sum(totals <= 0))} cell(s) have zero total counts in {source}; "
            "remove them first, e.g. with `sc.pp.filter_cells(adata, min_counts=1)`."
        )
    used_target_sum = float(np.median(totals)) if target_sum is None else float(target_sum)
    if n_top_genes > adata.n_vars:
        logger.info("`n_top_genes`=%d > n_vars, using all %d genes.", n_top_genes, adata.n_vars)
    n_hvg_requested = min(n_top_genes, adata.n_vars)

    work = AnnData(
        X=counts.astype(np.float32),
        obs=pd.DataFrame(index=adata.obs_names),
        var=pd.DataFrame(index=adata.var_names),
    )
    sc.pp.normalize_total(work, target_sum=used_target_sum)
    sc.pp.log1p(work)
    varying = _varying_genes(work.X)
    if varying.sum() < 2:
        raise ValueError(
            f"Only {int(varying.sum())} gene(s) of {source} vary across cells after "
            "normalization: no highly variable genes can be selected (is the matrix constant, "
            "or every cell proportional to the others?)."
        )
    keep_all = n_hvg_requested == adata.n_vars
    try:
        # with every gene kept, no ranking is needed (statistics only): asking scanpy for a
        # ranking fails when no gene has a normalized dispersion (few genes per mean bin)
        sc.pp.highly_variable_genes(
            work, flavor="cell_ranger", n_top_genes=None if keep_all else n_hvg_requested
        )
    except IndexError as err:
        # scanpy's `_nth_highest` on an empty array: every normalized dispersion is NaN
        raise ValueError(
            f"Cannot rank the {adata.n_vars} genes of {source} by normalized dispersion: "
            "each is alone in its mean-expression bin of flavor='cell_ranger' (too few "
            f"genes). Pass n_top_genes >= {adata.n_vars} to keep every gene."
        ) from err
    except ValueError as err:
        if "Bin edges must be unique" not in str(err):
            raise
        means = np.asarray(work.X.mean(axis=0)).ravel()
        _, which, count = np.unique(means, return_inverse=True, return_counts=True)
        n_tied = int(np.sum(count[which] > 1))
        n_undetected = int(np.sum(np.asarray((counts != 0).sum(axis=0)).ravel() == 0))
        raise ValueError(
            f"Cannot select highly variable genes: {n_tied} of {adata.n_vars} genes of {source} "
            f"share their mean expression with another gene ({n_undetected} are zero in every "
            "cell), so the mean-expression bins of flavor='cell_ranger' collapse. Remove "
            "constant or undetected genes first, e.g. `sc.pp.filter_genes(adata, min_cells=1)`."
        ) from err
    if keep_all:
        # cell_ranger's binned dispersions leave genes alone in a bin unranked (NaN);
        # asking for every gene must keep every gene.
        work.var["highly_variable"] = True
    hvg = work.var["highly_variable"].to_numpy()
    if subset:
        work = work[:, hvg].copy()
        counts = counts[:, hvg]
    n_pca_genes = int(work.var["highly_variable"].sum())
    n_comps = min(n_pcs, work.n_obs - 1, n_pca_genes - 1)
    if n_comps < 1:
        raise ValueError(f"Only {n_pca_genes} highly variable gene(s): PCA needs at least 2.")
    if n_comps < n_pcs:
        logger.info("`n_pcs`=%d capped at %d.", n_pcs, n_comps)
    log_normalized = work.X.copy()

    used_neighbors = None
    if denoise == "knn":
        used_neighbors = min(n_neighbors, work.n_obs - 1)
        sc.tl.pca(work, n_comps=n_comps, random_state=random_state)
        sc.pp.neighbors(
            work, n_neighbors=used_neighbors, use_rep="X_pca", random_state=random_state
        )
        operator = markov_operator(work.obsp["connectivities"])
        work.X = diffuse(work.X, operator, diffusion_t).astype(np.float32)
    sc.tl.pca(work, n_comps=n_comps, random_state=random_state)

    params = {
        "n_top_genes": n_top_genes,
        "denoise": denoise,
        "layer": layer,
        "target_sum": target_sum,
        "n_pcs": n_pcs,
        "n_neighbors": n_neighbors,
        "diffusion_t": diffusion_t,
        "subset": subset,
        "random_state": random_state,
    }
    info = {
        "params": params,
        "target_sum": used_target_sum,
        "n_top_genes": int(hvg.sum()),
        "n_pcs": n_comps,
        "n_neighbors": used_neighbors,
    }
    if copy:
        target = adata[:, hvg].copy() if subset else adata.copy()
    else:
        target = adata
        if subset:
            target._inplace_subset_var(hvg)
    target.X = work.X
    write_results(
        target,
        layers={_keys.COUNTS: counts, _keys.LOG_NORMALIZED: log_normalized},
        var={col: work.var[col].to_numpy() for col in _HVG_COLUMNS},
        obsm={"X_pca": work.obsm["X_pca"]},
        varm={"PCs": work.varm["PCs"]},
        uns={"pca": work.uns["pca"], "log1p": work.uns["log1p"], _keys.RECIPE: info},
    )
    return target if copy else None


def _varying_genes(x: sp.spmatrix | np.ndarray) -> np.ndarray:
    """Boolean mask of the columns of ``x`` whose values are not all equal."""
    if sp.issparse(x):
        spread = x.max(axis=0).toarray().ravel() - x.min(axis=0).toarray().ravel()
    else:
        spread = np.ptp(np.asarray(x), axis=0)
    return np.asarray(spread, dtype=np.float64) > 1e-6


def _checked_counts(x: sp.spmatrix | np.ndarray, source: str) -> sp.csr_matrix | np.ndarray:
    """Copy of a raw count matrix after checking it is finite and non-negative."""
    x = sp.csr_matrix(x, copy=True) if sp.issparse(x) else np.array(x)
    if x.ndim != 2 or x.dtype.kind not in "biuf":
        raise TypeError(f"{source} must be a numeric matrix, got dtype {x.dtype}.")
    data = x.data if sp.issparse(x) else x
    check_finite(data, source)
    if data.size and data.min() < 0:
        raise ValueError(f"{source} has negative values; pass raw counts (see `layer`).")
    if data.dtype.kind == "f" and not np.array_equal(data, np.round(data)):
        warnings.warn(
            f"{source} has non-integer values; `recipe` expects raw counts.",
            UserWarning,
            stacklevel=3,
        )
    return x
