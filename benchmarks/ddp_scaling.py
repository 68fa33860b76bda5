"""Cell-MNN time per epoch and peak memory against the number of cells, on 1 or more processes.

Data: snapshots of a 5-dimensional linear flow ``dz/dt = A z`` (``A`` a damped rotation plus
a slow drift) at 5 times, the same number of cells at every time, stored as
``obsm['X_pca']`` (Cell-MNN reads only that and ``obs['time']``) and as ``X``. Every size
runs in a fresh Python process (``--devices 2``: two CPU processes under ``strategy='ddp'``,
Lightning's gloo backend) that fits a default :class:`celldyn.models.CellMNN` (batch 256
start cells per process, 256 partners) for ``--epochs`` epochs and reports the mean wall time
of an epoch after the first (which includes Lightning's start) and the peak resident memory
of each process (``ru_maxrss``).

    python benchmarks/ddp_scaling.py                          # 10k, 100k, 1M cells, 1 process
    python benchmarks/ddp_scaling.py --cells 100000 --devices 2
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile

import numpy as np


def _snapshots(n_cells: int, seed: int = 0):
    """AnnData of ``n_cells`` cells of a linear flow at 5 times, in ``obsm['X_pca']``."""
    import anndata as ad
    import pandas as pd
    import scipy.linalg as sl

    rng = np.random.default_rng(seed)
    operator = -0.2 * np.eye(5)
    operator[0, 1], operator[1, 0], operator[2, 3] = 1.0, -1.0, 0.5
    times = np.repeat(np.arange(5.0), -(-n_cells // 5))[:n_cells]
    z0 = np.array([2.0, 1.5, 1.0, 0.5, 0.0]) + rng.normal(size=(n_cells, 5))
    z = np.empty_like(z0)
    for t in np.unique(times):
        cells = times == t
        z[cells] = z0[cells] @ sl.expm(operator * t).T
    obs = pd.DataFrame({"time": times}, index=[f"c{i}" for i in range(n_cells)])
    z = z.astype(np.float32)
    return ad.AnnData(z, obs=obs, obsm={"X_pca": z})  # X: the states as 5 "genes"


def one(n_cells: int, devices: int, epochs: int) -> None:
    """Fit and print ``rank cells devices seconds_per_epoch peak_MiB`` (run by :func:`main`)."""
    import torch
    from _timing import EpochTimes, peak_mib

    from celldyn.models import CellMNN

    torch.set_num_threads(1)

    adata = _snapshots(n_cells)
    CellMNN.setup_anndata(adata, time_key="time", n_components=5)
    torch.manual_seed(0)
    model = CellMNN(adata)
    timer = EpochTimes()
    device = {"accelerator": "cpu", "devices": devices, "progress": False}
    if devices > 1:
        device["strategy"] = "ddp"
    model.train(max_epochs=epochs, callbacks=[timer], **device)
    per_epoch = np.mean(np.subtract(timer.ends, timer.starts)[1:])
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    peak = peak_mib()
    print(f"RESULT {rank} {n_cells} {devices} {per_epoch:.3f} {peak:.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--devices", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one(args.cells[0], args.devices, args.epochs)
        return
    print("cells  processes  s/epoch  steps/epoch/process  peak MiB per process")
    for n in args.cells:
        command = [sys.executable, __file__, "--one", "--cells", str(n)]
        command += ["--devices", str(args.devices), "--epochs", str(args.epochs)]
        with tempfile.TemporaryDirectory() as logs:  # scvi-tools writes ./lightning_logs (DDP)
            done = subprocess.run(command, cwd=logs, capture_output=True, text=True, check=True)
        rows = [line.split()[1:] for line in done.stdout.splitlines() if line.startswith("RESULT")]
        seconds = max(float(r[3]) for r in rows)
        peaks = "/".join(r[4] for r in sorted(rows))
        # training start cells: 90 % of the cells of the 4 earliest times
        steps = int(np.ceil(0.9 * n * 4 / 5 / args.devices / 256))
        print(f"{n:>9,}  {args.devices:>2}  {seconds:8.2f}  {steps:>6}  {peaks}", flush=True)


if __name__ == "__main__":
    main()
