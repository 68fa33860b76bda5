"""Lightning training shared by every celldyn model (through scvi-tools' TrainRunner)."""

from __future__ import annotations

import contextlib
import inspect
import math
import sys
import time
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from anndata import AnnData
from lightning.pytorch import Callback
from scvi.data import AnnDataManager

from .._compat import TrainingPlan, TrainRunner, early_stopping_callback
from .._logging import in_notebook, logger, quiet_lightning
from ..nn import SolverDivergedError
from ._data import TensorDataModule

ADAM_EPS = 1e-8
"""Adam's ``eps`` for every model. scvi-tools' ``TrainingPlan`` defaults to 0.01, tuned for
VAEs; it damps updates whose gradients are below 0.01 (per-cell latent states, slowly fitted
means): it froze the per-cell latent states of LCD and slowed its score fit."""


class _WithoutTrainRunnerFailure:
    """Standard output without scvi-tools' ``Exception raised during training.`` print.

    scvi's ``TrainRunner`` prints that line (with ``<class 'NameError'>``, whatever the
    error) before it re-raises an exception from training; the exception itself reaches the
    user, so the line is only noise. Every other write goes through unchanged.
    """

    _LINE = "Exception raised during training."

    def __init__(self, stream):
        self._stream = stream
        self._dropping = False

    def write(self, text: str) -> int:
        if text.startswith(self._LINE):
            self._dropping = True
        if not self._dropping:
            return self._stream.write(text)
        self._dropping = not text.endswith("\n")
        return len(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


class _RankSeeds(Callback):
    """Independent random draws on every process of a multi-process (DDP) fit.

    Each DDP process runs the same script with the same seeds, so each would draw the same
    noise (score-matching noise, FLeCS windows and velocity batches) for its own shard of the
    minibatch. With more than one process, each reseeds torch's generator with its seed plus
    its rank when training starts; a single process is left untouched.
    """

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.world_size > 1:
            torch.manual_seed((torch.initial_seed() + trainer.global_rank) % 2**63)


def unreadable_model_file(path: str | Path) -> str | None:
    """Why ``path`` is not a readable PyTorch file, or ``None`` (readable or absent).

    :func:`torch.save` writes a zip archive with a ``data.pkl`` entry; a truncated or
    overwritten file fails the archive's checks (central directory, CRC of every entry).
    """
    path = Path(path)
    if not path.is_file():
        return None
    if not zipfile.is_zipfile(path):
        return "it is not a PyTorch archive (truncated or not a saved model)"
    try:
        with zipfile.ZipFile(path) as archive:
            if not any(name.endswith("data.pkl") for name in archive.namelist()):
                return "it is a zip archive without a PyTorch model"
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        return f"its archive is corrupted ({err})"
    return None if bad is None else f"its entry {bad!r} is corrupted"


LIGHTNING_OPTIONS = {
    "accelerator": "auto",
    "devices": "auto",
    "early_stopping": False,
    "early_stopping_patience": 10,
    "progress": None,
    "plan_kwargs": None,
}
"""Lightning options every model's ``train`` takes as keywords, with their defaults.

Documented once in :data:`celldyn._docs.doc_lightning_kwargs`; any other keyword goes to
Lightning's ``Trainer``.
"""


def lightning_options(lightning_kwargs: dict, **model_defaults) -> dict:
    """Return the Lightning keywords of a ``train`` call with the defaults filled in.

    Every option of :data:`LIGHTNING_OPTIONS` missing from ``lightning_kwargs`` gets its
    default.

    A model reads the options it needs itself (FLeCS's warm start its ``accelerator``) from
    the result and passes the result on to :meth:`TrainingMixin._fit`; filling in twice
    changes nothing.

    Parameters
    ----------
    lightning_kwargs
        The keywords (not changed).
    **model_defaults
        A model's own defaults of options (Cell-MNN's ``early_stopping_patience``).

    Raises
    ------
    ValueError
        If ``progress`` (or Lightning's ``enable_progress_bar``, accepted for it) is neither
        ``None``, ``True`` nor ``False``.
    """
    unknown = set(model_defaults) - set(LIGHTNING_OPTIONS)
    if unknown:
        raise TypeError(f"Not Lightning options of celldyn: {sorted(unknown)}.")
    options = {**LIGHTNING_OPTIONS, **model_defaults, **lightning_kwargs}
    if "enable_progress_bar" in options:
        options["progress"] = options.pop("enable_progress_bar")
    progress = options["progress"]
    if progress is not None and not isinstance(progress, (bool, np.bool_)):
        raise ValueError(f"`progress` must be True, False or None, got {progress!r}.")
    options["progress"] = None if progress is None else bool(progress)
    return options


class TrainingMixin:
    """``_fit`` for :class:`~scvi.model.base.BaseModelClass` subclasses trained on tensors.

    Also wraps :meth:`~scvi.model.base.BaseModelClass.load`: a corrupted ``model.pt`` raises a
    :class:`ValueError` naming the file instead of torch's unpickling errors.
    """

    @classmethod
    def load(cls, dir_path: str, *args, **kwargs):
        """Load a saved model (:meth:`scvi.model.base.BaseModelClass.load`).

        Raises a :class:`ValueError` naming ``model.pt`` when that file is truncated or
        corrupted (checked before loading, and again on a loading error).
        """
        try:
            bound = inspect.signature(super().load).bind(dir_path, *args, **kwargs)
            path = Path(dir_path) / f"{bound.arguments.get('prefix') or ''}model.pt"
        except TypeError:  # a wrong call: scvi-tools' load says why
            path = None
        cls._check_model_file(path)
        try:
            return super().load(dir_path, *args, **kwargs)
        except Exception as err:
            cls._check_model_file(path, err)  # a file downloaded from `backup_url`
            raise

    @classmethod
    def _register_fields(
        cls, adata: AnnData, fields: list, setup_method_args: dict, **kwargs
    ) -> None:
        """Register ``fields`` of ``adata`` with a new :class:`~scvi.data.AnnDataManager`.

        The last step of every ``setup_anndata``, after the model's own checks; ``kwargs``
        go to :meth:`~scvi.data.AnnDataManager.register_fields` (used by ``load``).
        """
        manager = AnnDataManager(fields=fields, setup_method_args=setup_method_args)
        manager.register_fields(adata, **kwargs)
        cls.register_manager(manager)

    @classmethod
    def _check_model_file(cls, path: Path | None, err: Exception | None = None) -> None:
        problem = None if path is None else unreadable_model_file(path)
        if problem is not None:
            raise ValueError(
                f"Cannot load a {cls.__name__} from {str(path)!r}: {problem}. Save the model again."
            ) from err

    def _fit(
        self,
        datamodule: TensorDataModule,
        *,
        max_epochs: int,
        lr: float,
        weight_decay: float = 0.0,
        model_callbacks: Sequence[Callback] = (),
        selection: Callback | None = None,
        **lightning_kwargs,
    ) -> None:
        """Train ``self.module`` with Lightning on the samples of ``datamodule``.

        ``lightning_kwargs`` are the Lightning options of a model's ``train``
        (:data:`LIGHTNING_OPTIONS`, defaults filled in by :func:`lightning_options`): the
        device settings, early stopping, the progress bar, ``plan_kwargs`` for scvi-tools'
        ``TrainingPlan``, and any other keyword for Lightning's ``Trainer``.

        ``progress=None`` shows Lightning's progress bar only in a Jupyter notebook; Lightning's
        own ``enable_progress_bar`` is accepted for it. Lightning's per-fit info lines are
        shown only when celldyn logs at info level (scanpy verbosity 2 or more); one info line
        per fit says what was trained.

        The module's ``loss`` must return a :class:`~scvi.module.base.LossOutput`. Adam uses
        ``eps`` = :data:`ADAM_EPS` unless ``plan_kwargs`` says otherwise. After training,
        non-finite parameters raise :class:`~celldyn.nn.SolverDivergedError`.

        The same call trains on several devices or processes with ``strategy='ddp'`` (in
        ``lightning_kwargs``): each process trains on its shard of every epoch (Lightning's
        distributed sampler; ``batch_size`` is per process), logged losses are averaged over
        the processes, early stopping stops them together and each draws its own random noise
        (docs/user_guide/distributed.md).

        Parameters
        ----------
        datamodule
            Training and validation samples.
        max_epochs, lr, weight_decay
            Epochs and Adam settings.
        model_callbacks
            The model's own Lightning callbacks, run after those of the user
            (``lightning_kwargs['callbacks']``).
        selection
            The model's own early stopping and choice of the returned weights. It replaces
            scvi-tools' early stopping on ``validation_loss``
            (:func:`~celldyn._compat.early_stopping_callback`): with it, ``early_stopping``
            only requires a validation split and the callback decides when to stop
            (Cell-MNN's smoothed validation loss).
        **lightning_kwargs
            The options of :data:`LIGHTNING_OPTIONS`, and keywords for Lightning's ``Trainer``.
        """
        options = lightning_options(lightning_kwargs)
        trainer_kwargs = {k: v for k, v in options.items() if k not in LIGHTNING_OPTIONS}
        accelerator, devices = options["accelerator"], options["devices"]
        early_stopping = options["early_stopping"]
        early_stopping_patience = options["early_stopping_patience"]
        progress, plan_kwargs = options["progress"], options["plan_kwargs"]
        if max_epochs < 1:
            raise ValueError(f"`max_epochs` must be at least 1, got {max_epochs}.")
        progress = in_notebook() if progress is None else progress
        if lr <= 0 or not math.isfinite(lr):
            raise ValueError(f"`lr` must be a positive number, got {lr}.")
        if early_stopping and datamodule.n_val == 0:
            raise ValueError("Early stopping needs a validation split (`validation_size` > 0).")
        plan_kwargs = {"eps": ADAM_EPS, **(plan_kwargs or {})}
        plan = TrainingPlan(self.module, lr=lr, weight_decay=weight_decay, **plan_kwargs)
        if datamodule.n_val > 0:
            trainer_kwargs.setdefault("check_val_every_n_epoch", 1)
        trainer_kwargs.setdefault("log_every_n_steps", 1)  # short epochs are the norm here
        callbacks = [*trainer_kwargs.pop("callbacks", []), *model_callbacks, _RankSeeds()]
        if selection is not None:
            # One early-stopping path: a model's own selection replaces Lightning's callback.
            # Cell-MNN's monitors an exponential moving average of the validation loss, which
            # no logged metric holds when Lightning's EarlyStopping runs, keeps the best
            # weights in memory (Lightning restores them only from checkpoint files) and
            # counts a NaN epoch as no improvement instead of stopping at once; rebuilt from
            # Lightning's parts, its benchmarked numbers would not be kept exactly.
            callbacks.append(selection)
        elif early_stopping:
            callbacks.append(early_stopping_callback(early_stopping_patience, trainer_kwargs))
        self.module.train()  # getters leave it in eval mode
        start = time.perf_counter()
        with warnings.catch_warnings(), quiet_lightning():
            # scvi-tools logs dict batches; Lightning cannot infer their size and says so
            warnings.filterwarnings("ignore", message="Trying to infer the `batch_size`")
            # scvi-tools' own early stopping is off under DDP; ours (in `callbacks`) is not
            warnings.filterwarnings("ignore", message="early_stopping was automatically disabled")
            # Lightning's own use of a torch API that torch deprecated; nothing a user can do
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)`")
            runner = TrainRunner(
                self,
                training_plan=plan,
                data_splitter=datamodule,
                max_epochs=max_epochs,
                accelerator=accelerator,
                devices=devices,
                callbacks=callbacks,
                enable_progress_bar=progress,
                **trainer_kwargs,
            )
            with contextlib.redirect_stdout(_WithoutTrainRunnerFailure(sys.stdout)):
                runner()
        bad = [name for name, p in self.module.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise SolverDivergedError(
                f"Training diverged: parameters {bad} hold NaN or infinite values. "
                "Lower `lr` or tighten the solver tolerances."
            )
        loss = (self.history or {}).get("train_loss")  # all fits so far; empty on ranks > 0
        if loss is not None and len(loss):
            logger.info(
                "trained %s: %d epochs in %.1f s, train_loss %.4g",
                type(self).__name__,
                self.trainer.current_epoch,  # this fit's (scvi-tools' runner sets `trainer`)
                time.perf_counter() - start,
                loss.iloc[-1, 0],
            )
