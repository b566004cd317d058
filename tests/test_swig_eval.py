"""SWiG / Ov-GSR metrics: hand-computed tiny cases for every metric, setting and mean, GT-as-prediction,
warnings for bad predictions, and the CLI."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from mipd_kit.data.records import DataError, Situation
from mipd_kit.data.splits import OvSplit
from mipd_kit.data.swig import load_situations, write_situations
from mipd_kit.eval.swig import (box_iou, evaluate_swig, evaluate_swig_report, frame_from_situation,
                                gt_as_predictions, main)
from mipd_kit.metrics import read_rows
from tests.conftest import shared_file


def S(image, verb, boxes, frames, w=100, h=100):
    return Situation(image=image, verb=verb, width=w, height=h, boxes=boxes, frames=tuple(frames))


def E(noun, box=None):
    return {"noun": noun, "box": box}


@pytest.fixture()
def tiny_gt():
    a = S("a.jpg", "riding", {"agent": (0, 0, 10, 10), "vehicle": (0, 0, 10, 10), "place": None},
          [{"agent": "man", "vehicle": "horse", "place": ""},
           {"agent": "person", "vehicle": "horse", "place": "field"},
           {"agent": "man", "vehicle": "pony", "place": ""}])
    b = S("b.jpg", "eating", {"agent": (0, 0, 20, 20), "food": None},
          [{"agent": "woman", "food": "apple"}, {"agent": "woman", "food": "apple"}, {"agent": "woman", "food": ""}])
    c = S("c.jpg", "riding", {"agent": None, "vehicle": (10, 10, 20, 20), "place": None},
          [{"agent": "man", "vehicle": "bike", "place": "road"}] * 3)
    return {s.image: s for s in (a, b, c)}


@pytest.fixture()
def tiny_pred():
    a_frame = {"agent": E("person", [0, 0, 10, 5]),  # IoU exactly 0.5 -> grounded correct
               "vehicle": E("pony", None),  # noun ok (annotator 2), gt box present, predicted absent
               "place": E("", None)}  # empty noun equals annotator 0/2; both boxes absent
    return {
        "a.jpg": {"verbs": [{"verb": "riding", "score": 0.9, "frame": a_frame},
                            {"verb": "eating", "score": 0.1, "frame": {}}],
                  "gt_verb_frame": a_frame},
        "b.jpg": {"verbs": [{"verb": "drinking", "score": 0.6, "frame": {"agent": E("woman"), "liquid": E("water")}},
                            {"verb": "eating", "score": 0.4, "frame": {"agent": E("woman", [0, 0, 20, 20])}}],
                  # food missing above; gt-verb frame: agent wrong, food "" correct noun but box present vs absent
                  "gt_verb_frame": {"agent": E("man", [0, 0, 20, 20]), "food": E("", [1, 1, 2, 2])}},
        "zzz.jpg": {"verbs": [{"verb": "riding", "score": 1.0, "frame": {}}]},  # unknown image
        # c.jpg has no prediction -> all wrong
    }


def table(rows, split="all"):
    return {(r.setting, r.metric, r.mean): r.value for r in rows if r.split == split}


def test_hand_computed_every_metric_setting_and_mean(tiny_gt, tiny_pred):
    rep = evaluate_swig_report(tiny_gt, tiny_pred, model="m", seed=3)
    t = table(rep.rows)
    third, sixth = 100 / 3, 100 / 6
    expected = {
        # per image (a, b, c): top-1 only a's verb is right
        ("top1", "verb", "image"): third, ("top1", "value", "image"): third, ("top1", "value_all", "image"): third,
        ("top1", "grnd_value", "image"): (2 / 3) / 3 * 100, ("top1", "grnd_value_all", "image"): 0.0,
        # top-5: b's gt verb is 2nd; b scores its "eating" frame (agent ok, food missing)
        ("top5", "verb", "image"): 2 * third, ("top5", "value", "image"): (1 + 0.5) / 3 * 100,
        ("top5", "value_all", "image"): third, ("top5", "grnd_value", "image"): (2 / 3 + 0.5) / 3 * 100,
        ("top5", "grnd_value_all", "image"): 0.0,
        ("gt_verb", "value", "image"): 50.0, ("gt_verb", "value_all", "image"): third,
        ("gt_verb", "grnd_value", "image"): (2 / 3) / 3 * 100, ("gt_verb", "grnd_value_all", "image"): 0.0,
        # per verb: riding = mean(a, c), eating = b
        ("top1", "verb", "verb"): 25.0, ("top1", "value", "verb"): 25.0, ("top1", "value_all", "verb"): 25.0,
        ("top1", "grnd_value", "verb"): sixth, ("top1", "grnd_value_all", "verb"): 0.0,
        ("top5", "verb", "verb"): 75.0, ("top5", "value", "verb"): 50.0, ("top5", "value_all", "verb"): 25.0,
        ("top5", "grnd_value", "verb"): (1 / 3 + 1 / 2) / 2 * 100, ("top5", "grnd_value_all", "verb"): 0.0,
        ("gt_verb", "value", "verb"): 50.0, ("gt_verb", "value_all", "verb"): 25.0,
        ("gt_verb", "grnd_value", "verb"): sixth, ("gt_verb", "grnd_value_all", "verb"): 0.0,
    }
    assert set(t) == set(expected)
    for k, v in expected.items():
        assert t[k] == pytest.approx(v), k
    assert all(r.task == "gsr" and r.model == "m" and r.seed == 3 for r in rep.rows)
    assert rep.warnings == {"pred_unknown_image": 1, "gt_image_without_prediction": 1, "missing_role": 1}
    assert rep.examples["pred_unknown_image"] == ["zzz.jpg"]
    assert rep.examples["gt_image_without_prediction"] == ["c.jpg"]
    assert rep.examples["missing_role"] == ["b.jpg/food"]
    assert rep.n_gt == 3 and rep.n_pred == 3


def test_split_breakdown(tiny_gt, tiny_pred):
    split = OvSplit.from_lists(seen=["riding"], rare=[], unseen=["eating"], unseen_novel=["eating"])
    rep = evaluate_swig_report(tiny_gt, tiny_pred, split)
    assert {r.split for r in rep.rows} == {"all", "seen", "unseen", "unseen_novel"}
    seen, unseen = table(rep.rows, "seen"), table(rep.rows, "unseen")
    assert seen[("top5", "value", "image")] == pytest.approx(50.0)  # a: 1, c: 0
    assert seen[("top5", "grnd_value", "image")] == pytest.approx(100 / 3)
    assert unseen[("top5", "value", "image")] == pytest.approx(50.0)  # b: 1/2
    assert unseen[("top1", "verb", "image")] == 0.0
    assert table(rep.rows, "unseen_novel") == unseen
    assert any("'rare'" in n for n in rep.notes)


def test_top5_scores_the_frame_predicted_for_the_gt_verb():
    gt = {"x.jpg": S("x.jpg", "riding", {"agent": (0, 0, 10, 10)}, [{"agent": "man"}] * 3)}
    pred = {"x.jpg": {"verbs": [{"verb": "driving", "score": 0.9, "frame": {"agent": E("man", [0, 0, 10, 10])}},
                                {"verb": "riding", "score": 0.5, "frame": {"agent": E("dog", [0, 0, 10, 10])}}]}}
    t = table(evaluate_swig(gt, pred))
    assert t[("top1", "verb", "image")] == 0 and t[("top5", "verb", "image")] == 100
    assert t[("top5", "value", "image")] == 0 and t[("top1", "value", "image")] == 0
    assert ("gt_verb", "value", "image") not in t  # no gt_verb_frame anywhere -> setting not reported


def test_only_first_five_verbs_are_read():
    gt = {"x.jpg": S("x.jpg", "riding", {"agent": None}, [{"agent": "man"}] * 3)}
    verbs = [{"verb": f"v{i}", "score": 1 - i / 10, "frame": {}} for i in range(5)]
    verbs.append({"verb": "riding", "score": 0.0, "frame": {"agent": E("man")}})
    rep = evaluate_swig_report(gt, {"x.jpg": {"verbs": verbs}})
    assert table(rep.rows)[("top5", "verb", "image")] == 0.0
    assert rep.warnings == {"more_than_5_verbs": 1}


def test_empty_noun_is_a_value_and_absent_box_marker():
    gt = {"x.jpg": S("x.jpg", "v", {"a": None, "b": None}, [{"a": "", "b": "n1"}, {"a": "", "b": "n2"}, {"a": "", "b": "n2"}])}
    # a: "" correct, box [-1]*4 counts as absent; b: "" is wrong (no annotator left it empty)
    pred = {"x.jpg": {"verbs": [{"verb": "v", "score": 1, "frame": {"a": E("", [-1, -1, -1, -1]), "b": E("")}}]}}
    t = table(evaluate_swig(gt, pred))
    assert t[("top1", "value", "image")] == 50.0
    assert t[("top1", "grnd_value", "image")] == 50.0
    assert t[("top1", "value_all", "image")] == 0.0


@pytest.mark.parametrize("pbox, ok", [
    ([0, 0, 10, 5], True),  # IoU exactly 0.5
    ([0, 0, 10, 4.99], False),  # just below
    ([5, 0, 15, 10], False),  # IoU 1/3
    ([0, 0, 10, 10], True),
    (None, False),  # gt box present, predicted absent
    ([-1, -1, -1, -1], False),
])
def test_grounding_iou_threshold(pbox, ok):
    gt = {"x.jpg": S("x.jpg", "v", {"a": (0, 0, 10, 10)}, [{"a": "n"}] * 3)}
    pred = {"x.jpg": {"verbs": [{"verb": "v", "score": 1, "frame": {"a": E("n", pbox)}}]}}
    t = table(evaluate_swig(gt, pred))
    assert t[("top1", "grnd_value", "image")] == (100.0 if ok else 0.0)
    assert t[("top1", "grnd_value_all", "image")] == (100.0 if ok else 0.0)
    assert t[("top1", "value", "image")] == 100.0


def test_grounded_needs_noun_and_box_absent_vs_present():
    gt = {"x.jpg": S("x.jpg", "v", {"a": None, "b": (0, 0, 4, 4)}, [{"a": "n", "b": "m"}] * 3)}
    # a: right noun, gt absent but predicted box present -> grounded wrong; b: right box, wrong noun
    pred = {"x.jpg": {"verbs": [{"verb": "v", "score": 1, "frame": {"a": E("n", [0, 0, 1, 1]), "b": E("x", [0, 0, 4, 4])}}]}}
    t = table(evaluate_swig(gt, pred))
    assert t[("top1", "value", "image")] == 50.0 and t[("top1", "grnd_value", "image")] == 0.0


def test_box_iou_continuous_no_plus_one():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 0, 0]], dtype=float)
    b = np.array([[0, 0, 10, 5], [10, 10, 20, 20], [0, 0, 0, 0]], dtype=float)
    assert box_iou(a, b).tolist() == [0.5, 0.0, 0.0]


def test_jittered_boxes_give_hand_computed_grounding():
    """Shift every gt box right by half its width: IoU 1/3 < 0.5, so grounded value drops to the share of
    roles without boxes, while value stays 100."""
    gt = {f"i{k}.jpg": S(f"i{k}.jpg", "v", {"a": (0, 0, 10, 10), "b": None, "c": (20, 20, 40, 30)},
                         [{"a": "x", "b": "y", "c": "z"}] * 3) for k in range(4)}
    pred = gt_as_predictions(gt)
    for p in pred.values():
        for fr in (p["verbs"][0]["frame"], p["gt_verb_frame"]):
            for e in fr.values():
                if e["box"] is not None:
                    x1, y1, x2, y2 = e["box"]
                    e["box"] = [x1 + (x2 - x1) / 2, y1, x2 + (x2 - x1) / 2, y2]
    t = table(evaluate_swig(gt, pred))
    assert t[("top1", "value", "image")] == 100.0
    assert t[("top1", "grnd_value", "image")] == pytest.approx(100 / 3)
    assert t[("gt_verb", "grnd_value_all", "verb")] == 0.0


def test_gt_scored_as_prediction_is_100_everywhere(tiny_gt):
    for ann in range(3):
        rep = evaluate_swig_report(tiny_gt, gt_as_predictions(tiny_gt, annotator=ann),
                                   OvSplit.from_lists(["riding"], ["eating"], []))
        assert rep.rows and all(r.value == 100.0 for r in rep.rows)
        assert {r.metric for r in rep.rows} == {"verb", "value", "value_all", "grnd_value", "grnd_value_all"}
        assert {r.setting for r in rep.rows} == {"top1", "top5", "gt_verb"}
        assert {r.mean for r in rep.rows} == {"image", "verb"}
        assert rep.warnings == {}


def test_gt_as_prediction_on_real_imsitu_debug(shared_data):
    gt = load_situations(shared_file("LUNAProject22__CLIPSitu/imSitu/debug.json"))
    rep = evaluate_swig_report(gt, gt_as_predictions(gt))
    assert len(rep.rows) == 2 * (3 + 3 + 2) and all(r.value == 100.0 for r in rep.rows)
    assert any("grounded metrics not reported" in n for n in rep.notes)
    # a wrong-verb copy: verb 0, values 0 in top-k; gt-verb frame still right
    wrong = {k: {"verbs": [{"verb": "nothing", "score": 1.0, "frame": {}}],
                 "gt_verb_frame": v["gt_verb_frame"]} for k, v in gt_as_predictions(gt).items()}
    t = table(evaluate_swig(gt, wrong))
    assert t[("top5", "verb", "verb")] == 0.0 and t[("top5", "value_all", "image")] == 0.0
    assert t[("gt_verb", "value_all", "image")] == 100.0


def test_swig_file_roundtrip_then_gt_as_prediction(tmp_path, tiny_gt):
    p = tmp_path / "dev.json"
    write_situations(p, tiny_gt)
    gt = load_situations(p)
    assert gt == tiny_gt
    assert frame_from_situation(gt["c.jpg"]) == {"agent": E("man"), "vehicle": E("bike", [10, 10, 20, 20]),
                                                 "place": E("road")}
    assert all(r.value == 100.0 for r in evaluate_swig(gt, gt_as_predictions(gt)))


def test_missing_gt_verb_frame_and_other_warnings(tiny_gt):
    pred = gt_as_predictions(tiny_gt)
    del pred["c.jpg"]["gt_verb_frame"]
    pred["a.jpg"]["verbs"] = [{"verb": "x", "score": 2.0, "frame": {}}, {"verb": "x", "score": 2.0, "frame": {}},
                              *pred["a.jpg"]["verbs"]]
    pred["b.jpg"]["verbs"][0]["frame"]["bogus"] = E("n")
    rep = evaluate_swig_report(tiny_gt, pred)
    assert rep.warnings == {"missing_gt_verb_frame": 1, "repeated_verb": 1, "extra_role": 1}
    t = table(rep.rows)
    assert t[("gt_verb", "value", "image")] == pytest.approx(200 / 3)
    assert t[("top5", "value", "image")] == 100.0 and t[("top1", "verb", "image")] == pytest.approx(200 / 3)


def test_unsorted_scores_and_unknown_nouns_are_counted(tiny_gt):
    from mipd_kit.data.records import FrameSpace, NounDef

    pred = gt_as_predictions(tiny_gt)
    pred["a.jpg"]["verbs"].append({"verb": "eating", "score": 5.0, "frame": {}})
    nouns = {n: NounDef(n, (n,)) for n in ["man", "person", "horse", "pony", "field", "woman", "apple"]}
    space = FrameSpace(verbs={}, nouns=nouns)
    rep = evaluate_swig_report(tiny_gt, pred, space=space)
    assert rep.warnings["unsorted_scores"] == 1
    assert rep.warnings["unknown_pred_noun"] == 4  # "bike" and "road" of c, in the ranked and gt-verb frames


def test_predicted_verb_not_in_split_is_counted(tiny_gt):
    rep = evaluate_swig_report(tiny_gt, gt_as_predictions(tiny_gt), OvSplit.from_lists(["riding"], [], []))
    assert rep.warnings == {"gt_verb_not_in_split": 1}
    assert {r.split for r in rep.rows} == {"all", "seen"}


@pytest.mark.parametrize("mutate, msg", [
    (lambda p: p["a.jpg"]["verbs"][0]["frame"]["agent"].update(box=[10, 0, 0, 10]), "x2 < x1"),
    (lambda p: p["a.jpg"]["verbs"][0]["frame"]["agent"].update(box=[0, 0, 10]), "box must be"),
    (lambda p: p["a.jpg"]["verbs"][0]["frame"]["agent"].update(box="0 0 1 1"), "box must be"),
    (lambda p: p["a.jpg"]["verbs"][0]["frame"]["agent"].update(noun=7), "noun must be a string"),
    (lambda p: p["a.jpg"]["verbs"][0]["frame"].update(agent="man"), "expected {'noun'"),
    (lambda p: p["a.jpg"].update(verbs={"riding": 1}), "'verbs' must be a list"),
    (lambda p: p["a.jpg"]["verbs"].insert(0, {"score": 1}), "string 'verb'"),
    (lambda p: p.update({"a.jpg": ["riding"]}), "must be an object"),
    (lambda p: p["a.jpg"].update(gt_verb_frame=[1]), "a frame must be an object"),
])
def test_bad_predictions_raise_naming_file_and_image(tiny_gt, mutate, msg):
    pred = copy.deepcopy(gt_as_predictions(tiny_gt))
    mutate(pred)
    with pytest.raises(DataError, match=msg) as ei:
        evaluate_swig_report(tiny_gt, pred, pred_source="preds.json")
    assert "preds.json" in str(ei.value)
    assert "a.jpg" in str(ei.value) or "non-finite" in str(ei.value)


def test_empty_ground_truth_gives_no_rows():
    rep = evaluate_swig_report({}, {"x.jpg": {"verbs": []}})
    assert rep.rows == [] and rep.notes


def test_cli_writes_rows_and_prints_table(tmp_path, tiny_gt, tiny_pred, capsys):
    gt_p, pred_p, out, repo = tmp_path / "gt.json", tmp_path / "pred.json", tmp_path / "m.json", tmp_path / "r.json"
    write_situations(gt_p, tiny_gt)
    pred_p.write_text(json.dumps(tiny_pred))
    split_p = tmp_path / "ov.json"
    OvSplit.from_lists(["riding"], [], ["eating"]).save(split_p)
    code = main(["--gt", str(gt_p), "--pred", str(pred_p), "--split", str(split_p), "--model", "mipd",
                 "--seed", "1", "--out", str(out), "--report", str(repo)])
    assert code == 0
    rows = read_rows(out)
    assert {r.split for r in rows} == {"all", "seen", "unseen"} and all(r.model == "mipd" for r in rows)
    assert {(r.setting, r.metric, r.mean): r.value for r in rows if r.split == "all"} == pytest.approx(
        table(evaluate_swig(tiny_gt, tiny_pred), "all"))
    cap = capsys.readouterr()
    assert "grnd_value_all" in cap.out and "gt_image_without_prediction" not in cap.out
    assert "ground-truth images without a prediction" in cap.err
    assert json.loads(repo.read_text())["warnings"]["pred_unknown_image"] == 1


def test_cli_bad_prediction_file(tmp_path, tiny_gt, capsys):
    gt_p, pred_p = tmp_path / "gt.json", tmp_path / "pred.json"
    write_situations(gt_p, tiny_gt)
    pred_p.write_text('{"a.jpg": {"verbs": [')
    assert main(["--gt", str(gt_p), "--pred", str(pred_p), "--out", str(tmp_path / "m.json")]) == 2
    err = capsys.readouterr().err
    assert "pred.json" in err and "truncated" in err
    assert not (tmp_path / "m.json").exists()


def test_values_are_finite_percentages(tiny_gt, tiny_pred):
    rows = evaluate_swig(tiny_gt, tiny_pred, OvSplit.from_lists(["riding"], [], ["eating"]))
    assert all(math.isfinite(r.value) and 0.0 <= r.value <= 100.0 for r in rows)


# ------------------------------------------------------------------ parity with a plain-Python reference


def _reference_rows(gt, preds, split):
    """Straightforward per-image loops over the protocol in the module docstring (test reference)."""

    def iou(a, b):
        iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = iw * ih
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
        return inter / union if union > 0 else 0.0

    def absent(b):
        return b is None or list(b) == [-1, -1, -1, -1]

    def score(s, frame):
        ok = gok = 0
        for r in s.frames[0]:
            e = (frame or {}).get(r)
            if e is None:
                continue
            if any(fr[r] == e["noun"] for fr in s.frames):
                ok += 1
                g, p = s.boxes.get(r), e.get("box")
                if (g is None and absent(p)) or (g is not None and not absent(p) and iou(g, p) >= 0.5):
                    gok += 1
        n = len(s.frames[0])
        return {"value": ok / n, "value_all": float(ok == n), "grnd_value": gok / n, "grnd_value_all": float(gok == n)}

    per = {}
    for img, s in gt.items():
        p = preds.get(img, {"verbs": []})
        ranked = [v["verb"] for v in p["verbs"][:5]]
        k = ranked.index(s.verb) if s.verb in ranked else 5
        sc = score(s, p["verbs"][k]["frame"] if k < 5 else None)
        d = {}
        for setting, hit in (("top1", k == 0), ("top5", k < 5)):
            d[(setting, "verb")] = float(hit)
            for m, v in sc.items():
                d[(setting, m)] = v * hit
        for m, v in score(s, p.get("gt_verb_frame")).items():
            d[("gt_verb", m)] = v
        per[img] = d
    out = {}
    for name, verbs in [("all", None), *split.lists().items()]:
        imgs = [i for i in gt if verbs is None or gt[i].verb in verbs]
        if not imgs:
            continue
        for key in per[imgs[0]]:
            out[(name, *key, "image")] = 100 * sum(per[i][key] for i in imgs) / len(imgs)
            by_verb = {}
            for i in imgs:
                by_verb.setdefault(gt[i].verb, []).append(per[i][key])
            out[(name, *key, "verb")] = 100 * sum(sum(v) / len(v) for v in by_verb.values()) / len(by_verb)
    return out


def test_parity_with_plain_python_reference():
    import random

    rng = random.Random(0)
    verbs = {f"v{i}": [f"r{j}" for j in rng.sample(range(8), rng.randint(1, 4))] for i in range(12)}
    nouns = ["", "a", "b", "c", "d"]
    gt, preds = {}, {}
    for k in range(300):
        v = rng.choice(list(verbs))
        boxes = {r: (None if rng.random() < 0.4 else (rng.randint(0, 5), rng.randint(0, 5), rng.randint(6, 12),
                                                      rng.randint(6, 12))) for r in verbs[v]}
        frames = [{r: rng.choice(nouns) for r in verbs[v]} for _ in range(3)]
        gt[f"{k}.jpg"] = S(f"{k}.jpg", v, boxes, frames, w=20, h=20)

        def fr(vb):
            return {r: E(rng.choice(nouns), None if rng.random() < 0.4 else
                         [rng.randint(0, 5), rng.randint(0, 5), rng.randint(6, 12), rng.randint(6, 12)])
                    for r in verbs[vb] if rng.random() < 0.95}

        ranking = rng.sample(list(verbs), 5)
        preds[f"{k}.jpg"] = {"verbs": [{"verb": vb, "score": 1 - j / 10, "frame": fr(vb)} for j, vb in enumerate(ranking)],
                             "gt_verb_frame": fr(v)}
    split = OvSplit.from_lists(["v0", "v1", "v2", "v3", "v4", "v5"], ["v6", "v7"], ["v8", "v9", "v10", "v11"],
                               unseen_compositional=["v8", "v9"], unseen_novel=["v10", "v11"])
    got = {(r.split, r.setting, r.metric, r.mean): r.value for r in evaluate_swig(gt, preds, split)}
    ref = _reference_rows(gt, preds, split)
    assert set(got) == set(ref)
    for k in ref:
        assert got[k] == pytest.approx(ref[k], abs=1e-9), k
    assert 0 < got[("all", "top5", "grnd_value", "image")] < got[("all", "top5", "value", "image")] < 100


def test_mipd_dispatcher_runs_eval_swig(tmp_path, tiny_gt, capsys):
    from mipd_kit.app.cli import main as mipd

    gt_p, pred_p, out = tmp_path / "gt.json", tmp_path / "pred.json", tmp_path / "metrics.json"
    write_situations(gt_p, tiny_gt)
    pred_p.write_text(json.dumps(gt_as_predictions(tiny_gt)))
    assert mipd(["eval-swig", "--gt", str(gt_p), "--pred", str(pred_p), "--out", str(out)]) == 0
    rows = read_rows(out)
    assert len(rows) == 2 * (5 + 5 + 4) and all(r.value == 100.0 and r.model == "model" for r in rows)
    # --merge keeps rows of another model; a model predicting one image of three scores on all three
    one = dict(list(gt_as_predictions(tiny_gt).items())[:1])
    pred_p.write_text(json.dumps(one))
    assert mipd(["eval-swig", "--gt", str(gt_p), "--pred", str(pred_p), "--model", "one", "--merge",
                 "--out", str(out)]) == 0
    rows = read_rows(out)
    assert {r.model for r in rows} == {"model", "one"}
    assert all(r.value < 100.0 for r in rows if r.model == "one" and r.mean == "image")
    assert "2 ground-truth images without a prediction" in capsys.readouterr().err
    # predictions matching no ground-truth image score nothing: refused, naming the counts, --out unchanged
    before = out.read_text()
    pred_p.write_text(json.dumps({}))
    assert mipd(["eval-swig", "--gt", str(gt_p), "--pred", str(pred_p), "--model", "empty", "--merge",
                 "--out", str(out)]) == 2
    assert "none of its 0 predicted image(s) is among the 3 image(s)" in capsys.readouterr().err
    assert out.read_text() == before
