"""The one place celldyn touches scvi-tools internals (anything not in its public API)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from copy import deepcopy

from anndata import AnnData
from scvi.data._constants import _FIELD_REGISTRIES_KEY, _SETUP_ARGS_KEY, _STATE_REGISTRY_KEY
from scvi.model.base import BaseModelClass
from scvi.train import TrainingPlan as _ScviTrainingPlan
from scvi.train import TrainRunner
from scvi.train._callbacks import LoudEarlyStopping

from ._validate import check_adata

__all__ = [
    "TrainRunner",
    "TrainingPlan",
    "early_stopping_callback",
    "registered",
    "setup_args",
    "state_registry",
]


class TrainingPlan(_ScviTrainingPlan):
    """scvi-tools' training plan without its ELBO metrics.

    The plan logs ``train_loss``, ``validation_loss`` and a module's scalar extra metrics
    (``mmd_train``, ...); the ELBO, reconstruction and KL metrics it adds for VAEs have no
    meaning for celldyn's models and their per-step bookkeeping took a third of a small
    model's training time. Unlike scvi-tools' method, :meth:`compute_and_log_metrics` does not
    run in inference mode: under DDP, Lightning averages an epoch's logged metrics over the
    processes in place (``sync_dist``), which fails on inference tensors (``Inplace update to
    inference tensor outside InferenceMode``; it stopped Cell-MNN, whose loss has extra metrics).
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


def early_stopping_callback(patience: int, trainer_kwargs: dict) -> LoudEarlyStopping:
    """scvi-tools' early stopping on ``validation_loss``, built here so that it also runs under DDP.

    scvi-tools' ``Trainer`` turns its own early stopping off under any ``'ddp'`` strategy.
    Lightning's callback works there: the validation loss is averaged over the processes
    (``sync_dist``) and the decision to stop is reduced across them, so all stop together.

    Parameters
    ----------
    patience
        Epochs without improvement before stopping.
    trainer_kwargs
        Keyword arguments of the trainer; scvi-tools' ``early_stopping_min_delta``,
        ``early_stopping_warmup_epochs`` and ``early_stopping_mode`` are taken out of it.
    """
    options = {
        key: trainer_kwargs.pop(f"early_stopping_{key}", default)
        for key, default in (("min_delta", 0.0), ("warmup_epochs", 0), ("mode", "min"))
    }
    return LoudEarlyStopping(monitor="validation_loss", patience=patience, **options)


_SCVI_PREFIX = "_scvi"
_FRAMES = ("obs", "var")
_MAPPINGS = ("uns", "obsm", "varm", "layers", "obsp", "varp")


def setup_args(model: BaseModelClass) -> dict:
    """Return the arguments ``model``'s AnnData was set up with (``setup_anndata``)."""
    return model.registry_[_SETUP_ARGS_KEY]


def state_registry(model: BaseModelClass, registry_key: str) -> dict:
    """Return what scvi-tools recorded at setup about the field ``registry_key``."""
    return model.registry_[_FIELD_REGISTRIES_KEY][registry_key][_STATE_REGISTRY_KEY]


def _snapshot(adata: AnnData) -> dict:
    """Keys of every slot, and copies of scvi-tools' own entries (names ``_scvi*``)."""
    snapshot = {}
    for name in _FRAMES:
        frame = getattr(adata, name)
        own = [c for c in frame.columns if str(c).startswith(_SCVI_PREFIX)]
        snapshot[name] = (list(frame.columns), {c: frame[c].copy() for c in own})
    for name in _MAPPINGS:
        mapping = getattr(adata, name)
        own = {k: deepcopy(v) for k, v in mapping.items() if str(k).startswith(_SCVI_PREFIX)}
        snapshot[name] = (set(mapping.keys()), own)
    return snapshot


def _restore(adata: AnnData, snapshot: dict) -> None:
    """Remove the entries added since ``snapshot`` and put back scvi-tools' own entries."""
    for name in _FRAMES:
        frame = getattr(adata, name)
        columns, own = snapshot[name]
        frame.drop(columns=[c for c in frame.columns if c not in columns], inplace=True)
        for column, values in own.items():
            frame[column] = values
    for name in _MAPPINGS:
        mapping = getattr(adata, name)
        keys, own = snapshot[name]
        for key in [k for k in mapping.keys() if k not in keys]:
            del mapping[key]
        for key, value in own.items():
            mapping[key] = value


@contextmanager
def registered(
    model: BaseModelClass, adata: AnnData | None, check: Callable[[AnnData], object]
) -> Iterator[AnnData]:
    """Yield ``adata`` registered with ``model`` for a getter (``None``: the training data).

    ``check`` (celldyn's checks of what the getter reads) runs first, before scvi-tools
    registers an AnnData new to the model by transferring the model's setup (which adds
    ``obs['_scvi_*']`` and ``uns['_scvi_*']``). A view is copied, so the caller's view stays a
    view. Any error in the block undoes what registration added or changed: a failing getter
    leaves ``adata`` exactly as it was.

    Parameters
    ----------
    model
        An initialised scvi-tools model.
    adata
        AnnData to register, or ``None``.
    check
        Raises a clear error for an AnnData the model cannot read.
    """
    adata = model.adata if adata is None else check_adata(adata)
    check(adata)
    copied = adata.is_view
    if copied:
        adata = adata.copy()
    store = type(model)._per_instance_manager_store
    managers = set(store.get(model.id, {}))
    snapshot = _snapshot(adata)
    failed = False
    try:
        yield model._validate_anndata(adata)
    except BaseException:
        failed = True
        _restore(adata, snapshot)
        raise
    finally:
        if failed or copied:  # forget managers of rolled-back or throw-away AnnData
            instance = store.get(model.id, {})
            for key in set(instance) - managers:
                del instance[key]
