"""The inspector on real imSitu annotations (shared reference data): WordNet nouns, no boxes, no images."""

from __future__ import annotations

import json
import random
from pathlib import Path

from conftest import shared_file

from mipd_kit.data.splits import OvSplit
from mipd_kit.viz.cases import build_cases, filter_cases, load_situations
from mipd_kit.viz.inspector import Inspector


def _predictions(gt: dict, verbs: list[str], seed: int = 0) -> dict:
    """SWiG-format predictions as a real-mode student writes them: half the verbs right, first annotator's nouns,
    boxes null (imSitu has none)."""
    rng = random.Random(seed)
    out = {}
    for img, sit in gt.items():
        top = sit.verb if rng.random() < 0.5 else rng.choice([v for v in verbs if v != sit.verb])
        entries = []
        for k, v in enumerate([top] + rng.sample([x for x in verbs if x != top], 4)):
            frame = {r: {"noun": n, "box": None} for r, n in sit.frames[0].items()} if v == sit.verb else {}
            entries.append({"verb": v, "score": round(0.5 / (k + 1), 4), "frame": frame})
        out[img] = {"verbs": entries}
    return out


def test_inspector_on_real_imsitu_annotations(tmp_path: Path) -> None:
    gt = load_situations(shared_file("LUNAProject22__CLIPSitu/imSitu/debug.json"))
    verbs = sorted({s.verb for s in gt.values()})
    split = OvSplit.from_lists(verbs[: len(verbs) // 2], [], verbs[len(verbs) // 2:])
    preds = json.loads(json.dumps(_predictions(gt, verbs)))  # through JSON, as read from a file
    cases = build_cases(gt, preds, split)
    assert len(cases) == len(gt) == 50
    assert all(r.box_ok is None for c in cases for r in c.roles)  # no boxes: grounding not judged
    right = [c for c in cases if c.pred_verb == c.gt_verb]
    assert right and all(c.error == "correct" for c in right)  # first annotator's nouns are always right
    assert {c.error for c in cases} <= {"correct", "verb_wrong"}
    assert any(r.gt_nouns[0].startswith("n") for c in cases for r in c.roles)  # WordNet synset ids
    unseen_wrong = filter_cases(cases, split="unseen", error="verb_wrong", sort_by="loss")
    assert unseen_wrong and all("unseen" in c.split_tags for c in unseen_wrong)

    ins = Inspector(cases, image_root=tmp_path / "images_512", split="unseen", error="verb_wrong")
    assert ins.visible_cases() == filter_cases(cases, split="unseen", error="verb_wrong")
    for _ in range(3):
        assert ins.rendered_image() is not None
        ins.next()
    assert len(ins.missing_images) >= 1 and "placeholder" in ins.label_text()
