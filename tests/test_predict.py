"""mipd predict: a smoke student (trained here in seconds) on a SynthSitu test image and on a plain JPEG; the SWiG
prediction format; drawings; refused checkpoints; new verbs at inference; the cached-feature student."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from deploy_students import smoke_students, write_photo
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mipd_kit.app import cli
from mipd_kit.data.records import DataError
from mipd_kit.data.splits import OvSplit
from mipd_kit.data.swig import load_frame_space, load_situations
from mipd_kit.eval.swig import evaluate_swig_report
from mipd_kit.student.checkpoint import FORMAT, CheckpointFormatError, read_student_file
from mipd_kit.student.predict import Predictor, PredictError
from mipd_kit.student.testing import hashed_text_embedder
from mipd_kit.student.checkpoint import CheckpointMismatch
from mipd_kit.student.config import StudentConfig


@pytest.fixture(scope="module")
def st(tmp_path_factory):
    return smoke_students(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    return write_photo(tmp_path_factory.mktemp("photo") / "street.jpg", (120, 80))


def check_swig_format(preds, sizes, space, vocab_nouns, top_k):
    for im, rec in preds.items():
        W, H = sizes[im]
        assert set(rec) == {"verbs"}
        verbs = rec["verbs"]
        assert len(verbs) == top_k
        scores = [v["score"] for v in verbs]
        assert scores == sorted(scores, reverse=True) and all(0.0 <= s <= 1.0 for s in scores)
        assert len({v["verb"] for v in verbs}) == top_k
        for v in verbs:
            assert list(v["frame"]) == list(space.roles(v["verb"]))  # the verb's roles, in frame order
            for role, f in v["frame"].items():
                assert f["noun"] in vocab_nouns
                if f["box"] is not None:
                    x1, y1, x2, y2 = f["box"]
                    assert -1e-3 <= x1 <= x2 <= W + 1e-3 and -1e-3 <= y1 <= y2 <= H + 1e-3


def test_checkpoint_carries_vocab_and_names_its_frozen_models(st):
    sf = read_student_file(st.cnn)
    assert sf.meta["format"] == FORMAT
    assert sf.vocab.verbs == st.vocab_verbs
    assert sf.weights_from.name.endswith(".best")  # the dev-selected weights, as for the run's test predictions
    assert sf.vocab.sources["text_encoder"] == "hashed:24"
    assert sf.vocab.sources["teacher"]["config"] == {"backend": "tiny", "seed": 0}
    assert sf.vocab.sources["backbone"] is None
    cached = read_student_file(st.cached)
    assert cached.config["backbone"] == "cached"
    assert cached.vocab.sources["backbone"]["config"] == {"backend": "tiny", "seed": 0}
    # the .best file is a self-contained student file too
    assert read_student_file(str(st.cnn) + ".best").vocab.verbs == st.vocab_verbs


def test_predict_synthsitu_test_image_and_plain_jpeg(st, photo):
    p = Predictor.from_checkpoint(st.cnn)
    space = load_frame_space(st.world / "imsitu_space.json")
    gt = load_situations(st.world / "test.json")
    names = sorted(gt)[:3]
    paths = [st.world / "images" / n for n in names]
    preds = p.predict(paths + [photo], top_k=5)
    assert list(preds) == names + ["street.jpg"]
    sizes = {n: (gt[n].width, gt[n].height) for n in names} | {"street.jpg": (120, 80)}
    check_swig_format(preds, sizes, space, set(p.vocab.nouns), 5)
    # the evaluator reads it: no structural complaint about these predictions
    rep = evaluate_swig_report({n: gt[n] for n in names}, {n: preds[n] for n in names},
                               OvSplit.load(st.world / "ov_split.json"), space=space)
    assert rep.rows and not rep.warning_lines()
    # the same image through a PIL object gives the same answer as through its path; alone as in a batch (up to
    # float summation order)
    from PIL import Image
    alone = p.predict([paths[0]], top_k=5)[names[0]]
    assert p.predict([Image.open(paths[0])], top_k=5)["image0"] == alone
    assert [v["verb"] for v in alone["verbs"]] == [v["verb"] for v in preds[names[0]]["verbs"]]
    assert [v["score"] for v in alone["verbs"]] == pytest.approx([v["score"] for v in preds[names[0]]["verbs"]],
                                                                 abs=1e-5)


def test_cli_predict_out_draw_and_bad_images(st, photo, tmp_path, capsys):
    gt = sorted(load_situations(st.world / "test.json"))
    img = str(st.world / "images" / gt[0])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    missing = tmp_path / "missing.png"
    out, draw = tmp_path / "preds.json", tmp_path / "drawn"
    code = cli.main(["predict", "--checkpoint", str(st.cnn), img, str(broken), str(photo), str(missing),
                     "--top-k", "3", "--out", str(out), "--draw", str(draw)])
    err = capsys.readouterr().err
    assert code == 1  # some images could not be read ...
    preds = json.loads(out.read_text())
    assert sorted(preds) == sorted([gt[0], "street.jpg"])  # ... and the others were still predicted
    assert all(len(r["verbs"]) == 3 for r in preds.values())
    assert f"{broken}: cannot decode image" in err and f"{missing}: image not found" in err
    drawn = sorted(q.name for q in draw.iterdir())
    assert drawn == sorted([gt[0].rsplit(".", 1)[0] + ".png", "street.png"])
    from PIL import Image
    with Image.open(draw / "street.png") as im:
        assert im.width >= 120 and im.height > 80  # upscaled, with the title strip
    # the Python call raises on the first unreadable image, naming it
    with pytest.raises(DataError, match="missing.png: image not found"):
        Predictor.from_checkpoint(st.cnn).predict([img, missing])


def _rewrite(src, dst, tensors=None, meta=None, drop_meta=()):
    t = load_file(str(src))
    with safe_open(str(src), "pt") as f:
        m = dict(f.metadata())
    t.update(tensors or {})
    m.update(meta or {})
    for k in drop_meta:
        m.pop(k)
    save_file(t, str(dst), metadata=m)
    return dst


def test_mismatched_corrupt_and_old_checkpoints_are_refused(st, tmp_path, capsys):
    best = str(st.cnn) + ".best"
    cfg = json.loads(read_student_file(best).meta["config"])
    # weights of another model size (config edited consistently, fingerprint recomputed): a clear mismatch
    wide = dict(cfg, d_model=cfg["d_model"] * 2)
    bad = _rewrite(best, tmp_path / "wide.safetensors",
                   meta={"config": json.dumps(wide), "fingerprint": StudentConfig.from_dict(wide).fingerprint()})
    with pytest.raises(CheckpointMismatch, match="weights do not fit"):
        Predictor.from_checkpoint(bad)
    # config edited without its fingerprint
    bad = _rewrite(best, tmp_path / "edited.safetensors", meta={"config": json.dumps(dict(cfg, width=8))})
    with pytest.raises(CheckpointMismatch, match="fingerprint"):
        Predictor.from_checkpoint(bad)
    # vocabulary tensors of another world
    bad = _rewrite(best, tmp_path / "vocab.safetensors", tensors={"vocab.verb_emb": torch.zeros(3, 24)})
    with pytest.raises(CheckpointFormatError, match="verb_emb rows 3"):
        Predictor.from_checkpoint(bad)
    # a checkpoint written before format 2
    old = _rewrite(best, tmp_path / "old.safetensors", drop_meta=("format",))
    with pytest.raises(CheckpointFormatError, match="written before checkpoints carried their vocabulary"):
        Predictor.from_checkpoint(old)
    # a truncated file and a file that is not a student checkpoint
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(st.cnn.read_bytes()[:1000])
    with pytest.raises(CheckpointFormatError, match="not a readable safetensors"):
        Predictor.from_checkpoint(trunc)
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(CheckpointFormatError, match="not a student checkpoint"):
        Predictor.from_checkpoint(other)
    # the CLI says it in one line and exits 2
    img = str(st.world / "images" / sorted(load_situations(st.world / "test.json"))[0])
    assert cli.main(["predict", "--checkpoint", str(old), img]) == 2
    assert f"{old}: student checkpoint written before" in capsys.readouterr().err


def test_new_verbs_at_inference(st):
    p = Predictor.from_checkpoint(st.cnn)
    known = list(p.vocab.verbs)
    assert p.add_verbs(["juggling", "surfing:agent+surfboard", known[0]]) == ["juggling", "surfing"]
    assert p.vocab.verbs == known + ["juggling", "surfing"]
    assert p.frame_roles("surfing") == ["agent", "surfboard"]
    assert p.frame_roles("juggling") in [p.frame_roles(v) for v in known]  # borrowed from the nearest known verb
    # embedded on the fly with the student's own text encoder (its verb table) and the teacher's text tower
    e = hashed_text_embedder(24)(["juggling", "surfing", "surfboard"])
    assert torch.allclose(p.model.verb_emb[-2:], F.normalize(e[:2], dim=-1), atol=1e-6)
    assert torch.allclose(p.model.role_emb[-1], e[2], atol=1e-6)
    from mipd_kit.data.records import FrameSpace, VerbDef
    from mipd_kit.teachers.zero_shot import class_embeddings, verb_prompts
    from mipd_kit.teachers.tiny import TinyRandomTeacher
    _, te = class_embeddings(TinyRandomTeacher(), verb_prompts(FrameSpace(
        {"surfing": VerbDef("surfing", "", "", ("agent", "surfboard"))}, {})))
    assert torch.allclose(p.model.verb_emb_t[-1], te[0], atol=1e-5)
    img = st.world / "images" / sorted(load_situations(st.world / "test.json"))[0]
    preds = p.predict([img], top_k=len(p.vocab.verbs))[img.name]["verbs"]
    by = {v["verb"]: v for v in preds}
    assert {"juggling", "surfing"} <= set(by)
    assert list(by["surfing"]["frame"]) == ["agent", "surfboard"]
    assert abs(sum(v["score"] for v in preds) - 1.0) < 1e-4  # one softmax over old and new verbs
    with pytest.raises(PredictError, match="already known with roles"):
        p.add_verbs([f"{known[0]}:nothing"])


def test_new_verbs_need_a_rebuildable_text_encoder(st):
    p = Predictor.from_checkpoint(st.cnn)
    p.vocab.sources = dict(p.vocab.sources, text_encoder=None)  # as a student trained with a custom embed_texts
    with pytest.raises(PredictError, match="needs the student's text encoder"):
        p.add_verbs(["juggling"])
    p.vocab.sources = dict(p.vocab.sources, text_encoder="hashed:24", teacher={"config": None, "fingerprint": None})
    with pytest.raises(PredictError, match="needs the teacher's text tower"):
        p.add_verbs(["juggling"])


def test_cached_feature_student_runs_its_named_backbone(st, photo):
    p = Predictor.from_checkpoint(st.cached)
    assert p.cfg.backbone == "cached"
    img = st.world / "images" / sorted(load_situations(st.world / "test.json"))[0]
    x = p.inputs([__import__("PIL.Image", fromlist=["Image"]).open(img).convert("RGB")])[0]
    assert tuple(x.shape[1:]) == (p.cfg.num_tokens, p.cfg.in_dim)
    preds = p.predict([img, photo], top_k=3)
    space = load_frame_space(st.world / "imsitu_space.json")
    gt = load_situations(st.world / "test.json")
    check_swig_format(preds, {img.name: (gt[img.name].width, gt[img.name].height), "street.jpg": (120, 80)},
                      space, set(p.vocab.nouns), 3)
    # a backbone other than the one it was trained on is refused
    p2 = Predictor.from_checkpoint(st.cached)
    p2.vocab.sources = dict(p2.vocab.sources, backbone={"config": {"backend": "tiny", "seed": 1},
                                                         "fingerprint": p.vocab.sources["backbone"]["fingerprint"]})
    with pytest.raises(PredictError, match="not the same frozen model"):
        p2.predict([img])
