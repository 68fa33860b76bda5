"""scanpy's krumsiek11 myeloid simulation with its signed ground-truth network.

The network is parsed from the boolean model file scanpy ships
(``scanpy/sim_models/krumsiek11.txt``): each rule ``Target = expression`` gives one edge per
regulator named in the expression, a repression when the regulator sits under an odd number of
``not``. The coupling strength of scanpy's Hill simulation is taken from the file's coupling list.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import _keys

_TOKEN = re.compile(r"\(|\)|[A-Za-z][\w.]*")
_N_STEPS = 160  # each of the 4 simulated paths has 160 steps (``# tmax = 160``)


def _model_file() -> Path:
    import scanpy

    return Path(scanpy.__file__).parent / "sim_models" / "krumsiek11.txt"


def _rule_signs(expression: str) -> dict[str, int]:
    """Signs of the regulators of one boolean rule: +1, −1 (under odd ``not``), 0 if both."""
    tokens = _TOKEN.findall(expression)
    signs: dict[str, set[int]] = {}
    pos = 0

    def term(negated: bool) -> None:
        nonlocal pos
        if pos >= len(tokens):
            raise ValueError(f"Rule {expression!r} ends early.")
        token = tokens[pos]
        pos += 1
        if token == "not":
            term(not negated)
        elif token == "(":
            expr(negated)
            if pos >= len(tokens) or tokens[pos] != ")":
                raise ValueError(f"Unbalanced parentheses in rule {expression!r}.")
            pos += 1
        elif token in {"and", "or", ")"}:
            raise ValueError(f"Unexpected {token!r} in rule {expression!r}.")
        else:
            signs.setdefault(token, set()).add(-1 if negated else 1)

    def expr(negated: bool) -> None:
        nonlocal pos
        term(negated)
        while pos < len(tokens) and tokens[pos] in {"and", "or"}:
            pos += 1
            term(negated)

    if tokens:
        expr(False)
        if pos != len(tokens):
            raise ValueError(f"Could not parse rule {expression!r}.")
    return {name: (next(iter(s)) if len(s) == 1 else 0) for name, s in signs.items()}


def parse_boolean_model(path: str | Path) -> pd.DataFrame:
    """Parse a scanpy ``sim_models`` file into a signed edge list.

    Parameters
    ----------
    path
        Model file with ``Target = boolean expression`` rules and an optional
        ``# coupling list:`` section of ``target regulator strength`` lines.

    Returns
    -------
    DataFrame with ``source``, ``target``, ``sign`` (+1 activation, −1 repression, 0 when a
    regulator appears both negated and not) and ``weight`` (coupling strength; NaN where the
    file lists none), one row per directed edge in rule order, self-loops included.
    """
    rows, couplings = [], {}
    in_couplings = False
    for raw in Path(path).read_text().splitlines():
        line = raw.strip()
        if line.startswith("#"):
            in_couplings = in_couplings or "coupling list" in line
            continue
        if not line:
            continue
        if in_couplings:
            target, source, strength = line.split()
            couplings[(source, target)] = float(strength)
        elif "=" in line:
            target, expression = (part.strip() for part in line.split("=", 1))
            rows += [(s, target, sign) for s, sign in _rule_signs(expression).items()]
    net = pd.DataFrame(rows, columns=["source", "target", "sign"])
    net["weight"] = [
        couplings.get((s, t), np.nan) for s, t in zip(net.source, net.target, strict=True)
    ]
    return net


def krumsiek11() -> AnnData:
    """Load the simulated myeloid differentiation of Krumsiek et al. (2011) and its network.

    Loads :func:`scanpy.datasets.krumsiek11` (offline; 640 cells x 11 genes: 4 simulated
    paths of 160 steps from a common progenitor to Mo, Ery, Mk and Neu fates) and keeps its
    ``obs`` and ``uns``. scanpy's ``obs_names`` repeat the step index on every path.

    Returns
    -------
    The AnnData of scanpy with these additions:

    - ``obs['time']``: float simulation step (0–159) of each cell, the position on its path
      (scanpy's ``obs_names``).
    - ``obs['trajectory']``: categorical path index ``'0'``–``'3'`` (each a time course).
    - ``obs_names``: made unique as ``'<trajectory>_<step>'``.
    - ``uns['highlights']``: scanpy's cell highlights keyed by these names (scanpy keys them
      by integer position, which h5ad cannot store).
    - ``uns['ground_truth_network']``: DataFrame ``source``, ``target``, ``sign``, ``weight``
      (30 edges, see :func:`parse_boolean_model`) from the boolean rules of
      ``scanpy/sim_models/krumsiek11.txt``.
    """
    import scanpy as sc

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Observation names are not unique")
        adata = sc.datasets.krumsiek11()
    step = adata.obs_names.astype(int).to_numpy()
    n_paths = adata.n_obs // _N_STEPS
    if not np.array_equal(step, np.tile(np.arange(_N_STEPS), n_paths)):
        raise ValueError("scanpy's krumsiek11 data does not have the expected 4 x 160 layout.")
    trajectory = np.repeat(np.arange(n_paths), _N_STEPS)
    adata.obs[_keys.SAMPLE_TIME] = step.astype(np.float64)
    adata.obs["trajectory"] = pd.Categorical(trajectory.astype(str))
    adata.obs_names = [f"{p}_{s}" for p, s in zip(trajectory, step, strict=True)]
    highlights = adata.uns.get("highlights", {})
    adata.uns["highlights"] = {adata.obs_names[int(i)]: label for i, label in highlights.items()}
    adata.uns[_keys.GROUND_TRUTH_NETWORK] = parse_boolean_model(_model_file())
    return adata
