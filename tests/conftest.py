import os

os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path

import anndata as ad
import numpy as np
import pytest

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
