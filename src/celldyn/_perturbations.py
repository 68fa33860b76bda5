"""Perturbation labels: ``'control'``, ``'A'``, ``'A+B'`` — parsing and validation.

The one place that reads ``obs['perturbation']``-style columns; every model or tool working
on perturbation screens imports from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from anndata import AnnData

from . import _keys
from ._validate import check_obs_key

SEPARATOR = "+"
"""Separator of the genes of a combination label (``'GATA1+CEBPA'``)."""


def split_label(label: object, *, control: str = _keys.CONTROL) -> tuple[str, ...]:
    """Return the perturbed genes of one label (``()`` for the control label).

    Parameters
    ----------
    label
        ``control``, a gene name, or gene names joined by ``'+'``.
    control
        Label of unperturbed cells.

    Returns
    -------
    The gene names in the order written.

    Raises
    ------
    ValueError
        If the label is not a string, has an empty part (``'A+'``, ``'+'``), surrounding
        whitespace, mentions the control inside a combination, or repeats a gene.
    """
    if not isinstance(label, str):
        raise ValueError(f"Perturbation label {label!r} is not a string.")
    if label == control:
        return ()
    genes = tuple(label.split(SEPARATOR))
    bad = [g for g in genes if g == "" or g != g.strip() or g == control]
    if bad:
        raise ValueError(
            f"Perturbation label {label!r} cannot be parsed: expected {control!r} or gene names "
            f"joined by {SEPARATOR!r} (e.g. 'A' or 'A+B'), without spaces."
        )
    if len(set(genes)) != len(genes):
        raise ValueError(f"Perturbation label {label!r} repeats a gene.")
    return genes


def check_genes_known(genes: Sequence[str], var_names: Sequence[str], label: str) -> None:
    """Raise a :class:`ValueError` naming the genes of ``label`` absent from ``var_names``."""
    missing = [g for g in genes if g not in set(var_names)]
    if missing:
        raise ValueError(
            f"Perturbation {label!r} names gene(s) {missing} that are not in adata.var_names."
        )


def read_perturbations(
    adata: AnnData,
    perturbation_key: str = _keys.PERTURBATION,
    control: str = _keys.CONTROL,
    *,
    min_conditions: int = 2,
    measured_genes: bool = True,
) -> pd.Categorical:
    """Check a perturbation column and return it as a categorical with the control first.

    Parameters
    ----------
    adata
        Annotated data matrix.
    perturbation_key
        Column of ``adata.obs`` with one label per cell.
    control
        Label of unperturbed cells.
    min_conditions
        Minimum number of distinct labels (control included).
    measured_genes
        Require every gene named by a label to be in ``adata.var_names`` (models that use
        the target's expression); ``False`` for methods that only use the labels.

    Returns
    -------
    Categorical of the labels whose categories are the observed labels, control first, then
    in order of appearance.

    Raises
    ------
    KeyError
        If ``perturbation_key`` is not a column of ``adata.obs``.
    ValueError
        On missing labels, unparseable labels, no control cell, fewer than ``min_conditions``
        conditions, or (with ``measured_genes``) genes absent from ``adata.var_names``.
    """
    check_obs_key(adata, perturbation_key)
    column = adata.obs[perturbation_key]
    if column.isna().any():
        raise ValueError(f"adata.obs[{perturbation_key!r}] has {int(column.isna().sum())} NaN.")
    labels = pd.unique(column.astype(object).to_numpy())
    if control not in labels:
        raise ValueError(
            f"adata.obs[{perturbation_key!r}] has no control cells labelled {control!r}; "
            f"labels are {list(labels)[:10]}. Pass the control label with `control=`."
        )
    if len(labels) < min_conditions:
        raise ValueError(
            f"adata.obs[{perturbation_key!r}] holds {len(labels)} condition(s); at least "
            f"{min_conditions} (control and perturbations) are needed."
        )
    for label in labels:
        genes = split_label(label, control=control)
        if measured_genes:
            check_genes_known(genes, adata.var_names, label)
    order = [control, *[lab for lab in labels if lab != control]]
    return pd.Categorical(column.astype(object).to_numpy(), categories=order)


def perturbation_mask(
    labels: Sequence[str], genes: Sequence[str], *, control: str = _keys.CONTROL
) -> tuple[np.ndarray, list[list[str]]]:
    """Binary condition × gene matrix of which of ``genes`` each label perturbs.

    Parameters
    ----------
    labels
        Perturbation labels.
    genes
        Genes that index the columns (e.g. those with a learnt embedding).
    control
        Label of unperturbed cells.

    Returns
    -------
    ``(mask, unknown)``: float32 array ``(len(labels), len(genes))``, and for each label the
    list of its genes not in ``genes``.
    """
    index = {g: i for i, g in enumerate(genes)}
    mask = np.zeros((len(labels), len(genes)), dtype=np.float32)
    unknown: list[list[str]] = []
    for row, label in enumerate(labels):
        parts = split_label(label, control=control)
        mask[row, [index[g] for g in parts if g in index]] = 1.0
        unknown.append([g for g in parts if g not in index])
    return mask, unknown


def interventions(labels: Sequence[str], *, control: str = _keys.CONTROL) -> list[str]:
    """Sorted distinct interventions (the parts of the labels, ``'A+B'`` gives A and B)."""
    return sorted({part for label in labels for part in split_label(label, control=control)})


def intervention_targets(
    names: Sequence[str],
    var_names: Sequence[str],
    targets: Mapping[str, str | None] | None = None,
) -> dict[str, str]:
    """Measured gene each intervention acts on.

    An intervention named like a measured gene targets that gene; ``targets`` adds or
    overrides entries (an inhibitor -> the protein it acts on; ``None``: targets no measured
    gene, e.g. a stimulus). Interventions absent from the result target no measured gene.

    Parameters
    ----------
    names
        Interventions of the screen (:func:`interventions`).
    var_names
        Measured genes.
    targets
        Intervention -> measured gene (or ``None``).

    Returns
    -------
    Intervention -> measured gene, for the interventions with a measured target, in the
    order of ``names``.

    Raises
    ------
    ValueError
        If ``targets`` names an intervention absent from ``names`` or a gene absent from
        ``var_names``.
    """
    measured = set(var_names)
    targets = dict(targets or {})
    unknown = [k for k in targets if k not in set(names)]
    if unknown:
        raise ValueError(
            f"`targets` names intervention(s) {unknown} that no perturbation label contains."
        )
    missing = {k: v for k, v in targets.items() if v is not None and v not in measured}
    if missing:
        raise ValueError(f"`targets` maps to gene(s) not in adata.var_names: {missing}.")
    resolved = {}
    for name in names:
        gene = targets[name] if name in targets else (name if name in measured else None)
        if gene is not None:
            resolved[name] = gene
    return resolved
