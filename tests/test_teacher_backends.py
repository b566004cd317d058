"""open_clip and transformers backends with random weights / tiny configs: shapes, dtypes, fingerprints, cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mipd_kit.teachers.backends import TeacherConfig, TeacherLoadError, build_teacher
from mipd_kit.teachers.base import Teacher
from mipd_kit.teachers.cache import cached_image_features, cached_text_features

TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                   image_size=32, patch_size=8)
TINY_TEXT = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, vocab_size=100,
                 max_position_embeddings=16, projection_dim=16)
TEXTS = ["a dog", "a person riding a horse on the beach"]


def images(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (40 + 5 * i, 52, 3), dtype=np.uint8)) for i in range(n)]


@pytest.fixture(scope="module")
def open_clip_teacher():
    return build_teacher(TeacherConfig(backend="open_clip", model="ViT-S-32-alt", pretrained=None, image_size=64))


def test_open_clip_shapes_and_fingerprint(open_clip_teacher):
    t = open_clip_teacher
    assert isinstance(t, Teacher) and t.grid == (2, 2)
    e = t.encode_images(images())
    assert e.tokens.shape == (3, 4, 384) and e.tokens.dtype == torch.float32  # patch tokens, no CLS
    assert e.pooled.shape == (3, 256) and e.mask.all()
    # the pooled output is open_clip's own image embedding
    from mipd_kit.teachers.backends import preprocess_images
    x = preprocess_images(images(), t.image_size, t.mean, t.std)
    t.model.visual.output_tokens = False
    try:
        ref = t.model.encode_image(x)
    finally:
        t.model.visual.output_tokens = True
    torch.testing.assert_close(e.pooled, ref, atol=1e-4, rtol=1e-4)
    tx = t.encode_texts(TEXTS)
    assert tx.pooled.shape == (2, 256) and tx.tokens.shape[2] == 256
    assert tx.mask.sum(1).tolist()[0] < tx.mask.sum(1).tolist()[1]
    torch.testing.assert_close(tx.pooled, t.model.encode_text(t.tokenizer(TEXTS)), atol=1e-4, rtol=1e-4)
    fp = t.fingerprint
    assert len(fp) == 16 and fp == t.fingerprint
    with torch.no_grad():
        t.model.logit_scale.add_(1.0)  # the weights changed -> a different fingerprint
    t2 = build_teacher(TeacherConfig(backend="open_clip", model="ViT-S-32-alt", pretrained=None, image_size=64))
    assert t2.fingerprint == fp  # same seed, same random weights
    from mipd_kit.torch_utils import state_hash
    assert state_hash(t.model.state_dict()) != state_hash(t2.model.state_dict())


def test_open_clip_cache_round_trip(open_clip_teacher, tmp_path):
    paths = []
    for i, im in enumerate(images(4)):
        p = tmp_path / f"{i}.png"
        im.save(p)
        paths.append(p)
    enc = cached_image_features(open_clip_teacher, paths, tmp_path / "c", "oc", batch_size=2, progress=False)
    direct = open_clip_teacher.encode_images([Image.open(p) for p in paths])
    torch.testing.assert_close(enc.tokens, direct.tokens, atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(enc.pooled, direct.pooled, atol=1e-5, rtol=1e-5)
    txt = cached_text_features(open_clip_teacher, TEXTS, tmp_path / "c", progress=False)
    torch.testing.assert_close(txt.pooled, open_clip_teacher.encode_texts(TEXTS).pooled, atol=1e-5, rtol=1e-5)


def test_open_clip_model_config_json_builds_a_tiny_clip(root, tmp_path):
    """An open_clip model-config JSON (configs/models/mipd-tiny-vit.json, used by configs/real_smoke.yaml) is an
    architecture of one's own: the same CLIP class, random weights, named by the file's stem in the fingerprint."""
    cfg_file = root / "configs" / "models" / "mipd-tiny-vit.json"
    t = build_teacher(TeacherConfig(backend="open_clip", model=str(cfg_file)))
    assert isinstance(t, Teacher) and t.grid == (4, 4)
    e, x = t.encode_images(images(2)), t.encode_texts(TEXTS)
    assert e.tokens.shape == (2, 16, 64) and e.pooled.shape[1] == x.pooled.shape[1]
    copy = tmp_path / "elsewhere" / "mipd-tiny-vit.json"  # the folder does not enter the fingerprint
    copy.parent.mkdir()
    copy.write_text(cfg_file.read_text())
    assert build_teacher(TeacherConfig(backend="open_clip", model=str(copy))).fingerprint == t.fingerprint
    with pytest.raises(TeacherLoadError, match="does not exist"):
        build_teacher(TeacherConfig(backend="open_clip", model=str(tmp_path / "none.json")))


def test_open_clip_unknown_model_is_named():
    with pytest.raises(TeacherLoadError, match=r"ViT-B-32x.*did you mean"):
        build_teacher(TeacherConfig(backend="open_clip", model="ViT-B-32x"))


def test_open_clip_unknown_tag_is_named():
    with pytest.raises(TeacherLoadError, match=r"no pretrained tag 'no-such-tag'"):
        build_teacher(TeacherConfig(backend="open_clip", model="ViT-S-32-alt", pretrained="no-such-tag"))


@pytest.mark.parametrize("arch", ["clip_vision", "blip2_vision"])
def test_transformers_vision_towers(arch, tmp_path):
    t = build_teacher(TeacherConfig(backend="transformers", arch=arch, vision_config=TINY_VISION))
    assert isinstance(t, Teacher) and t.grid == (4, 4) and not t.joint_space
    e = t.encode_images(images())
    assert e.tokens.shape == (3, 17, 32) and e.pooled.shape == (3, 32)  # CLS + 4x4 patches, as the authors cache
    assert e.tokens.dtype == torch.float32
    tx = t.encode_texts(TEXTS)  # default text encoder: the frozen MiniLM
    assert tx.pooled.shape == (2, 384) and tx.tokens.shape[2] == 384
    t_same = build_teacher(TeacherConfig(backend="transformers", arch=arch, vision_config=TINY_VISION))
    t_other = build_teacher(TeacherConfig(backend="transformers", arch=arch, vision_config=TINY_VISION, seed=1))
    assert t.fingerprint == t_same.fingerprint != t_other.fingerprint
    paths = []
    for i, im in enumerate(images(3)):
        p = tmp_path / f"{i}.png"
        im.save(p)
        paths.append(p)
    enc = cached_image_features(t, paths, tmp_path / "c", "hf", progress=False)
    torch.testing.assert_close(enc.pooled, t.encode_images([Image.open(p) for p in paths]).pooled)


def test_transformers_clip_joint_space():
    t = build_teacher(TeacherConfig(backend="transformers", arch="clip", vision_config=TINY_VISION,
                                    text_config=TINY_TEXT))
    assert t.joint_space
    e = t.encode_images(images(2))
    tx = t.encode_texts(TEXTS)
    assert e.pooled.shape[1] == tx.pooled.shape[1] == 512  # CLIPConfig's default projection_dim
    assert tx.tokens.shape[:2] == tx.mask.shape and tx.mask.sum(1).tolist()[0] == 4  # BOS a dog EOS


def test_transformers_offline_weights_error():
    with pytest.raises(TeacherLoadError, match=r"no-such-org/no-such-model.*offline"):
        build_teacher(TeacherConfig(backend="transformers", model="no-such-org/no-such-model", arch="clip_vision"))


def test_factory_names_the_choices():
    with pytest.raises(ValueError, match="embedded.*open_clip.*transformers.*tiny"):
        build_teacher(TeacherConfig(backend="clip"))  # type: ignore[arg-type]
    assert build_teacher(TeacherConfig.smoke()).grid == (4, 4)
