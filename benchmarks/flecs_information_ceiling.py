"""Where FLeCS's network recovery is limited: the velocities, the model class or the data.

Three diagnoses of issue 13 on the datasets of ``flecs_grn_recovery.py`` (same README pipeline,
priors and scoring: edge AUROC on the prior's edges without self loops):

1. ``oracle`` (``simulate_grn``, ``simulate_hill``; they store the exact drift at every cell,
   ``layers['true_velocity']``). The same fits on the OT velocities every method sees and on
   the exact velocities at the cells: OT-ridge; the closed-form linear start
   (:func:`celldyn.module.fit_linear`) alone; the sigmoid model's least squares after it
   (:func:`celldyn.module.fit_velocities`, 30 and 500 L-BFGS iterations) and from the
   field's random initial weights (500); and FLeCS with package defaults (``--max-epochs``,
   on the OT data only). Edges ranked by the edge effects.
2. ``bursty`` (``simulate_bursty``, which stores the proteins and the promoter parameters).
   Per target, a ridge regression (standardised columns, the target's own mRNA as an unscored
   covariate) of a response on the prior regulators' mRNA or protein; responses: the exact
   promoter drive ``β_i + Σ_j θ_ji P_j``, the OT velocity, the mRNA level. Also the median
   over regulated genes of Spearman's ρ of the OT velocity and of the mRNA level with the
   drive: where the network is lost between the promoters and the snapshots.
3. ``positions``: OT-ridge's regression of the OT velocity on the expression at the OT
   midpoints (what ``tl.grn_baseline('ot_ridge')`` and the linear start use) against the
   expression of the source cells, on every family and, with ``--data``, BEELINE mESC and mDC
   with both priors (all genes of the prior, as ``real_data.py``).

Run ``OMP_NUM_THREADS=1 python benchmarks/flecs_information_ceiling.py [--seeds 3]
[--max-epochs 100] [--only oracle,bursty,positions] [--data ../shared/data]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp
import torch
from flecs_grn_recovery import FAMILIES, candidates, fit_flecs, prepare, quiet, table
from scipy.stats import spearmanr

import celldyn as cd
from celldyn._readers import read_time_groups
from celldyn.models import FLeCS
from celldyn.module import fit_linear, fit_velocities
from celldyn.pp._ot_velocities import ot_velocities
from celldyn.tl._grn_baselines import _by_target, _candidates, _standardise


def auroc(adata, pred, truth=None, cands=None) -> float:
    """Edge AUROC of ``pred`` on the candidate edges (default: the prior's, the truth)."""
    truth = adata.uns["ground_truth_network"] if truth is None else truth
    cands = candidates(adata) if cands is None else cands
    return cd.metrics.grn_scores(pred, truth, genes=adata.var_names, candidates=cands)["auroc"]


def ridge_edges(adata, design, response, own, alpha: float = 1.0) -> pd.DataFrame:
    """Per-target ridge of ``response`` on the prior regulators' ``design`` columns and the
    target's ``own`` column (unscored), on standardised columns, as ``tl.grn_baseline``."""
    src, tgt = _candidates(adata, "celldyn_prior")
    regressors, covariate = _standardise(design), _standardise(own)
    response = response - response.mean(0)
    weight = np.zeros(len(src))
    for target, regulators, edges in _by_target(src, tgt):
        f = np.column_stack([regressors[:, regulators], covariate[:, target]])
        gram = f.T @ f + alpha * np.eye(f.shape[1])
        weight[edges] = np.linalg.solve(gram, f.T @ response[:, target])[:-1]
    genes = adata.var_names
    return pd.DataFrame({"source": genes[src], "target": genes[tgt], "weight": weight})


def dense(x) -> np.ndarray:
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float64)


def ot_data(adata, seed: int) -> tuple[np.ndarray, ...]:
    """Expression, and the OT source cells, velocities and midpoints of the pipeline."""
    x = dense(adata.X)
    groups = read_time_groups(adata, "celldyn_time")
    cells, velocities, midpoints = ot_velocities(x, adata.obsm["X_pca"], groups, seed)
    return x, cells, velocities, midpoints


def field_effects(adata, seed: int, points, velocities, steps) -> pd.DataFrame:
    """Edge effects of a fresh FLeCS field after ``steps`` (functions of field, points,
    velocities) and no trajectory fit."""
    FLeCS.setup_anndata(adata)
    torch.manual_seed(seed)
    model = FLeCS(adata, seed=seed)
    points, velocities = (torch.as_tensor(a, dtype=torch.float32) for a in (points, velocities))
    for step in steps:
        step(model.module.field, points, velocities)
    return model.get_edge_effects()


def lbfgs(iterations: int):
    return lambda field, p, v: fit_velocities(field, p, v, max_iter=iterations)


FIELD_FITS = {
    "linear start": [fit_linear],
    "linear + 30": [fit_linear, lbfgs(30)],
    "linear + 500": [fit_linear, lbfgs(500)],
    "sigmoid 500 (random start)": [lbfgs(500)],
}


def oracle_rows(seeds, max_epochs: int) -> list[dict]:
    rows = []
    for key in ("grn", "hill"):
        for seed in seeds:
            family = FAMILIES[key]
            adata = prepare(family.load(seed), family, seed)
            x, cells, velocities, midpoints = ot_data(adata, seed)
            exact = dense(adata.layers["true_velocity"])
            for name, (points, targets) in {
                "OT velocities": (midpoints, velocities),
                "exact velocities": (x, exact),
            }.items():
                row = {"family": family.name, "seed": seed, "velocities": name}
                row["ridge"] = auroc(adata, ridge_edges(adata, points, targets, points))
                for fit, steps in FIELD_FITS.items():
                    row[fit] = auroc(adata, field_effects(adata, seed, points, targets, steps))
                row["FLeCS defaults"] = ""  # trained on OT data only
                if name == "OT velocities" and max_epochs:
                    model = fit_flecs(adata, seed, max_epochs)
                    row["FLeCS defaults"] = auroc(adata, model.get_edge_effects())
                rows.append(row)
    return rows


def bursty_rows(seeds) -> list[dict]:
    rows = []
    for seed in seeds:
        family = FAMILIES["bursty"]
        adata = prepare(family.load(seed), family, seed)
        sim = adata.uns["simulation"]
        theta = np.asarray(sim["theta"])
        protein = dense(adata.layers["protein"])
        drive = np.asarray(sim["basal"]) + protein @ theta
        mrna, cells, velocities, _ = ot_data(adata, seed)
        regulated = np.flatnonzero((theta != 0).any(0))
        row = {"seed": seed}
        for name, regressors in (("mRNA", mrna), ("protein", protein)):
            for response, (design, target, own) in {
                "drive": (regressors, drive, mrna),
                "OT velocity": (regressors[cells], velocities, mrna[cells]),
                "level": (regressors, mrna, mrna),
            }.items():
                edges = ridge_edges(adata, design, target, own)
                row[f"{response} ~ {name}"] = auroc(adata, edges)
        for name, values, at in (("OT velocity", velocities, cells), ("level", mrna, slice(None))):
            rho = [spearmanr(values[:, i], drive[at, i])[0] for i in regulated]
            row[f"ρ({name}, drive)"] = float(np.median(rho))
        rows.append(row)
    return rows


def position_row(adata, label: str, seed: int, truths: dict) -> list[dict]:
    x, cells, velocities, midpoints = ot_data(adata, seed)
    cands = candidates(adata)
    out = []
    for truth_name, truth in truths.items():
        row = {"data": label, "truth": truth_name}
        for name, design in (("midpoints", midpoints), ("source cells", x[cells])):
            row[name] = auroc(adata, ridge_edges(adata, design, velocities, design), truth, cands)
        out.append(row)
    return out


def positions_rows(seeds, data: Path | None) -> list[dict]:
    rows = []
    for family in FAMILIES.values():
        for seed in seeds if family.seeded else seeds[:1]:
            adata = prepare(family.load(seed), family, seed)
            truth = adata.uns["ground_truth_network"]
            rows += position_row(adata, f"{family.name} {seed}", seed, {"truth": truth})
    if data is None:
        return rows
    trrust = cd.datasets.trrust("mouse", path=data / "trrust" / "trrust_rawdata.mouse.tsv")
    trrust = trrust.assign(source=trrust["source"].str.upper(), target=trrust["target"].str.upper())
    for name, truths in (("mESC", ["chip_celltype", "lofgof"]), ("mDC", ["chip_celltype"])):
        full = cd.datasets.beeline(name, path=data / f"beeline_{name.lower()}")
        full.uns["networks"]["trrust"] = trrust
        for prior_name in ("chip_nonspecific", "trrust"):
            prior = full.uns["networks"][prior_name]
            adata = full[:, full.var_names.isin(set(prior["source"]) | set(prior["target"]))]
            adata = adata.copy()
            sc.pp.pca(adata, n_comps=min(20, adata.n_vars - 1))
            cd.pp.time_groups(adata, time_key="time")
            cd.pp.prior_network(adata, prior)
            label = f"BEELINE {name} ({adata.n_vars} genes, {prior_name} prior)"
            rows += position_row(adata, label, 0, {t: full.uns["networks"][t] for t in truths})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-epochs", type=int, default=100, help="0: no FLeCS fit")
    parser.add_argument("--only", default="oracle,bursty,positions")
    parser.add_argument("--data", type=Path, default=None, help="../shared/data for BEELINE")
    args = parser.parse_args()
    quiet()
    torch.set_num_threads(1)
    seeds = list(range(args.seeds))
    parts = args.only.split(",")
    for part, rows_of in (
        ("oracle", lambda: oracle_rows(seeds, args.max_epochs)),
        ("bursty", lambda: bursty_rows(seeds)),
        ("positions", lambda: positions_rows(seeds, args.data)),
    ):
        if part in parts:
            rows = rows_of()
            print(table(rows, list(rows[0])), "", sep="\n", flush=True)


if __name__ == "__main__":
    main()
