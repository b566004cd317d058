"""CL-HOI detection scores: the baselines' pair scores (``teacher``, ``spatial_prior``, ``teacher_crop``), a trained
student's scores from its pair logits, predictions in the HICO-DET prediction format, their official HICO-DET mAP
rows, and a Markdown table of seed-aggregated rows.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mipd_kit.metrics import MetricRow, markdown_table

from . import losses as L
from .config import CLHOIConfig
from .features import PairData, spatial_prior
from .world import HOIWorld

def image_probs(logits: torch.Tensor, candidates: torch.Tensor, T: float) -> torch.Tensor:
    """(N, H) softmax of ``logits / T`` over each image's candidate HOIs (0 elsewhere)."""
    x = torch.where(candidates & torch.isfinite(logits), logits / T, torch.full_like(logits, L.NEG))
    p = F.softmax(x, dim=1)
    return p * candidates


def teacher_pair_scores(data: PairData, cfg: CLHOIConfig) -> torch.Tensor:
    """(P, H) ``teacher`` baseline: image-level teacher probability broadcast to the pairs (candidates only)."""
    p = image_probs(data.teacher_logits, data.image_candidates, cfg.kd_temperature)
    return p[data.pair_image] * data.candidates


def spatial_prior_scores(data: PairData, cfg: CLHOIConfig) -> torch.Tensor:
    """(P, H) ``spatial_prior`` baseline: teacher broadcast times ``exp(-gap)`` (``features.spatial_prior``)."""
    return teacher_pair_scores(data, cfg) * spatial_prior(data.spatial)[:, None]


def teacher_crop_scores(data: PairData, cfg: CLHOIConfig) -> torch.Tensor:
    """(P, H) ``teacher_crop`` baseline: the teacher's zero-shot HOI probability on the pair's union crop (softmax
    over the pair's candidates) times ``exp(-gap)``. Needs ``crop_features``."""
    if not data.crop_logits.shape[1]:
        raise ValueError("the teacher_crop baseline needs crop_features=True")
    return image_probs(data.crop_logits, data.candidates, cfg.kd_temperature) * spatial_prior(data.spatial)[:, None]


def student_pair_scores(pair_logits: torch.Tensor, data: PairData, cfg: CLHOIConfig) -> torch.Tensor:
    """(P, H) detection scores of a student from its pair logits ``s`` (``cfg.score``).

    ``pair_prior``: ``softmax_{k in C(p)}(s_{p,k} / T) * exp(-gap_p)``, the pair's HOI distribution times the
    geometric prior (the same prior as the ``spatial_prior`` baseline); ``joint``: ``P_i(k) * share_p(k)``, a softmax
    over all (pair, HOI) of the image at temperature T (its marginal over pairs is the LSE-pooled image
    distribution); ``relative``: ``P_i(k) * exp((s_{p,k} - max_q s_{q,k}) / tau_pool)``.
    """
    n = len(data.filenames)
    T = cfg.kd_temperature
    if cfg.score == "pair_prior":
        return image_probs(pair_logits, data.candidates, T) * spatial_prior(data.spatial)[:, None]
    if cfg.score == "joint":
        p_img = image_probs(L.pool_pairs(pair_logits, data.pair_image, n, "lse", T), data.image_candidates, T)
        lse = L.pool_pairs(pair_logits, data.pair_image, n, "lse", T)
        share = torch.exp((pair_logits - lse[data.pair_image]) / T)
    elif cfg.score == "relative":
        p_img = image_probs(L.pool_pairs(pair_logits, data.pair_image, n, cfg.pool, cfg.pool_tau),
                            data.image_candidates, T)
        mx = L.pool_pairs(pair_logits, data.pair_image, n, "max")
        share = torch.exp((pair_logits - mx[data.pair_image]) / cfg.pool_tau)
    else:
        raise ValueError(f"unknown score {cfg.score!r}; choose 'pair_prior', 'joint' or 'relative'")
    share = torch.where(data.candidates, share, torch.zeros_like(share))
    return p_img[data.pair_image] * share


def predictions_from_scores(data: PairData, scores: torch.Tensor, topk: int = 0) -> dict[str, list[dict]]:
    """HICO-DET prediction dict ``{filename: [{"hoi", "box_h", "box_o", "score"}]}`` from (P, H) pair scores.

    Every candidate HOI of every pair is written (or its ``topk`` best); every image gets an entry (possibly empty).
    """
    out: dict[str, list[dict]] = {f: [] for f in data.filenames}
    s = scores.detach().double().numpy()
    cand = data.candidates.numpy()
    bh, bo = data.boxes_h.tolist(), data.boxes_o.tolist()
    for p in range(data.num_pairs):
        ks = np.flatnonzero(cand[p])
        if topk and len(ks) > topk:
            ks = ks[np.argsort(-s[p, ks], kind="stable")[:topk]]
        fn = data.filenames[int(data.pair_image[p])]
        out[fn].extend({"hoi": int(k), "box_h": bh[p], "box_o": bo[p], "score": float(s[p, k])} for k in ks)
    return out


def evaluate_predictions(world: HOIWorld, preds: dict, model: str, seed: int, cfg: CLHOIConfig) -> list[MetricRow]:
    """Official HICO-DET mAP rows (Default and Known-object; Full/Rare/Non-rare and Unseen/Seen)."""
    from mipd_kit.eval.hico import evaluate_hico

    return evaluate_hico(world.test, world.vocab, preds, setting="both", zero_shot=world.unseen,
                         protocol=cfg.protocol, model=model, seed=seed, src=f"hoi-{model}-seed{seed}")


def results_table(rows: Sequence[MetricRow], setting: str = "default", metric: str = "map") -> str:
    """Markdown table ``model x split`` of seed means (``map_mean`` +- ``map_std``), or per-seed values."""
    means = {(r.model, r.split): r.value for r in rows
             if r.seed is None and r.setting == setting and r.metric == f"{metric}_mean"}
    stds = {(r.model, r.split): r.value for r in rows
            if r.seed is None and r.setting == setting and r.metric == f"{metric}_std"}
    models = list(dict.fromkeys(m for m, _ in means))
    order = ("full", "rare", "non_rare", "unseen", "seen")
    splits = [s for s in order if any(k[1] == s for k in means)]
    if setting == "scenario_1":  # V-COCO: the mean over classes only
        splits = ["full"] if any(k[1] == "full" for k in means) else []
    return markdown_table([f"model ({setting})", *splits],
                          [[m] + [f"{means[(m, s)]:.2f} ± {stds.get((m, s), 0.0):.2f}" if (m, s) in means else "-"
                                  for s in splits] for m in models])
