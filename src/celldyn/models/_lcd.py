"""LCD model (Lorch et al. 2026): latent causal diffusions of perturbation screens."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import partial

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData
from lightning.pytorch import Callback
from scvi import REGISTRY_KEYS
from scvi.data.fields import LayerField, NumericalObsField
from scvi.model.base import BaseModelClass
from torch.optim.lr_scheduler import CosineAnnealingLR

from .. import _keys
from .._docs import fill_doc
from .._logging import logger
from .._perturbations import (
    intervention_targets,
    interventions,
    perturbation_mask,
    read_perturbations,
    split_label,
)
from .._validate import (
    check_adata,
    check_finite,
    check_in,
    check_int,
    check_layer,
    check_positive,
    check_unique_var_names,
    in_memory,
)
from ..module._lcd import SCORE_BASES, LCDModule, RowSparseAdam
from ..nn import SolverDivergedError
from ..nn._score import sum_of_rows
from ._data import TensorDataModule
from ._inference import batched, check_indices
from ._representative import representative_subset
from ._responses import PerturbationResponses
from ._results import FitResults
from ._training import ADAM_EPS, TrainingMixin, lightning_options

_SIZE_FACTOR_KEY = "size_factor"
_MIN_OBS_RATE = 0.05
_TARGET_SUM = 1e4
_PRIOR_INPUTS = ("library", "condition")
_SCHEDULES = ("cosine", "constant")
_LIBRARY_SIZES = ("shifted", "control")
_SAMPLING = ("representative", "independent")
_MAX_POOL = 20_000
"""Most cells generated per condition for ``predict(sampling='representative')``."""
_SCALE_STEPS = 2  # Monte Carlo M-steps of the gene scales before the final draws
_SCALE_DRAWS = 4
_SPARSE_LATENT_MIN_BATCHES = 8
"""Stage-1 minibatches per epoch from which ``sparse_latent='auto'`` takes row-sparse updates."""


def check_counts(x: np.ndarray | sp.spmatrix, name: str) -> None:
    """Raise a :class:`ValueError` unless ``x`` holds non-negative integer counts."""
    x = in_memory(x)
    check_finite(x, name)
    data = x.data if sp.issparse(x) else np.asarray(x)
    if (data < 0).any() or not np.allclose(data, np.round(data)):
        raise ValueError(
            f"{name} must hold raw counts (non-negative integers); pass the counts layer with "
            "`layer=`."
        )


def _dense(x) -> np.ndarray:
    x = in_memory(x)
    return np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float32)


_STAGES = {
    "observation": ("stage 1 (latent states and count model)", "lr"),
    "score": ("stage 2 (score matching)", "score_lr"),
}


def _finite(p: torch.Tensor) -> bool:
    """Whether ``p`` is finite; with a sparse gradient, only the rows it updated.

    The other rows were checked when they were updated.
    """
    if p.grad is not None and p.grad.is_sparse:
        p = p[p.grad.coalesce().indices()[0]]
    return bool(torch.isfinite(p).all())


def _diverged(stage: str, epoch: int, what: str, lr: float) -> SolverDivergedError:
    name, lr_name = _STAGES[stage]
    return SolverDivergedError(
        f"LCD training diverged in {name} at epoch {epoch}: {what} NaN or infinite values. "
        f"Lower `{lr_name}` (now {lr!r})."
    )


class _DivergenceGuard(Callback):
    """Raise :class:`SolverDivergedError` at the first non-finite loss or parameter.

    The loss is checked after every step. The parameters a step updated (with a gradient) are
    checked after every step of stage 1, whose count model would otherwise meet them as an
    invalid distribution argument, and after every epoch of stage 2, whose many small steps
    would pay for a per-step check while a non-finite weight makes the next loss non-finite.
    Of a parameter with a sparse gradient (the latent states with ``sparse_latent``) only the
    rows the step updated are checked, so the check costs the minibatch, not all cells.
    """

    def __init__(self, stage: str, lr: float):
        self.stage, self.lr = stage, lr

    def _check(self, trainer, pl_module, loss=None) -> None:
        bad = [] if loss is None or torch.isfinite(loss).all() else ["the loss"]
        if bad or loss is None or self.stage == "observation":
            params = [
                f"`{name}`"
                for name, p in pl_module.module.named_parameters()
                if p.grad is not None and not _finite(p)
            ]
            bad += params[:3] + ([f"{len(params) - 3} more parameters"] if len(params) > 3 else [])
        if bad:
            what = f"{', '.join(bad)} {'holds' if len(bad) == 1 else 'hold'}"
            raise _diverged(self.stage, trainer.current_epoch + 1, what, self.lr)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        self._check(trainer, pl_module, torch.zeros(()) if loss is None else loss.detach())

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._check(trainer, pl_module)


class _CatchUp(Callback):
    """Bring the latent states up to date before stage 1 reads them (``sparse_latent``).

    :class:`~celldyn.module._lcd.RowSparseAdam` leaves the rows a step did not use where
    they were; before every step the rows of its minibatch (its gradient is taken where
    dense Adam's rows are), and after every epoch all rows (for the prior update, which
    follows, and everything that reads the states after the fit) get the steps they skipped.
    """

    @staticmethod
    def _catch_up(trainer, rows: torch.Tensor | None = None) -> None:
        for optimizer in trainer.optimizers:
            if isinstance(optimizer, RowSparseAdam):
                optimizer.catch_up(rows)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._catch_up(trainer, batch["index"])

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._catch_up(trainer)


class _PriorUpdate(Callback):
    """Laplace-EM update of the latent prior variances after every epoch of stage 1."""

    def __init__(self, tensors: dict[str, torch.Tensor], lr: float):
        self.tensors, self.lr = tensors, lr

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        module = pl_module.module
        device = module.latent.device
        module.update_prior(*(self.tensors[k].to(device) for k in _PRIOR_INPUTS))
        if not torch.isfinite(module.prior_logvar).all():
            epoch = trainer.current_epoch + 1
            raise _diverged("observation", epoch, "the prior variances hold", self.lr)


class _CosineDecay(Callback):
    """Cosine decay of the learning rate from its initial value to 0 over all steps of a fit.

    :class:`torch.optim.lr_scheduler.CosineAnnealingLR` over the fit's steps, stepped after
    every batch.
    """

    def on_train_start(self, trainer, pl_module) -> None:
        total = max(int(trainer.estimated_stepping_batches), 1)
        self.schedulers = [CosineAnnealingLR(opt, T_max=total) for opt in trainer.optimizers]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        for scheduler in self.schedulers:
            scheduler.step()


def _condition_design(codes: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cells per condition ``(Q,)`` and the design ``[1, mask_q]`` ``(Q, 1 + n_perturbable)``."""
    sizes = np.bincount(codes, minlength=len(mask)).astype(np.float64)
    return sizes, np.concatenate([np.ones((len(mask), 1)), mask], axis=1)


def _gaussian_base(
    states: np.ndarray, codes: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian term of the score: condition means linear in the perturbed genes.

    ``m_0`` and the rows ``M_g`` are the least-squares fit of ``m_0 + mask_q @ M`` to the
    conditions' mean states, each condition weighted by its number of cells (minimum norm
    where genes are always perturbed together); ``v`` is the per-gene variance of the states
    around their own condition's mean, pooled over conditions.

    Parameters
    ----------
    states
        ``(n, G)`` states or ``(n, draws, G)`` posterior draws of every cell.
    codes
        ``(n,)`` condition codes.
    mask
        ``(Q, n_perturbable)`` perturbed genes of every condition.

    Returns
    -------
    ``m_0`` ``(G,)``, ``M`` ``(n_perturbable, G)``, ``v`` ``(G,)``.
    """
    states = states.reshape(len(codes), -1, states.shape[-1])
    sizes, design = _condition_design(codes, mask)
    means = np.zeros((len(mask), states.shape[-1]))
    squares = np.zeros(states.shape[-1])
    for q in np.flatnonzero(sizes):
        cells = states[codes == q]
        means[q] = cells.mean((0, 1))
        squares += ((cells - means[q]) ** 2).sum((0, 1))
    var = squares / states.shape[1] / len(codes)
    weight = np.sqrt(sizes)[:, None]
    coef = np.linalg.lstsq(weight * design, weight * means, rcond=None)[0]
    return coef[0], coef[1:], var


def _library_shifts(library: np.ndarray, codes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Shift of the log library size by each perturbed gene, additive as the base means.

    ``δ̂`` is the least-squares fit of ``b_0 + mask_q @ δ`` to the conditions' mean log library
    sizes, each condition weighted by its number of cells (:func:`_gaussian_base` on
    ``log l``; for a single with the control in the screen, the difference of their mean log
    library sizes). Each ``δ̂_g`` is then shrunk towards 0 by empirical Bayes under the prior
    ``δ_g ~ N(0, τ²)``: ``δ_g = δ̂_g τ² / (τ² + se_g²)`` with ``se_g²`` the sampling variance
    of ``δ̂_g`` (pooled within-condition variance of ``log l`` times the diagonal of the
    inverse weighted normal matrix) and ``τ² = max(0, mean(δ̂² − se²))``. Where the library
    sizes do not depend on the condition (``τ² = 0``) no shift is applied, instead of the
    noise of the condition means.

    Parameters
    ----------
    library
        ``(n,)`` positive library sizes of the training cells.
    codes, mask
        As in :func:`_gaussian_base`.

    Returns
    -------
    ``δ`` ``(n_perturbable,)``.
    """
    _, shift, var = _gaussian_base(np.log(library)[:, None], codes, mask)
    shift = shift[:, 0]
    if not len(shift):
        return shift
    sizes, design = _condition_design(codes, mask)
    se2 = var[0] * np.diag(np.linalg.pinv(design.T @ (sizes[:, None] * design)))[1:]
    prior = max(float(np.mean(shift**2 - se2)), 0.0)
    return np.divide(prior * shift, prior + se2, out=shift.copy(), where=prior + se2 > 0)


class LCD(TrainingMixin, BaseModelClass):
    """Latent causal diffusion: a stationary SDE per perturbation condition, seen through counts.

    Cells of condition ``q`` are draws from the stationary law ``p_q`` of ``dx = f(x, e_q) dt +
    √2 dW`` in a latent expression space with one coordinate per gene; their counts are
    ``NB(softplus(x_g) · s_g · l_n, θ_g)`` (per-gene scale ``s_g`` and inverse dispersion
    ``θ_g``, library size ``l_n``). Training runs in two stages (as the reference
    implementation): (1) the per-cell latent states, with a Gaussian prior per condition, and
    the observation model by maximum a posteriori; (2) a score network ``s(x, σ, e_q)``,
    conditioned in every hidden layer on the sum ``e_q`` of learnt embeddings of the
    condition's interventions (genes, measured or not, drugs, stimuli) and added to a Gaussian
    term with condition means linear in the interventions (``score_base``), by
    denoising score matching of the latent states over a geometric range of noise levels. Then a
    shared positive diagonal ``D`` (geometric mean 1) and a shared antisymmetric ``K`` are
    chosen so that the drift ``f(x, e_q) = (D + K) s(x, σ_f, e_q)`` responds sparsely to the
    perturbations (:meth:`get_drift_response`). Every such drift leaves each ``p_q`` stationary
    under ``dx = f dt + √(2D) dW`` (``∇·(K ∇p) = 0``): ``K`` is the part of the drift the
    distributions alone cannot fix and sparse perturbation responses identify it (with ``D = I,
    K = 0`` the drift would be the score, whose linear part is symmetric); ``D`` absorbs the
    per-gene units of the latent space, which the count model leaves free.

    Parameters
    ----------
    adata
        AnnData registered with :meth:`setup_anndata`.
    n_hidden, n_layers
        Width and number of hidden layers of the score network.
    embed_dim
        Dimension of the learnt intervention embeddings.
    n_sigmas, sigma_min, sigma_max
        Noise levels of score matching: ``n_sigmas`` geometric steps from ``sigma_max`` down
        to ``sigma_min``, in units of the median per-gene standard deviation of the states
        the score is fitted to (the posterior draws, see :meth:`train`).
    drift_sigma
        Noise level ``σ_f`` of the score in the drift and the last level of sampling (same
        units, between ``sigma_min`` and ``sigma_max``; the nearest level of the grid, where
        the network was fitted, is used). At the smallest levels a score network fitted to a
        few hundred cells per condition approaches the score of its training points (each
        cell a narrow bump), whose Jacobian says little about the law; at ``σ_f`` the law is
        smoothed by ``N(0, σ_f² I)``, a small isotropic bias (see the user guide).
    score_base
        ``'gaussian'`` (default): the score is ``−(x − m_q) / (v + σ²)`` plus the network,
        with condition means ``m_q = m_0 + Σ_{g∈q} M_g`` fitted by least squares to the
        training conditions' mean states and their pooled per-gene variance ``v``; the network
        learns the non-Gaussian residual and the interactions of the perturbations. Its
        sampled means are more accurate on trained and unseen conditions (user guide,
        "Training"). ``'none'``: the network alone.

    Attributes
    ----------
    perturbation_labels_
        Training conditions, control first.
    interventions_
        Interventions with a learnt embedding (the parts of the labels), sorted.
    intervention_targets_
        Intervention -> the measured gene it acts on, for those that act on one
        (:meth:`setup_anndata`'s ``targets``).
    """

    def __init__(
        self,
        adata: AnnData,
        *,
        n_hidden: int = 128,
        n_layers: int = 3,
        embed_dim: int = 16,
        n_sigmas: int = 10,
        sigma_min: float = 0.05,
        sigma_max: float = 3.0,
        drift_sigma: float = 0.3,
        score_base: str = "gaussian",
    ):
        super().__init__(adata)
        args = self.adata_manager.registry["setup_args"]
        self.perturbation_key, self.control = args["perturbation_key"], args["control"]
        check_int(n_sigmas, "n_sigmas", 2)
        check_positive(sigma_min, "sigma_min")
        if not sigma_max > sigma_min:
            raise ValueError(f"`sigma_max` ({sigma_max}) must exceed `sigma_min` ({sigma_min}).")
        if not sigma_min <= drift_sigma <= sigma_max:
            raise ValueError(
                f"`drift_sigma` ({drift_sigma}) must lie between `sigma_min` ({sigma_min}) and "
                f"`sigma_max` ({sigma_max})."
            )
        if score_base not in SCORE_BASES:
            raise ValueError(f"`score_base` must be one of {SCORE_BASES}, got {score_base!r}.")
        labels = read_perturbations(
            adata, self.perturbation_key, self.control, measured_genes=False
        )
        self.perturbation_labels_: list[str] = list(labels.categories)
        self.interventions_: list[str] = interventions(
            self.perturbation_labels_, control=self.control
        )
        self.intervention_targets_: dict[str, str] = intervention_targets(
            self.interventions_, adata.var_names, args.get("targets")
        )
        self.genes_ = list(adata.var_names)
        self._codes = np.asarray(labels.codes, dtype=np.int64)
        counts, library = self._counts(adata)
        self._relative_sigmas = np.geomspace(sigma_max, sigma_min, n_sigmas)
        # the network is fitted at the grid levels only: the drift uses the nearest one
        self._drift_level = int(np.argmin(np.abs(np.log(self._relative_sigmas / drift_sigma))))
        self.module = LCDModule(
            adata.n_obs,
            adata.n_vars,
            len(self.perturbation_labels_),
            len(self.interventions_),
            sigmas=self._relative_sigmas,
            drift_sigma=self._relative_sigmas[self._drift_level],
            score_kwargs={"n_hidden": n_hidden, "n_layers": n_layers, "embed_dim": embed_dim},
            score_base=score_base,
        )
        self._init_observation(counts, library)
        self._model_summary_string = (
            f"LCD: {adata.n_vars} genes, {len(self.perturbation_labels_)} conditions, "
            f"{len(self.interventions_)} interventions "
            f"({len(self.intervention_targets_)} with a measured target)"
        )
        self.init_params_ = self._get_init_params(locals())

    @classmethod
    def setup_anndata(
        cls,
        adata: AnnData,
        *,
        perturbation_key: str = _keys.PERTURBATION,
        control: str = _keys.CONTROL,
        layer: str | None = None,
        size_factor_key: str | None = None,
        targets: dict[str, str | None] | None = None,
        **kwargs,
    ) -> None:
        """Register ``adata`` for LCD.

        Parameters
        ----------
        adata
            Annotated data matrix of raw counts.
        perturbation_key
            Column of ``adata.obs``: ``control`` or interventions joined by ``'+'``
            (``'GATA1+CEBPA'``, ``'PMA+U0126'``). An intervention is a label with a learnt
            embedding: a gene, measured or not, a drug, a stimulus.
        control
            Label of unperturbed cells.
        targets
            Intervention -> the measured gene it acts on (``{'U0126': 'Erk'}``), or ``None``
            for none. Interventions named like a gene of ``adata.var_names`` target that gene
            unless mapped otherwise. The targets do not change the fit; they say which
            interventions perturb a measured gene (:attr:`intervention_targets_`, used by
            :func:`~celldyn.tl.clipr` with ``velocities='targets'``).
        layer
            Layer with the raw counts; ``None``: ``adata.X``.
        size_factor_key
            Numeric column of ``adata.obs`` with each cell's library size factor; ``None``:
            total counts divided by their mean.
        **kwargs
            Passed to :meth:`~scvi.data.AnnDataManager.register_fields` (used by ``load``).
        """
        setup_method_args = cls._get_setup_method_args(**locals())
        check_adata(adata)
        check_unique_var_names(adata)
        check_layer(adata, layer)
        labels = read_perturbations(adata, perturbation_key, control, measured_genes=False)
        names = interventions(labels.categories, control=control)
        intervention_targets(names, adata.var_names, targets)
        check_counts(adata.X if layer is None else adata.layers[layer], "The counts")
        fields = [LayerField(REGISTRY_KEYS.X_KEY, layer, is_count_data=True)]
        if size_factor_key is not None:
            if size_factor_key not in adata.obs.columns:
                raise KeyError(f"adata.obs has no column {size_factor_key!r}.")
            factors = np.asarray(adata.obs[size_factor_key], dtype=np.float64)
            if not np.all(np.isfinite(factors) & (factors > 0)):
                raise ValueError(f"adata.obs[{size_factor_key!r}] must be positive and finite.")
            fields.append(NumericalObsField(_SIZE_FACTOR_KEY, size_factor_key))
        cls._register_fields(adata, fields, setup_method_args, **kwargs)

    # ------------------------------------------------------------------ data and stage 1
    def _counts(self, adata: AnnData) -> tuple[np.ndarray, np.ndarray]:
        manager = self.get_anndata_manager(adata, required=True)
        counts = _dense(manager.get_from_registry(REGISTRY_KEYS.X_KEY))
        if _SIZE_FACTOR_KEY in manager.data_registry:
            library = np.asarray(manager.get_from_registry(_SIZE_FACTOR_KEY), np.float32).ravel()
        else:
            total = counts.sum(1)
            if (total <= 0).any():
                raise ValueError(f"{int((total <= 0).sum())} cells have no counts.")
            library = total / total.mean()
        return counts, library.astype(np.float32)

    @torch.no_grad()
    def _init_observation(self, counts: np.ndarray, library: np.ndarray) -> None:
        """Start the latent states at ``softplus⁻¹`` of the normalized counts.

        The gene scale ``s_g`` starts at the largest mean of the gene over the conditions
        (divided by ``log 2``), so the softplus bends at the most expressing condition: below
        it the latent state is about the log of the rate. Scaled to the mean over all cells
        instead, a gene expressed in one condition of many (common in screens with low
        counts) sat in the linear part, with latent states in the hundreds for one count.
        """
        normalized = counts / library[:, None]
        condition_means = np.stack(
            [normalized[self._codes == q].mean(0) for q in range(len(self.perturbation_labels_))]
        )
        scale = condition_means.max(0) / np.log(2.0) + 1e-6
        rate = np.maximum(normalized / scale, _MIN_OBS_RATE)
        x = rate + np.log(-np.expm1(-rate))  # softplus⁻¹
        m = self.module
        m.latent.copy_(torch.as_tensor(x))
        m.log_scale.copy_(torch.as_tensor(np.log(scale)))
        for q in range(len(self.perturbation_labels_)):
            cells = x[self._codes == q]
            m.prior_mean[q] = torch.as_tensor(cells.mean(0))
            m.prior_logvar[q] = torch.as_tensor(np.log(cells.var(0) + 1e-2))

    def _condition_inputs(self, labels: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Gene masks and numbers of genes without embedding of condition labels."""
        mask, unknown = perturbation_mask(labels, self.interventions_, control=self.control)
        n_unknown = np.array([len(u) for u in unknown], dtype=np.float32)
        return torch.as_tensor(mask), torch.as_tensor(n_unknown)

    def _check_label(self, perturbation: str) -> str:
        parts = split_label(perturbation, control=self.control)
        unseen = [p for p in parts if p not in self.interventions_]
        unknown = [p for p in unseen if p not in self.genes_]
        if unknown:
            raise ValueError(
                f"Perturbation {perturbation!r} names {unknown}: neither an intervention of the "
                "training screen nor a gene in adata.var_names."
            )
        if unseen:
            logger.warning(
                "Genes %s were never perturbed in training; they get the mean learnt embedding.",
                unseen,
            )
        return perturbation

    # ------------------------------------------------------------------ training
    @fill_doc
    def train(
        self,
        max_epochs: int = 300,
        *,
        score_epochs: int = 300,
        batch_size: int = 4096,
        score_batch_size: int = 256,
        lr: float = 5e-2,
        score_lr: float = 2e-3,
        score_schedule: str = "cosine",
        weight_decay: float = 0.0,
        mixing_steps: int = 2000,
        posterior_draws: int = 16,
        sparse_latent: bool | str = "auto",
        random_state: int = 0,
        **lightning_kwargs,
    ) -> None:
        """Fit the observation model, then the score network, then the drift mixing ``K``.

        Both stages train on all cells (no validation split), so LCD has no early stopping.

        Parameters
        ----------
        max_epochs
            Epochs of stage 1 (latent states, per-gene scale and dispersion, priors).
        score_epochs
            Epochs of stage 2 (denoising score matching).
        batch_size
            Cells per minibatch of stage 1 (per process under DDP, ``strategy='ddp'``, as
            ``score_batch_size``). Each cell's state gets one gradient per epoch whatever the
            size. With dense updates of the latent states (``sparse_latent``; always under
            DDP) every step moves the whole latent matrix, so small batches cost time (cells
            squared; benchmarks/README.md, "LCD: speed"); ``sparse_latent='auto'`` avoids
            that from 8 minibatches per epoch.
        score_batch_size
            Cells per minibatch of stage 2.
        lr, score_lr
            Adam learning rates of stage 1 and stage 2.
        score_schedule
            Learning rate of stage 2: ``'cosine'`` decays it from ``score_lr`` to 0 over the
            stage, so that the final weights do not carry the optimizer's step noise, which
            shows as an error of the sampled means (user guide, "Training");
            ``'constant'`` keeps ``score_lr``.
        weight_decay
            Adam weight decay of stage 2.
        mixing_steps
            Optimization steps of ``K`` (:meth:`~celldyn.module.LCDModule.fit_mixing`).
        posterior_draws
            Draws of each cell's latent state from its posterior given its counts
            (:meth:`~celldyn.module.LCDModule.posterior_draws`) that stage 2 fits the score
            to (one at random per cell and batch); ``0``: the fitted (MAP) states. The MAP
            states are shrunk towards their condition's prior mean, most where counts are
            low, so a score fitted to them samples too narrow a law and too few zero counts
            (see the user guide, "Training"). Before the draws, the gene scales are matched
            to the expected counts of draws from the posterior
            (:meth:`~celldyn.module.LCDModule.match_scale`). The draws are stored:
            ``posterior_draws`` × cells × genes floats (16 × 100,000 × 2,000: 12.8 GB), so
            use fewer for large data.
        sparse_latent
            How stage 1 updates the latent states. ``True``: only those of the minibatch's
            cells at each step, the others lazily (:class:`~celldyn.module._lcd.RowSparseAdam`):
            a cell's state gets the steps it skipped, in closed form, before its next
            minibatch and after every epoch, so the fit is dense Adam's up to rounding, at
            cells × genes per epoch. ``False``: one Adam over the whole latent matrix, whose
            every step moves every state (the moments of the absent cells carry on), at
            cells² × genes / ``batch_size`` per epoch. ``'auto'`` (default): row-sparse from
            8 minibatches per epoch (⌈cells / ``batch_size``⌉) on, dense with fewer, where it
            is as fast or a little faster (benchmarks/README.md, "LCD: speed"); the choice
            is logged at info level. Under DDP stage 1 takes the dense path either way (DDP's
            reducer takes sparse gradients only from sparse :class:`torch.nn.Embedding`
            modules); the optimizer's update is then Adam's.
        random_state
            Seed of the minibatch order, the noise draws and the weights' updates.
        {lightning_kwargs}
        """
        check_int(max_epochs, "max_epochs", 1)
        check_int(score_epochs, "score_epochs", 1)
        check_int(batch_size, "batch_size", 1)
        check_int(score_batch_size, "score_batch_size", 1)
        check_positive(lr, "lr")
        check_positive(score_lr, "score_lr")
        check_positive(weight_decay, "weight_decay", strict=False)
        check_int(mixing_steps, "mixing_steps", 1)
        check_int(posterior_draws, "posterior_draws", 0)
        check_int(random_state, "random_state", 0)
        check_in(sparse_latent, (True, False, "auto"), "sparse_latent")
        if score_schedule not in _SCHEDULES:
            raise ValueError(
                f"`score_schedule` must be one of {_SCHEDULES}, got {score_schedule!r}."
            )
        options = lightning_options(lightning_kwargs)  # checks `progress` before training
        torch.manual_seed(random_state)
        counts, library = self._counts(self.adata)
        observed = TensorDataModule(
            {
                "index": torch.arange(len(counts)),
                "counts": torch.as_tensor(counts),
                "library": torch.as_tensor(library),
                "condition": torch.as_tensor(self._codes),
            },
            batch_size=batch_size,
            validation_size=0.0,
            random_state=random_state,
        )
        n_batches = -(-len(counts) // batch_size)
        if sparse_latent == "auto":
            sparse = n_batches >= _SPARSE_LATENT_MIN_BATCHES
        else:
            sparse = bool(sparse_latent)
        logger.info(
            "LCD stage 1: %s updates of the latent states (sparse_latent=%r, %d minibatches "
            "per epoch)",
            "row-sparse" if sparse else "dense",
            sparse_latent,
            n_batches,
        )
        guard = _DivergenceGuard("observation", lr)
        prior_update = _PriorUpdate(observed.tensors, lr)
        stage1 = dict(options)
        if sparse:
            plan = dict(options["plan_kwargs"] or {})
            eps = plan.get("eps", ADAM_EPS)
            plan.update(
                optimizer="Custom",
                optimizer_creator=partial(RowSparseAdam, lr=lr, eps=eps),  # picklable
            )
            stage1["plan_kwargs"] = plan
        self.module.sparse_latent = sparse
        try:
            with self.module.training_stage("observation"):
                self._fit(
                    observed,
                    max_epochs=max_epochs,
                    lr=lr,
                    model_callbacks=[guard, *([_CatchUp()] if sparse else []), prior_update],
                    **stage1,
                )
        finally:
            self.module.sparse_latent = False
        observation_history = self.history_ or {}
        self.history_, self.is_trained_ = None, False

        latent = self.get_latent()
        mask, _ = self._condition_inputs(self.perturbation_labels_)
        if posterior_draws:
            device = self.module.latent.device
            inputs = [observed.tensors[k].to(device) for k in ("counts", *_PRIOR_INPUTS)]
            generator = torch.Generator(device=device).manual_seed(random_state)
            for _ in range(_SCALE_STEPS):
                draws = self.module.posterior_draws(*inputs, _SCALE_DRAWS, generator=generator)
                self.module.match_scale(inputs[0], inputs[1], draws)
            states = self.module.posterior_draws(*inputs, posterior_draws, generator=generator)
            states = states.cpu()
            if not torch.isfinite(states).all():
                raise SolverDivergedError(
                    "LCD training diverged: the posterior draws of the latent states after stage "
                    f"1 hold NaN or infinite values. Lower `lr` (now {lr!r})."
                )
        else:
            states = torch.as_tensor(latent, dtype=torch.float32)
        # units of the law the score is fitted to: at low counts the MAP states of most genes
        # barely move from their prior means while the draws spread as the posterior does
        flat = states.numpy().reshape(-1, latent.shape[1])
        spread = flat.std(0) + 1e-6
        self.module.set_units(flat.mean(0), spread)
        self.module.sigmas.copy_(torch.as_tensor(self._relative_sigmas * float(np.median(spread))))
        self.module.drift_sigma.copy_(self.module.sigmas[self._drift_level])
        self.module.set_base(*_gaussian_base(states.numpy(), self._codes, mask.numpy()))
        scored = TensorDataModule(
            {"x": states, "mask": mask[self._codes]},
            batch_size=score_batch_size,
            validation_size=0.0,
            random_state=random_state,
        )
        decay = [_CosineDecay()] if score_schedule == "cosine" else []
        guard = _DivergenceGuard("score", score_lr)
        with self.module.training_stage("score"):
            self._fit(
                scored,
                max_epochs=score_epochs,
                lr=score_lr,
                weight_decay=weight_decay,
                model_callbacks=[guard, *decay],
                **options,
            )
        history = {f"observation_{k}": v for k, v in observation_history.items()}
        history.update({f"score_{k}": v for k, v in (self.history_ or {}).items()})

        trace = self.module.fit_mixing(self._score_responses(latent), n_steps=mixing_steps)
        history["mixing_objective"] = pd.DataFrame({"mixing_objective": trace})
        self.history_ = history
        mixing = (self.module.mixing_upper, self.module.log_diffusion)
        if not all(torch.isfinite(p).all() for p in mixing):
            raise SolverDivergedError("Fitting the drift mixing K produced NaN values.")

    @torch.no_grad()
    def _score_responses(self, latent: np.ndarray, budget: int = 2**22) -> torch.Tensor:
        """Score responses ``−J(x) l_q`` to every condition's mean shift at control cells.

        ``l_q`` is the shift of condition ``q``'s mean fitted state from the control's; the
        control cells are subsampled so that all responses hold about ``budget`` numbers.
        """
        shifts = self._mean_shifts(latent)
        control = np.flatnonzero(self._codes == 0)
        n_cells = int(np.clip(budget // max(shifts.size, 1), 16, 256))
        cells = np.random.default_rng(0).choice(control, min(n_cells, len(control)), replace=False)
        x = torch.as_tensor(latent[cells], dtype=torch.float32, device=self.device)
        shifts = torch.as_tensor(shifts, dtype=torch.float32, device=self.device)
        e = self._condition_code(self.control, len(x))
        responses = self.module.translation_responses(x, e, shifts)
        return responses.reshape(-1, responses.shape[-1])

    def _mean_shifts(self, latent: np.ndarray) -> np.ndarray:
        """Mean fitted state of every perturbed condition minus the control's, ``(Q − 1, G)``."""
        means = np.stack(
            [latent[self._codes == q].mean(0) for q in range(len(self.perturbation_labels_))]
        )
        return means[1:] - means[0]

    # ------------------------------------------------------------------ getters
    def _condition_code(self, perturbation: str, n: int) -> torch.Tensor:
        mask, n_unknown = self._condition_inputs([perturbation])
        c = self.module.embed(mask.to(self.device), n_unknown.to(self.device))
        return c.expand(n, -1)

    def _points(self, x: object, name: str) -> np.ndarray:
        """``x`` as float32 ``(n, n_genes)`` latent points, ``n >= 1``, all finite."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != len(self.genes_) or len(x) == 0:
            raise ValueError(
                f"`{name}` must have shape (n, {len(self.genes_)}) with n > 0, got {x.shape}."
            )
        check_finite(x, f"`{name}` (as float32)")
        return x

    @staticmethod
    def _finite_result(out: torch.Tensor, what: str) -> np.ndarray:
        if not torch.isfinite(out).all():
            raise ValueError(
                f"The {what} is not finite at some of `x`: the points lie too far from the "
                "fitted latent states."
            )
        return out.cpu().numpy().astype(np.float64)

    def _score(self, x: torch.Tensor, perturbation: str, sigma: float | torch.Tensor):
        sig = torch.as_tensor(sigma, dtype=torch.float32, device=self.device).expand(len(x))
        return self.module.score(x, sig, self._condition_code(perturbation, len(x)))

    def get_latent(
        self, adata: AnnData | None = None, *, indices: Sequence[int] | None = None
    ) -> np.ndarray:
        """Fitted latent state of every training cell, ``(n_obs, n_genes)``.

        Parameters
        ----------
        adata
            ``None`` or the training AnnData (latent states are fitted per training cell).
        indices
            Cells to return (positions or a boolean mask; default all).
        """
        if adata is not None and (
            check_adata(adata).n_obs != self.adata.n_obs
            or not adata.obs_names.equals(self.adata.obs_names)
        ):
            raise ValueError(
                "`adata` must be None or the training AnnData: LCD fits latent states of its "
                "training cells only."
            )
        cells = check_indices(indices, self.adata.n_obs)
        return self.module.latent.detach().cpu().numpy()[cells].astype(np.float64)

    def get_drift(
        self, x: np.ndarray, perturbation: str, *, batch_size: int | None = None
    ) -> np.ndarray:
        """Causal drift ``f(x, e_q) = (D + K) s(x, σ_f, e_q)`` at latent points ``x``.

        Parameters
        ----------
        x
            Latent points ``(n, n_genes)``.
        perturbation
            Condition label: ``control``, ``'A'``, ``'A+B'`` (genes never perturbed in
            training get the mean learnt embedding).
        batch_size
            Points per block of the computation (default 4096); the result does not depend
            on it.

        Returns
        -------
        Array ``(n, n_genes)``; entry ``[c, i]`` is ``dx_i/dt`` of point ``c``.
        """
        self._check_label(perturbation)
        x = self._points(x, "x")
        self.module.eval()

        def drift(xb):
            return self.module.drift(xb, self._condition_code(perturbation, len(xb)))

        out = batched(drift, x, device=self.device, batch_size=batch_size)
        return self._finite_result(torch.from_numpy(out), "drift")

    def get_drift_response(
        self, x: np.ndarray, shifts: np.ndarray, *, batch_size: int | None = None
    ) -> np.ndarray:
        """Change of the control drift when its stationary law is translated, at points ``x``.

        A shift intervention on a linear diffusion translates the stationary law by its mean
        shift ``l`` and the drift by the same: ``f_q(x) = f_ctrl(x − l)``. Row ``k`` of the
        result is the mean over ``x`` of the first-order change
        ``f_ctrl(x − l_k) − f_ctrl(x) ≈ −(D + K) J(x) l_k``, ``J`` the Jacobian of the control
        score at ``σ_f``; at control cells it is the initial velocity ``v_q`` CLIPR needs
        (:func:`celldyn.tl.perturbation_responses`).

        Parameters
        ----------
        x
            Latent points ``(n, n_genes)``, e.g. the control cells' fitted states.
        shifts
            Translations ``(k, n_genes)``, e.g. mean shifts of perturbed conditions.
        batch_size
            Points per block of the computation (default 4096).

        Returns
        -------
        Array ``(k, n_genes)``.
        """
        x = self._points(x, "x")
        shifts = self._points(shifts, "shifts")
        self.module.eval()
        directions = torch.as_tensor(shifts, device=self.device)

        def block_sum(xb):  # sum over the block's points, shape (1, k, n_genes)
            e = self._condition_code(self.control, len(xb))
            responses = self.module.translation_responses(xb, e, directions)
            return self.module.apply_mixing(responses.sum(1))[None]

        total = batched(block_sum, x, device=self.device, batch_size=batch_size).sum(0)
        return self._finite_result(torch.from_numpy(total) / len(x), "drift response")

    @torch.no_grad()
    def sample_latent(
        self,
        perturbation: str,
        n_cells: int,
        *,
        n_steps: int = 50,
        step_size: float = 0.1,
        random_state: int = 0,
    ) -> np.ndarray:
        """Stationary latent samples of a condition by annealed Langevin dynamics.

        At each noise level ``σ`` from the largest down to ``σ_f`` (``drift_sigma``, the level
        of the drift) ``n_steps`` Euler–Maruyama steps of ``dx = s(x, σ, e_q) dt + √2 dW``
        with step ``step_size · (σ² + λ²)`` (``λ`` the smallest per-gene spread of the states
        the score was fitted to) are taken from samples of the previous level; the result is
        denoised once by Tweedie's formula ``x + σ_f² s(x, σ_f)``. The levels below ``σ_f``
        are not used: there the network approaches the score of its training cells (see the
        user guide).

        Parameters
        ----------
        perturbation
            Condition label (``control``, ``'A'``, ``'A+B'``).
        n_cells
            Number of samples.
        n_steps
            Langevin steps per noise level.
        step_size
            Relative step size.
        random_state
            Seed.

        Returns
        -------
        Array ``(n_cells, n_genes)``.
        """
        self._check_label(perturbation)
        n_cells = check_int(n_cells, "n_cells", 1)
        n_steps, random_state = self._check_sampler(n_steps, step_size, random_state)
        self.module.eval()
        generator = torch.Generator(device=self.device).manual_seed(random_state)
        m = self.module
        floor = float(m.spread.min()) ** 2
        spread = torch.sqrt(m.spread**2 + m.sigmas[0] ** 2)
        noise = torch.randn(n_cells, len(self.genes_), generator=generator, device=self.device)
        x = m.center + spread * noise
        levels = [*(sigma for sigma in m.sigmas if sigma > m.drift_sigma), m.drift_sigma]
        for sigma in levels:
            dt = step_size * (float(sigma) ** 2 + floor)
            for _ in range(n_steps):
                noise = torch.randn(x.shape, generator=generator, device=self.device)
                x = x + dt * self._score(x, perturbation, sigma) + (2 * dt) ** 0.5 * noise
        x = x + m.drift_sigma**2 * self._score(x, perturbation, m.drift_sigma)
        if not torch.isfinite(x).all():
            raise SolverDivergedError(f"Sampling {perturbation!r} diverged; lower `step_size`.")
        return x.cpu().numpy().astype(np.float64)

    @staticmethod
    def _check_sampler(n_steps: int, step_size: float, random_state: int) -> tuple[int, int]:
        check_positive(step_size, "step_size")
        return check_int(n_steps, "n_steps", 1), check_int(random_state, "random_state", 0)

    @torch.no_grad()
    def predict(
        self,
        perturbations: Sequence[str],
        n_cells: int = 200,
        *,
        n_steps: int = 50,
        step_size: float = 0.1,
        library_sizes: str = "shifted",
        sampling: str = "representative",
        pool_factor: int = 10,
        random_state: int = 0,
    ) -> AnnData:
        """Generate cells of (possibly unseen) perturbation conditions.

        Latent states come from :meth:`sample_latent`; counts are drawn from the observation
        model with library sizes resampled from the control cells and, by default, scaled by
        the condition's library shift ``exp(Σ_{g∈q} δ_g)``. By default each condition's
        ``n_cells`` are the most representative of a larger pool of generated cells.

        Parameters
        ----------
        perturbations
            Condition labels, e.g. ``['A', 'A+B']`` (at least one).
        n_cells
            Cells per condition.
        n_steps, step_size
            Langevin steps per noise level and relative step size (:meth:`sample_latent`).
        library_sizes
            ``'shifted'`` (default): the control cells' library sizes times
            ``exp(Σ_{g∈q} δ_g)``, where ``δ_g``, the shift of the log library size by gene
            ``g``, is fitted by least squares to the training conditions' mean log library
            sizes (additive in the perturbed genes, like the latent means of the Gaussian
            base) and shrunk towards 0 by empirical Bayes, to 0 where the library sizes do
            not depend on the condition; a gene never perturbed in training gets the mean
            shift. Where a perturbation
            changes the total counts (library sizes are the total counts over their mean unless
            ``size_factor_key`` is set) the generated cells keep that change, and with it their
            zero fraction and log-normalized means (benchmarks/README.md, "Session 15").
            ``'control'``: the control cells' library sizes for every condition.
        sampling
            ``'representative'`` (default): generate ``pool_factor × n_cells`` cells per
            condition (at most ``max(n_cells, 20000)``) and keep the ``n_cells`` whose
            ``log_normalized`` values best represent the pool (greedy support points: each
            next cell is the one that most lowers the energy distance between the kept cells
            and the pool). Every kept cell is a generated cell, unchanged; the sample's mean
            carries far less Monte Carlo noise than ``n_cells`` independent draws, at nearly
            the same spread (a few per cent less), so scores against observed cells measure
            the model rather than the draw (benchmarks/README.md, "Representative cells").
            The kept cells are not independent: for anything that needs independent draws
            (e.g. resampling a statistic) use ``'independent'``, ``n_cells`` independent
            draws.
        pool_factor
            Pool size per kept cell of ``'representative'`` (>= 1).
        random_state
            Seed.

        Returns
        -------
        AnnData with ``X`` the float32 counts, ``layers['counts']`` (same),
        ``layers['log_normalized']`` (``log1p`` of counts scaled to 10⁴ per cell),
        ``layers['latent']`` (latent states) and ``obs['perturbation']`` (categorical).
        """
        if isinstance(perturbations, str):
            perturbations = [perturbations]
        if not isinstance(perturbations, Iterable):
            raise TypeError(
                f"`perturbations` must be a list of condition labels, got {perturbations!r}."
            )
        perturbations = [self._check_label(p) for p in perturbations]
        if not perturbations:
            raise ValueError("`perturbations` must name at least one condition, got none.")
        n_cells = check_int(n_cells, "n_cells", 1)
        self._check_sampler(n_steps, step_size, random_state)
        check_in(library_sizes, _LIBRARY_SIZES, "library_sizes")
        check_in(sampling, _SAMPLING, "sampling")
        pool_factor = check_int(pool_factor, "pool_factor", 1)
        n_pool = n_cells
        if sampling == "representative":
            n_pool = min(pool_factor * n_cells, max(n_cells, _MAX_POOL))
        _, library = self._counts(self.adata)
        factors = np.ones(len(perturbations))
        if library_sizes == "shifted":
            factors = self._library_factors(perturbations, library)
        library = library[self._codes == 0]
        rng = np.random.default_rng(random_state)
        parts = [
            self._generate(
                p,
                n_cells,
                n_pool,
                factor * rng.choice(library, n_pool),
                n_steps=n_steps,
                step_size=step_size,
                random_state=random_state + i,
            )
            for i, (p, factor) in enumerate(zip(perturbations, factors, strict=True))
        ]
        counts, log_normalized, latent = (np.concatenate(part) for part in zip(*parts, strict=True))
        obs = pd.DataFrame(
            {
                _keys.PERTURBATION: pd.Categorical(
                    np.repeat(perturbations, n_cells), categories=list(dict.fromkeys(perturbations))
                )
            },
            index=[f"lcd{i}" for i in range(len(latent))],
        )
        return AnnData(
            counts,
            obs=obs,
            var=pd.DataFrame(index=self.genes_),
            layers={
                _keys.COUNTS: counts.copy(),
                _keys.LOG_NORMALIZED: log_normalized,
                _keys.LATENT: latent,
            },
        )

    def _generate(
        self,
        perturbation: str,
        n_cells: int,
        n_pool: int,
        library: np.ndarray,
        *,
        n_steps: int,
        step_size: float,
        random_state: int,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Generate one condition's cells: counts, ``log1p`` of counts per 10⁴, latent states.

        ``n_pool`` cells are generated with library sizes ``library``; of more than
        ``n_cells`` the most representative are kept (:func:`representative_subset`), one
        condition at a time, so the pool never has to fit in memory for all conditions.
        """
        latent = self.sample_latent(
            perturbation, n_pool, n_steps=n_steps, step_size=step_size, random_state=random_state
        )
        lib = torch.as_tensor(library, dtype=torch.float32, device=self.device)
        x = torch.as_tensor(latent, dtype=torch.float32, device=self.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(random_state)
            counts = self.module.observation(x, lib).sample().cpu().numpy().astype(np.float32)
        total = np.maximum(counts.sum(1, keepdims=True), 1.0)
        log_normalized = np.log1p(counts / total * _TARGET_SUM).astype(np.float32)
        points = torch.as_tensor(log_normalized, device=self.device)
        keep = representative_subset(points, n_cells, random_state=random_state)
        return counts[keep], log_normalized[keep], latent[keep].astype(np.float32)

    def _library_factors(self, perturbations: Sequence[str], library: np.ndarray) -> np.ndarray:
        """Library-size factors ``exp(Σ_{g∈q} δ_g)`` of conditions (:func:`_library_shifts`).

        ``library`` holds the training cells' library sizes.
        """
        mask, _ = self._condition_inputs(self.perturbation_labels_)
        shifts = _library_shifts(library, self._codes, mask.numpy().astype(np.float64))
        mask, n_unknown = self._condition_inputs(perturbations)
        log_factor = sum_of_rows(
            torch.as_tensor(shifts[:, None]), mask.double(), n_unknown.double()
        )
        return np.exp(log_factor.numpy()[:, 0])

    # ------------------------------------------------------------------ contract with tl
    def perturbation_responses(
        self,
        perturbations: Sequence[str] | None = None,
        *,
        n_samples: int = 500,
        random_state: int = 0,
    ) -> PerturbationResponses:
        """Responses to perturbation conditions, the inputs of CLIPR.

        ``l_q`` is the shift of the mean latent state from the control's: of the fitted
        states for a trained condition, of ``n_samples`` stationary samples
        (:meth:`sample_latent`, the same seed for the condition and the control) for any
        other label. ``v_q`` is the change of the control drift when its law is translated
        by ``l_q``, to first order, mean over the control cells' fitted states
        (:meth:`get_drift_response`).

        Parameters
        ----------
        perturbations
            Condition labels (``'A'``, ``'A+B'``); default every trained condition.
        n_samples, random_state
            Stationary samples per condition absent from training, and their seed.
        """
        latent = self.get_latent()
        labels = self.adata.obs[self.perturbation_key].astype(str).to_numpy()
        if perturbations is None:
            perturbations = [q for q in self.perturbation_labels_ if q != self.control]
        if isinstance(perturbations, str) or len(perturbations) == 0:
            raise ValueError("`perturbations` must be a non-empty sequence of condition labels.")
        ctrl = latent[labels == self.control]
        shifts, sampled_control = [], None
        for q in perturbations:
            self._check_label(q)
            if q in self.perturbation_labels_:
                shifts.append(latent[labels == q].mean(0) - ctrl.mean(0))
                continue
            if sampled_control is None:
                sampled_control = self.sample_latent(
                    self.control, n_samples, random_state=random_state
                ).mean(0)
            sample = self.sample_latent(q, n_samples, random_state=random_state)
            shifts.append(sample.mean(0) - sampled_control)
        shifts = np.stack(shifts)
        return PerturbationResponses(
            [str(q) for q in perturbations],
            self.get_drift_response(ctrl, shifts),
            shifts,
            ctrl.mean(0),
            latent.shape[1],
            dict(self.intervention_targets_),
            explicit_knockdowns=False,
        )

    @classmethod
    def results(cls, models: Sequence[LCD], key_added: str) -> FitResults:
        """Return what :func:`celldyn.tl.lcd` writes for a fitted model (one-element sequence).

        ``obsm['X_{key_added}']``: the fitted latent states; ``uns[key_added]``: the
        conditions, interventions and their targets and the fitted observation and drift
        parameters.
        """
        (model,) = models
        module = model.module
        uns = {
            "perturbation_labels": np.asarray(model.perturbation_labels_, dtype=object),
            "interventions": np.asarray(model.interventions_, dtype=object),
            "targets": dict(model.intervention_targets_),
            "gene_scale": torch.exp(module.log_scale).detach().cpu().numpy(),
            "inverse_dispersion": torch.exp(module.log_theta).detach().cpu().numpy(),
            "diffusion": module.diffusion().detach().cpu().numpy(),
            "mixing": module.mixing().detach().cpu().numpy(),
            "sigmas": module.sigmas.cpu().numpy(),
            "drift_sigma": float(module.drift_sigma),
        }
        latent = {_keys.obsm.latent_states(key_added): model.get_latent().astype(np.float32)}
        return FitResults({"obsm": latent}, uns=uns)
