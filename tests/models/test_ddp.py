"""Every model trains under DDP on 2 CPU processes (gloo) like on one process.

Lightning's ``strategy='ddp'`` re-runs the calling script in every process, which cannot be
pytest itself: ``_ddp_fits.py`` fits all models as a script, once in one process and once in
two, and writes each rank's results for :func:`_ddp_fits.check` (equivalence criteria there).
"""

import pytest

MODELS = ("flecs", "flecs_drug", "cellmnn", "lcd")


@pytest.fixture(scope="module")
def fits(ddp_fits, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    return ddp_fits.run(out / "single", 1), ddp_fits.run(out / "ddp", 2)


@pytest.mark.parametrize("name", MODELS)
def test_ddp_on_two_cpu_processes_matches_one_process(ddp_fits, fits, name):
    single, ddp = fits
    ddp_fits.check(name, single[name][0], ddp[name])
