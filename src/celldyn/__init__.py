"""celldyn: explicit, interpretable dynamical models of single cells for scanpy.

Submodules are imported lazily, so ``import celldyn`` stays fast; ``celldyn.pp`` etc.
load on first access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_SUBMODULES = ("datasets", "metrics", "models", "module", "nn", "pl", "pp", "tl")
__all__ = [*_SUBMODULES, "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from . import datasets, metrics, models, module, nn, pl, pp, tl  # noqa: F401


def __getattr__(name: str):
    if name in _SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'celldyn' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
