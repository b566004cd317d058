"""Torch helpers shared by the embedded models (teacher, captioner) and the teacher backends: the hash of a state
dict (what model fingerprints are made of) and the warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import hashlib
import math
from typing import Mapping

import torch


def state_hash(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 (hex) of a state dict: each entry's name, shape, dtype and bytes, in sorted name order.

    Args:
        state: ``module.state_dict()`` or any mapping of names to tensors (moved to CPU to be read).
    """
    h = hashlib.sha256()
    for k in sorted(state):
        v = state[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(tuple(v.shape)).encode())
        h.update(str(v.dtype).encode())
        h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


def warmup_cosine_lr(step: int, total: int, lr: float, warmup_frac: float) -> float:
    """The learning rate at ``step`` (0-based) of ``total``: linear warm-up over the first ``warmup_frac`` of the
    steps (at least one), then cosine decay from ``lr`` towards 0.

    Args:
        step: the optimiser step about to be taken.
        total: steps in the whole run.
        lr: the peak learning rate.
        warmup_frac: share of the steps spent warming up.
    """
    warm = max(1, int(warmup_frac * total))
    if step < warm:
        return lr * (step + 1) / warm
    p = (step - warm) / max(1, total - warm)
    return lr * 0.5 * (1 + math.cos(math.pi * p))
