"""FLeCS network recovery against ground truth, beside correlation and GENIE3-style baselines.

Datasets with a known network: ``celldyn.datasets.simulate_grn`` (several seeds) and
``celldyn.datasets.krumsiek11`` (scanpy's myeloid simulation, network parsed from its
boolean model). The prior given to FLeCS is the true network plus about as many random
edges (``pp.prior_network(add_random_edges=...)``); every method is scored on exactly those
candidate edges (``metrics.grn_scores(candidates=prior)``), ranked by ``|score|``:

- ``flecs``: ``|W|`` of :class:`celldyn.models.FLeCS` trained on OT trajectories
  (``pp.trajectories(method='quantile')``) with the default velocity warm start (L-BFGS fit
  to the chord velocities of the trajectories, then the trajectory fit).
- ``flecs_cold``: the same without the warm start (``velocity_init=0``; the default before),
  the trajectory fit alone.
- ``correlation``: ``|Pearson r|`` of regulator and target over all cells
  (``celldyn.tl.grn_baseline(method='correlation')``).
- ``genie3``: GENIE3-style random forests (scikit-learn; ``celldyn.tl.grn_baseline(
  method='forest')`` with 200 trees): for each target, a ``RandomForestRegressor`` on all
  other genes; the score of ``j -> i`` is the impurity importance of ``j`` for ``i``.

Knockout experiments (``GRNVectorField.knockout``, all outgoing edges of a regulator set to 0):

- simulate_grn: the exact effect is known. The true ODE and the learnt one are integrated
  from the first snapshot's cells to ``t_max`` with and without the knockout of the regulator
  with the most targets; reported is the Pearson correlation of the predicted and the true
  knockout effect (mean change of every other gene at ``t_max``), and the fraction of genes
  whose change has the true sign.
- krumsiek11, knockout of Cebpa: the direct targets of Cebpa in the boolean model must move
  against the sign of their edge (an activated target goes down); reported is the fraction
  of Cebpa's targets (other than Cebpa) whose predicted mean change at the last time has that
  direction.

On simulate_grn the cosine of each FLeCS variant's velocity to the true velocity (mean over
cells) is reported too.

Run ``OMP_NUM_THREADS=1 python benchmarks/flecs_grn_recovery.py`` (about 10 min on the loaded
2-core machine); ``--seeds`` sets the number of simulate_grn seeds.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from celldyn.datasets import krumsiek11, simulate_grn
from celldyn.datasets._simulate_grn import grn_drift
from celldyn.metrics import grn_scores
from celldyn.models._flecs import FLeCS
from celldyn.nn import integrate
from celldyn.pp import prior_network, time_groups, trajectories
from celldyn.tl import grn_baseline

TRAIN = {"max_epochs": 200, "batch_size": 400, "lr": 0.1, "accelerator": "cpu", "progress": False}
VARIANTS = {"flecs": {}, "flecs_cold": {"velocity_init": 0}}


def quiet() -> None:
    """Silence Lightning's and the package's info messages and warnings."""
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "celldyn", "scvi"):
        logging.getLogger(name).setLevel(logging.ERROR)


def simulated(seed: int, n_genes: int = 12, n_cells: int = 800, n_timepoints: int = 6):
    """simulate_grn with prior = truth + random edges, time groups and 6-cell trajectories."""
    adata = simulate_grn(n_genes, n_cells, n_timepoints, random_state=seed)
    net = adata.uns["ground_truth_network"]
    prior_network(adata, net, add_random_edges=2 * len(net) / n_genes**2, random_state=seed)
    time_groups(adata, time_key="time")
    trajectories(adata, method="quantile", rep="X", n_trajectories=400, length=6)
    return adata


def krumsiek(seed: int = 0):
    """krumsiek11 with prior = truth + random edges, 10 time groups of the (rescaled) step."""
    adata = krumsiek11()
    net = adata.uns["ground_truth_network"]
    n = adata.n_vars
    prior_network(adata, net, add_random_edges=2 * len(net) / n**2, random_state=seed)
    adata.obs["step"] = adata.obs["time"] / 16.0  # 160 steps -> time 0..10
    time_groups(adata, pseudotime_key="step", n_groups=10)
    trajectories(adata, method="quantile", rep="X", n_trajectories=400, length=6)
    return adata


def candidates(adata) -> pd.DataFrame:
    """The prior's edges as an edge list."""
    prior = sp.coo_matrix(adata.varp["celldyn_prior"])
    return pd.DataFrame(
        {"source": adata.var_names[prior.row], "target": adata.var_names[prior.col]}
    )


def fit_flecs(adata, seed: int, **train) -> FLeCS:
    FLeCS.setup_anndata(adata)
    torch.manual_seed(seed)
    model = FLeCS(adata, seed=seed)
    model.train(**{**TRAIN, **train})
    return model


def velocity_cosine(adata, model: FLeCS) -> float | str:
    """Mean cosine of the FLeCS velocity to the true velocity (simulate_grn only)."""
    if "true_velocity" not in adata.layers:
        return ""
    v, true = model.get_velocity(), adata.layers["true_velocity"]
    return float(
        ((v * true).sum(1) / np.linalg.norm(v, axis=1) / np.linalg.norm(true, axis=1)).mean()
    )


def score_all(adata, models: dict[str, FLeCS], seed: int) -> dict[str, dict]:
    truth = adata.uns["ground_truth_network"]
    cand = candidates(adata)
    genes = adata.var_names
    predictions = {name: model.get_weights() for name, model in models.items()}
    # the baselines score all ordered pairs (the forests see every other gene, not only the
    # prior's regulators); grn_scores keeps the candidates
    predictions["correlation"] = grn_baseline(adata, "correlation", prior_key=None)
    predictions["genie3"] = grn_baseline(
        adata, "forest", prior_key=None, n_estimators=200, max_cells=None, random_state=seed
    )
    return {
        name: grn_scores(pred, truth, genes=genes, candidates=cand)
        for name, pred in predictions.items()
    }


def _mean_final_state(field, x0: torch.Tensor, t_max: float) -> np.ndarray:
    t = torch.tensor([0.0, t_max])
    with torch.no_grad():
        out = integrate(field, field.initial_state(x0), t, rtol=1e-5, atol=1e-6)
    return field.gene_state(out[-1]).mean(0).numpy()


def knockout_simulated(adata, model: FLeCS) -> dict[str, float]:
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


def knockout_krumsiek(adata, model: FLeCS, gene: str = "Cebpa") -> dict[str, float]:
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


def table(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="simulate_grn seeds")
    parser.add_argument("--lr", type=float, default=TRAIN["lr"], help="Adam learning rate")
    args = parser.parse_args()
    quiet()
    torch.set_num_threads(1)
    rows, knockouts = [], []
    datasets = [(f"simulate_grn seed {s}", s, simulated) for s in range(args.seeds)]
    datasets.append(("krumsiek11", 0, krumsiek))
    for name, seed, build in datasets:
        adata = build(seed)
        models, fit_s = {}, {}
        for variant, options in VARIANTS.items():
            start = time.perf_counter()
            models[variant] = fit_flecs(adata, seed, lr=args.lr, **options)
            fit_s[variant] = time.perf_counter() - start
        for method, s in score_all(adata, models, seed).items():
            rows.append(
                {
                    "dataset": name,
                    "method": method,
                    "auroc": s["auroc"],
                    "auprc": s["auprc"],
                    "auprc_ratio": s["auprc_ratio"],
                    "early_precision": s["early_precision"],
                    "n_true/n_candidates": f"{s['n_true_edges']}/{s['n_candidates']}",
                    "fit_s": fit_s.get(method, ""),
                    "velocity_cosine": (
                        velocity_cosine(adata, models[method]) if method in models else ""
                    ),
                }
            )
        knockout = knockout_simulated if build is simulated else knockout_krumsiek
        for variant, model in models.items():
            knockouts.append({"dataset": name, "method": variant, **knockout(adata, model)})
        print(f"done {name} (FLeCS fits {fit_s})", flush=True)
    frame = pd.DataFrame(rows)
    print("\n## Edge recovery (candidates = prior edges, ranked by |score|)\n")
    print(table(rows, list(rows[0])))
    sim = frame[frame["dataset"].str.startswith("simulate_grn")]
    summary = (
        sim.groupby("method")[["auroc", "auprc", "early_precision"]].agg(["mean", "std"]).round(3)
    )
    print(f"\n## simulate_grn, mean and sd over {args.seeds} seeds\n")
    print(summary.to_string())
    print("\n## Knockouts\n")
    for row in knockouts:
        print(row)


if __name__ == "__main__":
    main()
