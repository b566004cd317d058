"""Negative-Guided Multimodal Prompting Alignment (NMPA), MIPD (the authors' CoFormer-derived code).

The teacher's patch tokens get a scene-aware prompt (:class:`~mipd_kit.align.prompts.ScenePrompt`) and cross-attend
to the encoded **positive glimpse** rationale tokens, giving an aligned scene feature in the teacher's joint
image-text space; per role, an instance-perception prompt (:class:`~mipd_kit.align.prompts.InstancePrompt`) is
resized into the role's box and the region's tokens cross-attend to the role's **positive gaze** rationale tokens,
giving an aligned instance feature. A learnable *null* key is always attendable, so an image (or role) without
rationales gets a well-defined feature (the prompted teacher feature), never a NaN.

Training (single process, on train images with rationales): symmetric InfoNCE between aligned features and the
pooled positive rationale embeddings, a fidelity term ``1 - cos(aligned, teacher)`` that keeps the target close to
the teacher, and the negative-guided term (:func:`mipd_kit.align.losses.negative_guided`: the authors'
``relu(cos(x, mean(neg)))`` or a margin / InfoNCE form over several negatives). After training, NMPA produces the
aligned teacher targets per image that the student distils (:func:`aligned_targets`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..fileio import atomic_path
from . import losses as L
from .prompts import InstancePrompt, ScenePrompt, ScenePromptVariant, split_cls

NegKind = Literal["authors", "margin", "infonce"]


@dataclass
class NMPAConfig:
    """NMPA hyper-parameters.

    Attributes:
        scene_prompt: ``"border"`` (authors), ``"full"`` or ``"none"``.
        border_width: border width in cells for ``"border"``.
        inst_prompt_size: side of the instance prompt before resizing.
        heads: attention heads (must divide the teacher token width).
        epochs, batch_size, lr, weight_decay: optimisation.
        tau: temperature of the alignment InfoNCE.
        w_align, w_fidelity, w_neg: loss weights (``w_neg = 0`` disables the negative guidance).
        neg_kind: ``"authors"``, ``"margin"`` or ``"infonce"``.
        neg_margin, neg_tau: parameters of the margin / InfoNCE negative forms.
        max_rationales: positive rationales per image/role used as keys.
        use_instances: train and produce instance (gaze) features.
        seed: seeds initialisation and data order.
    """

    scene_prompt: ScenePromptVariant = "border"
    border_width: int = 1
    inst_prompt_size: int = 4
    heads: int = 4
    epochs: int = 8
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    tau: float = 0.07
    w_align: float = 1.0
    w_fidelity: float = 1.0
    w_neg: float = 5.0
    neg_kind: NegKind = "authors"
    neg_margin: float = 0.2
    neg_tau: float = 0.1
    max_rationales: int = 3
    use_instances: bool = True
    seed: int = 0

    @classmethod
    def smoke(cls) -> "NMPAConfig":
        return cls(epochs=2, batch_size=16)

    def fingerprint(self) -> str:
        import hashlib
        import json
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class TextBank:
    """Encoded rationale texts (unique), indexed by the per-image index tensors of :class:`AlignData`.

    Attributes:
        texts: the texts, positives first.
        tokens: (P, L, Dt) token features of the P positive texts (float16); mask (P, L); pooled (U, E)
            joint-space embeddings of all U texts.
    """

    texts: list[str]
    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor


@dataclass
class AlignData:
    """Teacher features, role boxes and rationale indices of N images.

    Attributes:
        images: image names (N).
        tokens: (N, T, D) teacher patch tokens; pooled: (N, E) teacher pooled embeddings.
        grid: (rows, cols) of the teacher grid.
        boxes: (N, R, 4) normalised xyxy role boxes; box_exists (N, R); role_mask (N, R).
        bank: the encoded rationale texts.
        glimpse_pos, glimpse_neg: (N, K) indices into ``bank`` (-1 = none).
        gaze_pos, gaze_neg: (N, R, K) indices (-1 = none).
        role_names: (N) list of the role names in slot order, for display.
    """

    images: list[str]
    tokens: torch.Tensor
    pooled: torch.Tensor
    grid: tuple[int, int]
    boxes: torch.Tensor
    box_exists: torch.Tensor
    role_mask: torch.Tensor
    bank: TextBank
    glimpse_pos: torch.Tensor
    glimpse_neg: torch.Tensor
    gaze_pos: torch.Tensor
    gaze_neg: torch.Tensor
    role_names: list[list[str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    def coverage(self) -> dict[str, int]:
        """Counts of images/roles with and without positive rationales (the gap is reported, not hidden)."""
        g = (self.glimpse_pos >= 0).any(-1)
        z = (self.gaze_pos >= 0).any(-1) & self.role_mask
        return {"images": len(self), "images_with_glimpse": int(g.sum()), "images_without_glimpse": int((~g).sum()),
                "roles": int(self.role_mask.sum()), "roles_with_gaze": int(z.sum()),
                "roles_without_gaze": int((self.role_mask & ~z).sum()),
                "images_with_negatives": int((self.glimpse_neg >= 0).any(-1).sum())}


def _pooled_mean(bank: TextBank, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean pooled embedding of the indexed rationales.  idx (..., K) -> ((..., E), (...) has-any)."""
    m = (idx >= 0)
    e = bank.pooled[idx.clamp(min=0)] * m.unsqueeze(-1).float()  # (..., K, E)
    return e.sum(-2) / m.sum(-1, keepdim=True).clamp(min=1).float(), m.any(-1)


def _pooled_each(bank: TextBank, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., K) -> ((..., K, E), (..., K) mask)."""
    return bank.pooled[idx.clamp(min=0)], idx >= 0


#: public names of the pooled rationale embeddings (the student's negative-guided loss reads them).
pooled_mean = _pooled_mean
pooled_each = _pooled_each


def text_anchored(scene: torch.Tensor, data: "AlignData", weight: float) -> torch.Tensor:
    """Scene targets that carry what the positive glimpse rationales say: ``scene + weight * |scene| * unit(mean
    positive rationale embedding)`` for the images that have positive glimpses (the others unchanged).

    NMPA's aligned feature is the teacher's pooled embedding plus a learned residual and stays close to it (cosine
    0.87-0.95 with the teacher's, whatever the rationales say: docs/results.md, "What blocks the positive control"),
    so what a rationale knows beyond the teacher's image feature never reaches the student. Adding the rationales'
    own joint-space embedding, scaled to the target's length, puts it in the target; ``weight`` 0 returns ``scene``.

    Args:
        scene: (N, E) targets (``aligned_targets(...)["scene"]``) of the N images of ``data``.
        data: the images' alignment data (rationale bank and positive glimpse indices).
        weight: the text's share relative to the target's length.
    """
    if weight == 0:
        return scene
    text, has = _pooled_mean(data.bank, data.glimpse_pos.to(data.bank.pooled.device))
    text = F.normalize(text.float(), dim=-1).to(scene.device)
    add = weight * scene.norm(dim=-1, keepdim=True) * text * has.to(scene.device).unsqueeze(-1).float()
    return scene + add.to(scene.dtype)


class NMPA(nn.Module):
    """Scene-aware + instance-perception prompts cross-attending to positive rationale tokens.

    Args:
        cfg: the config.
        dim: teacher token width D; text_dim: rationale token width Dt; joint_dim: pooled width E.
        grid: teacher grid.
    """

    def __init__(self, cfg: NMPAConfig, dim: int, text_dim: int, joint_dim: int, grid: tuple[int, int]):
        super().__init__()
        heads = cfg.heads if dim % cfg.heads == 0 else 1
        self.cfg, self.grid = cfg, tuple(grid)
        self.scene_prompt = ScenePrompt(dim, grid, cfg.scene_prompt, cfg.border_width)
        self.inst_prompt = InstancePrompt(dim, grid, cfg.inst_prompt_size)
        self.text_in = nn.Linear(text_dim, dim)
        self.null_key = nn.Parameter(torch.zeros(1, 1, dim))
        self.scene_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.inst_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.scene_norm, self.inst_norm = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.scene_out = nn.Linear(dim, joint_dim)
        self.inst_out = nn.Linear(dim, dim)
        self.inst_to_joint = nn.Linear(dim, joint_dim)
        for lin in (self.scene_out, self.inst_out):
            nn.init.zeros_(lin.weight), nn.init.zeros_(lin.bias)

    def _keys(self, bank: TextBank, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys of (M, K) rationale indices: (M, 1 + K*L, D) with the null key first, and the padding mask."""
        M, K = idx.shape
        tok = bank.tokens[idx.clamp(min=0)].float()  # (M, K, L, Dt); positives only (their rows come first)
        msk = bank.mask[idx.clamp(min=0)] & (idx >= 0).unsqueeze(-1)  # (M, K, L)
        Lt = tok.shape[2]
        keys = self.text_in(tok.reshape(M, K * Lt, -1))
        keys = torch.cat([self.null_key.expand(M, 1, -1), keys], 1)
        pad = torch.cat([torch.zeros(M, 1, dtype=torch.bool, device=msk.device), ~msk.reshape(M, K * Lt)], 1)
        return keys, pad

    def scene(self, tokens: torch.Tensor, pooled: torch.Tensor, bank: TextBank, pos_idx: torch.Tensor,
              need_weights: bool = False) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Aligned scene feature.

        Args:
            tokens: (B, T, D); pooled: (B, E); pos_idx: (B, K) positive glimpse indices.

        Returns:
            (B, E) aligned scene features and, if asked, (B, rows*cols) attention mass each grid cell puts on
            rationale tokens (1 - weight on the null key).
        """
        q = self.scene_prompt(tokens)  # (B, T, D)
        keys, pad = self._keys(bank, pos_idx)
        ctx, w = self.scene_attn(q, keys, keys, key_padding_mask=pad, need_weights=need_weights)
        aligned = self.scene_norm(q + ctx)
        feat = pooled + self.scene_out(aligned.mean(1))
        att = None
        if need_weights:
            _, gw = split_cls(1.0 - w[:, :, :1], self.grid)
            att = gw.squeeze(-1)
        return feat, att

    def instances(self, tokens: torch.Tensor, boxes: torch.Tensor, exists: torch.Tensor, bank: TextBank,
                  pos_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Aligned instance features.

        Args:
            tokens: (B, T, D); boxes: (B, R, 4) normalised xyxy; exists: (B, R); pos_idx: (B, R, K) gaze indices.

        Returns:
            (B, R, D) aligned instance features (token space) and (B, R, D) raw region means of the teacher tokens.
        """
        B, R = boxes.shape[:2]
        prompted, region = self.inst_prompt(tokens, boxes, exists)  # (B, R, T, D), (B, R, T)
        T, D = prompted.shape[2:]
        keys, pad = self._keys(bank, pos_idx.reshape(B * R, -1))
        q = prompted.reshape(B * R, T, D)
        ctx, _ = self.inst_attn(q, keys, keys, key_padding_mask=pad, need_weights=False)
        aligned = self.inst_norm(q + ctx).view(B, R, T, D)
        rm = region.unsqueeze(-1).float()
        raw = (tokens.unsqueeze(1) * rm).sum(2) / rm.sum(2).clamp(min=1)
        region_mean = (aligned * rm).sum(2) / rm.sum(2).clamp(min=1)
        return raw + self.inst_out(region_mean), raw


def nmpa_loss(model: NMPA, data: AlignData, idx: torch.Tensor, cfg: NMPAConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """NMPA training loss on the images ``idx`` (alignment InfoNCE + fidelity + negative-guided), with named parts."""
    bank = data.bank
    tok, pooled = data.tokens[idx], data.pooled[idx]
    B = len(idx)
    scene, _ = model.scene(tok, pooled, bank, data.glimpse_pos[idx])
    pos, has_pos = _pooled_mean(bank, data.glimpse_pos[idx])
    neg, neg_mask = _pooled_each(bank, data.glimpse_neg[idx])
    parts = {"align_scene": cfg.w_align * L.contrastive_alignment(scene, pos, has_pos, cfg.tau),
             "fidelity_scene": cfg.w_fidelity * (1 - F.cosine_similarity(scene, pooled, dim=-1)).mean()}
    if cfg.w_neg > 0:
        parts["neg_scene"] = cfg.w_neg * L.negative_guided(scene, pos, neg, neg_mask, B, cfg.neg_kind,
                                                          cfg.neg_margin, cfg.neg_tau, has_pos)
    if cfg.use_instances:
        rm = data.role_mask[idx]
        inst, raw = model.instances(tok, data.boxes[idx], data.box_exists[idx], bank, data.gaze_pos[idx])
        ij = model.inst_to_joint(inst)  # (B, R, E)
        gpos, ghas = _pooled_mean(bank, data.gaze_pos[idx])  # (B, R, E), (B, R)
        sel = rm & ghas
        parts["align_inst"] = cfg.w_align * L.contrastive_alignment(ij[sel], gpos[sel], torch.ones(int(sel.sum()), dtype=torch.bool, device=sel.device), cfg.tau)
        parts["fidelity_inst"] = cfg.w_fidelity * (1 - F.cosine_similarity(inst[rm], raw[rm], dim=-1)).mean()
        if cfg.w_neg > 0:
            gneg, gmask = _pooled_each(bank, data.gaze_neg[idx])  # (B, R, K, E)
            n = int(sel.sum())
            parts["neg_inst"] = cfg.w_neg * L.negative_guided(ij[sel], gpos[sel], gneg[sel], gmask[sel], max(n, 1),
                                                             cfg.neg_kind, cfg.neg_margin, cfg.neg_tau)
    total = sum(parts.values())
    return total, {k: float(v.detach()) for k, v in parts.items()}


def build_nmpa(cfg: NMPAConfig, data: AlignData) -> NMPA:
    """Create an NMPA module sized for ``data`` (seeded by ``cfg.seed``)."""
    torch.manual_seed(cfg.seed)
    return NMPA(cfg, data.tokens.shape[-1], data.bank.tokens.shape[-1], data.pooled.shape[-1], data.grid)


def align_data_to(data: AlignData, device: torch.device) -> AlignData:
    """``data`` with every tensor (the rationale bank's too) on ``device`` (the same object on its own device).

    NMPA trains on the train split's teacher tokens, which the pipeline holds in memory (``prepare_world``); they are
    moved once, here, rather than batch by batch."""
    from ..machine import to_device

    moved = {f.name: getattr(data, f.name) for f in dataclasses.fields(data)}
    if all(not torch.is_tensor(v) or v.device == device for v in moved.values()) and data.bank.tokens.device == device:
        return data
    for k, v in moved.items():
        if torch.is_tensor(v):
            moved[k] = to_device(v, device)
    b = data.bank
    moved["bank"] = TextBank(b.texts, to_device(b.tokens, device), to_device(b.mask, device), to_device(b.pooled, device))
    return AlignData(**moved)


def train_nmpa(data: AlignData, cfg: NMPAConfig, progress: bool = False, device: Optional[torch.device] = None,
               amp: bool = False) -> tuple[NMPA, list[dict[str, float]]]:
    """Train NMPA on the images of ``data`` that have rationales; returns the model and per-step loss history.

    Args:
        device: where to train (``mipd_kit.machine.resolve_device``; default the CPU). Initialisation and data order
            are drawn on the CPU, so they are the same on every device; the model is returned on ``device``.
        amp: bf16 autocast of the forward passes on CUDA (ignored on the CPU).
    """
    from ..machine import autocast, to_device

    device = device if device is not None else torch.device("cpu")
    model = to_device(build_nmpa(cfg, data), device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    usable = torch.nonzero((data.glimpse_pos >= 0).any(-1) | ((data.gaze_pos >= 0).any(-1) & data.role_mask).any(-1)).flatten()
    if len(usable) == 0:
        raise ValueError("NMPA: no image has a positive rationale; run the rationale stage (notebooks 02/03) first")
    data = align_data_to(data, device)
    usable = to_device(usable, device)
    g = torch.Generator().manual_seed(cfg.seed)
    history: list[dict[str, float]] = []
    steps = cfg.epochs * math.ceil(len(usable) / cfg.batch_size)
    bar = None
    if progress:
        from ..progress import progress as progress_bar
        bar = progress_bar(total=steps, desc=f"NMPA seed {cfg.seed}", unit="step",
                           steps_per_epoch=math.ceil(len(usable) / cfg.batch_size))
    model.train()
    for epoch in range(cfg.epochs):
        perm = usable[to_device(torch.randperm(len(usable), generator=g), device)]
        for s in range(0, len(perm), cfg.batch_size):
            idx = perm[s:s + cfg.batch_size]
            with autocast(device, amp):
                loss, parts = nmpa_loss(model, data, idx, cfg)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"NMPA loss is {float(loss)} at epoch {epoch}, images {[data.images[i] for i in idx[:5].tolist()]}...")
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            history.append({"epoch": epoch, "loss": float(loss.detach()), **parts})
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
    if bar is not None:
        bar.close()
    model.eval()
    return model, history


@torch.no_grad()
def aligned_targets(model: Optional[NMPA], data: AlignData, batch_size: int = 128) -> dict[str, torch.Tensor]:
    """Teacher targets per image for the student.

    Returns:
        ``scene`` (N, E): NMPA-aligned scene features (the teacher's pooled embedding when ``model`` is None, i.e.
        plain feature distillation); ``roles`` (N, R, D): aligned instance features (raw region means of the
        teacher tokens when ``model`` is None or instances are disabled); ``role_mask`` (N, R).
    """
    from ..machine import to_device

    device = next(model.parameters()).device if model is not None else torch.device("cpu")
    data = align_data_to(data, device)
    scene, roles = [], []
    for s in range(0, len(data), batch_size):
        sl = slice(s, s + batch_size)
        tok = data.tokens[sl]
        if model is None:
            sc = data.pooled[sl]
            inst_prompt = InstancePrompt(tok.shape[-1], data.grid)
            with torch.no_grad():
                inst_prompt.prompt.zero_()
            pr, region = inst_prompt(tok, data.boxes[sl], data.box_exists[sl])
            rm = region.unsqueeze(-1).float()
            ro = (tok.unsqueeze(1) * rm).sum(2) / rm.sum(2).clamp(min=1)
        else:
            sc, _ = model.scene(tok, data.pooled[sl], data.bank, data.glimpse_pos[sl])
            inst, raw = model.instances(tok, data.boxes[sl], data.box_exists[sl], data.bank, data.gaze_pos[sl])
            ro = inst if model.cfg.use_instances else raw
        scene.append(sc)
        roles.append(ro)
    cpu = torch.device("cpu")  # the student's data stay on the CPU; its batches move (StudentData.take)
    return {"scene": to_device(torch.cat(scene), cpu), "roles": to_device(torch.cat(roles), cpu),
            "role_mask": to_device(data.role_mask, cpu).clone()}


@torch.no_grad()
def alignment_report(model: Optional[NMPA], data: AlignData) -> dict[str, float]:
    """Mean cosine of (aligned or raw) scene features to their own positive vs negative glimpse rationales.

    With ``model=None`` the teacher's raw pooled features are scored ("before"); otherwise NMPA's aligned features
    ("after"). Also the fraction of images whose feature is closer to the positive than to the mean negative.
    """
    feats = aligned_targets(model, data)["scene"] if model is not None else data.pooled
    pos, has_pos = _pooled_mean(data.bank, data.glimpse_pos)
    neg, has_neg = _pooled_mean(data.bank, data.glimpse_neg)
    both = has_pos & has_neg
    cp = F.cosine_similarity(feats, pos, dim=-1)
    cn = F.cosine_similarity(feats, neg, dim=-1)
    out = {"cos_pos": float(cp[has_pos].mean()) if has_pos.any() else float("nan"),
           "cos_neg": float(cn[has_neg].mean()) if has_neg.any() else float("nan"),
           "pos_beats_neg": float((cp[both] > cn[both]).float().mean()) if both.any() else float("nan"),
           "n": int(both.sum())}
    return out


# ----------------------------------------------------------------------------------------------------------------
# Building AlignData from a world, a teacher and rationales


def _texts_of(items: Any) -> list[str]:
    """Rationale texts from a list of strings or of objects with a ``text`` attribute / key."""
    out = []
    for it in items or []:
        if isinstance(it, str):
            out.append(it)
        elif isinstance(it, dict):
            out.append(str(it["text"]))
        else:
            out.append(str(getattr(it, "text")))
    return out


def build_align_data(images: Sequence[str], roles: Sequence[Sequence[str]], boxes: torch.Tensor,
                     box_exists: torch.Tensor, tokens: torch.Tensor, pooled: torch.Tensor, grid: tuple[int, int],
                     collected: dict[str, Any], encode_texts: Callable[[list[str]], Any], max_rationales: int = 3,
                     max_negatives: int = 4, max_tokens: int = 32, chunk: int = 2048) -> AlignData:
    """Assemble :class:`AlignData`.

    Args:
        images: N image names; roles: per image, role names in slot order (R slots max).
        boxes: (N, R, 4) normalised xyxy; box_exists: (N, R).
        tokens, pooled: teacher features of the N images (``tokens`` may be a ``mipd_kit.teachers.cache.LazyTokens``
            whose rows are read from disk when indexed).
        grid: teacher grid.
        collected: ``mipd_kit.rationales.store.collect`` output (images absent from it simply have no rationales).
        encode_texts: texts -> ``Encoded`` (tokens, pooled, mask), e.g. a cached ``teacher.encode_texts``.
        max_rationales / max_negatives: kept per image (glimpse) or role (gaze).
        max_tokens: token features kept per positive rationale (float16). chunk: texts encoded per call.
    """
    N, R = boxes.shape[:2]
    texts: dict[str, int] = {}

    pos_texts: set[str] = set()

    def ids(lst: list[str], k: int, positive: bool = False) -> list[int]:
        out = []
        for t in lst[:k]:
            if positive:
                pos_texts.add(t)
            if t not in texts:
                texts[t] = len(texts)
            out.append(texts[t])
        return out + [-1] * (k - len(out))

    gp, gn = torch.full((N, max_rationales), -1), torch.full((N, max_negatives), -1)
    zp, zn = torch.full((N, R, max_rationales), -1), torch.full((N, R, max_negatives), -1)
    role_mask = torch.zeros(N, R, dtype=torch.bool)
    for i, im in enumerate(images):
        for r, _ in enumerate(roles[i]):
            role_mask[i, r] = True
        c = collected.get(im)
        if not c:
            continue
        gl = c.get("glimpse", {}) or {}
        gp[i] = torch.tensor(ids(_texts_of(gl.get("positive")), max_rationales, True))
        gn[i] = torch.tensor(ids(_texts_of(gl.get("negative")), max_negatives))
        gz = c.get("gaze", {}) or {}
        for r, role in enumerate(roles[i]):
            rr = gz.get(role) or gz.get("*") or {}
            zp[i, r] = torch.tensor(ids(_texts_of(rr.get("positive")), max_rationales, True))
            zn[i, r] = torch.tensor(ids(_texts_of(rr.get("negative")), max_negatives))
    # positives are cross-attention keys (token features kept, truncated, float16); negatives only need pooled
    # embeddings, so the bank stores positives first and token rows only for them (memory: O(#positives))
    order = sorted(texts, key=lambda t: (t not in pos_texts, texts[t]))
    remap = torch.full((max(len(texts), 1),), -1, dtype=torch.long)
    for new, t in enumerate(order):
        remap[texts[t]] = new
    n_pos = sum(1 for t in order if t in pos_texts)
    for tns in (gp, gn, zp, zn):
        tns.copy_(torch.where(tns >= 0, remap[tns.clamp(min=0)], tns))
    tok_parts, mask_parts, pooled_parts = [], [], []
    for s in range(0, max(len(order), 1), chunk):
        part = order[s:s + chunk] or ["none"]
        enc = encode_texts(part)
        pooled_parts.append(enc.pooled.float())
        k = max(0, min(len(part), n_pos - s))
        if k:
            t = enc.tokens[:k, :max_tokens]
            m = enc.mask[:k, :max_tokens].bool()
            if t.shape[1] < max_tokens:
                t = torch.nn.functional.pad(t, (0, 0, 0, max_tokens - t.shape[1]))
                m = torch.nn.functional.pad(m, (0, max_tokens - m.shape[1]))
            tok_parts.append(t.half())
            mask_parts.append(m)
    if tok_parts:
        tok, msk = torch.cat(tok_parts), torch.cat(mask_parts)
    else:  # one dummy row, never attended to (all positive indices are -1)
        probe = encode_texts(["none"])
        tok = torch.zeros(1, max_tokens, probe.tokens.shape[-1], dtype=torch.half)
        msk = torch.zeros(1, max_tokens, dtype=torch.bool)
    bank = TextBank(order or ["none"], tok, msk, torch.cat(pooled_parts))
    tokens = tokens.float() if isinstance(tokens, torch.Tensor) else tokens  # or rows streamed from a cache
    return AlignData(list(images), tokens, pooled.float(), tuple(grid), boxes.float(), box_exists.bool(),
                     role_mask, bank, gp, gn, zp, zn, [list(r) for r in roles])


def save_nmpa(model: NMPA, path: str | Any) -> None:
    """Write the module's weights to a safetensors file (atomically, :func:`mipd_kit.fileio.atomic_path`); the config
    that built it is recorded by the caller (``mipd_kit.app.stages.alignment`` keeps it in ``nmpa/index.json``)."""
    from pathlib import Path

    from safetensors.torch import save_file
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(p) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp),
                  metadata={"config": __import__("json").dumps(dataclasses.asdict(model.cfg), sort_keys=True)})


def load_nmpa(path: str | Any, cfg: NMPAConfig, data: AlignData) -> NMPA:
    """An NMPA module sized for ``data`` with the weights of ``path`` (written by :func:`save_nmpa` for ``cfg``).

    Raises:
        ValueError: the file was written for another config or its tensors do not fit, naming the file.
    """
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if json.loads(meta.get("config", "{}")) != dataclasses.asdict(cfg):
        raise ValueError(f"{path}: NMPA weights of another config (fingerprint {cfg.fingerprint()} expected)")
    model = build_nmpa(cfg, data)
    try:
        model.load_state_dict(load_file(str(path)))
    except RuntimeError as e:
        raise ValueError(f"{path}: NMPA weights do not fit this data ({e})") from e
    model.eval()
    return model
