"""Rebuild the fitted FLeCS vector fields stored in AnnData by :func:`celldyn.tl.flecs`."""

from __future__ import annotations

from collections.abc import Mapping

from anndata import AnnData

from .. import _keys
from .._validate import check_adata


def stored_models(adata: AnnData, key: str) -> Mapping[str, Mapping]:
    """Return the checked ``uns[key]['models']`` (``{'0': arrays, ...}``) of a FLeCS fit."""
    check_adata(adata)
    entry = adata.uns.get(key)
    if entry is None:
        raise KeyError(
            f"adata.uns has no entry {key!r}. Run `celldyn.tl.flecs(adata, key_added={key!r})` "
            "first."
        )
    members = entry.get("models") if isinstance(entry, Mapping) else None
    if not isinstance(members, Mapping) or not members:
        raise KeyError(
            f"adata.uns[{key!r}] has no fitted models ('models'); refit with `celldyn.tl.flecs`."
        )
    names = sorted(members, key=int)
    for name in names:
        n_genes = int(members[name].get("n_genes", -1))
        if n_genes != adata.n_vars:
            raise ValueError(
                f"adata.uns[{key!r}]['models'][{name!r}] models {n_genes} genes but adata has "
                f"{adata.n_vars}; the genes must be those the model was fitted on."
            )
    return {name: members[name] for name in names}


def load_fields(adata: AnnData, key: str = _keys.FLECS) -> list:
    """Rebuild every fitted ensemble member of :func:`celldyn.tl.flecs`.

    Parameters
    ----------
    adata
        Annotated data matrix with ``uns[key]['models']``.
    key
        ``key_added`` of :func:`celldyn.tl.flecs`.

    Returns
    -------
    One :class:`~celldyn.nn.GRNVectorField` per member, in member order (float32, CPU,
    evaluation mode).
    """
    from ..nn import GRNVectorField

    models = stored_models(adata, key)
    return [GRNVectorField.from_arrays(arrays).eval() for arrays in models.values()]


def gene_indices(adata: AnnData, genes, name: str = "genes") -> list[int]:
    """Positions in ``adata.var_names`` of one gene name or a list of them (unique, non-empty)."""
    names = [genes] if isinstance(genes, str) else list(genes)
    if not names:
        raise ValueError(f"`{name}` is empty; give at least one gene name.")
    unknown = [g for g in names if g not in adata.var_names]
    if unknown:
        raise KeyError(f"`{name}` has genes not in adata.var_names: {unknown}.")
    if len(set(names)) != len(names):
        raise ValueError(f"`{name}` has repeated genes: {names}.")
    return [int(i) for i in adata.var_names.get_indexer(names)]
