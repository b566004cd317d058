"""Run configs: ``--set`` parsing, validation messages, path substitution, the shipped configs, results.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from mipd_kit.app.analysis import aggregate, render_results_md
from mipd_kit.app.config import ConfigError, RunConfig, apply_overrides, parse_set
from mipd_kit.app.registry import stage_order
from mipd_kit.metrics import row
from mipd_kit.app.plan import notebook_parameters, stage_fingerprints
from mipd_kit.app.runfolder import config_diff


@pytest.mark.parametrize("expr,key,value", [
    ("seed=1", ["seed"], 1),
    ("stages.teacher.params.epochs=3", ["stages", "teacher", "params", "epochs"], 3),
    ("stages.x.params.lr=1e-4", ["stages", "x", "params", "lr"], 1e-4),
    ("stages.x.params.lr=0.5", ["stages", "x", "params", "lr"], 0.5),
    ("a.flag=true", ["a", "flag"], True),
    ("a.seeds=[0, 1, 2]", ["a", "seeds"], [0, 1, 2]),
    ("a.name=openai", ["a", "name"], "openai"),
    ('a.tag="007"', ["a", "tag"], "007"),
    ("run_id=null", ["run_id"], None),
    ("a.text=x=y", ["a", "text"], "x=y"),
    ("a.empty=", ["a", "empty"], ""),
])
def test_parse_set(expr: str, key: list, value) -> None:
    assert parse_set(expr) == (key, value)


@pytest.mark.parametrize("expr,match", [("seed", "expected key=value"), ("=3", "bad key"),
                                        ("a..b=1", "bad key"), ("a=[1,", "not valid YAML")])
def test_parse_set_errors(expr: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_set(expr)


def test_apply_overrides_creates_and_refuses() -> None:
    raw = {"seed": 0, "stages": {"a": {"notebook": "a.ipynb"}}}
    out = apply_overrides(raw, ["stages.a.params.n=2", "seed=5"])
    assert out["stages"]["a"]["params"] == {"n": 2} and out["seed"] == 5
    assert "params" not in raw["stages"]["a"]  # the input is not modified
    with pytest.raises(ConfigError, match="not a mapping"):
        apply_overrides(raw, ["seed.x=1"])


def test_from_dict_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"unknown top-level key\(s\) \['sed'\].*valid keys"):
        RunConfig.from_dict({"sed": 1}, "c.yaml")
    with pytest.raises(ConfigError, match="'seed' must be an integer"):
        RunConfig.from_dict({"seed": "one"}, "c.yaml")
    with pytest.raises(ConfigError, match=r"stages\.a: unknown key\(s\) \['param'\]"):
        RunConfig.from_dict({"stages": {"a": {"notebook": "a.ipynb", "param": {}}}}, "c.yaml")
    with pytest.raises(ConfigError, match="not a standard stage"):
        RunConfig.from_dict({"stages": {"mystery": {}}}, "c.yaml")
    with pytest.raises(ConfigError, match="params must be a mapping"):
        RunConfig.from_dict({"stages": {"data": {"params": [1]}}}, "c.yaml")


def test_load_reports_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        RunConfig.load(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        RunConfig.load(bad)


def test_paths_and_substitution(tmp_path: Path) -> None:
    cfg = RunConfig.from_dict({"seed": 7, "root": str(tmp_path), "world_dir": "data/w-seed${seed}",
                               "stages": {"data": {"params": {"out": "${world_dir}/x", "r": "${run_dir}/y",
                                                              "n": 3}}}})
    assert cfg.path("world_dir") == tmp_path / "data" / "w-seed7"
    p = cfg.stage_params("data", tmp_path / "run")
    assert p["world_dir"] == str(tmp_path / "data" / "w-seed7") and p["seed"] == 7
    assert p["out"] == str(tmp_path / "data" / "w-seed7" / "x") and p["r"] == str(tmp_path / "run" / "y")
    assert p["n"] == 3 and p["run_dir"] == str(tmp_path / "run")
    with pytest.raises(ConfigError, match="unknown variable"):
        cfg.substitute("${nope}")
    # a stage's own seed wins over the top-level one
    cfg.stages["data"].params["seed"] = 11
    assert cfg.stage_params("data", tmp_path)["seed"] == 11


def test_yaml_roundtrip_and_hash() -> None:
    cfg = RunConfig.smoke()
    again = RunConfig.from_dict(__import__("yaml").safe_load(cfg.to_yaml()), "again")
    assert again.to_dict() == cfg.to_dict() and again.config_hash() == cfg.config_hash()
    other = RunConfig.from_dict(apply_overrides(cfg.to_dict(), ["seed=9"]))
    assert other.config_hash() != cfg.config_hash()
    assert config_diff(cfg.to_dict(), other.to_dict()) == ["seed: 0 -> 9"]


@pytest.mark.parametrize("name", ["default.yaml", "full.yaml", "smoke.yaml"])
def test_shipped_configs(root: Path, name: str) -> None:
    cfg = RunConfig.load(root / "configs" / name)
    assert [(n, s.notebook) for n, s in cfg.stages.items()] == list(stage_order())
    # params of the notebooks that exist already must be valid parameters of them
    for n, st in cfg.stages.items():
        nb = cfg.path("notebooks_dir") / st.notebook
        if nb.is_file():
            valid = notebook_parameters(nb)
            assert set(st.params) <= set(valid), (n, sorted(set(st.params) - set(valid)))
    fps = stage_fingerprints(cfg)
    assert len(set(fps.values())) == len(fps)


def test_default_and_smoke_differ_only_in_sizes(root: Path) -> None:
    d, s = RunConfig.load(root / "configs" / "default.yaml"), RunConfig.load(root / "configs" / "smoke.yaml")
    assert "quick" in str(d.path("world_dir")) and "smoke" in str(s.path("world_dir"))
    assert d.stages["cl_hoi"].params["seeds"] == [0, 1, 2] and s.stages["cl_hoi"].params["seeds"] == [0]


def test_default_is_the_full_run_on_the_quick_world(root: Path) -> None:
    """`make reproduce` (default.yaml) and `make reproduce-full` (full.yaml) run the same pipeline: they differ in the
    world (size and folder), the released weights' use and the texts only."""
    d, f = RunConfig.load(root / "configs" / "default.yaml"), RunConfig.load(root / "configs" / "full.yaml")
    diff = config_diff(f.to_dict(), d.to_dict())
    keys = sorted(line.split(":")[0] for line in diff)
    assert keys == ["description", "stages.data.params.synth_size",
                    "stages.distillation.params.student_backbone.weights", "teacher.weights", "world_dir"], diff
    assert d.stages["data"].params["synth_size"] == "quick" and f.stages["data"].params["synth_size"] == "default"


# -- results.md -----------------------------------------------------------------------------------------------------
def _rows():
    rs = [row("gsr", "teacher", sp, "top1", "verb", v, mean="image") for sp, v in (("seen", 30), ("unseen", 20))]
    for model, base in (("baseline", 50.0), ("mipd", 60.0), ("mipd-neg", 55.0)):
        for seed, d in ((0, 0.0), (1, 2.0)):
            for sp in ("seen", "rare", "unseen", "unseen_novel"):
                rs.append(row("gsr", model, sp, "top1", "verb", base + d, seed=seed, mean="image"))
                rs.append(row("gsr", model, sp, "top1", "grnd_value", base / 2 + d, seed=seed, mean="image"))
    rs.append(row("gsr", "mipd", "unseen", "top5", "verb", 80.0, seed=0, mean="image"))
    rs += [row("hoi", "clhoi", sp, "default", "map", v, seed=0) for sp, v in (("full", 12.5), ("rare", 8.25))]
    rs.append(row("bench", "student", "all", "cpu", "images_per_s", 123.4))
    rs.append(row("gsr", "mipd", "seen", "top1", "verb_mean", 999.0, mean="image"))  # aggregate row: recomputed
    return rs


def test_aggregate_means_and_std() -> None:
    cells = aggregate(_rows())
    c = cells[("gsr", "mipd", "seen", "top1", "verb", "image")]
    assert (c.mean, c.n) == (61.0, 2) and c.std == pytest.approx(1.41421356, rel=1e-6)
    assert cells[("gsr", "teacher", "seen", "top1", "verb", "image")].n == 1
    assert ("gsr", "mipd", "seen", "top1", "verb_mean", "image") not in cells


def test_render_results_md_tables_and_figures() -> None:
    status = {"run_id": "r1", "state": "done", "stages": {"data": {"state": "done", "seconds": 1.5,
                                                                   "notebook": "00_data.ipynb"}}}
    md = render_results_md(_rows(), ["figures/rare_bias.png"], status, ["no bench for X"])
    assert md.startswith("# Run r1")
    assert "**State: done**" in md and "| data | done |" in md and "- no bench for X" in md
    assert "### top1, per-image means — main" in md and "### top1, per-image means — ablations" in md
    assert "| mipd | seen | 61.0 ± 1.4 (2) | 31.0 ± 1.4 (2) |" in md
    assert "| teacher | seen | 30.0 | – |" in md
    main = md.split("— main")[1].split("###")[0]
    assert "mipd-neg" not in main and main.index("| teacher") < main.index("| baseline") < main.index("| mipd")
    assert "| mipd-neg | unseen_novel |" in md.split("— ablations")[1]
    assert "### top5, per-image means — main" in md
    assert "| clhoi | default | 12.50 | 8.25 |" in md
    assert "images_per_s" not in md and "1 benchmark rows (task `bench`, measured outside this run" in md
    # the study's tables come before the run's bookkeeping
    assert md.index("— main") < md.index("## Stages") < md.index("## Notes")
    assert "![rare bias](figures/rare_bias.png)" in md


def test_render_results_md_failed_and_empty() -> None:
    md = render_results_md([], status={"run_id": "r2", "state": "failed", "failed_stage": "judge",
                                       "error": "ValueError: bad"})
    assert "failed at stage `judge`: ValueError: bad" in md and "No metrics yet" in md


def test_notebook_parameters_reads_every_assignment(tmp_path: Path) -> None:
    import nbformat as nbf

    nb = nbf.v4.new_notebook()
    cell = nbf.v4.new_code_cell('run_dir: str = "a#b"  # run folder\nepochs: int = 0  # override (0 = keep)\n'
                                'names: list = ["x",\n   "y"]  # two lines\nplain = 3\n')
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbf.v4.new_code_cell("z = 1"), cell, nbf.v4.new_code_cell("later = 2")]
    nbf.write(nb, tmp_path / "n.ipynb")
    spec = notebook_parameters(tmp_path / "n.ipynb")
    assert list(spec) == ["run_dir", "epochs", "names", "plain"]
    assert spec["run_dir"]["help"] == "run folder" and spec["run_dir"]["default"] == "'a#b'"
    assert spec["epochs"]["help"] == "override (0 = keep)" and spec["epochs"]["inferred_type_name"] == "int"
    assert spec["names"]["help"] == "two lines" and spec["plain"]["default"] == "3"
    nb.cells = [nbf.v4.new_code_cell("x = 1")]
    nbf.write(nb, tmp_path / "none.ipynb")
    assert notebook_parameters(tmp_path / "none.ipynb") == {}
