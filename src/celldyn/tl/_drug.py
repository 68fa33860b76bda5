"""Fit drug (small-molecule) effects on a stored FLeCS network and write them into AnnData."""

from __future__ import annotations

import pandas as pd
from anndata import AnnData

from .. import _keys
from .._docs import fill_doc
from .._readers import read_trajectories
from .._validate import check_adata, check_expression, check_obs_key
from ._fit import train_seeded, write_fit


def _working_adata(
    adata: AnnData, layer: str | None, condition_key: str, trajectories: str
) -> AnnData:
    """Copy what FLeCSDrug reads into a light AnnData, so registering leaves ``adata`` as is."""
    x = adata.X if layer is None else adata.layers[layer]
    work = AnnData(X=x, obs=adata.obs[[condition_key]].copy(), var=adata.var[[]].copy())
    work.uns[trajectories] = adata.uns[trajectories]
    return work


@fill_doc
def drug_effects(
    adata: AnnData,
    features: pd.DataFrame,
    *,
    condition_key: str,
    control: str = _keys.CONTROL,
    key: str = _keys.FLECS,
    trajectories: str = _keys.TRAJECTORIES,
    layer: str | None = None,
    max_epochs: int = 100,
    batch_size: int = 64,
    lr: float = 1e-2,
    random_state: int = 0,
    model_kwargs: dict | None = None,
    key_added: str = _keys.FLECS_DRUG,
    copy: bool = False,
    **train_kwargs,
) -> AnnData | None:
    r"""Learn how conditions (drugs) shift production and decay in a fitted FLeCS network.

    The FLeCS field(s) stored by :func:`celldyn.tl.flecs` in ``uns[key]`` stay frozen; for every
    one, a :class:`~celldyn.models.FLeCSDrug` learns two MLPs from condition features to
    per-gene offsets :math:`p(c)` (added inside the production sigmoid) and :math:`d(c)`
    (added to the decay rate), so that

    .. math:: dG/dt = \sigma(W^\top G + b + p(c)) - \max(0, \alpha + d(c))\, G

    fits the trajectories of ``uns[trajectories]`` (a trajectory's condition is its last
    cell's; control trajectories are not used). With an ensemble (``n_models > 1`` in
    :func:`celldyn.tl.flecs`) one effect model is fitted per member (seed
    ``random_state + i``) and offsets and velocities are averaged.

    Parameters
    ----------
    adata
        Annotated data matrix with a FLeCS fit in ``uns[key]``.
    features
        DataFrame conditions (index) × features (e.g. Morgan fingerprints from
        :func:`celldyn.pp.morgan_fingerprints`); must have a row for every non-control
        condition of ``adata.obs[condition_key]``. Extra rows (drugs without cells) get
        predicted offsets too.
    condition_key
        Column of ``adata.obs`` with each cell's condition.
    control
        Label of untreated cells (offsets 0, no features needed).
    key
        ``key_added`` of the :func:`celldyn.tl.flecs` fit to build on.
    trajectories
        ``uns`` key of the trajectories (:func:`celldyn.pp.trajectories`).
    layer
        Layer with the expression (the one FLeCS was fitted on); ``None`` uses ``adata.X``.
    max_epochs, batch_size, lr
        Training settings (:meth:`~celldyn.models.FLeCSDrug.train`).
    random_state
        Seed of the MLP initialisation and of the validation split.
    model_kwargs
        Passed to :class:`~celldyn.models.FLeCSDrug` (``n_hidden``).
    {key_added}
    {copy}
    **train_kwargs
        Passed to :meth:`~celldyn.models.FLeCSDrug.train` (``method``, ``accelerator``,
        ``early_stopping``, ``progress``, ...).

    Returns
    -------
    ``None``, or the copy when ``copy=True``; writes

    - ``varm['{key_added}_production_offset']``, ``varm['{key_added}_decay_offset']``:
      DataFrames genes × conditions (one column per row of ``features``) of the offsets
      :math:`p(c)` and :math:`d(c)` (raw decay offsets; the model clamps
      :math:`\alpha + d` at 0).
    - ``layers['{key_added}_velocity']``: dense float32 ``dG/dt`` of every cell under its own
      condition (control cells: the base field's velocity).
    - ``var['{key_added}_velocity_genes']``: all ``True``.
    - ``uns['{key_added}_velocity_params']``: ``{'embeddings': [], 'xkey': xkey}`` for scvelo.
    - ``layers['Ms']`` (or ``layers['{key_added}_velocity_state']``): the expression
      (``layer``) as scvelo's state layer ``xkey``, as in :func:`celldyn.tl.flecs`.
    - ``uns[key_added]``: ``params``, ``history`` (per-epoch lists of the first model),
      ``trained_conditions`` (conditions with training trajectories) and, with an ensemble,
      ``member_histories``.

    Raises
    ------
    SolverDivergedError
        If training or the velocities produce NaN values (nothing is written).
    """
    from .._readers import load_flecs_fields
    from ..models import FLeCSDrug

    check_adata(adata)
    check_obs_key(adata, condition_key)
    features = FLeCSDrug.check_features(features)
    bases = load_flecs_fields(adata, key)
    read_trajectories(adata, trajectories)
    check_expression(adata, layer)
    work = _working_adata(adata, layer, condition_key, trajectories)
    FLeCSDrug.setup_anndata(work, condition_key=condition_key)
    model_kwargs = model_kwargs or {}
    models = [  # the first constructor checks conditions vs features
        train_seeded(
            random_state + i,
            lambda base=base: FLeCSDrug(
                work, base, features, control=control, trajectories=trajectories, **model_kwargs
            ),
            max_epochs=max_epochs,
            batch_size=batch_size,
            lr=lr,
            **train_kwargs,
        )
        for i, base in enumerate(bases)
    ]
    params = {
        "condition_key": condition_key,
        "control": control,
        "key": key,
        "trajectories": trajectories,
        "layer": layer,
        "max_epochs": max_epochs,
        "batch_size": batch_size,
        "lr": lr,
        "random_state": random_state,
        "n_models": len(models),
        "model_kwargs": model_kwargs,
    }
    return write_fit(
        adata,
        models,
        FLeCSDrug.results(models, key_added),
        key_added=key_added,
        params=params,
        copy=copy,
        layer=layer,
    )
