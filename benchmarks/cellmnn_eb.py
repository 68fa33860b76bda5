"""Cell-MNN on the embryoid-body time course with the paper's protocol.

Protocol (von Bassewitz et al. 2025, as in TrajectoryNet / OT-CFM): the first 5 principal
components shipped with ``celldyn.datasets.eb()``, whitened (each centred and divided by its
standard deviation over all cells); leave one time point out for each interior time (labels
1, 2, 3 of 0-4); the model is trained on the other times and the cells of the previous time
are pushed to the held-out one; the score is the exact W1 (``celldyn.metrics.wasserstein``,
all cells, no subsampling) to the observed held-out cells, averaged over the held-out times.
The same baselines as ``cellmnn_interpolation.py`` run on the same splits, and the
two-sided Cell-MNN prediction (forward from ``t_{k-1}`` mixed with backward from ``t_{k+1}``).
Unlike the reference code, which stops training and picks its checkpoint by the W1 on the
held-out time itself, model selection here uses only the training times.

Published means to compare with: Cell-MNN 0.690, OT-CFM 0.790, OT-interpolate 0.749.

    python benchmarks/cellmnn_eb.py                # needs the cached file, ~10-20 min on 2 cores
    python benchmarks/cellmnn_eb.py --download     # fetch it first (needs internet)

Without the cached file (``<cache>/eb_velocity_v5.npz``, see
``celldyn.datasets.get_cache_dir``) the script exits with status 2 and says where to put it.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from cellmnn_interpolation import (
    fit_cellmnn,
    mean_interpolation,
    nearest_copy,
    ot_interpolate,
    two_sided,
)

PUBLISHED = {"cellmnn": 0.690, "ot_cfm": 0.790, "ot_interpolate": 0.749}
EB_FILE = "eb_velocity_v5.npz"


def load_whitened(n_pcs: int, download: bool):
    """Whitened first ``n_pcs`` PCs and times of ``datasets.eb()``; exit 2 if not cached."""
    from celldyn.datasets import eb
    from celldyn.datasets._cache import get_cache_dir
    from celldyn.datasets._online import EB_URL

    path = get_cache_dir() / EB_FILE
    if not path.exists() and not download:
        print(
            f"The embryoid-body data is not cached: {path} does not exist.\n"
            f"Download {EB_URL} to that path (or set CELLDYN_DATA to a folder holding "
            f"{EB_FILE}), or rerun with --download on a machine with internet access.",
            file=sys.stderr,
        )
        sys.exit(2)
    adata = eb()
    z = np.asarray(adata.obsm["X_pca"][:, :n_pcs], dtype=np.float64)
    z = (z - z.mean(0)) / z.std(0)
    return z, adata.obs["time"].to_numpy(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--download", action="store_true")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--n-pcs", type=int, default=5)
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=30)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--n-partners", type=int, default=256)
    parser.add_argument("--lambda-kinetic", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    z, t = load_whitened(args.n_pcs, args.download)

    import logging
    import warnings

    import torch

    from celldyn.metrics import wasserstein

    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    cfg = {
        "max_epochs": args.max_epochs,
        "patience": args.patience,
        "batch_size": args.batch_size,
        "n_partners": args.n_partners,
        "lr": args.lr,
        "lambda_kinetic": args.lambda_kinetic,
    }
    methods = {
        "ot_interpolate": ot_interpolate,
        "mean_interpolation": mean_interpolation,
        "nearest_copy": nearest_copy,
    }
    times = np.unique(t)
    scores: dict[str, list[float]] = {m: [] for m in ["cellmnn", "cellmnn_two_sided", *methods]}
    start = time.perf_counter()
    for seed in range(args.seeds):
        for k in range(1, len(times) - 1):
            observed = z[t == times[k]]
            rng = np.random.default_rng(seed)
            (forward, backward), info = fit_cellmnn(z, t, times, k, seed, cfg)
            mixed = two_sided(forward, backward, times, k, len(observed), rng)
            row = {
                "cellmnn": wasserstein(forward, observed),
                "cellmnn_two_sided": wasserstein(mixed, observed),
            }
            row |= {m: wasserstein(f(z, t, times, k, rng), observed) for m, f in methods.items()}
            for m, value in row.items():
                scores[m].append(value)
            print(
                f"seed {seed} held-out {times[k]:g}: "
                + ", ".join(f"{m} {v:.3f}" for m, v in row.items())
                + f" (Cell-MNN {info['seconds']:.0f} s, {info['epochs']} epochs)",
                flush=True,
            )
    print(f"# {len(z)} cells, total {time.perf_counter() - start:.0f} s")
    print("| method | mean W1 (this run) | published |")
    print("| --- | ---: | ---: |")
    for m, values in scores.items():
        print(f"| {m} | {np.mean(values):.3f} | {PUBLISHED.get(m, '-')} |")


if __name__ == "__main__":
    main()
