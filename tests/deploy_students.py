"""Smoke students for the deploy tests (predict, ONNX export): a tiny SynthSitu world and two students trained on it
in seconds with the tiny random teacher and the hashed text embedder: the CNN student on pixels and a cached-feature
student on the tiny teacher's patch tokens (its frozen backbone). Built once per test process. Wiring only: never
report their numbers."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import replace
from pathlib import Path

import torch

from mipd_kit.data.synthsitu.generate import SynthConfig, generate
from mipd_kit.student.testing import hashed_text_embedder
from mipd_kit.student.config import StudentConfig
from mipd_kit.student.data import prepare_world
from mipd_kit.student.train import fit
from mipd_kit.teachers.tiny import TinyRandomTeacher


@dataclasses.dataclass
class Students:
    world: Path
    cnn: Path  # training checkpoint (its .best sibling holds the dev-selected weights)
    cached: Path
    vocab_verbs: list


@functools.lru_cache(maxsize=None)
def smoke_students(base: Path) -> Students:
    torch.set_num_threads(1)
    world = base / "deploy-world"
    cfg = replace(SynthConfig.smoke(0), size="smoke", n_train=80, rare_train=2, n_dev=20, n_test=20, n_unlabeled=4,
                  n_hoi_train=4, n_hoi_test=4, n_pretrain=8, workers=1)
    generate(cfg, world)
    w = prepare_world(world, base / "deploy-cache", TinyRandomTeacher(), image_size=32,
                      embed_texts=hashed_text_embedder(), with_unlabeled=False)
    sc = dataclasses.replace(StudentConfig.smoke("baseline"), threads=1, epochs=2, batch_size=16)
    cnn = base / "deploy-ckpt" / "baseline-seed0.safetensors"
    fit(w, sc, cnn)
    wc = prepare_world(world, base / "deploy-cache", TinyRandomTeacher(), embed_texts=hashed_text_embedder(),
                       with_unlabeled=False, backbone=TinyRandomTeacher())
    T, D = wc.train.x.shape[1:]
    # as the distillation stage builds it: a head on the backbone's tokens and its pooled embedding
    cc = dataclasses.replace(sc, backbone="cached", num_tokens=int(T), in_dim=int(D), pooled_dim=int(wc.train.xp.shape[1]))
    cached = base / "deploy-ckpt" / "cached-seed0.safetensors"
    fit(wc, cc, cached)
    return Students(world, cnn, cached, list(w.vocab.verbs))


def write_photo(path: Path, size: tuple[int, int] = (120, 80), seed: int = 0) -> Path:
    """A non-square, photo-like JPEG (smooth gradient sky and ground, a few blobs, sensor noise)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter
    W, H = size
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, H)[:, None, None]
    x = np.linspace(0, 1, W)[None, :, None]
    sky = np.array([110, 160, 230]) * (1 - y) + np.array([70, 120, 60]) * y + 30 * x
    im = Image.fromarray(np.clip(sky, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    for _ in range(4):
        cx, cy, r = rng.integers(0, W), rng.integers(H // 3, H), rng.integers(5, 20)
        d.ellipse([cx - r, cy - 2 * r, cx + r, cy + r], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    im = im.filter(ImageFilter.GaussianBlur(1.2))
    arr = np.asarray(im).astype(np.int16) + rng.integers(-8, 9, (H, W, 3))
    Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=85)
    return path
