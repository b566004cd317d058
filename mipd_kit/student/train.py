"""Training the Ov-GSR student: baseline and MIPD variants, single process or ``torchrun`` DDP.

MIPD (Multimodal Interactive Prompt Distillation): the student (:mod:`mipd_kit.student.model`) is trained on the
labelled seen + rare verbs of the open-vocabulary split (``mipd_kit.data.splits.guard_training`` refuses any
unseen-verb example; a second check refuses any unseen label that would reach the loss) and, depending on the
variant, distils the teacher:

The variants and the ingredients each switches on are one table, :data:`mipd_kit.student.ingredients.ROWS`
(rendered in docs/methods.md): ``baseline`` (``baseline``), ``feat`` (``mipd-feat``), ``feat-kd``
(``mipd-feat-kd``), ``paper`` (``mipd``: the paper's ingredients, no logit KD), ``full`` (``mipd-kd``: + logit KD),
``template`` / ``shuffled`` (``mipd-template`` / ``mipd-shuffled``: ``paper`` on control rationales),
``feat-kd-unlabeled`` / ``kd-unlabeled`` (the unlabeled pair), and the ablation steps ``glimpse``, ``gaze``, ``neg``
and the older ``unlabeled`` (``mipd-unlabeled`` = ``mipd-kd-unlabeled``). Every variant shares the supervised losses
and their weights (the authors', :data:`mipd_kit.student.ingredients.AUTHORS_LOSSES`).

DDP: each optimisation step draws one *global* batch from a seeded permutation; rank ``r`` takes every
``world_size``-th element; every loss is a sum of per-sample terms over the *global* batch size
(:mod:`mipd_kit.student.losses`), gradients are all-reduced by SUM, so two processes give one process's result up to
float tolerance.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image

from ..align.nmpa import AlignData, NMPAConfig, aligned_targets, build_align_data, train_nmpa
from ..data.records import DataError, FrameSpace, Situation
from ..machine import autocast, resolve_device, to_device
from ..fileio import atomic_path
from . import losses as L
from .checkpoint import describe_frozen, text_encoder_name, vocab_payload
# one table of variants, model names and ingredients (re-exported here, where they used to live)
from .ingredients import (AUTHORS_LOSSES, INGREDIENTS, MODEL_NAMES, USES, VARIANTS, Variant,  # noqa: F401
                          drop_gold_negatives)
from .model import OvGSRStudent, StudentVocab, build_student, centre_verb_logits, to_input


class CheckpointMismatch(RuntimeError):
    """A checkpoint was written by a different training configuration."""


@dataclass
class StudentConfig:
    """Student training configuration (weights follow the authors' code unless noted).

    Attributes:
        variant: which MIPD ablation to train (see the module docstring).
        backbone: ``"cnn"`` (embedded: small image encoder trained end to end) or ``"cached"`` (real mode).
        image_size, width, d_model, heads, dec_layers: model size. in_dim / num_tokens: cached-feature shape
            (set automatically with a frozen backbone).
        pooled_dim: width of the frozen backbone's pooled image embedding that the scene feature also reads
            (``OvGSRStudent.encode``; the authors' student reads CLIP's CLS token); set automatically with a frozen
            backbone when ``use_pooled``; 0 = tokens only (the edge CNN).
        use_pooled: a cached-feature student reads the backbone's pooled embedding too.
        verb_text: text used for the verb embeddings: ``"name"`` or ``"definition"`` (imSitu abstract/def).
        verb_head: ``"teacher"`` (default: cosine of the student's scene feature, projected into the teacher's joint
            space, against the teacher's *text* embeddings of the verb prompts: a frozen table, no teacher image tower
            at inference), ``"minilm"`` (cosine vs MiniLM verb-name embeddings) or ``"dual"`` (the sum of both).
            Same head for every variant, baseline included. Chosen on dev (docs/methods.md, "How the defaults were chosen").
        kd_vocab: verbs over which logit KD matches the teacher's distribution: ``"all"`` (default: every verb
            *name*, unseen ones included; the teacher's zero-shot scores are the only signal about them, no unseen
            label is used) or ``"train"`` (seen + rare only, the stricter reading).
        epochs, batch_size, lr, weight_decay, clip: optimisation (AdamW; clip = max gradient norm).
        steps: the schedule in optimiser steps instead of epochs (None: ``epochs``): the epochs trained are
            ``ceil(steps / batches per epoch)`` (:meth:`epochs_for`), so a world of another size gets about the same
            number of updates, not the same number of passes.
        verb_smoothing, noun_smoothing: label smoothing (0.3 / 0.2 as the authors).
        w_verb, w_noun, w_l1, w_giou, w_exists: supervised loss weights (1 / 1 / 5 / 5 / 5, the authors').
        w_scene, w_role: feature-distillation weights (2 / 2 with ``distill_kind="l1"``, the authors'; the versions
            before the fair-test protocol used cosine x5 / x1); distill_kind ``"l1"`` or ``"cosine"``.
        w_kd, kd_t: logit distillation weight (10) and temperature, for the rows with the ``kd`` ingredient only.
        w_neg, neg_kind: student negative-guided term weight (5, the authors') and form, for the rows with ``neg``;
            it acts on the student's own negative projection (``OvGSRStudent.neg_proj``), never on the verb head's
            input, and negatives naming the image's gold verb are dropped before training.
        unlabeled_ratio: unlabeled images per labelled image in a step (``unlabeled`` variant).
        select_on_dev: keep the epoch with the best dev verb top-1 on *trainable* verbs (never test).
        strict_rationales: fail if any training image lacks rationales (default: train with what exists).
        nmpa: NMPA config (its ``w_neg`` is zeroed for variants without negatives; its seed follows ``seed``).
        seed: seeds initialisation, data order and NMPA.
        threads: torch threads (0 = leave).
        device: ``auto`` | ``cpu`` | ``cuda[:N]`` (``mipd_kit.machine.resolve_device``) for the student and its
            NMPA; not part of the fingerprint (a checkpoint resumes on another device). Data order and
            initialisation are drawn on the CPU, so they are the same on every device.
        amp: bf16 autocast of the forward passes on CUDA (no effect on the CPU); part of the fingerprint when on.
        verb_centring: after training, subtract this multiple of each verb's mean logit over the training images
            (``model.centre_verb_logits``; features only, no label) from the verb logits of every prediction. 0 =
            off (the plain head, the default here); the default run sets 1.0, chosen on dev
            (docs/methods.md, "Verb-logit centring"). Not part of the fingerprint: the trained weights are the same.
    """

    variant: Variant = "full"
    backbone: Literal["cnn", "cached"] = "cnn"
    image_size: int = 64
    width: int = 96
    d_model: int = 128
    heads: int = 4
    dec_layers: int = 1
    in_dim: int = 0
    num_tokens: int = 0
    pooled_dim: int = 0
    use_pooled: bool = True
    verb_text: Literal["name", "definition"] = "name"
    verb_head: Literal["minilm", "dual", "teacher"] = "teacher"
    kd_vocab: Literal["train", "all"] = "all"
    epochs: int = 12
    steps: Optional[int] = None
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    clip: float = 1.0
    verb_smoothing: float = 0.3
    noun_smoothing: float = 0.2
    w_verb: float = 1.0
    w_noun: float = 1.0
    w_l1: float = 5.0
    w_giou: float = 5.0
    w_exists: float = 5.0
    w_scene: float = 2.0
    w_role: float = 2.0
    distill_kind: Literal["l1", "cosine"] = "l1"
    w_kd: float = 10.0
    kd_t: float = 2.0
    w_neg: float = 5.0
    neg_kind: Literal["authors", "margin", "infonce"] = "authors"
    unlabeled_ratio: float = 1.0
    select_on_dev: bool = True
    strict_rationales: bool = False
    nmpa: NMPAConfig = field(default_factory=NMPAConfig)
    seed: int = 0
    threads: int = 0
    device: str = "cpu"
    amp: bool = False
    verb_centring: float = 0.0

    @classmethod
    def smoke(cls, variant: Variant = "full") -> "StudentConfig":
        return cls(variant=variant, image_size=32, width=48, d_model=64, epochs=2, batch_size=16,
                   nmpa=NMPAConfig.smoke())

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if isinstance(self.nmpa, dict):
            self.nmpa = NMPAConfig(**self.nmpa)
        from ..checks import check_config
        check_config(self, "StudentConfig")  # types and ranges of every field: epochs >= 1, lr > 0... (mipd_kit.checks)

    @property
    def model_name(self) -> str:
        return MODEL_NAMES[self.variant]

    @property
    def uses(self) -> dict[str, bool]:
        """Which ingredients the variant switches on (:data:`USES`)."""
        return {k: k in USES[self.variant] for k in INGREDIENTS}

    def nmpa_config(self) -> NMPAConfig:
        """The NMPA config actually trained for this variant."""
        return dataclasses.replace(self.nmpa, seed=self.seed, w_neg=self.nmpa.w_neg if self.uses["neg"] else 0.0,
                                   use_instances=self.uses["gaze"])

    def fingerprint(self) -> str:
        """Hash of every field that changes the trained weights."""
        d = dataclasses.asdict(self)
        for k in ("threads", "strict_rationales", "device", "verb_centring"):
            d.pop(k)
        if not d["amp"]:
            d.pop("amp")  # fingerprints of fp32 runs stay those of the versions before the option
        if d["steps"] is None:  # fingerprints of epoch schedules stay those of the versions before the option
            d.pop("steps")
        if not d["pooled_dim"]:  # ... and those of tokens-only heads those of the versions before pooled inputs
            d.pop("pooled_dim")
            d.pop("use_pooled")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict) -> "StudentConfig":
        from ..overrides import known_fields
        return cls(**known_fields(cls, d))

    def epochs_for(self, n_train: int) -> int:
        """Epochs trained on ``n_train`` labelled images: ``epochs``, or with ``steps`` the passes that hold at least
        that many optimiser steps."""
        if self.steps is None:
            return self.epochs
        return max(1, math.ceil(self.steps / max(1, math.ceil(n_train / self.batch_size))))


# ----------------------------------------------------------------------------------------------- data
@dataclass
class StudentData:
    """Tensors of one split.

    Attributes:
        images: names (N). x: (N, 3, S, S) uint8 pixels or (N, T, Din) cached features; xp: (N, Ep) the frozen
            backbone's pooled embeddings (cached features only, else None).
        verb: (N,) verb index (-1 unknown, unlabeled pool). nouns: (N, R, A) noun indices (-1 none).
        boxes: (N, R, 4) normalised cx,cy,w,h. exists: (N, R). role_mask: (N, R). sizes: (N, 2) width, height.
        scene_t: (N, E) scene targets or None. role_t: (N, R, D) or None. neg: (N, K, E) negative glimpse
            embeddings, neg_mask (N, K), pos (N, E), pos_mask (N,). kd: (N, V) teacher verb logits or None.
    """

    images: list[str]
    x: torch.Tensor
    verb: torch.Tensor
    nouns: torch.Tensor
    boxes: torch.Tensor
    exists: torch.Tensor
    role_mask: torch.Tensor
    sizes: torch.Tensor
    scene_t: Optional[torch.Tensor] = None
    role_t: Optional[torch.Tensor] = None
    neg: Optional[torch.Tensor] = None
    neg_mask: Optional[torch.Tensor] = None
    pos: Optional[torch.Tensor] = None
    pos_mask: Optional[torch.Tensor] = None
    kd: Optional[torch.Tensor] = None
    xp: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return len(self.images)

    def take(self, idx: torch.Tensor, device: torch.device) -> "StudentData":
        """The rows ``idx`` (a CPU index) as a batch on ``device``: the one place where training and inference
        batches are gathered and moved."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["images"] = [self.images[i] for i in idx.tolist()]
        for k, v in out.items():
            # x may also stream its rows from a feature cache (teachers.cache.LazyTokens: indexing gives a tensor)
            if torch.is_tensor(v) or (k == "x" and hasattr(v, "__getitem__")):
                out[k] = to_device(v[idx], device)
        return StudentData(**out)


def load_pixels(paths: Sequence[Path], size: int) -> torch.Tensor:
    """Images -> (N, 3, size, size) uint8 (bilinear resize), naming the file on failure."""
    out = np.zeros((len(paths), size, size, 3), dtype=np.uint8)
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as im:
                out[i] = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR))
        except FileNotFoundError as e:
            raise DataError(f"{p}: image not found") from e
        except OSError as e:
            raise DataError(f"{p}: unreadable image ({e})") from e
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def build_vocab(space: FrameSpace, trainable: set[str], embed: Callable[[list[str]], torch.Tensor],
                scene_dim: int, role_dim: int, verb_text: str = "name") -> StudentVocab:
    """Frozen open-vocabulary tables: verbs, nouns (index 0 = empty), roles, each verb's ordered roles."""
    verbs = sorted(space.verbs)
    nouns = [""] + sorted(space.nouns)
    roles = sorted({r for v in verbs for r in space.roles(v)})
    R = max(len(space.roles(v)) for v in verbs)
    vr = torch.full((len(verbs), R), -1, dtype=torch.long)
    for i, v in enumerate(verbs):
        for j, r in enumerate(space.roles(v)):
            vr[i, j] = roles.index(r)
    if verb_text == "name":
        vt = [v.replace("_", " ") for v in verbs]
    elif verb_text == "definition":
        vt = [space.verbs[v].definition or space.verbs[v].abstract or v for v in verbs]
    else:
        raise ValueError(f"verb_text must be one of 'name', 'definition', got {verb_text!r}")
    ne = embed([space.noun_name(n) for n in nouns[1:]])
    ne = torch.cat([torch.zeros(1, ne.shape[1]), ne])
    return StudentVocab(verbs, nouns, roles, embed(vt), ne, embed([r.replace("_", " ") for r in roles]), vr,
                        torch.tensor([v in trainable for v in verbs]), scene_dim, role_dim,
                        noun_names=[""] + [space.noun_name(n) for n in nouns[1:]])


def situations_to_tensors(sits: dict[str, Situation], vocab: StudentVocab, space: FrameSpace, where: str,
                          annotators: int = 3) -> dict[str, torch.Tensor]:
    """Labels of a split as tensors (verb, nouns (N,R,A), boxes cxcywh, exists, role_mask, sizes)."""
    vi = {v: i for i, v in enumerate(vocab.verbs)}
    ni = {n: i for i, n in enumerate(vocab.nouns)}
    names = list(sits)
    N, R = len(names), vocab.max_roles
    verb = torch.full((N,), -1, dtype=torch.long)
    nouns = torch.full((N, R, annotators), -1, dtype=torch.long)
    boxes = torch.zeros(N, R, 4)
    exists = torch.zeros(N, R, dtype=torch.bool)
    rmask = torch.zeros(N, R, dtype=torch.bool)
    sizes = torch.zeros(N, 2)
    for i, im in enumerate(names):
        s = sits[im]
        if s.verb not in vi:
            raise DataError(f"{where}: image {im!r} has verb {s.verb!r} absent from the frame space")
        verb[i] = vi[s.verb]
        W, H = max(s.width, 1), max(s.height, 1)
        sizes[i] = torch.tensor([W, H])
        for r, role in enumerate(space.roles(s.verb)):
            rmask[i, r] = True
            for a, fr in enumerate(s.frames[:annotators]):
                n = fr.get(role, "")
                if n not in ni:
                    raise DataError(f"{where}: image {im!r} role {role!r} has noun {n!r} absent from the frame space")
                nouns[i, r, a] = ni[n]
            b = s.boxes.get(role)
            if b is not None:
                x1, y1, x2, y2 = b
                boxes[i, r] = torch.tensor([(x1 + x2) / 2 / W, (y1 + y2) / 2 / H, (x2 - x1) / W, (y2 - y1) / H])
                exists[i, r] = True
    return {"verb": verb, "nouns": nouns, "boxes": boxes.clamp(0, 1), "exists": exists, "role_mask": rmask, "sizes": sizes}


def cxcywh_to_unit_xyxy(b: torch.Tensor) -> torch.Tensor:
    return L.box_cxcywh_to_xyxy(b).clamp(0, 1)


@dataclass
class World:
    """A prepared world: vocabulary, labelled splits, unlabeled pool, ground truth and the teacher's material.

    ``align`` (train images) and ``align_unlabeled`` hold the teacher features and rationale indices NMPA needs;
    ``kd_train`` the teacher's zero-shot verb logits of the train images; ``report`` counts and timings.
    """

    vocab: StudentVocab
    space: FrameSpace
    split: Any
    train: StudentData
    dev: StudentData
    test: StudentData
    unlabeled: Optional[StudentData]
    gt: dict[str, dict[str, Situation]]
    align: Optional[AlignData]
    align_unlabeled: Optional[AlignData]
    kd_train: Optional[torch.Tensor]
    kd_unlabeled: Optional[torch.Tensor]
    report: dict[str, Any] = field(default_factory=dict)
    nmpa_cache: dict[str, Any] = field(default_factory=dict)  # NMPA config fingerprint -> (model, history, targets)
    unlabeled_gt: Optional[StudentData] = None  # the unlabeled pool with its ground truth (the ceiling row only)
    encode_texts: Optional[Callable[[list[str]], Any]] = None  # rationale texts -> teacher Encoded (cached)
    verb_words: dict[str, tuple[str, ...]] = field(default_factory=dict)  # verb -> phrases naming it
    rationale_source: str = "run"
    backbone: Any = None  # the frozen student backbone whose cached tokens are ``x`` (None: pixels, the edge CNN)


def verb_words_of(world_dir: str | os.PathLike, verbs: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """The phrases that name each verb, for dropping negatives that name the gold verb: a SynthSitu world's caption
    words (``mipd_kit.data.synthsitu.captions.VERB_WORDS``), else (real mode) the verb name itself."""
    meta = Path(world_dir) / "meta.json"
    words: dict[str, tuple[str, ...]] = {}
    if meta.is_file():
        try:
            synth = json.loads(meta.read_text()).get("generator") == "mipd_kit.data.synthsitu"
        except (json.JSONDecodeError, AttributeError):
            synth = False
        if synth:
            from ..data.synthsitu.captions import VERB_WORDS
            words = {v: tuple(VERB_WORDS.get(v, ())) for v in verbs}
    return {v: (v.replace("_", " "), *words.get(v, ())) for v in verbs}


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


def make_split_data(sits: dict[str, Situation], vocab: StudentVocab, space: FrameSpace, x: torch.Tensor,
                    where: str) -> StudentData:
    t = situations_to_tensors(sits, vocab, space, where)
    return StudentData(list(sits), x, **t)


def prepare_world(world_dir: str | os.PathLike, cache_dir: str | os.PathLike, teacher: Any, image_size: int = 64,
                  embed_texts: Optional[Callable[[list[str]], torch.Tensor]] = None,
                  rationales_path: Optional[str | os.PathLike] = None, with_unlabeled: bool = True,
                  backbone: Any = None, verb_text: str = "name", progress: bool = False,
                  collected: Optional[dict[str, Any]] = None) -> World:
    """Read a SynthSitu (or SWiG-format) world and the teacher's material once, for every variant and seed.

    Args:
        world_dir: the world folder (the SynthSitu layout of docs/data-formats.md).
        cache_dir: feature caches (``mipd_kit.teachers.cache``).
        teacher: a ``Teacher`` (features for NMPA targets, text encoder for rationales, zero-shot KD logits).
        image_size: student input side (embedded mode).
        embed_texts: texts -> (N, Dt) frozen embeddings for the open-vocabulary heads (default: MiniLM).
        rationales_path: ``rationales.jsonl`` (``None``: no rationales; rationale variants then train with none).
        with_unlabeled: also load the unlabeled pool.
        backbone: real mode: a frozen student backbone (``Teacher`` protocol) whose cached tokens replace pixels.
        verb_text: see ``StudentConfig.verb_text``.
        collected: already collected rationales (``mipd_kit.rationales.store.collect`` form); overrides the path.
    """
    from ..data.splits import OvSplit, guard_training
    from ..data.swig import load_frame_space, load_situations

    t0 = time.time()
    world = Path(world_dir)
    space = load_frame_space(world / "imsitu_space.json")
    split = OvSplit.load(world / "ov_split.json")
    gt = {s: load_situations(world / f"{s}.json") for s in ("train", "dev", "test")}  # (dev: the unseen_dev rows)
    train_sits = guard_training(gt["train"], split)
    if embed_texts is None:
        from ..teachers.embedded import minilm_encode

        def embed_texts(texts: list[str]) -> torch.Tensor:
            return minilm_encode(texts, with_tokens=False)[2]
        embed_texts.text_encoder = "minilm"  # type: ignore[attr-defined]  # the name a checkpoint records

    name = world.name or "world"
    img = lambda n: world / "images" / n  # noqa: E731
    probe = teacher.encode_images([Image.new("RGB", (32, 32))])
    vocab = build_vocab(space, split.trainable, embed_texts, probe.pooled.shape[-1], probe.tokens.shape[-1], verb_text)
    # what a checkpoint needs to embed new verbs and to run a cached-feature student on an image
    vocab.sources = {"text_encoder": text_encoder_name(embed_texts), "teacher": describe_frozen(teacher),
                     "backbone": describe_frozen(backbone), "verb_text": verb_text}

    def inputs(names: list[str], ds: str) -> torch.Tensor:
        if backbone is None:
            return load_pixels([img(n) for n in names], image_size)
        from ..teachers.cache import lazy_image_tokens  # rows stream from the cache's shards (a cache > RAM)
        # the teacher's dataset name: cache folders are keyed by the model's fingerprint too, so a backbone equal to
        # the teacher shares its cache (149 GB for ViT-L-14-336 on SWiG) and any other backbone gets its own folder
        return lazy_image_tokens(backbone, [img(n) for n in names], cache_dir, f"{name}-{ds}", progress=False)

    def pooled_of(x: Any) -> Optional[torch.Tensor]:
        return x.pooled() if backbone is not None else None  # (N, Ep) the backbone's pooled embeddings

    data = {}
    for s in ("train", "dev", "test"):
        x = inputs(list(gt[s]), s)
        data[s] = make_split_data(train_sits if s == "train" else gt[s], vocab, space, x, f"{world / (s + '.json')}")
        data[s].xp = pooled_of(x)
    unl = unl_gt = None
    unl_names: list[str] = []
    if with_unlabeled and (world / "unlabeled.json").exists():
        unl_names = list(json.loads((world / "unlabeled.json").read_text())["images"])
        if unl_names:
            n, R = len(unl_names), vocab.max_roles
            xu = inputs(unl_names, "unlabeled")
            unl = StudentData(unl_names, xu, torch.full((n,), -1),
                              torch.full((n, R, 3), -1), torch.zeros(n, R, 4), torch.zeros(n, R, dtype=torch.bool),
                              torch.zeros(n, R, dtype=torch.bool), torch.zeros(n, 2), xp=pooled_of(xu))
            gt_path = world / "unlabeled_gt.json"
            if gt_path.exists():  # SynthSitu's answers for the pool: the ceiling row trains on them, nothing else
                ugt = load_situations(gt_path)
                missing = [n for n in unl_names if n not in ugt]
                if missing:
                    raise DataError(f"{gt_path}: no ground truth for unlabeled images {missing[:3]}")
                unl_gt = make_split_data({n: ugt[n] for n in unl_names}, vocab, space, xu, str(gt_path))
                unl_gt.xp = unl.xp

    # teacher material ------------------------------------------------------------------------------------
    if collected is None and rationales_path is not None and Path(rationales_path).exists():
        from ..rationales.store import collect, read_rationales
        collected = collect(read_rationales(rationales_path))
    collected = collected or {}

    def enc_texts(texts: list[str]):
        return cached_text_features(teacher, texts, cache_dir, dataset=f"{name}-rationales")

    def teacher_features(names: list[str], ds: str) -> tuple[Any, torch.Tensor]:
        """Teacher tokens and pooled embeddings; real mode (a student backbone) streams the tokens from the cache."""
        if backbone is None:
            e = cached_image_features(teacher, [img(n) for n in names], cache_dir, f"{name}-{ds}")
            return e.tokens.float(), e.pooled.float()
        from ..teachers.cache import lazy_image_tokens
        lazy = lazy_image_tokens(teacher, [img(n) for n in names], cache_dir, f"{name}-{ds}", progress=False)
        return lazy, lazy.pooled()

    tr = data["train"]
    verb_words = verb_words_of(world, vocab.verbs)
    collected, dropped = drop_gold_negatives(collected, {n: train_sits[n].verb for n in tr.images}, verb_words)
    te_tokens, te_pooled = teacher_features(tr.images, "train")
    roles = [list(space.roles(train_sits[n].verb)) for n in tr.images]
    align = build_align_data(tr.images, roles, cxcywh_to_unit_xyxy(tr.boxes), tr.exists, te_tokens,
                             te_pooled, teacher.grid, collected, enc_texts)
    from ..teachers.embedded import class_embeddings, verb_prompts
    names, cls = class_embeddings(teacher, verb_prompts(space))
    cls = cls[[names.index(v) for v in vocab.verbs]]  # (V, E) in vocab order
    vocab.verb_emb_teacher = cls
    scale = 1.0 / 0.05
    kd_train = scale * F.normalize(te_pooled, dim=-1) @ cls.t()
    align_u = kd_u = None
    if unl is not None:
        tu_tokens, tu_pooled = teacher_features(unl.images, "unlabeled")
        R = vocab.max_roles
        align_u = build_align_data(unl.images, [[] for _ in unl.images], torch.zeros(len(unl), R, 4),
                                   torch.zeros(len(unl), R, dtype=torch.bool), tu_tokens, tu_pooled,
                                   teacher.grid, collected, enc_texts)  # positives of pool images, if any
        kd_u = scale * F.normalize(tu_pooled, dim=-1) @ cls.t()
    report = {"prepare_s": time.time() - t0, "rationales": align.coverage(), "n_train": len(tr),
              "n_dev": len(data["dev"]), "n_test": len(data["test"]), "n_unlabeled": len(unl_names),
              "gold_negatives_dropped": dropped}
    return World(vocab, space, split, tr, data["dev"], data["test"], unl, gt, align, align_u, kd_train, kd_u, report,
                 encode_texts=enc_texts, verb_words=verb_words, unlabeled_gt=unl_gt)


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
        un.kd = world.kd_unlabeled if u["kd"] else None
    elif u["unlabeled"]:
        raise DataError(f"variant {cfg.variant!r} needs the world's unlabeled pool (unlabeled.json); none was loaded")
    return tr, un, info


def concat_data(a: StudentData, b: StudentData) -> StudentData:
    """The rows of ``a`` then ``b`` (labels, inputs read whole: small worlds only; teacher targets are dropped)."""
    out: dict[str, Any] = {"images": [*a.images, *b.images]}
    for f in ("x", "verb", "nouns", "boxes", "exists", "role_mask", "sizes", "xp"):
        va, vb = getattr(a, f), getattr(b, f)
        if va is None or vb is None:
            out[f] = None
            continue
        ta = va if torch.is_tensor(va) else va[torch.arange(len(a))]
        tb = vb if torch.is_tensor(vb) else vb[torch.arange(len(b))]
        out[f] = torch.cat([ta, tb])
    return StudentData(**out)


def cached_image_features(teacher: Any, paths: Sequence[Path], cache_dir: str | os.PathLike, dataset: str) -> Any:
    """``mipd_kit.teachers.cache.cached_image_features`` (the shared feature cache)."""
    from ..teachers.cache import cached_image_features as f
    return f(teacher, [str(p) for p in paths], cache_dir, dataset, progress=False)


def cached_text_features(teacher: Any, texts: list[str], cache_dir: str | os.PathLike, dataset: str) -> Any:
    """``mipd_kit.teachers.cache.cached_text_features`` (the shared text-feature cache)."""
    from ..teachers.cache import cached_text_features as f
    return f(teacher, texts, cache_dir, dataset=dataset, progress=False)


# ----------------------------------------------------------------------------------------------- DDP helpers
def _dist() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: str = "auto") -> bool:
    """Initialise the process group from torchrun's environment; True when distributed.

    With ``device`` resolving to CUDA (``auto`` on a GPU machine, ``cuda``) each rank takes GPU ``LOCAL_RANK`` and the
    backend is NCCL; on the CPU it is gloo.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        cuda = resolve_device(device).type == "cuda"
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
    return _dist()[1] > 1


def _allreduce_grads(model: torch.nn.Module) -> None:
    _, ws = _dist()
    if ws == 1:
        return
    for p in model.parameters():
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)


# ----------------------------------------------------------------------------------------------- training
def check_trainable_labels(d: StudentData, idx: torch.Tensor, train_ids: torch.Tensor) -> None:
    """Refuse a batch holding a label of a non-trainable (unseen) verb or an unlabeled sample: the second guard of
    the module docstring, on the CPU rows before the batch moves (no device synchronisation per step).

    Raises:
        RuntimeError: naming up to three offending images.
    """
    verb = d.verb[idx]
    wrong = (verb < 0) | ~torch.isin(verb, train_ids)
    if wrong.any():
        bad = [d.images[i] for i in idx[wrong][:3].tolist()]
        raise RuntimeError(f"label of a non-trainable (unseen) verb reached the loss: {bad}")


def compute_losses(model: OvGSRStudent, b: StudentData, B: int, cfg: StudentConfig,
                   train_map: torch.Tensor, train_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Weighted named loss parts on the labelled batch ``b`` (``StudentData.take``: on the model's device, its labels
    checked by :func:`check_trainable_labels`), normalised by the global batch size ``B``. Pure tensor code with no
    host synchronisation, so it also runs on the ``meta`` device (the device tests)."""
    u = cfg.uses
    verb = b.verb
    out = model(to_input(b.x), verb, b.xp)
    vl = out["verb_logits"][:, train_ids]  # CE over the trainable vocabulary only
    rm = b.role_mask
    parts = {"verb": cfg.w_verb * L.verb_ce(vl, train_map[verb], B, cfg.verb_smoothing),
             "noun": cfg.w_noun * L.noun_ce(out["noun_logits"], b.nouns, rm, B, cfg.noun_smoothing),
             "box_l1": cfg.w_l1 * L.box_l1(out["boxes"], b.boxes, b.exists, B),
             "box_giou": cfg.w_giou * L.box_giou(out["boxes"], b.boxes, b.exists, B),
             "box_exists": cfg.w_exists * L.box_exists_bce(out["exists"], b.exists, rm, B)}
    if u["distill"]:
        ones = torch.ones(len(b), dtype=torch.bool, device=verb.device)
        parts["distill_scene"] = cfg.w_scene * L.feature_distill(out["scene_feat"], b.scene_t, ones, B, cfg.distill_kind)
        if cfg.w_role > 0:
            parts["distill_role"] = cfg.w_role * L.feature_distill(out["role_feat"], b.role_t, rm, B, cfg.distill_kind)
    if u["neg"] and cfg.w_neg > 0 and b.neg is not None:
        # on the student's own negative projection of the scene feature: never on the verb head's input
        parts["neg"] = cfg.w_neg * L.negative_guided(model.neg_proj(out["scene"]), b.pos, b.neg, b.neg_mask, B,
                                                     cfg.neg_kind, pos_mask=b.pos_mask)
    if u["kd"] and cfg.w_kd > 0 and b.kd is not None:
        kv = train_ids if cfg.kd_vocab == "train" else torch.arange(out["verb_logits"].shape[1], device=verb.device)
        parts["kd"] = cfg.w_kd * L.logit_kd(out["verb_logits"][:, kv], b.kd[:, kv], B, cfg.kd_t)
    return parts


def unlabeled_losses(model: OvGSRStudent, b: StudentData, B: int, cfg: StudentConfig,
                     train_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Scene distillation (+ logit KD over the trainable verbs) on the unlabeled batch ``b``; no label is used."""
    tok, scene = model.encode(to_input(b.x), b.xp)
    ones = torch.ones(len(b), dtype=torch.bool, device=b.x.device)
    parts = {"u_distill_scene": cfg.w_scene * L.feature_distill(model.scene_distill(scene), b.scene_t, ones, B,
                                                                cfg.distill_kind)}
    if cfg.w_kd > 0 and b.kd is not None:
        kv = train_ids if cfg.kd_vocab == "train" else torch.arange(b.kd.shape[1], device=b.kd.device)
        parts["u_kd"] = cfg.w_kd * L.logit_kd(model.verb_logits(scene)[:, kv], b.kd[:, kv], B, cfg.kd_t)
    return parts


@dataclass
class FitResult:
    model: OvGSRStudent
    history: list[dict[str, float]]
    best_epoch: int
    dev_curve: list[float]
    info: dict[str, Any]


def _state_to_flat(model: torch.nn.Module, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    flat = {f"model.{k}": v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    sd = opt.state_dict()
    for pid, st in sd["state"].items():
        for k, v in st.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            flat[f"opt.{pid}.{k}"] = t.detach().cpu().clone().contiguous()
    return flat, {"param_groups": sd["param_groups"]}


def save_checkpoint(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, cfg: StudentConfig,
                    epoch: int, extra: dict, vocab: Optional[StudentVocab] = None) -> None:
    """safetensors checkpoint: weights + optimizer state; metadata holds the config fingerprint and progress.

    With ``vocab`` the file also carries the frozen vocabulary and the names of the frozen models that made it
    (format ``mipd-student/2``, :mod:`mipd_kit.student.checkpoint`), so ``mipd predict`` needs nothing else.
    """
    from safetensors.torch import save_file
    flat, meta = _state_to_flat(model, opt)
    meta = {"fingerprint": cfg.fingerprint(), "config": json.dumps(dataclasses.asdict(cfg)), "epoch": str(epoch),
            "optimizer": json.dumps(meta), "extra": json.dumps(extra)}
    if vocab is not None:
        vt, vm = vocab_payload(vocab)
        flat.update(vt)
        meta.update(vm)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(flat, str(tmp), metadata=meta)


def load_checkpoint(path: Path, model: torch.nn.Module, opt: Optional[torch.optim.Optimizer], cfg: StudentConfig) -> tuple[int, dict]:
    """Load a checkpoint written by the same config; returns (finished epochs, extra).

    Raises:
        CheckpointMismatch: the checkpoint's config fingerprint differs (names both fingerprints and the path).
    """
    from safetensors import safe_open
    from safetensors.torch import load_file
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if meta.get("fingerprint") != cfg.fingerprint():
        other = json.loads(meta.get("config", "{}"))
        mine = dataclasses.asdict(cfg)
        diff = sorted(k for k in set(other) | set(mine) if other.get(k) != mine.get(k))
        raise CheckpointMismatch(f"{path}: checkpoint written by another config (fingerprint {meta.get('fingerprint')} "
                                 f"!= {cfg.fingerprint()}; differing fields {diff}); delete it or use another run dir")
    flat = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in flat.items() if k.startswith("model.")})
    if opt is not None:
        state: dict[int, dict] = {}
        for k, v in flat.items():
            if k.startswith("opt."):
                _, pid, name = k.split(".", 2)
                state.setdefault(int(pid), {})[name] = v
        opt.load_state_dict({"state": state, "param_groups": json.loads(meta["optimizer"])["param_groups"]})
    return int(meta["epoch"]), json.loads(meta.get("extra", "{}"))


def finished_checkpoint(path: Optional[Path], cfg: StudentConfig, n_train: int) -> bool:
    """True when ``path`` holds every epoch (:meth:`StudentConfig.epochs_for` ``n_train`` images) of this config (same
    fingerprint): resuming it trains nothing. A mismatching file is left for :func:`load_checkpoint` to refuse."""
    if path is None or not Path(path).is_file():
        return False
    from safetensors import safe_open
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except Exception:  # noqa: BLE001 -- a torn file: load_checkpoint names it
        return False
    return meta.get("fingerprint") == cfg.fingerprint() and int(meta.get("epoch", -1)) >= cfg.epochs_for(n_train)


@torch.no_grad()
def verb_top1(model: OvGSRStudent, d: StudentData, mask: Optional[torch.Tensor] = None, batch_size: int = 256) -> float:
    """Verb top-1 (percent) over the images selected by ``mask`` (all verbs predictable)."""
    model.eval()
    dev = next(model.parameters()).device
    sel = torch.arange(len(d)) if mask is None else torch.nonzero(mask).flatten()
    if len(sel) == 0:
        return float("nan")
    hits = 0
    for s in range(0, len(sel), batch_size):
        i = sel[s:s + batch_size]
        _, scene = model.encode(to_input(to_device(d.x[i], dev)), None if d.xp is None else to_device(d.xp[i], dev))
        hits += int((model.verb_logits(scene).argmax(-1).cpu() == d.verb[i]).sum())
    model.train()
    return 100.0 * hits / len(sel)


def fit(world: World, cfg: StudentConfig, ckpt_path: Optional[Path] = None, resume: bool = True,
        progress: bool = False, train_data: Optional[StudentData] = None,
        unlabeled: Optional[StudentData] = None, info: Optional[dict] = None,
        stop_after: Optional[int] = None) -> FitResult:
    """Train one student (one variant, one seed). DDP-aware (see module docstring).

    Args:
        world: prepared world. cfg: config. ckpt_path: safetensors file (saved every epoch; resumed when present).
        resume: continue from ``ckpt_path`` if it exists (refused if written by another config).
        train_data / unlabeled / info: targets from :func:`attach_targets` (computed here when omitted).
        stop_after: stop after this epoch count as if the job were killed (checkpoint written; for resume tests).

    Raises:
        FloatingPointError: a NaN/inf loss, naming the epoch, step, loss part and the batch's images.
        CheckpointMismatch: see :func:`load_checkpoint`.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    n_train = len(world.train) + (len(world.unlabeled_gt) if cfg.uses["all_labels"] and world.unlabeled_gt else 0)
    if train_data is None and resume and finished_checkpoint(ckpt_path, cfg, n_train):
        # nothing left to train: no teacher targets (nor the NMPA a control row would train for them) are needed
        train_data, unlabeled, info = world.train, None, {"resumed_finished": True}
    if train_data is None:
        train_data, unlabeled, info = attach_targets(world, cfg, progress=progress)
    info = dict(info or {})
    rank, ws = _dist()
    d = train_data
    vocab = world.vocab
    dev = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = to_device(build_student(cfg, vocab), dev)  # initialised on the CPU: the same weights on every device
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # the ceiling (all_labels) trains every verb; every other row only the trainable (seen + rare) ones
    train_ids = (torch.arange(len(vocab.verbs)) if cfg.uses["all_labels"]
                 else torch.nonzero(vocab.train_verbs).flatten())
    train_map = torch.full((len(vocab.verbs),), -1, dtype=torch.long)
    train_map[train_ids] = torch.arange(len(train_ids))
    cpu_train_ids = train_ids
    train_ids, train_map = to_device(train_ids, dev), to_device(train_map, dev)
    steps_per_epoch = math.ceil(len(d) / cfg.batch_size)
    epochs = cfg.epochs_for(len(d))
    total = epochs * steps_per_epoch
    sched = lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))  # noqa: E731
    start, history, dev_curve, best, best_state = 0, [], [], -1.0, None
    best_epoch = -1
    train_s = 0.0  # seconds spent on the epochs done so far, earlier sessions of a resumed checkpoint included
    if ckpt_path is not None and resume and Path(ckpt_path).exists():
        start, extra = load_checkpoint(Path(ckpt_path), model, opt, cfg)
        history, dev_curve = extra.get("history", []), extra.get("dev_curve", [])
        best, best_epoch = extra.get("best", -1.0), extra.get("best_epoch", -1)
        train_s = float(extra.get("train_s", 0.0))
        best_path = Path(str(ckpt_path) + ".best")
        if best_path.exists():
            from safetensors.torch import load_file
            best_state = {k: v for k, v in load_file(str(best_path)).items() if not k.startswith("vocab.")}
    prev_s = train_s
    dev_mask = torch.isin(world.dev.verb, cpu_train_ids)
    bar = None
    if progress and rank == 0:
        from ..progress import progress as progress_bar
        bar = progress_bar(total=total, initial=start * steps_per_epoch, desc=f"student {cfg.model_name} seed {cfg.seed}",
                           unit="step", steps_per_epoch=steps_per_epoch)
    model.train()
    t0 = time.time()
    for epoch in range(start, epochs):
        g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        perm = torch.randperm(len(d), generator=g)
        perm_u = torch.randperm(len(unlabeled), generator=g) if unlabeled is not None else None
        bu = max(2, ws, int(round(cfg.batch_size * cfg.unlabeled_ratio))) if unlabeled is not None else 0
        for s in range(steps_per_epoch):
            step = epoch * steps_per_epoch + s
            for grp in opt.param_groups:
                grp["lr"] = cfg.lr * sched(step)
            gb = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            if len(gb) < max(2, ws):
                # a trailing batch too small for batch-norm statistics (or for one sample per rank) is skipped, the
                # same way in one process and under DDP, so both stay equal
                continue
            mine = gb[rank::ws]
            parts: dict[str, torch.Tensor] = {}
            with autocast(dev, cfg.amp):
                if len(mine):
                    check_trainable_labels(d, mine, cpu_train_ids)
                    parts = compute_losses(model, d.take(mine, dev), len(gb), cfg, train_map, train_ids)
                if perm_u is not None:
                    gu = perm_u[torch.arange(s * bu, (s + 1) * bu) % len(perm_u)]
                    mu = gu[rank::ws]
                    if len(mu):
                        parts.update(unlabeled_losses(model, unlabeled.take(mu, dev), len(gu), cfg, train_ids))
            loss = sum(parts.values()) if parts else None
            opt.zero_grad(set_to_none=False)
            if loss is not None:
                if not torch.isfinite(loss):
                    bad = [k for k, v in parts.items() if not torch.isfinite(v)]
                    raise FloatingPointError(f"{cfg.model_name}: loss {float(loss.detach())} at epoch {epoch} step {s} "
                                             f"(parts {bad}); batch images {[d.images[i] for i in mine.tolist()]}")
                loss.backward()
            _allreduce_grads(model)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            opt.step()
            rec = {"epoch": epoch, "step": step, **{k: float(v.detach()) for k, v in parts.items()}}
            rec["loss"] = float(sum(v for k, v in rec.items() if k not in ("epoch", "step")))
            history.append(rec)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{rec['loss']:.3f}")
        if cfg.select_on_dev and len(world.dev):
            acc = verb_top1(model, world.dev, dev_mask)
            dev_curve.append(acc)
            if acc > best:
                best, best_epoch = acc, epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                if ckpt_path is not None and rank == 0:
                    save_student_file(Path(str(ckpt_path) + ".best"), best_state, cfg, vocab, epoch + 1)
        train_s = prev_s + time.time() - t0
        if ckpt_path is not None and rank == 0:
            save_checkpoint(Path(ckpt_path), model, opt, cfg, epoch + 1,
                            {"history": history, "dev_curve": dev_curve, "best": best, "best_epoch": best_epoch,
                             "train_s": train_s}, vocab=vocab)
        if stop_after is not None and epoch + 1 >= stop_after:
            break
    if bar is not None:
        bar.close()
    # the training time of the epochs the model holds (a finished checkpoint "resumed" keeps the time it took)
    info["train_s"] = train_s
    info["samples_per_s"] = len(history) * cfg.batch_size / max(info["train_s"], 1e-9)
    if cfg.select_on_dev and best_state is not None:
        model.load_state_dict(best_state)
    else:
        best_epoch = epochs - 1
    model.eval()
    return FitResult(model, history, best_epoch, dev_curve, info)


def save_student_file(path: Path, state: dict[str, torch.Tensor], cfg: StudentConfig, vocab: StudentVocab,
                      epoch: int) -> None:
    """The dev-selected weights as a self-contained student file (``<checkpoint>.best``: weights, vocabulary,
    config; what ``mipd predict`` and the ONNX export load), written atomically."""
    from safetensors.torch import save_file
    path.parent.mkdir(parents=True, exist_ok=True)
    vt, vm = vocab_payload(vocab)
    with atomic_path(path) as tmp:
        save_file({**{k: v.cpu().contiguous() for k, v in state.items()}, **vt}, str(tmp),
                  metadata={"fingerprint": cfg.fingerprint(), "config": json.dumps(dataclasses.asdict(cfg)),
                            "epoch": str(epoch), **vm})


# ----------------------------------------------------------------------------------------------- inference
def _frame(vocab: StudentVocab, verb: int, nouns: torch.Tensor, boxes: torch.Tensor, exists: torch.Tensor,
           size: tuple[float, float]) -> dict[str, dict]:
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
                              "frame": _frame(vocab, v, p["nouns"][j, t], p["boxes"][j, t], p["exists"][j, t], size)})
            rec = {"verbs": verbs}
            if int(gtv[j]) >= 0:
                rec["gt_verb_frame"] = _frame(vocab, int(gtv[j]), p["gt_nouns"][j], p["gt_boxes"][j], p["gt_exists"][j], size)
            preds[im] = rec
    return preds


def write_json_atomic(path: Path, obj: Any) -> None:
    """Atomic strict JSON (NaN / inf -> null)."""
    from mipd_kit.fileio import write_json
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, obj, indent=None)


def evaluate_predictions(world: World, preds: dict, model_name: str, seed: Optional[int], split: str = "test") -> list:
    """``mipd_kit.eval.swig.evaluate_swig`` rows relabelled with the model name and seed."""
    from ..eval.swig import evaluate_swig
    return evaluate_swig(world.gt[split], preds, world.split, model=model_name, seed=seed, space=world.space)


def run_variant(world: World, cfg: StudentConfig, run_dir: str | os.PathLike, resume: bool = True,
                progress: bool = False) -> tuple[list, FitResult]:
    """Train one variant/seed, write ``run_dir/predictions/<model>-seed<k>.json`` (test), the same of the dev split in
    ``run_dir/predictions-dev/`` and the loss curve ``run_dir/curves/<model>-seed<k>.json``; return the test metric
    rows (plus the dev-only unseen verbs' rows) and the fit result."""
    run = Path(run_dir)
    tag = f"{cfg.model_name}-seed{cfg.seed}"
    ckpt = run / "checkpoints" / f"{tag}.safetensors"
    res = fit(world, cfg, ckpt, resume=resume, progress=progress)
    rank, _ = _dist()
    rows: list = []
    if rank == 0:
        # verb-logit centring (0 sets a zero centre, so a student file centred before is reset too); the student file
        # gets the centre, so that mipd predict and the ONNX export predict as evaluated here
        res.info["verb_centring"] = cfg.verb_centring
        res.info["verb_centre_norm"] = centre_verb_logits(res.model, world.train.x, cfg.verb_centring,
                                                          pooled=world.train.xp)
        best = Path(str(ckpt) + ".best")
        if best.exists():
            save_student_file(best, res.model.state_dict(), cfg, world.vocab, res.best_epoch + 1)
        preds = predict_swig(res.model, world.test, world.vocab)
        write_json_atomic(run / "predictions" / f"{tag}.json", preds)
        info = {k: v for k, v in res.info.items() if k != "nmpa_history"}
        nmpa_history = res.info.get("nmpa_history", [])
        curve = run / "curves" / f"{tag}.json"
        if info.get("resumed_finished") and curve.is_file():  # a re-evaluation keeps what the training pass recorded
            try:
                old = json.loads(curve.read_text())
                info = {**old.get("info", {}), **info}
                nmpa_history = old.get("nmpa_history", [])
            except (OSError, ValueError):
                pass
        write_json_atomic(curve, {"history": res.history, "dev_curve": res.dev_curve, "best_epoch": res.best_epoch,
                                  "info": info, "nmpa_history": nmpa_history})
        rows = evaluate_predictions(world, preds, cfg.model_name, cfg.seed)
        dev_preds = predict_swig(res.model, world.dev, world.vocab)
        # the dev predictions, for choices and calibration made on dev (benchmarks/calibrate_testbed.py --run)
        write_json_atomic(run / "predictions-dev" / f"{tag}.json", dev_preds)
        rows += dev_unseen_rows(world, dev_preds, cfg.model_name, cfg.seed)
    return rows, res


def dev_unseen_rows(world: World, dev_preds: dict, model_name: str, seed: Optional[int]) -> list:
    """The dev images' rows of the dev-only unseen splits (``unseen_dev*``, ov protocol v2): the only unseen verbs a
    selection may look at. Empty for a world without them."""
    if not any(k.startswith("unseen_dev") for k in world.split.lists()):
        return []
    rows = evaluate_predictions(world, dev_preds, model_name, seed, split="dev")
    return [r for r in rows if r.split.startswith("unseen_dev")]


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


def teacher_rows(teacher: Any, world_dir: str | os.PathLike, seeds: Sequence[int], split: str = "test",
                 model: str = "teacher") -> list:
    """Zero-shot verb rows of an image-text model (``mipd_kit.teachers.embedded.zero_shot_verbs``; the teacher, or
    the frozen student backbone as ``student-zs``) on ``split`` plus the dev images' ``unseen_dev*`` rows, one copy
    per seed so the seed-aggregated table has the reference row (the model is fixed: std 0)."""
    from ..teachers.embedded import zero_shot_verbs
    _, rows = zero_shot_verbs(teacher, world_dir, split=split)
    if split != "dev" and (Path(world_dir) / "dev.json").is_file():
        _, dev = zero_shot_verbs(teacher, world_dir, split="dev")
        rows += [r for r in dev if r.split.startswith("unseen_dev")]
    return [dataclasses.replace(r, seed=s, model=model) for s in seeds for r in rows]


# ----------------------------------------------------------------------------------------------- CLI
def config_from_args(variant: str, seed: int, smoke: bool, sets: Sequence[str]) -> StudentConfig:
    """Config from a variant, seed, smoke flag and ``key=value`` overrides (``nmpa.key=value`` for NMPA); values are
    read by ``mipd_kit.overrides.parse_value`` (YAML-typed, as ``mipd run --set``)."""
    from ..overrides import parse_value as _parse_value
    cfg = StudentConfig.smoke(variant) if smoke else StudentConfig(variant=variant)  # type: ignore[arg-type]
    cfg.seed = seed
    for s in sets:
        if "=" not in s:
            raise ValueError(f"--set expects key=value, got {s!r}")
        k, v = s.split("=", 1)
        if k.startswith("nmpa."):
            sub = k[5:]
            if sub not in {f.name for f in dataclasses.fields(NMPAConfig)}:
                raise ValueError(f"unknown NMPA config key {sub!r}")
            setattr(cfg.nmpa, sub, _parse_value(v))
        elif k in {f.name for f in dataclasses.fields(StudentConfig)}:
            setattr(cfg, k, _parse_value(v))
        else:
            raise ValueError(f"unknown StudentConfig key {k!r}")
    cfg.__post_init__()
    return cfg


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``mipd train-student``: train one variant (or several) on a world, write predictions and metrics rows.

    Works under ``torchrun --nproc_per_node N -m mipd_kit.student.train ...`` (DDP: gloo on the CPU; with
    ``--set device=cuda`` (or ``auto`` on a GPU machine) NCCL, rank ``r`` on GPU ``LOCAL_RANK``).
    """
    p = argparse.ArgumentParser(prog="mipd train-student", description=__doc__.split("\n")[0])
    p.add_argument("--world", required=True, help="SynthSitu world folder")
    p.add_argument("--run-dir", required=True, help="run folder (predictions/, curves/, checkpoints/, metrics.json)")
    p.add_argument("--cache-dir", default="data/cache", help="teacher checkpoints and feature caches")
    p.add_argument("--variant", default="full", help=f"comma-separated variants from {VARIANTS} or 'all'")
    p.add_argument("--seeds", default="0", help="comma-separated seeds")
    p.add_argument("--rationales", default=None, help="rationales.jsonl (default: RUN_DIR/rationales.jsonl)")
    p.add_argument("--teacher", default="embedded", choices=["embedded", "tiny"], help="teacher backend")
    p.add_argument("--smoke", action="store_true", help="smoke-sized model and schedule")
    p.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints (they are overwritten)")
    p.add_argument("--set", action="append", default=[], help="override a config field: key=value or nmpa.key=value")
    a = p.parse_args(list(argv) if argv is not None else None)
    variants = list(VARIANTS) if a.variant == "all" else a.variant.split(",")
    seeds = [int(s) for s in a.seeds.split(",")]
    cfgs = [config_from_args(v, s, a.smoke, a.set) for s in seeds for v in variants]
    init_distributed(cfgs[0].device)  # NCCL when the device is CUDA (--set device=cuda), else gloo
    rank, _ = _dist()
    rat = a.rationales or str(Path(a.run_dir) / "rationales.jsonl")
    ws = _dist()[1]
    if ws > 1 and rank != 0:
        dist.barrier()  # rank 0 trains/loads the teacher and fills the feature caches first
    teacher = load_teacher_kind(a.teacher, a.world, a.cache_dir, a.smoke)
    world = prepare_world(a.world, a.cache_dir, teacher, cfgs[0].image_size, rationales_path=rat, verb_text=cfgs[0].verb_text)
    if ws > 1 and rank == 0:
        dist.barrier()
    if rank == 0:
        print(json.dumps(world.report["rationales"]))
    from ..metrics import merge_rows
    for cfg in cfgs:
        rows, res = run_variant(world, cfg, a.run_dir, resume=not a.no_resume, progress=rank == 0)
        if rank == 0:
            merge_rows(Path(a.run_dir) / "metrics.json", rows)
            top = [r for r in rows if r.split in ("seen", "rare", "unseen") and r.setting == "top1" and r.metric == "verb" and r.mean == "image"]
            print(cfg.model_name, f"seed{cfg.seed}", {r.split: round(r.value, 1) for r in top},
                  f"train {res.info['train_s']:.0f}s")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


def load_teacher_kind(kind: str, world_dir: str | os.PathLike, cache_dir: str | os.PathLike, smoke: bool = False) -> Any:
    """The teacher of ``--teacher``: ``embedded`` (smoke or default size) or ``tiny`` (random, tests only), built by
    the one factory ``mipd_kit.teachers.build_teacher`` with teacher seed 0."""
    from ..teachers import TeacherConfig, build_teacher
    if kind not in ("embedded", "tiny"):
        raise ValueError(f"teacher must be one of 'embedded', 'tiny', got {kind!r}")
    cfg = TeacherConfig(backend=kind, size="smoke" if smoke else "default")  # type: ignore[arg-type]
    return build_teacher(cfg.with_paths(world_dir, cache_dir))


if __name__ == "__main__":
    raise SystemExit(main())
