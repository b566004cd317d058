"""The real-mode pipeline in ``make test``: ``mipd run --config configs/real_smoke.yaml``.

Every stage runs through the runner on CPU on a small SynthSitu smoke world (SWiG / imSitu / HICO-DET formats), with
the real teacher class (BLIP-2's ``Blip2ForImageTextRetrieval``, tiny random config, as ``configs/swig_real.yaml``'s
``Salesforce/blip2-itm-vit-g``) built by the one teacher factory, the student on a frozen open_clip backbone, and every
rationale and judge call going over HTTP to a real OpenAI-compatible server on loopback started here. The numbers
of this run mean nothing (random weights); the test checks that the real path runs and that the calls are counted.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mipd_kit.app.config import RunConfig
from mipd_kit.language.loopback import LoopbackServer, embedded_responder

pytestmark = pytest.mark.slow


def lenient_responder() -> Any:
    """The embedded generator over HTTP and a judge that accepts about half of the rationales (by a hash of the
    prompt), so that a random-weight teacher's run still has positives and negatives for NMPA and the student.

    The embedded judge rejects nearly every rationale written from a random teacher's evidence (its verbs are
    wrong), which would leave the rationale-based students untrained; a rehearsal must exercise them.
    """
    gen = embedded_responder(seed=0)

    def respond(body: dict[str, Any]) -> str:
        msgs = body.get("messages", [])
        text = "\n".join(m["content"] if isinstance(m.get("content"), str) else json.dumps(m.get("content"))
                         for m in msgs)
        if "Task: judge rationale" not in text:
            return gen(body)
        ok = hashlib.sha256(text.encode()).digest()[0] % 2 == 0
        return json.dumps({"score": 8 if ok else 2, "accept": ok, "reasons": [] if ok else ["the activity is wrong"]})

    return respond


@pytest.fixture(scope="module")
def real_smoke(root: Path, tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("real_smoke")
    with LoopbackServer(lenient_responder()) as srv:
        cmd = [sys.executable, "-m", "mipd_kit.app.cli", "run", "--config", str(root / "configs" / "real_smoke.yaml"),
               "--set", f"stages.rationales.params.generator.openai.base_url={srv.base_url}",
               "--set", f"reports_dir={base / 'reports'}", "--set", f"world_dir={base / 'world'}",
               "--set", f"cache_dir={base / 'cache'}", "--set", "run_id=real-smoke", "--quiet"]
        proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=1800)
        requests = srv.stats["requests"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return {"run_dir": base / "reports" / "real-smoke", "requests": requests, "base": base}


def test_real_smoke_config_is_the_real_path(root: Path) -> None:
    cfg = RunConfig.load(root / "configs" / "real_smoke.yaml")
    real = RunConfig.load(root / "configs" / "swig_real.yaml")
    # the teacher and student-backbone classes of swig_real.yaml, at tiny random sizes
    assert (cfg.teacher["backend"], cfg.teacher["arch"]) == (real.teacher["backend"], real.teacher["arch"]) \
        == ("transformers", "blip2")
    assert cfg.teacher.get("vision_config") and not cfg.teacher.get("model")
    backbone = cfg.stages["distillation"].params["student_backbone"]
    assert backbone["backend"] == real.stages["distillation"].params["student_backbone"]["backend"] == "open_clip"
    assert backbone["pretrained"] is None
    assert cfg.stages["rationales"].params["backend"] == "openai"
    assert "random" in cfg.description.lower() and "meaningless" in cfg.description.lower()


def test_student_backbone_makes_a_cached_feature_student() -> None:
    from mipd_kit.app.stages import distillation as D

    cfg = D.Config(student_smoke=True, student_backbone={"backend": "tiny"})
    sc = D.student_config(cfg, "full", 0, feature_shape=(17, 32))
    assert (sc.backbone, sc.num_tokens, sc.in_dim) == ("cached", 17, 32)
    assert D.student_config(D.Config(student_smoke=True), "full", 0).backbone == "cnn"


def test_every_stage_ran(real_smoke: dict) -> None:
    status = json.loads((real_smoke["run_dir"] / "status.json").read_text())
    assert {k: v["state"] for k, v in status["stages"].items()} == {
        k: "done" for k in ("data", "teacher", "rationales", "judge", "alignment", "distillation", "cl_hoi",
                            "analysis")}
    teachers = {v["teacher_fingerprint"] for v in status["stages"].values() if v.get("teacher_fingerprint")}
    assert len(teachers) == 1


def test_every_llm_call_went_over_http_and_is_counted(real_smoke: dict) -> None:
    stats = json.loads((real_smoke["run_dir"] / "jrg_stats.json").read_text())
    run = stats["run"]
    assert run["backend"].startswith("gen=openai:") and "judge=openai:" in run["backend"]
    assert run["generator_calls"] > 0 and run["judge_calls"] > 0
    # every chat request the server saw: the run's calls and the one-token completion of `mipd run`'s check
    assert run["generator_calls"] + run["judge_calls"] + 1 == real_smoke["requests"]
    assert run["sampler_errors"] == 0 and run["judge_parse_failures"] == 0


def test_rationale_students_and_clhoi_were_trained(real_smoke: dict) -> None:
    rows = json.loads((real_smoke["run_dir"] / "metrics.json").read_text())
    models = {(r["task"], r["model"]) for r in rows}
    assert {("gsr", "teacher"), ("gsr", "baseline"), ("gsr", "mipd"), ("hoi", "clhoi")} <= models
    index = json.loads((real_smoke["run_dir"] / "nmpa" / "index.json").read_text())
    assert index["models"], "NMPA was not trained (no positive rationales reached stage alignment)"
    assert (real_smoke["run_dir"] / "predictions").is_dir()
    zs = json.loads((real_smoke["run_dir"] / "clhoi" / "zero_shot" / "unseen_composition.json").read_text())
    assert {r["model"] for r in zs} >= {"clhoi", "teacher"} and {r["split"] for r in zs} >= {"unseen", "seen"}
    # the student is a head on the cached tokens of its own frozen backbone (open_clip CLIP)
    # (its own cache folder beside the teacher's: the folders of one dataset are keyed by the model's fingerprint)
    assert len([d for d in (real_smoke["base"] / "cache" / "features" / "world-train").iterdir() if d.is_dir()]) == 2


def test_results_say_the_numbers_mean_nothing(real_smoke: dict) -> None:
    text = (real_smoke["run_dir"] / "results.md").read_text()
    assert "random" in text.lower() and "meaningless" in text.lower()
