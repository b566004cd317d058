"""The Ov-GSR student (MIPD's student, a CoFormer-style single-decoder model; Cho et al., CVPR 2022).

- Backbone: ``backbone="cnn"`` (embedded default) is a small image encoder trained end to end from pixels (64x64 by
  default), **not** the teacher's image tower: no teacher is on the student's inference path. ``backbone="cached"``
  (real mode) is a head on cached patch features of a frozen student backbone (the authors use CLIP ViT-L/14-336;
  features come from ``mipd_kit.teachers.cache``).
- Open-vocabulary verb head (``verb_head``): by default (``"teacher"``) the cosine between the scene feature projected
  into the teacher's joint space and the teacher's frozen *text* embeddings of the verb prompts; ``"minilm"``: cosine
  against frozen MiniLM embeddings of the verb names; ``"dual"``: the sum. Each times a learnable temperature
  (logit scale, CLIP-style).
- A transformer decoder whose queries are role + verb text embeddings (projected) attends to the patch tokens and
  predicts per role a noun (cosine against frozen noun-name embeddings; a learnable vector stands for the empty
  noun), a box ``(cx, cy, w, h)`` through a sigmoid, and a box-exists logit.
- Distillation heads map the scene feature and each role feature into the teacher's spaces (scene: joint space E,
  roles: token space D); they are only used by the training losses. The negative-guided term has a projection of its
  own (``neg_proj``), so it never acts on ``scene_distill``, the verb head's input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .config import StudentConfig


@dataclass
class StudentVocab:
    """Everything open-vocabulary the student needs, as frozen tensors.

    Attributes:
        verbs: all verb names (train and unseen), index = class id.
        nouns: noun ids, index 0 is the empty noun ``""``.
        roles: role names.
        verb_emb: (V, Dt) frozen text embeddings of the verbs; noun_emb: (Nn, Dt) (row 0 unused);
        role_emb: (Nr, Dt).
        verb_roles: (V, R) role indices of each verb's frame in order, -1 padded.
        train_verbs: (V,) bool, verbs whose labels may be trained on (seen + rare).
        scene_dim: teacher joint-space width E; role_dim: teacher token width D (distillation targets).
        verb_emb_teacher: (V, E) optional frozen *text* embeddings of the verb prompts in the teacher's joint space
            (its text tower only), used by ``verb_head="teacher"`` (the default) and ``"dual"``.
        noun_names: display name of each noun (index 0 ``""``); empty when unknown.
        sources: where the frozen tables came from, so a checkpoint can embed new verbs at inference
            (``mipd_kit.student.checkpoint``): ``text_encoder`` (e.g. ``"minilm"``), ``teacher`` and ``backbone``
            (``{"config", "fingerprint"}`` or ``None``), ``verb_text``.
    """

    verbs: list[str]
    nouns: list[str]
    roles: list[str]
    verb_emb: torch.Tensor
    noun_emb: torch.Tensor
    role_emb: torch.Tensor
    verb_roles: torch.Tensor
    train_verbs: torch.Tensor
    scene_dim: int
    role_dim: int
    verb_emb_teacher: Optional[torch.Tensor] = None
    noun_names: list[str] = field(default_factory=list)
    sources: dict[str, Any] = field(default_factory=dict)

    @property
    def max_roles(self) -> int:
        return self.verb_roles.shape[1]


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training statistics are those of the *global* batch under ``torch.distributed``.

    ``torch.nn.SyncBatchNorm`` refuses CPU tensors, so on CPU (gloo) the per-channel sums are all-reduced here with
    the differentiable ``torch.distributed.nn.functional.all_reduce``. With one process it is plain ``BatchNorm2d``;
    with N processes each holding a shard of the global batch it computes the same normalisation, running statistics
    and gradients as one process on the whole batch (up to float summation order).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce
        C = x.shape[1]
        n = torch.full((1,), float(x.numel() // C), dtype=x.dtype, device=x.device)
        stats = all_reduce(torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), n]))  # a CUDA tensor under NCCL
        N = stats[-1]
        mean = stats[:C] / N
        var = (stats[C:2 * C] / N - mean * mean).clamp(min=0)
        with torch.no_grad():
            self.num_batches_tracked += 1
            self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
            self.running_var.mul_(1 - self.momentum).add_(self.momentum * var * N / (N - 1).clamp(min=1))
        y = (x - mean[None, :, None, None]) * torch.rsqrt(var[None, :, None, None] + self.eps)
        return y * self.weight[None, :, None, None] + self.bias[None, :, None, None]


class SmallCNN(nn.Module):
    """Four conv blocks (3x3 conv, batch norm, ReLU; max-pooling after the first three): (B, 3, S, S) ->
    (B, (S/8)^2, C) patch tokens. Channels ``width/6, width/3, 2*width/3, width``.

    Batch norm matters here: on the default SynthSitu world a verb-only classifier reaches about 62% dev top-1 on
    seen verbs with it and about 33% with GroupNorm (per-sample normalisation removes the colour and brightness
    cues the scenes carry). It is :class:`GlobalBatchNorm2d`, so DDP shards give one process's math.
    """

    def __init__(self, width: int = 96):
        super().__init__()
        ch = [max(8, width // 6), max(8, width // 3), max(8, 2 * width // 3), width]

        def block(i: int, o: int, pool: bool) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 3, 1, 1, bias=False), GlobalBatchNorm2d(o), nn.ReLU()] + ([nn.MaxPool2d(2)] if pool else [])

        self.net = nn.Sequential(*block(3, ch[0], True), *block(ch[0], ch[1], True), *block(ch[1], ch[2], True),
                                 *block(ch[2], ch[3], False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.net(x)  # (B, C, S/8, S/8)
        return f.flatten(2).transpose(1, 2)


class OvGSRStudent(nn.Module):
    """Ov-GSR student. See the module docstring.

    Args:
        cfg: the model's fields are ``backbone``, ``width``, ``d_model``, ``heads``, ``dec_layers``,
            ``image_size``, ``in_dim``, ``num_tokens``, ``pooled_dim`` and ``verb_head``.
        vocab: the frozen vocabulary.
    """

    def __init__(self, cfg: StudentConfig, vocab: StudentVocab):
        super().__init__()
        d = cfg.d_model
        self.backbone_kind = cfg.backbone
        if cfg.backbone == "cnn":
            self.backbone = SmallCNN(cfg.width)
            n_tok, in_w = (cfg.image_size // 8) ** 2, cfg.width
        else:
            self.backbone = nn.Identity()
            n_tok, in_w = cfg.num_tokens, cfg.in_dim
        self.inp = nn.Sequential(nn.Linear(in_w, d), nn.LayerNorm(d))
        self.pos = nn.Parameter(torch.randn(1, n_tok, d) * 0.02)
        self.scene_mlp = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d))
        self.pooled_dim = int(cfg.pooled_dim or 0)
        tdim = vocab.verb_emb.shape[1]
        self.register_buffer("verb_emb", F.normalize(vocab.verb_emb.float(), dim=-1), persistent=False)
        self.register_buffer("noun_emb", F.normalize(vocab.noun_emb.float(), dim=-1), persistent=False)
        self.register_buffer("role_emb", vocab.role_emb.float(), persistent=False)
        self.register_buffer("verb_roles", vocab.verb_roles.long(), persistent=False)
        self.verb_head = cfg.verb_head
        if self.verb_head in ("minilm", "dual"):  # the MiniLM-space verb head; "teacher" has no use for it
            self.verb_proj = nn.Linear(d, tdim)
            self.verb_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        if self.verb_head in ("dual", "teacher"):
            if vocab.verb_emb_teacher is None:
                raise ValueError(f"verb_head={self.verb_head!r} needs vocab.verb_emb_teacher (teacher text embeddings "
                                 "of the verbs)")
            self.register_buffer("verb_emb_t", F.normalize(vocab.verb_emb_teacher.float(), dim=-1), persistent=False)
            self.verb_scale_t = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        elif self.verb_head != "minilm":
            raise ValueError(f"verb_head must be one of 'minilm', 'dual', 'teacher', got {self.verb_head!r}")
        self.noun_proj = nn.Linear(d, tdim)
        self.noun_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.empty_noun = nn.Parameter(torch.randn(tdim) * 0.02)
        self.q_role = nn.Linear(tdim, d)
        self.q_verb = nn.Linear(tdim, d)
        layer = nn.TransformerDecoderLayer(d, cfg.heads, 2 * d, dropout=0.0, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, cfg.dec_layers)
        self.box_head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, 4))
        self.exists_head = nn.Linear(d, 1)
        self.scene_distill = nn.Linear(d, vocab.scene_dim)
        self.role_distill = nn.Linear(d, vocab.role_dim)
        # the negative-guided term's own projection (teacher joint space): its gradient never reaches
        # ``scene_distill``, the verb head's input projection (created last: the other layers' init is unchanged)
        self.neg_proj = nn.Linear(d, vocab.scene_dim)
        # verb-logit centring (set after training by ``centre_verb_logits``; zero = off): the mean normalised verb-head
        # feature over the training images, subtracted before the cosine with the verb table. Verb-independent, so it
        # also centres verbs added at inference. Checkpoints written before it load with zeros.
        if self.verb_head in ("dual", "teacher"):
            self.register_buffer("verb_centre_t", torch.zeros(vocab.scene_dim))
        if self.verb_head in ("minilm", "dual"):
            self.register_buffer("verb_centre_m", torch.zeros(tdim))
        self.register_load_state_dict_pre_hook(_zero_missing_centres)
        # the frozen backbone's pooled image embedding (its CLS / attention-pooled output) as a second input of the
        # scene feature (created last: the other layers' initialisation is that of a tokens-only head)
        if self.pooled_dim:
            self.pool_in = nn.Sequential(nn.LayerNorm(self.pooled_dim), nn.Linear(self.pooled_dim, d))

    # -- encoder ---------------------------------------------------------------------------------------------------
    def encode(self, x: torch.Tensor, pooled: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixels (B, 3, S, S) in [0, 1] or cached features (B, T, Din) -> tokens (B, T, d), scene (B, d).

        A head built with ``pooled_dim`` also reads the backbone's pooled embedding ``pooled`` (B, Ep): the scene
        feature is ``scene_mlp(mean token + pool_in(pooled))``.
        """
        if self.backbone_kind == "cnn":
            x = self.backbone(x - 0.5)
        tok = self.inp(x) + self.pos
        h = tok.mean(1)  # (B, d)
        if self.pooled_dim:
            if pooled is None:
                raise ValueError("this student reads the backbone's pooled embedding (pooled_dim "
                                 f"{self.pooled_dim}); none was given")
            h = h + self.pool_in(pooled.float())
        return tok, self.scene_mlp(h)

    def verb_logits(self, scene: torch.Tensor) -> torch.Tensor:
        """(B, d) -> (B, V) scaled cosine logits against every verb's text embedding.

        ``verb_head="dual"`` adds the cosine of the scene-distillation feature (the one distilled towards the
        teacher's image features) with the teacher-space text embeddings of the verbs, so what distillation teaches
        reaches the open-vocabulary verb decision. ``verb_head="teacher"`` keeps only that second term: the verb
        decision is the teacher's zero-shot classifier (a frozen table of its *text* embeddings) applied to the
        student's own scene feature.
        """
        if self.verb_head == "teacher":
            t = F.normalize(self.scene_distill(scene), dim=-1) - self.verb_centre_t
            return self.verb_scale_t.exp().clamp(max=100) * t @ self.verb_emb_t.t()
        v = F.normalize(self.verb_proj(scene), dim=-1) - self.verb_centre_m
        out = self.verb_scale.exp().clamp(max=100) * v @ self.verb_emb.t()
        if self.verb_head == "dual":
            t = F.normalize(self.scene_distill(scene), dim=-1) - self.verb_centre_t
            out = out + self.verb_scale_t.exp().clamp(max=100) * t @ self.verb_emb_t.t()
        return out

    @torch.no_grad()
    def verb_features(self, scene: torch.Tensor) -> dict[str, torch.Tensor]:
        """The normalised features the verb head compares with its verb tables, before centring:
        ``{"verb_centre_t": (B, E), "verb_centre_m": (B, Dt)}`` (the keys of the head's centre buffers)."""
        out = {}
        if self.verb_head in ("dual", "teacher"):
            out["verb_centre_t"] = F.normalize(self.scene_distill(scene), dim=-1)
        if self.verb_head in ("minilm", "dual"):
            out["verb_centre_m"] = F.normalize(self.verb_proj(scene), dim=-1)
        return out

    def decode(self, tokens: torch.Tensor, verbs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Decode the frames of ``verbs`` (B,) against memory ``tokens`` (B, T, d); or of ``verbs`` (B, k), k verb
        hypotheses per image against the same memory (rows ``b * k + j``: as if ``tokens`` were repeated k times, but
        the memory's keys and values are projected once per image, :meth:`_decode_shared`).

        Returns ``noun_logits`` (N, R, Nn), ``boxes`` (N, R, 4) sigmoid cx,cy,w,h, ``exists`` (N, R) logits,
        ``role_feat`` (N, R, D) distillation features, ``role_mask`` (N, R); N = B, or B * k.
        """
        shape = verbs.shape
        verbs = verbs.reshape(-1)
        roles = self.verb_roles[verbs]  # (N, R)
        mask = roles >= 0
        q = self.q_role(self.role_emb[roles.clamp(min=0)]) + self.q_verb(self.verb_emb[verbs]).unsqueeze(1)
        if len(shape) == 2:
            h = self._decode_shared(q, tokens, ~mask, shape[1])
        else:
            h = self.decoder(q, tokens, tgt_key_padding_mask=~mask)  # (B, R, d)
        n = F.normalize(self.noun_proj(h), dim=-1)
        bank = torch.cat([F.normalize(self.empty_noun, dim=0).unsqueeze(0), self.noun_emb[1:]], 0)
        return {"noun_logits": self.noun_scale.exp().clamp(max=100) * n @ bank.t(),
                "boxes": torch.sigmoid(self.box_head(h)), "exists": self.exists_head(h).squeeze(-1),
                "role_feat": self.role_distill(h), "role_mask": mask}

    def _decode_shared(self, q: torch.Tensor, memory: torch.Tensor, pad: torch.Tensor, k: int) -> torch.Tensor:
        """The decoder (``nn.TransformerDecoder`` of pre-norm layers, no masks on the memory) on queries (B*k, R, d) of
        k hypotheses per image: self-attention within each hypothesis' roles, cross-attention of all k*R queries of
        an image at once against its memory (B, T, d) -- the same per-query arithmetic as decoding each hypothesis
        against a copy of the memory, without projecting the memory k times."""
        B, T, d = memory.shape
        R = q.shape[1]
        x = q
        for layer in self.decoder.layers:
            if not layer.norm_first:
                raise ValueError("_decode_shared supports pre-norm decoder layers only")
            x = x + layer._sa_block(layer.norm1(x), None, pad, False)
            x = x + layer._mha_block(layer.norm2(x).reshape(B, k * R, d), memory, None, None, False).reshape(B * k, R, d)
            x = x + layer._ff_block(layer.norm3(x))
        return self.decoder.norm(x) if self.decoder.norm is not None else x

    def forward(self, x: torch.Tensor, verbs: torch.Tensor, pooled: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """Training forward with the given (ground-truth) verbs (B,) (``pooled``: see :meth:`encode`)."""
        tok, scene = self.encode(x, pooled)
        out = self.decode(tok, verbs)
        out["verb_logits"] = self.verb_logits(scene)
        out["scene_feat"] = self.scene_distill(scene)
        out["scene"] = scene  # (B, d) the shared scene feature (the negative term projects it with neg_proj)
        return out

    @torch.no_grad()
    def predict(self, x: torch.Tensor, k: int = 5, gt_verbs: Optional[torch.Tensor] = None,
                allowed: Optional[torch.Tensor] = None, pooled: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """Top-k verbs with a decoded frame for each (and for the ground-truth verb when given).

        Args:
            x: inputs; k: verbs kept; gt_verbs: (B,) optional; allowed: (V,) bool mask of predictable verbs;
            pooled: the backbone's pooled embeddings (B, Ep) for a head that reads them.

        Returns:
            ``verbs`` (B, k), ``scores`` (B, k) softmax probabilities, ``nouns`` (B, k, R), ``boxes`` (B, k, R, 4),
            ``exists`` (B, k, R) probabilities, and ``gt_*`` counterparts (B, R, ...) when ``gt_verbs`` is given.
        """
        tok, scene = self.encode(x, pooled)
        logits = self.verb_logits(scene)
        if allowed is not None:
            logits = logits.masked_fill(~allowed, float("-inf"))
        k = min(k, logits.shape[1])
        prob = logits.softmax(-1)
        scores, verbs = prob.topk(k, -1)  # (B, k)
        B = tok.shape[0]
        dec = self.decode(tok, verbs)  # (B * k, R, ...): the k hypotheses share the memory's projections
        R = dec["boxes"].shape[1]
        out = {"verbs": verbs, "scores": scores, "nouns": dec["noun_logits"].argmax(-1).view(B, k, R),
               "boxes": dec["boxes"].view(B, k, R, 4), "exists": torch.sigmoid(dec["exists"]).view(B, k, R)}
        if gt_verbs is not None:
            g = self.decode(tok, gt_verbs)
            out.update(gt_nouns=g["noun_logits"].argmax(-1), gt_boxes=g["boxes"], gt_exists=torch.sigmoid(g["exists"]))
        return out


def to_input(x: torch.Tensor) -> torch.Tensor:
    """Stored inputs -> model inputs (uint8 pixels to [0, 1] floats; features unchanged)."""
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def _zero_missing_centres(module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
    """``load_state_dict`` pre-hook: a checkpoint from before verb-logit centring loads with a zero (no) centre."""
    for name in ("verb_centre_t", "verb_centre_m"):
        buf = getattr(module, name, None)
        if buf is not None and prefix + name not in state_dict:
            state_dict[prefix + name] = torch.zeros_like(buf)


@torch.no_grad()
def centre_verb_logits(model: OvGSRStudent, inputs: Any, alpha: float, batch_size: int = 256,
                       pooled: Optional[torch.Tensor] = None) -> dict[str, float]:
    """Set the verb-logit centre of ``model`` to ``alpha`` x the mean of its normalised verb-head features over
    ``inputs`` (the training images' inputs; labels are not used).

    With the teacher head, verb ``v``'s logit ``s * cos(t, e_v)`` becomes ``s * (t - alpha * mean_i t_i) . e_v``:
    each verb's logit minus ``alpha`` times its mean logit over the training images. A verb every image leans towards
    (a hub of the frozen text table) loses its head start; ``alpha = 0`` is the plain head. ``inputs`` is indexable
    by a slice (``StudentData.x``: uint8 pixels or cached tokens); ``pooled`` (``StudentData.xp``) the backbone's
    pooled embeddings of the same images, for a head that reads them.

    Returns:
        the norm of each centre set (for the record).
    """
    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    sums: dict[str, torch.Tensor] = {}
    n = 0
    for s in range(0, len(inputs), batch_size):
        x = to_input(inputs[s:s + batch_size]).to(dev)
        _, scene = model.encode(x, None if pooled is None else pooled[s:s + batch_size].to(dev))
        for k, f in model.verb_features(scene).items():
            sums[k] = sums[k] + f.float().sum(0) if k in sums else f.float().sum(0)
        n += x.shape[0]
    norms = {}
    for k, tot in sums.items():
        c = alpha * tot / max(n, 1)
        getattr(model, k).copy_(c)
        norms[k] = float(c.norm())
    model.train(was)
    return norms


def build_student(cfg: StudentConfig, vocab: StudentVocab) -> OvGSRStudent:
    """Explicit factory over ``cfg.backbone`` (``"cnn"`` embedded, ``"cached"`` real mode)."""
    if cfg.backbone == "cnn":
        if cfg.image_size % 8:
            raise ValueError(f"image_size must be a multiple of 8 for the CNN backbone, got {cfg.image_size}")
        return OvGSRStudent(cfg, vocab)
    elif cfg.backbone == "cached":
        if not cfg.in_dim or not cfg.num_tokens:
            raise ValueError("backbone='cached' needs cfg.in_dim and cfg.num_tokens (set from the cached features)")
        return OvGSRStudent(cfg, vocab)
    raise ValueError(f"backbone must be one of 'cnn', 'cached', got {cfg.backbone!r}")
