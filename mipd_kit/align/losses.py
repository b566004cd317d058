"""Losses of Negative-Guided Multimodal Prompting Alignment (NMPA), MIPD, one per function.

Paper: MIPD, "Multimodal Interactive Prompt Distillation for open-vocabulary grounded situation recognition".
The contrastive alignment is the symmetric InfoNCE of CLIP (Radford et al., ICML 2021). The student's training
(:mod:`mipd_kit.student.losses`, which re-exports these) uses :func:`negative_guided` on its distilled feature too.

Same convention as the student's losses: a per-sample value summed over samples and divided by the *global*
``batch_size`` passed by the caller, so that DDP's SUM all-reduce reproduces the single-process mean.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def per_sample_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the last dim restricted to ``mask``; 0 for samples with no valid entry.  (B, R) -> (B,)"""
    m = mask.to(values.dtype)
    return (values * m).sum(-1) / m.sum(-1).clamp(min=1.0)


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
            per = per_sample_mean(F.relu(cos_n - cos_p.unsqueeze(1) + margin), neg_mask)
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
    y = torch.arange(s.shape[0], device=s.device)
    return 0.5 * (F.cross_entropy(s, y) + F.cross_entropy(s.t(), y))
