"""A planted-signal world: unseen verbs that only rationale words can name, for the pipeline's positive-control test.

Nine verbs, each a pair of visual primitives: the colour of an "item" square and where it is drawn against a white
"person" bar (above, below). Each verb's definition says exactly that ("a red item below the person"), its abstract
names the same two primitives ("AGENT red below"), its name is an arbitrary word. Six verbs are seen (red, green,
blue, above or below). Three are unseen: a yellow, a purple and a cyan item, all above the person. No labelled
training image shows them or those colours, so no label can teach what "yellow" looks like (labels do teach the
places, and a verb table of primitive words lets a student compose primitives it has seen apart: hence novel
colours, and one place for all three, so that a student that only knows "an unfamiliar colour above" is at chance,
33%, among them). The unlabeled pool shows every verb.

The oracle rationales of every training and pool image say what the image shows in the same primitive words. With a
teacher whose image features know nothing (``mipd_kit.teachers.tiny.TinyRandomTeacher``: a random CNN, hashed
bag-of-words texts), the unseen verbs can be recognised only through those words, carried from the rationale text to
the distillation target, from the target into the student, and from the student's feature to the verb table. So
``mipd-oracle-unlabeled`` must name unseen test images that ``mipd-feat-unlabeled`` cannot, and cutting any one of
those links must take that away (``tests/test_planted_signal.py``). A wiring check with a known answer, never a
result to report.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from ..data.records import FrameSpace, NounDef, Situation, VerbDef

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 40), "blue": (40, 40, 220), "yellow": (230, 210, 30),
           "purple": (150, 40, 170), "cyan": (40, 210, 210)}
PLACES = ("above", "below")
#: (colour, place) -> verb name (arbitrary words: the name says nothing about the primitives)
VERBS = {("red", "above"): "lofting", ("red", "below"): "dunking", ("green", "above"): "hoisting",
         ("green", "below"): "sinking", ("blue", "above"): "raising", ("blue", "below"): "dropping",
         ("yellow", "above"): "heaving", ("purple", "above"): "vaulting", ("cyan", "above"): "tossing"}
#: the unseen verbs: an item of a colour no labelled training image shows (a novel primitive), all drawn above the
#: person, so that telling them apart takes the colour's word
UNSEEN = ("heaving", "vaulting", "tossing")
#: the StudentConfig fields (over ``StudentConfig.smoke``) that carry the planted words: the text anchor (3x the
#: target's length: the random teacher feature is noise here), cosine distillation x30, 100 epochs. Picked by looking
#: at this fixture's test images (a wiring check with a known answer: its numbers are never a result)
CARRYING_SETTINGS = dict(epochs=100, lr=3e-3, batch_size=16, select_on_dev=False, text_anchor=3.0,
                         distill_kind="cosine", w_scene=30.0)


def description(colour: str, place: str) -> str:
    """The primitive words of an image (and of its verb's definition)."""
    return f"a {colour} item {place} the person"


def write_planted_world(out: str | Path, n_train: int = 12, n_eval: int = 6, n_pool: int = 6, seed: int = 0,
                        size: int = 32) -> dict[str, Any]:
    """Write the world (SWiG layout: imsitu_space.json, train/dev/test.json, ov_split.json, unlabeled.json,
    unlabeled_gt.json, images/).

    Args:
        out: the world folder.
        n_train / n_eval / n_pool: images per verb in train (seen verbs only), in dev and test each, in the pool.

    Returns:
        ``{"collected": oracle rationales of the train and pool images (``mipd_kit.rationales.store.collect`` form),
        "space": the FrameSpace}``. A positive says the image's colour and place; its negative the other place.
    """
    from ..data.swig import write_frame_space, write_situations

    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    verbs = {v: VerbDef(v, f"AGENT {c} {p}", description(c, p), ("agent", "item"),
                        {"agent": "the doer", "item": "the thing"}) for (c, p), v in VERBS.items()}
    space = FrameSpace(verbs, {k: NounDef(k, (k,), f"a {k}") for k in ("person", "item")}, "planted")
    write_frame_space(out / "imsitu_space.json", space)

    def draw(name: str, colour: str, place: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
        im = Image.new("RGB", (size, size), (128, 128, 128))
        d = ImageDraw.Draw(im)
        ax, ay = rng.randint(2, size - 10), rng.randint(10, size - 20)
        person = (ax, ay, ax + 6, ay + 10)
        by = ay - 8 if place == "above" else ay + 12
        item = (ax, by, ax + 6, by + 6)
        d.rectangle(person, fill=(255, 255, 255))
        d.rectangle(item, fill=COLOURS[colour])
        im.save(out / "images" / name)
        return tuple(map(float, person)), tuple(map(float, item))

    splits: dict[str, dict[str, Situation]] = {"train": {}, "dev": {}, "test": {}, "pool": {}}
    collected: dict[str, Any] = {}
    for (c, p), v in VERBS.items():
        counts = {"train": 0 if v in UNSEEN else n_train, "dev": n_eval, "test": n_eval, "pool": n_pool}
        for split, n in counts.items():
            for k in range(n):
                name = f"{split}_{v}_{k}.png"
                person, item = draw(name, c, p)
                splits[split][name] = Situation(name, v, size, size, {"agent": person, "item": item},
                                                tuple({"agent": "person", "item": "item"} for _ in range(3)))
                if split in ("train", "pool"):
                    other = PLACES[1 - PLACES.index(p)]
                    collected[name] = {
                        "glimpse": {"positive": [description(c, p)], "negative": [description(c, other)]},
                        "gaze": {"agent": {"positive": ["the person"], "negative": ["a tree"]},
                                 "item": {"positive": [f"a {c} item"], "negative": ["a tree"]}}}
    for split in ("train", "dev", "test"):
        write_situations(out / f"{split}.json", splits[split])
    write_situations(out / "unlabeled_gt.json", splits["pool"])
    (out / "unlabeled.json").write_text(json.dumps({"images": sorted(splits["pool"])}))
    seen = [v for v in VERBS.values() if v not in UNSEEN]
    (out / "ov_split.json").write_text(json.dumps({"seen": seen, "rare": [], "unseen": list(UNSEEN),
                                                   "unseen_compositional": list(UNSEEN), "unseen_novel": [],
                                                   "rule": "planted-signal fixture", "counts": {}}))
    return {"collected": collected, "space": space}


def constant_rationales(collected: dict) -> dict:
    """The same rationales with every glimpse saying the same thing (the cut of the rationale content)."""
    return {k: {"glimpse": {"positive": ["an item and the person"], "negative": ["a tree"]}, "gaze": v["gaze"]}
            for k, v in collected.items()}
