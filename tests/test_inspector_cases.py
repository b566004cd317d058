"""Pure data preparation of the inspector: error types, confidence, loss proxy, filters (hand-made cases)."""

from __future__ import annotations

import math

import pytest

from mipd_kit.data.records import DataError, Situation
from mipd_kit.data.splits import OvSplit
from mipd_kit.viz.cases import ERROR_TYPES, build_cases, filter_cases, iou, split_tags, summarize

AG, VE = (10.0, 10.0, 50.0, 90.0), (40.0, 50.0, 100.0, 100.0)
SPLIT = OvSplit.from_lists(["riding"], ["throwing"], ["kicking", "lifting"], unseen_compositional=["kicking"],
                           unseen_novel=["lifting"])


def _sit(img: str, verb: str = "riding") -> Situation:
    frames = tuple({"agent": a, "vehicle": "horse", "place": "field"} for a in ("man", "person", "man"))
    return Situation(img, verb, 128, 128, {"agent": AG, "vehicle": VE, "place": None}, frames)


def _frame(agent="person", agent_box=AG, vehicle="horse", vehicle_box=VE, place="field", place_box=None):
    f = {"agent": {"noun": agent, "box": None if agent_box is None else list(agent_box)},
         "vehicle": {"noun": vehicle, "box": None if vehicle_box is None else list(vehicle_box)},
         "place": {"noun": place, "box": place_box}}
    return f


def _pred(verb: str, frame: dict, score: float = 0.6, others=(("jumping", 0.2),), **extra) -> dict:
    return {"verbs": [{"verb": verb, "score": score, "frame": frame}]
            + [{"verb": v, "score": s, "frame": {}} for v, s in others], **extra}


@pytest.fixture()
def cases():
    gt = {f"i{k}.png": _sit(f"i{k}.png") for k in range(8)}
    gt["u.png"] = _sit("u.png", "lifting")
    preds = {
        "i0.png": _pred("riding", _frame(), 0.7),                                   # correct
        "i1.png": _pred("riding", _frame(vehicle="bicycle"), 0.5),                  # noun wrong
        "i2.png": _pred("riding", _frame(vehicle_box=None), 0.4),                   # box missing
        "i3.png": _pred("riding", _frame(agent_box=(60, 60, 120, 120)), 0.3),       # box wrong
        "i4.png": _pred("jumping", {"agent": {"noun": "man", "box": list(AG)}}, 0.9,
                        others=(("riding", 0.05),), gt_verb_frame=_frame()),         # verb wrong, gt frame right
        "i5.png": _pred("riding", {k: v for k, v in _frame().items() if k != "place"}, 0.55),  # role missing
        "i6.png": _pred("riding", _frame(place_box=[0, 0, 128, 128]), 0.45),        # box for a role without one
        # i7: no prediction at all
        "u.png": _pred("riding", _frame(), 2.0, others=(("lifting", 1.0), ("jumping", 0.0))),  # logits
        "extra.png": _pred("riding", _frame()),                                     # not in gt: ignored
    }
    return {c.image: c for c in build_cases(gt, preds, SPLIT)}


def test_error_types(cases) -> None:
    assert cases["i0.png"].error == "correct" and cases["i0.png"].errors == ("correct",)
    assert cases["i1.png"].error == "noun_wrong"
    assert cases["i2.png"].error == "box_missing"
    assert cases["i3.png"].error == "box_wrong"
    assert cases["i4.png"].errors == ("verb_wrong",) and cases["i4.png"].frame_source == "gt_verb_frame"
    assert cases["i5.png"].error == "noun_wrong"  # a role missing from the frame is wrong
    assert cases["i6.png"].error == "box_wrong"
    assert cases["i7.png"].error == "verb_wrong" and cases["i7.png"].pred_verb is None
    assert cases["i7.png"].frame_source is None and cases["i7.png"].top5 == ()
    assert "extra.png" not in cases and len(cases) == 9


def test_role_checks(cases) -> None:
    roles = {r.role: r for r in cases["i1.png"].roles}
    assert roles["agent"].gt_nouns == ("man", "person") and roles["agent"].noun_ok  # any annotator counts
    assert not roles["vehicle"].noun_ok and roles["vehicle"].box_ok and roles["vehicle"].iou == 1.0
    assert roles["place"].box_ok and roles["place"].gt_box is None  # both absent = correct grounding
    r3 = {r.role: r for r in cases["i3.png"].roles}["agent"]
    assert not r3.box_ok and r3.iou == pytest.approx(iou(AG, (60, 60, 120, 120)))
    assert cases["i0.png"].gt_frame()["agent"] == {"noun": "man", "box": list(AG)}
    assert cases["i4.png"].pred_frame()["vehicle"]["noun"] == "horse"  # the gt-verb frame is the one shown


def test_verb_wrong_without_frame_shows_top1_frame(cases) -> None:
    c = cases["u.png"]
    assert c.error == "verb_wrong" and c.frame_source == "top5"  # lifting is in the top-5 with an (empty) frame
    gt = {"v.png": _sit("v.png", "kicking")}
    c2 = build_cases(gt, {"v.png": _pred("riding", _frame(), 0.8)}, SPLIT)[0]
    assert c2.frame_source is None and c2.pred_frame()["vehicle"]["noun"] == "horse"
    assert all(not r.grounded_ok for r in c2.roles)


def test_confidence_and_loss_proxy(cases) -> None:
    c0 = cases["i0.png"]
    assert c0.confidence == 0.7 and c0.p_gt == pytest.approx(0.7)  # scores summing to <= 1 are probabilities
    assert c0.loss == pytest.approx(-math.log(0.7))
    u = cases["u.png"]  # logits: soft-max over the listed verbs
    z = math.exp(2.0) + math.exp(1.0) + math.exp(0.0)
    assert u.p_gt == pytest.approx(math.exp(1.0) / z)
    assert u.loss == pytest.approx(-math.log(math.exp(1.0) / z) + 1.0)  # every role of the empty frame is wrong
    assert cases["i7.png"].loss == pytest.approx(-math.log(1e-4) + 1.0)
    assert cases["i1.png"].loss == pytest.approx(-math.log(0.5) + 1 / 3)  # one of three roles wrong


def test_split_tags() -> None:
    assert split_tags(SPLIT, "lifting") == ("unseen", "unseen_novel")
    assert split_tags(SPLIT, "riding") == ("seen",)
    assert split_tags(SPLIT, "nope") == ("unknown",)
    assert split_tags({"seen": ["a"], "rare": [], "unseen": ["b"], "unseen_novel": ["b"]}, "b") == (
        "unseen", "unseen_novel")
    assert split_tags(None, "a") == ()


def test_filter_and_sort(cases) -> None:
    cs = list(cases.values())
    seen = filter_cases(cs, split="seen")
    assert len(seen) == 8 and [c.confidence for c in seen] == sorted((c.confidence for c in seen), reverse=True)
    assert [c.image for c in filter_cases(cs, split="unseen_novel")] == ["u.png"]
    assert {c.image for c in filter_cases(cs, error="verb_wrong")} == {"i4.png", "i7.png", "u.png"}
    assert [c.image for c in filter_cases(cs, error="correct")] == ["i0.png"]
    by_loss = filter_cases(cs, sort_by="loss")
    assert by_loss[0].image == "i7.png" and by_loss[-1].image == "i0.png"
    assert filter_cases(cs, verb="lifting", split="seen") == []
    assert filter_cases(cs, split="all", verb="all", error="all") == filter_cases(cs)
    with pytest.raises(ValueError, match="error must be one of"):
        filter_cases(cs, error="wrong_box")
    with pytest.raises(ValueError, match="sort_by must be one of"):
        filter_cases(cs, sort_by="score")


def test_summarize(cases) -> None:
    s = summarize(cases.values())
    assert sum(s["all"].values()) == 9 and s["unseen"]["verb_wrong"] == 1 and set(s["all"]) == set(ERROR_TYPES)


def test_rationales_attached() -> None:
    rats = {"a.png": {"glimpse": {"positive": ["a man rides"], "negative": ["a man swims"]},
                      "gaze": {"vehicle": {"positive": [{"text": "a horse"}], "negative": []}}}}
    c = build_cases({"a.png": _sit("a.png")}, {"a.png": _pred("riding", _frame())}, SPLIT, rats)[0]
    assert c.rationales["glimpse"]["negative"] == ["a man swims"]
    assert c.rationales["gaze"]["vehicle"]["positive"] == ["a horse"]
    c2 = build_cases({"b.png": _sit("b.png")}, {"b.png": _pred("riding", _frame())}, SPLIT, rats)[0]
    assert c2.rationales is None


def test_no_boxes_in_annotation() -> None:
    sit = Situation("n.png", "riding", 0, 0, {}, ({"agent": "man", "vehicle": "horse", "place": "field"},))
    c = build_cases({"n.png": sit}, {"n.png": _pred("riding", _frame(agent="man"))}, None)[0]
    assert c.error == "correct" and all(r.box_ok is None for r in c.roles) and c.split == "all"


@pytest.mark.parametrize("pred,match", [
    ({"verbs": "riding"}, r"predictions\['i\.png'\]: expected"),
    ({"verbs": [{"score": 1.0}]}, r"verbs\[0\]"),
    ({"verbs": [{"verb": "riding", "score": 1.0, "frame": {"agent": {"noun": "man", "box": [1, 2, 3]}}}]},
     r"role 'agent'.*box"),
    ({"verbs": [{"verb": "riding", "score": 1.0, "frame": {"agent": "man"}}]}, r"role 'agent' must be"),
])
def test_bad_predictions_name_the_image(pred, match) -> None:
    with pytest.raises(DataError, match=match):
        build_cases({"i.png": _sit("i.png")}, {"i.png": pred}, SPLIT)


def test_iou() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert iou(None, (0, 0, 1, 1)) == 0.0
