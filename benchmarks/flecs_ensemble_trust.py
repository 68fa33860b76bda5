"""Does a FLeCS ensemble's spread say which edges to trust? (issue 13)

For every dataset of ``flecs_grn_recovery.py`` (same generators, priors and README pipeline)
``tl.flecs(n_models=5, resample=True)`` fits five members on bootstrap resamples of the
trajectories and OT targets. Edges are ranked by ``|varp['flecs_effects']|`` (the ensemble
mean); the uncertainty of an edge is its relative spread ``flecs_effects_std / |flecs_effects|``.

Printed per run: the AUROC of the mean ranking and the mean AUROC of the members (what
averaging adds), the AUROC of ranking by a small ``flecs_effects_std`` (are certain edges
more often true?), and the precision of the top-K edges (K = true edges among the
candidates) split at the median relative spread within them: the low-spread half against
the high-spread half.

Run ``OMP_NUM_THREADS=1 python benchmarks/flecs_ensemble_trust.py [--seeds 3]
[--max-epochs 30] [--warm-start velocities] [--only grn,hill]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp
from flecs_grn_recovery import FAMILIES, candidates, prepare, quiet
from sklearn.metrics import roc_auc_score

import celldyn as cd


def edge_values(matrix, cand, genes) -> np.ndarray:
    """Values of a regulator x target matrix on the candidate edges."""
    dense = sp.csr_matrix(matrix).toarray()
    idx = {g: i for i, g in enumerate(genes)}
    return np.array(
        [dense[idx[s], idx[t]] for s, t in zip(cand["source"], cand["target"], strict=True)]
    )


def run(key: str, seed: int, max_epochs: int, warm_start: str) -> dict:
    family = FAMILIES[key]
    adata = prepare(family.load(seed), family, seed)
    cand = candidates(adata)
    truth = adata.uns["ground_truth_network"]
    true = set(zip(truth["source"], truth["target"], strict=True))
    y = np.array([(s, t) in true for s, t in zip(cand["source"], cand["target"], strict=True)])
    start = time.perf_counter()
    cd.tl.flecs(
        adata,
        n_models=5,
        resample=True,
        max_epochs=max_epochs,
        warm_start=warm_start,
        accelerator="cpu",
        progress=False,
    )
    seconds = time.perf_counter() - start
    genes = list(adata.var_names)
    mean = np.abs(edge_values(adata.varp["flecs_effects"], cand, genes))
    std = edge_values(adata.varp["flecs_effects_std"], cand, genes)
    k = int(y.sum())
    top = np.argsort(-mean)[:k]
    spread = std[top] / np.maximum(mean[top], 1e-12)
    low = top[spread <= np.median(spread)]
    high = top[spread > np.median(spread)]
    return {
        "dataset": f"{key} {seed}",
        "AUROC mean": roc_auc_score(y, mean),
        "AUROC small sd": roc_auc_score(y, -std),
        "top-K precision": y[top].mean(),
        "low-spread half": y[low].mean(),
        "high-spread half": y[high].mean(),
        "base rate": y.mean(),
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--warm-start", default="velocities")
    parser.add_argument("--only", default=",".join(FAMILIES))
    args = parser.parse_args()
    quiet()
    for key in args.only.split(","):
        seeds = range(args.seeds) if FAMILIES[key].seeded else [0]
        for seed in seeds:
            row = run(key, seed, args.max_epochs, args.warm_start)
            print(
                " | ".join(
                    f"{k}: {v:.3f}" if isinstance(v, float) else f"{k}: {v}" for k, v in row.items()
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
