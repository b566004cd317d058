"""The embedded captioner: an image-conditioned text decoder on the embedded teacher's patch tokens (the embedded MLLM).

An image-grounded text decoder in the manner of BLIP (Li et al., "BLIP: Bootstrapping Language-Image Pre-training
for Unified Vision-Language Understanding and Generation", ICML 2022) and of the language side of BLIP-2 (Li et al.,
ICML 2023): a small causal transformer decoder whose layers cross-attend to the *frozen* teacher's patch tokens
(projected to the decoder width, plus a learned grid position and one region token), trained with next-word
cross-entropy (teacher forcing) on the world's pretraining caption corpus ``pretrain/captions.jsonl`` -- the same
corpus the teacher was trained on, and nothing else: never the GSR labels (the ``verbs`` field of the corpus is
diagnostic and never read here). Its vocabulary is the words of that corpus (lower-cased word-level tokens and
punctuation, ``min_count`` occurrences).

It writes free text token by token (temperature / top-p sampling with a seeded generator, or greedy at temperature
0):

* a **glimpse** describes the whole image (cross-attention to every token);
* a **gaze** describes a region (a role box): cross-attention is restricted to the grid cells the box overlaps, and
  the region token carries the normalised box. During training a fraction ``region_p`` of examples see only a random
  region of the grid (still predicting the whole caption), so that the decoder learns to write from partial
  evidence. The teacher's tokens pass through a self-attention layer before they reach the decoder, so a cell
  carries some context from outside the box: a gaze is a description *centred on* the region, not one blind to
  the rest.

:class:`CaptionerSampler` serves it through the project's ``Sampler`` interface (messages -> Response): it reads the
image from an ``image_path`` part or an OpenAI-style ``image_url`` part (a ``data:`` URL or a file path), the region
from an optional ``{"type": "region", "box": [x1, y1, x2, y2]}`` part or from the ``Role region: [x1, y1, x2, y2] in
a WxH image`` line of the gaze prompt, and answers with generated text, so rationale code cannot tell it from a
remote vision chat model. Same messages and seed: same text (for a given machine and thread count); a different
prompt (a refinement round's feedback), seed or temperature: usually a different one.

Public API: ``Vocab``, ``CaptionerConfig`` (+ ``smoke()``), ``Captioner``, ``train_captioner``,
``save_captioner`` / ``load_captioner`` (``model.safetensors`` + ``captioner.json`` holding config and vocabulary;
loading never unpickles; ``dtype="fp16"`` for a release), ``load_or_train_captioner``, ``captioner_for`` (the released
weights of ``mipd_kit.weights`` or a trained captioner: ``weights`` auto | released | retrain),
``load_released_captioner``, ``find_captioner_release``, ``caption_images``, ``CaptionerSampler``.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import hashlib
import io
import json
import math
import os
import re
import shutil
import time
import weakref
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from mipd_kit.data.records import DataError
from mipd_kit.fileio import replace_dir
from mipd_kit.language.base import Message, Response, SamplerError, SamplerRequestError

if TYPE_CHECKING:  # the config lives with the factory, which must not import torch
    from mipd_kit.language.factory import CaptionerSamplerConfig

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "<unk>")
FORMAT = "mipd-embedded-captioner/1"
#: seed offset between two draws for one request whose previous draw came out empty
RESEED = 1_000_003
_TOKEN = re.compile(r"[a-z]+|[0-9]+|[^\sa-z0-9]")
_NO_SPACE_BEFORE = set(",.:;!?)")
#: the gaze prompt's region line (mipd_kit.rationales.prompts.GAZE_TEMPLATE)
#: re-prompt lines the sampler obeys (mipd_kit.rationales.prompts AVOID_TEMPLATE / BEGIN_TEMPLATE)
_AVOID_LINE = re.compile(r"^Avoid these words: (.*)$", re.M)
_BEGIN_LINE = re.compile(r"^Begin with: (.*)$", re.M)
_REGION_LINE = re.compile(r"\[\s*([-\d.]+),\s*([-\d.]+),\s*([-\d.]+),\s*([-\d.]+)\s*\]\s*in a (\d+)x(\d+) image")


class CaptionerError(DataError):
    """Bad captioner input or output (undecodable image, zero-area box, empty generation, bad checkpoint)."""


# ----------------------------------------------------------------------------------------------- vocabulary
def tokenize(text: str) -> list[str]:
    """Lower-cased word-level tokens: runs of letters, runs of digits, single punctuation marks."""
    return _TOKEN.findall(text.lower())


def detokenize(words: Sequence[str]) -> str:
    """Join tokens with spaces, attaching punctuation to the word before it."""
    out = ""
    for w in words:
        out += w if (not out or w in _NO_SPACE_BEFORE) else " " + w
    return out


@dataclass(frozen=True)
class Vocab:
    """Word-level vocabulary: ``words[i]`` is token id ``i``; the first four are ``SPECIALS``."""

    words: tuple[str, ...]

    def __post_init__(self):
        if tuple(self.words[:len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a captioner vocabulary starts with {SPECIALS}")
        object.__setattr__(self, "_index", {w: i for i, w in enumerate(self.words)})

    def __len__(self) -> int:
        return len(self.words)

    @classmethod
    def build(cls, captions: Sequence[str], min_count: int = 1) -> "Vocab":
        """Words occurring at least ``min_count`` times, by decreasing count then alphabetically (deterministic)."""
        counts = Counter(w for c in captions for w in tokenize(c))
        kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        return cls(SPECIALS + tuple(kept))

    def encode(self, text: str, max_len: int) -> list[int]:
        """``[BOS] + ids + [EOS]``, truncated to ``max_len`` ids (the EOS is kept)."""
        ids = [self._index.get(w, UNK) for w in tokenize(text)][:max_len - 2]  # type: ignore[attr-defined]
        return [BOS, *ids, EOS]

    def ids_of(self, text: str) -> list[int]:
        """Ids of the words of ``text`` that the vocabulary knows (unknown words are left out)."""
        return [self._index[w] for w in tokenize(text) if w in self._index]  # type: ignore[attr-defined]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ids up to the first EOS or PAD (BOS and UNK dropped)."""
        out = []
        for i in ids:
            i = int(i)
            if i in (EOS, PAD):
                break
            if i in (BOS, UNK) or i >= len(self.words):
                continue
            out.append(self.words[i])
        return detokenize(out)


# ----------------------------------------------------------------------------------------------- config
@dataclass
class CaptionerConfig:
    """Captioner size and training schedule.

    Attributes:
        width: decoder width d.
        depth: decoder layers (each: causal self-attention, cross-attention to the image tokens, MLP).
        heads: attention heads.
        mlp_ratio: MLP hidden size / width.
        dropout: dropout in the decoder layers.
        max_len: longest token sequence, BOS and EOS included (longer captions are truncated).
        min_count: a word enters the vocabulary after this many occurrences in the corpus.
        epochs: passes over the training captions.
        batch_size: captions per step.
        lr: peak AdamW learning rate (linear warm-up, cosine decay).
        weight_decay: AdamW weight decay.
        warmup_frac: fraction of steps used for warm-up.
        region_p: fraction of training examples that see only a random region of the token grid.
        region_min: smallest side of such a region, as a fraction of the image side.
        holdout_frac: fraction of pretraining images held out of training (chosen by a hash of the image path),
            for evaluation on images the captioner never saw.
        max_pairs: use at most this many pretraining pairs (None = all).
        threads: torch threads while training (0 = leave torch's default).
        seed: seeds initialisation, data order and training regions.
    """

    width: int = 128
    depth: int = 2
    heads: int = 4
    mlp_ratio: int = 2
    dropout: float = 0.1
    max_len: int = 32
    min_count: int = 2
    epochs: int = 8
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_frac: float = 0.05
    region_p: float = 0.3
    region_min: float = 0.35
    holdout_frac: float = 0.1
    max_pairs: Optional[int] = None
    threads: int = 0
    seed: int = 0

    @classmethod
    def smoke(cls) -> "CaptionerConfig":
        """Seconds on a laptop CPU: one narrow layer, a few epochs."""
        return cls(width=64, depth=1, heads=2, epochs=6, batch_size=32, lr=3e-3, min_count=1, dropout=0.0)

    @classmethod
    def from_dict(cls, d: dict) -> "CaptionerConfig":
        from ..overrides import known_fields
        return cls(**known_fields(cls, d))

    def training_key(self) -> dict:
        """The fields that determine the trained weights (all but ``threads``)."""
        d = asdict(self)
        d.pop("threads")
        return d


# ----------------------------------------------------------------------------------------------- model
def region_mask(boxes: Optional[torch.Tensor], grid: tuple[int, int], n_tokens: int) -> torch.Tensor:
    """Which image tokens a region may attend to: (B, n_tokens) bool, True = hidden.

    Args:
        boxes: (B, 4) normalised ``x1, y1, x2, y2`` in [0, 1], rows of NaN for "whole image"; ``None`` = all whole.
        grid: (rows, cols) of the patch grid; tokens beyond ``rows * cols`` (a leading CLS token) are hidden for a
            region and shown for the whole image.
        n_tokens: tokens per image.
    """
    r, c = grid
    extra = n_tokens - r * c
    if boxes is None:
        return torch.zeros(1, n_tokens, dtype=torch.bool)
    B = boxes.shape[0]
    whole = torch.isnan(boxes).any(1)  # (B,)
    b = torch.nan_to_num(boxes, nan=0.0)
    ys = torch.arange(r, dtype=torch.float32)
    xs = torch.arange(c, dtype=torch.float32)
    # a cell (i, j) covers [j/c, (j+1)/c] x [i/r, (i+1)/r]; it is visible when it overlaps the box
    col_in = (xs[None] / c < b[:, 2:3]) & ((xs[None] + 1) / c > b[:, 0:1])  # (B, c)
    row_in = (ys[None] / r < b[:, 3:4]) & ((ys[None] + 1) / r > b[:, 1:2])  # (B, r)
    vis = (row_in[:, :, None] & col_in[:, None, :]).reshape(B, r * c)
    vis = torch.cat([torch.zeros(B, extra, dtype=torch.bool), vis], 1) if extra > 0 else vis
    vis[whole] = True
    vis[~vis.any(1)] = True  # never hide everything
    return ~vis


class CaptionDecoder(nn.Module):
    """Causal transformer decoder cross-attending to projected teacher tokens and one region token."""

    def __init__(self, cfg: CaptionerConfig, vocab_size: int, token_dim: int, n_tokens: int):
        super().__init__()
        d = cfg.width
        self.mem_proj = nn.Sequential(nn.LayerNorm(token_dim), nn.Linear(token_dim, d))
        self.mem_pos = nn.Parameter(torch.randn(1, n_tokens, d) * 0.02)
        self.region = nn.Linear(5, d)  # (x1, y1, x2, y2, is_region) -> one extra memory token
        self.embed = nn.Embedding(vocab_size, d)
        self.pos = nn.Parameter(torch.randn(1, cfg.max_len, d) * 0.02)
        layer = nn.TransformerDecoderLayer(d, cfg.heads, cfg.mlp_ratio * d, cfg.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerDecoder(layer, cfg.depth)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab_size, bias=True)
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        self.head.weight = self.embed.weight  # tied input / output embeddings

    def memory(self, tokens: torch.Tensor, boxes: Optional[torch.Tensor],
               grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, N, Dt), boxes (B, 4) normalised or NaN rows -> memory (B, N+1, d), hidden (B, N+1) bool."""
        B, N, _ = tokens.shape
        mem = self.mem_proj(tokens.float()) + self.mem_pos[:, :N]  # (B, N, d)
        if boxes is None:
            boxes = torch.full((B, 4), float("nan"))
        is_region = (~torch.isnan(boxes).any(1)).float()[:, None]  # (B, 1)
        reg = self.region(torch.cat([torch.nan_to_num(boxes, nan=0.0), is_region], 1))[:, None]  # (B, 1, d)
        hidden = region_mask(boxes, grid, N).expand(B, N)
        hidden = torch.cat([torch.zeros(B, 1, dtype=torch.bool), hidden], 1)  # the region token is always seen
        return torch.cat([reg, mem], 1), hidden

    def forward(self, ids: torch.Tensor, mem: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """ids (B, L) -> next-token logits (B, L, V)."""
        L = ids.shape[1]
        x = self.embed(ids) + self.pos[:, :L]
        causal = torch.triu(torch.full((L, L), float("-inf")), 1)
        # additive float masks on both sides (bool and float masks may not be mixed in one call)
        mem_mask = torch.zeros(hidden.shape, dtype=x.dtype).masked_fill(hidden, float("-inf"))
        y = self.layers(x, mem, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=mem_mask)
        return self.head(self.norm(y))

    def start(self, mem: torch.Tensor, hidden: torch.Tensor) -> dict:
        """Incremental decoding state for :meth:`step`: each layer's cross-attention keys / values of ``mem``
        (computed once instead of at every word) and empty self-attention caches. mem (B, M, d), hidden (B, M)."""
        B = mem.shape[0]
        bias = torch.zeros(B, 1, 1, hidden.shape[1], dtype=mem.dtype).masked_fill(hidden[:, None, None], float("-inf"))
        cross = []
        for layer in self.layers.layers:
            a = layer.multihead_attn
            cross.append((self._heads(a, _in_proj(a, mem, 1)), self._heads(a, _in_proj(a, mem, 2))))
        return {"cross": cross, "bias": bias, "self": [None] * len(self.layers.layers), "t": 0}

    @staticmethod
    def _heads(a: nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
        """(B, L, d) -> (B, heads, L, d / heads)."""
        B, L, d = x.shape
        return x.view(B, L, a.num_heads, d // a.num_heads).transpose(1, 2)

    def step(self, ids: torch.Tensor, state: dict) -> torch.Tensor:
        """The next-token logits (B, V) after the newest tokens ``ids`` (B,), updating ``state`` (from
        :meth:`start`): the same function as :meth:`forward`'s last position (pre-norm layers, eval mode), with the
        past positions' keys and values cached, so a word costs one position instead of the whole prefix."""
        t = state["t"]
        x = self.embed(ids)[:, None] + self.pos[:, t:t + 1]  # (B, 1, d)
        B = x.shape[0]
        for i, layer in enumerate(self.layers.layers):
            a = layer.self_attn
            y = layer.norm1(x)
            q, k, v = (self._heads(a, _in_proj(a, y, j)) for j in range(3))
            if state["self"][i] is not None:
                k = torch.cat([state["self"][i][0], k], 2)
                v = torch.cat([state["self"][i][1], v], 2)
            state["self"][i] = (k, v)
            o = F.scaled_dot_product_attention(q, k, v)  # (B, h, 1, dh): every cached position is in the past
            x = x + a.out_proj(o.transpose(1, 2).reshape(B, 1, -1))
            c = layer.multihead_attn
            q = self._heads(c, _in_proj(c, layer.norm2(x), 0))
            ck, cv = state["cross"][i]
            o = F.scaled_dot_product_attention(q, ck, cv, attn_mask=state["bias"])
            x = x + c.out_proj(o.transpose(1, 2).reshape(B, 1, -1))
            x = x + layer.linear2(layer.activation(layer.linear1(layer.norm3(x))))
        state["t"] = t + 1
        return self.head(self.norm(x))[:, 0]


def _in_proj(a: nn.MultiheadAttention, x: torch.Tensor, which: int) -> torch.Tensor:
    """The query (0), key (1) or value (2) projection of ``nn.MultiheadAttention``'s packed input weights."""
    d = a.embed_dim
    return F.linear(x, a.in_proj_weight[which * d:(which + 1) * d], a.in_proj_bias[which * d:(which + 1) * d])


def _hash_state(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for k in sorted(state):
        v = state[k].detach().cpu().contiguous()
        h.update(k.encode() + str(tuple(v.shape)).encode() + str(v.dtype).encode())
        h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


_GOLDEN, _MIX1, _MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _splitmix(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


def row_uniforms(seeds: Sequence[int], step: int, vocab_size: int) -> torch.Tensor:
    """(B, V) float64 uniforms in (0, 1), a pure function of (row seed, step, word id): counter-based noise, so that
    every row samples independently of its neighbours and of the batch size, with no per-row generator calls."""
    with np.errstate(over="ignore"):
        base = _splitmix(np.array([int(s) % 2 ** 64 for s in seeds], dtype=np.uint64))  # (B,)
        ctr = np.uint64(step) * np.uint64(vocab_size) + np.arange(vocab_size, dtype=np.uint64)  # (V,)
        z = _splitmix(base[:, None] ^ _splitmix(ctr)[None, :])
    return torch.from_numpy(((z >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0 ** 53)


@dataclass(frozen=True)
class Caption:
    """One generated description.

    Attributes:
        text: the decoded text ("" when the captioner emitted nothing but end / padding).
        ids: the generated token ids (without BOS).
        box: the normalised region ``(x1, y1, x2, y2)`` of a gaze, ``None`` for a glimpse.
    """

    text: str
    ids: tuple[int, ...]
    box: Optional[tuple[float, float, float, float]] = None


class Captioner(nn.Module):
    """Vocabulary + decoder + the shape of the teacher tokens it reads (``grid``, ``token_dim``, ``n_tokens``)."""

    def __init__(self, cfg: CaptionerConfig, vocab: Vocab, token_dim: int, n_tokens: int, grid: tuple[int, int],
                 teacher_fingerprint: str = ""):
        super().__init__()
        if grid[0] * grid[1] > n_tokens:
            raise ValueError(f"grid {grid} has more cells than the {n_tokens} teacher tokens")
        self.cfg, self.vocab = cfg, vocab
        self.token_dim, self.n_tokens, self.grid = token_dim, n_tokens, (int(grid[0]), int(grid[1]))
        self.teacher_fingerprint = teacher_fingerprint
        self.decoder = CaptionDecoder(cfg, len(vocab), token_dim, n_tokens)
        self.info: dict = {}
        self._fingerprint: Optional[str] = None

    @property
    def fingerprint(self) -> str:
        """sha256 over the vocabulary and the weights (computed once)."""
        if self._fingerprint is None:
            h = hashlib.sha256(("\n".join(self.vocab.words) + f"|{self.grid}|{self.teacher_fingerprint}").encode())
            h.update(_hash_state(self.decoder.state_dict()).encode())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def loss(self, tokens: torch.Tensor, ids: torch.Tensor, boxes: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Mean next-word cross-entropy over real tokens: tokens (B, N, Dt), ids (B, L) padded with PAD."""
        mem, hidden = self.decoder.memory(tokens, boxes, self.grid)
        logits = self.decoder(ids[:, :-1], mem, hidden)  # (B, L-1, V)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), ignore_index=PAD)

    @torch.no_grad()
    def generate(self, tokens: torch.Tensor, boxes: Optional[torch.Tensor] = None, *, temperature: float = 0.7,
                 top_p: float = 0.9, seeds: Optional[Sequence[int]] = None,
                 max_len: Optional[int] = None, banned: Optional[Sequence[Sequence[int]]] = None,
                 prefix: Optional[Sequence[Sequence[int]]] = None, kv_cache: bool = True) -> list[Caption]:
        """Sample one description per image, token by token.

        Args:
            tokens: (B, N, Dt) teacher tokens.
            boxes: (B, 4) normalised regions (NaN rows = whole image) or ``None`` (all glimpses).
            temperature: softmax temperature; ``<= 0`` decodes greedily.
            top_p: nucleus sampling: keep the smallest set of words whose probability reaches ``top_p``.
            seeds: one seed per row (a row's draws are a function of its seed only, see :func:`row_uniforms`, so
                its text does not depend on its neighbours); default ``range(B)``.
            max_len: longest sequence (default the config's).
            banned: per row, word ids never sampled (the "avoid these words" of a re-prompt: a rejected rationale's
                words the judge objected to); EOS, PAD and BOS cannot be banned.
            prefix: per row, word ids forced as the first words (then free decoding continues from them; banned
                words are not forced away from the prefix).

            kv_cache: decode with cached keys / values (:meth:`CaptionDecoder.step`, several times faster); False
                re-runs the whole prefix at every word (the training-time forward). Both compute the same function;
                float rounding may differ in the last bits.
        """
        self.eval()
        B = tokens.shape[0]
        L = min(max_len or self.cfg.max_len, self.cfg.max_len)
        seeds = list(range(B)) if seeds is None else [int(s) for s in seeds]
        if len(seeds) != B:
            raise ValueError(f"{len(seeds)} seeds for {B} images")
        if banned is not None and len(banned) != B or prefix is not None and len(prefix) != B:
            raise ValueError(f"banned / prefix need one entry per image ({B})")
        ban = torch.zeros(B, len(self.vocab), dtype=torch.bool)  # (B, V)
        for b, ids_b in enumerate(banned or ()):
            keep = [int(i) for i in ids_b if 0 <= int(i) < len(self.vocab) and int(i) not in (PAD, BOS, EOS)]
            ban[b, keep] = True
        pre = [list(map(int, p)) for p in prefix] if prefix is not None else [[] for _ in range(B)]
        mem, hidden = self.decoder.memory(tokens, boxes, self.grid)
        ids = torch.full((B, 1), BOS, dtype=torch.long)
        done = torch.zeros(B, dtype=torch.bool)
        state = self.decoder.start(mem, hidden) if kv_cache else None
        for step in range(L - 1):
            if state is not None:
                logits = self.decoder.step(ids[:, -1], state).float()  # (B, V)
            else:
                logits = self.decoder(ids, mem, hidden)[:, -1].float()  # (B, V)
            logits[:, BOS] = float("-inf")
            logits[:, UNK] = float("-inf")
            logits = logits.masked_fill(ban, float("-inf"))
            if temperature <= 0:
                nxt = logits.argmax(-1)
            else:
                probs = (logits / temperature).softmax(-1)
                if top_p < 1.0:
                    sp, si = probs.sort(-1, descending=True)
                    keep = sp.cumsum(-1) - sp < top_p  # the first word is always kept
                    probs = torch.zeros_like(probs).scatter(-1, si, sp * keep)
                # exponential race: argmax p / E with E ~ Exp(1) draws word w with probability p_w
                expo = -torch.log(row_uniforms(seeds, step, probs.shape[1]))  # (B, V)
                nxt = (probs.double() / expo).argmax(-1)
            forced = [b for b in range(B) if step < len(pre[b])]
            if forced:
                nxt[forced] = torch.tensor([pre[b][step] for b in forced], dtype=nxt.dtype)
            nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
            ids = torch.cat([ids, nxt[:, None]], 1)
            done |= (nxt == EOS) | (nxt == PAD)
            if bool(done.all()):
                break
        out = []
        for b in range(B):
            row = ids[b, 1:].tolist()
            box = None
            if boxes is not None and not bool(torch.isnan(boxes[b]).any()):
                box = tuple(float(v) for v in boxes[b].tolist())
            out.append(Caption(self.vocab.decode(row), tuple(row), box))  # type: ignore[arg-type]
        return out


# ----------------------------------------------------------------------------------------------- data
def read_pretrain_captions(world_dir: str | os.PathLike) -> list[dict]:
    """Records of ``pretrain/captions.jsonl`` (only ``image`` and ``caption`` are used)."""
    from mipd_kit.teachers.embedded import read_captions
    return read_captions(world_dir)


def is_heldout(image: str, frac: float) -> bool:
    """Whether a pretraining image is held out of captioner training (a stable hash of its path below ``frac``)."""
    h = int.from_bytes(hashlib.sha256(image.encode()).digest()[:8], "big") / 2 ** 64
    return h < frac


def open_image_file(path: str | os.PathLike) -> Image.Image:
    """Decode an image file to RGB; ``CaptionerError`` naming the file when it is missing or undecodable."""
    return read_image_file(path)[0]


def read_image_file(path: str | os.PathLike) -> tuple[Image.Image, bytes]:
    """(RGB image, the file's bytes), reading the file once; ``CaptionerError`` naming the file when it is missing or
    undecodable."""
    p = Path(path)
    try:
        raw = p.read_bytes()
        with Image.open(io.BytesIO(raw)) as im:
            return im.convert("RGB"), raw
    except FileNotFoundError as e:
        raise CaptionerError(f"{p}: image not found") from e
    except Exception as e:  # PIL raises several types for corrupt files
        raise CaptionerError(f"{p}: image failed to decode ({type(e).__name__}: {e})") from e


@torch.no_grad()
def encode_tokens(teacher, images: Sequence[Image.Image], batch_size: int = 128) -> torch.Tensor:
    """Teacher patch tokens of PIL images, (N, T, D) float32."""
    out = []
    for s in range(0, len(images), batch_size):
        out.append(teacher.encode_images(list(images[s:s + batch_size])).tokens.float())
    return torch.cat(out) if out else torch.zeros(0)


def data_fingerprint(world_dir: str | os.PathLike) -> str:
    """sha256 of the pretraining captions file (the corpus identity)."""
    p = Path(world_dir) / "pretrain" / "captions.jsonl"
    if not p.exists():
        raise CaptionerError(f"{p}: pretraining captions not found (generate the world with `mipd synth --out DIR`)")
    return hashlib.sha256(p.read_bytes()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------- training
def _lr_at(step: int, total: int, cfg: CaptionerConfig) -> float:
    warm = max(1, int(cfg.warmup_frac * total))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    p = (step - warm) / max(1, total - warm)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * p))


def random_regions(n: int, p: float, min_side: float, gen: torch.Generator) -> torch.Tensor:
    """(n, 4) normalised random boxes for a fraction ``p`` of rows, NaN rows (whole image) for the rest."""
    use = torch.rand(n, generator=gen) < p
    wh = min_side + (1 - min_side) * torch.rand(n, 2, generator=gen)  # (n, 2)
    xy = (1 - wh) * torch.rand(n, 2, generator=gen)
    boxes = torch.cat([xy, xy + wh], 1)
    boxes[~use] = float("nan")
    return boxes


def train_captioner(world_dir: str | os.PathLike, teacher, cfg: Optional[CaptionerConfig] = None,
                    progress: bool = False) -> Captioner:
    """Train a captioner on the world's pretraining captions, reading the frozen ``teacher``'s patch tokens.

    Only ``image`` and ``caption`` of each pretraining record are read; images with ``is_heldout`` are left out.

    Returns:
        the captioner; ``captioner.info`` holds ``epoch_loss``, ``heldout_loss`` (per epoch), ``wall_time_s``,
        ``n_train``, ``n_heldout``, ``data_fingerprint``, ``threads``.
    """
    cfg = cfg or CaptionerConfig()
    t0 = time.time()
    world = Path(world_dir)
    recs = read_pretrain_captions(world)
    if cfg.max_pairs is not None:
        recs = recs[:cfg.max_pairs]
    train = [r for r in recs if not is_heldout(r["image"], cfg.holdout_frac)]
    held = [r for r in recs if is_heldout(r["image"], cfg.holdout_frac)]
    if not train:
        raise CaptionerError(f"{world / 'pretrain' / 'captions.jsonl'}: no training captions left after holding out "
                             f"{cfg.holdout_frac:.0%}")
    old_threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        vocab = Vocab.build([r["caption"] for r in train], cfg.min_count)

        def tensors(rs: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
            toks = encode_tokens(teacher, [open_image_file(world / r["image"]) for r in rs])
            ids = torch.full((len(rs), cfg.max_len), PAD, dtype=torch.long)
            for i, r in enumerate(rs):
                e = vocab.encode(r["caption"], cfg.max_len)
                ids[i, :len(e)] = torch.tensor(e)
            return toks, ids

        tok_tr, ids_tr = tensors(train)
        tok_he, ids_he = tensors(held) if held else (None, None)
        torch.manual_seed(cfg.seed)
        model = Captioner(cfg, vocab, tok_tr.shape[2], tok_tr.shape[1], tuple(teacher.grid),
                          str(getattr(teacher, "fingerprint", "")))
        gen = torch.Generator().manual_seed(cfg.seed)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        N = len(train)
        bs = min(cfg.batch_size, N)
        steps_per_epoch = max(1, N // bs)
        total = steps_per_epoch * cfg.epochs
        epoch_loss, heldout_loss, step = [], [], 0
        bar = None
        if progress:
            from ..progress import progress as progress_bar
            bar = progress_bar(total=total, desc="captioner training", unit="step")
        for ep in range(cfg.epochs):
            model.train()
            perm = torch.randperm(N, generator=gen)
            losses = []
            for b in range(steps_per_epoch):
                idx = perm[b * bs:(b + 1) * bs]
                boxes = random_regions(len(idx), cfg.region_p, cfg.region_min, gen)
                for g in opt.param_groups:
                    g["lr"] = _lr_at(step, total, cfg)
                loss = model.loss(tok_tr[idx], ids_tr[idx], boxes)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                losses.append(loss.item())
                step += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss.item():.3f}")
            epoch_loss.append(float(np.mean(losses)))
            if tok_he is not None:
                model.eval()
                with torch.no_grad():
                    heldout_loss.append(float(model.loss(tok_he, ids_he).item()))
        if bar is not None:
            bar.close()
        threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(old_threads)
    model.eval()
    model.info = {"epoch_loss": epoch_loss, "heldout_loss": heldout_loss, "wall_time_s": time.time() - t0,
                  "n_train": N, "n_heldout": len(held), "vocab_size": len(vocab), "steps": total,
                  "data_fingerprint": data_fingerprint(world), "threads": threads}
    return model


# ----------------------------------------------------------------------------------------------- save / load
def save_captioner(captioner: Captioner, ckpt_dir: str | os.PathLike, extra: Optional[dict] = None,
                   dtype: str = "fp32") -> Path:
    """Write ``model.safetensors`` and ``captioner.json`` (config, vocabulary, token shape, training record)
    atomically: the folder appears complete or not at all.

    Args:
        dtype: ``fp32`` (the cache) or ``fp16`` (a release: half the bytes; loads back as float32 modules).
    """
    from safetensors.torch import save_file
    if dtype not in ("fp32", "fp16"):
        raise ValueError(f"save_captioner: dtype {dtype!r} is not one of ('fp32', 'fp16')")
    d = Path(ckpt_dir)
    tmp = d.with_name(d.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    want = torch.float16 if dtype == "fp16" else torch.float32
    state = {k: (v.detach().to(want) if v.is_floating_point() else v.detach()).contiguous()
             for k, v in captioner.decoder.state_dict().items() if k != "head.weight"}  # tied to embed.weight
    save_file(state, str(tmp / "model.safetensors"), metadata={"dtype": dtype})
    meta = {"format": FORMAT, "dtype": dtype, "config": asdict(captioner.cfg), "vocab": list(captioner.vocab.words),
            "token_dim": captioner.token_dim, "n_tokens": captioner.n_tokens, "grid": list(captioner.grid),
            "teacher_fingerprint": captioner.teacher_fingerprint, "fingerprint": captioner.fingerprint,
            "info": captioner.info, **(extra or {})}
    (tmp / "captioner.json").write_text(json.dumps(meta, indent=1))
    replace_dir(tmp, d)
    return d


def load_captioner(ckpt_dir: str | os.PathLike) -> Captioner:
    """Load a captioner saved by :func:`save_captioner` (no unpickling; fp16 weights are cast to float32);
    ``CaptionerError`` naming the file."""
    from safetensors.torch import load_file
    d = Path(ckpt_dir)
    mpath = d / "captioner.json"
    try:
        meta = json.loads(mpath.read_text())
    except FileNotFoundError as e:
        raise CaptionerError(f"{mpath}: captioner checkpoint not found") from e
    except json.JSONDecodeError as e:
        raise CaptionerError(f"{mpath}: not valid JSON ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else None
        raise CaptionerError(f"{mpath}: not a captioner checkpoint (format {fmt!r}, expected {FORMAT!r})")
    try:
        cfg = CaptionerConfig.from_dict(meta["config"])
        model = Captioner(cfg, Vocab(tuple(meta["vocab"])), int(meta["token_dim"]), int(meta["n_tokens"]),
                          tuple(meta["grid"]), str(meta.get("teacher_fingerprint", "")))
    except (KeyError, TypeError, ValueError) as e:
        raise CaptionerError(f"{mpath}: malformed captioner record ({e!r})") from e
    wpath = d / "model.safetensors"
    try:
        state = {k: v.float() if v.is_floating_point() else v  # an fp16 release loads as float32 modules
                 for k, v in load_file(str(wpath)).items()}
    except FileNotFoundError as e:
        raise CaptionerError(f"{wpath}: captioner weights not found") from e
    except Exception as e:
        raise CaptionerError(f"{wpath}: corrupt captioner weights ({e})") from e
    state["head.weight"] = state["embed.weight"]
    try:
        model.decoder.load_state_dict(state)
    except RuntimeError as e:
        raise CaptionerError(f"{wpath}: weights do not match {mpath} ({e})") from e
    model.decoder.head.weight = model.decoder.embed.weight
    model.eval()
    model.info = dict(meta.get("info", {}))
    model.checkpoint_dir = d  # type: ignore[attr-defined]
    return model


def checkpoint_dir_for(world_dir: str | os.PathLike, cache_dir: str | os.PathLike, teacher,
                       cfg: CaptionerConfig) -> Path:
    """``cache_dir/captioner/captioner-<sha of config, corpus and teacher fingerprints>``."""
    key = json.dumps({"cfg": cfg.training_key(), "data": data_fingerprint(world_dir),
                      "teacher": str(getattr(teacher, "fingerprint", ""))}, sort_keys=True)
    return Path(cache_dir) / "captioner" / f"captioner-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def load_or_train_captioner(world_dir: str | os.PathLike, cache_dir: str | os.PathLike, teacher,
                            cfg: Optional[CaptionerConfig] = None, progress: bool = False) -> Captioner:
    """Load the checkpoint whose config, corpus and teacher match, or train one and save it.

    ``captioner.loaded_from_cache`` tells which happened.
    """
    cfg = cfg or CaptionerConfig()
    d = checkpoint_dir_for(world_dir, cache_dir, teacher, cfg)
    if (d / "captioner.json").exists() and (d / "model.safetensors").exists():
        c = load_captioner(d)
        c.loaded_from_cache = True  # type: ignore[attr-defined]
        return c
    c = train_captioner(world_dir, teacher, cfg, progress=progress)
    teacher_dir = getattr(teacher, "checkpoint_dir", None)
    save_captioner(c, d, {"teacher_checkpoint": str(teacher_dir) if teacher_dir else None})
    c.checkpoint_dir = d  # type: ignore[attr-defined]
    c.loaded_from_cache = False  # type: ignore[attr-defined]
    return c


def find_captioner_release(cfg: CaptionerConfig, teacher, root: Optional[str | os.PathLike] = None) -> Optional[dict]:
    """The manifest entry of the captioner release trained with ``cfg``'s training key on ``teacher`` (its
    fingerprint), or None."""
    from mipd_kit.weights import list_releases
    key = json.loads(json.dumps(cfg.training_key()))
    tf = str(getattr(teacher, "fingerprint", ""))
    for e in list_releases(root, kind="captioner"):
        if e.get("training_key") == key and e.get("teacher_fingerprint") == tf:
            return e
    return None


def load_released_captioner(name: str, root: Optional[str | os.PathLike] = None) -> Captioner:
    """Load a released captioner by name (``embedded-captioner-default``) after checking every file's sha256; the
    fp16 release loads as float32 modules; ``captioner.weights`` records the release (name + sha256).

    Raises:
        mipd_kit.weights.ReleaseError: unknown name, or a file whose sha256 differs from the manifest.
    """
    from mipd_kit.teachers.embedded import release_provenance
    from mipd_kit.weights import get_release, resolve
    c = load_captioner(resolve(name, root))
    c.loaded_from_cache = True  # type: ignore[attr-defined]
    c.weights = release_provenance(get_release(name, root))  # type: ignore[attr-defined]
    return c


def captioner_for(world_dir: str | os.PathLike, cache_dir: str | os.PathLike, teacher,
                  cfg: Optional[CaptionerConfig] = None, weights: str = "auto",
                  root: Optional[str | os.PathLike] = None, progress: bool = False) -> Captioner:
    """The captioner of a run: the released weights, or one trained on the world (``load_or_train_captioner``).

    A release is used when it was trained with ``cfg``'s training key, on this very ``teacher`` (the released
    teacher: same fingerprint) and on the world's pretraining corpus (same fingerprint).

    Args:
        weights: ``auto`` | ``released`` | ``retrain`` (as the teacher's ``weights``): ``released`` refuses when no
            release matches (naming the corpus fingerprints when they differ); ``auto`` then trains and logs why.
        root: the weights folder (default: the package's, or ``$MIPD_WEIGHTS_DIR``).

    ``captioner.weights`` records what was used: ``{"source": "release", "name", "sha256": {file: hash}}`` or
    ``{"source": "trained", "checkpoint", "reason"}``.
    """
    import logging

    from mipd_kit.teachers.embedded import check_weights_choice
    from mipd_kit.weights import release_mismatch
    log = logging.getLogger(__name__)
    cfg = cfg or CaptionerConfig()
    check_weights_choice(weights)
    reason = "weights: retrain"
    if weights != "retrain":
        e = find_captioner_release(cfg, teacher, root)
        reason = release_mismatch(
            e, "captioner", "corpus_fingerprint", data_fingerprint(world_dir) if e else "", world_dir, weights,
            missing=("no released captioner for this training config and teacher "
                     f"{getattr(teacher, 'fingerprint', '?')} (a release reads the released teacher)")) or ""
        if e is not None and not reason:
            log.info("embedded captioner: released weights %s", e["name"])
            return load_released_captioner(e["name"], root)
    log.info("embedded captioner: training on the world (%s)", reason)
    c = load_or_train_captioner(world_dir, cache_dir, teacher, cfg, progress=progress)
    c.weights = {"source": "trained", "checkpoint": str(getattr(c, "checkpoint_dir", "")),  # type: ignore[attr-defined]
                 "reason": reason}
    return c


# ----------------------------------------------------------------------------------------------- inference
def normalise_box(box: Sequence[float], width: int, height: int, where: str = "") -> tuple[float, float, float, float]:
    """Pixel box ``[x1, y1, x2, y2]`` -> normalised and clipped to the image; ``CaptionerError`` for a zero-area
    box (after clipping) or a malformed one, naming ``where``."""
    try:
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError) as e:
        raise CaptionerError(f"{where}: region box {box!r} is not four numbers") from e
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise CaptionerError(f"{where}: region box {box!r} has a non-finite coordinate")
    nx1, nx2 = (min(max(v / width, 0.0), 1.0) for v in (x1, x2))
    ny1, ny2 = (min(max(v / height, 0.0), 1.0) for v in (y1, y2))
    if nx2 <= nx1 or ny2 <= ny1:
        raise CaptionerError(f"{where}: region box {list(box)} has zero area inside the {width}x{height} image")
    return nx1, ny1, nx2, ny2


@dataclass
class CaptionBatch:
    """Result of :func:`caption_images`: one ``Caption`` or ``None`` (skipped) per request, and the skips."""

    captions: list[Optional[Caption]]
    skipped: list[tuple[int, str]] = field(default_factory=list)


def caption_images(captioner: Captioner, teacher, images: Sequence[str | os.PathLike],
                   boxes: Optional[Sequence[Optional[Sequence[float]]]] = None, *, temperature: float = 0.7,
                   top_p: float = 0.9, seed: int = 0, batch_size: int = 64, max_attempts: int = 3) -> CaptionBatch:
    """Describe many images (glimpses, or gazes where a pixel box is given), with counted skips.

    An image that fails to decode, a zero-area box, or a generation still empty after ``max_attempts`` draws is
    skipped and counted in ``skipped`` as ``(index, reason)``; the other results are kept. Row ``i`` samples with
    seed ``seed + i`` (attempt ``k`` adds ``k * RESEED``).
    """
    n = len(images)
    if boxes is not None and len(boxes) != n:
        raise ValueError(f"{len(boxes)} boxes for {n} images")
    out: list[Optional[Caption]] = [None] * n
    skipped: list[tuple[int, str]] = []
    for s in range(0, n, batch_size):
        ok, ims, bx = [], [], []
        for i in range(s, min(n, s + batch_size)):
            try:
                im = open_image_file(images[i])
                b = (float("nan"),) * 4
                if boxes is not None and boxes[i] is not None:
                    b = normalise_box(boxes[i], im.width, im.height, str(images[i]))
            except CaptionerError as e:
                skipped.append((i, str(e)))
                continue
            ok.append(i)
            ims.append(im)
            bx.append(b)
        if not ok:
            continue
        toks = encode_tokens(teacher, ims)
        bxt = torch.tensor(bx, dtype=torch.float32)
        todo = list(range(len(ok)))  # positions in this batch still without text
        for attempt in range(max(1, max_attempts)):
            caps = captioner.generate(toks[todo], bxt[todo], temperature=temperature, top_p=top_p,
                                      seeds=[seed + ok[j] + attempt * RESEED for j in todo])
            for j, c in zip(todo, caps):
                if c.text.strip():
                    out[ok[j]] = c
            todo = [j for j in todo if out[ok[j]] is None]
            if not todo:
                break
        for j in todo:
            skipped.append((ok[j], f"{images[ok[j]]}: the captioner emitted nothing (only end / padding tokens) "
                                   f"in {max(1, max_attempts)} attempts"))
    skipped.sort()
    return CaptionBatch(out, skipped)


def _text_and_images(messages: Sequence[Message]) -> tuple[str, list[dict], list[Sequence[float]]]:
    texts, images, regions = [], [], []
    for m in messages:
        c = m.get("content", "")
        if isinstance(c, str):
            texts.append(c)
            continue
        for p in c if isinstance(c, list) else []:
            if not isinstance(p, dict):
                continue
            t = p.get("type")
            if t == "text":
                texts.append(str(p.get("text", "")))
            elif t in ("image_path", "image_url"):
                images.append(p)
            elif t == "region":
                regions.append(p.get("box"))
    return "\n".join(texts), images, regions


def _image_source(part: dict) -> tuple[str, str]:
    """(source, identity) of an ``image_path`` or OpenAI ``image_url`` part, without decoding it: a data URL's
    identity is a hash of its bytes, a file's is its path."""
    if part.get("type") == "image_path":
        src = str(part.get("path", ""))
    else:
        u = part.get("image_url")
        src = str(u.get("url", "") if isinstance(u, dict) else u or "")
    if src.startswith("data:"):
        return src, "data-url:" + hashlib.sha256(src.partition(",")[2].encode()).hexdigest()[:16]
    if src.startswith("file://"):
        src = src[len("file://"):]
    if not src:
        raise SamplerError("image part without a path or URL")
    if re.match(r"^[a-z]+://", src):
        raise SamplerError(f"image {src}: the embedded captioner reads files and data: URLs only")
    return src, src


def _content_id(raw: bytes) -> str:
    """The identity of an image's encoded bytes: that of the same bytes sent as a base64 ``data:`` URL (see
    :func:`_image_source`), so a file anywhere and its data URL are one image."""
    return "data-url:" + hashlib.sha256(base64.b64encode(raw)).hexdigest()[:16]


def _open_source(src: str, ident: str) -> tuple[Image.Image, str]:
    """Decode what :func:`_image_source` located: (image, content identity: a data URL's own identity, a file's
    :func:`_content_id`); ``SamplerRequestError`` naming the image if it fails."""
    if src.startswith("data:"):
        head, _, b64 = src.partition(",")
        try:
            raw = base64.b64decode(b64, validate=True)
            with Image.open(io.BytesIO(raw)) as im:
                return im.convert("RGB"), ident
        except (binascii.Error, ValueError) as e:
            raise SamplerRequestError(f"image {ident} ({head}): not valid base64 ({e})") from e
        except Exception as e:
            raise SamplerRequestError(f"image {ident} ({head}): failed to decode ({type(e).__name__}: {e})") from e
    try:
        image, raw = read_image_file(src)
        return image, _content_id(raw)
    except CaptionerError as e:
        raise SamplerRequestError(str(e)) from e


@dataclass
class CaptionerSampler:
    """The captioner behind the ``Sampler`` interface: a vision chat model that describes what it sees.

    Glimpse or gaze: a gaze is asked for by a ``region`` part or a ``Role region: [x1, y1, x2, y2] in a WxH image``
    line (the JRG gaze prompt); anything else is a glimpse. Two more lines are obeyed, the decoding-side hook of a
    re-prompt: ``Avoid these words: w1, w2`` (those words are never sampled: a refinement that steers away from the
    words of a rejected rationale the judge objected to) and ``Begin with: words`` (the description is forced to
    start with them, then continues freely: a hard negative written around a given activity). The prompt's other
    text is not read (the captioner has no instruction following); it only seeds the sampling, so a re-prompt (new
    feedback) draws a new description.

    Attributes:
        captioner: the trained decoder.
        teacher: the frozen teacher whose tokens it reads (must be the one it was trained on).
        temperature, top_p: sampling controls (temperature <= 0: greedy).
        seed: combined with the image's content hash and the prompt text: the same image and prompt get the same reply,
            wherever the image file lies (a path is not part of it).
        max_attempts: re-samples (new seed) when a generation comes out empty; then ``SamplerError``.
        batch_size: > 1: requests arriving from several threads at once (the JRG's parallel chains) are decoded
            together, up to this many per batch (a batch waits at most ``batch_wait_s`` for company). A row's draws
            depend on its own seed only (:func:`row_uniforms`), so batching changes no text except through float
            rounding of batched matrix products (which can, rarely, flip a near-tie); 1 = every request alone.
        batch_wait_s: longest wait for more requests once one is queued.
        token_cache: keep the teacher tokens of this many recent images (a JRG asks about each image ~10 times:
            glimpse, gazes, rounds, hard negatives), so an image is decoded and encoded once; 0 = no cache. Keyed by
            the hash of a data URL's bytes, or a file's path, size and modification time.
    """

    captioner: Captioner
    teacher: Any
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int = 0
    max_attempts: int = 3
    batch_size: int = 1
    batch_wait_s: float = 0.005
    token_cache: int = 1024

    def __post_init__(self):
        tf = str(getattr(self.teacher, "fingerprint", ""))
        if self.captioner.teacher_fingerprint and tf and tf != self.captioner.teacher_fingerprint:
            raise CaptionerError(f"the captioner was trained on teacher {self.captioner.teacher_fingerprint}, "
                                 f"not on the teacher given ({tf})")
        if self.batch_size < 1:
            raise ValueError(f"captioner sampler: batch_size must be >= 1, got {self.batch_size}")
        self._batcher = _Batcher(self.captioner, self.batch_size, self.batch_wait_s) if self.batch_size > 1 else None
        import threading
        from collections import OrderedDict
        self._tokens: "OrderedDict[tuple, tuple[torch.Tensor, tuple[int, int]]]" = OrderedDict()
        self._tokens_lock = threading.Lock()
        self._inflight: dict[tuple, Any] = {}  # key -> Future of the encoding under way
        self.token_cache_hits = 0

    def _image_tokens(self, part: dict) -> tuple[torch.Tensor, tuple[int, int], str, str]:
        """(teacher tokens (1, N, D), image size (w, h), identity, content identity) of an image part, through the LRU
        cache. The identity (a path or a data URL's hash) names the image in messages; the content identity (a hash
        of the image's bytes) seeds the sampling, so the same image gets the same reply wherever its file lies."""
        src, ident = _image_source(part)
        key: tuple = (ident,)
        if not src.startswith("data:"):
            try:
                st = os.stat(src)
                key = (ident, st.st_size, st.st_mtime_ns)
            except OSError:
                key = ()  # missing: let the decoder name it
        if not key or self.token_cache <= 0:
            image, cid = _open_source(src, ident)
            return encode_tokens(self.teacher, [image]), image.size, ident, cid
        from concurrent.futures import Future
        with self._tokens_lock:
            hit = self._tokens.get(key)
            if hit is not None:
                self._tokens.move_to_end(key)
                self.token_cache_hits += 1
                return hit[0], hit[1], ident, hit[2]
            # the chains of one image run side by side: the first request encodes it, the others wait for that
            # result instead of each encoding the same image (the stage's largest cost before)
            fut = self._inflight.get(key)
            owner = fut is None
            if owner:
                fut = self._inflight[key] = Future()
        if not owner:
            toks, size, cid = fut.result()
            with self._tokens_lock:
                self.token_cache_hits += 1
            return toks, size, ident, cid
        try:
            image, cid = _open_source(src, ident)
            toks = encode_tokens(self.teacher, [image])
        except BaseException as e:
            with self._tokens_lock:
                self._inflight.pop(key, None)
            fut.set_exception(e)
            raise
        with self._tokens_lock:
            self._tokens[key] = (toks, image.size, cid)
            while len(self._tokens) > self.token_cache:
                self._tokens.popitem(last=False)
            self._inflight.pop(key, None)
        fut.set_result((toks, image.size, cid))
        return toks, image.size, ident, cid

    def _generate(self, toks: torch.Tensor, boxes: torch.Tensor, seed: int, banned: list[int],
                  prefix: list[int]) -> "Caption":
        """One row through the batcher (or alone): toks (1, N, D), boxes (1, 4)."""
        if self._batcher is not None:
            return self._batcher.submit(toks, boxes, seed, banned, prefix, self.temperature, self.top_p)
        return self.captioner.generate(toks, boxes, temperature=self.temperature, top_p=self.top_p, seeds=[seed],
                                       banned=[banned], prefix=[prefix])[0]

    @property
    def fingerprint(self) -> str:
        return (f"captioner-v1:{self.captioner.fingerprint}:t{self.temperature:g}:p{self.top_p:g}:s{self.seed}"
                f":a{self.max_attempts}")

    def __call__(self, messages: Sequence[Message]) -> Response:
        t0 = time.perf_counter()
        text, parts, regions = _text_and_images(messages)
        if not parts:
            raise SamplerError("captioner: the messages hold no image part (image_path or image_url)")
        if len(parts) > 1:
            raise SamplerError(f"captioner: one image per request, got {len(parts)}")
        toks, size, ident, cid = self._image_tokens(parts[0])
        box = None
        if regions:
            raw = regions[-1]
            where, (w, h) = f"{ident} (region part)", size
        else:
            m = _REGION_LINE.search(text) if "gaze" in text.lower() else None
            raw = [float(m.group(k)) for k in range(1, 5)] if m else None
            where, (w, h) = f"{ident} (Role region line)", (int(m.group(5)), int(m.group(6))) if m else size
        if raw is not None:
            try:
                box = normalise_box(raw, w, h, where)
            except CaptionerError as e:
                raise SamplerRequestError(str(e)) from e
        boxes = torch.tensor([box if box is not None else (float("nan"),) * 4], dtype=torch.float32)
        base = int.from_bytes(hashlib.sha256(f"{self.seed}\x00{cid}\x00{text}".encode()).digest()[:6], "big")
        v = self.captioner.vocab
        avoid = sorted({i for m in _AVOID_LINE.finditer(text) for w in m.group(1).split(",") for i in v.ids_of(w)})
        bm = _BEGIN_LINE.search(text)
        begin = v.ids_of(bm.group(1)) if bm else []
        for attempt in range(1, self.max_attempts + 1):
            cap = self._generate(toks, boxes, base + (attempt - 1) * RESEED, avoid, begin)
            if begin and len(cap.ids) <= len(begin) + 1:  # only the forced words: nothing was seen
                continue
            if cap.text.strip():
                meta = {"backend": "captioner", "model": self.captioner.fingerprint,
                        "kind": "gaze" if box is not None else "glimpse", "box": list(box) if box else None,
                        "image": ident, "temperature": self.temperature, "top_p": self.top_p,
                        "seed": base + (attempt - 1) * RESEED, "attempts": attempt, "n_tokens": len(tokenize(cap.text)),
                        "avoided_words": len(avoid), "forced_words": len(begin),
                        "latency_s": time.perf_counter() - t0}
                return Response(cap.text, tuple(messages), meta)
        raise SamplerRequestError(f"captioner: emitted nothing (only end / padding tokens) for image {ident} in "
                           f"{self.max_attempts} attempts")


class _Batcher:
    """Decodes requests from many threads in batches: a worker thread (started on demand, gone after a second
    without requests) takes the first queued request, waits up to ``wait_s`` for up to ``size - 1`` more with the
    same sampling controls, runs one ``Captioner.generate`` over them and hands each caller its row.

    The worker never outlives a fork or the interpreter: before this process forks (the side-by-side runners of
    ``mipd_kit.machine.fork_map``, a DataLoader's workers) and at exit, every batcher's worker finishes its batch and
    stops (:meth:`stop`), and the fork waits until its threads have ended (``mipd_kit.machine.settle_threads``), so no
    child copies a thread that is inside torch or ending (whose MKL and OpenMP locks it would inherit held), and no
    daemon thread is torn down inside native code at exit. Requests still queued get a new worker after the fork."""

    def __init__(self, captioner: Captioner, size: int, wait_s: float):
        import queue
        import threading
        self.captioner, self.size, self.wait_s = captioner, size, wait_s
        self.q: "queue.Queue" = queue.Queue()
        self.lock = threading.Lock()
        self.worker: Optional[Any] = None
        self.ended = float("-inf")  # time.monotonic() when a worker last ended (its OpenMP team ends after it)
        self.batches = 0
        self.rows = 0
        _BATCHERS.add(self)

    def submit(self, toks: torch.Tensor, boxes: torch.Tensor, seed: int, banned: list[int], prefix: list[int],
               temperature: float, top_p: float) -> "Caption":
        from concurrent.futures import Future
        fut: Future = Future()
        self.q.put((fut, toks, boxes, seed, banned, prefix, (temperature, top_p)))
        self._ensure_worker()
        return fut.result()

    def _ensure_worker(self) -> None:
        import threading
        with self.lock:
            if self.worker is None or not self.worker.is_alive():
                self.worker = threading.Thread(target=self._loop, name="captioner-batcher", daemon=True)
                self.worker.start()

    def stop(self) -> bool:
        """Let the worker finish the batch it is decoding and end; requests queued meanwhile wait for
        :meth:`resume` (or the next :meth:`submit`). Returns whether a worker was stopped."""
        import threading
        with self.lock:  # under the lock: a worker ending for idleness checks the queue under it too
            w = self.worker
            if w is None or w is threading.current_thread() or not w.is_alive():
                return False
            self.q.put(_STOP)
        w.join()
        return True

    def resume(self) -> None:
        """Start a worker again if requests wait (after :meth:`stop`)."""
        if not self.q.empty():
            self._ensure_worker()

    def _reset_in_child(self) -> None:
        """In a forked child: the parent's worker and callers do not exist here; start empty."""
        import queue
        import threading
        self.q, self.lock, self.worker, self.ended = queue.Queue(), threading.Lock(), None, float("-inf")

    def _loop(self) -> None:
        import queue
        while True:
            try:
                first = self.q.get(timeout=1.0)
            except queue.Empty:
                with self.lock:
                    if self.q.empty():
                        self.worker, self.ended = None, time.monotonic()
                        return
                continue
            if first is _STOP:
                with self.lock:
                    self.worker, self.ended = None, time.monotonic()
                return
            batch, held, stop = [first], [], False
            deadline = time.perf_counter() + self.wait_s
            while len(batch) < self.size:
                try:
                    item = self.q.get(timeout=max(0.0, deadline - time.perf_counter()))
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                (batch if item[6] == first[6] else held).append(item)
            for item in held:  # other sampling controls: next batch
                self.q.put(item)
            try:
                temperature, top_p = first[6]
                caps = self.captioner.generate(torch.cat([b[1] for b in batch]), torch.cat([b[2] for b in batch]),
                                               temperature=temperature, top_p=top_p, seeds=[b[3] for b in batch],
                                               banned=[b[4] for b in batch], prefix=[b[5] for b in batch])
                self.batches += 1
                self.rows += len(batch)
                for b, c in zip(batch, caps):
                    b[0].set_result(c)
            except BaseException as e:  # every caller of this batch gets the error
                for b in batch:
                    if not b[0].done():
                        b[0].set_exception(e)
            if stop:
                with self.lock:
                    self.worker, self.ended = None, time.monotonic()
                return


_STOP = object()  # queued by _Batcher.stop: the worker ends after its batch
_BATCHERS: "weakref.WeakSet[_Batcher]" = weakref.WeakSet()


def _stop_batchers() -> None:
    stopped = [b.stop() for b in list(_BATCHERS)]
    recent = any(time.monotonic() - b.ended < 1.0 for b in list(_BATCHERS))
    if any(stopped) or recent:  # an ended worker's OpenMP team (and its native exit) ends a moment after it: wait
        from mipd_kit.machine import settle_threads
        settle_threads()


def _resume_batchers() -> None:
    for b in list(_BATCHERS):
        b.resume()


def _reset_batchers_in_child() -> None:
    for b in list(_BATCHERS):
        b._reset_in_child()


os.register_at_fork(before=_stop_batchers, after_in_parent=_resume_batchers, after_in_child=_reset_batchers_in_child)
atexit.register(_stop_batchers)


# ----------------------------------------------------------------------------------------------- factory
def build_captioner_sampler(cfg: "CaptionerSamplerConfig") -> CaptionerSampler:
    """Load the captioner and its teacher and wrap them as a Sampler; ``CaptionerError`` naming what is missing.

    ``cfg.checkpoint`` (and ``cfg.teacher``) may also name a release (``embedded-captioner-default``, see
    ``mipd_kit.weights``): it is loaded after its sha256 check, with the released teacher it records."""
    if not cfg.checkpoint:
        raise CaptionerError("the captioner backend needs captioner.checkpoint (a folder written by save_captioner)")
    from mipd_kit.teachers.embedded import load_released_teacher, load_teacher
    from mipd_kit.weights import get_release, weights_dir
    ck = Path(cfg.checkpoint)
    if not ck.exists() and get_release(cfg.checkpoint) is not None:  # a release name
        cap = load_released_captioner(cfg.checkpoint)
        ck = weights_dir() / cfg.checkpoint
    else:
        cap = load_captioner(ck)
    meta = json.loads((ck / "captioner.json").read_text())
    tdir = cfg.teacher or meta.get("teacher_checkpoint") or ""
    if not tdir and meta.get("teacher_release"):
        tdir = str(meta["teacher_release"])
        if not (ck.parent / tdir).exists():
            raise CaptionerError(f"{ck / 'captioner.json'}: its teacher release {tdir!r} is not beside it in "
                                 f"{ck.parent}; set captioner.teacher")
        teacher = load_released_teacher(tdir, ck.parent)
    elif not tdir:
        raise CaptionerError(f"{ck / 'captioner.json'}: records no teacher checkpoint; set captioner.teacher")
    elif not Path(tdir).exists() and get_release(tdir) is not None:
        teacher = load_released_teacher(tdir)
    else:
        teacher = load_teacher(tdir)
    return CaptionerSampler(cap, teacher, temperature=cfg.temperature, top_p=cfg.top_p, seed=cfg.seed,
                            max_attempts=cfg.max_attempts)
