"""Fit LCD on a perturbation screen and write its latent states and parameters into AnnData."""

from __future__ import annotations

import os

import pandas as pd
from anndata import AnnData

from .. import _keys
from .._docs import fill_doc
from .._perturbations import read_perturbations
from .._validate import check_adata, check_int, check_layer
from ._fit import train_seeded, write_fit
from ._save_model import check_model_dir


def _working_adata(
    adata: AnnData, perturbation_key: str, layer: str | None, size_factor_key: str | None
) -> AnnData:
    """Copy what LCD reads into a light AnnData, so registering leaves ``adata`` as is."""
    columns = [perturbation_key] + ([size_factor_key] if size_factor_key else [])
    missing = [c for c in columns if c not in adata.obs.columns]
    if missing:
        raise KeyError(f"adata.obs has no column(s) {missing}.")
    return AnnData(
        X=adata.X if layer is None else adata.layers[layer],
        obs=adata.obs[columns].copy(),
        var=pd.DataFrame(index=adata.var_names.copy()),
    )


@fill_doc
def lcd(
    adata: AnnData,
    *,
    perturbation_key: str = _keys.PERTURBATION,
    control: str = _keys.CONTROL,
    layer: str | None = None,
    size_factor_key: str | None = None,
    targets: dict[str, str | None] | None = None,
    max_epochs: int = 300,
    score_epochs: int = 300,
    batch_size: int = 4096,
    random_state: int = 0,
    model_kwargs: dict | None = None,
    key_added: str = _keys.LCD,
    save_model: str | os.PathLike | None = None,
    copy: bool = False,
    **train_kwargs,
) -> AnnData | None:
    """Fit a latent causal diffusion (:class:`~celldyn.models.LCD`) to a perturbation screen.

    Every condition (control, ``'A'``, ``'A+B'``, ...) is the stationary law of
    ``dx = f(x, e_q) dt + √(2D) dW`` in a latent space with one coordinate per gene, observed
    through negative binomial counts; see :class:`~celldyn.models.LCD` and the user guide. To
    predict unseen conditions or read the drift, train :class:`~celldyn.models.LCD` directly
    (this function keeps no model unless ``save_model`` is given).

    Parameters
    ----------
    adata
        Annotated data matrix of raw counts.
    perturbation_key
        Column of ``adata.obs``: ``control`` or interventions (genes, measured or not,
        drugs, stimuli) joined by ``'+'``.
    control
        Label of unperturbed cells.
    layer
        Layer with the raw counts; ``None``: ``adata.X``.
    size_factor_key
        Column of ``adata.obs`` with library size factors; ``None``: total counts / mean.
    targets
        Intervention -> the measured gene it acts on, or ``None``
        (:meth:`~celldyn.models.LCD.setup_anndata`); interventions named like a gene of
        ``adata.var_names`` target that gene.
    max_epochs, score_epochs, batch_size
        Training settings (:meth:`~celldyn.models.LCD.train`).
    random_state
        Seed of the weights and of training.
    model_kwargs
        Passed to :class:`~celldyn.models.LCD` (``n_hidden``, ``sigma_min``, ...).
    key_added
        Key of the written fields.
    save_model
        Folder to save the trained model in (:meth:`~celldyn.models.LCD.save`, with the
        AnnData it was trained on, so ``LCD.load(folder)`` needs no AnnData); new or
        empty, checked before training. ``None``: keep no model.
    {copy}
    **train_kwargs
        Passed to :meth:`~celldyn.models.LCD.train` (``lr``, ``accelerator``, ``progress``...).

    Returns
    -------
    ``None``, or the copy when ``copy=True``; writes

    - ``obsm['X_{key_added}']``: float32 fitted latent state of every cell (n_obs × n_vars).
    - ``uns[key_added]``: ``params`` (the arguments), ``history`` (dict of per-epoch lists,
      e.g. ``observation_train_loss``, ``score_train_loss``, ``mixing_objective``),
      ``perturbation_labels`` (training conditions, control first), ``interventions``
      (with a learnt embedding), ``targets`` (intervention -> measured gene, for those that
      act on one), ``gene_scale`` (``s_g``), ``inverse_dispersion``
      (``θ_g``), ``diffusion`` (diagonal ``D``), ``mixing`` (antisymmetric ``K``, rows and
      columns in ``var_names`` order, acting as ``(D + K) s``), ``sigmas`` (noise levels) and
      ``drift_sigma`` (noise level of the score in the drift), both in latent units.
    """
    from ..models import LCD

    check_adata(adata)
    model_dir = check_model_dir(save_model)
    check_layer(adata, layer)
    check_int(random_state, "random_state", 0)
    work = _working_adata(adata, perturbation_key, layer, size_factor_key)
    read_perturbations(work, perturbation_key, control, measured_genes=False)
    LCD.setup_anndata(
        work,
        perturbation_key=perturbation_key,
        control=control,
        size_factor_key=size_factor_key,
        targets=targets,
    )
    model = train_seeded(
        random_state,
        lambda: LCD(work, **(model_kwargs or {})),
        max_epochs=max_epochs,
        score_epochs=score_epochs,
        batch_size=batch_size,
        **train_kwargs,
    )
    params = {
        "perturbation_key": perturbation_key,
        "control": control,
        "layer": layer,
        "size_factor_key": size_factor_key,
        # h5ad cannot hold None: '' marks an intervention mapped to no measured gene
        "targets": None if targets is None else {k: v or "" for k, v in targets.items()},
        "max_epochs": max_epochs,
        "score_epochs": score_epochs,
        "batch_size": batch_size,
        "random_state": random_state,
        "model_kwargs": model_kwargs,
    }
    return write_fit(
        adata,
        [model],
        LCD.results([model], key_added),
        key_added=key_added,
        params=params,
        copy=copy,
        model_dir=model_dir,
    )
