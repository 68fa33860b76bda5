"""Real-data benchmark suite: every model on the real datasets it fits, beside simple baselines.

Every figure is computed in this process next to baselines run on the same split, and the
published figure is given where a paper reports one on the same data. Sections:

- ``cellmnn``: leave-one-timepoint-out on the embryoid body (``datasets.eb()``, 5 standardised
  PCs, held-out t = 1, 2, 3, exact W1 in that space against all cells of the held-out time)
  and on SCODE's hESC time course (5 standardised PCs of the 100 TFs, held-out 12, 24, 36,
  72 h) and on the dyngen bifurcation (``datasets.dyngen_bifurcation()``, a third-party
  simulator: 5 standardised PCs of the 135 genes, 5 quantile bins of the simulation time,
  the three interior bins held out). Cell-MNN with the package defaults
  (``train(holdout=[t])``, model selection on the training times only), pushed forward from
  the previous time (the paper's protocol) and two-sided (forward and backward mixed by the
  time fraction); baselines
  ``tl.interpolation_baseline``: OT-interpolation, unbalanced OT-interpolation (its
  relaxation chosen on the training times), the nearest-time copy. Published EB rows
  (von Bassewitz et al. 2025, Table 2): Cell-MNN 0.690, OT-MFM 0.713, OT-interpolate 0.749,
  OT-CFM 0.790.
- ``flecs``: BEELINE mESC and mDC with the non-specific ChIP-seq network (DoRothEA,
  RegNetwork, TRRUST) and, in the full run, TRRUST mouse alone as the prior, scored against
  the cell-type-specific ChIP-seq network and (mESC) the loss/gain-of-function network on
  the prior's candidate edges: AUROC, AUPRC ratio and early precision ratio (BEELINE's) of
  FLeCS (``tl.flecs`` defaults on ``pp.trajectories(method='knn')``; edges ranked by the
  edge effects ``varp['flecs_effects']`` and by ``|W|``; and the sigmoid warm start of the
  former default, ``warm_start='velocities'``, by edge effects) and of ``tl.grn_baseline``:
  ``|Pearson r|``, GENIE3-style forest, ridge on OT-matched differences.
- ``lcd``: Norman 2019 subset, the 5 doubles whose singles are present held out: energy
  distance, MMD and RMSE of the mean change (all 500 genes, top-20 DE genes) of LCD (package
  defaults; 30 of its 31 CRISPRa targets are not measured) and of
  ``tl.perturbation_baseline`` (additive, mean of training perturbations, no change), all on
  ``log1p`` of the counts scaled to 10⁴ per cell over the 500 genes.
  Sachs 2005 with every condition (the reagents mapped to their target proteins with
  ``targets``): held-out ICAM-2 + inhibitor doubles against additive and no change, and
  CLIPR of the LCD fitted to the other conditions against both reference networks and their
  skeleton; Papalexi 2021 (control and the knockouts of measured genes): CLIPR against known
  IFN-gamma pathway directions. The model-free CLIPR of the observed mean shifts and ``|r|``
  in the control cells are the CLIPR baselines.

    python benchmarks/real_data.py --quick          # CI-sized subset, a few minutes
    python benchmarks/real_data.py --write          # full run, table into benchmarks/README.md
    python benchmarks/real_data.py --only cellmnn   # one section

``--data`` is the folder of the real datasets (default ``../shared/data`` beside the
repository, as the tests use). Run with ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "benchmarks" / "README.md"
START, END = "<!-- real-data:start -->", "<!-- real-data:end -->"
PUBLISHED_EB = {"Cell-MNN": 0.690, "OT-MFM": 0.713, "OT-interpolate": 0.749, "OT-CFM": 0.790}
IFN_GAMMA = [  # measured IFN-gamma pathway gene -> measured IFN-induced gene (effect > 0)
    ("IFNGR2", "STAT1"),
    ("JAK2", "STAT1"),
    ("IFNGR2", "UBE2L6"),
    ("JAK2", "UBE2L6"),
    ("STAT1", "UBE2L6"),
    ("IFNGR2", "STAT2"),
    ("JAK2", "STAT2"),
    ("STAT1", "STAT2"),
]


def quiet() -> None:
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "celldyn", "scvi"):
        logging.getLogger(name).setLevel(logging.ERROR)


def machine() -> str:
    from lcd import machine as cpu_and_load

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return f"{cpu_and_load()}, commit {commit}"


def standardised_pcs(x: np.ndarray, n: int = 5) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean(0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    z = u[:, :n] * s[:n]
    return z / z.std(0)


def subsample(t: np.ndarray, per_time: int | None, seed: int) -> np.ndarray:
    """Indices of at most ``per_time`` cells of every time (all cells if ``None``)."""
    if per_time is None:
        return np.arange(len(t))
    rng = np.random.default_rng(seed)
    keep = [
        rng.choice(np.flatnonzero(t == v), min(per_time, int((t == v).sum())), replace=False)
        for v in np.unique(t)
    ]
    return np.sort(np.concatenate(keep))


# ----------------------------------------------------------------------------- Cell-MNN
def cellmnn_rows(name, z, t, held_out, seeds, train) -> list[dict]:
    import anndata as ad
    import torch

    import celldyn as cd
    from celldyn.models import CellMNN

    times = np.unique(t)
    rows = []
    for seed in seeds:
        for time_k in held_out:
            k = int(np.flatnonzero(times == time_k)[0])
            target = z[t == time_k]
            adata = ad.AnnData(np.zeros((len(z), 1), dtype=np.float32), obsm={"X_pca": z})
            adata.obs["time"] = t
            base = {"dataset": name, "held_out": time_k, "seed": seed}
            for method in ("ot", "unbalanced", "nearest"):
                pred = cd.tl.interpolation_baseline(
                    adata, time_k, method, time_key="time", rep="X_pca", random_state=seed
                )
                label = {
                    "ot": "OT-interpolate",
                    "unbalanced": "unbalanced OT-interpolate",
                    "nearest": "nearest-time copy",
                }[method]
                w1 = cd.metrics.wasserstein(pred, target)
                rows.append({**base, "method": label, "w1": w1, "seconds": 0.0})
            CellMNN.setup_anndata(adata, time_key="time", rep="X_pca", n_components=z.shape[1])
            torch.manual_seed(seed)
            model = CellMNN(adata)
            start = time.perf_counter()
            model.train(
                holdout=[time_k], random_state=seed, accelerator="cpu", progress=False, **train
            )
            seconds = time.perf_counter() - start
            forward = model.predict(times[k - 1], time_k)
            backward = model.predict(times[k + 1], time_k)
            alpha = (time_k - times[k - 1]) / (times[k + 1] - times[k - 1])
            rng = np.random.default_rng(seed)
            n_back = int(round(alpha * len(target)))
            mixed = np.concatenate(
                [
                    forward[rng.choice(len(forward), len(target) - n_back)],
                    backward[rng.choice(len(backward), n_back)],
                ]
            )
            for label, pred in (("Cell-MNN (forward)", forward), ("Cell-MNN (two-sided)", mixed)):
                w1 = cd.metrics.wasserstein(pred, target)
                rows.append({**base, "method": label, "w1": w1, "seconds": seconds})
    return rows


def run_cellmnn(data: Path, quick: bool, seeds) -> list[dict]:
    import celldyn as cd

    eb = cd.datasets.eb(path=data / "eb_trajectorynet_pca5")
    z, t = eb.obsm["X_pca"], eb.obs["time"].to_numpy(float)
    hesc = cd.datasets.scode("hESC", path=data / "scode_chu2016_hesc_de")
    hz, ht = standardised_pcs(hesc.X), hesc.obs["time"].to_numpy(float)
    dyngen = cd.datasets.dyngen_bifurcation(path=data / "dyngen_bif")
    cd.pp.time_groups(dyngen, pseudotime_key="sim_time", n_groups=5, key_added="bin")
    dz, dt = standardised_pcs(dyngen.X), dyngen.obs["bin"].round(1).to_numpy(float)
    if quick:
        keep = subsample(t, 300, 0)
        train = {"max_epochs": 30}
        return cellmnn_rows("EB (300 cells/time)", z[keep], t[keep], [3.0], [0], train) + (
            cellmnn_rows("SCODE hESC", hz, ht, [36.0], [0], train)
        )
    return (
        cellmnn_rows("EB", z, t, [1.0, 2.0, 3.0], seeds, {})
        + cellmnn_rows("SCODE hESC", hz, ht, [12.0, 24.0, 36.0, 72.0], seeds, {})
        + cellmnn_rows("dyngen", dz, dt, np.unique(dt)[1:-1].tolist(), seeds, {})
    )


def cellmnn_table(rows: list[dict]) -> str:
    frame = pd.DataFrame(rows)
    mean = frame.groupby(["dataset", "method", "held_out"], sort=False)["w1"].mean().unstack()
    mean["mean"] = mean.mean(1)
    seconds = frame.groupby(["dataset", "method"], sort=False)["seconds"].mean()
    mean["fit s"] = seconds.round(0)
    lines = [mean.round(3).to_markdown()]
    if frame["dataset"].eq("EB").any():
        lines.append(
            "\nPublished on EB (mean over t = 1, 2, 3): "
            + ", ".join(f"{k} {v:.3f}" for k, v in PUBLISHED_EB.items())
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- FLeCS
def flecs_rows(
    name: str, adata, prior_name: str, truths: list[str], n_genes: int | None, train
) -> list[dict]:
    import scanpy as sc

    import celldyn as cd

    prior = adata.uns["networks"][prior_name]
    in_prior = adata.var_names.isin(set(prior["source"]) | set(prior["target"]))
    adata = adata[:, in_prior].copy()
    if n_genes is not None and adata.n_vars > n_genes:
        regulators = adata.var_names.isin(set(prior["source"]))
        variance = np.asarray(adata.X.var(0)).ravel() + 1e6 * regulators  # keep regulators first
        adata = adata[:, np.sort(np.argsort(-variance)[:n_genes])].copy()
    sc.pp.pca(adata, n_comps=min(20, adata.n_vars - 1))
    cd.pp.time_groups(adata, time_key="time")
    cd.pp.prior_network(adata, prior)
    cd.pp.trajectories(adata, method="knn")
    prior_matrix = adata.varp["celldyn_prior"].tocoo()
    candidates = pd.DataFrame(
        {
            "source": adata.var_names[prior_matrix.row],
            "target": adata.var_names[prior_matrix.col],
        }
    )
    candidates = candidates[candidates.source != candidates.target]
    predictions, seconds = {}, {}
    for label, key, options in (
        ("FLeCS", "flecs", {}),
        ("FLeCS sigmoid start", "flecs_sigmoid", {"warm_start": "velocities"}),
    ):
        start = time.perf_counter()
        cd.tl.flecs(adata, accelerator="cpu", progress=False, key_added=key, **train, **options)
        seconds[f"{label} effects"] = time.perf_counter() - start
        predictions[f"{label} effects"] = adata.varp[f"{key}_effects"]
        if not options:
            predictions["FLeCS |W|"] = adata.varp[f"{key}_weights"]
            seconds["FLeCS |W|"] = seconds[f"{label} effects"]
    for method, label in (
        ("correlation", "|Pearson r|"),
        ("forest", "GENIE3-style forest"),
        ("ot_ridge", "OT-ridge"),
    ):
        start = time.perf_counter()
        predictions[label] = cd.tl.grn_baseline(adata, method, time_key="celldyn_time")
        seconds[label] = time.perf_counter() - start
    rows = []
    for truth_name in truths:
        truth = adata.uns["networks"][truth_name]
        for label, pred in predictions.items():
            scores = cd.metrics.grn_scores(
                pred, truth, genes=adata.var_names, candidates=candidates
            )
            rows.append(
                {
                    "dataset": f"{name} ({adata.n_vars} genes, {prior_name} prior)",
                    "truth": truth_name,
                    "method": label,
                    "auroc": scores["auroc"],
                    "auprc_ratio": scores["auprc_ratio"],
                    "epr": scores["epr"],
                    "true / candidates": f"{scores['n_true_edges']}/{scores['n_candidates']}",
                    "seconds": seconds[label],
                }
            )
    return rows


def run_flecs(data: Path, quick: bool, seeds) -> list[dict]:
    import celldyn as cd

    mesc = cd.datasets.beeline("mESC", path=data / "beeline_mesc")
    trrust = cd.datasets.trrust("mouse", path=data / "trrust" / "trrust_rawdata.mouse.tsv")
    # BEELINE gene symbols are upper case, also for mouse
    trrust = trrust.assign(source=trrust["source"].str.upper(), target=trrust["target"].str.upper())
    mesc_truths = ["chip_celltype", "lofgof"]
    if quick:
        return flecs_rows(
            "BEELINE mESC", mesc, "chip_nonspecific", mesc_truths, 150, {"max_epochs": 20}
        )
    mdc = cd.datasets.beeline("mDC", path=data / "beeline_mdc")
    rows = []
    for adata, name, truths in (
        (mesc, "BEELINE mESC", mesc_truths),
        (mdc, "BEELINE mDC", ["chip_celltype"]),
    ):
        adata.uns["networks"]["trrust"] = trrust
        for prior_name in ("chip_nonspecific", "trrust"):
            rows += flecs_rows(name, adata, prior_name, truths, None, {})
    return rows


def flecs_table(rows: list[dict]) -> str:
    frame = pd.DataFrame(rows).set_index(["dataset", "truth", "method"])
    return frame.round(3).to_markdown()


# ----------------------------------------------------------------------------- LCD / CLIPR
def _log_normalized(counts) -> np.ndarray:
    """``log1p`` of counts scaled to 10⁴ per cell over the genes present (as LCD.predict)."""
    x = np.asarray(counts.todense() if hasattr(counts, "todense") else counts, dtype=np.float64)
    return np.log1p(x / np.maximum(x.sum(1, keepdims=True), 1.0) * 1e4).astype(np.float32)


def norman_rows(adata, quick: bool, seeds=(0,)) -> list[dict]:
    """Held-out doubles of the Norman subset: LCD (package defaults) against the baselines.

    Every method is scored on ``log1p`` of the counts scaled to 10⁴ per cell over the 500
    genes (the shipped ``X`` was normalised over the whole transcriptome, which LCD's
    generated counts do not have). Each LCD fit also predicts with independent draws
    (``sampling='independent'``, the default before session 20) and, with them, the control
    cells' library sizes for every condition (``library_sizes='control'``, the rule before
    session 15), from the same fit.
    """
    import anndata as ad

    import celldyn as cd
    from celldyn.datasets._screens import NORMAN19_HELD_OUT

    held_out = list(NORMAN19_HELD_OUT[:2] if quick else NORMAN19_HELD_OUT)
    adata = adata.copy()
    adata.X = _log_normalized(adata.layers["counts"])
    labels = adata.obs["perturbation"].astype(str)
    train = adata[~labels.isin(NORMAN19_HELD_OUT).to_numpy()].copy()
    predictions = {
        label: cd.tl.perturbation_baseline(train, held_out, method=method)
        for method, label in (
            ("additive", "additive"),
            ("mean", "mean of training perturbations"),
            ("no_change", "no change"),
        )
    }
    epochs = 20 if quick else 300
    sizes = labels.value_counts()
    seconds = {}
    for seed in seeds:
        start = time.perf_counter()
        model = lcd_fit(train, epochs, seed)
        for library, sampling, suffix in (
            ("shifted", "representative", ""),
            ("shifted", "independent", ", independent draws"),
            ("control", "independent", ", control library sizes"),
        ):
            generated = [
                model.predict(
                    [q],
                    int(sizes[q]),
                    library_sizes=library,
                    sampling=sampling,
                    random_state=seed + i,
                )
                for i, q in enumerate(held_out)
            ]
            lcd = ad.concat(generated)
            lcd.X = lcd.layers["log_normalized"]
            predictions[f"LCD, seed {seed}{suffix}"] = lcd
            # the fit and the default prediction only
            seconds.setdefault(f"LCD, seed {seed}", time.perf_counter() - start)
    rows = []
    for label, pred in predictions.items():
        table = cd.metrics.perturbation_table(pred, adata, perturbations=held_out)
        for double, scores in table.iterrows():
            rows.append(
                {
                    "double": double,
                    "method": label,
                    **scores.to_dict(),
                    "seconds": seconds.get(label, np.nan),
                }
            )
    return rows


def _skeleton(net: pd.DataFrame) -> set[frozenset]:
    return {frozenset(e) for e in zip(net.source, net.target, strict=True) if e[0] != e[1]}


def clipr_scores(effects: pd.DataFrame, networks: dict[str, pd.DataFrame]) -> dict[str, float]:
    """AUROC / AUPRC of |effect| among the effect matrix's off-diagonal entries."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    pairs = [(s, t) for s in effects.index for t in effects.columns if s != t]
    score = np.array([abs(effects.loc[s, t]) for s, t in pairs])
    out = {}
    for name, net in networks.items():
        edges = set(zip(net.source, net.target, strict=True))
        label = np.array([p in edges for p in pairs])
        out[f"auroc {name}"] = roc_auc_score(label, score)
        out[f"auprc {name}"] = average_precision_score(label, score)
    skeleton = _skeleton(pd.concat(networks.values()))
    label = np.array([frozenset(p) in skeleton for p in pairs])
    sym = effects.abs() + effects.abs().T.reindex(index=effects.index, columns=effects.columns)
    sym_score = np.array([sym.loc[s, t] for s, t in pairs])
    out["auroc skeleton"] = roc_auc_score(label, sym_score)
    return out


def lcd_fit(adata, epochs: int, seed: int = 0, targets=None, **model_kwargs):
    import torch

    from celldyn.models import LCD

    torch.manual_seed(seed)
    torch.set_num_threads(1)  # scanpy's numba kernels on sparse data leave torch at 2 threads
    LCD.setup_anndata(adata, layer="counts", targets=targets)
    model = LCD(adata, **model_kwargs)
    model.train(epochs, score_epochs=epochs, accelerator="cpu", progress=False, random_state=seed)
    return model


def model_free_clipr(adata, x: np.ndarray, targets: dict | None = None) -> pd.DataFrame:
    """CLIPR of the observed mean shifts with velocities -e_j (no model).

    Uses the single perturbations whose target (``targets``, default the label itself) is a
    measured gene.
    """
    import celldyn as cd

    genes = list(adata.var_names)
    targets = targets or {g: g for g in genes}
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    singles = [q for q in pd.unique(labels) if targets.get(q) in genes]
    ctrl = x[labels == "control"].mean(0)
    shifts = np.stack([x[labels == q].mean(0) - ctrl for q in singles])
    velocities = -np.eye(len(genes))[[genes.index(targets[q]) for q in singles]]
    return pd.DataFrame(cd.tl.clipr_effects(velocities, shifts), index=genes, columns=genes)


def clipr_frame(adata, key: str = "clipr_effects") -> pd.DataFrame:
    return pd.DataFrame(adata.varp[key], index=adata.var_names, columns=adata.var_names)


SACHS_HELD_OUT = ("ICAM2+AKTi", "ICAM2+U0126")


def sachs_rows(data: Path, quick: bool) -> dict[str, list[dict]]:
    """Sachs 2005 with every condition: held-out ICAM-2 + inhibitor doubles, then CLIPR.

    The interventions (ICAM-2, PMA, β2cAMP and five inhibitors) are labels; the reagents'
    target proteins are passed as ``targets``. LCD observes the rounded intensities as counts;
    predictions and baselines are compared on ``log1p`` of them.
    """
    import anndata as ad

    import celldyn as cd

    adata = cd.datasets.sachs(path=data / "sachs2005")
    adata.layers["counts"] = np.round(adata.layers["intensity"]).astype(np.float32)
    adata.X = np.log1p(adata.layers["counts"])
    labels = adata.obs["perturbation"].astype(str)
    held_out = list(SACHS_HELD_OUT[:1] if quick else SACHS_HELD_OUT)
    train = adata[~labels.isin(SACHS_HELD_OUT).to_numpy()].copy()
    predictions = {
        label: cd.tl.perturbation_baseline(train, held_out, method=method)
        for method, label in (("additive", "additive"), ("no_change", "no change"))
    }
    start = time.perf_counter()
    targets = {**adata.uns["perturbation_targets"], "ICAM2": None}
    model = lcd_fit(train, 20 if quick else 300, targets=targets)
    sizes = labels.value_counts()
    for sampling, label in (("representative", "LCD"), ("independent", "LCD, independent draws")):
        generated = ad.concat(
            [
                model.predict([q], int(sizes[q]), sampling=sampling, random_state=i)
                for i, q in enumerate(held_out)
            ]
        )
        generated.X = np.log1p(generated.layers["counts"])
        predictions[label] = generated
    cd.tl.clipr(train, model=model)
    seconds = time.perf_counter() - start
    doubles = []
    for label, pred in predictions.items():
        table = cd.metrics.perturbation_table(pred, adata, perturbations=held_out)
        doubles += [{"double": q, "method": label, **r.to_dict()} for q, r in table.iterrows()]
    networks = adata.uns["networks"]
    dataset = f"Sachs (all {len(sizes) - len(held_out)} training conditions)"
    effects = [
        {
            "dataset": dataset,
            "method": "LCD + CLIPR (defaults)",
            **clipr_scores(clipr_frame(train), networks),
            "resolved regulators": int((train.var["clipr_effects_resolution"] > 0.5).sum()),
            "seconds": seconds,
        }
    ]
    x = np.asarray(train.X, dtype=np.float64)
    free = model_free_clipr(train, x, adata.uns["perturbation_targets"])
    effects.append(
        {
            "dataset": dataset,
            "method": "model-free CLIPR (observed shifts of the 7 mapped singles)",
            **clipr_scores(free, networks),
        }
    )
    ctrl = x[train.obs["perturbation"].astype(str).to_numpy() == "control"]
    corr = pd.DataFrame(np.abs(np.corrcoef(ctrl.T)), index=adata.var_names, columns=adata.var_names)
    effects.append(
        {"dataset": dataset, "method": "|r| in control cells", **clipr_scores(corr, networks)}
    )
    return {"sachs_doubles": doubles, "sachs": effects}


def papalexi_rows(data: Path, quick: bool) -> list[dict]:
    import scanpy as sc

    import celldyn as cd

    adata = cd.datasets.papalexi21_subset(path=data / "papalexi2021_eccite_sceptre")
    measured = list(adata.var_names[adata.var["is_perturbation_target"]])
    labels = adata.obs["perturbation"].astype(str)
    adata = adata[labels.isin(["control", *measured]).to_numpy()].copy()
    cells = subsample(adata.obs["perturbation"].astype(str).to_numpy(), 150 if quick else None, 0)
    adata = adata[cells].copy()
    means = np.asarray(adata.layers["counts"].mean(0)).ravel()
    top = set(adata.var_names[np.argsort(-means)[: 30 if quick else 100]]) | set(measured)
    adata = adata[:, adata.var_names.isin(top)].copy()
    start = time.perf_counter()
    model = lcd_fit(adata, 20 if quick else 200, score_base="none")
    cd.tl.clipr(adata, model=model)
    seconds = time.perf_counter() - start
    ln = adata.copy()
    sc.pp.normalize_total(ln, target_sum=1e4, layer="counts")
    x = np.log1p(np.asarray(ln.layers["counts"].todense()))
    effects = {
        "LCD + CLIPR (score_base='none')": clipr_frame(adata),
        "model-free CLIPR (observed shifts)": model_free_clipr(adata, x),
    }
    rows = []
    for label, frame in effects.items():
        values = [frame.loc[s, t] for s, t in IFN_GAMMA]
        rows.append(
            {
                "dataset": f"Papalexi ({adata.n_obs} cells, {adata.n_vars} genes)",
                "method": label,
                "positive / known IFN-γ pairs": f"{sum(v > 0 for v in values)}/{len(values)}",
                **{f"{s}→{t}": v for (s, t), v in zip(IFN_GAMMA, values, strict=True)},
                "seconds": seconds if label.startswith("LCD") else 0.0,
            }
        )
    return rows


def run_lcd(data: Path, quick: bool, seeds) -> dict[str, list[dict]]:
    import celldyn as cd

    norman = cd.datasets.norman19_subset(path=data / "norman2019_perturbench_devel")
    return {
        "norman": norman_rows(norman, quick, seeds),
        **sachs_rows(data, quick),
        "papalexi": papalexi_rows(data, quick),
    }


def lcd_tables(parts: dict[str, list[dict]]) -> str:
    norman = pd.DataFrame(parts["norman"])
    metrics = ["energy_distance", "mmd", "rmse_mean", "rmse_mean_de", "pearson_delta"]
    per_double = norman.set_index(["double", "method"])[metrics].round(3).to_markdown()
    mean = norman.groupby("method", sort=False)[[*metrics, "seconds"]].mean()
    return "\n\n".join(
        [
            "Norman 2019 subset, held-out doubles (mean over doubles; LCD fit and sampling "
            "time in seconds):\n\n" + mean.round(3).to_markdown(),
            "Per double:\n\n" + per_double,
            "Sachs 2005, held-out ICAM-2 + inhibitor doubles (log1p of the intensities):\n\n"
            + pd.DataFrame(parts["sachs_doubles"])
            .set_index(["double", "method"])[metrics]
            .round(3)
            .to_markdown(),
            "CLIPR on Sachs 2005 (off-diagonal entries of the 11 x 11 effect matrix; LCD "
            "trained on every condition but the held-out doubles):\n\n"
            + pd.DataFrame(parts["sachs"]).set_index(["dataset", "method"]).round(3).to_markdown(),
            "CLIPR on Papalexi 2021 (effect of the row gene on the column gene, > 0 for "
            "activation; known IFN-γ signalling predicts > 0):\n\n"
            + pd.DataFrame(parts["papalexi"])
            .set_index(["dataset", "method"])
            .round(3)
            .to_markdown(),
        ]
    )


# ----------------------------------------------------------------------------- main
def write_readme(text: str) -> None:
    readme = README.read_text()
    block = f"{START}\n{text}\n{END}"
    if START in readme:
        head, rest = readme.split(START, 1)
        readme = head + block + rest.split(END, 1)[1]
    else:
        readme = readme.rstrip() + "\n\n## Real data (`real_data.py`)\n\n" + block + "\n"
    README.write_text(readme)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized subset")
    parser.add_argument("--only", choices=["cellmnn", "flecs", "lcd"], nargs="+")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--write", action="store_true", help="write the tables into README.md")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    quiet()
    sections = args.only or ["cellmnn", "flecs", "lcd"]
    seeds = list(range(args.seeds))
    started = time.perf_counter()
    out = [f"Machine: {machine()}; {'--quick' if args.quick else 'full run'}, seeds {seeds}."]
    if "cellmnn" in sections:
        t0 = time.perf_counter()
        rows = run_cellmnn(args.data, args.quick, seeds)
        out.append(f"### Cell-MNN: held-out time W1 ({time.perf_counter() - t0:.0f} s)\n")
        out.append(cellmnn_table(rows))
    if "flecs" in sections:
        t0 = time.perf_counter()
        rows = run_flecs(args.data, args.quick, seeds)
        out.append(f"### FLeCS: network recovery ({time.perf_counter() - t0:.0f} s)\n")
        out.append(flecs_table(rows))
    if "lcd" in sections:
        t0 = time.perf_counter()
        parts = run_lcd(args.data, args.quick, seeds)
        out.append(f"### LCD / CLIPR: real screens ({time.perf_counter() - t0:.0f} s)\n")
        out.append(lcd_tables(parts))
    out.append(f"Total {time.perf_counter() - started:.0f} s.")
    text = "\n\n".join(out)
    print(text)
    if args.write:
        write_readme(text)


if __name__ == "__main__":
    main()
