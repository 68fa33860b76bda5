"""Fit Cell-MNN and write its operators, velocities and gene interactions into AnnData."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from .. import _keys
from .._docs import fill_doc
from .._readers import read_loadings
from .._validate import check_adata, check_expression, check_obs_key, check_unique_var_names
from ._fit import train_seeded, write_fit
from ._save_model import check_model_dir


def _working_adata(adata: AnnData, columns: list[str], rep: str, loadings: str | None) -> AnnData:
    """Copy what Cell-MNN reads into a light AnnData, so registering leaves ``adata`` as is."""
    work = AnnData(
        X=sp.csr_matrix(adata.shape, dtype=np.float32),
        obs=adata.obs[columns].copy(),
        var=adata.var[[]].copy(),
    )
    if rep in adata.obsm:
        work.obsm[rep] = adata.obsm[rep]
    if loadings is not None and loadings in adata.varm:
        work.varm[loadings] = adata.varm[loadings]
    return work


@fill_doc
def cellmnn(
    adata: AnnData,
    *,
    time_key: str,
    rep: str = "X_pca",
    n_components: int = 5,
    holdout: float | Sequence[float] | None = None,
    batch_key: str | None = None,
    loadings: str | None = "PCs",
    interactions: str = "operator",
    max_epochs: int | None = None,
    batch_size: int = 256,
    lr: float = 1e-2,
    random_state: int = 0,
    model_kwargs: dict | None = None,
    key_added: str = _keys.CELLMNN,
    save_model: str | os.PathLike | None = None,
    copy: bool = False,
    **train_kwargs,
) -> AnnData | None:
    """Learn locally linear latent dynamics with Cell-MNN (:class:`~celldyn.models.CellMNN`).

    The first ``n_components`` columns of ``obsm[rep]`` evolve as ``dz/dt = A(z0, t0) z``
    with a per-cell operator ``A`` from an MLP, trained by MMD between pushed and observed
    cells at later times (von Bassewitz et al., arXiv:2510.02903). ``holdout`` times are
    left out of training (use :meth:`~celldyn.models.CellMNN.predict` on the model, or the
    benchmarks, to score interpolation).

    Parameters
    ----------
    {adata}
    time_key
        Numeric column of ``adata.obs`` (at least 3 distinct times).
    rep
        Key of ``adata.obsm`` (e.g. ``'X_pca'``).
    n_components
        Latent dimension (first columns of ``rep``).
    holdout
        Observed time(s) left out of training.
    batch_key
        Column of ``adata.obs`` with datasets trained jointly (conditioned operator).
    loadings
        Key of ``adata.varm`` with the linear loadings of ``rep`` (``'PCs'`` of
        ``sc.pp.pca``), used to decode velocities and interactions to genes; ``None``: only
        latent outputs are written.
    interactions
        Gene interactions written to ``varp``: ``'operator'`` (the mean operator mapped to
        genes) or ``'expression_scaled'`` (the mean of ``w_{j→i} = (V A_c Vᵀ)[i, j] · x_{c,j}``,
        each operator entry scaled by the regulator's expression in the cell); see
        :meth:`~celldyn.models.CellMNN.get_interactions`.
    max_epochs, batch_size, lr
        Training settings (:meth:`~celldyn.models.CellMNN.train`; ``max_epochs=None``:
        about 1,000 minibatches, at most 200 epochs).
    random_state
        Seed of the weights, the validation split and the minibatches.
    model_kwargs
        Passed to :class:`~celldyn.models.CellMNN` (``max_rate``, ``gamma``, ...).
    {key_added}
    save_model
        Folder to save the trained model in (:meth:`~celldyn.models.CellMNN.save`); new or
        empty, checked before training. Load it with ``CellMNN.load(folder, adata=adata)``
        (the model trains on ``obsm[rep]`` and keeps no expression of its own). ``None``:
        keep no model.
    {copy}
    **train_kwargs
        Passed to :meth:`~celldyn.models.CellMNN.train` (``early_stopping``, ``accelerator``,
        ``progress``, ...).

    Returns
    -------
    ``None``, or the copy when ``copy=True``; writes

    - ``obsm['{key_added}_operator']``: per-cell operator ``A`` (n_obs × d², row-major:
      column ``i*d + j`` is ``A[i, j]``, the effect of component ``j`` on ``dz_i/dt``), in
      ``rep`` coordinates per unit of ``time_key``.
    - ``obsm['{key_added}_drift']``: per-cell constant drift ``b`` of the default ``affine``
      model (n_obs × d, ``rep`` units per unit of ``time_key``; 0 with ``affine=False``).
    - ``obsm['velocity_{key_added}']``: latent velocity ``A z + b`` (n_obs × d).
    - ``layers['{key_added}_velocity']``: dense float32 gene velocity ``(A z + b)·Vᵀ``; NaN for
      genes with zero loadings (with ``loadings``).
    - ``var['{key_added}_velocity_genes']``: genes with non-zero loadings (with ``loadings``).
    - ``uns['{key_added}_velocity_params']``: ``{'embeddings': [], 'xkey': xkey}`` for scvelo
      (with ``loadings``).
    - ``layers['Ms']`` (or ``layers['{key_added}_velocity_state']``; with ``loadings``):
      ``adata.X`` (what ``sc.pp.pca`` reads by default) as scvelo's state layer ``xkey``, as
      in :func:`celldyn.tl.flecs`.
    - ``varp['{key_added}_interactions']``: regulator (row) × target (column) matrix over
      all cells: ``V Āᵀ Vᵀ`` of the mean operator ``Ā`` (``'operator'``), or the mean
      expression-scaled weights (``'expression_scaled'``); dense, or sparse when some genes
      have zero loadings (with ``loadings``).
    - ``uns[key_added]``: ``params``, ``history`` (dict of per-epoch lists) and
      ``interactions``: ``kind``, ``time_ranges`` (R × 2, consecutive observed times),
      ``operators`` (R × d × d, mean ``A`` of the cells in each closed range; the operator
      interactions of range ``r`` are ``V @ operators[r].T @ V.T``, regulator × target) and,
      for ``'expression_scaled'``, ``moments`` (R × d × d × d, mean of ``A_c[p, q] z_c[r]``;
      the weights of range ``r`` are
      ``einsum('jq,jr,pqr,ip->ji', V, V, moments[r], V)``, regulator × target).
    """
    from ..models import CellMNN

    check_adata(adata)
    model_dir = check_model_dir(save_model)
    if interactions not in CellMNN.interaction_kinds:
        raise ValueError(
            f"`interactions` must be one of {CellMNN.interaction_kinds}, got {interactions!r}."
        )
    check_obs_key(adata, time_key)
    columns = [time_key]
    if batch_key is not None:
        check_obs_key(adata, batch_key)
        columns.append(batch_key)
    work = _working_adata(adata, columns, rep, loadings)
    CellMNN.setup_anndata(
        work, time_key=time_key, rep=rep, n_components=n_components, batch_key=batch_key
    )
    if loadings is not None:  # checked before training: present, finite, enough columns
        read_loadings(work, loadings, int(n_components))
        check_expression(adata, None)  # the velocity's states (layers['Ms'])
        check_unique_var_names(adata)  # gene-level results are indexed by name
    model = train_seeded(
        random_state,
        lambda: CellMNN(work, **(model_kwargs or {})),
        holdout=holdout,
        max_epochs=max_epochs,
        batch_size=batch_size,
        lr=lr,
        **train_kwargs,
    )
    params = {
        "time_key": time_key,
        "rep": rep,
        "n_components": model.n_components,
        "holdout": np.asarray(model.holdout_, dtype=np.float64),
        "batch_key": batch_key,
        "loadings": loadings,
        "interactions": interactions,
        "max_epochs": max_epochs,
        "batch_size": batch_size,
        "lr": lr,
        "random_state": random_state,
        "model_kwargs": model_kwargs,
    }
    return write_fit(
        adata,
        [model],
        CellMNN.results([model], key_added, loadings=loadings, interactions=interactions),
        key_added=key_added,
        params=params,
        copy=copy,
        model_dir=model_dir,
        save_anndata=False,
    )
