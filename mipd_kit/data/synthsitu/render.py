"""PIL drawing of SynthSitu scenes: stick-figure agents in poses, parametric objects, places, motion cues, nuisances.

A scene is built in two phases so that every role's box is exact:

1. **layout** (:func:`layout_group`) places the agent (joints of a pose template) and the objects of one verb
   instance relative to each other, returning :class:`Entity` records with boxes and motion-cue records;
2. **drawing** (:func:`draw_scene`) paints background, clutter, distractors, the group(s), cues and occluders.

All randomness comes from a ``numpy.random.Generator`` passed in, so an image is a pure function of its seed.
Boxes are ``(x1, y1, x2, y2)`` floats in pixels of the output image (amodal: an occluded entity keeps its full box).

The renderer stays one file (about 1,200 lines, all of it the layout and drawing of one renderer): both phases
share the pose templates, the entity geometry and one generator whose draw order fixes every pixel of an image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw

from mipd_kit.data.synthsitu.world import CONCEPT_BY_NAME, CONCEPTS, PEOPLE, PLACE_BY_NAME, VERBS, Concept, Verb

# --------------------------------------------------------------------------------------------------- poses
# Joints in units of the figure's height, x forward (facing right), y up from the ground.
_STAND_LEGS = {"knee_f": (0.04, 0.24), "foot_f": (0.07, 0.0), "knee_b": (-0.04, 0.24), "foot_b": (-0.07, 0.0)}
_UPRIGHT = {"head": (0.0, 0.91), "neck": (0.0, 0.81), "hip": (0.0, 0.48)}
POSE_JOINTS: dict[str, dict[str, tuple[float, float]]] = {
    "stand": {**_UPRIGHT, **_STAND_LEGS, "elbow_f": (0.05, 0.65), "hand_f": (0.07, 0.5),
              "elbow_b": (-0.05, 0.65), "hand_b": (-0.07, 0.5)},
    "stride": {**_UPRIGHT, "knee_f": (0.1, 0.25), "foot_f": (0.2, 0.0), "knee_b": (-0.08, 0.24), "foot_b": (-0.2, 0.0),
               "elbow_f": (0.08, 0.66), "hand_f": (0.15, 0.54), "elbow_b": (-0.08, 0.66), "hand_b": (-0.14, 0.54)},
    "sit": {"head": (0.02, 0.74), "neck": (0.02, 0.64), "hip": (0.0, 0.3), "knee_f": (0.2, 0.32), "foot_f": (0.21, 0.02),
            "knee_b": (0.17, 0.3), "foot_b": (0.16, 0.0), "elbow_f": (0.1, 0.49), "hand_f": (0.2, 0.47),
            "elbow_b": (0.08, 0.47), "hand_b": (0.18, 0.44)},
    "crouch": {"head": (0.18, 0.69), "neck": (0.12, 0.6), "hip": (-0.05, 0.3), "knee_f": (0.15, 0.26), "foot_f": (0.08, 0.0),
               "knee_b": (0.1, 0.2), "foot_b": (-0.06, 0.0), "elbow_f": (0.2, 0.46), "hand_f": (0.3, 0.36),
               "elbow_b": (0.18, 0.44), "hand_b": (0.28, 0.33)},
    "arms_up": {**_UPRIGHT, **_STAND_LEGS, "elbow_f": (0.08, 0.98), "hand_f": (0.1, 1.13),
                "elbow_b": (-0.08, 0.98), "hand_b": (-0.1, 1.13)},
    "arms_forward": {**_UPRIGHT, **_STAND_LEGS, "elbow_f": (0.14, 0.77), "hand_f": (0.3, 0.75),
                     "elbow_b": (0.12, 0.73), "hand_b": (0.28, 0.7)},
    "one_arm_up": {**_UPRIGHT, "knee_f": (0.08, 0.24), "foot_f": (0.14, 0.0), "knee_b": (-0.06, 0.24), "foot_b": (-0.12, 0.0),
                   "elbow_f": (0.13, 0.72), "hand_f": (0.24, 0.77), "elbow_b": (-0.12, 0.93), "hand_b": (-0.06, 1.1)},
    "lean_forward": {"head": (0.33, 0.79), "neck": (0.25, 0.72), "hip": (0.0, 0.46), "knee_f": (0.1, 0.24), "foot_f": (0.14, 0.0),
                     "knee_b": (-0.12, 0.22), "foot_b": (-0.25, 0.0), "elbow_f": (0.38, 0.66), "hand_f": (0.5, 0.6),
                     "elbow_b": (0.36, 0.62), "hand_b": (0.48, 0.56)},
    "lean_back": {"head": (-0.24, 0.82), "neck": (-0.18, 0.74), "hip": (0.0, 0.44), "knee_f": (0.16, 0.24), "foot_f": (0.26, 0.0),
                  "knee_b": (0.06, 0.22), "foot_b": (0.1, 0.0), "elbow_f": (-0.02, 0.68), "hand_f": (0.15, 0.62),
                  "elbow_b": (-0.04, 0.64), "hand_b": (0.13, 0.59)},
    "kick": {"head": (-0.04, 0.93), "neck": (-0.03, 0.83), "hip": (0.0, 0.5), "knee_b": (-0.02, 0.25), "foot_b": (-0.04, 0.0),
             "knee_f": (0.18, 0.42), "foot_f": (0.36, 0.3), "elbow_f": (0.1, 0.7), "hand_f": (0.2, 0.74),
             "elbow_b": (-0.12, 0.7), "hand_b": (-0.22, 0.74)},
    "jump": {"head": (0.04, 0.88), "neck": (0.03, 0.78), "hip": (0.0, 0.45), "knee_f": (0.15, 0.35), "foot_f": (0.05, 0.12),
             "knee_b": (0.1, 0.3), "foot_b": (-0.03, 0.1), "elbow_f": (0.12, 0.9), "hand_f": (0.16, 1.02),
             "elbow_b": (-0.12, 0.9), "hand_b": (-0.16, 1.02)},
    "lie": {"head": (-0.42, 0.08), "neck": (-0.32, 0.06), "hip": (0.02, 0.05), "knee_f": (0.27, 0.06), "foot_f": (0.5, 0.04),
            "knee_b": (0.27, 0.03), "foot_b": (0.5, 0.01), "elbow_f": (-0.16, 0.03), "hand_f": (-0.02, 0.02),
            "elbow_b": (-0.18, 0.07), "hand_b": (-0.04, 0.08)},
    "kneel": {"head": (0.03, 0.77), "neck": (0.02, 0.67), "hip": (0.0, 0.35), "knee_f": (0.18, 0.22), "foot_f": (0.18, 0.0),
              "knee_b": (-0.05, 0.02), "foot_b": (-0.25, 0.01), "elbow_f": (0.12, 0.5), "hand_f": (0.24, 0.36),
              "elbow_b": (0.1, 0.48), "hand_b": (0.22, 0.33)},
}
HEAD_R = 0.085
LIMBS = (("neck", "hip"), ("neck", "elbow_f"), ("elbow_f", "hand_f"), ("neck", "elbow_b"), ("elbow_b", "hand_b"),
         ("hip", "knee_f"), ("knee_f", "foot_f"), ("hip", "knee_b"), ("knee_b", "foot_b"))
SKIN = ((240, 200, 160), (200, 150, 110), (150, 100, 70), (100, 70, 50), (250, 220, 190))
SHIRTS = ((40, 70, 170), (190, 40, 60), (40, 140, 70), (230, 170, 30), (120, 50, 150), (30, 160, 170),
          (230, 120, 20), (240, 240, 240), (50, 50, 50))


@dataclass
class Entity:
    """One drawn thing: a person (with joints) or an object (a concept in a box)."""

    concept: Concept
    box: list[float]
    facing: int = 1
    joints: Optional[dict[str, list[float]]] = None
    colour: tuple[int, int, int] = (0, 0, 0)
    colour2: tuple[int, int, int] = (0, 0, 0)
    skin: tuple[int, int, int] = (240, 200, 160)
    role: str = ""
    z: int = 0
    tilt: float = 0.0
    height: float = 0.0  # figure height in pixels (people)
    pose: str = ""  # pose template of a person ("" for objects)

    def shift(self, dx: float, dy: float) -> None:
        self.box = [self.box[0] + dx, self.box[1] + dy, self.box[2] + dx, self.box[3] + dy]
        if self.joints:
            self.joints = {k: [x + dx, y + dy] for k, (x, y) in self.joints.items()}

    def scale(self, s: float, cx: float, cy: float) -> None:
        self.box = [cx + (self.box[0] - cx) * s, cy + (self.box[1] - cy) * s, cx + (self.box[2] - cx) * s,
                    cy + (self.box[3] - cy) * s]
        if self.joints:
            self.joints = {k: [cx + (x - cx) * s, cy + (y - cy) * s] for k, (x, y) in self.joints.items()}
        self.height *= s


@dataclass
class Cue:
    """A motion cue or a connecting line: ``kind`` in speed_lines/arrow_up/arrow_down/arc/dust/sparks/steam/rope."""

    kind: str
    pts: list[list[float]]
    size: float
    facing: int = 1


@dataclass
class Group:
    """One verb instance: its entities by role plus cues and props (unannotated stools, water)."""

    entities: list[Entity] = field(default_factory=list)
    cues: list[Cue] = field(default_factory=list)
    props: list[Entity] = field(default_factory=list)

    def all(self) -> list[Entity]:
        return self.props + self.entities

    def bbox(self) -> list[float]:
        xs = [e.box[0] for e in self.all()] + [e.box[2] for e in self.all()]
        ys = [e.box[1] for e in self.all()] + [e.box[3] for e in self.all()]
        for c in self.cues:
            xs += [p[0] for p in c.pts]
            ys += [p[1] for p in c.pts]
        return [min(xs), min(ys), max(xs), max(ys)]

    def shift(self, dx: float, dy: float) -> None:
        for e in self.all():
            e.shift(dx, dy)
        for c in self.cues:
            c.pts = [[x + dx, y + dy] for x, y in c.pts]

    def scale(self, s: float, cx: float, cy: float) -> None:
        for e in self.all():
            e.scale(s, cx, cy)
        for c in self.cues:
            c.pts = [[cx + (x - cx) * s, cy + (y - cy) * s] for x, y in c.pts]
            c.size *= s


def _jitter_colour(rng: np.random.Generator, c: tuple[int, int, int], amount: float = 30) -> tuple[int, int, int]:
    """Brightness jitter (x0.7-1.3) plus a smaller per-channel shift of std ``amount / 2``: colour varies a lot
    but a brown horse does not turn green."""
    b = rng.uniform(0.7, 1.3)
    d = rng.normal(0, amount * 0.5, 3)
    return tuple(int(np.clip(v * b + e, 0, 255)) for v, e in zip(c, d))


def make_person(concept: Concept, pose: str, hip_x: float, ground: float, height: float, facing: int,
                rng: np.random.Generator, jitter: float = 0.025) -> Entity:
    """Place a stick figure: pose joints scaled by ``height`` (times the concept's size), feet on ``ground``."""
    h = height * concept.size
    tpl = POSE_JOINTS[pose]
    joints = {}
    for k, (jx, jy) in tpl.items():
        nx, ny = rng.normal(0, jitter, 2) if jitter > 0 else (0.0, 0.0)
        if k.startswith("foot") and pose not in ("jump", "kick"):
            ny = 0.0
        joints[k] = [hip_x + facing * (jx + nx) * h, ground - (jy + ny) * h]
    e = Entity(concept, [0, 0, 0, 0], facing, joints, SHIRTS[rng.integers(len(SHIRTS))],
               SHIRTS[rng.integers(len(SHIRTS))] if rng.random() < 0.5 else (60, 60, 80), SKIN[rng.integers(len(SKIN))],
               height=h, pose=pose)
    _person_box(e, h)
    return e


def _person_box(e: Entity, h: float) -> None:
    r = HEAD_R * h
    xs = [p[0] for p in e.joints.values()]
    ys = [p[1] for p in e.joints.values()]
    hx, hy = e.joints["head"]
    top = hy - r - (0.04 * h if e.concept.style == "person_hat" else 0)
    e.box = [min(min(xs), hx - r) - 1, min(min(ys), top) - 1, max(max(xs), hx + r) + 1, max(ys) + 1]


def obj_box(concept: Concept, cx: float, bottom: float, height: float, mult: float = 1.0) -> list[float]:
    """Box of a concept of agent height ``height`` centred at ``cx`` with its bottom at ``bottom``."""
    oh = concept.size * height * mult
    ow = oh * concept.aspect
    return [cx - ow / 2, bottom - oh, cx + ow / 2, bottom]


def make_object(concept: Concept, box: list[float], facing: int, rng: np.random.Generator, role: str = "",
                tilt: float = 0.0) -> Entity:
    return Entity(concept, [float(v) for v in box], facing, None, _jitter_colour(rng, concept.colour),
                  _jitter_colour(rng, (60, 60, 60), 15), role=role, tilt=tilt)


def _set_hand(e: Entity, hand: str, x: float, y: float) -> None:
    """Move a hand (and its elbow halfway) to a point, e.g. onto the object it grips."""
    nx, ny = e.joints["neck"]
    e.joints[hand] = [x, y]
    e.joints["elbow_" + hand[-1]] = [(nx + x) / 2 + 0.02 * (x - nx), (ny + y) / 2 + 0.1 * abs(x - nx)]
    _person_box(e, e.height)


# --------------------------------------------------------------------------------------------------- layout

def layout_group(verb: Verb, nouns: dict[str, str], height: float, facing: int, rng: np.random.Generator,
                 pose_jitter: float = 0.025) -> Group:
    """Lay out one instance of ``verb`` (agent + role objects) around the origin; ground is y = 0.

    Args:
        verb: the verb (its pose, relation, motion and extra decide the layout).
        nouns: role -> canonical concept name (roles missing or ``""`` are absent and not drawn).
        height: agent height in pixels (before the concept's own size factor).
        facing: +1 faces right, -1 left.
        rng: random generator.
        pose_jitter: std of joint jitter in figure heights.
    """
    H, f, g = height, facing, 0.0
    C = CONCEPT_BY_NAME
    grp = Group()
    agent_c = C[nouns["agent"]]
    main_role = verb.main_role
    main_c = C[nouns[main_role]] if nouns.get(main_role) else None
    second_role = verb.roles[2] if len(verb.roles) > 3 else None
    second_c = C[nouns[second_role]] if second_role and nouns.get(second_role) else None
    rel, pose = verb.relation, verb.pose
    ah = H * agent_c.size
    ents: dict[str, Entity] = {}

    def person(pose_: str, hip_x: float, ground: float) -> Entity:
        return make_person(agent_c, pose_, hip_x, ground, H, f, rng, pose_jitter)

    def J(e: Entity, k: str) -> list[float]:
        return e.joints[k]

    if rel == "on" and main_c is not None and main_c.kind in ("animal", "vehicle"):
        ob = obj_box(main_c, 0.0, g, H)
        ents[main_role] = make_object(main_c, ob, f, rng, main_role)
        seat = ob[1] + (ob[3] - ob[1]) * (0.25 if main_c.kind == "animal" else 0.3)
        a = person("sit", (ob[0] + ob[2]) / 2 - f * 0.1 * (ob[2] - ob[0]), seat + 0.3 * ah)
        ents["agent"] = a
    elif rel == "on":  # lying on a bed / mat
        ob = obj_box(main_c, 0.0, g, H)
        ents[main_role] = make_object(main_c, ob, f, rng, main_role)
        a = person(pose, 0.0, ob[1] + 0.02 * ah)
        ents["agent"] = a
    elif rel == "under" and main_c is not None and main_c.kind == "vehicle":
        a = person(pose, 0.0, g)
        ents["agent"] = a
        hx = J(a, "head")[0]
        ob = obj_box(main_c, hx + f * 0.15 * ah, g + 0.02 * ah, H)
        ents[main_role] = make_object(main_c, ob, -f, rng, main_role)
        ents[main_role].z = 2
        if second_c is not None:
            hand = J(a, "hand_f")
            tb = obj_box(second_c, hand[0], hand[1] + 0.05 * ah, H)
            ents[second_role] = make_object(second_c, tb, f, rng, second_role, tilt=90)
            ents[second_role].z = 1
        grp.cues.append(Cue(verb.motion, [[hx + f * 0.2 * ah, ob[3] - 0.12 * ah]], 0.15 * ah, f))
    elif rel == "under":  # standing under an umbrella / tree
        a = person(pose, 0.0, g)
        ents["agent"] = a
        top = a.box[1]
        oh = main_c.size * H
        ob = obj_box(main_c, f * 0.05 * ah, g, H)
        if ob[1] > top - 0.15 * ah:
            ob = obj_box(main_c, f * 0.05 * ah, g, H, mult=(ah * 1.3) / oh)
        ents[main_role] = make_object(main_c, ob, f, rng, main_role)
        ents[main_role].z = -1
    elif rel == "inside":
        a = person(pose, 0.0, g)
        ents["agent"] = a
        ob = obj_box(main_c, f * 0.1 * ah, g, H, mult=0.55 * ah / (main_c.size * H))
        ents[main_role] = make_object(main_c, ob, f, rng, main_role)
        ents[main_role].z = 2
    elif rel == "beside":
        a = person(pose, 0.0, g)
        ents["agent"] = a
        gap = rng.uniform(0.1, 0.3) * ah
        if verb.name == "chasing":
            gap += 0.25 * ah
        oh = main_c.size * H
        ow = oh * main_c.aspect
        cx = f * (0.3 * ah + gap + ow / 2)
        ob = obj_box(main_c, cx, g, H)
        ofacing = f if verb.name == "chasing" else -f
        if main_c.kind == "person":
            o = make_person(main_c, "stand" if rng.random() < 0.6 else "stride", cx, g, H, ofacing, rng, pose_jitter)
        else:
            o = make_object(main_c, ob, ofacing, rng, main_role)
        o.role = main_role
        ents[main_role] = o
        if verb.extra == "in_hand" and second_c is not None:
            hand = J(a, "hand_f")
            ents[second_role] = make_object(second_c, obj_box(second_c, hand[0], hand[1] + 0.04 * ah, H), f, rng,
                                            second_role)
    elif rel == "hold_front":
        a = person(pose, 0.0, g)
        ents["agent"] = a
        hand = J(a, "hand_f")
        if main_c.kind == "tool":
            if main_c.style == "shovel":
                ob = [min(hand[0], hand[0] + f * 0.3 * ah), hand[1] - 0.08 * ah, max(hand[0], hand[0] + f * 0.3 * ah), g]
                ents[main_role] = make_object(main_c, ob, f, rng, main_role)
            elif main_c.style == "fishing_rod":
                tip = [hand[0] + f * 0.75 * ah, hand[1] - 0.5 * ah]
                ob = [min(hand[0], tip[0]), tip[1], max(hand[0], tip[0]), hand[1] + 0.02 * ah]
                ents[main_role] = make_object(main_c, ob, f, rng, main_role)
                grp.props.append(Entity(_WATER, [tip[0] - f * 0.1 * ah - 0.35 * ah, g - 0.06 * ah,
                                                 tip[0] - f * 0.1 * ah + 0.35 * ah, g + 0.02 * ah], f, None,
                                        (70, 120, 200)))
                grp.cues.append(Cue("line", [tip, [tip[0], g - 0.06 * ah]], 1, f))
                if second_c is not None:
                    fb = obj_box(second_c, tip[0], g - 0.1 * ah, H)
                    ents[second_role] = make_object(second_c, fb, f, rng, second_role, tilt=90)
            else:  # hammer / wrench held with the head up
                ob = obj_box(main_c, hand[0] + f * 0.04 * ah, hand[1] + 0.05 * ah, H)
                ents[main_role] = make_object(main_c, ob, f, rng, main_role)
        else:
            mult = 1.0
            if main_c.kind == "plant":
                ob = obj_box(main_c, hand[0] + f * 0.05 * ah, g, H)
            else:
                oh = main_c.size * H * mult
                ob = obj_box(main_c, hand[0] + f * oh * main_c.aspect * 0.3, hand[1] + oh * 0.5, H, mult)
                if ob[3] > g:
                    ob = [ob[0], ob[1] - (ob[3] - g), ob[2], g]
            ents[main_role] = make_object(main_c, ob, f, rng, main_role, tilt=-30 * f if verb.motion == "arrow_down" else 0)
        if verb.extra == "at_feet" and second_c is not None:
            if second_c.kind == "tool":  # planting: a shovel lying on the ground behind
                ib = [-f * 0.1 * ah - 0.25 * ah, g - 0.06 * ah, -f * 0.1 * ah + 0.25 * ah, g]
                ents[second_role] = make_object(second_c, ib, f, rng, second_role, tilt=90)
            else:
                tool = ents[main_role]
                cx = (tool.box[0] + tool.box[2]) / 2 + f * 0.1 * ah
                ib = obj_box(second_c, cx, g, H, mult=min(1.0, 0.35 * ah / (second_c.size * H)))
                ents[second_role] = make_object(second_c, ib, f, rng, second_role)
                ents[second_role].z = -1
        if verb.name == "cooking" and second_c is not None:
            pot = ents[main_role].box
            fb = obj_box(second_c, (pot[0] + pot[2]) / 2, pot[1] + 0.03 * ah, H, mult=0.8)
            ents[second_role] = make_object(second_c, fb, f, rng, second_role)
            ents[second_role].z = -1
        if pose == "sit" and verb.extra == "in_water":
            grp.props.append(_stool(a, ah, f))
        box = ents[main_role].box
        cue_at = [box[2] + 0.08 * ah if f > 0 else box[0] - 0.08 * ah, (box[1] + box[3]) / 2]
        if verb.motion == "sparks":
            cue_at = [(box[0] + box[2]) / 2, box[1]]
        if verb.motion == "steam":
            cue_at = [(box[0] + box[2]) / 2, box[1] - 0.05 * ah]
        if verb.motion == "arrow_down":
            cue_at = [(box[0] + box[2]) / 2 + f * 0.1 * ah, box[3] + 0.05 * ah]
        grp.cues.append(Cue(verb.motion, [cue_at], 0.25 * ah, f))
    elif rel == "above_head":
        a = person(pose, 0.0, g)
        ents["agent"] = a
        hx, hy = J(a, "head")
        if main_c.kind == "tool":
            hand = J(a, "hand_f")
            oh = main_c.size * H
            ob = [hand[0] - 0.12 * oh * f, hand[1] - oh * 0.7, hand[0] + 0.4 * oh * f, hand[1] + oh * 0.3]
            ob = [min(ob[0], ob[2]), ob[1], max(ob[0], ob[2]), ob[3]]
            ents[main_role] = make_object(main_c, ob, -f, rng, main_role, tilt=0)
        else:
            base = hy - HEAD_R * ah if pose == "stand" else min(J(a, "hand_f")[1], J(a, "hand_b")[1])
            ob = obj_box(main_c, hx, base, H, mult=min(1.0, 0.35 * ah / (main_c.size * H * main_c.aspect)))
            ents[main_role] = make_object(main_c, ob, f, rng, main_role)
        if verb.extra == "at_feet" and second_c is not None:
            cx = f * (0.3 * ah + second_c.size * H * second_c.aspect * 0.3)
            mult = 1.0 if second_c.kind != "furniture" or second_c.style != "tree" else 0.9
            ib = obj_box(second_c, cx, g, H, mult=mult)
            ents[second_role] = make_object(second_c, ib, f, rng, second_role)
            ents[second_role].z = -1
        box = ents[main_role].box
        grp.cues.append(Cue(verb.motion, [[box[2] + 0.1 * ah if f > 0 else box[0] - 0.1 * ah, (box[1] + box[3]) / 2]],
                            0.3 * ah, f))
    elif rel == "push":
        a = person(pose, 0.0, g)
        ents["agent"] = a
        hand = J(a, "hand_f")
        oh = main_c.size * H
        ow = oh * main_c.aspect
        ob = obj_box(main_c, hand[0] + f * ow / 2, g, H)
        ents[main_role] = make_object(main_c, ob, f, rng, main_role)
        _set_hand(a, "hand_f", hand[0], min(max(hand[1], ob[1] + 0.1 * oh), g - 0.1 * ah))
        grp.cues.append(Cue(verb.motion, [[J(a, "foot_b")[0], g]], 0.2 * ah, f))
    elif rel == "pull_rope":
        a = person(pose, 0.0, g)
        ents["agent"] = a
        hand = J(a, "hand_f")
        oh = main_c.size * H
        ow = oh * main_c.aspect
        dist = rng.uniform(0.35, 0.6) * ah
        ob = obj_box(main_c, hand[0] + f * (dist + ow / 2), g, H)
        ofacing = -f if verb.name == "pulling" else f
        ents[main_role] = make_object(main_c, ob, ofacing, rng, main_role)
        attach = [ob[0] if f > 0 else ob[2], ob[1] + 0.3 * oh]
        if main_c.kind == "animal":
            attach = [ob[2] - 0.1 * ow if (ofacing > 0) else ob[0] + 0.1 * ow, ob[1] + 0.15 * oh]
        grp.cues.append(Cue("rope", [hand, attach], max(1.0, 0.025 * ah), f))
        grp.cues.append(Cue(verb.motion, [[J(a, "foot_b")[0], g]], 0.2 * ah, f))
    elif rel == "hand_low":
        a = person(pose, 0.0, g)
        ents["agent"] = a
        hand = J(a, "hand_f")
        oh = main_c.size * H
        ow = oh * main_c.aspect
        if main_c.kind == "tool":  # broom from hand to the ground ahead
            ob = [min(hand[0], hand[0] + f * 0.35 * ah), hand[1] - 0.05 * ah, max(hand[0], hand[0] + f * 0.35 * ah), g]
            ents[main_role] = make_object(main_c, ob, f, rng, main_role)
        elif pose == "lean_back":  # dragging along the ground
            ob = obj_box(main_c, hand[0] + f * (ow / 2 + 0.15 * ah), g, H)
            ents[main_role] = make_object(main_c, ob, f, rng, main_role)
            _set_hand(a, "hand_f", ob[0] + 0.1 * ow if f > 0 else ob[2] - 0.1 * ow, ob[1] + 0.1 * oh)
        else:  # carried, hanging from the hand
            mult = min(1.0, 0.3 * ah / oh)
            ob = obj_box(main_c, hand[0] + f * 0.05 * ah, hand[1] + oh * mult * 0.85, H, mult)
            ents[main_role] = make_object(main_c, ob, f, rng, main_role)
        grp.cues.append(Cue(verb.motion, [[(ob[0] + ob[2]) / 2, g]], 0.2 * ah, f))
    elif rel in ("thrown", "incoming"):
        a = person(pose, 0.0, g)
        ents["agent"] = a
        if rel == "thrown":
            hand = J(a, "hand_b")
            c = [f * rng.uniform(0.55, 0.9) * ah, -rng.uniform(0.9, 1.25) * ah]
            arc = [hand, [(hand[0] + c[0]) / 2, min(hand[1], c[1]) - 0.2 * ah], c]
        else:
            hand = J(a, "hand_f")
            c = [hand[0] + f * 0.12 * ah, hand[1] - 0.02 * ah]
            far = [c[0] + f * 0.8 * ah, c[1] - 0.3 * ah]
            arc = [far, [(far[0] + c[0]) / 2, c[1] - 0.45 * ah], c]
        oh = main_c.size * H
        ob = obj_box(main_c, c[0], c[1] + oh / 2, H)
        ents[main_role] = make_object(main_c, ob, f, rng, main_role, tilt=float(rng.uniform(-40, 40)))
        grp.cues.append(Cue(verb.motion, arc, 0.04 * ah, f))
    elif rel == "touch":
        a = person(pose, 0.0, g)
        ents["agent"] = a
        hand = J(a, "hand_f")
        if main_c.kind == "person":  # hugging: the other person faces the agent, close
            cx = f * rng.uniform(0.18, 0.26) * ah
            o = make_person(main_c, "arms_forward", cx, g, H, -f, rng, pose_jitter)
            o.role = main_role
            o.z = -1
            ents[main_role] = o
        else:
            oh = main_c.size * H
            ow = oh * main_c.aspect
            if main_c.kind == "animal":
                ob = obj_box(main_c, hand[0] + f * ow * 0.4, g, H)
                ofacing = f if rng.random() < 0.5 else -f
            else:  # painting a wall / fence / boat
                ob = obj_box(main_c, hand[0] + f * (ow / 2 + 0.02 * ah), g, H)
                ofacing = f
            ents[main_role] = make_object(main_c, ob, ofacing, rng, main_role)
            ents[main_role].z = -1
            _set_hand(a, "hand_f", hand[0], max(hand[1], ob[1] + 0.12 * oh))
            if verb.extra == "in_hand" and second_c is not None:
                hand = J(a, "hand_f")
                ents[second_role] = make_object(second_c, obj_box(second_c, hand[0], hand[1] + 0.05 * ah, H), f, rng,
                                                second_role, tilt=-60 * f)
                ents[second_role].z = 1
    elif rel == "to_mouth":
        a = person(pose, 0.0, g)
        ents["agent"] = a
        hx, hy = J(a, "head")
        oh = main_c.size * H
        ob = obj_box(main_c, hx + f * (HEAD_R * ah + oh * main_c.aspect * 0.35), hy + oh * 0.6, H)
        ents[main_role] = make_object(main_c, ob, f, rng, main_role)
        ents[main_role].z = 1
        _set_hand(a, "hand_f", (ob[0] + ob[2]) / 2, ob[3])
        grp.props.append(_stool(a, ah, f))
    elif rel == "at_foot":
        a = person(pose, 0.0, g)
        ents["agent"] = a
        foot = J(a, "foot_f")
        oh = main_c.size * H
        ob = obj_box(main_c, foot[0] + f * oh * main_c.aspect * 0.55, min(g, foot[1] + oh * 0.5), H)
        ents[main_role] = make_object(main_c, ob, f, rng, main_role)
        arc_end = [ob[0] + f * 0.9 * ah, ob[1] - 0.6 * ah]
        grp.cues.append(Cue(verb.motion, [[(ob[0] + ob[2]) / 2, ob[1]], [(ob[0] + arc_end[0]) / 2, ob[1] - 0.7 * ah],
                                          arc_end], 0.04 * ah, f))
    elif rel == "over":
        oh = main_c.size * H
        ob = obj_box(main_c, 0.0, g, H, mult=min(1.0, 0.4 * ah / oh))
        ents[main_role] = make_object(main_c, ob, f, rng, main_role)
        a = person(pose, 0.0, ob[1] - rng.uniform(0.05, 0.2) * ah + 0.1 * ah)
        ents["agent"] = a
        grp.cues.append(Cue(verb.motion, [[-f * 0.3 * ah, a.box[1] + 0.3 * ah]], 0.3 * ah, f))
    elif rel == "climb":
        oh = main_c.size * H
        ob = obj_box(main_c, 0.0, g, H)
        ents[main_role] = make_object(main_c, ob, f, rng, main_role)
        ents[main_role].z = -1
        lift = rng.uniform(0.2, 0.45) * ah
        a = person(pose, -f * 0.12 * ah, g - lift)
        ents["agent"] = a
        grp.cues.append(Cue(verb.motion, [[-f * 0.45 * ah, g - lift - 0.5 * ah]], 0.3 * ah, f))
    else:
        raise ValueError(f"no layout for relation {rel!r} of verb {verb.name!r}")

    if verb.motion == "speed_lines":
        b = Group(list(ents.values())).bbox()
        grp.cues.append(Cue("speed_lines", [[b[0] if f > 0 else b[2], (b[1] + b[3]) / 2]], (b[3] - b[1]) * 0.5, f))
    grp.cues = [c for c in grp.cues if c.kind != "none"]
    for role, e in ents.items():
        e.role = role
    grp.entities = sorted(ents.values(), key=lambda e: e.z)
    return grp


_WATER = Concept("_water", (), "prop", "water", 0.1, 4.0, (70, 120, 200), "")
_STOOL = Concept("_stool", (), "prop", "stool", 0.3, 0.8, (110, 80, 50), "")


def _stool(a: Entity, ah: float, f: int) -> Entity:
    hx, hy = a.joints["hip"]
    return Entity(_STOOL, [hx - 0.12 * ah, hy + 0.02 * ah, hx + 0.12 * ah, hy + 0.3 * ah], f, None, (110, 80, 50))


# --------------------------------------------------------------------------------------------------- drawing

def _line(d: ImageDraw.ImageDraw, a, b, fill, w) -> None:
    d.line([tuple(a), tuple(b)], fill=fill, width=max(1, int(round(w))))


def draw_person(d: ImageDraw.ImageDraw, e: Entity) -> None:
    j = e.joints
    h = max(e.height, 4.0)
    w = max(1.5, h * 0.06)
    r = max(2.0, HEAD_R * h)
    for a_, b_ in LIMBS[5:]:
        _line(d, j[a_], j[b_], e.colour2, w)
    if e.concept.style == "person_skirt":
        hx, hy = j["hip"]
        nx, ny = j["neck"]
        d.polygon([(hx - 0.12 * h, hy + 0.05 * h), (hx + 0.12 * h, hy + 0.05 * h),
                   ((hx + nx) / 2, (hy + ny) / 2)], fill=e.colour)
    _line(d, j["neck"], j["hip"], e.colour, w * 1.5)
    for a_, b_ in LIMBS[1:5]:
        _line(d, j[a_], j[b_], e.colour, w)
    hx, hy = j["head"]
    d.ellipse([hx - r, hy - r, hx + r, hy + r], fill=e.skin)
    if e.concept.style == "person_hat":
        d.chord([hx - r * 1.2, hy - r * 1.3, hx + r * 1.2, hy + r * 0.6], 180, 360, fill=(250, 210, 0))
    elif e.concept.style == "person_skirt":
        d.ellipse([hx - r * 1.1, hy - r * 1.15, hx + r * 1.1, hy + r * 0.3], fill=(70, 40, 20))
        _line(d, [hx - r, hy], [hx - r, hy + r * 1.6], (70, 40, 20), max(1, r * 0.5))
    elif e.concept.style == "person_small":
        d.ellipse([hx - r * 0.9, hy - r * 1.05, hx + r * 0.9, hy - r * 0.3], fill=(230, 180, 60))


def _rot(pts, cx, cy, deg):
    if not deg:
        return pts
    t = math.radians(deg)
    c, s = math.cos(t), math.sin(t)
    return [(cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c) for x, y in pts]


def _dark(c, k=0.6):
    return tuple(int(v * k) for v in c)


def _quadruped(d, x1, y1, x2, y2, col, f, style):
    w, h = x2 - x1, y2 - y1
    leg = {"quadruped_tall": 0.5, "quadruped_hump": 0.5, "quadruped_trunk": 0.4, "quadruped_spots": 0.35,
           "quadruped_small": 0.35, "quadruped_cat": 0.3, "quadruped_wool": 0.35, "quadruped_horns": 0.4}[style]
    by1, by2 = y1 + h * 0.25, y2 - h * leg
    bx1, bx2 = x1 + w * 0.12, x2 - w * 0.22 if f > 0 else x2 - w * 0.12
    if f < 0:
        bx1 = x1 + w * 0.22
    lw = max(1.5, w * 0.06)
    for fx in (0.2, 0.35, 0.7, 0.85):
        lx = bx1 + (bx2 - bx1) * fx
        _line(d, (lx, by2 - 1), (lx, y2), _dark(col), lw)
    if style == "quadruped_wool":
        for k in range(5):
            cx = bx1 + (bx2 - bx1) * (0.15 + 0.175 * k)
            d.ellipse([cx - w * 0.12, by1 - h * 0.05, cx + w * 0.12, by2 + h * 0.05], fill=col)
    else:
        d.ellipse([bx1, by1, bx2, by2], fill=col)
    if style == "quadruped_hump":
        mx = (bx1 + bx2) / 2
        d.ellipse([mx - w * 0.15, y1 + h * 0.05, mx + w * 0.15, by1 + h * 0.3], fill=col)
    if style == "quadruped_spots":
        for k in range(3):
            sx = bx1 + (bx2 - bx1) * (0.25 + 0.25 * k)
            d.ellipse([sx - w * 0.06, by1 + h * 0.05, sx + w * 0.06, by1 + h * 0.22], fill=(30, 30, 30))
    # head and neck
    hx = x2 - w * 0.1 if f > 0 else x1 + w * 0.1
    hr = h * (0.16 if style != "quadruped_trunk" else 0.22)
    hy = y1 + hr + (h * 0.02 if style in ("quadruped_tall", "quadruped_hump") else h * 0.15)
    nx = bx2 - w * 0.05 if f > 0 else bx1 + w * 0.05
    _line(d, (nx, by1 + h * 0.1), (hx, hy), col, max(2, w * 0.09))
    d.ellipse([hx - hr * 1.1, hy - hr, hx + hr * 1.1, hy + hr], fill=col)
    d.point((hx + f * hr * 0.3, hy - hr * 0.2), fill=(0, 0, 0))
    if style == "quadruped_trunk":
        _line(d, (hx + f * hr * 0.6, hy), (hx + f * hr * 0.9, y2 - h * 0.15), col, max(2, w * 0.05))
    if style in ("quadruped_horns", "quadruped_cat", "quadruped_small"):
        _line(d, (hx - f * hr * 0.2, hy - hr * 0.8), (hx - f * hr * 0.5, hy - hr * 1.6 if style != "quadruped_small" else hy - hr * 1.2),
              _dark(col, 0.4) if style == "quadruped_horns" else col, max(1, w * 0.03))
    tx = bx1 if f > 0 else bx2
    _line(d, (tx, by1 + h * 0.08), (tx - f * w * 0.1, by1 + h * 0.3 if style != "quadruped_cat" else y1), _dark(col), max(1, w * 0.03))


def _wheel(d, cx, cy, r, col=(30, 30, 30)):
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=col)
    d.ellipse([cx - r * 0.4, cy - r * 0.4, cx + r * 0.4, cy + r * 0.4], fill=(180, 180, 180))


def draw_object(d: ImageDraw.ImageDraw, e: Entity) -> None:
    """Draw an object concept filling its box (facing and tilt respected where they matter)."""
    x1, y1, x2, y2 = e.box
    w, h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    col, f, st = e.colour, e.facing, e.concept.style
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    lw = max(1.0, min(w, h) * 0.08)
    if st.startswith("quadruped"):
        _quadruped(d, x1, y1, x2, y2, col, f, st)
    elif st == "bird":
        d.ellipse([x1 + w * 0.1, y1 + h * 0.3, x2 - w * 0.1, y2 - h * 0.15], fill=col)
        hx = x2 - w * 0.2 if f > 0 else x1 + w * 0.2
        d.ellipse([hx - w * 0.18, y1, hx + w * 0.18, y1 + h * 0.4], fill=col)
        d.polygon([(hx + f * w * 0.15, y1 + h * 0.15), (hx + f * w * 0.35, y1 + h * 0.22), (hx + f * w * 0.15, y1 + h * 0.28)],
                  fill=(250, 190, 0))
        _line(d, (cx, y2 - h * 0.15), (cx, y2), (250, 160, 0), 1)
    elif st in ("car", "truck"):
        r = h * 0.2
        if st == "car":
            d.rounded_rectangle([x1, y1 + h * 0.4, x2, y2 - r * 0.8], radius=max(1, int(h * 0.1)), fill=col)
            d.polygon([(x1 + w * 0.25, y1 + h * 0.4), (x1 + w * 0.35, y1), (x2 - w * 0.3, y1), (x2 - w * 0.15, y1 + h * 0.4)], fill=col)
            d.polygon([(x1 + w * 0.32, y1 + h * 0.37), (x1 + w * 0.38, y1 + h * 0.1), (x2 - w * 0.33, y1 + h * 0.1),
                       (x2 - w * 0.22, y1 + h * 0.37)], fill=(180, 220, 240))
        else:
            cab = (x2 - w * 0.3, x2) if f > 0 else (x1, x1 + w * 0.3)
            d.rectangle([x1, y1, x2, y2 - r * 0.8], fill=col)
            d.rectangle([cab[0], y1 + h * 0.3, cab[1], y2 - r * 0.8], fill=_dark(col, 0.8))
            d.rectangle([cab[0] + w * 0.05, y1 + h * 0.38, cab[1] - w * 0.05, y1 + h * 0.55], fill=(180, 220, 240))
            _line(d, (cab[0] if f > 0 else cab[1], y1), (cab[0] if f > 0 else cab[1], y2 - r), (20, 20, 20), 1)
        _wheel(d, x1 + w * 0.22, y2 - r, r)
        _wheel(d, x2 - w * 0.22, y2 - r, r)
    elif st == "bicycle":
        r = h * 0.35
        _wheel(d, x1 + r, y2 - r, r, (20, 20, 20))
        _wheel(d, x2 - r, y2 - r, r, (20, 20, 20))
        pts = [(x1 + r, y2 - r), (cx, y2 - r), (x2 - r * 1.4, y1 + h * 0.2), (x1 + r * 1.5, y1 + h * 0.25), (x1 + r, y2 - r)]
        d.line(pts, fill=col, width=max(1, int(lw)))
        _line(d, (x2 - r, y2 - r), (x2 - r * 1.3, y1), col, lw)
    elif st == "cart":
        r = h * 0.25
        d.rectangle([x1 + w * 0.1, y1 + h * 0.15, x2 - w * 0.1, y2 - r * 1.2], fill=col)
        for k in (0.35, 0.6):
            _line(d, (x1 + w * 0.1, y1 + h * k), (x2 - w * 0.1, y1 + h * k), _dark(col), 1)
        _wheel(d, x1 + w * 0.3, y2 - r, r, (60, 40, 20))
        _wheel(d, x2 - w * 0.3, y2 - r, r, (60, 40, 20))
        hxx = x1 if f < 0 else x2
        _line(d, (x2 - w * 0.1 if f > 0 else x1 + w * 0.1, y1 + h * 0.3), (hxx, y1), _dark(col), lw)
    elif st == "sled":
        d.rectangle([x1 + w * 0.1, y1, x2 - w * 0.1, y1 + h * 0.45], fill=col)
        d.line([(x1, y1 + h * 0.55), (x1 + w * 0.05, y2), (x2 - w * 0.05, y2), (x2, y1 + h * 0.55)], fill=(60, 60, 60), width=max(1, int(lw)))
    elif st == "boat":
        d.polygon([(x1, y1 + h * 0.35), (x2, y1 + h * 0.35), (x2 - w * 0.15, y2), (x1 + w * 0.15, y2)], fill=col)
        _line(d, (x1, y1 + h * 0.4), (x2, y1 + h * 0.4), (180, 40, 40), max(1, h * 0.08))
        _line(d, (cx, y1), (cx, y1 + h * 0.35), (90, 60, 30), max(1, w * 0.02))
    elif st in ("hammer", "axe", "wrench", "paintbrush"):
        hx = x1 + w * 0.5
        pts = [(hx, y2), (hx, y1 + h * 0.15)]
        pts = _rot(pts, cx, cy, e.tilt)
        _line(d, pts[0], pts[1], (120, 80, 40) if st != "wrench" else col, max(1.5, w * 0.18))
        if st == "hammer":
            head = [(x1, y1), (x2, y1), (x2, y1 + h * 0.25), (x1, y1 + h * 0.25)]
        elif st == "axe":
            head = [(hx, y1), (hx + f * w * 0.5, y1 - h * 0.05), (hx + f * w * 0.5, y1 + h * 0.4), (hx, y1 + h * 0.3)]
        elif st == "wrench":
            head = [(x1, y1), (x1 + w * 0.3, y1), (hx, y1 + h * 0.15), (x2 - w * 0.3, y1), (x2, y1), (hx + w * 0.15, y1 + h * 0.3),
                    (hx - w * 0.15, y1 + h * 0.3)]
        else:
            head = [(hx - w * 0.25, y1), (hx + w * 0.25, y1), (hx + w * 0.2, y1 + h * 0.3), (hx - w * 0.2, y1 + h * 0.3)]
        d.polygon(_rot(head, cx, cy, e.tilt), fill=col)
    elif st in ("shovel", "broom"):
        top = (x1 if f > 0 else x2, y1)
        bot = (x2 - w * 0.15 if f > 0 else x1 + w * 0.15, y2 - h * 0.2)
        if e.tilt:
            top, bot = (x1, cy), (x2 - w * 0.2, cy)
        _line(d, top, bot, (120, 80, 40), max(1.5, min(w, h) * 0.08))
        bx, by = bot
        s = max(w, h) * 0.18
        if st == "shovel":
            d.polygon([(bx - s * 0.6, by - s * 0.2), (bx + s * 0.6, by - s * 0.2), (bx + s * 0.4, by + s), (bx - s * 0.4, by + s)] if not e.tilt
                      else [(bx, cy - s * 0.5), (x2, cy - s * 0.4), (x2, cy + s * 0.4), (bx, cy + s * 0.5)], fill=col)
        else:
            d.polygon([(bx - s * 0.2, by - s * 0.3), (bx + s * 0.2, by - s * 0.3), (bx + s * 0.8, y2), (bx - s * 0.8, y2)], fill=col)
    elif st == "fishing_rod":
        butt = (x1 if f > 0 else x2, y2)
        tip = (x2 if f > 0 else x1, y1)
        _line(d, butt, tip, col, max(1, w * 0.025))
    elif st in ("box", "crate"):
        d.rectangle([x1, y1, x2, y2], fill=col, outline=_dark(col), width=1)
        if st == "box":
            _line(d, (x1, y1 + h * 0.2), (x2, y1 + h * 0.2), _dark(col), 1)
            _line(d, (cx, y1), (cx, y1 + h * 0.2), (230, 220, 200), max(1, w * 0.1))
        else:
            for k in (0.33, 0.66):
                _line(d, (x1, y1 + h * k), (x2, y1 + h * k), _dark(col), max(1, h * 0.06))
            _line(d, (x1, y1), (x2, y2), _dark(col), max(1, h * 0.05))
    elif st == "bucket":
        d.polygon([(x1, y1 + h * 0.25), (x2, y1 + h * 0.25), (x2 - w * 0.15, y2), (x1 + w * 0.15, y2)], fill=col)
        d.arc([x1 + w * 0.05, y1, x2 - w * 0.05, y1 + h * 0.5], 180, 360, fill=(60, 60, 60), width=1)
    elif st == "basket":
        d.chord([x1, y1 - h * 0.6, x2, y2], 0, 180, fill=col)
        for k in (0.3, 0.5, 0.7):
            _line(d, (x1 + w * k, y1 + h * 0.2), (x1 + w * k, y2 - h * 0.1), _dark(col), 1)
        d.arc([x1 + w * 0.2, y1 - h * 0.3, x2 - w * 0.2, y1 + h * 0.6], 180, 360, fill=_dark(col), width=1)
    elif st == "barrel":
        d.rounded_rectangle([x1, y1, x2, y2], radius=max(1, int(w * 0.3)), fill=col)
        for k in (0.2, 0.8):
            _line(d, (x1 + 1, y1 + h * k), (x2 - 1, y1 + h * k), (60, 60, 60), max(1, h * 0.05))
    elif st == "sack":
        d.ellipse([x1, y1 + h * 0.15, x2, y2], fill=col)
        d.polygon([(cx - w * 0.15, y1 + h * 0.25), (cx + w * 0.15, y1 + h * 0.25), (cx + w * 0.2, y1), (cx - w * 0.2, y1)], fill=col)
        _line(d, (cx - w * 0.15, y1 + h * 0.2), (cx + w * 0.15, y1 + h * 0.2), _dark(col), 1)
    elif st == "pot":
        d.rectangle([x1 + w * 0.15, y1 + h * 0.2, x2 - w * 0.15, y2], fill=col)
        _line(d, (x1, y1 + h * 0.35), (x2, y1 + h * 0.35), col, max(1, h * 0.15))
    elif st in ("apple", "ball", "melon", "rock"):
        if st == "rock":
            d.polygon([(x1, y2), (x1 + w * 0.1, y1 + h * 0.3), (x1 + w * 0.4, y1), (x2 - w * 0.1, y1 + h * 0.2), (x2, y2)], fill=col)
        else:
            d.ellipse([x1, y1, x2, y2], fill=col)
        if st == "apple":
            _line(d, (cx, y1), (cx + w * 0.1, y1 - h * 0.2), (80, 50, 20), 1)
        elif st == "ball":
            _line(d, (x1 + w * 0.15, cy), (x2 - w * 0.15, cy), (30, 30, 30), max(1, h * 0.1))
        elif st == "melon":
            for k in (0.3, 0.5, 0.7):
                _line(d, (x1 + w * k, y1 + h * 0.1), (x1 + w * k, y2 - h * 0.1), _dark(col, 0.5), 1)
    elif st == "frisbee":
        d.ellipse([x1, y1, x2, y2], fill=col)
    elif st == "bread":
        d.rounded_rectangle([x1, y1, x2, y2], radius=max(1, int(h * 0.45)), fill=col)
        for k in (0.3, 0.5, 0.7):
            _line(d, (x1 + w * k, y1 + 1), (x1 + w * k + w * 0.06, y1 + h * 0.4), _dark(col), 1)
    elif st == "cake":
        d.rectangle([x1, y1 + h * 0.3, x2, y2], fill=col)
        d.rectangle([x1, y1 + h * 0.55, x2, y1 + h * 0.7], fill=(120, 60, 30))
        _line(d, (cx, y1), (cx, y1 + h * 0.3), (250, 220, 0), 1)
    elif st == "carrot":
        d.polygon([(x1, y1 + h * 0.2), (x2, y1 + h * 0.2), (cx, y2)], fill=col)
        _line(d, (cx, y1), (cx, y1 + h * 0.2), (40, 160, 40), max(1, w * 0.2))
    elif st == "fish":
        body = [(x1 + w * 0.25, cy), (cx, y1), (x2, cy), (cx, y2)]
        tail = [(x1 + w * 0.3, cy), (x1, y1), (x1, y2)]
        d.polygon(_rot(body, cx, cy, e.tilt), fill=col)
        d.polygon(_rot(tail, cx, cy, e.tilt), fill=col)
    elif st in ("seedling", "flower"):
        _line(d, (cx, y2), (cx, y1 + h * 0.2), (40, 140, 40), max(1, w * 0.1))
        d.ellipse([cx - w * 0.45, y1 + h * 0.3, cx, y1 + h * 0.55], fill=(60, 170, 60))
        d.ellipse([cx, y1 + h * 0.4, cx + w * 0.45, y1 + h * 0.65], fill=(60, 170, 60))
        if st == "flower":
            d.ellipse([cx - w * 0.3, y1, cx + w * 0.3, y1 + h * 0.3], fill=col)
        d.rectangle([cx - w * 0.3, y2 - h * 0.12, cx + w * 0.3, y2], fill=(120, 80, 40))
    elif st == "ladder":
        _line(d, (x1, y2), (x1 + w * 0.1, y1), col, max(1, w * 0.12))
        _line(d, (x2, y2), (x2 - w * 0.1, y1), col, max(1, w * 0.12))
        for k in range(1, 7):
            yy = y1 + h * k / 7
            _line(d, (x1 + w * 0.05, yy), (x2 - w * 0.05, yy), col, max(1, h * 0.015))
    elif st == "tree":
        d.rectangle([cx - w * 0.1, y1 + h * 0.45, cx + w * 0.1, y2], fill=(100, 70, 40))
        d.ellipse([x1, y1, x2, y1 + h * 0.6], fill=col)
    elif st == "wall":
        d.rectangle([x1, y1, x2, y2], fill=col)
        rows = 6
        for k in range(1, rows):
            yy = y1 + h * k / rows
            _line(d, (x1, yy), (x2, yy), (230, 220, 210), 1)
            off = 0.25 if k % 2 else 0.0
            for m in (0.25 + off, 0.75 + off):
                if m < 1:
                    _line(d, (x1 + w * m, yy), (x1 + w * m, yy - h / rows), (230, 220, 210), 1)
    elif st == "log":
        d.rounded_rectangle([x1, y1, x2, y2], radius=max(1, int(h * 0.45)), fill=col)
        ex = x1 if f < 0 else x2 - h
        d.ellipse([ex, y1, ex + h, y2], fill=(210, 170, 110))
    elif st == "fence":
        for k in range(4):
            px = x1 + w * (0.05 + 0.3 * k)
            d.rectangle([px, y1, px + w * 0.06, y2], fill=col)
        for k in (0.3, 0.65):
            _line(d, (x1, y1 + h * k), (x2, y1 + h * k), col, max(1, h * 0.1))
    elif st == "bed":
        d.rectangle([x1, y1 + h * 0.3, x2, y2 - h * 0.25], fill=col)
        d.rectangle([x1, y1, x1 + w * 0.04, y2], fill=(110, 70, 40))
        d.rectangle([x2 - w * 0.04, y1 + h * 0.2, x2, y2], fill=(110, 70, 40))
        px = x1 + w * 0.06 if f > 0 else x2 - w * 0.2
        d.ellipse([px, y1 + h * 0.1, px + w * 0.14, y1 + h * 0.4], fill=(245, 245, 245))
    elif st == "mat":
        d.rectangle([x1, y1, x2, y2], fill=col)
        for k in (0.2, 0.5, 0.8):
            _line(d, (x1 + w * k, y1), (x1 + w * k, y2), (250, 250, 250), 1)
    elif st == "umbrella":
        d.chord([x1, y1, x2, y1 + h * 0.5], 180, 360, fill=col)
        _line(d, (cx, y1 + h * 0.2), (cx, y2), (60, 60, 60), max(1, w * 0.03))
    elif st == "table":
        d.rectangle([x1, y1, x2, y1 + h * 0.15], fill=col)
        _line(d, (x1 + w * 0.08, y1), (x1 + w * 0.08, y2), col, max(1, w * 0.05))
        _line(d, (x2 - w * 0.08, y1), (x2 - w * 0.08, y2), col, max(1, w * 0.05))
    elif st == "water":
        d.ellipse([x1, y1, x2, y2], fill=col)
    elif st == "stool":
        d.rectangle([x1, y1, x2, y1 + h * 0.2], fill=col)
        _line(d, (x1 + w * 0.2, y1), (x1 + w * 0.15, y2), col, max(1, w * 0.1))
        _line(d, (x2 - w * 0.2, y1), (x2 - w * 0.15, y2), col, max(1, w * 0.1))
    elif st.startswith("person"):
        raise ValueError("people are drawn with draw_person")
    else:
        raise ValueError(f"no drawing routine for style {st!r}")


def draw_cue(d: ImageDraw.ImageDraw, c: Cue, rng: np.random.Generator) -> None:
    """Draw one motion cue (``rope`` / ``line`` connect two points)."""
    s = max(c.size, 2.0)
    (x, y) = c.pts[0]
    dark = (40, 40, 40)
    if c.kind in ("rope", "line"):
        _line(d, c.pts[0], c.pts[1], (90, 70, 40) if c.kind == "rope" else (30, 30, 30), c.size)
    elif c.kind == "speed_lines":
        for k in (-0.5, 0.0, 0.5):
            yy = y + k * s
            _line(d, (x - c.facing * s * 0.15, yy), (x - c.facing * s * (0.7 + 0.2 * abs(k)), yy), dark, 1)
    elif c.kind in ("arrow_up", "arrow_down"):
        sg = -1 if c.kind == "arrow_up" else 1
        y0, y1 = y - sg * s * 0.5, y + sg * s * 0.5
        _line(d, (x, y0), (x, y1), (200, 30, 30), max(1, s * 0.08))
        d.polygon([(x - s * 0.2, y1 - sg * s * 0.25), (x + s * 0.2, y1 - sg * s * 0.25), (x, y1 + sg * s * 0.05)], fill=(200, 30, 30))
    elif c.kind == "arc":
        p0, p1, p2 = c.pts
        for t in np.linspace(0.1, 0.9, 7):
            bx = (1 - t) ** 2 * p0[0] + 2 * (1 - t) * t * p1[0] + t ** 2 * p2[0]
            by = (1 - t) ** 2 * p0[1] + 2 * (1 - t) * t * p1[1] + t ** 2 * p2[1]
            r = max(0.8, s * 0.6)
            d.ellipse([bx - r, by - r, bx + r, by + r], fill=dark)
    elif c.kind == "dust":
        for _ in range(5):
            dx, dy = rng.normal(0, s * 0.35), -abs(rng.normal(0, s * 0.2))
            r = max(1.0, s * rng.uniform(0.08, 0.18))
            d.ellipse([x + dx - r, y + dy - r, x + dx + r, y + dy + r], fill=(170, 150, 120))
    elif c.kind == "sparks":
        for k in range(6):
            t = math.pi * 2 * k / 6 + rng.uniform(-0.3, 0.3)
            _line(d, (x + math.cos(t) * s * 0.15, y + math.sin(t) * s * 0.15), (x + math.cos(t) * s * 0.45, y + math.sin(t) * s * 0.45),
                  (255, 200, 0), 1)
    elif c.kind == "steam":
        for k in (-1, 0, 1):
            pts = [(x + k * s * 0.25 + math.sin(i * 1.6) * s * 0.08, y - i * s * 0.18) for i in range(5)]
            d.line(pts, fill=(235, 235, 235), width=1)
    else:
        raise ValueError(f"unknown cue {c.kind!r}")


# --------------------------------------------------------------------------------------------------- background

@lru_cache(maxsize=None)
def _noise_bank(size: int) -> np.ndarray:
    """A fixed (8, 2*size, 2*size) bank of smooth noise fields in [-1, 1] (deterministic, computed lazily)."""
    r = np.random.default_rng(12345)
    out = []
    for k in range(8):
        n = r.normal(0, 1, (2 * size // 4 + 1, 2 * size // 4 + 1))
        up = np.kron(n, np.ones((4, 4)))[: 2 * size, : 2 * size]
        fine = np.kron(r.normal(0, 0.6, (size, size)), np.ones((2, 2)))
        f = up * 0.6 + fine * 0.4
        out.append((f / np.abs(f).max()).astype(np.float32))
    return np.stack(out)


def background(place: str, size: int, rng: np.random.Generator, horizon: float) -> Image.Image:
    """The place as a textured background: sky / wall above ``horizon`` (pixels), ground below, noise and jitter."""
    p = PLACE_BY_NAME[place]
    sky = np.array(_jitter_colour(rng, p.sky, 15), np.float32)
    gnd = np.array(_jitter_colour(rng, p.ground, 15), np.float32)
    hz = int(np.clip(horizon, 8, size - 8))
    img = np.empty((size, size, 3), np.float32)
    img[:hz] = sky
    img[hz:] = gnd
    bank = _noise_bank(size)
    k = rng.integers(len(bank))
    ox, oy = rng.integers(0, size, 2)
    noise = bank[k, oy:oy + size, ox:ox + size][..., None]
    amp = {"grass": 22, "sand": 14, "asphalt": 10, "tiles": 6, "trees": 18, "snow": 6, "dirt": 18}[p.texture]
    img[hz:] += noise[hz:] * amp
    img[:hz] += noise[:hz] * 4
    if p.texture == "tiles":
        img[:hz:10] *= 0.85
        img[:hz, ::10] *= 0.85
    elif p.texture == "asphalt":
        y = hz + (size - hz) // 2
        for x in range(int(rng.integers(0, 16)), size, 24):
            img[y:y + 2, x:x + 10] = 235
        for x in range(int(rng.integers(-20, 0)), size, 30):  # buildings
            top = int(rng.integers(max(1, hz - 40), hz))
            img[top:hz, max(0, x):max(0, x + 22)] = _jitter_colour(rng, (150, 140, 130), 25)
    elif p.texture == "trees":
        for x in range(int(rng.integers(0, 12)), size, 18):
            img[:hz + 4, x:x + 4] = (70, 50, 30)
    elif p.texture == "sand":
        band = max(3, hz // 4)
        img[hz - band:hz] = _jitter_colour(rng, (50, 110, 190), 15)
    elif p.texture == "dirt":
        for y in range(hz + 4, size, 9):
            img[y:y + 1] *= 0.85
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def clutter(d: ImageDraw.ImageDraw, size: int, rng: np.random.Generator, n: int, horizon: float) -> None:
    """Small unannotated shapes (stones, tufts, leaves) scattered over the background."""
    for _ in range(n):
        x, y = rng.uniform(0, size), rng.uniform(horizon * 0.5, size)
        r = rng.uniform(1, 3.5)
        col = tuple(int(v) for v in rng.integers(40, 220, 3))
        if rng.random() < 0.5:
            d.ellipse([x - r, y - r * 0.6, x + r, y + r * 0.6], fill=col)
        else:
            d.line([(x, y), (x + rng.normal(0, 2), y - r * 1.5)], fill=col, width=1)


def occluder(d: ImageDraw.ImageDraw, box: list[float], rng: np.random.Generator) -> list[float]:
    """Draw a foreground bush / post / crate over part of ``box``; returns the occluder's box."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    kind = rng.integers(3)
    if kind == 0:  # bush at the bottom
        cx = rng.uniform(x1, x2)
        r = max(3.0, min(w, h) * rng.uniform(0.25, 0.4))
        for k in range(4):
            ox = cx + rng.normal(0, r * 0.5)
            d.ellipse([ox - r * 0.6, y2 - r * 1.2, ox + r * 0.6, y2 + r * 0.1], fill=_jitter_colour(rng, (40, 120, 40), 15))
        return [cx - r * 1.4, y2 - r * 1.2, cx + r * 1.4, y2]
    if kind == 1:  # vertical post
        px = rng.uniform(x1, x2)
        pw = max(2.0, w * rng.uniform(0.08, 0.18))
        d.rectangle([px - pw / 2, y1 - h * 0.3, px + pw / 2, y2 + 2], fill=_jitter_colour(rng, (120, 110, 100), 20))
        return [px - pw / 2, y1 - h * 0.3, px + pw / 2, y2 + 2]
    s = max(4.0, min(w, h) * rng.uniform(0.3, 0.45))  # a crate-like block
    bx = rng.uniform(x1, x2 - s * 0.5)
    d.rectangle([bx, y2 - s, bx + s, y2], fill=_jitter_colour(rng, (100, 100, 110), 25), outline=(40, 40, 40))
    return [bx, y2 - s, bx + s, y2]


def draw_entities(d: ImageDraw.ImageDraw, ents: list[Entity]) -> None:
    for e in ents:
        if e.joints is not None:
            draw_person(d, e)
        else:
            draw_object(d, e)


def all_concepts_drawable(size: int = 64) -> list[str]:
    """Draw every concept once (a self-check used by the tests); returns the styles drawn."""
    im = Image.new("RGB", (size, size))
    d = ImageDraw.Draw(im)
    rng = np.random.default_rng(0)
    out = []
    for c in CONCEPTS:
        if c.kind == "person":
            draw_person(d, make_person(c, "stand", size / 2, size - 2, size * 0.8, 1, rng))
        else:
            draw_object(d, make_object(c, [8, 8, size - 8, size - 8], 1, rng))
        out.append(c.style)
    return out


# --------------------------------------------------------------------------------------------------- scenes

@dataclass
class Nuisance:
    """Nuisance factors of a scene (so that no single cue gives the verb away).

    Attributes:
        scale: agent height as a fraction of the image size (uniform range).
        pose_jitter: std of joint jitter in figure heights.
        distractor_p: probability of an extra person not in the frame (and half of it for an extra object).
        occlusion_p: probability of a foreground occluder over one role's box.
        clutter: range of the number of small background shapes.
        cue_drop_p: probability that the verb's motion cue is not drawn.
        false_cue_p: probability of an extra, unrelated motion cue.
        novel_distractor_p: probability of an unlabelled distractor showing a *novel* primitive (a pose or relation
            that only unseen-novel verbs show: a person lying or kneeling, or a small person under / inside an
            object), as in real photos where background people do things no label names. 0 (the ``v1`` world)
            draws nothing more from the generator, so images stay byte-identical.
    """

    scale: tuple[float, float] = (0.38, 0.6)
    pose_jitter: float = 0.025
    distractor_p: float = 0.45
    occlusion_p: float = 0.25
    clutter: tuple[int, int] = (3, 14)
    cue_drop_p: float = 0.1
    false_cue_p: float = 0.08
    novel_distractor_p: float = 0.0


MOTION_CUES = ("speed_lines", "arrow_up", "arrow_down", "arc", "dust", "sparks", "steam")


def _fit(grp: Group, size: int, rng: np.random.Generator, margin: float = 2.0,
         x_range: Optional[tuple[float, float]] = None) -> None:
    b = grp.bbox()
    w, h = b[2] - b[0], b[3] - b[1]
    lo, hi = x_range if x_range else (margin, size - margin)
    s = min(1.0, (hi - lo) / max(w, 1e-6), (size - 2 * margin) / max(h, 1e-6))
    if s < 1.0:
        grp.scale(s, 0.0, 0.0)
        b = grp.bbox()
        w, h = b[2] - b[0], b[3] - b[1]
    x = rng.uniform(lo, max(lo, hi - w))
    y_lo = max(margin, size * 0.35 - h * 0.2)
    y = rng.uniform(min(y_lo, size - margin - h), size - margin - h)
    grp.shift(x - b[0], y - b[1])


def _add_false_cue(grp: Group, size: int, rng: np.random.Generator) -> None:
    kind = MOTION_CUES[rng.integers(len(MOTION_CUES))]
    x, y = rng.uniform(10, size - 10, 2)
    if kind == "arc":
        pts = [[x, y], [x + rng.normal(0, 15), y - 15], [x + rng.normal(0, 25), y + rng.normal(0, 10)]]
    else:
        pts = [[x, y]]
    grp.cues.append(Cue(kind, pts, size * 0.08 if kind != "arc" else 1.5, int(rng.choice([-1, 1]))))


def _distractors(size: int, rng: np.random.Generator, nz: Nuisance, exclude: set[str], height: float,
                 horizon: float) -> list[Entity]:
    out = []
    if rng.random() < nz.distractor_p:
        people = [c for c in CONCEPTS if c.kind == "person"]
        c = people[rng.integers(len(people))]
        h = height * rng.uniform(0.45, 0.8)
        pose = ("stand", "stride", "arms_forward", "one_arm_up")[rng.integers(4)]
        out.append(make_person(c, pose, rng.uniform(0.05, 0.95) * size, rng.uniform(horizon + h * 0.6, size - 2), h,
                               int(rng.choice([-1, 1])), rng))
    if rng.random() < nz.distractor_p * 0.6:
        cands = [c for c in CONCEPTS if c.kind not in ("person",) and c.name not in exclude and c.size < 1.0]
        c = cands[rng.integers(len(cands))]
        oh = min(c.size * height * rng.uniform(0.5, 0.9), size * 0.3)
        ow = min(oh * c.aspect, size * 0.4)
        cx, bot = rng.uniform(ow / 2, size - ow / 2), rng.uniform(horizon + 4, size - 1)
        out.append(make_object(c, [cx - ow / 2, bot - oh, cx + ow / 2, bot], int(rng.choice([-1, 1])), rng))
    if nz.novel_distractor_p > 0 and rng.random() < nz.novel_distractor_p:
        out += _novel_distractor(size, rng, height, horizon)
    return out


def _novel_distractor(size: int, rng: np.random.Generator, height: float, horizon: float) -> list[Entity]:
    """Entities of one unlabelled distractor showing a novel primitive (``Nuisance.novel_distractor_p``).

    Half the time a lone person in a novel pose (``lie`` / ``kneel``), otherwise a small instance of a novel
    *relation* (``under`` / ``inside``) laid out like the unseen-novel verb that has it, without its motion cue.
    """
    novel = [v for v in VERBS if v.kind == "unseen_novel"]
    trained = [v for v in VERBS if v.kind in ("seen", "rare")]
    poses = sorted({v.pose for v in novel} - {v.pose for v in trained})
    rel_verbs = [v for v in novel if all(v.relation != t.relation for t in trained)]
    h = height * rng.uniform(0.45, 0.7)
    facing = int(rng.choice([-1, 1]))
    if not rel_verbs or rng.random() < 0.5:
        c = CONCEPT_BY_NAME[PEOPLE[rng.integers(len(PEOPLE))]]
        pose = poses[rng.integers(len(poses))]
        return [make_person(c, pose, rng.uniform(0.1, 0.9) * size, rng.uniform(horizon + h * 0.4, size - 2), h,
                            facing, rng)]
    verb = rel_verbs[rng.integers(len(rel_verbs))]
    nouns = {"agent": PEOPLE[rng.integers(len(PEOPLE))]}
    opts = verb.fillers[verb.main_role]
    nouns[verb.main_role] = str(opts[rng.integers(len(opts))])
    grp = layout_group(verb, nouns, h, facing, rng)
    grp.cues = []
    b = grp.bbox()
    s = min(1.0, size * 0.45 / max(b[2] - b[0], 1e-6), size * 0.45 / max(b[3] - b[1], 1e-6))
    grp.scale(s, 0.0, 0.0)
    b = grp.bbox()
    x = rng.uniform(0, max(1.0, size - (b[2] - b[0])))
    y = rng.uniform(min(horizon, size - (b[3] - b[1])), max(horizon, size - (b[3] - b[1])))
    grp.shift(x - b[0], y - b[1])
    for e in grp.entities:
        e.role = ""
    return grp.all()


def _clip(box: list[float], size: int) -> list[float]:
    return [round(float(np.clip(v, 0, size)), 1) for v in box]


def _paint(img: Image.Image, groups: list[Group], distract: list[Entity], size: int, rng: np.random.Generator,
           nz: Nuisance, horizon: float) -> Optional[tuple[int, str]]:
    """Paint the scene; returns ``(group index, role)`` of the entity behind the occluder, or ``None``."""
    d = ImageDraw.Draw(img)
    clutter(d, size, rng, int(rng.integers(nz.clutter[0], nz.clutter[1] + 1)), horizon)
    draw_entities(d, distract)
    for grp in groups:
        draw_entities(d, grp.props)
        draw_entities(d, grp.entities)
        for c in grp.cues:
            draw_cue(d, c, rng)
    if rng.random() < nz.occlusion_p:
        ents = [(k, e) for k, grp in enumerate(groups) for e in grp.entities]
        k, e = ents[rng.integers(len(ents))]
        occluder(d, e.box, rng)
        return k, e.role
    return None


def _motion_cues(grp: Group) -> list[str]:
    """Kinds of the motion cues drawn for a group (connecting ropes / lines are not motion cues)."""
    return sorted({c.kind for c in grp.cues if c.kind not in ("rope", "line")})


def scene_record(instances: list[tuple[Verb, Group, bool]], place: str, false_cue: Optional[str],
                 distract: list[Entity], occluded: Optional[tuple[int, str]]) -> dict:
    """What was drawn in one image (the ground truth a captioner's description is measured against).

    Args:
        instances: per verb instance, ``(verb, laid-out group, whether the verb's motion cue was dropped)``.
        place: the background place.
        false_cue: kind of the unrelated extra motion cue, or ``None``.
        distract: distractor entities (people and objects outside any frame).
        occluded: ``(instance index, role)`` behind the foreground occluder, or ``None``.

    Returns:
        ``{"place", "instances": [{"verb", "pose", "relation", "motion", "motion_drawn", "objects": {role: concept},
        "poses": {role: pose}}], "cues": [drawn motion cue kinds], "false_cue", "distractors": [{"concept", "kind",
        "pose"}], "occluded": {"instance", "role"} | None}``. ``motion`` is the verb's cue (``"none"`` if it has
        none); ``motion_drawn`` is false when it has one and the nuisance dropped it.
    """
    inst = []
    for verb, grp, dropped in instances:
        by_role = {e.role: e for e in grp.entities}
        inst.append({"verb": verb.name, "pose": by_role["agent"].pose, "relation": verb.relation,
                     "motion": verb.motion, "motion_drawn": verb.motion != "none" and not dropped,
                     "objects": {r: by_role[r].concept.name for r in verb.roles if r in by_role},
                     "poses": {r: by_role[r].pose for r in verb.roles if r in by_role and by_role[r].pose}})
    cues = sorted({k for _, grp, _ in instances for k in _motion_cues(grp)})
    return {"place": place, "instances": inst, "cues": cues, "false_cue": false_cue,
            "distractors": [{"concept": e.concept.name, "kind": e.concept.kind, "pose": e.pose or None}
                            for e in distract],
            "occluded": None if occluded is None else {"instance": occluded[0], "role": occluded[1]}}


def render_gsr(verb: Verb, nouns: dict[str, str], place: str, size: int, rng: np.random.Generator,
               nz: Optional[Nuisance] = None,
               record: Optional[dict] = None) -> tuple[Image.Image, dict[str, list[float]]]:
    """Render one GSR scene of ``verb``; returns the image and role -> box for every drawn role (not place).

    Args:
        verb: the verb.
        nouns: role -> canonical concept (absent roles missing or ``""``).
        place: place name (background).
        size: image side in pixels.
        rng: random generator (the image is a pure function of its state).
        nz: nuisance factors.
        record: when given, filled with :func:`scene_record` of the image (no effect on the drawing).
    """
    nz = nz or Nuisance()
    H = rng.uniform(*nz.scale) * size
    facing = int(rng.choice([-1, 1]))
    grp = layout_group(verb, nouns, H, facing, rng, nz.pose_jitter)
    dropped = False
    if rng.random() < nz.cue_drop_p:
        grp.cues = [c for c in grp.cues if c.kind in ("rope", "line")]
        dropped = True
    _fit(grp, size, rng)
    false_cue = None
    if rng.random() < nz.false_cue_p:
        _add_false_cue(grp, size, rng)
        false_cue = grp.cues[-1].kind
    ground = max(e.box[3] for e in grp.entities)
    horizon = min(rng.uniform(0.3, 0.55) * size, ground - 0.15 * H)
    img = background(place, size, rng, horizon)
    distract = _distractors(size, rng, nz, set(nouns.values()), H, horizon)
    occluded = _paint(img, [grp], distract, size, rng, nz, horizon)
    if record is not None:
        record.update(scene_record([(verb, grp, dropped)], place, false_cue, distract, occluded))
    return img, {e.role: _clip(e.box, size) for e in grp.entities}


def render_hoi(instances: list[tuple[Verb, dict[str, str]]], place: str, size: int, rng: np.random.Generator,
               nz: Optional[Nuisance] = None,
               record: Optional[dict] = None) -> tuple[Image.Image, list[tuple[list[float], list[float]]]]:
    """Render several people each interacting with one object, side by side.

    ``record``, when given, is filled with :func:`scene_record` of the image (no effect on the drawing).

    Returns:
        the image and, per instance, ``(human box, object box)``.
    """
    nz = nz or Nuisance()
    n = len(instances)
    H = rng.uniform(0.26, 0.4) * size
    groups, dropped = [], []
    slot = (size - 4) / n
    for k, (verb, nouns) in enumerate(instances):
        grp = layout_group(verb, nouns, H * rng.uniform(0.85, 1.15), int(rng.choice([-1, 1])), rng, nz.pose_jitter)
        dropped.append(False)
        if rng.random() < nz.cue_drop_p:
            grp.cues = [c for c in grp.cues if c.kind in ("rope", "line")]
            dropped[-1] = True
        lo = 2 + k * slot
        _fit(grp, size, rng, x_range=(lo, lo + slot))
        groups.append(grp)
    ground = max(e.box[3] for g in groups for e in g.entities)
    horizon = min(rng.uniform(0.25, 0.45) * size, ground - 0.2 * H)
    img = background(place, size, rng, horizon)
    used = {v for _, nouns in instances for v in nouns.values()}
    distract = _distractors(size, rng, Nuisance(distractor_p=nz.distractor_p * 0.5), used, H, horizon)
    occluded = _paint(img, groups, distract, size, rng, nz, horizon)
    if record is not None:
        record.update(scene_record([(v, g, dr) for (v, _), g, dr in zip(instances, groups, dropped)], place, None,
                                   distract, occluded))
    out = []
    for (verb, _), grp in zip(instances, groups):
        by_role = {e.role: e for e in grp.entities}
        out.append((_clip(by_role["agent"].box, size), _clip(by_role[verb.main_role].box, size)))
    return img, out
