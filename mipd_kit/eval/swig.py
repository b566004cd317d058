"""SWiG / Ov-GSR evaluation: verb, value, value-all, grounded value and grounded value-all.

Protocol (imSitu: Yatskar et al., CVPR 2016; SWiG: Pratt et al., ECCV 2020; as used by JSL, GSRTR, CoFormer
and MIPD), as docs/evaluation.md states it:

* **Settings.** ``top1`` and ``top5``: the model ranks verbs (best first, at most 5 are read); the verb is
  correct if the ground-truth (gt) verb is the first / among the first five. Roles count only when the gt
  verb is among the top-k, and the frame scored is the one predicted *for the gt verb* (the first entry of the
  ranking whose verb is the gt verb). ``gt_verb``: the frame the model predicts when given the gt verb
  (``gt_verb_frame`` in the predictions); reported only when the predictions contain it, and it has no
  ``verb`` metric.
* **value**: fraction of the gt verb's roles whose predicted noun equals the noun of *any* of the annotators
  (3 in SWiG) for that role; the empty noun ``""`` is a value like any other. **value-all**: 1 if every role
  is correct in that sense.
* **grounded value / grounded value-all**: as above, but a role is correct only if its noun is correct *and*
  either both the gt box and the predicted box are absent, or both are present with IoU >= 0.5 (continuous
  coordinates, area = (x2 - x1) * (y2 - y1), no +1). A predicted box ``null`` or ``[-1, -1, -1, -1]`` is absent.
  Grounded metrics need gt boxes (SWiG); for plain imSitu ground truth they are not reported. This is the
  CoFormer / GSRTR rule (``bb_intersection_over_union`` in CoFormer's ``models/coformer.py``); the original JSL
  scorer (allenai/swig ``global_utils/imsitu_eval.py``) uses +1-pixel areas and a strict ``> 0.5``, which can
  differ slightly on boxes near the threshold.
* **Means.** ``mean="image"``: average over images (CoFormer / MIPD convention). ``mean="verb"``: average over
  the images of each verb, then over verbs (imSitu convention; JSL's ``BboxEval``). On SWiG dev/test every verb
  has 50 images, so the two agree there; they differ on unbalanced sets such as Ov-GSR splits. Values in percent.
* **Breakdowns.** Every number for ``all`` and, with an :class:`OvSplit`, for ``seen`` / ``rare`` / ``unseen``
  and each extra list (e.g. ``unseen_compositional`` / ``unseen_novel``) - by the gt verb's list. Lists without
  gt images give no rows (and a note).
* **Bad predictions.** A role missing from a scored frame counts as wrong; predictions for images not in the
  gt are ignored; gt images without a prediction count as all wrong. All three are counted warnings in the
  :class:`SwigReport`. Structurally invalid predictions (not an object, a non-string noun, a malformed box,
  x2 < x1) raise :class:`DataError` naming the file and image.

Predictions format (SWiG predictions)::

    {image: {"verbs": [{"verb": str, "score": float,
                        "frame": {role: {"noun": str, "box": [x1, y1, x2, y2] | null}}}, ... up to 5, best first],
             "gt_verb_frame": {role: {...}}}}      # optional
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from collections.abc import Mapping as _AbcMapping
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from mipd_kit.data.records import DataError, FrameSpace, Situation
from mipd_kit.data.splits import OvSplit
from mipd_kit.eval.cli_io import is_real
from mipd_kit.metrics import MetricRow, row

from .boxes import paired_iou

log = logging.getLogger(__name__)

SETTINGS = ("top1", "top5", "gt_verb")
METRICS = ("verb", "value", "value_all", "grnd_value", "grnd_value_all")
MEANS = ("image", "verb")
TOP_K = 5
IOU_THRESHOLD = 0.5
_MAX_EXAMPLES = 5
_PAD = object()  # pads images with fewer annotators; equal to no noun

#: Counted warnings and what they mean (keys of ``SwigReport.warnings``).
WARNINGS = {
    "pred_unknown_image": "predictions for images not in the ground truth (ignored)",
    "gt_image_without_prediction": "ground-truth images without a prediction (count as all wrong)",
    "missing_role": "roles missing from a scored predicted frame (count as wrong)",
    "extra_role": "roles in a scored predicted frame that the gt verb does not have (ignored)",
    "missing_gt_verb_frame": "images without 'gt_verb_frame' while others have one (gt_verb setting: all wrong)",
    "more_than_5_verbs": "verb rankings longer than 5 (only the first 5 are read)",
    "repeated_verb": "verb rankings naming a verb twice (the first entry is used)",
    "unsorted_scores": "verb rankings whose scores are not non-increasing (order as given is used)",
    "gt_verb_not_in_split": "gt images whose verb is in no list of the ov split (counted in 'all' only)",
    "unknown_pred_noun": "predicted nouns (scored frames) not in the frame space (wrong unless equal to gt)",
}


@dataclass
class SwigReport:
    """Metric rows plus counted warnings about the predictions.

    Attributes:
        rows: tidy rows (task ``gsr``).
        warnings: warning key (see :data:`WARNINGS`) -> count; only non-zero counts.
        examples: warning key -> a few offending records (``image`` or ``image/role``).
        notes: other remarks (e.g. grounded metrics skipped, empty breakdowns).
        n_gt, n_pred: number of ground-truth images and of prediction entries.
    """

    rows: list[MetricRow]
    warnings: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    n_gt: int = 0
    n_pred: int = 0

    def warning_lines(self) -> list[str]:
        return [f"warning: {n} {WARNINGS.get(k, k)}; e.g. {', '.join(self.examples.get(k, []))}"
                for k, n in self.warnings.items()]

    def to_json(self) -> dict:
        return {"n_gt": self.n_gt, "n_pred": self.n_pred, "warnings": self.warnings,
                "examples": self.examples, "notes": self.notes}


def _is_map(x: Any) -> bool:
    """Fast mapping test (JSON objects are dicts; typing.Mapping isinstance is slow in hot loops)."""
    return type(x) is dict or isinstance(x, _AbcMapping)


class _Counter:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list[str]] = {}

    def add(self, key: str, example: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n
        ex = self.examples.setdefault(key, [])
        if len(ex) < _MAX_EXAMPLES:
            ex.append(example)


# ------------------------------------------------------------------------------------------- helpers


def frame_from_situation(situation: Situation, annotator: int = 0) -> dict[str, dict[str, Any]]:
    """The gt frame of one annotator in prediction form: ``{role: {"noun": str, "box": [..] | None}}``."""
    fr = situation.frames[annotator]
    return {r: {"noun": n, "box": (list(situation.boxes[r]) if situation.boxes.get(r) is not None else None)}
            for r, n in fr.items()}


def gt_as_predictions(situations: Mapping[str, Situation], annotator: int = 0) -> dict[str, dict]:
    """Ground truth written as predictions (the gt verb ranked first, annotator ``annotator``'s frame).

    The ranked frame and ``gt_verb_frame`` are separate objects, so a test may perturb one alone.
    """
    out = {}
    for img, s in situations.items():
        out[img] = {"verbs": [{"verb": s.verb, "score": 1.0, "frame": frame_from_situation(s, annotator)}],
                    "gt_verb_frame": frame_from_situation(s, annotator)}
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of paired boxes, continuous coordinates (no +1): :func:`mipd_kit.eval.boxes.paired_iou`.

    Args:
        a, b: (R, 4) ``x1, y1, x2, y2``.
    Returns:
        (R,) IoU; 0 where the boxes do not overlap or a row has NaN (an absent box).
    """
    return paired_iou(a, b, "continuous")


def _boxes_array(raw: list, where: str, images: list[str], role_img: list[int], role_name: list[str]) -> np.ndarray:
    """(R, 4) float boxes from a list of ``None`` / 4-number lists; absent (None or all -1) -> NaN."""
    nan4 = (np.nan, np.nan, np.nan, np.nan)
    try:
        arr = np.array([nan4 if b is None else b for b in raw], dtype=np.float64).reshape(len(raw), 4)
    except (ValueError, TypeError, OverflowError):
        from .cli_io import is_real
        for i, b in enumerate(raw):
            ok = (b is None or (isinstance(b, (list, tuple)) and len(b) == 4 and all(is_real(c) for c in b)))
            if not ok:
                raise DataError(f"{where}: image {images[role_img[i]]!r} role {role_name[i]!r}: box must be "
                                f"[x1, y1, x2, y2] of finite numbers or null, got {b!r}"[:400]) from None
        raise
    if len(arr):
        arr[(arr == -1).all(axis=1)] = np.nan
        bad = np.nonzero((arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1]))[0]
        if len(bad):
            i = int(bad[0])
            raise DataError(f"{where}: image {images[role_img[i]]!r} role {role_name[i]!r}: box "
                            f"{raw[i]} has x2 < x1 or y2 < y1 ({len(bad)} such boxes)")
        if not np.isfinite(arr[~np.isnan(arr).all(axis=1)]).all():
            raise DataError(f"{where}: a predicted box has a non-finite coordinate")
    return arr


# ------------------------------------------------------------------------------------------ scoring


def evaluate_swig_report(gt: Mapping[str, Situation], preds: Mapping[str, Any], split: Optional[OvSplit] = None,
                         *, model: str = "model", seed: Optional[int] = None,
                         space: Optional[FrameSpace] = None, pred_source: str = "predictions") -> SwigReport:
    """Score SWiG predictions; see the module docstring for the protocol.

    Args:
        gt: ``{image: Situation}`` (e.g. :func:`mipd_kit.data.swig.load_situations`).
        preds: predictions in the SWiG prediction format above, keyed by image.
        split: optional open-vocabulary split for the seen / rare / unseen (+ extra) breakdowns.
        model, seed: written into every row.
        space: optional frame space; predicted nouns outside it are counted (``unknown_pred_noun``).
        pred_source: name of the predictions file, for error messages.

    Returns:
        A :class:`SwigReport` with the rows and the counted warnings.

    Raises:
        DataError: structurally invalid predictions, naming ``pred_source`` and the image.
    """
    if not isinstance(preds, Mapping):
        raise DataError(f"{pred_source}: predictions must be an object image -> prediction")
    warn = _Counter()
    notes: list[str] = []
    images = list(gt)
    n = len(images)
    if n == 0:
        return SwigReport(rows=[], notes=["empty ground truth: no rows"], n_gt=0, n_pred=len(preds))
    for img in preds:
        if img not in gt:
            warn.add("pred_unknown_image", img)
    has_gtv = any(_is_map(p) and "gt_verb_frame" in p for p in preds.values())
    grounded = n > 0 and all(len(s.boxes) > 0 for s in gt.values())
    if not grounded:
        notes.append("grounded metrics not reported: some ground-truth images have no boxes (plain imSitu)")
    g = _gather(gt, preds, images, has_gtv, grounded, warn, space.nouns if space is not None else None, pred_source)
    per_image = _score_roles(g, images, has_gtv, grounded, notes, pred_source)
    rows = _breakdown_rows(g, per_image, gt, images, split, model, seed, warn, notes)
    rep = SwigReport(rows=rows, warnings=dict(warn.counts), examples=dict(warn.examples), notes=notes,
                     n_gt=n, n_pred=len(preds))
    return rep


@dataclass
class _RoleRows:
    """The ground truth and the predictions as flat role rows (one per gt image x role of its verb), gathered by
    :func:`_gather` and scored vectorised by :func:`_score_roles`."""

    rank: np.ndarray  # (N,) position of the gt verb in the ranking, TOP_K if absent
    img_verb: np.ndarray  # (N,) verb id of each gt image
    verb_ids: dict[str, int]
    max_ann: int
    role_img: list[int] = field(default_factory=list)
    role_name: list[str] = field(default_factory=list)
    gt_cols: list[list] = field(default_factory=list)  # per annotator: the noun of every role row
    gt_box_raw: list = field(default_factory=list)
    pn_rank: list = field(default_factory=list)  # predicted noun of the frame for the gt verb (None: role missing)
    pb_rank: list = field(default_factory=list)
    pn_gtv: list = field(default_factory=list)
    pb_gtv: list = field(default_factory=list)


def _take(frame: Any, roles: list[str], img: str, nouns_out: list, boxes_out: list, warn: _Counter,
          nouns_of_space: Optional[Any], pred_source: str) -> None:
    """Append a predicted frame's noun and box for each of ``roles`` (None for a missing role), validating it."""
    if frame is None:
        frame = {}
    if not _is_map(frame):
        raise DataError(f"{pred_source}: image {img!r}: a frame must be an object role -> "
                        f"{{'noun', 'box'}}, got {type(frame).__name__}")
    hit = 0
    for r in roles:
        e = frame.get(r)
        if e is None:
            warn.add("missing_role", f"{img}/{r}")
            nouns_out.append(None)
            boxes_out.append(None)
            continue
        hit += 1
        try:
            noun = e["noun"]
        except (KeyError, TypeError):
            raise DataError(f"{pred_source}: image {img!r} role {r!r}: expected {{'noun': str, 'box': ...}}, "
                            f"got {e!r}") from None
        if not isinstance(noun, str):
            raise DataError(f"{pred_source}: image {img!r} role {r!r}: noun must be a string, got {noun!r}")
        if nouns_of_space is not None and noun and noun not in nouns_of_space:
            warn.add("unknown_pred_noun", f"{img}/{r}:{noun}")
        box = e.get("box")
        if box is not None and not (isinstance(box, (list, tuple)) and len(box) == 4
                                    and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in box)):
            raise DataError(f"{pred_source}: image {img!r} role {r!r}: box must be [x1, y1, x2, y2] "
                            f"(4 numbers) or null, got {box!r}")
        nouns_out.append(noun)
        boxes_out.append(box)
    if len(frame) > hit:
        extra = [r for r in frame if r not in roles]
        if extra:
            warn.add("extra_role", f"{img}/{extra[0]}", len(extra))


def _rank_verbs(p: Mapping[str, Any], gt_verb: str, img: str, warn: _Counter,
                pred_source: str) -> tuple[Optional[int], Any]:
    """Validate one prediction's verb ranking; returns the gt verb's position (None if absent) and the frame
    predicted for it."""
    verbs = p.get("verbs", [])
    if not isinstance(verbs, list):
        raise DataError(f"{pred_source}: image {img!r}: 'verbs' must be a list")
    if len(verbs) > TOP_K:
        warn.add("more_than_5_verbs", img)
        verbs = verbs[:TOP_K]
    seen_v: set = set()
    last_score = None
    frame_for_gt = None
    found: Optional[int] = None
    for k, ent in enumerate(verbs):
        if not _is_map(ent) or not isinstance(ent.get("verb"), str):
            raise DataError(f"{pred_source}: image {img!r}: verbs[{k}] must be an object with a string 'verb'")
        v = ent["verb"]
        if v in seen_v:
            warn.add("repeated_verb", img)
            continue
        seen_v.add(v)
        sc = ent.get("score")
        if sc is not None and not is_real(sc):
            raise DataError(f"{pred_source}: image {img!r}: verbs[{k}] score must be a finite number or absent, "
                            f"got {sc!r}")
        if sc is not None:
            if last_score is not None and sc > last_score:
                warn.add("unsorted_scores", img)
            last_score = sc
        if v == gt_verb and frame_for_gt is None:
            found = k
            frame_for_gt = ent.get("frame", {})
    return found, frame_for_gt


def _gather(gt: Mapping[str, Situation], preds: Mapping[str, Any], images: list[str], has_gtv: bool, grounded: bool,
            warn: _Counter, nouns_of_space: Optional[Any], pred_source: str) -> _RoleRows:
    """The role rows of every gt image: gt nouns per annotator, gt boxes, and the nouns and boxes predicted for
    the gt verb (in the ranking, and with ``gt_verb_frame``); warnings counted in image order."""
    n = len(images)
    g = _RoleRows(rank=np.full(n, TOP_K, dtype=np.int64), img_verb=np.empty(n, dtype=np.int64), verb_ids={},
                  max_ann=max((len(s.frames) for s in gt.values()), default=1))
    g.gt_cols = [[] for _ in range(g.max_ann)]
    for i, img in enumerate(images):
        s = gt[img]
        g.img_verb[i] = g.verb_ids.setdefault(s.verb, len(g.verb_ids))
        roles = list(s.frames[0])
        nr = len(roles)
        g.role_img += [i] * nr
        g.role_name += roles
        for a in range(g.max_ann):
            if a < len(s.frames):
                fr = s.frames[a]
                g.gt_cols[a] += [fr.get(r, "") for r in roles]
            else:
                g.gt_cols[a] += [_PAD] * nr
        if grounded:
            g.gt_box_raw += [s.boxes.get(r) for r in roles]
        p = preds.get(img)
        if p is None:
            warn.add("gt_image_without_prediction", img)
            g.pn_rank += [None] * len(roles)
            g.pb_rank += [None] * len(roles)
            g.pn_gtv += [None] * len(roles)
            g.pb_gtv += [None] * len(roles)
            continue
        if not _is_map(p):
            raise DataError(f"{pred_source}: image {img!r}: a prediction must be an object, got {type(p).__name__}")
        found, frame_for_gt = _rank_verbs(p, s.verb, img, warn, pred_source)
        if found is not None:
            g.rank[i] = found
        if frame_for_gt is not None:
            _take(frame_for_gt, roles, img, g.pn_rank, g.pb_rank, warn, nouns_of_space, pred_source)
        else:
            g.pn_rank += [None] * len(roles)
            g.pb_rank += [None] * len(roles)
        if has_gtv:
            if "gt_verb_frame" in p:
                _take(p["gt_verb_frame"], roles, img, g.pn_gtv, g.pb_gtv, warn, nouns_of_space, pred_source)
            else:
                warn.add("missing_gt_verb_frame", img)
                g.pn_gtv += [None] * len(roles)
                g.pb_gtv += [None] * len(roles)
        else:
            g.pn_gtv += [None] * len(roles)
            g.pb_gtv += [None] * len(roles)
    return g


def _score_roles(g: _RoleRows, images: list[str], has_gtv: bool, grounded: bool, notes: list[str],
                 pred_source: str) -> dict[tuple[str, str], np.ndarray]:
    """Vectorised scoring over the (R,) role rows: (setting, metric) -> (N,) per-image scores in [0, 1]."""
    n = len(images)
    role_img, role_name, max_ann = g.role_img, g.role_name, g.max_ann
    r_img = np.asarray(role_img, dtype=np.int64)  # (R,)
    gt_nouns = np.empty((len(role_img), max_ann), dtype=object)  # (R, A) noun strings
    for a, col in enumerate(g.gt_cols):
        gt_nouns[:, a] = col
    n_roles = np.bincount(r_img, minlength=n).astype(np.float64)  # (N,)
    if grounded:
        gt_box = _boxes_array(g.gt_box_raw, "ground truth", images, role_img, role_name)  # (R, 4)
    per_image: dict[tuple[str, str], np.ndarray] = {}  # (setting, metric) -> (N,) in {0..1}
    frames = {"rank": (g.pn_rank, g.pb_rank)}
    if has_gtv:
        frames["gtv"] = (g.pn_gtv, g.pb_gtv)
    scored: dict[str, tuple[np.ndarray, np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]] = {}
    for key, (pn, pb) in frames.items():
        pred_n = np.empty(len(pn), dtype=object)  # (R,) predicted noun strings, None = role missing
        pred_n[:] = pn
        noun_ok = (gt_nouns == pred_n[:, None]).any(axis=1)  # (R,) string equality with any annotator
        val = np.bincount(r_img, weights=noun_ok, minlength=n) / np.maximum(n_roles, 1)  # (N,)
        val_all = (np.bincount(r_img, weights=~noun_ok, minlength=n) == 0).astype(np.float64)
        gval = gall = None
        if grounded:
            pred_b = _boxes_array(pb, pred_source, images, role_img, role_name)  # (R, 4)
            gt_abs = np.isnan(gt_box[:, 0])
            pr_abs = np.isnan(pred_b[:, 0])
            iou = box_iou(gt_box, pred_b)
            box_ok = (gt_abs & pr_abs) | (~gt_abs & ~pr_abs & (iou >= IOU_THRESHOLD))
            g_ok = noun_ok & box_ok
            gval = np.bincount(r_img, weights=g_ok, minlength=n) / np.maximum(n_roles, 1)
            gall = (np.bincount(r_img, weights=~g_ok, minlength=n) == 0).astype(np.float64)
        scored[key] = (val, val_all, gval, gall)
    rank = g.rank
    for setting, gate in (("top1", rank == 0), ("top5", rank < TOP_K)):
        gf = gate.astype(np.float64)
        per_image[(setting, "verb")] = gf
        val, val_all, gval, gall = scored["rank"]
        per_image[(setting, "value")] = val * gf
        per_image[(setting, "value_all")] = val_all * gf
        if grounded:
            per_image[(setting, "grnd_value")] = gval * gf
            per_image[(setting, "grnd_value_all")] = gall * gf
    if has_gtv:
        val, val_all, gval, gall = scored["gtv"]
        per_image[("gt_verb", "value")] = val
        per_image[("gt_verb", "value_all")] = val_all
        if grounded:
            per_image[("gt_verb", "grnd_value")] = gval
            per_image[("gt_verb", "grnd_value_all")] = gall
    else:
        notes.append("gt_verb setting not reported: no prediction has 'gt_verb_frame'")
    return per_image


def _breakdown_rows(g: _RoleRows, per_image: dict[tuple[str, str], np.ndarray], gt: Mapping[str, Situation],
                    images: list[str], split: Optional[OvSplit], model: str, seed: Optional[int], warn: _Counter,
                    notes: list[str]) -> list[MetricRow]:
    """Means per image and per verb of every (setting, metric), overall and per split breakdown."""
    n = len(images)
    img_verb, verb_ids = g.img_verb, g.verb_ids
    breakdowns: list[tuple[str, np.ndarray]] = [("all", np.ones(n, dtype=bool))]
    if split is not None:
        verb_names = list(verb_ids)
        for name, vs in split.lists().items():
            vset = set(vs)
            in_split = np.array([v in vset for v in verb_names], dtype=bool)
            mask = in_split[img_verb] if n else np.zeros(0, dtype=bool)
            if not mask.any():
                notes.append(f"split {name!r}: no ground-truth images, no rows")
                continue
            breakdowns.append((name, mask))
        listed = {v for vs in split.lists().values() for v in vs}
        unl = [img for img in images if gt[img].verb not in listed]
        for img in unl:
            warn.add("gt_verb_not_in_split", img)
    rows: list[MetricRow] = []
    nv = len(verb_ids)
    for name, mask in breakdowns:
        cnt_v = np.bincount(img_verb[mask], minlength=nv)  # (V,)
        present = cnt_v > 0
        for (setting, metric), vals in per_image.items():
            v_img = vals[mask]
            rows.append(row("gsr", model, name, setting, metric, 100.0 * float(v_img.mean()), seed=seed, mean="image"))
            per_verb = np.bincount(img_verb[mask], weights=v_img, minlength=nv)[present] / cnt_v[present]
            rows.append(row("gsr", model, name, setting, metric, 100.0 * float(per_verb.mean()),
                            seed=seed, mean="verb"))
    return rows


def evaluate_swig(gt: Mapping[str, Situation], preds: Mapping[str, Any], split: Optional[OvSplit] = None,
                  **kwargs: Any) -> list[MetricRow]:
    """Rows of :func:`evaluate_swig_report`; its counted warnings are logged (never silently dropped)."""
    rep = evaluate_swig_report(gt, preds, split, **kwargs)
    for line in rep.warning_lines():
        log.warning(line)
    return rep.rows


# ----------------------------------------------------------------------------------------------- CLI


def format_table(rows: Sequence[MetricRow]) -> str:
    """A short text table: one line per (mean, split, setting), the five metrics as columns."""
    cells: dict[tuple, dict[str, float]] = {}
    for r in rows:
        cells.setdefault((r.mean, r.split, r.setting), {})[r.metric] = r.value
    head = f"{'mean':<6} {'split':<22} {'setting':<8} " + " ".join(f"{m:>14}" for m in METRICS)
    lines = [head, "-" * len(head)]
    for (mean, split, setting), d in cells.items():
        vals = " ".join(f"{d[m]:>14.2f}" if m in d else f"{'-':>14}" for m in METRICS)
        lines.append(f"{mean:<6} {split:<22} {setting:<8} {vals}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``mipd eval-swig --gt GT.json --pred PRED.json [--split OV_SPLIT.json] [--space imsitu_space.json]
    [--model NAME] [--seed S] --out METRICS.json [--merge|--overwrite]``."""
    from mipd_kit.data.swig import load_frame_space, load_situations
    from mipd_kit.eval.cli_io import (USER_ERROR, add_out_arguments, check_matched, check_out, check_report,
                                      read_predictions, write_out, write_report)

    ap = argparse.ArgumentParser(prog="mipd eval-swig",
                                 description="SWiG / Ov-GSR metrics (imSitu / SWiG protocol, per-image and per-verb means).")
    ap.add_argument("--gt", required=True, help="SWiG train/dev/test.json (or imSitu json without boxes)")
    ap.add_argument("--pred", required=True,
                    help='predictions json: {image: {"verbs": [{"verb", "score", "frame"}, ...], "gt_verb_frame"}}')
    ap.add_argument("--split", help="ov_split.json for seen/rare/unseen breakdowns")
    ap.add_argument("--space", help="imsitu_space.json to validate the ground truth against")
    ap.add_argument("--model", default="model", help="model name written into the rows")
    ap.add_argument("--seed", type=int, default=None, help="seed written into the rows")
    add_out_arguments(ap, "merge into an existing metrics.json (same-key rows replaced) instead of refusing it")
    ap.add_argument("--report", help="also write warnings and notes to this JSON file (an existing one needs "
                                     "--overwrite)")
    a = ap.parse_args(list(argv) if argv is not None else None)
    try:
        space = load_frame_space(a.space) if a.space else None
        gt = load_situations(a.gt, space)
        preds = read_predictions(a.pred)
        split = OvSplit.load(a.split) if a.split else None
        check_matched(a.pred, preds, a.gt, gt)
        check_out(a.out, a.merge, a.overwrite)  # inputs first (their errors first), then the outputs
        check_report(a.report, a.overwrite)
        rep = evaluate_swig_report(gt, preds, split, model=a.model, seed=a.seed, space=space, pred_source=a.pred)
        write_out(a.out, rep.rows, a.merge, a.overwrite)
        if a.report:
            write_report(a.report, rep.to_json(), a.overwrite)
    except DataError as e:
        print(f"mipd eval-swig: error: {e}", file=sys.stderr)
        return USER_ERROR
    print(f"{a.gt}: {rep.n_gt} images, {rep.n_pred} predictions, model {a.model!r}")
    print(format_table(rep.rows))
    for line in rep.warning_lines():
        print(line, file=sys.stderr)
    for note in rep.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"wrote {len(rep.rows)} rows to {a.out}")
    return 0
