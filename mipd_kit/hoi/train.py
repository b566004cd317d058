"""CL-HOI student training: label-free HOI detection distilled from an image-level teacher (the losses of one batch
and the training loop of a VLT + ICN student).

Pipeline: pair proposals (``proposals.py``, ``prepare.py``; known boxes or a detector) -> frozen teacher features,
zero-shot phrase logits and RoIAlign region features (``features.py``) -> VLT + ICN student (``models.py``) trained
here with the contrastive distillation losses (``losses.py``) -> scores and predictions in the HICO-DET prediction
format (``scoring.py``) -> ``mipd_kit.eval.hico.evaluate_hico`` (official protocol) on the HOI test split, Default and
Known-object, Full / Rare / Non-rare and the world's zero-shot Unseen / Seen. The configuration and the row names are
``config.py``; the run (every row and seed, files in the run folder, ``mipd clhoi``) is
``mipd_kit.app.stages.clhoi_runs``.

**Label-free.** Training reads only images, proposal boxes (and their object categories, as a detector gives) and
teacher outputs. The ground-truth ``hoi`` / ``verb`` fields of the training file are never read: the training
images are turned into ``LabelFreeImage`` records at once, and tests check that corrupting those fields changes
nothing. Test labels are read only by the evaluator.

Models (rows of ``metrics.json``, task ``hoi``):

* ``teacher``: the teacher's image-level probability of each HOI (softmax over the image's candidate HOIs, i.e.
  those whose object was proposed, at temperature T) broadcast to every pair with that object.
* ``spatial_prior``: ``teacher`` times ``exp(-gap)``, gap = distance between the boxes' edges in human heights (no
  labels, no fitting: "people interact with what they touch or are near").
* ``teacher_crop`` (extra baseline, needs ``crop_features``): the same teacher applied zero-shot to each pair's
  union crop, times ``exp(-gap)``; it shows how much of the students' gain is the teacher's own region knowledge.
* ``icn``: the ICN trained with the interaction distillation terms (per-image KL through LSE pair pooling,
  cross-image KL, per-pair KL to the teacher on union crops), no VLT / context term.
* ``clhoi``: ICN + VLT with the context distillation (InfoNCE) term as well (full method): the VLT learns to map
  the teacher's visual tokens to the text embedding of the image's *description*, written by a vision-language model
  through the ``Sampler`` interface (the embedded captioner by default, an OpenAI-compatible endpoint in real mode;
  ``descriptions.py``), and every pair attends to the translated context tokens of its image (cross-attention).
* ``clhoi-logitctx`` (control): the same student, but the VLT's target is the teacher's logit mix
  ``softmax(t_i / T) @ e`` over the HOI phrase embeddings (``losses.teacher_description``), the earlier design;
  the difference to ``clhoi`` is what the descriptions contribute.

Control rows (``config.CONTROL_MODELS``, off unless ``models`` names them; they read the training labels on purpose,
``controls.py``): ``clhoi-oracle`` (``clhoi`` with descriptions written from the ground truth: the positive control
of the context path), ``clhoi-oracle-shuffled`` (those descriptions on another image with as many people),
``weak-mil`` (the ICN trained from image-level labels by multiple-instance learning, no teacher, no context: the
weakly supervised baseline) and ``upper`` (the ICN trained from pair-level labels: the ceiling).

Besides the HICO-DET mAP rows, every prediction file is also scored as V-COCO scenario-1 role AP
(``mipd_kit.app.stages.clhoi_runs.vcoco_eval``): the test split written in the V-COCO instance format
(``mipd_kit.data.synthsitu.vcoco``) at ``run_dir/clhoi/vcoco_test.json``, the predictions at
``run_dir/predictions/vcoco-<model>-seed<k>.json``, so ``mipd eval-vcoco --gt run_dir/clhoi/vcoco_test.json --pred
run_dir/predictions/vcoco-clhoi-seed0.json`` gives the same numbers.

Student detection score (``cfg.score = "pair_prior"``): the student's HOI distribution of the pair times the same
geometric prior ``exp(-gap)`` as ``spatial_prior`` (other choices in ``scoring.student_pair_scores``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Optional

import torch
import torch.nn.functional as F

from . import losses as L
from .config import CLHOIConfig
from .features import PairData, normalise_spatial
from .models import ModelConfig, build_student
from .scoring import student_pair_scores

# ----------------------------------------------------------------------------------------------- training

@dataclass
class TrainHistory:
    """Per-epoch mean losses (named parts) and wall time."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    wall_time_s: float = 0.0


def _forward(model, d: PairData, spatial: torch.Tensor) -> dict:
    return model(d.grid, d.image_pooled, d.pair_image, d.feat_h, d.feat_o, d.feat_u, spatial, d.text, d.candidates,
                 d.log_prior, d.crops)


def compute_losses(out: dict, d: PairData, cfg: CLHOIConfig, description: Optional[torch.Tensor],
                   valid: Optional[torch.Tensor] = None, target: str = "logits",
                   labels: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
    """Weighted total and named parts for one batch.

    ``L = w_image L_img + w_cross L_x + w_region L_reg + w_context L_ctx`` (``losses``); ``L_ctx`` is taken over
    the batch's images that have a description (``valid``, (N,) bool; all when None), and only when there are at
    least two of them (InfoNCE needs a negative); ``+ w_describe L_desc`` (the description's HOI distribution
    distilled into the pooled pair logits) where the student has a context branch. The label rows replace the whole
    objective: ``target="mil"``: ``L = L_mil`` on the pooled pair logits with the (N, H) image ``labels``;
    ``target="pairs"``: ``L = L_pair + L_mil`` with the (P, H) pair ``labels`` and the image labels they imply.
    """
    n = len(d.filenames)
    img = L.pool_pairs(out["pair_logits"], d.pair_image, n, cfg.pool, cfg.pool_tau)  # (N, H)
    if target == "mil":
        parts = {"mil": L.mil_loss(img, labels, d.image_candidates, w_cross=cfg.w_cross)}
        parts["total"] = parts["mil"]
        return parts
    if target == "pairs":  # the pair labels, and the image labels they imply
        y_img = L.pool_pairs(labels.float(), d.pair_image, n, "max") > 0  # (N, H)
        parts = {"pair": L.pair_label_loss(out["pair_logits"], labels, d.candidates),
                 "mil": L.mil_loss(img, y_img, d.image_candidates, w_cross=cfg.w_cross)}
        parts["total"] = parts["pair"] + parts["mil"]
        return parts
    parts = {
        "image_kd": L.interaction_distillation_loss(img, d.teacher_logits, d.image_candidates, cfg.kd_temperature),
        "cross_kd": L.cross_image_distillation_loss(img, d.teacher_logits, d.image_candidates, cfg.kd_temperature),
    }
    total = cfg.w_image * parts["image_kd"] + cfg.w_cross * parts["cross_kd"]
    if cfg.w_region > 0 and d.crop_logits.shape[1]:
        parts["region_kd"] = L.region_distillation_loss(out["pair_logits"], d.crop_logits, d.candidates,
                                                        cfg.kd_temperature)
        total = total + cfg.w_region * parts["region_kd"]
    if out["context"] is not None and cfg.w_describe > 0 and description is not None:
        ok = valid if valid is not None else torch.ones(n, dtype=torch.bool, device=description.device)
        dl = L.description_logits(description, d.text, cfg.describe_tau)  # (N, H)
        parts["describe_kd"] = L.description_distillation_loss(img, dl, d.image_candidates, ok,
                                                               cfg.kd_temperature, cfg.w_cross)
        total = total + cfg.w_describe * parts["describe_kd"]
    if out["context"] is not None and cfg.w_context > 0 and description is not None:
        ok = valid if valid is not None else torch.ones(n, dtype=torch.bool, device=description.device)
        if int(ok.sum()) > 1:
            parts["context"] = L.context_distillation_loss(out["context"][ok], description[ok], cfg.context_tau)
            total = total + cfg.w_context * parts["context"]
    parts["total"] = total
    return parts


def train_student(kind: str, data: PairData, cfg: CLHOIConfig, seed: int,
                  descriptions: Optional[torch.Tensor] = None, target: str = "logits",
                  valid: Optional[torch.Tensor] = None,
                  labels: Optional[torch.Tensor] = None) -> tuple[torch.nn.Module, dict, TrainHistory]:
    """Train ``icn`` or ``clhoi`` on pair data (label-free; only ``target="mil"`` / ``"pairs"`` take labels).

    Args:
        kind: ``"icn"`` or ``"clhoi"``.
        data: training pairs (built from proposals and teacher outputs only).
        cfg: stage config.
        seed: seeds initialisation, dropout and batch order.
        descriptions: (N, E) description embeddings of the training images (``image_descriptions``).
        target: the VLT's context target: ``"description"`` (``descriptions`` themselves; images without one,
            ``valid`` False, are left out of the context loss) or ``"logits"`` (the teacher's logit mix
            ``losses.teacher_description``, with ``descriptions`` added when given: the ``clhoi-logitctx`` control);
            or ``"mil"`` / ``"pairs"``: the control rows ``weak-mil`` / ``upper``, trained from ``labels`` alone.
        valid: (N,) bool, which rows of ``descriptions`` hold a description (default: the non-zero rows).
        labels: (N, H) bool image labels (``target="mil"``) or (P, H) bool pair labels (``target="pairs"``).

    Returns:
        The model (eval mode), the spatial normalisation stats ``{"mean", "std"}``, and the history.
    """
    if not isinstance(data, PairData):
        raise TypeError("train_student takes PairData (proposals + teacher outputs), never annotated images")
    from mipd_kit.machine import autocast, resolve_device, to_device

    dev = resolve_device(cfg.device)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    mcfg = ModelConfig(kind=kind, visual_dim=int(data.grid.shape[1]), text_dim=int(data.text.shape[1]),
                       hidden=cfg.hidden, dropout=cfg.dropout, crop_dim=int(data.crops.shape[1]),
                       prior_weight=cfg.prior_weight, context_gate=cfg.context_gate,
                       context_fusion=cfg.context_fusion)
    model = to_device(build_student(mcfg), dev)  # initialised on the CPU: the same weights on every device
    spatial, mean, std = normalise_spatial(data.spatial)
    data = replace(data, spatial=spatial)
    n_img, e_dim = data.teacher_logits.shape[0], data.text.shape[1]
    if descriptions is not None and tuple(descriptions.shape) != (n_img, e_dim):
        raise ValueError(f"descriptions have shape {tuple(descriptions.shape)}, expected {(n_img, e_dim)}")
    if target == "logits":
        desc_all = L.teacher_description(data.teacher_logits, data.text, cfg.description_temperature)
        if descriptions is not None:
            desc_all = F.normalize(desc_all + descriptions, dim=-1)
        valid_all = torch.ones(n_img, dtype=torch.bool)
    elif target == "description":
        if kind == "clhoi" and descriptions is None:
            raise ValueError("target='description' needs the descriptions (image_descriptions)")
        desc_all = descriptions if descriptions is not None else torch.zeros(n_img, e_dim)
        valid_all = valid if valid is not None else desc_all.abs().sum(1) > 0
    elif target in ("mil", "pairs"):
        want = (n_img if target == "mil" else data.num_pairs, int(data.text.shape[0]))
        if labels is None or tuple(labels.shape) != want:
            raise ValueError(f"target={target!r} needs labels of shape {want}, "
                             f"got {None if labels is None else tuple(labels.shape)}")
        desc_all = torch.zeros(n_img, e_dim)
        valid_all = torch.zeros(n_img, dtype=torch.bool)
    else:
        raise ValueError(f"unknown target {target!r}; choose 'description', 'logits', 'mil' or 'pairs'")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    vlt = getattr(model, "vlt", None)
    vlt_ids = {id(p) for p in vlt.parameters()} if vlt is not None else set()
    clip_groups = [g for g in ([p for p in model.parameters() if id(p) not in vlt_ids],
                               [p for p in model.parameters() if id(p) in vlt_ids]) if g]
    n = len(data.filenames)
    has_pairs = torch.zeros(n, dtype=torch.bool)
    has_pairs[data.pair_image] = True
    usable = torch.nonzero(has_pairs).flatten()
    steps_per_epoch = max(1, -(-len(usable) // cfg.batch_images))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs * steps_per_epoch))
    hist = TrainHistory()
    t0 = time.time()
    model.train()
    from mipd_kit.progress import progress
    for ep in progress(range(cfg.epochs), desc=f"CL-HOI {kind} seed {seed}", unit="epoch"):
        perm = usable[torch.randperm(len(usable), generator=gen)]
        sums: dict[str, float] = {}
        nb = 0
        for b in range(0, len(perm), cfg.batch_images):
            ids = perm[b:b + cfg.batch_images]
            d = data.subset(ids).to(dev)
            y = None
            if target == "mil":
                y = to_device(labels[ids], dev)
            elif target == "pairs":  # the pairs subset() keeps, in their order
                y = to_device(labels[torch.isin(data.pair_image, ids)], dev)
            with autocast(dev, cfg.amp):
                out = _forward(model, d, d.spatial)
                parts = compute_losses(out, d, cfg, to_device(desc_all[ids], dev), to_device(valid_all[ids], dev),
                                       target, y)
            opt.zero_grad()
            parts["total"].backward()
            for group in clip_groups:  # the VLT's InfoNCE gradients do not shrink the ICN's updates
                torch.nn.utils.clip_grad_norm_(group, 1.0)
            opt.step()
            sched.step()
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            nb += 1
        hist.epochs.append({"epoch": ep, **{k: v / max(nb, 1) for k, v in sums.items()}})
    hist.wall_time_s = time.time() - t0
    model.eval()
    return model, {"mean": mean, "std": std}, hist


@torch.no_grad()
def student_scores(model: torch.nn.Module, data: PairData, norm: dict, cfg: CLHOIConfig) -> torch.Tensor:
    """(P, H) pair scores of a trained student on (test) pair data."""
    from mipd_kit.machine import to_device

    model.eval()
    dev = next(model.parameters()).device
    spatial, _, _ = normalise_spatial(data.spatial, norm["mean"], norm["std"])
    out = _forward(model, data.to(dev), to_device(spatial, dev))
    return student_pair_scores(to_device(out["pair_logits"].float(), torch.device("cpu")), data, cfg)
