"""Minibatches of model-specific training samples (trajectories, cells, ...) for Lightning."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset


class _TensorDictDataset(Dataset):
    """Samples of a dict of tensors; a minibatch is one indexing of every tensor.

    ``transform`` (if given) turns each indexed sample or minibatch into the model's tensors.
    """

    def __init__(
        self,
        tensors: dict[str, torch.Tensor],
        indices: np.ndarray,
        transform: Callable[[dict], dict] | None = None,
    ):
        self.tensors = tensors
        self.indices = torch.as_tensor(indices, dtype=torch.long)
        self.transform = transform or _as_batch

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        j = self.indices[i]
        return self.transform({key: value[j] for key, value in self.tensors.items()})

    def __getitems__(self, batch: list[int]) -> dict[str, torch.Tensor]:
        j = self.indices[torch.as_tensor(batch, dtype=torch.long)]
        return self.transform({key: value[j] for key, value in self.tensors.items()})


def _as_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Collate function of :class:`_TensorDictDataset`: its minibatches come whole."""
    return batch


def _loader(dataset: _TensorDictDataset, batch_size: int, shuffle: bool) -> DataLoader:
    # batch_size and shuffle, not a batch sampler: Lightning swaps in a DistributedSampler
    # under DDP and keeps the batch size; the dataset's __getitems__ takes a whole minibatch
    size = min(batch_size, len(dataset))
    return DataLoader(dataset, batch_size=size, shuffle=shuffle, collate_fn=_as_batch)


class TensorDataModule(LightningDataModule):
    """Shuffled minibatches from a dict of equally long tensors, with a validation split.

    Works unchanged on CPU, one GPU and under Lightning DDP (Lightning adds the
    distributed sampler).

    Parameters
    ----------
    tensors
        Training samples; every tensor has the samples along its first dimension.
    batch_size
        Minibatch size.
    validation_size
        Fraction of samples held out for validation (early stopping, model selection).
    random_state
        Seed of the split.
    transform
        Turns each minibatch (the dict of indexed tensors) into the model's tensors, e.g.
        cell positions into their expression read from disk
        (:meth:`~celldyn.models._rows.ExpressionRows.gather`); ``None``: as they are.
    """

    def __init__(
        self,
        tensors: dict[str, torch.Tensor],
        *,
        batch_size: int = 128,
        validation_size: float = 0.1,
        random_state: int = 0,
        transform: Callable[[dict], dict] | None = None,
    ):
        super().__init__()
        lengths = {len(v) for v in tensors.values()}
        if len(lengths) != 1:
            raise ValueError(f"All training tensors need the same length, got {sorted(lengths)}.")
        n = lengths.pop()
        if not 0.0 <= validation_size < 1.0:
            raise ValueError(f"`validation_size` must be in [0, 1), got {validation_size}.")
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be at least 1, got {batch_size}.")
        order = np.random.default_rng(random_state).permutation(n)
        n_val = int(round(validation_size * n)) if n > 1 else 0
        self.tensors = tensors
        self.transform = transform
        self.batch_size = batch_size
        self.val_idx, self.train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
        self.n_train, self.n_val = len(self.train_idx), len(self.val_idx)

    def train_dataloader(self) -> DataLoader:
        """Shuffled training minibatches."""
        dataset = _TensorDictDataset(self.tensors, self.train_idx, self.transform)
        return _loader(dataset, self.batch_size, True)

    def val_dataloader(self) -> DataLoader | list:
        """Return validation minibatches (empty when ``validation_size=0``)."""
        if self.n_val == 0:
            return []
        dataset = _TensorDictDataset(self.tensors, self.val_idx, self.transform)
        return _loader(dataset, self.batch_size, False)
