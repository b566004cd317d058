"""V-COCO agent AP and role AP, scenario 1, following ``vsrl_eval.py`` of s-gupta/v-coco (Gupta & Malik, 2015).

Semantics of the reference (``VCOCOeval._do_role_eval`` / ``_do_agent_eval``), kept here:

* Ground truth per image: the person boxes; each person has, per action-role class, a positive label and a role
  box, or the role box is **absent** (the agent does the action but its object is not in the image); persons not
  annotated in V-COCO are "ignore".
* Detections of one class are processed in decreasing score order. Each is matched by its **person box only** to
  the ground-truth person of highest IoU (+1-pixel formula, first on ties). If that person is "ignore", the
  detection is skipped (neither TP nor FP). Otherwise it is a TP when the person does the action, the person IoU is
  >= 0.5, the role overlap is >= 0.5 and the person is not yet covered for this class (it becomes covered);
  anything else is a FP.
* Role overlap: the IoU of the predicted and ground-truth role boxes; when the ground-truth role is absent,
  **scenario 1** counts it 1.0 only if the predicted role box is empty (``None``, all zeros or NaN) and 0.0
  otherwise. (Scenario 2 would always count 1.0; not reported.)
* AP is the all-point VOC AP (``voc_ap``) with recall = TP / npos, npos = number of positive agents of the class
  in the evaluated images (including agents whose role object is absent). Classes with npos = 0 get NaN and are
  left out of the mean (``np.nanmean`` in the reference).
* Agent AP: one detection per (predicted person, action) with the agent score; matched on the person box only.

What the fredzzhang ``instances_vcoco_*.json`` format can and cannot express (documented deviations):

* It lists only human-object **pairs** with a visible object, so agents whose role object is absent, and persons
  with no action (the reference's "ignore" / all-negative persons), are not in it: npos counts only agents with an
  annotated role object, and no person is "ignore"; the agent-only actions (stand, walk, run, smile) and
  ``point`` are not in it. :func:`gt_from_official` builds ground truth from the official s-gupta/v-coco
  ``vcoco_*.json`` + COCO ``instances`` files instead (``mipd eval-vcoco --vsrl ... --coco ...``) and then every
  rule above applies exactly (boxes cleaned as the reference does: x2 = x1 + max(0, w - 1), clipped; all 26
  actions for agent AP; every action-role class, including ``point instr``, for role AP).
* The reference's own detection list (``--pred-format official``; JSON instead of pickle) is read by
  :func:`load_official_detections`, with its explicit agent scores.
* Predictions are pairs, as for HICO-DET: ``{filename: [{"action": int (index into the 24 action-role classes)
  | "class": "hit instr", "box_h": [x1,y1,x2,y2], "box_o": [x1,y1,x2,y2] | null, "score": float}]}``. Each pair is
  one role detection (several pairs for one person and class are several detections; duplicates are FPs). Agent
  detections are derived from the pairs: per image, per identical person box and action, the maximum score.
* Ties in score are broken by the order in the predictions (stable sort); the reference's numpy quicksort leaves
  that order unspecified.

Rows: task ``hoi``, setting ``scenario_1``, metrics ``role_ap`` / ``agent_ap`` (percent); split ``full`` for the
means and the class name (spaces as ``_``, e.g. ``hit_instr``, ``hit``) for each class.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from mipd_kit.data.hico import VCocoData, load_vcoco
from mipd_kit.data.records import Box, DataError
from mipd_kit.metrics import MetricRow, row

from .boxes import paired_iou

MIN_OVERLAP = 0.5


@dataclass
class VCocoImageGT:
    """Ground truth of one image.

    Attributes:
        filename: image file name (the key of the predictions).
        persons: person boxes.
        ignore: per person, True when it is not annotated in V-COCO (detections matched to it are skipped).
        roles: action-role class index -> {person index: role box, or ``None`` when the role object is absent}.
        agents: action name -> person indices doing it (agent AP positives; includes agent-only actions).
    """

    filename: str
    persons: list[Box]
    ignore: list[bool]
    roles: dict[int, dict[int, Optional[Box]]] = field(default_factory=dict)
    agents: dict[str, list[int]] = field(default_factory=dict)


def gt_from_instances(data: VCocoData) -> list[VCocoImageGT]:
    """Ground truth from the fredzzhang format: persons = distinct human boxes; no ignore; no absent roles."""
    out = []
    for im in data.images:
        persons: list[Box] = []
        index: dict[Box, int] = {}
        roles: dict[int, dict[int, Optional[Box]]] = {}
        for bh, bo, c in zip(im.boxes_h, im.boxes_o, im.hoi):
            if bh not in index:
                index[bh] = len(persons)
                persons.append(bh)
            roles.setdefault(c, {})[index[bh]] = bo
        agents: dict[str, list[int]] = {}
        for c, people in roles.items():
            a = data.action_role(c)[0]
            agents[a] = sorted(set(agents.get(a, [])) | set(people))
        out.append(VCocoImageGT(im.filename, persons, [False] * len(persons), roles, agents))
    return out


def _coco_clean_box(bbox: Sequence[float], width: float, height: float) -> Optional[Box]:
    """``_add_gt_annotations`` of vsrl_eval.py: xywh -> x1,y1,x2,y2 with x2 = x1 + max(0, w - 1), clipped to the
    image; ``None`` when degenerate (x2 <= x1 or y2 <= y1)."""
    x1, y1 = float(bbox[0]), float(bbox[1])
    x2 = x1 + max(0.0, float(bbox[2]) - 1.0)
    y2 = y1 + max(0.0, float(bbox[3]) - 1.0)
    x1, x2 = (min(width - 1.0, max(0.0, v)) for v in (x1, x2))
    y1, y2 = (min(height - 1.0, max(0.0, v)) for v in (y1, y2))
    return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None


def gt_from_official(vsrl_path: str | Path, coco_path: str | Path,
                     image_ids: Optional[Sequence[int]] = None) -> tuple[list[VCocoImageGT], list[str], list[str]]:
    """Ground truth with the reference's full rules from the official annotations.

    Args:
        vsrl_path: s-gupta/v-coco ``vcoco_{train,val,test}.json`` (per action: ``image_id``, ``ann_id``,
            ``label``, ``role_name``, ``role_object_id`` stored role-major).
        coco_path: the COCO ``instances_*.json`` holding those images and boxes (``instances_vcoco_all_2014.json``
            or ``instances_{train,val}2014.json``).
        image_ids: images to evaluate (default: the V-COCO images of ``vsrl_path``, sorted).

    Returns:
        (ground truth per image, action-role class names ``"hit instr"``, action names incl. agent-only ones).
    """
    src = str(vsrl_path)
    try:
        vsrl = json.loads(Path(vsrl_path).read_text())
        coco = json.loads(Path(coco_path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{vsrl_path} / {coco_path}: cannot read ({e})") from e
    if not isinstance(vsrl, list) or not vsrl:
        raise DataError(f"{src}: expected a list of actions")
    actions, classes, tables = [], [], []
    for i, x in enumerate(vsrl):
        for k in ("action_name", "role_name", "ann_id", "label", "role_object_id", "image_id"):
            if k not in x:
                raise DataError(f"{src}: action {i}: missing key {k!r}")
        n, r = len(x["ann_id"]), len(x["role_name"])
        if len(x["label"]) != n or len(x["role_object_id"]) != n * r:
            raise DataError(f"{src}: action {x['action_name']!r}: label / role_object_id lengths do not match ann_id")
        rid = np.asarray(x["role_object_id"], dtype=np.int64).reshape(r, n).T     # (N, roles)
        actions.append(x["action_name"])
        tables.append((x, rid))
        for role in x["role_name"][1:]:
            classes.append(f"{x['action_name']} {role}")
    in_vcoco = set(int(a) for a in vsrl[0]["ann_id"])
    pos: dict[int, list[tuple[int, np.ndarray]]] = {}       # ann id -> [(action index, role object ids)]
    for ai, (x, rid) in enumerate(tables):
        for k, (ann, lab) in enumerate(zip(x["ann_id"], x["label"])):
            if lab == 1:
                pos.setdefault(int(ann), []).append((ai, rid[k, 1:]))
    ids = sorted(set(int(v) for v in vsrl[0]["image_id"])) if image_ids is None else [int(v) for v in image_ids]
    imgs = {int(im["id"]): im for im in coco.get("images", [])}
    anns_of: dict[int, list[dict]] = {}
    for a in coco.get("annotations", []):
        anns_of.setdefault(int(a["image_id"]), []).append(a)
    person_cat = next((int(c["id"]) for c in coco.get("categories", []) if c.get("name") == "person"), 1)
    class_index = {c: k for k, c in enumerate(classes)}
    out = []
    for iid in ids:
        if iid not in imgs:
            raise DataError(f"{coco_path}: image id {iid} (from {src}) is not in the COCO file")
        im = imgs[iid]
        boxes: dict[int, Box] = {}
        persons_ann = []
        for a in anns_of.get(iid, []):
            if a.get("ignore", 0) == 1:
                continue
            b = _coco_clean_box(a["bbox"], im["width"], im["height"])
            if a.get("area", 1) > 0 and b is not None:
                boxes[int(a["id"])] = b
                if int(a["category_id"]) == person_cat:
                    persons_ann.append(int(a["id"]))
        g = VCocoImageGT(im["file_name"], [boxes[a] for a in persons_ann], [a not in in_vcoco for a in persons_ann])
        for p, ann in enumerate(persons_ann):
            for ai, role_ids in pos.get(ann, []):
                x = tables[ai][0]
                g.agents.setdefault(x["action_name"], []).append(p)
                for j, role in enumerate(x["role_name"][1:]):
                    obj = int(role_ids[j])
                    if obj != 0 and obj not in boxes:
                        raise DataError(f"{src}: action {x['action_name']!r}, agent {ann}: role object {obj} "
                                        f"is not a valid box of image {iid} in {coco_path}")
                    c = class_index[f"{x['action_name']} {role}"]
                    g.roles.setdefault(c, {})[p] = boxes[obj] if obj != 0 else None
        out.append(g)
    return out, classes, actions


def load_official_detections(path: str | Path, gts: Sequence[VCocoImageGT], image_files: dict[int, str],
                             classes: Sequence[str], actions: Sequence[str]) -> tuple[dict, dict]:
    """Detections in the reference's format (a JSON list of ``{"image_id", "person_box", "<action>_agent": score,
    "<action>_<role>": [x1, y1, x2, y2, score]}``; convert the reference's pickle with ``json.dump`` after
    ``.tolist()``) -> (role predictions, agent predictions) keyed by file name. NaN scores are dropped, as the
    reference does; a role box of zeros or NaN means "no role object predicted"."""
    try:
        dets = json.loads(Path(path).read_text(), parse_constant=lambda c: float(c))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read detections ({e})") from e
    if not isinstance(dets, list):
        raise DataError(f"{path}: expected a JSON list of detections")
    role_preds: dict[str, list] = {}
    agent_preds: dict[str, list] = {}
    for k, d in enumerate(dets):
        if not isinstance(d, dict) or "image_id" not in d or "person_box" not in d:
            raise DataError(f"{path}: detection {k} needs 'image_id' and 'person_box'")
        name = image_files.get(int(d["image_id"]), f"<image id {d['image_id']}>")
        bh = [float(v) for v in d["person_box"]][:4]
        for a in actions:
            s = d.get(f"{a}_agent")
            if s is not None and not math.isnan(float(s)):
                agent_preds.setdefault(name, []).append({"action": a, "box_h": bh, "score": float(s)})
        for c, cname in enumerate(classes):
            v = d.get(cname.replace(" ", "_"))
            if v is None:
                continue
            if not isinstance(v, (list, tuple)) or len(v) != 5:
                raise DataError(f"{path}: detection {k}: {cname.replace(' ', '_')} must be [x1, y1, x2, y2, score]")
            if math.isnan(float(v[4])):
                continue
            role_preds.setdefault(name, []).append({"action": c, "box_h": bh, "box_o": [float(x) for x in v[:4]],
                                                    "score": float(v[4])})
    return role_preds, agent_preds


def overlap(boxes: Sequence[Sequence[float]], ref: Sequence[float]) -> np.ndarray:
    """IoU of ``ref`` with each box, +1-pixel rule (``get_overlap`` of vsrl_eval.py): :func:`~mipd_kit.eval.boxes.paired_iou`.

    Where nothing overlaps the IoU is 0 (vsrl_eval.py gives 0 there too, or NaN for two boxes of zero +1 area).
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return paired_iou(b, np.asarray(ref, dtype=np.float64)[None, :4], "pixel")


def voc_ap(rec: np.ndarray, prec: np.ndarray) -> float:
    """All-point VOC AP (``voc_ap`` of vsrl_eval.py)."""
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def _empty_role(box) -> bool:
    if box is None:
        return True
    a = np.asarray(box, dtype=np.float64)
    return bool(np.all(a == 0.0) or np.all(np.isnan(a)))


def _ap_from(tp: list[int], sc: list[float], npos: int) -> float:
    if npos == 0:
        return math.nan
    order = np.argsort(-np.asarray(sc, dtype=np.float64), kind="stable")
    t = np.cumsum(np.asarray(tp, dtype=np.float64)[order])
    f = np.cumsum(1.0 - np.asarray(tp, dtype=np.float64)[order])
    rec = t / float(npos)
    prec = t / np.maximum(t + f, np.finfo(np.float64).eps)
    return voc_ap(rec, prec)


def _match(gt: VCocoImageGT, dets: list[tuple[Box, object, float]], cls: int, role: bool,
           tp: list[int], sc: list[float]) -> None:
    """Append TP/FP flags and scores of one image's detections of one class (or action, ``role=False``)."""
    covered = [False] * len(gt.persons)
    positives = gt.roles.get(cls, {})
    order = sorted(range(len(dets)), key=lambda k: -dets[k][2])
    for k in order:
        box_h, box_o, score = dets[k]
        if gt.persons:
            ov = overlap(gt.persons, box_h)
            jmax, ovmax = int(np.argmax(ov)), float(np.max(ov))
            if gt.ignore[jmax]:
                continue
        else:
            jmax, ovmax = -1, 0.0
        ok = jmax in positives and ovmax >= MIN_OVERLAP
        if ok and role:
            gt_role = positives[jmax]
            if gt_role is None:
                ov_role = 1.0 if _empty_role(box_o) else 0.0          # scenario 1
            elif _empty_role(box_o):
                ov_role = 0.0
            else:
                ov_role = float(overlap([gt_role], box_o)[0])
            ok = ov_role >= MIN_OVERLAP
        sc.append(score)
        if ok and not covered[jmax]:
            tp.append(1)
            covered[jmax] = True
        else:
            tp.append(0)


@dataclass
class VCocoReport:
    role_ap: dict[str, float]
    agent_ap: dict[str, float]
    npos_role: dict[str, int]
    npos_agent: dict[str, int]
    warnings: dict[str, int]
    rows: list[MetricRow]


def _parse(preds: dict, gts: list[VCocoImageGT], classes: list[str], src: str):
    index = {g.filename: i for i, g in enumerate(gts)}
    cls_index = {c: k for k, c in enumerate(classes)}
    warn = {"unknown_image": 0, "unknown_image_detections": 0, "unknown_class": 0}
    per: list[dict[int, list]] = [dict() for _ in gts]
    if not isinstance(preds, dict):
        raise DataError(f"{src}: predictions must be an object {{filename: [detections]}}")
    for name, dets in preds.items():
        if not isinstance(dets, list):
            raise DataError(f"{src}: image {name!r}: detections must be a list")
        i = index.get(name)
        if i is None:
            warn["unknown_image"] += 1
            warn["unknown_image_detections"] += len(dets)
            continue
        for j, d in enumerate(dets):
            where = f"{src}: image {name!r} detection {j}"
            if not isinstance(d, dict) or "box_h" not in d or "score" not in d:
                raise DataError(f"{where}: needs 'box_h' and 'score' (and 'action' or 'class')")
            if "action" in d:
                c = d["action"]
                if isinstance(c, bool) or not isinstance(c, int):
                    raise DataError(f"{where}: action must be an integer class index, got {c!r}")
            elif "class" in d:
                c = cls_index.get(d["class"], -1)
            else:
                raise DataError(f"{where}: needs 'action' (class index) or 'class' (name)")
            if not 0 <= c < len(classes):
                warn["unknown_class"] += 1
                continue
            try:
                bh = tuple(float(x) for x in d["box_h"])
                bo = None if d.get("box_o") is None else tuple(float(x) for x in d["box_o"])
                s = float(d["score"])
            except (TypeError, ValueError) as e:
                raise DataError(f"{where}: non-numeric box or score ({e})") from e
            if len(bh) != 4 or (bo is not None and len(bo) != 4) or not math.isfinite(s):
                raise DataError(f"{where}: boxes must have 4 numbers and the score must be finite")
            per[i].setdefault(c, []).append((bh, bo, s))
    return per, warn


def _parse_agents(agent_preds: dict, gts: list[VCocoImageGT], actions: Sequence[str], src: str, warn: dict):
    index = {g.filename: i for i, g in enumerate(gts)}
    per: list[dict[str, list]] = [dict() for _ in gts]
    for name, dets in agent_preds.items():
        i = index.get(name)
        if i is None:
            warn["unknown_image"] += 1
            warn["unknown_image_detections"] += len(dets)
            continue
        for j, d in enumerate(dets):
            if not isinstance(d, dict) or not {"action", "box_h", "score"} <= set(d):
                raise DataError(f"{src}: image {name!r} agent detection {j}: needs 'action', 'box_h', 'score'")
            if d["action"] not in actions:
                warn["unknown_class"] += 1
                continue
            per[i].setdefault(d["action"], []).append((tuple(float(x) for x in d["box_h"]), None, float(d["score"])))
    return per


def evaluate_vcoco(gts: list[VCocoImageGT], classes: list[str], preds: dict, *, agent_preds: Optional[dict] = None,
                   actions: Optional[Sequence[str]] = None, model: str = "model", seed: Optional[int] = None,
                   src: str = "predictions") -> VCocoReport:
    """Scenario-1 role AP per action-role class and agent AP per action (module docstring).

    Args:
        gts: ground truth per image (:func:`gt_from_instances` or :func:`gt_from_official`).
        classes: action-role class names, ``"hit instr"``; ``preds``' ``action`` indexes them.
        preds: role (pair) predictions ``{filename: [{"action"|"class", "box_h", "box_o", "score"}]}``.
        agent_preds: optional ``{filename: [{"action": name, "box_h", "score"}]}``; default: derived from
            ``preds`` (per identical person box and action, the maximum score).
        actions: actions for agent AP (default: those of ``classes``; pass all, incl. agent-only ones, with
            ground truth from :func:`gt_from_official`).
    """
    per, warn = _parse(preds, gts, classes, src)
    actions = list(actions) if actions is not None else list(dict.fromkeys(c.partition(" ")[0] for c in classes))
    classes_of = {a: [k for k, c in enumerate(classes) if c.partition(" ")[0] == a] for a in actions}
    per_agent = _parse_agents(agent_preds, gts, actions, src, warn) if agent_preds is not None else None
    role_ap, npos_role = {}, {}
    for c, name in enumerate(classes):
        tp: list[int] = []
        sc: list[float] = []
        npos = 0
        for g, p in zip(gts, per):
            npos += sum(1 for j in g.roles.get(c, {}) if not g.ignore[j])
            _match(g, p.get(c, []), c, True, tp, sc)
        npos_role[name] = npos
        role_ap[name] = _ap_from(tp, sc, npos)
    agent_ap, npos_agent = {}, {}
    for a in actions:
        tp, sc = [], []
        npos = 0
        for i, (g, p) in enumerate(zip(gts, per)):
            people = {j: None for j in g.agents.get(a, [])}          # positives as a pseudo-class -1
            npos += sum(1 for j in people if not g.ignore[j])
            if per_agent is not None:
                dets = per_agent[i].get(a, [])
            else:
                best: dict[tuple, float] = {}
                for c in classes_of[a]:
                    for bh, _, s in p.get(c, []):
                        best[bh] = max(best.get(bh, -math.inf), s)
                dets = [(bh, None, s) for bh, s in best.items()]
            _match(VCocoImageGT(g.filename, g.persons, g.ignore, {-1: people}), dets, -1, False, tp, sc)
        npos_agent[a] = npos
        agent_ap[a] = _ap_from(tp, sc, npos)
    rows = []
    for metric, table in (("role_ap", role_ap), ("agent_ap", agent_ap)):
        vals = [v for v in table.values() if not math.isnan(v)]
        rows.append(row("hoi", model, "full", "scenario_1", metric,
                        100.0 * float(np.mean(vals)) if vals else math.nan, seed=seed))
        for name, v in table.items():
            rows.append(row("hoi", model, name.replace(" ", "_"), "scenario_1", metric, 100.0 * v, seed=seed))
    for k, v in warn.items():
        rows.append(row("hoi", model, "all", "predictions", f"warn_{k}", v, seed=seed))
    return VCocoReport(role_ap, agent_ap, npos_role, npos_agent, warn, rows)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``mipd eval-vcoco``: V-COCO scenario-1 role AP and agent AP of a predictions file."""
    from mipd_kit.eval.cli_io import (USER_ERROR, add_out_arguments, check_matched, check_out, read_predictions,
                                      write_out)
    ap = argparse.ArgumentParser(prog="mipd eval-vcoco", description=__doc__.split("\n")[0])
    ap.add_argument("--gt", default=None, help="instances_vcoco_test.json (fredzzhang format)")
    ap.add_argument("--vsrl", default=None, help="official s-gupta/v-coco vcoco_test.json (with --coco)")
    ap.add_argument("--coco", default=None, help="COCO instances JSON holding the V-COCO images (with --vsrl)")
    ap.add_argument("--pred", required=True, help="pair predictions {filename: [{action, box_h, box_o, score}]}, "
                                                  "or with --pred-format official the reference's detection list")
    ap.add_argument("--pred-format", default="pairs", choices=["pairs", "official"])
    ap.add_argument("--model", default="model")
    ap.add_argument("--seed", type=int, default=None)
    add_out_arguments(ap)
    args = ap.parse_args(list(argv) if argv is not None else None)
    try:
        if (args.vsrl or args.coco) and not (args.vsrl and args.coco):
            raise DataError("--vsrl and --coco go together")
        if not (args.gt or args.vsrl):
            raise DataError("give --gt (fredzzhang format) or --vsrl and --coco (official annotations)")
        if args.vsrl:
            gts, classes, actions = gt_from_official(args.vsrl, args.coco)
            coco = json.loads(Path(args.coco).read_text())
            files = {int(im["id"]): im["file_name"] for im in coco.get("images", [])}
        elif args.gt:
            data = load_vcoco(args.gt)
            gts, classes = gt_from_instances(data), data.classes
            actions = list(dict.fromkeys(c.partition(" ")[0] for c in classes))
            files = dict(zip(data.image_ids, (im.filename for im in data.images)))
        else:
            raise DataError("give --gt (fredzzhang format) or --vsrl and --coco (official annotations)")
        agent_preds = None
        if args.pred_format == "official":
            preds, agent_preds = load_official_detections(args.pred, gts, files, classes, actions)
        else:
            preds = read_predictions(args.pred)
            check_matched(args.pred, preds, args.gt or args.coco, files.values())
        check_out(args.out, args.merge, args.overwrite)  # inputs first (their errors first), then the output
        rep = evaluate_vcoco(gts, classes, preds, agent_preds=agent_preds, actions=actions, model=args.model,
                             seed=args.seed, src=str(args.pred))
        write_out(args.out, rep.rows, args.merge, args.overwrite)
    except DataError as e:
        print(f"mipd eval-vcoco: error: {e}", file=sys.stderr)
        return USER_ERROR
    print(f"{'class':<26}{'role AP':>9}{'#pos':>7}")
    for name, v in rep.role_ap.items():
        print(f"{name:<26}{100 * v:>9.2f}{rep.npos_role[name]:>7}")
    full = {r.metric: r.value for r in rep.rows if r.split == "full"}
    print(f"mean role AP (scenario 1): {full['role_ap']:.2f}   mean agent AP: {full['agent_ap']:.2f}")
    for k, v in rep.warnings.items():
        if v:
            print(f"warning: {v} {k.replace('_', ' ')}", file=sys.stderr)
    return 0
