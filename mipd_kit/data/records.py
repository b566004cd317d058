"""Typed records shared by every stage (no pandas in the core records).

GSR side follows SWiG / imSitu (Pratt et al., ECCV 2020; Yatskar et al., CVPR 2016); HOI side follows
HICO-DET (Chao et al., WACV 2018) and V-COCO (Gupta & Malik, 2015).

Boxes are always ``(x1, y1, x2, y2)`` floats in pixel coordinates of the original image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from mipd_kit.fileio import DataError  # noqa: F401  (defined in the lowest layer; imported from here everywhere)

Box = tuple[float, float, float, float]



@dataclass(frozen=True)
class VerbDef:
    """One verb of a frame space.

    Attributes:
        name: verb id, e.g. ``"riding"``.
        abstract: template such as ``"AGENT rides VEHICLE at PLACE"`` (imSitu ``abstract``).
        definition: dictionary definition (imSitu ``def``).
        roles: ordered role names (imSitu ``order``).
        role_defs: role -> definition.
        framenet: FrameNet frame name, ``""`` when unknown.
        role_framenet: role -> FrameNet frame element (imSitu ``roles[role].framenet``), may be empty.
    """

    name: str
    abstract: str
    definition: str
    roles: tuple[str, ...]
    role_defs: dict[str, str] = field(default_factory=dict)
    framenet: str = ""
    role_framenet: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NounDef:
    """One noun (WordNet synset id in imSitu, any id in SynthSitu) with its glosses."""

    id: str
    gloss: tuple[str, ...]
    definition: str = ""

    @property
    def name(self) -> str:
        """First gloss, or the id when there is none."""
        return self.gloss[0] if self.gloss else self.id


@dataclass
class FrameSpace:
    """Verbs with their ordered roles, and nouns with glosses (imSitu ``imsitu_space.json``)."""

    verbs: dict[str, VerbDef]
    nouns: dict[str, NounDef]
    source: str = ""

    def roles(self, verb: str) -> tuple[str, ...]:
        return self.verbs[verb].roles

    def noun_name(self, noun: str) -> str:
        """Human-readable name of a noun id; the empty noun is ``""``."""
        if noun == "":
            return ""
        n = self.nouns.get(noun)
        return n.name if n is not None else noun


@dataclass(frozen=True)
class Situation:
    """One annotated SWiG / imSitu image.

    Attributes:
        image: file name, e.g. ``"riding_12.jpg"``.
        verb: the annotated verb.
        width, height: image size in pixels (0 when unknown, as in plain imSitu).
        boxes: role -> box, or ``None`` when the role has no box (SWiG ``[-1,-1,-1,-1]``);
            empty dict for imSitu annotations without boxes.
        frames: the annotators' frames (3 in SWiG), each role -> noun id (``""`` is the empty noun).
    """

    image: str
    verb: str
    width: int
    height: int
    boxes: dict[str, Optional[Box]]
    frames: tuple[dict[str, str], ...]


@dataclass
class HOIImage:
    """One HICO-DET / V-COCO style image with its human-object pairs (one entry per annotated pair).

    ``boxes_h[i]``, ``boxes_o[i]``, ``hoi[i]``, ``object[i]``, ``verb[i]`` describe pair ``i``.
    Class indices are 0-based in the HICO-DET instance format's vocabularies.
    """

    filename: str
    width: int
    height: int
    boxes_h: list[Box]
    boxes_o: list[Box]
    hoi: list[int]
    object: list[int]
    verb: list[int]


@dataclass
class HOIVocab:
    """Objects, verbs and HOI classes (``correspondence[k] = (hoi, object, verb)``) with rare/non-rare."""

    objects: list[str]
    verbs: list[str]
    correspondence: list[tuple[int, int, int]]
    rare: list[int]
    non_rare: list[int]

    @property
    def num_hoi(self) -> int:
        return len(self.correspondence)
