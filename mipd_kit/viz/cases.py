"""Error cases for the widget inspector: pure data preparation (no widgets, no drawing, no I/O).

``build_cases(gt, predictions, split, rationales)`` turns ground-truth situations (SWiG / imSitu records), SWiG-format
predictions and an open-vocabulary split into one :class:`Case` per test image, with
its primary error type, confidence and a loss proxy; ``filter_cases`` selects and sorts them.

Conventions (the same as the SWiG evaluation, :mod:`mipd_kit.eval.swig`):

- a role's noun is correct when it equals any annotator's noun (the empty noun ``""`` is a value like any other);
- a role's box is correct when both boxes are absent or both present with IoU >= 0.5 (continuous coordinates);
- roles are checked on the top-1 frame when the top-1 verb is right; when it is wrong, on ``gt_verb_frame``
  (the frame predicted given the ground-truth verb) or else the top-5 entry of the ground-truth verb, if any.

Error types, in precedence order (a case's ``error`` is the first that applies; ``errors`` holds all of them):
``verb_wrong`` (top-1 verb is not the ground truth), ``noun_wrong`` (some role's noun wrong),
``box_missing`` (a ground-truth box without a predicted box), ``box_wrong`` (IoU < 0.5, or a box predicted for a
role without one), ``correct``.

Confidence is the top-1 verb's score. The loss proxy is ``-log p(gt verb)`` (scores are used as probabilities when
they lie in [0, 1] and sum to at most 1, else soft-maxed over the listed verbs; a ground-truth verb outside the list
gets p = 1e-4) plus the fraction of roles that are not grounded correctly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

from ..data.records import DataError, Situation
from ..eval.boxes import iou_continuous

ERROR_TYPES: tuple[str, ...] = ("verb_wrong", "noun_wrong", "box_missing", "box_wrong", "correct")
SORT_KEYS: tuple[str, ...] = ("confidence", "loss")
SPLIT_NAMES: tuple[str, ...] = ("seen", "rare", "unseen", "unseen_compositional", "unseen_novel")
IOU_THRESHOLD = 0.5
P_FLOOR = 1e-4

Box = Optional[Sequence[float]]


def iou(a: Box, b: Box) -> float:
    """IoU of two ``[x1, y1, x2, y2]`` boxes, continuous coordinates (no +1, as the SWiG evaluation); 0 when one is
    absent. The formula is :func:`mipd_kit.eval.boxes.iou_continuous`."""
    if a is None or b is None:
        return 0.0
    return iou_continuous(a, b)


def split_tags(split: Any, verb: str) -> tuple[str, ...]:
    """Split names a verb belongs to, e.g. ``("unseen", "unseen_novel")``; ``()`` without a split.

    ``split`` is an ``OvSplit`` (``.of(verb)`` and ``.extra``) or the ``ov_split.json`` mapping.
    """
    if split is None:
        return ()
    tags: list[str] = []
    if hasattr(split, "of"):
        try:
            tags.append(str(split.of(verb)))
        except (KeyError, ValueError):
            tags.append("unknown")
        extra = getattr(split, "extra", None) or {}
        tags += [k for k, v in extra.items() if isinstance(v, (list, tuple, set)) and verb in v]
        return tuple(dict.fromkeys(tags))
    if isinstance(split, Mapping):
        for k in ("seen", "rare", "unseen"):
            if verb in (split.get(k) or ()):
                tags.append(k)
        if not tags:
            tags.append("unknown")
        tags += [k for k, v in split.items() if k.startswith("unseen_") and isinstance(v, list) and verb in v]
        return tuple(dict.fromkeys(tags))
    raise TypeError(f"split must be an OvSplit or a mapping, got {type(split).__name__}")


def load_split(path: str | Path) -> Any:
    """The ``OvSplit`` of an ``ov_split.json`` file."""
    from ..data.splits import OvSplit

    return OvSplit.load(path)


def load_situations(path: str | Path) -> dict[str, Situation]:
    """SWiG / imSitu annotations -> ``{image: Situation}`` (``mipd_kit.data.swig.load_situations``)."""
    from ..data.swig import load_situations as _load

    return _load(path)


@dataclass(frozen=True)
class RoleCheck:
    """One role of one case.

    Attributes:
        role: role name.
        gt_nouns: the annotators' nouns (deduplicated, annotator order).
        gt_box: ground-truth box or None.
        pred_noun: predicted noun, None when the role is missing from the predicted frame.
        pred_box: predicted box or None.
        noun_ok: noun equals one of ``gt_nouns``.
        box_ok: grounding correct (None when the annotation has no boxes at all).
        iou: IoU of the two boxes (0 when one is absent).
    """

    role: str
    gt_nouns: tuple[str, ...]
    gt_box: Optional[tuple[float, ...]]
    pred_noun: Optional[str]
    pred_box: Optional[tuple[float, ...]]
    noun_ok: bool
    box_ok: Optional[bool]
    iou: float

    @property
    def grounded_ok(self) -> bool:
        return self.noun_ok and self.box_ok is not False


@dataclass(frozen=True)
class Case:
    """One test image as the inspector shows it."""

    image: str
    gt_verb: str
    pred_verb: Optional[str]
    split: str
    split_tags: tuple[str, ...]
    error: str
    errors: tuple[str, ...]
    confidence: float
    loss: float
    p_gt: float
    top5: tuple[tuple[str, float], ...]
    roles: tuple[RoleCheck, ...]
    frame_source: Optional[str]
    width: int = 0
    height: int = 0
    rationales: Optional[dict[str, Any]] = field(default=None, compare=False)
    display_frame: dict[str, dict[str, Any]] = field(default_factory=dict, compare=False)

    def gt_frame(self) -> dict[str, dict[str, Any]]:
        """``{role: {"noun", "box"}}`` of the ground truth (first annotator's noun)."""
        return {r.role: {"noun": r.gt_nouns[0] if r.gt_nouns else "", "box": list(r.gt_box) if r.gt_box else None}
                for r in self.roles}

    def pred_frame(self) -> dict[str, dict[str, Any]]:
        """``{role: {"noun", "box"}}`` of the predicted frame on display: the checked frame, or the top-1 frame
        when the verb is wrong and no frame of the ground-truth verb was predicted (``frame_source`` None)."""
        if self.frame_source is None:
            return {r: dict(e) for r, e in self.display_frame.items()}
        return {r.role: {"noun": r.pred_noun, "box": list(r.pred_box) if r.pred_box else None}
                for r in self.roles if r.pred_noun is not None}


def _verb_probs(verbs: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    scores = [float(v.get("score", 0.0)) for v in verbs]
    if not scores:
        return {}
    if all(0.0 <= s <= 1.0 for s in scores) and sum(scores) <= 1.0 + 1e-6:
        probs = scores
    else:
        m = max(scores)
        ex = [math.exp(s - m) for s in scores]
        z = sum(ex)
        probs = [e / z for e in ex]
    out: dict[str, float] = {}
    for v, p in zip(verbs, probs):
        out.setdefault(str(v["verb"]), p)
    return out


def _box(b: Any, where: str) -> Optional[tuple[float, ...]]:
    if b is None:
        return None
    try:
        t = tuple(float(x) for x in b)
    except (TypeError, ValueError) as e:
        raise DataError(f"{where}: box {b!r} is not [x1, y1, x2, y2]") from e
    if len(t) != 4:
        raise DataError(f"{where}: box {b!r} is not [x1, y1, x2, y2]")
    if t == (-1.0, -1.0, -1.0, -1.0):
        return None
    return t


def _check_roles(sit: Situation, frame: Optional[Mapping[str, Any]], where: str) -> tuple[RoleCheck, ...]:
    roles = list(dict.fromkeys([r for f in sit.frames for r in f] + list(sit.boxes)))
    has_boxes = bool(sit.boxes)
    out = []
    for role in roles:
        gt_nouns = tuple(dict.fromkeys(f.get(role, "") for f in sit.frames))
        gt_box = sit.boxes.get(role) if has_boxes else None
        gt_box = tuple(float(x) for x in gt_box) if gt_box is not None else None
        entry = frame.get(role) if frame is not None else None
        if entry is not None and not isinstance(entry, Mapping):
            raise DataError(f"{where}: role {role!r} must be {{'noun': str, 'box': [..]|null}}, got {entry!r}")
        pred_noun = None if entry is None else str(entry.get("noun", ""))
        pred_box = None if entry is None else _box(entry.get("box"), f"{where} role {role!r}")
        noun_ok = pred_noun is not None and pred_noun in gt_nouns
        if not has_boxes:
            box_ok: Optional[bool] = None
        elif gt_box is None and pred_box is None:
            box_ok = entry is not None
        else:
            box_ok = iou(gt_box, pred_box) >= IOU_THRESHOLD if gt_box is not None and pred_box is not None else False
        out.append(RoleCheck(role, gt_nouns, gt_box, pred_noun, pred_box, noun_ok, box_ok, iou(gt_box, pred_box)))
    return tuple(out)


def _rationale_texts(entry: Any) -> Optional[dict[str, Any]]:
    """Normalise one image's ``collect()`` entry to plain strings."""
    if entry is None:
        return None

    def texts(xs: Any) -> list[str]:
        out = []
        for x in xs or ():
            if isinstance(x, str):
                out.append(x)
            elif isinstance(x, Mapping):
                out.append(str(x.get("text", "")))
            else:
                out.append(str(getattr(x, "text", x)))
        return out

    glimpse = entry.get("glimpse") or {}
    gaze = entry.get("gaze") or {}
    return {
        "glimpse": {"positive": texts(glimpse.get("positive")), "negative": texts(glimpse.get("negative"))},
        "gaze": {role: {"positive": texts(d.get("positive")), "negative": texts(d.get("negative"))}
                 for role, d in gaze.items()},
    }


def build_cases(gt: Mapping[str, Situation], predictions: Mapping[str, Any], split: Any = None,
                rationales: Optional[Mapping[str, Any]] = None) -> list[Case]:
    """One :class:`Case` per ground-truth image (in ``gt`` order).

    Args:
        gt: image -> ground-truth situation.
        predictions: SWiG-format predictions (images absent from ``gt`` are ignored; a gt image without a
            prediction is a ``verb_wrong`` case with no predicted verb).
        split: ``OvSplit`` or ``ov_split.json`` mapping (None: no split tags).
        rationales: ``mipd_kit.rationales.store.collect()`` output, or None.

    Raises:
        DataError: a malformed prediction (names the image).
    """
    cases = []
    for img, sit in gt.items():
        where = f"predictions[{img!r}]"
        pred = predictions.get(img)
        if pred is None:
            verbs: list[Mapping[str, Any]] = []
            gt_verb_frame = None
        else:
            if not isinstance(pred, Mapping) or not isinstance(pred.get("verbs"), list):
                raise DataError(f"{where}: expected {{'verbs': [{{'verb', 'score', 'frame'}}, ...]}}")
            verbs = pred["verbs"]
            for i, v in enumerate(verbs):
                if not isinstance(v, Mapping) or "verb" not in v:
                    raise DataError(f"{where}.verbs[{i}]: expected {{'verb': str, 'score': float, 'frame': {{..}}}}")
            gt_verb_frame = pred.get("gt_verb_frame")
        probs = _verb_probs(verbs)
        pred_verb = str(verbs[0]["verb"]) if verbs else None
        confidence = float(verbs[0].get("score", 0.0)) if verbs else 0.0
        errors: list[str] = []
        if pred_verb == sit.verb:
            frame, source = verbs[0].get("frame") or {}, "top1"
        else:
            errors.append("verb_wrong")
            gt_entry = next((v for v in verbs if v["verb"] == sit.verb), None)
            if gt_verb_frame is not None:
                frame, source = gt_verb_frame, "gt_verb_frame"
            elif gt_entry is not None:
                frame, source = gt_entry.get("frame") or {}, "top5"
            else:
                frame, source = None, None
        if frame is not None and not isinstance(frame, Mapping):
            raise DataError(f"{where}: frame must be a mapping role -> {{noun, box}}")
        roles = _check_roles(sit, frame, where)
        if frame is not None:
            if any(not r.noun_ok for r in roles):
                errors.append("noun_wrong")
            if any(r.gt_box is not None and r.pred_box is None for r in roles):
                errors.append("box_missing")
            if any(r.box_ok is False and not (r.gt_box is not None and r.pred_box is None) for r in roles):
                errors.append("box_wrong")
        if not errors:
            errors.append("correct")
        p_gt = probs.get(sit.verb, P_FLOOR)
        bad_roles = sum(not r.grounded_ok for r in roles) / len(roles) if roles else 0.0
        if frame is None:
            bad_roles = 1.0 if roles else 0.0
        loss = -math.log(max(p_gt, P_FLOOR)) + bad_roles
        tags = split_tags(split, sit.verb)
        display: dict[str, dict[str, Any]] = {}
        if frame is None and verbs and isinstance(verbs[0].get("frame"), Mapping):
            for role, e in verbs[0]["frame"].items():
                if isinstance(e, Mapping):
                    b = _box(e.get("box"), f"{where} role {role!r}")
                    display[str(role)] = {"noun": str(e.get("noun", "")), "box": list(b) if b else None}
        cases.append(Case(
            image=img, gt_verb=sit.verb, pred_verb=pred_verb, split=tags[0] if tags else "all", split_tags=tags,
            error=errors[0], errors=tuple(errors), confidence=confidence, loss=loss, p_gt=p_gt,
            top5=tuple((str(v["verb"]), float(v.get("score", 0.0))) for v in verbs[:5]), roles=roles,
            frame_source=source, width=sit.width, height=sit.height,
            rationales=_rationale_texts(rationales.get(img)) if rationales else None, display_frame=display,
        ))
    return cases


def filter_cases(cases: Iterable[Case], split: Optional[str] = None, verb: Optional[str] = None,
                 error: Optional[str] = None, sort_by: str = "confidence", descending: bool = True) -> list[Case]:
    """Select and sort cases.

    Args:
        split: keep cases whose verb is in this split (``seen``, ``rare``, ``unseen``, ``unseen_novel``, ...);
            None or ``"all"`` keeps all.
        verb: keep cases of this ground-truth verb (None / ``"all"``: all).
        error: keep cases that have this error among their errors (``correct`` only matches correct cases).
        sort_by: ``"confidence"`` (top-1 score) or ``"loss"`` (loss proxy).
        descending: highest first (confident mistakes / highest losses first).

    Raises:
        ValueError: unknown error type or sort key (naming the choices).
    """
    if error not in (None, "all") and error not in ERROR_TYPES:
        raise ValueError(f"error must be one of {ERROR_TYPES} (or None), got {error!r}")
    if sort_by not in SORT_KEYS:
        raise ValueError(f"sort_by must be one of {SORT_KEYS}, got {sort_by!r}")
    out = [c for c in cases
           if (split in (None, "all") or split in c.split_tags)
           and (verb in (None, "all") or c.gt_verb == verb)
           and (error in (None, "all") or error in c.errors)]
    out.sort(key=lambda c: (getattr(c, sort_by), c.image), reverse=descending)
    return out


def summarize(cases: Iterable[Case]) -> dict[str, dict[str, int]]:
    """Counts of primary error types per split tag (``all`` included)."""
    out: dict[str, dict[str, int]] = {}
    for c in cases:
        for tag in ("all", *c.split_tags):
            d = out.setdefault(tag, {e: 0 for e in ERROR_TYPES})
            d[c.error] += 1
    return out


# -- two models, one image ------------------------------------------------------------------------------------------
#: contrast filters of a :class:`PairCase` list (A and B are the two models compared; "right": top-1 verb correct).
CONTRASTS: tuple[str, ...] = ("all", "a_right_b_wrong", "a_wrong_b_right", "both_wrong", "both_right")


#: prediction files of the HOI stage (HICO-DET and V-COCO formats) in ``predictions/``.
HOI_PREDICTION_PREFIXES: tuple[str, ...] = ("hoi-", "vcoco-")


def prediction_models(run_dir: str | Path) -> dict[str, list[int]]:
    """The GSR models of a run and their seeds, read from the file names ``predictions/<model>-seed<k>.json``
    (HOI files, :data:`HOI_PREDICTION_PREFIXES`, excluded): what the comparison inspector offers, whatever rows the
    run has."""
    import re

    out: dict[str, list[int]] = {}
    folder = Path(run_dir) / "predictions"
    for p in sorted(folder.glob("*-seed*.json")) if folder.is_dir() else []:
        m = re.fullmatch(r"(.+)-seed(\d+)\.json", p.name)
        if m and not m.group(1).startswith(HOI_PREDICTION_PREFIXES):
            out.setdefault(m.group(1), []).append(int(m.group(2)))
    return {k: sorted(v) for k, v in out.items()}


@dataclass(frozen=True)
class PairCase:
    """One test image under two models (``a`` and ``b``: their :class:`Case`)."""

    a: Case
    b: Case

    @property
    def image(self) -> str:
        return self.a.image

    @property
    def gt_verb(self) -> str:
        return self.a.gt_verb

    @property
    def split_tags(self) -> tuple[str, ...]:
        return self.a.split_tags

    @property
    def contrast(self) -> str:
        """``a_right_b_wrong``, ``a_wrong_b_right``, ``both_wrong`` or ``both_right`` (top-1 verb)."""
        ra, rb = self.a.pred_verb == self.a.gt_verb, self.b.pred_verb == self.b.gt_verb
        return {(True, False): "a_right_b_wrong", (False, True): "a_wrong_b_right",
                (False, False): "both_wrong", (True, True): "both_right"}[(ra, rb)]


def pair_cases(a: Iterable[Case], b: Iterable[Case]) -> list[PairCase]:
    """The images that both case lists hold, in ``a``'s order."""
    by_image = {c.image: c for c in b}
    return [PairCase(c, by_image[c.image]) for c in a if c.image in by_image]


def filter_pairs(pairs: Iterable[PairCase], split: Optional[str] = None, verb: Optional[str] = None,
                 contrast: Optional[str] = None) -> list[PairCase]:
    """Select pairs by split tag, gold verb and contrast (None / ``"all"``: no constraint); confident mistakes of
    ``b`` first (then ``a``'s), image name last.

    Raises:
        ValueError: unknown contrast (naming the choices).
    """
    if contrast not in (None, *CONTRASTS):
        raise ValueError(f"contrast must be one of {CONTRASTS}, got {contrast!r}")
    out = [p for p in pairs
           if (split in (None, "all") or split in p.split_tags) and (verb in (None, "all") or p.gt_verb == verb)
           and (contrast in (None, "all") or p.contrast == contrast)]
    out.sort(key=lambda p: (-p.b.confidence, -p.a.confidence, p.image))
    return out


def verb_confusion(cases: Iterable[Case], split: Optional[str] = "unseen") -> dict[tuple[str, str], int]:
    """``{(gold verb, predicted top-1 verb): count}`` over the cases of ``split`` (None / ``"all"``: all),
    largest cell first (``"(none)"`` when nothing was predicted)."""
    counts: dict[tuple[str, str], int] = {}
    for c in cases:
        if split in (None, "all") or split in c.split_tags:
            key = (c.gt_verb, c.pred_verb or "(none)")
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def cell_cases(cases: Iterable[Case], gt_verb: str, pred_verb: str, split: Optional[str] = "unseen") -> list[Case]:
    """The cases of one confusion cell (same selection as :func:`verb_confusion`), most confident first."""
    out = [c for c in cases if c.gt_verb == gt_verb and (c.pred_verb or "(none)") == pred_verb
           and (split in (None, "all") or split in c.split_tags)]
    return sorted(out, key=lambda c: (-c.confidence, c.image))


def training_rationales(records: Iterable[Any], train_verbs: Mapping[str, str], verb: str,
                        limit: int = 6) -> dict[str, list[dict[str, Any]]]:
    """The judged rationales of the training images of ``verb`` (what a student was distilled from for it):
    ``{"positive": [...], "negative": [...]}``, each item ``{image, kind, role, text, score}``, at most ``limit``
    per polarity (positives by score high first, negatives low first).

    Args:
        records: ``mipd_kit.rationales.store.Rationale`` records (or mappings with the same fields).
        train_verbs: training image -> its gold verb.
    """
    def get(r: Any, k: str) -> Any:
        return r.get(k) if isinstance(r, Mapping) else getattr(r, k, None)

    out: dict[str, list[dict[str, Any]]] = {"positive": [], "negative": []}
    for r in records:
        pol = get(r, "polarity")
        if pol in out and train_verbs.get(get(r, "image")) == verb:
            out[pol].append({"image": get(r, "image"), "kind": get(r, "kind"), "role": get(r, "role"),
                             "text": get(r, "text"), "score": get(r, "score")})
    for pol, items in out.items():
        items.sort(key=lambda d: ((-1 if pol == "positive" else 1) * (d["score"] if d["score"] is not None else 0.0),
                                  d["image"]))
        out[pol] = items[:limit]
    return out


def case_rows(cases: Iterable[Case | PairCase], names: tuple[str, str] = ("a", "b")) -> list[dict[str, Any]]:
    """Flat rows of a case list (one per image) for an export: image, gold verb, split, and per model its top-1
    verb, score and primary error (a :class:`PairCase` gives both models, prefixed with ``names``)."""
    rows = []
    for c in cases:
        if isinstance(c, PairCase):
            row = {"image": c.image, "gt_verb": c.gt_verb, "split": "/".join(c.split_tags), "contrast": c.contrast}
            for n, x in zip(names, (c.a, c.b)):
                row.update({f"{n}_pred_verb": x.pred_verb, f"{n}_confidence": round(x.confidence, 4),
                            f"{n}_error": x.error})
        else:
            row = {"image": c.image, "gt_verb": c.gt_verb, "split": "/".join(c.split_tags), "pred_verb": c.pred_verb,
                   "confidence": round(c.confidence, 4), "error": c.error}
        rows.append(row)
    return rows


def export_cases(cases: Iterable[Case | PairCase], path: str | Path, names: tuple[str, str] = ("a", "b")) -> Path:
    """Write :func:`case_rows` to ``path`` (:func:`write_case_list`). Returns it."""
    return write_case_list(case_rows(cases, names), path)


def write_case_list(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """A case list for a paper figure: CSV for ``.csv``, else JSON (a list of objects); atomic. Returns the path."""
    import csv
    import io
    import json

    from ..fileio import atomic_write_text
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix.lower() == ".csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["image"])
        w.writeheader()
        w.writerows(rows)
        text = buf.getvalue()
    else:
        text = json.dumps(list(rows), indent=1) + "\n"
    atomic_write_text(p, text)
    return p
