"""The same fits on CUDA as on CPU (marker ``gpu``; run with ``pytest -m gpu`` on a GPU machine)."""

import numpy as np
import pytest
import torch

import celldyn as cd

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]

TRAIN = {"max_epochs": 15, "progress": False, "random_state": 0}


def _fit_on_both(fit):
    """Fit on CPU and on one GPU from the same seed; return both results."""
    return fit(accelerator="cpu", devices=1), fit(accelerator="gpu", devices=1)


def _final_loss(adata, key):
    return adata.uns[key]["history"]["train_loss"][-1]


def test_flecs_fits_the_same_on_gpu():
    adata = cd.datasets.simulate_grn(8, 200, 4, random_state=0)
    net = adata.uns["ground_truth_network"]
    cd.pp.prior_network(adata, net, add_random_edges=2 * len(net) / 64)
    cd.pp.time_groups(adata, time_key="time")
    cd.pp.trajectories(adata, method="quantile", rep="X", n_trajectories=60, length=4)

    def fit(**device):
        return cd.tl.flecs(adata, batch_size=32, lr=0.05, copy=True, **TRAIN, **device)

    cpu, gpu = _fit_on_both(fit)
    assert _final_loss(gpu, "flecs") == pytest.approx(_final_loss(cpu, "flecs"), rel=0.1)
    assert np.isfinite(gpu.layers["flecs_velocity"]).all()
    np.testing.assert_allclose(
        gpu.layers["flecs_velocity"], cpu.layers["flecs_velocity"], atol=0.05, rtol=0.1
    )


def test_cellmnn_fits_the_same_on_gpu():
    import scanpy as sc

    adata = cd.datasets.simulate_grn(10, 400, 4, random_state=0)
    sc.pp.pca(adata, n_comps=5)

    def fit(**device):
        return cd.tl.cellmnn(
            adata, time_key="time", n_components=4, batch_size=128, copy=True, **TRAIN, **device
        )

    cpu, gpu = _fit_on_both(fit)
    assert _final_loss(gpu, "cellmnn") == pytest.approx(_final_loss(cpu, "cellmnn"), rel=0.2)
    assert np.isfinite(gpu.obsm["cellmnn_operator"]).all()
    corr = np.corrcoef(gpu.obsm["velocity_cellmnn"].ravel(), cpu.obsm["velocity_cellmnn"].ravel())
    assert corr[0, 1] > 0.9


def test_lcd_fits_the_same_on_gpu():
    screen = cd.datasets.simulate_perturbations(6, n_cells=100, counts=True, random_state=0)

    def fit(**device):
        return cd.tl.lcd(screen, score_epochs=15, batch_size=128, copy=True, **TRAIN, **device)

    cpu, gpu = _fit_on_both(fit)
    for stage in ("observation", "score"):
        key = f"{stage}_train_loss"
        losses = gpu.uns["lcd"]["history"][key][-1], cpu.uns["lcd"]["history"][key][-1]
        assert losses[0] == pytest.approx(losses[1], rel=0.2), stage
    assert np.isfinite(gpu.obsm["X_lcd"]).all()
    corr = np.corrcoef(gpu.obsm["X_lcd"].ravel(), cpu.obsm["X_lcd"].ravel())
    assert corr[0, 1] > 0.9


MODELS = ("flecs", "flecs_drug", "cellmnn", "lcd")


@pytest.fixture(scope="module")
def cpu_fits(ddp_fits, tmp_path_factory):
    """Every model of ``tests/models/_ddp_fits.py`` fitted in one CPU process."""
    return ddp_fits.run(tmp_path_factory.mktemp("cpu"), 1)


@pytest.fixture(scope="module")
def gpu_fits(ddp_fits, tmp_path_factory):
    """The same fits on one GPU."""
    return ddp_fits.run(tmp_path_factory.mktemp("gpu"), 1, "gpu")


@pytest.fixture(scope="module")
def multi_gpu_fits(ddp_fits, tmp_path_factory):
    """The same fits under DDP on 2 or 4 GPUs (the same global minibatch)."""
    devices = 4 if torch.cuda.device_count() >= 4 else 2
    return ddp_fits.run(tmp_path_factory.mktemp("ddp"), devices, "gpu")


@pytest.mark.parametrize("name", MODELS)
def test_every_model_fits_the_same_on_one_gpu(ddp_fits, cpu_fits, gpu_fits, name):
    ddp_fits.check(name, cpu_fits[name][0], gpu_fits[name])


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="DDP needs at least 2 CUDA devices")
@pytest.mark.parametrize("name", MODELS)
def test_every_model_fits_the_same_under_ddp_on_gpus(ddp_fits, cpu_fits, multi_gpu_fits, name):
    ddp_fits.check(name, cpu_fits[name][0], multi_gpu_fits[name])
