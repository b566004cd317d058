"""A tiny HOI world in the SynthSitu world layout (hoi_train.json, hoi_test.json, hoi_prompts.json, hoi_zero_shot.json,
images/, pretrain/captions.jsonl), written by the CL-HOI tests themselves.

Each image shows one or two white "person" bars and one to three coloured objects; an interacting object touches
its person at a verb-specific position, a distractor object lies away from everyone. One HOI (``kick ball``) never
appears in the training file (zero-shot unseen). Not a SynthSitu replacement: just enough structure to run the
whole CL-HOI stage end to end.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

from mipd_kit.data.hico import write_hico_instances
from mipd_kit.data.records import HOIImage, HOIVocab

OBJECTS = ["ball", "cup", "person"]
VERBS = ["hold", "kick", "hug"]
#: hoi -> (object index, verb index)
CORR = [(0, 0, 0), (1, 0, 1), (2, 1, 0), (3, 2, 2)]
COLOURS = {0: (230, 40, 40), 1: (40, 90, 230), 2: (255, 255, 255)}
PROMPTS = ["a photo of a person holding a ball", "a photo of a person kicking a ball",
           "a photo of a person holding a cup", "a photo of a person hugging a person"]
UNSEEN = [1]


def _image(rng: random.Random, hois: list[int], size: int = 48) -> tuple[Image.Image, list, list, list]:
    im = Image.new("RGB", (size, size), tuple(rng.randint(0, 50) for _ in range(3)))
    d = ImageDraw.Draw(im)
    bh, bo, lab = [], [], []
    x = rng.randint(4, 12)
    for k in hois:
        y = rng.randint(6, 14)
        h = (x, y, x + 5, y + 22)
        d.rectangle(h, fill=(255, 255, 255))
        obj, verb = CORR[k][1], CORR[k][2]
        if verb == 1:  # kick: object at the feet
            o = (x + 5, y + 18, x + 11, y + 24)
        elif verb == 2:  # hug: another person beside
            o = (x + 6, y, x + 11, y + 22)
        else:  # hold: object at hand height
            o = (x + 5, y + 8, x + 11, y + 14)
        d.rectangle(o, fill=COLOURS[obj])
        bh.append([float(v) for v in h])
        bo.append([float(v) for v in o])
        lab.append(k)
        x += 18
    # a distractor object far from everyone (not annotated: no interaction)
    dx = rng.randint(36, 40)
    d.rectangle((dx, 38, dx + 5, 43), fill=COLOURS[rng.choice([0, 1])])
    return im, bh, bo, lab


def write_tiny_hoi_world(root: Path, n_train: int = 24, n_test: int = 12, seed: int = 0, n_pretrain: int = 24) -> Path:
    """Write the world into ``root`` and return it (with ``pretrain/captions.jsonl`` over ``n_pretrain`` separate
    images, the corpus the embedded captioner learns to describe from)."""
    rng = random.Random(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    vocab = HOIVocab(list(OBJECTS), list(VERBS), list(CORR), rare=[3], non_rare=[0, 1, 2])
    for split, n in (("train", n_train), ("test", n_test)):
        ims = []
        for i in range(n):
            pool = [0, 2, 3] if split == "train" else [0, 1, 2, 3]
            hois = [rng.choice(pool) for _ in range(1 if i % 3 else 2)]
            if split == "test" and i == 0:
                hois = [1]
            im, bh, bo, lab = _image(rng, hois)
            name = f"hoi_{split}_{i:04d}.png"
            im.save(root / "images" / name)
            ims.append(HOIImage(name, 48, 48, bh, bo, lab, [CORR[k][1] for k in lab], [CORR[k][2] for k in lab]))
        if split == "test":  # one image without any pair
            name = "hoi_test_empty.png"
            Image.new("RGB", (48, 48)).save(root / "images" / name)
            ims.append(HOIImage(name, 48, 48, [], [], [], [], []))
        write_hico_instances(root / f"hoi_{split}.json", ims, vocab)
    (root / "pretrain" / "images").mkdir(parents=True, exist_ok=True)
    lines = []  # a tiny pretraining caption corpus (separate images) for the embedded captioner
    for i in range(n_pretrain):
        hois = [rng.choice([0, 1, 2, 3])]
        im, _, _, _ = _image(rng, hois)
        name = f"pretrain/images/p_{i:04d}.png"
        im.save(root / name)
        lines.append(json.dumps({"image": name, "caption": PROMPTS[hois[0]].replace("a photo of ", "")}))
    (root / "pretrain" / "captions.jsonl").write_text("\n".join(lines) + "\n")
    (root / "hoi_prompts.json").write_text(json.dumps(PROMPTS))
    (root / "hoi_zero_shot.json").write_text(json.dumps({"unseen_composition": UNSEEN}))
    return root


def tiny_pair_data(tmp_path: Path, **cfg_kw):
    """A CL-HOI config (tiny teacher, one seed, one epoch, one thread) and the label-free training ``PairData`` of a
    freshly written tiny HOI world (for the device tests)."""
    from mipd_kit.hoi.features import encode_texts
    from mipd_kit.hoi.config import CLHOIConfig
    from mipd_kit.hoi.prepare import make_proposals, pair_data_for
    from mipd_kit.hoi.world import load_hoi_world
    from mipd_kit.teachers.tiny import TinyRandomTeacher

    world = write_tiny_hoi_world(tmp_path / "hoi")
    kw = dict(world_dir=str(world), run_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "c"), teacher="tiny",
              seeds=(0,), epochs=1, threads=1)
    kw.update(cfg_kw)
    cfg = CLHOIConfig.smoke(**kw)
    w = load_hoi_world(world)
    teacher = TinyRandomTeacher(seed=0)
    props, _ = make_proposals(cfg, w.train, w.vocab, "train", 0)
    return cfg, pair_data_for(teacher, w, props, encode_texts(teacher, w.prompts, None), 10.0, cfg, "t")
