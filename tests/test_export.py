"""mipd export-onnx: the smoke students as ONNX graphs match torch within the stated tolerance (onnxruntime, CPU)."""

from __future__ import annotations

import json

import pytest
from deploy_students import smoke_students

pytest.importorskip("onnx", reason="onnx is not installed (pip install 'mipd_kit[deploy]')")
pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'mipd_kit[deploy]')")

from mipd_kit.app import cli  # noqa: E402
from mipd_kit.student.export import ATOL, check_inputs, check_onnx, example_input, export_onnx  # noqa: E402
from mipd_kit.student.predict import Predictor  # noqa: E402


@pytest.fixture(scope="module")
def st(tmp_path_factory):
    return smoke_students(tmp_path_factory.getbasetemp())


def test_cli_export_matches_torch_on_smoke_world_images(st, tmp_path, capsys):
    out = tmp_path / "student.onnx"
    code = cli.main(["export-onnx", "--checkpoint", str(st.cnn), "--out", str(out), "--check-world", str(st.world),
                     "--check-n", "6"])
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and res["ok"], res
    assert res["n"] == 6 and res["inputs"].startswith("6 test images")
    assert all(v <= ATOL for v in res["max_abs"].values()) and res["top1_agree"] == 1.0
    side = json.loads((tmp_path / "student.onnx.json").read_text())
    assert side["verbs"] == st.vocab_verbs and side["k"] == 5 and side["check"]["ok"]
    assert side["input"]["kind"] == "pixels"


def test_dynamic_batch_and_new_verbs_baked_in(st, tmp_path):
    p = Predictor.from_checkpoint(st.cnn)
    p.add_verbs(["juggling:agent+item"])
    out = export_onnx(p, tmp_path / "open.onnx", k=len(p.vocab.verbs))
    assert json.loads((tmp_path / "open.onnx.json").read_text())["verbs"][-1] == "juggling"
    for b in (1, 7):
        res = check_onnx(out, p, example_input(p, b, seed=b))
        assert res["ok"] and res["n"] == b, res
    # every verb is ranked, so the new one is in the graph's output
    from mipd_kit.student.export import onnx_session
    verbs = onnx_session(out).run(["verbs"], {"x": example_input(p, 2)[0].numpy()})[0]
    assert (verbs == len(p.vocab.verbs) - 1).any(axis=1).all()


def test_cached_feature_student_exports_its_head(st, tmp_path):
    p = Predictor.from_checkpoint(st.cached)
    out = export_onnx(p, tmp_path / "head.onnx")
    side = json.loads((tmp_path / "head.onnx.json").read_text())
    assert side["input"]["kind"] == "features" and side["input"]["shape"][1:] == [p.cfg.num_tokens, p.cfg.in_dim]
    assert p.cfg.pooled_dim and side["input"]["pooled_shape"] == ["B", p.cfg.pooled_dim]  # the head reads both
    x, what = check_inputs(p, str(st.world), 4)  # features of the named backbone on world images
    assert len(x) == 2 and x[1].shape == (4, p.cfg.pooled_dim)
    res = check_onnx(out, p, x)
    assert res["ok"], res
