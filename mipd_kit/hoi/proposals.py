"""Human-object pair proposals for CL-HOI (Cross-Level HOI distillation), label-free.

Two documented modes (docs/methods.md, "Proposal modes"):

* **known boxes** (``known_boxes_proposals``): the ground-truth human and object boxes of each image *without their
  interaction labels* (the standard "known boxes" diagnostic of HOI detection). Only ``filename``, ``width``,
  ``height``, ``boxes_h``, ``boxes_o`` and ``object`` (the object category, which any detector also outputs) are read;
  ``hoi`` and ``verb`` are never touched. Duplicate boxes (HICO-DET repeats a pair once per verb) are merged.
* **detector** (``detector_proposals``): any detector's output in this JSON format::

      {filename: [{"box": [x1, y1, x2, y2], "label": "person" | object name | int (0-based object index),
                   "score": float}, ...]}

  ``"person"`` (or the index of ``"person"`` in the object vocabulary) is a human; a human also serves as an object
  when the vocabulary has ``"person"`` (HICO-DET has person-person interactions). In the embedded mode
  ``jittered_detections`` writes such a file from ground-truth boxes moved by a seeded, relative Gaussian noise, and
  ``proposal_quality`` measures the error of any proposals against the ground truth (pair recall at IoU >= 0.5).

All human x object pairs of an image are proposed (a box is never paired with itself). Images without a human or
without an object, degenerate boxes (x2 <= x1 or y2 <= y1, non-finite), detections below the score threshold and
unknown labels are dropped and counted in ``ProposalStats``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from mipd_kit.data.records import Box, DataError, HOIImage, HOIVocab
# proposal recall is measured in continuous coordinates (no +1), with the one IoU of mipd_kit.eval.boxes
from mipd_kit.eval.boxes import iou_continuous as box_iou

#: Detector label that marks a human.
HUMAN_LABEL = "person"


@dataclass
class PairProposals:
    """Proposed humans, objects and all their pairs in one image (no interaction labels).

    Attributes:
        filename: image file name (relative to the images folder).
        width, height: image size in pixels.
        humans: human boxes ``(x1, y1, x2, y2)``.
        human_scores: detector confidence per human (1.0 for known boxes).
        objects: object boxes.
        object_labels: 0-based object index per object, ``-1`` when unknown (then every HOI is a candidate).
        object_scores: detector confidence per object.
        pairs: ``(human index, object index)`` for every proposed pair.
    """

    filename: str
    width: int
    height: int
    humans: list[Box] = field(default_factory=list)
    human_scores: list[float] = field(default_factory=list)
    objects: list[Box] = field(default_factory=list)
    object_labels: list[int] = field(default_factory=list)
    object_scores: list[float] = field(default_factory=list)
    pairs: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class ProposalStats:
    """Counters of what the proposal step did (reported in the notebook and the run log)."""

    images: int = 0
    images_with_pairs: int = 0
    images_no_human: int = 0
    images_no_object: int = 0
    images_without_detections: int = 0
    humans: int = 0
    objects: int = 0
    pairs: int = 0
    degenerate_boxes: int = 0
    below_threshold: int = 0
    unknown_labels: int = 0
    unknown_images: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def is_valid_box(box: Sequence[float]) -> bool:
    """True for 4 finite numbers with ``x2 > x1`` and ``y2 > y1``."""
    if len(box) != 4:
        return False
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError):
        return False
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return False
    return x2 > x1 and y2 > y1


def _dedupe(boxes: Sequence[Box], labels: Sequence[int], scores: Sequence[float]) -> tuple[list, list, list]:
    """Merge exact duplicates (same rounded box and label), keeping the highest score."""
    seen: dict[tuple, int] = {}
    out_b, out_l, out_s = [], [], []
    for b, l, s in zip(boxes, labels, scores):
        key = (tuple(round(float(v), 2) for v in b), int(l))
        if key in seen:
            j = seen[key]
            out_s[j] = max(out_s[j], float(s))
            continue
        seen[key] = len(out_b)
        out_b.append(tuple(float(v) for v in b))
        out_l.append(int(l))
        out_s.append(float(s))
    return out_b, out_l, out_s


def _make_pairs(p: PairProposals, stats: ProposalStats) -> PairProposals:
    """Fill ``p.pairs`` with every human x object pair (never a box with itself) and count."""
    p.pairs = [(i, j) for i, hb in enumerate(p.humans) for j, ob in enumerate(p.objects)
               if tuple(round(v, 2) for v in hb) != tuple(round(v, 2) for v in ob)]
    stats.images += 1
    stats.humans += len(p.humans)
    stats.objects += len(p.objects)
    stats.pairs += len(p.pairs)
    if not p.humans:
        stats.images_no_human += 1
    if not p.objects:
        stats.images_no_object += 1
    if p.pairs:
        stats.images_with_pairs += 1
    return p


def known_boxes_proposals(images: Sequence[HOIImage], vocab: HOIVocab, *,
                          object_labels: bool = True) -> tuple[list[PairProposals], ProposalStats]:
    """Proposals from ground-truth boxes without interaction labels ("known boxes" mode).

    Reads only ``filename``, ``width``, ``height``, ``boxes_h``, ``boxes_o`` and ``object`` of each image: the
    ``hoi`` and ``verb`` fields are never accessed (tests enforce this).

    Args:
        images: annotated images (HICO-DET instance format records).
        vocab: the HOI vocabulary (only ``objects`` is used).
        object_labels: keep the object category of each object box (as a detector would give); with False
            every object is unlabelled (-1) and every HOI is a candidate for it.

    Returns:
        One ``PairProposals`` per image (same order) and the counters.
    """
    stats = ProposalStats()
    out = []
    person = vocab.objects.index(HUMAN_LABEL) if HUMAN_LABEL in vocab.objects else -1
    for im in images:
        hs, os_, ls = [], [], []
        for b in im.boxes_h:
            if is_valid_box(b):
                hs.append(b)
            else:
                stats.degenerate_boxes += 1
        for b, o in zip(im.boxes_o, im.object):
            if is_valid_box(b):
                os_.append(b)
                ls.append(int(o) if object_labels else -1)
            else:
                stats.degenerate_boxes += 1
        if not object_labels:
            person = -1
        h_b, _, h_s = _dedupe(hs, [person] * len(hs), [1.0] * len(hs))
        o_b, o_l, o_s = _dedupe(os_, ls, [1.0] * len(os_))
        p = PairProposals(im.filename, int(im.width), int(im.height), h_b, h_s, o_b, o_l, o_s)
        out.append(_make_pairs(p, stats))
    return out, stats


def _label_index(label: Any, vocab: HOIVocab, where: str) -> Optional[int]:
    """Object index of a detector label (name or 0-based int); None when unknown."""
    if isinstance(label, bool):
        raise DataError(f"{where}: label must be a string or an int, got {label!r}")
    if isinstance(label, int):
        return label if 0 <= label < len(vocab.objects) else None
    if isinstance(label, str):
        name = label.strip().lower().replace("_", " ")
        for i, o in enumerate(vocab.objects):
            if o.lower().replace("_", " ") == name:
                return i
        return None
    raise DataError(f"{where}: label must be a string or an int, got {label!r}")


def read_detections(path: str | os.PathLike) -> dict[str, list[dict]]:
    """Read a detections JSON file (format in the module docstring), validating its structure."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError as e:
        raise DataError(f"{p}: detections file not found") from e
    except json.JSONDecodeError as e:
        raise DataError(f"{p}: not valid JSON ({e})") from e
    validate_detections(data, str(p))
    return data


def validate_detections(data: Any, source: str = "<detections>") -> None:
    """Raise ``DataError`` naming the file and record when ``data`` is not in the detections format."""
    if not isinstance(data, dict):
        raise DataError(f"{source}: detections must be an object {{filename: [detections]}}")
    for fn, dets in data.items():
        if not isinstance(dets, list):
            raise DataError(f"{source}: record {fn!r} must be a list of detections")
        for k, d in enumerate(dets):
            where = f"{source}: record {fn!r} detection {k}"
            if not isinstance(d, dict) or not {"box", "label", "score"} <= set(d):
                raise DataError(f"{where}: needs keys 'box', 'label', 'score'")
            if not isinstance(d["box"], (list, tuple)) or len(d["box"]) != 4:
                raise DataError(f"{where}: 'box' must be [x1, y1, x2, y2]")
            try:
                float(d["score"])
            except (TypeError, ValueError) as e:
                raise DataError(f"{where}: 'score' must be a number") from e


def detector_proposals(detections: Mapping[str, Sequence[Mapping]] | str | os.PathLike,
                       images: Sequence[tuple[str, int, int]], vocab: HOIVocab, *,
                       score_threshold: float = 0.2, max_humans: int = 10, max_objects: int = 20,
                       source: str = "<detections>") -> tuple[list[PairProposals], ProposalStats]:
    """Proposals from a detector's boxes ("detector" mode).

    Args:
        detections: the detections dict or the path of its JSON file (format in the module docstring).
        images: ``(filename, width, height)`` of every image to propose for; an image absent from the detections
            gets no pairs and is counted in ``images_without_detections``.
        vocab: the HOI vocabulary (object names).
        score_threshold: detections below it are dropped (counted).
        max_humans, max_objects: keep at most this many of each, highest score first.
        source: name used in error messages when ``detections`` is a dict.

    Returns:
        One ``PairProposals`` per image (same order as ``images``) and the counters; detections of files not in
        ``images`` are counted in ``unknown_images``.
    """
    if isinstance(detections, (str, os.PathLike)):
        source = str(detections)
        detections = read_detections(detections)
    else:
        validate_detections(detections, source)
    stats = ProposalStats()
    person = vocab.objects.index(HUMAN_LABEL) if HUMAN_LABEL in vocab.objects else -1
    wanted = {fn for fn, _, _ in images}
    stats.unknown_images = sum(1 for fn in detections if fn not in wanted)
    out = []
    for fn, w, h in images:
        dets = detections.get(fn)
        if dets is None:
            stats.images_without_detections += 1
            dets = []
        hs, hsc, os_, ol, osc = [], [], [], [], []
        for k, d in enumerate(dets):
            where = f"{source}: record {fn!r} detection {k}"
            if not is_valid_box(d["box"]):
                stats.degenerate_boxes += 1
                continue
            score = float(d["score"])
            if score < score_threshold:
                stats.below_threshold += 1
                continue
            lab = d["label"]
            is_human = (isinstance(lab, str) and lab.strip().lower() == HUMAN_LABEL) or \
                (isinstance(lab, int) and not isinstance(lab, bool) and lab == person and person >= 0)
            box = tuple(float(v) for v in d["box"])
            if is_human:
                hs.append(box)
                hsc.append(score)
                if person >= 0:
                    os_.append(box)
                    ol.append(person)
                    osc.append(score)
                continue
            idx = _label_index(lab, vocab, where)
            if idx is None:
                stats.unknown_labels += 1
                continue
            os_.append(box)
            ol.append(idx)
            osc.append(score)
        h_b, _, h_s = _dedupe(hs, [person] * len(hs), hsc)
        o_b, o_l, o_s = _dedupe(os_, ol, osc)
        hi = sorted(range(len(h_b)), key=lambda i: -h_s[i])[:max_humans]
        oi = sorted(range(len(o_b)), key=lambda i: -o_s[i])[:max_objects]
        p = PairProposals(fn, int(w), int(h), [h_b[i] for i in hi], [h_s[i] for i in hi],
                          [o_b[i] for i in oi], [o_l[i] for i in oi], [o_s[i] for i in oi])
        out.append(_make_pairs(p, stats))
    return out, stats


def jittered_detections(images: Sequence[HOIImage], vocab: HOIVocab, *, noise: float = 0.1, seed: int = 0,
                        score_range: tuple[float, float] = (0.5, 1.0)) -> dict[str, list[dict]]:
    """Embedded "detector": ground-truth boxes moved by a seeded relative Gaussian noise, in the detections format.

    Each coordinate moves by ``N(0, noise * box side)``; boxes are clipped to the image and re-ordered, and get a
    random score in ``score_range``. Reads only boxes and object categories (never ``hoi`` / ``verb``). Measure the
    resulting error with ``proposal_quality``.
    """
    rng = np.random.default_rng(seed)
    out: dict[str, list[dict]] = {}

    def jitter(b: Box, w: int, h: int) -> list[float]:
        x1, y1, x2, y2 = (float(v) for v in b)
        bw, bh = x2 - x1, y2 - y1
        d = rng.normal(0.0, noise, 4) * np.array([bw, bh, bw, bh])
        nb = [x1 + d[0], y1 + d[1], x2 + d[2], y2 + d[3]]
        nb = [min(nb[0], nb[2]), min(nb[1], nb[3]), max(nb[0], nb[2]), max(nb[1], nb[3])]
        lim = [w, h, w, h] if w > 0 and h > 0 else [math.inf] * 4
        return [float(min(max(v, 0.0), m)) for v, m in zip(nb, lim)]

    for im in images:
        dets = []
        seen: set[tuple] = set()
        for b in im.boxes_h:
            key = ("h", tuple(round(float(v), 2) for v in b))
            if key in seen or not is_valid_box(b):
                continue
            seen.add(key)
            dets.append({"box": jitter(b, im.width, im.height), "label": HUMAN_LABEL,
                         "score": float(rng.uniform(*score_range))})
        for b, o in zip(im.boxes_o, im.object):
            key = ("o", tuple(round(float(v), 2) for v in b), int(o))
            if key in seen or not is_valid_box(b):
                continue
            if vocab.objects[int(o)] == HUMAN_LABEL and ("h", key[1]) in seen:
                continue  # the human detection already stands for it
            seen.add(key)
            dets.append({"box": jitter(b, im.width, im.height), "label": vocab.objects[int(o)],
                         "score": float(rng.uniform(*score_range))})
        out[im.filename] = dets
    return out


def write_detections(path: str | os.PathLike, detections: Mapping[str, Sequence[Mapping]]) -> None:
    """Write a detections file atomically as strict JSON (NaN / inf -> null)."""
    from mipd_kit.fileio import write_json
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    write_json(p, detections, indent=None)


def proposal_quality(proposals: Sequence[PairProposals], gt_images: Sequence[HOIImage],
                     iou_threshold: float = 0.5) -> dict[str, float]:
    """Measured error of proposals against ground-truth boxes (evaluation only; reads boxes, never labels).

    Returns:
        ``pair_recall``: fraction of distinct ground-truth pairs with a proposed pair whose human and object IoUs
        are both >= ``iou_threshold``; ``human_recall`` / ``object_recall`` likewise per box;
        ``mean_best_iou_h`` / ``mean_best_iou_o``: mean over ground-truth boxes of the best IoU with a proposal;
        ``pairs_per_image``; ``gt_pairs``.
    """
    by_name = {p.filename: p for p in proposals}
    n_pairs = hit_pairs = n_h = hit_h = n_o = hit_o = 0
    sum_h = sum_o = 0.0
    for im in gt_images:
        p = by_name.get(im.filename)
        gt_pairs = {(tuple(map(float, bh)), tuple(map(float, bo))) for bh, bo in zip(im.boxes_h, im.boxes_o)}
        for bh, bo in gt_pairs:
            n_pairs += 1
            if p is not None and any(box_iou(bh, p.humans[i]) >= iou_threshold and
                                     box_iou(bo, p.objects[j]) >= iou_threshold for i, j in p.pairs):
                hit_pairs += 1
        for boxes, props, is_h in ((set(b for b, _ in gt_pairs), p.humans if p else [], True),
                                   (set(b for _, b in gt_pairs), p.objects if p else [], False)):
            for b in boxes:
                best = max((box_iou(b, q) for q in props), default=0.0)
                if is_h:
                    n_h += 1
                    sum_h += best
                    hit_h += best >= iou_threshold
                else:
                    n_o += 1
                    sum_o += best
                    hit_o += best >= iou_threshold
    n_img = max(len(proposals), 1)
    return {
        "pair_recall": hit_pairs / n_pairs if n_pairs else float("nan"),
        "human_recall": hit_h / n_h if n_h else float("nan"),
        "object_recall": hit_o / n_o if n_o else float("nan"),
        "mean_best_iou_h": sum_h / n_h if n_h else float("nan"),
        "mean_best_iou_o": sum_o / n_o if n_o else float("nan"),
        "pairs_per_image": sum(len(p.pairs) for p in proposals) / n_img,
        "gt_pairs": float(n_pairs),
    }
