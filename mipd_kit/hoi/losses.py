"""CL-HOI losses: label-free contrastive distillation from an image-level teacher to a pair-level student.

One loss (or pooling) per function, formula in the docstring. Notation: ``s_{p,k}`` the student's logit of HOI
``k`` for pair ``p``; ``P(i)`` the pairs of image ``i``; ``t_{i,k}`` the teacher's zero-shot logit of phrase ``k``
for image ``i``; ``C(i)`` the candidate HOIs of image ``i`` (those whose object was proposed); ``T`` a
distillation temperature. Temperature-scaled KL terms carry the usual ``T**2`` factor (Hinton et al., 2015) so their
gradient scale does not depend on ``T``. The label losses of the control rows (``mil_loss``, ``pair_label_loss``)
are the only ones that take interaction labels.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

#: finite stand-in for -inf inside softmaxes (exp underflows to exactly 0)
NEG = -1e4


def pool_pairs(pair_logits: torch.Tensor, pair_image: torch.Tensor, num_images: int,
               kind: Literal["lse", "max", "mean"] = "lse", tau: float = 1.0) -> torch.Tensor:
    """Image-level HOI logits from pair logits (multiple-instance pooling).

    ``lse``: ``S_{i,k} = tau * log sum_{p in P(i)} exp(s_{p,k} / tau)`` (a soft max with
    ``max_p s_{p,k} <= S_{i,k} <= max_p s_{p,k} + tau * log |P(i)|``); ``max``: ``max_p s_{p,k}``;
    ``mean``: ``(1/|P(i)|) sum_p s_{p,k}``. Images without pairs, and HOIs that are ``-inf`` for every pair of an
    image, get ``-inf``.

    Args:
        pair_logits: (P, H) logits (``-inf`` for non-candidates).
        pair_image: (P,) image index of each pair.
        num_images: N.
        kind: pooling.
        tau: temperature of the soft max.

    Returns:
        (N, H) image-level logits.
    """
    P, H = pair_logits.shape
    idx = pair_image[:, None].expand(P, H)
    neg_inf = torch.full((num_images, H), float("-inf"), dtype=pair_logits.dtype, device=pair_logits.device)
    mx = neg_inf.scatter_reduce(0, idx, pair_logits.detach(), reduce="amax", include_self=True)
    if kind == "max":
        return neg_inf.scatter_reduce(0, idx, pair_logits, reduce="amax", include_self=True)
    valid = torch.isfinite(mx)
    if kind == "mean":
        finite = torch.isfinite(pair_logits)
        s = pair_logits.new_zeros(num_images, H).scatter_add(
            0, idx, torch.where(finite, pair_logits, torch.zeros_like(pair_logits)))
        n = pair_logits.new_zeros(num_images, H).scatter_add(0, idx, finite.to(pair_logits.dtype))
        return torch.where(valid, s / n.clamp(min=1), neg_inf)
    if kind != "lse":
        raise ValueError(f"unknown pooling {kind!r}; choose 'lse', 'max' or 'mean'")
    safe_mx = torch.where(valid, mx, torch.zeros_like(mx))
    e = torch.exp((pair_logits - safe_mx[pair_image]) / tau)  # (P, H), 0 where -inf
    ssum = pair_logits.new_zeros(num_images, H).scatter_add(0, idx, e)
    out = safe_mx + tau * torch.log(ssum.clamp(min=1e-30))
    return torch.where(valid, out, neg_inf)


def _masked_kl(teacher: torch.Tensor, student: torch.Tensor, mask: torch.Tensor, dim: int, T: float) -> torch.Tensor:
    """Mean over valid slices of ``T**2 * KL(softmax(t/T) || softmax(s/T))`` along ``dim`` on the mask."""
    t = torch.where(mask, teacher / T, torch.full_like(teacher, NEG))
    s = torch.where(mask & torch.isfinite(student), student / T, torch.full_like(student, NEG))
    q = F.softmax(t, dim=dim)
    log_p = F.log_softmax(s, dim=dim)
    kl = (torch.special.xlogy(q, q) - q * log_p).sum(dim)  # per slice
    ok = mask.sum(dim) >= 2  # a slice with a single candidate carries no information
    if not bool(ok.any()):
        return student.new_zeros(()) + 0.0 * student[torch.isfinite(student)].sum()
    return (T ** 2) * kl[ok].mean()


def interaction_distillation_loss(student_image_logits: torch.Tensor, teacher_logits: torch.Tensor,
                                  candidates: torch.Tensor, T: float = 2.0) -> torch.Tensor:
    """Per-image KL from the teacher's HOI distribution to the pooled student's (interaction distillation).

    ``L_img = T**2 * mean_i KL( softmax_{k in C(i)}(t_{i,k}/T) || softmax_{k in C(i)}(S_{i,k}/T) )`` with ``S`` the
    pooled pair logits (``pool_pairs``). Uses no instance labels: pairs get credit only through the pooling.
    Images with fewer than two candidate HOIs are skipped. Zero exactly when ``S = t`` on ``C(i)``.

    Args:
        student_image_logits: (N, H) pooled student logits.
        teacher_logits: (N, H) teacher zero-shot logits.
        candidates: (N, H) bool candidate HOIs per image.
        T: temperature.
    """
    return _masked_kl(teacher_logits, student_image_logits, candidates, dim=1, T=T)


def cross_image_distillation_loss(student_image_logits: torch.Tensor, teacher_logits: torch.Tensor,
                                  candidates: torch.Tensor, T: float = 2.0) -> torch.Tensor:
    """Contrastive (cross-image) distillation: for every HOI, which images of the batch show it most.

    ``L_x = T**2 * mean_k KL( softmax_{i: k in C(i)}(t_{i,k}/T) || softmax_{i: k in C(i)}(S_{i,k}/T) )``, the
    softmax taken over the images of the batch (columns with fewer than two candidate images are skipped). It makes
    the student's scores of one HOI comparable across images, which is what detection mAP ranks.
    """
    return _masked_kl(teacher_logits, student_image_logits, candidates, dim=0, T=T)


def region_distillation_loss(pair_logits: torch.Tensor, crop_teacher_logits: torch.Tensor,
                             candidates: torch.Tensor, T: float = 2.0) -> torch.Tensor:
    """Cross-level term: each pair's HOI distribution matched to the teacher applied to the pair's union crop.

    ``L_reg = T**2 * mean_p KL( softmax_{k in C(p)}(u_{p,k}/T) || softmax_{k in C(p)}(s_{p,k}/T) )`` with
    ``u_{p,k}`` the image-level teacher's zero-shot logit of phrase ``k`` on the crop of the union box of pair
    ``p`` (no instance labels; pairs with fewer than two candidates are skipped).
    """
    return _masked_kl(crop_teacher_logits, pair_logits, candidates, dim=1, T=T)


def teacher_description(teacher_logits: torch.Tensor, text: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    """The teacher's image-level linguistic description in the text space.

    ``d_i = normalise( sum_k softmax_k(t_{i,k} / T) * e_k )`` with ``e_k`` the phrase embeddings: (N, H), (H, E) ->
    (N, E). (In real mode a VLLM's description encoded by the teacher's text tower can be averaged in.)
    """
    return F.normalize(F.softmax(teacher_logits / T, dim=1) @ text, dim=-1)


def context_distillation_loss(context: torch.Tensor, description: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """Symmetric InfoNCE between the VLT outputs and the teacher's descriptions (context distillation).

    ``L_ctx = 1/2 [ CE(c d^T / tau, I) + CE(d c^T / tau, I) ]`` with ``c_i`` the normalised VLT output and ``d_i``
    the normalised description of image ``i`` (CLIP-style loss; positives on the diagonal, other images of the
    batch as negatives).

    Args:
        context: (N, E) VLT outputs.
        description: (N, E) teacher descriptions.
        tau: temperature.
    """
    c = F.normalize(context, dim=-1)
    d = F.normalize(description, dim=-1)
    logits = c @ d.T / tau  # (N, N)
    y = torch.arange(c.shape[0], device=c.device)
    return 0.5 * (F.cross_entropy(logits, y) + F.cross_entropy(logits.T, y))


def _label_ce(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean over slices with a positive of ``-(1/|Y|) sum_{k in Y} log softmax_{mask}(logits)_k`` along ``dim``."""
    x = torch.where(mask & torch.isfinite(logits), logits, torch.full_like(logits, NEG))
    log_p = F.log_softmax(x, dim=dim)
    y = (labels & mask).to(log_p.dtype)
    n = y.sum(dim)
    ok = n > 0
    if not bool(ok.any()):
        return logits.new_zeros(()) + 0.0 * logits[torch.isfinite(logits)].sum()
    ce = -(y * log_p).sum(dim) / n.clamp(min=1)
    return ce[ok].mean()


def mil_loss(image_logits: torch.Tensor, labels: torch.Tensor, candidates: torch.Tensor,
             w_cross: float = 1.0) -> torch.Tensor:
    """Multiple-instance learning from image-level HOI labels (the weakly supervised baseline ``weak-mil``).

    With ``S_{i,k}`` the pair logits pooled over the image's pairs (``pool_pairs``: the bag's score), ``Y_i`` the
    HOIs image ``i`` shows and ``C(i)`` its candidates:
    ``L_mil = mean_{i: Y_i != {}} [ -(1/|Y_i|) sum_{k in Y_i} log softmax_{k' in C(i)}(S_{i,k'}) ]
    + w_cross * mean_{k: I_k != {}} [ -(1/|I_k|) sum_{i in I_k} log softmax_{i': k in C(i')}(S_{i',k}) ]``,
    ``I_k`` the batch's images showing ``k``: the per-image cross-entropy to the uniform distribution over the
    image's true HOIs, and its cross-image form (which images of the batch show HOI ``k``), the label counterparts of
    ``interaction_distillation_loss`` and ``cross_image_distillation_loss``. Pairs get credit only through the
    pooling (no pair-level label: Weakly-HOI / Align-Former style).

    Args:
        image_logits: (N, H) pooled pair logits.
        labels: (N, H) bool image-level labels.
        candidates: (N, H) bool candidate HOIs per image.
        w_cross: weight of the cross-image term.
    """
    loss = _label_ce(image_logits, labels, candidates, dim=1)
    if w_cross:
        loss = loss + w_cross * _label_ce(image_logits, labels, candidates, dim=0)
    return loss


def pair_label_loss(pair_logits: torch.Tensor, labels: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Fully supervised pair term (the ceiling ``upper``).

    ``L_pair = mean_{p: Y_p != {}} [ -(1/|Y_p|) sum_{k in Y_p} log softmax_{k' in C(p)}(s_{p,k'}) ]`` with ``Y_p``
    the HOIs of the ground-truth pair proposal ``p`` matches; pairs that match none carry no term (the detection
    score's geometric prior ranks them, as for every row).

    Args:
        pair_logits: (P, H); labels: (P, H) bool; candidates: (P, H) bool.
    """
    return _label_ce(pair_logits, labels, candidates, dim=1)


def description_logits(description: torch.Tensor, text: torch.Tensor, tau: float = 0.02) -> torch.Tensor:
    """An image-level description's HOI logits: ``l_{i,k} = cos(d_i, e_k) / tau``, (N, E), (H, E) -> (N, H).

    ``d_i`` the description of image ``i`` in the text space (``descriptions.encode_descriptions``), ``e_k`` the
    phrase of HOI ``k``: how strongly the description names each interaction (the VLLM's image-level interaction
    knowledge that ``description_distillation_loss`` hands to the pairs).
    """
    return F.normalize(description, dim=-1) @ F.normalize(text, dim=-1).T / tau


def description_distillation_loss(student_image_logits: torch.Tensor, desc_logits: torch.Tensor,
                                  candidates: torch.Tensor, valid: torch.Tensor, T: float = 2.0,
                                  w_cross: float = 1.0) -> torch.Tensor:
    """Interaction distillation from the description: the per-image and cross-image KL of
    ``interaction_distillation_loss`` / ``cross_image_distillation_loss`` with the description's logits
    ``l = description_logits(d, e)`` as the teacher, over the images that have a description:

    ``L_desc = L_img(S, l; C & valid) + w_cross * L_x(S, l; C & valid)``, ``S`` the pooled pair logits.

    Args:
        student_image_logits: (N, H) pooled pair logits; desc_logits: (N, H); candidates: (N, H) bool;
        valid: (N,) bool, images with a description; T: temperature; w_cross: weight of the cross-image term.
    """
    m = candidates & valid[:, None]
    loss = interaction_distillation_loss(student_image_logits, desc_logits, m, T)
    if w_cross:
        loss = loss + w_cross * cross_image_distillation_loss(student_image_logits, desc_logits, m, T)
    return loss
