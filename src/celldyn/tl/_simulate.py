"""Simulate fitted FLeCS networks from observed cells, with or without a knockout."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData
from torch import nn

from .. import _keys
from .._readers import Trajectories, load_flecs_fields, read_time_groups, read_trajectories
from .._validate import (
    check_adata,
    check_finite,
    check_int,
    check_layer,
    check_positive,
    gene_indices,
)

WILD_TYPE = "wild_type"
KNOCKOUT = "knockout"


class _FieldStack(nn.Module):
    """Integrate several fields at once: the state's first axis selects the field.

    One solve shares the adaptive steps, so two conditions differ only by their fields.
    """

    def __init__(self, fields: Sequence[nn.Module]):
        super().__init__()
        self.fields = nn.ModuleList(fields)

    def forward(self, t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return torch.stack([field(t, state[k]) for k, field in enumerate(self.fields)])


def _expression(adata: AnnData, layer: str | None) -> np.ndarray:
    x = adata.X if layer is None else adata.layers[layer]
    x = x.toarray() if sp.issparse(x) else np.asarray(x)
    check_finite(x, "adata.X" if layer is None else f"adata.layers[{layer!r}]")
    return x.astype(np.float32)


def _fitted_trajectories(
    adata: AnnData, trajectories: str | None, option: str, purpose: str, how: str = ""
) -> Trajectories:
    """Read the trajectories the model was fitted on, to ``purpose`` as ``option`` is unset.

    The errors end in what to do instead: pass ``option`` (``how``).
    """
    if trajectories is None or trajectories not in adata.uns:
        raise KeyError(
            f"No `{option}` given and adata.uns has no trajectories {trajectories!r} to "
            f"{purpose}; pass `{option}`{how}."
        )
    try:
        return read_trajectories(adata, trajectories)
    except (KeyError, TypeError, ValueError) as err:
        reason = err.args[0] if err.args else str(err)
        raise ValueError(
            f"No `{option}` given and adata.uns[{trajectories!r}] holds no usable trajectories "
            f"to {purpose} ({reason}); pass `{option}`{how}."
        ) from err


def _default_start(adata: AnnData, trajectories: str | None) -> np.ndarray:
    purpose, how = "find the earliest time group", " (obs names, indices or a boolean mask)"
    fitted = _fitted_trajectories(adata, trajectories, "start", purpose, how)
    time_key = fitted.params.get("time_key")
    if time_key is None:
        raise KeyError(
            f"adata.uns[{trajectories!r}] records no 'time_key' to {purpose}; pass `start`{how}."
        )
    return read_time_groups(adata, time_key).members(0)


def _start_cells(adata: AnnData, start, trajectories: str | None) -> np.ndarray:
    """``obs`` positions of the start cells: default, mask, integer positions or obs names."""
    if start is None:
        return _default_start(adata, trajectories)
    values = np.atleast_1d(np.asarray(start))
    if values.dtype == bool:
        if values.shape != (adata.n_obs,):
            raise ValueError(f"A boolean `start` mask needs length n_obs={adata.n_obs}.")
        index = np.flatnonzero(values)
    elif np.issubdtype(values.dtype, np.integer):
        if values.size and (values.min() < 0 or values.max() >= adata.n_obs):
            raise ValueError(f"`start` has positions outside [0, {adata.n_obs}).")
        index = values.astype(np.int64)
    else:
        unknown = [name for name in values if name not in adata.obs_names]
        if unknown:
            raise KeyError(f"`start` has cells not in adata.obs_names: {unknown[:5]}.")
        index = adata.obs_names.get_indexer(values)
    if index.size == 0:
        raise ValueError("`start` selects no cells.")
    return index


def _default_t_max(adata: AnnData, trajectories: str | None) -> float:
    times = _fitted_trajectories(adata, trajectories, "t_max", "take the time span from").times
    return float(times[:, -1].max() - times[:, 0].min())


def _integrate_fields(
    fields: Sequence[nn.Module], x0: np.ndarray, times: np.ndarray, **solver
) -> np.ndarray:
    """Genes of every field from the same start cells: ``(n_fields, n_times, n_cells, n_genes)``."""
    from ..nn import integrate

    stack = _FieldStack(fields).eval()
    x = torch.as_tensor(x0)
    with torch.no_grad():
        y0 = torch.stack([field.initial_state(x) for field in fields])
        states = integrate(stack, y0, torch.as_tensor(times, dtype=x.dtype), **solver)
        genes = fields[0].gene_state(states)  # (n_times, n_fields, n_cells, n_genes)
    return genes.permute(1, 0, 2, 3).numpy()


def _as_adata(
    genes: np.ndarray,
    times: np.ndarray,
    start: np.ndarray,
    conditions: Sequence[str],
    source: AnnData,
    params: dict,
) -> AnnData:
    """Flatten ``(n_conditions * n_members, n_times, n_cells, n_genes)`` into one AnnData."""
    n_fields, n_times, n_cells, _ = genes.shape
    n_members = n_fields // len(conditions)
    # rows ordered condition, member, start cell, time
    x = genes.transpose(0, 2, 1, 3).reshape(-1, genes.shape[-1])
    field = np.repeat(np.arange(n_fields), n_cells * n_times)
    cell = np.tile(np.repeat(np.arange(n_cells), n_times), n_fields)
    obs = pd.DataFrame(
        {
            "trajectory": np.repeat(np.arange(n_fields * n_cells), n_times),
            "time": np.tile(times, n_fields * n_cells),
            "start_cell": np.asarray(source.obs_names)[start][cell],
            "member": field % n_members,
        }
    )
    if len(conditions) > 1:
        obs["condition"] = pd.Categorical(
            np.asarray(conditions)[field // n_members], categories=list(conditions)
        )
    obs.index = obs.index.astype(str)
    out = AnnData(X=x.astype(np.float32), obs=obs, var=source.var[[]].copy())
    out.uns[_keys.SIMULATION] = params
    return out


def _prepare(adata: AnnData, key: str, start, t_max, n_steps: int, layer: str | None):
    """Validate the shared inputs; return fields, start positions, start expression, times."""
    fields = load_flecs_fields(adata, key)
    fitted = adata.uns[key].get("params", {})
    layer = fitted.get("layer") if layer is None else layer
    check_layer(adata, layer)
    trajectories = fitted.get("trajectories")
    n_steps = check_int(n_steps, "n_steps", 1)
    t_max = _default_t_max(adata, trajectories) if t_max is None else float(t_max)
    check_positive(t_max, "t_max")
    index = _start_cells(adata, start, trajectories)
    x0 = _expression(adata, layer)[index]
    times = np.linspace(0.0, t_max, n_steps + 1)
    settings = {"key": key, "layer": layer, "t_max": t_max, "n_steps": n_steps}
    return fields, index, x0, times, settings


def simulate(
    adata: AnnData,
    *,
    key: str = _keys.FLECS,
    start: Sequence[str] | Sequence[int] | np.ndarray | None = None,
    t_max: float | None = None,
    n_steps: int = 10,
    layer: str | None = None,
    method: str = "dopri5",
    rtol: float = 1e-3,
    atol: float = 1e-4,
    options: dict | None = None,
) -> AnnData:
    r"""Simulate the fitted FLeCS network forward in time from observed cells.

    Every ensemble member of :func:`celldyn.tl.flecs` integrates
    :math:`dG/dt = \sigma(W^\top G + b) - \alpha G` from each start cell over ``n_steps``
    equal steps up to ``t_max``. ``adata`` is not modified.

    Parameters
    ----------
    adata
        Annotated data matrix fitted by :func:`celldyn.tl.flecs`.
    key
        ``key_added`` of :func:`celldyn.tl.flecs`.
    start
        Start cells: obs names, integer positions or a boolean mask; ``None`` takes every cell
        of the earliest time group of the trajectories the model was fitted on.
    t_max
        Simulated duration; ``None`` is the time span of those trajectories.
    n_steps
        Number of output steps (``n_steps + 1`` time points including 0).
    layer
        Expression of the start cells; ``None`` uses the layer the model was fitted on.
    method, rtol, atol, options
        Solver settings of :func:`celldyn.nn.integrate`.

    Returns
    -------
    A new AnnData with one row per (member, start cell, time point), ordered that way, and the
    genes of ``adata``:

    - ``X``: simulated expression (float32).
    - ``obs['trajectory']``: trajectory id; ``obs['time']``: time since the start;
      ``obs['start_cell']``: obs name of the start cell; ``obs['member']``: ensemble member.
    - ``uns['simulation']``: the settings.

    Raises
    ------
    SolverDivergedError
        If a simulation blows up.
    """
    fields, index, x0, times, settings = _prepare(adata, key, start, t_max, n_steps, layer)
    solver = {"method": method, "rtol": rtol, "atol": atol, "options": options}
    genes = _integrate_fields(fields, x0, times, **solver)
    return _as_adata(genes, times, index, [WILD_TYPE], adata, {**settings, "method": method})


def knockout(
    adata: AnnData,
    genes: str | Sequence[str],
    *,
    key: str = _keys.FLECS,
    scale: float = 0.0,
    start: Sequence[str] | Sequence[int] | np.ndarray | None = None,
    t_max: float | None = None,
    n_steps: int = 10,
    layer: str | None = None,
    method: str = "dopri5",
    rtol: float = 1e-3,
    atol: float = 1e-4,
    options: dict | None = None,
    key_added: str | None = None,
) -> AnnData:
    r"""Knock out (or down) genes in the fitted FLeCS network and simulate both conditions.

    The outgoing edges of ``genes`` are multiplied by ``scale`` (0: knockout, between 0 and 1:
    knockdown; :meth:`celldyn.nn.GRNVectorField.knockout`) in every ensemble member. The
    wild-type and edited networks are integrated in one solve from the same start cells, so
    genes that are not downstream of ``genes`` follow exactly the same path in both.

    Parameters
    ----------
    adata
        Annotated data matrix fitted by :func:`celldyn.tl.flecs`.
    genes
        Gene name(s) to knock out.
    key
        ``key_added`` of :func:`celldyn.tl.flecs`.
    scale
        Factor of the outgoing edge weights (finite, >= 0).
    start, t_max, n_steps, layer, method, rtol, atol, options
        As in :func:`celldyn.tl.simulate`.
    key_added
        If given, also write the edited network's velocity at every observed cell into
        ``adata`` (for :func:`celldyn.pl.velocity_stream`).

    Returns
    -------
    A new AnnData as :func:`celldyn.tl.simulate` returns, with both conditions: rows ordered
    condition, member, start cell, time; ``obs['condition']`` is ``'wild_type'`` or
    ``'knockout'`` (categorical); ``uns['simulation']`` records ``genes`` and ``scale``.
    With ``key_added``, ``adata`` gains

    - ``layers['{key_added}_velocity']``: dense float32 ensemble-mean ``dG/dt`` of the edited
      network at every cell.
    - ``var['{key_added}_velocity_genes']``: all ``True``.
    - ``uns['{key_added}_velocity_params']``: ``{'embeddings': [], 'xkey': xkey}`` for scvelo.
    - ``layers['Ms']`` (or ``layers['{key_added}_velocity_state']``): the expression
      (the fit's ``layer``) as scvelo's state layer ``xkey``, as in :func:`celldyn.tl.flecs`.

    Raises
    ------
    SolverDivergedError
        If a simulation blows up (nothing is written).
    """
    from .._write import write_results
    from ..nn import SolverDivergedError
    from ._velocity_slots import velocity_slots

    check_adata(adata)
    targets = gene_indices(adata, genes)
    scale = float(scale)
    check_positive(scale, "scale", strict=False)
    fields, index, x0, times, settings = _prepare(adata, key, start, t_max, n_steps, layer)
    edited = [field.knockout(targets, scale) for field in fields]
    solver = {"method": method, "rtol": rtol, "atol": atol, "options": options}
    simulated = _integrate_fields([*fields, *edited], x0, times, **solver)
    names = list(adata.var_names[targets])
    params = {**settings, "method": method, "genes": names, "scale": scale}
    out = _as_adata(simulated, times, index, [WILD_TYPE, KNOCKOUT], adata, params)
    if key_added is None:
        return out
    x = torch.as_tensor(_expression(adata, settings["layer"]))
    with torch.no_grad():
        velocity = torch.stack([field.gene_velocity(x) for field in edited]).mean(0).numpy()
    if not np.all(np.isfinite(velocity)):
        raise SolverDivergedError("The knockout velocity has NaN or infinite values.")
    write_results(adata, **velocity_slots(adata, key_added, velocity, layer=settings["layer"]))
    return out
