"""The ``celldyn`` logger and the scanpy-style "added 'key' (adata.slot)" message."""

from __future__ import annotations

import logging

logger = logging.getLogger("celldyn")
if not logger.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def log_added(slot: str, *keys: str) -> None:
    """Log the fields a function wrote, scanpy style.

    Parameters
    ----------
    slot
        AnnData attribute name, e.g. ``'layers'``.
    keys
        Keys written into that attribute.
    """
    for key in keys:
        logger.info("    added %r (adata.%s)", key, slot)
