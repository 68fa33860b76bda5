"""FLeCS network recovery on four generator families, beside three simple baselines.

Datasets with a known network (``uns['ground_truth_network']``); ``--seeds`` runs of each of
the first three, one of krumsiek11. The prior is the true network plus ``k`` random decoy
edges per true edge (``pp.prior_network(add_random_edges=(k + 1) · n_true / n_genes²)``, a
target density, self loops included):

- ``grn``: ``datasets.simulate_grn(12, 800, 6)`` (FLeCS's own sigmoid ODE), ``k = 1``.
- ``hill``: ``datasets.simulate_hill()`` (Hill-function ODE, 30 genes, 1,500 cells, 5 times),
  ``k = 3``.
- ``bursty``: ``datasets.simulate_bursty()`` (bursty transcription, counts in ``X``), then
  ``sc.pp.normalize_total`` and ``sc.pp.log1p`` as a user would, ``k = 3``.
- ``krumsiek``: ``datasets.krumsiek11()`` (scanpy's myeloid boolean-model simulation),
  ``k = 1``; its time ``obs['time'] / 16`` is the pseudotime ``step``.

Every dataset goes through the README's pipeline: ``sc.pp.pca(n_comps=min(20, n_genes - 1))``,
``pp.time_groups(time_key='time')`` (krumsiek11: ``pseudotime_key='step', n_groups=10``),
``pp.prior_network`` and ``pp.trajectories(method='knn')``, package defaults otherwise.
Every method is scored on the prior's edges without self loops
(``metrics.grn_scores(candidates=...)``), ranked by ``|score|``:

- ``FLeCS effects``: :class:`celldyn.models.FLeCS` with package defaults (CPU; the linear
  warm start), edges ranked by ``|get_edge_effects()|`` (mean Jacobian × regulator sd, what
  ``tl.flecs`` writes to ``varp['flecs_effects']``).
- ``FLeCS |W|``: the same model, edges ranked by ``|W|``.
- ``FLeCS sigmoid start effects``: the warm start by L-BFGS of the sigmoid model to the OT
  velocities (``warm_start='velocities'``, the default before), ranked by edge effects.
- ``FLeCS OT pairs effects``: the warm start on the flow to the OT barycentres
  (``warm_start='ot_pairs'``), defaults otherwise, ranked by edge effects.
- ``|Pearson r|``: ``tl.grn_baseline(method='correlation')``.
- ``GENIE3-style forest``: ``tl.grn_baseline(method='forest')``.
- ``OT-ridge``: ``tl.grn_baseline(method='ot_ridge')``, ridge regression of OT velocities.

Printed: AUROC, AUPRC ratio, early precision ratio and sign accuracy (the fraction of signed
true edges whose score has their sign) of every run, fit seconds and, on
simulate_grn, the mean cosine of the FLeCS velocity to the true one; the mean ± sd AUROC per
family with FLeCS's margin over the best baseline; then knockouts of both FLeCS variants
(``GRNVectorField.knockout``, all outgoing edges of a regulator set to 0):

- simulate_grn: the exact effect is known. The true ODE and the learnt one are integrated
  from the first snapshot's cells to ``t_max`` with and without the knockout of the regulator
  with the most targets; reported is the Pearson correlation of the predicted and the true
  knockout effect (mean change of every other gene at ``t_max``), and the fraction of genes
  whose change has the true sign.
- krumsiek11, knockout of Cebpa: the direct targets of Cebpa in the boolean model must move
  against the sign of their edge (an activated target goes down); reported is the fraction
  of Cebpa's targets (other than Cebpa) whose predicted mean change at the last time has that
  direction.

Run ``OMP_NUM_THREADS=1 python benchmarks/flecs_grn_recovery.py [--seeds 3]
[--max-epochs 100]``; ``--only grn,hill`` runs a subset of the families.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp
import torch
from anndata import AnnData

import celldyn as cd
from celldyn.datasets._simulate_grn import grn_drift
from celldyn.models import FLeCS  # imports Lightning and the celldyn logger before quiet()
from celldyn.nn import integrate

FLECS = {
    "FLeCS": {},
    "FLeCS sigmoid start": {"warm_start": "velocities"},
    "FLeCS OT pairs": {"warm_start": "ot_pairs"},
}
SCORES = {
    "FLeCS effects": ("FLeCS", FLeCS.get_edge_effects),
    "FLeCS |W|": ("FLeCS", FLeCS.get_weights),
    "FLeCS sigmoid start effects": ("FLeCS sigmoid start", FLeCS.get_edge_effects),
    "FLeCS OT pairs effects": ("FLeCS OT pairs", FLeCS.get_edge_effects),
}
BASELINES = {
    "|Pearson r|": lambda adata, seed: cd.tl.grn_baseline(adata, "correlation"),
    "GENIE3-style forest": lambda adata, seed: cd.tl.grn_baseline(
        adata, "forest", random_state=seed
    ),
    "OT-ridge": lambda adata, seed: cd.tl.grn_baseline(adata, "ot_ridge", time_key="celldyn_time"),
}


def quiet() -> None:
    """Silence Lightning's and the package's info messages and warnings."""
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "celldyn", "scvi"):
        logging.getLogger(name).setLevel(logging.ERROR)


def load_bursty(seed: int) -> AnnData:
    """simulate_bursty counts, normalised and log-transformed."""
    adata = cd.datasets.simulate_bursty(random_state=seed)
    sc.pp.normalize_total(adata)
    sc.pp.log1p(adata)
    return adata


def load_krumsiek(seed: int) -> AnnData:
    """krumsiek11 with the pseudotime ``obs['step']`` (160 steps -> 0..10); one dataset."""
    adata = cd.datasets.krumsiek11()
    adata.obs["step"] = adata.obs["time"] / 16.0
    return adata


class Family(NamedTuple):
    """A generator family: its name, loader (seed -> AnnData), decoys per true edge,
    ``pp.time_groups`` arguments and whether it runs once per seed (else once, seed 0)."""

    name: str
    load: Callable[[int], AnnData]
    decoys: int
    groups: dict
    seeded: bool = True


FAMILIES = {
    "grn": Family(
        "simulate_grn",
        lambda s: cd.datasets.simulate_grn(12, 800, 6, random_state=s),
        1,
        {"time_key": "time"},
    ),
    "hill": Family(
        "simulate_hill",
        lambda s: cd.datasets.simulate_hill(random_state=s),
        3,
        {"time_key": "time"},
    ),
    "bursty": Family("simulate_bursty", load_bursty, 3, {"time_key": "time"}),
    "krumsiek": Family(
        "krumsiek11", load_krumsiek, 1, {"pseudotime_key": "step", "n_groups": 10}, False
    ),
}


def prepare(adata: AnnData, family: Family, seed: int) -> AnnData:
    """The README pipeline: PCA, time groups, prior = truth + decoys, kNN trajectories."""
    net = adata.uns["ground_truth_network"]
    n = adata.n_vars
    sc.pp.pca(adata, n_comps=min(20, n - 1))
    cd.pp.time_groups(adata, **family.groups)
    density = (family.decoys + 1) * len(net) / n**2
    cd.pp.prior_network(adata, net, add_random_edges=density, random_state=seed)
    cd.pp.trajectories(adata, method="knn", random_state=seed)
    return adata


def candidates(adata: AnnData) -> pd.DataFrame:
    """The prior's edges without self loops as an edge list."""
    prior = sp.coo_matrix(adata.varp["celldyn_prior"])
    keep = (prior.data != 0) & (prior.row != prior.col)
    genes = adata.var_names
    return pd.DataFrame({"source": genes[prior.row[keep]], "target": genes[prior.col[keep]]})


def fit_flecs(adata: AnnData, seed: int, max_epochs: int, **train) -> FLeCS:
    """FLeCS with package defaults, trained on the CPU."""
    FLeCS.setup_anndata(adata)
    torch.manual_seed(seed)
    torch.set_num_threads(1)  # scanpy's numba kernels on sparse data leave torch at 2 threads
    model = FLeCS(adata, seed=seed)
    model.train(max_epochs=max_epochs, accelerator="cpu", progress=False, **train)
    return model


def velocity_cosine(adata: AnnData, model: FLeCS) -> float:
    """Mean cosine of the FLeCS velocity to the true velocity."""
    v, true = model.get_velocity(), adata.layers["true_velocity"]
    return float(
        ((v * true).sum(1) / np.linalg.norm(v, axis=1) / np.linalg.norm(true, axis=1)).mean()
    )


def _mean_final_state(field, x0: torch.Tensor, t_max: float) -> np.ndarray:
    t = torch.tensor([0.0, t_max])
    with torch.no_grad():
        out = integrate(field, field.initial_state(x0), t, rtol=1e-5, atol=1e-6)
    return field.gene_state(out[-1]).mean(0).numpy()


def knockout_simulated(adata: AnnData, model: FLeCS) -> dict[str, float]:
    """Predicted vs exact knockout effect of the regulator with the most targets."""
    from scipy.integrate import solve_ivp

    sim = adata.uns["simulation"]
    truth = adata.uns["ground_truth_network"]
    genes = list(adata.var_names)
    n = len(genes)
    weights = np.zeros((n, n))
    weights[
        [genes.index(s) for s in truth["source"]], [genes.index(t) for t in truth["target"]]
    ] = truth["weight"]
    out_degree = (weights != 0).sum(1) - (np.diag(weights) != 0)
    regulator = int(np.argmax(out_degree))
    start = np.asarray(adata.X[adata.obs["time"] == 0.0], dtype=np.float64)
    t_max = float(sim["t_max"])

    def true_final(w: np.ndarray) -> np.ndarray:  # noise 0.02 is small: the ODE is the mean
        def rhs(_, y):
            g = y.reshape(start.shape)
            return grn_drift(g, w, sim["bias"], sim["decay"]).ravel()

        sol = solve_ivp(rhs, (0.0, t_max), start.ravel(), rtol=1e-6, atol=1e-8)
        return sol.y[:, -1].reshape(start.shape).mean(0)

    knocked = weights.copy()
    knocked[regulator] = 0.0
    true_effect = true_final(knocked) - true_final(weights)
    field = model.module.field.cpu().eval()
    x0 = torch.as_tensor(start, dtype=torch.float32)
    predicted = _mean_final_state(field.knockout([regulator]), x0, t_max) - _mean_final_state(
        field, x0, t_max
    )
    others = np.arange(n) != regulator
    moved = np.abs(true_effect[others]) > 1e-3
    return {
        "regulator": genes[regulator],
        "n_targets": int(out_degree[regulator]),
        "pearson": float(np.corrcoef(predicted[others], true_effect[others])[0, 1]),
        "sign_agreement": float(
            np.mean(np.sign(predicted[others][moved]) == np.sign(true_effect[others][moved]))
        ),
    }


def knockout_krumsiek(adata: AnnData, model: FLeCS, gene: str = "Cebpa") -> dict[str, float]:
    """Direction of the predicted change of the direct targets of ``gene`` after its knockout."""
    truth = adata.uns["ground_truth_network"]
    edges = truth[(truth["source"] == gene) & (truth["target"] != gene) & (truth["sign"] != 0)]
    genes = list(adata.var_names)
    start = np.asarray(adata.X[adata.obs["time"] == 0.0], dtype=np.float32)
    t_max = float(adata.obs["step"].max())
    field = model.module.field.cpu().eval()
    x0 = torch.as_tensor(start)
    effect = _mean_final_state(field.knockout([genes.index(gene)]), x0, t_max) - (
        _mean_final_state(field, x0, t_max)
    )
    target_effect = effect[[genes.index(t) for t in edges["target"]]]
    agree = np.sign(target_effect) == -edges["sign"].to_numpy()
    return {
        "gene": gene,
        "targets": ", ".join(
            f"{t}{'+' if s > 0 else '-'}:{e:+.3f}"
            for t, s, e in zip(edges["target"], edges["sign"], target_effect, strict=True)
        ),
        "direction_agreement": float(agree.mean()),
    }


KNOCKOUTS = {"grn": knockout_simulated, "krumsiek": knockout_krumsiek}


def run(key: str, seed: int, max_epochs: int) -> tuple[list[dict], list[dict]]:
    """Fit and score every method on one dataset.

    Parameters
    ----------
    key
        Key of :data:`FAMILIES`.
    seed
        Seed of the data, the prior's decoys, the trajectories and the methods.
    max_epochs
        FLeCS training epochs.

    Returns
    -------
    One score row per method (FLeCS scores and baselines), and one knockout row per FLeCS
    variant (none for families without a knockout experiment).
    """
    family = FAMILIES[key]
    adata = prepare(family.load(seed), family, seed)
    truth, cands = adata.uns["ground_truth_network"], candidates(adata)
    rows, knockouts = [], []
    models, predictions, seconds = {}, {}, {}
    for variant, options in FLECS.items():
        start = time.perf_counter()
        models[variant] = fit_flecs(adata, seed, max_epochs, **options)
        seconds[variant] = time.perf_counter() - start
        if key in KNOCKOUTS:
            knockouts.append(
                {"family": family.name, "seed": seed, "method": variant}
                | KNOCKOUTS[key](adata, models[variant])
            )
    for method, (variant, score) in SCORES.items():
        predictions[method], seconds[method] = score(models[variant]), seconds[variant]
    for method, baseline in BASELINES.items():
        start = time.perf_counter()
        predictions[method] = baseline(adata, seed)
        seconds[method] = time.perf_counter() - start
    for method, pred in predictions.items():
        s = cd.metrics.grn_scores(pred, truth, genes=adata.var_names, candidates=cands)
        variant = SCORES[method][0] if method in SCORES else None
        rows.append(
            {
                "family": family.name,
                "seed": seed,
                "method": method,
                "auroc": s["auroc"],
                "auprc_ratio": s["auprc_ratio"],
                "epr": s["epr"],
                "sign_accuracy": s["sign_accuracy"],
                "n_true/n_candidates": f"{s['n_true_edges']}/{s['n_candidates']}",
                "fit_s": seconds[method],
                "velocity_cosine": (
                    velocity_cosine(adata, models[variant]) if variant and key == "grn" else ""
                ),
            }
        )
    return rows, knockouts


def summary(rows: list[dict]) -> list[dict]:
    """Mean ± sd AUROC per family and method, and FLeCS minus the best baseline's mean."""
    auroc = pd.DataFrame(rows).groupby(["family", "method"], sort=False)["auroc"]
    mean, sd = auroc.mean(), auroc.std()
    out = []
    for family in mean.index.unique("family"):
        row = {"family": family}
        for method in [*SCORES, *BASELINES]:
            m, s = mean[family, method], sd[family, method]
            row[method] = f"{m:.3f}" if np.isnan(s) else f"{m:.3f} ± {s:.3f}"
        best = mean[family][list(BASELINES)].max()
        row["FLeCS effects − best baseline"] = mean[family, "FLeCS effects"] - best
        out.append(row)
    return out


def table(rows: list[dict], columns: list[str]) -> str:
    """Markdown table of ``rows`` (floats to 3 decimals, ``|`` escaped)."""

    def line(cells) -> str:
        return "| " + " | ".join(str(c).replace("|", r"\|") for c in cells) + " |"

    body = [
        line(f"{row[c]:.3f}" if isinstance(row[c], float) else row[c] for c in columns)
        for row in rows
    ]
    return "\n".join([line(columns), "|" + "---|" * len(columns), *body])


def main() -> None:
    """Run the chosen families and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the simulated families")
    parser.add_argument("--max-epochs", type=int, default=100, help="FLeCS training epochs")
    parser.add_argument(
        "--only", default=",".join(FAMILIES), help="comma list of families: " + ",".join(FAMILIES)
    )
    args = parser.parse_args()
    keys = args.only.split(",")
    if unknown := set(keys) - set(FAMILIES):
        parser.error(f"unknown families {sorted(unknown)}; choose from {list(FAMILIES)}")
    quiet()
    torch.set_num_threads(1)
    rows, knockouts = [], []
    for key in keys:
        for seed in range(args.seeds) if FAMILIES[key].seeded else [0]:
            new_rows, new_knockouts = run(key, seed, args.max_epochs)
            rows += new_rows
            knockouts += new_knockouts
            print(f"done {key} seed {seed}", flush=True)
    print("\n## Edge recovery (candidates = prior edges without self loops, by |score|)\n")
    print(table(rows, list(rows[0])))
    print("\n## AUROC, mean ± sd over seeds\n")
    means = summary(rows)
    print(table(means, list(means[0])))
    for name in (FAMILIES[key].name for key in KNOCKOUTS):
        if found := [row for row in knockouts if row["family"] == name]:
            print(f"\n## Knockouts, {name}\n")
            print(table(found, list(found[0])))


if __name__ == "__main__":
    main()
