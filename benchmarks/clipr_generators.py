"""CLIPR effect matrices from LCD across generator families, against baselines.

Every screen has a control, every single knockdown and ``--doubles`` doubles of
``--cells`` cells each, observed as counts. Families: the package's own
``simulate_perturbations`` (``own``) and the independently built
``simulate_diffusion_screen`` (``indep``: each directed edge with probability 0.15, as in
the issue-15 screen, so the number of regulators per gene grows with d; ``indep-sparse``:
two regulators per gene on average at every d; variants of density, effect size, sign mix,
count depth, dispersion and a DAG). For every screen one LCD is fitted with the package
defaults, and the same process scores (off-diagonal AUROC / AUPRC against the true network):

- ``tl.clipr`` with the defaults (``velocities='auto'``: the knockdown directions, as every
  gene of these screens is measured) and with ``velocities='model'`` (the drift's
  responses), and with the options given by ``--variants``;
- baselines: |correlation| and |partial correlation| of the log-normalized control cells,
  and model-free CLIPR (velocities ``-e_j`` at the targets, shifts of the log-normalized
  means).

    python benchmarks/clipr_generators.py                       # d = 15, all families, seed 0
    python benchmarks/clipr_generators.py --dims 50 --families own indep --seeds 0 1
    python benchmarks/clipr_generators.py --families own indep --seeds 0 1 2 \
        --sparse-latent False True                  # LCD's stage 1 dense and row-sparse

With ``--sparse-latent False True`` every screen is fitted twice, in the same process (the
LCD rows are named ``..., dense latent`` and ``..., sparse latent``; without a suffix they
are ``sparse_latent='auto'``'s, the package default: dense below 8 stage-1 minibatches per
epoch, row-sparse from 8). ``--batch-size`` is stage 1's minibatch size (default 4096, the
package's).
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import numpy as np
import pandas as pd
from lcd import _offdiagonal_scores, log_normalized, machine

FAMILIES = {
    "own": {},
    "indep": {},
    "indep-dense": {"density": 0.3},
    "indep-sparse": {},  # two edges per gene on average at every d
    "indep-weak": {"effect_scale": 0.5},
    "indep-shallow": {"depth": 3.0},
    "indep-activating": {"positive_fraction": 0.9},
    "indep-nb": {"dispersion": 3.0},
    "indep-dag": {"acyclic": True},
}


def screen(family: str, d: int, cells: int, doubles: int, seed: int):
    import celldyn as cd

    if family == "own":
        return cd.datasets.simulate_perturbations(
            d, n_cells=cells, n_doubles=doubles, counts=True, random_state=seed
        )
    options = dict(FAMILIES[family])
    if family == "indep-sparse":
        options["density"] = 2.0 / (d - 1)
    return cd.datasets.simulate_diffusion_screen(
        d, n_cells=cells, n_doubles=doubles, random_state=seed, **options
    )


def baselines(adata) -> dict[str, np.ndarray]:
    """Effect scores of the model-free baselines (regulator x target)."""
    from celldyn.tl import clipr_effects

    x = np.asarray(log_normalized(adata).X, dtype=np.float64)
    labels = adata.obs["perturbation"].astype(str).to_numpy()
    genes = list(adata.var_names)
    ctrl = x[labels == "control"]
    conditions = [q for q in pd.unique(labels) if q != "control"]
    shifts = np.stack([x[labels == q].mean(0) - ctrl.mean(0) for q in conditions])
    velocities = np.zeros_like(shifts)
    for row, q in enumerate(conditions):
        for gene in q.split("+"):
            velocities[row, genes.index(gene)] -= 1.0
    precision = np.linalg.pinv(np.cov(ctrl.T))
    return {
        "|correlation| (control)": np.abs(np.corrcoef(ctrl.T)),
        "|partial correlation| (control)": np.abs(precision),
        "model-free CLIPR": clipr_effects(velocities, shifts),
    }


def run(
    family: str,
    d: int,
    cells: int,
    doubles: int,
    seed: int,
    variants: dict,
    save: str | None,
    sparse_latent: tuple[bool | str, ...] = ("auto",),
    batch_size: int = 4096,
) -> list[dict]:
    import torch

    import celldyn as cd
    from celldyn.models import LCD

    adata = screen(family, d, cells, doubles, seed)
    rows = []
    for method, effects in baselines(adata).items():
        rows.append({"method": method, **_offdiagonal_scores(effects, adata)})
    for sparse in sparse_latent:
        start = time.perf_counter()
        torch.manual_seed(seed)
        LCD.setup_anndata(adata, size_factor_key="size_factor")
        model = LCD(adata)
        model.train(
            accelerator="cpu",
            progress=False,
            random_state=seed,
            sparse_latent=sparse,
            batch_size=batch_size,
        )
        seconds = time.perf_counter() - start
        path = {True: "sparse", False: "dense"}.get(sparse)  # None: 'auto'
        if save:
            folder = f"{save}/{family}_d{d}_s{seed}" + (f"_{path}" if path else "")
            model.save(folder, overwrite=True, save_anndata=True)
        for name, options in {
            "LCD + CLIPR (defaults)": {},
            "LCD + CLIPR, velocities='model'": {"velocities": "model"},
            **variants,
        }.items():
            cd.tl.clipr(adata, model=model, key_added="effects", **options)
            method = name + (f", {path} latent" if path else "")
            rows.append({"method": method, **_offdiagonal_scores(adata.varp["effects"], adata)})
        rows[-len(variants) - 2]["seconds"] = seconds
    return [{"family": family, "d": d, "seed": seed, **r} for r in rows]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[15])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--cells", type=int, default=250, help="cells per condition")
    parser.add_argument("--doubles", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--variants", default="{}", help="dict literal: name -> tl.clipr keyword arguments"
    )
    parser.add_argument(
        "--sparse-latent",
        nargs="+",
        default=["auto"],
        choices=["auto", "True", "False"],
        help="LCD.train's sparse_latent; several: one fit each",
    )
    parser.add_argument("--batch-size", type=int, default=4096, help="LCD's stage 1")
    parser.add_argument("--out", help="CSV file for the rows")
    parser.add_argument("--save", help="folder to save the fitted models in (with their data)")
    args = parser.parse_args(argv)

    import ast

    import lightning.pytorch  # noqa: F401  (sets its logger level on import)
    import torch

    import celldyn  # noqa: F401  (sets its logger's level on import; quieted below)

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    for name in ("lightning.pytorch", "scvi", "celldyn"):
        logging.getLogger(name).setLevel(logging.ERROR)
    variants = ast.literal_eval(args.variants)
    print(f"# CLIPR across generators\n\nmachine: {machine()}; torch threads {args.threads}\n")
    sparse = tuple({"True": True, "False": False}.get(v, v) for v in args.sparse_latent)
    rows = []
    for d in args.dims:
        for family in args.families:
            for seed in args.seeds:
                rows += run(
                    family,
                    d,
                    args.cells,
                    args.doubles,
                    seed,
                    variants,
                    args.save,
                    sparse,
                    args.batch_size,
                )
                table = pd.DataFrame(rows)
                if args.out:
                    table.to_csv(args.out, index=False)
                last = table[(table.family == family) & (table.d == d) & (table.seed == seed)]
                print(last.round(3).to_markdown(index=False), flush=True)
    table = pd.DataFrame(rows)
    summary = table.pivot_table(index="method", columns=["d", "family"], values="auroc")
    print("\n## AUROC, mean over seeds\n")
    print(summary.round(3).to_markdown())


if __name__ == "__main__":
    main()
