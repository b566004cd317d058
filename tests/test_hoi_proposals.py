"""CL-HOI pair proposals: known boxes, detector JSON, jittered boxes with measured error, and their edge cases."""

from __future__ import annotations

import json

import pytest

from mipd_kit.data.records import DataError, HOIImage, HOIVocab
from mipd_kit.hoi.proposals import (box_iou, detector_proposals, is_valid_box, jittered_detections,
                                    known_boxes_proposals, proposal_quality, read_detections, write_detections)

VOCAB = HOIVocab(["ball", "cup", "person"], ["hold", "kick", "hug"], [(0, 0, 0), (1, 0, 1), (2, 1, 0), (3, 2, 2)],
                 rare=[3], non_rare=[0, 1, 2])


class NoLabelsImage(HOIImage):
    """An HOIImage whose interaction labels explode when read."""

    def __getattribute__(self, name):
        if name in ("hoi", "verb"):
            raise AssertionError(f"proposals read the {name!r} field")
        return super().__getattribute__(name)


def _img(name="a.png", bh=((0, 0, 10, 20),), bo=((10, 5, 15, 10),), obj=(0,), hoi=(0,), verb=(0,)):
    return NoLabelsImage(name, 48, 48, [tuple(map(float, b)) for b in bh], [tuple(map(float, b)) for b in bo],
                         list(hoi), list(obj), list(verb))


def test_known_boxes_dedupes_pairs_and_never_reads_labels():
    # the same human with one object under two verbs (HICO-DET repeats the pair), plus a second object
    im = _img(bh=[(0, 0, 10, 20), (0, 0, 10, 20), (0, 0, 10, 20)], bo=[(10, 5, 15, 10), (10, 5, 15, 10), (20, 5, 25, 9)],
              obj=[0, 0, 1], hoi=[0, 1, 2], verb=[0, 1, 0])
    props, stats = known_boxes_proposals([im], VOCAB)
    p = props[0]
    assert len(p.humans) == 1 and len(p.objects) == 2
    assert p.object_labels == [0, 1]
    assert p.pairs == [(0, 0), (0, 1)]
    assert stats.pairs == 2 and stats.images_with_pairs == 1


def test_known_boxes_without_object_labels_marks_unknown():
    props, _ = known_boxes_proposals([_img()], VOCAB, object_labels=False)
    assert props[0].object_labels == [-1]


def test_images_without_human_or_object_and_degenerate_boxes_are_counted():
    empty = _img("empty.png", bh=(), bo=(), obj=(), hoi=(), verb=())
    degenerate = _img("deg.png", bh=[(5, 5, 5, 9)], bo=[(1, 1, 4, 4)])  # x2 == x1: zero-width human
    props, stats = known_boxes_proposals([empty, degenerate, _img()], VOCAB)
    assert [len(p.pairs) for p in props] == [0, 0, 1]
    assert stats.images == 3 and stats.images_no_human == 2 and stats.images_no_object == 1
    assert stats.degenerate_boxes == 1 and stats.images_with_pairs == 1


def test_box_validity_and_iou():
    assert is_valid_box([0, 0, 1, 1]) and not is_valid_box([0, 0, 0, 1]) and not is_valid_box([0, 0, float("nan"), 1])
    assert not is_valid_box([0, 0, 1]) and not is_valid_box(["a", 0, 1, 1])
    assert box_iou((0, 0, 2, 2), (0, 0, 2, 2)) == pytest.approx(1.0)
    assert box_iou((0, 0, 2, 2), (1, 0, 3, 2)) == pytest.approx(1 / 3)
    assert box_iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0


def test_detector_proposals_labels_threshold_and_counts(tmp_path):
    dets = {
        "a.png": [
            {"box": [0, 0, 10, 20], "label": "person", "score": 0.9},
            {"box": [30, 0, 40, 20], "label": 2, "score": 0.8},          # person by index: a human too
            {"box": [10, 5, 15, 10], "label": "ball", "score": 0.7},
            {"box": [20, 5, 25, 10], "label": 1, "score": 0.6},          # cup by index
            {"box": [20, 5, 25, 10], "label": "unicorn", "score": 0.9},  # unknown label
            {"box": [20, 5, 19, 10], "label": "ball", "score": 0.9},     # degenerate
            {"box": [1, 1, 5, 5], "label": "cup", "score": 0.05},        # below threshold
        ],
        "not_in_split.png": [],
    }
    path = tmp_path / "dets.json"
    write_detections(path, dets)
    props, stats = detector_proposals(path, [("a.png", 48, 48), ("b.png", 48, 48)], VOCAB, score_threshold=0.2)
    a, b = props
    assert len(a.humans) == 2
    # objects: ball, cup and both humans (the vocabulary has "person": person-person HOIs)
    assert sorted(a.object_labels) == [0, 1, 2, 2]
    # every human with every object except itself
    assert len(a.pairs) == 2 * 4 - 2
    assert b.pairs == [] and stats.images_without_detections == 1
    assert stats.unknown_labels == 1 and stats.degenerate_boxes == 1 and stats.below_threshold == 1
    assert stats.unknown_images == 1


def test_detector_format_errors_name_file_and_record(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"x.png": [{"box": [0, 0, 1], "label": "ball", "score": 1.0}]}))
    with pytest.raises(DataError, match=r"bad\.json.*'x\.png' detection 0"):
        read_detections(bad)
    bad.write_text(json.dumps({"x.png": [{"box": [0, 0, 1, 1], "label": "ball"}]}))
    with pytest.raises(DataError, match="'score'"):
        read_detections(bad)
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        read_detections(bad)
    with pytest.raises(DataError, match="not found"):
        read_detections(tmp_path / "missing.json")
    with pytest.raises(DataError, match="label"):
        detector_proposals({"x.png": [{"box": [0, 0, 1, 1], "label": 1.5, "score": 1.0}]}, [("x.png", 4, 4)], VOCAB)


def test_jittered_detections_error_is_measured_and_grows_with_noise():
    ims = [_img(f"{i}.png", bh=[(2 + i, 2, 14 + i, 30)], bo=[(14 + i, 10, 22 + i, 18)]) for i in range(10)]
    exact = jittered_detections(ims, VOCAB, noise=0.0, seed=0)
    p0, _ = detector_proposals(exact, [(im.filename, 48, 48) for im in ims], VOCAB)
    q0 = proposal_quality(p0, ims)
    assert q0["pair_recall"] == 1.0 and q0["mean_best_iou_h"] == pytest.approx(1.0)
    noisy = jittered_detections(ims, VOCAB, noise=0.3, seed=0)
    p1, _ = detector_proposals(noisy, [(im.filename, 48, 48) for im in ims], VOCAB, score_threshold=0.0)
    q1 = proposal_quality(p1, ims)
    assert q1["mean_best_iou_h"] < 0.95 and q1["mean_best_iou_o"] < 0.95
    assert 0.0 <= q1["pair_recall"] <= 1.0
    # seeded
    assert jittered_detections(ims, VOCAB, noise=0.3, seed=0) == noisy
    # boxes stay inside the image
    assert all(0 <= v <= 48 for dets in noisy.values() for d in dets for v in d["box"])
