"""The shared Lightning training path, on a model whose optimum is known (least squares)."""

import anndata as ad
import numpy as np
import pytest
import torch
from scvi import REGISTRY_KEYS
from scvi.data import AnnDataManager
from scvi.data.fields import LayerField
from scvi.model.base import BaseModelClass
from scvi.module.base import BaseModuleClass, LossOutput

from celldyn.models._data import TensorDataModule
from celldyn.models._training import TrainingMixin
from celldyn.nn import SolverDivergedError


class _LinearModule(BaseModuleClass):
    def __init__(self, n_in):
        super().__init__()
        self.beta = torch.nn.Parameter(torch.zeros(n_in))

    def _get_inference_input(self, tensors):
        return {"x": tensors["x"]}

    def inference(self, x):
        return {"pred": x @ self.beta}

    def _get_generative_input(self, tensors, inference_outputs):
        return {}

    def generative(self):
        return {}

    def loss(self, tensors, inference_outputs, generative_outputs):
        per_sample = (inference_outputs["pred"] - tensors["y"]) ** 2
        return LossOutput(loss=per_sample.mean(), reconstruction_loss=per_sample)


class _LinearModel(TrainingMixin, BaseModelClass):
    def __init__(self, adata):
        super().__init__(adata)
        self.module = _LinearModule(adata.n_vars)
        self.init_params_ = self._get_init_params(locals())

    @classmethod
    def setup_anndata(cls, adata, **kwargs):
        args = cls._get_setup_method_args(**locals())
        manager = AnnDataManager(
            fields=[LayerField(REGISTRY_KEYS.X_KEY, None, is_count_data=False)],
            setup_method_args=args,
        )
        manager.register_fields(adata, **kwargs)  # `load` passes the source registry
        cls.register_manager(manager)

    def train(self, x, y, **kwargs):
        data = TensorDataModule({"x": x, "y": y}, batch_size=64, validation_size=0.2)
        self._fit(data, progress=False, **kwargs)


@pytest.fixture
def regression():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3)).astype(np.float32)
    beta = np.array([1.5, -2.0, 0.5], dtype=np.float32)
    y = x @ beta + 0.01 * rng.normal(size=400).astype(np.float32)
    adata = ad.AnnData(x)
    _LinearModel.setup_anndata(adata)
    return _LinearModel(adata), torch.from_numpy(x), torch.from_numpy(y), beta


def test_fit_recovers_least_squares_solution(regression):
    model, x, y, beta = regression
    model.train(x, y, max_epochs=60, lr=0.05, accelerator="cpu")
    np.testing.assert_allclose(model.module.beta.detach().numpy(), beta, atol=0.02)
    history = model.history["validation_loss"].to_numpy().ravel()
    assert history[-1] < 0.01 * history[0]
    assert model.is_trained


def test_early_stopping_stops_before_max_epochs(regression):
    model, x, y, _ = regression
    model.train(
        x,
        y,
        max_epochs=500,
        lr=0.05,
        accelerator="cpu",
        early_stopping=True,
        early_stopping_patience=3,
    )
    assert len(model.history["train_loss"]) < 500


def test_divergence_is_reported(regression):
    model, x, y, _ = regression
    y = y.clone()
    y[0] = float("nan")
    with pytest.raises(SolverDivergedError, match="beta"):
        model.train(x, y, max_epochs=2, lr=0.05, accelerator="cpu")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"max_epochs": 0, "lr": 0.1}, "max_epochs"), ({"max_epochs": 1, "lr": -1.0}, "lr")],
)
def test_bad_training_arguments(regression, kwargs, match):
    model, x, y, _ = regression
    with pytest.raises(ValueError, match=match):
        model.train(x, y, accelerator="cpu", **kwargs)


def test_datamodule_split_and_errors():
    data = TensorDataModule({"a": torch.arange(10), "b": torch.zeros(10, 2)}, validation_size=0.3)
    assert (data.n_train, data.n_val) == (7, 3)
    assert set(data.train_idx) | set(data.val_idx) == set(range(10))
    with pytest.raises(ValueError, match="same length"):
        TensorDataModule({"a": torch.zeros(3), "b": torch.zeros(4)})


def test_minibatches_are_whole_and_split_across_ranks():
    """A minibatch is one indexing of every tensor; under DDP Lightning's distributed sampler
    splits the samples between ranks and keeps the batch size."""
    from lightning.pytorch.utilities.data import _update_dataloader
    from torch.utils.data import DistributedSampler

    tensors = {"x": torch.arange(100.0)[:, None], "code": torch.arange(100)}
    loader = TensorDataModule(tensors, batch_size=16, validation_size=0.0).train_dataloader()
    batches = list(loader)
    assert [len(b["x"]) for b in batches] == [16] * 6 + [4]
    for b in batches:
        torch.testing.assert_close(b["x"][:, 0].long(), b["code"])
    seen = []
    for rank in (0, 1):
        sampler = DistributedSampler(loader.dataset, num_replicas=2, rank=rank, seed=0)
        ranked = list(_update_dataloader(loader, sampler))
        assert [len(b["x"]) for b in ranked] == [16, 16, 16, 2]
        seen.append(torch.cat([b["code"] for b in ranked]))
    assert sorted(torch.cat(seen).tolist()) == list(range(100))


def test_adam_eps_default_fits_small_gradients(regression):
    """Gradients of order 1e-3 move Adam at full speed with ``ADAM_EPS``; scvi's 0.01 stalls."""
    model, x, _, beta = regression
    small = beta * 1e-3
    y = x @ torch.from_numpy(small)
    model.train(x, y, max_epochs=60, lr=2e-5, accelerator="cpu")
    error = np.abs(model.module.beta.detach().numpy() - small).max()
    model.module.beta.data.zero_()
    model.train(x, y, max_epochs=60, lr=2e-5, accelerator="cpu", plan_kwargs={"eps": 0.01})
    error_scvi_eps = np.abs(model.module.beta.detach().numpy() - small).max()
    assert error < 1e-4
    assert error_scvi_eps > 5 * error


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip", "other_zip"])
@pytest.mark.parametrize("prefix", [None, "run1_"])
def test_load_of_a_corrupted_model_file_names_the_file(regression, tmp_path, damage, prefix):
    """Every model's ``load`` (shared in TrainingMixin) turns torch's unpickling errors on a
    damaged ``model.pt`` into a ValueError naming the file; an intact file loads."""
    import zipfile

    model, _, _, _ = regression
    model.save(tmp_path / "m", overwrite=True, prefix=prefix)
    loaded = _LinearModel.load(tmp_path / "m", adata=model.adata, prefix=prefix)
    torch.testing.assert_close(loaded.module.beta, model.module.beta)
    path = tmp_path / "m" / f"{prefix or ''}model.pt"
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x80\x02garbage" * 20)
    elif damage == "flip":  # same size, one byte of the pickled data changed
        with zipfile.ZipFile(path) as archive:
            info = next(i for i in archive.infolist() if i.filename.endswith("data.pkl"))
        header = info.header_offset  # local header: 30 bytes, the name, then an extra field
        extra = int.from_bytes(data[header + 28 : header + 30], "little")
        data[header + 30 + len(info.filename) + extra + 5] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("notes.txt", "not a model")
    with pytest.raises(ValueError, match=rf"Cannot load a _LinearModel from '.*{path.name}'"):
        _LinearModel.load(tmp_path / "m", adata=model.adata, prefix=prefix)


def test_load_keeps_errors_that_are_not_the_file(regression, tmp_path):
    model, _, _, _ = regression
    model.save(tmp_path / "m", overwrite=True)
    wrong = ad.AnnData(np.zeros((5, 4), dtype=np.float32))
    with pytest.raises(ValueError) as info:
        _LinearModel.load(tmp_path / "m", adata=wrong)
    assert "Cannot load" not in str(info.value)


def test_lightning_options_fill_defaults_and_check_progress():
    from celldyn.models._training import LIGHTNING_OPTIONS, lightning_options

    assert lightning_options({}) == LIGHTNING_OPTIONS
    options = lightning_options({"strategy": "ddp", "enable_progress_bar": False})
    assert options["progress"] is False and "enable_progress_bar" not in options
    assert options["strategy"] == "ddp" and options["accelerator"] == "auto"
    assert lightning_options({}, early_stopping_patience=20)["early_stopping_patience"] == 20
    assert (
        lightning_options({"early_stopping_patience": 3}, early_stopping_patience=20)[
            "early_stopping_patience"
        ]
        == 3
    )
    with pytest.raises(ValueError, match="`progress`"):
        lightning_options({"progress": "yes"})


@pytest.mark.parametrize("name", ["FLeCS", "FLeCSDrug", "CellMNN", "LCD"])
def test_train_docstrings_carry_the_shared_lightning_options(name):
    import celldyn.models
    from celldyn._docs import doc_lightning_kwargs
    from celldyn.models._training import LIGHTNING_OPTIONS

    doc = getattr(celldyn.models, name).train.__doc__
    assert "{lightning_kwargs}" not in doc
    assert "        **lightning_kwargs\n            Training options" in doc
    for key, default in LIGHTNING_OPTIONS.items():
        assert f"``{key}={default!r}``" in doc_lightning_kwargs


def test_fill_doc_keeps_braces_and_rejects_unknown_markers():
    from celldyn._docs import fill_doc

    def f():
        r"""Math :math:`\sigma(W^\top G)` and {a, b}.

        Parameters
        ----------
        {random_state}
        """

    doc = fill_doc(f).__doc__
    assert r"\sigma(W^\top G)` and {a, b}." in doc
    assert "\n        random_state\n            Seed" in doc

    def g():
        """No marker."""

    def h():
        """Unknown.

        {nope}
        """

    for func in (g, h):
        with pytest.raises(ValueError, match="marker"):
            fill_doc(func)


def test_fill_doc_names_the_plot_in_the_save_entry():
    import celldyn as cd

    doc = cd.pl.network.__doc__
    assert "{scanpy.settings.figdir}/network{plot_suffix}" in doc
    assert "{show_save}" not in doc and "{function_name}" not in doc
    assert "\n    return_fig\n        Return the" in doc  # indented as the other entries
