"""A browser of a run's rationales (MIPD's glimpse / gaze rationales after the JRG judge), after fastai's widgets.

Data apart from display: :func:`build_items` joins the records of ``rationales.jsonl``
(:mod:`mipd_kit.rationales.store`) with the world's annotations (the annotated verb, and the role's box for a gaze
rationale); :func:`filter_items` and :func:`sample_items` are pure; :func:`render_item` draws one rationale's image
(the role box of a gaze rationale drawn with :func:`mipd_kit.viz.draw.draw_frame`). :class:`RationaleBrowser` is a
thin ``ipywidgets`` class on the shared :class:`mipd_kit.viz.browser.CaseBrowser` (filters verb / kind / polarity,
the image with the box, the text and the judge's verdict); its plain accessors let tests drive it without a browser.

``mipd publish`` uses the same :func:`sample_items` and :func:`render_item` for the sample rationales it commits
beside a report, so the report and the inspector show the same thing.
"""

from __future__ import annotations

import html
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from PIL import Image

from mipd_kit.data.records import Situation
from mipd_kit.rationales.store import Rationale, read_rationales

from .browser import PANEL_SIZE, CaseBrowser, placeholder_image
from .draw import draw_frame

#: verb filter value of images without an annotation (the unlabeled pool)
UNLABELED = "(unlabeled)"
#: the strata :func:`sample_items` spreads a sample over, in display order
STRATA: tuple[tuple[str, str], ...] = (("glimpse", "positive"), ("glimpse", "negative"), ("gaze", "positive"),
                                       ("gaze", "negative"))
#: the SWiG annotation files of a world that are searched for an image's annotation
SPLIT_FILES = ("train.json", "dev.json", "test.json")


@dataclass(frozen=True)
class RationaleItem:
    """One rationale with what the world knows of its image.

    Attributes:
        rationale: the stored record.
        verb: the image's annotated verb (None: not annotated, e.g. the unlabeled pool).
        box: the role's annotated box ``[x1, y1, x2, y2]`` for a gaze rationale (None: glimpse, or no box).
        noun: the role's noun (first annotator) for a gaze rationale, else None.
        width, height: the annotated image size (0 when unknown).
    """

    rationale: Rationale
    verb: Optional[str] = None
    box: Optional[list[float]] = None
    noun: Optional[str] = None
    width: int = 0
    height: int = 0

    @property
    def image(self) -> str:
        return self.rationale.image

    @property
    def verb_label(self) -> str:
        return self.verb if self.verb is not None else UNLABELED


def load_world_situations(world_dir: str | os.PathLike,
                          files: Sequence[str] = SPLIT_FILES) -> dict[str, Situation]:
    """``{image: Situation}`` of every SWiG annotation file of ``world_dir`` that exists (train, dev, test)."""
    from mipd_kit.data.swig import load_situations

    out: dict[str, Situation] = {}
    for name in files:
        p = Path(world_dir) / name
        if p.is_file():
            out.update(load_situations(p))
    return out


def build_items(rationales: Sequence[Rationale], situations: Mapping[str, Situation]) -> list[RationaleItem]:
    """Join rationales (file order kept) with their images' annotations.

    Args:
        rationales: records of ``rationales.jsonl``.
        situations: image -> annotation (images absent here get ``verb=None``).
    """
    out = []
    for r in rationales:
        s = situations.get(r.image)
        if s is None:
            out.append(RationaleItem(r))
            continue
        box = noun = None
        if r.kind == "gaze" and r.role is not None:
            b = s.boxes.get(r.role)
            box = None if b is None or list(b) == [-1, -1, -1, -1] else [float(v) for v in b]
            noun = s.frames[0].get(r.role) if s.frames else None
        out.append(RationaleItem(r, s.verb, box, noun, s.width, s.height))
    return out


def filter_items(items: Sequence[RationaleItem], verb: Optional[str] = None, kind: Optional[str] = None,
                 polarity: Optional[str] = None) -> list[RationaleItem]:
    """The items matching every given field (None or ``"all"``: any), in their order; ``verb=UNLABELED`` selects
    the images without an annotation."""
    def ok(want: Optional[str], have: str) -> bool:
        return want in (None, "all") or want == have

    return [it for it in items if ok(verb, it.verb_label) and ok(kind, it.rationale.kind)
            and ok(polarity, it.rationale.polarity)]


def sample_items(items: Sequence[RationaleItem], n: int, seed: int = 0, unjudged: Optional[int] = None
                 ) -> list[RationaleItem]:
    """A seeded sample of ``n`` items spread about evenly over :data:`STRATA` (glimpse / gaze x positive /
    negative), plus ``unjudged`` descriptions of unlabeled images (default ``n // 10``: two of twenty).

    A stratum with too few items gives its share to the others (round robin), so the sample has ``n`` items
    whenever the store has that many of these polarities. Returned in stratum order (unjudged last), each stratum
    in file order.
    """
    rng = random.Random(seed)
    pools = {s: [i for i, it in enumerate(items) if (it.rationale.kind, it.rationale.polarity) == s]
             for s in STRATA}
    unj = [i for i, it in enumerate(items) if it.rationale.polarity == "unjudged"]
    n_unj = min(len(unj), n // 10 if unjudged is None else unjudged, n)
    quota = {s: 0 for s in STRATA}
    left = n - n_unj
    while left > 0:
        open_ = [s for s in STRATA if quota[s] < len(pools[s])]
        if not open_:
            break
        for s in open_:
            if left == 0:
                break
            quota[s] += 1
            left -= 1
    n_unj = min(len(unj), n_unj + left)  # nothing else left: more unlabeled descriptions
    picked = [sorted(rng.sample(pools[s], quota[s])) for s in STRATA] + [sorted(rng.sample(unj, n_unj))]
    return [items[i] for group in picked for i in group]


def render_item(item: RationaleItem, image: Optional[Image.Image], upscale: Optional[int] = None) -> Image.Image:
    """The image of a rationale; for a gaze rationale its role's annotated box is drawn and labelled.

    Args:
        item: the rationale.
        image: the image (None: a placeholder of the annotated size).
        upscale: integer scale factor (default: the short side becomes at least 384 px).
    """
    if image is None:
        image = placeholder_image(item.width, item.height)
    r = item.rationale
    title = f"{r.kind} · {r.polarity}" + (f" · {r.role}" if r.role else "") + f" · verb {item.verb_label}"
    frame: dict[str, dict[str, Any]] = {}
    if r.kind == "gaze" and r.role:
        frame = {r.role: {"noun": item.noun or "", "box": item.box}}
    return draw_frame(image, frame, title=title, upscale=upscale)


def verdict_text(r: Rationale) -> str:
    """``accept`` / ``reject`` with the judge's score, or ``not judged``."""
    if not r.verdict:
        return "not judged" if r.score is None else f"score {r.score:g}"
    acc = r.verdict.get("accept")
    score = r.verdict.get("score", r.score)
    word = "accept" if acc else ("reject" if acc is not None else "?")
    return f"{word} (score {score:g})" if isinstance(score, (int, float)) else word


def item_details_html(item: RationaleItem) -> str:
    """The text, verdict, reasons and provenance of a rationale as an HTML fragment."""
    e = html.escape
    r = item.rationale
    colour = {"positive": "#1a7f37", "negative": "#b42318"}.get(r.polarity, "#444")
    reasons = (r.verdict or {}).get("reasons") or []
    parts = [f"<div style='font-size:13px;padding-left:10px'>",
             f"<p style='color:{colour};font-size:15px'>“{e(r.text)}”</p>",
             f"<b>verdict</b>: {e(verdict_text(r))}"]
    if reasons:
        parts.append("<ul>" + "".join(f"<li>{e(str(x))}</li>" for x in reasons) + "</ul>")
    parts.append("<table>" + "".join(f"<tr><td>{k}</td><td>{e(str(v))}</td></tr>" for k, v in (
        ("kind", r.kind), ("role", r.role or "-"), ("polarity", r.polarity), ("round", r.round),
        ("source", r.source), ("target", r.target or "-"), ("annotated verb", item.verb_label),
        ("backend", r.backend))) + "</table></div>")
    return "".join(parts)


class RationaleBrowser(CaseBrowser):
    """Browse rationales: filters verb / kind / polarity, a slider with prev / next, the image (role box drawn for
    a gaze rationale), the text and the judge's verdict.

    Args:
        items: from :func:`build_items`.
        image_root: folder the images are relative to (None: always placeholders).
        verb, kind, polarity: initial filter (None or ``"all"``: any).
        panel: approximate size in pixels of the image.
    """

    def __init__(self, items: Sequence[RationaleItem], image_root: Optional[str | os.PathLike] = None,
                 verb: Optional[str] = None, kind: Optional[str] = None, polarity: Optional[str] = None,
                 panel: int = PANEL_SIZE):
        items = list(items)
        filters = {"verb": ["all"] + sorted({it.verb_label for it in items}),
                   "kind": ["all"] + sorted({it.rationale.kind for it in items}),
                   "polarity": ["all"] + sorted({it.rationale.polarity for it in items})}
        super().__init__(items, filters, {"verb": verb, "kind": kind, "polarity": polarity}, image_root,
                         "mipd-rationales", panel)
        self.w_verb, self.w_kind, self.w_polarity = (self.dropdowns[k] for k in filters)

    def set_filter(self, verb: Optional[str] = None, kind: Optional[str] = None,
                   polarity: Optional[str] = None) -> list[RationaleItem]:
        """Set the filter (None or ``"all"`` clears a field) and show the first item; returns the visible items."""
        return self._set_filter({"verb": verb, "kind": kind, "polarity": polarity})

    def _apply_filter(self, f: Mapping[str, Optional[str]]) -> list[RationaleItem]:
        return filter_items(self.cases, **f)

    def _image_name(self, item: RationaleItem) -> str:
        return item.image

    def _render(self, item: RationaleItem, image: Optional[Image.Image]) -> Image.Image:
        upscale = max(1, round(self.panel / max(image.size))) if image is not None else None
        return render_item(item, image, upscale)

    def _label_html(self, item: RationaleItem) -> str:
        r = item.rationale
        return (f"verb <b>{html.escape(item.verb_label)}</b> · {r.kind}"
                f"{' (' + html.escape(r.role) + ')' if r.role else ''} · <b>{r.polarity}</b> · round {r.round} · "
                f"{html.escape(verdict_text(r))}")

    def _details_html(self, item: RationaleItem) -> str:
        return item_details_html(item)


def open_rationale_browser(run_dir: str | os.PathLike, world_dir: str | os.PathLike,
                           store: Optional[str | os.PathLike] = None, image_root: Optional[str | os.PathLike] = None,
                           **filters: Any) -> RationaleBrowser:
    """The browser of ``run_dir/rationales.jsonl`` (or ``store``) with the annotations of ``world_dir``.

    Raises:
        DataError: the store is absent or has a bad line (named).
    """
    path = Path(store) if store is not None else Path(run_dir) / "rationales.jsonl"
    items = build_items(read_rationales(path), load_world_situations(world_dir))
    root = image_root if image_root is not None else Path(world_dir) / "images"
    return RationaleBrowser(items, image_root=root, **filters)
