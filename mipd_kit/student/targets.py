"""Each variant's training material: which variants a prepared world supports, the rationale controls' copies of a
world, and the teacher targets a variant trains towards (NMPA-aligned features, negatives, zero-shot logits), attached
to copies of the train and unlabeled data (:func:`attach_targets`).

The variants and the ingredients each switches on are one table, :data:`mipd_kit.student.ingredients.ROWS`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Optional, Sequence

import torch

from ..align.nmpa import aligned_targets, build_align_data, train_nmpa
from ..data.records import DataError
from ..machine import resolve_device
from .config import StudentConfig
from .data import StudentData, World, concat_data
from .ingredients import USES, VARIANTS, drop_gold_negatives


def runnable_variants(world: World, variants: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Split ``variants`` into those the world supports and the skipped ones with the reason (never silent)."""
    ok, skipped = [], {}
    has_rat = world.align is not None and world.align.coverage()["images_with_glimpse"] > 0
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"unknown variant {v!r}; choose from {VARIANTS}")
        if "glimpse" in USES[v] and not has_rat:
            skipped[v] = "no positive rationales for the train images (run notebooks 02/03 first)"
        elif "unlabeled" in USES[v] and world.unlabeled is None:
            skipped[v] = "the world has no unlabeled pool"
        elif "all_labels" in USES[v] and world.unlabeled_gt is None:
            skipped[v] = "the world has no ground truth for its unlabeled pool (unlabeled_gt.json)"
        else:
            ok.append(v)
    return ok, skipped



def with_rationales(world: World, collected: dict[str, Any], source: str) -> World:
    """A copy of ``world`` whose NMPA material comes from other rationales (the ``template`` / ``shuffled`` /
    ``oracle`` controls): the same teacher features, the rationale banks and indices of the training images (gold-verb
    negatives dropped) and of the unlabeled pool (the source's positives of pool images, e.g. the oracle's) rebuilt
    from ``collected``, an NMPA cache of its own (NMPA trained on other rationales is another model)."""
    if world.align is None or world.encode_texts is None:
        raise DataError("with_rationales: the world was prepared without teacher material")
    a = world.align
    gold = {n: world.vocab.verbs[int(v)] for n, v in zip(world.train.images, world.train.verb.tolist())}
    collected, dropped = drop_gold_negatives(collected, gold, world.verb_words)
    align = build_align_data(a.images, a.role_names, a.boxes, a.box_exists, a.tokens, a.pooled, a.grid, collected,
                             world.encode_texts)
    u = world.align_unlabeled  # the unlabeled pool's targets read the source's pool rationales, when it has some
    align_u = u if u is None else build_align_data(u.images, u.role_names, u.boxes, u.box_exists, u.tokens, u.pooled,
                                                   u.grid, collected, world.encode_texts)
    report = {**world.report, "rationales": align.coverage(), "gold_negatives_dropped": dropped,
              "rationale_source": source}
    return dataclasses.replace(world, align=align, align_unlabeled=align_u, report=report, nmpa_cache={},
                               rationale_source=source)



def attach_targets(world: World, cfg: StudentConfig, progress: bool = False) -> tuple[StudentData, Optional[StudentData], dict]:
    """Variant-specific teacher targets on copies of the train (and unlabeled) data; trains NMPA when needed.

    Returns the train data, the unlabeled data (``unlabeled`` variant only) and a report (coverage, NMPA history).
    """
    u = cfg.uses
    tr = dataclasses.replace(world.train)
    info: dict[str, Any] = {}
    if u["all_labels"]:
        if world.unlabeled_gt is None:
            raise DataError(f"variant {cfg.variant!r} needs the unlabeled pool's ground truth (unlabeled_gt.json); "
                            "the world has none")
        tr = concat_data(tr, world.unlabeled_gt)
        info["all_labels_images"] = len(world.unlabeled_gt)
    if not u["distill"]:
        return tr, None, info
    a = world.align
    cov = a.coverage()
    info["rationales"] = cov
    needs_rationales = u["glimpse"]
    if needs_rationales:
        missing = cov["images_without_glimpse"] + (cov["roles_without_gaze"] if u["gaze"] else 0)
        if missing and cfg.strict_rationales:
            gaps = [a.images[i] for i in torch.nonzero(~(a.glimpse_pos >= 0).any(-1)).flatten()[:5].tolist()]
            raise DataError(f"strict_rationales: {cov['images_without_glimpse']} training images lack glimpse "
                            f"rationales and {cov['roles_without_gaze']} roles lack gaze rationales (e.g. {gaps})")
        if cov["images_with_glimpse"] == 0:
            raise DataError("no training image has a positive glimpse rationale: run notebooks 02/03 (rationales) "
                            f"before variant {cfg.variant!r}")
        ncfg = cfg.nmpa_config()
        key = ncfg.fingerprint()
        if key not in world.nmpa_cache:  # variants sharing an NMPA config (e.g. neg/full/unlabeled) train it once
            t0 = time.time()
            dev = resolve_device(cfg.device)
            model, hist = train_nmpa(a, ncfg, progress=progress, device=dev, amp=cfg.amp)
            world.nmpa_cache[key] = (model, hist, aligned_targets(model, a), time.time() - t0)
        model, hist, tg, info["nmpa_s"] = world.nmpa_cache[key]
        tg = dict(tg)
        info["nmpa_history"] = hist
        if not u["gaze"]:
            tg["roles"] = aligned_targets(None, a)["roles"]
    else:
        model = None
        tg = aligned_targets(None, a)
    if model is not None and cfg.text_anchor:
        from ..align.nmpa import text_anchored
        tg["scene"] = text_anchored(tg["scene"], a, cfg.text_anchor)
    tr.scene_t, tr.role_t = tg["scene"], tg["roles"]
    if u["neg"]:
        from ..align.nmpa import pooled_each, pooled_mean
        tr.neg, tr.neg_mask = pooled_each(a.bank, a.glimpse_neg)
        tr.pos, tr.pos_mask = pooled_mean(a.bank, a.glimpse_pos)
    if u["kd"]:
        tr.kd = world.kd_train
    un = None
    if u["unlabeled"] and world.unlabeled is not None:
        un = dataclasses.replace(world.unlabeled)
        un.scene_t = aligned_targets(model, world.align_unlabeled)["scene"] if model is not None else world.align_unlabeled.pooled
        if model is not None and cfg.text_anchor:
            from ..align.nmpa import text_anchored
            un.scene_t = text_anchored(un.scene_t, world.align_unlabeled, cfg.text_anchor)
        un.kd = world.kd_unlabeled if u["kd"] else None
    elif u["unlabeled"]:
        raise DataError(f"variant {cfg.variant!r} needs the world's unlabeled pool (unlabeled.json); none was loaded")
    return tr, un, info

