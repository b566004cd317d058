"""A tiny, learnable SWiG-format world for tests and benchmarks of the student and NMPA (no SynthSitu needed).

Each verb is drawn as an "agent" rectangle of a verb-specific colour plus an "item" rectangle; the verb's roles,
nouns and boxes follow the SWiG schema exactly. Rationales are produced in the ``collect`` form, with a positive
text naming the verb and negatives naming another verb. It is only a wiring fixture: never report its numbers.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from ..data.records import FrameSpace, NounDef, Situation, VerbDef

VERBS = ("riding", "pushing", "holding", "kicking", "throwing", "carrying")
COLOURS = ((220, 40, 40), (40, 200, 40), (40, 40, 220), (220, 220, 40), (220, 40, 220), (40, 220, 220))
NOUNS = ("person", "horse", "cart", "ball", "box", "stick")


def tiny_space() -> FrameSpace:
    verbs = {v: VerbDef(v, f"AGENT {v} ITEM", f"to be {v} something", ("agent", "item"),
                        {"agent": "the doer", "item": "the thing"}) for v in VERBS}
    nouns = {n: NounDef(n, (n,), f"a {n}") for n in NOUNS}
    return FrameSpace(verbs, nouns, "tiny")


def write_tiny_world(out: str | Path, n_per_verb: int = 8, seed: int = 0, size: int = 32,
                     unlabeled: int = 12) -> dict[str, Any]:
    """Write the world (imsitu_space.json, train/dev/test.json, ov_split.json, unlabeled.json, unlabeled_gt.json,
    images/).

    Verbs ``throwing`` and ``carrying`` are unseen (only in dev/test/unlabeled); ``kicking`` is rare.

    Returns:
        ``{"collected": rationales in collect() form for the train images, "space": FrameSpace}``.
    """
    from ..data.swig import write_frame_space, write_situations

    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    space = tiny_space()
    write_frame_space(out / "imsitu_space.json", space)
    unseen = ["throwing", "carrying"]
    rare = ["kicking"]
    seen = [v for v in VERBS if v not in unseen + rare]
    splits: dict[str, dict[str, Situation]] = {"train": {}, "dev": {}, "test": {}}
    collected: dict[str, Any] = {}
    pool = []

    def draw(name: str, vi: int) -> tuple[list[float], list[float]]:
        im = Image.new("RGB", (size, size), (128, 128, 128))
        d = ImageDraw.Draw(im)
        s = size // 4
        ax, ay = rng.randint(0, size // 2 - s), rng.randint(0, size - s - 1)
        bx, by = rng.randint(size // 2, size - s - 1), rng.randint(0, size - s - 1)
        d.rectangle([ax, ay, ax + s, ay + s], fill=COLOURS[vi])
        d.rectangle([bx, by, bx + s // 2 + 2, by + s // 2 + 2], fill=COLOURS[(vi + 3) % 6])
        arr = np.asarray(im).astype(np.int16) + np.array(rng.choices(range(-6, 7), k=size * size * 3)).reshape(size, size, 3)
        Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(out / "images" / name)
        return [ax, ay, ax + s, ay + s], [bx, by, bx + s // 2 + 2, by + s // 2 + 2]

    for vi, v in enumerate(VERBS):
        for split in ("train", "dev", "test"):
            if split == "train" and v in unseen:
                continue
            n = 2 if (split == "train" and v in rare) else (n_per_verb if split == "train" else max(2, n_per_verb // 2))
            for k in range(n):
                name = f"{split}_{v}_{k}.png"
                a, b = draw(name, vi)
                item = NOUNS[1 + (vi % 5)]
                frames = tuple({"agent": "person", "item": item if a_ != 2 else ""} for a_ in range(3))
                box_b = tuple(float(x) for x in b) if k % 4 != 3 else None
                splits[split][name] = Situation(name, v, size, size, {"agent": tuple(float(x) for x in a), "item": box_b},
                                                frames)
                if split == "train" and k % 5 != 4:  # some train images lack rationales on purpose
                    other = VERBS[(vi + 1) % len(VERBS)]
                    collected[name] = {
                        "glimpse": {"positive": [f"a person is {v} a {item}"], "negative": [f"a person is {other}",
                                                                                           "an empty field"]},
                        "gaze": {"agent": {"positive": [f"the person {v}"], "negative": ["a horse"]},
                                 "item": {"positive": [f"the {item}"], "negative": ["a person"]}}}
    pool_gt: dict[str, Situation] = {}
    for k in range(unlabeled):
        vi = k % len(VERBS)
        name = f"unl_{k}.png"
        a, b = draw(name, vi)
        pool.append(name)
        item = NOUNS[1 + (vi % 5)]
        pool_gt[name] = Situation(name, VERBS[vi], size, size, {"agent": tuple(float(x) for x in a),
                                                                 "item": tuple(float(x) for x in b)},
                                  tuple({"agent": "person", "item": item} for _ in range(3)))
    write_situations(out / "unlabeled_gt.json", pool_gt)  # the pool's answers (the ceiling row trains on them)
    for split, sits in splits.items():
        write_situations(out / f"{split}.json", sits)
    (out / "ov_split.json").write_text(json.dumps({"seen": seen, "rare": rare, "unseen": unseen,
                                                   "unseen_compositional": ["throwing"], "unseen_novel": ["carrying"],
                                                   "rule": "tiny fixture", "counts": {}}))
    (out / "unlabeled.json").write_text(json.dumps({"images": pool}))
    return {"collected": collected, "space": space}


def hashed_text_embedder(dim: int = 24):
    """Deterministic bag-of-words text embedder (texts -> (N, dim)) standing in for MiniLM in tests."""
    import hashlib

    import torch

    def embed(texts: list[str]) -> torch.Tensor:
        out = torch.zeros(len(texts), dim)
        for i, t in enumerate(texts):
            for w in t.lower().split() or [""]:
                g = torch.Generator().manual_seed(int(hashlib.md5(w.encode()).hexdigest()[:8], 16))
                out[i] += torch.randn(dim, generator=g)
        return out

    embed.text_encoder = f"hashed:{dim}"  # type: ignore[attr-defined]  # rebuilt by name at inference (predict)
    return embed
