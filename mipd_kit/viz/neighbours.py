"""The run's nearest training images of a test image, for the comparison inspector: cosine similarity of the pooled
image embeddings that the run cached (the student backbone's when the run has one, else the teacher's), centred on
the training images' mean (the component every image shares: without it every similarity of the smoke backbone reads
0.9999).

:func:`nearest_training_images` is the pure part (tensors and names in, ranked neighbours out); :func:`feature_sources`
reads which frozen models a run's students used from a student file's metadata (``sources``: the backbone's and the
teacher's fingerprints), and :func:`load_training_neighbours` reads their pooled embeddings of the training and test
images from the run's feature cache (``cache_dir/features/<world>-<split>/<fingerprint>/``, the folders that stage
distillation wrote). Nothing is trained or encoded here: without cached features there are no neighbours.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Optional, Sequence

if TYPE_CHECKING:
    import torch

#: which frozen model's features, in order of preference: the student's own backbone, then the teacher.
SOURCES: tuple[str, ...] = ("backbone", "teacher")
SOURCE_NAMES: dict[str, str] = {"backbone": "student backbone", "teacher": "teacher"}


@dataclass(frozen=True)
class Neighbour:
    """A training image near a test image: its file name (relative to the image root), its gold verb and the cosine
    similarity of the two pooled embeddings."""

    image: str
    verb: str
    similarity: float


def nearest_training_images(query: "torch.Tensor", train: "torch.Tensor", names: Sequence[str],
                            verbs: Sequence[str], k: int = 5, verb: Optional[str] = None) -> list[Neighbour]:
    """The ``k`` training images most similar to ``query`` (cosine of pooled embeddings), most similar first (ties
    by name); only those of gold verb ``verb`` when it is given (none when no training image has it: an unseen verb).

    Args:
        query: (E,) the test image's pooled embedding.
        train: (N, E) the training images' pooled embeddings, in the order of ``names`` and ``verbs``.
        names: the N training images.
        verbs: their N gold verbs.
    """
    import torch
    import torch.nn.functional as F

    if train.ndim != 2 or query.ndim != 1 or train.shape[1] != query.shape[0]:
        raise ValueError(f"query (E,) and train (N, E) must share E, got {tuple(query.shape)} and {tuple(train.shape)}")
    if len(names) != train.shape[0] or len(verbs) != train.shape[0]:
        raise ValueError(f"{train.shape[0]} training embeddings but {len(names)} names and {len(verbs)} verbs")
    keep = [i for i, v in enumerate(verbs) if verb is None or v == verb]
    if not keep or k <= 0:
        return []
    idx = torch.tensor(keep)
    sims = F.normalize(train[idx].float(), dim=-1) @ F.normalize(query.float(), dim=0)  # (M,)
    order = sorted(range(len(keep)), key=lambda j: (-float(sims[j]), names[keep[j]]))[:k]
    return [Neighbour(names[keep[j]], verbs[keep[j]], round(float(sims[j]), 4)) for j in order]


@dataclass
class TrainingNeighbours:
    """Pooled embeddings of a run's training images (with their gold verbs) and of its test images, from one frozen
    model's cached features.

    Attributes:
        source: ``"student backbone"`` or ``"teacher"``.
        fingerprint: the model's fingerprint (its feature-cache folder).
        train_names / train_verbs: the training images with cached features, and their gold verbs.
        train: (N, E) their pooled embeddings, centred on their mean.
        test: test image -> (E,) its pooled embedding, centred on the same mean (images without cached features
            are absent).
    """

    source: str
    fingerprint: str
    train_names: list[str]
    train_verbs: list[str]
    train: "torch.Tensor"
    test: dict[str, "torch.Tensor"] = field(default_factory=dict)

    def of(self, image: str, k: int = 5, verb: Optional[str] = None) -> list[Neighbour]:
        """:func:`nearest_training_images` of test image ``image`` (empty when it has no cached features)."""
        q = self.test.get(image)
        if q is None:
            return []
        return nearest_training_images(q, self.train, self.train_names, self.train_verbs, k, verb)

    def has_verb(self, verb: str) -> bool:
        return verb in self.train_verbs


def _safetensors_metadata(path: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file (its JSON header only; no tensor is read)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        head = json.loads(f.read(n))
    return dict(head.get("__metadata__") or {})


def feature_sources(run_dir: str | os.PathLike, model: str, seed: int) -> list[tuple[str, str]]:
    """``[(which, fingerprint), ...]`` of the frozen models whose features the run's students read, in the order of
    :data:`SOURCES` (``which``: ``backbone`` / ``teacher``), from ``checkpoints/<model>-seed<seed>.safetensors`` (else
    any student file of the run) and its metadata's ``sources``; empty when the run has no student file."""
    ck = Path(run_dir) / "checkpoints"
    files = [ck / f"{model}-seed{seed}.safetensors"] + sorted(ck.glob("*.safetensors")) if ck.is_dir() else []
    for f in files:
        if not f.is_file():
            continue
        try:
            src = json.loads(_safetensors_metadata(f).get("sources") or "{}")
        except (OSError, ValueError, struct.error):
            continue  # not a student file (or unreadable): try the next one
        out = [(w, str(src[w]["fingerprint"])) for w in SOURCES
               if isinstance(src.get(w), Mapping) and src[w].get("fingerprint")]
        if out:
            return out
    return []


def cache_dirs(run_dir: str | os.PathLike, cache_dir: Optional[str | os.PathLike] = None) -> list[Path]:
    """Where a run's feature cache may be: ``cache_dir`` (when given), then the ``cache_dir`` its stages ran with
    (``status.json``), without repeats."""
    out: list[Path] = [Path(cache_dir)] if cache_dir else []
    try:
        status = json.loads((Path(run_dir) / "status.json").read_text())
        for rec in (status.get("stages") or {}).values():
            c = (rec.get("params") or {}).get("cache_dir") if isinstance(rec, Mapping) else None
            if c:
                out.append(Path(c))
    except (OSError, ValueError):
        pass
    unique: list[Path] = []
    for p in out:
        if all(p.resolve() != q.resolve() for q in unique):
            unique.append(p)
    return unique


def _cached_pooled(cache_dir: Path, dataset: str, fingerprint: str,
                   paths: Mapping[str, Path]) -> dict[str, "torch.Tensor"]:
    """name -> (E,) pooled embedding of each image of ``paths`` that the cache folder holds (only the ``pooled``
    tensor of each shard is read)."""
    from safetensors import safe_open

    from ..data.records import DataError
    from ..teachers.cache import image_key

    index_path = cache_dir / "features" / dataset / fingerprint / "index.json"
    if not index_path.is_file():
        return {}
    keys = json.loads(index_path.read_text()).get("keys") or {}
    where: dict[str, list[tuple[str, int]]] = {}
    for name, p in paths.items():
        try:
            k = image_key(p)
        except DataError:
            continue  # the image is not on disk
        if k in keys:
            shard, row = keys[k]
            where.setdefault(shard, []).append((name, int(row)))
    out: dict[str, "torch.Tensor"] = {}
    for shard, items in where.items():
        with safe_open(str(index_path.parent / shard), framework="pt") as f:
            pooled = f.get_tensor("pooled")  # (n, E)
        for name, row in items:
            out[name] = pooled[row].float()
    return out


def load_training_neighbours(run_dir: str | os.PathLike, world_dir: str | os.PathLike,
                             cache_dir: Optional[str | os.PathLike] = None, model: str = "mipd", seed: int = 0,
                             test_file: str = "test.json",
                             image_root: Optional[str | os.PathLike] = None) -> Optional[TrainingNeighbours]:
    """The cached pooled embeddings of the training images (``world_dir/train.json``) and the test images
    (``world_dir/<test_file>``) of the first model of :func:`feature_sources` that has both in the cache
    (:func:`cache_dirs`); None when none has (no student file, or a cache that was deleted or lives elsewhere)."""
    world = Path(world_dir)
    root = Path(image_root) if image_root is not None else world / "images"
    train_path, test_path = world / "train.json", world / test_file
    if not train_path.is_file() or not test_path.is_file():
        return None
    train_gt = json.loads(train_path.read_text())
    test_names = list(json.loads(test_path.read_text()))
    name = world.name or "world"
    ds_train, ds_test = f"{name}-train", f"{name}-{Path(test_file).stem}"
    for which, fp in feature_sources(run_dir, model, seed):
        for cdir in cache_dirs(run_dir, cache_dir):
            tr = _cached_pooled(cdir, ds_train, fp, {n: root / n for n in train_gt})
            if not tr:
                continue
            te = _cached_pooled(cdir, ds_test, fp, {n: root / n for n in test_names})
            if not te:
                continue
            import torch

            names = sorted(tr)
            x = torch.stack([tr[n] for n in names])  # (N, E)
            mean = x.mean(0)
            return TrainingNeighbours(SOURCE_NAMES[which], fp, names, [str(train_gt[n]["verb"]) for n in names],
                                      x - mean, {n: v - mean for n, v in te.items()})
    return None


def describe(nb: Optional[TrainingNeighbours]) -> str:
    """One line on where the neighbours come from, e.g. ``student backbone features (91a9dee4c9f6c1e6), cosine
    centred on 300 training images``."""
    if nb is None:
        return "no cached features of this run's frozen models: no nearest training images"
    return f"{nb.source} features ({nb.fingerprint}), cosine centred on {len(nb.train_names)} training images"
