"""``celldyn`` command line: h5ad in, h5ad out, for scverse pipelines.

Logs go to stderr, there are no prompts, and the exit code is 0 on success, 1 when the
input is invalid (a missing, unreadable or non-h5ad file, an output path that cannot be
written, a missing key or column; reported as ``celldyn: error: ...``) and 2 on bad
command-line usage.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import _keys
from ._logging import logger

EXIT_OK, EXIT_INVALID_INPUT = 0, 1


def _check_file(path: Path, option: str) -> None:
    """Raise unless ``path`` (given as ``option``) is an existing regular file."""
    if path.is_dir():
        raise ValueError(f"{option} {str(path)!r} is a directory, not a file.")
    if not path.is_file():
        raise FileNotFoundError(f"{option} {str(path)!r} does not exist.")


def _check_output(path: Path, option: str = "--output", *, folder: bool = False) -> None:
    """Raise unless ``path`` can be created as a file (or, with ``folder``, a directory)."""
    if folder and path.exists() and not path.is_dir():
        raise ValueError(f"{option} {str(path)!r} is a file; give a directory.")
    if not folder and path.is_dir():
        raise ValueError(
            f"{option} {str(path)!r} is a directory; give a file name such as "
            f"{str(path / 'out.h5ad')!r}."
        )
    parent = next(p for p in (path.parent, *path.parent.parents) if p.exists())
    if not parent.is_dir():
        raise ValueError(f"{option} {str(path)!r}: {str(parent)!r} is a file, not a directory.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {str(path)!r}: directory {str(parent)!r} is not writable.")


def _read(path: Path):
    import anndata as ad

    _check_file(path, "--input")
    try:
        return ad.read_h5ad(path)
    except Exception as err:  # h5py, anndata: any failure means the file is not a usable h5ad
        raise ValueError(
            f"--input {str(path)!r} is not a readable .h5ad file ({type(err).__name__}: {err})."
        ) from err


def _write(adata, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        adata.write_h5ad(path)
    except OSError as err:
        raise ValueError(f"Cannot write --output {str(path)!r}: {err}") from err
    logger.info("wrote %s", path)


def _pp_recipe(args, adata) -> None:
    from . import pp

    pp.recipe(adata, n_top_genes=args.n_top_genes, denoise=None if args.no_denoise else "knn")


def _pp_time_groups(args, adata) -> None:
    from . import pp

    pp.time_groups(
        adata,
        time_key=args.time_key,
        pseudotime_key=args.pseudotime_key,
        n_groups=args.n_groups,
        key_added=args.key_added,
    )


def _pp_couplings(args, adata) -> None:
    from . import pp

    pp.couplings(adata, time_key=args.time_key, rep=args.rep, method=args.method)


def _pp_trajectories(args, adata) -> None:
    from . import pp

    pp.trajectories(
        adata,
        time_key=args.time_key,
        method=args.method,
        rep=args.rep,
        n_trajectories=args.n_trajectories,
        length=args.length,
        random_state=args.random_state,
    )


def _read_network(path: str):
    import pandas as pd

    path = Path(path)
    _check_file(path, "--network")
    try:
        return pd.read_csv(path, sep="\t" if path.suffix in {".tsv", ".txt"} else ",")
    except (OSError, ValueError) as err:  # pandas' parser errors are ValueErrors
        raise ValueError(
            f"--network {str(path)!r} is not a readable csv/tsv table "
            f"({type(err).__name__}: {err})."
        ) from err


def _pp_prior_network(args, adata) -> None:
    from . import pp

    net = _read_network(args.network)
    pp.prior_network(adata, net, weight=args.weight, case_sensitive=not args.case_insensitive)


def _flecs(args, adata) -> None:
    from . import pp, tl

    if args.network is not None:
        pp.prior_network(adata, _read_network(args.network), weight=args.weight)
    tl.flecs(
        adata,
        layer=args.layer,
        max_epochs=args.max_epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        random_state=args.random_state,
        n_models=args.n_models,
        resample=args.resample,
        knockout=args.knockout,
        progress=False,
        warm_start=args.warm_start,
        velocity_target=args.velocity_target,
        velocity_weight=args.velocity_weight,
        **({} if args.velocity_init is None else {"velocity_init": args.velocity_init}),
    )


def _simulate(args, adata):
    """Simulate the fitted FLeCS network (with ``--genes``: wild type and knockout)."""
    from . import tl

    settings = {"key": args.key, "t_max": args.t_max, "n_steps": args.n_steps}
    if args.genes:
        return tl.knockout(adata, args.genes, scale=args.scale, **settings)
    return tl.simulate(adata, **settings)


def _cellmnn(args, adata) -> None:
    from . import tl

    tl.cellmnn(
        adata,
        time_key=args.time_key,
        rep=args.rep,
        n_components=args.n_components,
        max_epochs=args.max_epochs,
        interactions=args.interactions,
        random_state=args.random_state,
        progress=False,
    )


def _intervention_targets(pairs: list[str] | None) -> dict[str, str | None] | None:
    """``['U0126=Mek', 'ICAM2=']`` -> ``{'U0126': 'Mek', 'ICAM2': None}``."""
    if pairs is None:
        return None
    targets = {}
    for pair in pairs:
        name, sep, gene = pair.partition("=")
        if not sep or not name:
            raise ValueError(
                f"--targets takes INTERVENTION=GENE pairs (GENE may be empty), got {pair!r}."
            )
        targets[name] = gene or None
    return targets


def _lcd(args, adata) -> None:
    from . import tl

    tl.lcd(
        adata,
        perturbation_key=args.perturbation_key,
        control=args.control,
        layer=args.layer,
        targets=_intervention_targets(args.targets),
        max_epochs=args.max_epochs,
        score_epochs=args.score_epochs,
        random_state=args.random_state,
        progress=False,
    )


def _add_io(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", "-i", type=Path, required=True, help="input .h5ad")
    parser.add_argument("--output", "-o", type=Path, required=True, help="output .h5ad")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="celldyn", description="Explicit dynamical models of single cells."
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="only log warnings")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the end-to-end job on built-in simulated data")
    demo.add_argument("--output", "-o", type=Path, default=Path("celldyn_demo"))
    demo.add_argument("--n-cells", type=int, default=2000)
    demo.add_argument("--max-epochs", type=int, default=30, help="training epochs per model")
    demo.add_argument("--random-state", type=int, default=0)
    demo.set_defaults(handler=None)

    pp = sub.add_parser("pp", help="preprocessing steps").add_subparsers(dest="step", required=True)
    recipe = pp.add_parser("recipe", help="normalize, HVG, denoise, PCA")
    _add_io(recipe)
    recipe.add_argument("--n-top-genes", type=int, default=4000)
    recipe.add_argument("--no-denoise", action="store_true")
    recipe.set_defaults(handler=_pp_recipe)

    groups = pp.add_parser("time-groups", help="ordered time groups per cell")
    _add_io(groups)
    groups.add_argument("--time-key")
    groups.add_argument("--pseudotime-key")
    groups.add_argument(
        "--n-groups",
        type=int,
        default=None,
        help="pseudotime bins (default 10; not with --time-key)",
    )
    groups.add_argument("--key-added", default=_keys.TIME)
    groups.set_defaults(handler=_pp_time_groups)

    coupl = pp.add_parser("couplings", help="OT couplings between consecutive time groups")
    _add_io(coupl)
    coupl.add_argument("--time-key", default=_keys.TIME)
    coupl.add_argument("--rep", default="X_pca")
    coupl.add_argument("--method", choices=["exact", "sinkhorn"], default="exact")
    coupl.set_defaults(handler=_pp_couplings)

    traj = pp.add_parser("trajectories", help="extract cell trajectories (FLeCS)")
    _add_io(traj)
    traj.add_argument("--time-key", default=_keys.TIME)
    traj.add_argument("--method", choices=["knn", "quantile"], default="knn")
    traj.add_argument("--rep", default="X_pca")
    traj.add_argument("--n-trajectories", type=int, default=1000)
    traj.add_argument("--length", type=int, default=10)
    traj.add_argument("--random-state", type=int, default=0)
    traj.set_defaults(handler=_pp_trajectories)

    prior = pp.add_parser("prior-network", help="prior network from a source/target table")
    _add_io(prior)
    prior.add_argument("--network", required=True, help="csv/tsv with source,target[,weight]")
    prior.add_argument(
        "--weight", default="auto", help="weight column ('auto': 'weight' if present)"
    )
    prior.add_argument("--case-insensitive", action="store_true")
    prior.set_defaults(handler=_pp_prior_network)

    flecs = sub.add_parser("flecs", help="fit FLeCS on pp trajectories and a prior network")
    _add_io(flecs)
    flecs.add_argument("--network", help="csv/tsv prior (source,target[,weight]); else varp prior")
    flecs.add_argument(
        "--weight", default="auto", help="weight column of --network ('auto': 'weight' if present)"
    )
    flecs.add_argument("--layer", default=None)
    flecs.add_argument("--max-epochs", type=int, default=100)
    flecs.add_argument("--batch-size", type=int, default=64)
    flecs.add_argument("--lr", type=float, default=1e-2)
    flecs.add_argument("--random-state", type=int, default=0)
    flecs.add_argument("--n-models", type=int, default=1, help="ensemble size (edge std)")
    flecs.add_argument("--resample", action="store_true", help="bootstrap members' trajectories")
    flecs.add_argument("--knockout", nargs="+", help="genes whose outgoing prior edges to remove")
    flecs.add_argument(
        "--velocity-init", type=int, help="L-BFGS iterations of the warm start (0: none)"
    )
    flecs.add_argument(
        "--warm-start",
        choices=["velocities", "ot_pairs"],
        default="velocities",
        help="fit OT velocities, or the ODE over each gap to OT barycentres",
    )
    flecs.add_argument(
        "--velocity-target", choices=["ot", "chords"], default="ot", help="warm-start velocities"
    )
    flecs.add_argument(
        "--velocity-weight", type=float, default=0.1, help="weight of the velocity term in training"
    )
    flecs.set_defaults(handler=_flecs)

    simulate = sub.add_parser(
        "simulate", help="simulate a fitted FLeCS network; with --genes, a knockout too"
    )
    simulate.add_argument("--input", "-i", type=Path, required=True, help="fitted .h5ad")
    simulate.add_argument("--output", "-o", type=Path, required=True, help="simulated cells")
    simulate.add_argument("--key", default="flecs", help="key_added of the FLeCS fit")
    simulate.add_argument("--genes", nargs="+", help="genes to knock out (or down, --scale)")
    simulate.add_argument("--scale", type=float, default=0.0, help="outgoing-edge factor")
    simulate.add_argument("--t-max", type=float, default=None)
    simulate.add_argument("--n-steps", type=int, default=10)
    simulate.set_defaults(handler=_simulate)

    cellmnn = sub.add_parser("cellmnn", help="fit Cell-MNN on a time course in PCA space")
    _add_io(cellmnn)
    cellmnn.add_argument("--time-key", required=True)
    cellmnn.add_argument("--rep", default="X_pca")
    cellmnn.add_argument("--n-components", type=int, default=5)
    cellmnn.add_argument(
        "--max-epochs", type=int, default=None, help="default: ~1,000 minibatches, at most 200"
    )
    cellmnn.add_argument(
        "--interactions", choices=["operator", "expression_scaled"], default="operator"
    )
    cellmnn.add_argument("--random-state", type=int, default=0)
    cellmnn.set_defaults(handler=_cellmnn)

    lcd = sub.add_parser("lcd", help="fit LCD on a perturbation screen (raw counts)")
    _add_io(lcd)
    lcd.add_argument("--perturbation-key", default=_keys.PERTURBATION)
    lcd.add_argument("--control", default=_keys.CONTROL)
    lcd.add_argument("--layer", default=None, help="counts layer (default: X)")
    lcd.add_argument(
        "--targets",
        nargs="+",
        metavar="INTERVENTION=GENE",
        help="measured gene each intervention acts on (U0126=Mek; ICAM2= for none); "
        "interventions named like a gene target it",
    )
    lcd.add_argument("--max-epochs", type=int, default=300, help="latent-state epochs")
    lcd.add_argument("--score-epochs", type=int, default=300, help="score-matching epochs")
    lcd.add_argument("--random-state", type=int, default=0)
    lcd.set_defaults(handler=_lcd)
    return parser


def _run_step(handler: Callable, args: argparse.Namespace) -> None:
    """Read the input, run the step, write what it returns (a new AnnData) or the input."""
    _check_output(args.output)
    adata = _read(args.input)
    result = handler(args, adata)
    _write(adata if result is None else result, args.output)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``celldyn`` command line.

    Parameters
    ----------
    argv
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    The process exit code.
    """
    args = _build_parser().parse_args(argv)
    from .nn import SolverDivergedError

    level = logging.WARNING if args.quiet else logging.INFO
    for name in ("celldyn", "lightning.pytorch", "lightning.fabric", "scvi"):
        logging.getLogger(name).setLevel(level)
    try:
        if args.command == "demo":
            from ._demo import run_demo

            _check_output(args.output, folder=True)
            run_demo(
                args.output,
                n_cells=args.n_cells,
                max_epochs=args.max_epochs,
                random_state=args.random_state,
            )
        else:
            _run_step(args.handler, args)
    except (OSError, KeyError, ValueError, TypeError, SolverDivergedError) as err:
        logger.error("celldyn: error: %s", err)
        return EXIT_INVALID_INPUT
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
