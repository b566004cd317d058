"""The embedded captioner's model: an image-conditioned text decoder on the embedded teacher's patch tokens.

An image-grounded text decoder in the manner of BLIP (Li et al., "BLIP: Bootstrapping Language-Image Pre-training
for Unified Vision-Language Understanding and Generation", ICML 2022) and of the language side of BLIP-2 (Li et al.,
ICML 2023): a small causal transformer decoder whose layers cross-attend to the *frozen* teacher's patch tokens
(projected to the decoder width, plus a learned grid position and one region token). Its vocabulary is the words of
the world's pretraining caption corpus (lower-cased word-level tokens and punctuation, ``min_count`` occurrences).

It writes free text token by token (temperature / top-p sampling with counter-based per-row noise, or greedy at
temperature 0): a **glimpse** cross-attends to every token; a **gaze** only to the grid cells a region box overlaps
(:func:`region_mask`), the region token carrying the normalised box.

Here: the vocabulary (``tokenize``, ``Vocab``), ``CaptionerConfig`` (+ ``smoke()``), ``CaptionDecoder``,
``Captioner`` (``loss``, ``generate``), ``Caption``, and what it reads: image files (``read_image_file``), the teacher's
tokens (``encode_tokens``) and normalised region boxes (``normalise_box``).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from mipd_kit.data.records import DataError
from mipd_kit.torch_utils import state_hash

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>", "<unk>")
#: seed offset between two draws for one request whose previous draw came out empty
RESEED = 1_000_003
_TOKEN = re.compile(r"[a-z]+|[0-9]+|[^\sa-z0-9]")
_NO_SPACE_BEFORE = set(",.:;!?)")


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
        from mipd_kit.overrides import known_fields
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
            h.update(state_hash(self.decoder.state_dict()).encode())
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



# ----------------------------------------------------------------------------------------------- inputs
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
