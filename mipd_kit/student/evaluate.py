"""A trained student on a prepared split: predictions in the SWiG prediction format (:func:`predict_swig`, top-k
verbs with frames plus the ground-truth verb's frame) and their metric rows (``mipd_kit.eval.swig``), with the
dev-only unseen verbs' rows and the zero-shot reference rows of an image-text model.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from ..machine import to_device
from .data import StudentData, World, cxcywh_to_unit_xyxy
from .model import OvGSRStudent, StudentVocab, to_input


def frame_of(vocab: StudentVocab, verb: int, nouns: torch.Tensor, boxes: torch.Tensor, exists: torch.Tensor,
             size: tuple[float, float]) -> dict[str, dict]:
    """The frame of ``verb`` (role -> ``{"noun", "box"}``, boxes in pixels of an image of ``size`` (W, H), ``None``
    for a role predicted without a box) from one hypothesis' per-role nouns, boxes and box-exists probabilities."""
    W, H = size
    out = {}
    for r, ri in enumerate(vocab.verb_roles[verb].tolist()):
        if ri < 0:
            break
        box = None
        if float(exists[r]) > 0.5:
            x1, y1, x2, y2 = cxcywh_to_unit_xyxy(boxes[r]).tolist()
            box = [x1 * W, y1 * H, x2 * W, y2 * H]
        out[vocab.roles[ri]] = {"noun": vocab.nouns[int(nouns[r])], "box": box}
    return out


@torch.no_grad()
def predict_swig(model: OvGSRStudent, d: StudentData, vocab: StudentVocab, k: int = 5,
                 batch_size: int = 128) -> dict[str, dict]:
    """Predictions in the SWiG prediction format: top-k verbs with frames, plus ``gt_verb_frame``."""
    model.eval()
    dev = next(model.parameters()).device
    preds: dict[str, dict] = {}
    for s in range(0, len(d), batch_size):
        sl = slice(s, s + batch_size)
        gtv = d.verb[sl]
        p = model.predict(to_input(to_device(d.x[sl], dev)), k=k, gt_verbs=to_device(gtv.clamp(min=0), dev),
                          pooled=None if d.xp is None else to_device(d.xp[sl], dev))
        p = {key: v.cpu() for key, v in p.items()}
        for j, im in enumerate(d.images[sl]):
            size = (float(d.sizes[s + j, 0]) or 1.0, float(d.sizes[s + j, 1]) or 1.0)
            verbs = []
            for t in range(p["verbs"].shape[1]):
                v = int(p["verbs"][j, t])
                verbs.append({"verb": vocab.verbs[v], "score": float(p["scores"][j, t]),
                              "frame": frame_of(vocab, v, p["nouns"][j, t], p["boxes"][j, t], p["exists"][j, t], size)})
            rec = {"verbs": verbs}
            if int(gtv[j]) >= 0:
                rec["gt_verb_frame"] = frame_of(vocab, int(gtv[j]), p["gt_nouns"][j], p["gt_boxes"][j], p["gt_exists"][j], size)
            preds[im] = rec
    return preds



def evaluate_predictions(world: World, preds: dict, model_name: str, seed: Optional[int], split: str = "test") -> list:
    """``mipd_kit.eval.swig.evaluate_swig`` rows relabelled with the model name and seed."""
    from ..eval.swig import evaluate_swig
    return evaluate_swig(world.gt[split], preds, world.split, model=model_name, seed=seed, space=world.space)



def dev_unseen_rows(world: World, dev_preds: dict, model_name: str, seed: Optional[int]) -> list:
    """The dev images' rows of the dev-only unseen splits (``unseen_dev*``, ov protocol v2): the only unseen verbs a
    selection may look at. Empty for a world without them."""
    if not any(k.startswith("unseen_dev") for k in world.split.lists()):
        return []
    rows = evaluate_predictions(world, dev_preds, model_name, seed, split="dev")
    return [r for r in rows if r.split.startswith("unseen_dev")]



def teacher_rows(teacher: Any, world_dir: str | os.PathLike, seeds: Sequence[int], split: str = "test",
                 model: str = "teacher") -> list:
    """Zero-shot verb rows of an image-text model (``mipd_kit.teachers.zero_shot.zero_shot_verbs``; the teacher, or
    the frozen student backbone as ``student-zs``) on ``split`` plus the dev images' ``unseen_dev*`` rows, one copy
    per seed so the seed-aggregated table has the reference row (the model is fixed: std 0)."""
    from ..teachers.zero_shot import zero_shot_verbs
    _, rows = zero_shot_verbs(teacher, world_dir, split=split)
    if split != "dev" and (Path(world_dir) / "dev.json").is_file():
        _, dev = zero_shot_verbs(teacher, world_dir, split="dev")
        rows += [r for r in dev if r.split.startswith("unseen_dev")]
    return [dataclasses.replace(r, seed=s, model=model) for s in seeds for r in rows]

