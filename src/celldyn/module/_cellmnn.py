"""Cell-MNN torch module: locally linear latent dynamics trained by MMD on snapshots."""

from __future__ import annotations

import torch
from scvi.module.base import BaseModuleClass, LossOutput

from ..nn._kernels import KERNELS, marginal_energy_distance_torch, mmd_torch
from ..nn._operator_mlp import OperatorMLP, invertibility_penalty, propagate

BANDWIDTH_FACTOR = 0.5
"""MMD bandwidth: this factor times the median distance between pushed and partner cells."""
MEAN_PATH_POINTS = 8
"""Times strictly inside each interval between training times where the mean path is asked."""


def population_mmd(x: torch.Tensor, y: torch.Tensor, kernels: tuple[str, ...]) -> torch.Tensor:
    """Squared MMD of pushed cells ``x`` to observed cells ``y``, summed over ``kernels``.

    The bandwidths are :data:`BANDWIDTH_FACTOR` times the median distance within ``y`` and
    between ``x`` and ``y`` (no gradient), so they follow both the spread of the target and
    its distance.
    """
    with torch.no_grad():
        cross = torch.cdist(x, y).median().clamp_min(1e-6)
        within = torch.cdist(y, y).median().clamp_min(1e-6)
    bandwidths = (BANDWIDTH_FACTOR * float(within), BANDWIDTH_FACTOR * float(cross))
    return sum(mmd_torch(x, y, kernel=k, bandwidths=bandwidths) for k in kernels)


def snapshot_mmd(
    pushed: torch.Tensor,
    tensors: dict[str, torch.Tensor],
    *,
    gamma: float,
    kernels: tuple,
    lambda_marginal: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Discounted MMD between pushed start cells and observed cells at later training times.

    Sums, over conditions, start times ``s`` and later training times ``g``, the
    :func:`population_mmd` (plus ``lambda_marginal`` times the
    energy distance of the 1-D marginals) between the minibatch
    cells of time ``s`` pushed to ``g`` and the partner cells of time ``g``, weighted by
    ``gamma**(k - 1)`` for ``g`` ``k`` training times after ``s``, normalised by the sum of
    weights. Shared by every model trained on snapshots (Cell-MNN; the neural-ODE baseline
    of the benchmarks).

    Parameters
    ----------
    pushed
        States ``(batch, n_groups, d)`` of the start cells pushed to every ``partner_times``.
    tensors
        A minibatch of the snapshot data module of :class:`~celldyn.models.CellMNN` (see
        :meth:`CellMNNModule.loss`).
    gamma
        Discount of targets further ahead.
    kernels
        MMD kernels.
    lambda_marginal
        Weight of the energy distance of the 1-D marginals (``0``: not computed).

    Returns
    -------
    The MMD and the mask ``(batch, n_groups)`` of the compared (cell, time) pairs.
    """
    group, condition = tensors["group"].long(), tensors["condition"].long()
    rank, available = tensors["rank"].long(), tensors["available"].bool()
    steps = rank[condition] - rank[condition, group][:, None]
    valid = (rank[condition] >= 0) & (steps >= 1) & available[condition]
    mmd, total_weight = pushed.new_zeros(()), 0.0
    starts = torch.unique(torch.stack([condition, group], 1), dim=0).tolist()
    for c, s in starts:
        cells = (condition == c) & (group == s)
        first = int(cells.nonzero()[0, 0])
        for g in valid[first].nonzero()[:, 0].tolist():
            weight = gamma ** (int(steps[first, g]) - 1)
            x, y = pushed[cells, g], tensors["partners"][c, g]
            term = population_mmd(x, y, kernels)
            if lambda_marginal:
                term = term + lambda_marginal * marginal_energy_distance_torch(x, y)
            mmd = mmd + weight * term
            total_weight += weight
    return mmd / max(total_weight, 1e-12), valid


def mean_path_error(
    matrix: torch.Tensor,
    z: torch.Tensor,
    drift: torch.Tensor | None,
    tensors: dict[str, torch.Tensor],
) -> torch.Tensor:
    """Squared distance of the pushed population's mean to the spline of the means.

    The minibatch cells of every start time ``s`` (and condition) are pushed to the times
    ``path_times[c, s]`` strictly between ``s`` and the next training time; the mean over
    components of the squared difference between their mean and ``path_means[c, s]`` (the
    natural cubic spline through the means of the training times, internal units) is
    averaged over the grid times and the start groups.

    Parameters
    ----------
    matrix, z, drift
        Internal operators ``(batch, d, d)``, states ``(batch, d)`` and drifts ``(batch, d)``
        or ``None`` of the start cells.
    tensors
        A minibatch with ``t``, ``group``, ``condition``, ``path_times``
        ``(n_conditions, n_groups, n_points)`` and ``path_means``
        ``(n_conditions, n_groups, n_points, d)``.
    """
    group, condition = tensors["group"].long(), tensors["condition"].long()
    dt = tensors["path_times"][condition, group] - tensors["t"][:, None]
    pushed = propagate(matrix, z, dt, drift)
    errors = []
    for c, s in torch.unique(torch.stack([condition, group], 1), dim=0).tolist():
        cells = (condition == c) & (group == s)
        mean = pushed[cells].mean(0)
        errors.append((mean - tensors["path_means"][c, s]).square().mean())
    return torch.stack(errors).mean()


class CellMNNModule(BaseModuleClass):
    """Cell-MNN: an MLP maps a cell's state and time to a local operator ``A``.

    Works in internal units: states ``z / z_scale`` (per-component scaling, no centering, so
    linear maps keep the origin of the representation fixed) and times
    ``(t - t_origin) / t_scale`` (the observed time range becomes ``[0, 1]``). A cell at
    ``(z0, t0)`` is pushed in closed form, ``z(t) = expm(A(z0, t0) (t - t0)) z0``, or with
    ``affine=True`` along ``dz/dt = A(z0, t0) z + b(z0, t0)`` (see
    :func:`~celldyn.nn.propagate`).

    The loss sums, over conditions, start times ``s`` and later training times ``g``, the
    squared MMD (one term per kernel in ``kernels``) between the minibatch cells of time
    ``s`` pushed to ``g`` and observed partner cells of time ``g``, weighted by
    ``gamma**(k - 1)`` for ``g`` ``k`` training times after ``s`` and normalised by the sum of
    weights (plus ``lambda_marginal`` times the energy distance of the 1-D marginals, see
    :func:`snapshot_mmd`); plus ``lambda_kinetic`` times the mean kinetic energy
    ``‖A z + b‖²`` at the start and pushed states, plus (``'eigen'`` only)
    ``lambda_invertibility`` times the invertibility penalty of the eigenbasis, plus
    ``lambda_mean_path`` times :func:`mean_path_error` when the minibatch holds the spline
    of the means (``path_times``, ``path_means``).

    Parameters
    ----------
    n_latent
        Dimension of the latent state.
    n_conditions
        Number of conditions (datasets) the operator is conditioned on (``0``: none).
    gamma
        Discount of targets further ahead.
    lambda_kinetic
        Weight of the kinetic-energy penalty.
    lambda_invertibility
        Weight of the eigenbasis invertibility penalty (``'eigen'`` only).
    lambda_marginal
        Weight of the energy distance of the 1-D marginals, added to every MMD term.
    lambda_mean_path
        Weight of :func:`mean_path_error` (``0``: off).
    kernels
        MMD kernels (``'laplace'``, ``'gaussian'``); the bandwidth is
        :data:`BANDWIDTH_FACTOR` times the median distance between pushed and observed cells
        (no gradient), so it follows both the spread of the target and its distance.
    **mlp_kwargs
        Passed to :class:`~celldyn.nn.OperatorMLP` (``n_hidden``, ``n_layers``,
        ``parametrization``, ``n_zero_eigenvalues``, ``max_rate``, ``init_scale``, ``affine``).
    """

    def __init__(
        self,
        n_latent: int,
        *,
        n_conditions: int = 0,
        gamma: float = 0.7,
        lambda_kinetic: float = 1e-3,
        lambda_invertibility: float = 0.01,
        lambda_marginal: float = 0.0,
        lambda_mean_path: float = 0.0,
        kernels: tuple[str, ...] = ("laplace", "rbf"),
        **mlp_kwargs,
    ):
        super().__init__()
        unknown = set(kernels) - set(KERNELS)
        if not kernels or unknown:
            raise ValueError(f"`kernels` must be a non-empty subset of {KERNELS}, got {kernels}.")
        if not 0 < gamma <= 1:
            raise ValueError(f"`gamma` must be in (0, 1], got {gamma}.")
        if not lambda_marginal >= 0:
            raise ValueError(f"`lambda_marginal` must be >= 0, got {lambda_marginal!r}.")
        if not 0 <= lambda_mean_path < float("inf"):
            raise ValueError(
                f"`lambda_mean_path` must be a finite number >= 0, got {lambda_mean_path!r}."
            )
        self.operator_net = OperatorMLP(n_latent, n_conditions=n_conditions, **mlp_kwargs)
        self.gamma = float(gamma)
        self.lambda_kinetic = float(lambda_kinetic)
        self.lambda_invertibility = float(lambda_invertibility)
        self.lambda_marginal = float(lambda_marginal)
        self.lambda_mean_path = float(lambda_mean_path)
        self.kernels = tuple(kernels)
        self.register_buffer("z_scale", torch.ones(n_latent))
        self.register_buffer("input_shift", torch.zeros(n_latent))
        self.register_buffer("t_origin", torch.zeros(()))
        self.register_buffer("t_scale", torch.ones(()))

    def set_units(self, z_scale, input_shift, t_origin: float, t_scale: float) -> None:
        """Set the internal units (see the class docstring); ``input_shift`` centres MLP input."""
        self.z_scale.copy_(torch.as_tensor(z_scale))
        self.input_shift.copy_(torch.as_tensor(input_shift))
        self.t_origin.fill_(float(t_origin))
        self.t_scale.fill_(float(t_scale))

    def operator(self, z: torch.Tensor, t: torch.Tensor, condition: torch.Tensor | None = None):
        """Operators (internal units) at internal states ``z`` and times ``t``."""
        return self.operator_net(z - self.input_shift, t, condition)

    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict:
        return {"z": tensors["z"], "t": tensors["t"], "condition": tensors["condition"]}

    def inference(self, z: torch.Tensor, t: torch.Tensor, condition: torch.Tensor) -> dict:
        """Operators of the start cells."""
        operator = self.operator(z, t, condition)
        return {"operator": operator.matrix, "basis": operator.basis, "drift": operator.drift}

    def _get_generative_input(self, tensors, inference_outputs) -> dict:
        return {}

    def generative(self) -> dict:
        """No generative model: pushed cells are compared with observed cells in the loss."""
        return {}

    def loss(self, tensors: dict[str, torch.Tensor], inference_outputs: dict, generative_outputs):
        """MMD between pushed and observed cells, plus kinetic and invertibility penalties.

        ``tensors`` holds the start cells ``z``, ``t``, ``group``, ``condition`` (batch,) and
        ``partners`` ``(n_conditions, n_groups, n_partners, d)`` observed at
        ``partner_times`` ``(n_groups,)``, ``rank`` ``(n_conditions, n_groups)`` (position
        among the training times of the condition, ``-1`` if not a training time) and
        ``available`` ``(n_conditions, n_groups)`` (partners present); with
        ``lambda_mean_path``, ``path_times`` and ``path_means`` (:func:`mean_path_error`).
        """
        z, matrix, drift = tensors["z"], inference_outputs["operator"], inference_outputs["drift"]
        dt = tensors["partner_times"][None, :] - tensors["t"][:, None]
        pushed = propagate(matrix, z, dt, drift)
        mmd, valid = snapshot_mmd(
            pushed,
            tensors,
            gamma=self.gamma,
            kernels=self.kernels,
            lambda_marginal=self.lambda_marginal,
        )

        states = torch.cat([z[:, None], pushed], 1)
        mask = torch.cat([torch.ones_like(valid[:, :1]), valid], 1)
        velocity = states @ matrix.mT
        if drift is not None:
            velocity = velocity + drift[:, None]
        kinetic = velocity.square().sum(-1)[mask].mean()
        loss = mmd + self.lambda_kinetic * kinetic
        extra = {"mmd": mmd.detach(), "kinetic": kinetic.detach()}
        if inference_outputs["basis"] is not None:
            penalty = invertibility_penalty(inference_outputs["basis"])
            loss = loss + self.lambda_invertibility * penalty
            extra["invertibility"] = penalty.detach()
        if self.lambda_mean_path:
            path = mean_path_error(matrix, z, drift, tensors)
            loss = loss + self.lambda_mean_path * path
            extra["mean_path"] = path.detach()
        return LossOutput(
            loss=loss, reconstruction_loss=mmd.detach().expand(z.shape[0]), extra_metrics=extra
        )
