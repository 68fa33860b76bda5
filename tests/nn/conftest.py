import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Small tensors: one thread avoids oversubscription on a busy 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _random_graph(n_nodes: int, n_edges: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    flat = torch.randperm(n_nodes * n_nodes, generator=gen)[:n_edges]
    return flat // n_nodes, flat % n_nodes


@pytest.fixture
def random_graph():
    """``random_graph(n_nodes, n_edges, seed)`` -> unique ``(src, dst)`` edges."""
    return _random_graph
