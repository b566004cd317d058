"""Student data preparation: a world's splits as tensors (:class:`StudentData`), its frozen open-vocabulary tables
(:func:`build_vocab`) and the teacher's material for NMPA and logit KD, read once for every variant and seed
(:func:`prepare_world` -> :class:`World`).

Inputs are uint8 pixels (the edge CNN) or, with a frozen student backbone (real mode), its cached patch tokens
streamed from ``mipd_kit.teachers.cache``. Training never sees an unseen-verb label:
``mipd_kit.data.splits.guard_training`` refuses any unseen-verb example of the training file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..align.nmpa import AlignData, build_align_data
from ..data.records import DataError, FrameSpace, Situation
from ..machine import to_device
from . import losses as L
from .checkpoint import describe_frozen, text_encoder_name
from .ingredients import drop_gold_negatives
from .model import StudentVocab


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



def make_split_data(sits: dict[str, Situation], vocab: StudentVocab, space: FrameSpace, x: torch.Tensor,
                    where: str) -> StudentData:
    t = situations_to_tensors(sits, vocab, space, where)
    return StudentData(list(sits), x, **t)



def minilm_text_embedder() -> Callable[[list[str]], torch.Tensor]:
    """Texts -> (N, 384) frozen MiniLM sentence embeddings (the default text tables of the open-vocabulary heads),
    named ``"minilm"`` for the checkpoint (``checkpoint.text_encoder_name``)."""
    from ..teachers.text import minilm_encode

    def embed_texts(texts: list[str]) -> torch.Tensor:
        return minilm_encode(texts, with_tokens=False)[2]
    embed_texts.text_encoder = "minilm"  # type: ignore[attr-defined]  # the name a checkpoint records
    return embed_texts


@dataclass
class _WorldReader:
    """Where a world's inputs and teacher features come from: pixels or a frozen backbone's cached tokens, and the
    teacher's cached image and text features."""

    world: Path
    cache_dir: str | os.PathLike
    teacher: Any
    backbone: Any
    image_size: int

    @property
    def name(self) -> str:
        return self.world.name or "world"

    def img(self, n: str) -> Path:
        return self.world / "images" / n

    def inputs(self, names: list[str], ds: str) -> torch.Tensor:
        if self.backbone is None:
            return load_pixels([self.img(n) for n in names], self.image_size)
        from ..teachers.cache import lazy_image_tokens  # rows stream from the cache's shards (a cache > RAM)
        # the teacher's dataset name: cache folders are keyed by the model's fingerprint too, so a backbone equal to
        # the teacher shares its cache (149 GB for ViT-L-14-336 on SWiG) and any other backbone gets its own folder
        return lazy_image_tokens(self.backbone, [self.img(n) for n in names], self.cache_dir, f"{self.name}-{ds}",
                                 progress=False)

    def pooled_of(self, x: Any) -> Optional[torch.Tensor]:
        return x.pooled() if self.backbone is not None else None  # (N, Ep) the backbone's pooled embeddings

    def enc_texts(self, texts: list[str]) -> Any:
        return cached_text_features(self.teacher, texts, self.cache_dir, dataset=f"{self.name}-rationales")

    def teacher_features(self, names: list[str], ds: str) -> tuple[Any, torch.Tensor]:
        """Teacher tokens and pooled embeddings; real mode (a student backbone) streams the tokens from the cache."""
        if self.backbone is None:
            e = cached_image_features(self.teacher, [self.img(n) for n in names], self.cache_dir, f"{self.name}-{ds}")
            return e.tokens.float(), e.pooled.float()
        from ..teachers.cache import lazy_image_tokens
        lazy = lazy_image_tokens(self.teacher, [self.img(n) for n in names], self.cache_dir, f"{self.name}-{ds}",
                                 progress=False)
        return lazy, lazy.pooled()


def _unlabeled_pool(reader: _WorldReader, vocab: StudentVocab,
                    space: FrameSpace) -> tuple[Optional[StudentData], Optional[StudentData], list[str]]:
    """The unlabeled pool (``unlabeled.json``; labels -1), its ground truth when the world has it (the ceiling row
    only) and its image names."""
    from ..data.swig import load_situations
    world = reader.world
    unl = unl_gt = None
    unl_names: list[str] = []
    if (world / "unlabeled.json").exists():
        unl_names = list(json.loads((world / "unlabeled.json").read_text())["images"])
        if unl_names:
            n, R = len(unl_names), vocab.max_roles
            xu = reader.inputs(unl_names, "unlabeled")
            unl = StudentData(unl_names, xu, torch.full((n,), -1),
                              torch.full((n, R, 3), -1), torch.zeros(n, R, 4), torch.zeros(n, R, dtype=torch.bool),
                              torch.zeros(n, R, dtype=torch.bool), torch.zeros(n, 2), xp=reader.pooled_of(xu))
            gt_path = world / "unlabeled_gt.json"
            if gt_path.exists():  # SynthSitu's answers for the pool: the ceiling row trains on them, nothing else
                ugt = load_situations(gt_path)
                missing = [n for n in unl_names if n not in ugt]
                if missing:
                    raise DataError(f"{gt_path}: no ground truth for unlabeled images {missing[:3]}")
                unl_gt = make_split_data({n: ugt[n] for n in unl_names}, vocab, space, xu, str(gt_path))
                unl_gt.xp = unl.xp
    return unl, unl_gt, unl_names


@dataclass
class _TeacherMaterial:
    align: AlignData
    align_unlabeled: Optional[AlignData]
    kd_train: torch.Tensor
    kd_unlabeled: Optional[torch.Tensor]
    verb_words: dict[str, tuple[str, ...]]
    dropped: Any


def _teacher_material(reader: _WorldReader, space: FrameSpace, vocab: StudentVocab, tr: StudentData,
                      unl: Optional[StudentData], train_sits: dict[str, Situation],
                      collected: dict[str, Any]) -> _TeacherMaterial:
    """NMPA's material (teacher features, rationale banks; gold-verb negatives dropped) of the train images and the
    unlabeled pool, and the teacher's zero-shot verb logits of both (logit KD). Sets ``vocab.verb_emb_teacher``."""
    teacher = reader.teacher
    verb_words = verb_words_of(reader.world, vocab.verbs)
    collected, dropped = drop_gold_negatives(collected, {n: train_sits[n].verb for n in tr.images}, verb_words)
    te_tokens, te_pooled = reader.teacher_features(tr.images, "train")
    roles = [list(space.roles(train_sits[n].verb)) for n in tr.images]
    align = build_align_data(tr.images, roles, cxcywh_to_unit_xyxy(tr.boxes), tr.exists, te_tokens,
                             te_pooled, teacher.grid, collected, reader.enc_texts)
    from ..teachers.zero_shot import class_embeddings, verb_prompts
    names, cls = class_embeddings(teacher, verb_prompts(space))
    cls = cls[[names.index(v) for v in vocab.verbs]]  # (V, E) in vocab order
    vocab.verb_emb_teacher = cls
    scale = 1.0 / 0.05
    kd_train = scale * F.normalize(te_pooled, dim=-1) @ cls.t()
    align_u = kd_u = None
    if unl is not None:
        tu_tokens, tu_pooled = reader.teacher_features(unl.images, "unlabeled")
        R = vocab.max_roles
        align_u = build_align_data(unl.images, [[] for _ in unl.images], torch.zeros(len(unl), R, 4),
                                   torch.zeros(len(unl), R, dtype=torch.bool), tu_tokens, tu_pooled,
                                   teacher.grid, collected, reader.enc_texts)  # positives of pool images, if any
        kd_u = scale * F.normalize(tu_pooled, dim=-1) @ cls.t()
    return _TeacherMaterial(align, align_u, kd_train, kd_u, verb_words, dropped)


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
        embed_texts = minilm_text_embedder()
    reader = _WorldReader(world, cache_dir, teacher, backbone, image_size)
    probe = teacher.encode_images([Image.new("RGB", (32, 32))])
    vocab = build_vocab(space, split.trainable, embed_texts, probe.pooled.shape[-1], probe.tokens.shape[-1], verb_text)
    # what a checkpoint needs to embed new verbs and to run a cached-feature student on an image
    vocab.sources = {"text_encoder": text_encoder_name(embed_texts), "teacher": describe_frozen(teacher),
                     "backbone": describe_frozen(backbone), "verb_text": verb_text}
    data = {}
    for s in ("train", "dev", "test"):
        x = reader.inputs(list(gt[s]), s)
        data[s] = make_split_data(train_sits if s == "train" else gt[s], vocab, space, x, f"{world / (s + '.json')}")
        data[s].xp = reader.pooled_of(x)
    unl, unl_gt, unl_names = _unlabeled_pool(reader, vocab, space) if with_unlabeled else (None, None, [])
    if collected is None and rationales_path is not None and Path(rationales_path).exists():
        from ..rationales.store import collect, read_rationales
        collected = collect(read_rationales(rationales_path))
    tr = data["train"]
    m = _teacher_material(reader, space, vocab, tr, unl, train_sits, collected or {})
    report = {"prepare_s": time.time() - t0, "rationales": m.align.coverage(), "n_train": len(tr),
              "n_dev": len(data["dev"]), "n_test": len(data["test"]), "n_unlabeled": len(unl_names),
              "gold_negatives_dropped": m.dropped}
    return World(vocab, space, split, tr, data["dev"], data["test"], unl, gt, m.align, m.align_unlabeled, m.kd_train,
                 m.kd_unlabeled, report, encode_texts=reader.enc_texts, verb_words=m.verb_words, unlabeled_gt=unl_gt)


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

