"""The paper's teacher, BLIP-2's image-text retrieval model, at a tiny random size (no downloads): one joint space
(its contrastive heads, checked against the model's own scores), the ViT-g-style patch tokens, loading from a saved
folder through ``arch: auto``, zero-shot verbs, token caching and one NMPA step."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from mipd_kit.teachers.backends import (CLIP_MEAN, CLIP_STD, Blip2Teacher, TeacherConfig, _hash_tokenize,
                                        build_teacher, preprocess_images)
from mipd_kit.teachers.base import Teacher
from mipd_kit.teachers.cache import cached_image_features, cached_text_features

VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32,
              patch_size=8)
QFORMER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, vocab_size=128,
               max_position_embeddings=32, num_query_tokens=4, image_text_hidden_size=16)
TEXTS = ["a dog", "a person riding a horse on the beach"]


def tiny_config(**kw) -> TeacherConfig:
    return TeacherConfig(backend="transformers", arch="blip2", vision_config=VISION, text_config=QFORMER, **kw)


def images(n: int = 3, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (40 + 5 * i, 52, 3), dtype=np.uint8)) for i in range(n)]


@pytest.fixture(scope="module")
def teacher() -> Blip2Teacher:
    torch.set_num_threads(1)
    t = build_teacher(tiny_config())
    assert isinstance(t, Blip2Teacher)
    return t


def test_one_joint_space_from_the_contrastive_heads(teacher: Blip2Teacher) -> None:
    t = teacher
    assert isinstance(t, Teacher) and t.joint_space and t.grid == (4, 4)
    e, x = t.encode_images(images()), t.encode_texts(TEXTS)
    assert e.tokens.shape == (3, 17, 32) and e.mask.all()  # CLS + 4x4 patch tokens of the vision tower
    assert e.pooled.shape == (3, 16)  # BLIP-2's image-text space (image_text_hidden_size)
    assert x.pooled.shape == (2, 16) and x.tokens.shape[2] == 32
    assert x.mask.sum(1).tolist() == [4, 10]  # [CLS] a dog [SEP] (hashed stand-in ids)
    # the model's own image-text contrastive outputs, on the same pixels and ids
    px = preprocess_images(images(), 32, CLIP_MEAN, CLIP_STD, crop=False)
    ids, am = _hash_tokenize(TEXTS, 128, 32)
    with torch.no_grad():
        out = t.model(pixel_values=px, input_ids=ids, attention_mask=am)
    torch.testing.assert_close(torch.nn.functional.normalize(x.pooled, dim=-1), out.text_embeds, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(e.pooled, out.image_embeds.mean(1), atol=1e-5, rtol=1e-5)  # (B, Q, E) -> (B, E)
    # cosine with the mean of the query embeddings ranks the texts as BLIP-2's mean query similarity does
    sims = torch.nn.functional.normalize(e.pooled, dim=-1) @ torch.nn.functional.normalize(x.pooled, dim=-1).T
    mean_q = (out.image_embeds @ out.text_embeds.T).mean(1)  # (B, T)
    assert torch.equal(sims.argmax(1), mean_q.argmax(1))


def test_fingerprint_follows_the_weights(teacher: Blip2Teacher) -> None:
    assert build_teacher(tiny_config()).fingerprint == teacher.fingerprint
    assert build_teacher(tiny_config(seed=1)).fingerprint != teacher.fingerprint
    # the vision tower alone (text through another encoder) is another teacher
    only_vision = TeacherConfig(backend="transformers", arch="blip2_vision", vision_config=VISION)
    assert not build_teacher(only_vision).joint_space


def test_a_saved_checkpoint_loads_through_arch_auto(teacher: Blip2Teacher, tmp_path) -> None:
    """The path of ``Salesforce/blip2-itm-vit-g``: a folder with a Blip2ForImageTextRetrieval config and a BERT
    tokenizer; ``arch: auto`` reads ``architectures`` and builds this teacher."""
    from transformers import BertTokenizer
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "dog", "person", "riding", "horse", "on", "the",
             "beach"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab + [f"w{i}" for i in range(128 - len(vocab))]) + "\n")
    folder = tmp_path / "blip2-itm-tiny"
    teacher.model.save_pretrained(folder)
    BertTokenizer(str(tmp_path / "vocab.txt")).save_pretrained(folder)
    t = build_teacher(TeacherConfig(backend="transformers", model=str(folder)))
    assert isinstance(t, Blip2Teacher) and t.tokenizer is not None
    torch.testing.assert_close(t.encode_images(images(2)).pooled, teacher.encode_images(images(2)).pooled)
    x = t.encode_texts(TEXTS)
    assert x.mask.sum(1).tolist() == [4, 10] and x.pooled.shape == (2, 16)


def test_tokens_and_texts_are_cached(teacher: Blip2Teacher, tmp_path) -> None:
    paths = []
    for i, im in enumerate(images(4)):
        p = tmp_path / f"{i}.png"
        im.save(p)
        paths.append(p)
    enc = cached_image_features(teacher, paths, tmp_path / "c", "blip2", batch_size=3, progress=False)
    direct = teacher.encode_images([Image.open(p) for p in paths])
    assert enc.tokens.shape == (4, 17, 32)
    torch.testing.assert_close(enc.tokens, direct.tokens, atol=1e-2, rtol=1e-2)  # stored float16
    torch.testing.assert_close(enc.pooled, direct.pooled, atol=1e-5, rtol=1e-5)
    again = cached_image_features(teacher, paths, tmp_path / "c", "blip2", batch_size=3, progress=False)
    assert torch.equal(again.pooled, enc.pooled)
    txt = cached_text_features(teacher, TEXTS, tmp_path / "c", progress=False)
    torch.testing.assert_close(txt.pooled, teacher.encode_texts(TEXTS).pooled, atol=1e-5, rtol=1e-5)


def test_zero_shot_and_one_nmpa_step(teacher: Blip2Teacher, tmp_path) -> None:
    from mipd_kit.align.nmpa import NMPAConfig, aligned_targets, build_nmpa, train_nmpa
    from mipd_kit.student.testing import hashed_text_embedder, write_tiny_world
    from mipd_kit.student.data import prepare_world
    from mipd_kit.teachers.zero_shot import zero_shot_verbs

    info = write_tiny_world(tmp_path / "w", n_per_verb=4)
    preds, rows = zero_shot_verbs(teacher, tmp_path / "w", split="test")
    assert preds and all(len(v) >= 1 for v in preds.values())
    assert {r.split for r in rows} >= {"all", "seen", "unseen"}
    assert all(0.0 <= r.value <= 100.0 for r in rows)
    world = prepare_world(tmp_path / "w", tmp_path / "cache", teacher, image_size=32,
                          embed_texts=hashed_text_embedder(), collected=info["collected"])
    assert world.align.grid == (4, 4) and world.align.tokens.shape[1:] == (17, 32)  # the ViT tokens, CLS first
    assert world.align.bank.tokens.shape[-1] == 32 and world.align.pooled.shape[-1] == 16  # Q-Former text, ITC space
    cfg = dataclasses.replace(NMPAConfig.smoke(), epochs=1, batch_size=10_000)  # one optimiser step
    init = build_nmpa(cfg, world.align)
    model, hist = train_nmpa(world.align, cfg)
    assert len(hist) == 1 and np.isfinite(hist[0]["loss"])
    moved = [n for (n, p), q in zip(model.named_parameters(), init.parameters()) if not torch.equal(p, q)]
    assert moved, "one NMPA step changed no parameter"
    scene = aligned_targets(model, world.align)["scene"]
    assert scene.shape == (len(world.align.images), 16) and torch.isfinite(scene).all()
