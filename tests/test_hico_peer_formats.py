"""``mipd eval-hico --pred-format``: the same detections written in the toolkit's format, QPIC's evaluator records,
GEN-VLKT's (JSON, pickle with numpy scalars, its ``--json_file`` string dump), HOICLIP's, and the raw post-processor
outputs of GEN-VLKT / HOICLIP and QPIC (score matrices, pickled) get the same mAP, against the ground truth in both
the HICO-DET instance form and QPIC's form (100 real test images). Each image has 100 detections, so the
evaluators' top-100 selection of the raw form keeps exactly them (every query's other HOIs score -1)."""

from __future__ import annotations

import json
import pickle
import random

import numpy as np
import pytest

from conftest import shared_file
from mipd_kit.data.hico import load_hico_instances, load_hico_qpic, write_hico_instances
from mipd_kit.eval import hico as H


@pytest.fixture(scope="module")
def case(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("peer")
    vocab_file = shared_file("fredzzhang__hicodet/instances_test2015.json")
    qpic_gt = shared_file("ankesh86__InteractDiffusionSmallData/test_hico.json")
    _, vocab = load_hico_instances(vocab_file)
    images = load_hico_qpic(qpic_gt, vocab)
    inst_gt = tmp / "gt_instances.json"
    write_hico_instances(inst_gt, images, vocab)  # the same 100 images in the instance form, same order
    # HICO object -> 0-based COCO-80 index, from fredzzhang's table (independent of the reader's name matching)
    to_coco = {h: int(k) - 1 for k, h in json.loads(shared_file("fredzzhang__hicodet/coco80tohico80.json")
                                                    .read_text()).items()}
    rng = random.Random(0)
    own, qpic, gen, raw_gen, raw_qpic = {}, [], [], [], []
    for im in images:
        dets = []
        for bh, bo, hoi in zip(im.boxes_h, im.boxes_o, im.hoi):
            if rng.random() < 0.8:  # most ground-truth pairs found, boxes jittered
                j = lambda b: [v + rng.uniform(-6, 6) for v in b]  # noqa: E731
                dets.append({"hoi": hoi, "box_h": j(bh), "box_o": j(bo), "score": rng.random()})
        dets = dets[:100]
        for _ in range(100 - len(dets)):  # false positives of random HOIs, 100 detections per image (the evaluators'
            # top 100: the raw outputs below then keep exactly these)
            x, y = rng.uniform(0, 300), rng.uniform(0, 300)
            dets.append({"hoi": rng.randrange(600), "box_h": [x, y, x + 50, y + 80],
                         "box_o": [y, x, y + 40, x + 30], "score": rng.random()})
        own[im.filename] = dets
        boxes = [{"bbox": d["box_h"], "category_id": 0} for d in dets] + \
            [{"bbox": d["box_o"], "category_id": to_coco[vocab.correspondence[d["hoi"]][1]]} for d in dets]
        n = len(dets)
        qpic.append({"predictions": boxes, "hoi_prediction": [
            {"subject_id": i, "object_id": n + i, "category_id": vocab.correspondence[d["hoi"]][2],
             "score": d["score"]} for i, d in enumerate(dets)]})
        gen.append({"filename": im.filename, "predictions": [{"bbox": b["bbox"]} for b in boxes], "hoi_prediction": [
            {"subject_id": i, "object_id": n + i, "category_id": d["hoi"], "score": d["score"]}
            for i, d in enumerate(dets)]})
        # raw post-processor outputs, one query per detection: its score at its HOI (verb), -1 elsewhere
        hs, vs, os_ = np.full((n, 600), -1.0), np.full((n, 117), -1.0), np.zeros((n, 80))
        for q, d in enumerate(dets):  # GEN-VLKT's score: hoi score + (object score of the HOI's object)^2
            hs[q, d["hoi"]] = d["score"] - 0.25
            os_[q, to_coco[vocab.correspondence[d["hoi"]][1]]] = 0.5
            vs[q, vocab.correspondence[d["hoi"]][2]] = d["score"]
        ids = np.arange(2 * n)
        labels, xyxy = np.array([b["category_id"] for b in boxes]), np.array([b["bbox"] for b in boxes])
        raw_gen.append({"labels": labels, "boxes": xyxy, "hoi_scores": hs, "obj_scores": os_, "sub_ids": ids[:n],
                        "obj_ids": ids[n:]})
        raw_qpic.append({"labels": labels, "boxes": xyxy, "verb_scores": vs, "sub_ids": ids[:n], "obj_ids": ids[n:]})
    files = {"own": tmp / "own.json", "qpic": tmp / "qpic.json", "gen-vlkt": tmp / "gen.pkl",
             "hoiclip": tmp / "hoiclip.json", "gen-vlkt-dump": tmp / "results.json",
             "gen-vlkt-raw": tmp / "preds.pkl", "qpic-raw": tmp / "qpic_preds.pkl"}
    for key, recs in (("gen-vlkt-raw", raw_gen), ("qpic-raw", raw_qpic)):
        with open(files[key], "wb") as f:
            pickle.dump(recs, f)
    files["own"].write_text(json.dumps(own))
    files["qpic"].write_text(json.dumps(qpic))
    as_numpy = [{"filename": r["filename"],
                 "predictions": [{"bbox": list(np.asarray(b["bbox"], np.float32))} for b in r["predictions"]],
                 "hoi_prediction": [{k: (np.int64(v) if k != "score" else np.float32(v)) for k, v in h.items()}
                                    for h in r["hoi_prediction"]]} for r in gen]
    with open(files["gen-vlkt"], "wb") as f:
        pickle.dump(as_numpy, f)
    files["hoiclip"].write_text(json.dumps(gen))
    # GEN-VLKT's --json_file: json.dumps(str({'preds': ..., 'gts': ...})) with numpy scalars in their repr
    files["gen-vlkt-dump"].write_text(json.dumps(str({"preds": as_numpy, "gts": []})))
    return {"files": files, "inst_gt": inst_gt, "qpic_gt": qpic_gt, "vocab": vocab_file, "tmp": tmp}


def score(case: dict, fmt: str, file_key: str, gt: str, name: str, capsys) -> dict:
    out = case["tmp"] / f"{name}.json"
    args = ["--pred", str(case["files"][file_key]), "--pred-format", fmt, "--out", str(out), "--overwrite",
            "--setting", "default"]
    args += ["--gt", str(case["inst_gt"])] if gt == "instances" else ["--gt", str(case["qpic_gt"]),
                                                                       "--vocab", str(case["vocab"])]
    assert H.main(args) == 0, capsys.readouterr().err
    capsys.readouterr()
    return {(r["split"], r["setting"]): r["value"] for r in json.loads(out.read_text()) if r["metric"] == "map"}


@pytest.mark.parametrize("gt", ["instances", "qpic"])
def test_same_detections_same_map_in_every_format(case: dict, gt: str, capsys) -> None:
    ref = score(case, "own", "own", gt, f"own-{gt}", capsys)
    assert ref[("full", "default")] > 0
    for fmt, key in (("qpic", "qpic"), ("gen-vlkt", "gen-vlkt"), ("gen-vlkt", "gen-vlkt-dump"),
                     ("hoiclip", "hoiclip"), ("hoiclip", "gen-vlkt-raw"), ("qpic", "qpic-raw")):
        got = score(case, fmt, key, gt, f"{key}-{gt}", capsys)
        assert got.keys() == ref.keys()
        for k in ref:  # float32 boxes of the pickle: IoU decisions equal here, values to a stated tolerance
            assert got[k] == pytest.approx(ref[k], abs=1e-6), (fmt, key, k)


def test_a_malformed_record_is_named(case: dict, capsys) -> None:
    bad = case["tmp"] / "bad.json"
    recs = json.loads(case["files"]["hoiclip"].read_text())
    recs[3]["hoi_prediction"][0]["object_id"] = 10_000
    bad.write_text(json.dumps(recs))
    rc = H.main(["--gt", str(case["inst_gt"]), "--pred", str(bad), "--pred-format", "hoiclip",
                 "--out", str(case["tmp"] / "x.json"), "--overwrite"])
    err = capsys.readouterr().err
    assert rc == 2 and "record 3" in err and recs[3]["filename"] in err and "hoi_prediction[0]" in err


def test_records_without_names_must_match_the_ground_truth_count(case: dict, capsys) -> None:
    short = case["tmp"] / "short.json"
    short.write_text(json.dumps(json.loads(case["files"]["qpic"].read_text())[:-1]))
    rc = H.main(["--gt", str(case["inst_gt"]), "--pred", str(short), "--pred-format", "qpic",
                 "--out", str(case["tmp"] / "y.json"), "--overwrite"])
    assert rc == 2 and "99 records without file names, but the ground truth has 100" in capsys.readouterr().err
