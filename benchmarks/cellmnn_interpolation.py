"""Cell-MNN leave-one-timepoint-out interpolation benchmark, plus training time and scaling.

Data: ``celldyn.datasets.simulate_grn`` time courses with a branching toggle switch (one
simulation per seed), projected on their first 50 principal components (centred, not
whitened). For every interior time ``t_k`` every method sees all other times and predicts the
cells at ``t_k``; the score is the exact W1 (``celldyn.metrics.wasserstein``) between the
prediction and the observed cells, averaged over the held-out times. Methods:

- ``cellmnn``: ``celldyn.models.CellMNN`` (affine flows ``dz/dt = A z + b``, the package
  default; ``--no-affine``: the paper's ``dz/dt = A z``) trained without ``t_k`` (early
  stopping on its own validation split of the training times), cells of ``t_{k-1}`` pushed
  to ``t_k`` (the paper's protocol). ``cellmnn_two_sided``: the same model, a mixture of the
  cells of ``t_{k-1}`` pushed forward and of ``t_{k+1}`` pushed backward, weighted like the
  interpolation below (both neighbours, like OT-interpolate).
- ``neural_ode``: an MLP velocity field ``dz/dt = f(z, t)`` with about as many parameters as
  Cell-MNN's operator MLP, same internal units, same minibatches and the same loss
  (``celldyn.module._cellmnn.snapshot_mmd`` plus the same kinetic penalty), integrated with
  ``celldyn.nn.integrate`` (torchdiffeq, fixed-step RK4), same early stopping and the same
  moving average of the weights (``--weight-averaging``); forward and two-sided like
  Cell-MNN.
- ``ot_interpolate``: exact OT (``ot.emd``, squared Euclidean cost) between ``t_{k-1}`` and
  ``t_{k+1}``; pairs drawn from the plan, linearly interpolated at ``t_k``.
- ``unbalanced_ot_interpolate``: the same with unbalanced OT, the marginal relaxation chosen
  on the training times (``interpolation_baseline(..., 'unbalanced')``).
- ``mean_interpolation``: the cells of ``t_{k-1}`` shifted by the linear interpolation of the
  population means of ``t_{k-1}`` and ``t_{k+1}``.
- ``nearest_copy``: the cells of the nearest observed time (the earlier one on ties).

The four baselines are ``celldyn.tl.interpolation_baseline`` (methods ``'ot'``,
``'unbalanced'``, ``'mean'``, ``'nearest'``).

    python benchmarks/cellmnn_interpolation.py            # 5 seeds x {5, 50} dims
    python benchmarks/cellmnn_interpolation.py --quick    # 1 seed x 5 dims, ~1 min
    python benchmarks/cellmnn_interpolation.py --scaling --batch-size 256  # 25k/250k cells

Run with ``OMP_NUM_THREADS=1`` (``--threads`` sets torch's threads, default 1). The scaling
runs each train in their own subprocess so ``ru_maxrss`` is theirs alone. ``--json`` saves
the rows; ``--merge a.json b.json`` prints the tables of saved runs (e.g. dims run in
parallel).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

METHODS = (
    "cellmnn",
    "cellmnn_two_sided",
    "neural_ode",
    "neural_ode_two_sided",
    "ot_interpolate",
    "unbalanced_ot_interpolate",
    "mean_interpolation",
    "nearest_copy",
)


# ----------------------------------------------------------------------------- data
def simulate(seed: int, *, n_genes: int, n_timepoints: int, cells_per_time: int, n_pcs: int):
    """Branching simulate_grn time course projected on its first ``n_pcs`` PCs."""
    from celldyn.datasets import simulate_grn

    adata = simulate_grn(
        n_genes, cells_per_time * n_timepoints, n_timepoints, branching=True, random_state=seed
    )
    x = np.asarray(adata.X, dtype=np.float64)
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:n_pcs].T, adata.obs["time"].to_numpy(np.float64)


# ----------------------------------------------------------------------------- baselines
BASELINES = {
    "ot_interpolate": "ot",
    "unbalanced_ot_interpolate": "unbalanced",
    "mean_interpolation": "mean",
    "nearest_copy": "nearest",
}
"""Benchmark names of the ``celldyn.tl.interpolation_baseline`` methods."""


def snapshots(z, t):
    """AnnData with the cells ``z`` in ``obsm['X_pca']`` and their times in ``obs['time']``."""
    import anndata as ad

    adata = ad.AnnData(np.zeros((len(z), 1), dtype=np.float32), obsm={"X_pca": z})
    adata.obs["time"] = t
    return adata


def baseline(name, adata, times, k, rng):
    """Cells at ``times[k]`` predicted by a baseline from ``times[k - 1]`` and ``times[k + 1]``."""
    from celldyn.tl import interpolation_baseline

    return interpolation_baseline(
        adata, times[k], BASELINES[name], time_key="time", rep="X_pca", random_state=rng
    )


def two_sided(forward, backward, times, k, n, rng):
    """Mixture of ``n`` cells: forward-pushed with weight 1 - alpha, backward-pushed alpha."""
    alpha = (times[k] - times[k - 1]) / (times[k + 1] - times[k - 1])
    n_back = int(round(alpha * n))
    parts = [(forward, n - n_back), (backward, n_back)]
    return np.concatenate(
        [cells[rng.choice(len(cells), size, replace=size > len(cells))] for cells, size in parts]
    )


# ----------------------------------------------------------------------------- Cell-MNN
def fit_cellmnn(z, t, times, k, seed, cfg):
    import anndata as ad
    import torch

    from celldyn.models import CellMNN

    adata = ad.AnnData(np.zeros((len(z), 1), dtype=np.float32), obsm={"X_pca": z})
    adata.obs["time"] = t
    CellMNN.setup_anndata(adata, time_key="time", n_components=z.shape[1])
    torch.manual_seed(seed)
    model = CellMNN(
        adata,
        lambda_kinetic=cfg["lambda_kinetic"],
        affine=cfg["affine"],
        internal_scale=cfg["internal_scale"],
        max_rate=cfg["max_rate"],
        lambda_marginal=cfg["lambda_marginal"],
        lambda_mean_path=cfg["lambda_mean_path"],
    )
    start = time.perf_counter()
    model.train(
        holdout=[times[k]],
        max_epochs=cfg["max_epochs"],
        batch_size=cfg["batch_size"],
        n_partners=cfg["n_partners"],
        lr=cfg["lr"],
        early_stopping=True,
        early_stopping_patience=cfg["patience"],
        validation_smoothing=cfg["validation_smoothing"],
        weight_averaging=cfg["weight_averaging"],
        random_state=seed,
        accelerator="cpu",
        progress=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    seconds = time.perf_counter() - start
    n_epochs = len(model.history["train_loss"])
    n_params = sum(p.numel() for p in model.module.operator_net.parameters())
    info = {"seconds": seconds, "epochs": n_epochs, "params": n_params}
    return (model.predict(times[k - 1], times[k]), model.predict(times[k + 1], times[k])), info


# ----------------------------------------------------------------------------- neural ODE
def _hidden_width(n_params: int, d: int, n_layers: int) -> int:
    """Width h of an MLP (d+1) -> h x n_layers -> d with about ``n_params`` parameters."""
    # (d+1)h + h + (n_layers-1)(h^2 + h) + h d + d = a h^2 + b h + d
    a, b = n_layers - 1, (d + 2) + (n_layers - 1) + d
    return max(8, int(round((-b + np.sqrt(b * b + 4 * a * (n_params - d))) / (2 * a))))


def fit_neural_ode(z, t, times, k, seed, cfg, n_params: int):
    """Train an MLP velocity field by the Cell-MNN loss; return the cells pushed to t_k."""
    import torch
    from torch import nn

    from celldyn.models._cellmnn import _SnapshotDataModule, averaging_weight, latent_scale
    from celldyn.module._cellmnn import snapshot_mmd
    from celldyn.nn import integrate

    d, n_layers = z.shape[1], 3
    width = _hidden_width(n_params, d, n_layers)
    train = t != times[k]
    scale = latent_scale(z[train], cfg["internal_scale"])  # Cell-MNN's internal units
    t0, span = times[0], times[-1] - times[0]
    grid = (times - t0) / span
    codes = np.searchsorted(times, t)
    train_groups = np.arange(len(times)) != k
    step = float(np.diff(grid).min()) / 2

    torch.manual_seed(seed)
    layers, n_in = [], d + 1
    for _ in range(n_layers):
        layers += [nn.Linear(n_in, width), nn.SiLU()]
        n_in = width
    net = nn.Sequential(*layers, nn.Linear(n_in, d))

    def field(time_, state):
        stamp = time_.expand(*state.shape[:-1], 1).to(state.dtype)
        return net(torch.cat([state, stamp], -1))

    def push(batch):
        """States ``(batch, n_groups, d)`` of the start cells at every later time."""
        z0, group = batch["z"], batch["group"]
        pushed = z0.new_zeros(len(z0), len(times), d)
        for s in torch.unique(group).tolist():
            cells = group == s
            path = integrate(field, z0[cells], grid[s:], method="rk4", options={"step_size": step})
            pushed[cells, s:] = path.transpose(0, 1)
        return pushed

    def loss(batch):
        pushed = push(batch)
        mmd, valid = snapshot_mmd(pushed, batch, gamma=0.7, kernels=("laplace", "rbf"))
        states = torch.cat([batch["z"][:, None], pushed], 1)
        mask = torch.cat([torch.ones_like(valid[:, :1]), valid], 1)
        kinetic = field(torch.zeros(()), states[mask]).square().sum(-1).mean()
        return mmd + cfg["lambda_kinetic"] * kinetic

    data = _SnapshotDataModule(
        z / scale,
        codes,
        np.zeros(len(z), dtype=np.int64),
        grid,
        train_groups,
        batch_size=cfg["batch_size"],
        n_partners=cfg["n_partners"],
        validation_size=0.1,
        random_state=seed,
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg["node_lr"], weight_decay=1e-5)
    best, best_state, since_best, epochs, monitor = np.inf, None, 0, 0, None
    beta = cfg["validation_smoothing"]  # the same moving average as CellMNN.train
    decay, steps = cfg["weight_averaging"], 0  # and the same average of the weights
    params = list(net.parameters())
    average = [p.detach().clone() for p in params]
    start = time.perf_counter()
    for _ in range(cfg["max_epochs"]):
        epochs += 1
        for batch in data.train_dataloader():
            optimizer.zero_grad()
            loss(batch).backward()
            optimizer.step()
            steps += 1
            with torch.no_grad():
                for mean, p in zip(average, params, strict=True):
                    mean.lerp_(p, averaging_weight(decay, steps))  # 1 at decay 0
        with torch.no_grad():
            raw = [p.detach().clone() for p in params]
            for p, mean in zip(params, average, strict=True):  # validate (and keep) the average
                p.copy_(mean)
            value = float(np.mean([float(loss(b)) for b in data.val_dataloader()]))
            state = {n: p.detach().clone() for n, p in net.state_dict().items()}
            for p, weights in zip(params, raw, strict=True):
                p.copy_(weights)
        monitor = value if monitor is None else beta * monitor + (1 - beta) * value
        value = monitor
        if value < best:
            best, since_best, best_state = value, 0, state
        else:
            since_best += 1
            if since_best >= cfg["patience"]:
                break
    seconds = time.perf_counter() - start
    net.load_state_dict(best_state)
    predictions = []
    with torch.no_grad():
        for source in (k - 1, k + 1):
            cells = torch.as_tensor(z[t == times[source]] / scale, dtype=torch.float32)
            span_ = [grid[source], grid[k]]
            path = integrate(field, cells, span_, method="rk4", options={"step_size": step})
            predictions.append(path[-1].numpy() * scale)
    n_node = sum(p.numel() for p in net.parameters())
    info = {"seconds": seconds, "epochs": epochs, "params": n_node, "width": width}
    return tuple(predictions), info


# ----------------------------------------------------------------------------- LOO run
def score_neural_ode(z, t, times, k, seed, cfg, cellmnn_info, rng):
    """W1 of the forward and two-sided neural-ODE predictions (NaN if the solver diverged)."""
    from celldyn.metrics import wasserstein
    from celldyn.nn import SolverDivergedError

    observed = z[t == times[k]]
    try:
        (forward, backward), info = fit_neural_ode(
            z, t, times, k, seed, cfg, cellmnn_info["params"]
        )
    except SolverDivergedError as err:  # reported, never scored as a number
        return {"neural_ode": np.nan, "neural_ode_two_sided": np.nan}, {"error": str(err)}
    mixed = two_sided(forward, backward, times, k, len(observed), rng)
    scores = {
        "neural_ode": wasserstein(forward, observed),
        "neural_ode_two_sided": wasserstein(mixed, observed),
    }
    return scores, info


def run_seed(seed: int, n_dims: int, cfg: dict, z_all, t) -> list[dict]:
    from celldyn.metrics import wasserstein

    z = z_all[:, :n_dims]
    times = np.unique(t)
    data = snapshots(z, t)
    rows = []
    for k in range(1, len(times) - 1):
        observed = z[t == times[k]]
        rng = np.random.default_rng(seed)
        row = {"seed": seed, "dims": n_dims, "held_out": float(times[k])}
        n = len(observed)
        (forward, backward), info = fit_cellmnn(z, t, times, k, seed, cfg)
        row["cellmnn"] = wasserstein(forward, observed)
        mixed = two_sided(forward, backward, times, k, n, rng)
        row["cellmnn_two_sided"] = wasserstein(mixed, observed)
        row["cellmnn_info"] = info
        if cfg["neural_ode"]:
            node_scores, node_info = score_neural_ode(z, t, times, k, seed, cfg, info, rng)
        else:
            node_scores, node_info = {"neural_ode": np.nan, "neural_ode_two_sided": np.nan}, {}
        row |= node_scores
        row["neural_ode_info"] = node_info
        for name in BASELINES:
            row[name] = wasserstein(baseline(name, data, times, k, rng), observed)
        print(
            f"seed {seed} dims {n_dims} t={times[k]:.3g}: "
            + ", ".join(f"{m} {row[m]:.3f}" for m in METHODS)
            + f" | cellmnn {info['seconds']:.1f}s/{info['epochs']}ep,"
            f" node {node_info.get('seconds', 0):.1f}s/{node_info.get('epochs', 0)}ep",
            file=sys.stderr,
            flush=True,
        )
        rows.append(row)
    return rows


def _per_held_out(rows: list[dict]) -> str:
    """Per held-out time: means over seeds, seeds where Cell-MNN beats OT, epochs run."""
    columns = ("cellmnn", "cellmnn_two_sided", "ot_interpolate")
    lines = [
        "| dims | held-out | " + " | ".join(columns) + " | cellmnn < OT | Cell-MNN epochs run |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for dims, held in sorted({(r["dims"], r["held_out"]) for r in rows}):
        sub = [r for r in rows if r["dims"] == dims and r["held_out"] == held]
        means = [np.mean([r[m] for r in sub]) for m in columns]
        wins = sum(r["cellmnn"] < r["ot_interpolate"] for r in sub)
        epochs = [r["cellmnn_info"]["epochs"] for r in sub]
        lines.append(
            f"| {dims} | {held:g} | "
            + " | ".join(f"{v:.3f}" for v in means)
            + f" | {wins}/{len(sub)} | {min(epochs)}–{max(epochs)} |"
        )
    return "\n".join(lines)


def summarize(rows: list[dict]) -> str:
    lines = [
        "| dims | " + " | ".join(METHODS) + " | cellmnn < OT | two-sided < OT |",
        "| ---: |" + " ---: |" * (len(METHODS) + 2),
    ]
    for dims in sorted({r["dims"] for r in rows}):
        sub = [r for r in rows if r["dims"] == dims]
        seeds = sorted({r["seed"] for r in sub})
        # mean over held-out times per seed, then mean ± sd over seeds
        per_seed = {
            m: np.array([np.mean([r[m] for r in sub if r["seed"] == s]) for s in seeds])
            for m in METHODS
        }
        cells = [
            f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f}" for v in per_seed.values()
        ]
        wins = [
            int(np.sum(per_seed[m] < per_seed["ot_interpolate"]))
            for m in ("cellmnn", "cellmnn_two_sided")
        ]
        lines.append(
            f"| {dims} | "
            + " | ".join(cells)
            + "".join(f" | {w}/{len(seeds)} seeds" for w in wins)
            + " |"
        )
    lines += ["", _per_held_out(rows)]
    lines += ["", "| dims | method | s per fit | epochs | s per epoch | parameters |"]
    lines.append("| ---: | --- | ---: | ---: | ---: | ---: |")
    for dims in sorted({r["dims"] for r in rows}):
        for m in ("cellmnn", "neural_ode"):
            infos = [
                r[f"{m}_info"] for r in rows if r["dims"] == dims and "seconds" in r[f"{m}_info"]
            ]
            if not infos:
                continue
            sec = np.array([i["seconds"] for i in infos])
            ep = np.array([i["epochs"] for i in infos])
            lines.append(
                f"| {dims} | {m} | {sec.mean():.1f} | {ep.mean():.0f} | "
                f"{(sec / ep).mean():.3f} | {infos[0]['params']} |"
            )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- scaling
def inflate(z: np.ndarray, t: np.ndarray, n_cells: int, seed: int = 0):
    """Resample ``n_cells`` cells (with replacement) and add 5% of each component's sd as noise."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(z), n_cells, replace=True))
    noise = rng.normal(size=(n_cells, z.shape[1])) * 0.05 * z.std(0)
    return z[idx] + noise, t[idx]


def scaling_child(n_cells: int, n_dims: int, batch_size: int, n_batches: int) -> dict:
    """Train Cell-MNN on ``n_cells`` inflated cells (own process: its own peak RSS).

    ``n_batches`` > 0 limits training to that many minibatches (and validation batches); the
    epoch time is then extrapolated from the time per batch.
    """
    import anndata as ad
    import torch

    from celldyn.models import CellMNN

    z, t = simulate(0, n_genes=60, n_timepoints=7, cells_per_time=300, n_pcs=n_dims)
    z, t = inflate(z, t, n_cells)
    adata = ad.AnnData(np.zeros((n_cells, 1), dtype=np.float32), obsm={"X_pca": z})
    adata.obs["time"] = t
    CellMNN.setup_anndata(adata, time_key="time", n_components=n_dims)
    torch.manual_seed(0)
    model = CellMNN(adata)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    limits = {}
    if n_batches > 0:
        limits = {"limit_train_batches": n_batches, "limit_val_batches": n_batches}
    start = time.perf_counter()
    model.train(
        max_epochs=1,
        batch_size=batch_size,
        accelerator="cpu",
        progress=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        **limits,
    )
    seconds = time.perf_counter() - start
    n_epoch_batches = int(np.ceil(0.9 * np.sum(t < t.max()) / batch_size))
    n_run = min(n_batches, n_epoch_batches) if n_batches > 0 else n_epoch_batches
    rss_trained = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    model.get_operators()
    inference = time.perf_counter() - start
    return {
        "n_cells": n_cells,
        "dims": n_dims,
        "batch_size": batch_size,
        "threads": torch.get_num_threads(),
        "train_s": seconds,
        "batches_run": n_run,
        "batches_per_epoch": n_epoch_batches,
        "epoch_s": seconds / n_run * n_epoch_batches,
        "operators_all_cells_s": inference,
        "peak_rss_before_training_mib": rss_before,
        "peak_rss_training_mib": rss_trained,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_scaling(sizes, dims, batch_size, threads, n_batches) -> str:
    lines = [
        "| cells | dims | threads | batches timed | s per batch | epoch (s) "
        "| operators of all cells (s) | peak RSS (MiB): before training | after training "
        "| after the operators of all cells |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    for n_dims in dims:
        for n in sizes:
            cmd = [sys.executable, __file__, "--scaling-child", str(n), str(n_dims)]
            cmd += ["--batch-size", str(batch_size), "--threads", str(threads)]
            cmd += ["--scaling-batches", str(n_batches)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(r, file=sys.stderr, flush=True)
            lines.append(
                f"| {n:,} | {n_dims} | {r['threads']} | {r['batches_run']} | "
                f"{r['train_s'] / r['batches_run']:.2f} | {r['epoch_s']:.0f} | "
                f"{r['operators_all_cells_s']:.1f} | {r['peak_rss_before_training_mib']:.0f} | "
                f"{r['peak_rss_training_mib']:.0f} | {r['peak_rss_mib']:.0f} |"
            )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 5 dims, fewer epochs")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0, help="run seeds first..first+seeds-1")
    parser.add_argument("--dims", type=int, nargs="+", default=[5, 50])
    parser.add_argument("--n-genes", type=int, default=60)
    parser.add_argument("--n-timepoints", type=int, default=5)
    parser.add_argument("--cells-per-time", type=int, default=120)
    parser.add_argument("--max-epochs", type=int, default=150)
    parser.add_argument("--patience", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--n-partners", type=int, default=128)
    parser.add_argument("--lambda-kinetic", type=float, default=1e-3)
    parser.add_argument("--lr", type=float, default=1e-2, help="Cell-MNN learning rate")
    parser.add_argument("--node-lr", type=float, default=3e-3)
    parser.add_argument("--no-neural-ode", action="store_true", help="skip the neural ODE")
    parser.add_argument(
        "--no-affine", action="store_true", help="Cell-MNN without drift: dz/dt = A z (paper)"
    )
    parser.add_argument(
        "--internal-scale",
        default="common",
        choices=("component", "common"),
        help="CellMNN(internal_scale=...): whiten each component or one scale for all",
    )
    parser.add_argument("--max-rate", type=float, default=10.0, help="CellMNN(max_rate=...)")
    parser.add_argument(
        "--lambda-marginal", type=float, default=0.0, help="CellMNN(lambda_marginal=...)"
    )
    parser.add_argument(
        "--lambda-mean-path", type=float, default=0.0, help="CellMNN(lambda_mean_path=...)"
    )
    parser.add_argument(
        "--validation-smoothing",
        type=float,
        default=0.9,
        help="CellMNN.train(validation_smoothing=...): moving average of the validation loss "
        "that early stopping and the restored weights follow (0: the raw loss)",
    )
    parser.add_argument(
        "--weight-averaging",
        type=float,
        default=0.99,
        help="CellMNN.train(weight_averaging=...), also for the neural ODE: decay of the moving "
        "average of the weights (0: the raw weights)",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write all rows to this file")
    parser.add_argument("--merge", nargs="+", help="print the tables of saved --json runs")
    parser.add_argument("--scaling", action="store_true", help="run the 25k/250k scaling")
    parser.add_argument("--scaling-sizes", type=int, nargs="+", default=[25_000, 250_000])
    parser.add_argument("--scaling-threads", type=int, default=2)
    parser.add_argument("--scaling-dims", type=int, nargs="+", default=[5])
    parser.add_argument("--scaling-batches", type=int, default=20, help="0: a full epoch")
    parser.add_argument("--scaling-child", type=int, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore")

    if args.merge:
        unique = {}
        for path in args.merge:
            with open(path) as f:
                unique |= {(r["seed"], r["dims"], r["held_out"]): r for r in json.load(f)}
        print(summarize(list(unique.values())))
        return
    if args.scaling_child:
        child = scaling_child(*args.scaling_child, args.batch_size, args.scaling_batches)
        print(json.dumps(child))
        return
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {args.threads} thread(s), load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    if args.scaling:
        sizes, threads = args.scaling_sizes, args.scaling_threads
        batches = args.scaling_batches
        print(run_scaling(sizes, args.scaling_dims, args.batch_size, threads, batches))
        return
    if args.quick:
        args.seeds, args.dims, args.max_epochs = 1, [5], 20
    cfg = {
        "max_epochs": args.max_epochs,
        "patience": args.patience,
        "batch_size": args.batch_size,
        "n_partners": args.n_partners,
        "lambda_kinetic": args.lambda_kinetic,
        "lr": args.lr,
        "node_lr": args.node_lr,
        "neural_ode": not args.no_neural_ode,
        "affine": not args.no_affine,
        "internal_scale": args.internal_scale,
        "max_rate": args.max_rate,
        "lambda_marginal": args.lambda_marginal,
        "lambda_mean_path": args.lambda_mean_path,
        "validation_smoothing": args.validation_smoothing,
        "weight_averaging": args.weight_averaging,
    }
    rows = []
    start = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        z, t = simulate(
            seed,
            n_genes=args.n_genes,
            n_timepoints=args.n_timepoints,
            cells_per_time=args.cells_per_time,
            n_pcs=max(args.dims),
        )
        for dims in args.dims:
            rows += run_seed(seed, dims, cfg, z, t)
            if args.json:  # after every seed, so an interrupted run keeps what it measured
                with open(args.json, "w") as f:
                    json.dump(rows, f, indent=1)
    print(f"# settings: {vars(args)}; total {time.perf_counter() - start:.0f} s")
    print(summarize(rows))


if __name__ == "__main__":
    main()
