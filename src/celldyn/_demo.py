"""``celldyn demo``: the end-to-end job on built-in simulated data."""

from __future__ import annotations

import json
from pathlib import Path

from . import _keys
from ._logging import logger


def run_demo(output: Path, *, n_cells: int = 2000, random_state: int = 0) -> Path:
    """Simulate a branching time course, preprocess it, extract trajectories, plot, save.

    Parameters
    ----------
    output
        Folder for ``demo.h5ad``, ``summary.json`` and the figures.
    n_cells
        Number of simulated cells.
    random_state
        Seed of the simulation and of every random step.

    Returns
    -------
    Path of the written ``demo.h5ad``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scanpy as sc

    from . import datasets, metrics, pl, pp

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    logger.info("simulating %d cells of a branching 30-gene network", n_cells)
    adata = datasets.simulate_grn(
        n_genes=30,
        n_cells=n_cells,
        n_timepoints=8,
        branching=True,
        counts=True,
        random_state=random_state,
    )
    truth = adata.uns[_keys.GROUND_TRUTH_NETWORK]
    pp.recipe(adata, n_top_genes=adata.n_vars, denoise="knn", random_state=random_state)
    sc.pp.neighbors(adata, n_neighbors=30, random_state=random_state)
    sc.tl.umap(adata, random_state=random_state)
    pp.time_groups(adata, time_key=_keys.SAMPLE_TIME)
    pp.trajectories(adata, method="knn", n_trajectories=1000, length=10, random_state=random_state)
    pp.prior_network(adata, truth, weight="weight")
    quality = metrics.trajectory_quality(adata)

    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    sc.pl.umap(adata, color=_keys.LINEAGE, legend_loc="on data", ax=axes[0], show=False)
    pl.trajectories(adata, basis="umap", ax=axes[1])
    pl.velocity_stream(
        adata,
        vkey=_keys.TRUE_VELOCITY,
        basis="umap",
        xkey=_keys.LOG_NORMALIZED,
        color=_keys.TIME,
        ax=axes[2],
        title="true velocity",
    )
    fig.savefig(output / "demo.png", dpi=120, bbox_inches="tight")
    plt.close(fig)

    summary = {
        "n_cells": adata.n_obs,
        "n_genes": adata.n_vars,
        "n_time_groups": int(adata.obs[_keys.TIME].nunique()),
        "n_trajectories": int(len(adata.uns[_keys.TRAJECTORIES]["indices"])),
        "prior_edges": int(adata.uns[_keys.PRIOR]["n_edges"]),
        "trajectory_quality": {k: float(v) for k, v in quality["summary"].items()},
    }
    (output / "summary.json").write_text(json.dumps(summary, indent=2))
    path = output / "demo.h5ad"
    adata.write_h5ad(path)
    logger.info("wrote %s, %s and %s", path, output / "demo.png", output / "summary.json")
    return path
