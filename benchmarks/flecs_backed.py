"""FLeCS from a backed h5ad against in memory: peak memory and time per epoch, by cells.

Data: ``--cells`` cells × ``--genes`` genes of float32 expression at 5 time groups (each
gene's mean drifts with time, plus noise), written once per size to a dense h5ad in
``--dir``; ``obsm['X_pca']`` a 10-dimensional random projection of it; a random prior of 5
regulators per target; 1,000 random trajectories of 5 cells, one per time group. Every
(size, mode) runs in a fresh Python process with one torch thread, which opens the file
backed (``read_h5ad(path, backed='r')``) or reads it into memory and fits a default
:class:`celldyn.models.FLeCS` (OT velocity targets, linear warm start, velocity term;
batch 64) for ``--epochs`` epochs. The OT minibatches are 1,000 cells (``OT_MAX_CELLS``;
5,000 by default) so that the OT plans, the same in both modes, take seconds. It prints
the seconds before the first epoch (OT plans, velocity scale and linear warm start), the
median seconds of the later epochs, and the peak resident memory of the process
(``ru_maxrss``) with the part taken before the data were opened (imports).

    python benchmarks/flecs_backed.py                           # 20k, 100k, 400k cells
    python benchmarks/flecs_backed.py --cells 20000 --genes 300
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def write_data(path: Path, n_cells: int, n_genes: int, seed: int = 0) -> None:
    """Write the benchmark data set (module docstring) to ``path``, block by block."""
    import anndata as ad
    import h5py
    import pandas as pd
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(5), -(-n_cells // 5))[:n_cells]
    drift = rng.normal(size=(5, n_genes)).cumsum(0).astype(np.float32)
    projection = rng.normal(size=(n_genes, 10)).astype(np.float32) / np.sqrt(n_genes)
    sources = np.concatenate([rng.choice(n_genes, 5, replace=False) for _ in range(n_genes)])
    prior = sp.csr_matrix(
        (np.ones(len(sources), np.float32), (sources, np.repeat(np.arange(n_genes), 5))),
        shape=(n_genes, n_genes),
    )
    members = [np.flatnonzero(groups == g) for g in range(5)]
    indices = np.stack([rng.choice(m, 1000) for m in members], axis=1)
    obs = pd.DataFrame({"time": groups.astype(float)}, index=[f"c{i}" for i in range(n_cells)])
    shell = ad.AnnData(
        obs=obs,
        var=pd.DataFrame(index=[f"g{i}" for i in range(n_genes)]),
        obsm={"X_pca": np.zeros((n_cells, 10), np.float32)},
        varp={"celldyn_prior": prior},
        uns={
            "celldyn_trajectories": {
                "indices": indices,
                "times": np.tile(np.arange(5.0), (1000, 1)),
                "params": {"time_key": "time", "rep": "X_pca"},
            }
        },
    )
    shell.write_h5ad(path)  # no X: written below, 50,000 cells at a time
    with h5py.File(path, "r+") as file:
        x = file.create_dataset("X", (n_cells, n_genes), np.float32)
        x.attrs.update({"encoding-type": "array", "encoding-version": "0.2.0"})
        for start in range(0, n_cells, 50_000):
            rows = slice(start, min(start + 50_000, n_cells))
            block = drift[groups[rows]] + rng.normal(size=(rows.stop - start, n_genes))
            x[rows] = block.astype(np.float32)
            file["obsm/X_pca"][rows] = x[rows] @ projection


def one(path: str, mode: str, epochs: int) -> None:
    """Fit and print ``mode before_s epoch_s peak_MiB imports_MiB`` (run by :func:`main`)."""
    import anndata as ad
    import torch
    from _timing import EpochTimes, peak_mib

    import celldyn.pp._ot_velocities as ot
    from celldyn.models import FLeCS

    torch.set_num_threads(1)
    ot.OT_MAX_CELLS = 1000
    imports = peak_mib()

    adata = ad.read_h5ad(path, backed="r" if mode == "backed" else None)
    FLeCS.setup_anndata(adata)
    model = FLeCS(adata)
    timer = EpochTimes()
    start = time.perf_counter()
    model.train(
        max_epochs=epochs,
        validation_size=0.0,
        accelerator="cpu",
        progress=False,
        callbacks=[timer],
    )
    epoch_s = np.median(np.subtract(timer.ends, timer.starts)[1:])
    before_s = timer.starts[0] - start
    print(f"{mode} {before_s:.1f} {epoch_s:.2f} {peak_mib():.0f} {imports:.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, nargs="+", default=[20_000, 100_000, 400_000])
    parser.add_argument("--genes", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--dir", default="/tmp")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args.one[0], args.one[1], args.epochs)
        return
    print("cells genes mode before_first_epoch_s epoch_s peak_MiB imports_MiB")
    for n_cells in args.cells:
        path = Path(args.dir) / f"flecs_backed_{n_cells}x{args.genes}.h5ad"
        if not path.exists():
            write_data(path, n_cells, args.genes)
        for mode in ("memory", "backed"):
            command = [sys.executable, __file__, "--one", str(path), mode]
            out = subprocess.run(
                [*command, "--epochs", str(args.epochs)], capture_output=True, text=True
            )
            if out.returncode:
                sys.exit(out.stderr)
            print(n_cells, args.genes, out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
