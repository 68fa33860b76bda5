import json
import re

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import celldyn as cd
from celldyn.cli import main


@pytest.fixture(scope="module")
def raw_h5ad(tmp_path_factory):
    adata = cd.datasets.simulate_grn(n_genes=20, n_cells=400, n_timepoints=4, counts=True)
    net = adata.uns.pop("ground_truth_network")
    adata.uns.pop("simulation")
    folder = tmp_path_factory.mktemp("cli")
    adata.write_h5ad(folder / "raw.h5ad")
    net.to_csv(folder / "net.csv", index=False)
    return folder


def test_pp_pipeline(raw_h5ad):
    f = raw_h5ad
    assert (
        main(
            [
                "-q",
                "pp",
                "recipe",
                "-i",
                str(f / "raw.h5ad"),
                "-o",
                str(f / "a.h5ad"),
                "--n-top-genes",
                "20",
                "--no-denoise",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "-q",
                "pp",
                "time-groups",
                "-i",
                str(f / "a.h5ad"),
                "-o",
                str(f / "a.h5ad"),
                "--time-key",
                "time",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "-q",
                "pp",
                "trajectories",
                "-i",
                str(f / "a.h5ad"),
                "-o",
                str(f / "a.h5ad"),
                "--n-trajectories",
                "50",
                "--length",
                "5",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "-q",
                "pp",
                "prior-network",
                "-i",
                str(f / "a.h5ad"),
                "-o",
                str(f / "a.h5ad"),
                "--network",
                str(f / "net.csv"),
                "--weight",
                "weight",
            ]
        )
        == 0
    )
    out = ad.read_h5ad(f / "a.h5ad")
    assert out.uns["celldyn_trajectories"]["indices"].shape == (50, 5)
    assert np.array_equal(np.unique(out.obs["celldyn_time"]), np.unique(out.obs["time"]))
    net = pd.read_csv(f / "net.csv")
    kept = net[net.source.isin(out.var_names) & net.target.isin(out.var_names)]
    assert out.varp["celldyn_prior"].nnz == len(kept.drop_duplicates(["source", "target"]))


def test_invalid_input_exit_code(raw_h5ad, tmp_path, caplog):
    code = main(
        [
            "pp",
            "time-groups",
            "-i",
            str(raw_h5ad / "raw.h5ad"),
            "-o",
            str(tmp_path / "x.h5ad"),
            "--time-key",
            "no_such_column",
        ]
    )
    assert code == 1
    assert "no_such_column" in caplog.text
    assert not (tmp_path / "x.h5ad").exists()
    assert main(["pp", "recipe", "-i", str(tmp_path / "missing.h5ad"), "-o", "y.h5ad"]) == 1


def test_bad_usage_exits_2():
    with pytest.raises(SystemExit) as err:
        main(["pp", "trajectories", "--method", "bogus", "-i", "a", "-o", "b"])
    assert err.value.code == 2


def test_demo_writes_results(tmp_path):
    args = ["-q", "demo", "--output", str(tmp_path), "--n-cells", "600", "--max-epochs", "2"]
    assert main(args) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    adata = ad.read_h5ad(tmp_path / "demo.h5ad")
    assert summary["n_cells"] == adata.n_obs == 600
    assert adata.uns["celldyn_trajectories"]["indices"].shape == (1000, 10)
    assert summary["prior_edges"] > summary["true_edges_in_prior"]  # a noisy prior
    assert 0.0 <= summary["flecs_network_recovery"]["effects"]["auroc"] <= 1.0
    for method, cosine in summary["mean_velocity_cosine_to_truth"].items():
        assert np.isfinite(adata.layers[f"{method}_velocity"]).all()
        assert -1.0 <= cosine <= 1.0
    assert (tmp_path / "demo.png").stat().st_size > 10_000


def test_model_subcommands(raw_h5ad, caplog):
    f = raw_h5ad
    src, out = str(f / "raw.h5ad"), str(f / "m.h5ad")
    assert main(["-q", "pp", "recipe", "-i", src, "-o", out, "--n-top-genes", "20"]) == 0
    assert main(["-q", "pp", "time-groups", "-i", out, "-o", out, "--time-key", "time"]) == 0
    assert main(["-q", "pp", "trajectories", "-i", out, "-o", out, "--n-trajectories", "40"]) == 0
    common = ["-i", out, "-o", out, "--max-epochs", "2"]
    network = ["--network", str(f / "net.csv"), "--n-models", "2"]
    assert main(["-q", "flecs", *common, *network, "--velocity-init", "-1"]) == 1
    assert "velocity_init" in caplog.text
    assert main(["-q", "flecs", *common, *network, "--velocity-weight", "-1"]) == 1
    assert "velocity_weight" in caplog.text
    assert main(["-q", "flecs", *common, *network, "--warm-start", "none"]) == 0
    ot_pairs = ["--warm-start", "ot_pairs", "--velocity-init", "20"]
    saved = f / "flecs_model"
    assert main(["-q", "flecs", *common, *network, *ot_pairs, "--save-model", str(saved)]) == 0
    assert sorted(p.name for p in saved.iterdir()) == ["member_0", "member_1"]
    cellmnn = ["--time-key", "time", "--n-components", "3", "--interactions", "expression_scaled"]
    mnn = f / "cellmnn_model"
    assert main(["-q", "cellmnn", *common, *cellmnn, "--save-model", str(mnn)]) == 0
    result = ad.read_h5ad(out)
    loaded = cd.models.CellMNN.load(str(mnn), adata=result.copy())
    assert loaded.get_operators().shape == (result.n_obs, 3, 3)
    clipr = ["-q", "clipr", "-i", out, "-o", str(f / "effects.h5ad"), "--model-type", "flecs"]
    assert main([*clipr, "--model", str(saved)]) == 1
    assert "holds an ensemble: give one member, e.g. 'member_0'" in caplog.text
    assert main([*clipr, "--model", str(saved / "member_0")]) == 0
    effects = ad.read_h5ad(f / "effects.h5ad").varp["clipr_effects"]
    assert effects.shape == (result.n_vars, result.n_vars) and np.isfinite(effects).all()
    assert np.isfinite(result.layers["flecs_velocity"]).all()
    assert result.varp["flecs_weights"].nnz == result.varp["celldyn_prior"].nnz
    assert (result.varp["flecs_weights_std"].data > 0).all()
    assert result.obsm["cellmnn_operator"].shape == (result.n_obs, 9)
    assert result.uns["cellmnn"]["params"]["interactions"] == "expression_scaled"

    regulator = result.var_names[result.varp["celldyn_prior"].tocsr().getnnz(axis=1).argmax()]
    ko = str(f / "ko.h5ad")
    args = ["-q", "simulate", "-i", out, "-o", ko, "--genes", regulator, "--n-steps", "3"]
    assert main(args) == 0
    simulated = ad.read_h5ad(ko)
    assert set(simulated.obs["condition"]) == {"wild_type", "knockout"}
    assert sorted(simulated.obs["time"].unique())[0] == 0.0
    assert simulated.obs["time"].nunique() == 4 and simulated.n_vars == result.n_vars
    assert main(["-q", "simulate", "-i", out, "-o", ko, "--genes", "not_a_gene"]) == 1


def test_flecs_without_trajectories_fails_cleanly(raw_h5ad, tmp_path):
    code = main(
        [
            "-q",
            "flecs",
            "-i",
            str(raw_h5ad / "raw.h5ad"),
            "-o",
            str(tmp_path / "o.h5ad"),
            "--network",
            str(raw_h5ad / "net.csv"),
        ]
    )
    assert code == 1
    assert not (tmp_path / "o.h5ad").exists()


def test_lcd_subcommand(tmp_path):
    screen = cd.datasets.simulate_perturbations(6, n_cells=40, n_doubles=0, counts=True)
    src, out = tmp_path / "screen.h5ad", tmp_path / "lcd.h5ad"
    screen.write_h5ad(src)
    args = ["-q", "lcd", "-i", str(src), "-o", str(out), "--max-epochs", "2", "--score-epochs", "2"]
    assert main(args) == 0
    result = ad.read_h5ad(out)
    assert result.obsm["X_lcd"].shape == (screen.n_obs, screen.n_vars)
    assert np.isfinite(result.obsm["X_lcd"]).all()
    assert list(result.uns["lcd"]["perturbation_labels"])[0] == "control"
    bad = ["-q", "lcd", "-i", str(src), "-o", str(out), "--control", "not_a_label"]
    assert main(bad) == 1


def test_lcd_subcommand_with_intervention_targets(tmp_path):
    screen = cd.datasets.simulate_perturbations(4, n_cells=40, n_doubles=0, counts=True)
    screen.obs["perturbation"] = screen.obs["perturbation"].astype(str).replace("G1", "DRUG")
    src, out = tmp_path / "screen.h5ad", tmp_path / "lcd.h5ad"
    screen.write_h5ad(src)
    args = ["-q", "lcd", "-i", str(src), "-o", str(out), "--max-epochs", "2", "--score-epochs", "2"]
    assert main([*args, "--targets", "DRUG=G1", "G2="]) == 0
    assert ad.read_h5ad(out).uns["lcd"]["targets"] == {"DRUG": "G1", "G0": "G0", "G3": "G3"}
    out.unlink()
    assert main([*args, "--targets", "DRUG"]) == 1  # not a pair
    assert main([*args, "--targets", "DRUG=NOTAGENE"]) == 1
    assert not out.exists()


@pytest.mark.filterwarnings("ignore:Variable names are not unique")
def test_lcd_subcommand_rejects_duplicated_gene_names(tmp_path, caplog):
    screen = cd.datasets.simulate_perturbations(4, n_cells=20, n_doubles=0, counts=True)
    screen.var_names = ["G0", "G1", "G1", "G3"]
    src, out = tmp_path / "screen.h5ad", tmp_path / "lcd.h5ad"
    screen.write_h5ad(src)
    before = src.read_bytes()
    args = ["-q", "lcd", "-i", str(src), "-o", str(out), "--max-epochs", "2", "--score-epochs", "2"]
    assert main(args) == 1
    assert "var_names are not unique" in caplog.text
    assert not out.exists() and src.read_bytes() == before


def _file_cases(folder, tmp):
    """(arguments, text the error must contain) for bad files; ``tmp`` holds the bad paths."""
    (tmp / "notes.txt").write_text("not an h5ad file")
    (tmp / "a_dir").mkdir()
    (tmp / "a_file").write_text("x")
    (tmp / "bad.csv").write_bytes(b"\x89\x00\xff binary")
    raw, net = str(folder / "raw.h5ad"), str(folder / "net.csv")
    out = str(tmp / "out.h5ad")
    groups = ["pp", "time-groups", "--time-key", "time"]
    return [
        ([*groups, "-i", str(tmp / "notes.txt"), "-o", out], "is not a readable .h5ad file"),
        ([*groups, "-i", str(tmp / "a_dir"), "-o", out], "is a directory, not a file"),
        ([*groups, "-i", raw, "-o", str(tmp / "a_dir")], "--output '.*a_dir' is a directory"),
        ([*groups, "-i", raw, "-o", str(tmp / "a_file" / "o.h5ad")], "a_file' is a file, not a"),
        ([*groups, "-i", raw, "-o", str(tmp / "a_file" / "x" / "o.h5ad")], "a_file' is a file"),
        (["pp", "recipe", "-i", str(tmp / "a_dir"), "-o", out], "--input '.*a_dir' is a direc"),
        (["pp", "prior-network", "-i", raw, "-o", out, "--network", str(tmp / "a_dir")], "--net"),
        (["pp", "prior-network", "-i", raw, "-o", out, "--network", str(tmp / "bad.csv")], "csv"),
        (["flecs", "-i", raw, "-o", str(tmp / "a_dir"), "--network", net], "is a directory"),
        (["simulate", "-i", str(tmp / "notes.txt"), "-o", out], "not a readable .h5ad"),
        (["cellmnn", "-i", str(tmp / "notes.txt"), "-o", out, "--time-key", "t"], "not a read"),
        (["lcd", "-i", raw, "-o", str(tmp / "a_dir")], "--output"),
        (["demo", "-o", str(tmp / "a_file")], "--output '.*a_file' is a file; give a directory"),
        (["demo", "-o", str(tmp / "a_file" / "sub")], "a_file' is a file, not a directory"),
    ]


@pytest.mark.parametrize("case", range(14))
def test_bad_files_give_a_clean_error(raw_h5ad, tmp_path, caplog, case):
    args, message = _file_cases(raw_h5ad, tmp_path)[case]
    before = (raw_h5ad / "raw.h5ad").read_bytes()
    assert main(["-q", *args]) == 1  # returned, not raised: no traceback
    assert "celldyn: error:" in caplog.text
    assert re.search(message, caplog.text), caplog.text
    assert not (tmp_path / "out.h5ad").exists()
    assert (raw_h5ad / "raw.h5ad").read_bytes() == before
    assert (tmp_path / "a_file").read_text() == "x" and (tmp_path / "a_dir").is_dir()
    assert not any((tmp_path / "a_dir").iterdir())


def test_n_groups_with_time_key_is_an_error(raw_h5ad, tmp_path, caplog):
    out = tmp_path / "o.h5ad"
    args = ["-q", "pp", "time-groups", "-i", str(raw_h5ad / "raw.h5ad"), "-o", str(out)]
    assert main([*args, "--time-key", "time", "--n-groups", "5"]) == 1
    assert "`n_groups` applies only to `pseudotime_key`" in caplog.text
    assert not out.exists()


def test_version(capsys):
    with pytest.raises(SystemExit) as err:
        main(["--version"])
    assert err.value.code == 0
    assert capsys.readouterr().out.strip() == f"celldyn {cd.__version__}"


def _parsers(parser, path=()):
    """Every (sub)parser with its command path."""
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, (*path, name))


def test_every_option_has_help_and_shows_its_default():
    from celldyn.cli import _build_parser

    parsers = dict(_parsers(_build_parser()))
    assert {("clipr",), ("lcd",), ("flecs",), ("cellmnn",), ("pp", "recipe")} <= set(parsers)
    for path, parser in parsers.items():
        text = parser.format_help()
        for action in parser._actions:
            if not action.option_strings or action.dest in ("help", "version"):
                continue
            assert action.help, f"celldyn {' '.join(path)} {action.option_strings[0]}: no help"
            default = action.default
            if default is not None and not isinstance(default, bool):
                assert f"(default: {default})" in " ".join(text.split()), (path, action.dest)
    assert "default: update --input in place" in parsers[("flecs",)].format_help()
    for path in [("flecs",), ("cellmnn",), ("lcd",)]:
        assert "--save-model" in parsers[path].format_help()


def test_steps_update_the_input_in_place_and_keep_every_result(raw_h5ad, tmp_path):
    src, work = raw_h5ad / "raw.h5ad", tmp_path / "work.h5ad"
    before = src.read_bytes()
    assert main(["-q", "pp", "recipe", "-i", str(src), "-o", str(work), "--n-top-genes", "20"]) == 0
    assert src.read_bytes() == before  # --output: the input is left as it was
    assert main(["-q", "pp", "time-groups", "-i", str(work), "--time-key", "time"]) == 0
    steps = ["-q", "pp", "trajectories", "-i", str(work), "--n-trajectories", "20", "--length", "4"]
    assert main(steps) == 0
    out = ad.read_h5ad(work)
    assert "celldyn_recipe" in out.uns and "celldyn_time" in out.obs
    assert out.uns["celldyn_trajectories"]["indices"].shape == (20, 4)
    assert [p.name for p in tmp_path.iterdir()] == ["work.h5ad"]  # no temporary file left


def test_writing_over_another_steps_results_warns(raw_h5ad, tmp_path, caplog):
    out = tmp_path / "out.h5ad"
    fitted = ad.read_h5ad(raw_h5ad / "raw.h5ad")
    fitted.uns["flecs"] = {"params": {"lr": 0.1}}
    fitted.varp["flecs_weights"] = np.eye(fitted.n_vars)
    fitted.write_h5ad(out)
    args = ["pp", "time-groups", "-i", str(raw_h5ad / "raw.h5ad"), "-o", str(out)]
    assert main([*args, "--time-key", "time"]) == 0
    assert "already holds results that are not in --input" in caplog.text
    assert "uns['flecs']" in caplog.text and "varp['flecs_weights']" in caplog.text
    caplog.clear()
    assert main(["pp", "time-groups", "-i", str(out), "--time-key", "time"]) == 0  # in place
    assert "already holds results" not in caplog.text


def test_errors_name_the_cli_command_to_run(raw_h5ad, tmp_path, caplog):
    args = ["-q", "flecs", "-i", str(raw_h5ad / "raw.h5ad"), "-o", str(tmp_path / "o.h5ad")]
    assert main([*args, "--network", str(raw_h5ad / "net.csv")]) == 1
    assert "`celldyn pp trajectories`" in caplog.text
    assert "celldyn.pp.trajectories" not in caplog.text
    assert not (tmp_path / "o.h5ad").exists()


def test_lcd_saves_its_model_and_clipr_uses_it(tmp_path, caplog):
    screen = cd.datasets.simulate_perturbations(4, n_cells=40, n_doubles=0, counts=True)
    src, model = tmp_path / "screen.h5ad", tmp_path / "lcd_model"
    screen.write_h5ad(src)
    fit = ["-q", "lcd", "-i", str(src), "--max-epochs", "2", "--score-epochs", "2"]
    assert main([*fit, "--save-model", str(model)]) == 0
    assert (model / "model.pt").is_file() and (model / "adata.h5ad").is_file()
    assert "X_lcd" in ad.read_h5ad(src).obsm  # updated in place
    before = src.read_bytes()
    assert main([*fit, "--save-model", str(model)]) == 1  # not an empty folder: before training
    assert "is not empty" in caplog.text and src.read_bytes() == before
    clipr = ["-q", "clipr", "-i", str(src), "--model", str(model), "--model-type", "lcd"]
    assert main([*clipr, "--alpha", "0.01", "--key-added", "effects"]) == 0
    result = ad.read_h5ad(src)
    assert result.varp["effects"].shape == (4, 4) and np.isfinite(result.varp["effects"]).all()
    assert result.uns["effects"]["params"]["alpha"] == 0.01
    assert "clipr_effects" not in result.varp and "X_lcd" in result.obsm
    caplog.clear()
    bad = ["-q", "clipr", "-i", str(src), "--model", str(tmp_path), "--model-type", "lcd"]
    assert main(bad) == 1
    assert "holds no saved model" in caplog.text
