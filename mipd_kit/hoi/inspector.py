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
from mipd_kit.viz.cases import write_case_list
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
    from .world import load_hoi_world

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


# -- two models on one image ----------------------------------------------------------------------------------------
#: contrast filters of :func:`filter_hoi_pairs` ("right": the model's top detection is ``correct``).
HOI_CONTRASTS: tuple[str, ...] = ("all", "a_right_b_wrong", "a_wrong_b_right", "both_wrong", "both_right")


@dataclass(frozen=True)
class HOIPairCase:
    """One HOI test image under two models (``a``, ``b``: their :class:`HOIInspectCase`)."""

    a: HOIInspectCase
    b: HOIInspectCase

    @property
    def filename(self) -> str:
        return self.a.filename

    @property
    def contrast(self) -> str:
        ra, rb = self.a.outcome == "correct", self.b.outcome == "correct"
        return {(True, False): "a_right_b_wrong", (False, True): "a_wrong_b_right",
                (False, False): "both_wrong", (True, True): "both_right"}[(ra, rb)]


def pair_hoi_cases(a: Sequence[HOIInspectCase], b: Sequence[HOIInspectCase]) -> list[HOIPairCase]:
    """The images both case lists hold, in ``a``'s order."""
    by = {c.filename: c for c in b}
    return [HOIPairCase(c, by[c.filename]) for c in a if c.filename in by]


def filter_hoi_pairs(pairs: Sequence[HOIPairCase], tag: Optional[str] = None, hoi: Optional[str] = None,
                     contrast: Optional[str] = None) -> list[HOIPairCase]:
    """Pairs by tag, annotated HOI and contrast (None / ``"all"``: any); ``b``'s confident top detections first.

    Raises:
        ValueError: an unknown tag or contrast (naming the choices).
    """
    if tag not in (None, "all", *TAGS):
        raise ValueError(f"tag must be one of {TAGS} (or None), got {tag!r}")
    if contrast not in (None, *HOI_CONTRASTS):
        raise ValueError(f"contrast must be one of {HOI_CONTRASTS}, got {contrast!r}")
    sel = [p for p in pairs if (tag in (None, "all") or tag in p.a.tags)
           and (hoi in (None, "all") or hoi in p.a.gt_labels) and (contrast in (None, "all") or p.contrast == contrast)]
    return sorted(sel, key=lambda p: (-p.b.confidence, -p.a.confidence, p.filename))


def descriptions_by_hoi(descriptions: Mapping[str, str], train: Sequence[HOIImage], vocab: HOIVocab,
                        limit: int = 3) -> dict[str, list[tuple[str, str]]]:
    """HOI label -> up to ``limit`` (training image, its description) of training images annotated with it: the
    descriptions the VLT learned context from (``clhoi/descriptions.jsonl``), shown for a test image's HOIs."""
    out: dict[str, list[tuple[str, str]]] = {}
    for im in train:
        text = descriptions.get(im.filename)
        if not text:
            continue
        for h in sorted(set(im.hoi)):
            items = out.setdefault(hoi_label(vocab, h), [])
            if len(items) < limit:
                items.append((im.filename, text))
    return out


class HOICompareInspector(CaseBrowser):
    """Two HOI models on the same test images: A's top detections, B's top detections and the annotated pairs
    side by side, with the descriptions of training images of the annotated HOIs (what the VLT learned from).

    Args:
        pairs: from :func:`pair_hoi_cases`.
        names: the two models (A, B).
        descriptions: HOI label -> [(training image, description)] (:func:`descriptions_by_hoi`).
        image_root: folder of the images.
        tag, hoi, contrast: initial filter.
    """

    def __init__(self, pairs: Sequence[HOIPairCase], names: tuple[str, str] = ("clhoi", "icn"),
                 descriptions: Optional[Mapping[str, Sequence[tuple[str, str]]]] = None,
                 image_root: Optional[str | os.PathLike] = None, tag: Optional[str] = None,
                 hoi: Optional[str] = None, contrast: Optional[str] = None, panel: int = 256):
        pairs = list(pairs)
        self.names = names
        self.descriptions = dict(descriptions or {})
        filters = {"tag": ["all"] + [t for t in TAGS if any(t in p.a.tags for p in pairs)],
                   "hoi": ["all"] + sorted({label for p in pairs for label in p.a.gt_labels}),
                   "contrast": list(HOI_CONTRASTS)}
        super().__init__(pairs, filters, {"tag": tag, "hoi": hoi, "contrast": contrast}, image_root,
                         "mipd-hoi-compare", panel)

    def set_filter(self, tag: Optional[str] = None, hoi: Optional[str] = None,
                   contrast: Optional[str] = None) -> list[HOIPairCase]:
        """Set the filter (None or ``"all"`` clears a field), show the first pair and return the visible pairs."""
        return self._set_filter({"tag": tag, "hoi": hoi, "contrast": contrast})

    def export(self, path: str | os.PathLike) -> Path:
        """Write the visible pairs (image, tags, annotated HOIs, each model's top HOI, score and outcome) to
        ``path``: CSV for ``.csv``, else JSON."""
        rows = [{"image": p.filename, "tags": "/".join(p.a.tags), "gt": "; ".join(p.a.gt_labels),
                 "contrast": p.contrast, **{f"{n}_{k}": v for n, c in zip(self.names, (p.a, p.b)) for k, v in
                                            (("top", c.top[0].label if c.top else None),
                                             ("score", round(c.confidence, 4)), ("outcome", c.outcome))}}
                for p in self.visible_cases()]
        return write_case_list(rows, path)

    def _apply_filter(self, f: Mapping[str, Optional[str]]) -> list[HOIPairCase]:
        return filter_hoi_pairs(self.cases, **f)

    def _image_name(self, pair: HOIPairCase) -> str:
        return pair.filename

    def _render(self, pair: HOIPairCase, image: Optional[Image.Image]) -> Image.Image:
        if image is None:
            image = placeholder_image(pair.a.width, pair.a.height)
        up = max(1, round(self.panel / max(image.size)))
        a = draw_hoi_pairs(image, [p.drawable() for p in pair.a.top], upscale=up)
        b = draw_hoi_pairs(image, [p.drawable() for p in pair.b.top], upscale=up)
        gt = draw_hoi_pairs(image, [p.drawable() for p in pair.a.gt], upscale=up)
        return side_by_side(side_by_side(a, b), gt)

    def _label_html(self, pair: HOIPairCase) -> str:
        e = html.escape
        tops = " · ".join(f"{e(n)} <b>{e(c.top[0].label if c.top else '(none)')}</b> ({c.outcome})"
                          for n, c in zip(self.names, (pair.a, pair.b)))
        return f"gt <b>{e(', '.join(pair.a.gt_labels))}</b> ({'/'.join(pair.a.tags)}) · {tops}"

    def _details_html(self, pair: HOIPairCase) -> str:
        e = html.escape
        parts = [f"<table><tr><td style='vertical-align:top'><b>{e(self.names[0])}</b>{hoi_details_html(pair.a)}</td>"
                 f"<td style='vertical-align:top;padding-left:12px'><b>{e(self.names[1])}</b>"
                 f"{hoi_details_html(pair.b)}</td></tr></table>"]
        for label in pair.a.gt_labels:
            items = self.descriptions.get(label, [])
            parts.append(f"<b>descriptions of training images of <i>{e(label)}</i></b> (what the VLT learned from)"
                         + ("<ul>" + "".join(f"<li>{e(t)} <span style='color:#666'>({e(f)})</span></li>"
                                             for f, t in items) + "</ul>" if items else ": <i>none</i><br>"))
        return "<div style='font-size:12px'>" + "".join(parts) + "</div>"


def open_hoi_compare(run_dir: str | os.PathLike, world_dir: str | os.PathLike, model_a: str = "clhoi",
                     model_b: str = "icn", seed: int = 0, k: int = 5,
                     image_root: Optional[str | os.PathLike] = None, **filters: Any) -> HOICompareInspector:
    """The HOI comparison of ``predictions/hoi-<model>-seed<seed>.json`` of two models, with the descriptions of
    ``run_dir/clhoi/descriptions.jsonl`` (when present).

    Raises:
        FileNotFoundError: a predictions file is absent (naming the HOI predictions present).
    """
    a, b = (open_hoi_inspector(run_dir, world_dir, model=m, seed=seed, k=k, image_root=image_root)
            for m in (model_a, model_b))
    from mipd_kit.data.hico import load_hico_instances

    # the annotations of the training images only say which descriptions to show (training never reads them)
    train, vocab = load_hico_instances(Path(world_dir) / "hoi_train.json")
    desc_path = Path(run_dir) / "clhoi" / "descriptions.jsonl"
    texts: dict[str, str] = {}
    if desc_path.is_file():
        for line in desc_path.read_text().splitlines():
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line of a killed run
            texts.setdefault(str(d.get("image")), str(d.get("text", "")))
    return HOICompareInspector(pair_hoi_cases(a.cases, b.cases), (model_a, model_b),
                               descriptions_by_hoi(texts, train, vocab), a.image_root, **filters)
