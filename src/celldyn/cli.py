"""``celldyn`` command line: h5ad in, h5ad out, for scverse pipelines.

Every step reads ``--input`` and, without ``--output``, updates it in place, so a pipeline
of steps on one file keeps every result; ``--output`` writes a new file instead (the input
is left as it was). Files are written to a temporary name first and then renamed, so a
failed step leaves the old file intact.

Logs go to stderr, there are no prompts, and the exit code is 0 on success, 1 when the
input is invalid (a missing, unreadable or non-h5ad file, an output path that cannot be
written, a missing key or column; reported as ``celldyn: error: ...``, naming the
``celldyn`` command to run where a step is missing) and 2 on bad command-line usage.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from . import __version__, _keys
from ._logging import logger

EXIT_OK, EXIT_INVALID_INPUT = 0, 1
_SLOTS = ("layers", "obsm", "obsp", "varm", "varp", "uns")


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


def _stored_keys(path: Path) -> set[str]:
    """``'slot[key]'`` of the fields stored in the h5ad file ``path`` (empty if unreadable)."""
    import h5py

    try:
        with h5py.File(path, "r") as file:
            return {f"{slot}[{key!r}]" for slot in _SLOTS if slot in file for key in file[slot]}
    except (OSError, TypeError, ValueError):
        return set()


def _warn_lost_results(adata, path: Path, source: Path) -> None:
    """Warn when writing ``adata`` over ``path`` (not the input) drops results stored there."""
    if not path.is_file() or path.resolve() == source.resolve():
        return
    kept = {f"{slot}[{key!r}]" for slot in _SLOTS for key in getattr(adata, slot).keys()}
    lost = sorted(_stored_keys(path) - kept)
    if lost:
        logger.warning(
            "celldyn: warning: --output %s already holds results that are not in --input %s "
            "and are replaced: %s. To keep every result, run each step on the previous "
            "step's file without --output (it is updated in place).",
            path,
            source,
            ", ".join(lost[:8]) + (", ..." if len(lost) > 8 else ""),
        )


def _write(adata, path: Path) -> None:
    """Write ``adata`` to ``path`` through a temporary file, so a failure leaves ``path`` as is."""
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp.h5ad")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        adata.write_h5ad(temporary)
        os.replace(temporary, path)
    except OSError as err:
        raise ValueError(f"Cannot write {str(path)!r}: {err}") from err
    finally:
        temporary.unlink(missing_ok=True)
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
        warm_start=None if args.warm_start == "none" else args.warm_start,
        velocity_target=args.velocity_target,
        velocity_weight=args.velocity_weight,
        save_model=args.save_model,
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
        save_model=args.save_model,
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
        save_model=args.save_model,
        progress=False,
    )


_MODEL_CLASSES = {"lcd": "LCD", "flecs": "FLeCS", "cellmnn": "CellMNN"}


def _load_model(folder: Path, kind: str, adata):
    """Load the model saved in ``folder`` (``--save-model``) as ``kind``."""
    from . import models

    cls = getattr(models, _MODEL_CLASSES[kind])
    if not folder.is_dir():
        raise ValueError(f"--model {str(folder)!r} is not a folder (a --save-model folder).")
    if not (folder / "model.pt").is_file():
        members = sorted(p.name for p in folder.glob("member_*") if p.is_dir())
        hint = f"; it holds an ensemble: give one member, e.g. {members[0]!r}" if members else ""
        raise ValueError(f"--model {str(folder)!r} holds no saved model (model.pt){hint}.")
    if (folder / "adata.h5ad").is_file():  # saved with the data it was trained on
        return cls.load(str(folder))
    return cls.load(str(folder), adata=adata.copy())  # registers on a copy, not the input


def _clipr(args, adata) -> None:
    from . import tl

    model = _load_model(args.model, args.model_type, adata)
    tl.clipr(
        adata,
        model=model,
        perturbations=args.perturbations,
        alpha=args.alpha,
        strength=args.strength,
        velocities=args.velocities,
        key_added=args.key_added,
    )


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show each option's default, except ``None`` (its help says what it means) and flags."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or isinstance(action.default, bool):
            return action.help or ""
        return super()._get_help_string(action)


_COMMANDS: dict[str, str] = {}
"""Python function -> the ``celldyn`` command that runs it (filled by :func:`_build_parser`)."""


def _step(subparsers, name: str, function: str | None, handler: Callable | None, **kwargs):
    """Add the subcommand ``name`` running ``function`` (e.g. ``'celldyn.pp.recipe'``)."""
    parser = subparsers.add_parser(name, formatter_class=_HelpFormatter, **kwargs)
    parser.set_defaults(handler=handler)
    if function is not None:
        _COMMANDS[function] = parser.prog  # e.g. 'celldyn pp recipe'
    return parser


def _add_io(parser: argparse.ArgumentParser, *, in_place: bool = True) -> None:
    parser.add_argument(
        "--input", "-i", type=Path, required=True, metavar="FILE", help="input .h5ad file"
    )
    if in_place:
        parser.add_argument(
            "--output",
            "-o",
            type=Path,
            default=None,
            metavar="FILE",
            help="output .h5ad file (default: update --input in place)",
        )
    else:
        parser.add_argument(
            "--output", "-o", type=Path, required=True, metavar="FILE", help="output .h5ad file"
        )


def _add_save_model(parser: argparse.ArgumentParser, model: str) -> None:
    parser.add_argument(
        "--save-model",
        type=Path,
        metavar="DIR",
        default=None,
        help=f"new or empty folder to save the trained {model} model in (loadable with "
        f"cd.models.{model}.load, and by `celldyn clipr --model DIR`); default: not saved",
    )


def _add_seed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--random-state", type=int, default=0, help="random seed")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="celldyn",
        description="Explicit dynamical models of single cells: h5ad in, h5ad out. Without "
        "--output a step updates its --input file in place, so a pipeline on one file keeps "
        "every result.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"celldyn {__version__}")
    parser.add_argument("--quiet", "-q", action="store_true", help="only log warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = _step(sub, "demo", None, None, help="run the end-to-end job on built-in simulated data")
    demo.add_argument(
        "--output", "-o", type=Path, default=Path("celldyn_demo"), help="folder of the results"
    )
    demo.add_argument("--n-cells", type=int, default=2000, help="simulated cells")
    demo.add_argument("--max-epochs", type=int, default=30, help="training epochs per model")
    _add_seed(demo)

    pp = _step(sub, "pp", None, None, help="preprocessing steps").add_subparsers(
        dest="step", required=True, metavar="STEP"
    )
    recipe = _step(
        pp, "recipe", "celldyn.pp.recipe", _pp_recipe, help="normalize, HVG, denoise, PCA"
    )
    _add_io(recipe)
    recipe.add_argument("--n-top-genes", type=int, default=4000, help="highly variable genes kept")
    recipe.add_argument(
        "--no-denoise", action="store_true", help="skip the kNN diffusion denoising"
    )

    groups = _step(
        pp,
        "time-groups",
        "celldyn.pp.time_groups",
        _pp_time_groups,
        help="ordered time groups per cell",
    )
    _add_io(groups)
    groups.add_argument("--time-key", help="obs column of measured times (one group each)")
    groups.add_argument("--pseudotime-key", help="obs column of a pseudotime to bin into groups")
    groups.add_argument(
        "--n-groups",
        type=int,
        default=None,
        help="pseudotime bins (default 10; not with --time-key)",
    )
    groups.add_argument("--key-added", default=_keys.TIME, help="obs column written")

    coupl = _step(
        pp,
        "couplings",
        "celldyn.pp.couplings",
        _pp_couplings,
        help="OT couplings between consecutive time groups",
    )
    _add_io(coupl)
    coupl.add_argument("--time-key", default=_keys.TIME, help="obs column of the time groups")
    coupl.add_argument("--rep", default="X_pca", help="obsm representation the costs use")
    coupl.add_argument("--method", choices=["exact", "sinkhorn"], default="exact", help="OT solver")

    traj = _step(
        pp,
        "trajectories",
        "celldyn.pp.trajectories",
        _pp_trajectories,
        help="extract cell trajectories (FLeCS)",
    )
    _add_io(traj)
    traj.add_argument("--time-key", default=_keys.TIME, help="obs column of the time groups")
    traj.add_argument(
        "--method", choices=["knn", "quantile"], default="knn", help="how cells are chained"
    )
    traj.add_argument("--rep", default="X_pca", help="obsm representation the method uses")
    traj.add_argument("--n-trajectories", type=int, default=1000, help="trajectories drawn")
    traj.add_argument("--length", type=int, default=10, help="cells per trajectory")
    _add_seed(traj)

    prior = _step(
        pp,
        "prior-network",
        "celldyn.pp.prior_network",
        _pp_prior_network,
        help="prior network from a source/target table",
    )
    _add_io(prior)
    prior.add_argument("--network", required=True, help="csv/tsv with source,target[,weight]")
    prior.add_argument(
        "--weight", default="auto", help="weight column ('auto': 'weight' if present)"
    )
    prior.add_argument(
        "--case-insensitive", action="store_true", help="match gene names ignoring case"
    )

    flecs = _step(
        sub,
        "flecs",
        "celldyn.tl.flecs",
        _flecs,
        help="fit FLeCS on pp trajectories and a prior network",
    )
    _add_io(flecs)
    flecs.add_argument(
        "--network",
        help="csv/tsv prior (source,target[,weight]); default: the prior already in the input",
    )
    flecs.add_argument(
        "--weight", default="auto", help="weight column of --network ('auto': 'weight' if present)"
    )
    flecs.add_argument("--layer", default=None, help="expression layer (default: X)")
    flecs.add_argument("--max-epochs", type=int, default=100, help="training epochs")
    flecs.add_argument("--batch-size", type=int, default=64, help="trajectories per batch")
    flecs.add_argument("--lr", type=float, default=1e-2, help="learning rate")
    _add_seed(flecs)
    flecs.add_argument("--n-models", type=int, default=1, help="ensemble size (edge std)")
    flecs.add_argument("--resample", action="store_true", help="bootstrap members' trajectories")
    flecs.add_argument("--knockout", nargs="+", help="genes whose outgoing prior edges to remove")
    flecs.add_argument(
        "--velocity-init",
        type=int,
        help="L-BFGS iterations of the warm start (default: the model's)",
    )
    flecs.add_argument(
        "--warm-start",
        choices=["linear", "velocities", "ot_pairs", "none"],
        default="linear",
        help="linear fit of OT velocities, sigmoid fit of them, the ODE over each gap to OT "
        "barycentres, or none",
    )
    flecs.add_argument(
        "--velocity-target", choices=["ot", "chords"], default="ot", help="warm-start velocities"
    )
    flecs.add_argument(
        "--velocity-weight", type=float, default=0.1, help="weight of the velocity term in training"
    )
    _add_save_model(flecs, "FLeCS")
    flecs.epilog = "With --n-models > 1 and --save-model DIR, member i is saved in DIR/member_i."

    simulate = _step(
        sub,
        "simulate",
        "celldyn.tl.simulate",
        _simulate,
        help="simulate a fitted FLeCS network; with --genes, a knockout too",
    )
    _add_io(simulate, in_place=False)
    simulate.add_argument("--key", default=_keys.FLECS, help="key_added of the FLeCS fit")
    simulate.add_argument("--genes", nargs="+", help="genes to knock out (or down, --scale)")
    simulate.add_argument("--scale", type=float, default=0.0, help="outgoing-edge factor")
    simulate.add_argument(
        "--t-max", type=float, default=None, help="end time (default: the fit's time span)"
    )
    simulate.add_argument("--n-steps", type=int, default=10, help="time points written")
    _COMMANDS["celldyn.tl.knockout"] = f"{simulate.prog} --genes"

    cellmnn = _step(
        sub,
        "cellmnn",
        "celldyn.tl.cellmnn",
        _cellmnn,
        help="fit Cell-MNN on a time course in PCA space",
    )
    _add_io(cellmnn)
    cellmnn.add_argument("--time-key", required=True, help="obs column of numeric times")
    cellmnn.add_argument("--rep", default="X_pca", help="obsm representation modelled")
    cellmnn.add_argument("--n-components", type=int, default=5, help="components of --rep used")
    cellmnn.add_argument(
        "--max-epochs", type=int, default=None, help="default: ~1,000 minibatches, at most 200"
    )
    cellmnn.add_argument(
        "--interactions",
        choices=["operator", "expression_scaled"],
        default="operator",
        help="gene interactions written to varp",
    )
    _add_seed(cellmnn)
    _add_save_model(cellmnn, "CellMNN")

    lcd = _step(
        sub, "lcd", "celldyn.tl.lcd", _lcd, help="fit LCD on a perturbation screen (raw counts)"
    )
    _add_io(lcd)
    lcd.add_argument(
        "--perturbation-key", default=_keys.PERTURBATION, help="obs column of the conditions"
    )
    lcd.add_argument("--control", default=_keys.CONTROL, help="label of unperturbed cells")
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
    _add_seed(lcd)
    _add_save_model(lcd, "LCD")

    clipr = _step(
        sub,
        "clipr",
        "celldyn.tl.clipr",
        _clipr,
        help="causal gene x gene effects of a saved model (CLIPR)",
        epilog="Example: celldyn lcd -i screen.h5ad --save-model lcd_model && "
        "celldyn clipr -i screen.h5ad --model lcd_model --model-type lcd",
    )
    _add_io(clipr)
    clipr.add_argument(
        "--model", type=Path, required=True, metavar="DIR", help="folder of --save-model"
    )
    clipr.add_argument(
        "--model-type", choices=list(_MODEL_CLASSES), required=True, help="the saved model"
    )
    clipr.add_argument(
        "--perturbations",
        nargs="+",
        help="LCD: conditions used (default: all trained); FLeCS, Cell-MNN: genes knocked "
        "down (default: every gene)",
    )
    clipr.add_argument("--alpha", type=float, default=1e-3, help="relative Tikhonov regularisation")
    clipr.add_argument(
        "--strength", type=float, default=0.1, help="FLeCS, Cell-MNN: knockdown size"
    )
    clipr.add_argument(
        "--velocities",
        choices=["auto", "model", "targets"],
        default="auto",
        help="perturbation velocities (see celldyn.tl.clipr)",
    )
    clipr.add_argument("--key-added", default=_keys.CLIPR_EFFECTS, help="varp and uns key written")
    return parser


def _name_commands(message: str) -> str:
    """Replace the Python functions a message names by the ``celldyn`` commands running them."""

    def command(match: re.Match) -> str:
        return f"`{_COMMANDS[match[1]]}`" if match[1] in _COMMANDS else match[0]

    return re.sub(r"`(celldyn\.[a-z]+\.[A-Za-z_]+)`", command, message)


def _run_step(handler: Callable, args: argparse.Namespace) -> None:
    """Read the input, run the step, write what it returns (a new AnnData) or the input."""
    output = args.input if args.output is None else args.output
    _check_output(output)
    adata = _read(args.input)
    result = handler(args, adata)
    result = adata if result is None else result
    _warn_lost_results(result, output, args.input)
    _write(result, output)


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

    names = ("celldyn", "lightning.pytorch", "lightning.fabric", "scvi")
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.WARNING if args.quiet else logging.INFO)
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
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        logger.error("celldyn: error: %s", _name_commands(str(message)))
        return EXIT_INVALID_INPUT
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
