"""The ``Teacher`` protocol shared by every backend (embedded, open_clip, transformers).

A teacher encodes images into patch tokens plus a pooled embedding, and texts into tokens plus a pooled
embedding, in one joint space (pooled image and pooled text embeddings are comparable by cosine).
Its ``fingerprint`` (backend, model, weights, preprocessing) keys every feature-cache entry.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

import torch
from PIL import Image

from ..data.records import DataError


def open_image(path: str | os.PathLike) -> Image.Image:
    """Load an image as RGB; an unreadable file raises DataError naming it."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError as e:
        raise DataError(f"{path}: image not found") from e
    except Exception as e:
        raise DataError(f"{path}: unreadable image ({type(e).__name__}: {e}); fix or remove it") from e


@dataclass(frozen=True)
class Encoded:
    """Output of an encoder.

    Attributes:
        tokens: (B, N, D) patch tokens (images) or token features (texts).
        pooled: (B, E) pooled embedding in the joint image-text space (not normalised).
        mask: (B, N) bool, True for real tokens (texts are padded; images: all True).
    """

    tokens: torch.Tensor
    pooled: torch.Tensor
    mask: torch.Tensor


@runtime_checkable
class Teacher(Protocol):
    """What every teacher backend provides."""

    #: (rows, cols) of the patch grid; ``tokens`` of ``encode_images`` has rows*cols (+ optional CLS) entries.
    grid: tuple[int, int]

    @property
    def fingerprint(self) -> str:
        """Stable hex digest of backend, model name, weights and preprocessing."""
        ...

    def encode_images(self, images: Sequence[Image.Image]) -> Encoded:
        """Encode PIL images (any size; the teacher does its own preprocessing)."""
        ...

    def encode_texts(self, texts: Sequence[str]) -> Encoded:
        """Encode texts into the joint space."""
        ...
