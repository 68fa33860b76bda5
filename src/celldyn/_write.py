"""Writing results into AnnData at the very end of a function (validate first, write last)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from anndata import AnnData

from ._logging import log_added

_SLOTS = ("obs", "var", "obsm", "varm", "obsp", "varp", "layers", "uns")
_AXES = {
    "obs": "o",
    "obsm": "o",
    "obsp": "oo",
    "layers": "ov",
    "var": "v",
    "varm": "v",
    "varp": "vv",
}
"""Leading axes of each slot's values: ``o`` cells, ``v`` genes."""


def _check_shapes(adata: AnnData, slots: Mapping[str, Mapping[str, Any]]) -> None:
    """Raise before anything is written if a value does not fit its slot."""
    sizes = {"o": adata.n_obs, "v": adata.n_vars}
    for slot, fields in slots.items():
        expected = tuple(sizes[a] for a in _AXES.get(slot, ""))
        for key, value in fields.items():
            shape = getattr(value, "shape", None)
            if shape is None and isinstance(value, list | tuple):
                shape = (len(value),)
            if shape is not None and tuple(shape[: len(expected)]) != expected:
                raise ValueError(
                    f"{slot}[{key!r}] has shape {shape}, expected {expected} for an AnnData of "
                    f"{adata.n_obs} cells x {adata.n_vars} genes (duplicated names?)."
                )


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
    _check_shapes(adata, slots)
    target = adata.copy() if copy else adata
    for slot, fields in slots.items():
        container = getattr(target, slot)
        for key, value in fields.items():
            container[key] = value
        log_added(slot, *fields)
    return target if copy else None
