"""CL-HOI training and evaluation (``mipd clhoi``): label-free HOI detection distilled from an image-level teacher.

Pipeline: pair proposals (``proposals.py``; known boxes or a detector) -> frozen teacher features, zero-shot
phrase logits and RoIAlign region features (``features.py``) -> VLT + ICN student (``models.py``) trained with the
contrastive distillation losses (``losses.py``) -> predictions in the HICO-DET prediction format
(``run_dir/predictions/hoi-<model>-seed<k>.json``) -> ``mipd_kit.eval.hico.evaluate_hico`` (official protocol) on the
HOI test split, Default and Known-object, Full / Rare / Non-rare and the world's zero-shot Unseen / Seen.

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

Control rows (``CONTROL_MODELS``, off unless ``models`` names them; they read the training labels on purpose,
``controls.py``): ``clhoi-oracle`` (``clhoi`` with descriptions written from the ground truth: the positive control
of the context path), ``clhoi-oracle-shuffled`` (those descriptions on another image with as many people),
``weak-mil`` (the ICN trained from image-level labels by multiple-instance learning, no teacher, no context: the
weakly supervised baseline) and ``upper`` (the ICN trained from pair-level labels: the ceiling).

Besides the HICO-DET mAP rows, every prediction file is also scored as V-COCO scenario-1 role AP (``vcoco_eval``
below): the test split written in the V-COCO instance format (``mipd_kit.data.synthsitu.vcoco``) at
``run_dir/clhoi/vcoco_test.json``, the predictions at ``run_dir/predictions/vcoco-<model>-seed<k>.json``, so
``mipd eval-vcoco --gt run_dir/clhoi/vcoco_test.json --pred run_dir/predictions/vcoco-clhoi-seed0.json`` gives the same
numbers.

Student detection score (``cfg.score = "pair_prior"``): the student's HOI distribution of the pair times the same
geometric prior ``exp(-gap)`` as ``spatial_prior`` (other choices in ``student_pair_scores``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mipd_kit.data.records import DataError, HOIImage, HOIVocab
from mipd_kit.fileio import atomic_write_text
from mipd_kit.metrics import MetricRow, aggregate_seeds, merge_rows

from . import losses as L
from .descriptions import DESCRIBE_PROMPT  # noqa: F401  (re-exported: its earlier home)
from .descriptions import (DESCRIBE_BATCH, DescriptionStore, build_describer, describe_into_store, describe_messages,
                           encode_descriptions)
from .features import (PairData, build_pair_data, crop_embeddings, encode_images, encode_texts, normalise_spatial,
                       spatial_prior)
from .models import ModelConfig, build_student
from .proposals import (PairProposals, ProposalStats, detector_proposals, jittered_detections,
                        known_boxes_proposals, proposal_quality, write_detections)

#: the rows that never read an interaction label (the stage's default)
LABEL_FREE_MODELS = ("teacher", "spatial_prior", "teacher_crop", "icn", "clhoi", "clhoi-logitctx")
#: the control rows, which read the training labels on purpose (``controls.py``): positive control, its shuffled
#: form, the weakly supervised baseline and the ceiling
CONTROL_MODELS = ("clhoi-oracle", "clhoi-oracle-shuffled", "weak-mil", "upper")
MODELS = LABEL_FREE_MODELS + CONTROL_MODELS
#: the student rows and their (student kind, training target): ``description`` / ``logits`` / ``oracle`` /
#: ``oracle-shuffled`` name the VLT's context target (and the teacher-distillation objective), ``mil`` / ``pairs``
#: the label objectives of ``weak-mil`` / ``upper`` (no teacher term)
STUDENTS = {"icn": ("icn", None), "clhoi": ("clhoi", "description"), "clhoi-logitctx": ("clhoi", "logits"),
            "clhoi-oracle": ("clhoi", "oracle"), "clhoi-oracle-shuffled": ("clhoi", "oracle-shuffled"),
            "weak-mil": ("icn", "mil"), "upper": ("icn", "pairs")}


@dataclass
class CLHOIConfig:
    """CL-HOI stage config (mirrors the parameters of ``notebooks/07_cl_hoi.ipynb``).

    Attributes:
        world_dir: world / dataset folder (``hoi_train.json``, ``hoi_test.json``, ``hoi_prompts.json``,
            ``hoi_zero_shot.json``, ``images/``).
        run_dir: run folder (``metrics.json``, ``predictions/``, ``clhoi/``).
        cache_dir: teacher checkpoints and feature caches.
        seed: base seed (used when ``seeds`` is empty).
        seeds: student seeds; every model is evaluated per seed (proposal jitter depends on the seed too).
        teacher: ``"embedded"`` (``teachers.embedded.load_or_train``), ``"checkpoint"`` (``load_teacher``) or
            ``"tiny"`` (``TinyRandomTeacher``, wiring tests only).
        teacher_size: embedded teacher config: ``"smoke"`` or ``"default"`` (must match notebook 01's).
        teacher_checkpoint: folder for ``teacher="checkpoint"``.
        teacher_logit_scale: multiplier of the teacher's cosines; 0 = the teacher's own learned scale (else 100).
        proposals: ``"known_boxes"`` or ``"detector"``.
        detections_train, detections_test: detector JSON files (detector mode); empty = embedded jittered boxes.
        jitter: relative box noise of the embedded detector.
        object_labels: known-boxes mode keeps the object category (as a detector would); False = unlabelled.
        score_threshold: detector score threshold.
        roi_size: RoIAlign bins per side.
        crop_features: give the ICN the teacher's pooled embeddings of the human, object and union crops (the
            image-level teacher applied to regions: label-free) besides the RoIAlign grid features.
        prior_weight: initial weight of the label-free geometric log-prior ``-gap`` added to the pair logits
            (learned; 0 = none).
        context_gate: initial gate of the VLT context (learned; ``clhoi`` only): ``broadcast``: weight of the
            context added to each pair embedding; ``cross_attention``: weight of each pair's attended context added
            to its embedding (0 = start as the ICN alone).
        context_fusion: ``"cross_attention"`` (each pair attends to its image's translated context tokens) or
            ``"broadcast"`` (one context vector per image, the same for all its pairs; the earlier design).
        describer: who writes the training images' descriptions for ``clhoi``: ``"captioner"`` (the embedded
            captioner on the teacher's tokens, trained on the world's pretraining captions) or ``"sampler"`` (any
            language backend of ``describer_sampler``, e.g. an OpenAI-compatible vision endpoint). A
            ``descriptions_file`` replaces both.
        captioner_size: ``CaptionerConfig`` of the embedded captioner: ``"smoke"`` or ``"default"``.
        captioner_checkpoint: a saved captioner folder to use instead of training one ("" = train or reuse the
            cached one for this world and teacher).
        captioner_weights: ``auto`` | ``released`` | ``released-any`` | ``retrain``: which captioner weights (the
            run's ``teacher.weights``, filled in by the stage; see ``mipd_kit.language.captioner.captioner_for``).
        describe_temperature: the captioner's sampling temperature (<= 0: greedy).
        describer_sampler: ``SamplerConfig`` fields for ``describer="sampler"`` (``backend``, ``openai``, ``hf``).
        hidden, dropout: student widths.
        epochs, batch_images, lr, weight_decay: optimisation (AdamW, cosine schedule).
        pool, pool_tau: pair -> image pooling and its temperature.
        kd_temperature: distillation temperature T (KL terms scaled by T**2); also the scoring temperature.
        w_image, w_cross, w_context, w_region: loss weights (per-image KL, cross-image KL, context InfoNCE,
            per-pair KL to the teacher on union crops; the last needs ``crop_features``).
        context_tau: InfoNCE temperature; description_temperature: softmax temperature of the description.
        w_describe: weight of the description distillation (``losses.description_distillation_loss``, the
            ``clhoi*`` rows): the pooled pair scores also distil the HOI distribution the image's description names
            (``softmax_k(cos(d_i, e_k) / describe_tau)``), per image and across images; 0 = the description reaches
            the student only through the VLT's InfoNCE target and the pairs' attention to the VLT's tokens.
        describe_tau: temperature of the description's HOI logits.
        descriptions_file: optional JSON ``{filename: text}`` of VLLM descriptions (real mode): the ``clhoi``
            VLT target (no describer call); for ``clhoi-logitctx`` mixed into the logit-mix target as before.
        models: which rows to produce: any of ``LABEL_FREE_MODELS`` (default: all of them) and
            ``CONTROL_MODELS`` (``clhoi-oracle``, ``clhoi-oracle-shuffled``, ``weak-mil``, ``upper``: they read
            ``hoi_train.json``'s labels, each in its one stated way, see ``controls.py``).
        score: how a student's pair logits become detection scores (``student_pair_scores``).
        topk_per_pair: keep the best k HOIs per pair in the prediction file (0 = all candidates).
        protocol: evaluation protocol (``official`` | ``continuous`` | ``both``).
        vcoco: also score every prediction file as V-COCO scenario-1 role AP (rows with setting ``scenario_1``).
        eval_split: ``"test"``, or ``"dev"``: hold out a fraction ``dev_frac`` of ``hoi_train`` (chosen by a
            seeded hash of the file name, ``dev_seed``), train on the rest and evaluate on it -- for choosing
            settings without looking at the test split (dev has no unseen HOIs: choose on Full).
        threads: torch threads (0 = leave the default).
        device: ``auto`` | ``cpu`` | ``cuda[:N]`` for the ICN / CL-HOI students (``mipd_kit.machine.resolve_device``);
            initialisation and batch order are drawn on the CPU, the same on every device.
        amp: bf16 autocast of the students' forward passes on CUDA (no effect on the CPU).
        workers: rows (model x seed) run side by side in processes forked after the shared preparation (proposals,
            teacher features, descriptions), each of one torch thread (a forked process cannot run more:
            ``mipd_kit.machine.fork_map``; on N cores use N workers); CPU only
            (``device`` other than ``cpu``: one at a time). A row's numbers are those of its own thread count:
            repeatable for a given count; another count changes the float summation order as another seed would.
    """

    world_dir: str = "data/synthsitu/smoke-seed0"
    run_dir: str = "reports/clhoi"
    cache_dir: str = "data/cache"
    seed: int = 0
    seeds: tuple[int, ...] = (0, 1, 2)
    teacher: Literal["embedded", "checkpoint", "tiny"] = "embedded"
    teacher_size: Literal["smoke", "default"] = "default"
    teacher_checkpoint: str = ""
    teacher_logit_scale: float = 0.0
    proposals: Literal["known_boxes", "detector"] = "known_boxes"
    detections_train: str = ""
    detections_test: str = ""
    jitter: float = 0.1
    object_labels: bool = True
    score_threshold: float = 0.2
    roi_size: int = 2
    crop_features: bool = True
    prior_weight: float = 1.0
    context_gate: float = 1.0
    context_fusion: Literal["cross_attention", "broadcast"] = "cross_attention"
    describer: Literal["captioner", "sampler"] = "captioner"
    captioner_size: Literal["smoke", "default"] = "default"
    captioner_checkpoint: str = ""
    captioner_weights: str = "auto"
    describe_temperature: float = 0.7
    describer_sampler: dict = field(default_factory=dict)
    hidden: int = 128
    dropout: float = 0.1
    epochs: int = 20
    batch_images: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    pool: Literal["lse", "max", "mean"] = "lse"
    pool_tau: float = 1.0
    kd_temperature: float = 2.0
    w_image: float = 1.0
    w_cross: float = 1.0
    w_context: float = 0.5
    w_region: float = 1.0
    context_tau: float = 0.1
    w_describe: float = 1.0
    describe_tau: float = 0.02
    description_temperature: float = 1.0
    descriptions_file: str = ""
    models: tuple[str, ...] = LABEL_FREE_MODELS
    score: Literal["pair_prior", "joint", "relative"] = "pair_prior"
    topk_per_pair: int = 0
    protocol: Literal["official", "continuous", "both"] = "official"
    vcoco: bool = True
    eval_split: Literal["test", "dev"] = "test"
    dev_frac: float = 0.2
    dev_seed: int = 0
    threads: int = 0
    device: str = "cpu"
    amp: bool = False
    workers: int = 1

    @classmethod
    def smoke(cls, **kw: Any) -> "CLHOIConfig":
        """Seconds on a CPU: smoke teacher, one seed, few epochs, narrow student."""
        base = dict(teacher_size="smoke", captioner_size="smoke", seeds=(0,), epochs=8, hidden=32, batch_images=32)
        base.update(kw)
        return cls(**base)

    @classmethod
    def from_dict(cls, d: dict) -> "CLHOIConfig":
        from ..overrides import known_fields
        d = known_fields(cls, d)
        for k in ("seeds", "models"):
            if k in d and d[k] is not None:
                d[k] = tuple(d[k])
        return cls(**d)

    def validate(self) -> None:
        from ..checks import check_config
        check_config(self, "CLHOIConfig")  # types and ranges of every field: epochs >= 1, lr > 0... (mipd_kit.checks)
        for k, choices in (("teacher", ("embedded", "checkpoint", "tiny")), ("proposals", ("known_boxes", "detector")),
                           ("pool", ("lse", "max", "mean")), ("teacher_size", ("smoke", "default")),
                           ("score", ("pair_prior", "joint", "relative")), ("describer", ("captioner", "sampler")),
                           ("captioner_size", ("smoke", "default")),
                           ("context_fusion", ("cross_attention", "broadcast")), ("eval_split", ("test", "dev"))):
            if getattr(self, k) not in choices:
                raise ValueError(f"CLHOIConfig.{k} = {getattr(self, k)!r}; choose one of {choices}")
        bad = [m for m in self.models if m not in MODELS]
        if bad:
            raise ValueError(f"unknown CL-HOI models {bad}; choose from {MODELS}")
        if "teacher_crop" in self.models and not self.crop_features:
            raise ValueError("model 'teacher_crop' needs crop_features=True")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"CLHOIConfig.workers = {self.workers!r}; must be a positive integer")
        if self.eval_split == "dev" and not 0.0 < self.dev_frac < 1.0:
            raise ValueError(f"CLHOIConfig.dev_frac = {self.dev_frac!r}; must be in (0, 1) for eval_split='dev'")


# ----------------------------------------------------------------------------------------------- data

@dataclass(frozen=True)
class LabelFreeImage:
    """What training may see of an image: its name, size, boxes and object categories; no interaction labels."""

    filename: str
    width: int
    height: int
    boxes_h: tuple
    boxes_o: tuple
    object: tuple


def strip_labels(images: Sequence[HOIImage]) -> list[LabelFreeImage]:
    """Drop ``hoi`` and ``verb`` (never read) from annotated images."""
    return [LabelFreeImage(im.filename, im.width, im.height, tuple(im.boxes_h), tuple(im.boxes_o), tuple(im.object))
            for im in images]


@dataclass
class HOIWorld:
    """The HOI part of a world folder."""

    root: Path
    train: list[LabelFreeImage]
    test: list[HOIImage]
    vocab: HOIVocab
    prompts: list[str]
    unseen: Optional[list[int]]
    zero_shot_name: Optional[str]

    @property
    def images_dir(self) -> Path:
        return self.root / "images"


def load_prompts(path: Path, vocab: HOIVocab) -> list[str]:
    """``hoi_prompts.json``: a list of phrases in HOI order (or ``{hoi index: phrase}``), one per HOI."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise DataError(f"{path}: HOI prompts file not found") from e
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from e
    if isinstance(data, dict):
        try:
            data = [data[str(k)] if str(k) in data else data[k] for k in range(vocab.num_hoi)]
        except KeyError as e:
            raise DataError(f"{path}: no phrase for HOI {e}") from e
    if not isinstance(data, list) or not all(isinstance(t, str) and t.strip() for t in data):
        raise DataError(f"{path}: must be a list of non-empty phrases")
    if len(data) != vocab.num_hoi:
        raise DataError(f"{path}: {len(data)} phrases for {vocab.num_hoi} HOIs")
    return list(data)


def load_hoi_world(world_dir: str | os.PathLike) -> HOIWorld:
    """Read ``hoi_train.json`` (labels stripped at once), ``hoi_test.json``, prompts and the zero-shot split."""
    from mipd_kit.data.hico import load_hico_instances, load_zero_shot_splits

    root = Path(world_dir)
    train, vocab = load_hico_instances(root / "hoi_train.json")
    train_free = strip_labels(train)
    del train
    test, vocab_t = load_hico_instances(root / "hoi_test.json")
    if vocab_t.correspondence != vocab.correspondence:
        raise DataError(f"{root / 'hoi_test.json'}: correspondence differs from hoi_train.json")
    vocab = vocab_t  # rare / non_rare as stored with the test file (both files carry the same lists in SynthSitu)
    prompts = load_prompts(root / "hoi_prompts.json", vocab)
    unseen = name = None
    zs = root / "hoi_zero_shot.json"
    if zs.exists():
        splits = load_zero_shot_splits(zs)
        if splits:
            name = sorted(splits)[0]
            unseen = sorted(int(x) for x in splits[name])
    return HOIWorld(root, train_free, test, vocab, prompts, unseen, name)


def is_dev_image(filename: str, frac: float, seed: int) -> bool:
    """Whether a training image is held out as dev (a seeded sha256 of its file name below ``frac``)."""
    h = int.from_bytes(hashlib.sha256(f"hoi-dev:{seed}:{filename}".encode()).digest()[:8], "big") / 2 ** 64
    return h < frac


def dev_world(world: HOIWorld, frac: float, seed: int) -> HOIWorld:
    """The world with a dev split carved out of ``hoi_train`` (:func:`is_dev_image`): ``train`` = the rest (labels
    stripped), ``test`` = the dev images *with* labels, read from ``hoi_train.json`` for the evaluator only."""
    from mipd_kit.data.hico import load_hico_instances

    labelled, _ = load_hico_instances(world.root / "hoi_train.json")
    dev = [im for im in labelled if is_dev_image(im.filename, frac, seed)]
    names = {im.filename for im in dev}
    train = [im for im in world.train if im.filename not in names]
    if not dev or not train:
        raise DataError(f"{world.root / 'hoi_train.json'}: dev_frac={frac} leaves {len(train)} training and "
                        f"{len(dev)} dev images")
    return replace(world, train=train, test=dev)


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


def labelled_training_images(world: HOIWorld) -> list[HOIImage]:
    """The training images *with* their interaction labels (``hoi_train.json``), for the control rows and for
    measuring descriptions against the truth only; the label-free rows never call this."""
    from mipd_kit.data.hico import load_hico_instances

    names = {im.filename for im in world.train}
    labelled, _ = load_hico_instances(world.root / "hoi_train.json")
    return [im for im in labelled if im.filename in names]


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


# ----------------------------------------------------------------------------------------------- scoring

def image_probs(logits: torch.Tensor, candidates: torch.Tensor, T: float) -> torch.Tensor:
    """(N, H) softmax of ``logits / T`` over each image's candidate HOIs (0 elsewhere)."""
    x = torch.where(candidates & torch.isfinite(logits), logits / T, torch.full_like(logits, L.NEG))
    p = F.softmax(x, dim=1)
    return p * candidates


def teacher_pair_scores(data: PairData, cfg: CLHOIConfig) -> torch.Tensor:
    """(P, H) ``teacher`` baseline: image-level teacher probability broadcast to the pairs (candidates only)."""
    p = image_probs(data.teacher_logits, data.image_candidates, cfg.kd_temperature)
    return p[data.pair_image] * data.candidates


def spatial_prior_scores(data: PairData, cfg: CLHOIConfig) -> torch.Tensor:
    """(P, H) ``spatial_prior`` baseline: teacher broadcast times ``exp(-gap)`` (``features.spatial_prior``)."""
    return teacher_pair_scores(data, cfg) * spatial_prior(data.spatial)[:, None]


def teacher_crop_scores(data: PairData, cfg: CLHOIConfig) -> torch.Tensor:
    """(P, H) ``teacher_crop`` baseline: the teacher's zero-shot HOI probability on the pair's union crop (softmax
    over the pair's candidates) times ``exp(-gap)``. Needs ``crop_features``."""
    if not data.crop_logits.shape[1]:
        raise ValueError("the teacher_crop baseline needs crop_features=True")
    return image_probs(data.crop_logits, data.candidates, cfg.kd_temperature) * spatial_prior(data.spatial)[:, None]


def student_pair_scores(pair_logits: torch.Tensor, data: PairData, cfg: CLHOIConfig) -> torch.Tensor:
    """(P, H) detection scores of a student from its pair logits ``s`` (``cfg.score``).

    ``pair_prior``: ``softmax_{k in C(p)}(s_{p,k} / T) * exp(-gap_p)``, the pair's HOI distribution times the
    geometric prior (the same prior as the ``spatial_prior`` baseline); ``joint``: ``P_i(k) * share_p(k)``, a softmax
    over all (pair, HOI) of the image at temperature T (its marginal over pairs is the LSE-pooled image
    distribution); ``relative``: ``P_i(k) * exp((s_{p,k} - max_q s_{q,k}) / tau_pool)``.
    """
    n = len(data.filenames)
    T = cfg.kd_temperature
    if cfg.score == "pair_prior":
        return image_probs(pair_logits, data.candidates, T) * spatial_prior(data.spatial)[:, None]
    if cfg.score == "joint":
        p_img = image_probs(L.pool_pairs(pair_logits, data.pair_image, n, "lse", T), data.image_candidates, T)
        lse = L.pool_pairs(pair_logits, data.pair_image, n, "lse", T)
        share = torch.exp((pair_logits - lse[data.pair_image]) / T)
    elif cfg.score == "relative":
        p_img = image_probs(L.pool_pairs(pair_logits, data.pair_image, n, cfg.pool, cfg.pool_tau),
                            data.image_candidates, T)
        mx = L.pool_pairs(pair_logits, data.pair_image, n, "max")
        share = torch.exp((pair_logits - mx[data.pair_image]) / cfg.pool_tau)
    else:
        raise ValueError(f"unknown score {cfg.score!r}; choose 'pair_prior', 'joint' or 'relative'")
    share = torch.where(data.candidates, share, torch.zeros_like(share))
    return p_img[data.pair_image] * share


def predictions_from_scores(data: PairData, scores: torch.Tensor, topk: int = 0) -> dict[str, list[dict]]:
    """HICO-DET prediction dict ``{filename: [{"hoi", "box_h", "box_o", "score"}]}`` from (P, H) pair scores.

    Every candidate HOI of every pair is written (or its ``topk`` best); every image gets an entry (possibly empty).
    """
    out: dict[str, list[dict]] = {f: [] for f in data.filenames}
    s = scores.detach().double().numpy()
    cand = data.candidates.numpy()
    bh, bo = data.boxes_h.tolist(), data.boxes_o.tolist()
    for p in range(data.num_pairs):
        ks = np.flatnonzero(cand[p])
        if topk and len(ks) > topk:
            ks = ks[np.argsort(-s[p, ks], kind="stable")[:topk]]
        fn = data.filenames[int(data.pair_image[p])]
        out[fn].extend({"hoi": int(k), "box_h": bh[p], "box_o": bo[p], "score": float(s[p, k])} for k in ks)
    return out


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


# ----------------------------------------------------------------------------------------------- run

@dataclass
class CLHOIResult:
    """What ``run_clhoi`` produced."""

    rows: list[MetricRow]
    histories: dict[str, list[dict]]
    proposal_stats: dict[str, dict]
    proposal_quality: dict[str, dict]
    prediction_files: dict[str, str]
    info: dict[str, Any]


def _write_json(path: Path, obj: Any) -> None:
    """Atomic strict JSON (NaN / inf -> null)."""
    from mipd_kit.fileio import write_json
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, obj, indent=None)


def evaluate_predictions(world: HOIWorld, preds: dict, model: str, seed: int, cfg: CLHOIConfig) -> list[MetricRow]:
    """Official HICO-DET mAP rows (Default and Known-object; Full/Rare/Non-rare and Unseen/Seen)."""
    from mipd_kit.eval.hico import evaluate_hico

    return evaluate_hico(world.test, world.vocab, preds, setting="both", zero_shot=world.unseen,
                         protocol=cfg.protocol, model=model, seed=seed, src=f"hoi-{model}-seed{seed}")


def _vcoco_ground_truth(world: HOIWorld, out_dir: Path) -> tuple[list, list[str]]:
    """Write the evaluated split in the V-COCO format (``out_dir/vcoco_<split>.json``) and read it back as the
    V-COCO evaluator's ground truth (what ``mipd eval-vcoco --gt`` reads)."""
    from mipd_kit.data.hico import load_vcoco
    from mipd_kit.data.synthsitu.vcoco import write_vcoco
    from mipd_kit.eval.vcoco import gt_from_instances

    path = out_dir / "vcoco_test.json"
    write_vcoco(path, world.test, world.vocab)
    data = load_vcoco(path)
    return gt_from_instances(data), data.classes


def vcoco_eval(gt: tuple[list, list[str]], world: HOIWorld, preds: dict, model: str, seed: int,
               out_path: Path) -> list[MetricRow]:
    """V-COCO scenario-1 role AP / agent AP rows of HICO-DET predictions (converted and written to ``out_path``)."""
    from mipd_kit.data.synthsitu.vcoco import hico_predictions_to_vcoco
    from mipd_kit.eval.vcoco import evaluate_vcoco

    vpreds = hico_predictions_to_vcoco(preds, world.vocab, src=f"hoi-{model}-seed{seed}")
    _write_json(out_path, vpreds)
    gts, classes = gt
    return evaluate_vcoco(gts, classes, vpreds, model=model, seed=seed, src=str(out_path)).rows


def _proposal_seed(cfg: CLHOIConfig, seed: int) -> int:
    """The seed a seed's proposals are keyed by: proposals depend on the seed only through the embedded detector's
    jitter, so every seed shares seed 0's otherwise."""
    return seed if (cfg.proposals == "detector" and not cfg.detections_train) else 0


_STATE: dict[str, Any] = {}  # run_clhoi's prepared material, inherited by forked workers (CLHOIConfig.workers)


def _job(seed: int, model: str, threads: int) -> dict[str, Any]:
    """One row of one seed of ``run_clhoi`` on its prepared material (``_STATE``): train the student (if the row is
    one), score the test pairs, write and evaluate the predictions. Returns rows, history, prediction file and the
    progress lines (printed by the parent, in job order)."""
    st = _STATE
    cfg, world, run_dir = st["cfg"], st["world"], st["run_dir"]
    if threads:
        torch.set_num_threads(threads)
    key_seed = _proposal_seed(cfg, seed)
    train_d, test_d = st["cache"][("train", key_seed)], st["cache"][("test", key_seed)]
    messages: list[str] = []
    history = None
    if model == "teacher":
        scores = teacher_pair_scores(test_d, cfg)
    elif model == "spatial_prior":
        scores = spatial_prior_scores(test_d, cfg)
    elif model == "teacher_crop":
        scores = teacher_crop_scores(test_d, cfg)
    else:
        kind, target = STUDENTS[model]
        if target == "description":
            emb, ok = st["described"][tuple(train_d.filenames)]
            net, norm, h = train_student(kind, train_d, cfg, seed, emb, "description", ok)
        elif target in ("oracle", "oracle-shuffled"):
            emb, ok = st["controls"][tuple(train_d.filenames)][target]
            net, norm, h = train_student(kind, train_d, cfg, seed, emb, "description", ok)
        elif target in ("mil", "pairs"):
            y = st["controls"][tuple(train_d.filenames)][target]
            net, norm, h = train_student(kind, train_d, cfg, seed, target=target, labels=y)
        else:
            file_desc = None
            if cfg.descriptions_file and "clhoi-logitctx" in cfg.models:
                file_desc = read_descriptions(cfg.descriptions_file, train_d.filenames, st["teacher"])
            net, norm, h = train_student(kind, train_d, cfg, seed, file_desc, "logits")
        history = h.epochs
        scores = student_scores(net, test_d, norm, cfg)
        last = h.epochs[-1] if h.epochs else {}
        messages.append(f"[clhoi] {model} seed {seed}: {len(h.epochs)} epochs, {h.wall_time_s:.1f}s, "
                        f"last losses {({k: round(v, 4) for k, v in last.items() if k != 'epoch'})}")
    preds = predictions_from_scores(test_d, scores, cfg.topk_per_pair)
    path = run_dir / "predictions" / f"hoi-{model}-seed{seed}.json"
    _write_json(path, preds)
    r = evaluate_predictions(world, preds, model, seed, cfg)
    rows = list(r)
    if st["vcoco_gt"] is not None:
        rows.extend(vcoco_eval(st["vcoco_gt"], world, preds, model, seed,
                               run_dir / "predictions" / f"vcoco-{model}-seed{seed}.json"))
    m = {(x.split, x.setting): x.value for x in r if x.metric == "map"}
    messages.append(f"[clhoi] {model} seed {seed}: full {m.get(('full', 'default'), float('nan')):.2f} "
                    f"unseen {m.get(('unseen', 'default'), float('nan')):.2f} mAP (default)")
    return {"rows": rows, "history": history, "file": str(path), "messages": messages}


def run_clhoi(cfg: CLHOIConfig, teacher: Any = None, world: Optional[HOIWorld] = None,
              progress: bool = False) -> CLHOIResult:
    """The whole stage: proposals, teacher features, baselines, students per seed, predictions, evaluation.

    Rows are merged into ``run_dir/metrics.json`` (per seed and seed-aggregated ``map_mean`` / ``map_std``);
    predictions go to ``run_dir/predictions/hoi-<model>-seed<k>.json``; histories, proposal statistics and their
    measured error to ``run_dir/clhoi/summary.json``.
    """
    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run_dir = Path(cfg.run_dir)
    (run_dir / "predictions").mkdir(parents=True, exist_ok=True)
    world = world or load_hoi_world(cfg.world_dir)
    if cfg.eval_split == "dev":
        world = dev_world(world, cfg.dev_frac, cfg.dev_seed)
    teacher = teacher if teacher is not None else build_teacher(cfg)
    scale = teacher_scale(teacher, cfg)
    text = encode_texts(teacher, world.prompts, cfg.cache_dir if cfg.teacher != "tiny" else None)
    seeds = tuple(cfg.seeds) or (cfg.seed,)
    rows: list[MetricRow] = []
    hists: dict[str, list[dict]] = {}
    pstats: dict[str, dict] = {}
    pqual: dict[str, dict] = {}
    files: dict[str, str] = {}
    cache: dict[tuple, PairData] = {}
    described: dict[tuple, tuple] = {}
    desc_info: dict[str, Any] = {}
    controls: dict[tuple, dict[str, Any]] = {}
    control_info: dict[str, Any] = {}
    vcoco_gt = _vcoco_ground_truth(world, run_dir / "clhoi") if cfg.vcoco else None
    t0 = time.time()
    jobs: list[tuple[int, str]] = []
    for seed in seeds:
        key_seed = _proposal_seed(cfg, seed)
        for split, ims in (("train", world.train), ("test", world.test)):
            if (split, key_seed) in cache:
                continue
            props, stats = make_proposals(cfg, ims, world.vocab, split, seed, run_dir / "clhoi")
            pstats[f"{split}-seed{key_seed}"] = stats.as_dict()
            if split == "test":  # measured error of the proposals (ground-truth boxes, evaluation only)
                pqual[f"test-seed{key_seed}"] = proposal_quality(props, world.test)
            cache[(split, key_seed)] = pair_data_for(teacher, world, props, text, scale, cfg, f"hoi_{split}")
        names = tuple(cache[("train", key_seed)].filenames)
        if "clhoi" in cfg.models and names not in described:  # once per image set: reused by every seed
            emb, ok, desc_info = image_descriptions(cfg, teacher, world, names)
            described[names] = (emb, ok)
        if set(cfg.models) & set(CONTROL_MODELS) and names not in controls:
            controls[names], control_info = control_targets(cfg, teacher, world, cache[("train", key_seed)])
        jobs += [(seed, model) for model in cfg.models]
    global _STATE
    _STATE = {"cfg": cfg, "world": world, "teacher": teacher, "cache": cache, "described": described,
              "controls": controls, "vcoco_gt": vcoco_gt, "run_dir": run_dir}

    def show(i: int, d: dict[str, Any]) -> None:
        if progress:
            print(*d["messages"], sep="\n", flush=True)

    try:
        workers = min(cfg.workers, len(jobs)) if cfg.device == "cpu" else 1
        if workers > 1:
            from ..machine import FORKED_THREADS, fork_map
            done = fork_map(_job, [(seed, model, FORKED_THREADS) for seed, model in jobs], workers, on_result=show,
                            name=lambda i: f"cl_hoi: {jobs[i][1]} seed {jobs[i][0]}")
        else:
            done = []
            for i, (seed, model) in enumerate(jobs):
                done.append(_job(seed, model, 0))
                show(i, done[-1])
    finally:
        _STATE = {}
    for (seed, model), d in zip(jobs, done):
        if d["history"] is not None:
            hists[f"{model}-seed{seed}"] = d["history"]
        files[f"{model}-seed{seed}"] = d["file"]
        rows.extend(d["rows"])
    map_rows = [r for r in rows if r.metric.startswith("map")
                or (r.setting == "scenario_1" and r.metric in ("role_ap", "agent_ap"))]
    all_rows = rows + aggregate_seeds(map_rows)
    merge_rows(run_dir / "metrics.json", all_rows)
    info = {"teacher_logit_scale": scale, "teacher": getattr(teacher, "fingerprint", "?"),
            "zero_shot": world.zero_shot_name, "n_unseen": len(world.unseen or []), "eval_split": cfg.eval_split,
            "n_train": len(world.train), "n_eval": len(world.test), "descriptions": desc_info,
            "controls": control_info,
            "wall_time_s": time.time() - t0, "config": {k: (list(v) if isinstance(v, tuple) else v)
                                                        for k, v in asdict(cfg).items()}}
    _write_json(run_dir / "clhoi" / "summary.json", {"histories": hists, "proposal_stats": pstats,
                                                      "proposal_quality": pqual, "info": info})
    return CLHOIResult(all_rows, hists, pstats, pqual, files, info)


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


def results_table(rows: Sequence[MetricRow], setting: str = "default", metric: str = "map") -> str:
    """Markdown table ``model x split`` of seed means (``map_mean`` +- ``map_std``), or per-seed values."""
    means = {(r.model, r.split): r.value for r in rows
             if r.seed is None and r.setting == setting and r.metric == f"{metric}_mean"}
    stds = {(r.model, r.split): r.value for r in rows
            if r.seed is None and r.setting == setting and r.metric == f"{metric}_std"}
    models = list(dict.fromkeys(m for m, _ in means))
    order = ("full", "rare", "non_rare", "unseen", "seen")
    splits = [s for s in order if any(k[1] == s for k in means)]
    if setting == "scenario_1":  # V-COCO: the mean over classes only
        splits = ["full"] if any(k[1] == "full" for k in means) else []
    lines = [f"| model ({setting}) | " + " | ".join(splits) + " |", "|---" * (len(splits) + 1) + "|"]
    for m in models:
        cells = [f"{means[(m, s)]:.2f} ± {stds.get((m, s), 0.0):.2f}" if (m, s) in means else "-" for s in splits]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``mipd clhoi``: train and evaluate CL-HOI and its baselines on a world folder."""
    from ..overrides import ConfigError, split_set
    ap = argparse.ArgumentParser(prog="mipd clhoi", description=__doc__.split("\n")[0])
    ap.add_argument("--world", required=True, help="world / dataset folder (hoi_train.json, hoi_test.json, ...)")
    ap.add_argument("--out", required=True, help="run folder (metrics.json, predictions/, clhoi/)")
    ap.add_argument("--cache", default="data/cache", help="teacher checkpoints and feature caches")
    ap.add_argument("--smoke", action="store_true", help="start from CLHOIConfig.smoke()")
    ap.add_argument("--seeds", default=None, help="comma-separated student seeds, e.g. 0,1,2")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override any CLHOIConfig field (YAML-typed value, as mipd run --set), e.g. --set epochs=20")
    args = ap.parse_args(list(argv) if argv is not None else None)
    base = CLHOIConfig.smoke() if args.smoke else CLHOIConfig()
    d = asdict(base)
    d.update(world_dir=args.world, run_dir=args.out, cache_dir=args.cache)
    if args.seeds:
        d["seeds"] = [int(s) for s in args.seeds.split(",") if s.strip()]
    try:
        for kv in args.set:
            k, v = split_set(kv)
            d[k] = v
    except ConfigError as e:
        print(f"mipd clhoi: {e}", file=sys.stderr)
        return 2
    try:
        cfg = CLHOIConfig.from_dict(d)
        res = run_clhoi(cfg, progress=True)
    except (DataError, ValueError) as e:
        print(f"mipd clhoi: error: {e}", file=sys.stderr)
        return 2
    print(results_table(res.rows, "default"))
    print(results_table(res.rows, "known_object"))
    if cfg.vcoco:
        print(results_table(res.rows, "scenario_1", "role_ap"))
    for k, q in res.proposal_quality.items():
        print(f"proposals {k}: " + ", ".join(f"{a}={b:.3f}" for a, b in q.items()))
    return 0
