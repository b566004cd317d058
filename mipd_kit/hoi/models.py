"""CL-HOI student: Visual Linguistic Translator (VLT) and Interaction Cognition Network (ICN).

After "Cross-Level Distillation for HOI detection" (CL-HOI): *context distillation* translates image-level visual
information into the linguistic (text embedding) space with a VLT; *interaction distillation* reasons over every
human-object pair with an ICN from spatial, visual and context cues. Every HOI phrase is scored by cosine
similarity between the pair embedding and the teacher's (frozen) phrase embedding, so HOIs never seen in training
(zero-shot / unseen) are scored like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .features import SPATIAL_DIM


@dataclass
class ModelConfig:
    """Widths of the student.

    Attributes:
        kind: ``"clhoi"`` (ICN + VLT context) or ``"icn"`` (ICN alone, no context branch).
        visual_dim: D, channels of the teacher patch grid.
        text_dim: E, the joint (text) embedding width.
        hidden: hidden width.
        heads: attention heads of the VLT pooling.
        dropout: dropout in the MLPs.
        logit_scale: initial multiplier of cosine similarities (learned, clamped to [1, 100]).
        crop_dim: width of the optional teacher crop embeddings per pair (3 * E, 0 = none).
        prior_weight: initial weight of the geometric log-prior added to every pair logit (learned; 0 = off).
        context_gate: initial gate ``g`` of the residual context added to the pair embedding (learned).
    """

    kind: Literal["clhoi", "icn"] = "clhoi"
    visual_dim: int = 32
    text_dim: int = 32
    hidden: int = 128
    heads: int = 4
    dropout: float = 0.1
    logit_scale: float = 10.0
    crop_dim: int = 0
    prior_weight: float = 0.0
    context_gate: float = 1.0


def _mlp(i: int, h: int, o: int, p: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h), nn.LayerNorm(h), nn.GELU(), nn.Dropout(p), nn.Linear(h, o))


class VisualLinguisticTranslator(nn.Module):
    """Maps an image's patch grid and pooled embedding to one vector in the text space (the "translated context").

    Attention pooling with a learned query over the projected patch tokens, concatenated with the projected pooled
    image embedding, then an MLP to the text width; the output is L2-normalised.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        h = cfg.hidden
        self.tok = nn.Linear(cfg.visual_dim, h)
        self.pos = nn.Parameter(torch.zeros(1, 256, h))
        self.query = nn.Parameter(torch.randn(1, 1, h) * 0.02)
        self.attn = nn.MultiheadAttention(h, cfg.heads, batch_first=True)
        self.pool_proj = nn.Linear(cfg.text_dim, h)
        self.out = _mlp(2 * h, h, cfg.text_dim, cfg.dropout)

    def forward(self, grid: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        """grid (N, D, r, c), pooled (N, E) -> (N, E) normalised context."""
        tokens = self.tok(grid.flatten(2).transpose(1, 2))  # (N, T, h)
        t = tokens.shape[1]
        if t <= self.pos.shape[1]:
            tokens = tokens + self.pos[:, :t]
        q = self.query.expand(tokens.shape[0], -1, -1)
        att, _ = self.attn(q, tokens, tokens)  # (N, 1, h)
        x = torch.cat([att[:, 0], self.pool_proj(pooled)], -1)
        return F.normalize(self.out(x), dim=-1)


class InteractionCognitionNetwork(nn.Module):
    """Scores human-object pairs from spatial, visual (human, object, union) and context features.

    ``z = normalise(MLP([v * s, W s_raw, c']) + g * c)`` where ``v`` is the visual embedding of the three regions
    (RoIAlign features, plus the teacher's crop embeddings when given), ``s`` the spatial embedding (multiplicative
    spatial attention), ``c`` the translated context (absent without a VLT) and ``g`` a learned gate.
    """

    def __init__(self, cfg: ModelConfig, use_context: bool):
        super().__init__()
        h = cfg.hidden
        self.use_context = use_context
        self.visual = _mlp(3 * cfg.visual_dim + cfg.crop_dim, h, h, cfg.dropout)
        self.spatial = nn.Sequential(_mlp(SPATIAL_DIM, h, h, cfg.dropout), nn.Sigmoid())
        self.spatial_direct = nn.Linear(SPATIAL_DIM, h)
        self.ctx = nn.Linear(cfg.text_dim, h) if use_context else None
        self.fuse = _mlp(3 * h if use_context else 2 * h, h, cfg.text_dim, cfg.dropout)
        self.gate = nn.Parameter(torch.tensor(float(cfg.context_gate))) if use_context else None

    def forward(self, feat_h: torch.Tensor, feat_o: torch.Tensor, feat_u: torch.Tensor, spatial: torch.Tensor,
                context: Optional[torch.Tensor], crops: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(P, D) x3, (P, S), context (P, E) or None, crops (P, crop_dim) or None -> (P, E) normalised pair
        embeddings."""
        vis = [feat_h, feat_o, feat_u] + ([crops] if crops is not None and crops.shape[-1] else [])
        v = self.visual(torch.cat(vis, -1))  # (P, h)
        s = self.spatial(spatial)  # (P, h)
        parts = [v * s, self.spatial_direct(spatial)]
        if self.use_context:
            if context is None:
                raise ValueError("this ICN was built with a context branch; pass the VLT context")
            parts.append(self.ctx(context))
        z = self.fuse(torch.cat(parts, -1))  # (P, E)
        if self.use_context:
            z = z + self.gate * context
        return F.normalize(z, dim=-1)


class CLHOIStudent(nn.Module):
    """VLT (optional) + ICN + cosine scoring against the frozen phrase embeddings.

    Pair logits: ``s_{p,k} = scale * cos(z_p, e_k) + w * log_prior_p`` with ``e_k`` the phrase embedding and the
    optional label-free geometric prior ``log_prior_p = -gap_p`` (``features.spatial_prior``), weight ``w`` learned
    from ``cfg.prior_weight``.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.vlt = VisualLinguisticTranslator(cfg) if cfg.kind == "clhoi" else None
        self.icn = InteractionCognitionNetwork(cfg, use_context=self.vlt is not None)
        self.log_scale = nn.Parameter(torch.tensor(float(cfg.logit_scale)).log())
        self.prior_weight = nn.Parameter(torch.tensor(float(cfg.prior_weight))) if cfg.prior_weight else None

    @property
    def scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(1.0, 100.0)

    def forward(self, grid: torch.Tensor, pooled: torch.Tensor, pair_image: torch.Tensor, feat_h: torch.Tensor,
                feat_o: torch.Tensor, feat_u: torch.Tensor, spatial: torch.Tensor, text: torch.Tensor,
                candidates: torch.Tensor, log_prior: Optional[torch.Tensor] = None,
                crops: Optional[torch.Tensor] = None) -> dict[str, Optional[torch.Tensor]]:
        """Pair logits over all HOI phrases.

        Args:
            grid: (N, D, r, c) teacher patch grid; pooled: (N, E).
            pair_image: (P,) image index of each pair.
            feat_h, feat_o, feat_u: (P, D) region features; spatial: (P, S) standardised geometry.
            text: (H, E) normalised phrase embeddings.
            candidates: (P, H) bool; non-candidate logits are set to -inf.
            log_prior: (P,) geometric log-prior (used when the model has a prior weight).
            crops: (P, crop_dim) teacher crop embeddings (used when ``cfg.crop_dim`` > 0).

        Returns:
            ``pair_logits`` (P, H), ``context`` (N, E) or None, ``pair_embed`` (P, E).
        """
        context = self.vlt(grid, pooled) if self.vlt is not None else None  # (N, E)
        ctx_p = context[pair_image] if context is not None else None
        z = self.icn(feat_h, feat_o, feat_u, spatial, ctx_p, crops)  # (P, E)
        logits = self.scale * z @ text.T  # (P, H)
        if self.prior_weight is not None:
            if log_prior is None:
                raise ValueError("this student adds a geometric prior; pass log_prior")
            logits = logits + self.prior_weight * log_prior[:, None]
        logits = logits.masked_fill(~candidates, float("-inf"))
        return {"pair_logits": logits, "context": context, "pair_embed": z}


def build_student(cfg: ModelConfig) -> CLHOIStudent:
    """Factory over ``cfg.kind`` (``"clhoi"`` | ``"icn"``)."""
    if cfg.kind not in ("clhoi", "icn"):
        raise ValueError(f"unknown student kind {cfg.kind!r}; choose 'clhoi' or 'icn'")
    return CLHOIStudent(cfg)
