"""Two models on one image, the unseen-verb confusion -> cell grid, training rationales and exports (no browser),
on the generated demo world (its numbers mean nothing)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mipd_kit.viz.cases import (CONTRASTS, build_cases, cell_cases, export_cases, filter_pairs, load_situations,
                                load_split, pair_cases, prediction_models, training_rationales, verb_confusion)
from mipd_kit.viz.inspector import CompareInspector, ConfusionBrowser, open_compare, write_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, Path]:
    world, run = write_demo(tmp_path_factory.mktemp("demo"), seed=0)
    # judged rationales of training images (the demo's own rationales belong to test images)
    train = json.loads((world / "train.json").read_text())
    lines = [{"image": name, "kind": "glimpse", "role": None, "polarity": pol, "text": f"{pol} about {rec['verb']}",
              "round": 1, "score": 0.9 if pol == "positive" else 0.1, "backend": "demo", "index": j}
             for name, rec in train.items() for j, pol in enumerate(("positive", "negative"))]
    from PIL import Image

    for name in train:  # the demo writes test images only: grey stand-ins for the training images
        Image.new("RGB", (64, 64), (120, 170, 90)).save(world / "images" / name)
    test = json.loads((world / "test.json").read_text())  # a teacher that always answers "riding" first
    (run / "teacher_zero_shot.json").write_text(json.dumps(
        {"split": "test", "top5": {k: [["riding", 0.6], [rec["verb"], 0.3]] for k, rec in test.items()}}))
    with open(run / "rationales.jsonl", "a") as f:
        f.write("".join(json.dumps(x) + "\n" for x in lines))
    return world, run


def _cases(world: Path, run: Path, model: str):
    gt = load_situations(world / "test.json")
    preds = json.loads((run / "predictions" / f"{model}-seed0.json").read_text())
    return build_cases(gt, preds, load_split(world / "ov_split.json"))


def test_models_come_from_the_prediction_files(demo, tmp_path: Path) -> None:
    world, run = demo
    assert prediction_models(run) == {"baseline": [0], "mipd": [0]}
    (tmp_path / "predictions").mkdir()
    for name in ("mipd-oracle-seed1.json", "mipd-oracle-seed0.json", "hoi-clhoi-seed0.json", "vcoco-icn-seed0.json",
                 "notes.json"):
        (tmp_path / "predictions" / name).write_text("{}")
    assert prediction_models(tmp_path) == {"mipd-oracle": [0, 1]}


def test_pairs_and_contrast_filters(demo) -> None:
    world, run = demo
    a, b = _cases(world, run, "mipd"), _cases(world, run, "baseline")
    pairs = pair_cases(a, b)
    assert len(pairs) == len(a) == 28
    by = {c: filter_pairs(pairs, contrast=c) for c in CONTRASTS}
    assert sum(len(by[c]) for c in CONTRASTS[1:]) == len(pairs) == len(by["all"])
    for p in by["a_right_b_wrong"]:
        assert p.a.pred_verb == p.gt_verb and p.b.pred_verb != p.gt_verb
    for p in by["a_wrong_b_right"]:
        assert p.a.pred_verb != p.gt_verb and p.b.pred_verb == p.gt_verb
    unseen = filter_pairs(pairs, split="unseen", verb="kicking")
    assert unseen and all(p.gt_verb == "kicking" and "unseen" in p.split_tags for p in unseen)
    with pytest.raises(ValueError, match="contrast must be one of"):
        filter_pairs(pairs, contrast="better")


def test_confusion_cells_partition_the_unseen_cases(demo) -> None:
    world, run = demo
    cases = _cases(world, run, "mipd")
    conf = verb_confusion(cases, "unseen")
    n_unseen = sum("unseen" in c.split_tags for c in cases)
    assert sum(conf.values()) == n_unseen and list(conf.values()) == sorted(conf.values(), reverse=True)
    (g, p), n = next(iter(conf.items()))
    got = cell_cases(cases, g, p)
    assert len(got) == n and all(c.gt_verb == g and (c.pred_verb or "(none)") == p for c in got)


def test_training_rationales_of_a_verb(demo) -> None:
    from mipd_kit.rationales.store import read_rationales

    world, run = demo
    train_verbs = {k: v["verb"] for k, v in json.loads((world / "train.json").read_text()).items()}
    got = training_rationales(read_rationales(run / "rationales.jsonl"), train_verbs, "riding", limit=3)
    assert len(got["positive"]) == 3 and len(got["negative"]) == 3
    assert all(train_verbs[d["image"]] == "riding" and d["text"].endswith("riding") for d in got["positive"])
    assert training_rationales([], train_verbs, "riding") == {"positive": [], "negative": []}


def test_compare_widget_two_models_rationales_and_export(demo, tmp_path: Path) -> None:
    world, run = demo
    ins = open_compare(run, world, "mipd", "baseline", split="unseen")
    assert isinstance(ins, CompareInspector) and ins.names == ("mipd", "baseline")
    vis = ins.visible_cases()
    assert vis and all("unseen" in p.split_tags for p in vis)
    img = ins.rendered_image()
    assert img.width >= 3 * 256  # A | B | ground truth
    label = ins.label_text()
    assert "mipd" in label and "baseline" in label and vis[0].gt_verb in label and "teacher riding (0.60)" in label
    assert ins.teacher_top5(vis[0].image) == [("riding", 0.6), (vis[0].gt_verb, 0.3)]
    assert "teacher (zero-shot)" in ins.details_html()
    seen_pairs = ins.set_filter(split="seen", contrast="a_right_b_wrong")
    assert all(p.contrast == "a_right_b_wrong" for p in seen_pairs)
    if seen_pairs:  # the gold verb of a seen case has training rationales, with thumbnails of their images
        details = ins.details_html()
        assert "gold verb" in details and "positive about" in details and "data:image/png;base64" in details
    ins.set_filter(split="all")
    out = ins.export(tmp_path / "pairs.csv")
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == len(ins.visible_cases()) == 28
    assert {"image", "gt_verb", "contrast", "mipd_pred_verb", "baseline_pred_verb"} <= set(rows[0])
    js = json.loads(ins.export(tmp_path / "pairs.json").read_text())
    assert [r["image"] for r in js] == [r["image"] for r in rows]
    with pytest.raises(FileNotFoundError, match="models with predictions in this run: baseline"):
        open_compare(run, world, "mipd", "upper")


def test_confusion_browser_cell_grid_and_export(demo, tmp_path: Path) -> None:
    world, run = demo
    cases = _cases(world, run, "mipd")
    cb = ConfusionBrowser(cases, "unseen", image_root=world / "images")
    assert cb.cells and "gold (rows)" in cb.matrix_html()
    (g, p), n = list(cb.cells.items())[-1]
    got = cb.select_cell(g, p)
    assert len(got) == n and cb.w_cell.value == (g, p)
    assert cb.grid_image() is not None and cb.w_grid.value[:4] == b"\x89PNG"
    rows = json.loads(cb.export(tmp_path / "cell.json").read_text())
    assert [r["image"] for r in rows] == [c.image for c in got]
    assert export_cases([], tmp_path / "empty.csv").read_text().strip() == "image"
