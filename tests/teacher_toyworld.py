"""A tiny world in the SynthSitu world-folder layout, written by the teacher tests themselves.

Six verbs, each a combination of two visual primitives (object colour and where the object is relative to a
white "person" bar); captions describe the scene in words. Two verbs are unseen by the (absent) student.
Not a SynthSitu replacement: just enough signal to check that the teacher pipeline learns and round-trips.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

NOUNS = {"ball": (230, 40, 40), "box": (40, 90, 230), "plant": (40, 200, 60)}
#: verb -> (noun, relative position of the object), abstract, definition
VERBS = {
    "kicking": ("ball", "below", "AGENT kicks ITEM", "strike something with the foot"),
    "throwing": ("ball", "above", "AGENT throws ITEM", "send something through the air"),
    "carrying": ("box", "beside", "AGENT carries ITEM", "hold something while moving"),
    "lifting": ("box", "above", "AGENT lifts ITEM", "raise something up"),
    "watering": ("plant", "beside", "AGENT waters ITEM", "pour water on a plant"),
    "trimming": ("plant", "above", "AGENT trims ITEM", "cut the top of a plant"),
}
SPLIT = {"seen": ["kicking", "carrying", "watering"], "rare": ["lifting"], "unseen": ["throwing", "trimming"],
         "unseen_compositional": ["throwing", "trimming"], "unseen_novel": []}


def _draw(verb: str, rng: random.Random, size: int = 32) -> tuple[Image.Image, dict]:
    noun, rel, _, _ = VERBS[verb]
    im = Image.new("RGB", (size, size), tuple(rng.randint(0, 60) for _ in range(3)))
    d = ImageDraw.Draw(im)
    px = rng.randint(8, size - 12)
    py = rng.randint(8, 12)
    pb = (px, py, px + 3, py + 14)
    d.rectangle(pb, fill=(255, 255, 255))
    ox = {"below": px - 1, "above": px - 1, "beside": px + 5}[rel]
    oy = {"below": py + 15, "above": max(0, py - 7), "beside": py + 5}[rel]
    ob = (ox, oy, ox + 5, oy + 5)
    d.rectangle(ob, fill=NOUNS[noun])
    return im, {"agent": [float(v) for v in pb], "item": [float(v) for v in ob]}


def write_toy_world(out: Path, n_pretrain_per_verb: int = 40, n_gsr_per_verb: int = 6, seed: int = 0) -> Path:
    """Write the toy world to ``out`` and return it."""
    rng = random.Random(seed)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "pretrain" / "images").mkdir(parents=True, exist_ok=True)
    space = {"nouns": {n: {"gloss": [n], "def": f"a {n}"} for n in [*NOUNS, "person"]},
             "verbs": {v: {"framenet": "", "abstract": a, "def": df, "order": ["agent", "item"],
                           "roles": {"agent": {"framenet": "", "def": "the doer"},
                                     "item": {"framenet": "", "def": "the thing"}}}
                       for v, (_, _, a, df) in VERBS.items()}}
    (out / "imsitu_space.json").write_text(json.dumps(space))
    (out / "ov_split.json").write_text(json.dumps({**SPLIT, "rule": "toy", "counts": {}}))
    (out / "meta.json").write_text(json.dumps({"generator": "teacher-toyworld", "seed": seed}))
    lines = []
    k = 0
    for v in VERBS:
        for _ in range(n_pretrain_per_verb):
            im, _ = _draw(v, rng)
            name = f"pretrain/images/p_{k:06d}.png"
            im.save(out / name)
            noun = VERBS[v][0]
            lines.append(json.dumps({"image": name, "caption": f"a person {v} a {noun}", "verbs": [v]}))
            k += 1
    rng.shuffle(lines)
    (out / "pretrain" / "captions.jsonl").write_text("\n".join(lines) + "\n")
    for split in ("train", "dev", "test"):
        recs = {}
        for v in VERBS:
            if split == "train" and v in SPLIT["unseen"]:
                continue
            for j in range(n_gsr_per_verb):
                im, boxes = _draw(v, rng)
                name = f"{split}_{v}_{j}.png"
                im.save(out / "images" / name)
                noun = VERBS[v][0]
                recs[name] = {"verb": v, "width": 32, "height": 32, "bb": boxes,
                              "frames": [{"agent": "person", "item": noun}] * 3}
        (out / f"{split}.json").write_text(json.dumps(recs))
    return out
