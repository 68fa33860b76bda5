"""LCD module (Lorch et al. 2026): count observation model, score network, causal drift."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from scvi.distributions import NegativeBinomial
from scvi.module.base import BaseModuleClass, LossOutput
from torch import nn

from ..nn import ScoreNet
from ..nn._score import sum_of_rows

STAGES = ("observation", "score")
_STAGE_PARAMETERS = {
    "observation": ("latent", "log_scale", "log_theta", "prior_mean"),
    "score": ("score_net",),
}
"""Parameters (attribute names) each stage's loss trains."""
SCORE_BASES = ("gaussian", "none")


def _distributed() -> bool:
    """Whether this process is one of several (DDP)."""
    dist = torch.distributed
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


_SERIES_TAIL = 1e-18
"""Terms of the skipped-step series below this fraction of the first are dropped."""


def _skipped_step_series(beta1: float, beta2: float, n: int) -> torch.Tensor:
    """Return ``S_s = Σ_{j ≥ 1} ρ^j c(s + j)``, ``s = 0, …, n``: sums over skipped steps.

    Row 0: ``ρ = β1 / √β2``, ``c(u) = √(1 − β2^u) / (1 − β1^u)``; row 1: ``ρ = β1 / β2``,
    ``c(u) = (1 − β2^u) / (1 − β1^u)`` (:class:`RowSparseAdam`). The sum over the steps
    ``s + 1, …, s + k`` is ``S_s − ρ^k S_{s+k}``.

    Returns
    -------
    ``(2, n + 1)`` float64 tensor.
    """
    ratios = (beta1 / math.sqrt(beta2), beta1 / beta2)
    terms = math.ceil(math.log(_SERIES_TAIL) / math.log(max(ratios))) if beta1 > 0 else 1
    u = np.arange(1, n + terms + 1, dtype=np.float64)
    corrections = (np.sqrt(1 - beta2**u) / (1 - beta1**u), (1 - beta2**u) / (1 - beta1**u))
    j = np.arange(1, terms + 1)
    return torch.as_tensor(
        np.stack(
            [
                np.correlate(c, rho**j, mode="valid")
                for rho, c in zip(ratios, corrections, strict=True)
            ]
        )
    )


class RowSparseAdam(torch.optim.Optimizer):
    """Adam that updates only the rows of a sparse gradient, and moves them as dense Adam.

    A parameter with a dense gradient gets :class:`torch.optim.Adam`'s update. A parameter
    with a sparse COO gradient (``F.embedding(..., sparse=True)``: the rows a minibatch
    used) is updated lazily. Dense Adam gives the other rows a zero gradient: their moments
    decay (``m ← β1 m``, ``v ← β2 v``) and they keep moving on them, by
    ``lr m̂ / (√v̂ + eps)`` at every step. Here each row remembers the step it was last
    brought to, ``s``; before a loss reads it again (:meth:`catch_up` with its rows), or
    before the whole parameter is read (:meth:`catch_up`), the ``k`` steps it skipped are
    applied at once: it moves by ``−lr m W / (√v + ē)`` and its moments decay by ``β1^k``
    and ``β2^k``. ``W = Σ_j w_j``, ``w_j = r^j √(1 − β2^u) / (1 − β1^u)`` over the skipped
    steps ``u = s + j`` (``r = β1 / √β2``, Adam's bias corrections of the global step ``u``),
    is a difference of two precomputed sums (:func:`_skipped_step_series`). Dense Adam's
    displacement is ``−lr m Σ_j w_j / (√v + e_j)`` with ``e_j = eps √(1 − β2^u) / β2^(j/2)``;
    ``ē`` is the ``w``-weighted mean of the ``e_j``, which makes the error second order, a
    relative error below ``((max_j e_j − ē) / √v)²`` (exact for ``eps → 0``; it shows only
    where ``√v`` is a few ``eps``, gradients of almost 0). A step then costs the
    gradient's rows, not the whole matrix, and leaves every row, once caught up, where dense
    Adam leaves it (up to rounding; with every row in every step, to the last bit). The
    learning rate is taken as constant over the skipped steps.

    Parameters
    ----------
    params
        Parameters or parameter groups.
    lr, betas, eps
        As :class:`torch.optim.Adam`, with ``betas[0] < betas[1]`` and ``eps > 0``; no
        weight decay (it would give the skipped rows a gradient).
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        if not 0 <= betas[0] < betas[1] < 1:
            raise ValueError(f"`betas` must satisfy 0 <= β1 < β2 < 1, got {betas}.")
        if not eps > 0:
            raise ValueError(f"`eps` must be positive, got {eps}.")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})
        self._series: dict[tuple[float, float], torch.Tensor] = {}

    @torch.no_grad()
    def step(self, closure=None):
        """One Adam step; ``closure`` re-evaluates the loss (Lightning passes one)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group)
        return loss

    @torch.no_grad()
    def catch_up(self, rows: torch.Tensor | None = None) -> None:
        """Bring rows of the sparse-gradient parameters to the last step, as dense Adam.

        Call it with the rows a loss is about to read (the gradient must be taken where
        dense Adam's row is), and without rows before the parameter is read as a whole.

        Parameters
        ----------
        rows
            Unique row indices; default every row.
        """
        for group in self.param_groups:
            for p in group["params"]:
                if "row_step" in self.state[p]:
                    self._catch_up(p, group, rows)

    def _catch_up(self, p: torch.Tensor, group: dict, rows: torch.Tensor | None = None) -> None:
        if rows is not None:
            self._update_rows(p, group, rows.to(p.device))
            return
        state = self.state[p]  # every row, in place (those up to date do not move)
        self._skip(p, group, p, state["exp_avg"], state["exp_avg_sq"], state["row_step"])
        state["row_step"].fill_(state["step"])

    def _update(self, p: torch.Tensor, group: dict) -> None:
        (beta1, beta2), eps, lr = group["betas"], group["eps"], group["lr"]
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        if p.grad.is_sparse:
            if "row_step" not in state:
                state["row_step"] = torch.full((p.shape[0],), state["step"], device=p.device)
            grad = p.grad.coalesce()
            state["step"] += 1
            self._update_rows(p, group, grad.indices()[0], grad.values())
            return
        if "row_step" in state:  # sparse gradients so far: every row to the last step first
            self._catch_up(p, group)
            del state["row_step"]
        state["step"] += 1
        step = state["step"]
        state["exp_avg"].lerp_(p.grad, 1 - beta1)  # torch's Adam, operation for operation
        state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
        denom = (state["exp_avg_sq"].sqrt() / (1 - beta2**step) ** 0.5).add_(eps)
        p.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - beta1**step))

    def _update_rows(
        self, p: torch.Tensor, group: dict, rows: torch.Tensor, grad: torch.Tensor | None = None
    ) -> None:
        """Bring ``rows`` of ``p`` to the last step; with their ``grad``, take this step too.

        Without ``grad`` the rows are brought to step ``state['step']``; with it, to the
        step before, and step ``state['step']`` is then taken with ``grad``.
        """
        (beta1, beta2), eps, lr = group["betas"], group["eps"], group["lr"]
        state = self.state[p]
        step = state["step"]
        last = step - (grad is not None)
        before = state["row_step"].index_select(0, rows)
        if grad is None and not bool((before < last).any()):
            return
        x = p.index_select(0, rows)
        exp_avg = state["exp_avg"].index_select(0, rows)
        exp_avg_sq = state["exp_avg_sq"].index_select(0, rows)
        self._skip(p, group, x, exp_avg, exp_avg_sq, before, last)
        if grad is not None:
            exp_avg.lerp_(grad, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (exp_avg_sq.sqrt() / (1 - beta2**step) ** 0.5).add_(eps)
            x.addcdiv_(exp_avg, denom, value=-lr / (1 - beta1**step))
        p.index_copy_(0, rows, x)
        state["exp_avg"].index_copy_(0, rows, exp_avg)
        state["exp_avg_sq"].index_copy_(0, rows, exp_avg_sq)
        state["row_step"].index_fill_(0, rows, step)

    def _skip(
        self,
        p: torch.Tensor,
        group: dict,
        x: torch.Tensor,
        exp_avg: torch.Tensor,
        exp_avg_sq: torch.Tensor,
        before: torch.Tensor,
        last: int | None = None,
    ) -> None:
        """Apply dense Adam's zero-gradient steps to rows ``x`` of ``p``, in place.

        The steps after ``before`` (per row) up to ``last`` (default the last step); the
        moments ``exp_avg`` and ``exp_avg_sq`` of the rows decay in place too.
        """
        (beta1, beta2), eps, lr = group["betas"], group["eps"], group["lr"]
        step = self.state[p]["step"]
        last = step if last is None else last
        skipped = last - before
        if not bool((skipped > 0).any()):
            return
        series = self._series.get((beta1, beta2))
        if series is None or series.shape[1] <= step:
            series = _skipped_step_series(beta1, beta2, max(2 * step, 1024)).to(p.device)
            self._series[(beta1, beta2)] = series
        k = skipped.to(torch.float64)
        ratios = torch.tensor([beta1 / math.sqrt(beta2), beta1 / beta2], dtype=k.dtype)
        sums = series[:, before] - ratios.to(k.device)[:, None] ** k * series[:, last, None]
        floor = torch.where(skipped > 0, eps * sums[1] / sums[0], eps)
        shape = (-1,) + (1,) * (p.dim() - 1)
        weight, floor, decay1, decay2 = (
            v.to(p.dtype).view(shape) for v in (sums[0], floor, beta1**k, beta2**k)
        )
        x.addcdiv_(exp_avg * weight, exp_avg_sq.sqrt().add_(floor), value=-lr)
        exp_avg.mul_(decay1)
        exp_avg_sq.mul_(decay2)


class LCDModule(BaseModuleClass):
    """Latent causal diffusion: torch parts of :class:`~celldyn.models.LCD`.

    Stage ``'observation'``: every cell ``n`` has a free latent state ``x_n ∈ R^G`` and its
    counts are ``y_ng ~ NB(mean = softplus(x_ng) · s_g · l_n, inverse dispersion θ_g)`` with a
    learnt per-gene scale ``s_g``, the cell's library size ``l_n`` and a learnt ``θ_g``; the
    latent states have the prior ``N(m_q, diag(v_q))`` of their condition ``q`` (``m_q``
    by gradient, ``v_q`` by Laplace EM in :meth:`update_prior`: a variance learnt by MAP
    would shrink the latent states towards ``m_q``). With ``sparse_latent = True`` the
    gradient of the latent states is sparse, the rows of the minibatch's cells
    (:class:`RowSparseAdam` updates only those, and the others lazily as dense Adam would),
    except under DDP.
    Stage ``'score'``: denoising score matching of the conditional score ``s(x, σ, q)`` over
    the noise levels ``sigmas``, on the fitted latent states ``(n, G)`` or on several
    posterior draws of each (``(n, draws, G)``, :meth:`posterior_draws`). The score is the
    network ``F(x, σ, e_q) / σ`` (:class:`~celldyn.nn.ScoreNet`), with ``score_base='gaussian'``
    plus a Gaussian term, ``s(x, σ, q) = −(x − m_q) / (v + σ²) + F(x, σ, e_q) / σ``: the
    condition mean ``m_q = m_0 + Σ_{g∈q} M_g`` is linear in the perturbed genes and ``v`` is a
    per-gene variance (:meth:`set_base`), so the network learns the non-Gaussian residual and
    the interactions. The causal drift is ``f(x, q) = (D + K) s(x, σ_f, q)`` (``σ_f`` =
    ``drift_sigma``) with a shared diagonal ``D > 0`` (diffusion ``√(2D) dW``, geometric mean
    1) and a shared antisymmetric ``K`` (:meth:`fit_mixing`).

    Parameters
    ----------
    n_cells, n_genes, n_conditions, n_perturbable
        Sizes: cells, genes (= latent dimension), training conditions, genes with embeddings.
    sigmas
        Noise levels of score matching, decreasing.
    drift_sigma
        Noise level ``σ_f`` of the score in the drift; default the smallest of ``sigmas``.
    score_kwargs
        Passed to :class:`~celldyn.nn.ScoreNet`.
    score_base
        ``'gaussian'``: the score adds the Gaussian term above to the network; ``'none'``: the
        network alone.
    """

    def __init__(
        self,
        n_cells: int,
        n_genes: int,
        n_conditions: int,
        n_perturbable: int,
        *,
        sigmas: np.ndarray,
        drift_sigma: float | None = None,
        score_kwargs: dict | None = None,
        score_base: str = "gaussian",
    ):
        super().__init__()
        if score_base not in SCORE_BASES:
            raise ValueError(f"`score_base` must be one of {SCORE_BASES}, got {score_base!r}.")
        self.score_base = score_base
        self.stage = STAGES[0]
        self.sparse_latent = False
        self.latent = nn.Parameter(torch.zeros(n_cells, n_genes))
        self.log_scale = nn.Parameter(torch.zeros(n_genes))
        self.log_theta = nn.Parameter(torch.full((n_genes,), math.log(10.0)))
        self.prior_mean = nn.Parameter(torch.zeros(n_conditions, n_genes))
        self.register_buffer("prior_logvar", torch.zeros(n_conditions, n_genes))
        self.score_net = ScoreNet(n_genes, n_perturbable, **(score_kwargs or {}))
        self.mixing_upper = nn.Parameter(torch.zeros(n_genes * (n_genes - 1) // 2))
        self.log_diffusion = nn.Parameter(torch.zeros(n_genes))
        self.register_buffer("sigmas", torch.as_tensor(np.asarray(sigmas), dtype=torch.float32))
        drift_sigma = self.sigmas[-1] if drift_sigma is None else float(drift_sigma)
        self.register_buffer("drift_sigma", torch.as_tensor(drift_sigma, dtype=torch.float32))
        self.register_buffer("center", torch.zeros(n_genes))
        self.register_buffer("spread", torch.ones(n_genes))
        self.register_buffer("base_mean", torch.zeros(n_genes))
        self.register_buffer("base_shift", torch.zeros(max(n_perturbable, 1), n_genes))
        self.register_buffer("base_var", torch.ones(n_genes))

    @contextmanager
    def training_stage(self, stage: str) -> Iterator[None]:
        """Set ``stage`` and, within the block, freeze the parameters its loss does not use.

        The other stage's parameters and the drift mixing (:meth:`fit_mixing`, fitted outside
        Lightning) get no gradient from the loss. DDP needs a gradient for every trainable
        parameter (it waits for one that never comes and raises), so they are frozen for the
        fit; with one process nothing changes (Adam skips parameters without a gradient).
        """
        self.stage = stage
        idle = [
            p
            for name, p in self.named_parameters()
            if p.requires_grad and name.split(".")[0] not in _STAGE_PARAMETERS[stage]
        ]
        for p in idle:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in idle:
                p.requires_grad_(True)

    # ------------------------------------------------------------------ observation model
    def rate(self, x: torch.Tensor, library: torch.Tensor) -> torch.Tensor:
        """Mean count ``softplus(x) · s_g · l_n`` of latent states ``x`` ``(n, G)``."""
        return F.softplus(x) * torch.exp(self.log_scale) * library[:, None]

    def observation(self, x: torch.Tensor, library: torch.Tensor) -> NegativeBinomial:
        """Count distribution of latent states ``x`` with library sizes ``library``."""
        return NegativeBinomial(mu=self.rate(x, library), theta=torch.exp(self.log_theta))

    @torch.no_grad()
    def posterior_sd(self, library: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Laplace posterior standard deviation ``(I_ng + 1 / v_qg)^(-1/2)`` of the states.

        ``I`` is the Fisher information of the counts about the latent state at its fitted
        value.
        """
        x = self.latent
        mu = self.rate(x, library)
        slope = torch.sigmoid(x) * torch.exp(self.log_scale) * library[:, None]
        fisher = slope**2 / (mu + mu**2 / torch.exp(self.log_theta) + 1e-8)
        return torch.rsqrt(fisher + torch.exp(-self.prior_logvar[condition]))

    @torch.no_grad()
    def update_prior(self, library: torch.Tensor, condition: torch.Tensor) -> None:
        """Empirical-Bayes (Laplace EM) update of the prior variances ``v_q``.

        With the posterior variance ``1 / (I_ng + 1 / v_qg)`` of every latent state (``I``
        the Fisher information of the counts about ``x``), ``v_q`` becomes the mean of the
        squared deviation from ``m_q`` plus that variance over the cells of ``q``.
        """
        posterior_var = self.posterior_sd(library, condition) ** 2
        second = (self.latent - self.prior_mean[condition]) ** 2 + posterior_var
        total = torch.zeros_like(self.prior_logvar).index_add_(0, condition, second)
        n = torch.bincount(condition, minlength=len(total)).clamp_min(1)
        self.prior_logvar.copy_(torch.log(total / n[:, None] + 1e-6))

    @torch.no_grad()
    def posterior_draws(
        self,
        counts: torch.Tensor,
        library: torch.Tensor,
        condition: torch.Tensor,
        n_draws: int,
        *,
        n_grid: int = 64,
        chunk: int = 256,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draws of every cell's latent state from its posterior given the counts.

        Under the fitted model the posterior of ``x_n`` factorizes over genes:
        ``p(x_ng | y_ng) ∝ NB(y_ng; softplus(x_ng) s_g l_n, θ_g) · N(x_ng; m_qg, v_qg)``. Each
        factor is evaluated on ``n_grid`` points spanning ±6 Laplace standard deviations
        (:meth:`posterior_sd`) around the fitted state; a draw is a grid point chosen with
        the posterior weights plus a uniform offset within its grid cell. Unlike the fitted
        (MAP) states, which are shrunk towards ``m_q``, the draws of all cells of a condition
        spread as the data do.

        Parameters
        ----------
        counts, library, condition
            ``(n, G)`` counts, ``(n,)`` library sizes and ``(n,)`` condition codes of all
            cells, in the order of the latent states.
        n_draws
            Draws per cell.
        n_grid
            Grid points per cell and gene.
        chunk
            Cells per chunk (memory ``chunk · G · n_grid``).
        generator
            Random generator.

        Returns
        -------
        ``(n, n_draws, G)`` tensor.
        """
        sd = self.posterior_sd(library, condition)
        offsets = torch.linspace(-6.0, 6.0, n_grid, device=sd.device)
        width = offsets[1] - offsets[0]
        theta = torch.exp(self.log_theta)[:, None]
        out = []
        for s in range(0, len(counts), chunk):
            cells = slice(s, s + chunk)
            center, spread, q = self.latent[cells], sd[cells], condition[cells]
            grid = center[..., None] + spread[..., None] * offsets  # (n, G, n_grid)
            scale = torch.exp(self.log_scale)[:, None] * library[cells, None, None]
            mu = F.softplus(grid) * scale
            log_lik = NegativeBinomial(mu=mu, theta=theta.expand_as(mu)).log_prob(
                counts[cells, :, None].expand_as(mu)
            )
            prior = torch.distributions.Normal(
                self.prior_mean[q, :, None], torch.exp(0.5 * self.prior_logvar[q, :, None])
            )
            weights = torch.softmax(log_lik + prior.log_prob(grid), dim=-1)
            index = torch.multinomial(
                weights.flatten(0, 1), n_draws, replacement=True, generator=generator
            )
            jitter = torch.rand(index.shape, device=sd.device, generator=generator) - 0.5
            t = (offsets[index] + width * jitter).view(*center.shape, n_draws)
            out.append((center[..., None] + spread[..., None] * t).transpose(1, 2))
        return torch.cat(out)

    @torch.no_grad()
    def match_scale(
        self, counts: torch.Tensor, library: torch.Tensor, draws: torch.Tensor
    ) -> torch.Tensor:
        """Monte Carlo M-step of the gene scales ``s_g`` given posterior draws of the states.

        Sets ``s_g`` so that the expected counts under the draws add up to the observed
        ones over all cells, ``Σ_n y_ng = s_g Σ_n l_n E[softplus(x_ng)]`` (the likelihood
        equation of ``s_g`` under Poisson counts, and of the mean under NB ones). The states
        fitted by maximum a posteriori give the mode of each posterior; where counts are few
        the posterior is wide and skewed and the expected rate of its draws exceeds the rate
        at the mode, which this step removes.

        Parameters
        ----------
        counts, library
            ``(n, G)`` counts and ``(n,)`` library sizes.
        draws
            ``(n, draws, G)`` posterior draws (:meth:`posterior_draws`).

        Returns
        -------
        The factors ``(G,)`` the scales were multiplied by.
        """
        expected = (F.softplus(draws).mean(1) * library[:, None]).sum(0) * torch.exp(self.log_scale)
        factor = (counts.sum(0) + 1e-3) / (expected + 1e-3)
        self.log_scale += torch.log(factor)
        return factor

    def _observation_loss(self, tensors: dict) -> LossOutput:
        # with `sparse_latent` the states' gradient holds the minibatch's rows only (one
        # process; DDP's reducer expects the dense gradient it was built for)
        if self.sparse_latent and not _distributed():
            x = F.embedding(tensors["index"], self.latent, sparse=True)
        else:
            x = self.latent[tensors["index"]]
        condition = tensors["condition"]
        log_lik = self.observation(x, tensors["library"]).log_prob(tensors["counts"]).sum(1)
        prior = torch.distributions.Normal(
            self.prior_mean[condition], torch.exp(0.5 * self.prior_logvar[condition])
        )
        log_prior = prior.log_prob(x).sum(1)
        loss = -(log_lik + log_prior).mean()
        return LossOutput(loss=loss, reconstruction_loss=-log_lik, kl_local=-log_prior)

    # ------------------------------------------------------------------ score and drift
    def set_units(self, center: np.ndarray, spread: np.ndarray) -> None:
        """Per-gene centre and spread of the latent states (network input standardization)."""
        self.center.copy_(torch.as_tensor(center, dtype=torch.float32))
        self.spread.copy_(torch.as_tensor(spread, dtype=torch.float32))

    def set_base(self, mean: np.ndarray, shift: np.ndarray, var: np.ndarray) -> None:
        """Set the Gaussian term of the score (``score_base='gaussian'``).

        Parameters
        ----------
        mean
            ``m_0`` ``(G,)``, the intercept (about the mean of the control).
        shift
            ``M`` ``(n_perturbable, G)``, the mean shift of each perturbed gene.
        var
            ``v`` ``(G,)``, positive per-gene variances.
        """
        for buffer, value in ((self.base_mean, mean), (self.base_var, var)):
            buffer.copy_(torch.as_tensor(value, dtype=torch.float32, device=buffer.device))
        self.base_shift[: len(shift)] = torch.as_tensor(
            shift, dtype=torch.float32, device=self.base_shift.device
        )

    def embed(self, mask: torch.Tensor, n_unknown: torch.Tensor | None = None) -> torch.Tensor:
        """Condition codes ``[e_q, m_q]``: the network's embedding and the Gaussian mean.

        ``m_q = m_0 + mask @ M`` plus ``n_unknown`` times the mean row of ``M`` (the same
        fallback as the embedding, :meth:`~celldyn.nn.ScoreNet.embed`).

        Parameters
        ----------
        mask
            ``(n, n_perturbable)`` 0/1 matrix of the perturbed genes with a learnt vector.
        n_unknown
            ``(n,)`` number of perturbed genes without a learnt vector (default none).

        Returns
        -------
        ``(n, embed_dim + G)`` tensor.
        """
        shift = self.base_shift[: self.score_net.n_perturbable]
        mean = self.base_mean + sum_of_rows(shift, mask, n_unknown)
        return torch.cat([self.score_net.embed(mask, n_unknown), mean], dim=1)

    def score(self, x: torch.Tensor, sigma: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Score ``∇ log p_σ(x | q)`` in latent units for condition codes ``c`` (:meth:`embed`).

        The network's input is standardized per gene; with ``score_base='gaussian'`` the term
        ``−(x − m_q) / (v + σ²)`` is added.
        """
        n_genes = x.shape[1]
        e, mean = c[:, :-n_genes], c[:, -n_genes:]
        scale = torch.sqrt(self.spread**2 + sigma[:, None] ** 2)
        s = self.score_net((x - self.center) / scale, sigma, e)
        if self.score_base == "gaussian":
            s = s - (x - mean) / (self.base_var + sigma[:, None] ** 2)
        return s

    def _score_loss(self, tensors: dict) -> LossOutput:
        x = tensors["x"]
        if x.ndim == 3:  # several posterior draws per cell (n, draws, G): one at random
            pick = torch.randint(0, x.shape[1], (len(x),), device=x.device)
            x = x[torch.arange(len(x), device=x.device), pick]
        c = self.embed(tensors["mask"])
        level = torch.randint(0, len(self.sigmas), (len(x),), device=x.device)
        sigma = self.sigmas[level]
        noise = torch.randn_like(x)
        # σ²-weighted DSM: |σ s(x + σ ε) + ε|², equal weight on every noise level
        residual = sigma[:, None] * self.score(x + sigma[:, None] * noise, sigma, c) + noise
        per_cell = 0.5 * (residual**2).sum(1)
        return LossOutput(loss=per_cell.mean(), reconstruction_loss=per_cell)

    def mixing(self) -> torch.Tensor:
        """Antisymmetric ``K`` ``(G, G)`` of the drift ``(I + K) s``."""
        n = self.center.shape[0]
        rows, cols = torch.triu_indices(n, n, offset=1, device=self.mixing_upper.device)
        upper = torch.zeros(n, n, device=self.mixing_upper.device)
        upper[rows, cols] = self.mixing_upper
        return upper - upper.T

    def diffusion(self) -> torch.Tensor:
        """Diagonal ``D`` ``(G,)`` of the drift ``(D + K) s``, geometric mean 1."""
        return torch.exp(self.log_diffusion - self.log_diffusion.mean())

    def apply_mixing(self, s: torch.Tensor) -> torch.Tensor:
        """``(D + K) s`` for rows ``s``."""
        return s * self.diffusion() + s @ self.mixing().T

    def drift(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Causal drift ``f(x, q) = (D + K) s(x, σ_f, q)`` (``σ_f`` = ``drift_sigma``).

        ``c`` holds the condition codes (:meth:`embed`).
        """
        return self.apply_mixing(self.score(x, self.drift_sigma.expand(len(x)), c))

    def translation_responses(
        self, x: torch.Tensor, c: torch.Tensor, shifts: torch.Tensor
    ) -> torch.Tensor:
        """First-order score changes ``−J(x) l`` of translating the law by each shift ``l``.

        ``J(x)`` is the Jacobian in ``x`` of ``s(x, σ_f, q)``; a law translated by ``l`` has the
        score ``s(x − l) ≈ s(x) − J(x) l``. Computed by forward-mode Jacobian-vector products,
        without forming ``J``.

        Parameters
        ----------
        x
            ``(n, G)`` points.
        c
            ``(n, embed_dim + G)`` condition codes (:meth:`embed`).
        shifts
            ``(k, G)`` translations.

        Returns
        -------
        ``(k, n, G)`` tensor.
        """
        sigma = self.drift_sigma.expand(len(x))

        def score(z: torch.Tensor) -> torch.Tensor:
            return self.score(z, sigma, c)

        return torch.stack(
            [-torch.func.jvp(score, (x,), (shift.expand_as(x),))[1] for shift in shifts]
        )

    def fit_mixing(
        self, responses: torch.Tensor, *, n_steps: int = 2000, lr: float = 0.02
    ) -> list[float]:
        """Choose ``D`` and ``K`` so that the drift responses ``(D + K) r`` are sparse.

        Minimizes the mean of ``Σ_g |((D + K) r)_g|`` over the score responses ``r`` (rows of
        ``responses``, e.g. :meth:`translation_responses` at control cells). Every ``(D + K) s``
        has the same stationary laws; ``D`` absorbs the per-gene units of the fitted latent
        space, which the count model leaves free. ``vᵀ(D + K)v = vᵀDv > 0``, so the
        responses cannot collapse to 0.

        Returns
        -------
        The objective after every step.
        """
        responses = responses.detach()
        scale = responses.abs().mean().clamp_min(1e-12)
        optimizer = torch.optim.Adam([self.mixing_upper, self.log_diffusion], lr=lr)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, n_steps)
        trace = []
        for _ in range(n_steps):
            optimizer.zero_grad()
            objective = self.apply_mixing(responses).abs().sum(1).mean() / scale
            objective.backward()
            optimizer.step()
            schedule.step()
            trace.append(float(objective.detach()))
        return trace

    # ------------------------------------------------------------------ scvi-tools API
    def _get_inference_input(self, tensors: dict) -> dict:
        return {}

    def inference(self) -> dict:
        """Nothing to infer: latent states are free parameters."""
        return {}

    def _get_generative_input(self, tensors: dict, inference_outputs: dict) -> dict:
        return {}

    def generative(self) -> dict:
        """No generative pass; see :meth:`observation` and :meth:`score`."""
        return {}

    def loss(self, tensors: dict, inference_outputs: dict, generative_outputs: dict):
        """Loss of the current ``stage``: negative log joint or denoising score matching."""
        if self.stage == "observation":
            return self._observation_loss(tensors)
        return self._score_loss(tensors)
