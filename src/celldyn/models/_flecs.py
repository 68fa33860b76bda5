"""FLeCS model (Bertin et al.): a gene regulatory network ODE learned from cell trajectories."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
import scipy.sparse as sp
import torch
from anndata import AnnData
from scvi import REGISTRY_KEYS
from scvi.data.fields import LayerField
from scvi.model.base import BaseModelClass

from .. import _keys
from .._compat import registered, setup_args, state_registry
from .._docs import fill_doc
from .._readers import TimeGroups, read_prior, read_time_groups, read_trajectories
from .._validate import (
    check_adata,
    check_expression,
    check_in,
    check_int,
    check_layer,
    check_var_names,
    get_rep,
)
from ..module._flecs import (
    TRAIN_MAX_NUM_STEPS,
    FLeCSModule,
    fit_linear_blocks,
    fit_pairs,
    fit_velocities,
)
from ..module._moments import ColumnMoments
from ..nn import GRNVectorField, SolverDivergedError
from ..pp._ot_velocities import ot_partners
from ._cell_pairs import CellPairs
from ._data import TensorDataModule
from ._inference import batched, check_indices
from ._responses import PerturbationResponses, field_responses, gene_positions
from ._results import FitResults
from ._rows import ExpressionRows, registered_rows
from ._training import TrainingMixin, lightning_options

VELOCITY_TARGETS = ("ot", "chords")
"""Velocities of the velocity warm start and the velocity term of :meth:`FLeCS.train`."""
WARM_START_ITERATIONS = {"linear": 0, "ot_pairs": 300, "velocities": 500}
"""Warm starts of :meth:`FLeCS.train` and their default L-BFGS iterations."""


def _fit_velocities(field: GRNVectorField, targets: CellPairs, *, max_iter: int) -> None:
    """:func:`fit_velocities` to all the velocity ``targets`` (held in memory)."""
    points, velocities = targets.batch(np.arange(len(targets)))
    device = field.decay.device
    fit_velocities(field, points.to(device), velocities.to(device), max_iter=max_iter)


def _linear_then_velocities(field: GRNVectorField, targets: CellPairs, *, max_iter: int) -> None:
    """:func:`fit_linear_blocks`, then ``max_iter`` L-BFGS iterations of :func:`fit_velocities`.

    The linear fit reads the targets block by block; the iterations hold them all.
    """
    fit_linear_blocks(field, targets.blocks)
    if max_iter:
        _fit_velocities(field, targets, max_iter=max_iter)


class FLeCS(TrainingMixin, BaseModelClass):
    r"""FLeCS: gene dynamics :math:`dG/dt = \sigma(W^\top G + b) - \alpha G` on a prior network.

    Edge weights :math:`W` exist only on the non-zeros of ``varp[prior]`` (regulator row ×
    target column). Training integrates the ODE (:class:`~celldyn.nn.GRNVectorField`) from the
    first cell of every trajectory of ``uns[trajectories]`` (:func:`celldyn.pp.trajectories`)
    over its times and minimises the squared error to the later cells' expression (genes
    only, not proteins or latents; a cell repeated at the same time as the one before it, as
    on short kNN paths, counts once). Before its first training the field is fitted by least
    squares to the OT velocities of the cells between consecutive time groups (a warm start,
    ``warm_start``: by default the closed-form linear fit mapped onto the sigmoid; no ODE
    solve), and that velocity error stays in the training loss with
    a small weight (``velocity_weight``): the velocities identify the network far better than
    the trajectory error alone. ``warm_start='ot_pairs'`` fits instead the flow of every cell
    over the gap to its OT barycentre at the next time group, which keeps regulation that
    acts with a delay. :meth:`train` offers adaptive or fixed-step solvers,
    the adjoint method, random sub-windows (a mixture of trajectory lengths), the paper's
    flow-matching-style augmentation and an L1 penalty on ``W``
    (:class:`~celldyn.module.FLeCSModule`).

    The expression is read on demand, a minibatch or a block of cells at a time, and never
    copied whole: from an AnnData opened in backed mode (``read_h5ad(path, backed='r')``)
    the fit equals the one in memory without holding the matrix in memory.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    prior
        ``varp`` key of the prior network.
    trajectories
        ``uns`` key of the trajectories.
    n_latent
        Latent nodes connected to every gene.
    protein_proxy
        Regulation acts through one protein per gene.
    kernel
        Product kernel of :class:`~celldyn.nn.GRNLinear`.
    weight_init_std
        Standard deviation of the normal initial edge weights.
    decay_init
        Initial decay rate of every gene (> 0), in the units of the trajectory times.
    seed
        Seed of the initial edge weights.
    """

    def __init__(
        self,
        adata: AnnData,
        *,
        prior: str = _keys.PRIOR,
        trajectories: str = _keys.TRAJECTORIES,
        n_latent: int = 0,
        protein_proxy: bool = False,
        kernel: str = "auto",
        weight_init_std: float = 0.01,
        decay_init: float = 0.2,
        seed: int = 0,
    ):
        super().__init__(adata)
        edges = read_prior(adata, prior)
        self.prior_key, self.trajectories_key = prior, trajectories
        self.module = FLeCSModule(
            adata.n_vars,
            torch.as_tensor(edges.src),
            torch.as_tensor(edges.dst),
            n_latent=n_latent,
            protein_proxy=protein_proxy,
            kernel=kernel,
            weight_init_std=weight_init_std,
            decay_init=decay_init,
            seed=seed,
        )
        self._model_summary_string = (
            f"FLeCS: {adata.n_vars} genes, {edges.n_edges} prior edges, {n_latent} latent nodes, "
            f"protein_proxy={protein_proxy}"
        )
        self.init_params_ = self._get_init_params(locals())

    @classmethod
    def setup_anndata(cls, adata: AnnData, *, layer: str | None = None, **kwargs) -> None:
        """Register ``adata`` for FLeCS.

        Parameters
        ----------
        adata
            Annotated data matrix.
        layer
            Layer with the (normalised, not count) expression; ``None`` uses ``adata.X``.
        **kwargs
            Passed to :meth:`~scvi.data.AnnDataManager.register_fields` (used by ``load``).
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        check_adata(adata)
        check_layer(adata, layer)
        fields = [LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=False)]
        cls._register_fields(adata, fields, setup_method_args, **kwargs)

    def _check_adata(self, adata: AnnData) -> None:
        """Check an AnnData for a getter before it is registered.

        It must have the model's genes (``var_names``, in order) and a finite expression
        in ``X`` or the layer the model was set up with.
        """
        check_adata(adata)
        genes = state_registry(self, REGISTRY_KEYS.X_KEY)["column_names"]
        check_var_names(adata, genes, "the model")
        check_expression(adata, setup_args(self)["layer"])

    def _rows(self, adata: AnnData, *, check: bool = False) -> ExpressionRows:
        """Return the registered expression rows of ``adata``, read on demand.

        ``check`` raises a :class:`ValueError` naming ``adata.X`` or the layer if it holds
        NaN or infinite values (a backed matrix is checked block by block).
        """
        if check:
            check_expression(adata, setup_args(self)["layer"])
        return registered_rows(self, adata)

    @fill_doc
    def train(
        self,
        *,
        max_epochs: int = 100,
        batch_size: int = 64,
        lr: float = 1e-2,
        weight_decay: float = 0.0,
        velocity_init: int | None = None,
        warm_start: str | None = "linear",
        velocity_target: str = "ot",
        velocity_weight: float = 0.1,
        velocity_bootstrap: int | None = None,
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
        validation_size: float = 0.1,
        random_state: int = 0,
        **lightning_kwargs,
    ) -> None:
        """Fit the network to the trajectories with Lightning.

        Parameters
        ----------
        max_epochs
            Passes over the trajectories.
        batch_size
            Trajectories per minibatch (per process under DDP, ``strategy='ddp'``).
        lr, weight_decay
            Adam settings.
        velocity_init
            L-BFGS iterations of the warm start (``None``: 0 for ``'linear'``, 300 for
            ``'ot_pairs'``, 500 for ``'velocities'``; ``0`` with those two: no warm start).
            Before the first training of a model the field is fitted to the data
            (``warm_start``, on the GPU when ``accelerator`` allows it); the trajectory fit
            then starts from there. A model that was already trained is not refitted.
        warm_start
            ``'linear'`` (default): the closed-form linear least-squares fit of the
            ``velocity_target`` velocities on each target's prior regulators, mapped onto the
            sigmoid at the target's mean production (:func:`~celldyn.module.fit_linear`; no
            iterations, no ODE solve), then ``velocity_init`` L-BFGS iterations of
            ``'velocities'``. ``'velocities'``: least squares of the sigmoid model to those
            velocities from the initial weights (:func:`~celldyn.module.fit_velocities`).
            ``'ot_pairs'``: the ODE integrated from every cell of each time group but the
            last over the gap to the next group must end at the cell's OT barycentre there
            (:func:`~celldyn.module.fit_pairs`, with ``method``, ``rtol``, ``atol`` and
            ``max_num_steps``; one solve per gap and iteration, on the time groups and
            ``rep`` of the trajectories); the flow over a whole gap also carries regulation
            that acts with a delay or settles within the gap. ``None``: no warm start. Which
            start recovers more of a network across data: benchmarks README, "FLeCS". The
            linear fit reads the targets' cells block by block (an AnnData in backed mode
            stays on disk); L-BFGS iterations and ``'ot_pairs'`` hold all the targets in
            memory (two cells × genes arrays).
        velocity_target
            Velocities of the velocity warm start and of the velocity term: ``'ot'``
            (default), the barycentric OT velocities between the consecutive time groups the
            trajectories were built on (exact OT on their ``time_key`` and ``rep``; every cell
            but those of the last group, whether its trajectories are held out for validation
            or not); ``'chords'``, the finite
            differences along the training trajectories (the default before; it needs no
            time groups). On generators other than FLeCS's own, the OT velocities carry the
            network and the chords of kNN paths little of it (benchmarks README, "FLeCS").
        velocity_weight
            Weight of the relative velocity error (to the ``velocity_target`` velocities, a
            random batch per step) added to the trajectory loss in training; ``0``: the
            trajectory error alone, which pulls the network away from the warm start.
        velocity_bootstrap
            Seed of a bootstrap resample (rows drawn with replacement) of the velocity targets
            (``None``: all of them once); :func:`celldyn.tl.flecs` sets it for the members of
            ``resample=True`` ensembles with OT targets (chords come from the trajectories,
            which those members already resample).
        method, rtol, atol
            Solver of :func:`~celldyn.nn.integrate`: adaptive (``'dopri5'``, ``'bosh3'``, ...,
            with tolerances ``rtol``, ``atol``) or fixed-step (``'rk4'``, ``'euler'``, ...).
        step_size
            Step of fixed-step solvers (``None``: one step between consecutive output times).
        adjoint
            Gradients by the adjoint method (``odeint_adjoint``: less memory, usually slower)
            instead of backpropagation through the solver.
        max_num_steps
            Most steps of an adaptive solver per solve (a batch of trajectories); more
            raise :class:`~celldyn.nn.SolverDivergedError`. Fits that converge take far fewer;
            a diverging fit (``lr`` too large) makes the field stiff and would otherwise run
            for hours.
        time_grid
            Largest number of output times per solve; batches with more distinct (shifted)
            times are integrated on that many evenly spaced times and interpolated
            (:func:`~celldyn.module.integrate_trajectories`); ``None``: exact times.
        l1
            Weight of an L1 penalty ``l1 · mean|W|`` on the prior edge weights (sparsity).
        windows
            Train on a random sub-window of every trajectory (one window length per batch,
            from ``windows`` (``True``: 2) to the full length): a mixture of trajectory lengths.
        flow_matching
            Train on the flow-matching-style augmentation of the FLeCS paper: random start and
            end points on the straight segments between consecutive cells
            (:func:`~celldyn.module.flow_matching_pairs`).
        flow_matching_noise
            Noise added to those start points, relative to each gene's standard deviation.
        validation_size
            Fraction of trajectories held out for validation.
        random_state
            Seed of the validation split.
        {lightning_kwargs}
        """
        options = lightning_options(lightning_kwargs)
        check_in(velocity_target, VELOCITY_TARGETS, "velocity_target")
        check_in(warm_start, (*WARM_START_ITERATIONS, None), "warm_start")
        if velocity_init is None:
            velocity_init = WARM_START_ITERATIONS.get(warm_start, 0)
        velocity_init = check_int(velocity_init, "velocity_init", 0)
        if velocity_bootstrap is not None:
            velocity_bootstrap = check_int(velocity_bootstrap, "velocity_bootstrap", 0)
        trajectories = read_trajectories(self.adata, self.trajectories_key)
        rows = self._rows(self.adata, check=True)
        self.module.configure(
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
        datamodule = TensorDataModule(
            {
                "cells": torch.from_numpy(trajectories.indices),
                "t": torch.as_tensor(trajectories.times, dtype=torch.float32),
            },
            batch_size=int(batch_size),
            validation_size=validation_size,
            random_state=random_state,
            transform=rows.gather,
        )
        warm = warm_start is not None and not self.is_trained_
        warm = warm and bool(velocity_init or warm_start == "linear")
        on_velocities = warm and warm_start in ("linear", "velocities")
        bootstrap = None
        if velocity_bootstrap is not None:
            bootstrap = np.random.default_rng(velocity_bootstrap)
        if velocity_weight or on_velocities:
            if velocity_target == "ot":
                targets = self._ot_targets(rows, random_state)
            else:
                train = datamodule.train_idx
                targets = CellPairs.chords(
                    rows, trajectories.indices[train], trajectories.times[train]
                )
            if bootstrap is not None:
                targets = targets.resample(bootstrap.integers(0, len(targets), len(targets)))
            self.module.set_velocity_sampler(
                lambda picks: targets.batch(picks.numpy()),
                len(targets),
                (velocities for _, velocities in targets.blocks()),
            )
        if on_velocities:
            fit = _linear_then_velocities if warm_start == "linear" else _fit_velocities
            fit = partial(fit, targets=targets, max_iter=velocity_init)
            self._warm_start(fit, len(targets), options["accelerator"])
        elif warm:
            pairs = self._ot_targets(rows, random_state)
            if bootstrap is not None:
                pairs = pairs.resample(bootstrap.integers(0, len(pairs), len(pairs)))
            self._warm_start(
                partial(self._fit_pairs, pairs, velocity_init), len(pairs), options["accelerator"]
            )
        try:
            self._fit(
                datamodule, max_epochs=max_epochs, lr=lr, weight_decay=weight_decay, **options
            )
        except SolverDivergedError as err:
            if "`lr`" in str(err):  # already says what to change
                raise
            raise SolverDivergedError(
                f"FLeCS training diverged: {err} Most likely `lr` is too large (now {lr!r}): "
                "lower it. A fit that is valid but stiff can raise `max_num_steps` (now "
                f"{max_num_steps}) or tighten `rtol`/`atol`."
            ) from err

    def _ot_inputs(self) -> tuple[np.ndarray, TimeGroups]:
        """Representation and time groups the trajectories were built on (for OT targets)."""
        params = read_trajectories(self.adata, self.trajectories_key).params
        if "time_key" not in params or "rep" not in params:
            raise KeyError(
                f"adata.uns[{self.trajectories_key!r}]['params'] lacks 'time_key' or 'rep' "
                "(written by celldyn.pp.trajectories), needed by velocity_target='ot' (the "
                "default) and warm_start='ot_pairs'; trajectories built otherwise can use "
                "velocity_target='chords' with warm_start='linear' or warm_start='velocities'."
            )
        return get_rep(self.adata, params["rep"]), read_time_groups(self.adata, params["time_key"])

    def _ot_targets(self, rows: ExpressionRows, random_state: int) -> CellPairs:
        """Every cell with a later time group and its OT partners there (:func:`ot_partners`)."""
        z, groups = self._ot_inputs()
        return CellPairs(rows, *ot_partners(z, groups, random_state))

    def _fit_pairs(self, pairs: CellPairs, max_iter: int, field: GRNVectorField) -> None:
        """:func:`fit_pairs` from every start cell to its OT barycentre (held in memory)."""
        starts, ends = pairs.ends(np.arange(len(pairs)))
        device = field.decay.device
        fit_pairs(
            field,
            *(torch.as_tensor(a, dtype=torch.float32, device=device) for a in (starts, ends)),
            torch.as_tensor(pairs.gaps, dtype=torch.float32, device=device),
            max_iter=max_iter,
            **self.module.solver_kwargs(),
        )

    def _warm_start(self, fit, n_targets: int, accelerator: str) -> None:
        """Run ``fit(field)`` (on the GPU when allowed); nothing without targets."""
        if not n_targets:  # no cell has a later time group
            return
        use_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
        field = self.module.field.to(torch.device("cuda" if use_gpu else "cpu"))
        try:
            fit(field)
        finally:
            self.module.field.cpu()

    # ------------------------------------------------------------------ getters
    @fill_doc
    def get_velocity(
        self,
        adata: AnnData | None = None,
        *,
        indices: Sequence[int] | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """Model derivative ``dG/dt`` at every cell, ``(n_obs, n_genes)`` float32.

        Raises :class:`~celldyn.nn.SolverDivergedError` if it is not finite.

        Parameters
        ----------
        adata
            AnnData with the model's genes (default: the training data); checked before it
            is registered with the model.
        {indices}
        {batch_size}
        """
        with registered(self, adata, self._check_adata) as adata:
            x = self._rows(adata).subset(check_indices(indices, adata.n_obs))
            field = self.module.field.eval()
            velocity = batched(
                field.gene_velocity, x, device=self.device, batch_size=batch_size
            ).astype(np.float32)
            if not np.all(np.isfinite(velocity)):
                raise SolverDivergedError("The FLeCS velocity has NaN or infinite values.")
        return velocity

    @torch.no_grad()
    def get_weights(self) -> sp.csr_matrix:
        """Learnt weights of the prior edges: sparse CSR regulator (row) × target (column)."""
        field = self.module.field
        n = field.n_genes
        src, dst = field.src[: field.n_prior_edges].cpu(), field.dst[: field.n_prior_edges].cpu()
        weights = field.prior_edge_weights().cpu().numpy().astype(np.float32)
        return sp.csr_matrix((weights, (src.numpy(), dst.numpy())), shape=(n, n))

    @torch.no_grad()
    def get_edge_effects(
        self, adata: AnnData | None = None, *, batch_size: int | None = None
    ) -> sp.csr_matrix:
        r"""Mean direct effect of every prior edge over the cells: regulator × target CSR.

        For an edge :math:`j \to i` the mean over the cells of the Jacobian entry
        :math:`\partial (dG_i/dt) / \partial G_j = \sigma'(\text{drive}_i)\, W_{ji}` (times
        the regulator's steady-state protein gain with ``protein_proxy``;
        :meth:`~celldyn.nn.GRNVectorField.production_slope`), multiplied by the standard
        deviation of :math:`G_j` over the cells: the change of the target's velocity per
        standard deviation of the regulator. Unlike :math:`W`, it does not grow where the
        target's production is saturated or the regulator barely varies, so it ranks edges
        more reliably (benchmarks README, "FLeCS").

        Parameters
        ----------
        adata
            AnnData with the model's genes (default: the training data); checked before it
            is registered with the model.
        batch_size
            Cells per block of the computation (default 4096).
        """
        with registered(self, adata, self._check_adata) as adata:
            x = self._rows(adata)
            field = self.module.field.eval()
            moments = ColumnMoments()  # the regulators' sd, in the same pass over the cells

            def slope_sum(xb: torch.Tensor) -> torch.Tensor:
                moments.update(xb)
                return field.production_slope(xb).sum(0, keepdim=True)

            block_sums = batched(slope_sum, x, device=self.device, batch_size=batch_size)
            slope = torch.from_numpy(block_sums).double().sum(0) / len(x)
            weights = self.get_weights().tocoo()
            gain = field.regulator_gain().cpu().double().numpy()
            scale = moments.var(ddof=0).sqrt().cpu().numpy() * gain
            effects = weights.data * scale[weights.row] * slope.numpy()[weights.col]
            if not np.all(np.isfinite(effects)):
                raise SolverDivergedError("The FLeCS edge effects have NaN or infinite values.")
        return sp.csr_matrix(
            (effects.astype(np.float32), (weights.row, weights.col)), shape=weights.shape
        )

    @torch.no_grad()
    def get_decay(self) -> np.ndarray:
        """Learnt decay rate of every gene, ``(n_genes,)``."""
        return self.module.field.decay[: self.module.field.n_genes].cpu().numpy()

    @torch.no_grad()
    def get_bias(self) -> np.ndarray:
        """Learnt production bias of every gene, ``(n_genes,)``."""
        return self.module.field.bias[: self.module.field.n_genes].cpu().numpy()

    # ------------------------------------------------------------------ contract with tl
    def perturbation_responses(
        self,
        perturbations: Sequence[str] | None = None,
        *,
        strength: float = 0.1,
        start: np.ndarray | None = None,
    ) -> PerturbationResponses:
        """Responses to production knockdowns of single genes, the inputs of CLIPR.

        Knocking down gene ``j`` adds ``-strength`` to its production input
        (:attr:`~celldyn.nn.GRNVectorField.production_offset`). The control steady state
        ``G*`` is the fixed point reached by integrating the ODE from ``start``, the perturbed
        one by integrating from ``G*``; ``v_q = f_q(G*) - f(G*)`` and ``l_q`` is the
        difference of the fixed points.

        Parameters
        ----------
        perturbations
            Genes knocked down, one perturbation each; default every gene.
        strength
            Production offset of a knockdown.
        start
            ``(n_genes,)`` expression the control steady state is searched from; default the
            mean expression of the training cells.
        """
        genes = self.adata.var_names
        positions = gene_positions(genes, perturbations)
        labels = [str(genes[p]) for p in positions]
        if start is None:
            start = self._rows(self.adata, check=True).moments().mean.numpy()
        start = np.asarray(start, dtype=np.float64)
        if start.shape != (len(genes),) or not np.all(np.isfinite(start)):
            raise ValueError(f"`start` must be a finite vector of length {len(genes)}.")
        velocities, shifts, control = field_responses(
            self.module.field, start, positions, strength=strength
        )
        return PerturbationResponses(
            labels, velocities, shifts, control, len(genes), {g: g for g in labels}, True
        )

    @classmethod
    def results(cls, models: Sequence[FLeCS], key_added: str) -> FitResults:
        """Return what :func:`celldyn.tl.flecs` writes for fitted members (one or more).

        Weights, edge effects, decays, biases and velocities are the means over the
        members; with more than one, the weights' and effects' standard deviations
        (``ddof=1``) too; ``uns[key_added]['models']`` holds every member's
        :meth:`~celldyn.nn.GRNVectorField.to_arrays`.
        """
        arrays = [m.module.field.to_arrays() for m in models]
        src, dst = arrays[0]["src"], arrays[0]["dst"]
        n = int(arrays[0]["n_genes"])

        def edges(values: np.ndarray) -> sp.csr_matrix:
            return sp.csr_matrix((values.astype(np.float32), (src, dst)), shape=(n, n))

        weights = np.stack([GRNVectorField.stored_prior_weights(a) for a in arrays])
        effects = np.stack([np.asarray(m.get_edge_effects()[src, dst]).ravel() for m in models])
        varp = {_keys.varp.weights(key_added): edges(weights.mean(0))}
        varp[_keys.varp.effects(key_added)] = edges(effects.mean(0))
        if len(models) > 1:
            for key, values in (
                (_keys.varp.weights_std, weights),
                (_keys.varp.effects_std, effects),
            ):
                varp[key(key_added)] = edges(values.std(0, ddof=1))
        var = {
            _keys.var.param(key_added, "decay"): np.mean([m.get_decay() for m in models], 0),
            _keys.var.param(key_added, "bias"): np.mean([m.get_bias() for m in models], 0),
        }
        velocity = np.mean([m.get_velocity() for m in models], axis=0, dtype=np.float64)
        return FitResults(
            {"varp": varp, "var": var},
            uns={"models": {str(i): a for i, a in enumerate(arrays)}},
            velocity=velocity,
        )
