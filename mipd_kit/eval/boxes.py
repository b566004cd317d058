"""Box intersection-over-union, the one implementation used by every evaluator and viewer of the toolkit.

Boxes are ``[x1, y1, x2, y2]``. Three conventions, each named, never chosen silently:

- ``"pixel"`` -- the **+1-pixel** rule of the official HICO-DET evaluation (``VOCevaldet_bboxpair.m`` in the
  dataset authors' ho-rcnn code) and of V-COCO's ``vsrl_eval.py`` (``get_overlap``): coordinates are inclusive pixel
  indices, so a width is ``x2 - x1 + 1``; boxes overlap only when that +1 intersection width and height are
  positive.
- ``"continuous"`` -- areas ``(x2 - x1) * (y2 - y1)``, no +1 (SWiG / CoFormer grounding, the CL-HOI proposal
  recall): the diagonal of ``torchvision.ops.box_iou``, bit for bit (tests/test_eval_boxes.py). Boxes that only touch
  have IoU 0.
- ``"qpic"`` -- QPIC's ``compute_IOU`` (``datasets/hico_eval.py``, copied by CDN, GEN-VLKT, ...): +1-pixel areas,
  but no overlap unless the *raw* intersection ``x2 - x1`` and ``y2 - y1`` is positive.

Where there is no overlap the IoU is 0 (``vsrl_eval.py`` would divide 0 by 0, giving NaN, for two boxes whose
+1 areas are both 0; no threshold accepts either value). :func:`paired_iou` is the vectorised form (NumPy, aligned
rows), :func:`iou` the scalar one for Python loops; their operations are the same, in the same order, so they agree
bit for bit (tests/test_eval_boxes.py). The evaluators keep this NumPy float64 module rather than ``torchvision.ops``: the
pixel and qpic conventions are the protocols' own, and they score aligned pairs of rows, not every pair of two sets.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

IoUConvention = Literal["pixel", "continuous", "qpic"]
CONVENTIONS: tuple[str, ...] = ("pixel", "continuous", "qpic")


def _offset(convention: str) -> float:
    if convention == "continuous":
        return 0.0
    if convention in ("pixel", "qpic"):
        return 1.0
    raise ValueError(f"IoU convention must be one of {', '.join(CONVENTIONS)}, got {convention!r}")


def paired_iou(a: np.ndarray, b: np.ndarray, convention: IoUConvention = "continuous") -> np.ndarray:
    """IoU of aligned rows of two box arrays.

    Args:
        a, b: (N, 4) ``x1, y1, x2, y2`` (or broadcastable to it); rows with NaN give 0.
        convention: ``"pixel"`` (+1, HICO-DET official / V-COCO), ``"continuous"`` or ``"qpic"``.
    Returns:
        (N,) float64 IoU.
    """
    one = _offset(convention)
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ix1 = np.maximum(a[..., 0], b[..., 0])
    iy1 = np.maximum(a[..., 1], b[..., 1])
    ix2 = np.minimum(a[..., 2], b[..., 2])
    iy2 = np.minimum(a[..., 3], b[..., 3])
    iw = ix2 - ix1 + one
    ih = iy2 - iy1 + one
    if convention == "qpic":
        ok = (ix2 - ix1 > 0) & (iy2 - iy1 > 0)
    else:
        ok = (iw > 0) & (ih > 0)
    inter = iw * ih
    union = (a[..., 2] - a[..., 0] + one) * (a[..., 3] - a[..., 1] + one) + \
        (b[..., 2] - b[..., 0] + one) * (b[..., 3] - b[..., 1] + one) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, inter / np.where(ok, union, 1.0), 0.0)


def iou(a: Sequence[float], b: Sequence[float], convention: IoUConvention = "continuous") -> float:
    """IoU of two boxes (Python floats); the scalar twin of :func:`paired_iou`."""
    one = _offset(convention)
    a, b = [float(v) for v in a[:4]], [float(v) for v in b[:4]]
    if any(v != v for v in (*a, *b)):  # NaN: no overlap, as np.maximum / np.minimum make it in paired_iou
        return 0.0
    ix1, iy1 = max(a[0], b[0]), max(a[1], b[1])
    ix2, iy2 = min(a[2], b[2]), min(a[3], b[3])
    iw = ix2 - ix1 + one
    ih = iy2 - iy1 + one
    ok = (ix2 - ix1 > 0 and iy2 - iy1 > 0) if convention == "qpic" else (iw > 0 and ih > 0)
    if not ok:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0] + one) * (a[3] - a[1] + one) + (b[2] - b[0] + one) * (b[3] - b[1] + one) - inter
    return float(inter / union)


def iou_pixel(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU with the +1-pixel rule of the official HICO-DET evaluation."""
    return iou(a, b, "pixel")


def iou_continuous(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU in continuous coordinates (no +1)."""
    return iou(a, b, "continuous")
