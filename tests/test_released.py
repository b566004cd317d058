"""Released embedded weights (mipd_kit.weights, ``mipd pretrain``): the committed manifest against its files, a
smoke release built in a temporary folder, loading by name, the sha256 check and determinism.

Tolerance of the fp16 release against the fp32 teacher it was rounded from: pooled embeddings agree to cosine
>= 0.9999 and tokens to a max abs difference <= 1e-2 of the largest token magnitude (fp16 keeps 11 significant bits,
a relative error of ~5e-4 per weight, which the few layers of the smoke tower amplify a little; measured on the
smoke world: cosine >= 0.9999996, token difference 1.0e-3 of the largest token). Against the
fp16-rounded teacher (``fp16_round``: exactly what the release holds) the embeddings are bit-identical.
"""

from __future__ import annotations

import fnmatch
import json
import shutil
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mipd_kit.app import cli
from mipd_kit.data.synthsitu.generate import SynthConfig, generate
from mipd_kit.language import captioner as C
from mipd_kit.teachers import TeacherConfig, build_teacher
from mipd_kit.teachers import embedded as E
from mipd_kit.teachers.base import open_image
from mipd_kit import weights as W

ROOT = Path(__file__).resolve().parents[1]
RELEASE_FILES = {"teacher": {"config.json", "model.safetensors"}, "captioner": {"captioner.json", "model.safetensors"},
                 "student": {"model.safetensors"}}


# ----------------------------------------------------------------------------------------------- committed weights
def test_committed_manifest_matches_its_files():
    """Whatever is committed in the package: every listed file present with its size and sha256, nothing unlisted,
    fp16, provenance recorded, all within the 30 MB ceiling; no release at all is a valid (empty) state."""
    releases = W.list_releases(W.WEIGHTS_DIR)
    folders = sorted(p.name for p in W.WEIGHTS_DIR.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    assert folders == sorted(r["name"] for r in releases), "release folders and manifest entries differ"
    if not releases:
        assert W.total_size(W.WEIGHTS_DIR) == 0
        assert W.check_total_size(W.WEIGHTS_DIR) == 0
        return
    for r in releases:
        assert W.verify(r["name"], W.WEIGHTS_DIR) == [], r["name"]
        on_disk = {p.name for p in (W.WEIGHTS_DIR / r["name"]).iterdir()}
        assert on_disk == set(r["files"]) == RELEASE_FILES[r["kind"]], r["name"]
        assert r["dtype"] == "fp16"
        for key in ("command", "data_fingerprint", "corpus_fingerprint", "training_key", "config", "machine",
                    "training"):
            assert r.get(key), f"{r['name']}: manifest lacks {key}"
        if r["kind"] == "teacher":
            assert r["zero_shot"]["rows"], f"{r['name']}: no zero-shot numbers"
    assert 0 < W.check_total_size(W.WEIGHTS_DIR) <= W.MAX_TOTAL_BYTES


def test_pyproject_ships_the_weights_folder():
    """The package data patterns cover the manifest and every file a release writes."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["mipd_kit"]
    wanted = ["weights/manifest.json", "weights/embedded-teacher-default/model.safetensors",
              "weights/embedded-teacher-default/config.json", "weights/embedded-captioner-default/captioner.json",
              "weights/embedded-captioner-default/model.safetensors"]
    for w in wanted:
        assert any(fnmatch.fnmatch(w, p) for p in patterns), w
    assert not any(fnmatch.fnmatch("weights/.manifest.json.lock", p) for p in patterns)


def test_absent_manifest_is_empty_and_unknown_name_is_clear(tmp_path):
    assert W.list_releases(tmp_path) == [] and W.total_size(tmp_path) == 0
    with pytest.raises(W.ReleaseError, match=r"no release named 'embedded-teacher-default'; released: none"):
        W.resolve("embedded-teacher-default", tmp_path)
    (tmp_path / W.MANIFEST).write_text('{"format": "something-else"}')
    with pytest.raises(W.ReleaseError, match="not a weights manifest"):
        W.list_releases(tmp_path)


def test_size_ceiling_refuses_a_release(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.safetensors").write_bytes(b"x" * 200)
    W.write_release("embedded-teacher-a", src, {"kind": "teacher"}, tmp_path / "w", limit=300)
    with pytest.raises(W.ReleaseError, match="more than the 300 allowed"):
        W.write_release("embedded-teacher-b", src, {"kind": "teacher"}, tmp_path / "w", limit=300)
    assert [r["name"] for r in W.list_releases(tmp_path / "w")] == ["embedded-teacher-a"]
    assert not (tmp_path / "w" / "embedded-teacher-b").exists()
    with pytest.raises(W.ReleaseError, match="more than the 100 allowed"):
        W.check_total_size(tmp_path / "w", limit=100)


# ----------------------------------------------------------------------------------------------- a smoke release
def _small_world(out: Path) -> Path:
    cfg = replace(SynthConfig.smoke(0), n_train=80, rare_train=2, n_dev=35, n_test=35, n_unlabeled=10,
                  n_hoi_train=10, n_hoi_test=5, n_pretrain=160, workers=1)
    generate(cfg, out)
    return out


def _pretrain(world: Path, cache: Path, out: Path) -> None:
    rc = cli.main(["pretrain", "--size", "smoke", "--world", str(world), "--cache", str(cache), "--out", str(out),
                   "--threads", "1"])
    assert rc == 0


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A smoke-size `mipd pretrain` end to end into a temporary weights folder."""
    base = tmp_path_factory.mktemp("release")
    world = _small_world(base / "world")
    _pretrain(world, base / "cache", base / "weights")
    return {"world": world, "cache": base / "cache", "out": base / "weights", "base": base}


def _images(world: Path, n: int = 12):
    return [open_image(p) for p in sorted((world / "images").glob("*.png"))[:n]]


@pytest.mark.slow
def test_smoke_pretrain_writes_verified_fp16_releases(release):
    from safetensors.torch import load_file
    out, world = release["out"], release["world"]
    names = [r["name"] for r in W.list_releases(out)]
    assert names == ["embedded-captioner-smoke", "embedded-teacher-smoke", "embedded-teacher-student-smoke"]
    student = W.get_release("embedded-teacher-student-smoke", out)
    assert student["role"] == "student backbone" and student["kind"] == "teacher"
    assert student["training_key"] == json.loads(json.dumps(E.EmbeddedTeacherConfig.student_smoke().training_key()))
    assert student["data_fingerprint"] == E.EmbeddedTeacherConfig.student_smoke().data_fingerprint(world)
    for r in W.list_releases(out):
        assert W.verify(r["name"], out) == []
        assert set(r["files"]) == RELEASE_FILES[r["kind"]]
        state = load_file(str(out / r["name"] / "model.safetensors"))
        assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}
        assert r["command"].startswith("mipd pretrain --size smoke")
        assert r["corpus_fingerprint"] == C.data_fingerprint(world)
        assert r["training"]["threads"] == 1 and r["training"]["wall_time_s"] > 0
        assert r["machine"]["cpu"]["logical_cpus"] >= 1
    t = W.get_release("embedded-teacher-smoke", out)
    assert t["data_fingerprint"] == E.data_fingerprint(world, E.EmbeddedTeacherConfig.smoke().max_pairs)
    assert t["zero_shot"]["split"] == "dev"
    assert {(r["split"], r["setting"], r["mean"]) for r in t["zero_shot"]["rows"]} >= {("all", "top1", "image")}
    c = W.get_release("embedded-captioner-smoke", out)
    assert c["teacher_fingerprint"] == t["fingerprint"]
    assert 0 < W.check_total_size(out) <= W.MAX_TOTAL_BYTES


@pytest.mark.slow
def test_load_by_name_reproduces_the_teacher_within_fp16_tolerance(release):
    world, cache, out = release["world"], release["cache"], release["out"]
    cfg = E.EmbeddedTeacherConfig.smoke()
    fp32 = E.load_teacher(E.checkpoint_dir_for(world, cache, cfg))  # the cached fp32 teacher it was made from
    rel = E.load_released_teacher("embedded-teacher-smoke", out)
    assert all(v.dtype == torch.float32 for v in rel.state_dict().values() if v.is_floating_point())
    assert rel.weights["name"] == "embedded-teacher-smoke"
    files = W.get_release("embedded-teacher-smoke", out)["files"]
    assert rel.weights["sha256"] == {f: e["sha256"] for f, e in files.items()}
    ims = _images(world)
    a, b = fp32.encode_images(ims), rel.encode_images(ims)
    cos = F.cosine_similarity(a.pooled, b.pooled, dim=-1)
    assert float(cos.min()) >= 0.9999
    assert float((a.tokens - b.tokens).abs().max()) <= 1e-2 * float(a.tokens.abs().max())
    assert not torch.equal(a.tokens, b.tokens)  # fp16 did round something: the comparison is not vacuous
    r = E.fp16_round(E.load_teacher(E.checkpoint_dir_for(world, cache, cfg))).encode_images(ims)
    assert torch.equal(r.tokens, b.tokens) and torch.equal(r.pooled, b.pooled)
    assert rel.fingerprint == W.get_release("embedded-teacher-smoke", out)["fingerprint"]


@pytest.mark.slow
def test_captioner_loads_by_name_on_the_released_teacher(release):
    world, cache, out = release["world"], release["cache"], release["out"]
    teacher = E.load_released_teacher("embedded-teacher-smoke", out)
    cap = C.captioner_for(world, cache, teacher, C.CaptionerConfig.smoke(), weights="released", root=out)
    assert cap.weights["source"] == "release" and cap.weights["name"] == "embedded-captioner-smoke"
    assert all(v.dtype == torch.float32 for v in cap.decoder.state_dict().values() if v.is_floating_point())
    caps = C.caption_images(cap, teacher, sorted((world / "images").glob("*.png"))[:4], temperature=0.0)
    assert caps.skipped == [] and all(c.text for c in caps.captions)
    # the captioner language backend by release folder: it loads the released teacher the release records
    from mipd_kit.language.factory import CaptionerSamplerConfig, SamplerConfig, build_sampler
    sampler = build_sampler(SamplerConfig(backend="captioner", captioner=CaptionerSamplerConfig(
        checkpoint=str(out / "embedded-captioner-smoke"), temperature=0.0)))
    assert sampler.teacher.fingerprint == teacher.fingerprint
    img = sorted((world / "images").glob("*.png"))[0]
    reply = sampler([{"role": "user", "content": [{"type": "image_path", "path": str(img)}]}])
    assert reply.text == caps.captions[0].text
    # another teacher: the release does not apply; ``released`` refuses, naming the teacher
    torch.manual_seed(1)
    other = E.EmbeddedTeacher(E.EmbeddedTeacherConfig.smoke()).eval()
    with pytest.raises(W.ReleaseError, match="no released captioner .* teacher " + other.fingerprint):
        C.captioner_for(world, cache, other, C.CaptionerConfig.smoke(), weights="released", root=out)


@pytest.mark.slow
def test_sha_mismatch_names_file_expected_and_actual(release, tmp_path):
    out = tmp_path / "weights"
    shutil.copytree(release["out"], out)
    f = out / "embedded-teacher-smoke" / "model.safetensors"
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # flip one bit in the weights
    f.write_bytes(bytes(raw))
    expected = W.get_release("embedded-teacher-smoke", out)["files"]["model.safetensors"]["sha256"]
    actual = W.file_sha256(f)
    assert actual != expected
    with pytest.raises(W.ReleaseError) as e:
        E.load_released_teacher("embedded-teacher-smoke", out)
    msg = str(e.value)
    assert str(f) in msg and f"expected {expected}" in msg and f"actual {actual}" in msg
    assert W.verify("embedded-captioner-smoke", out) == []  # the other release is untouched
    f.unlink()
    with pytest.raises(W.ReleaseError, match="model.safetensors: file of release 'embedded-teacher-smoke' is missing"):
        W.resolve("embedded-teacher-smoke", out)


@pytest.mark.slow
def test_teacher_config_switch_release_or_retrain(release, monkeypatch, tmp_path):
    world, cache, out = release["world"], release["cache"], release["out"]
    monkeypatch.setenv(W.ENV_VAR, str(out))
    base = {"backend": "embedded", "size": "smoke", "seed": 0}
    t = build_teacher(TeacherConfig.from_dict(base).with_paths(world, cache))  # weights: auto
    assert t.weights["source"] == "release" and t.weights["name"] == "embedded-teacher-smoke"
    t_sha = t.weights["sha256"]
    ident = TeacherConfig.from_dict(base).identity()
    assert ident["release"]["name"] == "embedded-teacher-smoke"
    assert "release" not in TeacherConfig.from_dict({**base, "weights": "retrain"}).identity()
    t = build_teacher(TeacherConfig.from_dict({**base, "weights": "retrain"}).with_paths(world, cache))
    assert t.weights["source"] == "trained" and t.loaded_from_cache  # the fp32 teacher pretrain cached
    with pytest.raises(W.ReleaseError, match="no released embedded teacher"):
        build_teacher(TeacherConfig.from_dict({**base, "seed": 1, "weights": "released"}).with_paths(world, cache))
    with pytest.raises(ValueError, match="teacher.weights: 'newest' is not one of"):
        TeacherConfig.from_dict({**base, "weights": "newest"})
    # a world whose pretraining corpus differs from the release's is refused unless retrain is chosen
    other = tmp_path / "other"
    shutil.copytree(world, other, ignore=shutil.ignore_patterns("images"))
    cap = other / "pretrain" / "captions.jsonl"
    cap.write_text(cap.read_text().replace("a ", "one ", 1))
    with pytest.raises(W.ReleaseError, match=r"trained on pretraining corpus \w+, the world .* has corpus \w+; "
                                             "set weights: retrain"):
        build_teacher(TeacherConfig.from_dict({**base, "weights": "released"}).with_paths(other, cache))
    # what a run records in environment.json (runfolder.teacher_weights): the release by name + sha256, or why not
    plan = TeacherConfig.from_dict(base).with_paths(world, cache).weights_plan()
    assert plan["source"] == "release" and plan["sha256"] == t_sha
    plan = TeacherConfig.from_dict({**base, "weights": "released"}).with_paths(other, cache).weights_plan()
    assert plan["source"] == "trained" and "building refuses" in plan["reason"]
    # released-any: the release on a world with another corpus (the study's other world seeds); the same weights
    t_any = build_teacher(TeacherConfig.from_dict({**base, "weights": "released-any"}).with_paths(other, cache))
    assert t_any.weights["source"] == "release" and t_any.weights["sha256"] == t_sha
    plan = TeacherConfig.from_dict({**base, "weights": "released-any"}).with_paths(other, cache).weights_plan()
    assert plan["source"] == "release" and plan["sha256"] == t_sha
    cap_any = C.captioner_for(other, cache, t_any, C.CaptionerConfig.smoke(), weights="released-any", root=out)
    assert cap_any.weights["name"] == "embedded-captioner-smoke"
    # CL-HOI's describer follows the run's teacher.weights (the stage passes it as captioner_weights)
    from mipd_kit.hoi.descriptions import get_captioner
    from mipd_kit.app.stages.cl_hoi import clhoi_teacher_fields
    fields = clhoi_teacher_fields({**base, "weights": "released-any"})
    assert fields["captioner_weights"] == "released-any"
    cap_hoi = get_captioner(other, cache, t_any, "smoke", weights=fields["captioner_weights"])
    assert cap_hoi.weights["name"] == "embedded-captioner-smoke"
    with pytest.raises(W.ReleaseError, match="no released embedded teacher"):  # still needs a matching config
        build_teacher(TeacherConfig.from_dict({**base, "seed": 1, "weights": "released-any"}).with_paths(world, cache))


def test_a_student_checkpoint_names_a_released_backbone_by_name(release, monkeypatch):
    """describe_frozen records a released teacher by its release name (not a machine's path), and the checkpoint
    backend loads a release name after the sha256 check: a student checkpoint stays portable."""
    from mipd_kit.student.checkpoint import describe_frozen
    monkeypatch.setenv(W.ENV_VAR, str(release["out"]))
    t = build_teacher(TeacherConfig.from_dict({"backend": "embedded", "size": "smoke", "seed": 0})
                      .with_paths(release["world"], release["cache"]))
    desc = describe_frozen(t)
    assert desc["config"] == {"backend": "checkpoint", "checkpoint": "embedded-teacher-smoke"}
    again = build_teacher(TeacherConfig.from_dict(desc["config"]))
    assert again.fingerprint == t.fingerprint == desc["fingerprint"]


@pytest.mark.slow
def test_two_pretrains_with_the_same_threads_give_identical_files(release):
    base = release["base"]
    _pretrain(release["world"], base / "cache2", base / "weights2")  # a fresh cache: everything trains again
    for r in W.list_releases(release["out"]):
        again = W.get_release(r["name"], base / "weights2")
        assert again["training"]["trained_by_this_command"]
        assert again["files"] == r["files"], r["name"]
        for f in r["files"]:
            assert (base / "weights2" / r["name"] / f).read_bytes() == (release["out"] / r["name"] / f).read_bytes()
    # loaded from the cache instead of trained: the same files again
    _pretrain(release["world"], base / "cache2", base / "weights3")
    for r in W.list_releases(release["out"]):
        again = W.get_release(r["name"], base / "weights3")
        assert not again["training"]["trained_by_this_command"]
        assert again["files"] == r["files"], r["name"]
    assert json.loads((base / "weights3" / "embedded-teacher-smoke" / "config.json").read_text())["dtype"] == "fp16"


def test_results_md_says_which_teacher_weights_a_run_used(tmp_path):
    from mipd_kit.app.analysis import write_results
    env = {"weights": {"teacher": {"source": "release", "name": "embedded-teacher-default", "dtype": "fp16",
                                   "sha256": {"config.json": "a" * 64, "model.safetensors": "b" * 64}}}}
    (tmp_path / "environment.json").write_text(json.dumps(env))
    text = write_results(tmp_path, status={"run_id": "r"}).read_text()
    assert "Teacher weights: released `embedded-teacher-default` (fp16; sha256 config.json aaaaaaaaaaaa, " \
           "model.safetensors bbbbbbbbbbbb)" in text
    env["weights"]["teacher"] = {"source": "trained", "reason": "weights: retrain"}
    (tmp_path / "environment.json").write_text(json.dumps(env))
    assert "Teacher weights: trained on this run's world (weights: retrain)" in write_results(tmp_path).read_text()
