"""Scene-aware and instance-perception prompts on the teacher's patch grid (MIPD, "Multimodal Interactive Prompt
Distillation", the authors' CoFormer-derived code).

- :class:`ScenePrompt` adds learnable vectors to the teacher's patch tokens. ``variant="border"`` is the authors'
  choice (vectors on the ``width`` outermost rows and columns of the grid); ``variant="full"`` puts a learnable vector
  on every cell. Why offer ``full``: in the border form the central cells, where SynthSitu's (and most photos')
  actors are, get no prompt and are only reached indirectly through attention; a full-grid prompt lets the
  alignment re-weight every location. It is an option, measured on dev in notebook 04, not the default.
- :class:`InstancePrompt` holds one learnable ``(D, p, p)`` prompt that is resized (bilinear) into each role box's
  cell range on the grid and added to the tokens there.

Tokens may carry a leading CLS token (``T = rows*cols + 1``); prompts never touch it.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

ScenePromptVariant = Literal["border", "full", "none"]


def split_cls(tokens: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Split (B, T, D) tokens into the optional CLS (B, 1, D) and the grid part (B, rows*cols, D)."""
    rows, cols = grid
    T = tokens.shape[1]
    if T == rows * cols:
        return None, tokens
    if T == rows * cols + 1:
        return tokens[:, :1], tokens[:, 1:]
    raise ValueError(f"teacher tokens have {T} entries, expected rows*cols={rows * cols} (+1 CLS) for grid {grid}")


def border_mask(grid: tuple[int, int], width: int = 1) -> torch.Tensor:
    """(rows, cols) bool, True on the ``width`` outermost rows/columns."""
    rows, cols = grid
    m = torch.zeros(rows, cols, dtype=torch.bool)
    w = max(1, min(width, (min(rows, cols) + 1) // 2))
    m[:w], m[-w:], m[:, :w], m[:, -w:] = True, True, True, True
    return m


class ScenePrompt(nn.Module):
    """Learnable additive prompt on the teacher's patch grid.

    Args:
        dim: token width D.
        grid: (rows, cols).
        variant: ``"border"`` (authors), ``"full"`` or ``"none"``.
        width: border width in cells.
    """

    def __init__(self, dim: int, grid: tuple[int, int], variant: ScenePromptVariant = "border", width: int = 1):
        super().__init__()
        if variant not in ("border", "full", "none"):
            raise ValueError(f"scene prompt variant must be one of 'border', 'full', 'none', got {variant!r}")
        self.grid, self.variant = tuple(grid), variant
        rows, cols = grid
        self.prompt = nn.Parameter(torch.randn(rows * cols, dim) * 0.02)
        if variant == "border":
            m = border_mask(self.grid, width).flatten()
        elif variant == "full":
            m = torch.ones(rows * cols, dtype=torch.bool)
        else:
            m = torch.zeros(rows * cols, dtype=torch.bool)
        self.register_buffer("mask", m.float().unsqueeze(-1), persistent=False)  # (rows*cols, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, D) with the prompt added on the masked cells."""
        cls, g = split_cls(tokens, self.grid)
        g = g + (self.prompt * self.mask).unsqueeze(0)
        return g if cls is None else torch.cat([cls, g], 1)


def box_cells(box: torch.Tensor, grid: tuple[int, int]) -> tuple[int, int, int, int]:
    """Cell range ``(r0, r1, c0, c1)`` (end exclusive, at least one cell) covering a normalised xyxy box."""
    rows, cols = grid
    x1, y1, x2, y2 = [float(v) for v in box]
    c0 = min(cols - 1, max(0, int(math.floor(x1 * cols))))
    r0 = min(rows - 1, max(0, int(math.floor(y1 * rows))))
    c1 = min(cols, max(c0 + 1, int(math.ceil(x2 * cols))))
    r1 = min(rows, max(r0 + 1, int(math.ceil(y2 * rows))))
    return r0, r1, c0, c1


class InstancePrompt(nn.Module):
    """A learnable ``(D, p, p)`` prompt resized (bilinear) into each role's box region of the grid.

    Args:
        dim: token width D.
        grid: (rows, cols).
        size: prompt side p.
    """

    def __init__(self, dim: int, grid: tuple[int, int], size: int = 4):
        super().__init__()
        self.grid = tuple(grid)
        self.prompt = nn.Parameter(torch.randn(1, dim, size, size) * 0.02)

    def forward(self, tokens: torch.Tensor, boxes: torch.Tensor, exists: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add the resized prompt inside each role's box.

        Args:
            tokens: (B, T, D) teacher tokens.
            boxes: (B, R, 4) normalised xyxy boxes.
            exists: (B, R) True where the role has a box; roles without one use the whole grid.

        Returns:
            prompted tokens (B, R, T, D) and region masks (B, R, T) (CLS never in the region).
        """
        cls, g = split_cls(tokens, self.grid)
        rows, cols = self.grid
        B, R = boxes.shape[:2]
        D = g.shape[-1]
        add = g.new_zeros(B, R, D, rows, cols)
        region = torch.zeros(B, R, rows, cols, dtype=torch.bool)
        cache: dict[tuple[int, int], torch.Tensor] = {}
        for b in range(B):
            for r in range(R):
                if bool(exists[b, r]):
                    r0, r1, c0, c1 = box_cells(boxes[b, r], self.grid)
                else:
                    r0, r1, c0, c1 = 0, rows, 0, cols
                hw = (r1 - r0, c1 - c0)
                if hw not in cache:
                    cache[hw] = F.interpolate(self.prompt, size=hw, mode="bilinear", align_corners=False)[0]
                add[b, r, :, r0:r1, c0:c1] = cache[hw]
                region[b, r, r0:r1, c0:c1] = True
        add = add.flatten(3).transpose(2, 3)  # (B, R, rows*cols, D)
        out = g.unsqueeze(1) + add
        region = region.flatten(2)
        if cls is not None:
            out = torch.cat([cls.unsqueeze(1).expand(B, R, 1, D), out], 2)
            region = torch.cat([torch.zeros(B, R, 1, dtype=torch.bool), region], 2)
        return out, region
