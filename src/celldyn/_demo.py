"""``celldyn demo``: the end-to-end job on built-in simulated data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import _keys
from ._logging import logger
from ._readers import read_prior, read_trajectories

_PRIOR_DENSITY = 0.15  # true edges plus random ones, as a noisy prior (FLeCS paper)


def run_demo(
    output: Path, *, n_cells: int = 2000, max_epochs: int = 30, random_state: int = 0
) -> Path:
    """Simulate a branching time course, fit FLeCS and Cell-MNN, score them, plot, save.

    Steps: simulate a 30-gene network → :func:`celldyn.pp.recipe` → UMAP → time groups →
    kNN trajectories → a noisy prior (true edges plus random ones) → :func:`celldyn.tl.flecs`
    and :func:`celldyn.tl.cellmnn` → network recovery and velocity scores against the truth →
    figures and ``demo.h5ad``.

    Parameters
    ----------
    output
        Folder for ``demo.h5ad``, ``summary.json`` and the figures.
    n_cells
        Number of simulated cells.
    max_epochs
        Training epochs of each model.
    random_state
        Seed of the simulation and of every random step.

    Returns
    -------
    Path of the written ``demo.h5ad``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import scanpy as sc

    from . import datasets, metrics, pp, tl

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
    pp.prior_network(
        adata, truth, weight="weight", add_random_edges=_PRIOR_DENSITY, random_state=random_state
    )
    quality = metrics.trajectory_quality(adata)
    tl.flecs(adata, max_epochs=max_epochs, random_state=random_state, progress=False)
    tl.cellmnn(
        adata,
        time_key=_keys.SAMPLE_TIME,
        n_components=5,
        max_epochs=max_epochs,
        random_state=random_state,
        progress=False,
    )
    _plot(adata, output / "demo.png")

    prior_edges = _prior_edges(adata)
    summary = {
        "n_cells": adata.n_obs,
        "n_genes": adata.n_vars,
        "n_time_groups": int(adata.obs[_keys.TIME].nunique()),
        "n_trajectories": read_trajectories(adata, _keys.TRAJECTORIES).n_trajectories,
        "prior_edges": int(adata.uns[_keys.PRIOR]["n_edges"]),
        "true_edges_in_prior": int(len(truth)),
        "trajectory_quality": {k: float(v) for k, v in quality["summary"].items()},
        "flecs_network_recovery": {
            score: metrics.grn_scores(
                adata.varp[key], truth, genes=adata.var_names, candidates=prior_edges
            )
            for score, key in (
                ("effects", _keys.varp.effects(_keys.FLECS)),
                ("|W|", _keys.varp.weights(_keys.FLECS)),
            )
        },
        "mean_velocity_cosine_to_truth": {
            method: float(
                np.nanmean(
                    metrics.velocity_cosine(
                        adata, _keys.layers.velocity(method), _keys.TRUE_VELOCITY
                    )
                )
            )
            for method in (_keys.FLECS, _keys.CELLMNN)
        },
    }
    for name, value in summary["mean_velocity_cosine_to_truth"].items():
        logger.info("%s velocity: mean cosine to the true velocity %.3f", name, value)
    recovery = summary["flecs_network_recovery"]
    logger.info(
        "FLeCS network: AUROC %.3f (edge effects), %.3f (|W|)",
        recovery["effects"]["auroc"],
        recovery["|W|"]["auroc"],
    )
    (output / "summary.json").write_text(json.dumps(summary, indent=2))
    path = output / "demo.h5ad"
    adata.write_h5ad(path)
    logger.info("wrote %s, %s and %s", path, output / "demo.png", output / "summary.json")
    return path


def _prior_edges(adata):
    """Return the prior network of ``adata`` as a source/target edge list."""
    import pandas as pd

    prior = read_prior(adata, _keys.PRIOR)
    names = adata.var_names.to_numpy()
    return pd.DataFrame({"source": names[prior.src], "target": names[prior.dst]})


def _plot(adata, path: Path) -> None:
    """Lineages, trajectories, and the true, FLeCS and Cell-MNN velocity streams on the UMAP."""
    import matplotlib.pyplot as plt
    import scanpy as sc

    from . import pl

    fig, axes = plt.subplots(2, 3, figsize=(16, 10))
    sc.pl.umap(adata, color=_keys.LINEAGE, legend_loc="on data", ax=axes[0, 0], show=False)
    pl.trajectories(adata, basis="umap", ax=axes[0, 1])
    pl.operators(adata, color=_keys.TIME, ax=axes[0, 2], title="Cell-MNN operators")
    streams = [
        (_keys.TRUE_VELOCITY, _keys.LOG_NORMALIZED, "true velocity"),
        (_keys.layers.velocity(_keys.FLECS), None, "FLeCS velocity"),
        (_keys.layers.velocity(_keys.CELLMNN), None, "Cell-MNN velocity"),
    ]
    for ax, (vkey, xkey, title) in zip(axes[1], streams, strict=True):
        pl.velocity_stream(
            adata, vkey=vkey, basis="umap", xkey=xkey, color=_keys.TIME, ax=ax, title=title
        )
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
