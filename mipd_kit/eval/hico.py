"""HICO-DET mAP, exactly by the dataset authors' official MATLAB evaluation (fast, vectorised numpy path).

Protocol (Chao et al., "Learning to Detect Human-Object Interactions", WACV 2018; ``evaluation/eval_one.m`` and
``VOCevaldet_bboxpair.m`` in ywchao/ho-rcnn), ``protocol="official"``:

1. For each HOI class, all its detections over the evaluated images are sorted by score, descending (a stable
   sort: ties keep the order images have in the ground truth, then the order within an image's prediction list,
   as MATLAB's ``sort`` does).
2. Each detection is compared with every ground-truth pair of that HOI in its image; overlap =
   ``min(IoU_human, IoU_object)`` with the **+1-pixel** formula (``w = x2 - x1 + 1``; no overlap unless the +1
   intersection width and height are both > 0). It takes the ground-truth pair with the highest overlap (the
   first one on ties), whether or not that pair is already matched.
3. True positive if that overlap is >= 0.5 and that pair is not yet matched (it becomes matched); otherwise
   false positive (a duplicate detection of a matched pair is a false positive). A detection in an image with
   no ground truth of its HOI is a false positive.
4. AP is the **11-point interpolated** AP: for t in MATLAB's ``0:0.1:1`` (the colon operator's values: 0, 0.1,
   0.2, 0.30000000000000004, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1), the maximum precision at recall >= t (0 if none),
   summed as ``ap += p / 11``.
5. mAP over Full (every HOI of the vocabulary: 600 for HICO-DET), Rare and Non-rare (the vocabulary's lists).

Settings: ``default`` (all test images) and ``known_object`` (for each HOI only the detections in images
annotated with its object). The official code takes these images from HICO's image-level labels
(``anno_test == 1`` for any HOI of the object); the instance format carries only box-level pairs, so here an
image is "annotated with object o" when it has at least one ground-truth pair of an HOI with object o. (HICO
images whose only label for the object is a pair marked invisible are therefore not in the known-object set.)

Zero-shot: for a list of unseen HOIs, Unseen / Seen (= all others) / Full means, in both settings.

``protocol="continuous"``: the variant common in PyTorch detection code: all-point AP (VOC2010+, the area under
the monotone precision envelope) and IoU in continuous coordinates (no +1); the matching rule (best pair by min
IoU, then TP only if that pair is free) is the same. Its rows carry the metric name ``map_continuous`` (the
official protocol's rows are ``map``), so the two are never mixed up.

``protocol="qpic"`` (metric ``map_qpic``) follows the IoU and AP conventions of QPIC's ``datasets/hico_eval.py``,
which many later code bases (e.g. CDN, GEN-VLKT) copy: +1-pixel areas but no overlap unless the raw intersection
is positive (boxes that only share an edge, x2 of one == x1 of the other, overlap by one pixel column under
MATLAB's rule, not under QPIC's), and 11-point AP over ``np.arange(0., 1.1, 0.1)``, whose 0.6 and 0.7 are
0.6000000000000001 and 0.7000000000000001 (a recall of exactly 3/5 or 7/10 does not reach them, unlike in
MATLAB). Its matching rule is equivalent to the official one; score ties, which QPIC's unstable ``np.argsort``
leaves unspecified, are broken as in the official protocol.

HOIs with **no ground-truth pair** in the evaluated images have no defined recall. (The MATLAB code divides by
``npos = 0``, its comparisons with NaN are false and it reports AP 0; Python ports differ.) Here their
AP is NaN, they are **excluded from every mean**, and the rows ``n_hoi`` / ``n_hoi_no_gt`` count the HOIs averaged
and excluded per split. On the real HICO-DET test set every one of the 600 HOIs has ground truth.

Predictions (HICO-DET prediction format): ``{filename: [{"hoi": int, "box_h": [x1,y1,x2,y2], "box_o": [...],
"score": float}]}``, ``"verb"`` + ``"object"`` accepted instead of ``"hoi"``. Predictions for images not in the
ground truth, for unknown HOIs / (verb, object) combinations, with boxes x2 < x1 or outside the image are
**counted** as warnings (rows ``warn_*``, and on stderr in the CLI); unknown images/HOIs are not scored, odd boxes are
scored as given. Missing keys and non-finite numbers raise :class:`DataError` naming the file and record.

For large files, the same predictions can be stored as ``.npz`` (:func:`save_predictions_npz`; arrays
``filenames``, ``image``, ``hoi``, ``box_h``, ``box_o``, ``score``): parsing a 100 MB JSON file costs seconds of
Python ``json`` time, the ``.npz`` loads in milliseconds and gives identical rows. In-process callers can also pass
:class:`PredictionArrays` directly.

The pure-Python reference that mirrors the MATLAB loop is :mod:`mipd_kit.eval.hico_reference`; a parity test
checks the two agree. CLI: ``mipd eval-hico --gt GT.json --pred PRED.json|.npz [--vocab INSTANCES.json]
[--setting default|known_object|both] [--zero-shot NAME|FILE.json:key] [--splits FILE] [--protocol
official|continuous|qpic|both|all] --out METRICS.json [--merge|--overwrite]``; without ``--setting`` both settings
are reported. An existing ``--out`` is never replaced silently (:mod:`mipd_kit.eval.cli_io`); user errors exit 2.

The protocol stays in one file (about 640 lines) so that it reads beside the reference MATLAB (``eval_one.m``,
``VOCevaldet_bboxpair.m``), step by step.
"""

from __future__ import annotations

import argparse
import os
import sys
import zipfile
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from mipd_kit.data.records import DataError, HOIImage, HOIVocab
from mipd_kit.fileio import atomic_open
from mipd_kit.metrics import MetricRow, row

from .boxes import paired_iou

MIN_OVERLAP = 0.5
#: MATLAB ``0:0.1:1`` (the colon operator builds the first half as k*0.1, the middle as (0+1)/2 and the second
#: half as 1-(10-k)*0.1, so 0.3 is 0.30000000000000004 but 0.6 and 0.7 are exact).
MATLAB_THRESHOLDS: tuple[float, ...] = tuple(
    k * 0.1 if k < 5 else (0.5 if k == 5 else 1.0 - (10 - k) * 0.1) for k in range(11))
SETTINGS = ("default", "known_object")
#: ``np.arange(0., 1.1, 0.1)`` as used by QPIC-family evaluators: 0.6000000000000001 and 0.7000000000000001
NUMPY_THRESHOLDS: tuple[float, ...] = tuple(float(t) for t in np.arange(0.0, 1.1, 0.1))
PROTOCOLS = ("official", "continuous", "qpic")
METRIC_OF_PROTOCOL = {"official": "map", "continuous": "map_continuous", "qpic": "map_qpic"}
WARNING_KINDS = ("unknown_image", "unknown_image_detections", "unknown_hoi", "degenerate_box", "box_outside_image",
                 "gt_image_without_predictions")


# ----------------------------------------------------------------------------------------------- predictions

@dataclass
class PredictionArrays:
    """Detections as flat arrays, in the MATLAB concatenation order (ground-truth image order, then list order)."""

    image: np.ndarray      # (D,) int64, index into the ground-truth images
    hoi: np.ndarray        # (D,) int64
    boxes: np.ndarray      # (D, 8) float64: human x1,y1,x2,y2 then object x1,y1,x2,y2
    score: np.ndarray      # (D,) float64
    warnings: dict[str, int] = field(default_factory=dict)


def load_predictions(path: str | os.PathLike) -> dict:
    """Read a predictions JSON file (``{filename: [detections]}``) strictly: a duplicated image key, a binary or
    truncated file raise ``DataError`` naming the file (:func:`mipd_kit.eval.cli_io.read_predictions`)."""
    from mipd_kit.eval.cli_io import read_predictions
    return read_predictions(path)


def _validate_detection(det: Any, where: str) -> None:
    """Raise a DataError naming the record when one detection is malformed."""
    if not isinstance(det, dict):
        raise DataError(f"{where}: a detection must be an object, got {type(det).__name__}")
    if "hoi" not in det and not ("verb" in det and "object" in det):
        raise DataError(f"{where}: detection needs 'hoi' or both 'verb' and 'object'")
    for k in ("box_h", "box_o", "score"):
        if k not in det:
            raise DataError(f"{where}: detection lacks key {k!r}")
    from mipd_kit.eval.cli_io import is_real
    for k in ("box_h", "box_o"):
        b = det[k]
        if not isinstance(b, (list, tuple)) or len(b) != 4:
            raise DataError(f"{where}: {k} must be [x1, y1, x2, y2], got {b!r}")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in b):
            raise DataError(f"{where}: {k} has a non-numeric coordinate (numbers only, no strings or booleans): {b!r}")
        if not all(is_real(v) for v in b):
            raise DataError(f"{where}: {k} has a non-finite coordinate: {b!r}")
    s = det["score"]
    if isinstance(s, bool) or not isinstance(s, (int, float)):
        raise DataError(f"{where}: score must be a number (not a string or boolean), got {s!r}")
    if not is_real(s):
        raise DataError(f"{where}: score must be finite, got {s!r}")
    for k in ("hoi", "verb", "object"):
        if k in det and (not is_real(det[k]) or int(det[k]) != det[k] or abs(det[k]) >= 2**62):
            raise DataError(f"{where}: {k} must be an integer index, got {det[k]!r}"[:300])


def prediction_arrays(preds: dict, images: Sequence[HOIImage], vocab: HOIVocab,
                      src: str = "predictions") -> PredictionArrays:
    """Convert a predictions dict to flat arrays, counting (not dropping silently) unknown images and HOIs.

    Raises:
        DataError: a malformed detection (missing key, non-numeric or non-finite value), naming ``src``,
            the image and the detection index.
    """
    if not isinstance(preds, dict):
        raise DataError(f"{src}: predictions must be an object {{filename: [detections]}}")
    index = {im.filename: i for i, im in enumerate(images)}
    warn = dict.fromkeys(WARNING_KINDS, 0)
    per_image: list[Optional[list]] = [None] * len(images)
    for name, dets in preds.items():
        if not isinstance(dets, list):
            raise DataError(f"{src}: image {name!r}: detections must be a list")
        i = index.get(name)
        if i is None:
            warn["unknown_image"] += 1
            warn["unknown_image_detections"] += len(dets)
            continue
        per_image[i] = dets
    warn["gt_image_without_predictions"] = sum(1 for d in per_image if d is None)
    counts = np.array([len(d) if d else 0 for d in per_image], dtype=np.int64)
    flat = [det for d in per_image if d for det in d]
    img = np.repeat(np.arange(len(images), dtype=np.int64), counts)
    try:  # fast path; on any failure the slow loop below finds and names the bad record
        n = len(flat)
        raw_score = [det["score"] for det in flat]
        if not set(map(type, raw_score)) <= {int, float}:  # a string or bool would convert silently below
            raise TypeError("score type")
        score = np.array(raw_score, dtype=np.float64)
        boxes = np.empty((n, 8), dtype=np.float64)
        for col, key in ((0, "box_h"), (4, "box_o")):
            lst = [det[key] for det in flat]
            if n and set(map(len, lst)) != {4}:
                raise ValueError("box length")
            if not set(map(type, chain.from_iterable(lst))) <= {int, float}:
                raise TypeError("box type")
            boxes[:, col:col + 4] = np.fromiter(chain.from_iterable(lst), np.float64, 4 * n).reshape(n, 4)
        hoi_list = [det.get("hoi") for det in flat]
        if set(map(type, hoi_list)) <= {int}:
            hoi = np.array(hoi_list, dtype=np.int64)
        else:
            hoi = _hoi_from_pairs(flat, vocab)
        if not (np.isfinite(score).all() and np.isfinite(boxes).all()):
            raise ValueError("non-finite")
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError):
        for i, d in enumerate(per_image):               # slow path: name the first bad record, or convert
            for j, det in enumerate(d or []):
                _validate_detection(det, f"{src}: image {images[i].filename!r} detection {j}")
        score = np.array([float(det["score"]) for det in flat], dtype=np.float64)
        boxes = np.array([[float(v) for v in det["box_h"]] + [float(v) for v in det["box_o"]] for det in flat],
                         dtype=np.float64).reshape(-1, 8)
        hoi = _hoi_from_pairs(flat, vocab)
    return _finish_arrays(img, hoi, boxes, score, warn, images, vocab)


def _finish_arrays(img: np.ndarray, hoi: np.ndarray, boxes: np.ndarray, score: np.ndarray, warn: dict[str, int],
                   images: Sequence[HOIImage], vocab: HOIVocab) -> PredictionArrays:
    """Drop (and count) unknown HOIs; count degenerate and outside-image boxes (kept and scored as given)."""
    known = (hoi >= 0) & (hoi < vocab.num_hoi)
    warn["unknown_hoi"] = int((~known).sum())
    img, hoi, boxes, score = img[known], hoi[known], boxes[known], score[known]
    degenerate = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]) | \
                 (boxes[:, 6] < boxes[:, 4]) | (boxes[:, 7] < boxes[:, 5])
    warn["degenerate_box"] = int(degenerate.sum())
    w = np.array([im.width for im in images], dtype=np.float64)[img]
    h = np.array([im.height for im in images], dtype=np.float64)[img]
    outside = (boxes[:, [0, 1, 4, 5]] < 0).any(1)
    has_size = (w > 0) & (h > 0)
    outside |= has_size & ((boxes[:, 2] > w) | (boxes[:, 6] > w) | (boxes[:, 3] > h) | (boxes[:, 7] > h))
    warn["box_outside_image"] = int(outside.sum())
    return PredictionArrays(img, hoi, boxes, score, warn)


NPZ_KEYS = ("filenames", "image", "hoi", "box_h", "box_o", "score")


def save_predictions_npz(path: str | os.PathLike, preds: dict) -> None:
    """Write predictions (the JSON contract's dict, with ``"hoi"``) as a uncompressed ``.npz`` container that
    loads in milliseconds: ``filenames`` (F,) str, ``image`` (D,) index into ``filenames``, ``hoi`` (D,),
    ``box_h`` / ``box_o`` (D, 4), ``score`` (D,). Detections keep their per-image order."""
    names = list(preds)
    counts = [len(preds[n]) for n in names]
    flat = [d for n in names for d in preds[n]]
    arrays = {
        "filenames": np.array(names, dtype=str),
        "image": np.repeat(np.arange(len(names), dtype=np.int64), counts),
        "hoi": np.array([d["hoi"] for d in flat], dtype=np.int64),
        "box_h": np.array([d["box_h"] for d in flat], dtype=np.float64).reshape(-1, 4),
        "box_o": np.array([d["box_o"] for d in flat], dtype=np.float64).reshape(-1, 4),
        "score": np.array([d["score"] for d in flat], dtype=np.float64),
    }
    p = Path(path)
    with atomic_open(p, "wb") as f:
        np.savez(f, **arrays)


def load_predictions_npz(path: str | os.PathLike, images: Sequence[HOIImage], vocab: HOIVocab) -> PredictionArrays:
    """Read a ``.npz`` predictions container (see :func:`save_predictions_npz`) into arrays in MATLAB order."""
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in NPZ_KEYS if k not in z.files]
            if missing:
                raise DataError(f"{path}: npz predictions lack arrays {missing}")
            names, image, hoi = z["filenames"].astype(str), z["image"].astype(np.int64), z["hoi"].astype(np.int64)
            bh, bo, score = z["box_h"].astype(np.float64), z["box_o"].astype(np.float64), z["score"].astype(np.float64)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable npz predictions file ({type(e).__name__}: {e})") from e
    n = len(score)
    if not (names.ndim == image.ndim == hoi.ndim == score.ndim == 1):
        raise DataError(f"{path}: arrays filenames/image/hoi/score must be 1-D, got shapes "
                        f"{names.shape}/{image.shape}/{hoi.shape}/{score.shape}")
    if not (len(image) == len(hoi) == n and bh.shape == (n, 4) and bo.shape == (n, 4)):
        raise DataError(f"{path}: arrays image/hoi/box_h/box_o/score disagree in length")
    if n and (image.min() < 0 or image.max() >= len(names)):
        raise DataError(f"{path}: image index outside 0..{len(names) - 1}")
    if len(set(names.tolist())) != len(names):
        raise DataError(f"{path}: duplicated file name in 'filenames'")
    if not (np.isfinite(score).all() and np.isfinite(bh).all() and np.isfinite(bo).all()):
        bad = int(np.flatnonzero(~(np.isfinite(score) & np.isfinite(bh).all(1) & np.isfinite(bo).all(1)))[0])
        raise DataError(f"{path}: detection {bad} (image {str(names[image[bad]])!r}) has a non-finite value")
    index = {im.filename: i for i, im in enumerate(images)}
    gt_of_name = np.array([index.get(nm, -1) for nm in names.tolist()], dtype=np.int64)
    g = gt_of_name[image] if n else np.zeros(0, dtype=np.int64)
    warn = dict.fromkeys(WARNING_KINDS, 0)
    warn["unknown_image"] = int((gt_of_name < 0).sum())
    warn["unknown_image_detections"] = int((g < 0).sum())
    warn["gt_image_without_predictions"] = len(images) - int(len(set(gt_of_name[gt_of_name >= 0].tolist())))
    keep = np.flatnonzero(g >= 0)
    order = keep[np.argsort(g[keep], kind="stable")]          # ground-truth image order, file order within
    boxes = np.concatenate([bh[order], bo[order]], axis=1)
    return _finish_arrays(g[order], hoi[order], boxes, score[order], warn, images, vocab)


def _hoi_from_pairs(flat: list, vocab: HOIVocab) -> np.ndarray:
    """HOI index per detection from ``hoi`` or ``(verb, object)``; -1 for a combination not in the vocabulary."""
    lookup = {(o, v): h for h, o, v in vocab.correspondence}
    out = np.empty(len(flat), dtype=np.int64)
    for k, det in enumerate(flat):
        if "hoi" in det:
            x = det["hoi"]
            if isinstance(x, bool) or int(x) != x:
                raise TypeError("hoi")
            out[k] = int(x)
        else:
            v, o = det["verb"], det["object"]
            if isinstance(v, bool) or isinstance(o, bool) or int(v) != v or int(o) != o:
                raise TypeError("verb/object")
            out[k] = lookup.get((int(o), int(v)), -1)
    return out


# ----------------------------------------------------------------------------------------------- ground truth

@dataclass
class GroundTruthArrays:
    image: np.ndarray       # (G,) int64
    hoi: np.ndarray         # (G,) int64
    boxes: np.ndarray       # (G, 8) float64
    npos: np.ndarray        # (H,) int64, ground-truth pairs per HOI
    has_object: np.ndarray  # (N, O) bool: image has a ground-truth pair with this object
    hoi_object: np.ndarray  # (H,) int64


def ground_truth_arrays(images: Sequence[HOIImage], vocab: HOIVocab) -> GroundTruthArrays:
    counts = np.array([len(im.hoi) for im in images], dtype=np.int64)
    g_img = np.repeat(np.arange(len(images), dtype=np.int64), counts)
    g_hoi = np.array([h for im in images for h in im.hoi], dtype=np.int64)
    boxes = np.zeros((len(g_hoi), 8), dtype=np.float64)
    if len(g_hoi):
        boxes[:, :4] = np.array([b for im in images for b in im.boxes_h], dtype=np.float64)
        boxes[:, 4:] = np.array([b for im in images for b in im.boxes_o], dtype=np.float64)
    hoi_object = np.array([o for _, o, _ in vocab.correspondence], dtype=np.int64)
    has_object = np.zeros((len(images), len(vocab.objects)), dtype=bool)
    if len(g_hoi):
        has_object[g_img, hoi_object[g_hoi]] = True
    npos = np.bincount(g_hoi, minlength=vocab.num_hoi).astype(np.int64)
    return GroundTruthArrays(g_img, g_hoi, boxes, npos, has_object, hoi_object)


# ----------------------------------------------------------------------------------------------- core

#: the box-IoU convention (:mod:`mipd_kit.eval.boxes`) of each protocol
IOU_OF_PROTOCOL = {"official": "pixel", "continuous": "continuous", "qpic": "qpic"}


def _pair_overlap(d: np.ndarray, g: np.ndarray, protocol: str) -> np.ndarray:
    """min(IoU_h, IoU_o) for aligned rows of detections ``d`` (P, 8) and ground truth ``g`` (P, 8).

    The IoU is :func:`mipd_kit.eval.boxes.paired_iou`, whose operation order mirrors ``VOCevaldet_bboxpair.m`` so
    results are bit-identical to the reference loop.
    """
    conv = IOU_OF_PROTOCOL[protocol]
    return np.minimum(paired_iou(d[:, :4], g[:, :4], conv), paired_iou(d[:, 4:8], g[:, 4:8], conv))


def match_detections(det_image: np.ndarray, det_hoi: np.ndarray, det_boxes: np.ndarray, det_score: np.ndarray,
                     gt: GroundTruthArrays, num_images: int, protocol: str = "official",
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Sort detections per HOI by score and label each TP/FP by the VOC pair-matching rule.

    Returns:
        order: (D,) indices into the detections, sorted by (hoi, -score, original position).
        tp: (D,) bool, true positive flag of ``order``'s detections.
    """
    n = len(det_score)
    if n and det_hoi.max() < 2 ** 15 and det_hoi.min() >= 0:              # two stable passes (radix on int16)
        order = np.argsort(-det_score, kind="stable")
        order = order[np.argsort(det_hoi[order].astype(np.int16), kind="stable")]
    else:
        order = np.lexsort((np.arange(n), -det_score, det_hoi))             # stable, like MATLAB sort
    d_key = det_hoi[order] * num_images + det_image[order]                  # (D,)
    g_key = gt.hoi * num_images + gt.image                                  # (G,)
    g_order = np.argsort(g_key, kind="stable")                              # keeps ground-truth order in groups
    g_key_sorted = g_key[g_order]
    start = np.searchsorted(g_key_sorted, d_key, side="left")
    cnt = np.searchsorted(g_key_sorted, d_key, side="right") - start       # GT pairs in the detection's group
    tp = np.zeros(n, dtype=bool)
    has = np.flatnonzero(cnt > 0)
    if len(has) == 0:
        return order, tp
    c = cnt[has]
    total = int(c.sum())
    seg = np.repeat(np.arange(len(has)), c)                                 # (P,) candidate -> detection slot
    seg_start = np.concatenate(([0], np.cumsum(c)[:-1]))                    # (K,)
    within = np.arange(total) - seg_start[seg]
    g_pos = start[has][seg] + within                                        # position in sorted GT
    ov = _pair_overlap(det_boxes[order[has]][seg], gt.boxes[g_order[g_pos]], protocol)   # (P,)
    ovmax = np.maximum.reduceat(ov, seg_start)                              # (K,)
    first = np.minimum.reduceat(np.where(ov == ovmax[seg], np.arange(total), total), seg_start)
    jmax = g_pos[first]                                                     # best GT (first on ties), (K,)
    ok = ovmax >= MIN_OVERLAP
    slots = has[ok]
    _, first_hit = np.unique(jmax[ok], return_index=True)                   # first detection per GT pair wins
    tp[slots[first_hit]] = True
    return order, tp


def ap_11_point(rec: np.ndarray, prec: np.ndarray, thresholds: Sequence[float] = MATLAB_THRESHOLDS) -> float:
    """11-point interpolated AP of ``VOCevaldet_bboxpair.m`` (``rec`` non-decreasing); ``thresholds`` are
    MATLAB's ``0:0.1:1`` by default, :data:`NUMPY_THRESHOLDS` for the QPIC variant."""
    if len(rec) == 0:
        return 0.0
    env = np.maximum.accumulate(prec[::-1])[::-1]                           # max precision from i onwards
    idx = np.searchsorted(rec, np.array(thresholds), side="left")    # first i with rec[i] >= t
    ap = 0.0
    for i in idx:
        p = env[i] if i < len(rec) else 0.0
        ap = ap + p / 11
    return float(ap)


def ap_all_point(rec: np.ndarray, prec: np.ndarray) -> float:
    """All-point AP (VOC2010+): area under the monotone precision envelope."""
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def average_precisions(gt: GroundTruthArrays, pred: PredictionArrays, num_images: int, num_hoi: int,
                       setting: str = "default", protocol: str = "official") -> np.ndarray:
    """Per-HOI AP (H,) in [0, 1]; NaN for HOIs without ground truth."""
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, got {setting!r}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    img, hoi, boxes, score = pred.image, pred.hoi, pred.boxes, pred.score
    if setting == "known_object":
        keep = gt.has_object[img, gt.hoi_object[hoi]]
        img, hoi, boxes, score = img[keep], hoi[keep], boxes[keep], score[keep]
    order, tp = match_detections(img, hoi, boxes, score, gt, num_images, protocol)
    h_sorted = hoi[order]
    bounds = np.searchsorted(h_sorted, np.arange(num_hoi + 1), side="left")
    tp_cum = np.cumsum(tp)
    if protocol == "continuous":
        ap_fn = ap_all_point
    elif protocol == "qpic":
        ap_fn = lambda r, p: ap_11_point(r, p, NUMPY_THRESHOLDS)  # noqa: E731
    else:
        ap_fn = ap_11_point
    out = np.full(num_hoi, np.nan)
    for k in range(num_hoi):
        if gt.npos[k] == 0:
            continue
        a, b = bounds[k], bounds[k + 1]
        if a == b:
            out[k] = 0.0
            continue
        t = (tp_cum[a:b] - (tp_cum[a - 1] if a > 0 else 0)).astype(np.float64)
        rec = t / gt.npos[k]
        prec = t / np.arange(1, b - a + 1, dtype=np.float64)
        out[k] = ap_fn(rec, prec)
    return out


# ----------------------------------------------------------------------------------------------- summary

@dataclass
class HicoReport:
    """Everything an evaluation computed: per-HOI APs per (setting, protocol), counts, warnings and tidy rows."""

    ap: dict[tuple[str, str], np.ndarray]
    npos: np.ndarray
    warnings: dict[str, int]
    rows: list[MetricRow]
    zero_shot_name: Optional[str] = None
    unseen: Optional[list[int]] = None


def split_members(vocab: HOIVocab, unseen: Optional[Sequence[int]] = None) -> dict[str, list[int]]:
    """HOI indices of each reported split: full, rare, non_rare (+ unseen, seen)."""
    out = {"full": list(range(vocab.num_hoi)), "rare": list(vocab.rare), "non_rare": list(vocab.non_rare)}
    if unseen is not None:
        u = set(int(x) for x in unseen)
        bad = [x for x in u if not 0 <= x < vocab.num_hoi]
        if bad:
            raise DataError(f"zero-shot split names HOI indices outside 0..{vocab.num_hoi - 1}: {sorted(bad)[:5]}")
        out["unseen"] = sorted(u)
        out["seen"] = [k for k in range(vocab.num_hoi) if k not in u]
    return out


def summarise(ap: dict[tuple[str, str], np.ndarray], npos: np.ndarray, vocab: HOIVocab,
              unseen: Optional[Sequence[int]] = None, warnings: Optional[dict[str, int]] = None,
              model: str = "model", seed: Optional[int] = None) -> list[MetricRow]:
    """Tidy rows: mAP (percent) per split and setting, HOI counts, and prediction warnings.

    HOIs with NaN AP (no ground truth) are left out of the means and counted in ``n_hoi_no_gt``; a split with
    no HOI left has mAP NaN.
    """
    rows = []
    members = split_members(vocab, unseen)
    settings_done = []
    for (setting, protocol), aps in ap.items():
        for split, idx in members.items():
            vals = aps[idx] if idx else np.array([])
            vals = vals[~np.isnan(vals)]
            m = float(np.mean(vals)) * 100.0 if len(vals) else float("nan")
            rows.append(row("hoi", model, split, setting, METRIC_OF_PROTOCOL[protocol], m, seed=seed))
        if setting not in settings_done:
            settings_done.append(setting)
            for split, idx in members.items():
                n_gt = int(np.sum(npos[idx] > 0)) if idx else 0
                rows.append(row("hoi", model, split, setting, "n_hoi", n_gt, seed=seed))
                rows.append(row("hoi", model, split, setting, "n_hoi_no_gt", len(idx) - n_gt, seed=seed))
    for k, v in (warnings or {}).items():
        rows.append(row("hoi", model, "all", "predictions", f"warn_{k}", v, seed=seed))
    return rows


def _as_list(v: str | Sequence[str], choices: Sequence[str], what: str) -> list[str]:
    if v == "all":
        vals = list(choices)
    elif v == "both":
        vals = list(choices[:2])
    else:
        vals = [v] if isinstance(v, str) else list(v)
    for x in vals:
        if x not in choices:
            raise ValueError(f"{what} must be one of {tuple(choices)}, 'both' or 'all', got {x!r}")
    return vals


def evaluate_hico_report(gt_images: Sequence[HOIImage], vocab: HOIVocab, preds: dict | PredictionArrays,
                         setting: str | Sequence[str] = "default", zero_shot: Optional[Sequence[int]] = None,
                         protocol: str | Sequence[str] = "official", *, model: str = "model",
                         seed: Optional[int] = None, src: str = "predictions",
                         zero_shot_name: Optional[str] = None) -> HicoReport:
    """Evaluate and return the full :class:`HicoReport` (see :func:`evaluate_hico`)."""
    settings = _as_list(setting, SETTINGS, "setting")
    protocols = _as_list(protocol, PROTOCOLS, "protocol")
    gt = ground_truth_arrays(gt_images, vocab)
    pa = preds if isinstance(preds, PredictionArrays) else prediction_arrays(preds, gt_images, vocab, src)
    ap = {(s, p): average_precisions(gt, pa, len(gt_images), vocab.num_hoi, s, p)
          for s in settings for p in protocols}
    unseen = None if zero_shot is None else sorted(int(x) for x in zero_shot)
    rows = summarise(ap, gt.npos, vocab, unseen, pa.warnings, model, seed)
    return HicoReport(ap, gt.npos, dict(pa.warnings), rows, zero_shot_name, unseen)


def evaluate_hico(gt_images: Sequence[HOIImage], vocab: HOIVocab, preds: dict | PredictionArrays,
                  setting: str | Sequence[str] = "default", zero_shot: Optional[Sequence[int]] = None,
                  protocol: str | Sequence[str] = "official", *, model: str = "model",
                  seed: Optional[int] = None, src: str = "predictions") -> list[MetricRow]:
    """HICO-DET mAP rows (percent) by the official protocol (module docstring).

    Args:
        gt_images: ground-truth images (every evaluated image, including those without pairs).
        vocab: the HOI vocabulary (correspondence, rare, non_rare).
        preds: ``{filename: [{"hoi"|("verb","object"), "box_h", "box_o", "score"}]}`` or prepared arrays.
        setting: ``"default"``, ``"known_object"``, ``"both"`` or a list.
        zero_shot: unseen HOI indices; adds ``unseen`` / ``seen`` rows.
        protocol: ``"official"`` (metric ``map``), ``"continuous"`` (metric ``map_continuous``), ``"qpic"``
            (metric ``map_qpic``), ``"both"`` (official + continuous), ``"all"`` or a list.
        model, seed: copied into the rows.
        src: name of the predictions' source for error messages.
    """
    return evaluate_hico_report(gt_images, vocab, preds, setting, zero_shot, protocol, model=model, seed=seed,
                                src=src).rows


# ----------------------------------------------------------------------------------------------- CLI

def default_split_files(gt_path: str | os.PathLike) -> list[Path]:
    """Where ``--zero-shot NAME`` looks when no ``--splits`` is given, in order: beside the ground truth
    (``hoi_zero_shot.json`` of SynthSitu, ``text_labels_and_zero_shot_splits.json`` of gen-vlkt,
    ``hico_unseen_index.json`` of HOICLIP), then the standard HICO-DET splits bundled with the package
    (:data:`mipd_kit.data.hico.BUNDLED_ZERO_SHOT`: RF-UC, NF-UC, UO, UV and uc0..uc4)."""
    from mipd_kit.data.hico import BUNDLED_ZERO_SHOT

    here = Path(gt_path).parent
    return [here / "hoi_zero_shot.json", here / "text_labels_and_zero_shot_splits.json",
            here / "hico_unseen_index.json", BUNDLED_ZERO_SHOT]


def format_table(report: HicoReport) -> str:
    """A short human-readable table of the mAP rows."""
    maps = [r for r in report.rows if r.metric in METRIC_OF_PROTOCOL.values()]
    splits = list(dict.fromkeys(r.split for r in maps))
    cols = list(dict.fromkeys((r.setting, r.metric) for r in maps))
    val = {(r.split, r.setting, r.metric): r.value for r in maps}
    head = f"{'split':<10}" + "".join(f"{s + '/' + m:>28}" for s, m in cols)
    lines = [head, "-" * len(head)]
    for sp in splits:
        lines.append(f"{sp:<10}" + "".join(f"{val.get((sp, s, m), float('nan')):>28.2f}" for s, m in cols))
    n = {r.split: int(r.value) for r in report.rows if r.metric == "n_hoi" and r.setting == cols[0][0]} if cols else {}
    lines.append("HOIs averaged: " + ", ".join(f"{k} {v}" for k, v in n.items()))
    if report.zero_shot_name:
        lines.append(f"zero-shot split: {report.zero_shot_name} ({len(report.unseen or [])} unseen HOIs)")
    warn = {k: v for k, v in report.warnings.items() if v}
    if warn:
        lines.append("warnings: " + ", ".join(f"{k}={v}" for k, v in warn.items()))
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``mipd eval-hico``: HICO-DET mAP of a predictions file."""
    from mipd_kit.data.hico import load_hoi_gt, resolve_zero_shot
    from mipd_kit.eval.cli_io import USER_ERROR, add_out_arguments, check_matched, check_out, write_out

    ap = argparse.ArgumentParser(prog="mipd eval-hico", description=__doc__.split("\n")[0])
    ap.add_argument("--gt", required=True, help="ground truth: HICO-DET instance format or QPIC format")
    ap.add_argument("--pred", required=True,
                    help="predictions JSON {filename: [{hoi, box_h, box_o, score}]}, or .npz (save_predictions_npz)")
    ap.add_argument("--pred-format", default="own", choices=["own", "qpic", "gen-vlkt", "hoiclip"],
                    help="own: the toolkit's JSON (or .npz); qpic / gen-vlkt / hoiclip: the per-image records of "
                         "those detectors' evaluators, as JSON or pickle (mipd_kit.eval.hoi_formats)")
    ap.add_argument("--vocab", default=None, help="vocabulary (instance-format file) for QPIC-format ground truth")
    ap.add_argument("--setting", default="both", choices=["default", "known_object", "both"],
                    help="Default and/or Known-object setting (default: both)")
    ap.add_argument("--zero-shot", default=None,
                    help="rare_first|non_rare_first|unseen_object|unseen_verb|uc0..uc4 or FILE.json:key")
    ap.add_argument("--splits", action="append", default=[],
                    help="zero-shot split file(s) to look names up in (default: beside --gt, then the standard HICO-DET splits bundled with mipd_kit)")
    ap.add_argument("--protocol", default="official", choices=["official", "continuous", "qpic", "both", "all"],
                    help="official: 11-point AP, +1 IoU (metric 'map'); continuous: all-point AP, "
                         "no +1 (metric 'map_continuous'); qpic: QPIC's evaluator (metric 'map_qpic'); "
                         "both: official + continuous; all: the three")
    ap.add_argument("--model", default="model", help="model name written in the rows")
    ap.add_argument("--seed", type=int, default=None, help="seed written in the rows")
    add_out_arguments(ap)
    args = ap.parse_args(list(argv) if argv is not None else None)
    try:
        images, vocab = load_hoi_gt(args.gt, args.vocab)
        unseen = name = None
        if args.zero_shot:
            name, unseen = resolve_zero_shot(args.zero_shot, args.splits or default_split_files(args.gt))
        if args.pred_format != "own":
            from mipd_kit.eval.hoi_formats import load_predictions_as
            preds = load_predictions_as(args.pred, args.pred_format, images, vocab)
        else:
            preds = (load_predictions_npz(args.pred, images, vocab) if str(args.pred).endswith(".npz")
                     else load_predictions(args.pred))
        if isinstance(preds, PredictionArrays):
            if len(images) and preds.warnings.get("gt_image_without_predictions") == len(images):
                check_matched(args.pred, (), args.gt, (im.filename for im in images))
        else:
            check_matched(args.pred, preds, args.gt, (im.filename for im in images))
        check_out(args.out, args.merge, args.overwrite)  # inputs first (their errors first), then the output
        report = evaluate_hico_report(images, vocab, preds, args.setting, unseen, args.protocol,
                                      model=args.model, seed=args.seed, src=str(args.pred), zero_shot_name=name)
        write_out(args.out, report.rows, args.merge, args.overwrite)
    except DataError as e:
        print(f"mipd eval-hico: error: {e}", file=sys.stderr)
        return USER_ERROR
    print(format_table(report))
    for k, v in report.warnings.items():
        if v and k != "gt_image_without_predictions":
            print(f"warning: {v} predictions: {k.replace('_', ' ')}", file=sys.stderr)
    return 0
