"""The embedded captioner behind the ``Sampler`` interface (messages -> Response), and batch captioning.

:class:`CaptionerSampler` reads the image from an ``image_path`` part or an OpenAI-style ``image_url`` part (a
``data:`` URL or a file path), the region from an optional ``{"type": "region", "box": [x1, y1, x2, y2]}`` part or from
the ``Role region: [x1, y1, x2, y2] in a WxH image`` line of the gaze prompt, and answers with generated text, so
rationale code cannot tell it from a remote vision chat model. Same messages and seed: same text (for a given machine
and thread count); a different prompt (a refinement round's feedback), seed or temperature: usually a different one.
The teacher's tokens pass through a self-attention layer before they reach the decoder, so a cell carries some context
from outside the box: a gaze is a description *centred on* the region, not one blind to the rest.

:func:`caption_images` describes many images at once with counted skips. ``mipd_kit.language.factory.build_sampler``
(backend ``captioner``) is the one place a ``CaptionerSampler`` is built.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch
from PIL import Image

from mipd_kit.language.base import Message, Response, SamplerError, SamplerRequestError
from mipd_kit.language.captioner.batcher import Batcher
from mipd_kit.language.captioner.model import (
    RESEED, Caption, Captioner, CaptionerError, encode_tokens, normalise_box, open_image_file, read_image_file,
    tokenize)

#: the gaze prompt's region line (mipd_kit.rationales.prompts.GAZE_TEMPLATE)
_REGION_LINE = re.compile(r"\[\s*([-\d.]+),\s*([-\d.]+),\s*([-\d.]+),\s*([-\d.]+)\s*\]\s*in a (\d+)x(\d+) image")
#: re-prompt lines the sampler obeys (mipd_kit.rationales.prompts AVOID_TEMPLATE / BEGIN_TEMPLATE)
_AVOID_LINE = re.compile(r"^Avoid these words: (.*)$", re.M)
_BEGIN_LINE = re.compile(r"^Begin with: (.*)$", re.M)


@dataclass
class CaptionBatch:
    """Result of :func:`caption_images`: one ``Caption`` or ``None`` (skipped) per request, and the skips."""

    captions: list[Optional[Caption]]
    skipped: list[tuple[int, str]] = field(default_factory=list)


def caption_images(captioner: Captioner, teacher, images: Sequence[str | os.PathLike],
                   boxes: Optional[Sequence[Optional[Sequence[float]]]] = None, *, temperature: float = 0.7,
                   top_p: float = 0.9, seed: int = 0, batch_size: int = 64, max_attempts: int = 3) -> CaptionBatch:
    """Describe many images (glimpses, or gazes where a pixel box is given), with counted skips.

    An image that fails to decode, a zero-area box, or a generation still empty after ``max_attempts`` draws is
    skipped and counted in ``skipped`` as ``(index, reason)``; the other results are kept. Row ``i`` samples with
    seed ``seed + i`` (attempt ``k`` adds ``k * RESEED``).
    """
    n = len(images)
    if boxes is not None and len(boxes) != n:
        raise ValueError(f"{len(boxes)} boxes for {n} images")
    out: list[Optional[Caption]] = [None] * n
    skipped: list[tuple[int, str]] = []
    for s in range(0, n, batch_size):
        ok, ims, bx = [], [], []
        for i in range(s, min(n, s + batch_size)):
            try:
                im = open_image_file(images[i])
                b = (float("nan"),) * 4
                if boxes is not None and boxes[i] is not None:
                    b = normalise_box(boxes[i], im.width, im.height, str(images[i]))
            except CaptionerError as e:
                skipped.append((i, str(e)))
                continue
            ok.append(i)
            ims.append(im)
            bx.append(b)
        if not ok:
            continue
        toks = encode_tokens(teacher, ims)
        bxt = torch.tensor(bx, dtype=torch.float32)
        todo = list(range(len(ok)))  # positions in this batch still without text
        for attempt in range(max(1, max_attempts)):
            caps = captioner.generate(toks[todo], bxt[todo], temperature=temperature, top_p=top_p,
                                      seeds=[seed + ok[j] + attempt * RESEED for j in todo])
            for j, c in zip(todo, caps):
                if c.text.strip():
                    out[ok[j]] = c
            todo = [j for j in todo if out[ok[j]] is None]
            if not todo:
                break
        for j in todo:
            skipped.append((ok[j], f"{images[ok[j]]}: the captioner emitted nothing (only end / padding tokens) "
                                   f"in {max(1, max_attempts)} attempts"))
    skipped.sort()
    return CaptionBatch(out, skipped)


def _text_and_images(messages: Sequence[Message]) -> tuple[str, list[dict], list[Sequence[float]]]:
    texts, images, regions = [], [], []
    for m in messages:
        c = m.get("content", "")
        if isinstance(c, str):
            texts.append(c)
            continue
        for p in c if isinstance(c, list) else []:
            if not isinstance(p, dict):
                continue
            t = p.get("type")
            if t == "text":
                texts.append(str(p.get("text", "")))
            elif t in ("image_path", "image_url"):
                images.append(p)
            elif t == "region":
                regions.append(p.get("box"))
    return "\n".join(texts), images, regions


def _image_source(part: dict) -> tuple[str, str]:
    """(source, identity) of an ``image_path`` or OpenAI ``image_url`` part, without decoding it: a data URL's
    identity is a hash of its bytes, a file's is its path."""
    if part.get("type") == "image_path":
        src = str(part.get("path", ""))
    else:
        u = part.get("image_url")
        src = str(u.get("url", "") if isinstance(u, dict) else u or "")
    if src.startswith("data:"):
        return src, "data-url:" + hashlib.sha256(src.partition(",")[2].encode()).hexdigest()[:16]
    if src.startswith("file://"):
        src = src[len("file://"):]
    if not src:
        raise SamplerError("image part without a path or URL")
    if re.match(r"^[a-z]+://", src):
        raise SamplerError(f"image {src}: the embedded captioner reads files and data: URLs only")
    return src, src


def _content_id(raw: bytes) -> str:
    """The identity of an image's encoded bytes: that of the same bytes sent as a base64 ``data:`` URL (see
    :func:`_image_source`), so a file anywhere and its data URL are one image."""
    return "data-url:" + hashlib.sha256(base64.b64encode(raw)).hexdigest()[:16]


def _open_source(src: str, ident: str) -> tuple[Image.Image, str]:
    """Decode what :func:`_image_source` located: (image, content identity: a data URL's own identity, a file's
    :func:`_content_id`); ``SamplerRequestError`` naming the image if it fails."""
    if src.startswith("data:"):
        head, _, b64 = src.partition(",")
        try:
            raw = base64.b64decode(b64, validate=True)
            with Image.open(io.BytesIO(raw)) as im:
                return im.convert("RGB"), ident
        except (binascii.Error, ValueError) as e:
            raise SamplerRequestError(f"image {ident} ({head}): not valid base64 ({e})") from e
        except Exception as e:
            raise SamplerRequestError(f"image {ident} ({head}): failed to decode ({type(e).__name__}: {e})") from e
    try:
        image, raw = read_image_file(src)
        return image, _content_id(raw)
    except CaptionerError as e:
        raise SamplerRequestError(str(e)) from e


@dataclass
class CaptionerSampler:
    """The captioner behind the ``Sampler`` interface: a vision chat model that describes what it sees.

    Glimpse or gaze: a gaze is asked for by a ``region`` part or a ``Role region: [x1, y1, x2, y2] in a WxH image``
    line (the JRG gaze prompt); anything else is a glimpse. Two more lines are obeyed, the decoding-side hook of a
    re-prompt: ``Avoid these words: w1, w2`` (those words are never sampled: a refinement that steers away from the
    words of a rejected rationale the judge objected to) and ``Begin with: words`` (the description is forced to
    start with them, then continues freely: a hard negative written around a given activity). The prompt's other
    text is not read (the captioner has no instruction following); it only seeds the sampling, so a re-prompt (new
    feedback) draws a new description.

    Attributes:
        captioner: the trained decoder.
        teacher: the frozen teacher whose tokens it reads (must be the one it was trained on).
        temperature, top_p: sampling controls (temperature <= 0: greedy).
        seed: combined with the image's content hash and the prompt text: the same image and prompt get the same reply,
            wherever the image file lies (a path is not part of it).
        max_attempts: re-samples (new seed) when a generation comes out empty; then ``SamplerError``.
        batch_size: > 1: requests arriving from several threads at once (the JRG's parallel chains) are decoded
            together, up to this many per batch (a batch waits at most ``batch_wait_s`` for company). A row's draws
            depend on its own seed only (:func:`row_uniforms`), so batching changes no text except through float
            rounding of batched matrix products (which can, rarely, flip a near-tie); 1 = every request alone.
        batch_wait_s: longest wait for more requests once one is queued.
        token_cache: keep the teacher tokens of this many recent images (a JRG asks about each image ~10 times:
            glimpse, gazes, rounds, hard negatives), so an image is decoded and encoded once; 0 = no cache. Keyed by
            the hash of a data URL's bytes, or a file's path, size and modification time.
    """

    captioner: Captioner
    teacher: Any
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int = 0
    max_attempts: int = 3
    batch_size: int = 1
    batch_wait_s: float = 0.005
    token_cache: int = 1024

    def __post_init__(self):
        tf = str(getattr(self.teacher, "fingerprint", ""))
        if self.captioner.teacher_fingerprint and tf and tf != self.captioner.teacher_fingerprint:
            raise CaptionerError(f"the captioner was trained on teacher {self.captioner.teacher_fingerprint}, "
                                 f"not on the teacher given ({tf})")
        if self.batch_size < 1:
            raise ValueError(f"captioner sampler: batch_size must be >= 1, got {self.batch_size}")
        self._batcher = Batcher(self.captioner, self.batch_size, self.batch_wait_s) if self.batch_size > 1 else None
        import threading
        from collections import OrderedDict
        self._tokens: "OrderedDict[tuple, tuple[torch.Tensor, tuple[int, int]]]" = OrderedDict()
        self._tokens_lock = threading.Lock()
        self._inflight: dict[tuple, Any] = {}  # key -> Future of the encoding under way
        self.token_cache_hits = 0

    def _image_tokens(self, part: dict) -> tuple[torch.Tensor, tuple[int, int], str, str]:
        """(teacher tokens (1, N, D), image size (w, h), identity, content identity) of an image part, through the LRU
        cache. The identity (a path or a data URL's hash) names the image in messages; the content identity (a hash
        of the image's bytes) seeds the sampling, so the same image gets the same reply wherever its file lies."""
        src, ident = _image_source(part)
        key: tuple = (ident,)
        if not src.startswith("data:"):
            try:
                st = os.stat(src)
                key = (ident, st.st_size, st.st_mtime_ns)
            except OSError:
                key = ()  # missing: let the decoder name it
        if not key or self.token_cache <= 0:
            image, cid = _open_source(src, ident)
            return encode_tokens(self.teacher, [image]), image.size, ident, cid
        from concurrent.futures import Future
        with self._tokens_lock:
            hit = self._tokens.get(key)
            if hit is not None:
                self._tokens.move_to_end(key)
                self.token_cache_hits += 1
                return hit[0], hit[1], ident, hit[2]
            # the chains of one image run side by side: the first request encodes it, the others wait for that
            # result instead of each encoding the same image (encoding is the largest cost of a request)
            fut = self._inflight.get(key)
            owner = fut is None
            if owner:
                fut = self._inflight[key] = Future()
        if not owner:
            toks, size, cid = fut.result()
            with self._tokens_lock:
                self.token_cache_hits += 1
            return toks, size, ident, cid
        try:
            image, cid = _open_source(src, ident)
            toks = encode_tokens(self.teacher, [image])
        except BaseException as e:
            with self._tokens_lock:
                self._inflight.pop(key, None)
            fut.set_exception(e)
            raise
        with self._tokens_lock:
            self._tokens[key] = (toks, image.size, cid)
            while len(self._tokens) > self.token_cache:
                self._tokens.popitem(last=False)
            self._inflight.pop(key, None)
        fut.set_result((toks, image.size, cid))
        return toks, image.size, ident, cid

    def _generate(self, toks: torch.Tensor, boxes: torch.Tensor, seed: int, banned: list[int],
                  prefix: list[int]) -> "Caption":
        """One row through the batcher (or alone): toks (1, N, D), boxes (1, 4)."""
        if self._batcher is not None:
            return self._batcher.submit(toks, boxes, seed, banned, prefix, self.temperature, self.top_p)
        return self.captioner.generate(toks, boxes, temperature=self.temperature, top_p=self.top_p, seeds=[seed],
                                       banned=[banned], prefix=[prefix])[0]

    @property
    def fingerprint(self) -> str:
        return (f"captioner-v1:{self.captioner.fingerprint}:t{self.temperature:g}:p{self.top_p:g}:s{self.seed}"
                f":a{self.max_attempts}")

    def __call__(self, messages: Sequence[Message]) -> Response:
        t0 = time.perf_counter()
        text, parts, regions = _text_and_images(messages)
        if not parts:
            raise SamplerError("captioner: the messages hold no image part (image_path or image_url)")
        if len(parts) > 1:
            raise SamplerError(f"captioner: one image per request, got {len(parts)}")
        toks, size, ident, cid = self._image_tokens(parts[0])
        box = None
        if regions:
            raw = regions[-1]
            where, (w, h) = f"{ident} (region part)", size
        else:
            m = _REGION_LINE.search(text) if "gaze" in text.lower() else None
            raw = [float(m.group(k)) for k in range(1, 5)] if m else None
            where, (w, h) = f"{ident} (Role region line)", (int(m.group(5)), int(m.group(6))) if m else size
        if raw is not None:
            try:
                box = normalise_box(raw, w, h, where)
            except CaptionerError as e:
                raise SamplerRequestError(str(e)) from e
        boxes = torch.tensor([box if box is not None else (float("nan"),) * 4], dtype=torch.float32)
        base = int.from_bytes(hashlib.sha256(f"{self.seed}\x00{cid}\x00{text}".encode()).digest()[:6], "big")
        v = self.captioner.vocab
        avoid = sorted({i for m in _AVOID_LINE.finditer(text) for w in m.group(1).split(",") for i in v.ids_of(w)})
        bm = _BEGIN_LINE.search(text)
        begin = v.ids_of(bm.group(1)) if bm else []
        for attempt in range(1, self.max_attempts + 1):
            cap = self._generate(toks, boxes, base + (attempt - 1) * RESEED, avoid, begin)
            if begin and len(cap.ids) <= len(begin) + 1:  # only the forced words: nothing was seen
                continue
            if cap.text.strip():
                meta = {"backend": "captioner", "model": self.captioner.fingerprint,
                        "kind": "gaze" if box is not None else "glimpse", "box": list(box) if box else None,
                        "image": ident, "temperature": self.temperature, "top_p": self.top_p,
                        "seed": base + (attempt - 1) * RESEED, "attempts": attempt, "n_tokens": len(tokenize(cap.text)),
                        "avoided_words": len(avoid), "forced_words": len(begin),
                        "latency_s": time.perf_counter() - t0}
                return Response(cap.text, tuple(messages), meta)
        raise SamplerRequestError(f"captioner: emitted nothing (only end / padding tokens) for image {ident} in "
                           f"{self.max_attempts} attempts")
