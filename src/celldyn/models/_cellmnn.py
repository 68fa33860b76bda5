"""Cell-MNN model (von Bassewitz et al. 2025): locally linear latent ODE on scvi-tools."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData
from lightning.pytorch import Callback, LightningDataModule
from scipy.interpolate import CubicSpline
from scvi import REGISTRY_KEYS
from scvi.data.fields import CategoricalObsField, ObsmField
from scvi.model.base import BaseModelClass
from torch.utils.data import DataLoader

from .. import _keys
from .._compat import registered, setup_args, state_registry
from .._docs import fill_doc
from .._readers import TimeGroups, check_time_range, read_loadings, read_numeric_times
from .._validate import (
    check_adata,
    check_int,
    check_obs_key,
    check_positive,
    get_rep,
)
from ..module._cellmnn import MEAN_PATH_POINTS, CellMNNModule
from ..nn import SolverDivergedError
from ..nn._operator_mlp import propagate
from ._inference import batched, check_indices
from ._responses import PerturbationResponses, gene_positions, linear_drift_responses
from ._results import FitResults
from ._training import TrainingMixin, lightning_options

_REP_KEY = "rep"
INTERACTION_KINDS = ("operator", "expression_scaled")
"""Kinds of gene interactions of :meth:`CellMNN.get_interactions`."""
INTERNAL_SCALES = ("component", "common")
"""Internal scalings of the latent state accepted by :class:`CellMNN` (``internal_scale``)."""


def check_inputs(
    adata: AnnData, *, time_key: str, rep: str, n_components: int, batch_key: str | None
) -> TimeGroups:
    """Check what Cell-MNN reads from ``adata``; return the time groups.

    Raises a :class:`KeyError` or :class:`ValueError` naming the missing or bad entry: the
    numeric times ``obs[time_key]`` (at least 3), the finite ``obsm[rep]`` with at least
    ``n_components`` columns, the complete ``obs[batch_key]``.
    """
    check_adata(adata)
    groups = read_numeric_times(adata, time_key)
    if rep == "X" or rep not in adata.obsm:
        raise KeyError(
            f"adata.obsm has no representation {rep!r}. Available: {list(adata.obsm)}. "
            "Run `sc.pp.pca` first or pass another `rep`."
        )
    get_rep(adata, rep, min_dims=int(n_components))
    if batch_key is not None:
        check_obs_key(adata, batch_key)
        if adata.obs[batch_key].isna().any():
            raise ValueError(f"adata.obs[{batch_key!r}] has missing values.")
    return groups


def latent_scale(z: np.ndarray, kind: str) -> np.ndarray:
    """Divisor of each latent component that gives the internal units of :class:`CellMNN`.

    Parameters
    ----------
    z
        Latent states ``(n_cells, d)``.
    kind
        ``'component'``: each component's own standard deviation ``s_i`` (whitening: every
        component weighs the same in the loss). ``'common'``: one number for all components,
        the root mean square of the ``s_i`` (the geometry of ``z`` is kept, so large
        components weigh more, as in a Wasserstein distance on ``z``).

    Returns
    -------
    Array ``(d,)`` of positive scales.
    """
    if kind not in INTERNAL_SCALES:
        raise ValueError(f"`internal_scale` must be one of {INTERNAL_SCALES}, got {kind!r}.")
    sd = z.std(0) + 1e-8
    if kind == "common":
        return np.full_like(sd, np.sqrt(np.mean(np.square(sd))))
    return sd


def _find_time(groups: TimeGroups, value: float, name: str) -> int:
    hits = np.flatnonzero(np.isclose(groups.values, float(value)))
    if len(hits) == 0:
        raise ValueError(
            f"`{name}`={value!r} is not an observed time; observed: {groups.values.tolist()}."
        )
    return int(hits[0])


def expression_moments(operators: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Mean over cells of ``A_c[p, q] · z_c[r]``: shape ``(d, d, d)``, indexed ``[p, q, r]``."""
    return np.einsum("cpq,cr->pqr", operators, z) / len(z)


def expression_scaled_interactions(loadings: np.ndarray, moments: np.ndarray) -> np.ndarray:
    """Mean expression-scaled weights ``w_{j→i}``, regulator ``j`` (row) × target ``i`` (column).

    ``mean_c (V A_c Vᵀ)[i, j] (V z_c)[j] = Σ_pqr V[i, p] V[j, q] V[j, r] moments[p, q, r]``
    with ``moments`` from :func:`expression_moments`; never builds a genes × genes × cells
    array.
    """
    per_regulator = np.einsum("jq,jr,pqr->jp", loadings, loadings, moments)
    return per_regulator @ loadings.T


DEFAULT_STEPS = 1000
"""Minibatches the default :meth:`CellMNN.train` aims at."""
DEFAULT_MAX_EPOCHS = 200
"""Most epochs of the default :meth:`CellMNN.train` (small data sets)."""


def _interaction_matrix(
    operators: np.ndarray, z: np.ndarray | None, loadings: np.ndarray, kind: str
) -> np.ndarray:
    """Gene interactions (regulator × target) of cells' operators, ``rep`` coordinates.

    ``kind='operator'``: ``V Āᵀ Vᵀ`` of the mean operator; ``'expression_scaled'``: the mean
    of the expression-scaled weights of the cells with states ``z``
    (:meth:`CellMNN.get_interactions`).
    """
    if kind == "operator":
        return loadings @ operators.mean(0).T @ loadings.T
    return expression_scaled_interactions(loadings, expression_moments(operators, z))


def default_max_epochs(n_start_cells: int, batch_size: int) -> int:
    """Epochs for about :data:`DEFAULT_STEPS` minibatches, at most :data:`DEFAULT_MAX_EPOCHS`.

    Parameters
    ----------
    n_start_cells
        Training start cells (one pass over them is an epoch).
    batch_size
        Start cells per minibatch.
    """
    per_epoch = int(np.ceil(n_start_cells / min(batch_size, n_start_cells)))
    return int(min(DEFAULT_MAX_EPOCHS, np.ceil(DEFAULT_STEPS / per_epoch)))


class _SnapshotDataModule(LightningDataModule):
    """Minibatches of start cells plus observed partner cells at every training time.

    Cells of every training time (and condition) are split into a training and a validation
    part (``validation_size``); validation start cells are compared with validation partners
    only, so model selection never sees the held-out times nor the training cells. With
    ``mean_path_points``, every minibatch also holds the natural cubic spline through the
    means of the training times of each condition (all their cells) at that many times
    strictly inside each interval between consecutive training times (``path_times``,
    ``path_means``, indexed by the interval's start time; see
    :func:`~celldyn.module._cellmnn.mean_path_error`).
    """

    def __init__(
        self,
        z: np.ndarray,
        codes: np.ndarray,
        condition: np.ndarray,
        times: np.ndarray,
        train_groups: np.ndarray,
        *,
        batch_size: int,
        n_partners: int,
        validation_size: float,
        random_state: int,
        mean_path_points: int = 0,
    ):
        super().__init__()
        n_cond, n_groups = int(condition.max()) + 1, len(times)
        self.z = torch.as_tensor(z, dtype=torch.float32)
        self.t = torch.as_tensor(times[codes], dtype=torch.float32)
        self.codes, self.condition = torch.as_tensor(codes), torch.as_tensor(condition)
        self.times = torch.as_tensor(times, dtype=torch.float32)
        self.batch_size, self.n_partners = batch_size, n_partners
        rng = np.random.default_rng(random_state)
        self._partner_seed = int(rng.integers(2**32))
        self._rng = np.random.default_rng(self._partner_seed)
        self.rank = torch.full((n_cond, n_groups), -1, dtype=torch.long)
        pools = {"train": {}, "val": {}}
        starts = {"train": [], "val": []}
        for c in range(n_cond):
            present = [
                g for g in np.flatnonzero(train_groups) if np.any((codes == g) & (condition == c))
            ]
            self.rank[c, present] = torch.arange(len(present))
            for g in present:
                cells = rng.permutation(np.flatnonzero((codes == g) & (condition == c)))
                n_val = min(int(round(validation_size * len(cells))), len(cells) - 1)
                split = {"val": np.sort(cells[:n_val]), "train": np.sort(cells[n_val:])}
                for part, idx in split.items():
                    if len(idx):
                        pools[part][c, g] = idx
                        if g != present[-1]:
                            starts[part].append(idx)
        self.pools = pools
        self.path = None
        if mean_path_points:
            self.path = self._mean_path(z, codes, condition, times, mean_path_points)
        self.train_idx, self.val_idx = (
            np.sort(np.concatenate(starts[p])) if starts[p] else np.zeros(0, dtype=np.int64)
            for p in ("train", "val")
        )
        self.n_train, self.n_val = len(self.train_idx), len(self.val_idx)
        if self.n_train == 0:
            raise ValueError("No training cells have a later training time to be compared with.")
        self._val_batches = [
            self._collate(self.val_idx[s : s + batch_size], "val", rng)
            for s in range(0, self.n_val, batch_size)
        ]

    def _mean_path(self, z, codes, condition, times, n_points: int) -> dict:
        """Spline of the training times' means at ``n_points`` times inside every interval."""
        n_cond, n_groups = self.rank.shape
        path_times = torch.zeros(n_cond, n_groups, n_points)
        path_means = torch.zeros(n_cond, n_groups, n_points, z.shape[1])
        inside = np.arange(1, n_points + 1) / (n_points + 1)
        for c in range(n_cond):
            present = np.flatnonzero(self.rank[c].numpy() >= 0)
            if len(present) < 2:
                continue
            means = [z[(codes == g) & (condition == c)].mean(0) for g in present]
            spline = CubicSpline(times[present], np.stack(means), bc_type="natural")
            for s, g in zip(present[:-1], present[1:], strict=True):
                grid = times[s] + inside * (times[g] - times[s])
                path_times[c, s] = torch.as_tensor(grid)
                path_means[c, s] = torch.as_tensor(spline(grid))
        return {"path_times": path_times, "path_means": path_means}

    def _collate(self, indices, part: str, rng: np.random.Generator) -> dict:
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        n_cond, n_groups = self.rank.shape
        partners = torch.zeros(n_cond, n_groups, self.n_partners, self.z.shape[1])
        available = torch.zeros(n_cond, n_groups, dtype=torch.bool)
        for (c, g), pool in self.pools[part].items():
            partners[c, g] = self.z[rng.choice(pool, self.n_partners, replace=True)]
            available[c, g] = True
        return {
            "z": self.z[idx],
            "t": self.t[idx],
            "group": self.codes[idx],
            "condition": self.condition[idx],
            "partners": partners,
            "partner_times": self.times,
            "rank": self.rank,
            "available": available,
            **(self.path or {}),
        }

    def setup(self, stage: str) -> None:
        """Under DDP, draw other partners on every process (the rank joins the seed)."""
        rank = 0 if self.trainer is None else self.trainer.global_rank
        if rank:
            self._rng = np.random.default_rng([self._partner_seed, rank])

    def train_dataloader(self) -> DataLoader:
        """Shuffled start cells; partners are drawn afresh for every minibatch."""
        return DataLoader(
            self.train_idx,
            batch_size=min(self.batch_size, self.n_train),
            shuffle=True,
            collate_fn=lambda idx: self._collate(idx, "train", self._rng),
        )

    def val_dataloader(self) -> DataLoader | list:
        """Return the fixed validation minibatches (same partners every epoch)."""
        if self.n_val == 0:
            return []
        return DataLoader(self._val_batches, batch_size=None)


def averaging_weight(decay: float, steps: int) -> float:
    """Weight ``max(1 − decay, 9 / (10 + n))`` of the new weights after ``n`` steps.

    The moving average of :class:`_WeightAverage` (``CellMNN.train(weight_averaging=decay)``).
    While ``9 / (10 + n)`` is the larger (the first ``(10 decay − 1) / (1 − decay)`` steps,
    890 at 0.99) it weighs step ``k`` of ``n`` by about ``(k / n)⁸``, mostly the last fifth
    of the steps so far; after that it is an exponential moving average with ``decay``.
    """
    return 1.0 - min(decay, (1 + steps) / (10 + steps))


class _WeightAverage(Callback):
    """Moving average of the module's parameters, validated and returned.

    After every training step ``w̄ ← w̄ + a (w − w̄)`` with ``a`` from
    :func:`averaging_weight`. Validation runs with ``w̄`` swapped in, and the fit ends with
    ``w̄`` in the module (then :class:`_ValidationSelection` may restore an earlier average).
    Not Lightning's ``WeightAveraging``: it needs lightning >= 2.5 (celldyn supports 2.0) and
    keeps no averaged state for the selection to restore.

    Parameters
    ----------
    decay
        ``decay`` of :func:`averaging_weight`, in ``(0, 1)``.
    """

    def __init__(self, decay: float):
        self.decay, self.steps = decay, 0
        self.average: dict[str, torch.Tensor] | None = None
        self._raw: dict[str, torch.Tensor] | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        params = pl_module.module.named_parameters()
        self.average = {name: p.detach().clone() for name, p in params}

    @torch.no_grad()
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps += 1
        weight = averaging_weight(self.decay, self.steps)
        for name, p in pl_module.module.named_parameters():
            self.average[name].lerp_(p.detach(), weight)

    def averaged_state(self, module) -> dict[str, torch.Tensor]:
        """Return a copy of ``module.state_dict()`` with the averaged parameters."""
        return {k: self.average.get(k, v).detach().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def _load(self, module, values: dict[str, torch.Tensor]) -> None:
        for name, p in module.named_parameters():
            p.copy_(values[name])

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if self.average is not None:  # not during Lightning's sanity check
            module = pl_module.module
            self._raw = {name: p.detach().clone() for name, p in module.named_parameters()}
            self._load(module, self.average)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if self._raw is not None:
            self._load(pl_module.module, self._raw)
            self._raw = None

    def on_train_end(self, trainer, pl_module) -> None:
        if self.average is not None:
            self._load(pl_module.module, self.average)


class _ValidationSelection(Callback):
    """Early stopping and choice of the returned weights on a smoothed validation loss.

    The monitor is the exponential moving average ``m_e = β m_{e-1} + (1 - β) v_e`` of the
    validation loss ``v_e`` of epoch ``e`` (``β = smoothing``; ``0``: the raw loss). It is
    the ``selection`` of ``TrainingMixin._fit``, which then adds no early stopping of its
    own (a comment there says why this is not Lightning's).

    Parameters
    ----------
    smoothing
        ``β`` in ``[0, 1)``.
    patience
        Stop when the monitor has not improved for that many epochs (``None``: never).
    restore
        Keep the module state of the epoch with the lowest monitor and restore it at the end.
    average
        With weight averaging, the :class:`_WeightAverage` whose averaged state was validated
        and is kept (it runs before this callback).
    """

    def __init__(
        self,
        smoothing: float,
        patience: int | None,
        restore: bool,
        average: _WeightAverage | None = None,
    ):
        self.smoothing, self.patience, self.restore = smoothing, patience, restore
        self.average = average
        self.best, self.since_best, self.state = float("inf"), 0, None
        self.monitor: list[float] = []

    def on_validation_end(self, trainer, pl_module) -> None:
        value = trainer.callback_metrics.get("validation_loss")
        if trainer.sanity_checking or value is None:
            return
        value = float(value)
        if self.monitor:
            value = self.smoothing * self.monitor[-1] + (1 - self.smoothing) * value
        self.monitor.append(value)
        if value < self.best:  # False for NaN: a diverging epoch is never kept
            self.best, self.since_best = value, 0
            if self.restore:
                module = pl_module.module
                if self.average is not None:
                    self.state = self.average.averaged_state(module)
                else:
                    self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            self.since_best += 1
            if self.patience is not None and self.since_best >= self.patience:
                trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        if self.state is not None:
            pl_module.module.load_state_dict(self.state)


class CellMNN(TrainingMixin, BaseModelClass):
    """Cell-MNN: a locally linear latent ODE learned from time-course snapshots.

    An MLP maps a cell's latent state ``z`` (the first ``n_components`` columns of
    ``obsm[rep]``), its time ``t`` and optionally its dataset (``batch_key``) to a local
    operator ``A`` and (``affine``, the default) a constant drift ``b``; the cell moves along
    ``dz/dt = A z + b``, solved in closed form (``z(t') = expm(A (t' - t)) z`` when
    ``affine=False``). Training matches pushed and observed cell populations by MMD
    (Laplace and Gaussian kernels) at every later training time, without optimal transport
    (von Bassewitz et al., arXiv:2510.02903).

    Operators are reported in the coordinates of ``obsm[rep]`` and per unit of
    ``obs[time_key]``, column-vector convention: ``A[i, j]`` is the effect of component
    ``j`` on ``dz_i/dt``. Internally ``z`` is divided by a scale ``s`` (``internal_scale``;
    by default one number for all components; no centering: the origin of ``rep`` is
    the fixed point of every linear map; PCA coordinates are centred), so
    ``A = S A_int S⁻¹ / t_scale`` with ``S = diag(s)``.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    n_hidden, n_layers
        Width and depth of the operator MLP.
    parametrization
        ``'direct'`` (MLP outputs ``A``) or ``'eigen'`` (``A = P diag(λ) P⁻¹``, real ``λ``).
    n_zero_eigenvalues
        ``'eigen'`` only: eigenvalues fixed at 0.
    max_rate
        Operator bound in internal units (observed time range = 1): ``‖A_int‖_F < max_rate``
        (``'direct'``) or ``|λ| < max_rate`` (``'eigen'``). Pushing a cell across the whole
        observed range grows it at most ``exp(max_rate)``-fold (times ``cond(P)`` for
        ``'eigen'``), so predictions stay finite.
    gamma
        Weight ``gamma**(k - 1)`` of the MMD to the time ``k`` training times ahead.
    lambda_kinetic
        Weight of the kinetic energy ``‖A z‖²`` (internal units).
    lambda_invertibility
        Weight of the invertibility penalty of ``P`` (``'eigen'`` only).
    lambda_marginal
        Weight of a second discrepancy added to every MMD term: the mean over components of
        the energy distances of the 1-D marginals (internal units;
        see :class:`~celldyn.module.CellMNNModule`). The MMD's bandwidth follows the
        distances between whole states, so it barely sees the spread of small components;
        this term matches every component's distribution, small ones included (``0``: off).
        It can match the marginals at the expense of the joint dynamics, so it is not the
        default (measurements in the Cell-MNN user guide and benchmarks/README.md).
    lambda_mean_path
        Weight of a term that asks the mean of the pushed cells at 8 times
        (``MEAN_PATH_POINTS`` of :mod:`celldyn.module._cellmnn`) strictly inside every
        interval between consecutive training times to follow the natural cubic spline
        through the means of the training times (per dataset, held-out times excluded; a
        straight line with two training times): the mean over components of the squared
        distance in internal units, where a component's variance averages 1, so the weight
        is unit-free (``0``: off). Not the default: it helps on the embryoid body and loses
        on simulated time courses (benchmarks/README.md, "EB: a mean-path term", "EB and
        dyngen").
    init_scale
        Scale of the MLP's output layer at initialisation (``A`` starts near 0).
    affine
        Cells move along ``dz/dt = A z + b`` with a per-cell constant drift ``b`` output by
        the same MLP (``‖b‖ < max_rate`` in internal units), instead of ``dz/dt = A z``,
        whose flows all keep the origin of ``rep`` fixed. :meth:`get_operators` and the
        interactions report ``A``; the velocities include ``b``.
    internal_scale
        How ``z`` is scaled for the MLP and the loss (:func:`latent_scale`): ``'common'``
        (default) divides all components by one number (the root mean square of their
        standard deviations), so a component counts in proportion to its spread, as in a
        Wasserstein distance on ``rep``; ``'component'`` divides each by its own standard
        deviation (whitening, the paper's choice: all components weigh the same in the MMD,
        so with many components, e.g. 50 PCs, small ones outweigh the large ones).
    """

    interaction_kinds = INTERACTION_KINDS
    """Kinds of gene interactions of :meth:`get_interactions` and :meth:`results`."""

    def __init__(
        self,
        adata: AnnData,
        *,
        n_hidden: int = 64,
        n_layers: int = 3,
        parametrization: str = "direct",
        n_zero_eigenvalues: int = 0,
        max_rate: float = 10.0,
        gamma: float = 0.7,
        lambda_kinetic: float = 1e-3,
        lambda_invertibility: float = 0.01,
        lambda_marginal: float = 0.0,
        lambda_mean_path: float = 0.0,
        init_scale: float = 0.01,
        affine: bool = True,
        internal_scale: str = "common",
    ):
        super().__init__(adata)
        self.internal_scale = internal_scale  # checked by `latent_scale` in `_set_units`
        args = self.adata_manager.registry["setup_args"]
        self.time_key, self.n_components = args["time_key"], int(args["n_components"])
        n_batch = self.summary_stats.n_batch
        check_positive(max_rate, "max_rate")
        self.module = CellMNNModule(
            self.n_components,
            n_conditions=n_batch if n_batch > 1 else 0,
            gamma=gamma,
            lambda_kinetic=lambda_kinetic,
            lambda_invertibility=lambda_invertibility,
            lambda_marginal=lambda_marginal,
            lambda_mean_path=lambda_mean_path,
            n_hidden=n_hidden,
            n_layers=n_layers,
            parametrization=parametrization,
            n_zero_eigenvalues=n_zero_eigenvalues,
            max_rate=max_rate,
            init_scale=init_scale,
            affine=affine,
        )
        # the time groups of the training data, read once (see `_time_groups`)
        self._groups_read = (adata, read_numeric_times(adata, self.time_key))
        values = self._groups_read[1].values
        self._set_units(self._latent(adata), values[0], values[-1] - values[0])
        self.holdout_: list[float] = []
        self._model_summary_string = (
            f"CellMNN: {self.n_components} latent dims, {parametrization} operator, "
            f"{n_batch} condition(s)"
        )
        self.init_params_ = self._get_init_params(locals())

    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        *,
        time_key: str,
        rep: str = "X_pca",
        n_components: int = 5,
        batch_key: str | None = None,
        **kwargs,
    ) -> None:
        """Register ``adata`` for Cell-MNN.

        Parameters
        ----------
        adata
            Annotated data matrix.
        time_key
            Numeric column of ``adata.obs`` (at least 3 distinct times).
        rep
            Key of ``adata.obsm``; its first ``n_components`` columns are the latent state.
        n_components
            Latent dimension.
        batch_key
            Column of ``adata.obs`` with the dataset of each cell; one model then covers all
            datasets (the operator MLP is conditioned on the dataset).
        **kwargs
            Passed to :meth:`~scvi.data.AnnDataManager.register_fields` (used by ``load``).
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        check_adata(adata)
        if isinstance(n_components, bool) or int(n_components) != n_components:
            raise ValueError(f"`n_components` must be a positive integer, got {n_components!r}.")
        check_positive(n_components, "n_components")
        check_inputs(
            adata, time_key=time_key, rep=rep, n_components=n_components, batch_key=batch_key
        )
        fields = [ObsmField(_REP_KEY, rep), CategoricalObsField(REGISTRY_KEYS.BATCH_KEY, batch_key)]
        cls._register_fields(adata, fields, setup_method_args, **kwargs)

    # ------------------------------------------------------------------ data access
    def _set_units(self, z: np.ndarray, t_origin: float, t_scale: float) -> None:
        """Set the internal units from the states ``z`` (``internal_scale``) and time range."""
        scale = latent_scale(z, self.internal_scale)
        self.module.set_units(scale, z.mean(0) / scale, t_origin, t_scale)

    def _latent(self, adata: AnnData) -> np.ndarray:
        manager = self.get_anndata_manager(adata, required=True)
        z = np.asarray(manager.get_from_registry(_REP_KEY), dtype=np.float64)
        return z[:, : self.n_components]

    def _check_adata(self, adata: AnnData) -> None:
        """Check an AnnData for a getter before it is registered (:func:`check_inputs`).

        Its ``obsm[rep]`` must have as many columns as at setup and its ``obs[batch_key]``
        only the datasets the model was set up with.
        """
        args = setup_args(self)
        keys = ("time_key", "rep", "n_components", "batch_key")
        check_inputs(adata, **{k: args[k] for k in keys})
        rep, n_columns = args["rep"], len(state_registry(self, _REP_KEY)["column_names"])
        if adata.obsm[rep].shape[1] != n_columns:
            raise ValueError(
                f"adata.obsm[{rep!r}] has {adata.obsm[rep].shape[1]} columns; the model was "
                f"set up with {n_columns}."
            )
        batch_key = args["batch_key"]
        if batch_key is not None:
            known = state_registry(self, REGISTRY_KEYS.BATCH_KEY)["categorical_mapping"]
            unknown = sorted(set(adata.obs[batch_key].astype(str)) - set(map(str, known)))
            if unknown:
                raise ValueError(
                    f"adata.obs[{batch_key!r}] has datasets {unknown[:5]} the model was not set "
                    f"up with; known: {list(map(str, known))[:10]}."
                )

    def _time_groups(self, adata: AnnData) -> TimeGroups:
        """Time groups of a registered ``adata``; those of the training data are read once.

        The training AnnData is not changed in place (as everywhere in scvi-tools); any other
        object, a new ``model.adata`` included, is read at every call.
        """
        read_from, groups = self._groups_read
        return groups if adata is read_from else read_numeric_times(adata, self.time_key)

    def _inputs(self, adata: AnnData | None):
        """Return internal states, internal times, conditions and time groups of all cells."""
        adata = self._validate_anndata(adata)
        manager = self.get_anndata_manager(adata, required=True)
        groups = self._time_groups(adata)
        z = self._latent(adata) / self.module.z_scale.cpu().numpy()
        t = (groups.values[groups.codes] - float(self.module.t_origin)) / float(self.module.t_scale)
        condition = np.asarray(manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY)).ravel()
        return z, t, condition.astype(np.int64), groups

    def _internal_operators(
        self, z, t, condition, batch_size: int | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Return internal operators ``(n, d, d)`` and drifts ``(n, d)`` (``None``: not affine)."""
        self.module.eval()

        def operator(zb, tb, cb):
            out = self.module.operator(zb.float(), tb.float(), cb)
            return out.matrix, out.drift

        matrix, drift = batched(
            operator, z, t, condition, device=self.device, batch_size=batch_size
        )
        drift = None if drift is None else drift.astype(np.float64)
        return matrix.astype(np.float64), drift

    def _dynamics(
        self, adata: AnnData | None, cells=slice(None), batch_size: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Operators ``(n, d, d)`` and drifts ``(n, d)`` of ``cells`` in one pass of the MLP.

        In ``rep`` coordinates per unit time; drifts are 0 without ``affine``. ``adata``
        must be registered (``None``: the training data).
        """
        z, t, condition, _ = self._inputs(adata)
        z, t, condition = z[cells], t[cells], condition[cells]
        matrix, drift = self._internal_operators(z, t, condition, batch_size)
        if drift is None:
            drift = np.zeros_like(z)
        else:
            drift = drift * self.module.z_scale.cpu().numpy() / float(self.module.t_scale)
        return self._to_rep(matrix), drift

    def _to_rep(self, internal: np.ndarray) -> np.ndarray:
        """Convert internal operators ``(n, d, d)`` to ``rep`` coordinates per unit time."""
        s = self.module.z_scale.cpu().numpy().astype(np.float64)
        return s[:, None] * internal / s[None, :] / float(self.module.t_scale)

    # ------------------------------------------------------------------ training
    @fill_doc
    def train(
        self,
        holdout: float | Sequence[float] | None = None,
        *,
        max_epochs: int | None = None,
        batch_size: int = 256,
        n_partners: int | None = None,
        lr: float = 1e-2,
        weight_decay: float = 1e-5,
        validation_size: float = 0.1,
        restore_best: bool = True,
        validation_smoothing: float = 0.9,
        weight_averaging: float = 0.99,
        random_state: int = 0,
        **lightning_kwargs,
    ) -> None:
        """Train with Lightning, leaving the ``holdout`` times out entirely.

        Each minibatch holds ``batch_size`` start cells (all training times but the last)
        and ``n_partners`` observed cells of every training time (and condition). A fraction
        ``validation_size`` of the cells of every training time is kept for validation
        (start cells and partners); its moving average over epochs
        (``validation_smoothing``) drives early stopping and, with ``restore_best``, the
        choice of the returned weights; the held-out times are never looked at.

        Parameters
        ----------
        holdout
            Observed time(s) to leave out (e.g. to test interpolation with :meth:`predict`).
        max_epochs
            Maximum number of passes over the start cells; ``None``: enough passes for
            about :data:`DEFAULT_STEPS` minibatches, at most :data:`DEFAULT_MAX_EPOCHS`
            (:func:`default_max_epochs`), so a large data set does not train longer than a
            small one (benchmarks/README.md, "EB: fewer epochs").
        batch_size
            Number of start cells per minibatch (per process under DDP, ``strategy='ddp'``).
        n_partners
            Observed cells per time and minibatch (default ``batch_size``).
        lr, weight_decay
            Adam learning rate and weight decay.
        validation_size
            Fraction of the cells of every training time used for validation.
        restore_best
            Restore the weights of the epoch with the lowest smoothed validation loss.
        validation_smoothing
            ``β`` in ``[0, 1)`` of the exponential moving average ``m_e = β m_{e-1} +
            (1 - β) v_e`` of the validation loss ``v_e`` that early stopping and
            ``restore_best`` monitor (``0``: the raw loss). The validation loss holds few
            cells (10 % of every time) and jumps between epochs by about as much as it
            improves over 10–20 epochs; the average follows the trend. Logged as
            ``history['validation_loss_smoothed']``. Cell-MNN's early stopping
            (``early_stopping=True``) watches this average, with
            ``early_stopping_patience=20`` epochs by default.
        weight_averaging
            Decay ``d`` in ``[0, 1)`` of a moving average of the weights over the training
            steps, ``w̄ ← w̄ + a (w − w̄)`` with ``a = max(1 − d, 9 / (10 + n))`` after ``n``
            steps; validation, early stopping, ``restore_best`` and the returned model use
            ``w̄``. For the first ``(10 d − 1) / (1 − d)`` steps (890 at 0.99; a default fit
            takes about 1,000) this averages mostly the last fifth of the steps so far, then
            it is an exponential moving average with decay ``d``: values above about 0.99
            change little. The weights after one step jump around, and so do the
            interpolations they predict (benchmarks/README.md, "EB: averaged weights");
            ``0``: no averaging.
        random_state
            Seed of the validation split and of the partner sampling.
        {lightning_kwargs}
        """
        options = lightning_options(lightning_kwargs, early_stopping_patience=20)
        groups = self._time_groups(self.adata)
        holdout = [] if holdout is None else np.atleast_1d(np.asarray(holdout, dtype=float))
        held = [_find_time(groups, h, "holdout") for h in holdout]
        train_groups = np.ones(groups.n_groups, dtype=bool)
        train_groups[held] = False
        if train_groups.sum() < 2:
            raise ValueError("At least 2 observed times must remain for training after `holdout`.")
        check_positive(batch_size, "batch_size")
        if not 0.0 <= validation_size < 1.0:
            raise ValueError(f"`validation_size` must be in [0, 1), got {validation_size}.")
        if not 0.0 <= validation_smoothing < 1.0:
            raise ValueError(
                f"`validation_smoothing` must be in [0, 1), got {validation_smoothing!r}."
            )
        if not 0.0 <= weight_averaging < 1.0:
            raise ValueError(f"`weight_averaging` must be in [0, 1), got {weight_averaging!r}.")
        in_train = train_groups[groups.codes]
        self._set_units(
            self._latent(self.adata)[in_train],
            float(self.module.t_origin),
            float(self.module.t_scale),
        )
        z, t, condition, _ = self._inputs(self.adata)
        times = (groups.values - float(self.module.t_origin)) / float(self.module.t_scale)
        datamodule = _SnapshotDataModule(
            z,
            groups.codes,
            condition,
            times,
            train_groups,
            batch_size=int(batch_size),
            n_partners=int(n_partners or batch_size),
            validation_size=validation_size,
            random_state=random_state,
            mean_path_points=MEAN_PATH_POINTS if self.module.lambda_mean_path else 0,
        )
        average = _WeightAverage(weight_averaging) if weight_averaging > 0 else None
        selection = None  # without a validation split `_fit` refuses early stopping
        if datamodule.n_val > 0:
            patience = options["early_stopping_patience"]
            patience = check_int(patience, "early_stopping_patience", 1)
            selection = _ValidationSelection(
                validation_smoothing,
                patience if options["early_stopping"] else None,
                restore_best,
                average,
            )
        if max_epochs is None:
            max_epochs = default_max_epochs(datamodule.n_train, int(batch_size))
        self._fit(
            datamodule,
            max_epochs=max_epochs,
            lr=lr,
            weight_decay=weight_decay,
            model_callbacks=[] if average is None else [average],
            selection=selection,
            **options,
        )
        if selection is not None:
            self.history_["validation_loss_smoothed"] = pd.DataFrame(
                {"validation_loss_smoothed": selection.monitor},
                index=pd.Index(range(len(selection.monitor)), name="epoch"),
            )
        self.holdout_ = groups.values[held].tolist()

    # ------------------------------------------------------------------ getters
    @torch.no_grad()
    @fill_doc
    def predict(self, time_from: float, time_to: float, adata: AnnData | None = None) -> np.ndarray:
        """Push every cell observed at ``time_from`` to ``time_to``.

        Parameters
        ----------
        time_from
            An observed time.
        time_to
            Any time (earlier times integrate backwards).
        {getter_adata}

        Returns
        -------
        Array ``(n_cells_at_time_from, n_components)`` in the coordinates of ``obsm[rep]``.
        """
        if not np.isfinite(float(time_to)):
            raise ValueError(f"`time_to` must be finite, got {time_to!r}.")
        with registered(self, adata, self._check_adata) as adata:
            z, t, condition, groups = self._inputs(adata)
            cells = groups.codes == _find_time(groups, time_from, "time_from")
            matrix, drift = self._internal_operators(z[cells], t[cells], condition[cells])
            dt = (float(time_to) - float(time_from)) / float(self.module.t_scale)
            pushed = propagate(
                torch.as_tensor(matrix),
                torch.as_tensor(z[cells]),
                torch.full((int(cells.sum()), 1), dt, dtype=torch.float64),
                None if drift is None else torch.as_tensor(drift),
            )[:, 0].numpy()
            if not np.all(np.isfinite(pushed)):
                raise SolverDivergedError(
                    f"Pushing cells from {time_from} to {time_to} produced NaN or infinite states."
                )
        return pushed * self.module.z_scale.cpu().numpy()

    @fill_doc
    def get_operators(
        self,
        adata: AnnData | None = None,
        *,
        time_range: Sequence[float] | None = None,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Local operator of every cell, in ``obsm[rep]`` coordinates per unit time.

        Parameters
        ----------
        {getter_adata}
        time_range
            ``(lo, hi)``: only cells with ``lo <= time <= hi``.
        indices
            Cells of ``adata`` to return (positions or a boolean mask; default all); with
            ``time_range``, those of them in the range, in the order of ``indices``.
        {batch_size}

        Returns
        -------
        Array ``(n_cells, d, d)``; ``A[c, i, j]`` is the effect of component ``j`` on
        ``dz_i/dt`` of cell ``c``.
        """
        with registered(self, adata, self._check_adata) as adata:
            z, t, condition, groups = self._inputs(adata)
            in_range = check_time_range(groups, time_range)
            cells = np.arange(adata.n_obs)[check_indices(indices, adata.n_obs)]
            cells = cells[in_range[cells]]
            matrix = self._internal_operators(z[cells], t[cells], condition[cells], batch_size)
        return self._to_rep(matrix[0])

    @fill_doc
    def get_drift(
        self,
        adata: AnnData | None = None,
        *,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Constant drift ``b`` of every cell, ``(n_cells, d)``, in ``obsm[rep]`` units per time.

        Zero for a model with ``affine=False``.

        Parameters
        ----------
        {getter_adata}
        {indices}
        {batch_size}
        """
        with registered(self, adata, self._check_adata) as adata:
            return self._dynamics(adata, check_indices(indices, adata.n_obs), batch_size)[1]

    @fill_doc
    def get_latent_velocity(
        self,
        adata: AnnData | None = None,
        *,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Velocity ``A z + b`` of every cell, ``(n_cells, d)``, in ``obsm[rep]`` units per time.

        ``b`` is the drift (:meth:`get_drift`; 0 without ``affine``).

        Parameters
        ----------
        {getter_adata}
        {indices}
        {batch_size}
        """
        with registered(self, adata, self._check_adata) as adata:
            cells = check_indices(indices, adata.n_obs)
            operators, drift = self._dynamics(adata, cells, batch_size)
            return np.einsum("cij,cj->ci", operators, self._latent(adata)[cells]) + drift

    def _loadings(self, adata: AnnData | None, loadings: str) -> np.ndarray:
        """Return the checked loadings of ``rep`` in ``adata`` (``None``: the training data)."""
        adata = self.adata if adata is None else check_adata(adata)
        return read_loadings(adata, loadings, self.n_components)

    @fill_doc
    def get_gene_velocity(
        self,
        adata: AnnData | None = None,
        *,
        loadings: str = "PCs",
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Latent velocity decoded to genes with linear loadings: ``v_genes = v_rep · Vᵀ``.

        Parameters
        ----------
        {getter_adata}
        loadings
            Key of ``adata.varm`` with the loadings ``V`` (genes × components) of ``rep``.
        {indices}
        {batch_size}

        Returns
        -------
        Array ``(n_cells, n_genes)``; 0 for genes with zero loadings.
        """
        v = self._loadings(adata, loadings)  # checked before anything is registered
        velocity = self.get_latent_velocity(adata, indices=indices, batch_size=batch_size)
        return velocity @ v.T

    @fill_doc
    def get_interactions(
        self,
        adata: AnnData | None = None,
        *,
        time_range: Sequence[float] | None = None,
        loadings: str = "PCs",
        kind: str = "operator",
    ) -> pd.DataFrame:
        """Gene-gene interactions, regulator (row) × target (column).

        With ``A_c`` the operator of cell ``c`` (``rep`` coordinates, per unit time) and ``V``
        the loadings, genes follow ``dx/dt ≈ V A_c Vᵀ x``. Over the cells in ``time_range``:

        - ``kind='operator'``: entry ``[j, i]`` is ``(V Ā Vᵀ)[i, j]`` for the mean operator
          ``Ā``, i.e. ``V Āᵀ Vᵀ = (V S Ā_int S⁻¹ Vᵀ)ᵀ / t_scale`` with the internal scaling
          ``S`` — the effect of a unit of gene ``j`` on the rate of gene ``i``.
        - ``kind='expression_scaled'``: entry ``[j, i]`` is the mean over cells of
          ``w_{j→i} = (V A_c Vᵀ)[i, j] · x_{c,j}`` with ``x_c = V z_c`` the cell's expression
          reconstructed from ``rep`` (relative to the gene means for PCA): the contribution
          of gene ``j``, at its expression in that cell, to the velocity of gene ``i``
          (von Bassewitz et al.). For orthonormal loadings the column ``i`` sums to the mean
          velocity of gene ``i`` without the drift ``b`` of an ``affine`` model.

        Parameters
        ----------
        {getter_adata}
        time_range
            ``(lo, hi)``: use the cells with ``lo <= time <= hi``.
        loadings
            Key of ``adata.varm`` with the loadings of ``rep``.
        kind
            ``'operator'`` or ``'expression_scaled'`` (see above).

        Returns
        -------
        DataFrame over the genes with non-zero loadings (rows regulators, columns targets).
        """
        if kind not in INTERACTION_KINDS:
            raise ValueError(f"`kind` must be one of {INTERACTION_KINDS}, got {kind!r}.")
        v = self._loadings(adata, loadings)
        with registered(self, adata, self._check_adata) as adata:
            operators = self.get_operators(adata, time_range=time_range)
            covered = np.any(v != 0, axis=1)
            z = None
            if kind == "expression_scaled":
                cells = check_time_range(self._time_groups(adata), time_range)
                z = self._latent(adata)[cells]
            matrix = _interaction_matrix(operators, z, v[covered], kind)
        names = adata.var_names[covered]
        return pd.DataFrame(matrix, index=names, columns=names)

    # ------------------------------------------------------------------ contract with tl
    def perturbation_responses(
        self,
        perturbations: Sequence[str] | None = None,
        *,
        strength: float = 0.1,
        loadings: str = "PCs",
    ) -> PerturbationResponses:
        r"""Responses of the mean gene-space drift to knockdowns, the inputs of CLIPR.

        The mean operator in gene space :math:`M` (the transpose of
        :meth:`get_interactions`) is the linear drift :math:`dx/dt = M (x - x^*)`; knocking
        down gene :math:`j` adds :math:`c_q = -\mathrm{strength}\,e_j`, so :math:`v_q = c_q`
        and :math:`l_q = -M^{+} c_q`. :math:`M` acts on the span of the loadings only, so
        the shifts span ``rank(M)`` dimensions (``min_rank``).

        Parameters
        ----------
        perturbations
            Genes knocked down, one perturbation each; default every gene.
        strength
            Size of the constant drift shift of a knockdown.
        loadings
            Key of ``adata.varm`` with the loadings of ``rep``.
        """
        genes = self.adata.var_names
        positions = gene_positions(genes, perturbations)
        labels = [str(genes[p]) for p in positions]
        interactions = self.get_interactions(loadings=loadings)  # regulator x target
        pos = genes.get_indexer(interactions.index)
        drift = np.zeros((len(genes), len(genes)))
        drift[np.ix_(pos, pos)] = interactions.to_numpy(np.float64).T
        velocities, shifts, rank = linear_drift_responses(drift, positions, strength=strength)
        return PerturbationResponses(
            labels, velocities, shifts, None, rank, {g: g for g in labels}, True
        )

    @classmethod
    def results(
        cls,
        models: Sequence[CellMNN],
        key_added: str,
        *,
        loadings: str | None = "PCs",
        interactions: str = "operator",
    ) -> FitResults:
        """Return what :func:`celldyn.tl.cellmnn` writes for a fitted model (one-element sequence).

        Per-cell operators, drifts and latent velocities (``obsm``); the mean operator of
        the cells of every range of consecutive times (``uns``); with ``loadings``, the gene
        velocity and the gene interactions of ``interactions`` kind over all cells
        (:meth:`get_interactions`). The operator MLP runs once over the cells.
        """
        (model,) = models
        d = model.n_components
        operators, drift = model._dynamics(None)
        z = model._latent(model.adata)
        latent_velocity = np.einsum("cij,cj->ci", operators, z) + drift
        groups = model._time_groups(model.adata)
        ranges = np.stack([groups.values[:-1], groups.values[1:]], axis=1)
        range_cells = [check_time_range(groups, r) for r in ranges]
        summary = {
            "kind": interactions,
            "time_ranges": ranges,
            "operators": np.stack([operators[cells].mean(0) for cells in range_cells]),
        }
        if interactions == "expression_scaled":
            summary["moments"] = np.stack(
                [expression_moments(operators[cells], z[cells]) for cells in range_cells]
            )
        obsm = {
            _keys.obsm.operator(key_added): operators.reshape(len(operators), d * d),
            _keys.obsm.drift(key_added): drift,
            _keys.obsm.latent_velocity(key_added): latent_velocity,
        }
        out = FitResults(
            {"obsm": {k: v.astype(np.float32) for k, v in obsm.items()}},
            uns={"interactions": summary},
        )
        if loadings is None:
            return out
        v = read_loadings(model.adata, loadings, d)
        covered = np.any(v != 0, axis=1)
        matrix = _interaction_matrix(operators, z, v[covered], interactions).astype(np.float32)
        n = model.adata.n_vars
        if covered.all():
            varp = matrix
        else:
            pos = np.flatnonzero(covered)
            block = sp.coo_matrix(matrix)
            varp = sp.csr_matrix((block.data, (pos[block.row], pos[block.col])), shape=(n, n))
        out.slots["varp"] = {_keys.varp.interactions(key_added): varp}
        out.velocity = (latent_velocity @ v.T).astype(np.float32)
        out.velocity[:, ~covered] = np.nan
        out.velocity_genes = covered
        return out
