"""Oracle rationales: what a perfect multimodal teacher would write, from a SynthSitu world's ground truth.

The positive control of the MIPD study (row ``mipd-oracle``): the rationale texts are written from what each training
image really shows (``rendered.jsonl``: the agent's pose, its relation to the object, the motion cue when drawn, the
objects of every role, the place, and a distractor's pose when one was drawn), in the words the pretraining captions
use for those primitives (``mipd_kit.data.synthsitu.world.POSE_PHRASES`` / ``RELATION_PHRASES`` /
``MOTION_PHRASES``), never the verb's name nor any word that names a verb (``captions.VERB_WORDS``). Negatives swap
one primitive (the pose, or the relation) for another, as a judge's hard negative would. So the content is right by
construction; if the student cannot carry it to unseen verbs, the pipeline is what fails, not the rationales.

``oracle_rationales`` is pure given the world folder and the seed (the phrase choices are drawn from a generator
seeded by the seed and the image name). The shuffled oracle (``mipd-oracle-shuffled``) is
``mipd_kit.rationales.controls.shuffle_positives`` of these records: the same texts on another image of the verb.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Mapping, Optional, Sequence

import numpy as np

from mipd_kit.data.records import DataError, Situation
from mipd_kit.rationales.store import Rationale

#: the backend key of oracle records
ORACLE_BACKEND = "oracle-v1"


def _verb_word_re() -> re.Pattern:
    from mipd_kit.data.synthsitu.captions import VERB_WORDS
    words = sorted({w for ws in VERB_WORDS.values() for w in ws}, key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b")


def _clean(phrases: Sequence[str], verb_words: re.Pattern) -> list[str]:
    """The phrases that name no verb (all of them if every one does)."""
    ok = [p for p in phrases if p and not verb_words.search(p)]
    return ok or [p for p in phrases if p] or [""]


def _rng(seed: int, image: str) -> np.random.Generator:
    h = int.from_bytes(hashlib.sha256(f"oracle:{seed}:{image}".encode()).digest()[:8], "big")
    return np.random.default_rng(h)


def _art(word: str) -> str:
    word = word.replace("_", " ")
    return ("an " if word[:1] in "aeiou" else "a ") + word


def oracle_texts(record: Mapping, roles: Sequence[str], seed: int = 0, image: str = "") -> dict:
    """The oracle's texts for one rendered image.

    Args:
        record: the image's ``rendered.jsonl`` record (``instances[0]`` is the situation; ``distractors``, ``place``).
        roles: the frame's roles in order (``agent`` first).
        seed / image: seed the phrase choices.

    Returns:
        ``{"glimpse": {"positive": [..], "negative": [..]}, "gaze": {role: {"positive": [..], "negative": [..]}}}``.
    """
    from mipd_kit.data.synthsitu.world import (CONCEPT_BY_NAME, MOTION_PHRASES, POSE_PHRASES, PLACE_BY_NAME,
                                               RELATION_PHRASES)
    vw = _verb_word_re()
    rng = _rng(seed, image)

    def pick(xs: Sequence[str]) -> str:
        xs = _clean(xs, vw)
        return xs[int(rng.integers(len(xs)))]

    inst = record["instances"][0]
    objects = dict(inst.get("objects", {}))
    agent = objects.get("agent", "person")
    main_role = next((r for r in roles[1:] if r in objects and r != "place"), None)
    obj = objects.get(main_role) if main_role else None
    place = record.get("place", "")
    at_place = ""
    if place in PLACE_BY_NAME:
        from mipd_kit.data.synthsitu.captions import PREPS
        at_place = f"{PREPS.get(place, 'at')} the {place}"
    motion = pick(MOTION_PHRASES.get(inst["motion"], ("",))) if inst.get("motion_drawn") else ""

    def scene(pose: str, rel: str, compact: bool = False) -> str:
        if compact and obj:  # "a man holding a box, crouching"
            s = f"{_art(agent)} {pick(RELATION_PHRASES[rel])} {_art(obj)}, {pick(POSE_PHRASES[pose])}"
            return ", ".join(x for x in (s, motion) if x)
        parts = [f"{_art(agent)} {pick(POSE_PHRASES[pose])}"]
        if obj:
            parts.append(f"{pick(RELATION_PHRASES[rel])} {_art(obj)}")
        s = ", ".join(parts)
        return " ".join(x for x in (s, at_place, motion) if x).strip()

    pose, rel = inst["pose"], inst["relation"]
    pos = [scene(pose, rel), scene(pose, rel, compact=True)]
    for d in record.get("distractors", []):
        if d.get("pose"):
            pos.append(f"nearby, {_art(d['concept'])} {pick(POSE_PHRASES[d['pose']])}")
    other_poses = [p for p in POSE_PHRASES if p != pose]
    other_rels = [r for r in RELATION_PHRASES if r != rel]
    neg = [scene(str(other_poses[int(rng.integers(len(other_poses)))]), rel)]
    if obj:
        neg.append(scene(pose, str(other_rels[int(rng.integers(len(other_rels)))])))
    gaze: dict[str, dict[str, list[str]]] = {}
    for r in roles:
        if r == "place" or r not in objects:
            continue
        c = objects[r]
        if r == "agent":
            p_txt = f"{_art(c)} {pick(POSE_PHRASES[pose])}"
            n_txt = f"{_art(c)} {pick(POSE_PHRASES[other_poses[int(rng.integers(len(other_poses)))]])}"
        else:
            kind = CONCEPT_BY_NAME[c].kind if c in CONCEPT_BY_NAME else ""
            if r == main_role:  # the object as the agent acts on it
                p_txt = f"{_art(agent)} {pick(RELATION_PHRASES[rel])} {_art(c)}"
            else:
                p_txt = f"{_art(c)} with {_art(agent)}"
            others = sorted(n for n, k in ((n, x.kind) for n, x in CONCEPT_BY_NAME.items()) if k == kind and n != c)
            swap = others[int(rng.integers(len(others)))] if others else "nothing"
            n_txt = p_txt[::-1].replace(_art(c)[::-1], _art(swap)[::-1], 1)[::-1] if r == main_role else \
                p_txt.replace(_art(c), _art(swap), 1)
        gaze[r] = {"positive": [p_txt], "negative": [n_txt]}
    return {"glimpse": {"positive": pos, "negative": neg}, "gaze": gaze}


def oracle_rationales(world_dir: str | os.PathLike, situations: Mapping[str, Situation],
                      role_order: Optional[Mapping[str, Sequence[str]]] = None, seed: int = 0) -> list[Rationale]:
    """Oracle records (positives scored 10, negatives 0, round 0, backend :data:`ORACLE_BACKEND`) for every image of
    ``situations`` (a GSR split of the world; ``role_order``: verb -> its roles, default the situation's frame keys).

    Raises:
        DataError: the world has no ``rendered.jsonl`` or lacks a record of an image (file and image named).
    """
    from mipd_kit.data.synthsitu.generate import read_rendered
    rend = read_rendered(world_dir)
    out: list[Rationale] = []
    for img in sorted(situations):
        rec = rend.get(f"images/{img}")
        if rec is None:
            raise DataError(f"{world_dir}/rendered.jsonl: no record of image {img!r}")
        s = situations[img]
        roles = list(role_order[s.verb]) if role_order and s.verb in role_order else list(s.frames[0]) if s.frames else []
        if "agent" in roles:
            roles = ["agent", *[r for r in roles if r != "agent"]]
        t = oracle_texts(rec, roles, seed=seed, image=img)
        for pol in ("positive", "negative"):
            for i, text in enumerate(t["glimpse"][pol]):
                out.append(Rationale(img, "glimpse", None, pol, text, 0, 10.0 if pol == "positive" else 0.0,
                                     ORACLE_BACKEND, index=i))
        for role, g in t["gaze"].items():
            for pol in ("positive", "negative"):
                for i, text in enumerate(g[pol]):
                    out.append(Rationale(img, "gaze", role, pol, text, 0, 10.0 if pol == "positive" else 0.0,
                                         ORACLE_BACKEND, index=i))
    return out
