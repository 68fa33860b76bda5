"""Writing results into AnnData at the very end of a function (validate first, write last)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from anndata import AnnData

from ._logging import log_added

_SLOTS = ("obs", "var", "obsm", "varm", "obsp", "varp", "layers", "uns")


def write_results(
    adata: AnnData, *, copy: bool = False, **slots: Mapping[str, Any]
) -> AnnData | None:
    """Write computed fields into ``adata`` (or a copy) in one step and log them.

    Call this only after every computation succeeded, so a failure never leaves ``adata``
    half-written.

    Parameters
    ----------
    adata
        Annotated data matrix.
    copy
        Write into a copy and return it instead of modifying ``adata``.
    **slots
        ``slot=mapping`` pairs, e.g. ``layers={"flecs_velocity": v}``.

    Returns
    -------
    The copy when ``copy=True``, else ``None``.
    """
    unknown = set(slots) - set(_SLOTS)
    if unknown:
        raise ValueError(f"Unknown AnnData slot(s) {sorted(unknown)}.")
    target = adata.copy() if copy else adata
    for slot, fields in slots.items():
        container = getattr(target, slot)
        for key, value in fields.items():
            container[key] = value
        log_added(slot, *fields)
    return target if copy else None
