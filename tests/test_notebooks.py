"""The whole smoke pipeline, once per session, through ``mipd run --config configs/smoke.yaml``.

Every notebook of the pipeline runs with its smoke parameters into a temporary reports folder (world and caches
in the same temporary folder, so the test never touches ``data/``); then the run is resumed (every stage skipped).
The run's published inspector notebook, its inline figures, its progress lines in ``run.log`` and the inspector
widgets on its outputs are checked. Skips, naming them, while notebooks are missing.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mipd_kit.app.registry import stage_order

pytestmark = pytest.mark.slow


def _mipd_run(root: Path, base: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mipd_kit.app.cli", "run", "--config", str(root / "configs" / "smoke.yaml"),
           "--set", f"reports_dir={base / 'reports'}", "--set", f"world_dir={base / 'world'}",
           "--set", f"cache_dir={base / 'cache'}", "--set", "run_id=smoke", "--quiet", *extra]
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=1800)


@pytest.fixture(scope="session")
def smoke_run(root: Path, tmp_path_factory) -> dict:
    missing = [nb for _, nb in stage_order() if not (root / "notebooks" / nb).is_file()]
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
    assert [s["state"] for s in status["stages"].values()] == ["done"] * len(stage_order())
    for _, nb in stage_order():
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


def test_inspector_notebook_on_the_smoke_run(smoke_run: dict) -> None:
    """The pipeline publishes 08_inspector executed on the run's own outputs, with its widgets' state saved."""
    if smoke_run["proc"].returncode != 0:
        pytest.fail(f"the smoke run failed: {smoke_run['status'].get('error')}")
    out = smoke_run["run_dir"] / "notebooks" / "08_inspector.ipynb"
    assert out.is_file(), "mipd run did not publish the inspector notebook"
    import nbformat

    state = nbformat.read(out, as_version=4).metadata.get("widgets", {})
    assert state.get("application/vnd.jupyter.widget-state+json", {}).get("state"), "no widget state saved"
    outputs = "".join(o.get("text", "") for c in nbformat.read(out, as_version=4).cells if c.cell_type == "code"
                      for o in c.get("outputs", []))
    assert "DEMO data" not in outputs and "cases; primary error per split" in outputs
    assert "HOI cases; top-1 outcome per tag" in outputs  # the smoke run's 07_cl_hoi wrote hoi-clhoi-seed0.json
    assert "pass the initial filter" in outputs  # the rationale browser over the run's rationales.jsonl
    assert "mipd vs baseline: " in outputs and "cells over" in outputs  # comparison and confusion parts
    assert (smoke_run["run_dir"] / "inspector" / "mipd-vs-baseline-unseen.csv").is_file()  # the export


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


def test_smoke_run_log_has_progress_lines_with_eta(smoke_run: dict) -> None:
    """run.log holds the notebooks' progress lines (counts, elapsed, ETA) and, within every stage, no stretch of
    more than 15 s without a line (the stage clock logs one every 10 s)."""
    import datetime as dt
    import re

    from mipd_kit.progress import is_progress_line

    if smoke_run["proc"].returncode != 0:
        pytest.fail(f"the smoke run failed: {smoke_run['status'].get('error')}")
    log = (smoke_run["run_dir"] / "run.log").read_text().splitlines()
    stamp = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d) \w+ [\w.]+: (.*)$")
    events: list[tuple[dt.datetime, str]] = []
    for line in log:
        m = stamp.match(line)
        if m:
            events.append((dt.datetime.fromisoformat(m.group(1)), m.group(2)))
    progress = [msg for _, msg in events if is_progress_line(msg)]
    with_eta = [p for p in progress if re.search(r" eta \d\d:\d\d", p)]
    for what in ("JRG: ", "NMPA seed 0: ", "student mipd seed 0: ", "CL-HOI clhoi seed 0: "):
        assert any(p.startswith(what) for p in with_eta), (what, progress[:20])
    assert any("rationales " in p and "/s)" in p for p in progress if p.startswith("JRG: "))
    # per epoch: a student's and an NMPA's lines name the epoch beside the count and the ETA (the first epoch's end
    # always writes one)
    for what in ("NMPA seed 0: ", "student mipd seed 0: "):
        assert any(re.search(r" eta \d\d:\d\d .*epoch \d+/\d+", p) for p in with_eta if p.startswith(what)), what
    # the stage clock: an ETA (the stage's last duration, or a bound from its own lines) or "no estimate yet"
    clock = [p for p in progress if re.match(r"stage \w+: \d+ ", p)]
    assert clock and all(" eta " in p or p.endswith("(no estimate yet)") for p in clock), clock
    assert not any("without encryption" in line for line in log)
    # within each stage: the longest time without a line (progress, stage start or end) stays under 15 s
    gaps: dict[str, float] = {}
    stage, last = None, None
    for t, msg in events:
        m = re.match(r"stage (\w+)\s+(running|done)", msg)
        if m and m.group(2) == "running":
            stage, last = m.group(1), t
        elif stage is not None and (is_progress_line(msg) or m):
            gaps[stage] = max(gaps.get(stage, 0.0), (t - last).total_seconds())
            last = t
            if m:
                stage = None
    assert gaps and max(gaps.values()) <= 15, gaps


def test_compare_and_confusion_widgets_on_the_smoke_run(smoke_run: dict, tmp_path: Path) -> None:
    """The comparison inspector and the confusion browser driven through their accessors on the run's own
    predictions and training rationales (no browser)."""
    from mipd_kit.viz.cases import prediction_models
    from mipd_kit.viz.inspector import ConfusionBrowser, open_compare, open_inspector

    if smoke_run["proc"].returncode != 0:
        pytest.fail(f"the smoke run failed: {smoke_run['status'].get('error')}")
    run, world = smoke_run["run_dir"], smoke_run["base"] / "world"
    models = prediction_models(run)
    assert {"mipd", "baseline"} <= set(models) and all(s == [0] for s in models.values()), models
    assert not any(m.startswith(("hoi-", "vcoco-")) for m in models), models
    ins = open_compare(run, world, "mipd", "baseline", split="unseen")
    unseen = ins.visible_cases()
    assert unseen and all("unseen" in p.split_tags for p in unseen)
    assert ins.rendered_image().width >= 3 * 256
    assert len(ins.teacher_top5(unseen[0].image)) == 5 and "teacher (zero-shot)" in ins.details_html()
    # the run's nearest training images, by the student backbone's cached pooled features (the cache of status.json)
    assert ins.neighbours is not None and ins.neighbours.source == "student backbone"
    near = ins.nearest(unseen[0].image)
    assert len(near) == 5 and all(n.verb != unseen[0].gt_verb for n in near)  # an unseen verb has no training image
    assert [n.similarity for n in near] == sorted((n.similarity for n in near), reverse=True)
    assert "nearest training images (any verb; student backbone features" in ins.details_html()
    # a seen case's gold verb has training rationales in a run (test images never do)
    ins.set_filter(split="seen")
    assert "(training images the student was distilled from)" in ins.details_html()
    rows = json.loads(ins.export(tmp_path / "seen.json").read_text())
    assert len(rows) == len(ins.visible_cases()) and {"mipd_pred_verb", "baseline_pred_verb"} <= set(rows[0])
    cb = ConfusionBrowser(open_inspector(run, world, model="mipd").cases, "unseen", image_root=world / "images")
    (g, p), n = next(iter(cb.cells.items()))
    assert len(cb.select_cell(g, p)) == n and cb.grid_image() is not None


def test_hoi_compare_on_the_smoke_run(smoke_run: dict, tmp_path: Path) -> None:
    """clhoi vs icn on the same HOI test images, with the descriptions of training images of the annotated HOIs."""
    from mipd_kit.hoi.inspector import HOI_CONTRASTS, filter_hoi_pairs, open_hoi_compare

    if smoke_run["proc"].returncode != 0:
        pytest.fail(f"the smoke run failed: {smoke_run['status'].get('error')}")
    ins = open_hoi_compare(smoke_run["run_dir"], smoke_run["base"] / "world", "clhoi", "icn")
    assert ins.cases and sum(len(filter_hoi_pairs(ins.cases, contrast=c)) for c in HOI_CONTRASTS[1:]) == len(ins.cases)
    assert "clhoi" in ins.label_text() and "icn" in ins.label_text()
    assert ins.rendered_image().width >= 3 * 256
    assert "descriptions of training images of" in ins.details_html()
    rows = list(csv.DictReader(ins.export(tmp_path / "hoi.csv").open()))
    assert len(rows) == len(ins.visible_cases()) and {"clhoi_outcome", "icn_outcome"} <= set(rows[0])


@pytest.mark.browser
def test_compare_inspector_in_a_real_browser_on_the_smoke_run(smoke_run, root, tmp_path):
    """Notebook 08 on the smoke run, in JupyterLab and headless Chromium: the comparison widget shows two models,
    the teacher's zero-shot top-5, the gold verb's training rationales (or that it has none: an unseen verb) and the
    run's nearest training images; picking a cell of the unseen-verb confusion shows that cell's cases as a grid
    (benchmarks/inspector_screenshot.py, the script that makes the README's screenshot from a run)."""
    from tests.test_browser import CHROMIUM
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (apt-get install -y chromium)")
    pytest.importorskip("playwright.sync_api", reason="the playwright python package is not installed")
    if smoke_run["proc"].returncode != 0:
        pytest.skip("the smoke run failed (test_smoke_pipeline_completes says why)")
    sys.path.insert(0, str(root / "benchmarks"))
    import inspector_screenshot

    assert inspector_screenshot.main(["--run", str(smoke_run["run_dir"]), "--world", str(smoke_run["base"] / "world"),
                                      "--out", str(tmp_path), "--split", "all"]) == 0
    rec = json.loads((tmp_path / "compare.json").read_text())
    assert all(rec["shows"].values()), rec
    assert "mipd" in rec["label"] and "baseline" in rec["label"]
    assert (tmp_path / "compare.png").stat().st_size > 10_000
    # the confusion browser: the cell picked in the browser shows that cell's cases, in the grid's order, and the
    # grid has their rows (4 columns of 160 + 16 px)
    from mipd_kit.viz.cases import cell_cases
    from mipd_kit.viz.inspector import open_inspector

    conf = rec["confusion"]
    gold, pred = conf["cell"].split(" -> ")
    want = cell_cases(open_inspector(smoke_run["run_dir"], smoke_run["base"] / "world", model="mipd").cases,
                      gold, pred, split="unseen")[:16]
    assert conf["options"] >= 2 and want, conf  # a cell other than the one shown first
    assert conf["cases"].split(": ", 2)[2].split() == [c.image for c in want], conf
    assert f"{len(want)} case(s)" in conf["cases"] or "(the first 16 in the grid)" in conf["cases"], conf
    assert conf["grid_px"] == [4 * 160, -(-len(want) // 4) * (160 + 16)], conf
    assert (tmp_path / "confusion.png").stat().st_size > 5_000
