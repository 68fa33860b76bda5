"""Time of the whole FLeCS fit (``tl.flecs`` defaults) at 1,000-4,000 genes, stage by stage.

Data: ``datasets.simulate_grn(n_genes, 2000, 5)`` (its expression as simulated), ``sc.pp.pca(20)``,
``pp.time_groups``, ``pp.trajectories(method='knn')`` (1,000 paths of 10 cells, the
defaults) and a prior of the true edges plus random ones up to ``--edges-per-gene`` edges per
gene (BEELINE mESC: 6,893 edges on 896 genes, about 8 per gene). Stages, timed separately in
one process with one torch thread: the OT velocities (``pp._ot_velocities``), the warm start
(``--warm-start``: the default closed-form linear fit, or the former default, 500 L-BFGS
iterations of the sigmoid model) and the epochs of the trajectory fit (the median
epoch of ``--epochs`` epochs, so the default 100-epoch fit is extrapolated). A reference
row times the same stages at the same size with the fixed-step ``rk4`` solver
(``step_size`` = the mean gap between trajectory times).

Run ``OMP_NUM_THREADS=1 python benchmarks/flecs_scale.py [--genes 1000 2000 4000]``.
"""

from __future__ import annotations

import argparse
import logging
import resource
import time
import warnings

import numpy as np
import scanpy as sc
import torch

import celldyn as cd
from celldyn.models import FLeCS
from celldyn.module import fit_linear, fit_velocities


class EpochTimer:
    """Lightning callback recording the wall time of every training epoch."""

    def __init__(self):
        from lightning.pytorch.callbacks import Callback

        timer = self

        class _Callback(Callback):
            def on_train_epoch_start(self, trainer, module):
                timer.start = time.perf_counter()

            def on_train_epoch_end(self, trainer, module):
                timer.seconds.append(time.perf_counter() - timer.start)

        self.seconds: list[float] = []
        self.callback = _Callback()


def prepared(n_genes: int, edges_per_gene: float, seed: int = 0):
    adata = cd.datasets.simulate_grn(n_genes, 2000, 5, random_state=seed)
    net = adata.uns["ground_truth_network"]
    density = max(edges_per_gene / n_genes, len(net) / n_genes**2)
    cd.pp.prior_network(adata, net, add_random_edges=density, random_state=seed)
    sc.pp.pca(adata, n_comps=20)
    cd.pp.time_groups(adata, time_key="time")
    cd.pp.trajectories(adata, method="knn", random_state=seed)
    return adata


def peak_memory_gib() -> float:
    """Peak resident memory of this process so far (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def stages(
    adata, epochs: int, warm_start: str = "linear", warm_iters: int = 500, **train
) -> dict[str, float]:
    FLeCS.setup_anndata(adata)
    model = FLeCS(adata)
    start = time.perf_counter()
    targets = model._ot_targets(model._rows(adata), 0)
    points, velocities = targets.batch(np.arange(len(targets)))
    ot_s = time.perf_counter() - start
    start = time.perf_counter()
    if warm_start == "linear":
        fit_linear(model.module.field, points, velocities)
        warm_s = time.perf_counter() - start
    else:
        fit_velocities(model.module.field, points, velocities, max_iter=warm_iters)
        warm_s = (time.perf_counter() - start) * 500 / warm_iters  # the default 500 iterations
    timer = EpochTimer()
    model.train(
        max_epochs=epochs,
        warm_start=None,
        accelerator="cpu",
        progress=False,
        callbacks=[timer.callback],
        **train,
    )
    epoch_s = float(np.median(timer.seconds))
    return {
        "OT velocities (s)": ot_s,
        "warm start (s)": warm_s,
        "epoch (s)": epoch_s,
        "default fit, 100 epochs (min)": (ot_s + warm_s + 100 * epoch_s) / 60,
        "peak memory (GiB)": peak_memory_gib(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, nargs="+", default=[1000, 2000, 4000])
    parser.add_argument("--edges-per-gene", type=float, default=8.0)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--warm-start",
        choices=["linear", "velocities"],
        default="linear",
        help="the default closed-form start, or 500 L-BFGS iterations of the sigmoid model",
    )
    parser.add_argument(
        "--warm-iters",
        type=int,
        default=500,
        help="L-BFGS iterations timed with --warm-start velocities (column scaled to 500)",
    )
    parser.add_argument("--solvers", nargs="+", default=["dopri5", "rk4"])
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "celldyn", "scvi"):
        logging.getLogger(name).setLevel(logging.ERROR)
    torch.set_num_threads(1)
    print(
        "| genes | prior edges | solver | OT velocities (s) | warm start (s) | epoch (s) "
        "| default fit, 100 epochs (min) | peak memory (GiB) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for n in args.genes:
        adata = prepared(n, args.edges_per_gene)
        n_edges = adata.varp["celldyn_prior"].nnz
        times = adata.uns["celldyn_trajectories"]["times"]
        gap = float(np.diff(times, axis=1)[np.diff(times, axis=1) > 0].mean())
        solvers = {"dopri5": {}, "rk4": {"method": "rk4", "step_size": gap}}
        for solver in args.solvers:
            row = stages(adata, args.epochs, args.warm_start, args.warm_iters, **solvers[solver])
            cells = " | ".join(f"{v:.2f}" for v in row.values())
            print(f"| {n} | {n_edges} | {solver} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
