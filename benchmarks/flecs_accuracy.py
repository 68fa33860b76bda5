"""FLeCS accuracy on held-out cells, population forecasts, and the speed of the time grid.

Data: ``simulate_grn`` (20 genes, 1,500 cells, 6 snapshot times, seed 0), prior = true
network plus about as many random edges. 20 % of the cells (stratified by time) are held out;
time groups and OT trajectories (``pp.trajectories(method='quantile', length=6)``) are built
on the other 80 %, on which FLeCS is trained, with the default velocity warm start
(``flecs``) and without it (``flecs_cold``, ``velocity_init=0``, the default before).

1. **Velocities on held-out cells**: ``metrics.velocity_confidence`` (scvelo's coherence of a
   cell's velocity with its kNN neighbours', kNN graph of the held-out cells) of the FLeCS
   velocity and of the simulator's true velocity, and the cosine of the FLeCS velocity to the
   true velocity.
2. **Population forecast**: the training cells of the first time are integrated with the
   learnt ODE to every later snapshot time; W1 (``metrics.wasserstein``, gene space) to the
   held-out cells observed at that time, against two baselines: *follow the trajectory* (the
   training cells that the extracted trajectories from the first time reach at that time,
   i.e. the OT chains themselves) and *no motion* (the first-time cells unchanged).
3. **Time grid speed**: one forward + backward pass of ``integrate_trajectories`` for 64
   trajectories of 10 cells at uniformly random times (577 distinct shifted times, the worst
   case of kNN arc-length times), exact output times (``time_grid=None``) vs the 32-point
   grid (best of 3; exact: one run), for 50 and 500 genes (``--genes``; 2,000 genes take
   several minutes exact; 10 random prior edges per gene); and the error of the grid against
   a tight-tolerance exact solve. Then 2 training epochs (full batch) on kNN trajectories
   (``method='knn'``, arc-length times) with both settings, without the velocity warm start
   (which would add the same constant to both). ``--no-grid`` skips parts 3 and 4.

Run ``OMP_NUM_THREADS=1 python benchmarks/flecs_accuracy.py`` (about 10 min on the loaded
2-core machine).
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import numpy as np
import torch

from celldyn.datasets import simulate_grn
from celldyn.metrics import velocity_confidence, wasserstein
from celldyn.models._flecs import FLeCS
from celldyn.module._flecs import integrate_trajectories
from celldyn.nn import GRNVectorField, integrate
from celldyn.pp import prior_network, time_groups, trajectories

TRAIN = {"max_epochs": 150, "batch_size": 400, "lr": 0.1, "accelerator": "cpu", "progress": False}
VARIANTS = {"flecs": {}, "flecs_cold": {"velocity_init": 0}}


def quiet() -> None:
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "celldyn", "scvi"):
        logging.getLogger(name).setLevel(logging.ERROR)


def split(seed: int = 0, n_genes: int = 20, n_cells: int = 1500):
    adata = simulate_grn(n_genes, n_cells, 6, random_state=seed)
    net = adata.uns["ground_truth_network"]
    prior_network(adata, net, add_random_edges=2 * len(net) / n_genes**2, random_state=seed)
    rng = np.random.default_rng(seed)
    held = np.zeros(adata.n_obs, dtype=bool)
    for t in np.unique(adata.obs["time"]):
        cells = np.flatnonzero(adata.obs["time"] == t)
        held[rng.choice(cells, len(cells) // 5, replace=False)] = True
    train, test = adata[~held].copy(), adata[held].copy()
    time_groups(train, time_key="time")
    return train, test


def fit(train, method: str, **options) -> tuple[FLeCS, float]:
    trajectories(train, method=method, rep="X", n_trajectories=400, length=6)
    FLeCS.setup_anndata(train)
    torch.manual_seed(0)
    model = FLeCS(train)
    start = time.perf_counter()
    model.train(**{**TRAIN, **options})
    return model, time.perf_counter() - start


def held_out_velocity(model: FLeCS, test) -> dict[str, float]:
    import scanpy as sc

    test = test.copy()
    test.layers["flecs_velocity"] = model.get_velocity(test)
    sc.pp.neighbors(test, use_rep="X", n_neighbors=15)
    v, true = test.layers["flecs_velocity"], test.layers["true_velocity"]
    cosine = (v * true).sum(1) / np.linalg.norm(v, axis=1) / np.linalg.norm(true, axis=1)
    return {
        "confidence_flecs": float(np.nanmean(velocity_confidence(test, "flecs_velocity"))),
        "confidence_true": float(np.nanmean(velocity_confidence(test, "true_velocity"))),
        "cosine_to_true": float(cosine.mean()),
    }


def simulate_populations(model: FLeCS, train) -> np.ndarray:
    """The training cells of the first time integrated to every snapshot time."""
    times = np.unique(train.obs["time"])
    first = np.asarray(train.X[train.obs["time"] == times[0]], dtype=np.float32)
    field = model.module.field.cpu().eval()
    with torch.no_grad():
        states = integrate(
            field,
            field.initial_state(torch.as_tensor(first)),
            torch.as_tensor(times - times[0], dtype=torch.float32),
            rtol=1e-5,
            atol=1e-6,
        )
    return field.gene_state(states).numpy()


def forecast(model: FLeCS, train, test) -> list[dict]:
    """W1 of forecast populations at each later time, against the baselines."""
    times = np.unique(train.obs["time"])
    first = np.flatnonzero(train.obs["time"] == times[0])
    x = np.asarray(train.X, dtype=np.float32)
    simulated = simulate_populations(model, train)
    tr = train.uns["celldyn_trajectories"]
    from_first = tr["times"][:, 0] == times[0]
    rows = []
    for k, t in enumerate(times[1:], start=1):
        observed = np.asarray(test.X[test.obs["time"] == t], dtype=np.float64)
        followed = x[tr["indices"][from_first, k]]
        w_flecs = wasserstein(simulated[k], observed)
        w_follow = wasserstein(followed, observed)
        w_still = wasserstein(x[first], observed)
        rows.append(
            {
                "time": float(t),
                "w1_flecs": w_flecs,
                "w1_follow_trajectory": w_follow,
                "w1_no_motion": w_still,
                "flecs/follow": w_flecs / w_follow,
                "flecs/no_motion": w_flecs / w_still,
            }
        )
    return rows


def grid_speed(gene_counts: list[int]) -> list[dict]:
    gen = torch.Generator().manual_seed(0)
    rows = []
    for n_genes in gene_counts:
        codes = torch.unique(torch.randint(0, n_genes * n_genes, (10 * n_genes,), generator=gen))
        field = GRNVectorField(n_genes, codes // n_genes, codes % n_genes, weight_init_std=0.3)
        x = torch.rand(64, 10, n_genes, generator=gen)
        t = torch.rand(64, 10, generator=gen).sort(1).values
        seconds = {}
        for grid in (None, 32):
            best = np.inf
            for _ in range(1 if grid is None else 3):  # the exact solve takes up to minutes
                start = time.perf_counter()
                out = integrate_trajectories(field, x[:, 0], t, time_grid=grid)
                (out - x).square().mean().backward()
                best = min(best, time.perf_counter() - start)
            seconds[grid] = best
        with torch.no_grad():
            exact = integrate_trajectories(field, x[:, 0], t, time_grid=None, rtol=1e-7, atol=1e-9)
            gridded = integrate_trajectories(field, x[:, 0], t, time_grid=32)
        rows.append(
            {
                "n_genes": n_genes,
                "distinct_times": int(torch.unique(t - t[:, :1]).numel()),
                "exact_s": seconds[None],
                "grid32_s": seconds[32],
                "speed_up": seconds[None] / seconds[32],
                "grid_max_abs_error": float((gridded - exact).abs().max()),
                "state_max": float(exact.abs().max()),
            }
        )
    return rows


def table(rows: list[dict]) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append(
            "| "
            + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values())
            + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--genes", type=int, nargs="+", default=[50, 500], help="sizes of the speed test"
    )
    parser.add_argument("--no-grid", action="store_true", help="skip the time-grid parts")
    args = parser.parse_args()
    quiet()
    torch.set_num_threads(1)
    train, test = split()
    for variant, options in VARIANTS.items():
        model, seconds = fit(train, "quantile", **options)
        print(f"## {variant}: held-out velocities (FLeCS fit {seconds:.0f} s)\n")
        print(table([held_out_velocity(model, test)]))
        print(f"\n## {variant}: population forecast from the first time, W1 to held-out cells\n")
        print(table(forecast(model, train, test)))
    if args.no_grid:
        return
    print("\n## integrate_trajectories: exact times vs 32-point grid (forward + backward)\n")
    print(table(grid_speed(args.genes)))
    print("\n## Training on kNN trajectories (arc-length times): exact times vs grid\n")
    rows = []
    for grid in (None, 32):
        knn_train = train.copy()
        model, seconds = fit(knn_train, "knn", time_grid=grid, max_epochs=2, velocity_init=0)
        tr = knn_train.uns["celldyn_trajectories"]
        last = float(model.history["train_loss"].to_numpy().ravel()[-1])
        last_time = test.obs["time"].max()
        observed = np.asarray(test.X[test.obs["time"] == last_time], dtype=np.float64)
        w1 = wasserstein(simulate_populations(model, knn_train)[-1], observed)
        rows.append(
            {
                "time_grid": str(grid),
                "distinct_times": int(np.unique(tr["times"] - tr["times"][:, :1]).size),
                "fit_s": seconds,
                "final_train_loss": last,
                "w1_last_time": w1,
            }
        )
    rows[1]["speed_up"] = rows[0]["fit_s"] / rows[1]["fit_s"]
    rows[0]["speed_up"] = 1.0
    print(table(rows))


if __name__ == "__main__":
    main()
