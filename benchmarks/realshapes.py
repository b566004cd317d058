"""Real SWiG shapes with synthetic values, for ``bench_realscale.py`` and ``bench_gpu.py``.

The frame space is the real one, read from the imSitu lists (``--imsitu-dir``, the folder of the my89/imSitu
repository): ``evaluation/verb_id.tab`` (504 verbs), ``evaluation/role_id.tab`` (190 roles), ``evaluation/noun_id.tab``
(11,789 nouns) and, for each verb's roles in order, the role slots of its sentence template in
``simple_sentence_realization/generation_templates.tab`` restricted to the 190 roles. Feature values are random: only
shapes, and so time and memory, are real. One training step is the library's own (``StudentData.take`` +
``compute_losses`` + AdamW; ``nmpa_loss`` + AdamW), not a re-implementation.
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

#: SWiG split sizes (images): train / dev / test.
SWIG_IMAGES = {"train": 75702, "dev": 25200, "test": 25200}
#: student: CLIP ViT-L/14-336 cached tokens (1 CLS + 24x24 patches, width 1024); its text / joint width 768.
CLIP_TOKENS, CLIP_DIM, CLIP_JOINT = 577, 1024, 768
#: NMPA teacher: BLIP-2 (EVA ViT-g) vision tokens (1 + 16x16, width 1408).
BLIP2_TOKENS, BLIP2_DIM, BLIP2_GRID = 257, 1408, (16, 16)
#: rationale text tokens per rationale and their width (a CLIP-L text tower), rationales kept per image / role.
TEXT_LEN, TEXT_DIM, K_RATIONALES = 32, 768, 3


@dataclass
class RealFrames:
    verbs: list[str]
    roles: list[str]
    nouns: list[str]
    frames: dict[str, list[str]]

    @property
    def roles_per_verb(self) -> float:
        return sum(len(self.frames[v]) for v in self.verbs) / len(self.verbs)

    @property
    def max_roles(self) -> int:
        return max(len(self.frames[v]) for v in self.verbs)


def _tab(path: Path) -> list[str]:
    return [line.rstrip("\n").split("\t")[1] for line in path.read_text().splitlines() if "\t" in line]


def read_real_frames(imsitu_dir: str | Path) -> RealFrames:
    """The real imSitu frame space (see the module docstring).

    Raises:
        FileNotFoundError: a list is missing (the message names it).
    """
    d = Path(imsitu_dir)
    ev = d / "evaluation"
    for f in ("verb_id.tab", "role_id.tab", "noun_id.tab"):
        if not (ev / f).is_file():
            raise FileNotFoundError(f"{ev / f}: not found; --imsitu-dir must be the imSitu repository folder")
    verbs, roles, nouns = _tab(ev / "verb_id.tab"), _tab(ev / "role_id.tab"), _tab(ev / "noun_id.tab")
    known = set(roles)
    frames: dict[str, list[str]] = {}
    tpl = d / "simple_sentence_realization" / "generation_templates.tab"
    if tpl.is_file():
        for line in tpl.read_text().splitlines():
            v, _, t = line.partition("\t")
            rs: list[str] = []
            for w in re.findall(r"\b[A-Z][A-Z0-9_]+\b", t):
                if w.lower() in known and w.lower() not in rs:
                    rs.append(w.lower())
            frames[v] = rs
    for v in verbs:  # a verb without a template keeps SWiG's mean of about 3.5 roles: agent, item, tool, place
        frames[v] = frames.get(v) or ["agent", "item", "tool", "place"]
    return RealFrames(verbs, roles, nouns, frames)


def student_vocab(fr: RealFrames, text_dim: int = CLIP_JOINT, scene_dim: int = CLIP_JOINT,
                  role_dim: int = BLIP2_DIM, unseen: int = 50, seed: int = 0) -> Any:
    """A ``StudentVocab`` of the real frame space with random text embeddings (the last ``unseen`` verbs unseen, as
    the authors' indices 454-503)."""
    from mipd_kit.student.model import StudentVocab

    g = torch.Generator().manual_seed(seed)
    R = fr.max_roles
    vr = torch.full((len(fr.verbs), R), -1, dtype=torch.long)
    ri = {r: i for i, r in enumerate(fr.roles)}
    for i, v in enumerate(fr.verbs):
        for j, r in enumerate(fr.frames[v]):
            vr[i, j] = ri[r]
    train = torch.ones(len(fr.verbs), dtype=torch.bool)
    train[len(fr.verbs) - unseen:] = False
    return StudentVocab(fr.verbs, [""] + fr.nouns, fr.roles, torch.randn(len(fr.verbs), text_dim, generator=g),
                        torch.randn(len(fr.nouns) + 1, text_dim, generator=g),
                        torch.randn(len(fr.roles), text_dim, generator=g), vr, train, scene_dim, role_dim,
                        verb_emb_teacher=torch.randn(len(fr.verbs), scene_dim, generator=g))


def student_config(device: str = "cpu", amp: bool = False, batch_size: int = 32) -> Any:
    """The real-mode student of the authors' setup: cached CLIP ViT-L/14-336 tokens, hidden 512, 8 heads, one decoder
    layer, variant ``full`` (every loss term)."""
    from mipd_kit.student.config import StudentConfig

    return dataclasses.replace(StudentConfig(variant="full"), backbone="cached", in_dim=CLIP_DIM,
                               num_tokens=CLIP_TOKENS, d_model=512, heads=8, dec_layers=1, batch_size=batch_size,
                               device=device, amp=amp)


def student_data(vocab: Any, n: int, seed: int = 0, feature_dtype: torch.dtype = torch.float16) -> Any:
    """``n`` synthetic samples at real shapes: features as a cache stores them (fp16), labels of trainable verbs."""
    from mipd_kit.student.data import StudentData

    g = torch.Generator().manual_seed(seed)
    R = vocab.max_roles
    train_ids = torch.nonzero(vocab.train_verbs).flatten()
    verb = train_ids[torch.randint(len(train_ids), (n,), generator=g)]
    rmask = vocab.verb_roles[verb] >= 0
    nouns = torch.randint(len(vocab.nouns), (n, R, 3), generator=g).masked_fill(~rmask.unsqueeze(-1), -1)
    boxes = torch.rand(n, R, 4, generator=g) * 0.5 + 0.25
    exists = (torch.rand(n, R, generator=g) > 0.2) & rmask
    K = K_RATIONALES
    return StudentData([f"im{i}" for i in range(n)],
                       torch.randn(n, CLIP_TOKENS, CLIP_DIM, generator=g).to(feature_dtype),
                       verb, nouns, boxes, exists, rmask, torch.full((n, 2), 512.0),
                       scene_t=torch.randn(n, vocab.scene_dim, generator=g),
                       role_t=torch.randn(n, R, vocab.role_dim, generator=g),
                       neg=torch.randn(n, K, vocab.scene_dim, generator=g), neg_mask=torch.ones(n, K, dtype=torch.bool),
                       pos=torch.randn(n, vocab.scene_dim, generator=g), pos_mask=torch.ones(n, dtype=torch.bool),
                       kd=torch.randn(n, len(vocab.verbs), generator=g))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mb(device: torch.device) -> Optional[float]:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _time_steps(step: Any, n_batches: int, dev: torch.device, count_flops: bool) -> tuple[Optional[int], list[float]]:
    """Run ``step(0)`` as the warm-up (counting its FLOPs when asked), then time ``step(1..n_batches)``.

    Returns:
        (FLOPs of one step or None, seconds of each timed step).
    """
    flops = None
    if count_flops:
        from torch.utils.flop_counter import FlopCounterMode
        with FlopCounterMode(display=False) as fc:
            step(0)
        flops = int(fc.get_total_flops())
    else:
        step(0)
    _sync(dev)
    _peak_reset(dev)
    times = []
    for i in range(1, n_batches + 1):
        t0 = time.perf_counter()
        step(i)
        _sync(dev)
        times.append(time.perf_counter() - t0)
    return flops, times


def time_student_steps(fr: RealFrames, batch: int, n_batches: int, device: str = "cpu", amp: bool = False,
                       count_flops: bool = True) -> dict[str, Any]:
    """Per-batch time of one full-variant student training step (forward, every loss, backward, clip, AdamW) on
    synthetic real-shape batches; the first batch is a warm-up, not timed. Also FLOPs of one step (torch's flop
    counter, forward + backward) and, on CUDA, the peak allocated memory."""
    from mipd_kit.machine import autocast, resolve_device, to_device
    from mipd_kit.student.model import build_student
    from mipd_kit.student.train import compute_losses

    dev = resolve_device(device)
    vocab = student_vocab(fr)
    cfg = student_config(str(dev), amp, batch)
    torch.manual_seed(0)
    model = to_device(build_student(cfg, vocab), dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    train_ids = torch.nonzero(vocab.train_verbs).flatten()
    tmap = torch.full((len(vocab.verbs),), -1, dtype=torch.long)
    tmap[train_ids] = torch.arange(len(train_ids))
    train_ids, tmap = to_device(train_ids, dev), to_device(tmap, dev)
    data = student_data(vocab, batch * (n_batches + 1))
    model.train()

    def step(i: int) -> float:
        b = data.take(torch.arange(i * batch, (i + 1) * batch), dev)
        with autocast(dev, amp):
            parts = compute_losses(model, b, batch, cfg, tmap, train_ids)
        loss = sum(parts.values())
        opt.zero_grad(set_to_none=False)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        return float(loss.detach())

    flops, times = _time_steps(step, n_batches, dev, count_flops)
    return {"what": "student train step", "device": str(dev), "amp": amp, "batch": batch, "n_batches": n_batches,
            "per_batch_s": sum(times) / len(times), "min_batch_s": min(times), "flops_per_step": flops,
            "params": sum(p.numel() for p in model.parameters()), "peak_cuda_mb": _peak_mb(dev),
            "input_mb_per_batch_fp16": batch * CLIP_TOKENS * CLIP_DIM * 2 / 2**20,
            "d_model": cfg.d_model, "verbs": len(vocab.verbs), "nouns": len(vocab.nouns), "roles": len(vocab.roles),
            "max_roles": vocab.max_roles}


def align_data(n: int, max_roles: int, seed: int = 0) -> Any:
    """``n`` images of NMPA input at real shapes: BLIP-2 tokens (fp16 -> fp32 as ``prepare_world`` gives them),
    ``K_RATIONALES`` positive and negative glimpse and gaze rationales per image / role, each ``TEXT_LEN`` tokens."""
    from mipd_kit.align.nmpa import AlignData, TextBank

    g = torch.Generator().manual_seed(seed)
    K, R = K_RATIONALES, max_roles
    n_pos = n * K * (1 + R)
    n_all = 2 * n_pos
    bank = TextBank([f"t{i}" for i in range(n_all)],
                    torch.randn(n_pos, TEXT_LEN, TEXT_DIM, generator=g).half(),
                    torch.ones(n_pos, TEXT_LEN, dtype=torch.bool), torch.randn(n_all, CLIP_JOINT, generator=g))
    gp = torch.arange(n * K).view(n, K)
    gz = (n * K + torch.arange(n * R * K)).view(n, R, K)
    return AlignData([f"im{i}" for i in range(n)],
                     torch.randn(n, BLIP2_TOKENS, BLIP2_DIM, generator=g).half().float(),
                     torch.randn(n, CLIP_JOINT, generator=g), BLIP2_GRID,
                     torch.tensor([0.2, 0.2, 0.7, 0.8]).expand(n, R, 4).clone(), torch.ones(n, R, dtype=torch.bool),
                     torch.ones(n, R, dtype=torch.bool), bank, gp, gp + n_pos, gz, gz + n_pos)


def time_nmpa_steps(max_roles: int, batch: int, n_batches: int, device: str = "cpu", amp: bool = False,
                    count_flops: bool = True) -> dict[str, Any]:
    """Per-batch time of one NMPA training step (scene + instance prompts, every loss, backward, AdamW) at BLIP-2
    shapes; first batch a warm-up. FLOPs of one step and, on CUDA, peak allocated memory."""
    from mipd_kit.align.nmpa import NMPAConfig, align_data_to, build_nmpa, nmpa_loss
    from mipd_kit.machine import autocast, resolve_device, to_device

    dev = resolve_device(device)
    cfg = dataclasses.replace(NMPAConfig(), heads=8, batch_size=batch)
    data = align_data(batch * (n_batches + 1), max_roles)
    model = to_device(build_nmpa(cfg, data), dev)
    data = align_data_to(data, dev)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()

    def step(i: int) -> float:
        idx = torch.arange(i * batch, (i + 1) * batch, device=dev)
        with autocast(dev, amp):
            loss, _ = nmpa_loss(model, data, idx, cfg)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return float(loss.detach())

    flops, times = _time_steps(step, n_batches, dev, count_flops)
    return {"what": "NMPA train step", "device": str(dev), "amp": amp, "batch": batch, "n_batches": n_batches,
            "per_batch_s": sum(times) / len(times), "min_batch_s": min(times), "flops_per_step": flops,
            "params": sum(p.numel() for p in model.parameters()), "peak_cuda_mb": _peak_mb(dev),
            "input_mb_per_batch_fp16": batch * BLIP2_TOKENS * BLIP2_DIM * 2 / 2**20, "max_roles": max_roles}
