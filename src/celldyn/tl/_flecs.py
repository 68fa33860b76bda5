"""Fit FLeCS and write its network, decays, biases and velocities into AnnData."""

from __future__ import annotations

import numpy as np
import torch
from anndata import AnnData

from .. import _keys
from .._validate import check_adata, check_finite, check_layer


def _working_adata(adata: AnnData, layer: str | None, prior: str, trajectories: str) -> AnnData:
    """Copy what FLeCS reads into a light AnnData, so registering leaves ``adata`` as is."""
    x = adata.X if layer is None else adata.layers[layer]
    work = AnnData(X=x, obs=adata.obs[[]].copy(), var=adata.var[[]].copy())
    work.varp[prior] = adata.varp[prior]
    work.uns[trajectories] = adata.uns[trajectories]
    return work


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
    model_kwargs: dict | None = None,
    key_added: str = "flecs",
    copy: bool = False,
    **train_kwargs,
) -> AnnData | None:
    r"""Learn a gene regulatory network ODE from trajectories with :class:`~celldyn.models.FLeCS`.

    Genes follow :math:`dG/dt = \sigma(W^\top G + b) - \alpha G` with weights only on the
    prior edges; the ODE is fitted to the trajectories of :func:`celldyn.pp.trajectories`.

    Parameters
    ----------
    adata
        Annotated data matrix.
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
        Seed of the initial weights and of the validation split.
    model_kwargs
        Passed to :class:`~celldyn.models.FLeCS` (``n_latent``, ``protein_proxy``, ``kernel``).
    key_added
        Prefix of the written keys.
    copy
        Return a modified copy instead of writing into ``adata``.
    **train_kwargs
        Passed to :meth:`~celldyn.models.FLeCS.train` (``method``, ``accelerator``,
        ``early_stopping``, ``progress``, ...).

    Returns
    -------
    ``None``, or the copy when ``copy=True``; writes

    - ``varp['{key_added}_weights']``: sparse CSR learnt weights on the prior edges,
      regulator (row) × target (column).
    - ``var['{key_added}_decay']``, ``var['{key_added}_bias']``: decay and production bias.
    - ``layers['{key_added}_velocity']``: dense float32 model derivative ``dG/dt`` per cell.
    - ``var['{key_added}_velocity_genes']``: all ``True``.
    - ``uns['{key_added}_velocity_params']``: ``{'embeddings': []}`` for scvelo.
    - ``uns[key_added]``: ``params`` and ``history`` (dict of per-epoch lists).

    Raises
    ------
    SolverDivergedError
        If training or the velocities produce NaN values (nothing is written).
    """
    from .._write import write_results
    from ..models._flecs import FLeCS, read_prior, read_trajectories

    check_adata(adata)
    check_layer(adata, layer)
    read_prior(adata, prior)
    read_trajectories(adata, trajectories)
    check_finite(adata.X if layer is None else adata.layers[layer], "layer" if layer else "X")
    work = _working_adata(adata, layer, prior, trajectories)
    FLeCS.setup_anndata(work)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        model_kwargs = {"seed": random_state, **(model_kwargs or {})}
        model = FLeCS(work, prior=prior, trajectories=trajectories, **model_kwargs)
        model.train(
            max_epochs=max_epochs,
            batch_size=batch_size,
            lr=lr,
            random_state=random_state,
            **train_kwargs,
        )
    velocity = model.get_velocity(work)
    params = {
        "prior": prior,
        "trajectories": trajectories,
        "layer": layer,
        "max_epochs": max_epochs,
        "batch_size": batch_size,
        "lr": lr,
        "random_state": random_state,
        "model_kwargs": model_kwargs,
    }
    results = {
        "params": {k: v for k, v in params.items() if v is not None},
        "history": {k: v.to_numpy().ravel().tolist() for k, v in model.history.items()},
    }
    return write_results(
        adata,
        copy=copy,
        varp={_keys.weights(key_added): model.get_weights()},
        var={
            _keys.var_param(key_added, "decay"): model.get_decay(),
            _keys.var_param(key_added, "bias"): model.get_bias(),
            _keys.velocity_genes(key_added): np.ones(adata.n_vars, dtype=bool),
        },
        layers={_keys.velocity(key_added): velocity},
        uns={key_added: results, _keys.velocity_params(key_added): {"embeddings": []}},
    )
