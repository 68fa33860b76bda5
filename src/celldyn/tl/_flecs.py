"""Fit FLeCS and write its network, decays, biases and velocities into AnnData."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from anndata import AnnData

from .. import _keys
from .._docs import fill_doc
from .._readers import read_prior, read_trajectories
from .._validate import check_adata, check_expression, check_int, gene_indices
from ..nn._ode import check_tolerances
from ._fit import train_seeded, write_fit
from ._save_model import check_model_dir


def _working_adata(
    adata: AnnData, layer: str | None, prior: str, trajectories: str, knockout: list[int]
) -> AnnData:
    """Copy what FLeCS reads into a light AnnData, so registering leaves ``adata`` as is.

    The outgoing prior edges (rows) of the ``knockout`` genes are removed from the copy. The
    trajectories keep their ``params``, and the time groups and representation they name come
    along (the OT targets of ``velocity_target='ot'`` and ``warm_start='ot_pairs'`` read them).
    """
    x = adata.X if layer is None else adata.layers[layer]
    found = read_trajectories(adata, trajectories)
    params = found.params
    time_columns = [c for c in [params.get("time_key")] if c in adata.obs.columns]
    work = AnnData(X=x, obs=adata.obs[time_columns].copy(), var=adata.var[[]].copy())
    if params.get("rep") in adata.obsm:
        work.obsm[params["rep"]] = adata.obsm[params["rep"]]
    edited = sp.csr_matrix(adata.varp[prior], dtype=np.float64, copy=True)
    for gene in knockout:
        edited.data[edited.indptr[gene] : edited.indptr[gene + 1]] = 0.0
    edited.eliminate_zeros()
    work.varp[prior] = edited
    work.uns[trajectories] = {"indices": found.indices, "times": found.times, "params": params}
    return work


def _member_adata(work: AnnData, trajectories: str, seed: int, resample: bool) -> AnnData:
    """Return a fresh AnnData for one member (each model registers its own).

    With ``resample`` its trajectories are a bootstrap resample (with replacement, ``seed``)
    that keeps their ``params``; OT velocity targets, computed from all cells, are resampled
    in training (``velocity_bootstrap``).
    """
    entry = work.uns[trajectories]
    if resample:
        rows = np.random.default_rng(seed).integers(0, len(entry["indices"]), len(entry["indices"]))
        entry = {**entry, "indices": entry["indices"][rows], "times": entry["times"][rows]}
    member = AnnData(X=work.X, obs=work.obs.copy(), var=work.var.copy(), obsm=dict(work.obsm))
    member.varp.update(work.varp)
    member.uns[trajectories] = entry
    return member


def _fit_member(
    work: AnnData, prior: str, trajectories: str, seed: int, resample: bool, model_kwargs, train
):
    """Train one FLeCS model with ``seed`` for its initial weights, split and resample."""
    from ..models import FLeCS

    member = _member_adata(work, trajectories, seed, resample)
    FLeCS.setup_anndata(member)
    # chords come from the (already resampled) trajectories; OT targets from all cells
    ot_targets = train.get("velocity_target", "ot") == "ot" or train.get("warm_start") == "ot_pairs"
    bootstrap = {"velocity_bootstrap": seed} if resample and ot_targets else {}
    kwargs = {"seed": seed, **model_kwargs}
    return train_seeded(
        seed,
        lambda: FLeCS(member, prior=prior, trajectories=trajectories, **kwargs),
        **bootstrap,
        **train,
    )


@fill_doc
def flecs(
    adata: AnnData,
    *,
    prior: str = _keys.PRIOR,
    trajectories: str = _keys.TRAJECTORIES,
    layer: str | None = None,
    max_epochs: int = 100,
    batch_size: int = 64,
    lr: float = 1e-2,
    random_state: int = 0,
    n_models: int = 1,
    resample: bool = False,
    knockout: str | Sequence[str] | None = None,
    model_kwargs: dict | None = None,
    key_added: str = _keys.FLECS,
    save_model: str | os.PathLike | None = None,
    copy: bool = False,
    **train_kwargs,
) -> AnnData | None:
    r"""Learn a gene regulatory network ODE from trajectories with :class:`~celldyn.models.FLeCS`.

    Genes follow :math:`dG/dt = \sigma(W^\top G + b) - \alpha G` with weights only on the
    prior edges; the ODE is fitted to the trajectories of :func:`celldyn.pp.trajectories`.
    ``n_models > 1`` fits an ensemble of independent models (seeds ``random_state + i``) whose
    spread gives a per-edge uncertainty (:func:`celldyn.tl.differential_edges`).

    Parameters
    ----------
    {adata}
    prior
        ``varp`` key of the prior network, regulator (row) × target (column)
        (:func:`celldyn.pp.prior_network`).
    trajectories
        ``uns`` key of the trajectories (:func:`celldyn.pp.trajectories`).
    layer
        Layer with the expression; ``None`` uses ``adata.X``.
    max_epochs, batch_size, lr
        Training settings (:meth:`~celldyn.models.FLeCS.train`).
    random_state
        Seed of the initial weights and of the validation split of the first member.
    n_models
        Number of ensemble members.
    resample
        Train each member on a bootstrap resample of the trajectories and of the OT velocity
        targets (drawn with its seed).
        Members that differ only by their seed tend to agree closely, so their spread
        understates the uncertainty due to the data; resampling includes it.
    knockout
        Gene name(s) knocked out in this condition: their outgoing prior edges are removed
        before training (genes without outgoing edges are unaffected).
    model_kwargs
        Passed to :class:`~celldyn.models.FLeCS` (``n_latent``, ``protein_proxy``, ``kernel``).
    {key_added}
    save_model
        Folder to save the trained model in (:meth:`~celldyn.models.FLeCS.save`, with the
        AnnData it was trained on, so ``FLeCS.load(folder)`` needs no AnnData); new or
        empty, checked before training. ``None``: keep no model.
        With ``n_models > 1``, member ``i`` goes to ``folder/member_<i>``.
    {copy}
    **train_kwargs
        Passed to :meth:`~celldyn.models.FLeCS.train` (``warm_start``, ``velocity_init``,
        ``method``, ``accelerator``, ``early_stopping``, ``progress``, ...).

    Returns
    -------
    ``None``, or the copy when ``copy=True``; writes

    - ``varp['{key_added}_weights']``: sparse CSR learnt weights on the (edited) prior edges,
      regulator (row) × target (column); the ensemble mean.
    - ``varp['{key_added}_weights_std']``: same layout, the ensemble standard deviation
      (``ddof=1``); only when ``n_models > 1``.
    - ``varp['{key_added}_effects']``: same layout, the mean direct effect of each edge on
      the target's velocity per standard deviation of the regulator over the cells
      (:meth:`~celldyn.models.FLeCS.get_edge_effects`; the ensemble mean). Rank edges by
      its magnitude: it does not inflate where a target's production is saturated.
    - ``varp['{key_added}_effects_std']``: same layout, the ensemble standard deviation of
      the effects (``ddof=1``); only when ``n_models > 1``. A small raw spread does not mark
      a true edge (strong edges spread more); among the top-ranked edges, a small relative
      spread ``effects_std / |effects|`` does (FLeCS user guide, "Which edges to trust").
    - ``var['{key_added}_decay']``, ``var['{key_added}_bias']``: decay and production bias
      (ensemble means).
    - ``layers['{key_added}_velocity']``: dense float32 model derivative ``dG/dt`` per cell
      (mean of the members' derivatives).
    - ``var['{key_added}_velocity_genes']``: all ``True``.
    - ``uns['{key_added}_velocity_params']``: ``{'embeddings': [], 'xkey': xkey}`` for scvelo.
    - ``layers['Ms']``: dense float32 copy of the expression (``layer``), the state scvelo
      and cellrank read by default, unless ``layers['Ms']`` already holds it; when it holds
      something else it is kept and the copy goes to ``layers['{key_added}_velocity_state']``
      (a warning says so). ``xkey`` names the layer used.
    - ``uns[key_added]``: ``params``; ``history`` (dict of per-epoch lists of the first
      member); ``member_histories`` (``{'0': history, ...}``, only when ``n_models > 1``);
      ``models``: ``{'0': arrays, '1': arrays, ...}``, one
      :meth:`~celldyn.nn.GRNVectorField.to_arrays` dict per member, from which
      :meth:`~celldyn.nn.GRNVectorField.from_arrays` rebuilds the fitted fields.

    Raises
    ------
    SolverDivergedError
        If training or the velocities produce NaN values, or a training solve exceeds
        ``max_num_steps`` (a too large ``lr``); nothing is written.
    ValueError
        If ``uns[trajectories]`` holds no trajectory, or none that spans a positive time.
    """
    from ..models import FLeCS

    check_adata(adata)
    model_dir = check_model_dir(save_model)
    read_prior(adata, prior)
    read_trajectories(adata, trajectories)
    check_expression(adata, layer)
    n_models = check_int(n_models, "n_models", 1)
    # solver tolerances fail here, not after the warm start
    check_tolerances(**{k: v for k, v in train_kwargs.items() if k in ("rtol", "atol")})
    knocked = [] if knockout is None else gene_indices(adata, knockout, "knockout")
    work = _working_adata(adata, layer, prior, trajectories, knocked)
    read_prior(work, prior)  # the knockout may have removed every edge
    train = {"max_epochs": max_epochs, "batch_size": batch_size, "lr": lr, **train_kwargs}
    members = [
        _fit_member(
            work, prior, trajectories, random_state + i, resample, model_kwargs or {}, train
        )
        for i in range(n_models)
    ]
    params = {
        "prior": prior,
        "trajectories": trajectories,
        "layer": layer,
        "max_epochs": max_epochs,
        "batch_size": batch_size,
        "lr": lr,
        "random_state": random_state,
        "n_models": n_models,
        "resample": resample,
        "knockout": None if knockout is None else list(adata.var_names[knocked]),
        "model_kwargs": {"seed": random_state, **(model_kwargs or {})},
    }
    return write_fit(
        adata,
        members,
        FLeCS.results(members, key_added),
        key_added=key_added,
        params=params,
        copy=copy,
        layer=layer,
        model_dir=model_dir,
    )
