"""Widget error inspector for HOI detections (CL-HOI and its reference models), on the same plumbing as the Ov-GSR
inspector (``mipd_kit.viz.browser.CaseBrowser``).

One case per test image with at least one annotated pair. :func:`build_hoi_cases` (pure) ranks the image's
detections, one per HOI class as in :func:`mipd_kit.hoi.viz.top_pairs`, and checks each against the annotated pairs
(same HOI, human and object IoU >= 0.5: the official matching criterion). The top detection's **outcome** is one of

- ``correct``: it matches an annotated pair of its HOI;
- ``wrong_interaction``: its boxes match an annotated pair, but that pair is not annotated with its HOI;
- ``wrong_pair``: its HOI is annotated in the image, on other boxes;
- ``miss``: neither (wrong HOI on a pair that is not annotated);
- ``no_detection``: the model returned nothing for the image.

Each case is tagged ``unseen`` / ``rare`` / ``seen`` by the HOIs annotated in it (``unseen``: the zero-shot split's
unseen HOIs; ``rare``: the vocabulary's rare list; ``seen``: an annotated HOI that is not unseen). The widget filters
by tag, by annotated HOI and by outcome and sorts by the top score (or by recall: the share of annotated pairs found
among the top-k detections, lowest first). Left panel: the top-k detections; right panel: the ground truth.
"""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from PIL import Image

from mipd_kit.data.records import HOIImage, HOIVocab
from mipd_kit.viz.browser import PANEL_SIZE, CaseBrowser, placeholder_image, side_by_side
from mipd_kit.viz.draw import draw_hoi_pairs

from .viz import hoi_label, pair_matches, top_pairs

OUTCOMES: tuple[str, ...] = ("correct", "wrong_interaction", "wrong_pair", "miss", "no_detection")
TAGS: tuple[str, ...] = ("unseen", "rare", "seen")
HOI_SORT_KEYS: tuple[str, ...] = ("confidence", "recall")


@dataclass(frozen=True)
class HOIPair:
    """A drawable pair: a detection (``score``, ``correct``: it matches an annotated pair of its HOI) or an
    annotation (``score`` None, ``correct``: a top-k detection found it)."""

    label: str
    hoi: int
    box_h: tuple[float, ...]
    box_o: tuple[float, ...]
    score: Optional[float]
    correct: bool

    def drawable(self) -> dict[str, Any]:
        mark = "ok" if self.correct else "x"  # ASCII: PIL's fallback fonts lack check marks
        return {"box_h": list(self.box_h), "box_o": list(self.box_o), "label": f"{mark} {self.label}",
                "score": self.score}


@dataclass(frozen=True)
class HOIInspectCase:
    """One test image: its annotated pairs, its top-k detections and the top detection's outcome."""

    filename: str
    width: int
    height: int
    gt: tuple[HOIPair, ...]
    top: tuple[HOIPair, ...]
    outcome: str
    tags: tuple[str, ...]

    @property
    def confidence(self) -> float:
        return self.top[0].score if self.top else 0.0

    @property
    def recall(self) -> float:
        """Share of the annotated pairs found by one of the top-k detections."""
        return sum(p.correct for p in self.gt) / len(self.gt)

    @property
    def gt_labels(self) -> tuple[str, ...]:
        return tuple(sorted({p.label for p in self.gt}))


def build_hoi_cases(images: Sequence[HOIImage], vocab: HOIVocab, preds: Mapping[str, Sequence[Mapping[str, Any]]],
                    unseen: Optional[Sequence[int]] = None, k: int = 5) -> list[HOIInspectCase]:
    """One case per image with annotated pairs (order of ``images``); ``preds`` in the HICO-DET prediction format
    ``{filename: [{"hoi", "box_h", "box_o", "score"}, ...]}`` (an image absent from it has no detection).

    Raises:
        ValueError: a detection lacks a field or has a malformed box (the message names the image and index).
    """
    u, rare = set(unseen or []), set(vocab.rare)
    out = []
    for im in images:
        if not im.hoi:
            continue
        dets = list(preds.get(im.filename, []))
        for i, d in enumerate(dets):
            try:
                ok = (len(d["box_h"]) == 4 and len(d["box_o"]) == 4 and math.isfinite(float(d["score"]))
                      and all(math.isfinite(float(v)) for v in [*d["box_h"], *d["box_o"]])
                      and 0 <= int(d["hoi"]) < vocab.num_hoi)
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"predictions[{im.filename!r}][{i}]: needs hoi, box_h, box_o (4 numbers each) and "
                                 f"score ({e!r})") from e
            if not ok:
                raise ValueError(f"predictions[{im.filename!r}][{i}]: box_h / box_o need 4 finite numbers, score a "
                                 f"finite number, hoi an index below {vocab.num_hoi}; got {dict(d)}")
        top = top_pairs(dets, vocab, k)
        annotated = list(zip(im.boxes_h, im.boxes_o, im.hoi))
        top_t = tuple(HOIPair(p["label"], p["hoi"], tuple(p["box_h"]), tuple(p["box_o"]), p["score"],
                              any(h == p["hoi"] and pair_matches(bh, bo, p["box_h"], p["box_o"])
                                  for bh, bo, h in annotated)) for p in top)
        gt_t = tuple(HOIPair(hoi_label(vocab, h), h, tuple(bh), tuple(bo), None,
                             any(p.hoi == h and pair_matches(bh, bo, p.box_h, p.box_o) for p in top_t))
                     for bh, bo, h in annotated)
        if not top_t:
            outcome = "no_detection"
        elif top_t[0].correct:
            outcome = "correct"
        elif any(pair_matches(bh, bo, top_t[0].box_h, top_t[0].box_o) for bh, bo, _ in annotated):
            outcome = "wrong_interaction"
        elif top_t[0].hoi in im.hoi:
            outcome = "wrong_pair"
        else:
            outcome = "miss"
        tags = tuple(t for t, hit in (("unseen", any(h in u for h in im.hoi)), ("rare", any(h in rare for h in im.hoi)),
                                      ("seen", any(h not in u for h in im.hoi))) if hit)
        out.append(HOIInspectCase(im.filename, im.width, im.height, gt_t, top_t, outcome, tags))
    return out


def summarize_hoi(cases: Sequence[HOIInspectCase]) -> dict[str, dict[str, int]]:
    """Count of each top-1 outcome per tag (``unseen`` / ``rare`` / ``seen``; a case counts under each of its tags)."""
    return {t: {o: sum(c.outcome == o for c in cases if t in c.tags) for o in OUTCOMES} for t in TAGS}


def filter_hoi_cases(cases: Sequence[HOIInspectCase], tag: Optional[str] = None, hoi: Optional[str] = None,
                     outcome: Optional[str] = None, sort_by: str = "confidence") -> list[HOIInspectCase]:
    """Cases with ``tag`` among their tags, ``hoi`` (a label such as ``"kick ball"``) annotated and the top
    detection's ``outcome``; sorted by descending top score (``confidence``) or ascending ``recall``."""
    for name, v, allowed in (("tag", tag, TAGS), ("outcome", outcome, OUTCOMES), ("sort_by", sort_by, HOI_SORT_KEYS)):
        if v is not None and v not in allowed:
            raise ValueError(f"{name} must be one of {allowed} (or None), got {v!r}")
    sel = [c for c in cases if (tag is None or tag in c.tags) and (hoi is None or hoi in c.gt_labels)
           and (outcome is None or c.outcome == outcome)]
    if sort_by == "recall":
        return sorted(sel, key=lambda c: (c.recall, -c.confidence))
    return sorted(sel, key=lambda c: -c.confidence)


def render_hoi_case(case: HOIInspectCase, image: Optional[Image.Image], panel: int = PANEL_SIZE) -> Image.Image:
    """Top-k detections (left, "ok" when matched, "x" when not) and the annotated pairs (right, "ok" when found)
    side by side."""
    if image is None:
        image = placeholder_image(case.width, case.height)
    upscale = max(1, round(panel / max(image.size)))
    left = draw_hoi_pairs(image, [p.drawable() for p in case.top], upscale=upscale)
    right = draw_hoi_pairs(image, [p.drawable() for p in case.gt], upscale=upscale)
    return side_by_side(left, right)


def hoi_details_html(case: HOIInspectCase) -> str:
    """The top-k detections and the annotated pairs of a case, as an HTML fragment."""
    e = html.escape

    def table(title: str, pairs: Sequence[HOIPair], score: bool) -> str:
        rows = "".join(
            f"<tr><td>{i + 1}</td><td>{e(p.label)}</td>"
            + (f"<td>{p.score:.3f}</td>" if score else "")
            + f"<td>{'✓' if p.correct else '✗'}</td></tr>" for i, p in enumerate(pairs))
        head = "<th>#</th><th>HOI</th>" + ("<th>score</th>" if score else "") + \
            f"<th>{'matched' if score else 'found'}</th>"
        return f"<h4>{e(title)}</h4><table><tr>{head}</tr>{rows or '<tr><td>none</td></tr>'}</table>"

    return (table(f"top-{len(case.top)} detections", case.top, True)
            + table(f"annotated pairs (recall {case.recall:.2f})", case.gt, False))


class HOIInspector(CaseBrowser):
    """Browse HOI test images: filters (tag, annotated HOI, outcome, sort), prev / next / slider, the detections
    next to the ground truth and a details table.

    Args:
        cases: from :func:`build_hoi_cases`.
        image_root: folder of the images (None: always placeholders).
        tag, hoi, outcome, sort_by: initial filter.
        panel: size in pixels of each of the two image panels.
    """

    def __init__(self, cases: Sequence[HOIInspectCase], image_root: Optional[str | os.PathLike] = None,
                 tag: Optional[str] = None, hoi: Optional[str] = None, outcome: Optional[str] = None,
                 sort_by: str = "confidence", panel: int = PANEL_SIZE):
        cases = list(cases)
        filters = {"tag": ["all"] + [t for t in TAGS if any(t in c.tags for c in cases)],
                   "hoi": ["all"] + sorted({label for c in cases for label in c.gt_labels}),
                   "outcome": ["all", *OUTCOMES],
                   "sort_by": list(HOI_SORT_KEYS)}
        super().__init__(cases, filters, {"tag": tag, "hoi": hoi, "outcome": outcome, "sort_by": sort_by},
                         image_root, "mipd-hoi-inspector", panel)

    def set_filter(self, tag: Optional[str] = None, hoi: Optional[str] = None, outcome: Optional[str] = None,
                   sort_by: Optional[str] = None) -> list[HOIInspectCase]:
        """Set the filter (None or ``"all"`` clears a field; ``sort_by=None`` keeps the sort), show the first case
        and return the visible cases."""
        return self._set_filter({"tag": tag, "hoi": hoi, "outcome": outcome, "sort_by": sort_by})

    def _apply_filter(self, f: Mapping[str, Optional[str]]) -> list[HOIInspectCase]:
        return filter_hoi_cases(self.cases, **f)

    def _image_name(self, case: HOIInspectCase) -> str:
        return case.filename

    def _render(self, case: HOIInspectCase, image: Optional[Image.Image]) -> Image.Image:
        return render_hoi_case(case, image, self.panel)

    def _label_html(self, case: HOIInspectCase) -> str:
        top = case.top[0].label if case.top else "(none)"
        return (f"gt <b>{html.escape(', '.join(case.gt_labels))}</b> ({'/'.join(case.tags)}) · "
                f"top-1 <b>{html.escape(top)}</b> · outcome <b>{case.outcome}</b> · "
                f"score {case.confidence:.3f} · recall@{len(case.top)} {case.recall:.2f}")

    def _details_html(self, case: HOIInspectCase) -> str:
        return hoi_details_html(case)


def open_hoi_inspector(run_dir: str | os.PathLike, world_dir: str | os.PathLike, model: str = "clhoi",
                       seed: int = 0, k: int = 5, image_root: Optional[str | os.PathLike] = None,
                       **filters: Any) -> HOIInspector:
    """The inspector of ``run_dir/predictions/hoi-<model>-seed<seed>.json`` against ``world_dir/hoi_test.json``
    (unseen HOIs from ``world_dir/hoi_zero_shot.json``).

    Raises:
        FileNotFoundError: the predictions or the HOI test file are absent (the message names the file and the
            stage that writes it).
        ValueError: the predictions file is not valid JSON or a detection is malformed (the message names it).
    """
    from .train import load_hoi_world

    run, world = Path(run_dir), Path(world_dir)
    pred_path = run / "predictions" / f"hoi-{model}-seed{seed}.json"
    if not pred_path.is_file():
        have = sorted(p.name for p in (run / "predictions").glob("hoi-*.json"))
        raise FileNotFoundError(f"{pred_path} is absent (written by the CL-HOI stage, 07_cl_hoi); "
                                f"HOI predictions present: {have or 'none'}")
    if not (world / "hoi_test.json").is_file():
        raise FileNotFoundError(f"{world / 'hoi_test.json'} is absent (written by the data stage, 00_data)")
    try:
        preds = json.loads(pred_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{pred_path}: not valid JSON ({e})") from e
    w = load_hoi_world(world)
    try:
        cases = build_hoi_cases(w.test, w.vocab, preds, w.unseen, k=k)
    except ValueError as e:
        raise ValueError(f"{pred_path}: {e}") from e
    return HOIInspector(cases, image_root=image_root if image_root is not None else w.images_dir, **filters)
