"""FLeCS plots: learnt network, edge posteriors, affected subnetwork, simulated vs observed."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .. import _keys
from .._docs import fill_doc
from .._validate import check_expression, check_finite
from ._network import draw_graph, strongest_edges
from ._utils import check_options, finish


@fill_doc
def network(
    adata: AnnData,
    *,
    key: str = _keys.FLECS,
    n_edges: int = 30,
    random_state: int = 0,
    ax=None,
    show: bool | None = None,
    save: str | bool | None = None,
    return_fig: bool | None = None,
):
    """Directed graph of the strongest learnt interactions of :func:`celldyn.tl.flecs`.

    The ``n_edges`` edges with the largest ``|W|`` of ``varp['{key}_weights']`` (regulator
    row × target column) are drawn: arrows from regulator to target, width proportional to
    ``|W|``, red for activation and blue for repression.

    Parameters
    ----------
    adata
        Annotated data matrix with ``varp['{key}_weights']``.
    key
        ``key_added`` of :func:`celldyn.tl.flecs`.
    n_edges
        Number of edges drawn.
    random_state
        Seed of the spring layout.
    ax
        Matplotlib axes to draw into.
    {show_save}

    Returns
    -------
    The :class:`~matplotlib.axes.Axes` when ``show=False`` (the default when ``ax`` is given),
    the :class:`~matplotlib.figure.Figure` with ``return_fig=True``, else ``None``.
    """
    check_options(show, save, return_fig)
    edges = strongest_edges(adata, _keys.varp.weights(key), n_edges)
    title = f"{key} network: {len(edges)} strongest edges (regulator → target)"
    drawn = draw_graph(edges, "weight", ax, title=title, random_state=random_state)
    return finish(drawn, "network", show=show, save=save, return_fig=return_fig, ax=ax)


@fill_doc
def affected_subnetwork(
    subnetwork: pd.DataFrame,
    *,
    weight: str = "change",
    random_state: int = 0,
    ax=None,
    show: bool | None = None,
    save: str | bool | None = None,
    return_fig: bool | None = None,
):
    """Draw the output of :func:`celldyn.tl.affected_subnetwork`.

    Edge width is proportional to ``|weight|`` and its colour gives the sign (red: the edge
    became more activating in condition b, blue: more repressing); edges that are not
    ``significant`` (when that column exists) are dashed.

    Parameters
    ----------
    subnetwork
        Edge table with ``source``, ``target`` and ``weight`` columns.
    weight
        Column drawn as edge width and colour.
    random_state
        Seed of the spring layout.
    ax
        Matplotlib axes to draw into.
    {show_save}

    Returns
    -------
    The :class:`~matplotlib.axes.Axes` when ``show=False`` (the default when ``ax`` is given),
    the :class:`~matplotlib.figure.Figure` with ``return_fig=True``, else ``None``.
    """
    check_options(show, save, return_fig)
    missing = {"source", "target", weight} - set(subnetwork.columns)
    if missing:
        raise KeyError(f"`subnetwork` lacks the column(s) {sorted(missing)}.")
    if subnetwork.empty:
        raise ValueError("`subnetwork` has no edges.")
    try:
        values = subnetwork[weight].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"`subnetwork` column {weight!r} must be numeric.") from err
    check_finite(values, f"`subnetwork` column {weight!r}")
    dashed = ~subnetwork["significant"].to_numpy() if "significant" in subnetwork else None
    drawn = draw_graph(
        subnetwork,
        weight,
        ax,
        title=f"affected subnetwork: {len(subnetwork)} edges, width |{weight}|",
        dashed=dashed,
        random_state=random_state,
        sign_labels=(f"{weight} > 0 (more activating)", f"{weight} < 0 (more repressing)"),
    )
    return finish(drawn, "affected_subnetwork", show=show, save=save, return_fig=return_fig, ax=ax)


def _member_weights(adata: AnnData, key: str, edges) -> np.ndarray:
    """Weights of ``edges`` (``(source, target)`` names) in every member: ``(n_edges, n_models)``.

    NaN where a member has no such edge.
    """
    from .._readers import stored_flecs_models
    from ..nn import GRNVectorField

    models = stored_flecs_models(adata, key)
    names = [gene for edge in edges for gene in edge]
    unknown = sorted({gene for gene in names if gene not in adata.var_names})
    if unknown:
        raise KeyError(f"`edges` has genes not in adata.var_names: {unknown}.")
    index = adata.var_names.get_indexer(names).reshape(-1, 2)
    out = np.full((len(edges), len(models)), np.nan)
    for m, arrays in enumerate(models.values()):
        weights = GRNVectorField.stored_prior_weights(arrays)
        position = {
            (int(s), int(t)): e
            for e, (s, t) in enumerate(zip(arrays["src"], arrays["dst"], strict=True))
        }
        for row, (source, target) in enumerate(index):
            if (source, target) in position:
                out[row, m] = weights[position[source, target]]
    return out


@fill_doc
def edge_posteriors(
    conditions: Mapping[str, AnnData],
    edges: Sequence[tuple[str, str]] | pd.DataFrame,
    *,
    key: str = _keys.FLECS,
    ax=None,
    show: bool | None = None,
    save: str | bool | None = None,
    return_fig: bool | None = None,
):
    """Ensemble weights of chosen edges across conditions (:func:`celldyn.tl.flecs` ``n_models``).

    For every edge and condition, each member's weight is a dot and the ensemble mean ± one
    standard deviation an error bar. Edges missing from a condition (e.g. removed by its
    knockout) are left empty.

    Parameters
    ----------
    conditions
        ``{label: adata}`` of fitted conditions, e.g. ``{"wild type": a, "knockout": b}``.
    edges
        ``(source, target)`` gene-name pairs, or a table with ``source`` and ``target`` columns
        (e.g. the first rows of :func:`celldyn.tl.differential_edges`).
    key
        ``key_added`` of :func:`celldyn.tl.flecs` in every AnnData.
    ax
        Matplotlib axes to draw into.
    {show_save}

    Returns
    -------
    The :class:`~matplotlib.axes.Axes` when ``show=False`` (the default when ``ax`` is given),
    the :class:`~matplotlib.figure.Figure` with ``return_fig=True``, else ``None``.
    """
    check_options(show, save, return_fig)
    import matplotlib.pyplot as plt

    if isinstance(edges, pd.DataFrame):
        edges = list(zip(edges["source"], edges["target"], strict=True))
    edges = [tuple(edge) for edge in edges]
    if not edges or not conditions:
        raise ValueError("Give at least one edge and one condition.")
    weights = {label: _member_weights(a, key, edges) for label, a in conditions.items()}
    axes = ax
    if axes is None:
        _, axes = plt.subplots(figsize=(0.8 * len(edges) * len(conditions) + 2, 4))
    width = 0.8 / len(conditions)
    for c, (label, values) in enumerate(weights.items()):
        x = np.arange(len(edges)) - 0.4 + width * (c + 0.5)
        jitter = np.linspace(-0.25, 0.25, values.shape[1]) * width
        color = f"C{c}"
        axes.scatter((x[:, None] + jitter).ravel(), values.ravel(), s=10, alpha=0.6, color=color)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # edges absent from a condition
            mean = np.nanmean(values, 1)
            std = np.nanstd(values, 1, ddof=1) if values.shape[1] > 1 else np.zeros(len(edges))
        axes.errorbar(x, mean, yerr=std, fmt="o", color=color, capsize=3, label=label)
    axes.axhline(0.0, color="grey", lw=0.5)
    axes.set_xticks(range(len(edges)), [f"{s}→{t}" for s, t in edges], rotation=90)
    axes.set_xlabel("edge (regulator → target)")
    axes.set_ylabel("edge weight")
    axes.set_title(f"{key} edge weights: ensemble members, mean ± sd")
    axes.legend(title="condition")
    return finish(axes, "edge_posteriors", show=show, save=save, return_fig=return_fig, ax=ax)


@fill_doc
def simulated_vs_observed(
    adata: AnnData,
    simulated: AnnData,
    *,
    color: str = "time",
    layer: str | None = None,
    components: tuple[int, int] = (0, 1),
    ax=None,
    show: bool | None = None,
    save: str | bool | None = None,
    return_fig: bool | None = None,
):
    """Plot simulated cells over the observed population in the observed data's PCA.

    The principal axes are computed from the observed expression (centred, no scaling) and
    the simulated cells of :func:`celldyn.tl.simulate` or :func:`celldyn.tl.knockout` are
    projected on them: observed cells in grey, simulated cells coloured by ``color``.

    Parameters
    ----------
    adata
        The observed data.
    simulated
        Output of :func:`celldyn.tl.simulate` / :func:`celldyn.tl.knockout` (same genes).
    color
        Numeric or categorical ``simulated.obs`` column (``'time'``, ``'condition'``, ...).
    layer
        Observed expression; ``None`` uses the layer recorded in
        ``simulated.uns['simulation']``.
    components
        The two principal components shown (0-based).
    ax
        Matplotlib axes to draw into.
    {show_save}

    Returns
    -------
    The :class:`~matplotlib.axes.Axes` when ``show=False`` (the default when ``ax`` is given),
    the :class:`~matplotlib.figure.Figure` with ``return_fig=True``, else ``None``.
    """
    check_options(show, save, return_fig)
    import matplotlib.pyplot as plt

    if not adata.var_names.equals(simulated.var_names):
        raise ValueError("`simulated` must have the genes of `adata` (same var_names).")
    if color not in simulated.obs.columns:
        raise KeyError(f"simulated.obs has no column {color!r}.")
    if layer is None:
        layer = simulated.uns.get(_keys.SIMULATION, {}).get("layer")
    observed = check_expression(adata, layer)
    observed = np.asarray(observed.toarray() if sp.issparse(observed) else observed, float)
    simulated_x = simulated.X.toarray() if sp.issparse(simulated.X) else simulated.X
    simulated_x = np.asarray(simulated_x, float)
    check_finite(simulated_x, "simulated.X")
    first, second = (int(c) for c in components)
    if min(first, second) < 0 or max(first, second) >= min(observed.shape):
        raise ValueError(f"`components` {components} are outside the available components.")
    center = observed.mean(0)
    _, _, vt = np.linalg.svd(observed - center, full_matrices=False)
    loadings = vt[[first, second]].T
    obs_xy = (observed - center) @ loadings
    sim_xy = (simulated_x - center) @ loadings
    values = simulated.obs[color]
    if values.isna().any():
        raise ValueError(f"simulated.obs[{color!r}] has {int(values.isna().sum())} missing values.")
    categorical = isinstance(values.dtype, pd.CategoricalDtype) or values.dtype == object
    if not categorical:
        check_finite(values.to_numpy(float), f"simulated.obs[{color!r}]")
    axes = ax
    if axes is None:
        _, axes = plt.subplots(figsize=(5, 4.5))
    axes.scatter(obs_xy[:, 0], obs_xy[:, 1], s=6, color="lightgrey", label="observed")
    if categorical:
        for c, label in enumerate(pd.Categorical(values).categories):
            mask = (values == label).to_numpy()
            axes.scatter(*sim_xy[mask].T, s=8, color=f"C{c}", label=str(label))
        axes.legend(title=color)
    else:
        points = axes.scatter(*sim_xy.T, s=8, c=values.to_numpy(float), cmap="viridis")
        axes.figure.colorbar(points, ax=axes, label=color)
    axes.set_xlabel(f"PC{first + 1} (observed)")
    axes.set_ylabel(f"PC{second + 1} (observed)")
    axes.set_title("simulated (colour) over observed (grey) cells")
    return finish(axes, "simulated_vs_observed", show=show, save=save, return_fig=return_fig, ax=ax)
