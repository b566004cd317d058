"""The papermill runner: resume, failure behaviour, bad configs, run folders (small generated notebooks)."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat as nbf
import pytest
import yaml

from mipd_kit.app import runfolder
from mipd_kit.app.config import ConfigError, RunConfig
from mipd_kit.app.pipeline import PipelineError, main, run

COMMON = '''run_dir: str = "../reports/nb-smoke"  # run folder
world_dir: str = "../data/w"  # world
cache_dir: str = "../data/cache"  # cache
seed: int = 0  # seed
'''


def _nb(path: Path, params: str, body: str) -> None:
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    p = nbf.v4.new_code_cell(COMMON + params)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbf.v4.new_code_cell(body)]
    nbf.write(nb, path)


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A tiny project: two notebooks (a writes a.txt and a metric row; b reads it and may fail) and a config."""
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _nb(nbs / "a.ipynb", 'n: int = 1  # a number\n', '''
from pathlib import Path
from mipd_kit.metrics import merge_rows, row
import os
assert Path.cwd().name == "nbs", Path.cwd()
Path(run_dir, "a.txt").write_text(f"{n} {seed}")
Path(run_dir, "figures").mkdir(exist_ok=True)
merge_rows(Path(run_dir) / "metrics.json", [row("gsr", "mipd", "unseen", "top1", "verb", 10.0 * n, seed=seed, mean="image")])
''')
    _nb(nbs / "b.ipynb", 'fail: bool = False  # raise on purpose\ntag: str = "x"  # a label\n', '''
from pathlib import Path
a = Path(run_dir, "a.txt").read_text()
if fail:
    raise RuntimeError("boom on purpose")
Path(run_dir, "b.txt").write_text(a + " " + tag)
''')
    cfg = {"seed": 3, "run_id": "r1", "root": str(tmp_path), "world_dir": "world", "cache_dir": "cache",
           "reports_dir": "reports", "notebooks_dir": "nbs",
           "stages": {"a": {"notebook": "a.ipynb", "params": {"n": 2}, "outputs": ["a.txt"]},
                      "b": {"notebook": "b.ipynb", "params": {}}}}
    (tmp_path / "world").mkdir()
    (tmp_path / "world" / "ov_split.json").write_text(json.dumps({"seen": ["a"], "rare": [], "unseen": ["b"]}))
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return tmp_path


def test_run_then_resume_skips_everything(project: Path) -> None:
    cfg = RunConfig.load(project / "cfg.yaml")
    res = run(cfg, quiet=True)
    rd = project / "reports" / "r1"
    assert res.state == "done" and res.run_dir == rd
    assert res.stages == {"a": "done", "b": "done"}
    assert (rd / "b.txt").read_text() == "2 3 x"  # param n=2 and the top-level seed were injected
    for f in ("config.yaml", "environment.json", "run.log", "status.json", "metrics.json", "results.md",
              "ov_split.json", "notebooks/a.ipynb", "notebooks/b.ipynb"):
        assert (rd / f).exists(), f
    env = json.loads((rd / "environment.json").read_text())
    assert env["seed"] == 3 and "commit" in env["git"] and env["packages"]["papermill"]
    assert (project / "reports" / "latest").resolve() == rd.resolve()
    status = json.loads((rd / "status.json").read_text())
    assert status["state"] == "done" and all(s["state"] == "done" for s in status["stages"].values())
    assert yaml.safe_load((rd / "config.yaml").read_text())["stages"]["a"]["params"] == {"n": 2}
    mtime = (rd / "notebooks" / "a.ipynb").stat().st_mtime_ns

    res2 = run(RunConfig.load(project / "cfg.yaml"), quiet=True)
    assert res2.state == "done" and res2.stages == {"a": "skipped", "b": "skipped"}
    assert (rd / "notebooks" / "a.ipynb").stat().st_mtime_ns == mtime  # not re-executed
    status = json.loads((rd / "status.json").read_text())
    assert {s["state"] for s in status["stages"].values()} == {"skipped"}
    assert all(s["reason"] == "unchanged" for s in status["stages"].values())
    # a third run still skips (skipped stages stay complete)
    assert run(RunConfig.load(project / "cfg.yaml"), quiet=True).stages == {"a": "skipped", "b": "skipped"}
    assert "| 20.0 |" in (rd / "results.md").read_text()


def test_failing_stage_marks_run_failed_and_keeps_earlier_outputs(project: Path) -> None:
    cfg = RunConfig.load(project / "cfg.yaml", ["stages.b.params.fail=true"])
    res = run(cfg, quiet=True)
    rd = project / "reports" / "r1"
    assert res.state == "failed" and res.failed_stage == "b" and "boom on purpose" in res.error
    assert (rd / "a.txt").exists() and not (rd / "b.txt").exists()
    status = json.loads((rd / "status.json").read_text())
    assert status["state"] == "failed" and status["failed_stage"] == "b"
    assert status["stages"]["a"]["state"] == "done" and status["stages"]["b"]["state"] == "failed"
    md = (rd / "results.md").read_text()
    assert "failed at stage `b`" in md and "boom on purpose" in md
    assert (rd / "notebooks" / "b.ipynb").exists()  # the executed notebook with the traceback is kept
    assert not (project / "reports" / "latest").exists()

    # same run id, different config: refused, nothing changed
    before = (rd / "config.yaml").read_text()
    with pytest.raises(PipelineError, match="different config"):
        run(RunConfig.load(project / "cfg.yaml"), quiet=True)
    assert (rd / "config.yaml").read_text() == before

    # --force: stage a is unchanged and skipped, b re-runs and the run completes
    res = run(RunConfig.load(project / "cfg.yaml"), force=True, quiet=True)
    assert res.state == "done" and res.stages == {"a": "skipped", "b": "done"}
    assert list(rd.glob("config.prev-*.yaml"))
    assert (rd / "b.txt").read_text() == "2 3 x"


def test_changed_param_reruns_that_stage_and_later_ones(project: Path) -> None:
    run(RunConfig.load(project / "cfg.yaml"), quiet=True)
    res = run(RunConfig.load(project / "cfg.yaml", ["stages.b.params.tag=y"]), force=True, quiet=True)
    assert res.stages == {"a": "skipped", "b": "done"}
    res = run(RunConfig.load(project / "cfg.yaml", ["stages.b.params.tag=y", "stages.a.params.n=5"]), force=True,
              quiet=True)
    assert res.stages == {"a": "done", "b": "done"}
    assert (project / "reports" / "r1" / "b.txt").read_text() == "5 3 y"


def test_missing_output_is_a_failure_and_reruns_on_resume(project: Path) -> None:
    cfg = RunConfig.load(project / "cfg.yaml", ["stages.b.outputs=[never.txt]"])
    res = run(cfg, quiet=True)
    assert res.state == "failed" and res.failed_stage == "b"
    assert "stage 'b'" in res.error and "did not write its declared output" in res.error and "never.txt" in res.error


def test_deleted_output_makes_the_stage_run_again(project: Path) -> None:
    run(RunConfig.load(project / "cfg.yaml"), quiet=True)
    (project / "reports" / "r1" / "a.txt").unlink()
    plan = run(RunConfig.load(project / "cfg.yaml"), dry_run=True, quiet=True)
    assert plan.stages == {"a": "run", "b": "skipped (unchanged)"}
    res = run(RunConfig.load(project / "cfg.yaml"), quiet=True)
    assert res.stages == {"a": "done", "b": "done"}  # b re-runs because its input was regenerated


def test_rerun_runs_an_unchanged_stage_and_the_later_ones(project: Path) -> None:
    run(RunConfig.load(project / "cfg.yaml"), quiet=True)
    (project / "reports" / "r1" / "b.txt").write_text("stale")
    plan = run(RunConfig.load(project / "cfg.yaml"), dry_run=True, quiet=True, rerun="b")
    assert plan.stages == {"a": "skipped (unchanged)", "b": "run"}
    res = run(RunConfig.load(project / "cfg.yaml"), quiet=True, rerun="a")
    assert res.stages == {"a": "done", "b": "done"}
    assert (project / "reports" / "r1" / "b.txt").read_text() == "2 3 x"
    with pytest.raises(ConfigError, match="--rerun 'zzz'"):
        run(RunConfig.load(project / "cfg.yaml"), rerun="zzz", quiet=True)


def test_unknown_param_key_lists_valid_keys(project: Path) -> None:
    cfg = RunConfig.load(project / "cfg.yaml", ["stages.b.params.epochs=3"])
    with pytest.raises(ConfigError) as e:
        run(cfg, quiet=True)
    msg = str(e.value)
    assert "epochs" in msg and "b.ipynb" in msg and "'fail'" in msg and "'tag'" in msg
    assert not (project / "reports").exists()  # nothing written


def test_missing_notebooks_are_all_named(project: Path) -> None:
    raw = yaml.safe_load((project / "cfg.yaml").read_text())
    raw["stages"]["c"] = {"notebook": "c.ipynb"}
    raw["stages"]["d"] = {"notebook": "d.ipynb"}
    cfg = RunConfig.from_dict(raw, "cfg.yaml")
    with pytest.raises(ConfigError, match=r"c\.ipynb \(stage c\), d\.ipynb \(stage d\)"):
        run(cfg, quiet=True)
    # disabling them lets the rest run
    raw["stages"]["c"]["enabled"] = raw["stages"]["d"]["enabled"] = False
    res = run(RunConfig.from_dict(raw, "cfg.yaml"), quiet=True)
    assert res.state == "done" and res.stages["c"] == "skipped"


def test_foreign_folder_is_not_overwritten(project: Path, capsys) -> None:
    out = project / "somewhere"
    out.mkdir()
    (out / "precious.txt").write_text("keep")
    code = main(["--config", str(project / "cfg.yaml"), "--out", str(out), "--quiet"])
    assert code == 2
    assert "not a run folder" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["precious.txt"]


def test_main_exit_codes_and_messages(project: Path, capsys) -> None:
    assert main(["--config", str(project / "cfg.yaml"), "--set", "stages.a.params.bogus=1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "unknown key(s) ['bogus']" in err and "valid keys: ['n']" in err
    assert main(["--config", str(project / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["--config", str(project / "cfg.yaml"), "--set", "stages.b.params.fail=true", "--quiet"]) == 1
    assert "stage 'b' failed" in capsys.readouterr().err


def test_run_id_null_reuses_the_run_of_the_same_config(project: Path) -> None:
    raw = yaml.safe_load((project / "cfg.yaml").read_text())
    raw["run_id"] = None
    cfg = RunConfig.from_dict(raw, "cfg.yaml")
    first = run(cfg, quiet=True)
    assert first.run_dir.name.endswith(cfg.config_hash())
    second = run(RunConfig.from_dict(raw, "cfg.yaml"), quiet=True)
    assert second.run_dir == first.run_dir and set(second.stages.values()) == {"skipped"}
    raw["seed"] = 4
    third = runfolder.resolve_run_dir(RunConfig.from_dict(raw, "cfg.yaml"))
    assert third != first.run_dir  # another config gets another folder


def test_concurrent_run_on_the_same_folder_is_refused(project: Path) -> None:
    rd = project / "reports" / "r1"
    rd.mkdir(parents=True)
    held = runfolder._lock(rd)
    try:
        with pytest.raises(PipelineError, match="another `mipd run` is using"):
            run(RunConfig.load(project / "cfg.yaml"), quiet=True)
    finally:
        held.close()
    assert run(RunConfig.load(project / "cfg.yaml"), quiet=True).state == "done"


def test_until_dry_run_and_cli_dispatch(project: Path, capsys) -> None:
    from mipd_kit.app.cli import main as mipd

    assert mipd(["run", "--config", str(project / "cfg.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "a.ipynb" in out and "run" in out
    assert not (project / "reports").exists()  # a dry run writes nothing
    res = run(RunConfig.load(project / "cfg.yaml"), until="a", quiet=True)
    assert res.state == "partial" and res.stages == {"a": "done"}
    assert not (project / "reports" / "latest").exists()  # not complete
    assert "**State: partial**" in (res.run_dir / "results.md").read_text()
    with pytest.raises(ConfigError, match="--until 'zzz'"):
        run(RunConfig.load(project / "cfg.yaml"), until="zzz", quiet=True)
    res = run(RunConfig.load(project / "cfg.yaml"), quiet=True)
    assert res.stages == {"a": "skipped", "b": "done"} and res.state == "done"


def test_broken_metrics_do_not_hide_the_run_state(project: Path) -> None:
    raw = yaml.safe_load((project / "cfg.yaml").read_text())
    nbs = project / "nbs"
    _nb(nbs / "bad.ipynb", "", 'from pathlib import Path\nPath(run_dir, "metrics.json").write_text("{not json")\n')
    raw["stages"]["c"] = {"notebook": "bad.ipynb"}
    res = run(RunConfig.from_dict(raw, "cfg.yaml"), quiet=True)
    assert res.state == "done"
    md = (res.run_dir / "results.md").read_text()
    assert "**state: done**" in md and "could not be rendered" in md and "metrics.json" in md
