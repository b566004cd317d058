"""SWiG / imSitu readers and writers (Pratt et al., "Grounded Situation Recognition", ECCV 2020;
Yatskar et al., "Situation Recognition", CVPR 2016).

Formats (exact, both read and written here):

* ``imsitu_space.json``::

    {"nouns": {synset: {"gloss": [str, ...], "def": str}},
     "verbs": {verb: {"framenet": str, "abstract": str, "def": str, "order": [role, ...],
                      "roles": {role: {"framenet": str, "def": str}}}}}

* SWiG ``train.json`` / ``dev.json`` / ``test.json`` (one entry per image)::

    {"hitchhiking_238.jpg": {"verb": "hitchhiking", "height": 683, "width": 512,
                             "bb": {"place": [-1, -1, -1, -1], "agent": [195, 282, 380, 554]},
                             "frames": [{"place": "n03519981", "agent": "n10287213"}, ... 3 annotators]}}

  ``[-1, -1, -1, -1]`` means "no box"; ``""`` in a frame is the empty noun (a value like any other).
  Plain imSitu files (e.g. CLIPSitu's ``debug.json``) have only ``verb`` and ``frames``; they load as
  :class:`Situation` with ``width = height = 0`` and ``boxes = {}``.

When ``imsitu_space.json`` is absent, :func:`load_frame_space_from_imsitu_lists` builds a reduced
:class:`FrameSpace` from the small imSitu id lists (see its docstring for what is missing).
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from mipd_kit.data.records import Box, DataError, FrameSpace, NounDef, Situation, VerbDef
from mipd_kit.fileio import atomic_open
from mipd_kit.fileio import read_json as _strict_read_json

#: SWiG's marker for a role without a box.
NO_BOX = (-1, -1, -1, -1)

#: Paths of the small imSitu / SWiG lists below the shared data folder (``owner__repo/path``).
IMSITU_LISTS = {
    "verb_id": "my89__imSitu/evaluation/verb_id.tab",
    "role_id": "my89__imSitu/evaluation/role_id.tab",
    "noun_id": "my89__imSitu/evaluation/noun_id.tab",
    "noun_gloss": "my89__imSitu/evaluation/noun_1gloss.tab",
    "templates": "my89__imSitu/simple_sentence_realization/generation_templates.tab",
    "swig_verbs": "allenai__swig/global_utils/verb_indices.txt",
    "swig_roles": "jhcho99__CoFormer/SWiG/SWiG_jsons/role_indices.txt",
}

_ROLE_TOKEN = re.compile(r"\b[A-Z][A-Z0-9]+")


# --------------------------------------------------------------------------------------------- JSON


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, refusing malformed or truncated files, binary files and duplicated keys.

    Raises:
        DataError: naming the file (and line/column for syntax errors). (:func:`mipd_kit.fileio.read_json`.)
    """
    return _strict_read_json(path)


def _write_json_atomic(path: str | os.PathLike, obj: Any, indent: Optional[int] = None) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(p) as f:
        json.dump(obj, f, indent=indent, ensure_ascii=False)
        f.write("\n")


# --------------------------------------------------------------------------------------- frame space


def _str(x: Any, where: str) -> str:
    if not isinstance(x, str):
        raise DataError(f"{where}: expected a string, got {type(x).__name__}")
    return x


def load_frame_space(path: str | os.PathLike) -> FrameSpace:
    """Read SWiG / imSitu ``imsitu_space.json`` into a :class:`FrameSpace`.

    Raises:
        DataError: malformed JSON, missing ``nouns``/``verbs``/``order``, or a role in ``order`` without an entry
            in ``roles`` (naming the file and verb).
    """
    p = Path(path)
    data = read_json(p)
    if not isinstance(data, dict) or "verbs" not in data or "nouns" not in data:
        raise DataError(f"{p}: an imsitu_space file needs top-level keys 'verbs' and 'nouns'")
    if not isinstance(data["verbs"], dict) or not isinstance(data["nouns"], dict):
        raise DataError(f"{p}: 'verbs' and 'nouns' must be objects keyed by verb / noun id")
    nouns: dict[str, NounDef] = {}
    for nid, nd in data["nouns"].items():
        where = f"{p}: noun {nid!r}"
        if not isinstance(nd, dict):
            raise DataError(f"{where}: expected an object")
        gloss = nd.get("gloss", [])
        if not isinstance(gloss, list):
            raise DataError(f"{where}: 'gloss' must be a list")
        nouns[nid] = NounDef(nid, tuple(_str(g, where) for g in gloss), _str(nd.get("def") or "", where))
    verbs: dict[str, VerbDef] = {}
    for v, vd in data["verbs"].items():
        where = f"{p}: verb {v!r}"
        if not isinstance(vd, dict):
            raise DataError(f"{where}: expected an object")
        if "order" not in vd:
            raise DataError(f"{where}: missing key 'order'")
        order = tuple(_str(r, where) for r in vd["order"])
        if len(set(order)) != len(order):
            raise DataError(f"{where}: repeated role in 'order' {list(order)}")
        roles = vd.get("roles", {})
        if not isinstance(roles, dict):
            raise DataError(f"{where}: 'roles' must be an object")
        missing = [r for r in order if roles and r not in roles]
        if missing:
            raise DataError(f"{where}: roles {missing} in 'order' have no entry in 'roles'")
        extra = [r for r in roles if r not in order]
        if extra:
            raise DataError(f"{where}: roles {extra} in 'roles' are not in 'order' {list(order)}")
        bad = [r for r, rd in roles.items() if not isinstance(rd, dict)]
        if bad:
            raise DataError(f"{where}: role entries {bad} must be objects {{'framenet': str, 'def': str}}")
        verbs[v] = VerbDef(
            name=v,
            abstract=_str(vd.get("abstract") or "", where),
            definition=_str(vd.get("def") or "", where),
            roles=order,
            role_defs={r: d for r in order if r in roles and (d := _str(roles[r].get("def") or "", where))},
            framenet=_str(vd.get("framenet") or "", where),
            role_framenet={r: f for r in order if r in roles and (f := _str(roles[r].get("framenet") or "", where))},
        )
    return FrameSpace(verbs=verbs, nouns=nouns, source=str(p))


def frame_space_to_json(space: FrameSpace) -> dict:
    """The exact ``imsitu_space.json`` object of a frame space."""
    return {
        "nouns": {n.id: {"gloss": list(n.gloss), "def": n.definition} for n in space.nouns.values()},
        "verbs": {
            v.name: {
                "framenet": v.framenet,
                "abstract": v.abstract,
                "def": v.definition,
                "order": list(v.roles),
                "roles": {r: {"framenet": v.role_framenet.get(r, ""), "def": v.role_defs.get(r, "")}
                          for r in v.roles},
            }
            for v in space.verbs.values()
        },
    }


def write_frame_space(path: str | os.PathLike, space: FrameSpace) -> None:
    """Write ``imsitu_space.json`` (exact schema) atomically."""
    _write_json_atomic(path, frame_space_to_json(space))


def _read_tab(path: Path, ncols: int) -> list[list[str]]:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    rows = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < ncols:
                raise DataError(f"{path}: line {i} has {len(parts)} tab-separated fields, expected {ncols}")
            rows.append(parts)
    return rows


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def template_roles(template: str) -> list[str]:
    """Role names of an imSitu sentence template, in order: ``"AGENT presses ITEM at PLACE"`` -> agent, item, place.

    A lower-case suffix is the sentence's plural, not part of the role: ``"ITEMs"`` -> ``item``.
    """
    out: list[str] = []
    for tok in _ROLE_TOKEN.findall(template):
        r = tok.lower()
        if r not in out:
            out.append(r)
    return out


def load_frame_space_from_imsitu_lists(shared_data_dir: str | os.PathLike) -> FrameSpace:
    """Build a reduced :class:`FrameSpace` from the small imSitu lists (when ``imsitu_space.json`` is absent).

    Sources (below ``shared_data_dir``, see :data:`IMSITU_LISTS`): verbs from ``verb_id.tab`` (imSitu index
    order), roles from ``role_id.tab``, nouns from ``noun_id.tab`` with their first WordNet gloss from
    ``noun_1gloss.tab``; each verb's ``abstract`` and role order from its sentence template in
    ``generation_templates.tab`` (the upper-case tokens). SWiG's ``verb_indices.txt`` / ``role_indices.txt``
    are cross-checked when present.

    What is missing compared with ``imsitu_space.json`` (left empty): verb definitions, FrameNet frames and
    frame elements, role definitions, noun definitions and all glosses but the first. Role order is the
    template's order, which need not equal imSitu's ``order``; template tokens that are not imSitu roles
    (4 verbs: ``placing`` ALREADYPLACEDITEM, ``racing`` COMPETITOR, ``talking`` MANNER, ``voting`` VOTEFOR)
    are dropped, and a template may omit a role the annotations use. The dropped tokens are listed in
    ``FrameSpace.source``. Use the real ``imsitu_space.json`` for exact frames.

    Raises:
        DataError: a list is missing or malformed, a verb has no template, or the SWiG lists disagree.
    """
    d = Path(shared_data_dir)
    files = {k: d / v for k, v in IMSITU_LISTS.items()}
    verbs_order = [r[1].strip() for r in _read_tab(files["verb_id"], 2)]
    role_set = {r[1].strip() for r in _read_tab(files["role_id"], 2)}
    noun_ids = [r[1].strip() for r in _read_tab(files["noun_id"], 2)]
    gloss: dict[str, str] = {}
    if files["noun_gloss"].exists():
        for r in _read_tab(files["noun_gloss"], 2):
            gloss.setdefault(r[0].strip(), r[1].strip())
    templates: dict[str, str] = {}
    for r in _read_tab(files["templates"], 2):
        templates.setdefault(r[0].strip(), r[1].strip())
    if files["swig_verbs"].exists():
        sv = set(_read_lines(files["swig_verbs"]))
        if sv != set(verbs_order):
            raise DataError(f"{files['swig_verbs']}: SWiG verbs differ from {files['verb_id']} "
                            f"({len(sv ^ set(verbs_order))} differences)")
    if files["swig_roles"].exists():
        sr = set(_read_lines(files["swig_roles"]))
        if sr != role_set:
            raise DataError(f"{files['swig_roles']}: SWiG roles differ from {files['role_id']} "
                            f"({sorted(sr ^ role_set)[:5]} ...)")
    verbs: dict[str, VerbDef] = {}
    dropped: list[str] = []
    for v in verbs_order:
        if v not in templates:
            raise DataError(f"{files['templates']}: no sentence template for imSitu verb {v!r}")
        t = templates[v]
        roles = template_roles(t)
        bad = [r for r in roles if r not in role_set]
        if bad:
            dropped.append(f"{v}:{','.join(bad)}")
        roles = [r for r in roles if r in role_set]
        if not roles:
            raise DataError(f"{files['templates']}: template of {v!r} names no imSitu role: {t!r}")
        verbs[v] = VerbDef(name=v, abstract=t, definition="", roles=tuple(roles))
    nouns = {n: NounDef(n, (gloss[n],) if n in gloss else (), "") for n in noun_ids}
    source = (f"imsitu-lists:{d} (no verb/role/noun definitions, no FrameNet, first gloss only, "
              f"role order from templates; dropped non-role template tokens: {' '.join(dropped) or 'none'})")
    return FrameSpace(verbs=verbs, nouns=nouns, source=source)


# ----------------------------------------------------------------------------------------- situations


def _parse_box(raw: Any, where: str, width: int, height: int, slack: float) -> Optional[Box]:
    if raw is None:
        return None
    if not isinstance(raw, (list, tuple)) or len(raw) != 4 or not all(
            isinstance(c, (int, float)) and not isinstance(c, bool) for c in raw):
        raise DataError(f"{where}: a box must be 4 numbers [x1, y1, x2, y2] or [-1, -1, -1, -1], got {raw!r}")
    if tuple(raw) == NO_BOX:
        return None
    x1, y1, x2, y2 = (float(c) for c in raw)
    if x2 < x1 or y2 < y1:
        raise DataError(f"{where}: box {list(raw)} has x2 < x1 or y2 < y1")
    if width > 0 and height > 0 and (x1 < -slack or y1 < -slack or x2 > width + slack or y2 > height + slack):
        raise DataError(f"{where}: box {list(raw)} lies outside the {width}x{height} image")
    return (x1, y1, x2, y2)


def parse_situation(image: str, rec: Any, where: str, space: Optional[FrameSpace] = None,
                    box_slack: float = 1.0) -> Situation:
    """Validate one SWiG / imSitu record and turn it into a :class:`Situation`.

    Args:
        image: the record's key (image file name).
        rec: the record (``verb``, ``frames``, optionally ``height``, ``width``, ``bb``).
        where: file name used in error messages.
        space: when given, verb, roles and nouns must belong to it and frames must use the verb's roles.
        box_slack: pixels a box may stick out of the image before it is an error.

    Raises:
        DataError: naming the file and the image.
    """
    w = f"{where}: image {image!r}"
    if not isinstance(rec, dict):
        raise DataError(f"{w}: expected an object, got {type(rec).__name__}")
    for k in ("verb", "frames"):
        if k not in rec:
            raise DataError(f"{w}: missing key {k!r}")
    verb = rec["verb"]
    if not isinstance(verb, str) or not verb:
        raise DataError(f"{w}: 'verb' must be a non-empty string")
    order: Optional[tuple[str, ...]] = None
    if space is not None:
        if verb not in space.verbs:
            raise DataError(f"{w}: unknown verb {verb!r} (not in frame space {space.source or '?'})")
        order = space.verbs[verb].roles
    frames_raw = rec["frames"]
    if not isinstance(frames_raw, list) or not frames_raw:
        raise DataError(f"{w}: 'frames' must be a non-empty list of role -> noun objects")
    frames: list[dict[str, str]] = []
    roles0: Optional[set] = None
    for i, fr in enumerate(frames_raw):
        if not isinstance(fr, dict):
            raise DataError(f"{w}: frame {i} is not an object")
        for r, n in fr.items():
            if not isinstance(n, str):
                raise DataError(f"{w}: frame {i} role {r!r}: noun must be a string ('' is the empty noun), got {n!r}")
        if order is not None:
            extra = [r for r in fr if r not in order]
            if extra:
                raise DataError(f"{w}: frame {i} has roles {extra} not in the order of {verb!r} {list(order)}")
            miss = [r for r in order if r not in fr]
            if miss:
                raise DataError(f"{w}: frame {i} lacks roles {miss} of {verb!r}")
            for r, n in fr.items():
                if n and n not in space.nouns:  # type: ignore[union-attr]
                    raise DataError(f"{w}: frame {i} role {r!r}: unknown noun {n!r}")
        elif roles0 is None:
            roles0 = set(fr)
        elif set(fr) != roles0:
            raise DataError(f"{w}: frame {i} has roles {sorted(fr)}, frame 0 has {sorted(roles0)}")
        frames.append(dict(fr))
    roles = list(order) if order is not None else list(frames[0])
    width = rec.get("width", 0)
    height = rec.get("height", 0)
    for k, val in (("width", width), ("height", height)):
        if not isinstance(val, int) or isinstance(val, bool) or val < 0:
            raise DataError(f"{w}: {k!r} must be a non-negative integer, got {val!r}")
    boxes: dict[str, Optional[Box]] = {}
    if "bb" in rec:
        bb = rec["bb"]
        if not isinstance(bb, dict):
            raise DataError(f"{w}: 'bb' must be an object role -> box")
        if width <= 0 or height <= 0:
            raise DataError(f"{w}: has 'bb' but no positive 'width' and 'height'")
        extra = [r for r in bb if r not in roles]
        if extra:
            raise DataError(f"{w}: 'bb' has roles {extra} not in the frame roles {roles}")
        miss = [r for r in roles if r not in bb]
        if miss:
            raise DataError(f"{w}: 'bb' lacks roles {miss} (use [-1, -1, -1, -1] for no box)")
        for r in roles:
            boxes[r] = _parse_box(bb[r], f"{w} role {r!r}", width, height, box_slack)
    return Situation(image=image, verb=verb, width=width, height=height, boxes=boxes, frames=tuple(frames))


def load_situations(path: str | os.PathLike, space: Optional[FrameSpace] = None,
                    box_slack: float = 1.0) -> dict[str, Situation]:
    """Read SWiG ``train/dev/test.json`` or a plain imSitu JSON (no boxes) into ``{image: Situation}``.

    Args:
        path: the JSON file (one entry per image).
        space: optional frame space to validate verbs, roles and nouns against.
        box_slack: pixels a box may stick out of the image (rounding in the annotations) before it is an error.

    Raises:
        DataError: malformed / truncated JSON, duplicated images, missing keys, unknown verb/role/noun,
            or a bad box, naming the file and the image.
    """
    p = Path(path)
    data = read_json(p)
    if not isinstance(data, dict):
        raise DataError(f"{p}: expected an object image -> annotation, got {type(data).__name__}")
    return {img: parse_situation(img, rec, str(p), space, box_slack) for img, rec in data.items()}


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else float(x)


def situation_to_json(s: Situation) -> dict:
    """The SWiG (or, without boxes and size, plain imSitu) record of one situation."""
    out: dict[str, Any] = {"verb": s.verb}
    if s.boxes or s.width or s.height:
        out["height"] = s.height
        out["width"] = s.width
    if s.boxes:
        out["bb"] = {r: list(NO_BOX) if b is None else [_num(c) for c in b] for r, b in s.boxes.items()}
    out["frames"] = [dict(f) for f in s.frames]
    return out


def write_situations(path: str | os.PathLike, situations: Mapping[str, Situation] | Iterable[Situation]) -> None:
    """Write situations in the exact SWiG schema (atomically); integral coordinates are written as ints.

    Raises:
        DataError: two situations for the same image.
    """
    items = situations.values() if isinstance(situations, Mapping) else situations
    out: dict[str, dict] = {}
    for s in items:
        if s.image in out:
            raise DataError(f"{path}: duplicated image {s.image!r}")
        out[s.image] = situation_to_json(s)
    _write_json_atomic(path, out)


def verb_counts(situations: Mapping[str, Situation]) -> dict[str, int]:
    """Number of images per verb (e.g. training counts for :meth:`OvSplit.from_counts`)."""
    c: dict[str, int] = {}
    for s in situations.values():
        c[s.verb] = c.get(s.verb, 0) + 1
    return c


def read_index_list(path: str | os.PathLike) -> list[str]:
    """One name per line (SWiG ``verb_indices.txt``, ``role_indices.txt``; rowanz ``imsitu_verbs.txt``)."""
    return _read_lines(Path(path))


def read_csv_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    """A CSV file with a header as a list of dicts, with a DataError naming the file on failure."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file not found")
    with open(p, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))
