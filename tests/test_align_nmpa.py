"""NMPA on a tiny fixture world with the TinyRandomTeacher (wiring + learning, not numbers to report)."""

import dataclasses

import pytest
import torch

from mipd_kit.align.nmpa import NMPAConfig, aligned_targets, alignment_report, build_align_data, train_nmpa
from mipd_kit.student.testing import hashed_text_embedder, write_tiny_world
from mipd_kit.student.data import prepare_world
from mipd_kit.teachers.tiny import TinyRandomTeacher


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("tinyworld")
    info = write_tiny_world(d / "w")
    torch.set_num_threads(1)
    return prepare_world(d / "w", d / "cache", TinyRandomTeacher(), image_size=32,
                         embed_texts=hashed_text_embedder(), collected=info["collected"])


def test_coverage_counts_missing_rationales(world):
    cov = world.align.coverage()
    assert cov["images"] == len(world.train)
    assert cov["images_without_glimpse"] > 0  # the fixture leaves some out on purpose
    assert cov["images_with_glimpse"] + cov["images_without_glimpse"] == cov["images"]


@pytest.mark.parametrize("neg_kind", ["authors", "margin", "infonce"])
def test_nmpa_training_aligns_scene_features_with_positives(world, neg_kind):
    cfg = dataclasses.replace(NMPAConfig.smoke(), epochs=30, batch_size=8, neg_kind=neg_kind)
    before = alignment_report(None, world.align)
    model, hist = train_nmpa(world.align, cfg)
    after = alignment_report(model, world.align)
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert after["cos_pos"] - after["cos_neg"] > before["cos_pos"] - before["cos_neg"]
    assert after["pos_beats_neg"] >= 0.9


def test_aligned_targets_shapes_and_images_without_rationales(world):
    a = world.align
    model, _ = train_nmpa(a, dataclasses.replace(NMPAConfig.smoke(), scene_prompt="full"))
    tg = aligned_targets(model, a)
    N, R = a.boxes.shape[:2]
    assert tg["scene"].shape == (N, a.pooled.shape[1]) and tg["roles"].shape == (N, R, a.tokens.shape[2])
    assert torch.isfinite(tg["scene"]).all() and torch.isfinite(tg["roles"]).all()
    raw = aligned_targets(None, a)
    assert torch.equal(raw["scene"], a.pooled)  # plain feature distillation target = the teacher's pooled feature


def test_attention_map_over_grid(world):
    model, _ = train_nmpa(world.align, NMPAConfig.smoke())
    a = world.align
    _, att = model.scene(a.tokens[:3], a.pooled[:3], a.bank, a.glimpse_pos[:3], need_weights=True)
    assert att.shape == (3, a.grid[0] * a.grid[1])
    assert ((att >= 0) & (att <= 1 + 1e-6)).all()


def test_no_rationales_at_all_is_a_clear_error(world):
    a = world.align
    empty = build_align_data(a.images, a.role_names, a.boxes, a.box_exists, a.tokens, a.pooled, a.grid, {},
                             TinyRandomTeacher().encode_texts)
    assert empty.coverage()["images_with_glimpse"] == 0
    with pytest.raises(ValueError, match="no image has a positive rationale"):
        train_nmpa(empty, NMPAConfig.smoke())
