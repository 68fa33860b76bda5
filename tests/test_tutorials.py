"""The documentation tutorials run: their code cells are executed in order, in one namespace."""

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "docs" / "notebooks").glob("*.ipynb"))

REAL_DATA = {
    "cellmnn_eb": ["eb_trajectorynet_pca5"],
    "flecs_beeline": ["beeline_mdc"],
    "lcd_papalexi": ["papalexi2021_eccite_sceptre"],
}
"""Notebooks on real data -> the folders of ``../shared/data`` their loaders read."""


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_tutorial_runs(path, capsys, monkeypatch, shared_data):
    folders = [shared_data(name) for name in REAL_DATA.get(path.stem, [])]  # skips if absent
    if folders:
        # the loaders read `$CELLDYN_DATA/<folder>` (no download) unless a cache dir was set
        monkeypatch.setenv("CELLDYN_DATA", str(folders[0].parent))
        monkeypatch.setattr("celldyn.datasets._cache._cache_dir", None)
    cells = json.loads(path.read_text())["cells"]
    namespace: dict = {}
    for cell in cells:
        if cell["cell_type"] == "code":
            source = "".join(cell["source"])
            exec(compile(source, f"{path.name}", "exec"), namespace)  # noqa: S102
    plt.close("all")
