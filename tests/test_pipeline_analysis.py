"""Analysis: pure functions over cases, graceful degradation, and the analysis notebook's exported HTML."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mipd_kit.app.analysis import run_analysis
from mipd_kit.viz.analyses import (grounding_by_role, per_verb_accuracy, prediction_concentration, primitive_neighbours,
                                   unseen_confusion)
from mipd_kit.data.records import Situation
from mipd_kit.metrics import read_rows, row, write_rows
from mipd_kit.viz.cases import build_cases
from mipd_kit.viz.inspector import write_demo


def _case_set():
    def sit(img, verb):
        return Situation(img, verb, 100, 100, {"agent": (0, 0, 50, 50), "place": None},
                         ({"agent": "man", "place": "field"},))

    def pred(verb, box=(0, 0, 50, 50), noun="man"):
        return {"verbs": [{"verb": verb, "score": 0.9,
                           "frame": {"agent": {"noun": noun, "box": list(box)}, "place": {"noun": "field", "box": None}}}]}

    gt = {"a1": sit("a1", "ride"), "a2": sit("a2", "ride"), "b1": sit("b1", "kick"), "b2": sit("b2", "kick"),
          "b3": sit("b3", "kick"), "c1": sit("c1", "lift")}
    preds = {"a1": pred("ride"), "a2": pred("ride", box=(60, 60, 90, 90)), "b1": pred("push"), "b2": pred("push"),
             "b3": pred("kick", noun="woman"), "c1": pred("ride")}
    return build_cases(gt, preds, {"seen": ["ride", "push"], "rare": [], "unseen": ["kick", "lift"]})


def test_per_verb_accuracy() -> None:
    assert per_verb_accuracy(_case_set()) == {"ride": (2, 2), "kick": (3, 1), "lift": (1, 0)}


def test_unseen_confusion_counts_and_columns() -> None:
    conf = unseen_confusion(_case_set(), ["kick", "lift"], nearest={"kick": "push", "lift": "ride"})
    assert conf.rows == ["kick", "lift"] and conf.cols[:4] == ["kick", "lift", "push", "ride"]
    assert conf.cols[-1] == "other" and conf.totals == [3, 1]
    i = conf.rows.index("kick")
    assert conf.counts[i][conf.cols.index("push")] == 2 and conf.rate(i, conf.cols.index("kick")) == pytest.approx(1 / 3)
    assert sum(conf.counts[i]) == 3
    small = unseen_confusion(_case_set(), ["kick", "lift"], max_cols=2)
    assert small.cols == ["kick", "lift", "other"] and small.counts[0][-1] == 2  # push folded into "other"


def test_grounding_by_role() -> None:
    g = grounding_by_role(_case_set())
    # frames checked: a1, a2 (verb right), b3 (right verb, wrong noun); b1, b2, c1 have no frame of the gt verb
    assert g["agent"]["n"] == 3 and g["agent"]["noun"] == pytest.approx(200 / 3)
    assert g["agent"]["box"] == pytest.approx(200 / 3) and g["agent"]["grounded"] == pytest.approx(100 / 3)
    assert g["place"]["grounded"] == pytest.approx(100.0)


def test_primitive_neighbours() -> None:
    prims = {"kick": {"pose": "stand", "relation": "foot_contact", "object": "ball"},
             "push": {"pose": "stand", "relation": "hand_contact", "object": "ball"},
             "ride": {"pose": "sit", "relation": "on_top", "object": "animal"}}
    assert primitive_neighbours(["kick", "lift"], ["ride", "push"], prims) == {"kick": "push", "lift": None}


def test_run_analysis_degrades_and_names_missing_inputs(tmp_path: Path) -> None:
    run, world = tmp_path / "run", tmp_path / "world"
    run.mkdir()
    res = run_analysis(run, world, bench_dir=tmp_path / "bench")
    text = " | ".join(res.notes)
    assert "metrics.json" in text and "05_distillation" in text and "00_data" in text and "make bench" in text
    assert res.figures == []
    md = (run / "results.md").read_text()
    assert "No metrics yet" in md and "05_distillation" in md


def _demo_run(tmp_path: Path) -> tuple[Path, Path]:
    world, run = write_demo(tmp_path, seed=0)
    rows = [row("gsr", m, sp, "top1", "verb", v + s, seed=s, mean="image")
            for m, v in (("baseline", 40.0), ("mipd", 50.0)) for s in (0, 1) for sp in ("seen", "unseen")]
    write_rows(run / "metrics.json", rows)
    bench = tmp_path / "bench"
    bench.mkdir()
    write_rows(bench / "student.json", [row("bench", "mipd", "all", "cpu", "images_per_s", 321.0),
                                        row("bench", "mipd", "all", "cpu", "peak_rss_mb", 900.0)])
    return world, run


def test_run_analysis_on_demo(tmp_path: Path) -> None:
    world, run = _demo_run(tmp_path)
    res = run_analysis(run, world, bench_dir=tmp_path / "bench")
    assert res.figures == ["figures/rare_bias.png", "figures/unseen_confusion.png", "figures/grounding_by_role.png",
                           "figures/resources.png"]
    assert all((run / f).stat().st_size > 1000 for f in res.figures)
    rows = read_rows(run / "metrics.json")
    agg = {(r.model, r.split, r.metric): r.value for r in rows if r.seed is None and r.task == "gsr"}
    assert agg[("mipd", "seen", "verb_mean")] == 50.5 and agg[("mipd", "seen", "verb_std")] == pytest.approx(math.sqrt(0.5))
    assert not any(r.task == "bench" for r in rows) and res.tables["bench"]  # drawn, not the run's metrics
    md = (run / "results.md").read_text()
    for f in res.figures:
        assert f"]({f})" in md
    # per-verb table agrees with the predictions
    preds = json.loads((run / "predictions" / "mipd-seed0.json").read_text())
    gt = json.loads((world / "test.json").read_text())
    lifting = [k for k, v in gt.items() if v["verb"] == "lifting"]
    right = sum(preds[k]["verbs"][0]["verb"] == "lifting" for k in lifting)
    assert res.tables["per_verb"]["mipd"]["lifting"]["acc"] == pytest.approx(100.0 * right / len(lifting))
    # run twice: still one set of aggregate rows
    run_analysis(run, world, bench_dir=tmp_path / "bench")
    keys = [r.key() for r in read_rows(run / "metrics.json")]
    assert len(keys) == len(set(keys))


def test_analysis_notebook_html_embeds_its_figures(root: Path, tmp_path: Path) -> None:
    """Execute notebooks/06_analysis.ipynb with papermill on the demo run and export it with nbconvert."""
    import nbformat
    import papermill as pm
    from nbconvert import HTMLExporter

    world, run = _demo_run(tmp_path)
    out = tmp_path / "06_analysis.out.ipynb"
    pm.execute_notebook(str(root / "notebooks" / "06_analysis.ipynb"), str(out),
                        parameters={"run_dir": str(run), "world_dir": str(world), "cache_dir": str(tmp_path / "c"),
                                    "seed": 0, "bench_dir": str(tmp_path / "bench")},
                        kernel_name="python3", cwd=str(root / "notebooks"), progress_bar=False)
    html, _ = HTMLExporter().from_notebook_node(nbformat.read(out, as_version=4))
    figures = sorted((run / "figures").glob("*.png"))
    assert len(figures) == 4
    assert html.count("data:image/png;base64,") >= len(figures)
    assert "rare bias" in html and "unseen confusion" in html
    assert "<table" in html  # the results table was displayed
    (tmp_path / "06_analysis.html").write_text(html)


def test_readme_tables_aggregate_seeds_and_skip_absent_models():
    from mipd_kit.app.analysis import readme_tables
    from mipd_kit.metrics import row
    rows = [row("gsr", "baseline", "seen", "top1", "verb", v, seed=s, mean="image") for s, v in ((0, 10.0), (1, 20.0))]
    rows += [row("gsr", "small_cnn", "seen", "top1", "verb", 64.0, seed=0, mean="image"),
             row("gsr", "baseline", "all", "gt_verb", "value", 50.0, seed=0, mean="image"),
             row("hoi", "clhoi", "full", "default", "map", 70.0, seed=0)]
    md = readme_tables(rows)
    assert "| baseline | 15.0 ± 7.1 | – |" in md  # mean ± sample std over the 2 seeds, absent split as a dash
    assert "| small_cnn | 64.0 | – |" in md
    assert "mipd-unlabeled" not in md
    assert "| clhoi | 70.0 | – |" in md
    assert "| baseline | 50.0 | – | – | – |" in md
    assert "role AP" not in md  # no V-COCO rows: no table
    rows += [row("hoi", m, "full", "scenario_1", "role_ap", v, seed=0) for m, v in (("clhoi", 40.0), ("icn", 42.0))]
    md = readme_tables(rows)
    assert "V-COCO scenario 1" in md and "| clhoi | 40.0 |" in md and "| icn | 42.0 |" in md


def test_every_committed_benchmark_json_is_tidy_rows(root):
    """The analysis stage reads reports/bench/*.json as metric rows: a benchmark that writes anything else there
    (samples, raw dumps) breaks every pipeline run; such files belong in a subfolder."""
    from mipd_kit.app.analysis import read_bench

    files = sorted((root / "reports" / "bench").glob("*.json"))
    assert files and read_bench(root / "reports" / "bench")
    for p in files:
        assert read_rows(p), p


def test_prediction_concentration_counts_top1_verbs() -> None:
    preds = {"a.jpg": {"verbs": [{"verb": "planting"}, {"verb": "riding"}]},
             "b.jpg": {"verbs": [{"verb": "planting"}]},
             "c.jpg": {"verbs": [{"verb": "riding"}, {"verb": "planting"}]},
             "d.jpg": {"verbs": []}}  # no verb: not counted
    assert prediction_concentration(preds) == ("planting", pytest.approx(200 / 3), 2)
    tie = {"a": {"verbs": [{"verb": "z"}]}, "b": {"verbs": [{"verb": "b"}]}}
    assert prediction_concentration(tie) == ("b", 50.0, 2)  # ties: the first in name order
    with pytest.raises(ValueError, match="no image"):
        prediction_concentration({"a": {"verbs": []}})


def test_run_analysis_reports_top1_concentration(tmp_path: Path) -> None:
    """A model collapsed onto one verb gets its own rows (mode_share, verbs_used), per seed and aggregated, and a
    results.md section naming the verb; HOI / V-COCO prediction files of the same folder are not GSR models."""
    world, run = _demo_run(tmp_path)
    gt = json.loads((world / "test.json").read_text())
    one = {k: {"verbs": [{"verb": "lifting", "score": 1.0, "frame": []}]} for k in gt}
    (run / "predictions" / "collapsed-seed0.json").write_text(json.dumps(one))
    (run / "predictions" / "vcoco-icn-seed0.json").write_text(json.dumps([{"image_id": 1}]))
    (run / "predictions" / "hoi-icn-seed0.json").write_text(json.dumps({"x.jpg": []}))
    (run / "predictions" / "empty-seed0.json").write_text("{}")
    (run / "predictions" / "torn-seed0.json").write_text('{"a.jpg": {"verbs": [')
    res = run_analysis(run, world)
    # files without a readable prediction are named in a note, and the rest of the analysis goes on
    assert any("empty-seed0.json" in n and "no image has a predicted verb" in n for n in res.notes)
    assert any("torn-seed0.json" in n and "not a readable GSR prediction file" in n for n in res.notes)
    assert "empty-seed0" not in res.tables["concentration"] and "torn-seed0" not in res.tables["concentration"]
    assert res.tables["concentration"]["collapsed-seed0"] == {"verb": "lifting", "share": 100.0, "verbs_used": 1}
    assert not any(k.startswith(("vcoco-", "hoi-")) for k in res.tables["concentration"])
    rows = {(r.model, r.seed, r.metric): r.value for r in read_rows(run / "metrics.json") if r.split == "all"}
    assert rows[("collapsed", 0, "mode_share")] == 100.0 and rows[("collapsed", 0, "verbs_used")] == 1.0
    demo = prediction_concentration(json.loads((run / "predictions" / "mipd-seed0.json").read_text()))
    assert rows[("mipd", 0, "mode_share")] == pytest.approx(demo[1])
    md = (run / "results.md").read_text()
    section = md.split("## Top-1 verb concentration (test)")[1].split("\n## ")[0]
    assert "| collapsed | 100.0 | 1.0 | lifting (0) |" in section
    # the concentration rows stay out of the accuracy tables
    assert "mode_share" not in md.split("## Top-1 verb concentration")[0]
