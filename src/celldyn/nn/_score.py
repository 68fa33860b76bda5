"""Score network of LCD: an MLP conditioned on perturbation embeddings in every hidden layer."""

from __future__ import annotations

import math

import torch
from torch import nn


def sum_of_rows(
    table: torch.Tensor, mask: torch.Tensor, n_unknown: torch.Tensor | None = None
) -> torch.Tensor:
    """``mask @ table`` plus ``n_unknown`` times the mean row of ``table``.

    The sum over a condition's perturbed genes of a per-gene quantity; a gene without a row
    (never perturbed in training) counts as the mean row.

    Parameters
    ----------
    table
        ``(k, m)`` one row per gene (``k`` may be 0).
    mask
        ``(n, k)`` 0/1 matrix of the perturbed genes with a row.
    n_unknown
        ``(n,)`` number of perturbed genes without a row (default none).
    """
    out = mask @ table  # (n, 0) @ (0, m) is zeros
    if n_unknown is not None and len(table):
        out = out + n_unknown[:, None] * table.mean(0)
    return out


class ScoreNet(nn.Module):
    """Noise-conditional score ``s(x, σ, e_q)`` of the perturbation conditions' stationary laws.

    Every perturbable gene ``g`` has a learnt vector ``E_g``; a condition perturbing genes
    ``G`` has the embedding ``e_q = Σ_{g∈G} E_g`` (control: ``0``). A gene without a learnt
    vector (never perturbed in training) is given the mean of the learnt vectors. Each hidden
    layer ``h_{l+1} = silu(W_l h_l + U_l e_q + V_l τ(σ))`` receives the embedding and a
    sinusoidal embedding ``τ`` of ``log σ``. The network output ``F`` is read as
    ``s = F / σ`` (noise-conditional score network parametrization: ``F ≈ −ε`` for
    ``x = x_0 + σ ε``).

    Parameters
    ----------
    n_genes
        Dimension of ``x``.
    n_perturbable
        Number of genes with a learnt embedding.
    n_hidden, n_layers
        Width and number of hidden layers.
    embed_dim
        Dimension of the gene embeddings.
    noise_dim
        Dimension of the noise-level embedding.
    """

    def __init__(
        self,
        n_genes: int,
        n_perturbable: int,
        *,
        n_hidden: int = 128,
        n_layers: int = 3,
        embed_dim: int = 16,
        noise_dim: int = 16,
    ):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"`n_layers` must be at least 1, got {n_layers}.")
        self.gene_embedding = nn.Parameter(0.1 * torch.randn(max(n_perturbable, 1), embed_dim))
        self.n_perturbable = n_perturbable
        self.noise_dim = noise_dim
        widths = [n_genes] + [n_hidden] * n_layers
        self.layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)
        )
        self.condition_in = nn.ModuleList(nn.Linear(embed_dim, n_hidden) for _ in widths[1:])
        self.noise_in = nn.ModuleList(nn.Linear(noise_dim, n_hidden) for _ in widths[1:])
        self.out = nn.Linear(n_hidden, n_genes)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def embed(self, mask: torch.Tensor, n_unknown: torch.Tensor | None = None) -> torch.Tensor:
        """Condition embeddings ``mask @ E`` plus ``n_unknown`` times the mean learnt vector.

        Parameters
        ----------
        mask
            ``(n, n_perturbable)`` 0/1 matrix of the perturbed genes with a learnt vector.
        n_unknown
            ``(n,)`` number of perturbed genes without a learnt vector (default none).
        """
        return sum_of_rows(self.gene_embedding[: self.n_perturbable], mask, n_unknown)

    def _noise_features(self, sigma: torch.Tensor) -> torch.Tensor:
        half = self.noise_dim // 2
        freqs = torch.exp(torch.linspace(0.0, math.log(100.0), half, device=sigma.device))
        angle = torch.log(sigma)[:, None] * freqs[None, :]
        return torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """Score ``s(x, σ, e)`` of the law of condition ``e`` convolved with ``N(0, σ² I)``.

        Parameters
        ----------
        x
            ``(n, n_genes)`` points.
        sigma
            ``(n,)`` noise levels (``> 0``).
        e
            ``(n, embed_dim)`` condition embeddings (:meth:`embed`).
        """
        tau = self._noise_features(sigma)
        h = x
        for layer, cond, noise in zip(self.layers, self.condition_in, self.noise_in, strict=True):
            h = nn.functional.silu(layer(h) + cond(e) + noise(tau))
        return self.out(h) / sigma[:, None]
