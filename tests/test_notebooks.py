"""The whole smoke pipeline, once per session, through ``mipd run --config configs/smoke.yaml``.

Every notebook of the pipeline runs with its smoke parameters into a temporary reports folder (world and caches
in the same temporary folder, so the test never touches ``data/``); then the run is resumed (every stage skipped)
and the inspector notebook is executed on the run's predictions. Skips, naming them, while notebooks are missing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mipd_kit.config import STAGE_ORDER

pytestmark = pytest.mark.slow


def _mipd_run(root: Path, base: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mipd_kit.cli", "run", "--config", str(root / "configs" / "smoke.yaml"),
           "--set", f"reports_dir={base / 'reports'}", "--set", f"world_dir={base / 'world'}",
           "--set", f"cache_dir={base / 'cache'}", "--set", "run_id=smoke", "--quiet", *extra]
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=1800)


@pytest.fixture(scope="session")
def smoke_run(root: Path, tmp_path_factory) -> dict:
    missing = [nb for _, nb in STAGE_ORDER if not (root / "notebooks" / nb).is_file()]
    if missing:
        pytest.skip(f"the smoke pipeline needs notebooks that do not exist yet: {missing}")
    base = tmp_path_factory.mktemp("smoke")
    proc = _mipd_run(root, base)
    run_dir = base / "reports" / "smoke"
    status = json.loads((run_dir / "status.json").read_text()) if (run_dir / "status.json").exists() else {}
    return {"base": base, "run_dir": run_dir, "proc": proc, "status": status}


def test_smoke_pipeline_completes(smoke_run: dict) -> None:
    proc, status, run_dir = smoke_run["proc"], smoke_run["status"], smoke_run["run_dir"]
    assert proc.returncode == 0, (
        f"mipd run failed at stage {status.get('failed_stage')!r}: {status.get('error')}\n{proc.stderr[-3000:]}")
    assert status["state"] == "done"
    assert [s["state"] for s in status["stages"].values()] == ["done"] * len(STAGE_ORDER)
    for _, nb in STAGE_ORDER:
        assert (run_dir / "notebooks" / nb).is_file(), nb
    for f in ("config.yaml", "environment.json", "run.log", "ov_split.json", "metrics.json", "results.md"):
        assert (run_dir / f).is_file(), f
    assert (run_dir.parent / "latest").resolve() == run_dir.resolve()


def test_smoke_run_has_metrics_figures_and_tables(smoke_run: dict) -> None:
    run_dir = smoke_run["run_dir"]
    if smoke_run["proc"].returncode != 0:
        pytest.fail(f"the smoke run failed: {smoke_run['status'].get('error')}")
    rows = json.loads((run_dir / "metrics.json").read_text())
    models = {(r["task"], r["model"]) for r in rows}
    assert ("gsr", "mipd") in models and ("gsr", "baseline") in models, sorted(models)
    figures = sorted((run_dir / "figures").glob("*.png"))
    assert any(f.name == "rare_bias.png" for f in figures)
    md = (run_dir / "results.md").read_text()
    assert "**State: done**" in md and "| mipd |" in md and "](figures/rare_bias.png)" in md


def test_smoke_run_resumes(root: Path, smoke_run: dict) -> None:
    if smoke_run["proc"].returncode != 0:
        pytest.fail(f"the smoke run failed: {smoke_run['status'].get('error')}")
    proc = _mipd_run(root, smoke_run["base"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    status = json.loads((smoke_run["run_dir"] / "status.json").read_text())
    assert {s["state"] for s in status["stages"].values()} == {"skipped"}


def test_inspector_notebook_on_the_smoke_run(root: Path, smoke_run: dict, tmp_path: Path) -> None:
    import papermill as pm

    if smoke_run["proc"].returncode != 0:
        pytest.fail(f"the smoke run failed: {smoke_run['status'].get('error')}")
    out = tmp_path / "08_inspector.ipynb"
    pm.execute_notebook(str(root / "notebooks" / "08_inspector.ipynb"), str(out),
                        parameters={"run_dir": str(smoke_run["run_dir"]), "world_dir": str(smoke_run["base"] / "world"),
                                    "model": "mipd", "seed": 0, "split": "unseen"},
                        kernel_name="python3", cwd=str(root / "notebooks"), progress_bar=False)
    import nbformat

    outputs = "".join(o.get("text", "") for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"
                      for o in c.get("outputs", []))
    assert "DEMO data" not in outputs and "cases; primary error per split" in outputs
    assert "HOI cases; top-1 outcome per tag" in outputs  # the smoke run's 07_cl_hoi wrote hoi-clhoi-seed0.json
    assert "pass the initial filter" in outputs  # the rationale browser over the run's rationales.jsonl


#: executed notebooks of the smoke run that draw figures: each must hold at least one inline image output (a figure
#: shown, not only saved to figures/)
PLOTTING_NOTEBOOKS: tuple[str, ...] = ("00_data.ipynb", "01_teacher_features.ipynb", "02_rationales.ipynb",
                                       "03_judge.ipynb", "04_alignment.ipynb", "05_distillation.ipynb",
                                       "06_analysis.ipynb", "07_cl_hoi.ipynb")


def inline_images(path: Path) -> int:
    """How many ``image/png`` outputs an executed notebook holds."""
    import nbformat

    return sum("image/png" in o.get("data", {}) for c in nbformat.read(path, as_version=4).cells
               if c.cell_type == "code" for o in c.get("outputs", []))


def test_smoke_notebooks_show_their_figures_inline(smoke_run: dict) -> None:
    if smoke_run["proc"].returncode != 0:
        pytest.fail(f"the smoke run failed: {smoke_run['status'].get('error')}")
    counts = {nb: inline_images(smoke_run["run_dir"] / "notebooks" / nb) for nb in PLOTTING_NOTEBOOKS}
    assert all(n >= 1 for n in counts.values()), f"image/png outputs per executed notebook: {counts}"
    assert sum(counts.values()) >= 2 * len(counts), counts
