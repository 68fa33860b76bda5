"""The path every model-fitting ``tl`` function shares: seeded training, then one write.

A ``tl`` function validates its inputs, copies what its model reads into a working AnnData
(registering it leaves the user's object as is), trains with :func:`train_seeded` and writes
the class's :class:`~celldyn.models.FitResults` with :func:`write_fit`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from anndata import AnnData

from .._write import write_results
from ._save_model import save_models
from ._velocity_slots import velocity_slots

if TYPE_CHECKING:  # the models load scvi-tools; `celldyn.tl` stays light
    from ..models import FitResults

Model = TypeVar("Model")


def train_seeded(seed: int, build: Callable[[], Model], **train_kwargs) -> Model:
    """Build a model and train it with ``random_state=seed``, torch seeded with ``seed``.

    Torch's global generator is restored afterwards, so a call leaves the user's random
    stream as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build()
        model.train(random_state=seed, **train_kwargs)
    return model


def history(model) -> dict[str, list[float]]:
    """Return a trained model's per-epoch history as plain lists (storable in ``uns``)."""
    return {k: v.to_numpy().ravel().tolist() for k, v in (model.history or {}).items()}


def fit_record(models: Sequence, params: Mapping[str, Any]) -> dict[str, Any]:
    """Return the record of a fit for ``uns[key_added]``.

    ``params`` without ``None`` values, the first model's ``history`` and, for an ensemble,
    ``member_histories`` (``{'0': history, ...}``).
    """
    histories = [history(m) for m in models]
    record = {
        "params": {k: v for k, v in params.items() if v is not None},
        "history": histories[0],
    }
    if len(models) > 1:
        record["member_histories"] = {str(i): h for i, h in enumerate(histories)}
    return record


def write_fit(
    adata: AnnData,
    models: Sequence,
    results: FitResults,
    *,
    key_added: str,
    params: Mapping[str, Any],
    copy: bool = False,
    layer: str | None = None,
    model_dir: Path | None = None,
    save_anndata: bool = True,
) -> AnnData | None:
    """Save the models (``model_dir``), then write ``results`` into ``adata`` in one step.

    ``uns[key_added]`` gets :func:`fit_record` and ``results.uns``; a velocity gets its scvelo
    fields and state layer (:func:`~celldyn.tl._velocity_slots.velocity_slots`, states from
    ``layer``).
    """
    slots = {slot: dict(fields) for slot, fields in results.slots.items()}
    slots.setdefault("uns", {})[key_added] = {**fit_record(models, params), **results.uns}
    if results.velocity is not None:
        slots = velocity_slots(
            adata,
            key_added,
            results.velocity,
            layer=layer,
            genes=results.velocity_genes,
            **slots,
        )
    save_models(models, model_dir, save_anndata=save_anndata)
    return write_results(adata, copy=copy, **slots)
