"""The HOI error inspector: case building (outcomes, tags, recall), filters, the widget's accessors, bad input."""

from __future__ import annotations

import json

import pytest

from hoi_tinyworld import UNSEEN, write_tiny_hoi_world
from mipd_kit.data.hico import load_hico_instances
from mipd_kit.hoi.inspector import (OUTCOMES, HOIInspector, build_hoi_cases, filter_hoi_cases, open_hoi_inspector,
                                    render_hoi_case, summarize_hoi)
from mipd_kit.viz.browser import PANEL_SIZE
from mipd_kit.viz.draw import PALETTE


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = write_tiny_hoi_world(tmp_path_factory.mktemp("hoi") / "w", n_train=2, n_test=9)
    test, vocab = load_hico_instances(root / "hoi_test.json")
    return root, test, vocab


def det(im, i, hoi=None, score=0.9, shift=0.0):
    """A detection on annotated pair i of ``im`` (its HOI unless ``hoi``), the object box shifted by ``shift`` px."""
    bo = [v + shift for v in im.boxes_o[i]]
    return {"hoi": im.hoi[i] if hoi is None else hoi, "box_h": list(im.boxes_h[i]), "box_o": bo, "score": score}


def far_box(im, i):
    """Pair i's human box with an object box that overlaps no annotated object."""
    return {"box_h": list(im.boxes_h[i]), "box_o": [0.0, 0.0, 1.0, 1.0]}


def test_outcomes_tags_and_recall(world):
    _, test, vocab = world
    ims = [im for im in test if im.hoi]
    a, b, c, d, e = ims[:5]
    other = lambda im: next(h for h in range(vocab.num_hoi) if h not in im.hoi)  # noqa: E731
    preds = {
        a.filename: [det(a, 0, score=0.8), det(a, 0, hoi=other(a), score=0.1)],  # correct
        b.filename: [det(b, 0, hoi=other(b), score=0.9)],                      # right boxes, HOI not annotated there
        c.filename: [{**far_box(c, 0), "hoi": c.hoi[0], "score": 0.7}],         # annotated HOI, wrong object box
        d.filename: [{**far_box(d, 0), "hoi": other(d), "score": 0.6}],         # neither
    }                                                                           # e: no detection
    cases = {x.filename: x for x in build_hoi_cases(test, vocab, preds, UNSEEN, k=5)}
    assert len(cases) == len(ims)  # the image without pairs has no case
    assert [cases[im.filename].outcome for im in (a, b, c, d, e)] == \
        ["correct", "wrong_interaction", "wrong_pair", "miss", "no_detection"]
    ca = cases[a.filename]
    assert [p.correct for p in ca.top] == [True, False] and ca.confidence == 0.8
    assert ca.recall == pytest.approx(sum(h == a.hoi[0] for h in a.hoi) / len(a.hoi))
    assert cases[e.filename].recall == 0.0 and cases[e.filename].top == ()
    counts = summarize_hoi(list(cases.values()))
    for tag, per_outcome in counts.items():
        assert sum(per_outcome.values()) == sum(tag in c.tags for c in cases.values())
    assert all("seen" in c.tags or "unseen" in c.tags for c in cases.values())
    for im, outcome in zip((a, b, c, d, e), OUTCOMES):  # the five cases above, one per outcome
        assert all(counts[t][outcome] >= 1 for t in cases[im.filename].tags)
    for im in ims:
        tags = cases[im.filename].tags
        assert ("unseen" in tags) == any(h in UNSEEN for h in im.hoi)
        assert ("rare" in tags) == any(h in vocab.rare for h in im.hoi)
        assert ("seen" in tags) == any(h not in UNSEEN for h in im.hoi)


def test_filter_and_sort(world):
    _, test, vocab = world
    ims = [im for im in test if im.hoi]
    preds = {im.filename: [det(im, 0, score=0.1 * (j + 1))] for j, im in enumerate(ims)}
    cases = build_hoi_cases(test, vocab, preds, UNSEEN)
    by_conf = filter_hoi_cases(cases)
    assert [c.confidence for c in by_conf] == sorted((c.confidence for c in cases), reverse=True)
    by_recall = filter_hoi_cases(cases, sort_by="recall")
    assert [c.recall for c in by_recall] == sorted(c.recall for c in cases)
    unseen = filter_hoi_cases(cases, tag="unseen")
    assert unseen and all("unseen" in c.tags for c in unseen)
    assert all("kick ball" in c.gt_labels for c in filter_hoi_cases(cases, hoi="kick ball"))
    assert {c.outcome for c in filter_hoi_cases(cases, outcome="correct")} == {"correct"}
    with pytest.raises(ValueError, match="outcome must be one of"):
        filter_hoi_cases(cases, outcome="bogus")


def test_widget_accessors_and_dropdowns(world):
    root, test, vocab = world
    ims = [im for im in test if im.hoi]
    preds = {im.filename: [det(im, 0, score=0.5 + 0.01 * j)] for j, im in enumerate(ims)}
    preds[ims[0].filename] = [{**far_box(ims[0], 0), "hoi": ims[0].hoi[0], "score": 0.99}]
    ins = HOIInspector(build_hoi_cases(test, vocab, preds, UNSEEN), image_root=root / "images")
    assert ins.dropdowns["outcome"].options[1:] == OUTCOMES
    assert ins.current_case().filename == ims[0].filename  # highest score first
    assert "case 1/" in ins.label_text() and "outcome wrong_pair" in ins.label_text()
    img = ins.rendered_image()
    assert img.width >= 2 * PANEL_SIZE and ins.w_image.value[:4] == b"\x89PNG"
    colours = {img.getpixel((x, y)) for x in range(0, img.width, 2) for y in range(0, img.height, 2)}
    assert PALETTE[0] in colours  # the first pair is drawn in the first palette colour
    assert "top-1 detections" in ins.details_html() and "recall" in ins.details_html()
    changes = []
    ins.on_change(lambda i: changes.append(i.current_case()))
    ins.dropdowns["outcome"].value = "correct"  # what a click does
    assert ins.filter["outcome"] == "correct" and ins.visible_cases()
    assert all(c.outcome == "correct" for c in ins.visible_cases()) and changes
    ins.dropdowns["tag"].value = "unseen"
    assert all("unseen" in c.tags and c.outcome == "correct" for c in ins.visible_cases())
    ins.set_filter(outcome="no_detection")
    assert ins.visible_cases() == [] and ins.current_case() is None and "no case" in ins.label_text()
    ins.set_filter(sort_by="recall")
    assert ins.next() is ins.visible_cases()[1] and ins.w_slider.value == 1


def test_missing_images_draw_placeholders(world, tmp_path):
    _, test, vocab = world
    cases = build_hoi_cases(test, vocab, {}, UNSEEN)
    ins = HOIInspector(cases, image_root=tmp_path)
    assert ins.current_case().filename in ins.missing_images and "placeholder" in ins.label_text()
    assert render_hoi_case(cases[0], None).width >= 2 * PANEL_SIZE


def test_open_hoi_inspector_and_bad_input(world, tmp_path):
    root, test, vocab = world
    run = tmp_path / "run"
    with pytest.raises(FileNotFoundError, match=r"hoi-clhoi-seed0\.json is absent \(written by the CL-HOI stage"):
        open_hoi_inspector(run, root)
    (run / "predictions").mkdir(parents=True)
    im = next(im for im in test if im.hoi)
    path = run / "predictions" / "hoi-clhoi-seed0.json"
    path.write_text(json.dumps({im.filename: [det(im, 0)]}))
    ins = open_hoi_inspector(run, root, outcome="correct")
    assert [c.filename for c in ins.visible_cases()] == [im.filename]
    with pytest.raises(FileNotFoundError, match="hoi_test.json is absent"):
        open_hoi_inspector(run, tmp_path)
    path.write_text('{"x": [')
    with pytest.raises(ValueError, match=r"hoi-clhoi-seed0\.json: not valid JSON"):
        open_hoi_inspector(run, root)
    for bad, what in (({**det(im, 0), "hoi": vocab.num_hoi}, "index below"), ({**det(im, 0), "box_o": [1, 2]}, "4 finite"),
                      ({k: v for k, v in det(im, 0).items() if k != "score"}, "needs hoi")):
        path.write_text(json.dumps({im.filename: [det(im, 0), bad]}))
        with pytest.raises(ValueError, match=rf"hoi-clhoi-seed0\.json: predictions\['{im.filename}'\]\[1\].*{what}"):
            open_hoi_inspector(run, root)
