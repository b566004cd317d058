"""Descriptions of the unlabeled pool (``unlabeled.json``) written by the captioner from the image alone, stored as
``"unjudged"`` rationales beside the JRG's (no annotation, no evidence, no judge).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mipd_kit.data.records import DataError
from mipd_kit.rationales.store import Rationale, RationaleStore

def unlabeled_backend(captioner: Any, temperature: float, top_p: float, seed: int) -> str:
    """Backend key of the unlabeled pool's descriptions (captioner weights and sampling settings)."""
    return f"unlabeled|captioner-v1:{captioner.fingerprint}:t{temperature:g}:p{top_p:g}:s{seed}"


def describe_unlabeled(captioner: Any, teacher: Any, world_dir: str | os.PathLike, store: RationaleStore, *,
                       max_images: int = 0, temperature: float = 0.7, top_p: float = 0.9, seed: int = 0,
                       batch_size: int = 64) -> dict[str, Any]:
    """Glimpse descriptions of the unlabeled pool (``unlabeled.json``), written by the captioner from the image alone:
    no annotation, no evidence, no judge. Each is stored with ``polarity "unjudged"``, ``source "unlabeled"``,
    ``score``/``verdict`` null and the backend :func:`unlabeled_backend`; images already described are skipped
    (resumable). Glimpses only: the unlabeled pool has no boxes and the embedded teacher detects none.

    Returns:
        ``{"images", "new", "already", "skipped", "skip_reasons"}`` (reasons of the first 5 skips: an image that
        fails to decode, a captioner that emitted nothing).
    """
    from mipd_kit.language.captioner import caption_images

    world = Path(world_dir)
    p = world / "unlabeled.json"
    if not p.exists():
        return {"images": 0, "new": 0, "already": 0, "skipped": 0, "skip_reasons": []}
    try:
        names = list(json.loads(p.read_text())["images"])
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{p}: expected {{\"images\": [names...]}} ({e!r})") from e
    if max_images:
        names = names[:max_images]
    backend = unlabeled_backend(captioner, temperature, top_p, seed)
    key = lambda n: (n, "glimpse", None, 0, backend, "unlabeled", None, 0)  # noqa: E731
    todo = [n for n in names if key(n) not in store]
    batch = caption_images(captioner, teacher, [world / "images" / n for n in todo], temperature=temperature,
                           top_p=top_p, seed=seed, batch_size=batch_size)
    new = 0
    for n, cap in zip(todo, batch.captions):
        if cap is not None:
            new += store.append(Rationale(image=n, kind="glimpse", role=None, polarity="unjudged", text=cap.text,
                                          round=0, score=None, backend=backend, verdict=None, source="unlabeled"))
    return {"images": len(names), "new": new, "already": len(names) - len(todo), "skipped": len(batch.skipped),
            "skip_reasons": [r for _, r in batch.skipped[:5]]}
