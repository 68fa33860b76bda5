"""FLeCS torch module: a gene-network ODE fitted to cell trajectories."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from scvi.module.base import BaseModuleClass, LossOutput

from .._validate import check_int
from ..nn import GRNVectorField, SolverDivergedError, integrate
from ..nn._ode import ADAPTIVE_METHODS
from ..pp._ot_velocities import secants
from ._moments import ColumnMoments

VELOCITY_BATCH = 256
"""Velocity targets drawn per training step for the velocity term of the FLeCS loss."""
WHOLE_GRAM_RATIO = 1.0
""":func:`fit_linear` forms the Gram matrix of all genes at once when the sum over targets of
their squared column counts exceeds this times the squared number of genes (dense priors)."""
TRAIN_MAX_NUM_STEPS = 1_000
"""Default bound on the adaptive solver steps of one training solve (a batch of trajectories).

Fits on the test simulators and on BEELINE mESC take at most 15 steps per solve; a solve
beyond the bound comes from a field made stiff or explosive by a diverging fit (``lr`` too
large), and would take minutes to hours, with as many steps kept for backpropagation."""


def integrate_trajectories(
    field: GRNVectorField,
    x0: torch.Tensor,
    times: torch.Tensor,
    *,
    time_grid: int | None = 32,
    **solver_kwargs,
) -> torch.Tensor:
    """Integrate every trajectory from its first cell and return the genes at its times.

    Times are shifted so each trajectory starts at 0 and the whole batch is integrated in one
    solve. When the shifted times take at most ``time_grid`` distinct values (e.g. trajectories
    through time groups), the solve outputs exactly those times. Otherwise (e.g. kNN paths with
    arc-length times, where a batch has a few hundred distinct times) the batch is integrated on
    ``time_grid`` evenly spaced times from 0 to the longest duration and each trajectory's
    states are interpolated linearly between the two grid times around each of its times;
    a time lying on the grid gets the solver's state exactly. Repeated times are allowed.

    Parameters
    ----------
    field
        The vector field.
    x0
        First cell's expression of each trajectory, ``(n_traj, n_genes)``.
    times
        Non-decreasing times of each trajectory, ``(n_traj, length)``.
    time_grid
        Largest number of output times of the solve (at least 2); ``None`` always outputs
        every distinct time of the batch.
    **solver_kwargs
        Passed to :func:`~celldyn.nn.integrate` (``method``, ``rtol``, ``atol``, ``adjoint``,
        ``options``).

    Returns
    -------
    Predicted expression ``(n_traj, length, n_genes)``.
    """
    if time_grid is not None and time_grid < 2:
        raise ValueError(f"`time_grid` must be at least 2 or None, got {time_grid}.")
    shifted = times - times[:, :1]
    grid, position = torch.unique(shifted, sorted=True, return_inverse=True)
    if grid.numel() < 2:  # every trajectory has zero duration
        return x0[:, None].expand(-1, times.shape[1], -1)
    rows = torch.arange(x0.shape[0], device=x0.device)[:, None]
    if time_grid is None or grid.numel() <= time_grid:
        states = integrate(field, field.initial_state(x0), grid, **solver_kwargs)
        return field.gene_state(states)[position, rows]
    grid = torch.linspace(0.0, float(grid[-1]), time_grid, dtype=times.dtype, device=times.device)
    genes = field.gene_state(integrate(field, field.initial_state(x0), grid, **solver_kwargs))
    lower = (torch.searchsorted(grid, shifted, right=True) - 1).clamp(0, time_grid - 2)
    weight = ((shifted - grid[lower]) / (grid[lower + 1] - grid[lower])).clamp(0.0, 1.0)
    # lerp is exact at both ends (weight 0 gives the lower state, weight 1 the upper one)
    return torch.lerp(genes[lower, rows], genes[lower + 1, rows], weight[..., None].to(x0.dtype))


def random_windows(
    x: torch.Tensor, t: torch.Tensor, min_length: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random sub-window of every trajectory, one window length per batch.

    The length is drawn uniformly from ``min_length`` to the full length, the start of each
    trajectory's window uniformly among the positions where it fits (torch's global RNG).

    Parameters
    ----------
    x
        Expression ``(n_traj, length, n_genes)``.
    t
        Times ``(n_traj, length)``.
    min_length
        Shortest window (at least 2).

    Returns
    -------
    ``x`` and ``t`` of the windows, ``(n_traj, window, n_genes)`` and ``(n_traj, window)``.
    """
    length = x.shape[1]
    window = int(torch.randint(min(min_length, length), length + 1, ()))
    start = torch.randint(0, length - window + 1, (x.shape[0], 1), device=x.device)
    index = start + torch.arange(window, device=x.device)
    return x.gather(1, index[..., None].expand(-1, -1, x.shape[2])), t.gather(1, index)


def flow_matching_pairs(
    x: torch.Tensor, t: torch.Tensor, noise: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augmented start/end pairs on the straight segments between consecutive cells.

    Flow-matching-style augmentation of the FLeCS paper: for every trajectory a random
    consecutive pair of cells ``(x_j, x_{j+1})`` and two sorted fractions ``s < u`` of the
    segment are drawn; the sample starts at ``(1 - s) x_j + s x_{j+1}`` plus Gaussian noise of
    standard deviation ``noise · std_g · sqrt(d (1 - d))`` (``d = u - s``, ``std_g`` each gene's
    standard deviation in the batch; a Brownian-bridge scale) and must reach
    ``(1 - u) x_j + u x_{j+1}`` after ``d · (t_{j+1} - t_j)``.

    Parameters
    ----------
    x
        Expression ``(n_traj, length, n_genes)``.
    t
        Times ``(n_traj, length)``.
    noise
        Noise level relative to each gene's standard deviation.

    Returns
    -------
    ``x`` ``(n_traj, 2, n_genes)`` and ``t`` ``(n_traj, 2)`` of the augmented pairs.
    """
    n, length, _ = x.shape
    j = torch.randint(0, length - 1, (n,), device=x.device)
    rows = torch.arange(n, device=x.device)
    start, end = x[rows, j], x[rows, j + 1]
    s, u = torch.rand(n, 2, device=x.device, dtype=x.dtype).sort(dim=1).values.unbind(1)
    d = u - s
    x0 = torch.lerp(start, end, s[:, None])
    if noise > 0:
        scale = noise * x.reshape(-1, x.shape[2]).std(dim=0) * (d * (1 - d)).sqrt()[:, None]
        x0 = x0 + scale * torch.randn_like(x0)
    x1 = torch.lerp(start, end, u[:, None])
    duration = d * (t[rows, j + 1] - t[rows, j])
    return torch.stack([x0, x1], 1), torch.stack([torch.zeros_like(duration), duration], 1)


def chord_velocities(x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Finite-difference velocities: chord slopes between consecutive cells, at the midpoints.

    For every pair of consecutive cells ``(x_k, x_{k+1})`` of a trajectory the velocity
    ``(x_{k+1} - x_k) / (t_{k+1} - t_k)`` is placed at ``(x_k + x_{k+1}) / 2``, where it is a
    second-order estimate of the derivative of a smooth path. Pairs of zero duration (repeated
    cells of short kNN paths) are left out.

    Parameters
    ----------
    x
        Expression ``(n_traj, length, n_genes)``.
    t
        Non-decreasing times ``(n_traj, length)``.

    Returns
    -------
    Midpoints and velocities, both ``(n_pairs, n_genes)``.
    """
    duration = t[:, 1:] - t[:, :-1]
    keep = duration > 0
    return secants(x[:, :-1][keep], x[:, 1:][keep], duration[keep].to(x.dtype))


def velocity_mse(
    field: GRNVectorField, points: torch.Tensor, velocities: torch.Tensor
) -> torch.Tensor:
    """Mean squared error of the field's gene velocity at ``points`` to ``velocities``."""
    return (field.gene_velocity(points) - velocities).square().mean()


def fit_velocities(
    field: GRNVectorField, points: torch.Tensor, velocities: torch.Tensor, *, max_iter: int = 500
) -> float:
    """Fit the field's gene velocity to given velocities by least squares (full-batch L-BFGS).

    No ODE is solved: the loss is ``mean |f(points) - velocities|^2`` over the genes of
    :meth:`~celldyn.nn.GRNVectorField.gene_velocity` (proteins at steady state, latents 0).
    Fitted to OT velocities or the :func:`chord_velocities` of the trajectories, it is a warm
    start that identifies the network far better than the trajectory error alone (see the
    FLeCS user guide).

    Parameters
    ----------
    field
        The vector field, updated in place.
    points, velocities
        Expression and velocity ``(n_points, n_genes)`` on the field's device.
    max_iter
        Largest number of L-BFGS iterations.

    Returns
    -------
    The final mean squared error.

    Raises
    ------
    SolverDivergedError
        If the loss or the parameters become NaN or infinite (the parameters are restored).
    """
    return _lbfgs(field, lambda: velocity_mse(field, points, velocities), max_iter, "velocity")


def fit_linear(
    field: GRNVectorField,
    points: torch.Tensor,
    velocities: torch.Tensor,
    *,
    ridge: float = 1e-3,
    min_decay: float = 1e-3,
    level: tuple[float, float] = (0.05, 0.95),
) -> float:
    r"""Set the field to the linear least-squares fit of given velocities (closed form).

    For every target :math:`i`, its velocity is regressed on its prior regulators and its
    own expression (standardised, ridge ``ridge`` × number of points for collinear
    regulators): :math:`v_i \approx c_i + \sum_j \beta_{ji} G_j + \gamma_i G_i`. The
    field is set to the sigmoid model that has this linearisation at the target's mean
    production level :math:`p_i` (clipped to ``level``): decay
    :math:`\alpha_i = \max(-\gamma_i, \text{min\_decay})`, weights :math:`\beta_{ji} /
    \sigma'` (:math:`\sigma' = p_i (1 - p_i)`; a self loop of the prior takes
    :math:`\gamma_i + \alpha_i`), divided by the regulator's protein gain with
    ``protein_proxy``, and the bias that gives :math:`p_i` at the mean expression. Latent
    nodes and edges are left as they are. It ranks edges like a ridge regression of the same
    velocities and needs no iterations; :func:`fit_velocities` can refine it.
    :func:`fit_linear_blocks` fits the same from blocks of points read one at a time.

    Parameters
    ----------
    field
        The vector field, updated in place.
    points, velocities
        Expression and velocity ``(n_points, n_genes)``.
    ridge
        Ridge penalty on the standardised coefficients, relative to the number of points
        (positive: collinear regulators share their effect).
    min_decay
        Smallest decay given to a gene whose fitted self term is not negative.
    level
        Range of the mean production level (inside (0, 1): the sigmoid's range).

    Returns
    -------
    The mean squared error of the field's velocity to ``velocities`` after the fit.

    Raises
    ------
    ValueError
        If ``points`` or ``velocities`` hold NaN or infinite values, or ``ridge``,
        ``min_decay`` or ``level`` are out of range (the field is unchanged).
    """
    return fit_linear_blocks(
        field, lambda: [(points, velocities)], ridge=ridge, min_decay=min_decay, level=level
    )


@torch.no_grad()
def fit_linear_blocks(
    field: GRNVectorField,
    blocks: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]],
    *,
    ridge: float = 1e-3,
    min_decay: float = 1e-3,
    level: tuple[float, float] = (0.05, 0.95),
) -> float:
    """:func:`fit_linear` on points and velocities given as row blocks, one at a time.

    ``blocks()`` yields the ``(points, velocities)`` blocks anew on every call (three
    passes: the genes' means and standard deviations, the regressions' Gram matrices, the
    final error); blocks are moved to the field's device. Memory holds one block and the
    Gram matrices (of all genes at once for dense priors), never all the points.

    Parameters
    ----------
    field
        The vector field, updated in place.
    blocks
        Returns an iterable of blocks ``(points, velocities)``, each ``(n_rows, n_genes)``.
    ridge, min_decay, level
        As in :func:`fit_linear`.

    Returns
    -------
    The mean squared error of the field's velocity to the velocities after the fit.

    Raises
    ------
    ValueError
        As :func:`fit_linear` (a block that is not finite; the field is unchanged).
    """
    if not 0.0 < level[0] < level[1] < 1.0:
        raise ValueError(f"`level` must satisfy 0 < low < high < 1, got {level!r}.")
    if not (ridge > 0 and min_decay > 0):
        raise ValueError(f"`ridge` and `min_decay` must be positive, got {ridge!r}, {min_decay!r}.")
    device = field.decay.device

    def on_device():
        for points, velocities in blocks():
            yield points.to(device), velocities.to(device)

    point_moments, velocity_moments = ColumnMoments(), ColumnMoments()
    for points, velocities in on_device():
        if not bool(torch.isfinite(points).all() and torch.isfinite(velocities).all()):
            raise ValueError("`points` and `velocities` of `fit_linear` must be finite.")
        point_moments.update(points)
        velocity_moments.update(velocities)
    n, n_genes = point_moments.n, field.n_genes
    mean, v_mean = point_moments.mean, velocity_moments.mean
    sd = point_moments.var().sqrt()
    sd = torch.where(sd > 0, sd, torch.ones_like(sd))  # constant genes: coefficient 0
    src = field.src[: field.n_prior_edges].cpu()
    dst = field.dst[: field.n_prior_edges].cpu()
    order = torch.argsort(dst, stable=True)
    starts = torch.searchsorted(dst[order], torch.arange(n_genes + 1))
    targets = []  # per target: its prior edges (no self loop) and its design columns
    for target in range(n_genes):
        edges = order[starts[target] : starts[target + 1]]
        others = src[edges] != target
        columns = torch.cat([src[edges][others], torch.tensor([target])]).to(device)
        targets.append((edges[others].to(device), columns))
    # one Gram matrix of all genes when that costs less than one per target (dense priors)
    whole = None
    if sum(len(columns) ** 2 for _, columns in targets) > WHOLE_GRAM_RATIO * n_genes**2:
        whole = torch.zeros(n_genes, n_genes, device=device)
    grams, rhs = [0.0] * len(targets), [0.0] * len(targets)  # grams: without `whole`
    for points, velocities in on_device():
        if whole is not None:
            standard = (points - mean.float()) / sd.float()
            whole.addmm_(standard.T, standard)
            del standard
        for target, (_, columns) in enumerate(targets):
            design = (points[:, columns].double() - mean[columns]) / sd[columns]
            if whole is None:
                grams[target] = grams[target] + design.T @ design
            rhs[target] = rhs[target] + design.T @ (velocities[:, target].double() - v_mean[target])
    whole = None if whole is None else whole.double()
    coef = torch.zeros(field.n_prior_edges, dtype=torch.float64, device=device)
    gamma = torch.zeros(n_genes, dtype=torch.float64, device=device)
    for target, (edges, columns) in enumerate(targets):  # one small float64 solve per target
        gram = whole[columns][:, columns] if whole is not None else grams[target]
        gram.diagonal().add_(ridge * n)
        beta = torch.linalg.solve(gram, rhs[target]) / sd[columns]
        coef[edges] = beta[:-1]
        gamma[target] = beta[-1]
    decay = torch.clamp(-gamma, min=min_decay)
    production = torch.clamp(v_mean + decay * mean, *level)
    slope = production * (1.0 - production)
    src_d, dst_d = src.to(device), dst.to(device)
    self_loop = src_d == dst_d
    coef = torch.where(self_loop, gamma[dst_d] + decay[dst_d], coef)
    effect = coef / slope[dst_d]  # weight times the regulator's protein gain
    drive = torch.zeros(n_genes, dtype=torch.float64, device=device)
    drive.index_add_(0, dst_d, effect * mean[src_d])
    weight = effect / field.regulator_gain().double()[src_d]
    bias = torch.logit(production) - drive
    field.set_gene_parameters(weights=weight, bias=bias, decay=decay)
    squared = sum(
        float((field.gene_velocity(points) - velocities).square().sum())
        for points, velocities in on_device()
    )
    return squared / (n * n_genes)


def fit_pairs(
    field: GRNVectorField,
    starts: torch.Tensor,
    ends: torch.Tensor,
    gaps: torch.Tensor,
    *,
    max_iter: int = 300,
    **solver_kwargs,
) -> float:
    """Fit the field's flow over each gap to given end points (full-batch L-BFGS).

    Every start cell is integrated for its gap (one solve per distinct gap) and the loss is
    the squared error of the genes at the end to ``ends``, each gene's error divided by the
    variance of its ``ends`` (so every gene counts alike), averaged over cells and genes.
    Fitted to the OT barycentres of the cells at the next time group
    (exact OT between the groups), the network must explain where each
    cell's genes are after the whole gap, which carries regulation that acts with a delay or
    settles within the gap (see the FLeCS user guide).

    Parameters
    ----------
    field
        The vector field, updated in place.
    starts, ends
        Expression ``(n_pairs, n_genes)`` at the start and the end of each gap.
    gaps
        Duration of each gap ``(n_pairs,)``, positive.
    max_iter
        Largest number of L-BFGS iterations.
    **solver_kwargs
        Passed to :func:`~celldyn.nn.integrate` (``method``, ``rtol``, ``atol``, ``options``).

    Returns
    -------
    The final loss.

    Raises
    ------
    SolverDivergedError
        If a solve diverges or the loss or the parameters become NaN or infinite (the
        parameters are restored).
    """
    if not bool((gaps > 0).all()):
        raise ValueError("Every gap of `fit_pairs` must be positive.")
    scale = ends.var(0).clamp(min=torch.finfo(ends.dtype).eps) if len(ends) > 1 else None
    groups = [(gap, gaps == gap) for gap in torch.unique(gaps)]

    def error() -> torch.Tensor:
        total = 0.0
        for gap, rows in groups:
            t = torch.stack([torch.zeros_like(gap), gap])
            out = integrate(field, field.initial_state(starts[rows]), t, **solver_kwargs)[-1]
            total = total + (field.gene_state(out) - ends[rows]).square().sum(0)
        total = total / len(starts)
        return (total if scale is None else total / scale).mean()

    return _lbfgs(field, error, max_iter, "pair")


def _lbfgs(field: GRNVectorField, error, max_iter: int, what: str) -> float:
    """Minimise ``error()`` over the field's parameters by full-batch L-BFGS.

    Non-finite losses or parameters restore the parameters and raise
    :class:`~celldyn.nn.SolverDivergedError` naming the ``what`` fit.
    """
    params = [p for p in field.parameters() if p.requires_grad]
    saved = [p.detach().clone() for p in params]
    optimizer = torch.optim.LBFGS(
        params, lr=1.0, max_iter=int(max_iter), history_size=20, line_search_fn="strong_wolfe"
    )

    def checked() -> torch.Tensor:
        loss = error()
        if not torch.isfinite(loss):
            raise SolverDivergedError(f"The {what} fit diverged: NaN or infinite loss.")
        return loss

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = checked()
        loss.backward()
        return loss

    try:
        optimizer.step(closure)
        with torch.no_grad():
            loss = checked()
        if not all(bool(torch.isfinite(p).all()) for p in params):
            raise SolverDivergedError(f"The {what} fit diverged: NaN or infinite parameters.")
    except SolverDivergedError:
        with torch.no_grad():
            for param, value in zip(params, saved, strict=True):
                param.copy_(value)
        raise
    return float(loss)


def trajectory_mse(
    predicted: torch.Tensor, observed: torch.Tensor, times: torch.Tensor
) -> torch.Tensor:
    """Mean squared error per trajectory over its later cells, ``(n_traj,)``.

    A cell at the same time as the cell before it (short kNN paths repeat cells) adds no
    term; a trajectory of zero duration scores 0.

    Parameters
    ----------
    predicted, observed
        Expression ``(n_traj, length, n_genes)``.
    times
        Non-decreasing times ``(n_traj, length)``.
    """
    counts = (times[:, 1:] > times[:, :-1]).to(predicted.dtype)
    error = (predicted[:, 1:] - observed[:, 1:]).square().mean(dim=2)
    return (error * counts).sum(1) / counts.sum(1).clamp(min=1.0)


class FLeCSModule(BaseModuleClass):
    """FLeCS: :class:`~celldyn.nn.GRNVectorField` trained on trajectories by MSE.

    Each training sample is a trajectory: expression ``x`` ``(length, n_genes)`` and times
    ``t`` ``(length,)``. The ODE is integrated from the first cell; the loss is the mean
    squared error between predicted and observed gene expression at the later cells. A cell
    at the same time as the cell before it (short kNN paths repeat cells) adds no term, so
    every distinct later time counts once. Only gene variables enter the loss (not proteins
    or latents). An optional L1 penalty ``l1 · mean|W|`` on the prior edge weights is added.

    In training, with velocity targets set (:meth:`set_velocity_targets`, or drawn on demand
    by :meth:`set_velocity_sampler`) and ``velocity_weight > 0``, every step also adds
    ``velocity_weight`` times the relative velocity error ``mean|f(p) - v|^2 / mean var(v)``
    on :data:`VELOCITY_BATCH` random target points (:func:`velocity_mse`): the velocity fit
    of the warm start stays part of the loss.

    In training mode two augmentations can replace the full trajectories (validation always
    uses them): ``windows`` (a random sub-window of every trajectory, see
    :func:`random_windows`, a mixture of trajectory lengths) and ``flow_matching`` (random
    pairs on the segments between consecutive cells, see :func:`flow_matching_pairs`).

    Parameters
    ----------
    n_genes
        Number of genes.
    src, dst
        Regulator (row) and target (column) gene index of each prior edge.
    method, rtol, atol, step_size, adjoint
        Solver settings of :func:`~celldyn.nn.integrate` (``step_size`` for fixed-step
        methods such as ``'rk4'``; ``adjoint`` uses ``odeint_adjoint``).
    max_num_steps
        Most steps of an adaptive solver per solve (:data:`TRAIN_MAX_NUM_STEPS`).
    time_grid
        See :func:`integrate_trajectories`.
    l1
        Weight of the L1 penalty on the prior edge weights.
    windows
        Train on random sub-windows (``False``, or the shortest window length, >= 2).
    flow_matching
        Train on flow-matching pairs.
    flow_matching_noise
        Their noise level (relative to each gene's standard deviation).
    velocity_weight
        Weight of the relative velocity error in the training loss (>= 0).
    **field_kwargs
        Passed to :class:`~celldyn.nn.GRNVectorField` (``n_latent``, ``protein_proxy``,
        ``kernel``, ...).
    """

    def __init__(
        self,
        n_genes: int,
        src: Sequence[int] | torch.Tensor,
        dst: Sequence[int] | torch.Tensor,
        *,
        method: str = "dopri5",
        rtol: float = 1e-3,
        atol: float = 1e-4,
        step_size: float | None = None,
        adjoint: bool = False,
        max_num_steps: int = TRAIN_MAX_NUM_STEPS,
        time_grid: int | None = 32,
        l1: float = 0.0,
        windows: int | bool = False,
        flow_matching: bool = False,
        flow_matching_noise: float = 0.0,
        velocity_weight: float = 0.0,
        **field_kwargs,
    ):
        super().__init__()
        self.field = GRNVectorField(n_genes, src, dst, **field_kwargs)
        self.velocity_count, self.velocity_scale, self._sample_velocities = 0, 0.0, None
        self.configure(
            method=method,
            rtol=rtol,
            atol=atol,
            step_size=step_size,
            adjoint=adjoint,
            max_num_steps=max_num_steps,
            time_grid=time_grid,
            l1=l1,
            windows=windows,
            flow_matching=flow_matching,
            flow_matching_noise=flow_matching_noise,
            velocity_weight=velocity_weight,
        )

    def configure(
        self,
        *,
        method: str,
        rtol: float,
        atol: float,
        step_size: float | None,
        adjoint: bool,
        time_grid: int | None,
        l1: float,
        windows: int | bool,
        flow_matching: bool,
        flow_matching_noise: float,
        velocity_weight: float = 0.0,
        max_num_steps: int = TRAIN_MAX_NUM_STEPS,
    ) -> None:
        """Set the solver, loss and augmentation settings (see the class parameters)."""
        self.max_num_steps = check_int(max_num_steps, "max_num_steps", 1)
        if time_grid is not None and int(time_grid) < 2:
            raise ValueError(f"`time_grid` must be an integer >= 2 or None, got {time_grid}.")
        if step_size is not None and not step_size > 0:
            raise ValueError(f"`step_size` must be positive, got {step_size}.")
        if not l1 >= 0:
            raise ValueError(f"`l1` must be non-negative, got {l1}.")
        windows = 2 if windows is True else windows
        if windows is not False and int(windows) < 2:
            raise ValueError(f"`windows` must be False, True or an integer >= 2, got {windows}.")
        if not flow_matching_noise >= 0:
            raise ValueError(f"`flow_matching_noise` must be >= 0, got {flow_matching_noise}.")
        if not velocity_weight >= 0 or velocity_weight == float("inf"):
            raise ValueError(f"`velocity_weight` must be finite and >= 0, got {velocity_weight}.")
        self.method, self.rtol, self.atol = method, float(rtol), float(atol)
        self.step_size, self.adjoint = step_size, bool(adjoint)
        self.time_grid = None if time_grid is None else int(time_grid)
        self.l1 = float(l1)
        self.windows = 0 if windows is False else int(windows)
        self.flow_matching, self.flow_matching_noise = bool(flow_matching), flow_matching_noise
        self.velocity_weight = float(velocity_weight)

    def set_velocity_targets(self, points: torch.Tensor, velocities: torch.Tensor) -> None:
        """Velocities ``(n_points, n_genes)`` at ``points`` for the velocity term of the loss."""
        points, velocities = points.float(), velocities.float()
        self.set_velocity_sampler(
            lambda picks: (points[picks], velocities[picks]), len(points), [velocities]
        )

    def set_velocity_sampler(
        self,
        sample: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
        n_targets: int,
        velocity_blocks: Iterable[torch.Tensor],
    ) -> None:
        """Velocity targets of the loss drawn on demand (e.g. read from disk at each step).

        Parameters
        ----------
        sample
            Returns the points and velocities ``(n_picks, n_genes)`` of target rows ``picks``
            (a long tensor on the CPU).
        n_targets
            Number of target rows.
        velocity_blocks
            Row blocks of all the velocities, for the error's scale ``mean var(v)``.
        """
        moments = ColumnMoments()
        for block in velocity_blocks:
            moments.update(block)
        self._sample_velocities, self.velocity_count = sample, int(n_targets)
        self.velocity_scale = float(moments.var().mean()) if moments.n > 1 else 0.0

    def velocity_loss(self) -> torch.Tensor | None:
        """Relative velocity error on a random batch of the targets (``None`` without them)."""
        if not (self.velocity_weight > 0 and self.velocity_count and self.velocity_scale):
            return None
        picks = torch.randint(0, self.velocity_count, (VELOCITY_BATCH,))
        device = self.field.decay.device
        points, velocities = (part.to(device) for part in self._sample_velocities(picks))
        return velocity_mse(self.field, points, velocities) / self.velocity_scale

    def solver_kwargs(self) -> dict:
        """Keyword arguments of :func:`~celldyn.nn.integrate` for the current settings."""
        options = None if self.step_size is None else {"step_size": self.step_size}
        if self.method in ADAPTIVE_METHODS:
            options = {**(options or {}), "max_num_steps": self.max_num_steps}
        return {
            "method": self.method,
            "rtol": self.rtol,
            "atol": self.atol,
            "adjoint": self.adjoint,
            "options": options,
        }

    def _get_inference_input(self, tensors):
        return {"x": tensors["x"], "t": tensors["t"]}

    def inference(self, x: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
        """Predict every (augmented, in training) trajectory from its first cell."""
        if self.training and self.flow_matching:
            x, t = flow_matching_pairs(x, t, self.flow_matching_noise)
        elif self.training and self.windows:
            x, t = random_windows(x, t, self.windows)
        predicted = integrate_trajectories(
            self.field, x[:, 0], t, time_grid=self.time_grid, **self.solver_kwargs()
        )
        return {"predicted": predicted, "observed": x, "times": t}

    def _get_generative_input(self, tensors, inference_outputs):
        return {}

    def generative(self) -> dict:
        """No generative step."""
        return {}

    def loss(self, tensors, inference_outputs, generative_outputs) -> LossOutput:
        """Squared error at every later cell whose time differs from the previous cell's.

        Raises :class:`~celldyn.nn.SolverDivergedError` when the loss is NaN or infinite, so a
        diverging fit stops at its first bad step.
        """
        outputs = inference_outputs
        per_trajectory = trajectory_mse(outputs["predicted"], outputs["observed"], outputs["times"])
        loss = per_trajectory.mean()
        if self.l1 > 0:
            loss = loss + self.l1 * self.field.prior_edge_weights().abs().mean()
        velocity = self.velocity_loss() if self.training else None
        total = loss if velocity is None else loss + self.velocity_weight * velocity
        if not bool(torch.isfinite(total.detach())):
            raise SolverDivergedError("The FLeCS loss is NaN or infinite.")
        if velocity is None:
            return LossOutput(loss=loss, reconstruction_loss=per_trajectory)
        return LossOutput(
            loss=total,
            reconstruction_loss=per_trajectory,
            extra_metrics={"velocity_error": velocity.detach()},
        )
