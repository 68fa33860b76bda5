"""Drug (small-molecule) effects on gene production and decay, predicted from features."""

from __future__ import annotations

import torch
from torch import nn

from .._validate import check_int


def _mlp(n_in: int, n_hidden: int, n_out: int) -> nn.Sequential:
    """Return ``Linear -> ReLU -> Linear`` with the last layer at 0 (an output of exactly 0)."""
    net = nn.Sequential(nn.Linear(n_in, n_hidden), nn.ReLU(), nn.Linear(n_hidden, n_out))
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    return net


class DrugEffect(nn.Module):
    r"""Two MLPs mapping condition features to per-gene production and decay offsets.

    For a condition (drug, dose, ...) with feature vector :math:`c` (e.g. a Morgan
    fingerprint), the FLeCS equation of :class:`~celldyn.nn.GRNVectorField` becomes

    .. math:: \frac{dG_i}{dt} = \sigma\Big(\sum_{j \to i} W_{ji} G_j + b_i + p_i(c)\Big)
              - \max\big(0, \alpha_i + d_i(c)\big) G_i,

    with :math:`p = \mathrm{MLP}_p(c)` and :math:`d = \mathrm{MLP}_d(c)`, each
    ``Linear -> ReLU -> Linear``. The last layers start at 0, so an untrained model predicts
    "no effect" for every condition. Set the outputs on the field with
    ``field.production_offset, field.decay_offset = effect(c)``.

    Parameters
    ----------
    n_features
        Length of the condition feature vector.
    n_genes
        Number of genes (outputs of each MLP).
    n_hidden
        Width of the hidden layer of each MLP.
    """

    def __init__(self, n_features: int, n_genes: int, *, n_hidden: int = 64):
        super().__init__()
        self.n_features = check_int(n_features, "n_features", 1)
        self.n_genes = check_int(n_genes, "n_genes", 1)
        n_hidden = check_int(n_hidden, "n_hidden", 1)
        self.production = _mlp(self.n_features, n_hidden, self.n_genes)
        self.decay = _mlp(self.n_features, n_hidden, self.n_genes)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Production and decay offsets ``(..., n_genes)`` of features ``(..., n_features)``."""
        if features.shape[-1:] != (self.n_features,):
            raise ValueError(
                f"Expected features with last dimension {self.n_features}, "
                f"got shape {tuple(features.shape)}."
            )
        return self.production(features), self.decay(features)

    def extra_repr(self) -> str:
        return f"n_features={self.n_features}, n_genes={self.n_genes}"
