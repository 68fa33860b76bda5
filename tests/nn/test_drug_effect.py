"""DrugEffect: features -> production and decay offsets of a GRNVectorField."""

import pytest
import torch

from celldyn.nn import DrugEffect, GRNVectorField


def test_untrained_means_no_effect():
    effect = DrugEffect(6, 4, n_hidden=8)
    production, decay = effect(torch.randn(3, 6))
    assert production.shape == decay.shape == (3, 4)
    assert not production.any() and not decay.any()
    production, _ = effect(torch.randn(2, 5, 6))  # leading dimensions are free
    assert production.shape == (2, 5, 4)


def test_gradients_reach_both_mlps():
    torch.manual_seed(0)
    effect = DrugEffect(3, 2, n_hidden=5)
    optimizer = torch.optim.SGD(effect.parameters(), lr=0.1)
    features = torch.randn(8, 3)
    for _ in range(2):  # first step moves the zero last layers, second the hidden ones
        optimizer.zero_grad()
        production, decay = effect(features)
        ((production - 1.0).square().mean() + (decay + 0.5).square().mean()).backward()
        optimizer.step()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in effect.parameters())


def test_offsets_drive_the_field_exactly():
    """dG/dt = sigmoid(W^T G + b + p) - max(0, alpha + d) G, per cell."""
    torch.manual_seed(0)
    field = GRNVectorField(3, [0, 1, 2], [1, 2, 0], weight_init_std=1.0, decay_init=0.3)
    effect = DrugEffect(2, 3, n_hidden=4)
    torch.nn.init.normal_(effect.production[-1].weight)
    torch.nn.init.normal_(effect.decay[-1].weight)
    features, genes = torch.randn(5, 2), torch.rand(5, 3)
    production, decay = effect(features)
    field.production_offset, field.decay_offset = production, decay
    velocity = field.gene_velocity(genes)
    weights = torch.zeros(3, 3)
    weights[field.src, field.dst] = field.edge_weights()
    expected = torch.sigmoid(genes @ weights + field.bias + production)
    expected = expected - torch.clamp(field.decay + decay, min=0.0) * genes
    torch.testing.assert_close(velocity, expected)


def test_bad_input():
    with pytest.raises(ValueError, match="n_features"):
        DrugEffect(0, 3)
    with pytest.raises(ValueError, match="n_hidden"):
        DrugEffect(2, 3, n_hidden=2.5)
    with pytest.raises(ValueError, match="last dimension 2"):
        DrugEffect(2, 3)(torch.zeros(4, 3))
