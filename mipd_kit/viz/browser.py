"""The widget plumbing shared by the error inspectors (Ov-GSR: ``mipd_kit.viz.inspector``; HOI:
``mipd_kit.hoi.inspector``): filter dropdowns, a slider with prev / next, the drawn case, a status line and an HTML
details pane, with plain accessors (``set_filter``, ``current_case``, ``rendered_image``, ``visible_cases``,
``next`` / ``prev`` / ``select``) so that tests drive it without a browser.

A subclass says what its cases are through five hooks: ``_apply_filter`` (the filter -> the visible cases, in display
order), ``_image_name`` (the case's image, relative to ``image_root``), ``_render`` (case + image or None when the file
is absent -> PIL image; draw a :func:`placeholder_image` then), ``_label_html`` (the status line after the case
number and image name) and ``_details_html``.
"""

from __future__ import annotations

import html
import io
import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from PIL import Image, ImageDraw, ImageFont

#: approximate size in pixels of each image panel (images are scaled up by an integer factor).
PANEL_SIZE = 384


def placeholder_image(width: int, height: int, text: str = "image missing") -> Image.Image:
    """A grey image of the annotated size (256x256 when unknown) saying that the image file is absent."""
    w, h = (width, height) if width > 0 and height > 0 else (256, 256)
    im = Image.new("RGB", (w, h), (200, 200, 200))
    d = ImageDraw.Draw(im)
    d.line([(0, 0), (w - 1, h - 1)], fill=(160, 160, 160), width=2)
    d.line([(0, h - 1), (w - 1, 0)], fill=(160, 160, 160), width=2)
    d.text((6, 6), text, fill=(60, 60, 60), font=ImageFont.load_default())
    return im


def side_by_side(left: Image.Image, right: Image.Image, gap: int = 10) -> Image.Image:
    """Two panels on a white background, ``gap`` pixels apart."""
    out = Image.new("RGB", (left.width + gap + right.width, max(left.height, right.height)), (255, 255, 255))
    out.paste(left, (0, 0))
    out.paste(right, (left.width + gap, 0))
    return out


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


class CaseBrowser:
    """Browse a list of cases through filter dropdowns (see the module docstring for the hooks).

    Args:
        cases: the cases, in any order (the filter hook orders them).
        filters: filter name -> dropdown options (``"all"`` first); ``sort_by`` is one of them when the cases can
            be sorted several ways (its first option is the default and it has no ``"all"``).
        initial: the initial filter values (None or ``"all"``: no constraint).
        image_root: folder the case images are relative to (None: always placeholders).
        css_class: CSS class of the whole widget; ``<css_class>-label`` / ``-image`` mark the status line and image.
        panel: size in pixels of each image panel.
    """

    def __init__(self, cases: Sequence[Any], filters: Mapping[str, Sequence[str]], initial: Mapping[str, Any],
                 image_root: Optional[str | os.PathLike], css_class: str, panel: int = PANEL_SIZE):
        import ipywidgets as W

        self.cases = list(cases)
        self.image_root = Path(image_root) if image_root is not None else None
        self.panel = panel
        self.missing_images: set[str] = set()
        self._filter: dict[str, Optional[str]] = {k: (v[0] if k == "sort_by" else None) for k, v in filters.items()}
        self._visible: list[Any] = []
        self._index = 0
        self._image_cache: dict[str, Optional[Image.Image]] = {}
        self._rendered: Optional[Image.Image] = None
        self._busy = False
        self._observers: list[Callable[[Any], None]] = []

        self.dropdowns: dict[str, Any] = {}
        for name, options in filters.items():
            w = W.Dropdown(options=list(options), value=options[0], description=name.replace("_", " "),
                           layout=W.Layout(width="230px"))
            w.observe(self._on_filter, names="value")
            self.dropdowns[name] = w
        self.w_prev = W.Button(description="◀ prev", layout=W.Layout(width="80px"))
        self.w_next = W.Button(description="next ▶", layout=W.Layout(width="80px"))
        self.w_slider = W.IntSlider(min=0, max=0, value=0, description="case", continuous_update=False)
        self.w_label = W.HTML(value="")
        self.w_image = W.Image(format="png", layout=W.Layout(flex="0 0 auto", object_fit="contain"))
        self.w_details = W.HTML(value="", layout=W.Layout(flex="1 1 auto", min_width="300px", overflow="auto"))
        self.w_label.add_class(f"{css_class}-label")
        self.w_image.add_class(f"{css_class}-image")
        self.w_slider.observe(self._on_slider, names="value")
        self.w_prev.on_click(lambda _: self.prev())
        self.w_next.on_click(lambda _: self.next())
        self.widget = W.VBox([
            W.HBox(list(self.dropdowns.values())),
            W.HBox([self.w_prev, self.w_slider, self.w_next]),
            self.w_label,
            W.HBox([self.w_image, self.w_details], layout=W.Layout(align_items="flex-start")),  # both from the top
        ])
        self.widget.add_class(css_class)
        self._set_filter(dict(initial))

    # -- hooks -----------------------------------------------------------------------------------------------------
    def _apply_filter(self, f: Mapping[str, Optional[str]]) -> list[Any]:
        raise NotImplementedError

    def _image_name(self, case: Any) -> str:
        raise NotImplementedError

    def _render(self, case: Any, image: Optional[Image.Image]) -> Image.Image:
        raise NotImplementedError

    def _label_html(self, case: Any) -> str:
        raise NotImplementedError

    def _details_html(self, case: Any) -> str:
        raise NotImplementedError

    # -- accessors (what tests drive) ------------------------------------------------------------------------------
    def _set_filter(self, values: Mapping[str, Any]) -> list[Any]:
        """Set the filter fields given (None or ``"all"`` clears one; a missing ``sort_by`` keeps the sort), show
        the first visible case and return the visible cases."""
        new = {}
        for k in self._filter:
            v = values.get(k)
            if k == "sort_by":
                new[k] = self._filter[k] if v is None else v
            else:
                new[k] = None if v in (None, "all") else v
        self._visible = self._apply_filter(new)
        self._filter = new
        self._busy = True
        try:  # reflect the filter in the dropdowns without re-triggering
            for k, w in self.dropdowns.items():
                v = "all" if new[k] is None else new[k]
                if v not in w.options:
                    w.options = [*w.options, v]
                w.value = v
            self.w_slider.max = max(0, len(self._visible) - 1)
            self.w_slider.value = 0
        finally:
            self._busy = False
        self._index = 0
        self._show()
        return list(self._visible)

    @property
    def filter(self) -> dict[str, Optional[str]]:
        return dict(self._filter)

    def visible_cases(self) -> list[Any]:
        """The cases that pass the filter, in display order."""
        return list(self._visible)

    def current_case(self) -> Optional[Any]:
        """The case on display (None when no case passes the filter)."""
        return self._visible[self._index] if self._visible else None

    @property
    def index(self) -> int:
        return self._index

    def select(self, i: int) -> Optional[Any]:
        """Show the i-th visible case (clamped)."""
        if self._visible:
            self._index = max(0, min(int(i), len(self._visible) - 1))
            self._busy = True
            try:
                self.w_slider.value = self._index
            finally:
                self._busy = False
        self._show()
        return self.current_case()

    def next(self) -> Optional[Any]:
        return self.select(self._index + 1)

    def prev(self) -> Optional[Any]:
        return self.select(self._index - 1)

    def rendered_image(self) -> Optional[Image.Image]:
        """The PIL image on display, None when nothing is visible."""
        return self._rendered

    def label_text(self) -> str:
        """The status line as plain text."""
        return html.unescape(re.sub(r"<[^>]+>", "", self.w_label.value))

    def details_html(self) -> str:
        """The details pane of the current case (HTML)."""
        return self.w_details.value

    def on_change(self, fn: Callable[[Any], None]) -> None:
        """Call ``fn(browser)`` after every change of the displayed case."""
        self._observers.append(fn)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # -- internals -------------------------------------------------------------------------------------------------
    def _on_filter(self, change: dict) -> None:
        if not self._busy:
            self._set_filter({k: w.value for k, w in self.dropdowns.items()})

    def _on_slider(self, change: dict) -> None:
        if not self._busy:
            self.select(change["new"])

    def _load_image(self, case: Any) -> Optional[Image.Image]:
        name = self._image_name(case)
        if name not in self._image_cache:
            im = None
            if self.image_root is not None:
                p = self.image_root / name
                if p.is_file():
                    with Image.open(p) as f:
                        im = f.convert("RGB")
            if im is None:
                self.missing_images.add(name)
            self._image_cache[name] = im
        return self._image_cache[name]

    def _show(self) -> None:
        case = self.current_case()
        if case is None:
            desc = ", ".join(f"{k}={v}" for k, v in self._filter.items() if v is not None)
            self._rendered = None
            self.w_image.value = b""
            self.w_label.value = f"<b>no case</b> matches the filter ({html.escape(desc)})"
            self.w_details.value = ""
        else:
            im = self._load_image(case)
            self._rendered = self._render(case, im)
            self.w_image.value = png_bytes(self._rendered)
            self.w_image.width, self.w_image.height = str(self._rendered.width), str(self._rendered.height)
            missing = " · <i>image missing (placeholder)</i>" if im is None else ""
            self.w_label.value = (f"<b>case {self._index + 1}/{len(self._visible)}</b> · "
                                  f"{html.escape(self._image_name(case))} · {self._label_html(case)}{missing}")
            self.w_details.value = self._details_html(case)
        for fn in self._observers:
            fn(self)
