"""Losses of the Ov-GSR student, one per function, each with its formula and paper.

Paper: MIPD, "Multimodal Interactive Prompt Distillation for open-vocabulary grounded situation recognition"
(the authors' code is a CoFormer derivative: Cho et al., "Collaborative Transformers for Grounded Situation
Recognition", CVPR 2022). Box losses follow DETR (Carion et al., ECCV 2020) and GIoU (Rezatofighi et al., CVPR 2019);
logit distillation follows Hinton et al., "Distilling the Knowledge in a Neural Network" (2015).

Convention that makes single-process and DDP training give the same gradients: every loss returns the **sum over
its samples of a per-sample value** divided by ``batch_size`` (the *global* batch size, passed by the caller).
A per-sample value that averages over roles divides by that sample's own role count, never by a batch-wide
count, so splitting a batch over ranks and all-reducing gradients (SUM) reproduces the single-process mean.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torchvision.ops import box_convert

# The NMPA losses live one layer down (align never imports student); the student uses negative_guided too, and
# they are re-exported here, so that every loss of the student is importable from ``mipd_kit.student.losses``.
from ..align.losses import contrastive_alignment, negative_guided, per_sample_mean as _per_sample_mean

__all__ = ["verb_ce", "noun_ce", "box_cxcywh_to_xyxy", "generalized_iou", "box_l1", "box_giou", "box_exists_bce",
           "feature_distill", "logit_kd", "negative_guided", "contrastive_alignment"]


def verb_ce(logits: torch.Tensor, target: torch.Tensor, batch_size: int, smoothing: float = 0.3) -> torch.Tensor:
    """Verb cross-entropy with label smoothing (MIPD / CoFormer use 0.3).

    ``L = -sum_c q_c log softmax(z)_c`` with ``q = (1-e) onehot(y) + e/C``.

    Args:
        logits: (B, C) verb logits over the training vocabulary.
        target: (B,) class indices.
        batch_size: global batch size (normaliser).
        smoothing: label smoothing ``e``.
    """
    per = F.cross_entropy(logits, target, reduction="none", label_smoothing=smoothing)  # (B,)
    return per.sum() / batch_size


def noun_ce(logits: torch.Tensor, targets: torch.Tensor, role_mask: torch.Tensor, batch_size: int,
            smoothing: float = 0.2) -> torch.Tensor:
    """Noun cross-entropy summed over the 3 annotators, averaged over the roles of each image (CoFormer).

    ``L_i = 1/|R_i| sum_{r in R_i} sum_{a=1..3} CE_smooth(z_{i,r}, n_{i,r,a})``

    Args:
        logits: (B, R, C) noun logits per role slot.
        targets: (B, R, A) noun indices given by each annotator (A = 3 in SWiG); -1 = no annotation.
        role_mask: (B, R) True for the roles of the image's verb.
        batch_size: global batch size.
        smoothing: label smoothing (0.2 in the authors' code).
    """
    B, R, C = logits.shape
    A = targets.shape[-1]
    valid = targets >= 0  # (B, R, A)
    flat = F.cross_entropy(logits.unsqueeze(2).expand(B, R, A, C).reshape(-1, C), targets.clamp(min=0).reshape(-1),
                           reduction="none", label_smoothing=smoothing).view(B, R, A)
    per_role = (flat * valid).sum(-1)  # (B, R)
    return _per_sample_mean(per_role, role_mask).sum() / batch_size


def box_cxcywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    """(..., 4) centre/size -> corners (``torchvision.ops.box_convert``)."""
    return box_convert(b, "cxcywh", "xyxy")


def generalized_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise GIoU of (..., 4) xyxy boxes (Rezatofighi et al., CVPR 2019).

    The diagonal of ``torchvision.ops.generalized_box_iou`` (bit for bit on boxes of positive size,
    tests/test_eval_boxes.py), without its (N, M) matrix of every pair; torchvision's element-wise
    ``generalized_box_iou_loss`` adds its eps to the denominators instead of clamping them, which would move every
    training number by float rounding."""
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    union = area_a + area_b - inter
    iou = inter / union.clamp(min=1e-7)
    lt_c = torch.minimum(a[..., :2], b[..., :2])
    rb_c = torch.maximum(a[..., 2:], b[..., 2:])
    area_c = (rb_c - lt_c).clamp(min=0).prod(-1)
    return iou - (area_c - union) / area_c.clamp(min=1e-7)


def box_l1(pred: torch.Tensor, target: torch.Tensor, exists: torch.Tensor, batch_size: int) -> torch.Tensor:
    """L1 distance of normalised (cx, cy, w, h) boxes over the roles that have a box (DETR).

    ``L_i = 1/|R_i^box| sum_r ||b_hat_r - b_r||_1``

    Args:
        pred, target: (B, R, 4) normalised cx, cy, w, h.
        exists: (B, R) True where the ground-truth role has a box.
        batch_size: global batch size.
    """
    per = (pred - target).abs().sum(-1)  # (B, R)
    return _per_sample_mean(per, exists).sum() / batch_size


def box_giou(pred: torch.Tensor, target: torch.Tensor, exists: torch.Tensor, batch_size: int) -> torch.Tensor:
    """``1 - GIoU`` over the roles that have a box (Rezatofighi et al., CVPR 2019).

    Args:
        pred, target: (B, R, 4) normalised cx, cy, w, h.
        exists: (B, R) boxes present in the ground truth.
        batch_size: global batch size.
    """
    per = 1.0 - generalized_iou(box_cxcywh_to_xyxy(pred), box_cxcywh_to_xyxy(target))  # (B, R)
    return _per_sample_mean(per, exists).sum() / batch_size


def box_exists_bce(logits: torch.Tensor, exists: torch.Tensor, role_mask: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Binary cross-entropy of the box-exists logit per role (CoFormer).

    Args:
        logits: (B, R) box-exists logits.
        exists: (B, R) ground truth (1 = the role has a box).
        role_mask: (B, R) roles of the image's verb.
        batch_size: global batch size.
    """
    per = F.binary_cross_entropy_with_logits(logits, exists.to(logits.dtype), reduction="none")
    return _per_sample_mean(per, role_mask).sum() / batch_size


def feature_distill(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, batch_size: int,
                    kind: str = "l1") -> torch.Tensor:
    """Feature distillation of student features towards (NMPA-aligned) teacher features.

    ``l1``: ``mean_d |s - t|`` (the authors' choice, weight 2); ``cosine``: ``1 - cos(s, t)``.
    Features of shape (B, E) (scene) or (B, R, E) (roles, averaged over each image's valid roles).

    Args:
        student: (B, E) or (B, R, E) student features projected into the teacher space.
        teacher: same shape, the targets (no gradient).
        mask: (B,) or (B, R) True where a target exists.
        batch_size: global batch size.
        kind: ``"l1"`` or ``"cosine"``.
    """
    teacher = teacher.detach()
    if kind == "l1":
        per = (student - teacher).abs().mean(-1)
    elif kind == "cosine":
        per = 1.0 - F.cosine_similarity(student, teacher, dim=-1)
    else:
        raise ValueError(f"feature_distill kind must be one of 'l1', 'cosine', got {kind!r}")
    if per.dim() == 2:
        per = _per_sample_mean(per, mask)
        mask = mask.any(-1)
    return (per * mask.to(per.dtype)).sum() / batch_size


def logit_kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, batch_size: int, t: float = 2.0,
             mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Logit distillation with temperature (Hinton et al., 2015).

    ``L = t**2 * KL(softmax(z_T / t) || softmax(z_S / t))``; the ``t**2`` factor keeps gradient scale independent of t.

    Args:
        student_logits, teacher_logits: (B, C) over the same vocabulary.
        batch_size: global batch size.
        t: temperature.
        mask: (B,) optional, samples to include.
    """
    p_t = F.softmax(teacher_logits.detach() / t, -1)
    per = (p_t * (F.log_softmax(teacher_logits.detach() / t, -1) - F.log_softmax(student_logits / t, -1))).sum(-1)
    if mask is not None:
        per = per * mask.to(per.dtype)
    return (t ** 2) * per.sum() / batch_size
