"""A SynthSitu world at a glance: its statistics tables and contact sheets (what notebooks/00_data.ipynb shows).

The tables are the pure functions of :mod:`mipd_kit.data.synthsitu.stats`, re-exported here so that one import
serves the notebook; the sheets are PIL images drawn with :mod:`mipd_kit.viz.draw`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from PIL import Image

from mipd_kit.data.records import Situation
from mipd_kit.data.synthsitu.stats import (frame_statistics, hoi_statistics, images_per_verb,  # noqa: F401
                                           load_split, pretrain_statistics, split_table, summary_table)
from mipd_kit.viz.draw import contact_sheet, draw_frame, draw_hoi_pairs, frame_from_situation


def verb_sheet(world_dir: str | Path, split: str, verbs: list[str], per_verb: int = 3, upscale: int = 2,
               seed: int = 0) -> Optional[Image.Image]:
    """Contact sheet: one row per verb (``per_verb`` examples), boxes and role/noun labels drawn (annotator 1)."""
    from mipd_kit.data.swig import load_frame_space
    wd = Path(world_dir)
    space = load_frame_space(wd / "imsitu_space.json")
    sits = load_split(wd, split)
    by_verb: dict[str, list[Situation]] = {}
    for s in sits.values():
        by_verb.setdefault(s.verb, []).append(s)
    rng = np.random.default_rng(seed)
    tiles, labels = [], []
    for v in verbs:
        have = sorted(by_verb.get(v, []), key=lambda s: s.image)
        pick = [have[i] for i in sorted(rng.choice(len(have), size=min(per_verb, len(have)), replace=False))] if have else []
        for k in range(per_verb):
            if k < len(pick):
                s = pick[k]
                tiles.append(draw_frame(wd / "images" / s.image, frame_from_situation(s.boxes, s.frames[0]), space,
                                        title=f"{s.verb}  ({s.image})", upscale=upscale))
                labels.append(f"{s.verb}: " + ", ".join(f"{r}={n or '-'}" for r, n in s.frames[0].items()))
            else:
                tiles.append(Image.new("RGB", (128 * upscale, 128 * upscale), (235, 235, 235)))
                labels.append(f"{v}: no {split} image")
    if not tiles:
        return None
    return contact_sheet(tiles, per_verb, labels)


def hoi_sheet(world_dir: str | Path, split: str = "hoi_train", n: int = 8, ncols: int = 4, upscale: int = 3) -> Image.Image:
    """Contact sheet of HOI images with every annotated pair drawn and labelled ``verb object``."""
    from mipd_kit.data.hico import load_hico_instances
    wd = Path(world_dir)
    ims, voc = load_hico_instances(wd / f"{split}.json")
    tiles, labels = [], []
    for im in ims[:n]:
        pairs = [{"box_h": bh, "box_o": bo, "label": f"{voc.verbs[v]} {voc.objects[o]}"}
                 for bh, bo, v, o in zip(im.boxes_h, im.boxes_o, im.verb, im.object)]
        tiles.append(draw_hoi_pairs(wd / "images" / im.filename, pairs, upscale=upscale))
        labels.append(im.filename)
    return contact_sheet(tiles, ncols, labels)


def pretrain_sheet(world_dir: str | Path, n: int = 12, ncols: int = 4) -> tuple[Image.Image, pd.DataFrame]:
    """Pretraining images with their captions, and a table of the first ``n`` captions."""
    wd = Path(world_dir)
    caps = [json.loads(line) for line in (wd / "pretrain" / "captions.jsonl").read_text().splitlines()[:n]]
    sheet = contact_sheet([wd / c["image"] for c in caps], ncols, [c["caption"][:60] for c in caps], cell=256)
    return sheet, pd.DataFrame(caps)
