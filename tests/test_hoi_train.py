"""CL-HOI end to end on a tiny world written by the test (teacher = TinyRandomTeacher): predictions the evaluator
scores, metrics rows, label-free training guard, CLI and config errors."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from hoi_tinyworld import write_tiny_hoi_world
from mipd_kit.data.hico import load_hico_instances
from mipd_kit.data.records import DataError
from mipd_kit.eval.hico import evaluate_hico
from mipd_kit.hoi.config import CLHOIConfig
from mipd_kit.hoi.scoring import results_table
from mipd_kit.hoi.train import train_student
from mipd_kit.hoi.world import LabelFreeImage, load_hoi_world, strip_labels
from mipd_kit.app.stages.clhoi_runs import main, run_clhoi
from mipd_kit.metrics import read_rows


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    return write_tiny_hoi_world(tmp_path_factory.mktemp("hoiworld"))


def _cfg(world: Path, run: Path, **kw) -> CLHOIConfig:
    base = dict(world_dir=str(world), run_dir=str(run), cache_dir=str(run / "cache"), teacher="tiny",
                seeds=(0,), epochs=6, threads=1)
    base.update(kw)
    return CLHOIConfig.smoke(**base)


def test_end_to_end_predictions_are_scored_by_the_evaluator(world, tmp_path):
    cfg = _cfg(world, tmp_path / "run", seeds=(0, 1))
    res = run_clhoi(cfg)
    for model in ("teacher", "spatial_prior", "teacher_crop", "icn", "clhoi", "clhoi-logitctx"):
        for seed in (0, 1):
            path = tmp_path / "run" / "predictions" / f"hoi-{model}-seed{seed}.json"
            preds = json.loads(path.read_text())
            dets = [d for v in preds.values() for d in v]
            assert dets and all(set(d) == {"hoi", "box_h", "box_o", "score"} for d in dets)
            assert all(math.isfinite(d["score"]) and d["score"] >= 0 for d in dets)
    # the stored file is what the evaluator scores, independently of the run
    test, vocab = load_hico_instances(world / "hoi_test.json")
    preds = json.loads((tmp_path / "run" / "predictions" / "hoi-clhoi-seed0.json").read_text())
    rows = evaluate_hico(test, vocab, preds, setting="both", zero_shot=[1], model="clhoi", seed=0)
    maps = {(r.split, r.setting): r.value for r in rows if r.metric == "map"}
    assert {"full", "rare", "non_rare", "unseen", "seen"} <= {s for s, _ in maps}
    assert all(0.0 <= v <= 100.0 + 1e-9 for v in maps.values())
    run_maps = {(r.split, r.setting): r.value for r in res.rows if r.metric == "map" and r.model == "clhoi"
                and r.seed == 0}
    assert run_maps == pytest.approx(maps)
    # metrics.json: per-seed rows for every model, seed aggregates, the warnings of the evaluator
    mrows = read_rows(tmp_path / "run" / "metrics.json")
    models = {r.model for r in mrows if r.task == "hoi" and r.metric == "map"}
    assert models == {"teacher", "spatial_prior", "teacher_crop", "icn", "clhoi", "clhoi-logitctx"}
    # V-COCO role AP beside the HICO-DET mAP, for every model and seed, with seed aggregates
    role = {(r.model, r.seed) for r in mrows if r.metric == "role_ap" and r.split == "full"}
    assert role == {(m, s) for m in models for s in (0, 1)}
    assert {r.model for r in mrows if r.metric == "role_ap_mean"} == models
    assert (tmp_path / "run" / "clhoi" / "vcoco_test.json").exists()
    assert "| clhoi |" in results_table(res.rows, "scenario_1", "role_ap")
    # the clhoi context target came from the embedded captioner's descriptions, stored once for both seeds
    desc = res.info["descriptions"]
    assert desc["describer"].startswith("captioner") and desc["described"] == len(load_hoi_world(world).train)
    assert desc["called"] == desc["described"] and desc["reused"] == 0
    agg = [r for r in mrows if r.metric == "map_mean" and r.seed is None]
    assert {(r.model, r.setting) for r in agg if r.split == "unseen"} >= {("clhoi", "default"),
                                                                         ("clhoi", "known_object")}
    summary = json.loads((tmp_path / "run" / "clhoi" / "summary.json").read_text())
    assert summary["proposal_quality"]["test-seed0"]["pair_recall"] == 1.0  # known boxes
    assert summary["proposal_stats"]["test-seed0"]["images_no_human"] == 1  # the empty test image
    assert "| clhoi |" in results_table(res.rows)


def test_training_loss_falls(world, tmp_path):
    cfg = _cfg(world, tmp_path / "r", epochs=25, models=("clhoi",), lr=3e-3)
    res = run_clhoi(cfg)
    h = res.histories["clhoi-seed0"]
    assert len(h) == 25
    first = sum(e["total"] for e in h[:3]) / 3
    last = sum(e["total"] for e in h[-3:]) / 3
    assert last < first
    assert {"image_kd", "cross_kd", "context", "total"} <= set(h[0])


def _corrupt_labels(src: Path, dst: Path) -> None:
    """Copy a world, swapping 'hold ball' (0) and 'kick ball' (1) (hoi and verb) in hoi_train.json: still
    consistent for the reader, but those training labels are all different."""
    import shutil
    shutil.copytree(src, dst)
    d = json.loads((dst / "hoi_train.json").read_text())
    swap = {0: 1, 1: 0}
    for a in d["annotation"]:
        a["hoi"] = [swap.get(h, h) for h in a["hoi"]]
        a["verb"] = [{0: 1, 1: 0}.get(v, v) if o == 0 else v for v, o in zip(a["verb"], a["object"])]
    (dst / "hoi_train.json").write_text(json.dumps(d))


@pytest.mark.parametrize("proposals", ["known_boxes", "detector"])
def test_training_never_uses_hoi_labels(world, tmp_path, proposals):
    corrupt = tmp_path / "corrupt"
    _corrupt_labels(world, corrupt)
    a = load_hico_instances(world / "hoi_train.json")[0]
    b = load_hico_instances(corrupt / "hoi_train.json")[0]
    assert [im.hoi for im in a] != [im.hoi for im in b]  # the labels really differ
    kw = dict(models=("icn", "clhoi"), proposals=proposals)
    run_clhoi(_cfg(world, tmp_path / "ra", **kw))
    run_clhoi(_cfg(corrupt, tmp_path / "rb", **kw))
    for m in ("icn", "clhoi"):
        pa = json.loads((tmp_path / "ra" / "predictions" / f"hoi-{m}-seed0.json").read_text())
        pb = json.loads((tmp_path / "rb" / "predictions" / f"hoi-{m}-seed0.json").read_text())
        assert pa == pb


def test_label_free_records_and_training_input_guard(world):
    w = load_hoi_world(world)
    assert all(isinstance(im, LabelFreeImage) for im in w.train)
    assert not hasattr(w.train[0], "hoi") and not hasattr(w.train[0], "verb")
    train, _ = load_hico_instances(world / "hoi_train.json")
    assert strip_labels(train)[0].boxes_h == tuple(train[0].boxes_h)
    with pytest.raises(TypeError, match="PairData"):
        train_student("icn", train, CLHOIConfig.smoke(), 0)  # type: ignore[arg-type]


def test_detector_mode_with_a_detections_file(world, tmp_path):
    test, vocab = load_hico_instances(world / "hoi_test.json")
    train, _ = load_hico_instances(world / "hoi_train.json")

    def dets(ims):
        out = {}
        for im in ims:
            out[im.filename] = [{"box": list(b), "label": "person", "score": 0.9} for b in im.boxes_h] + \
                [{"box": list(b), "label": vocab.objects[o], "score": 0.8} for b, o in zip(im.boxes_o, im.object)] + \
                [{"box": [1, 1, 3, 3], "label": "dragon", "score": 0.9}]
        return out
    (tmp_path / "dt.json").write_text(json.dumps(dets(train)))
    (tmp_path / "de.json").write_text(json.dumps(dets(test)))
    cfg = _cfg(world, tmp_path / "run", proposals="detector", detections_train=str(tmp_path / "dt.json"),
               detections_test=str(tmp_path / "de.json"), models=("teacher", "clhoi"))
    res = run_clhoi(cfg)
    assert res.proposal_stats["test-seed0"]["unknown_labels"] == len(test)
    assert res.proposal_quality["test-seed0"]["pair_recall"] == 1.0


def test_embedded_detector_mode_reports_measured_error(world, tmp_path):
    cfg = _cfg(world, tmp_path / "run", proposals="detector", jitter=0.2, models=("teacher",), seeds=(0, 1))
    res = run_clhoi(cfg)
    q0, q1 = res.proposal_quality["test-seed0"], res.proposal_quality["test-seed1"]
    assert q0["mean_best_iou_h"] < 1.0 and q0 != q1  # jitter depends on the seed
    assert (tmp_path / "run" / "clhoi" / "detections-test-seed0.json").exists()


def test_cli_main_and_config_errors(world, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["--world", str(world), "--out", str(out), "--cache", str(tmp_path / "c"), "--smoke", "--seeds", "0",
                 "--set", "teacher=tiny", "--set", "epochs=2", "--set", "threads=1"])
    assert code == 0
    assert "| clhoi |" in capsys.readouterr().out
    assert (out / "predictions" / "hoi-teacher-seed0.json").exists()
    assert main(["--world", str(world), "--out", str(out), "--set", "nope=1"]) == 2
    assert "unknown CLHOIConfig keys" in capsys.readouterr().err
    with pytest.raises(ValueError, match="models"):
        CLHOIConfig.smoke(models=("teacher", "oracle")).validate()


def test_bad_world_files_raise_data_errors(world, tmp_path):
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(world, bad)
    (bad / "hoi_prompts.json").write_text(json.dumps(["only one phrase"]))
    with pytest.raises(DataError, match="hoi_prompts.json.*1 phrases for 4 HOIs"):
        load_hoi_world(bad)
    (bad / "hoi_prompts.json").unlink()
    with pytest.raises(DataError, match="not found"):
        load_hoi_world(bad)


def test_seeded_runs_are_reproducible(world, tmp_path):
    r1 = run_clhoi(_cfg(world, tmp_path / "a", models=("clhoi",)))
    r2 = run_clhoi(_cfg(world, tmp_path / "b", models=("clhoi",)))
    v1 = [r.value for r in r1.rows if r.metric == "map"]
    v2 = [r.value for r in r2.rows if r.metric == "map"]
    assert v1 == v2


def test_rows_side_by_side_equal_rows_one_at_a_time(world, tmp_path):
    # workers=2 forks after the shared preparation; each row then runs with threads // workers = 1 thread, so it must
    # give exactly the numbers, histories and prediction files of the same row run in this process with 1 thread
    one = run_clhoi(_cfg(world, tmp_path / "one", seeds=(0, 1), models=("teacher", "icn", "clhoi"), threads=1))
    two = run_clhoi(_cfg(world, tmp_path / "two", seeds=(0, 1), models=("teacher", "icn", "clhoi"), threads=2,
                         workers=2))
    key = lambda r: (r.task, r.model, r.seed, r.split, r.setting, r.metric)  # noqa: E731
    assert [key(r) for r in one.rows] == [key(r) for r in two.rows]
    assert [r.value for r in one.rows] == [r.value for r in two.rows]
    assert one.histories == two.histories and set(one.histories) == {"icn-seed0", "icn-seed1", "clhoi-seed0",
                                                                     "clhoi-seed1"}
    for name, path in one.prediction_files.items():
        assert Path(path).read_bytes() == Path(two.prediction_files[name]).read_bytes()
    assert torch.get_num_threads() == 2  # the parent keeps its own thread count
    with pytest.raises(ValueError, match="workers"):
        _cfg(world, tmp_path / "bad", workers=0).validate()


def test_student_score_modes(world, tmp_path):
    """``joint`` scores sum over an image's pairs to the LSE-pooled image distribution; every mode is >= 0 and 0
    outside the candidates."""
    from mipd_kit.hoi import losses as L
    from mipd_kit.hoi.prepare import make_proposals, pair_data_for
    from mipd_kit.hoi.scoring import image_probs, student_pair_scores
    from mipd_kit.hoi.features import encode_texts
    from mipd_kit.teachers.tiny import TinyRandomTeacher

    w = load_hoi_world(world)
    teacher = TinyRandomTeacher(seed=0)
    cfg = _cfg(world, tmp_path)
    text = encode_texts(teacher, w.prompts, None)
    props, _ = make_proposals(cfg, w.test, w.vocab, "test", 0)
    d = pair_data_for(teacher, w, props, text, 10.0, cfg, "t")
    logits = torch.randn(d.num_pairs, w.vocab.num_hoi).masked_fill(~d.candidates, float("-inf"))
    for score in ("pair_prior", "joint", "relative"):
        s = student_pair_scores(logits, d, replace(cfg, score=score))
        assert (s >= 0).all() and (s[~d.candidates] == 0).all()
    joint = student_pair_scores(logits, d, replace(cfg, score="joint"))
    per_image = torch.zeros(len(d.filenames), w.vocab.num_hoi).index_add_(0, d.pair_image, joint)
    T = cfg.kd_temperature
    expected = image_probs(L.pool_pairs(logits, d.pair_image, len(d.filenames), "lse", T), d.image_candidates, T)
    assert torch.allclose(per_image, expected, atol=1e-5)
    with pytest.raises(ValueError, match="pair_prior"):
        student_pair_scores(logits, d, replace(cfg, score="best"))
    with pytest.raises(ValueError, match="crop_features"):
        replace(cfg, crop_features=False).validate()


def test_notebook_parameters_mirror_the_config(root):
    """Every stage parameter of notebooks/07_cl_hoi.ipynb is a CLHOIConfig field, with the smoke defaults' types."""
    import ast
    import dataclasses

    import nbformat

    nb = nbformat.read(root / "notebooks" / "07_cl_hoi.ipynb", as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    names = {node.target.id: ast.literal_eval(node.value) for node in ast.parse(params.source).body
             if isinstance(node, ast.AnnAssign)}
    fields = {f.name for f in dataclasses.fields(CLHOIConfig)}
    assert {"run_dir", "world_dir", "cache_dir", "seed"} <= set(names)
    # teacher_config: the run's teacher block, injected like the common parameters (not a CLHOIConfig field);
    # zero_shot_splits: the stage's extra evaluation of the written predictions (mipd_kit.app.stages.cl_hoi);
    # controls: the control rows the stage adds to CLHOIConfig.models
    assert set(names) - {"run_dir", "world_dir", "cache_dir", "seed", "teacher_config", "zero_shot_splits",
                         "controls"} <= fields
    smoke = CLHOIConfig.smoke()
    for k, v in names.items():
        if k in fields and k not in ("world_dir", "run_dir", "cache_dir", "teacher", "threads"):
            assert v == (list(getattr(smoke, k)) if isinstance(getattr(smoke, k), tuple) else getattr(smoke, k)), k


def test_vllm_descriptions_through_a_sampler(world, tmp_path):
    """Real-mode path: a Sampler describes images; the descriptions feed the context target of training."""
    from mipd_kit.hoi.prepare import describe_images, read_descriptions
    from mipd_kit.language.base import Response
    from mipd_kit.teachers.tiny import TinyRandomTeacher

    class Echo:
        fingerprint = "echo"

        def __call__(self, messages):
            path = messages[0]["content"][0]["path"]
            return Response(f"a person holding a ball ({Path(path).stem})", tuple(messages), {})

    names = sorted(p.name for p in (world / "images").glob("hoi_train_*.png"))[:3]
    out = describe_images(Echo(), [world / "images" / n for n in names], tmp_path / "desc.json")
    assert set(out) == set(names) and json.loads((tmp_path / "desc.json").read_text()) == out
    teacher = TinyRandomTeacher(seed=0)
    emb = read_descriptions(tmp_path / "desc.json", names + ["missing.png"], teacher)
    assert emb.shape == (4, teacher.dim) and emb[3].abs().sum() == 0 and emb[0].norm() > 0
    res = run_clhoi(_cfg(world, tmp_path / "run", models=("clhoi",), descriptions_file=str(tmp_path / "desc.json")))
    assert "context" in res.histories["clhoi-seed0"][0]
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="bad.json"):
        read_descriptions(tmp_path / "bad.json", names, teacher)
