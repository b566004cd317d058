"""Runs from anywhere: a config's relative paths start at its own project (its folder, or the parent of a
``configs/`` folder, or ``--root``), never at the installed package's checkout; ``mipd --version``; configs and docs
say what is (no references to issue numbers, no "until ... lands")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from mipd_kit.app import cli
from mipd_kit.app.config import PROJECT_ROOT, RunConfig, project_root_of


def write_project(base: Path, in_configs: bool) -> Path:
    """A project of one's own: the smoke config copied (its notebooks are the package's), no root key."""
    raw = yaml.safe_load((PROJECT_ROOT / "configs" / "smoke.yaml").read_text())
    raw.pop("root", None)
    raw["world_dir"] = "data/world"
    raw["reports_dir"] = "out"
    folder = base / "configs" if in_configs else base
    folder.mkdir(parents=True)
    (folder / "my.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return folder / "my.yaml"


@pytest.mark.parametrize("in_configs", [True, False])
def test_relative_paths_start_at_the_configs_project(tmp_path: Path, in_configs: bool) -> None:
    cfg_file = write_project(tmp_path / "proj", in_configs)
    assert project_root_of(cfg_file) == (tmp_path / "proj").resolve()
    cfg = RunConfig.load(cfg_file)
    assert cfg.path("world_dir") == (tmp_path / "proj" / "data" / "world").resolve()
    assert cfg.path("reports_dir") == (tmp_path / "proj" / "out").resolve()
    assert cfg.substitute("${root}/x") == f"{(tmp_path / 'proj').resolve()}/x"
    # the project has no notebooks/: the package's are used
    assert cfg.path("notebooks_dir") == (PROJECT_ROOT / "notebooks").resolve()
    # --root (the same as --set root=DIR) moves every relative path
    other = RunConfig.load(cfg_file, [f"root={tmp_path / 'other'}"])
    assert other.path("world_dir") == (tmp_path / "other" / "data" / "world").resolve()


def test_the_repository_configs_keep_the_repository_as_root(root: Path) -> None:
    cfg = RunConfig.load(root / "configs" / "smoke.yaml")
    assert cfg.root_path() == root.resolve() and cfg.path("notebooks_dir") == (root / "notebooks").resolve()


def test_mipd_run_from_another_folder_plans_in_the_configs_project(tmp_path: Path, monkeypatch, capsys) -> None:
    cfg_file = write_project(tmp_path / "proj", True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert cli.main(["run", "--config", str(cfg_file), "--dry-run"]) == 0  # the check passes: nothing is missing
    assert f"run folder: {(tmp_path / 'proj' / 'out').resolve()}/" in capsys.readouterr().out
    assert not list(elsewhere.iterdir())  # nothing written where mipd was started
    assert cli.main(["run", "--config", str(cfg_file), "--root", str(tmp_path / "r2"), "--dry-run"]) == 0
    assert f"run folder: {(tmp_path / 'r2' / 'out').resolve()}/" in capsys.readouterr().out
    assert not list(elsewhere.iterdir())


def test_version(capsys) -> None:
    from mipd_kit import __version__
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"mipd_kit {__version__}"


STALE = re.compile(r"(\bissues? #?\d+\b|\buntil\b[^.\n]{0,80}\blands?\b)", re.IGNORECASE)


def test_configs_and_docs_name_no_issue_and_no_pending_landing(root: Path) -> None:
    files = sorted((root / "configs").rglob("*.yaml")) + sorted((root / "docs").rglob("*.md")) + [
        root / "README.md", root / "CONTRIBUTING.md"]
    hits = [f"{p.relative_to(root)}:{n}: {line.strip()}" for p in files
            for n, line in enumerate(p.read_text().splitlines(), 1) if STALE.search(line)]
    assert not hits, "configs and docs say what is; history goes into commit messages:\n" + "\n".join(hits)
