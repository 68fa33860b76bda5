"""GEARS-style split of the Norman et al. (2019) screen and unseen-combination scores.

The "simulation" split of GEARS (Roohani et al., 2023): a random quarter of the singly
perturbed genes is unseen; a double is ``seen2``, ``seen1`` or ``seen0`` by how many of its
genes are seen; half of the ``seen2`` doubles (random) and all seen singles are trained on,
everything else is tested. Scores (log-normalized expression, ``celldyn.metrics``) per test
group for LCD (``--lcd``) and the baselines (additive: ``seen2`` only, where both singles are
known; mean shift; no change).

The data come from ``celldyn.datasets.norman19()`` (~1 GB, downloaded once into the celldyn
cache; run with ``--download`` where there is internet). Without the cached file the script
says so and stops. ``--demo`` runs the same pipeline on ``datasets.simulate_perturbations``.

    python benchmarks/norman19_gears_split.py --download --lcd     # the real screen
    python benchmarks/norman19_gears_split.py --demo               # simulated, baselines only
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pandas as pd

from celldyn import _keys
from celldyn._perturbations import split_label

NORMAN_FILE = "NormanWeissman2019_filtered.h5ad"
TARGET_SUM = 1e4


def gears_split(
    labels: list[str], *, unseen_fraction: float = 0.25, train_seen2: float = 0.5, seed: int = 0
) -> pd.Series:
    """Assign each condition label to ``train``, ``test_single``, ``test_seen0/1/2``."""
    rng = np.random.default_rng(seed)
    singles = sorted({g for lab in labels for g in split_label(lab)})
    unseen = set(rng.choice(singles, round(unseen_fraction * len(singles)), replace=False))
    doubles = [lab for lab in labels if len(split_label(lab)) == 2]
    seen2 = [d for d in doubles if not set(split_label(d)) & unseen]
    train_doubles = set(rng.choice(seen2, round(train_seen2 * len(seen2)), replace=False))
    groups = {}
    for lab in labels:
        genes = split_label(lab)
        if not genes:
            groups[lab] = "train"
        elif len(genes) == 1:
            groups[lab] = "test_single" if genes[0] in unseen else "train"
        elif lab in train_doubles:
            groups[lab] = "train"
        else:
            groups[lab] = f"test_seen{sum(g not in unseen for g in genes)}"
    return pd.Series(groups, name="split")


def load_norman(n_top_genes: int):
    """Norman 2019 counts over the top variable genes plus every perturbed gene measured."""
    import scanpy as sc

    from celldyn.datasets import get_cache_dir, norman19

    adata = norman19()
    adata = adata[adata.obs[_keys.PERTURBATION].notna()].copy()
    labels = adata.obs[_keys.PERTURBATION].astype(str)
    perturbed = {g for lab in labels.unique() for g in split_label(lab)}
    work = adata.copy()
    sc.pp.normalize_total(work, target_sum=TARGET_SUM)
    sc.pp.log1p(work)
    sc.pp.highly_variable_genes(work, n_top_genes=n_top_genes)
    keep = work.var["highly_variable"].to_numpy() | work.var_names.isin(perturbed)
    adata = adata[:, keep].copy()
    measured = set(adata.var_names)
    ok = [all(g in measured for g in split_label(lab)) for lab in labels]
    print(f"cache: {get_cache_dir()}; {adata.n_vars} genes; {np.mean(ok):.1%} cells kept")
    return adata[np.asarray(ok)].copy()


def load_demo(seed: int):
    from celldyn.datasets import simulate_perturbations

    return simulate_perturbations(
        20, n_cells=150, n_doubles=40, nonlinear=True, counts=True, random_state=seed
    )


def log_normalized(adata):
    import scipy.sparse as sp
    from anndata import AnnData

    x = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
    x = np.log1p(x / np.maximum(x.sum(1, keepdims=True), 1.0) * TARGET_SUM)
    return AnnData(
        x.astype(np.float32), obs=adata.obs[[_keys.PERTURBATION]].copy(), var=adata.var[[]]
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--download", action="store_true", help="download Norman 2019 if absent")
    parser.add_argument("--demo", action="store_true", help="simulated screen instead")
    parser.add_argument("--lcd", action="store_true", help="also fit LCD (slow on CPU)")
    parser.add_argument("--n-top-genes", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--n-cells", type=int, default=300, help="predicted cells per condition")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from celldyn.datasets import get_cache_dir
    from celldyn.metrics import perturbation_table
    from celldyn.tl import perturbation_baseline

    if args.demo:
        adata = load_demo(args.seed)
    else:
        if not (get_cache_dir() / NORMAN_FILE).exists() and not args.download:
            print(
                f"{NORMAN_FILE} is not in the celldyn cache ({get_cache_dir()}); rerun with "
                "--download (needs internet, ~1 GB) or --demo."
            )
            sys.exit(0)
        adata = load_norman(args.n_top_genes)
    labels = adata.obs[_keys.PERTURBATION].astype(str)
    split = gears_split(list(labels.unique()), seed=args.seed)
    print(split.value_counts().to_string())
    train = adata[labels.map(split).to_numpy() == "train"].copy()
    observed = log_normalized(adata)
    observed_train = log_normalized(train)

    predictions = {}
    for method in ("additive", "mean", "no_change"):
        tests = [lab for lab, g in split.items() if g.startswith("test")]
        if method == "additive":
            tests = [lab for lab, g in split.items() if g == "test_seen2"]
        predictions[method] = perturbation_baseline(observed_train, tests, method=method)
    if args.lcd:
        import torch

        from celldyn.models import LCD

        torch.manual_seed(args.seed)
        start = time.perf_counter()
        LCD.setup_anndata(train)
        model = LCD(train)
        model.train(args.epochs, score_epochs=args.epochs, accelerator="cpu", progress=False)
        tests = [lab for lab, g in split.items() if g.startswith("test")]
        pred = model.predict(tests, args.n_cells, random_state=args.seed)
        predictions["LCD"] = log_normalized(pred)
        print(f"LCD fit + predict: {time.perf_counter() - start:.0f} s")

    rows = []
    for method, pred in predictions.items():
        table = perturbation_table(pred, observed)
        table["group"] = split.reindex(table.index).to_numpy()
        summary = table.groupby("group").mean(numeric_only=True)
        summary["n"] = table.groupby("group").size()
        rows.append(summary.assign(method=method).reset_index())
    result = pd.concat(rows).set_index(["group", "method"]).sort_index()
    print(result.round(4).to_markdown())


if __name__ == "__main__":
    main()
