"""The one place celldyn touches scvi-tools internals (anything not in its public API)."""

from __future__ import annotations

from scvi.train import TrainingPlan as _ScviTrainingPlan
from scvi.train import TrainRunner

__all__ = ["TrainRunner", "TrainingPlan"]


class TrainingPlan(_ScviTrainingPlan):
    """scvi-tools' training plan without its ELBO metrics.

    The plan logs ``train_loss``, ``validation_loss`` and a module's scalar extra metrics
    (``mmd_train``, ...); the ELBO, reconstruction and KL metrics it adds for VAEs have no
    meaning for celldyn's models and their per-step bookkeeping took a third of a small
    model's training time.
    """

    def compute_and_log_metrics(self, loss_output, metrics, mode) -> None:
        """Log the module's scalar extra metrics as ``{name}_{mode}``."""
        for key, value in loss_output.extra_metrics.items():
            self.log(
                f"{key}_{mode}",
                value.detach() if hasattr(value, "detach") else value,
                on_step=self.on_step,
                on_epoch=self.on_epoch,
                batch_size=loss_output.n_obs_minibatch,
                sync_dist=self.use_sync_dist,
            )
