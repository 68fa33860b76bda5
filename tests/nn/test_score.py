import numpy as np
import pytest
import torch

from celldyn.nn import ScoreNet


def test_embeddings_sum_and_unseen_fallback():
    net = ScoreNet(4, 3, n_hidden=8, n_layers=2, embed_dim=5)
    table = net.gene_embedding.detach()
    mask = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    n_unknown = torch.tensor([0.0, 0.0, 0.0, 1.0])
    e = net.embed(mask, n_unknown).detach()
    torch.testing.assert_close(e[0], torch.zeros(5))
    torch.testing.assert_close(e[1], table[0])
    torch.testing.assert_close(e[2], table[0] + table[2])
    torch.testing.assert_close(e[3], table[1] + table.mean(0))


def test_condition_enters_every_hidden_layer():
    torch.manual_seed(0)
    net = ScoreNet(4, 2, n_hidden=8, n_layers=3, embed_dim=5)
    torch.nn.init.normal_(net.out.weight)
    x, sigma = torch.randn(6, 4), torch.full((6,), 0.5)
    e = net.embed(torch.tensor([[1.0, 0.0]] * 6))
    net(x, sigma, e).sum().backward()
    assert len(net.condition_in) == 3
    for layer in net.condition_in:
        assert layer.weight.grad.abs().sum() > 0


def test_zero_initial_output():
    net = ScoreNet(3, 2)
    out = net(torch.randn(5, 3), torch.full((5,), 0.3), torch.zeros(5, 16))
    assert torch.count_nonzero(out) == 0


@pytest.mark.usefixtures("one_torch_thread")
def test_denoising_score_matching_recovers_gaussian_scores():
    """Two conditions N(±m, Σ): the learnt score at small σ matches −(Σ + σ²I)⁻¹(x − μ)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cov = np.array([[1.0, 0.6], [0.6, 0.8]])
    chol = np.linalg.cholesky(cov)
    means = np.array([[0.0, 0.0], [1.5, -1.0]])
    x = torch.as_tensor(
        np.concatenate([m + rng.standard_normal((1000, 2)) @ chol.T for m in means]),
        dtype=torch.float32,
    )
    mask = torch.zeros(2000, 1)
    mask[1000:] = 1.0
    net = ScoreNet(2, 1, n_hidden=64, n_layers=2, embed_dim=8)
    sigmas = torch.tensor([1.0, 0.5, 0.25])
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(1500):
        idx = torch.randint(0, 2000, (256,))
        sigma = sigmas[torch.randint(0, 3, (256,))]
        noise = torch.randn(256, 2)
        out = net(x[idx] + sigma[:, None] * noise, sigma, net.embed(mask[idx]))
        loss = ((sigma[:, None] * out + noise) ** 2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    sigma = 0.25
    for q, m in enumerate(means):
        pts = torch.as_tensor(m + rng.standard_normal((200, 2)) @ chol.T, dtype=torch.float32)
        cond = torch.full((200, 1), float(q))
        with torch.no_grad():
            learnt = net(pts, torch.full((200,), sigma), net.embed(cond)).numpy()
        exact = -(pts.numpy() - m) @ np.linalg.inv(cov + sigma**2 * np.eye(2)).T
        error = np.linalg.norm(learnt - exact) / np.linalg.norm(exact)
        assert error < 0.25, error  # measured: 0.12 and 0.13
