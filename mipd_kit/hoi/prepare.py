"""CL-HOI's material for a world: the teacher, pair proposals (known boxes or a detector), the teacher's features
of the proposals' pairs, the image descriptions the VLT learns from (a file, or written through the ``Sampler``
interface), the control rows' targets, and the proposals' measured error.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F

from mipd_kit.data.records import DataError, HOIImage, HOIVocab

from ..fileio import atomic_write_text
from .config import CLHOIConfig
from .descriptions import (DESCRIBE_BATCH, DescriptionStore, build_describer, describe_into_store, describe_messages,
                           encode_descriptions)
from .features import PairData, build_pair_data, crop_embeddings, encode_images
from .proposals import (PairProposals, ProposalStats, detector_proposals, jittered_detections,
                        known_boxes_proposals, proposal_quality, write_detections)
from .world import HOIWorld, LabelFreeImage, labelled_training_images


def teacher_config(cfg: CLHOIConfig):
    """The ``TeacherConfig`` that ``cfg.teacher`` / ``teacher_size`` / ``teacher_checkpoint`` name (teacher seed 0,
    independent of the student seeds)."""
    from mipd_kit.teachers import TeacherConfig
    if cfg.teacher not in ("embedded", "checkpoint", "tiny"):
        raise ValueError(f"unknown teacher {cfg.teacher!r}; choose 'embedded', 'checkpoint' or 'tiny'")
    if cfg.teacher == "checkpoint" and not cfg.teacher_checkpoint:
        raise ValueError("teacher='checkpoint' needs teacher_checkpoint")
    return TeacherConfig(backend=cfg.teacher, size=cfg.teacher_size, checkpoint=cfg.teacher_checkpoint,
                         threads=cfg.threads, device=cfg.device).with_paths(cfg.world_dir, cfg.cache_dir)


def build_teacher(cfg: CLHOIConfig):
    """The teacher named by ``cfg.teacher`` (``mipd_kit.teachers.build_teacher`` of :func:`teacher_config`)."""
    from mipd_kit.teachers import build_teacher as build
    return build(teacher_config(cfg))


def teacher_scale(teacher: Any, cfg: CLHOIConfig) -> float:
    """``cfg.teacher_logit_scale`` or the teacher's own learned ``logit_scale`` (log-parametrised), else 100."""
    if cfg.teacher_logit_scale > 0:
        return float(cfg.teacher_logit_scale)
    ls = getattr(teacher, "logit_scale", None)
    if isinstance(ls, torch.Tensor):
        return float(ls.detach().exp().clamp(max=100.0))
    return 100.0


def make_proposals(cfg: CLHOIConfig, images: Sequence[LabelFreeImage | HOIImage], vocab: HOIVocab, split: str,
                   seed: int, out_dir: Optional[Path] = None) -> tuple[list[PairProposals], ProposalStats]:
    """Proposals of one split in the configured mode (reads boxes and object categories only)."""
    if cfg.proposals == "known_boxes":
        return known_boxes_proposals(images, vocab, object_labels=cfg.object_labels)  # type: ignore[arg-type]
    path = cfg.detections_train if split == "train" else cfg.detections_test
    if path:
        dets: Any = path
    else:
        dets = jittered_detections(images, vocab, noise=cfg.jitter, seed=seed + (0 if split == "train" else 7919))  # type: ignore[arg-type]
        if out_dir is not None:
            write_detections(out_dir / f"detections-{split}-seed{seed}.json", dets)
    return detector_proposals(dets, [(im.filename, im.width, im.height) for im in images], vocab,
                              score_threshold=cfg.score_threshold, source=f"{split} detections")


def pair_data_for(teacher: Any, world: HOIWorld, proposals: Sequence[PairProposals], text: torch.Tensor,
                  scale: float, cfg: CLHOIConfig, dataset: str) -> PairData:
    """Teacher features of the proposals' images and the flat pair tensors."""
    paths = [world.images_dir / p.filename for p in proposals]
    enc = encode_images(teacher, paths, cfg.cache_dir if cfg.teacher != "tiny" else None, dataset)
    crops = crop_embeddings(teacher, world.images_dir, proposals) if cfg.crop_features else None
    return build_pair_data(proposals, enc, tuple(teacher.grid), text, world.vocab, scale, cfg.roi_size, crops)


def read_descriptions(path: str | os.PathLike, filenames: Sequence[str], teacher: Any) -> torch.Tensor:
    """(N, E) normalised teacher text embeddings of VLLM descriptions ``{filename: text}``; a zero row for an image
    without one (``DataError`` when no image has one)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{p}: cannot read descriptions ({e})") from e
    if not isinstance(data, dict):
        raise DataError(f"{p}: descriptions must be an object {{filename: text}}")
    texts = [data.get(f, "") for f in filenames]
    have = [i for i, t in enumerate(texts) if isinstance(t, str) and t.strip()]
    if not have:
        raise DataError(f"{p}: no description for any of the {len(filenames)} training images")
    e = F.normalize(teacher.encode_texts([texts[i] for i in have]).pooled.float(), dim=-1)
    emb = torch.zeros(len(filenames), e.shape[1])
    emb[have] = e
    return emb


def describe_images(sampler: Any, image_paths: Sequence[str | os.PathLike], out_path: str | os.PathLike) -> dict:
    """Real mode: ask a VLLM (a ``Sampler``) for an image-level description of each image; writes ``{name: text}``
    (the ``descriptions_file`` format; the stage itself keeps a resumable store, ``descriptions.py``)."""
    out = {}
    for p in image_paths:
        out[Path(p).name] = sampler(describe_messages(p, inline=False)).text.strip()
    q = Path(out_path)
    q.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(q, json.dumps(out, indent=1))
    return out


def image_descriptions(cfg: CLHOIConfig, teacher: Any, world: HOIWorld, filenames: Sequence[str],
                       store_path: Optional[Path] = None) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """The ``clhoi`` VLT targets: descriptions of the training images in the teacher's text space.

    From ``cfg.descriptions_file`` when given, else written by the describer (``cfg.describer``) through the
    ``Sampler`` interface into the store at ``store_path`` (default ``run_dir/clhoi/descriptions.jsonl``), reused
    across seeds and re-runs.

    Returns:
        (N, E) normalised embeddings (zero rows for images without a description), (N,) bool which images have one,
        and info (counts, the describer's fingerprint, a few examples).
    """
    if cfg.descriptions_file:
        emb = read_descriptions(cfg.descriptions_file, filenames, teacher)
        valid = emb.abs().sum(1) > 0
        return emb, valid, {"source": str(cfg.descriptions_file), "described": int(valid.sum())}
    sampler = build_describer(cfg.describer, teacher, cfg.world_dir, cfg.cache_dir,
                              captioner_size=cfg.captioner_size, captioner_checkpoint=cfg.captioner_checkpoint,
                              captioner_weights=cfg.captioner_weights, temperature=cfg.describe_temperature,
                              sampler=cfg.describer_sampler)
    store = DescriptionStore(store_path or Path(cfg.run_dir) / "clhoi" / "descriptions.jsonl")
    try:
        texts, stats = describe_into_store(sampler, [world.images_dir / f for f in filenames], store,
                                           workers=DESCRIBE_BATCH if cfg.describer == "captioner" else 1)
    finally:
        store.close()
    if not texts:
        raise DataError(f"{store.path}: the describer {sampler.fingerprint} described none of the "
                        f"{len(filenames)} training images ({'; '.join(stats['errors'][:3])})")
    emb, valid = encode_descriptions(teacher, filenames, texts)
    examples = {f: texts[f] for f in list(filenames)[:5] if f in texts}
    return emb, valid, {"source": str(store.path), "describer": str(sampler.fingerprint), **stats,
                        "described": int(valid.sum()), "distinct_texts": len(set(texts.values())),
                        "examples": examples}


def control_targets(cfg: CLHOIConfig, teacher: Any, world: HOIWorld,
                    data: PairData) -> tuple[dict[str, Any], dict[str, Any]]:
    """What the control rows train on, for the training pairs ``data`` (``controls.py``).

    Returns:
        ``{"oracle": (emb, valid), "oracle-shuffled": (emb, valid), "mil": (N, H) image labels, "pairs": (P, H)
        pair labels}`` (each only when a row of ``cfg.models`` needs it) and info: counts and a few oracle texts.
    """
    from . import controls as C

    labelled = labelled_training_images(world)
    names = list(data.filenames)
    out: dict[str, Any] = {}
    info: dict[str, Any] = {}
    if {"clhoi-oracle", "clhoi-oracle-shuffled"} & set(cfg.models):
        texts = C.oracle_descriptions(labelled, world.prompts)
        people = {im.filename: C.people_count(im.boxes_h) for im in world.train}
        shuffled = C.shuffle_by_people(texts, people, seed=cfg.dev_seed)
        out["oracle"] = encode_descriptions(teacher, names, texts)
        out["oracle-shuffled"] = encode_descriptions(teacher, names, shuffled)
        info["oracle"] = {"described": int(out["oracle"][1].sum()), "distinct_texts": len(set(texts.values())),
                          "shuffled_same_text": sum(shuffled[f] == texts[f] for f in texts),
                          "examples": {f: texts[f] for f in names[:3] if f in texts},
                          "vs_truth": C.description_precision_recall(texts, labelled, world.prompts)}
    if "weak-mil" in cfg.models:
        out["mil"] = C.image_labels(labelled, names, len(world.prompts))
        info["mil"] = {"images_with_labels": int(out["mil"].any(1).sum()), "labels": int(out["mil"].sum())}
    if "upper" in cfg.models:
        out["pairs"] = C.pair_labels(labelled, names, data.pair_image, data.boxes_h, data.boxes_o,
                                     len(world.prompts))
        info["upper"] = {"pairs": data.num_pairs, "labelled_pairs": int(out["pairs"].any(1).sum())}
    return out, info


def proposal_report(world: HOIWorld, cfg: CLHOIConfig, jitters: Sequence[float] = (0.05, 0.1, 0.2),
                    seed: int = 0) -> list[dict[str, Any]]:
    """Proposal statistics and measured error on the test split: known boxes and the embedded detector at
    several jitter levels (one dict per setting; ground truth read for the error measurement only)."""
    out = []
    settings = [("known_boxes", 0.0)] + [("detector", float(j)) for j in jitters]
    for mode, j in settings:
        c = replace(cfg, proposals=mode, jitter=j, detections_test="")
        props, stats = make_proposals(c, world.test, world.vocab, "test", seed)
        out.append({"mode": mode, "jitter": j, **proposal_quality(props, world.test), **stats.as_dict()})
    return out
