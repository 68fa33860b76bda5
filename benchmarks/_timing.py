"""Timing and memory helpers shared by the benchmark scripts that run one fit per process."""

from __future__ import annotations

import resource
import time

from lightning.pytorch import Callback


def peak_mib() -> float:
    """Peak resident memory of this process so far (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class EpochTimes(Callback):
    """Wall-clock start and end of every training epoch (``starts``, ``ends``)."""

    def __init__(self):
        self.starts, self.ends = [], []

    def on_train_epoch_start(self, trainer, pl_module):
        self.starts.append(time.perf_counter())

    def on_train_epoch_end(self, trainer, pl_module):
        self.ends.append(time.perf_counter())
