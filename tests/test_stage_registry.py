"""The stage registry (mipd_kit.app.registry): what is derived from it, and a toy stage added through it alone."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import nbformat as nbf
import pytest
import yaml

from mipd_kit.app import registry
from mipd_kit.app.config import RunConfig
from mipd_kit.app.pipeline import run
from mipd_kit.app.plan import notebook_parameters, stage_graph, uses_teacher
from mipd_kit.app.registry import STAGES, StageSpec, docs_table, stage_order

ROOT = Path(__file__).resolve().parents[1]

TOY_MODULE = '''"""A toy stage: writes toy.json holding its value."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Config:
    """Stage ``toy``.

    Attributes:
        world_dir: world folder.
        cache_dir: caches.
        seed: seed.
        value: the number written.
        write: write toy.json (false: the stage leaves its declared output out).
    """

    world_dir: str = ""
    cache_dir: str = ""
    seed: int = 0
    value: int = 1
    write: bool = True

    @classmethod
    def smoke(cls) -> "Config":
        return cls()


def run(cfg: Config, run_dir: str | os.PathLike) -> dict:
    out = {"value": cfg.value, "seed": cfg.seed}
    if cfg.write:
        Path(run_dir, "toy.json").write_text(json.dumps(out))
    return out
'''

TOY_BODY = '''import toy_stage
toy_stage.run(toy_stage.Config(world_dir=world_dir, cache_dir=cache_dir, seed=seed, value=value, write=write), run_dir)
'''


def _builder():
    spec = importlib.util.spec_from_file_location("nb_build_registry", ROOT / "notebooks" / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_order_notebooks_and_docs_table_come_from_the_registry() -> None:
    """The run config's standard stages, the notebook generator and docs/pipeline.md's stage table all read the one
    registry; each stage's ``uses_teacher`` matches whether its notebook declares ``teacher_config``."""
    cfg = RunConfig.load(ROOT / "configs" / "default.yaml")
    assert [(n, s.notebook) for n, s in cfg.stages.items()] == list(stage_order())
    assert _builder().GENERATED == {s.notebook: s.module for s in STAGES}
    assert docs_table() in (ROOT / "docs" / "pipeline.md").read_text(), \
        "docs/pipeline.md's stage table differs from mipd_kit.app.registry.docs_table(); paste the new table"
    for s in STAGES:
        declared = "teacher_config" in notebook_parameters(ROOT / "notebooks" / s.notebook)
        assert declared == s.uses_teacher, s.name
        assert uses_teacher(cfg, s.name) == s.uses_teacher, s.name
        assert cfg.stage_outputs(s.name)[:len(s.outputs)] == list(s.outputs), s.name
    assert set(stage_graph(cfg)["analysis"]) == {s.name for s in STAGES} - {"analysis"}
    own = RunConfig.from_dict({"stages": {"data": {"notebook": "mine.ipynb", "outputs": ["x.json"]}}})
    assert own.stage_outputs("data") == ["x.json"]  # a standard stage on one's own notebook: its own outputs only


@pytest.fixture()
def toy_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project whose only stage, ``toy``, exists through a registry entry, a module and a notebook."""
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    (nbs / "toy_stage.py").write_text(TOY_MODULE)  # the kernel runs in nbs/, so it imports the module too
    monkeypatch.syspath_prepend(str(nbs))
    monkeypatch.setattr(registry, "STAGES", (*STAGES, StageSpec("toy", "toy_stage", "09_toy.ipynb", (),
                                                                    ("toy.json",), False)))
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbf.v4.new_code_cell("")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbf.v4.new_code_cell(TOY_BODY)]
    nbf.write(nb, nbs / "09_toy.ipynb")
    builder = _builder()  # GENERATED now holds the toy notebook: its parameters cell comes from toy_stage.Config
    assert builder.GENERATED["09_toy.ipynb"] == "toy_stage"
    (nbs / "09_toy.ipynb").write_text(nbf.writes(builder.build(nbs / "09_toy.ipynb")))
    (tmp_path / "world").mkdir()
    (tmp_path / "world" / "ov_split.json").write_text(json.dumps({"seen": ["a"], "rare": [], "unseen": ["b"]}))
    cfg = {"seed": 4, "run_id": "r", "root": str(tmp_path), "world_dir": "world", "cache_dir": "cache",
           "reports_dir": "reports", "notebooks_dir": "nbs", "stages": {"toy": {"params": {"value": 7}}}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    yield tmp_path
    sys.modules.pop("toy_stage", None)


def test_a_toy_stage_added_through_the_registry_runs_and_its_outputs_are_checked(toy_project: Path) -> None:
    cfg = RunConfig.load(toy_project / "cfg.yaml")
    assert cfg.stages["toy"].notebook == "09_toy.ipynb" and cfg.stage_outputs("toy") == ["toy.json"]
    assert set(notebook_parameters(toy_project / "nbs" / "09_toy.ipynb")) >= {"run_dir", "seed", "value", "write"}
    res = run(cfg, quiet=True)
    assert res.state == "done" and res.stages == {"toy": "done"}, res.error
    assert json.loads((res.run_dir / "toy.json").read_text()) == {"value": 7, "seed": 4}
    # the declared output is checked: a stage that leaves it out fails, naming the stage and the path
    bad = RunConfig.load(toy_project / "cfg.yaml", ["run_id=r2", "stages.toy.params.write=false"])
    res = run(bad, quiet=True)
    assert res.state == "failed" and res.failed_stage == "toy"
    assert "stage 'toy'" in res.error and str(res.run_dir / "toy.json") in res.error
    status = json.loads((res.run_dir / "status.json").read_text())
    assert status["failed_stage"] == "toy" and "toy.json" in status["stages"]["toy"]["error"]
