"""The run's nearest training images in the comparison inspector: the pure ranking, and the pooled embeddings read
from a run's feature cache by the fingerprints its student file names (a demo world with a hand-made cache)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mipd_kit.viz.neighbours import (Neighbour, cache_dirs, feature_sources, load_training_neighbours,
                                     nearest_training_images)


def test_nearest_training_images_rank_by_cosine_and_filter_by_verb() -> None:
    train = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.2], [0.7, 0.7], [-1.0, 0.0]])  # (5, 2)
    names = ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]
    verbs = ["riding", "eating", "riding", "eating", "riding"]
    q = torch.tensor([3.0, 0.0])  # cosine is scale-free: a.jpg is exactly aligned
    got = nearest_training_images(q, train, names, verbs, k=3)
    assert [n.image for n in got] == ["a.jpg", "c.jpg", "d.jpg"]
    assert got[0] == Neighbour("a.jpg", "riding", 1.0) and got[0].similarity >= got[1].similarity >= got[2].similarity
    assert [n.image for n in nearest_training_images(q, train, names, verbs, k=5, verb="eating")] == ["d.jpg", "b.jpg"]
    assert nearest_training_images(q, train, names, verbs, verb="hiding") == []  # an unseen verb: no training image
    assert [n.image for n in nearest_training_images(torch.tensor([0.0, 1.0]), train, names, verbs, k=2)] == [
        "b.jpg", "d.jpg"]
    tie = nearest_training_images(q, torch.ones(2, 2), ["z.jpg", "y.jpg"], ["v", "v"], k=2)
    assert [n.image for n in tie] == ["y.jpg", "z.jpg"]  # equal similarity: by name
    with pytest.raises(ValueError, match="share E"):
        nearest_training_images(torch.zeros(3), train, names, verbs)
    with pytest.raises(ValueError, match="5 training embeddings but 4 names"):
        nearest_training_images(q, train, names[:4], verbs)


def _student_file(path: Path, sources: dict) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"w": torch.zeros(1)}, str(path), metadata={"sources": json.dumps(sources), "format": "mipd-student/2"})


@pytest.fixture()
def cached_run(tmp_path: Path):
    """The demo world and run, training images on disk, a student file naming a backbone and a teacher, and the
    backbone's pooled embeddings of every training and test image in a feature cache (the teacher's are absent):
    each test image's embedding is that of one training image of its own gold verb, when the verb has one."""
    from PIL import Image

    from mipd_kit.teachers.base import Encoded
    from mipd_kit.teachers.cache import FeatureCache, image_keys
    from mipd_kit.viz.inspector import write_demo

    world, run = write_demo(tmp_path / "demo", seed=0)
    train = json.loads((world / "train.json").read_text())
    test = json.loads((world / "test.json").read_text())
    for i, name in enumerate(train):
        Image.new("RGB", (32, 32), (10 * i % 255, 90, 120)).save(world / "images" / name)
    g = torch.Generator().manual_seed(0)
    tr_names = sorted(train)
    tr_emb = torch.randn(len(tr_names), 16, generator=g)
    first_of = {}
    for i, n in enumerate(tr_names):
        first_of.setdefault(train[n]["verb"], i)
    te_names = sorted(test)
    te_emb = torch.stack([tr_emb[first_of[test[n]["verb"]]] if test[n]["verb"] in first_of
                          else torch.randn(16, generator=g) for n in te_names])
    cache = tmp_path / "cache"
    for ds, names, emb in (("train", tr_names, tr_emb), ("test", te_names, te_emb)):
        fc = FeatureCache(cache, f"{world.name}-{ds}", "fpbackbone", "image", grid=(1, 1))
        fc.add_shard(image_keys([world / "images" / n for n in names]),
                     Encoded(torch.zeros(len(names), 1, 4), emb, torch.ones(len(names), 1, dtype=torch.bool)))
    _student_file(run / "checkpoints" / "mipd-seed0.safetensors",
                  {"teacher": {"config": None, "fingerprint": "fpteacher"},
                   "backbone": {"config": None, "fingerprint": "fpbackbone"}})
    return {"world": world, "run": run, "cache": cache, "train": train, "test": test, "tr_names": tr_names,
            "first_of": first_of}


def test_neighbours_from_the_runs_cache_by_its_student_files_fingerprints(cached_run, tmp_path: Path) -> None:
    c = cached_run
    assert feature_sources(c["run"], "mipd", 0) == [("backbone", "fpbackbone"), ("teacher", "fpteacher")]
    assert feature_sources(c["run"], "baseline", 0) == feature_sources(c["run"], "mipd", 0)  # any student file
    nb = load_training_neighbours(c["run"], c["world"], c["cache"], "mipd", 0)
    assert nb is not None and nb.source == "student backbone" and nb.fingerprint == "fpbackbone"
    assert nb.train_names == c["tr_names"] and set(nb.test) == set(c["test"])
    seen_case = next(n for n, r in c["test"].items() if r["verb"] in c["first_of"])
    verb = c["test"][seen_case]["verb"]
    top = nb.of(seen_case, k=3)
    assert top[0] == Neighbour(c["tr_names"][c["first_of"][verb]], verb, 1.0)
    assert all(n.verb == verb for n in nb.of(seen_case, k=10, verb=verb)) and len(nb.of(seen_case, k=2)) == 2
    # the teacher's features are the fallback; no cache at all: no neighbours
    _student_file(c["run"] / "checkpoints" / "mipd-seed0.safetensors",
                  {"teacher": {"config": None, "fingerprint": "fpbackbone"}})
    assert load_training_neighbours(c["run"], c["world"], c["cache"], "mipd", 0).source == "teacher"
    assert load_training_neighbours(c["run"], c["world"], tmp_path / "elsewhere", "mipd", 0) is None
    # the cache the run's stages used (status.json) when none is given
    (c["run"] / "status.json").write_text(json.dumps({"stages": {"distillation": {"params": {
        "cache_dir": str(c["cache"])}}}}))
    assert cache_dirs(c["run"], tmp_path / "elsewhere") == [tmp_path / "elsewhere", c["cache"]]
    assert load_training_neighbours(c["run"], c["world"], None, "mipd", 0) is not None


def test_compare_inspector_shows_the_nearest_training_images_of_the_case_and_of_its_verbs(cached_run) -> None:
    from mipd_kit.viz.inspector import open_compare

    c = cached_run
    ins = open_compare(c["run"], c["world"], "mipd", "baseline", cache_dir=c["cache"])
    assert ins.neighbours is not None
    html = ins.details_html()
    assert "nearest training images (any verb; student backbone features (fpbackbone)" in html
    assert "nearest training images of " + ins.current_case().gt_verb in html
    assert html.count("<img") >= 5  # the thumbnails
    unseen = [p for p in ins.cases if p.gt_verb not in c["first_of"]]  # the demo's unseen verbs
    assert unseen
    ins.set_filter(verb=unseen[0].gt_verb)  # a gold verb without training images says so
    assert "no training image has this verb (unseen)" in ins.details_html()
    plain = open_compare(c["run"], c["world"], "mipd", "baseline", cache_dir=c["cache"] / "absent")
    assert plain.neighbours is None and "no nearest training images" in plain.details_html()
