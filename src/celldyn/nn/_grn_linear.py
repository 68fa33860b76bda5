"""Products ``y = x @ W`` with ``W`` restricted to the edges of a directed gene network.

An edge ``e`` goes from regulator ``src[e]`` to target ``dst[e]`` with weight ``weight[e]``,
so ``y[:, i] = sum over edges j -> i of weight[e] * x[:, j]`` (``W`` is regulator x target).
Three interchangeable kernels compute it:

``"dense"``
    scatter the weights into an ``n x n`` matrix, then one BLAS matmul. Memory ``O(n^2)``;
    fastest for small ``n`` or dense graphs, and on GPUs up to several thousand nodes.
``"csr"``
    ``W^T`` as a ``torch.sparse_csr_tensor`` times ``x^T``, with a hand-written backward: the
    input gradient is a second sparse product and the weight gradient a sampled dense-dense
    product (:func:`torch.sparse.sampled_addmm`). Memory ``O(edges + rows x n)``: no
    ``rows x edges`` tensor is ever built. Fastest for sparse graphs on CPU.
``"scatter"``
    gather ``x[:, src] * weight`` into a ``rows x edges`` message tensor and ``index_add`` it into
    the targets. This is the per-edge message passing of the reference FLeCS code, kept as a
    baseline and for tiny graphs. Memory ``O(rows x edges)``.

``"auto"`` picks one per call from the device, the number of nodes and the density; see
:func:`select_kernel`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

KERNELS = ("auto", "dense", "csr", "scatter")

# Crossovers measured on a 2-core AMD EPYC with CPU torch 2.13 (1 thread), forward + backward
# of 64, 512 and 2,112 rows (`python benchmarks/flecs_speed.py --crossover`, benchmarks/README.md).
# Dense costs ~3 * rows * n^2 BLAS flops plus building W (n^2, whatever the rows); CSR costs
# ~3 * rows * edges sparse flops at a several times lower rate. So dense wins only for small n,
# or for dense graphs multiplied by many rows at once.
_CPU_DENSE_MAX_NODES = 256
_CPU_FEW_ROWS = 512
_CPU_MANY_ROWS = 2048
_CPU_DENSE_MIN_DENSITY = 0.3
_CPU_DENSE_MIN_DENSITY_MANY_ROWS = 0.15
_CUDA_DENSE_MAX_NODES = 8192


def select_kernel(
    n_nodes: int,
    n_edges: int,
    device: torch.device | str = "cpu",
    n_rows: int | None = None,
) -> str:
    """Return the kernel ``"auto"`` uses for a graph of this size on ``device``.

    Rule (CPU measured, CUDA a heuristic not measured here):

    - CPU: ``"dense"`` when ``n_nodes <= 256``; otherwise ``"csr"``, except with at least 512
      rows and a density ``n_edges / n_nodes**2`` of at least 0.3 (0.15 from 2,048 rows),
      where ``"dense"`` wins. ``n_rows=None`` (unknown) counts as 512.
    - CUDA: ``"dense"`` up to 8192 nodes (the ``n x n`` matrix then takes at most 256 MiB in
      float32), else ``"csr"``.

    ``"scatter"`` is never chosen: it only wins, by fractions of a millisecond, on tiny sparse
    graphs, and its memory grows as rows x edges.

    Parameters
    ----------
    n_nodes
        Number of nodes (regulators = targets).
    n_edges
        Number of edges.
    device
        Device the product runs on.
    n_rows
        Number of rows (e.g. cells) multiplied at once, if known.

    Returns
    -------
    ``"dense"`` or ``"csr"``.
    """
    if torch.device(device).type == "cuda":
        return "dense" if n_nodes <= _CUDA_DENSE_MAX_NODES else "csr"
    if n_nodes <= _CPU_DENSE_MAX_NODES:
        return "dense"
    rows = _CPU_FEW_ROWS if n_rows is None else n_rows
    if rows < _CPU_FEW_ROWS:
        return "csr"
    density = n_edges / n_nodes**2
    many = rows >= _CPU_MANY_ROWS
    threshold = _CPU_DENSE_MIN_DENSITY_MANY_ROWS if many else _CPU_DENSE_MIN_DENSITY
    return "dense" if density >= threshold else "csr"


def _csr_index(rows: torch.Tensor, cols: torch.Tensor, n_nodes: int):
    """Row pointers, column indices and edge permutation of the CSR pattern ``(rows, cols)``."""
    perm = torch.argsort(rows * n_nodes + cols)
    counts = torch.bincount(rows, minlength=n_nodes)
    crow = torch.zeros(n_nodes + 1, dtype=torch.int64)
    crow[1:] = torch.cumsum(counts, 0)
    # int32 indices take MKL's fast sparse path on CPU (about 2x faster than int64).
    index_dtype = torch.int32 if rows.numel() < 2**31 - 1 else torch.int64
    return crow.to(index_dtype), cols[perm].to(index_dtype), perm


def _sparse(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, n: int) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, col, values, (n, n), check_invariants=False)


class _CSRProduct(torch.autograd.Function):
    """``y = x @ W`` with ``W`` given by its edges; CSR forward and backward.

    ``t_*`` index ``W^T`` (rows = targets), ``s_*`` index ``W`` (rows = regulators).
    """

    @staticmethod
    def forward(ctx, x, weight, t_crow, t_col, t_perm, s_crow, s_col, s_perm):
        n = x.shape[1]
        w_t = _sparse(t_crow, t_col, weight.index_select(0, t_perm), n)
        ctx.save_for_backward(x, weight, s_crow, s_col, s_perm)
        return (w_t @ x.t()).t()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):
        x, weight, s_crow, s_col, s_perm = ctx.saved_tensors
        n = x.shape[1]
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            w_s = _sparse(s_crow, s_col, weight.index_select(0, s_perm), n)
            grad_x = (w_s @ grad_y.t()).t()
        if ctx.needs_input_grad[1]:
            # grad_w[e] = sum_rows x[:, src_e] * grad_y[:, dst_e]: the (x^T grad_y) entries on the
            # edge pattern, computed without materialising a rows x edges tensor.
            pattern = _sparse(s_crow, s_col, weight.new_zeros(s_perm.numel()), n)
            sampled = torch.sparse.sampled_addmm(pattern, x.t(), grad_y.contiguous(), beta=0.0)
            grad_w = torch.empty_like(weight).scatter_(0, s_perm, sampled.values())
        return grad_x, grad_w, None, None, None, None, None, None


def _dense_product(x, weight, src, dst):
    n = x.shape[1]
    w = weight.new_zeros(n, n).index_put((src, dst), weight)
    return x @ w


def _scatter_product(x, weight, src, dst):
    messages = x.index_select(1, src) * weight
    return x.new_zeros(x.shape).index_add(1, dst, messages)


def _as_index(values, name: str) -> torch.Tensor:
    array = np.asarray(values.cpu() if isinstance(values, torch.Tensor) else values)
    if array.ndim != 1:
        raise ValueError(f"`{name}` must be one-dimensional, got shape {array.shape}.")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"`{name}` must hold integer node indices, got dtype {array.dtype}.")
    return torch.as_tensor(array.astype(np.int64))


def check_edges(
    n_nodes: int, src: Sequence[int] | torch.Tensor, dst: Sequence[int] | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate an edge list and return it as two int64 tensors.

    Parameters
    ----------
    n_nodes
        Number of nodes; indices must lie in ``[0, n_nodes)``.
    src
        Regulator index of each edge.
    dst
        Target index of each edge.

    Returns
    -------
    ``(src, dst)`` as int64 CPU tensors.
    """
    if int(n_nodes) != n_nodes or n_nodes < 1:
        raise ValueError(f"`n_nodes` must be a positive integer, got {n_nodes!r}.")
    src_t, dst_t = _as_index(src, "src"), _as_index(dst, "dst")
    if src_t.numel() != dst_t.numel():
        raise ValueError(
            f"`src` and `dst` must have the same length, got {src_t.numel()} and {dst_t.numel()}."
        )
    for name, index in (("src", src_t), ("dst", dst_t)):
        if index.numel() and (index.min() < 0 or index.max() >= n_nodes):
            raise ValueError(f"`{name}` has node indices outside [0, {n_nodes}).")
    n_unique = torch.unique(src_t * n_nodes + dst_t).numel()
    if n_unique != src_t.numel():
        raise ValueError(
            f"The edge list has {src_t.numel() - n_unique} duplicate (src, dst) pairs; "
            "each edge must appear once."
        )
    return src_t, dst_t


class GRNLinear(nn.Module):
    """Linear map ``y = x @ W`` with ``W`` (regulator x target) non-zero only on given edges.

    ``y[..., i] = sum over edges j -> i of weight[e] * x[..., j]``. The per-edge weights are a
    learnable :class:`~torch.nn.Parameter`. All kernels give the same values and gradients;
    they differ in speed and memory (:func:`select_kernel`).

    Parameters
    ----------
    n_nodes
        Number of nodes (columns of ``x`` and ``y``).
    src
        Regulator (row of ``W``) of each edge.
    dst
        Target (column of ``W``) of each edge. ``(src, dst)`` pairs must be unique; self-loops
        are allowed.
    kernel
        ``"auto"``, ``"dense"``, ``"csr"`` or ``"scatter"``; ``"auto"`` defers to
        :func:`select_kernel` on each call.
    init_std
        Standard deviation of the normal initial weights (0 gives zeros).
    generator
        Optional :class:`torch.Generator` for the initial weights.
    """

    def __init__(
        self,
        n_nodes: int,
        src: Sequence[int] | torch.Tensor,
        dst: Sequence[int] | torch.Tensor,
        *,
        kernel: str = "auto",
        init_std: float = 0.01,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if kernel not in KERNELS:
            raise ValueError(f"`kernel` must be one of {KERNELS}, got {kernel!r}.")
        if not init_std >= 0:
            raise ValueError(f"`init_std` must be >= 0, got {init_std!r}.")
        src_t, dst_t = check_edges(n_nodes, src, dst)
        self.n_nodes = int(n_nodes)
        self.kernel = kernel
        self.register_buffer("src", src_t)
        self.register_buffer("dst", dst_t)
        for prefix, rows, cols in (("t", dst_t, src_t), ("s", src_t, dst_t)):
            crow, col, perm = _csr_index(rows, cols, self.n_nodes)
            self.register_buffer(f"_{prefix}_crow", crow)
            self.register_buffer(f"_{prefix}_col", col)
            self.register_buffer(f"_{prefix}_perm", perm)
        weight = torch.randn(src_t.numel(), generator=generator) * init_std
        self.weight = nn.Parameter(weight)

    @property
    def n_edges(self) -> int:
        """Number of edges."""
        return self.src.numel()

    def resolved_kernel(
        self, device: torch.device | str | None = None, n_rows: int | None = None
    ) -> str:
        """Kernel used on ``device`` (default: the module's) for ``n_rows`` rows.

        Resolves ``"auto"`` with :func:`select_kernel`.
        """
        if self.kernel != "auto":
            return self.kernel
        device = self.weight.device if device is None else device
        return select_kernel(self.n_nodes, self.n_edges, device, n_rows)

    def forward(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Compute ``x @ W``.

        Parameters
        ----------
        x
            Node values, shape ``(..., n_nodes)``.
        weight
            Per-edge weights to use instead of :attr:`weight` (e.g. scaled by an intervention).

        Returns
        -------
        Tensor of shape ``(..., n_nodes)``: the summed regulatory input of every target.
        """
        if x.shape[-1] != self.n_nodes:
            raise ValueError(f"Expected last dimension {self.n_nodes}, got shape {tuple(x.shape)}.")
        weight = self.weight if weight is None else weight
        flat = x.reshape(-1, self.n_nodes)
        kernel = self.resolved_kernel(x.device, flat.shape[0])
        if kernel == "csr":
            y = _CSRProduct.apply(
                flat,
                weight.to(flat.dtype),
                self._t_crow,
                self._t_col,
                self._t_perm,
                self._s_crow,
                self._s_col,
                self._s_perm,
            )
        elif kernel == "dense":
            y = _dense_product(flat, weight.to(flat.dtype), self.src, self.dst)
        else:
            y = _scatter_product(flat, weight.to(flat.dtype), self.src, self.dst)
        return y.reshape(x.shape)

    def extra_repr(self) -> str:
        return f"n_nodes={self.n_nodes}, n_edges={self.n_edges}, kernel={self.kernel!r}"
