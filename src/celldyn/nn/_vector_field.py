"""The FLeCS right-hand side: a gene-network ODE with sigmoid production and linear decay."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ._grn_linear import GRNLinear, check_edges

# keys of GRNVectorField.to_arrays() present for every variant
_ARRAY_KEYS = frozenset(
    ("n_genes", "n_latent", "protein_proxy", "kernel", "src", "dst")
    + ("weight", "edge_scale", "bias", "raw_decay")
)


def _inverse_softplus(x: torch.Tensor) -> torch.Tensor:
    return x + torch.log(-torch.expm1(-x))


def _positive(value: float | Sequence[float] | torch.Tensor, size: int, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(value, dtype=torch.get_default_dtype())
    if tensor.ndim == 0:
        tensor = tensor.expand(size)
    if tensor.shape != (size,):
        raise ValueError(
            f"`{name}` must be a scalar or have shape ({size},), got {tuple(tensor.shape)}."
        )
    if not bool(torch.all(torch.isfinite(tensor) & (tensor > 0))):
        raise ValueError(f"`{name}` must be finite and > 0.")
    return tensor.clone()


class GRNVectorField(nn.Module):
    r"""FLeCS vector field :math:`f(t, y)` on a directed prior gene network.

    Without options the state is the gene expression :math:`G` and

    .. math:: \frac{dG_i}{dt} = \sigma\Big(\sum_{j \to i} W_{ji} G_j + b_i\Big) - \alpha_i G_i,

    with per-edge weights :math:`W` (regulator :math:`j` x target :math:`i`, only on prior
    edges), bias :math:`b` and decay :math:`\alpha = \mathrm{softplus}(\rho) \ge 0` by
    construction (:math:`\rho` is the unconstrained parameter), so trained decays can never turn
    into growth rates.

    ``protein_proxy=True`` gives every gene a protein :math:`P_i` (the two-variable model of the
    reference FLeCS code): regulation acts from proteins,
    :math:`dG_i/dt = \sigma(\sum_{j \to i} W_{ji} P_j + b_i) - \alpha_i G_i` and
    :math:`dP_i/dt = \tau_i G_i - \alpha^P_i P_i` with translation :math:`\tau \ge 0` and protein
    decay :math:`\alpha^P \ge 0` (both softplus-parametrised).

    ``n_latent = k`` adds :math:`k` latent nodes :math:`L` with their own bias and decay, connected
    to every gene in both directions and to each other (self-loops included); they follow the
    same equation as genes and act as regulators through their own value.

    **State layout** (last dimension): ``[genes (n_genes) | proteins (n_genes, only with
    protein_proxy) | latents (n_latent)]``. Build it with :meth:`initial_state`, read genes back
    with :meth:`gene_state`. Leading dimensions (cells) are free.

    Interventions without retraining: :meth:`knockout` scales the outgoing edges of regulators;
    :attr:`production_offset` and :attr:`decay_offset` (genes only) are added to :math:`b` and
    :math:`\alpha` (the total decay is clamped at 0).

    Parameters
    ----------
    n_genes
        Number of genes.
    src
        Regulator gene index of each prior edge (row of the regulator x target matrix).
    dst
        Target gene index of each prior edge.
    n_latent
        Number of latent nodes.
    protein_proxy
        Add one protein per gene through which regulation acts.
    kernel
        Product kernel of :class:`~celldyn.nn.GRNLinear` (``"auto"``, ``"dense"``, ``"csr"``,
        ``"scatter"``).
    weight_init_std
        Standard deviation of the normal initial edge weights.
    decay_init
        Initial gene (and latent) decay, scalar or one value per gene (> 0).
    translation_init, protein_decay_init
        Initial :math:`\tau` and :math:`\alpha^P` (> 0; only with ``protein_proxy``).
    seed
        Seed of the initial edge weights.
    """

    def __init__(
        self,
        n_genes: int,
        src: Sequence[int] | torch.Tensor,
        dst: Sequence[int] | torch.Tensor,
        *,
        n_latent: int = 0,
        protein_proxy: bool = False,
        kernel: str = "auto",
        weight_init_std: float = 0.01,
        decay_init: float | Sequence[float] | torch.Tensor = 0.2,
        translation_init: float | Sequence[float] | torch.Tensor = 0.2,
        protein_decay_init: float | Sequence[float] | torch.Tensor = 0.2,
        seed: int | None = 0,
    ):
        super().__init__()
        if int(n_latent) != n_latent or n_latent < 0:
            raise ValueError(f"`n_latent` must be a non-negative integer, got {n_latent!r}.")
        src_t, dst_t = check_edges(n_genes, src, dst)
        self.n_genes = int(n_genes)
        self.n_latent = int(n_latent)
        self.protein_proxy = bool(protein_proxy)
        self.n_prior_edges = src_t.numel()
        src_all, dst_all = self._with_latent_edges(src_t, dst_t)
        n_nodes = self.n_genes + self.n_latent
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        self.grn = GRNLinear(
            n_nodes,
            src_all,
            dst_all,
            kernel=kernel,
            init_std=weight_init_std,
            generator=generator,
        )
        self.bias = nn.Parameter(torch.zeros(n_nodes))
        decay = _positive(decay_init, self.n_genes, "decay_init")
        decay = torch.cat([decay, decay.mean().expand(self.n_latent)])  # latents: mean decay
        self._raw_decay = nn.Parameter(_inverse_softplus(decay))
        if self.protein_proxy:
            translation = _positive(translation_init, self.n_genes, "translation_init")
            protein_decay = _positive(protein_decay_init, self.n_genes, "protein_decay_init")
            self._raw_translation = nn.Parameter(_inverse_softplus(translation))
            self._raw_protein_decay = nn.Parameter(_inverse_softplus(protein_decay))
        self.register_buffer("edge_scale", torch.ones(self.grn.n_edges))
        self._production_offset: torch.Tensor | None = None
        self._decay_offset: torch.Tensor | None = None

    def _with_latent_edges(self, src: torch.Tensor, dst: torch.Tensor):
        if not self.n_latent:
            return src, dst
        genes = torch.arange(self.n_genes)
        latents = torch.arange(self.n_genes, self.n_genes + self.n_latent)
        g_l = torch.cartesian_prod(genes, latents)
        l_g = torch.cartesian_prod(latents, genes)
        l_l = torch.cartesian_prod(latents, latents)
        extra = torch.cat([g_l, l_g, l_l])
        return torch.cat([src, extra[:, 0]]), torch.cat([dst, extra[:, 1]])

    # ----- sizes and parameters -------------------------------------------------------------
    @property
    def state_dim(self) -> int:
        """Length of the state vector: ``n_genes * (1 + protein_proxy) + n_latent``."""
        return self.n_genes * (2 if self.protein_proxy else 1) + self.n_latent

    @property
    def src(self) -> torch.Tensor:
        """Regulator node of every edge (prior edges first, then latent edges)."""
        return self.grn.src

    @property
    def dst(self) -> torch.Tensor:
        """Target node of every edge (prior edges first, then latent edges)."""
        return self.grn.dst

    def edge_weights(self) -> torch.Tensor:
        """Effective weight of every edge: learnt weight times the knockout scale."""
        return self.grn.weight * self.edge_scale

    def prior_edge_weights(self) -> torch.Tensor:
        """Effective weights of the prior edges, in the order of the ``src``/``dst`` given."""
        return self.edge_weights()[: self.n_prior_edges]

    @property
    def decay(self) -> torch.Tensor:
        """Learnt decay ``softplus(raw) >= 0`` of genes then latents (offsets not included)."""
        return F.softplus(self._raw_decay)

    @property
    def translation(self) -> torch.Tensor | None:
        """Translation rates ``tau >= 0`` (``None`` without ``protein_proxy``)."""
        return F.softplus(self._raw_translation) if self.protein_proxy else None

    @property
    def protein_decay(self) -> torch.Tensor | None:
        """Protein decay ``alpha^P >= 0`` (``None`` without ``protein_proxy``)."""
        return F.softplus(self._raw_protein_decay) if self.protein_proxy else None

    @torch.no_grad()
    def set_gene_parameters(
        self, *, weights: torch.Tensor, bias: torch.Tensor, decay: torch.Tensor
    ) -> None:
        """Overwrite the prior edge weights, gene biases and gene decays in place.

        Parameters
        ----------
        weights
            Learnt weight of every prior edge ``(n_prior_edges,)``, in the edge order given.
        bias
            Bias of every gene ``(n_genes,)``.
        decay
            Decay of every gene ``(n_genes,)``, positive.

        Raises
        ------
        ValueError
            If a value has the wrong shape or is not finite, or a decay is not positive (the
            field is unchanged).
        """
        shapes = {"weights": self.n_prior_edges, "bias": self.n_genes, "decay": self.n_genes}
        for name, value in (("weights", weights), ("bias", bias), ("decay", decay)):
            if tuple(value.shape) != (shapes[name],):
                raise ValueError(
                    f"`{name}` must have shape ({shapes[name]},), got {tuple(value.shape)}."
                )
            if not bool(torch.isfinite(value).all()):
                raise ValueError(f"`{name}` contains NaN or infinite values.")
        if not bool((decay > 0).all()):
            raise ValueError("Every gene decay must be positive.")
        self.grn.weight[: self.n_prior_edges] = weights.to(self.grn.weight)
        self.bias[: self.n_genes] = bias.to(self.bias)
        self._raw_decay[: self.n_genes] = _inverse_softplus(decay.to(self._raw_decay))

    # ----- interventions --------------------------------------------------------------------
    def _check_offset(self, value: torch.Tensor | None, name: str) -> torch.Tensor | None:
        if value is None:
            return None
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise TypeError(f"`{name}` must be a floating-point tensor or None.")
        if value.ndim == 0 or value.shape[-1] != self.n_genes:
            raise ValueError(
                f"`{name}` must have last dimension n_genes={self.n_genes}, "
                f"got shape {tuple(value.shape)}."
            )
        if not bool(torch.isfinite(value.detach()).all()):
            raise ValueError(f"`{name}` contains NaN or infinite values.")
        return value

    @property
    def production_offset(self) -> torch.Tensor | None:
        """Offset added to the bias of every gene, shape ``(..., n_genes)`` or ``None``.

        Broadcast against the state's leading dimensions, so it may differ per cell (e.g. the
        output of a drug-effect network). It must be on the module's device.
        """
        return self._production_offset

    @production_offset.setter
    def production_offset(self, value: torch.Tensor | None) -> None:
        self._production_offset = self._check_offset(value, "production_offset")

    @property
    def decay_offset(self) -> torch.Tensor | None:
        """Offset added to the decay of every gene, shape ``(..., n_genes)`` or ``None``.

        The total decay ``softplus(raw) + offset`` is clamped at 0.
        """
        return self._decay_offset

    @decay_offset.setter
    def decay_offset(self, value: torch.Tensor | None) -> None:
        self._decay_offset = self._check_offset(value, "decay_offset")

    def _gene_index(self, genes) -> torch.Tensor:
        array = np.asarray(genes.cpu() if isinstance(genes, torch.Tensor) else genes)
        if array.dtype == bool:
            if array.shape != (self.n_genes,):
                raise ValueError(f"A boolean gene mask must have shape ({self.n_genes},).")
            array = np.flatnonzero(array)
        array = np.atleast_1d(array)
        if array.size and not np.issubdtype(array.dtype, np.integer):
            raise TypeError(
                f"`genes` must be integer indices or a boolean mask, got {array.dtype}."
            )
        if array.size and (array.min() < 0 or array.max() >= self.n_genes):
            raise ValueError(f"`genes` has indices outside [0, {self.n_genes}).")
        return torch.as_tensor(array.astype(np.int64))

    def knockout(self, genes: Sequence[int] | np.ndarray | torch.Tensor, scale: float = 0.0):
        """Return a copy whose given regulators act with their outgoing edges scaled.

        ``scale=0`` is a knockout (the genes no longer regulate anything, latents included);
        ``0 < scale < 1`` a knockdown. The genes' own dynamics are unchanged. The copy keeps
        the scale if trained further; the original is not modified.

        Parameters
        ----------
        genes
            Gene indices or a boolean mask of length ``n_genes``.
        scale
            Factor applied to the weights of the outgoing edges.

        Returns
        -------
        A new :class:`GRNVectorField` (deep copy; offsets are shared by reference).
        """
        index = self._gene_index(genes)
        scale = float(scale)
        if not np.isfinite(scale):
            raise ValueError(f"`scale` must be finite, got {scale}.")
        offsets = (self._production_offset, self._decay_offset)
        self._production_offset = self._decay_offset = None
        try:
            field = copy.deepcopy(self)
        finally:
            self._production_offset, self._decay_offset = offsets
        field._production_offset, field._decay_offset = offsets
        hit = torch.isin(field.src, index.to(field.src.device))
        field.edge_scale[hit] *= scale
        return field

    # ----- state ----------------------------------------------------------------------------
    def initial_state(
        self, genes: torch.Tensor, *, protein_init: str = "steady_state"
    ) -> torch.Tensor:
        """Build the full state from gene expression.

        Parameters
        ----------
        genes
            Expression, shape ``(..., n_genes)``.
        protein_init
            ``"steady_state"`` (``P = tau * G / alpha^P``, where ``dP/dt = 0``; ``alpha^P`` is
            floored at the dtype's machine epsilon) or ``"equal"``
            (``P = G``, as the reference code does). Ignored without ``protein_proxy``.

        Returns
        -------
        Tensor ``(..., state_dim)`` laid out ``[genes | proteins | latents]``, latents 0.
        """
        if genes.shape[-1] != self.n_genes:
            raise ValueError(
                f"Expected gene expression with last dimension {self.n_genes}, "
                f"got shape {tuple(genes.shape)}."
            )
        if protein_init not in ("steady_state", "equal"):
            raise ValueError(
                f"`protein_init` must be 'steady_state' or 'equal', got {protein_init!r}."
            )
        parts = [genes]
        if self.protein_proxy:
            if protein_init == "equal":
                parts.append(genes)
            else:
                parts.append(genes * self.regulator_gain().to(genes.dtype))
        if self.n_latent:
            parts.append(genes.new_zeros((*genes.shape[:-1], self.n_latent)))
        return torch.cat(parts, dim=-1) if len(parts) > 1 else genes

    def _check_state(self, state: torch.Tensor) -> None:
        if state.shape[-1] != self.state_dim:
            raise ValueError(
                f"Expected a state with last dimension state_dim={self.state_dim}, "
                f"got shape {tuple(state.shape)}."
            )

    def gene_state(self, state: torch.Tensor) -> torch.Tensor:
        """Return the gene block ``state[..., :n_genes]`` of a state (or of a derivative)."""
        self._check_state(state)
        return state[..., : self.n_genes]

    def split_state(self, state: torch.Tensor):
        """Split a state into ``(genes, proteins or None, latents or None)``."""
        self._check_state(state)
        n, k = self.n_genes, self.n_latent
        proteins = state[..., n : 2 * n] if self.protein_proxy else None
        latents = state[..., self.state_dim - k :] if k else None
        return state[..., :n], proteins, latents

    # ----- dynamics -------------------------------------------------------------------------
    def _pad(self, offset: torch.Tensor) -> torch.Tensor:
        return F.pad(offset, (0, self.n_latent)) if self.n_latent else offset

    def _drive(self, state: torch.Tensor) -> torch.Tensor:
        """Argument of the sigmoid of every gene and latent node."""
        genes, proteins, latents = self.split_state(state)
        regulators = proteins if self.protein_proxy else genes
        if self.n_latent:
            regulators = torch.cat([regulators, latents], dim=-1)
        drive = self.grn(regulators, self.edge_weights()) + self.bias
        if self._production_offset is not None:
            drive = drive + self._pad(self._production_offset)
        return drive

    def forward(self, t: torch.Tensor | float, state: torch.Tensor) -> torch.Tensor:
        """Time derivative of ``state`` (``t`` is unused: the system is autonomous).

        The signature is that of :func:`torchdiffeq.odeint`'s ``func``.
        """
        genes, proteins, latents = self.split_state(state)
        nodes = torch.cat([genes, latents], dim=-1) if self.n_latent else genes
        drive = self._drive(state)
        decay = self.decay
        if self._decay_offset is not None:
            decay = torch.clamp(decay + self._pad(self._decay_offset), min=0.0)
        d_nodes = torch.sigmoid(drive) - decay * nodes
        if not (self.protein_proxy or self.n_latent):
            return d_nodes
        parts = [d_nodes[..., : self.n_genes]]
        if self.protein_proxy:
            parts.append(self.translation * genes - self.protein_decay * proteins)
        if self.n_latent:
            parts.append(d_nodes[..., self.n_genes :])
        return torch.cat(parts, dim=-1)

    def gene_velocity(self, genes: torch.Tensor, t: float = 0.0) -> torch.Tensor:
        """``dG/dt`` at expression ``genes`` (proteins at steady state, latents 0).

        Parameters
        ----------
        genes
            Expression, shape ``(..., n_genes)``.
        t
            Time passed to :meth:`forward`.

        Returns
        -------
        Tensor ``(..., n_genes)``.
        """
        return self.gene_state(self(t, self.initial_state(genes)))

    def production_slope(self, genes: torch.Tensor) -> torch.Tensor:
        r"""Slope :math:`\sigma'(\cdot)` of every gene's production at ``genes``.

        Proteins at steady state, latents 0 (as in :meth:`gene_velocity`). Times the weight of
        an edge ``j → i`` (and, with ``protein_proxy``, the steady-state protein gain
        :math:`\tau_j / \alpha^P_j` of the regulator, :meth:`regulator_gain`) it is the
        direct effect :math:`\partial (dG_i/dt) / \partial G_j` of the edge in that cell.

        Parameters
        ----------
        genes
            Expression, shape ``(..., n_genes)``.

        Returns
        -------
        Tensor ``(..., n_genes)``.
        """
        production = torch.sigmoid(self._drive(self.initial_state(genes))[..., : self.n_genes])
        return production * (1.0 - production)

    def regulator_gain(self) -> torch.Tensor:
        """Steady-state protein per unit of each gene, ``tau / alpha^P`` (1 without proteins).

        ``alpha^P`` is floored at machine epsilon: a protein decay that underflowed to 0 must
        not give 0/0 = NaN.
        """
        if not self.protein_proxy:
            return torch.ones(self.n_genes, device=self.bias.device)
        return self.translation / self.protein_decay.clamp(min=torch.finfo(self.bias.dtype).eps)

    # ----- storage --------------------------------------------------------------------------
    def to_arrays(self) -> dict[str, np.ndarray | int | bool | str]:
        """Everything needed to rebuild this field, as NumPy arrays and scalars.

        The dict can be stored in ``adata.uns`` and survives ``write_h5ad``/``read_h5ad``;
        :meth:`from_arrays` rebuilds an equal field. Offsets are not stored (they are inputs,
        not parameters); knockout scales are.

        Returns
        -------
        ``n_genes``, ``n_latent`` (int), ``protein_proxy`` (bool), ``kernel`` (str), ``src`` and
        ``dst`` (int64 prior edges), ``weight`` and ``edge_scale`` (float32, every edge: prior
        edges first, then latent edges), ``bias`` and ``raw_decay`` (float32, genes then
        latents) and, with ``protein_proxy``, ``raw_translation`` and ``raw_protein_decay``.
        """
        arrays = {
            "n_genes": self.n_genes,
            "n_latent": self.n_latent,
            "protein_proxy": self.protein_proxy,
            "kernel": self.grn.kernel,
            "src": self.src[: self.n_prior_edges],
            "dst": self.dst[: self.n_prior_edges],
            "weight": self.grn.weight,
            "edge_scale": self.edge_scale,
            "bias": self.bias,
            "raw_decay": self._raw_decay,
        }
        if self.protein_proxy:
            arrays["raw_translation"] = self._raw_translation
            arrays["raw_protein_decay"] = self._raw_protein_decay
        out: dict[str, np.ndarray | int | bool | str] = {}
        for name, value in arrays.items():
            if isinstance(value, torch.Tensor):
                array = value.detach().cpu().numpy()
                dtype = np.int64 if name in ("src", "dst") else np.float32
                value = array.astype(dtype)
            out[name] = value
        return out

    @staticmethod
    def stored_prior_weights(arrays: Mapping[str, object]) -> np.ndarray:
        """Effective prior-edge weights of a :meth:`to_arrays` dict, in its ``src``/``dst`` order.

        The same numbers as :meth:`prior_edge_weights` of the rebuilt field, without
        rebuilding it.
        """
        n = len(arrays["src"])
        return np.asarray(arrays["weight"][:n]) * np.asarray(arrays["edge_scale"][:n])

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, object]) -> GRNVectorField:
        """Rebuild a field from the output of :meth:`to_arrays` (e.g. read from an h5ad file).

        Parameters
        ----------
        arrays
            Mapping with the keys listed in :meth:`to_arrays`.

        Returns
        -------
        A :class:`GRNVectorField` (float32, on the CPU) with the stored parameters.
        """
        missing = _ARRAY_KEYS - set(arrays)
        if missing:
            raise KeyError(f"Cannot rebuild a GRNVectorField: missing {sorted(missing)}.")
        protein_proxy = bool(arrays["protein_proxy"])
        field = cls(
            int(arrays["n_genes"]),
            np.asarray(arrays["src"]),
            np.asarray(arrays["dst"]),
            n_latent=int(arrays["n_latent"]),
            protein_proxy=protein_proxy,
            kernel=str(arrays["kernel"]),
            weight_init_std=0.0,
            seed=0,
        )
        targets = {
            "weight": field.grn.weight,
            "edge_scale": field.edge_scale,
            "bias": field.bias,
            "raw_decay": field._raw_decay,
        }
        if protein_proxy:
            targets["raw_translation"] = field._raw_translation
            targets["raw_protein_decay"] = field._raw_protein_decay
        with torch.no_grad():
            for name, target in targets.items():
                if name not in arrays:
                    raise KeyError(f"Cannot rebuild a GRNVectorField: missing {name!r}.")
                value = torch.as_tensor(np.asarray(arrays[name]), dtype=target.dtype)
                if value.shape != target.shape:
                    raise ValueError(
                        f"Stored {name!r} has shape {tuple(value.shape)}, expected "
                        f"{tuple(target.shape)}."
                    )
                if not bool(torch.isfinite(value).all()):
                    raise ValueError(f"Stored {name!r} contains NaN or infinite values.")
                target.copy_(value)
        return field

    def extra_repr(self) -> str:
        return (
            f"n_genes={self.n_genes}, n_prior_edges={self.n_prior_edges}, "
            f"n_latent={self.n_latent}, protein_proxy={self.protein_proxy}"
        )
