import copy

import numpy as np
import pytest
import torch

from celldyn.nn import GRNVectorField


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _softplus(x):
    return np.log1p(np.exp(x))


def _randomise(field, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in field.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return field


def _numpy_rhs(field, state, production_offset=None, decay_offset=None):
    """Hand-written FLeCS derivative from the field's parameters."""
    n, k = field.n_genes, field.n_latent
    w = np.zeros((n + k, n + k))  # regulator x target
    w[field.src.numpy(), field.dst.numpy()] = field.edge_weights().detach().numpy()
    b = field.bias.detach().numpy().copy()
    alpha = _softplus(field._raw_decay.detach().numpy())
    if production_offset is not None:
        b[:n] += production_offset
    if decay_offset is not None:
        alpha[:n] = np.maximum(alpha[:n] + decay_offset, 0.0)
    g = state[:, :n]
    p = state[:, n : 2 * n] if field.protein_proxy else None
    lat = state[:, state.shape[1] - k :] if k else state[:, :0]
    regulators = np.concatenate([p if field.protein_proxy else g, lat], axis=1)
    nodes = np.concatenate([g, lat], axis=1)
    d_nodes = _sigmoid(regulators @ w + b) - alpha * nodes
    parts = [d_nodes[:, :n]]
    if field.protein_proxy:
        tau = _softplus(field._raw_translation.detach().numpy())
        alpha_p = _softplus(field._raw_protein_decay.detach().numpy())
        parts.append(tau * g - alpha_p * p)
    parts.append(d_nodes[:, n:])
    return np.concatenate(parts, axis=1)


@pytest.mark.parametrize("kernel", ["dense", "csr", "scatter"])
@pytest.mark.parametrize(
    ("n_latent", "protein_proxy"), [(0, False), (2, False), (0, True), (3, True)]
)
def test_rhs_matches_numpy_formula(random_graph, kernel, n_latent, protein_proxy):
    src, dst = random_graph(12, 40)
    field = GRNVectorField(
        12, src, dst, n_latent=n_latent, protein_proxy=protein_proxy, kernel=kernel
    ).double()
    _randomise(field)
    state = torch.rand(5, field.state_dim, dtype=torch.float64) * 3
    out = field(0.0, state)
    assert out.shape == state.shape
    np.testing.assert_allclose(out.detach().numpy(), _numpy_rhs(field, state.numpy()), atol=1e-12)


def test_rhs_on_hand_example():
    # gene 0 -> gene 1 with w = 2, b = 0, alpha = 0.2 everywhere
    field = GRNVectorField(2, [0], [1], decay_init=0.2).double()
    with torch.no_grad():
        field.grn.weight.fill_(2.0)
    out = field(0.0, torch.tensor([[1.0, 3.0]], dtype=torch.float64)).detach().numpy()
    np.testing.assert_allclose(out, [[0.5 - 0.2, _sigmoid(2.0) - 0.6]], atol=1e-6)


def test_offsets_enter_bias_and_decay(random_graph):
    src, dst = random_graph(8, 20)
    field = _randomise(GRNVectorField(8, src, dst, n_latent=2).double())
    state = torch.rand(4, field.state_dim, dtype=torch.float64)
    prod = np.linspace(-1, 1, 8)
    dec = np.full(8, -100.0)  # pushes the total decay below zero -> clamped at 0
    dec[:4] = 0.5
    field.production_offset = torch.tensor(prod)
    field.decay_offset = torch.tensor(dec)
    expected = _numpy_rhs(field, state.numpy(), production_offset=prod, decay_offset=dec)
    np.testing.assert_allclose(field(0.0, state).detach().numpy(), expected, atol=1e-12)
    # per-cell offsets broadcast over cells
    field.decay_offset = None
    per_cell = torch.randn(4, 8, dtype=torch.float64)
    field.production_offset = per_cell
    out = field(0.0, state).detach().numpy()
    for c in range(4):
        row = _numpy_rhs(field, state.numpy()[c : c + 1], production_offset=per_cell[c].numpy())
        np.testing.assert_allclose(out[c : c + 1], row, atol=1e-12)


def test_decay_is_nonnegative_for_any_raw_value():
    field = GRNVectorField(4, [0, 1], [1, 2], protein_proxy=True, n_latent=1)
    with torch.no_grad():
        field._raw_decay.copy_(torch.tensor([-1e4, -50.0, 0.0, 50.0, 1e4]))
        field._raw_protein_decay.copy_(torch.tensor([-1e4, -50.0, 0.0, 50.0]))
        field._raw_translation.copy_(torch.tensor([-1e4, -50.0, 0.0, 50.0]))
    for value in (field.decay, field.protein_decay, field.translation):
        assert bool((value >= 0).all())
    # a negative decay offset can not create growth either
    field.decay_offset = torch.full((4,), -1e3)
    state = field.initial_state(torch.ones(1, 4))
    genes = field.gene_state(field(0.0, state))
    assert bool((genes <= 1.0).all())  # production <= 1, decay term >= 0


def test_decay_init_is_respected():
    field = GRNVectorField(3, [0], [1], decay_init=[0.1, 1.0, 5.0], n_latent=2)
    np.testing.assert_allclose(
        field.decay.detach().numpy(), [0.1, 1.0, 5.0, 6.1 / 3, 6.1 / 3], rtol=1e-5
    )


def test_set_gene_parameters_writes_genes_only_and_checks_its_input():
    field = GRNVectorField(3, [0, 1], [1, 2], n_latent=1)
    latent_bias = field.bias[3].item()
    field.set_gene_parameters(
        weights=torch.tensor([0.5, -2.0]),
        bias=torch.tensor([0.1, 0.2, 0.3]),
        decay=torch.tensor([0.4, 1.0, 2.5]),
    )
    np.testing.assert_allclose(field.prior_edge_weights().detach(), [0.5, -2.0])
    np.testing.assert_allclose(field.bias[:3].detach(), [0.1, 0.2, 0.3])
    np.testing.assert_allclose(field.decay[:3].detach(), [0.4, 1.0, 2.5], rtol=1e-5)
    assert field.bias[3].item() == latent_bias  # latent nodes untouched
    before = copy.deepcopy(field.state_dict())
    good = {"weights": torch.zeros(2), "bias": torch.zeros(3), "decay": torch.ones(3)}
    for name, value, match in [
        ("weights", torch.zeros(3), r"`weights` must have shape \(2,\)"),
        ("bias", torch.zeros(1), r"`bias` must have shape \(3,\)"),
        ("bias", torch.tensor([0.0, float("nan"), 0.0]), "NaN or infinite"),
        ("decay", torch.tensor([1.0, 0.0, 1.0]), "positive"),
    ]:
        with pytest.raises(ValueError, match=match):
            field.set_gene_parameters(**{**good, name: value})
    for key, value in field.state_dict().items():
        torch.testing.assert_close(value, before[key])


def test_knockout_removes_exactly_the_regulators_influence(random_graph):
    src, dst = random_graph(10, 45, seed=2)
    field = _randomise(GRNVectorField(10, src, dst, n_latent=2).double())
    original = copy.deepcopy(field.state_dict())
    state = torch.rand(6, field.state_dim, dtype=torch.float64) * 2
    ko_genes = [int(src[0]), int(src[1])]
    ko = field.knockout(ko_genes)

    # formula: same field with the outgoing edges of the knocked-out genes set to 0
    w = field.edge_weights().detach().numpy().copy()
    hit = np.isin(field.src.numpy(), ko_genes)
    assert hit.sum() > 0
    reference = copy.deepcopy(field)
    with torch.no_grad():
        reference.grn.weight.copy_(torch.tensor(np.where(hit, 0.0, w)))
    expected = _numpy_rhs(reference, state.numpy())
    out = ko(0.0, state).detach().numpy()
    np.testing.assert_allclose(out, expected, atol=1e-12)

    # targets of knocked-out genes change, everything else is identical
    base = field(0.0, state).detach().numpy()
    affected = np.unique(field.dst.numpy()[hit])
    unaffected = np.setdiff1d(np.arange(field.state_dim), affected)
    np.testing.assert_array_equal(out[:, unaffected], base[:, unaffected])
    assert np.all(np.abs(out[:, affected] - base[:, affected]).max(axis=0) > 0)
    # the original is untouched and the knocked-out edge weights are exactly zero
    for key, value in field.state_dict().items():
        torch.testing.assert_close(value, original[key])
    assert torch.count_nonzero(ko.edge_weights()[torch.tensor(hit)]) == 0


def test_knockdown_scales_and_mask_input():
    field = GRNVectorField(3, [0, 0, 1], [1, 2, 2]).double()
    with torch.no_grad():
        field.grn.weight.copy_(torch.tensor([1.0, 2.0, 3.0]))
    half = field.knockout(np.array([True, False, False]), scale=0.5)
    np.testing.assert_allclose(half.prior_edge_weights().detach().numpy(), [0.5, 1.0, 3.0])
    twice = half.knockout([0], scale=0.0)
    np.testing.assert_allclose(twice.prior_edge_weights().detach().numpy(), [0.0, 0.0, 3.0])


def test_knockout_keeps_offsets_with_autograd():
    field = GRNVectorField(3, [0, 1], [1, 2])
    drug = torch.ones(3, requires_grad=True)
    field.production_offset = drug * 2  # non-leaf tensor, e.g. a network output
    ko = field.knockout([0])
    assert ko.production_offset is field.production_offset
    ko(0.0, torch.ones(2, 3)).sum().backward()
    assert drug.grad is not None


@pytest.mark.parametrize(
    ("n_latent", "protein_proxy", "dim"),
    [(0, False, 7), (3, False, 10), (0, True, 14), (2, True, 16)],
)
def test_state_layout_and_extractors(n_latent, protein_proxy, dim):
    field = GRNVectorField(7, [0, 1, 2], [1, 2, 3], n_latent=n_latent, protein_proxy=protein_proxy)
    assert field.state_dim == dim
    genes = torch.rand(2, 5, 7) + 0.1
    state = field.initial_state(genes)
    assert state.shape == (2, 5, dim)
    torch.testing.assert_close(field.gene_state(state), genes)
    g, p, lat = field.split_state(state)
    torch.testing.assert_close(g, genes)
    if n_latent:
        assert lat.shape == (2, 5, n_latent) and torch.count_nonzero(lat) == 0
    else:
        assert lat is None
    if protein_proxy:
        # steady-state proteins: dP/dt = 0 at the initial state
        dp = field.split_state(field(0.0, state))[1]
        torch.testing.assert_close(dp, torch.zeros_like(dp), atol=1e-6, rtol=0)
        torch.testing.assert_close(
            field.split_state(field.initial_state(genes, protein_init="equal"))[1], genes
        )
    else:
        assert p is None
    assert field.gene_velocity(genes).shape == genes.shape


def test_latent_edges_connect_everything():
    field = GRNVectorField(4, [0], [1], n_latent=2)
    assert field.n_prior_edges == 1
    assert field.grn.n_edges == 1 + 4 * 2 + 2 * 4 + 2 * 2
    pairs = set(zip(field.src.tolist(), field.dst.tolist(), strict=True))
    assert (0, 4) in pairs and (5, 3) in pairs and (4, 4) in pairs and (4, 5) in pairs
    assert (1, 0) not in pairs


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_latent": -1}, ValueError, "n_latent"),
        ({"decay_init": 0.0}, ValueError, "decay_init"),
        ({"decay_init": [0.1, 0.2]}, ValueError, "decay_init"),
        ({"protein_proxy": True, "translation_init": -1.0}, ValueError, "translation_init"),
        ({"kernel": "fast"}, ValueError, "kernel"),
        ({"src": [0, 9]}, ValueError, "outside"),
    ],
)
def test_bad_constructor_input(kwargs, error, match):
    args = {"src": [0, 1], "dst": [1, 2], **kwargs}
    with pytest.raises(error, match=match):
        GRNVectorField(3, args.pop("src"), args.pop("dst"), **args)


def test_bad_runtime_input():
    field = GRNVectorField(3, [0, 1], [1, 2], n_latent=1)
    with pytest.raises(ValueError, match="state_dim=4"):
        field(0.0, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="last dimension 3"):
        field.initial_state(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="protein_init"):
        field.initial_state(torch.zeros(2, 3), protein_init="zero")
    with pytest.raises(ValueError, match="n_genes=3"):
        field.production_offset = torch.zeros(4)
    with pytest.raises(ValueError, match="NaN"):
        field.decay_offset = torch.tensor([0.0, float("nan"), 0.0])
    with pytest.raises(TypeError, match="floating-point"):
        field.decay_offset = [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="outside"):
        field.knockout([3])
    with pytest.raises(TypeError, match="integer"):
        field.knockout([0.5])
    with pytest.raises(ValueError, match="boolean gene mask"):
        field.knockout([True, False])
    with pytest.raises(ValueError, match="finite"):
        field.knockout([0], scale=float("inf"))
    assert field.production_offset is None and field.decay_offset is None
    assert bool((field.edge_scale == 1).all())


@pytest.mark.parametrize(("n_latent", "protein_proxy"), [(0, False), (2, True)])
def test_to_from_arrays_round_trip(random_graph, tmp_path, n_latent, protein_proxy):
    import anndata as ad

    src, dst = random_graph(9, 25)
    field = _randomise(GRNVectorField(9, src, dst, n_latent=n_latent, protein_proxy=protein_proxy))
    field = field.knockout([3], scale=0.5)
    arrays = field.to_arrays()
    adata = ad.AnnData(np.zeros((2, 9), dtype=np.float32))
    adata.uns["models"] = {"0": arrays}
    adata.write_h5ad(tmp_path / "a.h5ad")
    stored = ad.read_h5ad(tmp_path / "a.h5ad").uns["models"]["0"]
    rebuilt = GRNVectorField.from_arrays(stored)
    assert (rebuilt.n_latent, rebuilt.protein_proxy) == (n_latent, protein_proxy)
    assert torch.equal(rebuilt.src, field.src) and torch.equal(rebuilt.dst, field.dst)
    assert torch.equal(rebuilt.edge_scale, field.edge_scale)
    state = torch.rand(6, field.state_dim)
    assert torch.equal(rebuilt(0.0, state), field(0.0, state))


def test_from_arrays_bad_input(random_graph):
    src, dst = random_graph(5, 8)
    arrays = GRNVectorField(5, src, dst).to_arrays()
    with pytest.raises(KeyError, match="weight"):
        GRNVectorField.from_arrays({k: v for k, v in arrays.items() if k != "weight"})
    with pytest.raises(ValueError, match="'bias' has shape"):
        GRNVectorField.from_arrays({**arrays, "bias": np.zeros(4)})
    with pytest.raises(ValueError, match="NaN"):
        GRNVectorField.from_arrays({**arrays, "weight": np.full(8, np.nan)})
