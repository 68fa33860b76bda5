"""Reference predictions of perturbation responses: additive, mean shift, no change."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .. import _keys
from .._perturbations import read_perturbations, split_label
from .._validate import check_adata, check_expression, check_in

BASELINES = ("additive", "mean", "no_change")
"""Methods of :func:`perturbation_baseline`."""


def perturbation_baseline(
    adata: AnnData,
    perturbations: Sequence[str],
    *,
    method: str = "additive",
    perturbation_key: str = _keys.PERTURBATION,
    control: str = _keys.CONTROL,
    layer: str | None = None,
) -> AnnData:
    r"""Predict perturbed cells by shifting the control cells (reference baselines).

    Each prediction is the observed control cells moved by a constant shift of the mean:

    - ``'additive'``: the sum of the observed single-gene shifts,
      :math:`\mu_{A+B} = \mu_{ctrl} + (\mu_A - \mu_{ctrl}) + (\mu_B - \mu_{ctrl})`; exact for
      the means of a linear drift, wrong where genes interact non-additively.
    - ``'mean'``: the mean shift of all perturbations observed in ``adata``.
    - ``'no_change'``: the control cells unchanged.

    Parameters
    ----------
    adata
        Training cells with ``obs[perturbation_key]``: the control and observed perturbations
        (for ``'additive'``, every single gene of the requested combinations).
    perturbations
        Labels to predict (``'A'``, ``'A+B'``; they may be absent from ``adata``). The
        perturbed genes need not be measured: only the labels are used.
    method
        ``'additive'``, ``'mean'`` or ``'no_change'``.
    perturbation_key
        Column of ``adata.obs`` with the labels.
    control
        Label of the control cells.
    layer
        Layer to shift (``None``: ``X``).

    Returns
    -------
    AnnData over ``adata.var_names`` with, for each perturbation in order, one predicted cell
    per control cell: ``X`` (float32) and ``obs[perturbation_key]`` (categorical, in the order
    of ``perturbations``).
    """
    check_adata(adata)
    check_in(method, BASELINES, "method")
    x = check_expression(adata, layer)
    if isinstance(perturbations, str) or len(perturbations) == 0:
        raise ValueError("`perturbations` must be a non-empty sequence of labels.")
    if len(set(perturbations)) != len(perturbations):
        raise ValueError("`perturbations` lists a label more than once.")
    labels = np.asarray(
        read_perturbations(adata, perturbation_key, control, min_conditions=1, measured_genes=False)
    )
    genes = [split_label(p, control=control) for p in perturbations]
    observed = set(labels)
    if method == "additive":
        missing = sorted({g for parts in genes for g in parts} - observed)
        if missing:
            raise ValueError(
                f"The additive baseline needs the single perturbation(s) {missing}, which have "
                f"no cells in adata.obs[{perturbation_key!r}]."
            )
    if method == "mean" and observed == {control}:
        raise ValueError("The mean baseline needs at least one perturbation besides the control.")

    x = np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)
    ctrl = x[labels == control]
    means = {label: x[labels == label].mean(0) - ctrl.mean(0) for label in observed}
    shifts = []
    for parts in genes:
        if method == "additive":
            shifts.append(sum((means[g] for g in parts), np.zeros(x.shape[1])))
        elif method == "mean":
            shifts.append(np.mean([means[q] for q in observed if q != control], axis=0))
        else:
            shifts.append(np.zeros(x.shape[1]))
    predicted = np.concatenate([ctrl + shift for shift in shifts]).astype(np.float32)
    obs = pd.DataFrame(
        {
            perturbation_key: pd.Categorical(
                np.repeat(list(perturbations), len(ctrl)), categories=list(perturbations)
            )
        },
        index=[f"{method}{i}" for i in range(len(predicted))],
    )
    return AnnData(predicted, obs=obs, var=pd.DataFrame(index=adata.var_names.copy()))
