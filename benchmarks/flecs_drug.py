"""FLeCS drug effects: predicting unseen drugs from their fingerprints.

Data (simulated, known answer): a random 20-gene FLeCS field (3 regulators per gene) is the
base network. 50 drugs have random 16-bit fingerprints (20 % ones); their true effects are
non-linear functions of the bits, ``p = 1.2 tanh(f A)`` on production and
``d = 0.3 tanh(f B)`` on decay. Snapshot data without pairing: 300 control cells at time 0
(resting states of the base field reached from random starts, + noise 0.05) and, for each
drug, 40 cells at time 1 and 40 at time 2 (each from its own control-like start, integrated
under the drug's true offsets), plus Gaussian noise (0.02).

Pipeline as a user would run it: for each drug, ``pp.time_groups`` + ``pp.trajectories``
(``method='quantile'``, OT chains control -> t1 -> t2, rep ``X``) on control + that drug's
cells, indices mapped back and concatenated; the true base field is stored in ``uns['flecs']``
(isolating the drug part) and ``tl.drug_effects`` is fitted on 40 drugs. The 10 other drugs
are held out: only their fingerprints are given.

Scores on the held-out drugs' cells (velocity error = mean squared error to the true
``dG/dt`` under the true drug effect):

- **model**: offsets predicted from the held-out fingerprints (``varm`` columns);
- **no effect**: the base field alone;
- **mean drug**: the mean of the learnt training-drug offsets (a drug-agnostic effect, i.e.
  what features add beyond "some drug");

and the Pearson correlation of predicted with true offsets, for the held-out drugs and (fit)
for the training drugs. Three seeds (``SEEDS=0,1,2``; ``EPOCHS`` sets the epochs, 100;
``LR`` the learning rate, 0.01 as the package's).

Run ``OMP_NUM_THREADS=1 python benchmarks/flecs_drug.py`` (about 3 min on the loaded
2-core machine).

Measured (2-core Intel Xeon, load 2.1-3.3, 1 torch thread, 100 epochs, Adam ``eps=1e-8``
as everywhere in the package since commit d039717, lr 0.01)::

    seed  fit_s  mse_model  mse_no_effect  mse_mean_drug  r_prod  r_decay  r_prod_fit  r_decay_fit
       0   49.4    0.02258        0.08772        0.07488  0.0205   0.3310      0.0830       0.4525
       1   46.7    0.01038        0.03521        0.03855  0.4746   0.3264      0.4880       0.3816
       2   41.0   0.007786        0.03292        0.04129  0.4642   0.1841      0.5044       0.2232

Held-out velocity error: model / no effect 0.26, 0.29, 0.24; model / mean drug 0.30, 0.27,
0.19. Same runs with other learning rates, model / no effect: lr 0.005 0.18, 0.25, 0.19;
lr 0.02 0.27, 0.37, 0.35. The earlier run with scvi-tools' Adam ``eps=0.01`` and lr 0.02 did
better: 0.16, 0.23, 0.17 (decay offsets r 0.72, 0.72, 0.63; production 0.05, 0.24, 0.36):
with ``eps=0.01`` Adam damps the steps of parameters with small gradients, which here acted
as a helpful regulariser (the package's unit test of the drug model, a better-posed problem,
goes the other way: offset correlations 0.91 -> 0.996). Production offsets are recovered
barely (r 0.02-0.47, also on training drugs), decay offsets partly (r 0.18-0.33): from
control-like starts near a resting state, a production shift and a decay shift change the
paths in nearly the same way (and saturated sigmoids hide production shifts), so only their
combined effect on the dynamics is identifiable here. An earlier
design with uniformly random starts (no resting population, OT pairs far apart) gave
model / no effect 0.73-1.12: the drug model needs trajectories whose first cell is a good
proxy of the treated cell's past.
"""

from __future__ import annotations

import logging
import os
import time
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import torch

from celldyn.nn import GRNVectorField, integrate
from celldyn.pp import time_groups, trajectories
from celldyn.tl import drug_effects

N_GENES, N_BITS, N_DRUGS, N_HELD_OUT, N_CELLS = 20, 16, 50, 10, 40
EPOCHS = int(os.environ.get("EPOCHS", "100"))
LR = float(os.environ.get("LR", "0.01"))
TRAIN = {"max_epochs": EPOCHS, "batch_size": 256, "lr": LR, "accelerator": "cpu"}
SEEDS = [int(s) for s in os.environ.get("SEEDS", "0,1,2").split(",")]


def quiet() -> None:
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "celldyn", "scvi"):
        logging.getLogger(name).setLevel(logging.ERROR)


def base_field(rng: np.random.Generator) -> GRNVectorField:
    src = np.concatenate([rng.choice(N_GENES, 3, replace=False) for _ in range(N_GENES)])
    dst = np.repeat(np.arange(N_GENES), 3)
    field = GRNVectorField(N_GENES, src, dst, decay_init=rng.uniform(0.3, 0.8, N_GENES))
    with torch.no_grad():
        field.grn.weight.copy_(torch.as_tensor(rng.normal(0, 1.5, len(src))))
        field.bias.copy_(torch.as_tensor(rng.normal(0, 0.5, N_GENES)))
    return field


def true_effects(bits: np.ndarray, rng: np.random.Generator):
    a = rng.normal(0, 1.0, (N_BITS, N_GENES)) * (rng.random((N_BITS, N_GENES)) < 0.3)
    b = rng.normal(0, 1.0, (N_BITS, N_GENES)) * (rng.random((N_BITS, N_GENES)) < 0.3)
    return 1.2 * np.tanh(bits @ a), 0.3 * np.tanh(bits @ b)


def velocity(field, x, production, decay) -> np.ndarray:
    field.production_offset = torch.as_tensor(production, dtype=torch.float32)
    field.decay_offset = torch.as_tensor(decay, dtype=torch.float32)
    with torch.no_grad():
        v = field.gene_velocity(torch.as_tensor(x, dtype=torch.float32)).numpy()
    field.production_offset = field.decay_offset = None
    return v


def resting(field, n, rng) -> torch.Tensor:
    """Untreated cells: the base field's resting states (t = 40 from random starts) + noise."""
    x0 = torch.as_tensor(rng.uniform(0.2, 1.5, (n, N_GENES)), dtype=torch.float32)
    with torch.no_grad():
        rest = integrate(field, x0, torch.tensor([0.0, 40.0]), rtol=1e-6)[-1]
    return (rest + 0.05 * torch.as_tensor(rng.normal(size=rest.shape))).clamp(min=0).float()


def simulate(field, production, decay, n_per_time, rng):
    """Cells of one drug at times 1 and 2, each from its own resting (control-like) start."""
    cells, times = [], []
    for t in (1.0, 2.0):
        x0 = resting(field, n_per_time, rng)
        field.production_offset = torch.as_tensor(production, dtype=torch.float32)
        field.decay_offset = torch.as_tensor(decay, dtype=torch.float32)
        with torch.no_grad():
            x = integrate(field, x0, torch.tensor([0.0, t]), rtol=1e-6)[-1].numpy()
        field.production_offset = field.decay_offset = None
        cells.append(x)
        times.append(np.full(n_per_time, t))
    return np.concatenate(cells), np.concatenate(times)


def run(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    field = base_field(rng)
    names = [f"drug{i}" for i in range(N_DRUGS)]
    bits = (rng.random((N_DRUGS, N_BITS)) < 0.2).astype(np.float32)
    features = pd.DataFrame(bits, index=names, columns=[f"bit{i}" for i in range(N_BITS)])
    production, decay = true_effects(bits, rng)
    x = [resting(field, 300, rng).numpy()]
    t, label = [np.zeros(300)], [np.array(["control"] * 300)]
    for i, name in enumerate(names):
        xi, ti = simulate(field, production[i], decay[i], N_CELLS, rng)
        x.append(xi), t.append(ti), label.append(np.array([name] * len(xi)))
    x = np.concatenate(x)
    x = (x + 0.02 * rng.normal(size=x.shape)).astype(np.float32)
    adata = ad.AnnData(
        x, obs=pd.DataFrame({"drug": np.concatenate(label), "time": np.concatenate(t)})
    )
    adata.obs_names = [f"c{i}" for i in range(adata.n_obs)]
    held_out = names[-N_HELD_OUT:]
    train = adata[~adata.obs["drug"].isin(held_out)].copy()
    indices, traj_times = [], []
    for name in names[:-N_HELD_OUT]:
        keep = np.flatnonzero(train.obs["drug"].isin(["control", name]))
        sub = train[keep].copy()
        time_groups(sub, time_key="time")
        trajectories(sub, method="quantile", rep="X", n_trajectories=N_CELLS, length=3)
        indices.append(keep[sub.uns["celldyn_trajectories"]["indices"]])
        traj_times.append(sub.uns["celldyn_trajectories"]["times"])
    train.uns["celldyn_trajectories"] = {
        "indices": np.concatenate(indices),
        "times": np.concatenate(traj_times),
    }
    train.uns["flecs"] = {"models": {"0": field.to_arrays()}}
    start = time.perf_counter()
    drug_effects(train, features, condition_key="drug", random_state=seed, progress=False, **TRAIN)
    seconds = time.perf_counter() - start

    learnt_p = train.varm["flecs_drug_production_offset"]
    learnt_d = train.varm["flecs_drug_decay_offset"]
    cells = adata[adata.obs["drug"].isin(held_out)]
    rows = [names.index(n) for n in cells.obs["drug"]]
    truth = velocity(field, cells.X, production[rows], decay[rows])
    drugs = cells.obs["drug"].astype(str).to_numpy()
    model_p, model_d = learnt_p[drugs].to_numpy().T, learnt_d[drugs].to_numpy().T
    model = velocity(field, cells.X, model_p, model_d)
    none = velocity(field, cells.X, np.zeros((len(rows), N_GENES)), np.zeros((len(rows), N_GENES)))
    mean_p = learnt_p[names[:-N_HELD_OUT]].to_numpy().mean(1)
    mean_d = learnt_d[names[:-N_HELD_OUT]].to_numpy().mean(1)
    mean = velocity(
        field, cells.X, np.tile(mean_p, (len(rows), 1)), np.tile(mean_d, (len(rows), 1))
    )
    held = [names.index(n) for n in held_out]
    corr_p = np.corrcoef(learnt_p[held_out].T.to_numpy().ravel(), production[held].ravel())[0, 1]
    corr_d = np.corrcoef(learnt_d[held_out].T.to_numpy().ravel(), decay[held].ravel())[0, 1]
    seen = names[:-N_HELD_OUT]
    fit_p = np.corrcoef(learnt_p[seen].T.to_numpy().ravel(), production[: len(seen)].ravel())[0, 1]
    fit_d = np.corrcoef(learnt_d[seen].T.to_numpy().ravel(), decay[: len(seen)].ravel())[0, 1]
    return {
        "seed": seed,
        "fit_s": seconds,
        "mse_model": float(((model - truth) ** 2).mean()),
        "mse_no_effect": float(((none - truth) ** 2).mean()),
        "mse_mean_drug": float(((mean - truth) ** 2).mean()),
        "corr_production": float(corr_p),
        "corr_decay": float(corr_d),
        "train_corr_production": float(fit_p),
        "train_corr_decay": float(fit_d),
    }


def main() -> None:
    quiet()
    torch.set_num_threads(1)
    table = pd.DataFrame([run(seed) for seed in SEEDS])
    table["model/no_effect"] = table["mse_model"] / table["mse_no_effect"]
    table["model/mean_drug"] = table["mse_model"] / table["mse_mean_drug"]
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
