"""Pair features for CL-HOI: teacher patch grid, RoIAlign region features, relative box geometry, teacher scores.

Everything here is computed once from the frozen teacher and the proposals (no HOI labels): the image-level
teacher logits over the HOI phrases (zero-shot, ``logit_scale * cos(image, phrase)``), RoIAlign features
(``torchvision.ops.roi_align``) of the human, object and union boxes on the teacher's patch grid, and a fixed
spatial encoding of each pair's relative geometry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.ops import roi_align

from mipd_kit.data.records import HOIVocab
from mipd_kit.teachers.base import Encoded, Teacher
from mipd_kit.teachers.cache import cached_image_features, cached_text_features, open_image

from .proposals import PairProposals

#: number of spatial features per pair (see ``spatial_features``)
SPATIAL_DIM = 18


@dataclass
class PairData:
    """All pairs of a set of images as flat tensors (the input of VLT/ICN and the baselines).

    Attributes:
        filenames: (N,) image names.
        grid: (N, D, r, c) teacher patch grid.
        image_pooled: (N, E) teacher pooled image embedding (joint space).
        teacher_logits: (N, H) teacher zero-shot logits over the HOI phrases.
        text: (H, E) L2-normalised teacher text embeddings of the HOI phrases.
        pair_image: (P,) image index of each pair.
        boxes_h, boxes_o: (P, 4) pixel boxes.
        feat_h, feat_o, feat_u: (P, D) RoIAlign features of human, object and union boxes.
        spatial: (P, SPATIAL_DIM) relative geometry.
        candidates: (P, H) bool, HOIs compatible with the pair's object label (all True when unknown).
        image_candidates: (N, H) bool, union over the image's pairs.
        log_prior: (P,) log of the label-free geometric prior (``-gap``, see ``spatial_prior``).
        crops: (P, 3 * E) teacher pooled embeddings of the human, object and union crops, or (P, 0) when not
            computed (``crop_embeddings``).
        crop_logits: (P, H) teacher zero-shot logits of the union crops (``logit_scale * cos``), or (P, 0).
    """

    filenames: list[str]
    grid: torch.Tensor
    image_pooled: torch.Tensor
    teacher_logits: torch.Tensor
    text: torch.Tensor
    pair_image: torch.Tensor
    boxes_h: torch.Tensor
    boxes_o: torch.Tensor
    feat_h: torch.Tensor
    feat_o: torch.Tensor
    feat_u: torch.Tensor
    spatial: torch.Tensor
    candidates: torch.Tensor
    image_candidates: torch.Tensor
    log_prior: torch.Tensor
    crops: torch.Tensor
    crop_logits: torch.Tensor

    @property
    def num_pairs(self) -> int:
        return int(self.pair_image.numel())

    def to(self, device: torch.device) -> "PairData":
        """Every tensor on ``device`` (the same tensors when already there): where CL-HOI batches are moved."""
        from mipd_kit.machine import to_device

        return PairData(*[v if isinstance(v, list) else to_device(v, device)
                          for v in (getattr(self, f.name) for f in fields(self))])

    def subset(self, image_ids: torch.Tensor) -> "PairData":
        """The images ``image_ids`` (re-indexed 0..len-1) and their pairs."""
        image_ids = image_ids.long()
        remap = torch.full((len(self.filenames),), -1, dtype=torch.long)
        remap[image_ids] = torch.arange(len(image_ids))
        keep = remap[self.pair_image] >= 0
        return PairData(
            [self.filenames[i] for i in image_ids.tolist()], self.grid[image_ids], self.image_pooled[image_ids],
            self.teacher_logits[image_ids], self.text, remap[self.pair_image][keep], self.boxes_h[keep],
            self.boxes_o[keep], self.feat_h[keep], self.feat_o[keep], self.feat_u[keep], self.spatial[keep],
            self.candidates[keep], self.image_candidates[image_ids], self.log_prior[keep], self.crops[keep],
            self.crop_logits[keep])


def grid_from_tokens(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(N, T, D) tokens -> (N, D, r, c) patch grid; a leading CLS token (T = r*c + 1) is dropped."""
    r, c = grid
    n, t, d = tokens.shape
    if t == r * c + 1:
        tokens = tokens[:, 1:]
    elif t != r * c:
        raise ValueError(f"teacher tokens have {t} entries, grid {grid} needs {r * c} (+1 CLS)")
    return tokens.transpose(1, 2).reshape(n, d, r, c).contiguous()


def spatial_features(bh: torch.Tensor, bo: torch.Tensor, wh: torch.Tensor) -> torch.Tensor:
    """Relative box geometry of pairs.

    Args:
        bh, bo: (P, 4) human and object boxes in pixels.
        wh: (P, 2) image width and height.

    Returns:
        (P, 18): both boxes normalised by the image size (8), object centre offset in human widths/heights (2),
        log size ratios (2), IoU, intersection over object / human area (2), centre distance over the union
        diagonal, edge gap over the human height, log area ratio.
    """
    eps = 1e-6
    W, H = wh[:, 0:1].clamp(min=1), wh[:, 1:2].clamp(min=1)
    scale = torch.cat([W, H, W, H], 1)
    nh, no = bh / scale, bo / scale
    wh_h = (bh[:, 2:] - bh[:, :2]).clamp(min=eps)
    wh_o = (bo[:, 2:] - bo[:, :2]).clamp(min=eps)
    ch, co = (bh[:, :2] + bh[:, 2:]) / 2, (bo[:, :2] + bo[:, 2:]) / 2
    off = (co - ch) / wh_h
    logr = torch.log(wh_o / wh_h)
    iw = (torch.minimum(bh[:, 2], bo[:, 2]) - torch.maximum(bh[:, 0], bo[:, 0])).clamp(min=0)
    ih = (torch.minimum(bh[:, 3], bo[:, 3]) - torch.maximum(bh[:, 1], bo[:, 1])).clamp(min=0)
    inter = iw * ih
    ah, ao = wh_h.prod(1), wh_o.prod(1)
    iou = inter / (ah + ao - inter).clamp(min=eps)
    ub = torch.cat([torch.minimum(bh[:, :2], bo[:, :2]), torch.maximum(bh[:, 2:], bo[:, 2:])], 1)
    diag = (ub[:, 2:] - ub[:, :2]).norm(dim=1).clamp(min=eps)
    dist = (co - ch).norm(dim=1) / diag
    gx = (torch.maximum(bh[:, 0], bo[:, 0]) - torch.minimum(bh[:, 2], bo[:, 2])).clamp(min=0)
    gy = (torch.maximum(bh[:, 1], bo[:, 1]) - torch.minimum(bh[:, 3], bo[:, 3])).clamp(min=0)
    gap = torch.sqrt(gx ** 2 + gy ** 2) / wh_h[:, 1]
    return torch.cat([nh, no, off, logr, iou[:, None], (inter / ao)[:, None], (inter / ah)[:, None],
                      dist[:, None], gap[:, None], torch.log(ao / ah)[:, None]], 1)


def union_boxes(bh: torch.Tensor, bo: torch.Tensor) -> torch.Tensor:
    """(P, 4) smallest boxes containing both."""
    return torch.cat([torch.minimum(bh[:, :2], bo[:, :2]), torch.maximum(bh[:, 2:], bo[:, 2:])], 1)


def region_features(grid: torch.Tensor, boxes: torch.Tensor, image_index: torch.Tensor, wh: torch.Tensor,
                    output_size: int = 2) -> torch.Tensor:
    """RoIAlign (``torchvision.ops.roi_align``) of pixel boxes on the patch grid, averaged to one vector.

    Args:
        grid: (N, D, r, c) patch grid of the images.
        boxes: (P, 4) pixel boxes.
        image_index: (P,) image of each box.
        wh: (P, 2) the image sizes (pixel boxes are mapped to grid cells per image).
        output_size: RoIAlign bins per side.

    Returns:
        (P, D) region features.
    """
    if boxes.numel() == 0:
        return grid.new_zeros(0, grid.shape[1])
    r, c = grid.shape[2:]
    sx = c / wh[:, 0].clamp(min=1)
    sy = r / wh[:, 1].clamp(min=1)
    gb = boxes * torch.stack([sx, sy, sx, sy], 1)
    rois = torch.cat([image_index.float()[:, None], gb], 1)
    out = roi_align(grid, rois, output_size=output_size, spatial_scale=1.0, sampling_ratio=2, aligned=True)
    return out.mean((2, 3))  # (P, D)


def candidate_mask(object_labels: torch.Tensor, vocab: HOIVocab) -> torch.Tensor:
    """(P, H) bool: HOI k is a candidate for an object of label l when its object is l (any HOI when l = -1)."""
    hoi_obj = torch.tensor([o for _, o, _ in vocab.correspondence], dtype=torch.long)  # (H,)
    mask = hoi_obj[None, :] == object_labels[:, None]
    return mask | (object_labels[:, None] < 0)


def teacher_logits(image_pooled: torch.Tensor, text: torch.Tensor, logit_scale: float) -> torch.Tensor:
    """Zero-shot teacher logits ``logit_scale * cos(image, phrase)``: (N, E) x (H, E) -> (N, H)."""
    return logit_scale * F.normalize(image_pooled, dim=-1) @ F.normalize(text, dim=-1).T


def encode_images(teacher: Teacher, paths: Sequence[Path], cache_dir: Optional[str], dataset: str,
                  batch_size: int = 64) -> Encoded:
    """Teacher features of images, through the shared feature cache when ``cache_dir`` is given (else computed in batches)."""
    if cache_dir is not None:
        return cached_image_features(teacher, [str(p) for p in paths], cache_dir, dataset, batch_size=batch_size)
    toks, pooled = [], []
    for i in range(0, len(paths), batch_size):
        enc = teacher.encode_images([open_image(p) for p in paths[i:i + batch_size]])
        toks.append(enc.tokens.float())
        pooled.append(enc.pooled.float())
    t = torch.cat(toks) if toks else torch.zeros(0, 1, 1)
    return Encoded(t, torch.cat(pooled) if pooled else torch.zeros(0, 1), torch.ones(t.shape[:2], dtype=torch.bool))


def encode_texts(teacher: Teacher, texts: Sequence[str], cache_dir: Optional[str]) -> torch.Tensor:
    """(H, E) L2-normalised pooled teacher embeddings of the phrases (cached when ``cache_dir`` is given)."""
    if cache_dir is not None:
        enc = cached_text_features(teacher, list(texts), cache_dir, dataset="hoi_prompts")
    else:
        enc = teacher.encode_texts(list(texts))
    return F.normalize(enc.pooled.float(), dim=-1)


def _crop(im: Image.Image, box: Sequence[float]) -> Image.Image:
    """Crop a pixel box (at least 2x2 pixels, clipped to the image)."""
    x1, y1 = max(0, int(math.floor(box[0]))), max(0, int(math.floor(box[1])))
    x2, y2 = min(im.width, int(math.ceil(box[2]))), min(im.height, int(math.ceil(box[3])))
    x2, y2 = max(x2, min(x1 + 2, im.width)), max(y2, min(y1 + 2, im.height))
    return im.crop((x1, y1, x2, y2))


@torch.no_grad()
def crop_embeddings(teacher: Teacher, images_dir: Path, proposals: Sequence[PairProposals],
                    batch_size: int = 256) -> torch.Tensor:
    """(P, 3 * E) the teacher's pooled embeddings of each pair's human, object and union crops (pairs in
    ``build_pair_data`` order). Each distinct box is encoded once; the teacher resizes crops itself."""
    crops: list[Image.Image] = []
    index: list[tuple[int, int, int]] = []
    for p in proposals:
        if not p.pairs:
            continue
        im = open_image(Path(images_dir) / p.filename)
        base = len(crops)
        crops.extend(_crop(im, b) for b in p.humans)
        crops.extend(_crop(im, b) for b in p.objects)
        nh, no = len(p.humans), len(p.objects)
        for k, (i, j) in enumerate(p.pairs):
            h, o = p.humans[i], p.objects[j]
            crops.append(_crop(im, (min(h[0], o[0]), min(h[1], o[1]), max(h[2], o[2]), max(h[3], o[3]))))
            index.append((base + i, base + nh + j, base + nh + no + k))
    if not index:
        return torch.zeros(0, 0)
    emb = torch.cat([teacher.encode_images(crops[b:b + batch_size]).pooled.float()
                     for b in range(0, len(crops), batch_size)])
    emb = F.normalize(emb, dim=-1)
    idx = torch.tensor(index, dtype=torch.long)  # (P, 3)
    return emb[idx].reshape(len(index), -1)  # (P, 3E)


def build_pair_data(proposals: Sequence[PairProposals], image_enc: Encoded, grid: tuple[int, int],
                    text: torch.Tensor, vocab: HOIVocab, logit_scale: float, roi_size: int = 2,
                    crops: Optional[torch.Tensor] = None) -> PairData:
    """Assemble ``PairData`` from proposals and the teacher's image features (same order) and phrase embeddings.

    Args:
        proposals: one per image.
        image_enc: teacher encoding of the images, in the order of ``proposals``.
        grid: the teacher's patch grid (rows, cols).
        text: (H, E) normalised phrase embeddings, in HOI (correspondence) order.
        vocab: HOI vocabulary.
        logit_scale: multiplier of the teacher's cosine similarities.
        roi_size: RoIAlign bins per side.
        crops: optional (P, 3E) crop embeddings (``crop_embeddings``).
    """
    if len(proposals) != image_enc.tokens.shape[0]:
        raise ValueError(f"{len(proposals)} proposals but {image_enc.tokens.shape[0]} encoded images")
    if text.shape[0] != vocab.num_hoi:
        raise ValueError(f"{text.shape[0]} phrase embeddings for {vocab.num_hoi} HOIs")
    g = grid_from_tokens(image_enc.tokens.float(), grid)
    pooled = image_enc.pooled.float()
    pi, bh, bo, lab, wh = [], [], [], [], []
    for n, p in enumerate(proposals):
        for i, j in p.pairs:
            pi.append(n)
            bh.append(p.humans[i])
            bo.append(p.objects[j])
            lab.append(p.object_labels[j])
            wh.append((p.width, p.height))
    pair_image = torch.tensor(pi, dtype=torch.long)
    bh_t = torch.tensor(bh, dtype=torch.float32).reshape(-1, 4)
    bo_t = torch.tensor(bo, dtype=torch.float32).reshape(-1, 4)
    wh_t = torch.tensor(wh, dtype=torch.float32).reshape(-1, 2)
    lab_t = torch.tensor(lab, dtype=torch.long)
    cand = candidate_mask(lab_t, vocab)  # (P, H)
    if crops is not None and crops.shape[0] != len(pi):
        raise ValueError(f"{crops.shape[0]} crop embeddings for {len(pi)} pairs")
    sp = spatial_features(bh_t, bo_t, wh_t).reshape(-1, SPATIAL_DIM)
    img_cand = torch.zeros(len(proposals), vocab.num_hoi, dtype=torch.bool)
    if len(pi):
        img_cand.index_put_((pair_image,), cand, accumulate=True)
    return PairData(
        filenames=[p.filename for p in proposals], grid=g, image_pooled=pooled,
        teacher_logits=teacher_logits(pooled, text, logit_scale), text=text, pair_image=pair_image,
        boxes_h=bh_t, boxes_o=bo_t,
        feat_h=region_features(g, bh_t, pair_image, wh_t, roi_size),
        feat_o=region_features(g, bo_t, pair_image, wh_t, roi_size),
        feat_u=region_features(g, union_boxes(bh_t, bo_t), pair_image, wh_t, roi_size),
        spatial=sp, candidates=cand, image_candidates=img_cand, log_prior=torch.log(spatial_prior(sp)),
        crops=crops if crops is not None else torch.zeros(len(pi), 0),
        crop_logits=logit_scale * crops[:, -text.shape[1]:] @ text.T if crops is not None and crops.shape[1]
        else torch.zeros(len(pi), 0))


def normalise_spatial(spatial: torch.Tensor, mean: Optional[torch.Tensor] = None,
                      std: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Standardise spatial features with the training statistics (computed when not given)."""
    if mean is None or std is None:
        mean = spatial.mean(0) if spatial.shape[0] else torch.zeros(spatial.shape[1])
        std = spatial.std(0).clamp(min=1e-3) if spatial.shape[0] > 1 else torch.ones(spatial.shape[1])
    return (spatial - mean) / std, mean, std


def spatial_prior(spatial: torch.Tensor) -> torch.Tensor:
    """Label-free geometric prior of interaction for each pair: ``exp(-gap)``, in (0, 1].

    ``gap`` is the distance between the two boxes' edges in human heights (0 when they touch or overlap), feature 16
    of ``spatial_features``. It encodes the assumption "people interact with what they touch or are near", uses no
    annotation and no fitting.
    """
    return torch.exp(-spatial[:, 16])
