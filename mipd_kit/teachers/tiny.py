"""A tiny, deterministic, randomly initialised teacher for tests and smoke wiring.

It implements the ``Teacher`` protocol with a 2-layer CNN image tower and a hashed bag-of-words text tower,
so tests of every downstream stage run in milliseconds without MiniLM. It knows nothing: never report its
numbers as a teacher's.
"""

from __future__ import annotations

import hashlib
import re
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from .base import Encoded


class TinyRandomTeacher(nn.Module):
    """Random CNN image tower ((B, grid*grid, dim) tokens) and hashed-token text tower, seeded."""

    def __init__(self, seed: int = 0, dim: int = 32, grid: int = 4, image_size: int = 32, max_tokens: int = 16):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.seed, self.dim, self.image_size, self.max_tokens = seed, dim, image_size, max_tokens
        self.grid = (grid, grid)
        self.conv = nn.Sequential(nn.Conv2d(3, dim, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(grid))
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
        self.vocab = 4096
        self.embed = torch.randn(self.vocab, dim, generator=g)
        self.eval()

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(f"tiny-random:{self.seed}:{self.dim}:{self.grid}:{self.image_size}".encode()).hexdigest()[:16]

    @torch.no_grad()
    def encode_images(self, images: Sequence[Image.Image]) -> Encoded:
        arr = np.stack([np.asarray(im.convert("RGB").resize((self.image_size, self.image_size)), dtype=np.float32)
                        for im in images]) / 255.0
        x = torch.from_numpy(arr).permute(0, 3, 1, 2)
        f = self.conv(x)  # (B, D, g, g)
        tokens = f.flatten(2).transpose(1, 2).contiguous()  # (B, g*g, D)
        return Encoded(tokens, tokens.mean(1), torch.ones(tokens.shape[:2], dtype=torch.bool))

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str]) -> Encoded:
        B, L = len(texts), self.max_tokens
        tokens = torch.zeros(B, L, self.dim)
        mask = torch.zeros(B, L, dtype=torch.bool)
        for i, t in enumerate(texts):
            words = re.findall(r"[a-z]+", t.lower())[:L]
            for j, w in enumerate(words):
                h = int(hashlib.md5(w.encode()).hexdigest(), 16) % self.vocab
                tokens[i, j] = self.embed[h]
                mask[i, j] = True
        denom = mask.sum(1, keepdim=True).clamp(min=1)
        pooled = tokens.sum(1) / denom
        return Encoded(tokens, pooled, mask)
