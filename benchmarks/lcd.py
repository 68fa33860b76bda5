"""LCD + CLIPR on simulated screens: causal effects against d, and unseen double perturbations.

Part 1 (``--dims``): ``datasets.simulate_perturbations`` with a linear drift, counts observed,
every gene knocked down once (d independent perturbations, the identifiability condition).
LCD is fitted and ``tl.clipr`` turns its responses (``l_q`` the mean shift of the fitted
latent states, ``v_q = -(D + K) J l_q`` the first-order change of the control drift when its
law is translated by ``l_q``) into a d x d effect matrix, scored against the true one
(off-diagonal AUROC/AUPRC, ``metrics.grn_scores``). Baselines in the same
process: |correlation| and |partial correlation| of the control cells, and a model-free CLIPR
(velocities ``-e_j`` at the known targets, shifts from the observed log-normalized means).

Part 2 (``--combo-genes``, default 10 genes): the nonlinear simulator with 25 doubles; LCD
trains on the control, all singles and 15 doubles, and predicts the 10 held-out doubles. The
held-out doubles are stratified by the simulated data alone (``held_out_doubles``): half of
the non-additive doubles (observed mean differing from the additive prediction by more than
3 standard errors in some gene) and random additive ones, the same split for every method.
Scores (log-normalized expression, ``metrics.perturbation_table``) against the additive,
mean-shift and no-change baselines, on all held-out doubles and on the non-additive ones.

    python benchmarks/lcd.py                           # d = 20, 50; doubles on 10 genes
    python benchmarks/lcd.py --dims 20 50 100          # adds d = 100 (~4 min more)
    python benchmarks/lcd.py --dims --seed 1           # doubles only, simulator seed 1
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import time
import warnings

import numpy as np
import pandas as pd

TARGET_SUM = 1e4


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo")  # noqa: SIM115
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return f"{cpu}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"


def log_normalized(adata):
    """``log1p`` of counts scaled to 10^4 per cell, as ``LCD.predict``'s layer."""
    import scipy.sparse as sp
    from anndata import AnnData

    x = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X, dtype=np.float64)
    x = np.log1p(x / np.maximum(x.sum(1, keepdims=True), 1.0) * TARGET_SUM)
    return AnnData(
        x.astype(np.float32), obs=adata.obs[["perturbation"]].copy(), var=adata.var[[]].copy()
    )


def fit_lcd(
    adata, epochs: int, seed: int, score_base: str = "gaussian", score_schedule: str = "cosine"
):
    """LCD, default size, ``epochs`` epochs of each stage."""
    import torch

    from celldyn.models import LCD

    torch.manual_seed(seed)
    LCD.setup_anndata(adata, size_factor_key="size_factor")
    model = LCD(adata, score_base=score_base)
    model.train(
        epochs,
        score_epochs=epochs,
        score_schedule=score_schedule,
        accelerator="cpu",
        progress=False,
        random_state=seed,
    )
    return model


def _offdiagonal_scores(effects: np.ndarray, adata) -> dict[str, float]:
    from celldyn.metrics import grn_scores

    scores = grn_scores(effects, adata.uns["ground_truth_effects"], genes=adata.var_names)
    return {
        "auroc": scores["auroc"],
        "auprc": scores["auprc"],
        "density": scores["auprc"] / scores["auprc_ratio"],
    }


def clipr_recovery(d: int, n_cells: int, epochs: int, seed: int, **options) -> list[dict]:
    """Effect-matrix recovery of LCD + CLIPR and the baselines on a d-gene linear screen."""
    import celldyn as cd

    adata = cd.datasets.simulate_perturbations(
        d, n_cells=n_cells, n_doubles=0, counts=True, random_state=seed
    )
    ln = log_normalized(adata)
    x = np.asarray(ln.X, dtype=np.float64)
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    ctrl = x[labels == "control"]
    rows = []

    start = time.perf_counter()
    model = fit_lcd(adata, epochs, seed, **options)
    cd.tl.clipr(adata, model=model)
    rows.append(
        {
            "method": "LCD + CLIPR",
            **_offdiagonal_scores(adata.varp["clipr_effects"], adata),
            "seconds": time.perf_counter() - start,
        }
    )
    # where the error comes from: LCD's shifts with the knockdown directions as velocities
    # (tl.clipr(velocities="targets")), and the share of each LCD velocity |v_q| on its own
    # target gene (1 for the true drift)
    cd.tl.clipr(adata, model=model, velocities="targets", key_added="targets")
    rows.append(
        {
            "method": "LCD + CLIPR, velocities='targets'",
            **_offdiagonal_scores(adata.varp["targets"], adata),
            "seconds": 0.0,
        }
    )
    responses = cd.tl.perturbation_responses(model)
    targets = np.eye(d)[[list(adata.var_names).index(q) for q in responses.labels]]
    magnitude = np.abs(responses.velocities)
    rows[-2]["v_on_target"] = np.mean((magnitude * targets).sum(1) / magnitude.sum(1))

    start = time.perf_counter()
    rows.append(
        {
            "method": "|correlation| (control)",
            **_offdiagonal_scores(np.abs(np.corrcoef(ctrl.T)), adata),
            "seconds": time.perf_counter() - start,
        }
    )
    start = time.perf_counter()
    precision = np.linalg.pinv(np.cov(ctrl.T))
    partial = -precision / np.sqrt(np.outer(np.diag(precision), np.diag(precision)))
    rows.append(
        {
            "method": "|partial correlation| (control)",
            **_offdiagonal_scores(np.abs(partial), adata),
            "seconds": time.perf_counter() - start,
        }
    )
    start = time.perf_counter()
    genes = list(adata.var_names)
    singles = [q for q in pd.unique(labels) if q != "control"]
    shifts = np.stack([x[labels == q].mean(0) - ctrl.mean(0) for q in singles])
    velocities = -np.eye(d)[[genes.index(q) for q in singles]]
    effects = cd.tl.clipr_effects(velocities, shifts)
    rows.append(
        {
            "method": "model-free CLIPR (v = -e_j, observed means)",
            **_offdiagonal_scores(effects, adata),
            "seconds": time.perf_counter() - start,
        }
    )
    return [{"d": d, "cells": adata.n_obs, **r} for r in rows]


def non_additive(observed, doubles: list[str], z: float = 3.0) -> list[str]:
    """Doubles whose observed mean differs from the additive prediction by > z standard errors."""
    x = np.asarray(observed.X, dtype=np.float64)
    labels = observed.obs["perturbation"].astype(str).to_numpy()
    out = []
    for d in doubles:
        parts = [*d.split("+"), "control", d]
        additive = sum(x[labels == g].mean(0) for g in d.split("+")) - x[labels == "control"].mean(
            0
        )
        se = np.sqrt(sum(x[labels == p].var(0, ddof=1) / (labels == p).sum() for p in parts))
        if np.any(np.abs(x[labels == d].mean(0) - additive) > z * np.maximum(se, 1e-12)):
            out.append(d)
    return out


def held_out_doubles(observed, n_test: int, seed: int) -> list[str]:
    """Held-out doubles, stratified by non-additivity in the simulated data (not by a model).

    Half of the non-additive doubles (:func:`non_additive`, rounded up) and random additive
    ones up to ``n_test``; the other non-additive doubles stay in training, so that a model
    can learn interactions and be tested on unseen ones. The split is the same for every method.
    """
    labels = observed.obs["perturbation"].astype(str)
    doubles = sorted(q for q in labels.unique() if "+" in q)
    harder = non_additive(observed, doubles)
    rng = np.random.default_rng(seed)
    n_hard = min(-(-len(harder) // 2), n_test)
    hard = list(rng.choice(harder, n_hard, replace=False)) if n_hard else []
    rest = [q for q in doubles if q not in harder]
    return sorted(hard + list(rng.choice(rest, n_test - n_hard, replace=False)))


def unseen_doubles(
    n_genes: int,
    n_cells: int,
    n_train_doubles: int,
    n_test_doubles: int,
    epochs: int,
    seed: int,
    **options,
):
    """Scores of LCD and the baselines on held-out doubles of the nonlinear simulator."""
    import celldyn as cd
    from celldyn.metrics import perturbation_table
    from celldyn.tl import perturbation_baseline

    adata = cd.datasets.simulate_perturbations(
        n_genes,
        n_cells=n_cells,
        n_doubles=n_train_doubles + n_test_doubles,
        nonlinear=True,
        counts=True,
        perturbation_strength=4.0,
        random_state=seed,
    )
    labels = adata.obs["perturbation"].astype(str)
    observed = log_normalized(adata)
    test = held_out_doubles(observed, n_test_doubles, seed)
    train = adata[~labels.isin(test).to_numpy()].copy()
    harder = non_additive(observed, test)

    start = time.perf_counter()
    model = fit_lcd(train, epochs, seed, **options)
    predictions = {"LCD": log_normalized(model.predict(test, n_cells, random_state=seed))}
    lcd_seconds = time.perf_counter() - start
    predictions["LCD, independent draws"] = log_normalized(
        model.predict(test, n_cells, sampling="independent", random_state=seed)
    )
    train_ln = log_normalized(train)
    for method in ("additive", "mean", "no_change"):
        predictions[method] = perturbation_baseline(train_ln, test, method=method)
    rows = []
    for method, pred in predictions.items():
        table = perturbation_table(pred, observed)
        for subset, members in (("all", test), ("non-additive", harder)):
            if members:
                rows.append(
                    {
                        "doubles": f"{subset} ({len(members)})",
                        "method": method,
                        **table.loc[members].mean().to_dict(),
                    }
                )
    return pd.DataFrame(rows), lcd_seconds, harder


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="*", default=[20, 50])
    parser.add_argument("--cells", type=int, default=100, help="cells per condition")
    parser.add_argument("--epochs", type=int, default=100, help="LCD epochs of each stage")
    parser.add_argument("--combo-genes", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--score-base", choices=["gaussian", "none"], default="gaussian")
    parser.add_argument("--score-schedule", choices=["cosine", "constant"], default="cosine")
    args = parser.parse_args(argv)
    options = {"score_base": args.score_base, "score_schedule": args.score_schedule}

    import torch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    print(f"# LCD + CLIPR benchmark\n\nmachine: {machine()}; torch threads {args.threads}")
    print(f"LCD options: {options}\n")

    rows = []
    for d in args.dims:
        rows += clipr_recovery(d, args.cells, args.epochs, args.seed, **options)
        print(pd.DataFrame(rows[-5:]).round(3).to_markdown(index=False), flush=True)
    print("\n## Effect-matrix recovery (off-diagonal)\n")
    print(pd.DataFrame(rows).round(3).to_markdown(index=False))

    if args.combo_genes:
        table, seconds, harder = unseen_doubles(
            args.combo_genes, 2 * args.cells, 15, 10, args.epochs, args.seed, **options
        )
        title = f"{args.combo_genes} genes, nonlinear; LCD fit + predict {seconds:.0f} s"
        print(f"\n## Unseen doubles ({title})\n")
        print(f"non-additive held-out doubles (> 3 standard errors in some gene): {harder}\n")
        print(table.round(4).to_markdown(index=False))


if __name__ == "__main__":
    main()
