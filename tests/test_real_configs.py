"""The real-mode run configs (``configs/swig_real.yaml``, ``configs/hico_real.yaml``) stay valid without data:
their keys are parameters of the stage notebooks, each stage's ``Config`` accepts its params, the teacher blocks
are valid ``TeacherConfig``s, and the runner can plan them (a dry run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mipd_kit.app import pipeline, plan
from mipd_kit.app.check import stage_configs  # each stage's Config built as the runner would (its checks run)
from mipd_kit.app.config import RunConfig
from mipd_kit.teachers import TeacherConfig

REAL = ("swig_real.yaml", "hico_real.yaml", "real_smoke.yaml")


@pytest.mark.parametrize("name", REAL)
def test_real_config_validates_against_the_notebooks_and_stage_configs(root: Path, tmp_path: Path, name: str) -> None:
    cfg = RunConfig.load(root / "configs" / name)
    specs = plan.validate(cfg)
    assert specs, "no enabled stage"
    TeacherConfig.from_dict(cfg.teacher_config())
    confs = stage_configs(cfg, tmp_path / "run")
    assert set(confs) == set(specs)
    if "rationales" in confs:
        j = confs["rationales"].jrg_config()
        assert j.generator.backend == "openai" and j.judge.backend == "openai"
    if "distillation" in confs:
        d = confs["distillation"]
        for r in d.row_list():
            if r.kind != "student":
                continue
            from mipd_kit.app.stages.distillation import student_config
            sc = student_config(d, r.variant, d.seed_list[0], feature_shape=(577, 1024))
            assert sc.backbone == "cached"
        TeacherConfig.from_dict(d.student_backbone)
    if "cl_hoi" in confs:
        confs["cl_hoi"].clhoi_config(tmp_path / "run")


@pytest.mark.parametrize("name", ("swig_real.yaml", "hico_real.yaml"))
def test_real_config_is_the_real_thing(root: Path, name: str) -> None:
    cfg = RunConfig.load(root / "configs" / name)
    t = TeacherConfig.from_dict(cfg.teacher_config())
    assert t.device == "cuda" and t.vision_config is None  # pretrained weights, not a random config
    if name == "swig_real.yaml":  # the authors' teacher (BLIP-2) and student backbone (CLIP ViT-L/14-336)
        assert (t.backend, t.arch, t.model) == ("transformers", "blip2", "Salesforce/blip2-itm-vit-g")
        b = TeacherConfig.from_dict(cfg.stages["distillation"].params["student_backbone"])
        assert (b.backend, b.model, b.pretrained) == ("open_clip", "ViT-L-14-336", "openai")
    else:
        assert t.backend == "open_clip" and t.pretrained
    assert "data" not in cfg.stages or not cfg.stages["data"].enabled  # a real world folder is never generated


def test_hico_real_evaluates_every_standard_zero_shot_split(root: Path) -> None:
    from mipd_kit.data.hico import resolve_zero_shot
    from mipd_kit.eval.hico import default_split_files

    cfg = RunConfig.load(root / "configs" / "hico_real.yaml")
    names = cfg.stages["cl_hoi"].params["zero_shot_splits"]
    assert {"rare_first", "non_rare_first", "unseen_object", "unseen_verb"} <= set(names)
    for n in names:  # each resolves on a fresh install (the bundled splits), without a file beside the data
        name, unseen = resolve_zero_shot(n, default_split_files(Path("/nonexistent/hoi_test.json")))
        assert name == n and unseen and max(unseen) < 600


@pytest.mark.parametrize("name", ("swig_real.yaml", "hico_real.yaml"))
def test_real_config_dry_run_plans_every_enabled_stage(root: Path, tmp_path: Path, name: str) -> None:
    cfg = RunConfig.load(root / "configs" / name, [f"reports_dir={tmp_path}", "run_id=dry"])
    res = pipeline.run(cfg, dry_run=True, quiet=True)
    assert res.state == "dry-run"
    assert res.stages == {n: "run" if s.enabled else "skipped (disabled)" for n, s in cfg.stages.items()}
