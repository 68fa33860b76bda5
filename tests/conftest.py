import importlib.util
import os

os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = next(
    (p for p in (_ROOT.parent / "shared" / "data", _ROOT / "shared" / "data") if p.is_dir()), None
)
"""The project's copies of real datasets (``../shared/data``), or ``None`` where absent."""


def _shared_folder(name: str) -> Path:
    if SHARED_DATA is None or not (SHARED_DATA / name).is_dir():
        pytest.skip(f"real data ../shared/data/{name} not found")
    return SHARED_DATA / name


@pytest.fixture(scope="session")
def shared_data():
    """``shared_data(name)``: folder ``name`` of the real data; skips the test where absent."""
    return _shared_folder


@pytest.fixture(scope="session")
def ddp_fits():
    """``tests/models/_ddp_fits.py`` as a module: ``run`` fits every model under DDP, ``check``
    compares with one process."""
    spec = importlib.util.spec_from_file_location(
        "_ddp_fits", _ROOT / "tests" / "models" / "_ddp_fits.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def _curve_adata():
    """Cells on a 4-gene curve with their exact velocity, a UMAP stand-in and neighbors."""
    import scanpy as sc

    rng = np.random.default_rng(0)
    t = rng.uniform(0, 1, 300)
    x = np.stack([t, np.sin(3 * t), 0.1 * rng.normal(size=300), t**2], 1)
    x += 0.01 * rng.normal(size=x.shape)
    v = np.stack([np.ones(300), 3 * np.cos(3 * t), np.zeros(300), 2 * t], 1)
    adata = ad.AnnData(x.astype(np.float32))
    adata.layers["true_velocity"] = v.astype(np.float32)
    adata.obsm["X_umap"] = x[:, :2].copy()
    adata.obs["t"] = t
    sc.pp.neighbors(adata, use_rep="X", n_neighbors=15)
    return adata


@pytest.fixture
def curve_adata(_curve_adata):
    return _curve_adata.copy()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's model fits on one torch thread (small ops on 2 busy cores stall otherwise)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _dense(x):
    if isinstance(x, pd.DataFrame):
        return x.to_numpy()
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def _check_unchanged(adata: ad.AnnData, before: ad.AnnData) -> None:
    pd.testing.assert_frame_equal(adata.obs, before.obs)
    pd.testing.assert_frame_equal(adata.var, before.var)
    assert set(adata.uns) == set(before.uns)
    for slot in ("obsm", "varm", "layers", "obsp", "varp"):
        now, then = getattr(adata, slot), getattr(before, slot)
        assert set(now) == set(then), slot
        for key in then:
            np.testing.assert_array_equal(_dense(now[key]), _dense(then[key]), err_msg=key)
    np.testing.assert_array_equal(_dense(adata.X), _dense(before.X))


@pytest.fixture(scope="session")
def assert_unchanged():
    """``assert_unchanged(adata, before)``: ``adata`` equals its deep copy ``before``.

    Compares ``obs`` and ``var`` (columns and values), the keys of ``uns`` and the keys and
    values of ``obsm``, ``varm``, ``layers``, ``obsp``, ``varp`` and ``X`` (NaN equals NaN).
    """
    return _check_unchanged
