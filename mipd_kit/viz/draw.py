"""Shared drawing code: grounded frames (boxes + role/noun labels), HOI pairs, contact sheets.

Used by the data notebook, the analysis notebook and the widget inspector. Small images (128 px) are scaled up
(``upscale``, default so that the short side is at least 384 px) before text is drawn, so labels stay readable.
All functions return new ``PIL.Image`` objects and never modify their input.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Sequence

from PIL import Image, ImageDraw, ImageFont

from mipd_kit.data.records import FrameSpace

#: distinct colours for roles / pairs (tab10-like)
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
MIN_SIDE = 384


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _open(image: Any) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, (str, os.PathLike)):
        with Image.open(image) as im:
            return im.convert("RGB")
    raise TypeError(f"expected a PIL image or a path, got {type(image).__name__}")


def _upscale(im: Image.Image, upscale: Optional[int]) -> tuple[Image.Image, float]:
    s = upscale if upscale is not None else max(1, -(-MIN_SIDE // min(im.size)))
    if s == 1:
        return im.copy(), 1.0
    return im.resize((im.width * s, im.height * s), Image.NEAREST), float(s)


def _label(d: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, colour: tuple[int, int, int],
           font: ImageFont.ImageFont, bounds: tuple[int, int], stack: int = 0) -> None:
    """Text on a filled box in ``colour`` (white text) above ``xy``, kept inside the image; ``stack`` lifts it by
    that many label heights (labels of several pairs anchored at one box)."""
    l, t, r, b = d.textbbox((0, 0), text, font=font)
    w, h = r - l + 4, b - t + 4
    x = min(max(0, xy[0]), max(0, bounds[0] - w))
    y = min(max(0, xy[1] - h * (1 + stack)), max(0, bounds[1] - h))
    d.rectangle([x, y, x + w, y + h], fill=colour)
    d.text((x + 2 - l, y + 2 - t), text, fill=(255, 255, 255), font=font)


def draw_frame(image: Any, frame: Mapping[str, Mapping[str, Any]], space: Optional[FrameSpace] = None,
               title: Optional[str] = None, upscale: Optional[int] = None) -> Image.Image:
    """Draw a grounded frame: one coloured box + ``role: noun`` label per role with a box; roles without a box
    (e.g. place) are listed in a strip under the image.

    Args:
        image: PIL image or path.
        frame: role -> ``{"noun": str, "box": [x1, y1, x2, y2] | None}`` in the image's own pixel coordinates.
        space: frame space (noun ids are shown by their first gloss when given).
        title: text drawn in a strip above the image (e.g. the verb and score).
        upscale: integer scale factor; default makes the short side at least 384 px.

    Returns:
        a new image (upscaled, plus the title and no-box strips).
    """
    im, s = _upscale(_open(image), upscale)
    font = _font(max(11, int(im.height / 26)))
    d = ImageDraw.Draw(im)
    nobox = []
    for k, (role, val) in enumerate(frame.items()):
        noun = (val or {}).get("noun", "")
        name = space.noun_name(noun) if space is not None else noun
        text = f"{role}: {name or '-'}"
        box = (val or {}).get("box")
        col = PALETTE[k % len(PALETTE)]
        if box is None or list(box) == [-1, -1, -1, -1]:
            nobox.append((text, col))
            continue
        x1, y1, x2, y2 = (float(v) * s for v in box)
        d.rectangle([x1, y1, x2, y2], outline=col, width=max(2, int(s)))
        _label(d, (x1, y1), text, col, font, im.size)
    lh = int(font.size * 1.5) if hasattr(font, "size") else 16
    top = lh if title else 0
    bottom = lh * len(nobox)
    out = Image.new("RGB", (im.width, im.height + top + bottom), (255, 255, 255))
    out.paste(im, (0, top))
    d = ImageDraw.Draw(out)
    if title:
        d.text((4, 2), title, fill=(0, 0, 0), font=font)
    for i, (text, col) in enumerate(nobox):
        d.rectangle([2, top + im.height + i * lh + 3, 12, top + im.height + i * lh + lh - 3], fill=col)
        d.text((16, top + im.height + i * lh + 2), text, fill=(0, 0, 0), font=font)
    return out


def draw_hoi_pairs(image: Any, pairs: Sequence[Mapping[str, Any]], upscale: Optional[int] = None) -> Image.Image:
    """Draw human-object pairs: human box (solid), object box, a line between their centres and the label.

    Args:
        image: PIL image or path.
        pairs: ``[{"box_h": [..], "box_o": [..], "label": str, "score": float (optional)}]``.
        upscale: integer scale factor; default makes the short side at least 384 px.
    """
    im, s = _upscale(_open(image), upscale)
    font = _font(max(11, int(im.height / 28)))
    d = ImageDraw.Draw(im)
    anchors: dict[tuple[int, int], int] = {}  # pairs sharing a human box stack their labels
    for k, p in enumerate(pairs):
        col = PALETTE[k % len(PALETTE)]
        bh = [float(v) * s for v in p["box_h"]]
        bo = [float(v) * s for v in p["box_o"]]
        d.rectangle(bh, outline=col, width=max(2, int(s)))
        for x in range(int(bo[0]), int(bo[2]), 8):  # dashed object box
            d.line([(x, bo[1]), (min(x + 4, bo[2]), bo[1])], fill=col, width=max(2, int(s)))
            d.line([(x, bo[3]), (min(x + 4, bo[2]), bo[3])], fill=col, width=max(2, int(s)))
        for y in range(int(bo[1]), int(bo[3]), 8):
            d.line([(bo[0], y), (bo[0], min(y + 4, bo[3]))], fill=col, width=max(2, int(s)))
            d.line([(bo[2], y), (bo[2], min(y + 4, bo[3]))], fill=col, width=max(2, int(s)))
        ch = ((bh[0] + bh[2]) / 2, (bh[1] + bh[3]) / 2)
        co = ((bo[0] + bo[2]) / 2, (bo[1] + bo[3]) / 2)
        d.line([ch, co], fill=col, width=max(1, int(s) - 1))
        d.ellipse([co[0] - 3, co[1] - 3, co[0] + 3, co[1] + 3], fill=col)
        text = str(p.get("label", ""))
        if p.get("score") is not None:
            text += f" {float(p['score']):.2f}"
        key = (round(bh[0]), round(bh[1]))
        _label(d, (bh[0], bh[1]), text, col, font, im.size, stack=anchors.get(key, 0))
        anchors[key] = anchors.get(key, 0) + 1
    return im


def contact_sheet(images: Sequence[Any], ncols: int, labels: Optional[Sequence[str]] = None,
                  cell: Optional[int] = None, pad: int = 4) -> Image.Image:
    """Tile images in a grid with an optional caption under each.

    Args:
        images: PIL images or paths (may differ in size; each is fitted into the cell keeping its aspect).
        ncols: columns.
        labels: one caption per image.
        cell: cell width in pixels (default: the widest image).
        pad: padding between cells.
    """
    ims = [_open(x) for x in images]
    if not ims:
        return Image.new("RGB", (max(1, ncols) * 64, 64), (255, 255, 255))
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    if labels is not None and len(labels) != len(ims):
        raise ValueError(f"{len(labels)} labels for {len(ims)} images")
    cw = cell or max(im.width for im in ims)
    ch = max(int(im.height * cw / im.width) for im in ims)
    font = _font(max(10, cw // 14))
    lh = int(getattr(font, "size", 12) * 1.4) if labels is not None else 0
    nrows = -(-len(ims) // ncols)
    sheet = Image.new("RGB", (ncols * (cw + pad) + pad, nrows * (ch + lh + pad) + pad), (255, 255, 255))
    d = ImageDraw.Draw(sheet)
    for i, im in enumerate(ims):
        r, c = divmod(i, ncols)
        x, y = pad + c * (cw + pad), pad + r * (ch + lh + pad)
        scale = cw / im.width
        fitted = im.resize((cw, max(1, int(im.height * scale))), Image.NEAREST if scale >= 1 else Image.BILINEAR)
        sheet.paste(fitted, (x, y))
        if labels is not None:
            text = str(labels[i])
            while text and d.textlength(text, font=font) > cw:
                text = text[:-1]
            d.text((x, y + ch + 1), text, fill=(0, 0, 0), font=font)
    return sheet


def frame_from_situation(boxes: Mapping[str, Any], frame: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Combine a SWiG ``bb`` (or ``Situation.boxes``) and one annotator frame into the ``draw_frame`` form."""
    out = {}
    for role, noun in frame.items():
        b = boxes.get(role)
        out[role] = {"noun": noun, "box": None if b is None or list(b) == [-1, -1, -1, -1] else list(b)}
    return out
