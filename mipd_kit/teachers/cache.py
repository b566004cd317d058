"""Feature cache: teacher image / text features per (dataset, teacher fingerprint), sharded safetensors + index.

Layout (one folder per dataset and fingerprint, so a changed fingerprint can never reuse old features)::

    cache_dir/features/<dataset>/<fingerprint>/
        index.json            {"format", "fingerprint", "dataset", "kind": "image"|"text", "grid",
                               "shards": {file: {"rows": n, "bytes": size}}, "keys": {key: [file, row]}}
        shard_000000.safetensors   tokens (n, T, D) float16, pooled (n, E) float32, mask (n, T) bool

Keys: for images the real path plus size and mtime of the file (an edited image is a cache miss), for texts a
sha256 of the text. Extraction runs in batches, with a tqdm progress bar, over the missing keys only, one shard
at a time: a shard is written to a uniquely named temporary file, then -- under the folder's lock -- renamed to a
shard name that is free on disk and in the index, and the index is re-read, updated and rewritten atomically. So
after a kill the finished shards are kept and only the partial one is redone. A second run with everything present
does no model forward. Text token sequences of different lengths are zero-padded to the longest (mask False).

Concurrency: several processes (or threads) may extract into one folder at once. Every index update is a
read-modify-write under an exclusive lock (``index.lock``), shards are never overwritten, and before each shard an
extractor re-reads the index and skips the keys another process has finished meanwhile. Nothing is lost and no key
points at another key's features.

The same cache serves any ``Teacher`` (embedded, open_clip, transformers, the student backbone) and the
encoded rationale texts.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch
from PIL import Image

from ..data.records import DataError
from ..fileio import atomic_write_text, file_lock, move_into_place, unique_tmp
from .base import Encoded, Teacher, open_image  # noqa: F401  (open_image re-exported: importable from here too)

FORMAT = "mipd-feature-cache/1"
#: rows per shard (a killed run loses at most one shard of work)
DEFAULT_SHARD_ROWS = 1024


class CacheError(DataError):
    """A cache file is corrupt, truncated or written by another teacher; the message names it and what to do."""


def image_key(path: str | os.PathLike, _dirs: Optional[dict[str, str]] = None) -> str:
    """Cache key of an image file: real path, size and modification time (raises DataError if missing).

    ``_dirs`` memoises the real path of parent folders across calls (``image_keys`` passes one).
    """
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except FileNotFoundError as e:
        raise DataError(f"{p}: image not found") from e
    head, name = os.path.split(p)
    if _dirs is None:
        real_dir = os.path.realpath(head or ".")
    else:
        real_dir = _dirs.get(head)
        if real_dir is None:
            real_dir = _dirs[head] = os.path.realpath(head or ".")
    if os.path.islink(p):
        return f"{os.path.realpath(p)}|{st.st_size}|{st.st_mtime_ns}"
    return f"{os.path.join(real_dir, name)}|{st.st_size}|{st.st_mtime_ns}"


def image_keys(paths: Sequence[str | os.PathLike]) -> list[str]:
    """``image_key`` of many files, resolving each parent folder once."""
    dirs: dict[str, str] = {}
    return [image_key(p, dirs) for p in paths]


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class FeatureCache:
    """One (dataset, fingerprint) folder of the cache."""

    def __init__(self, cache_dir: str | os.PathLike, dataset: str, fingerprint: str, kind: str,
                 grid: Optional[tuple[int, int]] = None):
        if not dataset or "/" in dataset or dataset.startswith("."):
            raise ValueError(f"dataset name {dataset!r} must be a plain folder name")
        self.dir = Path(cache_dir) / "features" / dataset / fingerprint
        self.dataset, self.fingerprint, self.kind = dataset, fingerprint, kind
        self.grid = list(grid) if grid is not None else None
        self.index_path = self.dir / "index.json"
        self.lock_path = self.dir / "index.lock"
        self.index = self._read_index()

    def refresh(self) -> None:
        """Re-read the index from disk (another process may have added shards)."""
        self.index = self._read_index()

    def _read_index(self) -> dict:
        if not self.index_path.exists():
            return {"format": FORMAT, "fingerprint": self.fingerprint, "dataset": self.dataset, "kind": self.kind,
                    "grid": self.grid, "shards": {}, "keys": {}}
        try:
            idx = json.loads(self.index_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CacheError(f"{self.index_path}: corrupt cache index ({e}); delete the folder {self.dir} "
                             "and extract again") from e
        if not isinstance(idx, dict) or idx.get("format") != FORMAT:
            raise CacheError(f"{self.index_path}: not a {FORMAT} index; delete the folder {self.dir}")
        if idx.get("fingerprint") != self.fingerprint:
            raise CacheError(f"{self.index_path}: written by teacher fingerprint {idx.get('fingerprint')!r}, "
                             f"not {self.fingerprint!r}; the folder was moved or copied -- delete it")
        if idx.get("kind") != self.kind:
            raise CacheError(f"{self.index_path}: holds {idx.get('kind')} features, not {self.kind}")
        return idx

    def missing(self, keys: Sequence[str]) -> list[str]:
        have = self.index["keys"]
        seen: set[str] = set()
        out = []
        for k in keys:
            if k not in have and k not in seen:
                seen.add(k)
                out.append(k)
        return out

    def _next_shard_name(self) -> str:
        """First ``shard_NNNNNN`` name free in the index and on disk (call under the lock)."""
        n = len(self.index["shards"])
        while True:
            name = f"shard_{n:06d}.safetensors"
            if name not in self.index["shards"] and not (self.dir / name).exists():
                return name
            n += 1

    def add_shard(self, keys: Sequence[str], enc: Encoded) -> str:
        """Write one finished shard, then under the lock rename it to a free name and update the index."""
        from safetensors.torch import save_file
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = unique_tmp(self.dir / "shard.safetensors")
        try:
            save_file({"tokens": enc.tokens.detach().to(torch.float16).contiguous(),
                       "pooled": enc.pooled.detach().to(torch.float32).contiguous(),
                       "mask": enc.mask.detach().to(torch.bool).contiguous()}, str(tmp),
                      metadata={"fingerprint": self.fingerprint, "dataset": self.dataset})
            with file_lock(self.lock_path):
                self.refresh()
                name = self._next_shard_name()
                path = self.dir / name
                move_into_place(tmp, path)
                self.index["shards"][name] = {"rows": len(keys), "bytes": path.stat().st_size}
                for r, k in enumerate(keys):
                    self.index["keys"].setdefault(k, [name, r])  # keep a key another process finished first
                atomic_write_text(self.index_path, json.dumps(self.index))
        finally:
            tmp.unlink(missing_ok=True)
        return name

    def _load_shard(self, name: str) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file
        path = self.dir / name
        meta = self.index["shards"].get(name)
        advice = f"delete {path} and its folder's index.json (or the whole folder {self.dir}) and extract again"
        if not path.exists():
            raise CacheError(f"{path}: shard listed in {self.index_path} is missing; {advice}")
        if meta is not None and path.stat().st_size != meta["bytes"]:
            raise CacheError(f"{path}: truncated or modified shard ({path.stat().st_size} bytes, index says "
                             f"{meta['bytes']}); {advice}")
        try:
            t = load_file(str(path))
        except Exception as e:
            raise CacheError(f"{path}: corrupt shard ({type(e).__name__}: {e}); {advice}") from e
        if set(t) != {"tokens", "pooled", "mask"} or (meta is not None and len(t["pooled"]) != meta["rows"]):
            raise CacheError(f"{path}: shard does not match the index (tensors {sorted(t)}); {advice}")
        return t

    def gather(self, keys: Sequence[str], dtype: torch.dtype = torch.float32) -> Encoded:
        """Features of ``keys`` in that order, tokens zero-padded to the longest shard's length."""
        where = [self.index["keys"][k] for k in keys]
        by_shard: dict[str, list[int]] = {}
        for i, (s, _) in enumerate(where):
            by_shard.setdefault(s, []).append(i)
        shards = {s: self._load_shard(s) for s in by_shard}
        if not shards:
            raise ValueError("nothing to gather (no keys)")
        T = max(t["tokens"].shape[1] for t in shards.values())
        any_t = next(iter(shards.values()))
        D, E = any_t["tokens"].shape[2], any_t["pooled"].shape[1]
        tokens = torch.zeros(len(keys), T, D, dtype=dtype)
        pooled = torch.zeros(len(keys), E, dtype=torch.float32)
        mask = torch.zeros(len(keys), T, dtype=torch.bool)
        for s, pos in by_shard.items():
            t = shards[s]
            rows = torch.tensor([where[i][1] for i in pos])
            p = torch.tensor(pos)
            L = t["tokens"].shape[1]
            tokens[p, :L] = t["tokens"][rows].to(dtype)
            pooled[p] = t["pooled"][rows]
            mask[p, :L] = t["mask"][rows]
        return Encoded(tokens, pooled, mask)


def _pad_cat(parts: list[Encoded]) -> Encoded:
    T = max(p.tokens.shape[1] for p in parts)
    toks, masks = [], []
    for p in parts:
        pad = T - p.tokens.shape[1]
        toks.append(torch.nn.functional.pad(p.tokens, (0, 0, 0, pad)))
        masks.append(torch.nn.functional.pad(p.mask, (0, pad), value=False))
    return Encoded(torch.cat(toks), torch.cat([p.pooled for p in parts]), torch.cat(masks))


def _extract(cache: FeatureCache, keys: list[str], items: list, encode: Callable[[list], Encoded],
             batch_size: int, shard_rows: int, desc: str, progress: bool) -> None:
    """Encode ``items`` (aligned with missing ``keys``) shard by shard."""
    if not keys:
        return
    bar = None
    if progress:
        from ..progress import progress as progress_bar
        bar = progress_bar(total=len(keys), desc=desc, unit="item")
    try:
        for s in range(0, len(keys), shard_rows):
            k_sh, it_sh = keys[s:s + shard_rows], items[s:s + shard_rows]
            cache.refresh()  # another process may have extracted some of these meanwhile
            keep = [i for i, k in enumerate(k_sh) if k not in cache.index["keys"]]
            if bar is not None and len(keep) < len(k_sh):
                bar.update(len(k_sh) - len(keep))
            if not keep:
                continue
            k_sh, it_sh = [k_sh[i] for i in keep], [it_sh[i] for i in keep]
            parts = []
            for b in range(0, len(k_sh), batch_size):
                parts.append(encode(it_sh[b:b + batch_size]))
                if bar is not None:
                    bar.update(len(it_sh[b:b + batch_size]))
            cache.add_shard(k_sh, _pad_cat(parts))
    finally:
        if bar is not None:
            bar.close()


class LazyTokens:
    """The token rows of cached features, read from the memory-mapped shards when indexed: ``x[idx]`` -> (B, T, D)
    ``dtype`` (zero-padded to the longest shard). Nothing but the (key -> shard, row) table is held in memory, so a
    cache far larger than RAM (BLIP-2's 257 x 1408 fp16 tokens for 75k SWiG images are ~54 GB) streams from disk.

    Args:
        cache: the cache folder holding every key.
        keys: row order.
        dtype: dtype of the returned rows.
    """

    def __init__(self, cache: FeatureCache, keys: Sequence[str], dtype: torch.dtype = torch.float32):
        from safetensors import safe_open

        self.cache, self.dtype = cache, dtype
        self.where = [cache.index["keys"][k] for k in keys]
        self._open: dict[str, object] = {}
        self._safe_open = safe_open
        shapes = {s: self._handle(s).get_slice("tokens").get_shape() for s in {s for s, _ in self.where}}
        T = max(int(sh[1]) for sh in shapes.values())
        D = {int(sh[2]) for sh in shapes.values()}
        if len(D) != 1:
            raise CacheError(f"{cache.dir}: shards of different token widths {sorted(D)}; delete the folder")
        self.shape = torch.Size((len(self.where), T, D.pop()))

    def _handle(self, name: str):
        if name not in self._open:
            path = self.cache.dir / name
            if not path.exists():
                raise CacheError(f"{path}: shard listed in {self.cache.index_path} is missing; delete the folder "
                                 f"{self.cache.dir} and extract again")
            self._open[name] = self._safe_open(str(path), framework="pt")
        return self._open[name]

    def __len__(self) -> int:
        return self.shape[0]

    def pooled(self) -> torch.Tensor:
        """(N, E) float32 pooled embeddings of the rows (small: read whole, shard by shard)."""
        by_shard: dict[str, list[int]] = {}
        for i, (sh, _) in enumerate(self.where):
            by_shard.setdefault(sh, []).append(i)
        out: Optional[torch.Tensor] = None
        for sh, pos in by_shard.items():
            t = self._handle(sh).get_tensor("pooled")  # (rows, E)
            if out is None:
                out = torch.zeros(len(self.where), t.shape[1], dtype=torch.float32)
            out[torch.tensor(pos)] = t[torch.tensor([self.where[i][1] for i in pos])].float()
        assert out is not None
        return out

    def __getitem__(self, idx) -> torch.Tensor:
        rows = torch.arange(len(self))[idx]
        rows = rows.reshape(-1).tolist() if rows.dim() else [int(rows)]
        out = torch.zeros(len(rows), self.shape[1], self.shape[2], dtype=self.dtype)  # (B, T, D)
        for i, r in enumerate(rows):
            shard, row = self.where[r]
            t = self._handle(shard).get_slice("tokens")[row:row + 1]  # (1, L, D) read from the mapped file
            out[i, :t.shape[1]] = t[0].to(self.dtype)
        return out if torch.arange(len(self))[idx].dim() else out[0]


def _ensure_images(teacher: Teacher, image_paths: Sequence[str | os.PathLike], cache_dir: str | os.PathLike,
                   dataset: str, batch_size: int, shard_rows: int, progress: bool) -> tuple[FeatureCache, list[str]]:
    """Extract what the cache lacks of ``image_paths``; the cache and the keys in path order."""
    paths = [Path(p) for p in image_paths]
    if not paths:
        raise ValueError("cached_image_features: no image paths")
    cache = FeatureCache(cache_dir, dataset, teacher.fingerprint, "image", tuple(teacher.grid))
    keys = image_keys(paths)
    # the missing texts in a fixed order (by key), so the encoder's batches, and the last bits of a batched encoder's
    # output (its padding follows the batch), depend on which texts are new, not on the order they were asked for
    todo = sorted(cache.missing(keys))
    if todo:
        first = {}
        for k, p in zip(keys, paths):
            first.setdefault(k, p)
        _extract(cache, todo, [first[k] for k in todo],
                 lambda ps: teacher.encode_images([open_image(p) for p in ps]),
                 batch_size, shard_rows, f"features {dataset}", progress)
    return cache, keys


def cached_image_features(teacher: Teacher, image_paths: Sequence[str | os.PathLike], cache_dir: str | os.PathLike,
                          dataset: str, batch_size: int = 64, shard_rows: int = DEFAULT_SHARD_ROWS,
                          progress: bool = True, dtype: torch.dtype = torch.float32) -> Encoded:
    """Teacher image features of ``image_paths`` (in that order), extracting only what the cache lacks.

    Returns:
        ``Encoded`` with tokens (N, T, D) (stored float16, returned as ``dtype``), pooled (N, E) float32,
        mask (N, T), all in memory (see :func:`lazy_image_tokens` for a cache larger than RAM).

    Raises:
        DataError: an image is missing or unreadable (named). CacheError: a shard / index is corrupt (named).
    """
    cache, keys = _ensure_images(teacher, image_paths, cache_dir, dataset, batch_size, shard_rows, progress)
    return cache.gather(keys, dtype)


def lazy_image_tokens(teacher: Teacher, image_paths: Sequence[str | os.PathLike], cache_dir: str | os.PathLike,
                      dataset: str, batch_size: int = 64, shard_rows: int = DEFAULT_SHARD_ROWS,
                      progress: bool = True, dtype: torch.dtype = torch.float32) -> LazyTokens:
    """Like :func:`cached_image_features`, but the tokens stay on disk: a :class:`LazyTokens` reading rows on
    demand (what the student's cached-feature backbone trains on)."""
    cache, keys = _ensure_images(teacher, image_paths, cache_dir, dataset, batch_size, shard_rows, progress)
    return LazyTokens(cache, keys, dtype)


def cached_text_features(teacher: Teacher, texts: Sequence[str], cache_dir: str | os.PathLike,
                         dataset: str = "texts", batch_size: int = 256, shard_rows: int = 4096,
                         progress: bool = True, dtype: torch.dtype = torch.float32) -> Encoded:
    """Teacher text features (tokens (N, L, D), pooled (N, E), mask (N, L)) of ``texts``, cached by text hash.

    The texts not yet in the cache are encoded in the order of their keys, whatever the order of ``texts``: two runs
    that ask for the same texts in another order (e.g. rationale records written as their jobs completed) get the
    same bits."""
    texts = [str(t) for t in texts]
    if not texts:
        raise ValueError("cached_text_features: no texts")
    cache = FeatureCache(cache_dir, dataset, teacher.fingerprint, "text")
    keys = [text_key(t) for t in texts]
    # the missing texts in a fixed order (by key), so the encoder's batches, and the last bits of a batched encoder's
    # output (its padding follows the batch), depend on which texts are new, not on the order they were asked for
    todo = sorted(cache.missing(keys))
    if todo:
        first = {}
        for k, t in zip(keys, texts):
            first.setdefault(k, t)
        _extract(cache, todo, [first[k] for k in todo], lambda ts: teacher.encode_texts(list(ts)),
                 batch_size, shard_rows, f"text features {dataset}", progress)
    return cache.gather(keys, dtype)


# ----------------------------------------------------------------------------------------------- CLI
def world_image_lists(world_dir: str | os.PathLike) -> dict[str, list[Path]]:
    """Image paths of a SynthSitu / SWiG world folder per dataset name: train, dev, test, unlabeled."""
    w = Path(world_dir)
    out = {}
    for split in ("train", "dev", "test"):
        p = w / f"{split}.json"
        if p.exists():
            try:
                names = sorted(json.loads(p.read_text()))
            except json.JSONDecodeError as e:
                raise DataError(f"{p}: not valid JSON ({e})") from e
            out[split] = [w / "images" / n for n in names]
    p = w / "unlabeled.json"
    if p.exists():
        try:
            out["unlabeled"] = [w / "images" / n for n in json.loads(p.read_text())["images"]]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DataError(f"{p}: expected {{'images': [names]}} ({e!r})") from e
    return out


def cache_world_features(teacher: Teacher, world_dir: str | os.PathLike, cache_dir: str | os.PathLike,
                         splits: Sequence[str] = ("train", "dev", "test", "unlabeled"), batch_size: int = 64,
                         prefix: Optional[str] = None, progress: bool = True) -> dict[str, LazyTokens]:
    """Cache the image features of a world's splits as datasets ``<prefix>-<split>`` (prefix: world folder name).

    Splits absent from the world are skipped. Returns split -> :class:`LazyTokens` (the features stay on disk:
    a real dataset's cache is larger than RAM).
    """
    lists = world_image_lists(world_dir)
    prefix = prefix or Path(world_dir).resolve().name
    return {split: lazy_image_tokens(teacher, lists[split], cache_dir, f"{prefix}-{split}", batch_size,
                                     progress=progress)
            for split in splits if split in lists}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``mipd features extract --world DIR --cache DIR [--teacher embedded|tiny] [--smoke] [--splits ...]``."""
    ap = argparse.ArgumentParser(prog="mipd features", description="extract and cache teacher features")
    ap.add_argument("action", choices=["extract"])
    ap.add_argument("--world", required=True, help="world folder (train/dev/test.json, unlabeled.json, images/)")
    ap.add_argument("--cache", default="data/cache", help="cache folder")
    ap.add_argument("--teacher", default="embedded", choices=["embedded", "tiny"],
                    help="embedded: load or train the embedded teacher; tiny: TinyRandomTeacher (wiring only)")
    ap.add_argument("--smoke", action="store_true", help="embedded teacher smoke config")
    ap.add_argument("--splits", nargs="*", default=["train", "dev", "test", "unlabeled"])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--dataset-prefix", default=None, help="dataset name prefix (default: the world folder name)")
    a = ap.parse_args(list(argv) if argv is not None else None)
    try:
        from .backends import TeacherConfig, build_teacher
        tcfg = TeacherConfig(backend=a.teacher, size="smoke" if a.smoke else "default")
        teacher = build_teacher(tcfg.with_paths(a.world, a.cache), progress=True)
        lists = world_image_lists(a.world)
        for split in a.splits:
            if split not in lists:
                print(f"  {split}: not in {a.world}, skipped")
                continue
        feats = cache_world_features(teacher, a.world, a.cache, a.splits, a.batch_size, a.dataset_prefix)
        for split, enc in feats.items():
            print(f"  {split}: {tuple(enc.shape)} tokens "
                  f"(fingerprint {teacher.fingerprint})")
    except DataError as e:
        print(f"mipd features: {e}", file=sys.stderr)
        return 2
    return 0
