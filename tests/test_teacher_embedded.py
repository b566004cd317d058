"""Embedded teacher: MiniLM loader, training on a toy world, checkpoint round trip, zero-shot rows, evidence."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from teacher_toyworld import VERBS, write_toy_world  # noqa: E402

from mipd_kit.data.records import DataError  # noqa: E402
from mipd_kit.data.swig import load_frame_space  # noqa: E402
from mipd_kit.teachers import embedded as E  # noqa: E402
from mipd_kit.teachers import text as TX  # noqa: E402
from mipd_kit.teachers import zero_shot as Z  # noqa: E402
from mipd_kit.teachers.base import Teacher  # noqa: E402
from mipd_kit.teachers.cache import cached_image_features, cached_text_features  # noqa: E402


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return write_toy_world(tmp_path_factory.mktemp("toyworld"), n_pretrain_per_verb=40, n_gsr_per_verb=4)


@pytest.fixture(scope="module")
def cfg() -> E.EmbeddedTeacherConfig:
    c = E.EmbeddedTeacherConfig.smoke()
    c.max_pairs, c.epochs, c.threads = None, 16, 1
    return c


@pytest.fixture(scope="module")
def trained(world, cfg, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return E.load_or_train(world, cache, cfg, progress=False), cache


def test_minilm_is_the_real_sentence_encoder():
    st = TX.minilm()
    assert TX.minilm() is st  # cached
    texts = ["a person rides a horse", "a dog"]
    tokens, mask, sent = TX.minilm_encode(texts)
    ref = torch.as_tensor(st.encode(texts, convert_to_numpy=True))
    torch.testing.assert_close(sent, ref, atol=1e-4, rtol=1e-4)
    assert tokens.shape == (2, mask.shape[1], 384) and mask.sum(1).tolist()[0] > mask.sum(1).tolist()[1]
    # semantics: a paraphrase is closer than an unrelated sentence
    _, _, s = TX.minilm_encode(["a man riding a horse", "someone on horseback", "a bowl of soup"], with_tokens=False)
    assert float(s[0] @ s[1]) > float(s[0] @ s[2])


def test_clip_loss_matches_the_formula_and_handles_duplicates():
    torch.manual_seed(0)
    i, t = torch.randn(4, 8), torch.randn(4, 8)
    scale = torch.tensor(math.log(10.0))
    logits = 10.0 * F.normalize(i, dim=-1) @ F.normalize(t, dim=-1).T
    ref = 0.5 * (F.cross_entropy(logits, torch.arange(4)) + F.cross_entropy(logits.T, torch.arange(4)))
    torch.testing.assert_close(E.clip_loss(i, t, scale), ref)
    torch.testing.assert_close(E.clip_loss(i, t, scale, torch.arange(4)), ref)
    # pairs 0 and 1 share a caption: each row's target mass is split between both columns
    ids = torch.tensor([0, 0, 1, 2])
    target = torch.tensor([[.5, .5, 0, 0], [.5, .5, 0, 0], [0, 0, 1., 0], [0, 0, 0, 1.]])
    soft = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    torch.testing.assert_close(E.clip_loss(i, t, scale, ids), soft)
    torch.testing.assert_close(E.clip_loss(i, t, scale, target=target), soft)  # explicit (soft) targets
    assert not torch.isclose(soft, ref)


def test_training_learns_and_round_trips(trained, world, cfg):
    t, cache = trained
    assert isinstance(t, Teacher) and not t.loaded_from_cache
    losses = t.info["epoch_loss"]
    assert losses[-1] < losses[0]
    ck = t.checkpoint_dir
    assert (ck / "model.safetensors").exists()
    meta = json.loads((ck / "config.json").read_text())
    assert meta["config"]["epochs"] == cfg.epochs and meta["n_pairs"] == 6 * 40
    # load_or_train with the same config + data: loaded, same weights and fingerprint
    t2 = E.load_or_train(world, cache, cfg, progress=False)
    assert t2.loaded_from_cache and t2.fingerprint == t.fingerprint
    ims = [__import__("PIL.Image", fromlist=["Image"]).open(world / "images" / n) for n in sorted(
        json.loads((world / "test.json").read_text()))[:3]]
    torch.testing.assert_close(t2.encode_images(ims).pooled, t.encode_images(ims).pooled)
    # another config -> another checkpoint folder
    other = E.EmbeddedTeacherConfig.from_dict({**cfg.training_key(), "epochs": cfg.epochs + 1})
    assert E.checkpoint_dir_for(world, cache, other) != ck


def test_teacher_retrieves_its_training_captions_above_chance(trained, world):
    """Image -> caption retrieval over the 6 distinct pretraining captions (chance = 1/6)."""
    t, _ = trained
    recs = E.read_captions(world)[:120]
    caps = sorted({r["caption"] for r in recs})
    from PIL import Image
    img = F.normalize(t.encode_images([Image.open(world / r["image"]) for r in recs]).pooled, dim=-1)
    txt = F.normalize(t.text_embeddings(caps), dim=-1)
    pred = (img @ txt.T).argmax(1).tolist()
    acc = sum(caps[p] == r["caption"] for p, r in zip(pred, recs)) / len(recs)
    assert acc > 2 / 6


def test_encode_shapes(trained):
    t, _ = trained
    from PIL import Image
    e = t.encode_images([Image.new("RGB", (50, 40)), Image.new("RGB", (20, 20))])
    assert e.tokens.shape == (2, 16, 32) and e.pooled.shape == (2, 64) and t.grid == (4, 4)
    tx = t.encode_texts(["a person kicking a ball", "hi"])
    assert tx.tokens.shape[0] == 2 and tx.tokens.shape[2] == 384 and tx.pooled.shape == (2, 64)
    assert tx.mask.dtype == torch.bool and tx.mask.sum(1).tolist()[0] > tx.mask.sum(1).tolist()[1]


def test_zero_shot_rows_and_predictions(trained, world):
    t, _ = trained
    preds, rows = Z.zero_shot_verbs(t, world, "test")
    test = json.loads((world / "test.json").read_text())
    assert set(preds) == set(test)
    assert all(len(p) == 5 and p[0][1] >= p[-1][1] for p in preds.values())
    keys = {(r.split, r.setting, r.mean) for r in rows}
    for split in ("all", "seen", "rare", "unseen", "unseen_compositional"):
        for setting in ("top1", "top5"):
            assert (split, setting, "image") in keys and (split, setting, "verb") in keys
    assert ("unseen_novel", "top1", "image") not in keys  # no images of that kind in the toy world
    assert all(r.task == "gsr" and r.model == "teacher" and r.metric == "verb" and 0 <= r.value <= 100 for r in rows)
    # the rows are exactly the accuracy of the returned predictions
    top1 = 100 * sum(preds[i][0][0] == test[i]["verb"] for i in test) / len(test)
    got = next(r.value for r in rows if (r.split, r.setting, r.mean) == ("all", "top1", "image"))
    assert got == pytest.approx(top1)


def test_verb_accuracy_rows_pure():
    gt = {"a": "x", "b": "x", "c": "y"}
    top5 = {"a": ["x", "y"], "b": ["y", "x"], "c": ["x", "y"]}
    rows = {(r.split, r.setting, r.mean): r.value for r in
            Z.verb_accuracy_rows(gt, top5, {"seen": ["x"], "unseen": ["y"], "rare": []})}
    assert rows[("all", "top1", "image")] == pytest.approx(100 / 3)
    assert rows[("all", "top1", "verb")] == pytest.approx(25.0)  # x: 1/2, y: 0
    assert rows[("seen", "top5", "image")] == 100.0 and rows[("unseen", "top1", "image")] == 0.0
    assert ("rare", "top1", "image") not in rows


def test_verb_prompts_use_the_frame_space(world):
    space = load_frame_space(world / "imsitu_space.json")
    prompts = Z.verb_prompts(space)
    assert set(prompts) == set(VERBS)
    assert any("the agent kicks the item" in p and "strike something with the foot" in p for p in prompts["kicking"])


def test_teacher_evidence(trained, world, tmp_path):
    t, _ = trained
    out = tmp_path / "teacher_evidence.json"
    ev = Z.teacher_evidence(t, world, out)
    assert json.loads(out.read_text()) == ev
    train = json.loads((world / "train.json").read_text())
    assert set(ev) == set(train)
    first = ev[sorted(ev)[0]]
    assert len(first["top_verbs"]) == 5 and set(first["role_nouns"]) == {"agent", "item"}
    assert all(len(v) == 3 for v in first["role_nouns"].values())


def test_embedded_features_cache(trained, world, tmp_path):
    t, _ = trained
    paths = sorted((world / "images").glob("test_*.png"))[:5]
    enc = cached_image_features(t, paths, tmp_path, "toy-test", progress=False)
    assert enc.tokens.shape == (5, 16, 32)
    txt = cached_text_features(t, ["a person kicking a ball"], tmp_path, progress=False)
    assert txt.tokens.shape[2] == 384 and txt.pooled.shape == (1, 64)


def test_bad_inputs(tmp_path, cfg):
    with pytest.raises(DataError, match="captions.jsonl"):
        E.read_captions(tmp_path)
    (tmp_path / "pretrain").mkdir()
    (tmp_path / "pretrain" / "captions.jsonl").write_text('{"image": "x.png", "caption": "a"}\n{broken\n')
    with pytest.raises(DataError, match="line 2"):
        E.read_captions(tmp_path)
    (tmp_path / "pretrain" / "captions.jsonl").write_text('{"image": "pretrain/missing.png", "caption": "a"}\n')
    with pytest.raises(DataError, match="missing.png"):
        E.train_teacher(tmp_path, tmp_path / "cache", cfg, progress=False)
    with pytest.raises(ValueError, match="unknown EmbeddedTeacherConfig keys"):
        E.EmbeddedTeacherConfig.from_dict({"widht": 3})
    with pytest.raises(ValueError, match="must be 8"):
        E.EmbeddedTeacher(E.EmbeddedTeacherConfig(image_size=60, grid=8))


def test_corrupt_checkpoint_is_a_clear_error(trained, tmp_path):
    import shutil
    t, _ = trained
    d = tmp_path / "ck"
    shutil.copytree(t.checkpoint_dir, d)
    (d / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"model\.safetensors.*corrupt"):
        E.load_teacher(d)


def test_cli_train_and_eval(world, tmp_path, capsys):
    args = ["--world", str(world), "--cache", str(tmp_path), "--smoke", "--max-pairs", "64", "--epochs", "1"]
    assert E.main(["train", *args]) == 0
    out = tmp_path / "metrics.json"
    assert E.main(["eval", *args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "loaded" in printed and "unseen" in printed
    rows = json.loads(out.read_text())
    assert {r["split"] for r in rows} >= {"all", "seen", "rare", "unseen"}
    assert E.main(["train", "--world", str(tmp_path / "nope"), "--cache", str(tmp_path), "--smoke"]) == 2


def test_noun_prompts_score_synonym_groups_once():
    from mipd_kit.data.records import FrameSpace, NounDef
    space = FrameSpace({}, {"dog": NounDef("dog", ("dog", "puppy")), "puppy": NounDef("puppy", ("puppy", "dog")), "cat": NounDef("cat", ("cat",)),
                            "": NounDef("", ())})
    prompts = Z.noun_prompts(space)
    assert set(prompts) == {"dog", "cat", ""}  # the canonical id represents its synonyms
    assert "a photo of a puppy." in prompts["dog"] and "a photo of a nothing." in prompts[""]


def test_zero_shot_table_orders_splits():
    rows = Z.verb_accuracy_rows({"a": "x", "b": "y"}, {"a": ["x"], "b": ["x", "y"]},
                                {"seen": ["x"], "unseen": ["y"], "rare": []})
    table = Z.zero_shot_table(rows)
    assert list(table.index) == ["all", "seen", "unseen"]
    assert table.loc["unseen", ("image", "top5")] == 100.0 and table.loc["unseen", ("image", "top1")] == 0.0
