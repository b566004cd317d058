"""Pure-Python reference of the official HICO-DET evaluation, a line-by-line mirror of the MATLAB loop.

``evaluation/eval_one.m`` + ``VOCevaldet_bboxpair.m`` (ywchao/ho-rcnn; Chao et al., WACV 2018). No numpy in the
matching or AP code: one loop over detections per HOI, one loop over that image's ground-truth pairs per detection.
It is slow on purpose and exists as the test oracle for :mod:`mipd_kit.eval.hico` (parity test) and as the
baseline of ``benchmarks/bench_eval_hico.py``. Conventions (ties, known-object images, HOIs without ground truth,
the continuous variant) are those documented in :mod:`mipd_kit.eval.hico`.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

from mipd_kit.data.records import HOIImage, HOIVocab

from .boxes import iou

MIN_OVERLAP = 0.5
THRESHOLDS = [0.0, 0.1, 0.2, 3 * 0.1, 0.4, 0.5, 1.0 - 4 * 0.1, 1.0 - 3 * 0.1, 1.0 - 2 * 0.1, 1.0 - 0.1, 1.0]  # MATLAB
QPIC_THRESHOLDS = [k * 0.1 for k in range(11)]        # np.arange(0., 1.1, 0.1)


def _iou(a: Sequence[float], b: Sequence[float], one: float, qpic: bool = False) -> float:
    """The scalar IoU of :mod:`mipd_kit.eval.boxes` for the reference's (one, qpic) arguments."""
    return iou(a, b, "qpic" if qpic else ("pixel" if one else "continuous"))


def voc_eval_det_bbox_pair(det_id: list[int], det_bb: list[list[float]], det_conf: list[float],
                           gt_bbox: dict[int, list[list[float]]], one: float = 1.0,
                           eleven_point: bool = True, qpic: bool = False) -> tuple[list[float], list[float], float]:
    """Mirror of ``VOCevaldet_bboxpair.m``: returns (rec, prec, ap). ``gt_bbox[i]`` = 8-number GT pairs of image i."""
    npos = 0
    det_flags: dict[int, list[bool]] = {}
    for i, g in gt_bbox.items():
        if g:
            det_flags[i] = [False] * len(g)
            npos += len(g)
    si = sorted(range(len(det_conf)), key=lambda k: -det_conf[k])   # Python's sort is stable, like MATLAB's
    nd = len(det_conf)
    tp = [0] * nd
    fp = [0] * nd
    for d in range(nd):
        i = det_id[si[d]]
        bb = det_bb[si[d]]
        ov_max = -math.inf
        j_max = -1
        for j, bbgt in enumerate(gt_bbox.get(i, [])):
            min_ov = min(_iou(bb[:4], bbgt[:4], one, qpic), _iou(bb[4:], bbgt[4:], one, qpic))
            if min_ov > ov_max:
                ov_max = min_ov
                j_max = j
        if ov_max >= MIN_OVERLAP:
            if not det_flags[i][j_max]:
                tp[d] = 1
                det_flags[i][j_max] = True
            else:
                fp[d] = 1
        else:
            fp[d] = 1
    rec, prec = [], []
    ctp = cfp = 0
    for d in range(nd):
        ctp += tp[d]
        cfp += fp[d]
        rec.append(ctp / npos if npos else math.nan)
        prec.append(ctp / (cfp + ctp))
    if eleven_point:
        ap = 0.0
        for t in (QPIC_THRESHOLDS if qpic else THRESHOLDS):
            ps = [p for r, p in zip(rec, prec) if r >= t]
            ap = ap + (max(ps) if ps else 0.0) / 11
    else:
        mrec = [0.0] + rec + [1.0]
        mpre = [0.0] + prec + [0.0]
        for k in range(len(mpre) - 2, -1, -1):
            mpre[k] = max(mpre[k], mpre[k + 1])
        ap = 0.0
        for k in range(len(mrec) - 1):
            if mrec[k + 1] != mrec[k]:
                ap += (mrec[k + 1] - mrec[k]) * mpre[k + 1]
    return rec, prec, ap


def reference_average_precisions(gt_images: Sequence[HOIImage], vocab: HOIVocab, preds: dict,
                                 setting: str = "default", protocol: str = "official") -> list[float]:
    """Per-HOI AP (NaN without ground truth), computed like ``eval_one.m`` HOI by HOI.

    Predictions for unknown images or HOIs are skipped here (the fast path counts them as warnings).
    """
    if setting not in ("default", "known_object") or protocol not in ("official", "continuous", "qpic"):
        raise ValueError(f"bad setting {setting!r} or protocol {protocol!r}")
    one = 0.0 if protocol == "continuous" else 1.0
    lookup = {(o, v): h for h, o, v in vocab.correspondence}
    num_hoi = vocab.num_hoi
    gt_all: list[dict[int, list[list[float]]]] = [dict() for _ in range(num_hoi)]
    objects_in: list[set[int]] = [set() for _ in gt_images]
    for i, im in enumerate(gt_images):
        for bh, bo, h, o in zip(im.boxes_h, im.boxes_o, im.hoi, im.object):
            gt_all[h].setdefault(i, []).append(list(bh) + list(bo))
            objects_in[i].add(vocab.correspondence[h][1])
    # per HOI: detections concatenated in image order (eval_one.m loops j = 1..num_image)
    dets: list[list[tuple[int, list[float], float]]] = [[] for _ in range(num_hoi)]
    for i, im in enumerate(gt_images):
        for det in preds.get(im.filename, None) or []:
            if "hoi" in det:
                h = int(det["hoi"])
            else:
                h = lookup.get((int(det["object"]), int(det["verb"])), -1)
            if not 0 <= h < num_hoi:
                continue
            dets[h].append((i, [float(x) for x in det["box_h"]] + [float(x) for x in det["box_o"]],
                            float(det["score"])))
    aps = []
    for h in range(num_hoi):
        obj = vocab.correspondence[h][1]
        ds = dets[h]
        if setting == "known_object":
            ds = [d for d in ds if obj in objects_in[d[0]]]
        if not gt_all[h]:
            aps.append(math.nan)
            continue
        _, _, ap = voc_eval_det_bbox_pair([d[0] for d in ds], [d[1] for d in ds], [d[2] for d in ds],
                                          gt_all[h], one, eleven_point=(protocol != "continuous"),
                                          qpic=(protocol == "qpic"))
        aps.append(ap)
    return aps


def reference_map(gt_images: Sequence[HOIImage], vocab: HOIVocab, preds: dict, setting: str = "default",
                  protocol: str = "official", unseen: Optional[Sequence[int]] = None) -> dict[str, float]:
    """Split -> mAP in percent (NaN-AP HOIs excluded), for quick checks."""
    aps = reference_average_precisions(gt_images, vocab, preds, setting, protocol)
    splits = {"full": range(vocab.num_hoi), "rare": vocab.rare, "non_rare": vocab.non_rare}
    if unseen is not None:
        u = set(unseen)
        splits["unseen"] = sorted(u)
        splits["seen"] = [k for k in range(vocab.num_hoi) if k not in u]
    out = {}
    for name, idx in splits.items():
        vals = [aps[k] for k in idx if not math.isnan(aps[k])]
        out[name] = 100.0 * sum(vals) / len(vals) if vals else math.nan
    return out
