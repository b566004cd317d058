"""HICO-DET and V-COCO readers and writers, vocabularies and zero-shot splits.

Formats (all JSON):

* **HICO-DET instance format** (fredzzhang/hicodet ``instances_{train,test}2015.json``; also what SynthSitu writes)::

      {"annotation": [{"boxes_h": [[x1,y1,x2,y2],..], "boxes_o": [..], "hoi": [..], "object": [..], "verb": [..]}, ..],
       "filenames": [..], "size": [[w, h], ..], "empty": [image indices without pairs],
       "objects": [80 names], "verbs": [117 names], "correspondence": [[hoi, object, verb], ..600],
       "rare": [HOI indices], "non_rare": [HOI indices]}

  All class indices are 0-based; one entry per annotated human-object pair.
* **QPIC / PPDM format** (``test_hico.json``): a list of
  ``{"file_name", "annotations": [{"bbox", "category_id"}], "hoi_annotation": [{"subject_id", "object_id",
  "category_id"[, "hoi_category_id"]}]}`` with **1-based** verb ids in ``hoi_annotation.category_id`` and **COCO**
  category ids for the boxes (91-id space by default, mapped to HICO's 80 alphabetical object classes by name).
  It carries no vocabulary and no image size, so a vocabulary (an instance file) is given separately.
* **V-COCO** (fredzzhang/vcoco ``instances_vcoco_{train,val,trainval,test}.json``): ``annotations`` (per image
  ``boxes_h``, ``boxes_o``, ``actions`` (index into the 24 action-role ``classes``), ``objects`` (index into the 81
  COCO names with ``background`` first), ``file_name``), ``classes``, ``objects``, ``images`` (COCO ids),
  ``action_to_object``.
* **Zero-shot splits** (gen-vlkt ``text_labels_and_zero_shot_splits.json``, HOICLIP ``hico_unseen_index.json``,
  SynthSitu ``hoi_zero_shot.json``): ``{"hico_unseen_index": {name: [0-based HOI indices]}}`` or a flat
  ``{name: [...]}``. Names: ``rare_first`` (RF-UC), ``non_rare_first`` (NF-UC), ``unseen_object`` (UO),
  ``unseen_verb`` (UV), ``uc0``..``uc4`` (HOICLIP).

Every malformed input raises :class:`~mipd_kit.data.records.DataError` naming the file and the record.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from mipd_kit.data.records import Box, DataError, HOIImage, HOIVocab
from mipd_kit.fileio import atomic_write_text

INSTANCE_KEYS = ("annotation", "filenames", "size", "objects", "verbs", "correspondence")
PAIR_KEYS = ("boxes_h", "boxes_o", "hoi", "object", "verb")
ZERO_SHOT_ALIASES = {
    "rf-uc": "rare_first", "rf_uc": "rare_first", "nf-uc": "non_rare_first", "nf_uc": "non_rare_first",
    "uo": "unseen_object", "uv": "unseen_verb",
}
#: rare HOIs have fewer than this many training instances (HICO-DET, Chao et al. 2018)
RARE_THRESHOLD = 10

#: COCO 2017 category ids (91-id space) and names of the 80 detection classes, in COCO order.
COCO_CATEGORIES: tuple[tuple[int, str], ...] = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"), (7, "train"),
    (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"), (13, "stop sign"), (14, "parking meter"),
    (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"), (19, "horse"), (20, "sheep"), (21, "cow"),
    (22, "elephant"), (23, "bear"), (24, "zebra"), (25, "giraffe"), (27, "backpack"), (28, "umbrella"),
    (31, "handbag"), (32, "tie"), (33, "suitcase"), (34, "frisbee"), (35, "skis"), (36, "snowboard"),
    (37, "sports ball"), (38, "kite"), (39, "baseball bat"), (40, "baseball glove"), (41, "skateboard"),
    (42, "surfboard"), (43, "tennis racket"), (44, "bottle"), (46, "wine glass"), (47, "cup"), (48, "fork"),
    (49, "knife"), (50, "spoon"), (51, "bowl"), (52, "banana"), (53, "apple"), (54, "sandwich"), (55, "orange"),
    (56, "broccoli"), (57, "carrot"), (58, "hot dog"), (59, "pizza"), (60, "donut"), (61, "cake"), (62, "chair"),
    (63, "couch"), (64, "potted plant"), (65, "bed"), (67, "dining table"), (70, "toilet"), (72, "tv"),
    (73, "laptop"), (74, "mouse"), (75, "remote"), (76, "keyboard"), (77, "cell phone"), (78, "microwave"),
    (79, "oven"), (80, "toaster"), (81, "sink"), (82, "refrigerator"), (84, "book"), (85, "clock"), (86, "vase"),
    (87, "scissors"), (88, "teddy bear"), (89, "hair drier"), (90, "toothbrush"),
)


# ----------------------------------------------------------------------------------------------- helpers

def _read_json(path: str | os.PathLike) -> Any:
    from mipd_kit.fileio import read_json
    return read_json(path)


def _norm_name(s: str) -> str:
    return s.strip().lower().replace(" ", "_").replace("-", "_")


def check_box(box: Any, where: str, width: float = 0, height: float = 0) -> Box:
    """Validate one ``[x1, y1, x2, y2]`` box and return it as a float tuple.

    ``x2 == x1`` is allowed (a one-pixel box in the +1 convention); ``x2 < x1``, negative coordinates and, when the
    image size is known (non-zero), coordinates beyond it raise :class:`DataError` with ``where`` in the message.
    """
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        raise DataError(f"{where}: box must be [x1, y1, x2, y2], got {box!r}")
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError) as e:
        raise DataError(f"{where}: box has a non-numeric coordinate: {box!r}") from e
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise DataError(f"{where}: box has a non-finite coordinate: {box!r}")
    if x2 < x1 or y2 < y1:
        raise DataError(f"{where}: box has x2 < x1 or y2 < y1: {box!r}")
    eps = 1e-6
    if x1 < -eps or y1 < -eps or (width and x2 > width + eps) or (height and y2 > height + eps):
        raise DataError(f"{where}: box {box!r} lies outside the image (width {width}, height {height})")
    return (x1, y1, x2, y2)


def _int_list(v: Any, where: str) -> list[int]:
    if not isinstance(v, list):
        raise DataError(f"{where}: expected a list of integers, got {type(v).__name__}")
    out = []
    for x in v:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or int(x) != x:
            raise DataError(f"{where}: expected integers, got {x!r}")
        out.append(int(x))
    return out


def vocab_from_dict(d: dict, src: str) -> HOIVocab:
    """Build an :class:`HOIVocab` from the vocabulary keys of an instance file (``objects``, ``verbs``,
    ``correspondence``, optional ``rare``/``non_rare``; when both are absent every HOI is non-rare)."""
    for k in ("objects", "verbs", "correspondence"):
        if k not in d:
            raise DataError(f"{src}: missing key {k!r}")
    objects, verbs = list(d["objects"]), list(d["verbs"])
    corr = []
    for k, c in enumerate(d["correspondence"]):
        if not isinstance(c, (list, tuple)) or len(c) != 3:
            raise DataError(f"{src}: correspondence[{k}] must be [hoi, object, verb], got {c!r}")
        h, o, v = (int(x) for x in c)
        if h != k:
            raise DataError(f"{src}: correspondence[{k}] has HOI index {h} (must equal its position)")
        if not (0 <= o < len(objects)) or not (0 <= v < len(verbs)):
            raise DataError(f"{src}: correspondence[{k}] = {c!r} names an unknown object or verb")
        corr.append((h, o, v))
    if len({(o, v) for _, o, v in corr}) != len(corr):
        raise DataError(f"{src}: correspondence lists an (object, verb) pair twice")
    rare = _int_list(d.get("rare", []), f"{src}: rare")
    non_rare = _int_list(d["non_rare"], f"{src}: non_rare") if "non_rare" in d else \
        [k for k in range(len(corr)) if k not in set(rare)]
    if set(rare) & set(non_rare):
        raise DataError(f"{src}: HOIs {sorted(set(rare) & set(non_rare))[:5]} are both rare and non-rare")
    if any(not 0 <= k < len(corr) for k in rare + non_rare):
        raise DataError(f"{src}: rare/non_rare name an HOI index outside 0..{len(corr) - 1}")
    return HOIVocab(objects, verbs, corr, sorted(rare), sorted(non_rare))


def hoi_lookup(vocab: HOIVocab) -> dict[tuple[int, int], int]:
    """``(object, verb) -> hoi`` index from the correspondence."""
    return {(o, v): h for h, o, v in vocab.correspondence}


# ----------------------------------------------------------------------------------------------- instance format

def load_hico_instances(path: str | os.PathLike) -> tuple[list[HOIImage], HOIVocab]:
    """Read a HICO-DET instance-format file (every image, including those without pairs).

    Checks: all top-level keys present; ``annotation``/``filenames``/``size`` of equal length; per image the five
    pair lists of equal length; boxes valid and inside the image ``size``; ``hoi`` consistent with ``object``/``verb``
    through ``correspondence``; no duplicated file names.
    """
    src = str(path)
    d = _read_json(path)
    if not isinstance(d, dict):
        raise DataError(f"{src}: expected a JSON object with keys {INSTANCE_KEYS}")
    for k in INSTANCE_KEYS:
        if k not in d:
            raise DataError(f"{src}: missing key {k!r}")
    vocab = vocab_from_dict(d, src)
    anns, names, sizes = d["annotation"], d["filenames"], d["size"]
    if not (len(anns) == len(names) == len(sizes)):
        raise DataError(f"{src}: annotation ({len(anns)}), filenames ({len(names)}) and size ({len(sizes)}) "
                        f"must have the same length")
    lookup = hoi_lookup(vocab)
    seen: dict[str, int] = {}
    images = []
    for i, (a, name, size) in enumerate(zip(anns, names, sizes)):
        where = f"{src}: image {i} ({name!r})"
        if not isinstance(name, str) or not name:
            raise DataError(f"{src}: image {i}: file name must be a non-empty string, got {name!r}")
        if name in seen:
            raise DataError(f"{where}: duplicated file name (also image {seen[name]})")
        seen[name] = i
        if not isinstance(size, (list, tuple)) or len(size) != 2:
            raise DataError(f"{where}: size must be [width, height], got {size!r}")
        w, h = size
        if not isinstance(a, dict):
            raise DataError(f"{where}: annotation must be an object")
        for k in PAIR_KEYS:
            if k not in a:
                raise DataError(f"{where}: missing key {k!r}")
        n = len(a["hoi"])
        if any(len(a[k]) != n for k in PAIR_KEYS):
            raise DataError(f"{where}: pair lists have different lengths "
                            f"({', '.join(f'{k}={len(a[k])}' for k in PAIR_KEYS)})")
        hoi = _int_list(a["hoi"], f"{where}: hoi")
        obj = _int_list(a["object"], f"{where}: object")
        verb = _int_list(a["verb"], f"{where}: verb")
        for j, (hh, oo, vv) in enumerate(zip(hoi, obj, verb)):
            if not 0 <= hh < vocab.num_hoi:
                raise DataError(f"{where}: pair {j}: unknown HOI index {hh}")
            if lookup.get((oo, vv)) != hh:
                raise DataError(f"{where}: pair {j}: hoi {hh} does not match object {oo} / verb {vv} "
                                f"(correspondence says {vocab.correspondence[hh]})")
        bh = [check_box(b, f"{where}: pair {j} boxes_h", w, h) for j, b in enumerate(a["boxes_h"])]
        bo = [check_box(b, f"{where}: pair {j} boxes_o", w, h) for j, b in enumerate(a["boxes_o"])]
        images.append(HOIImage(name, int(w), int(h), bh, bo, hoi, obj, verb))
    return images, vocab


def write_hico_instances(path: str | os.PathLike, images: Sequence[HOIImage], vocab: HOIVocab,
                         extra: Optional[dict] = None) -> None:
    """Write images and vocabulary in the HICO-DET instance format (atomically: ``name.tmp`` then rename).

    Args:
        path: output file.
        images: the images, in order (``empty`` lists those without pairs).
        vocab: objects, verbs, correspondence, rare, non_rare.
        extra: additional top-level keys (must not collide with the format's own keys).
    """
    own = {"annotation", "filenames", "size", "empty", "objects", "verbs", "correspondence", "rare", "non_rare"}
    if extra and own & set(extra):
        raise ValueError(f"extra keys {sorted(own & set(extra))} collide with the instance format")
    names = [im.filename for im in images]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DataError(f"{path}: duplicated file name {dup!r} in the images to write")
    lookup = hoi_lookup(vocab)
    for i, im in enumerate(images):           # refuse to write what the reader would reject
        where = f"{path}: image {i} ({im.filename!r})"
        n = len(im.hoi)
        if not (len(im.boxes_h) == len(im.boxes_o) == len(im.object) == len(im.verb) == n):
            raise DataError(f"{where}: pair lists have different lengths")
        for j, (h, o, v) in enumerate(zip(im.hoi, im.object, im.verb)):
            if lookup.get((o, v)) != h:
                raise DataError(f"{where}: pair {j}: hoi {h} does not match object {o} / verb {v}")
        for j, (bh, bo) in enumerate(zip(im.boxes_h, im.boxes_o)):
            check_box(bh, f"{where}: pair {j} boxes_h", im.width, im.height)
            check_box(bo, f"{where}: pair {j} boxes_o", im.width, im.height)
    d = {
        "annotation": [{"boxes_h": [list(map(float, b)) for b in im.boxes_h],
                        "boxes_o": [list(map(float, b)) for b in im.boxes_o],
                        "hoi": list(map(int, im.hoi)), "object": list(map(int, im.object)),
                        "verb": list(map(int, im.verb))} for im in images],
        "filenames": names,
        "size": [[int(im.width), int(im.height)] for im in images],
        "empty": [i for i, im in enumerate(images) if not im.hoi],
        "objects": list(vocab.objects), "verbs": list(vocab.verbs),
        "correspondence": [list(c) for c in vocab.correspondence],
        "rare": list(vocab.rare), "non_rare": list(vocab.non_rare),
    }
    d.update(extra or {})
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(p, json.dumps(d))


def rare_split(train_images: Iterable[HOIImage], num_hoi: int,
               threshold: int = RARE_THRESHOLD) -> tuple[list[int], list[int]]:
    """Rare / non-rare HOIs from training counts: rare = fewer than ``threshold`` training pair instances
    (HICO-DET's rule, ``eval_one.m``: ``num_inst < 10``)."""
    counts = [0] * num_hoi
    for im in train_images:
        for h in im.hoi:
            counts[h] += 1
    rare = [k for k in range(num_hoi) if counts[k] < threshold]
    return rare, [k for k in range(num_hoi) if counts[k] >= threshold]


# ----------------------------------------------------------------------------------------------- QPIC format

def coco_to_hico_objects(vocab: HOIVocab, id_space: str = "coco91") -> dict[int, int]:
    """COCO category id -> HICO object index, matching names (``"baseball bat"`` == ``"baseball_bat"``).

    Args:
        vocab: the HICO vocabulary whose ``objects`` are matched.
        id_space: ``"coco91"`` (original COCO ids 1..90, QPIC/PPDM) or ``"coco80"`` (contiguous 1..80).
    """
    if id_space not in ("coco91", "coco80"):
        raise ValueError(f"id_space must be one of ('coco91', 'coco80'), got {id_space!r}")
    index = {_norm_name(n): i for i, n in enumerate(vocab.objects)}
    out = {}
    for k, (cid, name) in enumerate(COCO_CATEGORIES):
        if _norm_name(name) in index:
            out[cid if id_space == "coco91" else k + 1] = index[_norm_name(name)]
    return out


def load_hico_qpic(path: str | os.PathLike, vocab: HOIVocab, *, category_map: str | os.PathLike | dict | None = None,
                   id_space: str = "coco91", sizes: Optional[dict[str, tuple[int, int]]] = None) -> list[HOIImage]:
    """Read a QPIC/PPDM-format HICO-DET file into :class:`HOIImage` records.

    Args:
        path: the JSON list of images.
        vocab: HICO vocabulary (e.g. from :func:`load_hico_instances`); HOI = correspondence of (object, verb).
        category_map: COCO id -> HICO object index, a dict or a JSON file such as ``coco91tohico80.json``;
            default: built by name from :data:`COCO_CATEGORIES` (:func:`coco_to_hico_objects`).
        id_space: ``"coco91"`` or ``"coco80"`` when ``category_map`` is not given.
        sizes: optional ``file_name -> (width, height)``; the format has no size (width/height 0 = unknown),
            and boxes are checked against the image only when it is known.
    """
    src = str(path)
    data = _read_json(path)
    if not isinstance(data, list):
        raise DataError(f"{src}: expected a JSON list of images (QPIC format)")
    if category_map is None:
        cmap = coco_to_hico_objects(vocab, id_space)
    elif isinstance(category_map, dict):
        cmap = {int(k): int(v) for k, v in category_map.items()}
    else:
        cmap = {int(k): int(v) for k, v in _read_json(category_map).items()}
    lookup = hoi_lookup(vocab)
    seen: dict[str, int] = {}
    images = []
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise DataError(f"{src}: record {i} must be an object")
        for k in ("file_name", "annotations", "hoi_annotation"):
            if k not in rec:
                raise DataError(f"{src}: record {i} ({rec.get('file_name', '?')!r}): missing key {k!r}")
        name = rec["file_name"]
        where = f"{src}: record {i} ({name!r})"
        if name in seen:
            raise DataError(f"{where}: duplicated file name (also record {seen[name]})")
        seen[name] = i
        w, h = (sizes or {}).get(name, (0, 0))
        boxes, cats = [], []
        for j, a in enumerate(rec["annotations"]):
            if "bbox" not in a or "category_id" not in a:
                raise DataError(f"{where}: annotations[{j}] lacks 'bbox' or 'category_id'")
            boxes.append(check_box(a["bbox"], f"{where}: annotations[{j}]", w, h))
            cid = int(a["category_id"])
            if cid not in cmap:
                raise DataError(f"{where}: annotations[{j}] has unknown COCO category id {cid}")
            cats.append(cmap[cid])
        im = HOIImage(name, int(w), int(h), [], [], [], [], [])
        for j, p in enumerate(rec["hoi_annotation"]):
            for k in ("subject_id", "object_id", "category_id"):
                if k not in p:
                    raise DataError(f"{where}: hoi_annotation[{j}]: missing key {k!r}")
            s, o = int(p["subject_id"]), int(p["object_id"])
            if not (0 <= s < len(boxes)) or not (0 <= o < len(boxes)):
                raise DataError(f"{where}: hoi_annotation[{j}] points at box {s} or {o}, "
                                f"but the image has {len(boxes)} boxes")
            verb = int(p["category_id"]) - 1
            obj = cats[o]
            if (obj, verb) not in lookup:
                raise DataError(f"{where}: hoi_annotation[{j}]: (object {obj}, verb {verb}) is not an HOI "
                                f"of the vocabulary")
            hoi = lookup[(obj, verb)]
            if "hoi_category_id" in p and int(p["hoi_category_id"]) - 1 != hoi:
                raise DataError(f"{where}: hoi_annotation[{j}]: hoi_category_id {p['hoi_category_id']} "
                                f"disagrees with object/verb (HOI {hoi + 1})")
            im.boxes_h.append(boxes[s])
            im.boxes_o.append(boxes[o])
            im.hoi.append(hoi)
            im.object.append(obj)
            im.verb.append(verb)
        images.append(im)
    return images


def detect_hoi_format(path: str | os.PathLike) -> str:
    """``"instances"`` (HICO-DET instance format) or ``"qpic"`` (QPIC/PPDM list), from the file's content."""
    d = _read_json(path)
    if isinstance(d, dict) and "annotation" in d and "filenames" in d:
        return "instances"
    if isinstance(d, list) and (not d or (isinstance(d[0], dict) and "hoi_annotation" in d[0])):
        return "qpic"
    raise DataError(f"{path}: neither the HICO-DET instance format (keys 'annotation', 'filenames', ...) "
                    f"nor the QPIC format (a list of images with 'hoi_annotation')")


def load_hoi_gt(path: str | os.PathLike, vocab_path: str | os.PathLike | None = None,
                ) -> tuple[list[HOIImage], HOIVocab]:
    """Ground truth in either format (autodetected); the QPIC format needs ``vocab_path`` (an instance file or any
    JSON with ``objects``, ``verbs``, ``correspondence``, ``rare``, ``non_rare``)."""
    fmt = detect_hoi_format(path)
    if fmt == "instances":
        return load_hico_instances(path)
    if vocab_path is None:
        raise DataError(f"{path}: QPIC-format ground truth carries no vocabulary; pass a vocabulary file "
                        f"(e.g. --vocab instances_test2015.json)")
    d = _read_json(vocab_path)
    if not isinstance(d, dict):
        raise DataError(f"{vocab_path}: expected a JSON object with the vocabulary keys")
    vocab = vocab_from_dict(d, str(vocab_path))
    sizes = None
    if "filenames" in d and "size" in d and len(d["filenames"]) == len(d["size"]):
        sizes = {n: tuple(s) for n, s in zip(d["filenames"], d["size"])}
    return load_hico_qpic(path, vocab, sizes=sizes), vocab


# ----------------------------------------------------------------------------------------------- zero-shot splits

#: the standard HICO-DET zero-shot splits shipped as package data (RF-UC, NF-UC, UO, UV from GEN-VLKT; uc0..uc4 from
#: HOICLIP); provenance and licence in ``assets/PROVENANCE.md`` beside it.
BUNDLED_ZERO_SHOT = Path(__file__).resolve().parent / "assets" / "hico_zero_shot_splits.json"


def load_zero_shot_splits(*paths: str | os.PathLike) -> dict[str, list[int]]:
    """Zero-shot splits as data: split name -> sorted list of unseen HOI indices (0-based, correspondence order).

    Accepts the gen-vlkt / HOICLIP files (splits under ``hico_unseen_index``) and flat ``{name: [...]}`` files
    such as SynthSitu's ``hoi_zero_shot.json``. Several files are merged (later files win on equal names, but a
    conflicting definition of the same name raises). Empty lists (gen-vlkt's ``default``) are dropped.
    """
    out: dict[str, list[int]] = {}
    for path in paths:
        d = _read_json(path)
        if not isinstance(d, dict):
            raise DataError(f"{path}: expected a JSON object of split name -> HOI indices")
        table = d.get("hico_unseen_index", d)
        for name, idx in table.items():
            if name.startswith("_") or not isinstance(idx, list):
                continue
            vals = _int_list(idx, f"{path}: split {name!r}")
            if len(set(vals)) != len(vals):
                raise DataError(f"{path}: split {name!r} lists an HOI twice")
            if not vals:
                continue
            vals = sorted(vals)
            if name in out and out[name] != vals:
                raise DataError(f"{path}: split {name!r} differs from its definition in an earlier file")
            out[name] = vals
    return out


def resolve_zero_shot(spec: str, search: Sequence[str | os.PathLike] = ()) -> tuple[str, list[int]]:
    """Resolve a ``--zero-shot`` value to ``(name, unseen HOI indices)``.

    ``spec`` is ``FILE.json:key``, or a split name (``rare_first``, ``non_rare_first``, ``unseen_object``,
    ``unseen_verb``, ``uc0``..``uc4``, aliases ``rf-uc``, ``nf-uc``, ``uo``, ``uv``) looked up in the files of
    ``search`` that exist, in order.
    """
    if ":" in spec and spec.split(":", 1)[0].endswith(".json"):
        file, key = spec.split(":", 1)
        splits = load_zero_shot_splits(file)
        if key not in splits:
            raise DataError(f"{file}: no zero-shot split {key!r} (has {sorted(splits)})")
        return key, splits[key]
    name = ZERO_SHOT_ALIASES.get(spec.lower(), spec)
    files = [p for p in search if Path(p).is_file()]
    for f in files:
        splits = load_zero_shot_splits(f)
        if name in splits:
            return name, splits[name]
    raise DataError(f"zero-shot split {spec!r} not found in {[str(f) for f in files] or 'any file'}; "
                    f"give FILE.json:key or --splits FILE")


@dataclass(frozen=True)
class ZeroShotInfo:
    """Size of a zero-shot split: unseen HOIs, and the objects / verbs whose every HOI is unseen."""

    name: str
    num_unseen: int
    num_rare: int
    num_non_rare: int
    unseen_objects: tuple[int, ...]
    unseen_verbs: tuple[int, ...]


def describe_zero_shot(name: str, unseen: Sequence[int], vocab: HOIVocab) -> ZeroShotInfo:
    """Counts that define a split (RF-UC: 120 rare; NF-UC: 120 non-rare; UO: 100 HOIs of 12 objects whose HOIs
    are all unseen; UV: 84 HOIs of 20 verbs never seen in training)."""
    u = set(unseen)
    rare = set(vocab.rare)
    by_obj: dict[int, list[int]] = {}
    by_verb: dict[int, list[int]] = {}
    for h, o, v in vocab.correspondence:
        by_obj.setdefault(o, []).append(h)
        by_verb.setdefault(v, []).append(h)
    objs = tuple(sorted(o for o, hs in by_obj.items() if all(h in u for h in hs)))
    verbs = tuple(sorted(v for v, hs in by_verb.items() if all(h in u for h in hs)))
    return ZeroShotInfo(name, len(u), len(u & rare), len(u - rare), objs, verbs)


# ----------------------------------------------------------------------------------------------- V-COCO

@dataclass
class VCocoData:
    """V-COCO in the fredzzhang instance format: one :class:`HOIImage` per image (``hoi`` = ``verb`` = the
    action-role class index into ``classes``, ``object`` = index into ``objects``), plus the vocabularies."""

    images: list[HOIImage]
    classes: list[str]                     # 24 action-role classes, e.g. "hit instr"
    objects: list[str]                     # 81 COCO names, "background" first
    image_ids: list[int]                   # COCO image ids
    action_to_object: list[list[int]] = field(default_factory=list)

    def action_role(self, k: int) -> tuple[str, str]:
        """``("hit", "instr")`` for class ``k``."""
        a, _, r = self.classes[k].partition(" ")
        return a, r


def load_vcoco(path: str | os.PathLike) -> VCocoData:
    """Read ``instances_vcoco_*.json`` (image sizes are not in the file: width/height 0)."""
    src = str(path)
    d = _read_json(path)
    if not isinstance(d, dict):
        raise DataError(f"{src}: expected a JSON object")
    for k in ("annotations", "classes", "objects"):
        if k not in d:
            raise DataError(f"{src}: missing key {k!r}")
    anns, classes, objects = d["annotations"], list(d["classes"]), list(d["objects"])
    ids = list(d.get("images", []))
    if ids and len(ids) != len(anns):
        raise DataError(f"{src}: images ({len(ids)}) and annotations ({len(anns)}) differ in length")
    seen: dict[str, int] = {}
    images = []
    for i, a in enumerate(anns):
        if not isinstance(a, dict):
            raise DataError(f"{src}: annotation {i} must be an object")
        for k in ("boxes_h", "boxes_o", "actions", "objects", "file_name"):
            if k not in a:
                raise DataError(f"{src}: annotation {i} ({a.get('file_name', '?')!r}): missing key {k!r}")
        name = a["file_name"]
        where = f"{src}: annotation {i} ({name!r})"
        if name in seen:
            raise DataError(f"{where}: duplicated file name (also annotation {seen[name]})")
        seen[name] = i
        n = len(a["actions"])
        if not (len(a["boxes_h"]) == len(a["boxes_o"]) == len(a["objects"]) == n):
            raise DataError(f"{where}: boxes_h, boxes_o, actions, objects have different lengths")
        acts = _int_list(a["actions"], f"{where}: actions")
        objs = _int_list(a["objects"], f"{where}: objects")
        if any(not 0 <= x < len(classes) for x in acts):
            raise DataError(f"{where}: action index outside 0..{len(classes) - 1}")
        if any(not 0 <= x < len(objects) for x in objs):
            raise DataError(f"{where}: object index outside 0..{len(objects) - 1}")
        bh = [check_box(b, f"{where}: pair {j} boxes_h") for j, b in enumerate(a["boxes_h"])]
        bo = [check_box(b, f"{where}: pair {j} boxes_o") for j, b in enumerate(a["boxes_o"])]
        images.append(HOIImage(name, 0, 0, bh, bo, acts, objs, list(acts)))
    return VCocoData(images, classes, objects, [int(x) for x in ids], [list(x) for x in d.get("action_to_object", [])])
