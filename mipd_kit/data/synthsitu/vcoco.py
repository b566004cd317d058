"""SynthSitu's HOI split in the V-COCO instance format, so that V-COCO role AP (Gupta & Malik, 2015; evaluated by
``mipd eval-vcoco``) can be reported beside HICO-DET mAP, as CL-HOI reports both.

Mapping from the HICO-DET instance format (``hoi_test.json``, :mod:`mipd_kit.data.hico`) to the fredzzhang
``instances_vcoco_*.json`` format that :func:`mipd_kit.data.hico.load_vcoco` reads:

* one action-role class per verb, named ``"<verb> obj"`` (the verb's spaces as ``_``; every SynthSitu verb takes an
  object, so there are no agent-only actions), in the verb order of the vocabulary: ``actions[j]`` of a pair is its
  verb index;
* ``objects``: the HICO object names, ``objects[j]`` of a pair its object index; ``action_to_object``: the objects
  each verb takes in the HOI correspondence;
* ``images``: 1-based ids in file order; images without pairs keep an (empty) annotation.

What V-COCO cannot express: one role box per person and action-role class. When one person does the same verb
with two objects, the V-COCO ground truth keeps the last pair (``mipd_kit.eval.vcoco.gt_from_instances``);
:func:`hico_to_vcoco` counts such pairs in ``stats["shadowed_pairs"]``.

Predictions: a HICO-DET prediction ``{"hoi", "box_h", "box_o", "score"}`` becomes ``{"action": verb of hoi, "box_h",
"box_o", "score"}``; detections of one pair of boxes that map to the same verb (possible only with unlabelled
objects) keep the highest score, since V-COCO would count the duplicates as false positives.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from mipd_kit.data.records import DataError, HOIImage, HOIVocab


def vcoco_classes(vocab: HOIVocab) -> list[str]:
    """``"<verb> obj"`` per verb, in verb order."""
    return [f"{v.replace(' ', '_')} obj" for v in vocab.verbs]


def hico_to_vcoco(images: Sequence[HOIImage], vocab: HOIVocab) -> tuple[dict[str, Any], dict[str, int]]:
    """The V-COCO instance dict of annotated HICO-format images, and stats (``pairs``, ``shadowed_pairs``)."""
    a2o: list[set[int]] = [set() for _ in vocab.verbs]
    for _, o, v in vocab.correspondence:
        a2o[v].add(o)
    anns, shadowed, pairs = [], 0, 0
    for im in images:
        n = len(im.boxes_h)
        if not (len(im.boxes_o) == len(im.verb) == len(im.object) == n):
            raise DataError(f"image {im.filename!r}: boxes_h, boxes_o, verb, object have different lengths")
        seen: set[tuple] = set()
        for bh, v in zip(im.boxes_h, im.verb):
            k = (tuple(bh), int(v))
            shadowed += k in seen
            seen.add(k)
        pairs += n
        anns.append({"file_name": im.filename, "boxes_h": [list(map(float, b)) for b in im.boxes_h],
                     "boxes_o": [list(map(float, b)) for b in im.boxes_o], "actions": [int(v) for v in im.verb],
                     "objects": [int(o) for o in im.object]})
    data = {"images": list(range(1, len(anns) + 1)), "annotations": anns, "classes": vcoco_classes(vocab),
            "objects": list(vocab.objects), "action_to_object": [sorted(s) for s in a2o]}
    return data, {"pairs": pairs, "shadowed_pairs": shadowed}


def write_vcoco(path: str | os.PathLike, images: Sequence[HOIImage], vocab: HOIVocab) -> dict[str, int]:
    """Write :func:`hico_to_vcoco` atomically to ``path``; returns its stats."""
    from mipd_kit.fileio import write_json
    data, stats = hico_to_vcoco(images, vocab)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_json(path, data, indent=None)
    return stats


def hico_predictions_to_vcoco(preds: Mapping[str, Sequence[Mapping[str, Any]]], vocab: HOIVocab,
                              src: str = "predictions") -> dict[str, list[dict[str, Any]]]:
    """HICO-DET pair predictions -> V-COCO pair predictions (module docstring); ``DataError`` naming ``src``, the
    image and the detection for a malformed one."""
    verb_of = {h: v for h, _, v in vocab.correspondence}
    out: dict[str, list[dict[str, Any]]] = {}
    for name, dets in preds.items():
        best: dict[tuple, dict[str, Any]] = {}
        for j, d in enumerate(dets):
            where = f"{src}: image {name!r} detection {j}"
            try:
                v = verb_of[int(d["hoi"])] if "hoi" in d else int(d["verb"])
                bh, bo, s = [float(x) for x in d["box_h"]], [float(x) for x in d["box_o"]], float(d["score"])
            except (KeyError, TypeError, ValueError) as e:
                raise DataError(f"{where}: needs 'hoi' (or 'verb'), 'box_h', 'box_o' and 'score' ({e!r})") from e
            key = (tuple(bh), tuple(bo), v)
            if key not in best or s > best[key]["score"]:
                best[key] = {"action": v, "box_h": bh, "box_o": bo, "score": s}
        out[name] = list(best.values())
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m mipd_kit.data.synthsitu.vcoco --world DIR [--split test] --out FILE``."""
    from mipd_kit.data.hico import load_hico_instances
    ap = argparse.ArgumentParser(description="write a world's HOI split in the V-COCO instance format")
    ap.add_argument("--world", required=True, help="world folder (hoi_<split>.json)")
    ap.add_argument("--split", default="test", choices=["train", "test"])
    ap.add_argument("--out", required=True, help="output instances_vcoco-style JSON")
    args = ap.parse_args(list(argv) if argv is not None else None)
    try:
        images, vocab = load_hico_instances(Path(args.world) / f"hoi_{args.split}.json")
        stats = write_vcoco(args.out, images, vocab)
    except DataError as e:
        print(f"vcoco: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {len(images)} images, {stats['pairs']} pairs "
          f"({stats['shadowed_pairs']} shadowed: same person and verb twice)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
