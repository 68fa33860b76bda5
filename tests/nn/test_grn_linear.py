import numpy as np
import pytest
import torch

from celldyn.nn import GRNLinear, select_kernel

KERNELS = ("dense", "csr", "scatter")


def _run(kernel, x, src, dst, weight, grad_out):
    layer = GRNLinear(x.shape[-1], src, dst, kernel=kernel).double()
    with torch.no_grad():
        layer.weight.copy_(weight)
    x = x.clone().requires_grad_(True)
    y = layer(x)
    (y * grad_out).sum().backward()
    return y.detach(), x.grad, layer.weight.grad


@pytest.mark.parametrize("shape", [(9, 40), (3, 4, 40), (40,)])
def test_kernels_agree_with_numpy_values_and_gradients(shape, random_graph):
    n, n_edges = 40, 300
    src, dst = random_graph(n, n_edges)
    gen = torch.Generator().manual_seed(1)
    weight = torch.randn(n_edges, generator=gen, dtype=torch.float64)
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    grad_out = torch.randn(shape, generator=gen, dtype=torch.float64)

    w_dense = np.zeros((n, n))
    w_dense[src.numpy(), dst.numpy()] = weight.numpy()  # regulator x target
    x2 = x.numpy().reshape(-1, n)
    g2 = grad_out.numpy().reshape(-1, n)
    expected_y = x2 @ w_dense
    expected_gx = g2 @ w_dense.T
    expected_gw = (x2.T @ g2)[src.numpy(), dst.numpy()]

    for kernel in KERNELS:
        y, gx, gw = _run(kernel, x, src, dst, weight, grad_out)
        assert y.shape == x.shape
        np.testing.assert_allclose(y.numpy().reshape(-1, n), expected_y, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gx.numpy().reshape(-1, n), expected_gx, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gw.numpy(), expected_gw, rtol=1e-12, atol=1e-12)


def test_kernel_formula_on_hand_example():
    # edges 0->1 (w=2), 2->1 (w=-1), 1->0 (w=3): y1 = 2 x0 - x2, y0 = 3 x1, y2 = 0
    x = torch.tensor([[1.0, 10.0, 100.0]], dtype=torch.float64)
    for kernel in KERNELS:
        layer = GRNLinear(3, [0, 2, 1], [1, 1, 0], kernel=kernel).double()
        with torch.no_grad():
            layer.weight.copy_(torch.tensor([2.0, -1.0, 3.0]))
        np.testing.assert_allclose(layer(x).detach().numpy(), [[30.0, -98.0, 0.0]])


def test_csr_gradient_only_to_weight_or_only_to_input(random_graph):
    src, dst = random_graph(30, 120, seed=3)
    x = torch.randn(5, 30, dtype=torch.float64)
    ref = GRNLinear(30, src, dst, kernel="dense", init_std=1.0).double()
    csr = GRNLinear(30, src, dst, kernel="csr").double()
    csr.load_state_dict(ref.state_dict())
    ref(x).pow(2).sum().backward()
    csr(x).pow(2).sum().backward()
    torch.testing.assert_close(csr.weight.grad, ref.weight.grad)
    # input gradient without weight gradient
    csr.weight.requires_grad_(False)
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    csr(x1).pow(2).sum().backward()
    ref(x2).pow(2).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)


def test_gradcheck_csr(random_graph):
    src, dst = random_graph(8, 20, seed=4)
    layer = GRNLinear(8, src, dst, kernel="csr", init_std=1.0).double()
    x = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: layer(x, w), (x, layer.weight))


def test_weight_override_and_empty_graph(random_graph):
    src, dst = random_graph(10, 25, seed=5)
    layer = GRNLinear(10, src, dst, kernel="csr").double()
    x = torch.randn(4, 10, dtype=torch.float64)
    zero = layer(x, torch.zeros(25, dtype=torch.float64))
    assert torch.count_nonzero(zero) == 0
    for kernel in KERNELS:
        empty = GRNLinear(10, [], [], kernel=kernel).double()
        assert empty.n_edges == 0
        assert torch.count_nonzero(empty(x)) == 0


def test_select_kernel_rule(random_graph):
    assert select_kernel(100, 500) == "dense"  # small graph
    assert select_kernel(4000, 600_000) == "csr"  # sparse, large
    assert select_kernel(2000, 1_000_000, n_rows=2112) == "dense"  # density 0.25, many rows
    assert select_kernel(2000, 1_000_000, n_rows=512) == "csr"  # same graph, fewer rows
    assert select_kernel(2000, 1_800_000, n_rows=512) == "dense"  # density 0.45
    assert select_kernel(2000, 1_800_000, n_rows=64) == "csr"  # few rows: building W dominates
    assert select_kernel(2000, 1_800_000) == "dense"  # unknown rows count as 512
    assert select_kernel(4000, 600_000, "cuda") == "dense"
    assert select_kernel(20_000, 600_000, "cuda") == "csr"
    src, dst = random_graph(300, 900)
    assert GRNLinear(300, src, dst).resolved_kernel() == "csr"
    assert GRNLinear(300, src, dst, kernel="scatter").resolved_kernel() == "scatter"
    # "auto" gives the resolved kernel's numbers
    x = torch.rand(4, 300)
    auto, csr = GRNLinear(300, src, dst), GRNLinear(300, src, dst, kernel="csr")
    csr.load_state_dict(auto.state_dict())
    torch.testing.assert_close(auto(x), csr(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"kernel": "magic"}, ValueError, "kernel"),
        ({"src": [0, 0], "dst": [1, 1]}, ValueError, "duplicate"),
        ({"src": [0, 5], "dst": [1, 1]}, ValueError, "outside"),
        ({"src": [0, -1], "dst": [1, 1]}, ValueError, "outside"),
        ({"src": [0, 1], "dst": [1]}, ValueError, "same length"),
        ({"src": [0.5], "dst": [1]}, TypeError, "integer"),
        ({"src": [[0]], "dst": [[1]]}, ValueError, "one-dimensional"),
        ({"n_nodes": 0}, ValueError, "n_nodes"),
        ({"init_std": -1.0}, ValueError, "init_std"),
    ],
)
def test_bad_input(kwargs, error, match):
    args = {"n_nodes": 5, "src": [0, 1], "dst": [1, 2], **kwargs}
    n_nodes = args.pop("n_nodes")
    with pytest.raises(error, match=match):
        GRNLinear(n_nodes, args.pop("src"), args.pop("dst"), **args)


def test_wrong_input_width():
    layer = GRNLinear(5, [0], [1])
    with pytest.raises(ValueError, match="last dimension 5"):
        layer(torch.zeros(2, 4))


@pytest.mark.gpu
def test_kernels_agree_on_cuda(random_graph):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    src, dst = random_graph(50, 400, seed=6)
    x = torch.randn(16, 50, dtype=torch.float64)
    results = {}
    for kernel in ("dense", "csr", "scatter", "auto"):
        layer = GRNLinear(50, src, dst, kernel=kernel).double()
        torch.manual_seed(0)
        layer.weight.data = torch.randn(400, dtype=torch.float64)
        layer = layer.cuda()
        xc = x.cuda().requires_grad_(True)
        layer(xc).pow(2).sum().backward()
        results[kernel] = (xc.grad.cpu(), layer.weight.grad.cpu())
    for kernel in ("csr", "scatter", "auto"):
        for a, b in zip(results[kernel], results["dense"], strict=True):
            torch.testing.assert_close(a, b)
