"""What a ``tl`` function writes for fitted models: each model class builds its own."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class FitResults:
    """The AnnData fields of fitted models, returned by their class's ``results``.

    Attributes
    ----------
    slots
        AnnData slot (``'obsm'``, ``'varp'``, ...) -> key -> value, written as they are.
    uns
        Entries of ``uns[key_added]`` besides ``params`` and ``history``, which ``tl`` adds.
    velocity
        Cells x genes velocity (written with its scvelo fields), or ``None``.
    velocity_genes
        Boolean mask of the genes ``velocity`` covers; ``None``: all.
    """

    slots: dict[str, dict[str, Any]] = field(default_factory=dict)
    uns: dict[str, Any] = field(default_factory=dict)
    velocity: np.ndarray | None = None
    velocity_genes: np.ndarray | None = None
