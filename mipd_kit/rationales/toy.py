"""A tiny hand-written world for tests, notebooks and benchmarks of the JRG when no SynthSitu world exists.

Three verbs (riding, feeding, carrying), a dozen nouns with synonyms, ``n_per_verb`` annotated images per verb
(3 annotators who disagree through synonyms) and teacher evidence in the ``teacher_evidence.json`` format in which
the teacher is sometimes confused (its top verb wrong) and sometimes misses the annotators' noun.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Optional

from PIL import Image

SPACE = {
    "nouns": {
        "man": {"gloss": ["man", "adult male", "guy"], "def": "an adult male person"},
        "woman": {"gloss": ["woman", "lady"], "def": "an adult female person"},
        "person": {"gloss": ["person", "human"], "def": "a human being"},
        "horse": {"gloss": ["horse", "pony"], "def": "a large hoofed animal"},
        "bicycle": {"gloss": ["bicycle", "bike"], "def": "a two-wheeled vehicle"},
        "dog": {"gloss": ["dog", "puppy"], "def": "a domestic canine"},
        "bread": {"gloss": ["bread", "loaf"], "def": "baked food"},
        "box": {"gloss": ["box", "crate"], "def": "a container"},
        "field": {"gloss": ["field", "meadow"], "def": "open land"},
        "street": {"gloss": ["street", "road"], "def": "a public road"},
        "kitchen": {"gloss": ["kitchen"], "def": "a room for cooking"},
    },
    "verbs": {
        "riding": {"framenet": "Ride_vehicle", "abstract": "AGENT rides VEHICLE at PLACE",
                   "def": "sit on and control the movement of", "order": ["agent", "vehicle", "place"],
                   "roles": {"agent": {"framenet": "", "def": "the entity doing the riding"},
                             "vehicle": {"framenet": "", "def": "the entity ridden"},
                             "place": {"framenet": "", "def": "where the riding happens"}}},
        "feeding": {"framenet": "Feeding", "abstract": "AGENT feeds FOOD to EATER at PLACE",
                    "def": "give food to", "order": ["agent", "food", "eater", "place"],
                    "roles": {"agent": {"framenet": "", "def": "the entity doing the feeding"},
                              "food": {"framenet": "", "def": "the food given"},
                              "eater": {"framenet": "", "def": "the entity being fed"},
                              "place": {"framenet": "", "def": "where the feeding happens"}}},
        "carrying": {"framenet": "Bringing", "abstract": "AGENT carries ITEM at PLACE",
                     "def": "hold and move something", "order": ["agent", "item", "place"],
                     "roles": {"agent": {"framenet": "", "def": "the entity doing the carrying"},
                               "item": {"framenet": "", "def": "the entity carried"},
                               "place": {"framenet": "", "def": "where the carrying happens"}}},
    },
}

_FILLS = {
    "riding": [{"agent": "man", "vehicle": "horse", "place": "field"},
               {"agent": "woman", "vehicle": "bicycle", "place": "street"}],
    "feeding": [{"agent": "woman", "food": "bread", "eater": "dog", "place": "kitchen"},
                {"agent": "man", "food": "bread", "eater": "horse", "place": "field"}],
    "carrying": [{"agent": "man", "item": "box", "place": "street"},
                 {"agent": "woman", "item": "dog", "place": ""}],
}
_ALT = {"man": "person", "woman": "person", "person": "man"}


def write_toy_world(world_dir: str | os.PathLike, run_dir: Optional[str | os.PathLike] = None,
                    n_per_verb: int = 2, seed: int = 0) -> dict[str, dict]:
    """Write ``imsitu_space.json``, ``train.json``, ``images/`` (and ``run_dir/teacher_evidence.json``).

    Returns the evidence dict.
    """
    rng = random.Random(seed)
    w = Path(world_dir)
    (w / "images").mkdir(parents=True, exist_ok=True)
    (w / "imsitu_space.json").write_text(json.dumps(SPACE))
    verbs = list(SPACE["verbs"])
    train, evidence = {}, {}
    for vi, verb in enumerate(verbs):
        for k in range(n_per_verb):
            fill = _FILLS[verb][k % len(_FILLS[verb])]
            img = f"{verb}_{k}.png"
            Image.new("RGB", (32, 32), (40 * vi, 30 * k % 255, 90)).save(w / "images" / img)
            frames = [dict(fill), {r: _ALT.get(n, n) for r, n in fill.items()}, dict(fill)]
            bb = {r: ([2 + k % 12, 3, 20 + k % 12, 30] if r != "place" and n else [-1, -1, -1, -1]) for r, n in fill.items()}
            train[img] = {"verb": verb, "height": 32, "width": 32, "bb": bb, "frames": frames}
            others = [v for v in verbs if v != verb]
            confused = (vi + k) % 3 == 2  # the teacher's top verb is wrong for about a third of the images
            top = ([others[0], verb, others[1]] if confused else [verb, *others])
            scores = sorted((round(rng.uniform(0.2, 0.9), 3) for _ in top), reverse=True)
            role_nouns = {}
            for r, n in fill.items():
                wrong = [x for x in SPACE["nouns"] if x != n][rng.randrange(len(SPACE["nouns"]) - 1)]
                cands = [n, wrong] if rng.random() < 0.8 else [wrong, n]
                role_nouns[r] = [[c, round(0.6 - 0.2 * j, 3)] for j, c in enumerate(cands)]
            evidence[img] = {"top_verbs": [[v, s] for v, s in zip(top, scores)], "role_nouns": role_nouns}
    (w / "train.json").write_text(json.dumps(train))
    if run_dir is not None:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        (Path(run_dir) / "teacher_evidence.json").write_text(json.dumps(evidence))
    return evidence
