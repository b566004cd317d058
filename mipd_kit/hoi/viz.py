"""CL-HOI visualisation data: the top interactions of each image's pairs, per-image cases, and drawing.

Data preparation (``top_pairs``, ``gt_pairs``, ``hoi_cases``) is pure; drawing goes through the shared
``mipd_kit.viz.draw.draw_hoi_pairs`` (pairs = ``[{"box_h", "box_o", "label", "score"}]``). The widget that browses
the same cases with filters is ``mipd_kit.hoi.inspector``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from PIL import Image

from mipd_kit.data.records import HOIImage, HOIVocab
from mipd_kit.eval.boxes import iou_pixel
from mipd_kit.viz.draw import contact_sheet, draw_hoi_pairs


def hoi_label(vocab: HOIVocab, k: int) -> str:
    """``"<verb> <object>"`` of HOI ``k``."""
    _, o, v = vocab.correspondence[k]
    return f"{vocab.verbs[v]} {vocab.objects[o]}"


def pair_matches(gt_h: Sequence[float], gt_o: Sequence[float], det_h: Sequence[float], det_o: Sequence[float],
                 thr: float = 0.5) -> bool:
    """The official HICO-DET box criterion: human and object IoU both at least ``thr``, with the official +1-pixel
    IoU (:func:`mipd_kit.eval.boxes.iou_pixel`), so a "hit" here is a pair the evaluator's default protocol matches."""
    return iou_pixel(gt_h, det_h) >= thr and iou_pixel(gt_o, det_o) >= thr


def top_pairs(dets: Sequence[Mapping[str, Any]], vocab: HOIVocab, k: int = 3) -> list[dict]:
    """The ``k`` highest-scoring detections of one image as drawable pairs (one per distinct HOI)."""
    out, seen = [], set()
    for d in sorted(dets, key=lambda d: -float(d["score"])):
        h = int(d["hoi"])
        if h in seen or not 0 <= h < vocab.num_hoi:
            continue
        seen.add(h)
        out.append({"box_h": list(d["box_h"]), "box_o": list(d["box_o"]), "label": hoi_label(vocab, h),
                    "score": float(d["score"]), "hoi": h})
        if len(out) == k:
            break
    return out


def gt_pairs(image: HOIImage, vocab: HOIVocab) -> list[dict]:
    """Ground-truth pairs of an image as drawable pairs (score 1) — for display and evaluation only."""
    return [{"box_h": list(bh), "box_o": list(bo), "label": hoi_label(vocab, h), "score": 1.0, "hoi": h}
            for bh, bo, h in zip(image.boxes_h, image.boxes_o, image.hoi)]


@dataclass(frozen=True)
class HOICase:
    """One test image: its ground truth, its best prediction and whether that prediction is right.

    ``hit``: the top detection's HOI is annotated in the image on a pair whose human and object boxes both overlap
    the detection's with IoU >= 0.5 (+1-pixel rule, as the official evaluation).
    """

    filename: str
    gt_labels: tuple[str, ...]
    top_label: str
    top_score: float
    hit: bool
    unseen: bool


def hoi_cases(images: Sequence[HOIImage], vocab: HOIVocab, preds: Mapping[str, Sequence[Mapping]],
              unseen: Optional[Sequence[int]] = None) -> list[HOICase]:
    """Per-image cases, images with an unseen HOI first, then misses first, then by descending top score."""
    u = set(unseen or [])
    out = []
    for im in images:
        if not im.hoi:
            continue
        top = top_pairs(preds.get(im.filename, []), vocab, 1)
        hit = False
        if top:
            t = top[0]
            hit = any(h == t["hoi"] and pair_matches(bh, bo, t["box_h"], t["box_o"])
                      for bh, bo, h in zip(im.boxes_h, im.boxes_o, im.hoi))
        out.append(HOICase(im.filename, tuple(sorted({hoi_label(vocab, h) for h in im.hoi})),
                           top[0]["label"] if top else "", top[0]["score"] if top else 0.0, hit,
                           any(h in u for h in im.hoi)))
    return sorted(out, key=lambda c: (not c.unseen, c.hit, -c.top_score))


def draw_pairs(image: Image.Image, pairs: Sequence[Mapping[str, Any]]) -> Image.Image:
    """Draw pairs with their labels and scores (``mipd_kit.viz.draw.draw_hoi_pairs``)."""
    return draw_hoi_pairs(image, [{k: p[k] for k in ("box_h", "box_o", "label", "score")} for p in pairs])


def pair_sheet(images_dir: str | Path, cases: Sequence[HOICase], vocab: HOIVocab, preds: Mapping[str, Sequence[Mapping]], n: int = 8, k: int = 2, ncols: int = 4) -> Image.Image:
    """A contact sheet of the first ``n`` cases: predicted top-``k`` pairs, with the ground truth as the title."""
    tiles, labels = [], []
    for c in cases[:n]:
        with Image.open(Path(images_dir) / c.filename) as im:
            tiles.append(draw_pairs(im.convert("RGB"), top_pairs(preds.get(c.filename, []), vocab, k)))
        labels.append(("[ok] " if c.hit else "[miss] ") + "gt: " + ", ".join(c.gt_labels))
    return contact_sheet(tiles, ncols, labels)
