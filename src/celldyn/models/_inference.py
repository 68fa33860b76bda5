"""Batched inference of the getters: a torch function applied to row blocks of arrays."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .._validate import check_int

INFERENCE_BATCH = 4096
"""Rows per block of the getters when they are given no ``batch_size``."""


def check_indices(indices: object, n_obs: int) -> np.ndarray | slice:
    """Rows of ``n_obs`` selected by ``indices`` (``None``: all, as a slice).

    ``indices`` are integer positions (negative ones count from the end, as in numpy) or a
    boolean mask of length ``n_obs``; a :class:`ValueError` names anything else.
    """
    if indices is None:
        return slice(None)
    array = np.asarray(indices)
    if array.dtype == bool:
        if array.shape != (n_obs,):
            raise ValueError(
                f"A boolean `indices` mask must have length {n_obs}, got shape {array.shape}."
            )
        return np.flatnonzero(array)
    if array.ndim != 1 or (array.size and not np.issubdtype(array.dtype, np.integer)):
        raise ValueError("`indices` must be a 1-D sequence of integer cell positions or a mask.")
    if array.size and (array.min() < -n_obs or array.max() >= n_obs):
        raise ValueError(f"`indices` must lie in [-{n_obs}, {n_obs}) (the cells of adata).")
    return array.astype(np.int64)


def batched(
    fn: Callable,
    *arrays: np.ndarray,
    device: torch.device | str,
    batch_size: int | None = None,
):
    """Apply ``fn`` to row blocks of ``arrays`` and concatenate its outputs as numpy arrays.

    Every block of ``batch_size`` rows (``None``: :data:`INFERENCE_BATCH`) of each array
    becomes a tensor on ``device`` (same dtype) and ``fn(*blocks)`` runs under
    :func:`torch.no_grad`. ``fn`` returns a tensor or a tuple of tensors (or ``None``s); the
    outputs of the blocks are concatenated along their first axis, per tuple position
    (``None`` stays ``None``). Rows do not interact, so the result does not depend on
    ``batch_size``; a function that reduces a block returns its reduction with a leading
    axis of 1 and the caller reduces the stacked blocks.

    Parameters
    ----------
    fn
        Torch function of one block of every array.
    *arrays
        Arrays with the same number of rows.
    device
        Device of the blocks (the model's ``device``).
    batch_size
        Rows per block; a positive integer or ``None``.

    Returns
    -------
    An array, or a tuple of arrays (and ``None``s) when ``fn`` returns a tuple.
    """
    size = INFERENCE_BATCH if batch_size is None else check_int(batch_size, "batch_size", 1)
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"Arrays of different lengths: {[len(a) for a in arrays]}.")
    outputs = []
    with torch.no_grad():
        for start in range(0, max(n, 1), size):
            blocks = (torch.as_tensor(a[start : start + size], device=device) for a in arrays)
            out = fn(*blocks)
            parts = out if isinstance(out, tuple) else (out,)
            outputs.append(tuple(None if p is None else p.detach().cpu().numpy() for p in parts))
    result = tuple(
        None if parts[0] is None else np.concatenate(parts) for parts in zip(*outputs, strict=True)
    )
    return result if isinstance(out, tuple) else result[0]
