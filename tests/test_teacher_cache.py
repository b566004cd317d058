"""Feature cache: round trip, cache hit without forward, resume after a kill, fingerprints, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mipd_kit.data.records import DataError
from mipd_kit.teachers.base import Encoded, Teacher
from mipd_kit.teachers.cache import (CacheError, cached_image_features, cached_text_features, main,
                                     world_image_lists)
from mipd_kit.teachers.tiny import TinyRandomTeacher


class CountingTeacher:
    """Wraps a teacher, counting forwards; optionally dies after ``die_after`` image batches (a 'kill')."""

    def __init__(self, inner, die_after: int | None = None):
        self.inner, self.die_after = inner, die_after
        self.image_calls = self.image_items = self.text_calls = 0
        self.grid = inner.grid

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    def encode_images(self, images):
        if self.die_after is not None and self.image_calls >= self.die_after:
            raise KeyboardInterrupt("simulated kill")
        self.image_calls += 1
        self.image_items += len(images)
        return self.inner.encode_images(images)

    def encode_texts(self, texts):
        self.text_calls += 1
        return self.inner.encode_texts(texts)


def write_images(d: Path, n: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = d / f"im_{i:03d}.png"
        Image.fromarray(rng.integers(0, 255, (24, 20, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_counting_teacher_is_a_teacher():
    assert isinstance(CountingTeacher(TinyRandomTeacher()), Teacher)


def test_image_round_trip_and_cache_hit(tmp_path):
    paths = write_images(tmp_path / "imgs", 10)
    t = CountingTeacher(TinyRandomTeacher())
    direct = t.inner.encode_images([Image.open(p) for p in paths])
    enc = cached_image_features(t, paths, tmp_path / "cache", "toy", batch_size=4, shard_rows=4, progress=False)
    assert enc.tokens.shape == direct.tokens.shape and enc.tokens.dtype == torch.float32
    assert enc.pooled.shape == direct.pooled.shape and enc.mask.dtype == torch.bool
    torch.testing.assert_close(enc.tokens, direct.tokens, atol=2e-3, rtol=2e-3)  # stored float16
    torch.testing.assert_close(enc.pooled, direct.pooled)
    assert t.image_items == 10
    folder = tmp_path / "cache" / "features" / "toy" / t.fingerprint
    assert len(list(folder.glob("shard_*.safetensors"))) == 3
    # second run: everything from the cache, no forward, same order also for a permutation with repeats
    t2 = CountingTeacher(TinyRandomTeacher())
    order = [paths[3], paths[0], paths[3], paths[9]]
    enc2 = cached_image_features(t2, order, tmp_path / "cache", "toy", progress=False)
    assert t2.image_calls == 0
    torch.testing.assert_close(enc2.pooled, direct.pooled[[3, 0, 3, 9]])


def test_resume_after_kill_redoes_only_the_partial_shard(tmp_path):
    paths = write_images(tmp_path / "imgs", 12)
    cache = tmp_path / "cache"
    killer = CountingTeacher(TinyRandomTeacher(), die_after=5)  # batches of 2, shards of 4: dies inside shard 3
    with pytest.raises(KeyboardInterrupt):
        cached_image_features(killer, paths, cache, "toy", batch_size=2, shard_rows=4, progress=False)
    folder = cache / "features" / "toy" / killer.fingerprint
    assert len(json.loads((folder / "index.json").read_text())["keys"]) == 8  # two finished shards kept
    t = CountingTeacher(TinyRandomTeacher())
    enc = cached_image_features(t, paths, cache, "toy", batch_size=2, shard_rows=4, progress=False)
    assert t.image_items == 4  # only the partial shard was redone
    direct = TinyRandomTeacher().encode_images([Image.open(p) for p in paths])
    torch.testing.assert_close(enc.pooled, direct.pooled)


def test_changed_fingerprint_never_reuses(tmp_path):
    paths = write_images(tmp_path / "imgs", 3)
    a, b = CountingTeacher(TinyRandomTeacher(seed=0)), CountingTeacher(TinyRandomTeacher(seed=1))
    assert a.fingerprint != b.fingerprint
    ea = cached_image_features(a, paths, tmp_path / "c", "toy", progress=False)
    eb = cached_image_features(b, paths, tmp_path / "c", "toy", progress=False)
    assert b.image_items == 3
    assert not torch.allclose(ea.pooled, eb.pooled)


def test_edited_image_is_a_cache_miss(tmp_path):
    paths = write_images(tmp_path / "imgs", 2)
    t = CountingTeacher(TinyRandomTeacher())
    cached_image_features(t, paths, tmp_path / "c", "toy", progress=False)
    Image.fromarray(np.zeros((30, 30, 3), dtype=np.uint8)).save(paths[1])
    t2 = CountingTeacher(TinyRandomTeacher())
    enc = cached_image_features(t2, paths, tmp_path / "c", "toy", progress=False)
    assert t2.image_items == 1
    torch.testing.assert_close(enc.pooled[1], t2.inner.encode_images([Image.open(paths[1])]).pooled[0])


def test_text_round_trip_with_padding_across_shards(tmp_path):
    t = CountingTeacher(TinyRandomTeacher())
    texts = ["a dog", "a person rides a horse on a sunny beach", "x", "a dog"]
    direct = t.inner.encode_texts(texts)
    enc = cached_text_features(t, texts, tmp_path / "c", batch_size=1, shard_rows=1, progress=False)
    assert enc.tokens.shape[0] == 4 and enc.mask.sum(1).tolist() == direct.mask.sum(1).tolist()
    torch.testing.assert_close(enc.pooled, direct.pooled)
    L = enc.tokens.shape[1]
    torch.testing.assert_close(enc.tokens, direct.tokens[:, :L], atol=2e-3, rtol=2e-3)
    assert t.text_calls == 3  # the duplicate text is encoded once
    t2 = CountingTeacher(TinyRandomTeacher())
    cached_text_features(t2, texts[::-1], tmp_path / "c", progress=False)
    assert t2.text_calls == 0


def test_truncated_shard_is_a_clear_error(tmp_path):
    paths = write_images(tmp_path / "imgs", 3)
    t = TinyRandomTeacher()
    cached_image_features(t, paths, tmp_path / "c", "toy", progress=False)
    shard = next((tmp_path / "c" / "features" / "toy" / t.fingerprint).glob("shard_*.safetensors"))
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(CacheError, match=r"shard_000000\.safetensors.*delete"):
        cached_image_features(t, paths, tmp_path / "c", "toy", progress=False)


def test_corrupt_shard_same_size_is_a_clear_error(tmp_path):
    paths = write_images(tmp_path / "imgs", 3)
    t = TinyRandomTeacher()
    cached_image_features(t, paths, tmp_path / "c", "toy", progress=False)
    shard = next((tmp_path / "c" / "features" / "toy" / t.fingerprint).glob("shard_*.safetensors"))
    shard.write_bytes(b"\xff" * shard.stat().st_size)
    with pytest.raises(CacheError, match="corrupt shard"):
        cached_image_features(t, paths, tmp_path / "c", "toy", progress=False)


def test_index_of_another_fingerprint_is_refused(tmp_path):
    paths = write_images(tmp_path / "imgs", 2)
    a, b = TinyRandomTeacher(seed=0), TinyRandomTeacher(seed=1)
    cached_image_features(a, paths, tmp_path / "c", "toy", progress=False)
    root = tmp_path / "c" / "features" / "toy"
    (root / a.fingerprint).rename(root / b.fingerprint)  # someone copied a folder under another teacher's name
    with pytest.raises(CacheError, match="written by teacher fingerprint"):
        cached_image_features(b, paths, tmp_path / "c", "toy", progress=False)


def test_unreadable_image_is_named(tmp_path):
    paths = write_images(tmp_path / "imgs", 2)
    bad = tmp_path / "imgs" / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png"):
        cached_image_features(TinyRandomTeacher(), [*paths, bad], tmp_path / "c", "toy", progress=False)
    with pytest.raises(DataError, match="missing.png"):
        cached_image_features(TinyRandomTeacher(), [tmp_path / "missing.png"], tmp_path / "c", "toy", progress=False)


def test_features_cli_on_a_world_folder(tmp_path, capsys):
    w = tmp_path / "world"
    paths = write_images(w / "images", 6)
    names = [p.name for p in paths]
    (w / "train.json").write_text(json.dumps({n: {} for n in names[:3]}))
    (w / "test.json").write_text(json.dumps({n: {} for n in names[3:5]}))
    (w / "unlabeled.json").write_text(json.dumps({"images": names[5:]}))
    assert set(world_image_lists(w)) == {"train", "test", "unlabeled"}
    assert main(["extract", "--world", str(w), "--cache", str(tmp_path / "c"), "--teacher", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "train: (3, 16, 32)" in out and "unlabeled: (1, 16, 32)" in out and "dev: not in" in out


def test_same_file_through_another_path_is_a_hit(tmp_path, monkeypatch):
    paths = write_images(tmp_path / "imgs", 2)
    cached_image_features(TinyRandomTeacher(), paths, tmp_path / "c", "toy", progress=False)
    (tmp_path / "alias").symlink_to(tmp_path / "imgs")
    monkeypatch.chdir(tmp_path)
    t = CountingTeacher(TinyRandomTeacher())
    cached_image_features(t, [Path("alias") / p.name for p in paths] + [Path("imgs") / paths[0].name],
                          tmp_path / "c", "toy", progress=False)
    assert t.image_calls == 0


def test_lazy_tokens_stream_rows_without_loading_the_cache(tmp_path, monkeypatch):
    """The student's cached-feature input reads rows from the memory-mapped shards: no shard is loaded whole (a
    SWiG-scale cache is larger than RAM), and the rows equal what the in-memory gather returns."""
    import safetensors.torch

    from mipd_kit.teachers.cache import FeatureCache, LazyTokens, lazy_image_tokens

    paths = write_images(tmp_path / "imgs", 10)
    t = TinyRandomTeacher()
    full = cached_image_features(t, paths, tmp_path / "cache", "toy", batch_size=4, shard_rows=4, progress=False)

    def refuse(*a, **k):
        raise AssertionError("a whole shard was loaded")

    monkeypatch.setattr(FeatureCache, "_load_shard", refuse)
    monkeypatch.setattr(FeatureCache, "gather", refuse)
    monkeypatch.setattr(safetensors.torch, "load_file", refuse)
    lazy = lazy_image_tokens(t, paths, tmp_path / "cache", "toy", progress=False)
    assert isinstance(lazy, LazyTokens) and lazy.shape == full.tokens.shape and len(lazy) == 10
    assert not any(isinstance(v, torch.Tensor) for v in vars(lazy).values())  # only the row table is held
    torch.testing.assert_close(lazy[torch.tensor([7, 0, 7])], full.tokens[[7, 0, 7]])
    torch.testing.assert_close(lazy[2:5], full.tokens[2:5])
    torch.testing.assert_close(lazy[9], full.tokens[9])


def test_new_texts_are_encoded_in_key_order_whatever_order_they_are_asked_for(tmp_path):
    """The batches a text encoder sees depend on which texts are new, not on the order of the request, so a batched
    encoder (whose padding follows the batch) gives the same bits to two runs that ask in another order."""
    texts = [f"text number {i}" for i in range(10)]

    class Recording(CountingTeacher):
        def __init__(self, inner):
            super().__init__(inner)
            self.batches = []

        def encode_texts(self, texts):
            self.batches.append(list(texts))
            return super().encode_texts(texts)

    a, b = Recording(TinyRandomTeacher()), Recording(TinyRandomTeacher())
    cached_text_features(a, texts, tmp_path / "a", batch_size=4, progress=False)
    cached_text_features(b, texts[::-1], tmp_path / "b", batch_size=4, progress=False)
    assert a.batches == b.batches and len(a.batches) == 3
