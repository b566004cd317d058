"""Statistics and contact sheets of a SynthSitu world (what notebooks/00_data.ipynb shows).

Pure functions over the world folder: tables are pandas DataFrames, sheets are PIL images drawn with the shared
``mipd_kit.viz.draw`` code.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from PIL import Image

from mipd_kit.data.records import Situation


def _load(world_dir: str | Path, split: str) -> dict[str, Situation]:
    from mipd_kit.data.swig import load_situations
    return load_situations(Path(world_dir) / f"{split}.json")


def split_table(world_dir: str | Path) -> pd.DataFrame:
    """One row per verb: kind (design), ov split (from ov_split.json), images per split, primitives."""
    wd = Path(world_dir)
    meta = json.loads((wd / "meta.json").read_text())
    from mipd_kit.data.splits import OvSplit
    ov = OvSplit.load(wd / "ov_split.json")
    counts = {s: Counter(x.verb for x in _load(wd, s).values()) for s in ("train", "dev", "test")}
    unl = Counter(x.verb for x in _load(wd, "unlabeled_gt").values())
    rows = []
    for v, m in meta["verbs"].items():
        p = m["primitives"]
        rows.append({"verb": v, "kind": m["kind"], "ov_split": ov.of(v), "train": counts["train"][v],
                     "dev": counts["dev"][v], "test": counts["test"][v], "unlabeled": unl[v], "pose": p["pose"],
                     "relation": p["relation"], "motion": p["motion"], "object_kind": p["object_kind"],
                     "roles": len(m["roles"]) - 1})
    order = {"seen": 0, "rare": 1, "unseen_compositional": 2, "unseen_novel": 3}
    return pd.DataFrame(rows).sort_values(["kind", "verb"], key=lambda s: s.map(order) if s.name == "kind" else s)


def summary_table(world_dir: str | Path) -> pd.DataFrame:
    """Seen / rare / unseen summary: verbs and images per split for each kind."""
    t = split_table(world_dir)
    g = t.groupby("kind", sort=False).agg(verbs=("verb", "count"), train=("train", "sum"), dev=("dev", "sum"),
                                          test=("test", "sum"), unlabeled=("unlabeled", "sum"),
                                          max_train_per_verb=("train", "max"), min_train_per_verb=("train", "min"))
    return g.reset_index()


def frame_statistics(world_dir: str | Path, split: str = "train") -> dict[str, pd.DataFrame]:
    """Roles per frame, box sizes per role (relative area), and annotator agreement.

    Agreement: per role, the fraction of images where the 3 annotators use the same noun id (``exact``) and where
    they name the same concept up to synonyms (``concept``); disagreement beyond synonyms is annotator error.
    """
    from mipd_kit.data.synthsitu.world import SYNONYM_OF
    sits = _load(world_dir, split)
    roles_per_frame = Counter(len(s.frames[0]) - 1 for s in sits.values())
    box_rows, agree = [], {}
    for s in sits.values():
        for r, b in s.boxes.items():
            if b is not None:
                box_rows.append({"role": r, "rel_area": (b[2] - b[0]) * (b[3] - b[1]) / (s.width * s.height),
                                 "rel_width": (b[2] - b[0]) / s.width, "rel_height": (b[3] - b[1]) / s.height})
            nouns = [f[r] for f in s.frames]
            a = agree.setdefault(r, [0, 0, 0, 0])
            a[0] += 1
            a[1] += len(set(nouns)) == 1
            a[2] += len({SYNONYM_OF.get(n, n) for n in nouns}) == 1
            a[3] += nouns[0] == ""
    boxes = pd.DataFrame(box_rows)
    box_stats = boxes.groupby("role")["rel_area"].describe()[["count", "mean", "25%", "50%", "75%"]] if len(boxes) else boxes
    agreement = pd.DataFrame([{"role": r, "roles": a[0], "exact": 100 * a[1] / a[0], "concept": 100 * a[2] / a[0],
                               "empty_noun": 100 * a[3] / a[0]} for r, a in sorted(agree.items())])
    rpf = pd.DataFrame([{"roles_plus_place": k, "images": v} for k, v in sorted(roles_per_frame.items())])
    return {"roles_per_frame": rpf, "box_sizes": box_stats, "agreement": agreement, "boxes": boxes}


def images_per_verb(world_dir: str | Path, split: str = "train") -> pd.Series:
    """Number of images per verb in a split (0 for verbs without images), sorted descending."""
    meta = json.loads((Path(world_dir) / "meta.json").read_text())
    c = Counter(s.verb for s in _load(world_dir, split).values())
    return pd.Series({v: c[v] for v in meta["verbs"]}).sort_values(ascending=False)


def verb_sheet(world_dir: str | Path, split: str, verbs: list[str], per_verb: int = 3, upscale: int = 2,
               seed: int = 0) -> Optional[Image.Image]:
    """Contact sheet: one row per verb (``per_verb`` examples), boxes and role/noun labels drawn (annotator 1)."""
    from mipd_kit.data.swig import load_frame_space
    from mipd_kit.viz.draw import contact_sheet, draw_frame, frame_from_situation
    wd = Path(world_dir)
    space = load_frame_space(wd / "imsitu_space.json")
    sits = _load(wd, split)
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
    from mipd_kit.viz.draw import contact_sheet, draw_hoi_pairs
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
    from mipd_kit.viz.draw import contact_sheet
    wd = Path(world_dir)
    caps = [json.loads(line) for line in (wd / "pretrain" / "captions.jsonl").read_text().splitlines()[:n]]
    sheet = contact_sheet([wd / c["image"] for c in caps], ncols, [c["caption"][:60] for c in caps], cell=256)
    return sheet, pd.DataFrame(caps)


def pretrain_statistics(world_dir: str | Path) -> dict[str, float]:
    """Caption corpus numbers: pairs, noisy rate, distinct captions, verbs covered, mean length in words."""
    caps = [json.loads(line) for line in (Path(world_dir) / "pretrain" / "captions.jsonl").read_text().splitlines()]
    return {"pairs": len(caps), "noisy_pct": 100 * float(np.mean([c["noisy"] for c in caps])),
            "distinct_captions": len({c["caption"] for c in caps}),
            "verbs_covered": len({v for c in caps for v in c["verbs"]}),
            "mean_words": float(np.mean([len(c["caption"].split()) for c in caps]))}


def hoi_statistics(world_dir: str | Path) -> pd.DataFrame:
    """Per HOI class: training / test instances, rare flag, zero-shot flag."""
    from mipd_kit.data.hico import load_hico_instances
    wd = Path(world_dir)
    tr, voc = load_hico_instances(wd / "hoi_train.json")
    te, _ = load_hico_instances(wd / "hoi_test.json")
    zs = set(json.loads((wd / "hoi_zero_shot.json").read_text())["unseen_composition"])
    ctr = Counter(h for im in tr for h in im.hoi)
    cte = Counter(h for im in te for h in im.hoi)
    rare = set(voc.rare)
    return pd.DataFrame([{"hoi": h, "object": voc.objects[o], "verb": voc.verbs[v], "train": ctr[h], "test": cte[h],
                          "rare": h in rare, "zero_shot": h in zs} for h, o, v in voc.correspondence])
