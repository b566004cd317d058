"""V-COCO scenario-1 role AP and agent AP (vsrl_eval.py semantics): hand-computed cases, real file, bad input."""

from __future__ import annotations

import json

import pytest

from conftest import shared_file
from mipd_kit.data.hico import load_vcoco
from mipd_kit.data.records import DataError
from mipd_kit.eval.vcoco import VCocoImageGT, evaluate_vcoco, gt_from_instances, gt_from_official, main

CLASSES = ["hold obj", "hit instr", "hit obj"]
H1, H2 = (0.0, 0.0, 9.0, 9.0), (50.0, 50.0, 59.0, 59.0)
O1, O2 = (20.0, 20.0, 29.0, 29.0), (70.0, 70.0, 79.0, 79.0)


def pred(c, bh, bo, s):
    return {"action": c, "box_h": list(bh), "box_o": None if bo is None else list(bo), "score": s}


def role_ap(rep, name):
    return rep.role_ap[name]


def test_gt_as_predictions_and_role_overlap():
    gts = [VCocoImageGT("a", [H1, H2], [False, False], {0: {0: O1, 1: O2}}, {"hold": [0, 1]})]
    rep = evaluate_vcoco(gts, CLASSES, {"a": [pred(0, H1, O1, 0.9), pred(0, H2, O2, 0.8)]})
    assert role_ap(rep, "hold obj") == pytest.approx(1.0)
    assert rep.agent_ap["hold"] == pytest.approx(1.0)
    # right person, wrong object (role IoU 0): FP for the role, TP for the agent
    rep = evaluate_vcoco(gts, CLASSES, {"a": [pred(0, H1, O2, 0.9), pred(0, H2, O2, 0.8)]})
    # FP then TP: recall 0 .5, precision 0 .5 -> all-point AP = .5 * .5
    assert role_ap(rep, "hold obj") == pytest.approx(0.25)
    assert rep.agent_ap["hold"] == pytest.approx(1.0)
    # classes without positives are NaN and left out of the mean
    assert rep.npos_role["hit obj"] == 0
    full = {r.metric: r.value for r in rep.rows if r.split == "full"}
    assert full["role_ap"] == pytest.approx(25.0)


def test_scenario_1_absent_role():
    # person H1 hits with no instrument in view: only an empty predicted role box is correct
    gts = [VCocoImageGT("a", [H1], [False], {1: {0: None}})]
    for box, expected in ((None, 1.0), ((0, 0, 0, 0), 1.0), (O1, 0.0)):
        rep = evaluate_vcoco(gts, CLASSES, {"a": [pred(1, H1, box, 0.9)]})
        assert role_ap(rep, "hit instr") == pytest.approx(expected), box
    # an empty prediction where the ground truth has a role box is wrong
    gts = [VCocoImageGT("a", [H1], [False], {1: {0: O1}})]
    assert role_ap(evaluate_vcoco(gts, CLASSES, {"a": [pred(1, H1, None, 0.9)]}), "hit instr") == 0.0


def test_duplicates_ignore_and_person_iou():
    gts = [VCocoImageGT("a", [H1, H2], [False, True], {0: {0: O1}}, {"hold": [0]})]
    preds = {"a": [pred(0, H1, O1, 0.9), pred(0, H1, O1, 0.8),     # TP, duplicate -> FP
                   pred(0, H2, O2, 0.95),                             # best match is an "ignore" person: skipped
                   pred(0, (0, 0, 9, 3), O1, 0.99)]}                  # person IoU 40/100 < .5 -> FP
    rep = evaluate_vcoco(gts, CLASSES, preds)
    # order .99 FP, .9 TP, .8 FP: recall 0 1 1, precision 0 .5 .33 -> AP .5
    assert role_ap(rep, "hold obj") == pytest.approx(0.5)
    # agent detections: max score per identical person box -> (0,0,9,3) .99 FP, H1 .9 TP (H2 skipped)
    assert rep.agent_ap["hold"] == pytest.approx(0.5)


def test_warnings_and_bad_predictions():
    gts = [VCocoImageGT("a", [H1], [False], {0: {0: O1}})]
    rep = evaluate_vcoco(gts, CLASSES, {"a": [pred(7, H1, O1, 0.9), {"class": "hold obj", "box_h": H1,
                                                                     "box_o": O1, "score": 0.5}],
                                        "b": [pred(0, H1, O1, 0.9)]})
    assert rep.warnings == {"unknown_image": 1, "unknown_image_detections": 1, "unknown_class": 1}
    assert role_ap(rep, "hold obj") == pytest.approx(1.0)
    with pytest.raises(DataError, match=r"image 'a' detection 0: needs 'action'"):
        evaluate_vcoco(gts, CLASSES, {"a": [{"box_h": H1, "score": 1.0}]}, src="p.json")
    with pytest.raises(DataError, match="finite"):
        evaluate_vcoco(gts, CLASSES, {"a": [pred(0, H1, O1, float("inf"))]})


def test_real_file_gt_as_predictions_and_cli(tmp_path, capsys):
    data = load_vcoco(shared_file("fredzzhang__vcoco/instances_vcoco_test.json"))
    gts = gt_from_instances(data)
    sub = data.images[:800]
    preds = {im.filename: [pred(c, bh, bo, 1.0) for bh, bo, c in zip(im.boxes_h, im.boxes_o, im.hoi)]
             for im in sub}
    rep = evaluate_vcoco(gts[:800], data.classes, preds)
    vals = [v for v in rep.role_ap.values() if v == v]
    assert vals and all(v == pytest.approx(1.0) for v in vals)
    assert all(v == pytest.approx(1.0) for v in rep.agent_ap.values() if v == v)
    pf = tmp_path / "p.json"
    pf.write_text(json.dumps(preds))
    out = tmp_path / "m.json"
    assert main(["--gt", str(shared_file("fredzzhang__vcoco/instances_vcoco_test.json")), "--pred", str(pf),
                 "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    full = {r["metric"]: r["value"] for r in rows if r["split"] == "full"}
    # predictions cover 800 of 4,946 images: recall of each class = its positives there / all positives
    npos_all = {k: 0 for k in data.classes}
    npos_sub = dict(npos_all)
    for i, im in enumerate(data.images):
        for c in im.hoi:
            npos_all[data.classes[c]] += 1
            if i < 800:
                npos_sub[data.classes[c]] += 1
    expected = [npos_sub[k] / npos_all[k] for k in data.classes if npos_all[k]]
    assert full["role_ap"] == pytest.approx(100 * sum(expected) / len(expected))
    assert "mean role AP" in capsys.readouterr().out


def official_fixture(tmp_path):
    """One COCO image: person A (V-COCO agent: holds and hits the ball, stands; hit has no instrument), person B
    (not in V-COCO: "ignore"), person C (in V-COCO, no action), a ball."""
    coco = {"images": [{"id": 1, "width": 100, "height": 100, "file_name": "COCO_val2014_000000000001.jpg"}],
            "categories": [{"id": 1, "name": "person"}, {"id": 37, "name": "sports ball"}],
            "annotations": [
                {"id": 11, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
                {"id": 12, "image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10], "area": 100, "iscrowd": 0},
                {"id": 13, "image_id": 1, "category_id": 1, "bbox": [0, 50, 10, 10], "area": 100, "iscrowd": 0},
                {"id": 21, "image_id": 1, "category_id": 37, "bbox": [20, 20, 10, 10], "area": 100, "iscrowd": 0}]}
    vsrl = [
        {"action_name": "hold", "role_name": ["agent", "obj"], "image_id": [1, 1], "ann_id": [11, 13],
         "label": [1, 0], "role_object_id": [11, 13, 21, 0], "include": [[], []]},
        {"action_name": "stand", "role_name": ["agent"], "image_id": [1, 1], "ann_id": [11, 13],
         "label": [1, 0], "role_object_id": [11, 13], "include": [[]]},
        {"action_name": "hit", "role_name": ["agent", "instr", "obj"], "image_id": [1, 1], "ann_id": [11, 13],
         "label": [1, 0], "role_object_id": [11, 13, 0, 0, 21, 0], "include": [[], [], []]}]
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    (tmp_path / "vsrl.json").write_text(json.dumps(vsrl))
    return tmp_path / "vsrl.json", tmp_path / "coco.json"


def test_official_annotations_and_detections(tmp_path, capsys):
    vsrl, coco = official_fixture(tmp_path)
    gts, classes, actions = gt_from_official(vsrl, coco)
    assert classes == ["hold obj", "hit instr", "hit obj"] and actions == ["hold", "stand", "hit"]
    g = gts[0]
    assert g.persons == [(0.0, 0.0, 9.0, 9.0), (50.0, 50.0, 59.0, 59.0), (0.0, 50.0, 9.0, 59.0)]   # x2 = x1 + w - 1
    assert g.ignore == [False, True, False]
    assert g.roles == {0: {0: (20.0, 20.0, 29.0, 29.0)}, 1: {0: None}, 2: {0: (20.0, 20.0, 29.0, 29.0)}}
    assert g.agents == {"hold": [0], "stand": [0], "hit": [0]}
    dets = [{"image_id": 1, "person_box": [0, 0, 9, 9], "hold_agent": 0.9, "hold_obj": [20, 20, 29, 29, 0.9],
             "stand_agent": 0.8, "hit_agent": 0.7, "hit_instr": [0, 0, 0, 0, 0.7], "hit_obj": [20, 20, 29, 29, 0.7]},
            {"image_id": 1, "person_box": [50, 50, 59, 59], "hold_agent": 0.95, "hold_obj": [20, 20, 29, 29, 0.95]},
            {"image_id": 1, "person_box": [0, 50, 9, 59], "hold_agent": 0.99, "hold_obj": [20, 20, 29, 29, 0.99],
             "stand_agent": float("nan")}]
    pf = tmp_path / "dets.json"
    pf.write_text(json.dumps(dets))
    out = tmp_path / "m.json"
    assert main(["--vsrl", str(vsrl), "--coco", str(coco), "--pred", str(pf), "--pred-format", "official",
                 "--out", str(out)]) == 0
    rows = {(r["split"], r["metric"]): r["value"] for r in json.loads(out.read_text())}
    # hold: .99 on C (in V-COCO, not holding) FP, .95 on B (ignore) skipped, .9 on A TP -> AP .5
    assert rows[("hold_obj", "role_ap")] == pytest.approx(50.0)
    assert rows[("hold", "agent_ap")] == pytest.approx(50.0)
    assert rows[("stand", "agent_ap")] == pytest.approx(100.0)       # C's NaN stand score is dropped
    assert rows[("hit_instr", "role_ap")] == pytest.approx(100.0)    # absent instrument, empty box predicted
    assert rows[("full", "role_ap")] == pytest.approx(100 * (0.5 + 1 + 1) / 3)
    assert rows[("full", "agent_ap")] == pytest.approx(100 * (0.5 + 1 + 1) / 3)
    assert main(["--vsrl", str(vsrl), "--pred", str(pf), "--out", str(out)]) == 2
    assert "go together" in capsys.readouterr().err


def test_official_annotations_bad_input(tmp_path):
    vsrl, coco = official_fixture(tmp_path)
    d = json.loads(vsrl.read_text())
    d[0]["role_object_id"] = [11, 13, 99, 0]         # role object that is not a box of the image
    vsrl.write_text(json.dumps(d))
    with pytest.raises(DataError, match="role object 99"):
        gt_from_official(vsrl, coco)
    d[0]["role_object_id"] = [11, 13, 21]
    vsrl.write_text(json.dumps(d))
    with pytest.raises(DataError, match="lengths do not match"):
        gt_from_official(vsrl, coco)
