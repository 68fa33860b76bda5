"""Property test: malformed AnnData at the cheap ``pp`` and ``tl`` entry points.

Each case builds a small valid AnnData (hypothesis draws its size, seed and the variant of
the call), applies one corruption and calls one entry point with ``copy=False``. The
property: either

- the call returns normally, and everything it wrote (or returned) is finite and nothing
  else in ``adata`` changed, or
- it raises a ``ValueError``, ``KeyError`` or ``TypeError`` with a non-empty message, raised
  by celldyn's own code (not leaked from numpy, pandas, scipy, sklearn or scvelo), and
  ``adata`` is exactly as it was.

The model-training entry points (``tl.flecs``, ``tl.cellmnn``, ``tl.lcd``) get the same
property with one example per case and one training epoch; their ``pp`` inputs (time
groups, trajectories, prior) are computed on the valid data before the corruption.
"""

from __future__ import annotations

import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import celldyn as cd

EXAMPLES_PER_CASE = 3
"""Hypothesis examples per (entry point, corruption) case: ~35-50 per entry point."""

SETTINGS = settings(
    max_examples=EXAMPLES_PER_CASE,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

CELLDYN_SRC = Path(cd.__file__).resolve().parent
ALLOWED_ERRORS = (ValueError, KeyError, TypeError)
CONTROL = "control"
PERTURBATIONS = ["A+B"]
NET = pd.DataFrame({"source": ["g0", "g1", "g2"], "target": ["g1", "g2", "g0"]})

# --- corruptions ------------------------------------------------------------------------

X_CORRUPTIONS = ["nan_X", "inf_X", "negative_X", "zero_X", "constant_X", "int_X", "sparse_X"]
SHAPE_CORRUPTIONS = ["dup_var_names", "dup_obs_names", "empty_obs", "empty_vars", "view"]
COLUMN_CORRUPTIONS = [
    "col_nan",
    "col_strings",
    "col_single",
    "col_missing",
    "col_singleton_group",
    "col_categorical",
]
REP_CORRUPTIONS = ["nan_rep"]


def _neighbors(adata: ad.AnnData, k: int) -> None:
    """A symmetric kNN graph on ``obsm['X_umap']`` in scanpy's layout (cheap, no numba)."""
    x = adata.obsm["X_umap"]
    n = len(x)
    d = np.linalg.norm(x[:, None] - x[None], axis=2)
    np.fill_diagonal(d, np.inf)
    cols = np.argsort(d, axis=1)[:, :k]
    rows = np.repeat(np.arange(n), k)
    dist = sp.csr_matrix((d[rows, cols.ravel()] + 1e-6, (rows, cols.ravel())), shape=(n, n))
    conn = (dist > 0).astype(np.float64)
    adata.obsp["distances"] = dist
    adata.obsp["connectivities"] = conn.maximum(conn.T).tocsr()
    adata.uns["neighbors"] = {
        "connectivities_key": "connectivities",
        "distances_key": "distances",
        "params": {"n_neighbors": k + 1, "method": "umap"},
    }


def _base(n_obs: int, n_vars: int, seed: int) -> ad.AnnData:
    """Valid raw counts with every obs column, representation and layer an entry point needs.

    ``obs['time']`` cycles through the groups 0, 1, 2; ``obs['perturbation']`` through
    ``control``, ``A``, ``B``; ``obs['pseudotime']`` is uniform.
    """
    rng = np.random.default_rng(seed)
    lam = rng.uniform(1, 10, n_vars)
    x = rng.poisson(lam, size=(n_obs, n_vars)).astype(np.float32)
    x[:, 0] += 1  # every cell has counts
    group = np.arange(n_obs) % 3
    obs = pd.DataFrame(
        {
            "time": group.astype(np.float64),
            "pseudotime": rng.uniform(0, 1, n_obs),
            "perturbation": np.array([CONTROL, "A", "B"])[group],
        },
        index=[f"c{i}" for i in range(n_obs)],
    )
    adata = ad.AnnData(x, obs=obs, var=pd.DataFrame(index=[f"g{j}" for j in range(n_vars)]))
    pca = rng.normal(size=(n_obs, 3))
    pca[:, 0] += 2 * group
    adata.obsm["X_pca"] = pca
    adata.obsm["X_umap"] = pca[:, :2].copy()
    adata.layers["velocity"] = rng.normal(size=(n_obs, n_vars)).astype(np.float32)
    _neighbors(adata, min(4, n_obs - 1))
    return adata


def _corrupt_column(draw, adata: ad.AnnData, column: str, rng, corruption: str) -> None:
    col = adata.obs[column]
    numeric = column != "perturbation"
    if corruption == "col_missing":
        del adata.obs[column]
    elif corruption == "col_nan":
        values = col.to_numpy(dtype=np.float64 if numeric else object).copy()
        values[rng.integers(adata.n_obs)] = np.nan
        adata.obs[column] = values
    elif corruption == "col_strings":
        # wrong type: words (or booleans) where numbers are needed, numbers where labels are
        if numeric:
            words = draw(st.sampled_from([["early", "mid", "late"], [True, False, True]]))
        else:
            words = [0, 1, 2]
        adata.obs[column] = np.array(words, dtype=object)[np.arange(adata.n_obs) % 3]
    elif corruption == "col_single":
        adata.obs[column] = 1.0 if numeric else CONTROL
    elif corruption == "col_singleton_group":
        # valid, but one group (or perturbation) has a single cell
        values = col.to_numpy().copy()
        values[rng.integers(adata.n_obs)] = 7.0 if numeric else "C"
        adata.obs[column] = values
    elif corruption == "col_categorical":
        # unordered categorical of number-like strings, with an unused category
        labels = col.astype(str) if numeric else col
        extra = "99" if numeric else "D"
        adata.obs[column] = pd.Categorical(labels, categories=[*pd.unique(labels), extra])


def _corrupt(draw, adata: ad.AnnData, corruption: str, column: str | None, rng):
    """Apply one corruption; returns the (possibly new, possibly view) AnnData."""
    if corruption in X_CORRUPTIONS:
        x = np.asarray(adata.X, dtype=np.float32).copy()
        n, m = x.shape
        cells = rng.integers(0, n, size=draw(st.integers(1, 3)))
        genes = rng.integers(0, m, size=len(cells))
        if corruption == "nan_X":
            x[cells, genes] = np.nan
        elif corruption == "inf_X":
            x[cells, genes] = draw(st.sampled_from([np.inf, -np.inf]))
        elif corruption == "negative_X":
            x[cells, genes] = -1.0 - x[cells, genes]
        elif corruption == "zero_X":
            x[:] = 0
        elif corruption == "constant_X":
            x[:] = draw(st.integers(1, 5))
        elif corruption == "int_X":
            x = x.astype(np.int64)
        sparse = corruption == "sparse_X" or draw(st.booleans())
        adata.X = sp.csr_matrix(x) if sparse else x
    elif corruption == "dup_var_names":
        names = adata.var_names.tolist()
        names[-1] = names[0]
        adata.var_names = names
    elif corruption == "dup_obs_names":
        names = adata.obs_names.tolist()
        names[-1] = names[0]
        adata.obs_names = names
    elif corruption == "empty_obs":
        adata = adata[:0].copy()
    elif corruption == "empty_vars":
        adata = adata[:, :0].copy()
    elif corruption == "view":
        if draw(st.booleans()):
            adata = adata[np.arange(adata.n_obs) % 4 != 3]
        else:
            adata = adata[:, np.arange(adata.n_vars) % 4 != 3]
        assert adata.is_view
    elif corruption in COLUMN_CORRUPTIONS:
        _corrupt_column(draw, adata, column, rng, corruption)
    elif corruption == "nan_rep":
        pca = adata.obsm["X_pca"].copy()
        pca[rng.integers(adata.n_obs), 0] = np.nan
        adata.obsm["X_pca"] = pca
    else:
        assert corruption == "valid"
    return adata


# --- entry points -----------------------------------------------------------------------


@dataclass
class Entry:
    """An entry point: ``call(adata, **options)`` with options drawn by hypothesis."""

    call: Callable
    options: dict = field(default_factory=dict)
    """Option name -> strategy; ``column`` (if present) is the obs column the call needs."""
    writes: dict | Callable | None = None
    """``{slot: keys}`` it writes into ``adata``, or a function of the options giving them
    (``None``: returns a result, writes nothing)."""
    column: Callable | None = None
    """obs column the call needs, given the drawn options."""
    uses_rep: bool = False
    prepare: Callable | None = None
    """Run on the valid AnnData before the corruption (the ``pp`` steps a model reads)."""


def _recipe(adata, *, subset, denoise):
    return cd.pp.recipe(
        adata, n_top_genes=5, denoise=denoise, n_pcs=3, n_neighbors=5, subset=subset
    )


def _time_groups(adata, *, mode):
    if mode == "time":
        return cd.pp.time_groups(adata, time_key="time")
    if mode == "dpt":  # diffusion pseudotime on the kNN graph from cell 0
        return cd.pp.time_groups(adata, pseudotime_key="dpt_pseudotime", root=0, n_groups=3)
    return cd.pp.time_groups(adata, pseudotime_key="pseudotime", n_groups=3)


def _couplings(adata, *, method, rep):
    return cd.pp.couplings(adata, time_key="time", rep=rep, method=method)


def _trajectories(adata, *, method, rep):
    return cd.pp.trajectories(
        adata, time_key="time", rep=rep, method=method, n_trajectories=10, length=3, k=3
    )


def _prior(adata, *, symmetrize):
    return cd.pp.prior_network(adata, NET, symmetrize=symmetrize)


def _grn(adata, *, method, rep):
    return cd.tl.grn_baseline(
        adata, method, time_key="time", prior_key=None, rep=rep, n_estimators=2
    )


def _interpolation(adata, *, method, rep):
    return cd.tl.interpolation_baseline(adata, 1.0, method, time_key="time", rep=rep, n_cells=8)


def _perturbation(adata, *, method):
    return cd.tl.perturbation_baseline(adata, PERTURBATIONS, method=method, control=CONTROL)


def _velocity_embedding(adata):
    return cd.tl.velocity_embedding(adata, "velocity", basis="umap")


REPS = st.sampled_from(["X_pca", "X"])
ENTRIES = {
    "recipe": Entry(
        _recipe, {"subset": st.booleans(), "denoise": st.sampled_from([None, "knn"])}, writes={}
    ),
    "time_groups": Entry(
        _time_groups,
        {"mode": st.sampled_from(["time", "pseudotime", "dpt"])},
        writes=lambda o: {
            "obs": {"celldyn_time"} | ({"dpt_pseudotime"} if o["mode"] == "dpt" else set()),
            "uns": {"celldyn_time"},
        },
        column=lambda o: None if o["mode"] == "dpt" else o["mode"],
    ),
    "couplings": Entry(
        _couplings,
        {"method": st.sampled_from(["exact", "sinkhorn"]), "rep": REPS},
        writes={"obsp": {"celldyn_couplings"}, "uns": {"celldyn_couplings"}},
        column=lambda o: "time",
        uses_rep=True,
    ),
    "trajectories": Entry(
        _trajectories,
        {"method": st.sampled_from(["knn", "quantile"]), "rep": REPS},
        writes={"uns": {"celldyn_trajectories"}},
        column=lambda o: "time",
        uses_rep=True,
    ),
    "prior_network": Entry(
        _prior,
        {"symmetrize": st.booleans()},
        writes={"varp": {"celldyn_prior"}, "uns": {"celldyn_prior"}},
    ),
    "grn_baseline": Entry(
        _grn,
        {"method": st.sampled_from(["correlation", "ot_ridge", "forest"]), "rep": REPS},
        column=lambda o: "time" if o["method"] == "ot_ridge" else None,
        uses_rep=True,
    ),
    "interpolation_baseline": Entry(
        _interpolation,
        {"method": st.sampled_from(["ot", "mean", "nearest"]), "rep": REPS},
        column=lambda o: "time",
        uses_rep=True,
    ),
    "perturbation_baseline": Entry(
        _perturbation,
        {"method": st.sampled_from(["additive", "mean", "no_change"])},
        column=lambda o: "perturbation",
    ),
    "velocity_embedding": Entry(
        _velocity_embedding, writes={"obsm": {"velocity_umap"}, "uns": {"velocity_params"}}
    ),
}


def _flecs_inputs(adata):
    cd.pp.time_groups(adata, time_key="time")
    cd.pp.prior_network(adata, NET)
    cd.pp.trajectories(
        adata, time_key="time", rep="X_pca", method="quantile", n_trajectories=10, length=3
    )


def _loadings(adata):
    adata.varm["PCs"] = np.random.default_rng(0).normal(size=(adata.n_vars, 3))


FIT = {"accelerator": "cpu", "progress": False}
MODEL_ENTRIES = {
    "flecs": Entry(
        lambda adata, *, warm_start: cd.tl.flecs(
            adata, max_epochs=1, velocity_init=5, warm_start=warm_start, **FIT
        ),
        {"warm_start": st.sampled_from(["linear", "velocities", "ot_pairs"])},
        writes={
            "var": {"flecs_decay", "flecs_bias", "flecs_velocity_genes"},
            "varp": {"flecs_weights", "flecs_effects"},
            "layers": {"flecs_velocity", "Ms"},
            "uns": {"flecs", "flecs_velocity_params"},
        },
        column=lambda o: "celldyn_time",
        prepare=_flecs_inputs,
    ),
    "cellmnn": Entry(
        lambda adata: cd.tl.cellmnn(
            adata, time_key="time", rep="X_pca", n_components=3, max_epochs=1, **FIT
        ),
        writes={
            "var": {"cellmnn_velocity_genes"},
            "obsm": {"cellmnn_operator", "cellmnn_drift", "velocity_cellmnn"},
            "varp": {"cellmnn_interactions"},
            "layers": {"cellmnn_velocity", "Ms"},
            "uns": {"cellmnn", "cellmnn_velocity_params"},
        },
        column=lambda o: "time",
        uses_rep=True,
        prepare=_loadings,
    ),
    "lcd": Entry(
        lambda adata: cd.tl.lcd(adata, max_epochs=1, score_epochs=1, **FIT),
        writes={"obsm": {"X_lcd"}, "uns": {"lcd"}},
        column=lambda o: "perturbation",
    ),
}

KNOWN_BUGS: dict[tuple[str, str], str] = {}
"""``(entry, corruption) -> reason`` for bugs in files this test's authors may not edit."""


def _cases(entries: dict[str, Entry]):
    for name, entry in entries.items():
        corruptions = ["valid", *X_CORRUPTIONS, *SHAPE_CORRUPTIONS]
        if entry.column is not None:
            corruptions += COLUMN_CORRUPTIONS
        if entry.uses_rep:
            corruptions += REP_CORRUPTIONS
        for corruption in corruptions:
            reason = KNOWN_BUGS.get((name, corruption))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            yield pytest.param(name, corruption, marks=marks, id=f"{name}-{corruption}")


@st.composite
def cases(draw, name: str, corruption: str):
    """``(adata, options)``: a small AnnData with one corruption and the call's options."""
    entry = {**ENTRIES, **MODEL_ENTRIES}[name]
    options = {key: draw(strategy) for key, strategy in entry.options.items()}
    n_obs, n_vars = draw(st.integers(6, 40)), draw(st.integers(3, 12))
    seed = draw(st.integers(0, 2**16))
    adata = _base(n_obs, n_vars, seed)
    if entry.prepare is not None:
        entry.prepare(adata)
    column = entry.column(options) if entry.column is not None else None
    if corruption in COLUMN_CORRUPTIONS and column is None:
        column = "time"  # the call does not read it with these options: must not matter
    adata = _corrupt(draw, adata, corruption, column, np.random.default_rng(seed))
    return adata, options


# --- checks -----------------------------------------------------------------------------


def _nonfinite(value, where: str) -> list[str]:
    """Names of the numeric parts of ``value`` that hold NaN or inf."""
    if isinstance(value, ad.AnnData):
        parts = {"X": value.X, **{f"layers[{k!r}]": v for k, v in value.layers.items()}}
        parts.update({f"obsm[{k!r}]": v for k, v in value.obsm.items()})
        return [p for k, v in parts.items() for p in _nonfinite(v, f"{where}.{k}")]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _nonfinite(v, f"{where}[{k!r}]")]
    if isinstance(value, pd.DataFrame):
        return [p for k in value.columns for p in _nonfinite(value[k], f"{where}[{k!r}]")]
    if isinstance(value, pd.Series):
        value = value.to_numpy()
    if sp.issparse(value):
        value = value.data
    if isinstance(value, float | np.floating | np.ndarray):
        value = np.asarray(value)
        if value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
            return [where]
    return []


def _same(a, b) -> bool:
    """Deep equality of ``uns`` values (NaN equals NaN)."""
    if isinstance(a, dict) or isinstance(b, dict):
        return (
            isinstance(a, dict)
            and isinstance(b, dict)
            and set(a) == set(b)
            and all(_same(a[k], b[k]) for k in a)
        )
    if isinstance(a, pd.DataFrame | pd.Series):
        return type(a) is type(b) and a.equals(b)
    if sp.issparse(a) or sp.issparse(b):
        return sp.issparse(a) and sp.issparse(b) and (a != b).nnz == 0
    try:
        return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)
    except TypeError:
        return np.array_equal(np.asarray(a), np.asarray(b))


def _unchanged(assert_unchanged, adata: ad.AnnData, before: ad.AnnData) -> None:
    """The conftest check, plus names, ``X``'s type and dtype, and ``uns`` values."""
    assert_unchanged(adata, before)
    assert list(adata.obs_names) == list(before.obs_names)
    assert list(adata.var_names) == list(before.var_names)
    assert sp.issparse(adata.X) == sp.issparse(before.X)
    assert adata.X.dtype == before.X.dtype
    for key in before.uns:
        assert _same(adata.uns[key], before.uns[key]), f"uns[{key!r}] changed"


def _without(adata: ad.AnnData, writes: dict) -> ad.AnnData:
    """Copy of ``adata`` without the fields an entry point writes."""
    out = adata.copy()
    for slot, keys in writes.items():
        container = getattr(out, slot)
        for key in keys:
            del container[key]
    return out


def _raised_by_celldyn(err: BaseException) -> bool:
    """Whether the innermost frame of ``err``'s traceback is celldyn's own code."""
    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and Path(frames[-1].filename).resolve().is_relative_to(CELLDYN_SRC)


def _check_recipe_result(adata: ad.AnnData, before: ad.AnnData) -> None:
    pd.testing.assert_frame_equal(adata.obs, before.obs)
    written = {
        "X": adata.X,
        "layers": dict(adata.layers),
        "obsm['X_pca']": adata.obsm["X_pca"],
        "varm['PCs']": adata.varm["PCs"],
        "var": adata.var[["means", "dispersions"]],
        "uns['celldyn_recipe']": adata.uns["celldyn_recipe"],
    }
    assert not _nonfinite(written, "adata")


@SETTINGS
@given(data=st.data())
@pytest.mark.parametrize(("name", "corruption"), list(_cases(ENTRIES)))
def test_clear_error_or_valid_result(assert_unchanged, name, corruption, data):
    _check_case(assert_unchanged, ENTRIES[name], name, *data.draw(cases(name, corruption)))


@settings(SETTINGS, max_examples=1)
@given(data=st.data())
@pytest.mark.parametrize(("name", "corruption"), list(_cases(MODEL_ENTRIES)))
def test_model_fit_clear_error_or_valid_result(assert_unchanged, name, corruption, data):
    _check_case(assert_unchanged, MODEL_ENTRIES[name], name, *data.draw(cases(name, corruption)))


def _check_case(assert_unchanged, entry: Entry, name: str, adata: ad.AnnData, options: dict):
    """The property for one drawn case (see the module docstring)."""
    before = adata.copy()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = entry.call(adata, **options)
    except ALLOWED_ERRORS as err:
        assert _raised_by_celldyn(err), (
            f"{type(err).__name__} leaked from a dependency, not raised by celldyn: "
            f"{err}\n{''.join(traceback.format_tb(err.__traceback__)[-3:])}"
        )
        message = str(err).strip("'\" ")
        assert message, f"{type(err).__name__} without a message"
        _unchanged(assert_unchanged, adata, before)
        return
    except Exception as err:  # noqa: BLE001 - the property is about the exception type
        tb = "".join(traceback.format_tb(err.__traceback__)[-3:])
        pytest.fail(f"{type(err).__name__} (not ValueError/KeyError/TypeError): {err}\n{tb}")

    if name == "recipe":
        assert result is None
        _check_recipe_result(adata, before)
    elif entry.writes is None:
        assert not _nonfinite(result, "result"), _nonfinite(result, "result")
        _unchanged(assert_unchanged, adata, before)
    else:
        assert result is None
        writes = entry.writes(options) if callable(entry.writes) else entry.writes
        for slot, keys in writes.items():
            for key in keys:
                bad = _nonfinite(getattr(adata, slot)[key], f"{slot}[{key!r}]")
                assert not bad, f"non-finite values written: {bad}"
        _unchanged(assert_unchanged, _without(adata, writes), before)
