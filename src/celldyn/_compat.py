"""The one place celldyn touches scvi-tools internals (anything not in its public API)."""

from __future__ import annotations

from scvi.train import TrainingPlan, TrainRunner

__all__ = ["TrainRunner", "TrainingPlan"]
