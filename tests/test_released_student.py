"""The released default student (``embedded-student-default``, ``mipd release-student``): its manifest entry against
its file, ``mipd predict`` and ``mipd export-onnx`` without ``--checkpoint`` on images of a smoke world (the ONNX
graph holds the frozen backbone and the head and takes pixels), the inspector without a run folder, and the release
command on a run folder in a temporary weights folder."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
from safetensors import safe_open

from mipd_kit.app import cli
from mipd_kit import weights as W
from mipd_kit.student.checkpoint import RELEASE, RELEASE_FILE, released_checkpoint
from mipd_kit.student.predict import Predictor

pytestmark = pytest.mark.skipif(W.get_release(RELEASE, W.WEIGHTS_DIR) is None,
                                reason=f"the package ships no {RELEASE} release")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A few-image smoke world (0.3 s): images the released student never saw, of another world size."""
    from mipd_kit.data.synthsitu.generate import SynthConfig, generate
    out = tmp_path_factory.mktemp("student-world") / "w"
    cfg = replace(SynthConfig.smoke(0), size="smoke", n_train=60, rare_train=1, n_dev=4, n_test=4, n_unlabeled=1,
                  n_hoi_train=1, n_hoi_test=1, n_pretrain=1, workers=1)
    generate(cfg, out)
    return out


@pytest.fixture(scope="module")
def images(world):
    return [world / "images" / n for n in sorted(json.loads((world / "test.json").read_text()))]


@pytest.fixture(scope="module")
def pred():
    return Predictor.from_checkpoint()


def test_manifest_entry_matches_the_file_and_names_its_frozen_models():
    e = W.get_release(RELEASE, W.WEIGHTS_DIR)
    assert e["kind"] == "student" and e["dtype"] == "fp16" and set(e["files"]) == {RELEASE_FILE}
    assert W.verify(RELEASE, W.WEIGHTS_DIR) == []  # sha256 and bytes of the file as listed
    f = W.WEIGHTS_DIR / RELEASE / RELEASE_FILE
    assert f.stat().st_size == e["files"][RELEASE_FILE]["bytes"] <= 5_000_000  # a few MB at most
    assert e["command"].startswith("mipd release-student --run ") and e["run"]["id"] in e["command"]
    assert e["run"]["config"] and e["run"]["config_hash"] and e["run"]["command"].startswith("mipd run --config")
    assert len(e["data_fingerprint"]) == 16 and e["model"] == "mipd" and e["seed"] == 0
    # self-contained: the backbone and teacher it names are releases of the same manifest, with the fingerprints
    # the student was trained with; the verb table is in the file
    assert e["backbone_release"] == "embedded-teacher-student"
    for kind in ("backbone", "teacher"):
        other = W.get_release(e[f"{kind}_release"], W.WEIGHTS_DIR)
        assert other is not None and other["kind"] == "teacher", kind
        assert e[f"{kind}_fingerprint"] == other["fingerprint"], kind
    with safe_open(str(f), "pt") as s:
        meta, keys = s.metadata(), set(s.keys())
        dtypes = {s.get_tensor(k).dtype for k in keys if s.get_tensor(k).is_floating_point()}
    sources = json.loads(meta["sources"])
    assert sources["backbone"]["config"] == {"backend": "checkpoint", "checkpoint": e["backbone_release"]}
    assert sources["teacher"]["config"] == {"backend": "checkpoint", "checkpoint": e["teacher_release"]}
    assert "vocab.verb_emb_teacher" in keys and meta["fingerprint"] == e["fingerprint"]
    assert [str(d) for d in dtypes] == ["torch.float16"]
    assert W.check_total_size(W.WEIGHTS_DIR) <= W.MAX_TOTAL_BYTES


def test_predict_without_checkpoint_on_a_smoke_world_image(images, tmp_path, capsys):
    out = tmp_path / "preds.json"
    assert cli.main(["predict", str(images[0]), str(images[1]), "--top-k", "3", "--out", str(out)]) == 0
    preds = json.loads(out.read_text())
    assert list(preds) == [images[0].name, images[1].name]
    p = Predictor.from_checkpoint(released_checkpoint())
    for rec in preds.values():
        scores = [v["score"] for v in rec["verbs"]]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6
        for v in rec["verbs"]:
            assert list(v["frame"]) == p.frame_roles(v["verb"])
            for f in v["frame"].values():
                assert f["noun"] in p.vocab.nouns


def test_export_onnx_without_checkpoint_takes_images(pred, images, tmp_path, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from mipd_kit.student.export import ATOL, onnx_session
    from mipd_kit.student.predict import load_images, pixels
    out = tmp_path / "student.onnx"
    assert cli.main(["export-onnx", "--out", str(out), "--check-images", *map(str, images)]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["ok"] and res["n"] == len(images) and res["top1_agree"] == 1.0, res
    assert all(v <= ATOL for v in res["max_abs"].values()), res
    side = json.loads((tmp_path / "student.onnx.json").read_text())
    S = side["input"]["shape"][-1]
    assert side["input"]["kind"] == "pixels" and side["input"]["shape"] == ["B", 3, S, S]
    assert side["input"]["backbone_in_graph"] == "embedded-teacher-student" and "backbone" not in side["input"]
    sess = onnx_session(out)
    assert [i.name for i in sess.get_inputs()] == ["x"]
    # the one graph on pixels gives the verbs `mipd predict` gives (frozen backbone features + head in torch)
    verbs, scores = sess.run(["verbs", "scores"], {"x": pixels(load_images(images), S).numpy()})
    preds = pred.predict(images, top_k=side["k"])
    assert [[side["verbs"][i] for i in row] for row in verbs[:, :1]] == \
        [[preds[p.name]["verbs"][0]["verb"]] for p in images]
    ref = np.array([[v["score"] for v in preds[p.name]["verbs"]] for p in images])
    assert np.abs(scores - ref).max() <= 1e-3  # the cached-feature path and the pixel graph: same arithmetic


def test_inspector_on_the_released_student_without_a_run(world):
    from mipd_kit.student.predict import student_inspector
    ins = student_inspector(world, limit=3)
    assert len(ins.cases) == 3 and all(c.pred_verb is not None and len(c.top5) == 5 for c in ins.cases)
    assert ins.rendered_image() is not None and ins.current_case() in ins.cases


def test_release_command_writes_an_fp16_entry_and_refuses_what_would_not_work(tmp_path, capsys):
    """The release command on a run folder holding the released file as its checkpoint: a new weights folder gets
    the same file (sha256) and an entry naming the run; a missing row is refused (exit 2)."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copyfile(released_checkpoint(), run / "checkpoints" / "mipd-seed0.safetensors")
    (run / "status.json").write_text(json.dumps({"run_id": "r1", "config": "configs/default.yaml",
                                                 "config_hash": "abcd1234",
                                                 "stages": {"distillation": {"state": "done", "params": {}}}}))
    out = tmp_path / "weights"
    assert cli.main(["release-student", "--run", str(run), "--out", str(out)]) == 0
    e = W.get_release(RELEASE, out)
    assert e["kind"] == "student" and e["run"]["id"] == "r1" and e["command"].startswith("mipd release-student --run")
    assert W.verify(RELEASE, out) == []
    # fp16 in, fp16 out, the same metadata, a header with sorted keys: the committed bytes again
    assert e["files"][RELEASE_FILE] == W.get_release(RELEASE, W.WEIGHTS_DIR)["files"][RELEASE_FILE]
    assert cli.main(["release-student", "--run", str(run), "--out", str(out), "--model", "baseline"]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    # a student whose backbone is a saved folder, not a release, would not work after install: refused
    from safetensors.torch import load_file, save_file
    ckpt = run / "checkpoints" / "mipd-seed0.safetensors"
    with safe_open(str(ckpt), "pt") as f:
        meta = f.metadata()
    src = json.loads(meta["sources"])
    src["backbone"]["config"]["checkpoint"] = str(tmp_path / "teacher-folder")
    save_file(load_file(str(ckpt)), str(ckpt), metadata={**meta, "sources": json.dumps(src)})
    assert cli.main(["release-student", "--run", str(run), "--out", str(tmp_path / "w2")]) == 2
    assert "not a weights release" in capsys.readouterr().err and not (tmp_path / "w2" / RELEASE).exists()


def test_no_release_found_is_one_line_and_exit_2(images, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(W.ENV_VAR, str(tmp_path))  # a weights folder without the student
    assert cli.main(["predict", str(images[0])]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"no release named '{RELEASE}'" in err
