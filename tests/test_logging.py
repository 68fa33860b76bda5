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


@pytest.fixture(scope="module")
def tiny_flecs():
    import celldyn as cd
    from celldyn.models import FLeCS

    adata = cd.datasets.simulate_grn(6, 120, 3, random_state=0)
    sc.pp.pca(adata, n_comps=4)
    cd.pp.time_groups(adata, time_key="time")
    cd.pp.prior_network(adata, adata.uns["ground_truth_network"])
    cd.pp.trajectories(adata, method="quantile", n_trajectories=20)
    FLeCS.setup_anndata(adata)
    return FLeCS(adata)


def _fit_output(model, capsys, caplog, **kwargs) -> str:
    caplog.clear()
    with caplog.at_level(logging.DEBUG):  # capture every record that is emitted
        model.train(max_epochs=1, velocity_init=2, accelerator="cpu", **kwargs)
    out, err = capsys.readouterr()
    return out + err + "\n".join(r.getMessage() for r in caplog.records)


def test_a_fit_in_a_script_is_quiet_unless_asked(records, tiny_flecs, capsys, caplog):
    """Scanpy's default verbosity: no progress bar, no Lightning banner, no 'trained' line;
    verbosity 2: Lightning's lines and one 'trained' line per fit."""
    sc.settings.verbosity = 1
    logger.setLevel(FOLLOW_SCANPY)
    quiet = _fit_output(tiny_flecs, capsys, caplog)
    for text in ("GPU available", "Epoch 1/1", "it/s", "Tip:"):
        assert text not in quiet
    assert not [m for m in records if m.startswith("trained")]
    sc.settings.verbosity = 2
    loud = _fit_output(tiny_flecs, capsys, caplog)
    assert "GPU available" in loud
    assert [m for m in records if m.startswith("trained FLeCS: 1 epochs")]


def test_lightning_progress_bar_keyword_is_accepted(records, tiny_flecs, capsys, caplog):
    out = _fit_output(tiny_flecs, capsys, caplog, enable_progress_bar=True)
    assert "Epoch 1/1" in out  # the bar
    assert "Epoch 1/1" not in _fit_output(tiny_flecs, capsys, caplog, enable_progress_bar=False)
