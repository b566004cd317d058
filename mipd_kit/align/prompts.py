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
    """Cell range ``(r0, r1, c0, c1)`` (end exclusive, at least one cell) covering a normalised xyxy box
    (one box of :func:`box_cells_batched`)."""
    cells = box_cells_batched(torch.as_tensor(box, dtype=torch.float64).view(1, 4), torch.ones(1, dtype=torch.bool), grid)
    r0, r1, c0, c1 = (int(t[0]) for t in cells)
    return r0, r1, c0, c1


def box_cells_batched(boxes: torch.Tensor, exists: torch.Tensor,
                      grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cell ranges (end exclusive, at least one cell) covering (..., 4) normalised xyxy boxes; roles without a box
    (``exists`` False) cover the whole grid.

    Returns ``r0, r1, c0, c1`` long tensors of shape ``boxes.shape[:-1]``.
    """
    rows, cols = grid
    b = boxes.double()
    c0 = torch.floor(b[..., 0] * cols).long().clamp(0, cols - 1)
    r0 = torch.floor(b[..., 1] * rows).long().clamp(0, rows - 1)
    c1 = torch.maximum(c0 + 1, torch.ceil(b[..., 2] * cols).long()).clamp(max=cols)
    r1 = torch.maximum(r0 + 1, torch.ceil(b[..., 3] * rows).long()).clamp(max=rows)
    e = exists.bool()
    zero = torch.zeros_like(r0)
    return (torch.where(e, r0, zero), torch.where(e, r1, zero + rows), torch.where(e, c0, zero),
            torch.where(e, c1, zero + cols))


def _interp_matrix(n: int, p: int, dtype: torch.dtype) -> torch.Tensor:
    """(n, p) weights of 1-D linear interpolation from p to n samples (``align_corners=False``, as the bilinear
    resize of ``F.interpolate`` uses per axis)."""
    eye = torch.eye(p, dtype=dtype).view(p, 1, p)
    return F.interpolate(eye, size=n, mode="linear", align_corners=False)[:, 0, :].t()


def _placed_weights(start: torch.Tensor, end: torch.Tensor, n: int, p: int, dtype: torch.dtype) -> torch.Tensor:
    """(..., n, p): for each range ``[start, end)`` of an axis of length n, row k holds the interpolation weights of
    cell k (row ``k - start`` of the (end - start, p) matrix) inside the range and zeros outside it."""
    table = torch.zeros(n, n, p, dtype=dtype)  # table[m-1, k] = row k of the size-m matrix (zero for k >= m)
    for m in range(1, n + 1):
        table[m - 1, :m] = _interp_matrix(m, p, dtype)
    table = table.to(start.device)  # built on the CPU (small), used where the boxes are
    k = torch.arange(n, device=start.device)
    local = k - start.unsqueeze(-1)  # (..., n)
    inside = (local >= 0) & (k < end.unsqueeze(-1))
    w = table[(end - start - 1).unsqueeze(-1).expand_as(local), local.clamp(0, n - 1)]  # (..., n, p)
    return w * inside.unsqueeze(-1).to(dtype)


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
        r0, r1, c0, c1 = box_cells_batched(boxes, exists, self.grid)  # (B, R) each
        # bilinear resizing is separable: prompt resized to (h, w) = A_h P A_w^T with 1-D interpolation matrices, so
        # each role's addition is two small contractions with row / column weights that are zero outside its box.
        # (An index-gather from a table of resized prompts is as fast, but its backward accumulates with
        # index_put_, whose order varies between CPU threads: seeded NMPA runs then differ.)
        wy = _placed_weights(r0, r1, rows, self.prompt.shape[-2], g.dtype)  # (B, R, rows, p)
        wx = _placed_weights(c0, c1, cols, self.prompt.shape[-1], g.dtype)  # (B, R, cols, p)
        add = torch.einsum("bryi,brxj,dij->brdyx", wy, wx, self.prompt[0])  # (B, R, D, rows, cols)
        ys, xs = torch.arange(rows, device=r0.device), torch.arange(cols, device=r0.device)
        in_y = (ys >= r0.unsqueeze(-1)) & (ys < r1.unsqueeze(-1))  # (B, R, rows)
        in_x = (xs >= c0.unsqueeze(-1)) & (xs < c1.unsqueeze(-1))  # (B, R, cols)
        region = in_y.unsqueeze(-1) & in_x.unsqueeze(-2)  # (B, R, rows, cols)
        add = add.flatten(3).transpose(2, 3)  # (B, R, rows*cols, D)
        out = g.unsqueeze(1) + add
        region = region.flatten(2)
        if cls is not None:
            out = torch.cat([cls.unsqueeze(1).expand(B, R, 1, D), out], 2)
            region = torch.cat([torch.zeros(B, R, 1, dtype=torch.bool, device=region.device), region], 2)
        return out, region
