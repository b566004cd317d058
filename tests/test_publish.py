"""``mipd publish``: a run folder -> the committed report (sampled rationales, sample rationales with images), and
the rationale browser of the inspector, on a tiny SynthSitu world and a fake run folder."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from mipd_kit.app import report
from mipd_kit.data.records import DataError
from mipd_kit.data.synthsitu.generate import SynthConfig, generate
from mipd_kit.rationales.store import read_rationales
from mipd_kit.viz.rationales import (STRATA, UNLABELED, build_items, filter_items, load_world_situations,
                                     open_rationale_browser, sample_items)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pubworld") / "w"
    cfg = replace(SynthConfig.smoke(0), n_train=80, rare_train=2, n_dev=35, n_test=35, n_unlabeled=6,
                  n_hoi_train=4, n_hoi_test=2, n_pretrain=20, workers=1)
    generate(cfg, out)
    return out


def _records(world: Path) -> list[dict]:
    """A few dozen records for the world's train images: glimpse / gaze x positive / negative over rounds, a
    dropped one and unjudged descriptions of unlabeled images."""
    train = json.loads((world / "train.json").read_text())
    unl = json.loads((world / "unlabeled.json").read_text())["images"]
    recs = []
    for i, (image, ann) in enumerate(list(train.items())[:12]):
        role = next(r for r, b in ann["bb"].items() if b != [-1, -1, -1, -1])
        for rnd, pol in enumerate(("negative", "positive")):
            ok = pol == "positive"
            verdict = {"score": 8.0 if ok else 1.0, "accept": ok,
                       "reasons": [] if ok else ["the activity is wrong"]}
            base = {"image": image, "round": rnd, "polarity": pol, "score": verdict["score"], "backend": "b1",
                    "verdict": verdict, "source": "generated", "target": None, "index": 0, "schema": 1}
            recs.append({**base, "kind": "glimpse", "role": None, "text": f"glimpse {pol} {i}"})
            recs.append({**base, "kind": "gaze", "role": role, "text": f"gaze {pol} {role} {i}"})
    recs.append({**recs[0], "polarity": "dropped", "index": 7, "text": "names the gold verb"})
    for j, image in enumerate(unl[:4]):
        recs.append({"image": image, "kind": "glimpse", "role": None, "polarity": "unjudged", "text": f"unl {j}",
                     "round": 0, "score": None, "backend": "unlabeled", "verdict": None, "source": "unlabeled",
                     "target": None, "index": 0, "schema": 1})
    return recs


def _run(tmp: Path, world: Path, state: str = "done", records: list[dict] | None = None) -> Path:
    run = tmp / "run"
    (run / "figures").mkdir(parents=True)
    (run / "notebooks").mkdir()
    status = {"run_id": "fake-1", "config": "configs/smoke.yaml", "state": state,
              "failed_stage": None if state == "done" else "distillation",
              "stages": {"data": {"state": "done", "params": {"world_dir": str(world), "seed": 0}}}}
    (run / "status.json").write_text(json.dumps(status))
    (run / "metrics.json").write_text(json.dumps([{"task": "gsr", "model": "mipd", "seed": 0, "split": "all",
                                                   "setting": "top1", "metric": "verb", "mean": "image",
                                                   "value": 12.5}]))
    (run / "results.md").write_text("# results\n")
    (run / "results_mipd.md").write_text("# mipd\n")
    (run / "config.yaml").write_text("seed: 0\n")
    (run / "run.log").write_text("INFO mipd_kit.app.pipeline: stage data done in 1.0s\n")
    (run / "figures" / "a.png").write_bytes((world / "images" / "test_000000.png").read_bytes())
    (run / "predictions").mkdir()
    (run / "predictions" / "big.json").write_text("{}")  # not published
    recs = _records(world) if records is None else records
    (run / "rationales.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (run / "rationales-template.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs[:5]))
    # a notebook with one small and one large output image (base64 of 400 kB and of 1 kB)
    import base64
    big, small = base64.b64encode(b"\0" * 400_000).decode(), base64.b64encode(b"\0" * 1000).decode()
    nb = {"cells": [{"cell_type": "code", "source": "", "metadata": {}, "execution_count": 1, "outputs": [
        {"output_type": "display_data", "metadata": {}, "data": {"image/png": big, "text/plain": "<Figure>"}},
        {"output_type": "display_data", "metadata": {}, "data": {"image/png": small}}]}],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (run / "notebooks" / "00_data.ipynb").write_text(json.dumps(nb))
    return run


def test_publish_writes_the_report(tmp_path, world, capsys) -> None:
    run = _run(tmp_path, world)
    dest = tmp_path / "reports" / "latest-default"
    code = report.main([str(run), "--to", str(dest), "--sample-lines", "10", "--seed", "3", "--samples", "10"])
    assert code == 0
    out = capsys.readouterr().out
    assert "MB" in out and str(dest) in out
    for name in ("results.md", "results_mipd.md", "metrics.json", "status.json", "config.yaml", "run.log",
                 "figures/a.png",
                 "notebooks/00_data.ipynb", "rationales_sample.jsonl", "rationales_summary.json", "README.md",
                 "samples/README.md"):
        assert (dest / name).is_file(), name
    assert not (dest / "predictions").exists() and not (dest / "rationales.jsonl").exists()
    assert not list(tmp_path.glob("reports/.latest-default*")), "the temporary folder is left behind"

    # the sample: 10 lines of the store, verbatim, in file order
    lines = (run / "rationales.jsonl").read_text().splitlines()
    sample = (dest / "rationales_sample.jsonl").read_text().splitlines()
    assert len(sample) == 10 and len(set(sample)) == 10
    pos = [lines.index(s) for s in sample]
    assert pos == sorted(pos)
    # seeded: the same seed gives the same sample, another seed another one
    assert report.sample_lines([ln.encode() for ln in lines], 10, 3) == [s.encode() for s in sample]
    assert report.sample_lines([ln.encode() for ln in lines], 10, 4) != [s.encode() for s in sample]

    summary = json.loads((dest / "rationales_summary.json").read_text())
    assert summary["records"] == len(lines)
    assert summary["by_polarity"] == {"dropped": 1, "negative": 24, "positive": 24, "unjudged": 4}
    assert summary["by_kind_polarity"]["gaze/positive"] == 12 and summary["by_round"] == {"0": 29, "1": 24}
    assert summary["controls"]["rationales-template.jsonl"]["lines"] == 5
    assert summary["controls"]["rationales-shuffled.jsonl"] is None

    # the big notebook image was dropped, the small one kept
    nb = json.loads((dest / "notebooks" / "00_data.ipynb").read_text())
    outs = nb["cells"][0]["outputs"]
    assert "image/png" not in outs[0]["data"] and "dropped" in outs[0]["data"]["text/plain"]
    assert "image/png" in outs[1]["data"]


def test_samples_readme_shows_images_that_exist(tmp_path, world) -> None:
    run = _run(tmp_path, world)
    dest = tmp_path / "out"
    rep = report.publish(run, dest, sample_lines_n=2000, seed=0, samples=10)
    assert rep.samples == 10 and rep.missing_images == [] and rep.sample_lines == rep.rationale_lines
    md = (dest / "samples" / "README.md").read_text()
    pics = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(pics) == 10 and all((dest / "samples" / p).is_file() for p in pics)
    # glimpse and gaze, positive and negative, about evenly, plus one unjudged description
    kinds = [tuple(p.split("_")[1:3]) for p in pics]
    for s in STRATA:
        assert kinds.count((s[0], s[1] + ".png")) in (2, 3), kinds
    assert kinds.count(("glimpse", "unjudged.png")) == 1
    assert "the activity is wrong" in md and "not judged" in md
    # a gaze image is the world image drawn larger with its role box, a glimpse image is copied as it is
    from PIL import Image

    gaze = next(p for p in pics if "_gaze_" in p)
    with Image.open(dest / "samples" / gaze) as im:
        assert im.width >= 384
    glimpse = next(p for p in pics if "_glimpse_positive" in p)
    with Image.open(dest / "samples" / glimpse) as im:
        assert im.size == (128, 128)


def test_a_run_that_is_not_done_is_refused(tmp_path, world, capsys) -> None:
    run = _run(tmp_path, world, state="failed")
    dest = tmp_path / "out"
    assert report.main([str(run), "--to", str(dest)]) == 2
    err = capsys.readouterr().err
    assert "'failed'" in err and "distillation" in err and "--allow-partial" in err
    assert not dest.exists()
    assert report.main([str(run), "--to", str(dest), "--allow-partial", "--samples", "4"]) == 0
    assert "Partial run" in (dest / "README.md").read_text()


def test_the_size_guard_refuses_and_keeps_the_old_copy(tmp_path, world, monkeypatch, capsys) -> None:
    run = _run(tmp_path, world)
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "old.txt").write_text("the previous report")
    monkeypatch.setattr(report, "MAX_BYTES", 50_000)
    assert report.main([str(run), "--to", str(dest)]) == 2
    assert "over the limit" in capsys.readouterr().err
    assert (dest / "old.txt").read_text() == "the previous report" and not (dest / "metrics.json").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []
    monkeypatch.setattr(report, "MAX_BYTES", 20_000_000)
    assert report.main([str(run), "--to", str(dest)]) == 0
    assert (dest / "metrics.json").is_file() and not (dest / "old.txt").exists()  # replaced, not merged


def test_a_missing_image_is_a_counted_skip(tmp_path, world) -> None:
    recs = _records(world)
    recs[0] = {**recs[0], "image": "train_999999.png"}  # the first glimpse negative: no such image
    run = _run(tmp_path, world, records=recs)
    rep = report.publish(run, tmp_path / "out", samples=60, seed=0)  # every record is shown
    assert len(rep.missing_images) == 1 and rep.missing_images[0].endswith("train_999999.png")
    md = (tmp_path / "out" / "samples" / "README.md").read_text()
    assert "image not found" in md and "train_999999.png" in md
    # an image that does not decode (a gaze rationale's image is drawn) is a counted skip too
    gaze = next(r for r in recs if r["kind"] == "gaze")
    world_copy = tmp_path / "world"
    (world_copy / "images").mkdir(parents=True)
    (world_copy / "train.json").write_text((world / "train.json").read_text())
    (world_copy / "images" / gaze["image"]).write_bytes(b"not a png")
    run2 = _run(tmp_path / "second", world, records=[gaze])
    rep = report.publish(run2, tmp_path / "out2", samples=1, world_dir=world_copy)
    assert len(rep.missing_images) == 1 and "cannot be read" in rep.missing_images[0]


def test_no_world_and_bad_lines_are_named(tmp_path, world) -> None:
    run = _run(tmp_path, world)
    with pytest.raises(report.PublishError, match="--world"):
        report.publish(run, tmp_path / "out", world_dir=tmp_path / "nowhere")
    with (run / "rationales.jsonl").open("a") as f:
        f.write(json.dumps({"image": "x.png", "kind": "stare"}) + "\n")
    with pytest.raises(DataError, match=r"rationales.jsonl: line 54"):
        report.publish(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(report.PublishError, match="not a run folder"):
        report.publish(world, tmp_path / "out")


def test_a_run_without_rationales_is_published_without_samples(tmp_path, world, capsys) -> None:
    run = _run(tmp_path, world)
    (run / "rationales.jsonl").unlink()
    dest = tmp_path / "out"
    assert report.main([str(run), "--to", str(dest), "--world", str(tmp_path / "nowhere")]) == 0
    assert "no rationales.jsonl" in capsys.readouterr().out
    summary = json.loads((dest / "rationales_summary.json").read_text())
    assert summary["rationales"] is None and summary["controls"]["rationales-template.jsonl"]["lines"] == 5
    assert not (dest / "samples").exists() and not (dest / "rationales_sample.jsonl").exists()
    assert "samples/" not in (dest / "README.md").read_text()


def test_rationale_browser(tmp_path, world) -> None:
    run = _run(tmp_path, world)
    br = open_rationale_browser(run, world, kind="gaze", polarity="positive")
    vis = br.visible_cases()
    assert len(vis) == 12 and all(it.rationale.kind == "gaze" and it.rationale.polarity == "positive" for it in vis)
    assert all(it.box is not None and it.verb for it in vis)
    assert "gaze" in br.label_text() and vis[0].rationale.text in br.details_html()
    assert br.rendered_image().width >= 384 and br.missing_images == set()
    assert br.w_kind.value == "gaze" and br.w_polarity.value == "positive"
    verb = vis[0].verb
    br.w_verb.value = verb  # what a click in the dropdown does
    assert br.visible_cases() and {it.verb for it in br.visible_cases()} == {verb}
    unl = br.set_filter(verb=UNLABELED)
    assert len(unl) == 4 and {it.rationale.polarity for it in unl} == {"unjudged"}
    assert "not judged" in br.details_html()
    assert br.next() is unl[1]


def test_sample_items_fills_from_other_strata(world) -> None:
    recs = [r for r in _records(world) if not (r["kind"] == "gaze" and r["polarity"] == "negative")]
    from mipd_kit.rationales.store import rationale_from_json

    items = build_items([rationale_from_json(r, "t") for r in recs], load_world_situations(world))
    got = sample_items(items, 20, seed=1)
    assert len(got) == 20 and len({id(x) for x in got}) == 20
    assert not filter_items(got, kind="gaze", polarity="negative")
    assert len(filter_items(got, polarity="unjudged")) == 2
    assert sample_items(items, 20, seed=1) == got and sample_items(items, 20, seed=2) != got
