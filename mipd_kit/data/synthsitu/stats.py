"""Statistics of a SynthSitu world (the tables notebooks/00_data.ipynb shows).

Pure functions over the world folder returning pandas tables. The contact sheets (drawings) live one layer up, in
:mod:`mipd_kit.viz.world`, which also re-exports these tables.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from mipd_kit.data.records import Situation


def load_split(world_dir: str | Path, split: str) -> dict[str, Situation]:
    """The situations of one split file of the world (``train``, ``dev``, ``test``, ``unlabeled_gt``)."""
    from mipd_kit.data.swig import load_situations
    return load_situations(Path(world_dir) / f"{split}.json")


def split_table(world_dir: str | Path) -> pd.DataFrame:
    """One row per verb: kind (design), ov split (from ov_split.json), images per split, primitives."""
    wd = Path(world_dir)
    meta = json.loads((wd / "meta.json").read_text())
    from mipd_kit.data.splits import OvSplit
    ov = OvSplit.load(wd / "ov_split.json")
    counts = {s: Counter(x.verb for x in load_split(wd, s).values()) for s in ("train", "dev", "test")}
    unl = Counter(x.verb for x in load_split(wd, "unlabeled_gt").values())
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
    sits = load_split(world_dir, split)
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
    c = Counter(s.verb for s in load_split(world_dir, split).values())
    return pd.Series({v: c[v] for v in meta["verbs"]}).sort_values(ascending=False)


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
