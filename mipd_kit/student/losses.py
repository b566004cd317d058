"""Losses of the Ov-GSR student and of NMPA, one per function (STYLE.md rule 8).

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


def _per_sample_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the last dim restricted to ``mask``; 0 for samples with no valid entry.  (B, R) -> (B,)"""
    m = mask.to(values.dtype)
    return (values * m).sum(-1) / m.sum(-1).clamp(min=1.0)


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
    """(..., 4) centre/size -> corners."""
    cx, cy, w, h = b.unbind(-1)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def generalized_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Element-wise GIoU of (..., 4) xyxy boxes (Rezatofighi et al., CVPR 2019)."""
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


def negative_guided(feat: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, neg_mask: torch.Tensor,
                    batch_size: int, kind: str = "authors", margin: float = 0.2, tau: float = 0.1,
                    pos_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """NMPA negative-guided term pushing aligned features away from the negative rationales.

    - ``authors`` (MIPD code): ``relu(cos(x, mean_k n_k))``.
    - ``margin``: ``mean_k relu(cos(x, n_k) - cos(x, p) + margin)``.
    - ``infonce``: ``-log( e^{cos(x,p)/tau} / (e^{cos(x,p)/tau} + sum_k e^{cos(x,n_k)/tau}) )``.

    Args:
        feat: (B, E) features being aligned (NMPA scene/instance feature, or the student's distilled feature).
        pos: (B, E) pooled positive rationale embedding (unused by ``authors``).
        neg: (B, K, E) pooled negative rationale embeddings.
        neg_mask: (B, K) True for real negatives; samples without any contribute 0.
        batch_size: global batch size.
        kind: ``"authors"``, ``"margin"`` or ``"infonce"``.
        margin, tau: hyper-parameters of the margin / InfoNCE forms.
        pos_mask: (B,) True where a positive exists (``margin``/``infonce``); default all.
    """
    has = neg_mask.any(-1)  # (B,)
    m = neg_mask.to(feat.dtype)
    cos_n = F.cosine_similarity(feat.unsqueeze(1), neg, dim=-1)  # (B, K)
    if kind == "authors":
        mean_neg = (neg * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True).clamp(min=1.0)
        per = F.relu(F.cosine_similarity(feat, mean_neg, dim=-1))
    elif kind in ("margin", "infonce"):
        cos_p = F.cosine_similarity(feat, pos, dim=-1)  # (B,)
        if pos_mask is not None:
            has = has & pos_mask
        if kind == "margin":
            per = _per_sample_mean(F.relu(cos_n - cos_p.unsqueeze(1) + margin), neg_mask)
        else:
            logits = torch.cat([cos_p.unsqueeze(1), cos_n.masked_fill(~neg_mask, float("-inf"))], 1) / tau
            per = -F.log_softmax(logits, -1)[:, 0]
    else:
        raise ValueError(f"negative_guided kind must be one of 'authors', 'margin', 'infonce', got {kind!r}")
    return (per * has.to(per.dtype)).sum() / batch_size


def contrastive_alignment(feat: torch.Tensor, text: torch.Tensor, mask: torch.Tensor, tau: float = 0.07) -> torch.Tensor:
    """Symmetric InfoNCE between aligned features and their positive rationale embeddings (CLIP loss, Radford 2021).

    Used to train NMPA (single process; in-batch negatives make it not split over ranks).
    ``L = 1/2 (CE(S, I) + CE(S^T, I))`` with ``S_ij = cos(x_i, p_j) / tau`` over the rows where ``mask``.

    Args:
        feat: (N, E) aligned features.
        text: (N, E) positive rationale embeddings.
        mask: (N,) rows that have a positive rationale.
        tau: temperature.
    """
    x, p = F.normalize(feat[mask], dim=-1), F.normalize(text[mask], dim=-1)
    if x.shape[0] == 0:
        return feat.sum() * 0.0
    s = x @ p.t() / tau
    y = torch.arange(s.shape[0])
    return 0.5 * (F.cross_entropy(s, y) + F.cross_entropy(s.t(), y))
