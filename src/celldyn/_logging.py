"""The ``celldyn`` logger and the scanpy-style "added 'key' (adata.slot)" message.

By default the logger follows scanpy's verbosity (:attr:`scanpy.settings.verbosity`, 0 error,
1 warning, 2 info, 3 hint, 4 debug), read each time a message is logged, so
``sc.settings.verbosity = 3`` shows celldyn's info messages too. An explicit
``logging.getLogger("celldyn").setLevel(...)`` takes precedence;
``setLevel(FOLLOW_SCANPY)`` returns to following scanpy. Importing this module never changes
a level that is already set.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

FOLLOW_SCANPY = 1
"""Level of the ``celldyn`` logger meaning "follow :attr:`scanpy.settings.verbosity`"."""

_LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "pytorch_lightning")
"""Loggers of Lightning's device banner, tips and fit-loop notices."""

_SCANPY_DEFAULT = logging.WARNING
"""Scanpy's default verbosity (1, warning), used while scanpy is not imported."""


def scanpy_level() -> int:
    """Return the logging level of :attr:`scanpy.settings.verbosity`.

    Scanpy is not imported for this: while it is not loaded nobody can have changed its
    verbosity, so its default (warning) applies.

    Returns
    -------
    A :mod:`logging` level (``logging.WARNING`` for scanpy's default verbosity 1).
    """
    scanpy = sys.modules.get("scanpy")
    settings = getattr(scanpy, "settings", None)
    verbosity = getattr(settings, "verbosity", None)
    return _SCANPY_DEFAULT if verbosity is None else int(verbosity.level)


class _FollowScanpy(logging.Filter):
    """Drop records below scanpy's verbosity while the logger's level is ``FOLLOW_SCANPY``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if logging.getLogger("celldyn").level != FOLLOW_SCANPY:
            return True  # an explicit level: the logger's own check already applied it
        return record.levelno >= scanpy_level()


logger = logging.getLogger("celldyn")
if not logger.handlers:
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(_handler)
    logger.propagate = False
if not any(type(f).__name__ == "_FollowScanpy" for f in logger.filters):  # also on reload
    logger.addFilter(_FollowScanpy())
if logger.level == logging.NOTSET:  # never override a level the user has set
    logger.setLevel(FOLLOW_SCANPY)


def effective_level() -> int:
    """Return the level celldyn logs at: its explicit level, else scanpy's verbosity."""
    level = logger.level
    return scanpy_level() if level in (FOLLOW_SCANPY, logging.NOTSET) else level


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's per-fit info lines (device banner, tips, "stopped" notices).

    They are kept when celldyn logs at info level or below (scanpy verbosity 2 or more, or an
    explicit ``logging.INFO``); warnings always pass.
    """
    if effective_level() <= logging.INFO:
        yield
        return
    loggers = [logging.getLogger(name) for name in _LIGHTNING_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def in_notebook() -> bool:
    """Whether the code runs in a Jupyter kernel (where progress bars belong)."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return type(shell).__name__ == "ZMQInteractiveShell"


def log_added(slot: str, *keys: str) -> None:
    """Log the fields a function wrote, scanpy style.

    Logged at info level: shown when scanpy's verbosity is 2 (info) or more, or when the
    ``celldyn`` logger's level is set to ``logging.INFO``.

    Parameters
    ----------
    slot
        AnnData attribute name, e.g. ``'layers'``.
    keys
        Keys written into that attribute.
    """
    for key in keys:
        logger.info("    added %r (adata.%s)", key, slot)
