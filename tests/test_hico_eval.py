"""HICO-DET mAP by the official protocol: hand-computed tiny cases, parity with the pure-Python reference, the real
test set (ground truth as predictions, jittered copies with a closed-form answer) and bad input."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

from conftest import shared_file
from mipd_kit.data.hico import load_hico_instances, load_zero_shot_splits, write_hico_instances
from mipd_kit.data.records import DataError, HOIImage, HOIVocab
from mipd_kit.eval.hico import (MATLAB_THRESHOLDS, ap_11_point, evaluate_hico, evaluate_hico_report,
                                load_predictions_npz, main, prediction_arrays, save_predictions_npz)
from mipd_kit.eval.hico_reference import reference_average_precisions, reference_map

HICO = "fredzzhang__hicodet/instances_test2015.json"
GENVLKT = "YueLiao__gen-vlkt/datasets/text_labels_and_zero_shot_splits.json"

# vocabulary: HOI 0 = (ball, hold), HOI 1 = (ball, kick) [rare, no ground truth below], HOI 2 = (cup, hold)
VOCAB = HOIVocab(["ball", "cup"], ["hold", "kick"], [(0, 0, 0), (1, 0, 1), (2, 1, 0)], rare=[1], non_rare=[0, 2])
P1 = ([0, 0, 9, 9], [20, 20, 29, 29])
P2 = ([50, 50, 59, 59], [70, 70, 79, 79])
FAR = ([90, 0, 99, 9], [90, 90, 99, 99])


def img(name, pairs, hois, size=(100, 100)):
    objs = [VOCAB.correspondence[h][1] for h in hois]
    verbs = [VOCAB.correspondence[h][2] for h in hois]
    return HOIImage(name, size[0], size[1], [tuple(map(float, p[0])) for p in pairs],
                    [tuple(map(float, p[1])) for p in pairs], list(hois), objs, verbs)


def det(pair, score, hoi=0):
    return {"hoi": hoi, "box_h": list(pair[0]), "box_o": list(pair[1]), "score": score}


def maps(rows, setting="default", metric="map"):
    return {r.split: r.value for r in rows if r.setting == setting and r.metric == metric}


def ap_of(images, preds, hoi=0, setting="default", protocol="official"):
    rep = evaluate_hico_report(images, VOCAB, preds, setting, protocol=protocol)
    return rep.ap[(setting, protocol)][hoi]


# ----------------------------------------------------------------------------------------------- hand-computed

def test_11_point_vs_all_point():
    # 2 GT pairs; detections TP (0.9), FP (0.8), TP (0.7): recall .5 .5 1, precision 1 .5 2/3
    images = [img("a", [P1, P2], [0, 0])]
    preds = {"a": [det(P1, 0.9), det(FAR, 0.8), det(P2, 0.7)]}
    # 11-point: thresholds 0..0.5 (six) reach precision 1, 0.6..1 (five) reach 2/3
    assert ap_of(images, preds) == pytest.approx((6 * 1 + 5 * (2 / 3)) / 11)   # 28/33
    # all-point: 0.5 * 1 + 0.5 * 2/3
    assert ap_of(images, preds, protocol="continuous") == pytest.approx(5 / 6)


def test_plus_one_area_and_iou_exactly_half():
    # GT human [0,0,9,9] is 10x10 = 100 px with +1; the detection [0,0,9,4] is 10x5 = 50 px inside it:
    # IoU = 50/100 = 0.5 exactly -> TP (>= 0.5). Continuous: 9x4 = 36 inside 9x9 = 81 -> 0.444 -> FP.
    images = [img("a", [P1], [0])]
    preds = {"a": [det(([0, 0, 9, 4], P1[1]), 0.9)]}
    assert ap_of(images, preds) == pytest.approx(1.0)
    assert ap_of(images, preds, protocol="continuous") == 0.0


def test_duplicate_detection_is_a_false_positive_even_if_another_pair_would_fit():
    # P1 and P1b share the object; P1b's human is taller (10x15). A detection equal to P1 overlaps P1 by 1.0 and
    # P1b by 100/150 = 0.667: its best pair is P1, so the second copy is a FP although P1b is free (VOC rule).
    p1b = ([0, 0, 9, 14], P1[1])
    images = [img("a", [P1, p1b], [0, 0])]
    preds = {"a": [det(P1, 0.9), det(P1, 0.8)]}
    # recall .5 .5, precision 1 .5 -> 11-point: six thresholds <= .5 at precision 1
    assert ap_of(images, preds) == pytest.approx(6 / 11)
    assert ap_of(images, preds, protocol="continuous") == pytest.approx(0.5)
    # a detection matching P1b better is a TP
    preds = {"a": [det(P1, 0.9), det(p1b, 0.8)]}
    assert ap_of(images, preds) == pytest.approx(1.0)


def test_matlab_recall_threshold_0_3():
    # 10 GT pairs, 3 found first then misses: recall 3/10 = 0.3 < MATLAB's t = 0.30000000000000004,
    # so only t = 0, 0.1, 0.2 get precision 1: AP = 3/11 (a naive t = 0.3 would give 4/11).
    assert MATLAB_THRESHOLDS[3] == 3 * 0.1 and MATLAB_THRESHOLDS[6] == 0.6 and MATLAB_THRESHOLDS[7] == 0.7
    pairs = [([10 * k, 0, 10 * k + 5, 5], [10 * k, 50, 10 * k + 5, 55]) for k in range(10)]
    images = [img("a", pairs, [0] * 10)]
    preds = {"a": [det(pairs[k], 1.0 - 0.01 * k) for k in range(3)] + [det(FAR, 0.1)]}
    assert ap_of(images, preds) == pytest.approx(3 / 11)
    assert ap_11_point(np.array([0.3]), np.array([1.0])) == pytest.approx(3 / 11)
    assert ap_11_point(np.array([0.6]), np.array([1.0])) == pytest.approx(7 / 11)


def test_qpic_variant_thresholds_and_touching_boxes():
    # 5 GT pairs, 3 found first: recall 3/5 = 0.6 reaches MATLAB's t = 0.6 (AP 7/11) but not numpy's
    # 0.6000000000000001 (AP 6/11)
    pairs = [([10 * k, 0, 10 * k + 5, 5], [10 * k, 50, 10 * k + 5, 55]) for k in range(5)]
    images = [img("a", pairs, [0] * 5)]
    preds = {"a": [det(pairs[k], 1.0 - 0.01 * k) for k in range(3)] + [det(FAR, 0.1)]}
    assert ap_of(images, preds) == pytest.approx(7 / 11)
    assert ap_of(images, preds, protocol="qpic") == pytest.approx(6 / 11)
    # one-pixel boxes (x1 == x2): +1 areas make them overlap fully under MATLAB's rule; QPIC's raw-intersection
    # test gives 0
    dot = ([5, 5, 5, 5], [7, 7, 7, 7])
    images = [img("a", [dot], [0])]
    assert ap_of(images, {"a": [det(dot, 0.9)]}) == pytest.approx(1.0)
    assert ap_of(images, {"a": [det(dot, 0.9)]}, protocol="qpic") == 0.0
    rows = evaluate_hico(images, VOCAB, {"a": [det(dot, 0.9)]}, protocol="all")
    assert {r.metric for r in rows if r.metric.startswith("map")} == {"map", "map_continuous", "map_qpic"}


def test_known_object_setting_drops_images_without_the_object():
    # HOI 0's object is "ball"; image b has only a cup pair, so its ball detection is dropped in known_object
    images = [img("a", [P1], [0]), img("b", [P2], [2])]
    preds = {"a": [det(P1, 0.8)], "b": [det(P2, 0.9, hoi=0)]}
    # default: FP (0.9) then TP (0.8): recall 0 1, precision 0 .5 -> every threshold gets 0.5
    assert ap_of(images, preds) == pytest.approx(0.5)
    assert ap_of(images, preds, setting="known_object") == pytest.approx(1.0)


def test_score_ties_keep_image_then_list_order():
    images = [img("a", [P1], [0])]
    assert ap_of(images, {"a": [det(FAR, 0.5), det(P1, 0.5)]}) == pytest.approx(0.5)
    assert ap_of(images, {"a": [det(P1, 0.5), det(FAR, 0.5)]}) == pytest.approx(1.0)


def test_hois_without_ground_truth_are_excluded_and_counted():
    images = [img("a", [P1], [0]), img("b", [P2], [2])]
    preds = {"a": [det(P1, 0.9), det(P1, 0.7, hoi=1)], "b": [det(P2, 0.5, hoi=2)]}
    rep = evaluate_hico_report(images, VOCAB, preds, "default")
    assert math.isnan(rep.ap[("default", "official")][1])
    m = maps(rep.rows)
    assert m["full"] == pytest.approx(100.0) and math.isnan(m["rare"])
    counts = {(r.split, r.metric): r.value for r in rep.rows if r.metric.startswith("n_hoi")}
    assert counts[("full", "n_hoi")] == 2 and counts[("full", "n_hoi_no_gt")] == 1
    assert counts[("rare", "n_hoi")] == 0 and counts[("rare", "n_hoi_no_gt")] == 1


def test_zero_shot_rows_and_verb_object_predictions():
    images = [img("a", [P1], [0]), img("b", [P2], [2])]
    preds = {"a": [{"verb": 0, "object": 0, "box_h": P1[0], "box_o": P1[1], "score": 0.9}],
             "b": [det(FAR, 0.5, hoi=2)]}
    rows = evaluate_hico(images, VOCAB, preds, "both", zero_shot=[2], protocol="both", model="m", seed=3)
    m = maps(rows)
    assert m["unseen"] == 0.0 and m["seen"] == pytest.approx(100.0) and m["full"] == pytest.approx(50.0)
    assert maps(rows, "known_object", "map_continuous")["seen"] == pytest.approx(100.0)
    assert all(r.task == "hoi" and r.model == "m" and r.seed == 3 for r in rows)


def test_warnings_are_counted_not_silent():
    images = [img("a", [P1], [0]), img("b", [P2], [2])]
    preds = {"a": [det(P1, 0.9), det(P1, 0.8, hoi=7), {"verb": 1, "object": 1, "box_h": P1[0],
                                                        "box_o": P1[1], "score": 0.3},
                   det(([5, 5, 1, 9], P1[1]), 0.2), det(([0, 0, 9, 9], [20, 20, 129, 29]), 0.1)],
             "zzz": [det(P1, 0.9), det(P1, 0.5)]}
    rep = evaluate_hico_report(images, VOCAB, preds)
    w = rep.warnings
    assert w["unknown_image"] == 1 and w["unknown_image_detections"] == 2
    assert w["unknown_hoi"] == 2 and w["degenerate_box"] == 1 and w["box_outside_image"] == 1
    assert w["gt_image_without_predictions"] == 1
    warn_rows = {r.metric: r.value for r in rep.rows if r.setting == "predictions"}
    assert warn_rows["warn_unknown_hoi"] == 2


@pytest.mark.parametrize("bad, needle", [
    ({"a": [{"hoi": 0, "box_h": [0, 0, 1, 1], "box_o": [0, 0, 1, 1]}]}, "lacks key 'score'"),
    ({"a": [{"box_h": [0, 0, 1, 1], "box_o": [0, 0, 1, 1], "score": 1}]}, "needs 'hoi'"),
    ({"a": [{"hoi": 0, "box_h": [0, 0, 1], "box_o": [0, 0, 1, 1], "score": 1}]}, "box_h must be"),
    ({"a": [{"hoi": 0, "box_h": [0, 0, 1, 1], "box_o": [0, 0, 1, 1], "score": float("nan")}]}, "finite"),
    ({"a": [{"hoi": "x", "box_h": [0, 0, 1, 1], "box_o": [0, 0, 1, 1], "score": 1}]}, "hoi must be an integer"),
    ({"a": {"hoi": 0}}, "must be a list"),
])
def test_malformed_predictions_raise_naming_the_record(bad, needle):
    images = [img("a", [P1], [0])]
    with pytest.raises(DataError) as e:
        prediction_arrays(bad, images, VOCAB, src="pred.json")
    assert needle in str(e.value) and "pred.json" in str(e.value) and "'a'" in str(e.value)


# ----------------------------------------------------------------------------------------------- parity

def random_world(rng: random.Random, n_images=40, n_hoi=12, n_obj=4, grid=60, size=(5, 40)):
    corr = [(k, k % n_obj, k // n_obj) for k in range(n_hoi)]
    vocab = HOIVocab([f"o{k}" for k in range(n_obj)], [f"v{k}" for k in range(n_hoi // n_obj)], corr,
                     rare=[k for k in range(n_hoi) if k % 3 == 0], non_rare=[k for k in range(n_hoi) if k % 3])
    images, preds = [], {}
    for i in range(n_images):
        bh, bo, hoi = [], [], []
        for _ in range(rng.randrange(0, 5)):
            x, y = rng.randrange(0, grid), rng.randrange(0, grid)
            bh.append((float(x), float(y), float(x + rng.randrange(*size)), float(y + rng.randrange(*size))))
            x, y = rng.randrange(0, grid), rng.randrange(0, grid)
            bo.append((float(x), float(y), float(x + rng.randrange(*size)), float(y + rng.randrange(*size))))
            hoi.append(rng.randrange(n_hoi - 1))            # the last HOI never has ground truth
        images.append(HOIImage(f"im{i}", 100, 100, bh, bo, hoi, [corr[h][1] for h in hoi], [corr[h][2] for h in hoi]))
        dets = []
        for _ in range(rng.randrange(0, 15)):
            if bh and rng.random() < 0.6:
                j = rng.randrange(len(bh))
                steps = [0, 0, 1, -2, 3.5, -7] if grid > 10 else [0, 0, 0, 1, -1]
                jit = lambda b: [v + rng.choice(steps) for v in b]
                dets.append({"hoi": hoi[j] if rng.random() < 0.7 else rng.randrange(n_hoi),
                             "box_h": jit(bh[j]), "box_o": jit(bo[j]), "score": rng.choice([0.1, 0.5, 0.5, 0.9])})
            else:
                x, y = rng.randrange(0, grid + 20), rng.randrange(0, grid + 20)
                w = 20 if grid > 10 else 2
                dets.append({"hoi": rng.randrange(n_hoi), "box_h": [x, y, x + w, y + w],
                             "box_o": [y, x, y + w // 2, x + w + w // 2], "score": round(rng.random(), 2)})
        if dets or rng.random() < 0.5:
            preds[f"im{i}"] = dets
    return images, vocab, preds


@pytest.mark.parametrize("seed, grid, size", [(s, 60, (5, 40)) for s in range(6)] + [(s, 6, (0, 4)) for s in range(4)])
def test_fast_path_matches_pure_python_reference(seed, grid, size):
    """Random worlds; the small-grid ones (boxes of 0-3 pixels on a 6x6 grid) are full of ties, touching boxes
    and IoU exactly 0.5, where the protocols differ."""
    images, vocab, preds = random_world(random.Random(seed), grid=grid, size=size)
    for setting in ("default", "known_object"):
        for protocol in ("official", "continuous", "qpic"):
            rep = evaluate_hico_report(images, vocab, preds, setting, zero_shot=[1, 5, 7], protocol=protocol)
            fast = rep.ap[(setting, protocol)]
            ref = np.array(reference_average_precisions(images, vocab, preds, setting, protocol))
            assert np.array_equal(np.isnan(fast), np.isnan(ref))
            assert np.nanmax(np.abs(fast - ref)) <= 1e-9
            ref_map = reference_map(images, vocab, preds, setting, protocol, unseen=[1, 5, 7])
            got = maps(rep.rows, setting, {"official": "map", "continuous": "map_continuous",
                                           "qpic": "map_qpic"}[protocol])
            for split, v in ref_map.items():
                assert (math.isnan(v) and math.isnan(got[split])) or abs(v - got[split]) <= 1e-9, split


# ----------------------------------------------------------------------------------------------- real test set

@pytest.fixture(scope="module")
def hico():
    return load_hico_instances(shared_file(HICO))


def gt_predictions(images, rng=None):
    preds = {}
    for im in images:
        dets = [{"hoi": h, "box_h": list(a), "box_o": list(b), "score": 1.0}
                for a, b, h in zip(im.boxes_h, im.boxes_o, im.hoi)]
        if rng is not None:
            rng.shuffle(dets)
            for d in dets:
                d["score"] = rng.random()
        preds[im.filename] = dets
    return preds


def test_ground_truth_as_predictions_scores_100(hico):
    images, vocab = hico
    rows = evaluate_hico(images, vocab, gt_predictions(images, random.Random(0)), "both", protocol="both")
    vals = [r.value for r in rows if r.metric in ("map", "map_continuous")]
    assert len(vals) == 12 and all(v == pytest.approx(100.0, abs=1e-9) for v in vals)


def test_jittered_copy_matches_closed_form(hico):
    """Break the first ground-truth pair of every HOI (boxes moved off the image, score 0.5 below every intact
    pair's): HOI k with n_k pairs then has precision 1 up to recall (n_k-1)/n_k and AP = #{t <= (n_k-1)/n_k}/11."""
    images, vocab = hico
    preds = gt_predictions(images)
    broken = set()
    for im in images:
        for j, h in enumerate(im.hoi):
            if h not in broken:
                broken.add(h)
                preds[im.filename][j] = {"hoi": h, "box_h": [-60, -60, -50, -50], "box_o": [-60, -60, -50, -50],
                                         "score": 0.5}
    rep = evaluate_hico_report(images, vocab, preds, "both")
    n = np.bincount([h for im in images for h in im.hoi], minlength=600)
    expected = np.array([sum(1 for t in MATLAB_THRESHOLDS if t <= (n[k] - 1) / n[k]) / 11 for k in range(600)])
    assert np.allclose(rep.ap[("default", "official")], expected, atol=1e-12)
    m = maps(rep.rows)
    assert m["full"] == pytest.approx(100 * expected.mean())
    assert m["rare"] == pytest.approx(100 * expected[vocab.rare].mean())
    assert m["non_rare"] == pytest.approx(100 * expected[vocab.non_rare].mean())
    assert maps(rep.rows, "known_object")["full"] == pytest.approx(100 * expected.mean())
    assert rep.warnings["box_outside_image"] == 600


def test_zero_shot_and_cli_on_real_files(hico, tmp_path, capsys):
    images, vocab = hico
    sub = images[:500]
    rng = random.Random(1)
    preds = gt_predictions(sub)
    for dets in preds.values():              # drop a third of the detections: recall < 1, precision 1
        dets[:] = [d for d in dets if rng.random() > 1 / 3]
    gt = tmp_path / "gt.json"
    write_hico_instances(gt, sub, vocab)
    pf = tmp_path / "pred.json"
    pf.write_text(json.dumps(preds))
    splits = load_zero_shot_splits(shared_file(GENVLKT))
    out = tmp_path / "m.json"
    code = main(["--gt", str(gt), "--pred", str(pf), "--zero-shot", f"{shared_file(GENVLKT)}:unseen_verb",
                 "--setting", "default", "--out", str(out)])
    assert code == 0
    rows = json.loads(out.read_text())
    got = {r["split"]: r["value"] for r in rows if r["metric"] == "map"}
    ref = reference_map(sub, vocab, preds, "default", "official", unseen=splits["unseen_verb"])
    for k in ("full", "rare", "non_rare", "unseen", "seen"):
        assert got[k] == pytest.approx(ref[k], abs=1e-9)
    assert "unseen_verb" in capsys.readouterr().out
    # a truncated prediction file: a clear error and exit code 2
    pf.write_text(pf.read_text()[:100])
    assert main(["--gt", str(gt), "--pred", str(pf), "--out", str(out)]) == 2
    assert "pred.json" in capsys.readouterr().err


def test_npz_predictions_give_the_same_rows(tmp_path):
    images, vocab, preds = random_world(random.Random(11))
    preds["not_in_gt"] = [{"hoi": 0, "box_h": [0, 0, 5, 5], "box_o": [0, 0, 5, 5], "score": 0.3}]
    p = tmp_path / "p.npz"
    save_predictions_npz(p, preds)
    a = evaluate_hico_report(images, vocab, preds, "both", protocol="both")
    b = evaluate_hico_report(images, vocab, load_predictions_npz(p, images, vocab), "both", protocol="both")
    assert a.rows == b.rows and a.warnings == b.warnings and a.warnings["unknown_image"] == 1


def test_npz_bad_input(tmp_path):
    images, vocab, preds = random_world(random.Random(12))
    p = tmp_path / "p.npz"
    np.savez(p, filenames=np.array(["im0"]), image=np.array([0]), hoi=np.array([0]), box_h=np.zeros((1, 4)),
             box_o=np.zeros((1, 4)), score=np.array([np.nan]))
    with pytest.raises(DataError, match=r"detection 0 \(image 'im0'\) has a non-finite"):
        load_predictions_npz(p, images, vocab)
    np.savez(p, filenames=np.array(["im0"]), image=np.array([0]))
    with pytest.raises(DataError, match="lack arrays"):
        load_predictions_npz(p, images, vocab)
    p.write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable npz"):
        load_predictions_npz(p, images, vocab)


def test_empty_predictions_and_bad_arguments():
    images = [img("a", [P1], [0]), img("b", [P2], [2])]
    rep = evaluate_hico_report(images, VOCAB, {})
    assert maps(rep.rows)["full"] == 0.0 and rep.warnings["gt_image_without_predictions"] == 2
    with pytest.raises(ValueError, match="setting must be one of"):
        evaluate_hico(images, VOCAB, {}, setting="ko")
    with pytest.raises(ValueError, match="protocol must be one of"):
        evaluate_hico(images, VOCAB, {}, protocol="voc2012")
    with pytest.raises(DataError, match="outside 0..2"):
        evaluate_hico(images, VOCAB, {}, zero_shot=[5])


def test_cli_qpic_ground_truth_needs_and_uses_vocab(hico, tmp_path, capsys):
    images, vocab = hico
    qpic = shared_file("ankesh86__InteractDiffusionSmallData/test_hico.json")
    names = {r["file_name"] for r in json.loads(qpic.read_text())}
    preds = gt_predictions([im for im in images if im.filename in names], random.Random(3))
    pf = tmp_path / "pred.json"
    pf.write_text(json.dumps(preds))
    out = tmp_path / "m.json"
    assert main(["--gt", str(qpic), "--pred", str(pf), "--out", str(out)]) == 2
    assert "--vocab" in capsys.readouterr().err
    assert main(["--gt", str(qpic), "--pred", str(pf), "--vocab", str(shared_file(HICO)),
                 "--protocol", "continuous", "--setting", "known_object", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    full = [r for r in rows if r["split"] == "full" and r["metric"].startswith("map")]
    assert [(r["setting"], r["metric"]) for r in full] == [("known_object", "map_continuous")]
    assert full[0]["value"] == pytest.approx(100.0)
    n = {r["split"]: r["value"] for r in rows if r["metric"] == "n_hoi_no_gt"}
    assert n["full"] == 600 - len({h for im in images if im.filename in names for h in im.hoi})


def test_cli_zero_shot_name_works_on_a_fresh_install(hico, tmp_path, capsys):
    """`--zero-shot rare_first` with nothing but the ground truth and predictions in the folder: the bundled splits."""
    from mipd_kit.data.hico import BUNDLED_ZERO_SHOT

    images, vocab = hico
    sub = images[:300]
    gt = tmp_path / "instances_test2015.json"
    write_hico_instances(gt, sub, vocab)
    pf = tmp_path / "pred.json"
    pf.write_text(json.dumps(gt_predictions(sub)))
    out = tmp_path / "m.json"
    assert main(["--gt", str(gt), "--pred", str(pf), "--zero-shot", "rare_first", "--out", str(out)]) == 0
    rows = [r for r in json.loads(out.read_text()) if r["metric"] == "map"]
    assert {"unseen", "seen"} <= {r["split"] for r in rows}
    unseen = load_zero_shot_splits(BUNDLED_ZERO_SHOT)["rare_first"]
    ref = reference_map(sub, vocab, gt_predictions(sub), "default", "official", unseen=unseen)
    got = {r["split"]: r["value"] for r in rows if r["setting"] == "default"}
    assert got["unseen"] == pytest.approx(ref["unseen"], abs=1e-9)
    assert "rare_first" in capsys.readouterr().out
