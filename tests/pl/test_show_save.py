"""Every ``cd.pl`` function follows scanpy's show/save/return_fig convention and is labelled."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from matplotlib.axes import Axes
from matplotlib.figure import Figure

import celldyn as cd
from celldyn.pl._utils import figure_path


def _curve(curve_adata):
    order = np.argsort(curve_adata.obs["t"].to_numpy())
    curve_adata.uns["celldyn_trajectories"] = {"indices": order.reshape(30, 10)}
    rng = np.random.default_rng(1)
    curve_adata.obsm["cellmnn_operator"] = rng.normal(size=(curve_adata.n_obs, 4))
    w = np.zeros((4, 4))
    w[0, 1], w[1, 2], w[3, 3] = 2.0, -1.0, 0.5
    curve_adata.varp["cellmnn_interactions"] = w
    curve_adata.varp["clipr_effects"] = w
    return curve_adata


def _calls(curve_adata, ring_flecs):
    """``name -> (function, args, kwargs, texts the figure must show)``."""
    curve = _curve(curve_adata)
    wild = ring_flecs([[3.0, -0.1, -2.0, 0.5, 1.0]])
    knocked = ring_flecs([[0.0, -0.1, -2.0, 0.5, 1.0]])
    simulated = cd.tl.simulate(wild, start=[0, 1], t_max=1.0, n_steps=2)
    sub = pd.DataFrame(
        {"source": ["a", "b"], "target": ["b", "a"], "change": [1.0, -0.5], "significant": [1, 0]}
    )
    sub["significant"] = sub["significant"].astype(bool)
    sign = ["activation (+)", "repression (\u2212)"]
    return {
        "velocity_stream": (
            cd.pl.velocity_stream,
            (curve, "true_velocity"),
            {"color": "t"},
            ["true velocity: t", "UMAP1", "UMAP2", "colorbar:t"],
        ),
        "trajectories": (
            cd.pl.trajectories,
            (curve,),
            {"color": "t", "n_show": 5},
            ["5 of 30 trajectories", "UMAP1", "UMAP2", "colorbar:t"],
        ),
        "operators": (
            cd.pl.operators,
            (curve,),
            {"color": "t", "n_neighbors": 10},
            ["t", "UMAP1", "UMAP2", "colorbar:t"],
        ),
        "interactions": (
            cd.pl.interactions,
            (curve,),
            {"n_top": 3},
            [
                "varp['cellmnn_interactions']: 3 strongest genes",
                "target",
                "regulator",
                "colorbar:interaction (regulator \u2192 target)",
            ],
        ),
        "network": (
            cd.pl.network,
            (wild,),
            {"n_edges": 3},
            ["flecs network: 3 strongest edges (regulator \u2192 target)", *sign],
        ),
        "effect_network": (
            cd.pl.effect_network,
            (curve,),
            {"n_edges": 2},
            ["clipr_effects: 2 strongest edges (regulator \u2192 target)", *sign],
        ),
        "affected_subnetwork": (
            cd.pl.affected_subnetwork,
            (sub,),
            {},
            [
                "affected subnetwork: 2 edges, width |change|",
                "change > 0 (more activating)",
                "change < 0 (more repressing)",
                "not significant",
            ],
        ),
        "edge_posteriors": (
            cd.pl.edge_posteriors,
            ({"wild type": wild, "knockout": knocked}, [("g0", "g1")]),
            {},
            [
                "flecs edge weights: ensemble members, mean \u00b1 sd",
                "edge (regulator \u2192 target)",
                "edge weight",
                "wild type",
                "knockout",
            ],
        ),
        "simulated_vs_observed": (
            cd.pl.simulated_vs_observed,
            (wild, simulated),
            {},
            [
                "simulated (colour) over observed (grey) cells",
                "PC1 (observed)",
                "PC2 (observed)",
                "colorbar:time",
            ],
        ),
    }


NAMES = list(cd.pl.__all__)


def _texts(figure: Figure) -> set[str]:
    """Titles, axis labels, legend entries and colour-bar labels (``'colorbar:<label>'``)."""
    texts = set()
    for ax in figure.axes:
        texts |= {ax.get_title(), ax.get_xlabel(), ax.get_ylabel()}
        if ax.get_legend() is not None:
            texts |= {t.get_text() for t in ax.get_legend().get_texts()}
        for artist in [*ax.collections, *ax.images]:
            if getattr(artist, "colorbar", None) is not None:
                bar = artist.colorbar
                axis = bar.ax.yaxis if bar.orientation == "vertical" else bar.ax.xaxis
                texts.add(f"colorbar:{axis.get_label_text()}")
    return texts - {""}


@pytest.fixture
def figdir(tmp_path):
    settings = sc.settings.figdir, sc.settings.autoshow, sc.settings.autosave
    sc.settings.figdir = tmp_path
    yield tmp_path
    sc.settings.figdir, sc.settings.autoshow, sc.settings.autosave = settings
    plt.close("all")


@pytest.fixture
def shown(monkeypatch):
    calls = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: calls.append(1))
    return calls


def test_every_plot_is_covered(curve_adata, ring_flecs):
    assert set(_calls(curve_adata, ring_flecs)) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_show_false_returns_labelled_axes(curve_adata, ring_flecs, figdir, shown, name):
    function, args, kwargs, expected = _calls(curve_adata, ring_flecs)[name]
    ax = function(*args, **kwargs, show=False)
    assert isinstance(ax, Axes)
    missing = set(expected) - _texts(ax.figure)
    assert not missing, f"{name} lacks {missing}; has {_texts(ax.figure)}"
    assert shown == [] and not any(figdir.iterdir())


@pytest.mark.parametrize("name", NAMES)
def test_save_writes_a_file_and_return_fig_returns_the_figure(
    curve_adata, ring_flecs, figdir, shown, name
):
    function, args, kwargs, _ = _calls(curve_adata, ring_flecs)[name]
    figure = function(*args, **kwargs, save="_test.png", return_fig=True)
    assert isinstance(figure, Figure)
    path = figdir / f"{name}_test.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shown == []


@pytest.mark.parametrize("name", ["network", "trajectories"])
def test_default_shows_and_returns_none_unless_an_ax_is_given(
    curve_adata, ring_flecs, figdir, shown, name
):
    function, args, kwargs, _ = _calls(curve_adata, ring_flecs)[name]
    sc.settings.autoshow = True
    assert function(*args, **kwargs) is None
    assert shown == [1]
    _, ax = plt.subplots()
    assert function(*args, **kwargs, ax=ax) is ax  # composing a figure: not shown
    assert shown == [1]
    sc.settings.autoshow = False
    assert isinstance(function(*args, **kwargs), Axes)
    assert shown == [1]


def test_autosave_and_file_format_follow_scanpy_settings(curve_adata, ring_flecs, figdir, shown):
    function, args, kwargs, _ = _calls(curve_adata, ring_flecs)["interactions"]
    sc.settings.autosave = True
    formats = sc.settings.file_format_figs
    try:
        sc.settings.file_format_figs = "svg"
        assert function(*args, **kwargs, show=False) is not None
        assert (figdir / "interactions.svg").read_text().lstrip().startswith("<?xml")
    finally:
        sc.settings.file_format_figs = formats
    assert figure_path("x", "_a.b") == figdir / f"x_a.b.{formats}"  # not a figure format
    assert figure_path("x", True) == figdir / f"x.{formats}"


def test_operators_show_false_and_several_colours(curve_adata, figdir):
    curve = _curve(curve_adata)
    curve.obs["half"] = pd.Categorical(np.where(curve.obs["t"] > 0.5, "late", "early"))
    axes = cd.pl.operators(curve, color=["t", "half"], n_neighbors=10, show=False)
    assert [ax.get_title() for ax in axes] == ["t", "half"]
    texts = _texts(axes[0].figure)
    assert {"colorbar:t", "early", "late"} <= texts
    ax = cd.pl.operators(curve, n_neighbors=10, show=False)
    assert ax.get_title() == "cellmnn operators"


def test_velocity_stream_categorical_colour_gets_a_legend(curve_adata, figdir):
    curve = _curve(curve_adata)
    curve.obs["half"] = pd.Categorical(np.where(curve.obs["t"] > 0.5, "late", "early"))
    ax = cd.pl.velocity_stream(curve, "true_velocity", color="half", show=False)
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"early", "late"}
    ax = cd.pl.velocity_stream(curve, "true_velocity", show=False, title="mine")
    assert ax.get_title() == "mine"
    ax = cd.pl.velocity_stream(curve, "true_velocity", show=False)
    assert ax.get_title() == "true velocity"  # scvelo prints underscores as spaces


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"show": "yes"}, "`show` must be True, False or None"),
        ({"save": 3}, "`save` must be a bool, a str or None"),
        ({"return_fig": 1}, "`return_fig` must be True, False or None"),
    ],
)
def test_bad_options_raise_before_anything_is_written(curve_adata, figdir, options, match):
    curve = _curve(curve_adata)
    with pytest.raises(TypeError, match=match):
        cd.pl.velocity_stream(curve, "true_velocity", **options)
    assert "true_velocity_umap" not in curve.obsm and not plt.get_fignums()
