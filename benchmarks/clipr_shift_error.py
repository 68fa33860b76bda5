"""Where LCD + CLIPR loses to the oracle on simulated screens: the error of the shifts.

Reads LCD fits saved by ``clipr_generators.py --save FOLDER`` (each with its data, which
holds the simulator's true latent states) and compares, per fit, CLIPR (knockdown
directions) on five estimates of the conditions' mean shifts:

- ``lcd``: the shifts of the mean fitted (MAP) states, what ``tl.clipr`` uses;
- ``oracle``: the shifts of the mean true latent states;
- ``oracle, LCD's link``: the same true states mapped into LCD's coordinates, the state
  with the same rate under LCD's gene scale, ``softplus⁻¹(softplus(x) · s_true / s_LCD)``;
  what exact states would give in the coordinates LCD's link ends in;
- ``marginal, LCD scale``: per gene, the condition means of a Gaussian latent
  ``x ~ N(mu_q, sigma^2)`` (one variance for all conditions, as under shift interventions
  of a linear SDE) observed through LCD's own count model ``NB(softplus(x) s l, theta)``,
  fitted by marginal likelihood (quadrature over ``x``) at LCD's gene scales ``s``;
- ``marginal, profiled scale``: the same, at the gene scale (a factor 1/64 ... 1 of LCD's)
  with the highest marginal likelihood on (up to) 100 cells per condition.

It also prints how the LCD shifts relate to the true ones: the mean per-gene correlation,
the part of the LCD shifts a per-gene cubic map of the true states does not explain
(``systematic``) and the standard error of the condition means (``noise``), both relative
to the size of the shifts. ``--no-marginal`` skips the two marginal columns (minutes of
fits per screen; the others take seconds).

    python benchmarks/clipr_generators.py --families indep indep-sparse --seeds 0 1 \
        --save /tmp/fits
    python benchmarks/clipr_shift_error.py /tmp/fits/*
"""

from __future__ import annotations

import argparse
import logging
import warnings

import numpy as np

FACTORS = (1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)
"""Candidate gene scales, relative to LCD's."""


def inverse_softplus(rate: np.ndarray) -> np.ndarray:
    """``softplus⁻¹`` of positive rates."""
    return rate + np.log(-np.expm1(-rate))


def condition_shifts(x: np.ndarray, labels: np.ndarray, conditions: list[str]) -> np.ndarray:
    control = x[labels == "control"].mean(0)
    return np.stack([x[labels == q].mean(0) - control for q in conditions])


def marginal_means(counts, library, codes, n_conditions, log_scale, *, iterations, nodes=120):
    """Per-gene marginal likelihood fit; returns (negative log-likelihood per gene, means)."""
    import torch
    import torch.nn.functional as F
    from scvi.distributions import NegativeBinomial

    z = torch.linspace(-7, 7, nodes)
    log_w = torch.distributions.Normal(0, 1).log_prob(z) + torch.log(z[1] - z[0])
    rate = np.maximum(counts / library[:, None] / np.exp(log_scale), 1e-3)
    start = inverse_softplus(rate)
    y = torch.tensor(counts, dtype=torch.float32)
    lib = torch.tensor(library, dtype=torch.float32)
    c = torch.tensor(codes)
    scale = torch.tensor(np.exp(log_scale), dtype=torch.float32)
    mu = torch.tensor(np.stack([start[codes == k].mean(0) for k in range(n_conditions)]))
    mu = mu.float().requires_grad_()
    sd = np.mean([start[codes == k].std(0) for k in range(n_conditions)], 0) + 1e-2
    log_sd = torch.tensor(np.log(sd), dtype=torch.float32).requires_grad_()
    log_theta = torch.full((counts.shape[1],), float(np.log(10.0)), requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [mu, log_sd, log_theta], max_iter=iterations, line_search_fn="strong_wolfe"
    )

    def per_gene():
        x = mu[c][..., None] + torch.exp(log_sd)[None, :, None] * z
        mean = F.softplus(x) * scale[:, None] * lib[:, None, None]
        theta = torch.exp(log_theta)[:, None].expand_as(mean)
        log_p = NegativeBinomial(mu=mean, theta=theta).log_prob(y[..., None].expand_as(mean))
        return -torch.logsumexp(log_p + log_w, -1).sum(0) / len(y)

    def closure():
        optimizer.zero_grad()
        loss = per_gene().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return per_gene().numpy(), mu.detach().numpy()


def diagnose(folder: str, *, marginal: bool = True) -> dict:
    from celldyn.metrics import grn_scores
    from celldyn.models import LCD
    from celldyn.tl import clipr_effects

    model = LCD.load(folder)
    adata = model.adata
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    order = list(model.perturbation_labels_)
    conditions = [q for q in order if q != "control"]
    codes = np.array([order.index(q) for q in labels])
    genes = list(adata.var_names)
    directions = np.zeros((len(conditions), len(genes)))
    for row, q in enumerate(conditions):
        for gene in q.split("+"):
            directions[row, genes.index(gene)] -= 1.0

    def auroc(shifts):
        effects = clipr_effects(directions, shifts)
        return grn_scores(effects, adata.uns["ground_truth_effects"], genes=adata.var_names)[
            "auroc"
        ]

    fitted = model.get_latent()
    true = np.asarray(adata.layers["latent"], dtype=np.float64)
    lcd, oracle = (condition_shifts(x, labels, conditions) for x in (fitted, true))
    cubic = np.stack(
        [
            np.polyval(np.polyfit(true[:, g], fitted[:, g], 3), true[:, g])
            for g in range(len(genes))
        ],
        1,
    )
    residual = fitted - cubic
    noise = np.stack(
        [residual[labels == q].std(0) / np.sqrt((labels == q).sum()) for q in conditions]
    )
    size = np.linalg.norm(lcd)

    log_scale = model.module.log_scale.detach().cpu().numpy().astype(np.float64)
    row = {
        "fit": folder.rstrip("/").split("/")[-1],
        "lcd": auroc(lcd),
        "oracle": auroc(oracle),
        "correlation": np.mean(
            [np.corrcoef(lcd[:, g], oracle[:, g])[0, 1] for g in range(len(genes))]
        ),
        "systematic": np.linalg.norm(lcd - condition_shifts(cubic, labels, conditions)) / size,
        "noise": np.sqrt((noise**2).sum()) / size,
    }
    truth = adata.uns["simulation"].get("gene_scale")
    if truth is not None:
        ratio = np.exp(log_scale) / np.asarray(truth, dtype=np.float64)
        mapped = inverse_softplus(np.maximum(np.logaddexp(0.0, true) / ratio, 1e-12))
        row["oracle, LCD's link"] = auroc(condition_shifts(mapped, labels, conditions))
        row["LCD / true scale"] = float(np.median(ratio))
    if marginal:
        row.update(marginal_columns(model, log_scale, codes, order, conditions, auroc, truth))
    return row


def marginal_columns(model, log_scale, codes, order, conditions, auroc, truth) -> dict:
    """CLIPR on the marginal condition means at LCD's and at the profiled gene scales."""
    adata = model.adata
    counts = np.asarray(adata.X, dtype=np.float64)
    library = adata.obs["size_factor"].to_numpy(dtype=np.float64)
    rng = np.random.default_rng(0)
    subset = np.concatenate(
        [
            rng.choice(cells, min(100, len(cells)), replace=False)
            for cells in (np.flatnonzero(codes == k) for k in range(len(order)))
        ]
    )
    profile = np.array(
        [
            marginal_means(
                counts[subset],
                library[subset],
                codes[subset],
                len(order),
                log_scale + np.log(f),
                iterations=30,
            )[0]
            for f in FACTORS
        ]
    )
    best = np.asarray(FACTORS)[profile.argmin(0)]
    rows = [order.index(q) for q in conditions]
    control = order.index("control")
    columns = {}
    for name, shift in (("LCD scale", 0.0), ("profiled scale", np.log(best))):
        _, mu = marginal_means(counts, library, codes, len(order), log_scale + shift, iterations=60)
        columns[f"marginal, {name}"] = auroc(mu[rows] - mu[control])
    if truth is not None:
        columns["profiled / true scale"] = float(np.median(np.exp(log_scale) * best / truth))
    return columns


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="LCD fits saved by clipr_generators.py")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--no-marginal", action="store_true", help="skip the marginal-likelihood columns"
    )
    args = parser.parse_args(argv)

    import pandas as pd
    import torch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    for name in ("lightning.pytorch", "scvi", "celldyn"):
        logging.getLogger(name).setLevel(logging.ERROR)
    rows = []
    for folder in args.folders:
        rows.append(diagnose(folder, marginal=not args.no_marginal))
        print(pd.DataFrame(rows[-1:]).round(3).to_markdown(index=False), flush=True)
    print(pd.DataFrame(rows).round(3).to_markdown(index=False))


if __name__ == "__main__":
    main()
