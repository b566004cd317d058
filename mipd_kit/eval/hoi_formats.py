"""HICO-DET detections in the formats of other HOI detectors, read into the toolkit's predictions contract.

``mipd eval-hico --pred-format own|qpic|gen-vlkt|hoiclip`` scores them by the same official protocol:

* ``own``: ``{filename: [{"hoi", "box_h", "box_o", "score"}]}`` (docs/data-formats.md).
* ``qpic``: the per-image records of QPIC's ``HICOEvaluator`` (hitachi-rd-cv/qpic ``datasets/hico_eval.py``; CDN and
  other QPIC descendants keep them): ``{"predictions": [{"bbox": [x1,y1,x2,y2], "category_id": k}],
  "hoi_prediction": [{"subject_id", "object_id", "category_id": verb, "score"}]}`` with ``k`` the 0-based index of
  the 80 COCO categories in COCO order and ``verb`` the 0-based HICO-DET verb; the HOI is the (object, verb) pair of
  the ground truth's correspondence (pairs outside the 600 HOIs are counted as unknown HOIs).
* ``gen-vlkt`` / ``hoiclip``: the records of GEN-VLKT's triplet ``HICOEvaluator`` (YueLiao/gen-vlkt
  ``datasets/hico_eval_triplet.py``; HOICLIP's is the same, Artanic30/HOICLIP ``datasets/datasets_gen``):
  ``{"filename", "predictions": [{"bbox"}], "hoi_prediction": [{"subject_id", "object_id", "category_id": hoi,
  "score"}]}`` with ``hoi`` the 0-based index of the 600 HOIs (their ``hico_text_label`` order, HICO-DET's).

The **raw post-processor outputs** these evaluators start from are read too (a list of per-image dicts, e.g.
``pickle.dump(preds, f)`` in their ``engine.evaluate_hoi``): GEN-VLKT / HOICLIP ``{"boxes": (2Q, 4), "hoi_scores":
(Q, 600), "obj_scores": (Q, 80), "sub_ids", "obj_ids"}``, scored as their evaluator does (``hoi_scores`` plus the
squared object score of each HOI's object, the 100 best of the Q x 600 pairs); QPIC ``{"labels", "boxes",
"verb_scores": (Q, 117), "sub_ids", "obj_ids"}`` (verb scores times the HICO-DET (verb, object) validity, the 100 best).
The evaluators' optional triplet NMS (GEN-VLKT's ``--use_nms_filter``) is not applied: for parity with a run that used
it, dump the evaluator's records after it instead.

A file holds a list of such records (or ``{"preds": [...]}``, as the evaluators' ``--json_file`` dump writes it, a
Python ``str()`` of the dict that is read here without executing anything), as JSON or as a pickle (``.pkl``,
``.pickle``: e.g. ``pickle.dump(evaluator.preds, f)``; numpy scalars and arrays are accepted). **A pickle can run code
when loaded: read only pickles you made or trust.** Records without a file name are matched to the ground truth's
images in order (the evaluators' order is that of the ground-truth file their data loader read, e.g. QPIC's
``test_hico.json``: score such files against that same file). Boxes are in pixels, as the evaluators keep them.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import re
from pathlib import Path
from typing import Any, Sequence

from mipd_kit.data.hico import HOIImage, HOIVocab, coco_to_hico_objects, hoi_lookup
from mipd_kit.data.records import DataError

PRED_FORMATS = ("own", "qpic", "gen-vlkt", "hoiclip")
_NUMPY_REPR = re.compile(r"\b(?:np|numpy)\.(?:float|int|uint)\d*\(([^()]*)\)")


def _plain(v: Any) -> Any:
    """numpy / torch scalars and arrays as Python numbers and lists."""
    if hasattr(v, "tolist"):
        return v.tolist()
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def read_records(path: str | os.PathLike) -> Any:
    """The content of a predictions file: JSON, a ``str()`` of a Python literal inside JSON, or a pickle."""
    p = Path(path)
    if p.suffix in (".pkl", ".pickle"):
        try:
            with open(p, "rb") as f:
                return _plain(pickle.load(f))
        except Exception as e:  # noqa: BLE001  (any unpickling failure is the file's)
            raise DataError(f"{p}: not a readable pickle ({type(e).__name__}: {e})") from e
    try:
        data = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{p}: not a readable JSON file ({e})") from e
    if isinstance(data, str):  # the evaluators' --json_file: json.dumps(str({'preds': ..., 'gts': ...}))
        try:
            data = ast.literal_eval(_NUMPY_REPR.sub(r"\1", data))
        except (ValueError, SyntaxError) as e:
            raise DataError(f"{p}: holds a string that is not a Python literal of predictions ({e})") from e
    return data


def _records(data: Any, src: str) -> list[dict]:
    if isinstance(data, dict) and "preds" in data:
        data = data["preds"]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(f"{src}: expected a list of per-image records (or {{'preds': [...]}})")
    return data


def _name(rec: dict, i: int, images: Sequence[HOIImage], src: str) -> str:
    for k in ("filename", "file_name"):
        if k in rec:
            return str(rec[k])
    if len(images) == 0 or i >= len(images):
        raise DataError(f"{src}: record {i} has no filename and the ground truth has only {len(images)} images to "
                        "match records to by order")
    return images[i].filename


#: detections an evaluator keeps per image (QPIC's and GEN-VLKT's ``max_hois``)
MAX_HOIS = 100


def _top(scores: Any, k: int = MAX_HOIS) -> Any:
    """Indices of the ``k`` largest scores, best first (stable among equal scores)."""
    import numpy as np
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:k]


def _from_raw(rec: dict, fmt: str, vocab: HOIVocab, to_coco: dict[int, int]) -> dict:
    """A raw post-processor record -> an evaluator record (``predictions`` + ``hoi_prediction``), scored and
    truncated as the evaluator does."""
    import numpy as np
    boxes = [{"bbox": b, "category_id": c} for b, c in zip(rec["boxes"], rec.get("labels") or [0] * len(rec["boxes"]))]
    sub, obj = np.asarray(rec["sub_ids"], dtype=np.int64), np.asarray(rec["obj_ids"], dtype=np.int64)
    if fmt == "qpic":
        vs = np.asarray(rec["verb_scores"], dtype=np.float64)  # (Q, V)
        valid = np.zeros((len(vocab.verbs), 80), dtype=bool)  # HICO-DET's correct_mat: (verb, COCO-80 object)
        for _, o, v in vocab.correspondence:
            if o in to_coco:
                valid[v, to_coco[o]] = True
        labels = np.asarray([int(boxes[i]["category_id"]) for i in obj], dtype=np.int64)
        scores = vs * valid[:, labels].T  # (Q, V)
    else:
        hs = np.asarray(rec["hoi_scores"], dtype=np.float64)  # (Q, H)
        os_ = np.asarray(rec["obj_scores"], dtype=np.float64)  # (Q, 80)
        hoi_obj = np.asarray([to_coco.get(o, 0) for _, o, _ in sorted(vocab.correspondence)], dtype=np.int64)
        scores = hs + (os_ * os_)[:, hoi_obj]
    flat = scores.ravel()
    cat = flat.size // max(len(sub), 1)
    keep = _top(flat)
    hois = [{"subject_id": int(sub[i // cat]), "object_id": int(obj[i // cat]), "category_id": int(i % cat),
             "score": float(flat[i])} for i in keep]
    return {**{k: rec[k] for k in ("filename", "file_name") if k in rec}, "predictions": boxes, "hoi_prediction": hois}


def convert(data: Any, fmt: str, images: Sequence[HOIImage], vocab: HOIVocab, src: str = "predictions") -> dict:
    """Records of ``fmt`` -> the toolkit's predictions dict ``{filename: [{hoi, box_h, box_o, score}]}``.

    Raises:
        DataError: a malformed record, naming ``src``, the record and the detection.
        ValueError: unknown format.
    """
    if fmt == "own":
        return data
    if fmt not in PRED_FORMATS:
        raise ValueError(f"unknown prediction format {fmt!r}; choose one of {PRED_FORMATS}")
    recs = _records(data, src)
    if not any(k in r for r in recs for k in ("filename", "file_name")) and len(recs) != len(images):
        raise DataError(f"{src}: {len(recs)} records without file names, but the ground truth has {len(images)} "
                        "images (records are matched to its images in order)")
    lookup = hoi_lookup(vocab)
    coco = {k - 1: h for k, h in coco_to_hico_objects(vocab, "coco80").items()}  # 0-based COCO-80 -> HICO object
    out: dict[str, list[dict]] = {}
    to_coco = {h: k for k, h in coco.items()}  # HICO object -> 0-based COCO-80
    for i, rec in enumerate(recs):
        name = _name(rec, i, images, src)
        where = f"{src}: record {i} ({name})"
        try:
            if "hoi_scores" in rec or "verb_scores" in rec:  # a raw post-processor output
                rec = _from_raw(rec, fmt, vocab, to_coco)
            boxes = rec["predictions"]
            dets = []
            for j, h in enumerate(rec["hoi_prediction"]):
                s, o = int(h["subject_id"]), int(h["object_id"])
                if not (0 <= s < len(boxes) and 0 <= o < len(boxes)):
                    raise DataError(f"{where}: hoi_prediction[{j}] points at box {s} or {o} of {len(boxes)}")
                if fmt == "qpic":
                    obj = coco.get(int(boxes[o]["category_id"]), -1)
                    hoi = lookup.get((obj, int(h["category_id"])), -1)  # -1: counted as an unknown HOI
                else:
                    hoi = int(h["category_id"])
                dets.append({"hoi": hoi, "box_h": [float(v) for v in boxes[s]["bbox"]],
                             "box_o": [float(v) for v in boxes[o]["bbox"]], "score": float(h["score"])})
        except (KeyError, TypeError, ValueError) as e:
            raise DataError(f"{where}: not a {fmt} record ({type(e).__name__}: {e})") from e
        if name in out:
            raise DataError(f"{where}: a second record for this image")
        out[name] = dets
    return out


def load_predictions_as(path: str | os.PathLike, fmt: str, images: Sequence[HOIImage], vocab: HOIVocab) -> dict:
    """Read a predictions file of ``fmt`` (own format: the strict JSON reader) into the predictions dict."""
    if fmt == "own":
        from mipd_kit.eval.cli_io import read_predictions
        return read_predictions(path)
    return convert(read_records(path), fmt, images, vocab, str(path))
