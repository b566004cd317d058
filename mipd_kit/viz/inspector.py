"""Widget error inspector for Ov-GSR predictions (unseen / rare cases), after fastai's widgets.

The data come from :func:`mipd_kit.viz.cases.build_cases` (pure); this module draws a case (prediction and ground
truth side by side, boxes with role labels) and wraps the case list in a thin ``ipywidgets`` class,
:class:`Inspector`, whose plain accessors (``set_filter``, ``current_case``, ``rendered_image``, ``visible_cases``,
``next``/``prev``/``select``) let tests drive it without a browser.

Images are looked up as ``image_root / case.image``; a missing image is drawn as a grey placeholder of the
annotated size and counted in :attr:`Inspector.missing_images` (real-mode SWiG predictions without the images).
:class:`CompareInspector` (:func:`open_compare`) shows two models of a run on the same image with the training
rationales of the gold and the predicted verbs and the run's nearest training images (:mod:`mipd_kit.viz.neighbours`);
:class:`ConfusionBrowser` goes from a cell of the unseen-verb confusion to a grid of its cases; both export the case
list on display (CSV / JSON).

``write_demo`` writes a tiny SWiG-format world with predictions and rationales so that the inspector (and the
analysis notebook) can be tried without running the pipeline; its numbers mean nothing.

The inspector stays one file (about 620 lines, widget and drawing code): its three widgets share the case drawing
and the export of the cases on display.
"""

from __future__ import annotations

import html
import json
import os
import random
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from PIL import Image, ImageDraw

from .browser import PANEL_SIZE, CaseBrowser, placeholder_image, png_bytes, side_by_side
from .cases import (CONTRASTS, ERROR_TYPES, SORT_KEYS, SPLIT_NAMES, Case, PairCase, cell_cases, export_cases,
                    filter_cases, filter_pairs, pair_cases, prediction_models, training_rationales, verb_confusion)
from .draw import draw_frame
from .neighbours import Neighbour, TrainingNeighbours, describe, load_training_neighbours


# -- drawing -----------------------------------------------------------------------------------------------------
def render_case(case: Case, image: Optional[Image.Image], panel: int = PANEL_SIZE) -> Image.Image:
    """Prediction (left) and ground truth (right) side by side, drawn with the shared ``draw_frame``.

    Both frames list the roles in the ground truth's order (roles the prediction lacks appear as
    ``(missing)``), so a role has the same colour in both panels.
    """
    if image is None:
        image = placeholder_image(case.width, case.height)
    source = {None: " [top-1 frame, not checked]", "top1": "", "gt_verb_frame": " [frame given gt verb]",
              "top5": f" [{case.gt_verb} frame from top-5]"}[case.frame_source]
    gt = case.gt_frame()
    pred = case.pred_frame()
    if case.frame_source is not None:
        pred = {r: pred.get(r, {"noun": "(missing)", "box": None}) for r in gt}
    upscale = max(1, round(panel / max(image.size)))
    left = draw_frame(image, pred, title=f"pred: {case.pred_verb or '(none)'}{source}", upscale=upscale)
    right = draw_frame(image, gt, title=f"gt: {case.gt_verb} ({'/'.join(case.split_tags) or 'no split'})",
                       upscale=upscale)
    return side_by_side(left, right)


# -- the widget ----------------------------------------------------------------------------------------------------
class Inspector(CaseBrowser):
    """Browse error cases: filters (split, verb, error type, sort), a slider with prev/next, the drawn case,
    the top-5 verbs with scores and the positive / negative rationales.

    Args:
        cases: from :func:`build_cases`.
        image_root: folder the case images are relative to (None: always placeholders).
        split, verb, error, sort_by: initial filter.
        panel: size in pixels of each of the two image panels.
    """

    def __init__(self, cases: Sequence[Case], image_root: Optional[str | os.PathLike] = None,
                 split: Optional[str] = None, verb: Optional[str] = None, error: Optional[str] = None,
                 sort_by: str = "confidence", panel: int = PANEL_SIZE):
        cases = list(cases)
        filters = {"split": ["all"] + [s for s in SPLIT_NAMES if any(s in c.split_tags for c in cases)],
                   "verb": ["all"] + sorted({c.gt_verb for c in cases}),
                   "error": ["all", *ERROR_TYPES],
                   "sort_by": list(SORT_KEYS)}
        super().__init__(cases, filters, {"split": split, "verb": verb, "error": error, "sort_by": sort_by},
                         image_root, "mipd-inspector", panel)
        self.w_split, self.w_verb, self.w_error, self.w_sort = (self.dropdowns[k] for k in filters)

    def set_filter(self, split: Optional[str] = None, verb: Optional[str] = None, error: Optional[str] = None,
                   sort_by: Optional[str] = None) -> list[Case]:
        """Set the filter (None or ``"all"`` clears a field; ``sort_by=None`` keeps the sort) and show the first
        case; returns the visible cases."""
        return self._set_filter({"split": split, "verb": verb, "error": error, "sort_by": sort_by})

    # -- hooks -----------------------------------------------------------------------------------------------------
    def _apply_filter(self, f: Mapping[str, Optional[str]]) -> list[Case]:
        return filter_cases(self.cases, **f)

    def _image_name(self, case: Case) -> str:
        return case.image

    def _render(self, case: Case, image: Optional[Image.Image]) -> Image.Image:
        return render_case(case, image, self.panel)

    def _label_html(self, case: Case) -> str:
        return (f"gt <b>{html.escape(case.gt_verb)}</b> ({html.escape('/'.join(case.split_tags) or 'no split')}) · "
                f"pred <b>{html.escape(str(case.pred_verb))}</b> · error <b>{case.error}</b> · "
                f"confidence {case.confidence:.3f} · loss {case.loss:.3f}")

    def _details_html(self, case: Case) -> str:
        return details_html(case)


def details_html(case: Case) -> str:
    """Top-5 verbs with scores, per-role checks and the rationales of a case, as an HTML fragment."""
    e = html.escape
    rows = "".join(
        f"<tr><td>{i + 1}</td><td>{'<b>' if v == case.gt_verb else ''}{e(v)}{'</b>' if v == case.gt_verb else ''}"
        f"</td><td>{s:.3f}</td></tr>" for i, (v, s) in enumerate(case.top5))
    parts = [f"<div style='font-size:12px;padding-left:10px'><b>top-5 verbs</b> (gt in bold)"
             f"<table>{rows or '<tr><td>(no prediction)</td></tr>'}</table>"]
    rrows = "".join(
        f"<tr><td>{e(r.role)}</td><td>{e(r.pred_noun if r.pred_noun is not None else '(missing)')}</td>"
        f"<td>{e(' / '.join(n or '∅' for n in r.gt_nouns))}</td><td>{'✓' if r.noun_ok else '✗'}</td>"
        f"<td>{'-' if r.box_ok is None else ('✓' if r.box_ok else '✗')} {r.iou:.2f}</td></tr>" for r in case.roles)
    parts.append("<b>roles</b><table><tr><th>role</th><th>pred</th><th>gt</th><th>noun</th><th>box (IoU)</th></tr>"
                 f"{rrows}</table>")
    if case.rationales:
        g = case.rationales.get("glimpse", {})
        parts.append("<b>glimpse rationales</b><ul>"
                     + "".join(f"<li style='color:#1a7f37'>+ {e(t)}</li>" for t in g.get("positive", []))
                     + "".join(f"<li style='color:#b42318'>− {e(t)}</li>" for t in g.get("negative", [])) + "</ul>")
        for role, d in case.rationales.get("gaze", {}).items():
            parts.append(f"<b>gaze: {e(role)}</b><ul>"
                         + "".join(f"<li style='color:#1a7f37'>+ {e(t)}</li>" for t in d.get("positive", []))
                         + "".join(f"<li style='color:#b42318'>− {e(t)}</li>" for t in d.get("negative", []))
                         + "</ul>")
    else:
        parts.append("<i>no rationales for this image</i>")
    parts.append("</div>")
    return "".join(parts)


# -- a tiny demo world -----------------------------------------------------------------------------------------------
DEMO_VERBS: dict[str, tuple[str, ...]] = {
    "riding": ("agent", "vehicle", "place"), "carrying": ("agent", "item", "place"),
    "pushing": ("agent", "item", "place"), "jumping": ("agent", "obstacle", "place"),
    "throwing": ("agent", "item", "place"), "kicking": ("agent", "item", "place"),
    "lifting": ("agent", "item", "place"),
}
DEMO_SPLIT = {"seen": ["riding", "carrying", "pushing", "jumping"], "rare": ["throwing"],
              "unseen": ["kicking", "lifting"], "unseen_compositional": ["kicking"], "unseen_novel": ["lifting"]}
DEMO_NOUNS = ("person", "man", "woman", "horse", "bicycle", "box", "ball", "fence", "field", "street")


def _demo_situation(rng: random.Random, verb: str, size: int) -> tuple[dict[str, Any], Image.Image]:
    roles = DEMO_VERBS[verb]
    place = rng.choice(["field", "street"])
    bg = (120, 170, 90) if place == "field" else (150, 150, 160)
    im = Image.new("RGB", (size, size), bg)
    d = ImageDraw.Draw(im)
    ax, ay = rng.randint(8, size // 2 - 10), rng.randint(20, size // 2)
    agent = [ax, ay, ax + size // 5, ay + size // 2]
    ox, oy = rng.randint(size // 2, size - size // 4 - 2), rng.randint(size // 3, size - size // 4 - 2)
    obj = [ox, oy, ox + size // 4, oy + size // 4]
    d.rectangle(agent, fill=(230, 190, 150))
    d.ellipse(obj, fill=(rng.randint(50, 250), rng.randint(50, 250), rng.randint(50, 250)))
    obj_noun = {"vehicle": rng.choice(["horse", "bicycle"]), "item": rng.choice(["box", "ball"]),
                "obstacle": "fence"}[roles[1]]
    agent_nouns = [rng.choice(["person", "man", "woman"]) for _ in range(3)]
    frames = [{roles[0]: agent_nouns[k], roles[1]: obj_noun, roles[2]: place} for k in range(3)]
    rec = {"verb": verb, "width": size, "height": size, "frames": frames,
           "bb": {roles[0]: agent, roles[1]: obj, roles[2]: [-1, -1, -1, -1]}}
    return rec, im


def _demo_prediction(rng: random.Random, rec: dict[str, Any], p_correct: float) -> dict[str, Any]:
    verbs = list(DEMO_VERBS)
    gt = rec["verb"]
    top = gt if rng.random() < p_correct else rng.choice([v for v in verbs if v != gt])
    rest = [v for v in verbs if v != top]
    rng.shuffle(rest)
    order = [top, *rest[:4]]
    raw = sorted((rng.random() for _ in order), reverse=True)
    z = sum(raw) * rng.uniform(1.0, 1.6)
    out_verbs = []
    for v, s in zip(order, raw):
        frame = {}
        for role in DEMO_VERBS[v]:
            gt_box = rec["bb"].get(role)
            noun = rec["frames"][0].get(role) or rng.choice(DEMO_NOUNS)
            if rng.random() < 0.15:
                noun = rng.choice(DEMO_NOUNS)
            if gt_box is None or gt_box == [-1, -1, -1, -1]:
                box = None
            elif rng.random() < 0.12:
                box = None
            else:
                j = rng.uniform(0, 12) if rng.random() < 0.8 else rng.uniform(15, 40)
                box = [max(0.0, gt_box[0] + j), max(0.0, gt_box[1] - j / 2), gt_box[2] + j / 2, gt_box[3] + j]
            frame[role] = {"noun": noun, "box": box}
        out_verbs.append({"verb": v, "score": round(s / z, 4), "frame": frame})
    return {"verbs": out_verbs}


def write_demo(out_dir: str | os.PathLike, seed: int = 0, n_test: int = 28, n_train: int = 60,
               size: int = 128, models: Sequence[str] = ("baseline", "mipd")) -> tuple[Path, Path]:
    """Write a tiny SWiG-format demo: ``out_dir/world`` (images, train/test.json, ov_split.json) and
    ``out_dir/run`` (``predictions/<model>-seed<seed>.json``, ``rationales.jsonl``).

    The predictions are random perturbations of the ground truth: the demo exercises the tools, its numbers mean
    nothing. Returns (world_dir, run_dir).
    """
    rng = random.Random(seed)
    root = Path(out_dir)
    world, run = root / "world", root / "run"
    (world / "images").mkdir(parents=True, exist_ok=True)
    (run / "predictions").mkdir(parents=True, exist_ok=True)
    trainable = DEMO_SPLIT["seen"] * 5 + DEMO_SPLIT["rare"]
    train, test = {}, {}
    for i in range(n_train):
        verb = trainable[i % len(trainable)]
        rec, _ = _demo_situation(rng, verb, size)
        train[f"train_{verb}_{i:03d}.png"] = rec
    verbs = list(DEMO_VERBS)
    for i in range(n_test):
        verb = verbs[i % len(verbs)]
        rec, im = _demo_situation(rng, verb, size)
        name = f"test_{verb}_{i:03d}.png"
        im.save(world / "images" / name)
        test[name] = rec
    (world / "train.json").write_text(json.dumps(train))
    (world / "test.json").write_text(json.dumps(test))
    counts = {v: sum(r["verb"] == v for r in train.values()) for v in verbs}
    (world / "ov_split.json").write_text(json.dumps({**DEMO_SPLIT, "rule": "demo", "counts": counts}))
    for k, model in enumerate(models):
        p_correct = 0.45 + 0.2 * k
        preds = {name: _demo_prediction(rng, rec, p_correct if rec["verb"] not in DEMO_SPLIT["unseen"]
                                        else p_correct / 2) for name, rec in test.items()}
        (run / "predictions" / f"{model}-seed{seed}.json").write_text(json.dumps(preds))
    lines = []
    for name, rec in test.items():
        v = rec["verb"]
        lines.append({"image": name, "kind": "glimpse", "role": None, "polarity": "positive",
                      "text": f"a person is {v} in a {rec['frames'][0][DEMO_VERBS[v][2]]}", "round": 1,
                      "score": 0.9, "backend": "demo"})
        lines.append({"image": name, "kind": "glimpse", "role": None, "polarity": "negative",
                      "text": f"a person is {rng.choice([u for u in verbs if u != v])}", "round": 1,
                      "score": 0.2, "backend": "demo", "index": 1})
        role = DEMO_VERBS[v][1]
        lines.append({"image": name, "kind": "gaze", "role": role, "polarity": "positive",
                      "text": f"the {role} is a {rec['frames'][0][role]}", "round": 1, "score": 0.8,
                      "backend": "demo"})
    (run / "rationales.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return world, run


def collect_rationales(path: str | os.PathLike) -> dict[str, Any]:
    """``collect(read_rationales(path))`` of ``mipd_kit.rationales.store``."""
    from ..rationales.store import collect, read_rationales

    return collect(read_rationales(path))


def open_inspector(run_dir: str | os.PathLike, world_dir: str | os.PathLike, model: str = "mipd", seed: int = 0,
                   test_file: str = "test.json", image_root: Optional[str | os.PathLike] = None,
                   **filters: Any) -> Inspector:
    """Build the inspector of ``run_dir/predictions/<model>-seed<seed>.json`` against ``world_dir/<test_file>``.

    The split is ``run_dir/ov_split.json`` (else ``world_dir/ov_split.json``); rationales come from
    ``run_dir/rationales.jsonl`` when present.

    Raises:
        FileNotFoundError: the predictions or the ground truth are absent (the message names the file and the
            stage that writes it).
    """
    from .cases import build_cases, load_situations, load_split

    run, world = Path(run_dir), Path(world_dir)
    pred_path = run / "predictions" / f"{model}-seed{seed}.json"
    if not pred_path.is_file():
        have = sorted(p.name for p in (run / "predictions").glob("*.json")) if (run / "predictions").is_dir() else []
        raise FileNotFoundError(f"{pred_path} is absent (written by the distillation stage, 05_distillation); "
                                f"predictions present: {have or 'none'}")
    gt_path = world / test_file
    if not gt_path.is_file():
        raise FileNotFoundError(f"{gt_path} is absent (written by the data stage, 00_data)")
    split_path = run / "ov_split.json" if (run / "ov_split.json").is_file() else world / "ov_split.json"
    split = load_split(split_path) if split_path.is_file() else None
    rat_path = run / "rationales.jsonl"
    rationales = collect_rationales(rat_path) if rat_path.is_file() else None
    preds = json.loads(pred_path.read_text())
    cases = build_cases(load_situations(gt_path), preds, split, rationales)
    return Inspector(cases, image_root=image_root if image_root is not None else world / "images", **filters)


# -- two models side by side ----------------------------------------------------------------------------------------
def render_pair(pair: PairCase, image: Optional[Image.Image], names: tuple[str, str],
                panel: int = PANEL_SIZE) -> Image.Image:
    """Model A's frame, model B's frame and the ground truth, left to right (roles in the ground truth's order)."""
    if image is None:
        image = placeholder_image(pair.a.width, pair.a.height)
    upscale = max(1, round(panel / max(image.size)))
    gt = pair.a.gt_frame()
    panels = []
    for name, c in zip(names, (pair.a, pair.b)):
        pred = c.pred_frame()
        if c.frame_source is not None:
            pred = {r: pred.get(r, {"noun": "(missing)", "box": None}) for r in gt}
        mark = "ok" if c.pred_verb == c.gt_verb else "x"
        panels.append(draw_frame(image, pred, title=f"{name}: {c.pred_verb or '(none)'} [{mark}]", upscale=upscale))
    panels.append(draw_frame(image, gt, title=f"gt: {pair.gt_verb} ({'/'.join(pair.split_tags) or 'no split'})",
                             upscale=upscale))
    return side_by_side(side_by_side(panels[0], panels[1]), panels[2])


def _thumb_html(path: Optional[Path], size: int = 72) -> str:
    """A small inline PNG (data URI) of an image file, or nothing when it is absent."""
    import base64

    if path is None or not path.is_file():
        return ""
    im = Image.open(path).convert("RGB")
    im.thumbnail((size, size))
    return (f"<img src='data:image/png;base64,{base64.b64encode(png_bytes(im)).decode()}' "
            f"style='height:{size}px;margin:2px;vertical-align:middle' title='{html.escape(path.name)}'>")


def rationales_html(verb: str, items: Mapping[str, Sequence[Mapping[str, Any]]], image_root: Optional[Path],
                    heading: str) -> str:
    """The training rationales of one verb (:func:`mipd_kit.viz.cases.training_rationales`) with thumbnails."""
    e = html.escape
    if not any(items.values()):
        return f"<b>{e(heading)} <i>{e(verb)}</i></b>: <i>no judged rationale of a training image of this verb</i><br>"
    out = [f"<b>{e(heading)} <i>{e(verb)}</i></b> (training images the student was distilled from)<ul>"]
    for pol, colour, sign in (("positive", "#1a7f37", "+"), ("negative", "#b42318", "−")):
        for it in items.get(pol, ()):
            thumb = _thumb_html(image_root / it["image"] if image_root is not None else None)
            role = f" [{e(str(it['role']))}]" if it.get("role") else ""
            out.append(f"<li style='color:{colour}'>{thumb}{sign} {e(str(it['kind']))}{role}: {e(str(it['text']))}"
                       f" <span style='color:#666'>({e(str(it['image']))})</span></li>")
    return "".join(out) + "</ul>"


def neighbours_html(items: Sequence[Neighbour], image_root: Optional[Path], heading: str, empty: str) -> str:
    """Nearest training images as thumbnails, each captioned with its gold verb and cosine similarity."""
    e = html.escape
    if not items:
        return f"<div class='mipd-neighbours'><b>{e(heading)}</b>: <i>{e(empty)}</i></div>"
    cells = "".join(
        f"<span style='display:inline-block;text-align:center;margin:2px;vertical-align:top' title='{e(n.image)}'>"
        f"{_thumb_html(image_root / n.image if image_root is not None else None) or '[no image]'}<br>"
        f"<span style='font-size:11px'>{e(n.verb)} {n.similarity:.2f}</span></span>" for n in items)
    return f"<div class='mipd-neighbours'><b>{e(heading)}</b><br>{cells}</div>"


class CompareInspector(CaseBrowser):
    """Two models on the same test images: A's frame, B's frame and the ground truth side by side; the top-5 verbs
    of both, the training rationales of the gold verb and of each model's predicted verb, and the run's nearest
    training images of the test image (any verb, and of each of those verbs).

    Args:
        pairs: from :func:`mipd_kit.viz.cases.pair_cases`.
        names: the two models' names (A, B).
        rationales: training rationale records (``Rationale``) and ``train_verbs`` (training image -> gold verb)
            give the rationales shown per verb; None: none shown.
        teacher: image -> the teacher's zero-shot ``[[verb, score], ...]`` (best first; the run's
            ``teacher_zero_shot.json``), shown beside the two models; None: not shown.
        image_root: folder the images (test and training) are relative to.
        split, verb, contrast: initial filter (see :func:`filter_pairs`).
        neighbours: the run's cached pooled embeddings
            (:func:`mipd_kit.viz.neighbours.load_training_neighbours`); None: no nearest training images shown.
        k_neighbours: how many nearest training images per row.
    """

    def __init__(self, pairs: Sequence[PairCase], names: tuple[str, str] = ("mipd", "baseline"),
                 rationales: Optional[Sequence[Any]] = None, train_verbs: Optional[Mapping[str, str]] = None,
                 image_root: Optional[str | os.PathLike] = None, split: Optional[str] = None,
                 verb: Optional[str] = None, contrast: Optional[str] = None, panel: int = 256,
                 teacher: Optional[Mapping[str, Sequence[Sequence[Any]]]] = None,
                 neighbours: Optional[TrainingNeighbours] = None, k_neighbours: int = 5):
        pairs = list(pairs)
        self.names = names
        self.neighbours = neighbours
        self.k_neighbours = k_neighbours
        self.teacher = dict(teacher or {})
        self.rationales = list(rationales or [])
        self.train_verbs = dict(train_verbs or {})
        self._rat_cache: dict[str, dict[str, list[dict[str, Any]]]] = {}
        filters = {"split": ["all"] + [s for s in SPLIT_NAMES if any(s in p.split_tags for p in pairs)],
                   "verb": ["all"] + sorted({p.gt_verb for p in pairs}), "contrast": list(CONTRASTS)}
        super().__init__(pairs, filters, {"split": split, "verb": verb, "contrast": contrast}, image_root,
                         "mipd-compare", panel)
        self.dropdowns["contrast"].options = [(c.replace("a_", f"{names[0]} ").replace("b_", f"{names[1]} ")
                                               .replace("_", " "), c) for c in CONTRASTS]

    def set_filter(self, split: Optional[str] = None, verb: Optional[str] = None,
                   contrast: Optional[str] = None) -> list[PairCase]:
        """Set the filter (None or ``"all"`` clears a field) and show the first pair; returns the visible pairs."""
        return self._set_filter({"split": split, "verb": verb, "contrast": contrast})

    def teacher_top5(self, image: str) -> list[tuple[str, float]]:
        """The teacher's zero-shot top-5 verbs of ``image`` (empty when the run has none)."""
        return [(str(v), float(s)) for v, s in self.teacher.get(image, [])][:5]

    def verb_rationales(self, verb: str) -> dict[str, list[dict[str, Any]]]:
        """The training rationales of ``verb`` (positives and negatives; cached)."""
        if verb not in self._rat_cache:
            self._rat_cache[verb] = training_rationales(self.rationales, self.train_verbs, verb)
        return self._rat_cache[verb]

    def nearest(self, image: str, verb: Optional[str] = None) -> list[Neighbour]:
        """The run's ``k_neighbours`` nearest training images of test image ``image`` (of gold verb ``verb`` when
        given); empty without cached features."""
        return self.neighbours.of(image, self.k_neighbours, verb) if self.neighbours is not None else []

    def export(self, path: str | os.PathLike) -> Path:
        """Write the visible pairs to ``path`` (CSV for ``.csv``, else JSON) and return it."""
        return export_cases(self.visible_cases(), path, self.names)

    # -- hooks -----------------------------------------------------------------------------------------------------
    def _apply_filter(self, f: Mapping[str, Optional[str]]) -> list[PairCase]:
        return filter_pairs(self.cases, **f)

    def _image_name(self, pair: PairCase) -> str:
        return pair.image

    def _render(self, pair: PairCase, image: Optional[Image.Image]) -> Image.Image:
        return render_pair(pair, image, self.names, self.panel)

    def _label_html(self, pair: PairCase) -> str:
        a, b = self.names
        t = self.teacher_top5(pair.image)
        teacher = f"teacher <b>{html.escape(t[0][0])}</b> ({t[0][1]:.2f}) · " if t else ""
        return (f"gt <b>{html.escape(pair.gt_verb)}</b> ({html.escape('/'.join(pair.split_tags) or 'no split')}) · "
                f"{html.escape(a)} <b>{html.escape(str(pair.a.pred_verb))}</b> ({pair.a.confidence:.2f}) · "
                f"{html.escape(b)} <b>{html.escape(str(pair.b.pred_verb))}</b> ({pair.b.confidence:.2f}) · {teacher}"
                f"{pair.contrast.replace('a_', a + ' ').replace('b_', b + ' ').replace('_', ' ')}")

    def _details_html(self, pair: PairCase) -> str:
        e = html.escape
        cols = []
        tops = [(name, c.top5) for name, c in zip(self.names, (pair.a, pair.b))]
        if self.teacher:
            tops.append(("teacher (zero-shot)", self.teacher_top5(pair.image)))
        for name, top5 in tops:
            rows = "".join(f"<tr><td>{'<b>' if v == pair.gt_verb else ''}{e(v)}{'</b>' if v == pair.gt_verb else ''}"
                           f"</td><td>{s:.3f}</td></tr>" for v, s in top5)
            cols.append(f"<td style='vertical-align:top;padding-right:12px'><b>{e(name)}</b> top-5 (gt in bold)"
                        f"<table>{rows or '<tr><td>(no prediction)</td></tr>'}</table></td>")
        parts = [f"<div style='font-size:12px;padding-left:10px'><table><tr>{''.join(cols)}</tr></table>"]
        verbs = [("gold verb", pair.gt_verb)] + [(f"{n}'s verb", c.pred_verb) for n, c in zip(self.names, (pair.a, pair.b))
                                                 if c.pred_verb and c.pred_verb != pair.gt_verb]
        nb = self.neighbours
        if nb is not None:
            parts.append(neighbours_html(self.nearest(pair.image), self.image_root,
                                         f"nearest training images (any verb; {describe(nb)})",
                                         "this test image has no cached features"))
        seen: set[str] = set()
        for heading, v in verbs:
            if v in seen:
                continue
            seen.add(v)
            parts.append(rationales_html(v, self.verb_rationales(v), self.image_root, heading))
            if nb is not None:
                parts.append(neighbours_html(self.nearest(pair.image, v), self.image_root,
                                             f"nearest training images of {v} ({nb.source} features)",
                                             "no training image has this verb (unseen)" if not nb.has_verb(v)
                                             else "this test image has no cached features"))
        if nb is None:
            parts.append(f"<div class='mipd-neighbours'><i>{html.escape(describe(nb))}</i></div>")
        return "".join(parts) + "</div>"


def case_grid(cases: Sequence[Case], image_root: Optional[str | os.PathLike], cols: int = 4, size: int = 160,
              limit: int = 16) -> Image.Image:
    """A grid of the first ``limit`` cases (image with the predicted frame, caption ``image: pred (score)``)."""
    from PIL import ImageFont

    cases = list(cases)[:limit]
    rows = max(1, -(-len(cases) // cols))
    cap = 16
    out = Image.new("RGB", (cols * size, rows * (size + cap)), (255, 255, 255))
    d = ImageDraw.Draw(out)
    font = ImageFont.load_default()
    for k, c in enumerate(cases):
        p = Path(image_root) / c.image if image_root is not None else None
        im = Image.open(p).convert("RGB") if p is not None and p.is_file() else placeholder_image(c.width, c.height)
        im = draw_frame(im, c.pred_frame() if c.frame_source is not None or c.display_frame else {},
                        upscale=max(1, round(size / max(im.size))))
        im.thumbnail((size, size))
        x, y = (k % cols) * size, (k // cols) * (size + cap)
        out.paste(im, (x, y))
        d.text((x + 2, y + size + 2), f"{c.image[-18:]} {c.confidence:.2f}", fill=(0, 0, 0), font=font)
    return out


class ConfusionBrowser:
    """The unseen-verb confusion of one model: pick a cell (gold -> predicted, with its count) and see its cases
    as a grid. Plain accessors: ``cells``, ``select_cell``, ``cell_cases``, ``grid_image``, ``export``.

    Args:
        cases: from :func:`build_cases`.
        split: which cases the matrix counts (default ``unseen``).
        image_root: folder the images are relative to.
        cols / limit: the grid's columns and the most cases it shows (a line above it names the cell and its images).
    """

    def __init__(self, cases: Sequence[Case], split: str = "unseen",
                 image_root: Optional[str | os.PathLike] = None, cols: int = 4, limit: int = 16):
        import ipywidgets as W

        self.cases, self.split, self.cols, self.limit = list(cases), split, cols, limit
        self.image_root = Path(image_root) if image_root is not None else None
        self.cells = verb_confusion(self.cases, split)
        self._cell: Optional[tuple[str, str]] = None
        self._grid: Optional[Image.Image] = None
        self.w_cell = W.Dropdown(options=[(f"{g} -> {p} ({n})", (g, p)) for (g, p), n in self.cells.items()],
                                 description="cell", layout=W.Layout(width="480px"))
        self.w_matrix = W.HTML(value=self.matrix_html())
        self.w_grid = W.Image(format="png")
        self.w_grid.add_class("mipd-confusion-grid")
        self.w_cases = W.HTML()
        self.w_cases.add_class("mipd-confusion-cases")
        self.widget = W.VBox([self.w_matrix, self.w_cell, self.w_cases, self.w_grid])
        self.widget.add_class("mipd-confusion")
        self.w_cell.observe(lambda ch: self.select_cell(*ch["new"]) if ch["new"] else None, names="value")
        if self.cells:
            self.select_cell(*next(iter(self.cells)))

    def matrix_html(self) -> str:
        """The confusion as an HTML table: gold verbs as rows, predicted verbs as columns (diagonal in bold)."""
        e = html.escape
        gts = sorted({g for g, _ in self.cells})
        preds = sorted({p for _, p in self.cells})
        head = "".join(f"<th style='writing-mode:vertical-rl;font-weight:normal'>{e(p)}</th>" for p in preds)
        body = "".join(
            f"<tr><td>{e(g)}</td>" + "".join(
                f"<td style='text-align:center;background:rgba(180,35,24,{min(1.0, self.cells.get((g, p), 0) / 5):.2f})'>"
                f"{'<b>' if g == p else ''}{self.cells.get((g, p), '')}{'</b>' if g == p else ''}</td>" for p in preds)
            + "</tr>" for g in gts)
        return (f"<div style='font-size:11px'><b>{e(self.split)} verbs: gold (rows) x predicted (columns)</b>"
                f"<table><tr><th></th>{head}</tr>{body}</table></div>")

    def select_cell(self, gt_verb: str, pred_verb: str) -> list[Case]:
        """Show the cases of one cell as a grid; returns them."""
        self._cell = (gt_verb, pred_verb)
        got = self.cell_cases()
        self._grid = case_grid(got, self.image_root, cols=self.cols, limit=self.limit)
        self.w_grid.value = png_bytes(self._grid)
        self.w_cases.value = self.cases_html()
        if self.w_cell.value != (gt_verb, pred_verb) and (gt_verb, pred_verb) in self.cells:
            self.w_cell.value = (gt_verb, pred_verb)
        return got

    def cases_html(self) -> str:
        """The selected cell and the images of the grid, in grid order (left to right, top to bottom)."""
        if self._cell is None:
            return ""
        e = html.escape
        got = self.cell_cases()
        shown = got[:self.limit]
        more = f" (the first {len(shown)} in the grid)" if len(got) > len(shown) else ""
        return (f"<div style='font-size:12px'><b>{e(self._cell[0])} -> {e(self._cell[1])}</b>: {len(got)} case(s)"
                f"{more}: <span class='mipd-confusion-images'>{e(' '.join(c.image for c in shown))}</span></div>")

    def cell_cases(self) -> list[Case]:
        """The cases of the selected cell (empty before a selection)."""
        return cell_cases(self.cases, *self._cell, split=self.split) if self._cell else []

    def grid_image(self) -> Optional[Image.Image]:
        return self._grid

    def export(self, path: str | os.PathLike) -> Path:
        """Write the selected cell's cases to ``path`` (CSV for ``.csv``, else JSON)."""
        return export_cases(self.cell_cases(), path)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def open_compare(run_dir: str | os.PathLike, world_dir: str | os.PathLike, model_a: str = "mipd",
                 model_b: str = "baseline", seed: int = 0, test_file: str = "test.json",
                 image_root: Optional[str | os.PathLike] = None, cache_dir: Optional[str | os.PathLike] = None,
                 **filters: Any) -> CompareInspector:
    """The comparison inspector of two prediction files of a run (:func:`prediction_models` lists them), with the
    judged rationales of the run's training images (``rationales.jsonl``, ``world_dir/train.json``), the
    teacher's zero-shot top-5 (``teacher_zero_shot.json``, when the run has it) and the nearest training images by
    the pooled features the run cached (model A's student backbone, else its teacher: ``cache_dir``, else the
    cache its stages used; :func:`mipd_kit.viz.neighbours.load_training_neighbours`).

    Raises:
        FileNotFoundError: a predictions file or the ground truth is absent (naming it and the models present).
    """
    from ..rationales.store import read_rationales
    from .cases import build_cases, load_situations, load_split

    run, world = Path(run_dir), Path(world_dir)
    models = prediction_models(run)
    preds = {}
    for m in (model_a, model_b):
        p = run / "predictions" / f"{m}-seed{seed}.json"
        if not p.is_file():
            raise FileNotFoundError(f"{p} is absent; models with predictions in this run: "
                                    + (", ".join(f"{k} (seeds {v})" for k, v in models.items()) or "none"))
        preds[m] = json.loads(p.read_text())
    gt_path = world / test_file
    if not gt_path.is_file():
        raise FileNotFoundError(f"{gt_path} is absent (written by the data stage, 00_data)")
    split_path = run / "ov_split.json" if (run / "ov_split.json").is_file() else world / "ov_split.json"
    split = load_split(split_path) if split_path.is_file() else None
    gt = load_situations(gt_path)
    a, b = (build_cases(gt, preds[m], split) for m in (model_a, model_b))
    rat_path, train_path = run / "rationales.jsonl", world / "train.json"
    records = read_rationales(rat_path) if rat_path.is_file() else []
    train_verbs = ({k: v["verb"] for k, v in json.loads(train_path.read_text()).items()}
                   if train_path.is_file() else {})
    zs_path = run / "teacher_zero_shot.json"  # the teacher stage's top-5 of its eval split
    teacher = json.loads(zs_path.read_text()).get("top5", {}) if zs_path.is_file() else None
    root = Path(image_root) if image_root is not None else world / "images"
    neighbours = load_training_neighbours(run, world, cache_dir, model_a, seed, test_file, root)
    return CompareInspector(pair_cases(a, b), (model_a, model_b), records, train_verbs, root, teacher=teacher,
                            neighbours=neighbours, **filters)
