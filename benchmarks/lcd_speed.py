"""Where LCD's training time goes: the stages of ``LCD.train`` timed on simulated screens.

Stage 1 (latent states and observation model), the posterior draws and gene-scale M-steps,
stage 2 (score matching) and the drift mixing ``K`` are timed separately on
``datasets.simulate_perturbations`` screens (control, every single, ``--doubles`` doubles,
``--cells`` cells each, counts) for every ``--genes`` size, with the package defaults. The
per-epoch costs give the cost model in benchmarks/README.md ("LCD: speed"). ``--sparse``
times stage 1 with one Adam over the whole latent matrix (``False``, the script's default),
with row-sparse updates of the latent states (``True``) or both, back to back in the same
process; with both, the largest difference of the fitted latent states from the dense fit's
is reported too (the row-sparse Adam reproduces dense Adam up to rounding).
``--stage1-only`` skips most of the rest (1 score epoch, 1 mixing step, no draws).
``--steps`` sizes the screens instead of ``--cells``: cells per condition such that stage 1
takes about that many minibatches of ``--batch-size`` per epoch (the crossover of the two
stage-1 paths, which ``sparse_latent='auto'`` chooses between). "stage 1 epoch (s)" is the
median time from the start of one stage-1 epoch to the next (start-up and the last epoch
left out).

    OMP_NUM_THREADS=1 python benchmarks/lcd_speed.py                    # 15 genes, defaults
    OMP_NUM_THREADS=1 python benchmarks/lcd_speed.py --genes 15 100 --epochs 60
    OMP_NUM_THREADS=1 python benchmarks/lcd_speed.py --genes 100 --cells 900 --epochs 10 \
        --sparse False True --stage1-only                               # 99,900 cells
    OMP_NUM_THREADS=1 python benchmarks/lcd_speed.py --genes 15 50 100 --steps 2 4 8 16 25 \
        --epochs 10 --sparse False True --stage1-only                   # crossover
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import numpy as np
import pandas as pd
from lightning.pytorch import Callback


class _EpochClock(Callback):
    """Record the time at the start of every training epoch."""

    def __init__(self):
        self.starts: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.starts.append(time.perf_counter())


def timed_fit(
    n_genes: int,
    cells: int,
    doubles: int,
    epochs: int | None,
    sparse_latent: bool = False,
    stage1_only: bool = False,
    batch_size: int = 4096,
) -> tuple[dict, np.ndarray]:
    """Fit LCD on one screen; seconds of every stage, and the fitted latent states."""
    import torch

    import celldyn as cd
    from celldyn.models import LCD

    adata = cd.datasets.simulate_perturbations(
        n_genes, n_cells=cells, n_doubles=doubles, counts=True, random_state=0
    )
    LCD.setup_anndata(adata, size_factor_key="size_factor")
    torch.manual_seed(0)
    model = LCD(adata)
    stages: list[float] = []
    epochs_clock = _EpochClock()

    def clock(fn, epoch_clock: bool = False):
        def run(*args, **kwargs):
            if epoch_clock and not stages:  # stage 1
                kwargs["model_callbacks"] = [epochs_clock, *kwargs["model_callbacks"]]
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            stages.append(time.perf_counter() - start)
            return out

        return run

    model._fit = clock(model._fit, epoch_clock=True)
    model.module.posterior_draws = clock(model.module.posterior_draws)
    model.module.fit_mixing = clock(model.module.fit_mixing)
    kwargs = {} if epochs is None else {"max_epochs": epochs, "score_epochs": epochs}
    if stage1_only:
        kwargs.update(score_epochs=1, mixing_steps=1, posterior_draws=0)
    start = time.perf_counter()
    model.train(
        accelerator="cpu",
        progress=False,
        sparse_latent=sparse_latent,
        batch_size=batch_size,
        **kwargs,
    )
    total = time.perf_counter() - start
    observation, *draws, score, mixing = stages
    row = {
        "genes": n_genes,
        "cells": adata.n_obs,
        "steps per epoch": -(-adata.n_obs // batch_size),
        "epochs": epochs or 300,
        "sparse_latent": sparse_latent,
        "stage 1 (s)": observation,
        "stage 1 per epoch (s)": observation / (epochs or 300),
        "stage 1 epoch (s)": float(np.median(np.diff(epochs_clock.starts))),
        "draws + scale steps (s)": sum(draws),
        "stage 2 (s)": score,
        "mixing K (s)": mixing,
        "total (s)": total,
    }
    return row, model.get_latent()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, nargs="+", default=[15])
    parser.add_argument("--cells", type=int, default=250, help="cells per condition")
    parser.add_argument(
        "--steps",
        type=int,
        nargs="+",
        default=None,
        help="stage-1 minibatches per epoch (sizes the screens; replaces --cells)",
    )
    parser.add_argument("--batch-size", type=int, default=4096, help="stage 1")
    parser.add_argument("--doubles", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=None, help="both stages; default 300")
    parser.add_argument(
        "--sparse", nargs="+", default=["False"], choices=["True", "False"], help="sparse_latent"
    )
    parser.add_argument("--stage1-only", action="store_true")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    rows = []
    for g in args.genes:
        conditions = 1 + g + args.doubles
        # a little under `steps` full minibatches, so that the last one is nearly full
        sizes = (
            [args.cells]
            if args.steps is None
            else [int(0.98 * s * args.batch_size / conditions) for s in args.steps]
        )
        for cells in sizes:
            dense = None
            for sparse in args.sparse:
                row, latent = timed_fit(
                    g,
                    cells,
                    args.doubles,
                    args.epochs,
                    sparse == "True",
                    args.stage1_only,
                    args.batch_size,
                )
                if sparse == "False":
                    dense = latent
                elif dense is not None:
                    row["max |latent - dense|"] = f"{np.abs(latent - dense).max():.1e}"
                rows.append(row)
    print(pd.DataFrame(rows).round(3).to_markdown(index=False))


if __name__ == "__main__":
    main()
