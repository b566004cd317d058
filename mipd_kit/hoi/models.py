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
        heads: attention heads of the ICN's cross-attention to the context tokens.
        dropout: dropout in the MLPs.
        logit_scale: initial multiplier of cosine similarities (learned, clamped to [1, 100]).
        crop_dim: width of the optional teacher crop embeddings per pair (3 * E, 0 = none).
        prior_weight: initial weight of the geometric log-prior added to every pair logit (learned; 0 = off).
        context_gate: initial gate ``g`` of the context (learned), the weight of the residual context added to the
            pair embedding (``cross_attention``: 0 = the student starts as the ICN alone and learns how much context
            to use, as the zero-init gates of Flamingo's cross-attention layers).
        context_fusion: how the ICN uses the VLT's output: ``"cross_attention"`` (each pair attends to the
            translated context tokens of its image, so the context differs per pair) or ``"broadcast"`` (the
            image-level context vector, the same for every pair of the image, fed to the fusion MLP and added with
            the gate ``g``; the earlier design).
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
    context_fusion: Literal["cross_attention", "broadcast"] = "cross_attention"


def _mlp(i: int, h: int, o: int, p: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h), nn.LayerNorm(h), nn.GELU(), nn.Dropout(p), nn.Linear(h, o))


class VisualLinguisticTranslator(nn.Module):
    """Translates an image's patch tokens into the text space: context tokens and one pooled context vector.

    With ``x_t`` the teacher's patch token ``t`` (D channels) and ``p_t`` a learned position,
    ``h_t = W_in x_t + p_t``; the translated (context) tokens are ``u_t = MLP_u(h_t)`` in the text width E; the
    image's context is their attention pool plus a projection of the teacher's pooled image embedding ``v``:
    ``a = softmax_t(q . h_t / sqrt(h))``, ``c = normalise( sum_t a_t u_t + W_v v )``. Context distillation trains
    ``c`` towards the embedding of the image's description (``losses.context_distillation_loss``), which pulls the
    tokens ``u_t`` into the description's text space; the ICN then attends to the ``u_t``.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        h = cfg.hidden
        self.hidden = h
        self.tok = nn.Linear(cfg.visual_dim, h)
        self.pos = nn.Parameter(torch.zeros(1, 256, h))
        self.query = nn.Parameter(torch.randn(h) * 0.02)
        self.translate = _mlp(h, h, cfg.text_dim, cfg.dropout)
        self.pool_proj = nn.Linear(cfg.text_dim, cfg.text_dim)

    def forward(self, grid: torch.Tensor, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """grid (N, D, r, c), pooled (N, E) -> context tokens (N, T, E) and normalised context (N, E)."""
        h = self.tok(grid.flatten(2).transpose(1, 2))  # (N, T, h)
        t = h.shape[1]
        if t <= self.pos.shape[1]:
            h = h + self.pos[:, :t]
        u = self.translate(h)  # (N, T, E)
        a = torch.softmax(h @ self.query / self.hidden ** 0.5, dim=1)  # (N, T)
        c = (a.unsqueeze(-1) * u).sum(1) + self.pool_proj(pooled)  # (N, E)
        return u, F.normalize(c, dim=-1)


def pair_cross_attention(attn: nn.MultiheadAttention, q: torch.Tensor, tokens: torch.Tensor,
                         pair_image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``attn(q_p, u_{i(p)}, u_{i(p)})`` for every pair ``p`` with one query each, the keys and values projected once
    per *image* and never copied per pair.

    The same math as calling ``attn`` on ``tokens[pair_image]`` (same parameters, so checkpoints are unchanged; equal
    up to float summation order) without copying each image's T context tokens once for each of its pairs: the K/V
    projection, the step's largest matmul, shrinks from (P, T, E) x (E, h) to (N, T, E) x (E, h), and the queries
    are padded to (N, M) (M: the most pairs of one image) so that every image attends with one batched matmul.

    Args:
        attn: a batch-first ``nn.MultiheadAttention`` with separate key/value widths (``kdim``/``vdim``), no extra
            bias_k/bias_v, no zero attention.
        q: (P, h) queries; tokens: (N, T, E) context tokens; pair_image: (P,) image index of each pair.

    Returns:
        (P, h) attended context and (P, T) attention weights averaged over heads (as ``need_weights=True``).
    """
    h, H = attn.embed_dim, attn.num_heads
    dh = h // H
    b = attn.in_proj_bias if attn.in_proj_bias is not None else q.new_zeros(3 * h)
    if attn._qkv_same_embed_dim:
        wq, wk, wv = attn.in_proj_weight.split(h)
    else:
        wq, wk, wv = attn.q_proj_weight, attn.k_proj_weight, attn.v_proj_weight
    if q.device.type == "meta":  # shape-only tensors (device tests) cannot size the padding: the reference path
        kv = tokens[pair_image]
        out, w = attn(q.unsqueeze(1), kv, kv, need_weights=True)
        return out[:, 0], w[:, 0]
    P, N, T = q.shape[0], tokens.shape[0], tokens.shape[1]
    # each pair's slot among its image's pairs: queries padded to (N, M), keys/values stay (N, T) -- no per-pair copy
    order = torch.argsort(pair_image, stable=True)
    counts = torch.bincount(pair_image, minlength=N)
    slot = torch.empty_like(pair_image)
    slot[order] = torch.arange(P, device=q.device) - (torch.cumsum(counts, 0) - counts)[pair_image[order]]
    M = int(counts.max()) if P else 0
    qh = F.linear(q, wq, b[:h]).view(P, H, dh)
    qpad = qh.new_zeros(N, M, H, dh).index_put((pair_image, slot), qh)  # (N, M, H, dh)
    k = F.linear(tokens, wk, b[h:2 * h]).view(N, T, H, dh)  # projected once per image
    v = F.linear(tokens, wv, b[2 * h:]).view(N, T, H, dh)
    w = torch.softmax(qpad.transpose(1, 2) @ k.permute(0, 2, 3, 1) / dh ** 0.5, dim=-1)  # (N, H, M, T)
    if attn.training and attn.dropout > 0:
        w = F.dropout(w, attn.dropout)
    o = (w @ v.transpose(1, 2)).transpose(1, 2)  # (N, M, H, dh)
    out = attn.out_proj(o[pair_image, slot].reshape(P, h))
    w = w.transpose(1, 2)[pair_image, slot]  # (P, H, T)
    return out, w.mean(1)


class InteractionCognitionNetwork(nn.Module):
    """Scores human-object pairs from spatial, visual (human, object, union) and context features.

    ``v_p`` is the visual embedding of the pair's three regions (RoIAlign features, plus the teacher's crop
    embeddings when given), ``s_p`` the spatial embedding (multiplicative spatial attention), ``c_p`` the pair's
    context, ``g`` a learned gate:

    * ``cross_attention``: ``c_p = MHA(query = W_q [v_p, W s_raw_p], keys = values = u_{i(p)})``, multi-head
      attention from the pair to the context tokens ``u`` of its image ``i(p)`` -- pairs of one image look at
      different parts of the translated context -- and ``z_p = normalise(MLP([v_p * s_p, W s_raw_p]) + g W_o c_p)``
      (without context this is exactly the ``icn`` student);
    * ``broadcast`` (the earlier design): ``c_p = W_c c_{i(p)}``, the same for every pair of the image, and
      ``z_p = normalise(MLP([v_p * s_p, W s_raw_p, c_p]) + g c_{i(p)})``.
    """

    def __init__(self, cfg: ModelConfig, use_context: bool):
        super().__init__()
        h = cfg.hidden
        self.use_context = use_context
        self.fusion = cfg.context_fusion
        if self.fusion not in ("cross_attention", "broadcast"):
            raise ValueError(f"unknown context_fusion {self.fusion!r}; choose 'cross_attention' or 'broadcast'")
        # the layers the ``icn`` student has come first and with its shapes (``cross_attention`` adds its context
        # after the fusion MLP), so that they start from the same draws as the ``icn`` of the same seed
        cross = use_context and self.fusion == "cross_attention"
        self.visual = _mlp(3 * cfg.visual_dim + cfg.crop_dim, h, h, cfg.dropout)
        self.spatial = nn.Sequential(_mlp(SPATIAL_DIM, h, h, cfg.dropout), nn.Sigmoid())
        self.spatial_direct = nn.Linear(SPATIAL_DIM, h)
        self.ctx = nn.Linear(cfg.text_dim, h) if use_context and self.fusion == "broadcast" else None
        self.fuse = _mlp(3 * h if use_context and not cross else 2 * h, h, cfg.text_dim, cfg.dropout)
        self.query = nn.Linear(2 * h, h) if cross else None
        self.attn = (nn.MultiheadAttention(h, cfg.heads, kdim=cfg.text_dim, vdim=cfg.text_dim, batch_first=True)
                     if cross else None)
        self.ctx_out = nn.Linear(h, cfg.text_dim) if cross else None
        self.gate = nn.Parameter(torch.tensor(float(cfg.context_gate))) if use_context else None
        self.last_attention: Optional[torch.Tensor] = None

    def pair_context(self, v: torch.Tensor, direct: torch.Tensor, context: torch.Tensor,
                     tokens: Optional[torch.Tensor], pair_image: Optional[torch.Tensor]) -> torch.Tensor:
        """(P, h) context of each pair (see the class docstring); ``context`` (P, E) per pair for ``broadcast``,
        ``tokens`` (N, T, E) and ``pair_image`` (P,) for ``cross_attention``."""
        if self.fusion == "broadcast":
            return self.ctx(context)
        if tokens is None or pair_image is None:
            raise ValueError("cross-attention context needs the VLT's context tokens and pair_image")
        q = self.query(torch.cat([v, direct], -1))  # (P, h)
        out, w = pair_cross_attention(self.attn, q, tokens, pair_image)
        self.last_attention = w.detach()
        return out

    def forward(self, feat_h: torch.Tensor, feat_o: torch.Tensor, feat_u: torch.Tensor, spatial: torch.Tensor,
                context: Optional[torch.Tensor], crops: Optional[torch.Tensor] = None,
                tokens: Optional[torch.Tensor] = None, pair_image: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(P, D) x3, (P, S), context (P, E) or None, crops (P, crop_dim) or None, context tokens (N, T, E) and
        pair_image (P,) for cross-attention -> (P, E) normalised pair embeddings."""
        vis = [feat_h, feat_o, feat_u] + ([crops] if crops is not None and crops.shape[-1] else [])
        v = self.visual(torch.cat(vis, -1))  # (P, h)
        s = self.spatial(spatial)  # (P, h)
        direct = self.spatial_direct(spatial)  # (P, h)
        parts = [v * s, direct]
        ctx = None
        if self.use_context:
            if context is None:
                raise ValueError("this ICN was built with a context branch; pass the VLT context")
            ctx = self.pair_context(v, direct, context, tokens, pair_image)  # (P, h)
            if self.fusion == "broadcast":
                parts.append(ctx)
        z = self.fuse(torch.cat(parts, -1))  # (P, E)
        if ctx is not None and self.fusion == "cross_attention":
            z = z + self.gate * self.ctx_out(ctx)
        elif ctx is not None:
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
        # the ICN first: its shared layers start from the same draws as the ``icn`` student of the same seed
        self.icn = InteractionCognitionNetwork(cfg, use_context=cfg.kind == "clhoi")
        self.vlt = VisualLinguisticTranslator(cfg) if cfg.kind == "clhoi" else None
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
            ``pair_logits`` (P, H), ``context`` (N, E) or None, ``context_tokens`` (N, T, E) or None,
            ``pair_embed`` (P, E).
        """
        tokens = context = None
        if self.vlt is not None:
            tokens, context = self.vlt(grid, pooled)  # (N, T, E), (N, E)
        ctx_p = context[pair_image] if context is not None else None
        z = self.icn(feat_h, feat_o, feat_u, spatial, ctx_p, crops, tokens, pair_image)  # (P, E)
        logits = self.scale * z @ text.T  # (P, H)
        if self.prior_weight is not None:
            if log_prior is None:
                raise ValueError("this student adds a geometric prior; pass log_prior")
            logits = logits + self.prior_weight * log_prior[:, None]
        logits = logits.masked_fill(~candidates, float("-inf"))
        return {"pair_logits": logits, "context": context, "context_tokens": tokens, "pair_embed": z}


def build_student(cfg: ModelConfig) -> CLHOIStudent:
    """Factory over ``cfg.kind`` (``"clhoi"`` | ``"icn"``)."""
    if cfg.kind not in ("clhoi", "icn"):
        raise ValueError(f"unknown student kind {cfg.kind!r}; choose 'clhoi' or 'icn'")
    return CLHOIStudent(cfg)
