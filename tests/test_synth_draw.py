"""Shared drawing code: frames, HOI pairs, contact sheets produce images of the right size."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mipd_kit.viz.draw import contact_sheet, draw_frame, draw_hoi_pairs, frame_from_situation


def _img(w=128, h=128, c=(200, 200, 200)):
    return Image.new("RGB", (w, h), c)


def test_draw_frame_upscales_and_adds_strips():
    frame = {"agent": {"noun": "man", "box": [10, 20, 60, 120]}, "vehicle": {"noun": "horse", "box": [50, 60, 120, 125]},
             "place": {"noun": "field", "box": None}}
    out = draw_frame(_img(), frame, title="riding 0.93")
    assert out.width == 384 and out.height > 384  # 3x, plus title and one no-box strip
    a = np.asarray(out)
    assert (a != 200).any()  # something was drawn
    plain = draw_frame(_img(), {"agent": {"noun": "man", "box": [10, 20, 60, 120]}}, upscale=2)
    assert plain.size == (256, 256)
    src = _img()
    draw_frame(src, frame)
    assert np.asarray(src).max() == 200  # input untouched


def test_draw_frame_uses_frame_space_names(tmp_path):
    from mipd_kit.data.records import FrameSpace, NounDef
    space = FrameSpace({}, {"n1": NounDef("n1", ("horse",))})
    out = draw_frame(_img(), {"vehicle": {"noun": "n1", "box": [1, 1, 50, 50]}}, space)
    assert out.size == (384, 384)
    p = tmp_path / "x.png"
    _img(64, 32).save(p)
    assert draw_frame(p, {}, upscale=1).size == (64, 32)


def test_draw_hoi_pairs_and_contact_sheet():
    pairs = [{"box_h": [5, 5, 40, 100], "box_o": [40, 60, 90, 100], "label": "ride horse", "score": 0.7},
             {"box_h": [80, 10, 120, 110], "box_o": [90, 90, 127, 127], "label": "pet dog"}]
    out = draw_hoi_pairs(_img(), pairs)
    assert out.size == (384, 384)
    sheet = contact_sheet([_img(), _img(64, 64), out], ncols=2, labels=["a", "b", "c"])
    assert sheet.width == 2 * (384 + 4) + 4  # cell = widest image
    assert sheet.height > 2 * 384
    assert contact_sheet([_img()] * 3, ncols=3).size == (3 * 132 + 4, 132 + 4)
    with pytest.raises(ValueError, match="labels"):
        contact_sheet([_img()], 1, labels=["a", "b"])


def test_frame_from_situation():
    fr = frame_from_situation({"agent": (1, 2, 3, 4), "place": None}, {"agent": "man", "place": "field"})
    assert fr == {"agent": {"noun": "man", "box": [1, 2, 3, 4]}, "place": {"noun": "field", "box": None}}
