"""celldyn's logger follows scanpy's verbosity unless its level is set explicitly."""

import importlib
import logging

import pytest
import scanpy as sc

from celldyn import _logging
from celldyn._logging import FOLLOW_SCANPY, log_added, logger


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def records():
    verbosity, level = sc.settings.verbosity, logger.level
    handler = _Records()
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)
    logger.setLevel(level)
    sc.settings.verbosity = verbosity


def _log_all():
    logger.debug("debug message")
    log_added("layers", "flecs_velocity")
    logger.warning("warning message")
    logger.error("error message")


@pytest.mark.parametrize(
    ("verbosity", "expected"),
    [
        (0, ["error message"]),
        (1, ["warning message", "error message"]),
        (2, ["    added 'flecs_velocity' (adata.layers)", "warning message", "error message"]),
        (4, ["debug message", "    added 'flecs_velocity' (adata.layers)", "warning message"]),
    ],
)
def test_follows_scanpy_verbosity(records, verbosity, expected):
    logger.setLevel(FOLLOW_SCANPY)
    sc.settings.verbosity = verbosity
    _log_all()
    assert records[: len(expected)] == expected
    assert len(records) == {0: 1, 1: 2, 2: 3, 4: 4}[verbosity]


def test_verbosity_change_applies_without_reimport(records):
    logger.setLevel(FOLLOW_SCANPY)
    sc.settings.verbosity = 1
    log_added("obsm", "X_a")
    sc.settings.verbosity = "info"
    log_added("obsm", "X_b")
    assert records == ["    added 'X_b' (adata.obsm)"]


def test_explicit_level_wins_over_scanpy(records):
    sc.settings.verbosity = 0
    logger.setLevel(logging.INFO)
    log_added("varp", "flecs_weights")
    sc.settings.verbosity = 4
    logger.setLevel(logging.ERROR)
    logger.warning("hidden")
    assert records == ["    added 'flecs_weights' (adata.varp)"]


def test_reimport_keeps_the_level_and_one_handler(records):
    logger.setLevel(logging.ERROR)
    n_handlers, n_filters = len(logger.handlers), len(logger.filters)
    importlib.reload(_logging)
    assert logger.level == logging.ERROR
    assert (len(logger.handlers), len(logger.filters)) == (n_handlers, n_filters)
    logger.warning("hidden")
    assert records == []


def test_scanpy_level_maps_scanpy_levels(records):
    sc.settings.verbosity = "hint"
    assert _logging.scanpy_level() == 15  # scanpy's HINT, between INFO and DEBUG
    sc.settings.verbosity = "error"
    assert _logging.scanpy_level() == logging.ERROR
