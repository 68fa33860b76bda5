"""The model contract of docs/user_guide/adding_a_model.md, exercised by a toy method.

A linear velocity model ``v = x A + b`` is written the way the page says a new method is:
a module, a model and a short ``tl`` function over the shared pieces (``TrainingMixin._fit``,
``registered``, ``batched``, ``FitResults``, ``train_seeded``, ``write_fit``). It must train,
recover the drift it was given and write its fields only at the end.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import LayerField
from scvi.model.base import BaseModelClass
from scvi.module.base import BaseModuleClass, LossOutput

from celldyn import _keys
from celldyn._compat import registered, state_registry
from celldyn._validate import check_adata, check_expression, check_var_names
from celldyn.models import FitResults
from celldyn.models._data import TensorDataModule
from celldyn.models._inference import batched
from celldyn.models._training import TrainingMixin
from celldyn.tl._fit import train_seeded, write_fit

VELOCITY = "velocity"


# ---------------------------------------------------------------- module/_linear.py
class LinearModule(BaseModuleClass):
    """Torch side: a linear drift ``v = x A + b`` and its squared error."""

    def __init__(self, n_genes: int):
        super().__init__()
        self.drift = torch.nn.Linear(n_genes, n_genes)

    def _get_inference_input(self, tensors):
        return {"x": tensors["x"]}

    def inference(self, x):
        return {"v": self.drift(x)}

    def _get_generative_input(self, tensors, inference_outputs):
        return {}

    def generative(self):
        return {}

    def loss(self, tensors, inference_outputs, generative_outputs):
        error = ((inference_outputs["v"] - tensors["v"]) ** 2).mean(1)
        return LossOutput(loss=error.mean(), reconstruction_loss=error)


# ---------------------------------------------------------------- models/_linear.py
class LinearDrift(TrainingMixin, BaseModelClass):
    """AnnData side: setup, train, a getter and what ``tl`` writes."""

    def __init__(self, adata: AnnData):
        super().__init__(adata)
        self.module = LinearModule(adata.n_vars)
        self.init_params_ = self._get_init_params(locals())

    @classmethod
    def setup_anndata(cls, adata: AnnData, **kwargs) -> None:
        setup_method_args = cls._get_setup_method_args(**locals())
        check_adata(adata)
        manager = AnnDataManager(
            fields=[
                LayerField(REGISTRY_KEYS.X_KEY, None, is_count_data=False),
                LayerField(VELOCITY, VELOCITY, is_count_data=False),
            ],
            setup_method_args=setup_method_args,
        )
        manager.register_fields(adata, **kwargs)
        cls.register_manager(manager)

    def _check_adata(self, adata: AnnData) -> None:
        check_adata(adata)
        genes = state_registry(self, REGISTRY_KEYS.X_KEY)["column_names"]
        check_var_names(adata, genes, "the model")
        check_expression(adata, None)

    def train(self, *, max_epochs=60, batch_size=128, lr=3e-2, random_state=0, **lightning_kwargs):
        manager = self.adata_manager
        tensors = {
            "x": torch.as_tensor(manager.get_from_registry(REGISTRY_KEYS.X_KEY)),
            "v": torch.as_tensor(manager.get_from_registry(VELOCITY)),
        }
        datamodule = TensorDataModule(
            tensors, batch_size=batch_size, validation_size=0.1, random_state=random_state
        )
        self._fit(datamodule, max_epochs=max_epochs, lr=lr, **lightning_kwargs)

    def get_velocity(self, adata: AnnData | None = None) -> np.ndarray:
        with registered(self, adata, self._check_adata) as adata:
            x = np.asarray(adata.X, dtype=np.float32)
            self.module.eval()
            return batched(self.module.drift, x, device=self.device)

    @classmethod
    def results(cls, models, key_added: str) -> FitResults:
        (model,) = models
        drift = model.module.drift.weight.detach().cpu().numpy().T  # regulator x target
        return FitResults(
            {"varp": {_keys.varp.weights(key_added): drift}},
            velocity=model.get_velocity(),
        )


# ---------------------------------------------------------------- tl/_linear.py
def linear_drift(adata: AnnData, *, random_state=0, key_added="linear", copy=False, **train):
    check_adata(adata)
    check_expression(adata, None)
    if VELOCITY not in adata.layers:
        raise KeyError(f"adata.layers has no {VELOCITY!r}.")
    work = AnnData(X=adata.X, layers={VELOCITY: adata.layers[VELOCITY]}, var=adata.var[[]])
    LinearDrift.setup_anndata(work)
    model = train_seeded(random_state, lambda: LinearDrift(work), **train)
    results = LinearDrift.results([model], key_added)
    params = {"random_state": random_state}
    return write_fit(adata, [model], results, key_added=key_added, params=params, copy=copy)


# ---------------------------------------------------------------- the checks
@pytest.fixture
def linear_data():
    rng = np.random.default_rng(0)
    n_genes = 6
    a = -np.eye(n_genes) + 0.4 * rng.normal(size=(n_genes, n_genes)) * (
        rng.random((n_genes, n_genes)) < 0.3
    )
    x = rng.normal(size=(600, n_genes)).astype(np.float32)
    v = (x @ a).astype(np.float32)
    return AnnData(X=x, layers={VELOCITY: v}), a


def test_a_toy_method_trains_and_writes_through_the_shared_path(linear_data):
    adata, truth = linear_data
    before = set(adata.uns)
    linear_drift(adata, max_epochs=80, progress=False)
    learnt = adata.varp["linear_weights"]
    assert np.abs(learnt - truth).max() < 0.05  # the drift it was given
    assert np.corrcoef(learnt.ravel(), truth.ravel())[0, 1] > 0.99
    assert adata.uns["linear"]["params"] == {"random_state": 0}
    assert len(adata.uns["linear"]["history"]["train_loss"]) == 80
    velocity = adata.layers["linear_velocity"]
    assert np.abs(velocity - adata.X @ truth).max() < 0.2
    assert adata.uns["linear_velocity_params"]["xkey"] == "Ms"
    assert not {k for k in adata.uns if k.startswith("_scvi")} - before  # not registered


def test_a_toy_method_getter_checks_before_registering(linear_data):
    adata, _ = linear_data
    LinearDrift.setup_anndata(adata)
    model = LinearDrift(adata)
    model.train(max_epochs=2, progress=False)
    other = AnnData(X=np.zeros((5, adata.n_vars), np.float32))
    other.var_names = [f"g{i}" for i in range(adata.n_vars)]
    with pytest.raises(ValueError, match="the model"):
        model.get_velocity(other)
    assert dict(other.uns) == {}  # scvi-tools registered nothing
    assert model.get_velocity(adata[:5].copy()).shape == (5, adata.n_vars)
