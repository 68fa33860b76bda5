"""``save_model=`` of the model-fitting tools: check the folder first, save after training."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .._logging import logger


def check_model_dir(path: str | os.PathLike | None) -> Path | None:
    """Raise unless ``path`` is ``None`` or a folder the models can be saved in.

    Parameters
    ----------
    path
        The ``save_model`` argument.

    Returns
    -------
    ``path`` as a :class:`~pathlib.Path`, or ``None``.
    """
    if path is None:
        return None
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"`save_model` must be a folder path, got {type(path).__name__}.")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"`save_model` {str(path)!r} is a file; give a folder.")
    if path.is_dir() and any(path.iterdir()):
        raise ValueError(
            f"`save_model` folder {str(path)!r} is not empty; give a new or empty folder."
        )
    parent = next(p for p in (path, *path.parents) if p.exists())
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"`save_model` {str(path)!r}: {str(parent)!r} is not a writable folder.")
    return path


def save_models(models: Sequence, path: Path | None, *, save_anndata: bool = True) -> None:
    """Save one model in ``path``, or each member ``i`` of an ensemble in ``path/member_<i>``.

    With ``save_anndata`` the working AnnData each model was trained on is saved beside it,
    so ``Model.load(folder)`` needs no AnnData.
    """
    if path is None:
        return
    folders = [path] if len(models) == 1 else [path / f"member_{i}" for i in range(len(models))]
    for model, folder in zip(models, folders, strict=True):
        model.save(str(folder), overwrite=True, save_anndata=save_anndata)
    logger.info("    saved the %s model to %s", type(models[0]).__name__, path)
