"""Fault tier of the entry points: every ``mipd`` subcommand fails cleanly.

Each case runs a subcommand through ``mipd_kit.app.cli.main`` (the one error boundary) and asserts: exit code 2 (130
after Ctrl-C), one line on stderr naming the file or option, no traceback, nothing already computed lost and no
half-written output. Secrets: a planted key reaches a run through every door (the config, the environment, a URL,
a notebook's output, a stage's error, a server's reply) and is then looked for in every file of the run folder and
of the published report. A full disk is a patched writer raising ``ENOSPC``; a read-only folder a patched
``os.mkdir`` raising ``EROFS`` (``chmod`` does not stop root, as in CI).
"""

from __future__ import annotations

import errno
import json
import os
import zipfile
from pathlib import Path

import nbformat as nbf
import numpy as np
import pytest
import yaml

from mipd_kit.app import cli
from test_faults import _go, _one_line_error, _spawn, _wait_ready, hico_files, swig_files  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-PLANTEDplanted0123456789abcdef"          # a key-like string (pattern)
ENV_KEY = "zq8PLANTEDenvValue77x"                   # a configured key value (no pattern: only its variable names it)
URL_KEY = "PLANTEDurlQuery55"                       # a key in a URL's query
URL_PASS = "PLANTEDuserinfo66"                      # a password in a URL's user-info
PLANTED = (KEY, ENV_KEY, URL_KEY, URL_PASS)


def _mipd(*argv: str) -> int:
    return cli.main([str(a) for a in argv])


def _full_disk(*_a, **_k):
    raise OSError(errno.ENOSPC, "No space left on device")


def _grep_planted(folder: Path) -> list[str]:
    """Files under ``folder`` holding any planted secret (bytes, so binary files are searched too)."""
    hits = []
    for p in folder.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            hits += [f"{p.relative_to(folder)}: {s[:12]}" for s in PLANTED if s.encode() in data]
    return hits


# ----------------------------------------------------------------------------------------------- the boundary
def test_boundary_turns_os_and_value_errors_into_one_line_and_ctrl_c_into_130(capsys, monkeypatch):
    for exc in (OSError(errno.ENOSPC, "No space left on device", "/x/out.json"), OverflowError("int too large"),
                RecursionError("maximum recursion depth exceeded"), zipfile.BadZipFile("File is not a zip file"),
                ValueError("bad value\nsecond line")):
        def boom(exc=exc):
            raise exc
        assert cli.run_command("mipd x", boom) == 2
        err = _one_line_error(capsys, "mipd x: error:")
        assert "--debug" in err
    assert "/x/out.json: No space left on device (the disk is full" in cli.error_line(
        OSError(errno.ENOSPC, "No space left on device", "/x/out.json"))

    def interrupted():
        raise KeyboardInterrupt
    assert cli.run_command("mipd x", interrupted) == 130
    assert capsys.readouterr().err.strip() == "mipd x: interrupted (Ctrl-C); finished work is kept"
    # --debug (or MIPD_DEBUG=1) shows the traceback; a programming error is never swallowed
    assert cli.run_command("mipd x", lambda: (_ for _ in ()).throw(ValueError("v")), debug=True) == 2
    assert "Traceback" in capsys.readouterr().err
    with pytest.raises(KeyError):
        cli.run_command("mipd x", lambda: {}["missing"])


def test_debug_flag_is_taken_from_anywhere_on_the_command_line(tmp_path, capsys):
    assert _mipd("eval-swig", "--debug", "--gt", tmp_path / "no.json", "--pred", tmp_path / "p.json",
                 "--out", tmp_path / "m.json") == 2
    assert "file not found" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- evaluators
@pytest.mark.parametrize("case, needle", [
    ("score_400_digits", "score"), ("box_400_digits", "box"), ("int_5000_digits", "unreadable number"),
    ("nested_200000", "nested too deeply"), ("empty_object", "none of its 0 predicted image(s)"),
    ("unknown_images", "none of its 1 predicted image(s)")])
def test_eval_swig_bad_predictions_are_one_line(case, needle, swig_files, tmp_path, capsys):  # noqa: F811
    gt, pred, preds = swig_files
    v = preds["a.jpg"]["verbs"][0]
    text = {"score_400_digits": lambda: json.dumps(preds).replace("0.9", "9" * 400),
            "box_400_digits": lambda: json.dumps(preds).replace("[0, 0, 10, 10]", f"[0, 0, 1{'0' * 400}, 10]"),
            "int_5000_digits": lambda: json.dumps(preds).replace("0.9", "7" * 5000),
            "nested_200000": lambda: "[" * 200_000 + "]" * 200_000,
            "empty_object": lambda: "{}",
            "unknown_images": lambda: json.dumps({"x.jpg": {"verbs": [v]}})}[case]()
    pred.write_text(text)
    out = tmp_path / "m.json"
    assert _mipd("eval-swig", "--gt", gt, "--pred", pred, "--out", out) == 2
    _one_line_error(capsys, needle)
    assert not out.exists()


@pytest.mark.parametrize("case, needle", [
    ("hoi_1e300", "hoi must be an integer index"), ("score_400_digits", "score"),
    ("box_400_digits", "box_h"), ("nested_200000", "nested too deeply"), ("broken_zip_npz", "npz"),
    ("npz_2d_image", "must be 1-D"), ("unknown_images", "none of its 1 predicted image(s)"),
    ("npz_unknown_images", "none of its 0 predicted image(s)")])
def test_eval_hico_bad_predictions_are_one_line(case, needle, hico_files, tmp_path, capsys):  # noqa: F811
    from mipd_kit.eval.hico import NPZ_KEYS, save_predictions_npz
    gt, pred, preds = hico_files
    p = json.loads(json.dumps(preds))
    d = p["a.jpg"][0]
    if case.endswith("npz") or case.startswith("npz"):
        pred = tmp_path / "pred.npz"
        if case == "broken_zip_npz":
            save_predictions_npz(pred, preds)
            pred.write_bytes(pred.read_bytes()[: len(pred.read_bytes()) // 2])
        else:
            save_predictions_npz(pred, preds if case == "npz_2d_image" else {"zz.jpg": preds["a.jpg"]})
            if case == "npz_2d_image":
                with np.load(pred) as z:
                    arrays = {k: z[k] for k in NPZ_KEYS}
                arrays["image"] = arrays["image"].reshape(-1, 1)
                np.savez(pred, **arrays)
    else:
        if case == "hoi_1e300":
            d["hoi"] = 1e300
        elif case == "score_400_digits":
            d["score"] = 10 ** 400
        elif case == "box_400_digits":
            d["box_h"] = [0, 0, 10 ** 400, 9]
        elif case == "unknown_images":
            p = {"zz.jpg": p["a.jpg"]}
        pred.write_text("[" * 200_000 + "]" * 200_000 if case == "nested_200000" else json.dumps(p))
    out = tmp_path / "m.json"
    assert _mipd("eval-hico", "--gt", gt, "--pred", pred, "--out", out) == 2
    _one_line_error(capsys, needle)
    assert not out.exists()


def test_eval_vcoco_predictions_of_no_ground_truth_image_are_refused(tmp_path, capsys):
    from test_vcoco import official_fixture
    vsrl, coco = official_fixture(tmp_path)
    pred, out = tmp_path / "pairs.json", tmp_path / "m.json"
    pred.write_text(json.dumps({"zz.jpg": []}))
    assert _mipd("eval-vcoco", "--vsrl", vsrl, "--coco", coco, "--pred", pred, "--out", out) == 2
    _one_line_error(capsys, "pairs.json", "none of its 1 predicted image(s) is among the 1 image(s)")
    assert not out.exists()


def test_eval_swig_report_is_never_overwritten_silently(swig_files, tmp_path, capsys):  # noqa: F811
    gt, pred, _ = swig_files
    out, report = tmp_path / "m.json", tmp_path / "report.json"
    report.write_text('{"precious": true}')
    assert _mipd("eval-swig", "--gt", gt, "--pred", pred, "--out", out, "--report", report) == 2
    _one_line_error(capsys, "report.json", "--overwrite")
    assert report.read_text() == '{"precious": true}' and not out.exists()
    assert _mipd("eval-swig", "--gt", gt, "--pred", pred, "--out", out, "--report", report, "--overwrite") == 0
    assert "warnings" in json.loads(report.read_text())


def test_an_evaluator_whose_out_appears_while_it_scores_keeps_the_other_rows(swig_files, tmp_path, capsys,  # noqa: F811
                                                                           monkeypatch):
    """The race, made deterministic: another process writes the same new --out while this one scores."""
    import mipd_kit.eval.swig as swig
    gt, pred, _ = swig_files
    out = tmp_path / "m.json"
    real = swig.evaluate_swig_report
    other = [{"task": "gsr", "model": "other", "seed": 0, "split": "all", "setting": "top1", "metric": "verb",
              "mean": "image", "value": 1.0}]

    def slow(*a, **k):
        out.write_text(json.dumps(other))  # the other evaluator finished first
        return real(*a, **k)
    monkeypatch.setattr(swig, "evaluate_swig_report", slow)
    assert _mipd("eval-swig", "--gt", gt, "--pred", pred, "--out", out) == 2
    _one_line_error(capsys, "written by another process", "--merge")
    assert json.loads(out.read_text()) == other
    out.unlink()
    assert _mipd("eval-swig", "--gt", gt, "--pred", pred, "--out", out, "--merge") == 0  # merge keeps both
    assert {r["model"] for r in json.loads(out.read_text())} == {"other", "model"}


EVAL_CHILD = """
import sys
from mipd_kit.app.cli import main
import mipd_kit.eval.swig  # imports done before the start signal
print("ready", flush=True)
sys.stdin.readline()
sys.exit(main(sys.argv[1:]))
"""


def test_two_evaluator_processes_on_one_new_out_lose_no_rows(swig_files, tmp_path):  # noqa: F811
    """Two evaluators released at the same moment on one new --out, 3 trials (the race of the issue: both exited 0
    and one run's rows were lost)."""
    gt, pred, _ = swig_files
    for trial in range(3):
        out = tmp_path / f"m{trial}.json"
        argv = ["eval-swig", "--gt", str(gt), "--pred", str(pred), "--out", str(out)]
        procs = [_spawn(EVAL_CHILD, *argv, "--model", f"m{i}") for i in range(2)]
        for p in procs:
            _wait_ready(p)
        _go(*procs)
        res = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
        assert sorted(c for c, _ in res) == [0, 2], (trial, res)  # one wrote, the other was refused
        winner = next(i for i, (c, _) in enumerate(res) if c == 0)
        assert {r["model"] for r in json.loads(out.read_text())} == {f"m{winner}"}
        loser_err = next(e for c, e in res if c == 2)
        assert "Traceback" not in loser_err and "--merge" in loser_err


# ----------------------------------------------------------------------------------------------- predict, export
@pytest.fixture(scope="module")
def st(tmp_path_factory):
    from deploy_students import smoke_students
    return smoke_students(tmp_path_factory.getbasetemp())


def test_predict_refuses_bad_options_before_loading(st, tmp_path, capsys):
    from deploy_students import write_photo
    img = write_photo(tmp_path / "a.jpg")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    base = ["predict", "--checkpoint", st.cnn, img]
    for extra, needle in ((["--out", tmp_path], "is a folder"), (["--draw", blocker], "--draw is a file"),
                          (["--batch-size", "-1"], "--batch-size must be >= 1"), (["--top-k", "0"], "--top-k"),
                          (["--out", blocker / "p.json"], "is a file, not a folder")):
        assert _mipd(*base, *extra) == 2, extra
        _one_line_error(capsys, needle)
    out = tmp_path / "new" / "deeper" / "p.json"  # a missing folder is created
    assert _mipd(*base, "--out", out) == 0 and "a.jpg" in json.loads(out.read_text())


def test_predict_on_cuda_without_a_gpu_is_one_line(st, tmp_path, capsys):
    """``--device cuda`` on a machine without CUDA (on a GPU machine: a device index it does not have)."""
    import torch
    from deploy_students import write_photo
    device, needle = (("cuda:99", "CUDA device(s)") if torch.cuda.is_available() else
                      ("cuda", "CUDA is not available"))
    assert _mipd("predict", "--checkpoint", st.cnn, write_photo(tmp_path / "a.jpg"), "--device", device) == 2
    _one_line_error(capsys, needle)


def test_export_onnx_checks_first_and_writes_only_a_checked_graph(st, tmp_path, capsys, monkeypatch):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import mipd_kit.student.export as export
    bad_img = tmp_path / "bad.jpg"
    bad_img.write_bytes(b"not an image")
    out = tmp_path / "s.onnx"
    base = ["export-onnx", "--checkpoint", st.cnn, "--out", out]
    for extra, needle in ((["--top-k", "0"], "--top-k"), (["--check-world", tmp_path / "nope"], "not a world folder"),
                          (["--check-images", bad_img], "cannot decode image")):
        assert _mipd(*base, *extra) == 2, extra
        _one_line_error(capsys, needle)
        assert not out.exists()
    assert _mipd("export-onnx", "--checkpoint", st.cnn, "--out", tmp_path) == 2
    _one_line_error(capsys, "is a folder")
    # a graph that fails its check is not written (exit 1)
    monkeypatch.setattr(export, "check_onnx", lambda *a, **k: {"ok": False, "max_abs": {}})
    assert _mipd(*base, "--check-n", "2") == 1
    assert "not written" in capsys.readouterr().err and not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".s.onnx")]  # no hidden leftovers
    monkeypatch.undo()
    assert _mipd(*base, "--check-n", "2") == 0 and out.is_file()
    before = out.read_bytes()
    capsys.readouterr()
    assert _mipd(*base, "--check-n", "2") == 2  # an existing file needs --overwrite
    _one_line_error(capsys, "--overwrite")
    assert out.read_bytes() == before
    assert _mipd(*base, "--check-n", "2", "--overwrite") == 0


# ----------------------------------------------------------------------------------------------- rationales
@pytest.mark.parametrize("extra, needle", [
    (["--concurrency", "0"], "--concurrency: concurrency must be a positive integer"),
    (["--base-url", "http://[::1/v1"], "--base-url: base_url must be an http(s)"),
    (["--rounds", "0"], "--rounds: rounds must be a positive integer"),
    (["--api-key-env", KEY], "api_key_env must be the NAME")])
def test_rationales_run_refuses_bad_options_before_any_file(extra, needle, tmp_path, capsys):
    run = tmp_path / "run"
    assert _mipd("rationales", "run", "--world-dir", tmp_path / "w", "--run-dir", run, "--smoke",
                 "--backend", "openai", *extra) == 2
    err = _one_line_error(capsys, needle)
    assert KEY not in err and not run.exists()


def test_ctrl_c_in_rationales_run_is_one_line_and_130(tmp_path, capsys, monkeypatch):
    import mipd_kit.rationales.jrg as jrg

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(jrg, "run_jrg", interrupted)
    assert _mipd("rationales", "run", "--world-dir", tmp_path, "--run-dir", tmp_path / "r", "--smoke") == 130
    err = capsys.readouterr().err.strip()
    assert err == "mipd rationales: interrupted (Ctrl-C); finished work is kept"


def test_jrg_never_stores_a_key_from_the_url_or_a_server_reply(tmp_path, monkeypatch):
    """A password in --base-url (user-info) and a server that echoes a key in every reply: neither reaches
    rationales.jsonl, jrg_stats.json or any other file of the run."""
    from mipd_kit.language.loopback import LoopbackServer, embedded_responder
    from mipd_kit.rationales.jrg import main
    from mipd_kit.rationales.toy import write_toy_world

    world, run = tmp_path / "w", tmp_path / "r"
    write_toy_world(world, run, n_per_verb=1)
    monkeypatch.setenv("MIPD_TEST_API_KEY", ENV_KEY)
    inner = embedded_responder()

    def leaky(body):
        return f"{inner(body)} (debug: Authorization Bearer {KEY} key {ENV_KEY})"
    with LoopbackServer(leaky) as srv:
        url = srv.base_url.replace("://", f"://user:{URL_PASS}@")
        code = main(["run", "--world-dir", str(world), "--run-dir", str(run), "--smoke", "--backend", "openai",
                     "--base-url", url, "--api-key-env", "MIPD_TEST_API_KEY", "--max-failure-rate", "1.0"])
    assert code == 0
    assert (run / "rationales.jsonl").stat().st_size > 0
    assert _grep_planted(run) == []
    assert "[REDACTED]" in (run / "rationales.jsonl").read_text()


# ----------------------------------------------------------------------------------------------- mipd run
from tests.test_pipeline_runner import _nb  # noqa: E402  (a one-stage test notebook)


@pytest.fixture()
def leaky_project(tmp_path: Path) -> Path:
    """One stage whose notebook prints every planted secret and then fails with one in its error."""
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _nb(nbs / "x.ipynb", 'base_url: str = ""  # endpoint\napi_key_env: str = "OPENAI_API_KEY"  # key variable\n', f'''
import os
from pathlib import Path
print("endpoint", base_url)
print("key from the environment", os.environ.get(api_key_env))
print("a key-like string {KEY}")
Path(run_dir, "x.txt").write_text("done")
raise RuntimeError("the endpoint " + base_url + " refused key " + os.environ.get(api_key_env, ""))
''')
    cfg = {"seed": 0, "run_id": "r1", "root": str(tmp_path), "world_dir": "world", "cache_dir": "cache",
           "reports_dir": "reports", "notebooks_dir": "nbs",
           "stages": {"x": {"notebook": "x.ipynb", "outputs": ["x.txt"], "params": {
               "base_url": f"https://user:{URL_PASS}@api.example.com/v1?key={URL_KEY}&x=1",
               "api_key_env": "MIPD_TEST_API_KEY"}}}}
    (tmp_path / "world").mkdir()
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return tmp_path


def test_no_planted_secret_in_any_file_of_a_run_or_its_published_report(leaky_project, monkeypatch, capsys):
    monkeypatch.setenv("MIPD_TEST_API_KEY", ENV_KEY)
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)
    run = leaky_project / "reports" / "r1"
    assert _mipd("run", "--config", leaky_project / "cfg.yaml", "--quiet") == 1  # the stage fails on purpose
    err = capsys.readouterr().err
    assert not [s for s in PLANTED if s in err]
    assert (run / "notebooks" / "x.ipynb").is_file() and (run / "status.json").is_file()
    assert _grep_planted(run) == [], "secrets in the run folder"
    nb_text = (run / "notebooks" / "x.ipynb").read_text()
    assert "[REDACTED]" in nb_text and "api.example.com" in nb_text  # redacted, not dropped
    # resuming the run compares the redacted config.yaml with the live config: same config, no --force needed
    assert _mipd("run", "--config", leaky_project / "cfg.yaml", "--quiet", "--dry-run") == 0
    # publish: the copy is clean, so it is published; every file of it is searched too
    dest = leaky_project / "published"
    assert _mipd("publish", run, "--to", dest, "--allow-partial", "--samples", "0") == 0
    assert _grep_planted(dest) == []
    # a key that reached a run file by another way (a hand edit) stops the publish unless --redact-secrets
    with open(run / "results.md", "a") as f:
        f.write(f"\ncurl -H 'Authorization: Bearer {ENV_KEY}' https://h/v1?api_key={URL_KEY}\n")
    capsys.readouterr()
    dest2 = leaky_project / "published2"
    assert _mipd("publish", run, "--to", dest2, "--allow-partial", "--samples", "0") == 2
    err = _one_line_error(capsys, "results.md", "--redact-secrets")
    assert not [s for s in PLANTED if s in err] and not dest2.exists()
    assert _mipd("publish", run, "--to", dest2, "--allow-partial", "--samples", "0", "--redact-secrets") == 0
    assert _grep_planted(dest2) == [] and "[REDACTED]" in (dest2 / "results.md").read_text()


def test_a_key_given_as_api_key_env_is_refused_before_any_file(leaky_project, capsys):
    run = leaky_project / "reports" / "r1"
    # a custom notebook's parameter named api_key_env: the rule by name
    assert _mipd("run", "--config", leaky_project / "cfg.yaml", "--set", f"stages.x.params.api_key_env={KEY}") == 2
    err = capsys.readouterr().err
    assert "api_key_env must be the NAME" in err and KEY not in err and not run.exists()
    # the standard rationales stage: refused by its Config, in `mipd run` (also --dry-run) before any file
    for dry in ([], ["--dry-run"]):
        out = leaky_project / f"smoke-run{len(dry)}"
        assert _mipd("run", "--config", ROOT / "configs" / "smoke.yaml", "--out", out, *dry, "--set",
                     f"stages.rationales.params.generator.openai.api_key_env={KEY}") == 2
        err = capsys.readouterr().err
        assert "api_key_env must be the NAME" in err and "Traceback" not in err
        assert KEY not in err and not out.exists()


def test_dry_run_lists_every_bad_parameter_at_once(tmp_path, capsys):
    sets = ["stages.cl_hoi.params.epochs=three", "stages.cl_hoi.params.lr=-1", "stages.distillation.params.epochs=-1",
            "stages.rationales.params.rounds=0", "stages.rationales.params.generator.openai.concurrency=0",
            "stages.alignment.params.nmpa_batch_size=0"]
    argv = ["run", "--config", ROOT / "configs" / "smoke.yaml", "--out", tmp_path / "r", "--dry-run"]
    for s in sets:
        argv += ["--set", s]
    assert _mipd(*argv) == 2
    err = capsys.readouterr().err
    assert "6 problem(s)" in err
    for needle in ("cl_hoi.params: epochs must be int, got 'three'", "cl_hoi.params: lr must be > 0",
                   "distillation.params: epochs must be a positive integer",
                   "rationales.params: rounds must be a positive integer",
                   "rationales.params: generator.openai.concurrency must be a positive integer",
                   "alignment.params: nmpa_batch_size must be a positive integer"):
        assert needle in err, (needle, err)
    assert not (tmp_path / "r").exists()


def test_a_flat_sampler_key_of_the_rationales_stage_names_its_block(tmp_path, capsys):
    """The rationales stage's sampler settings live in its generator: / judge: blocks; a flat key is refused before
    anything runs, with where it goes."""
    argv = ["run", "--config", ROOT / "configs" / "smoke.yaml", "--out", tmp_path / "r", "--dry-run",
            "--set", "stages.rationales.params.base_url=http://127.0.0.1:9/v1", "--set", "stages.rationales.params.top_p=0.5"]
    assert _mipd(*argv) == 2
    err = capsys.readouterr().err
    assert "base_url is set in generator: {openai: {base_url: ...}}" in err, err
    assert "top_p is set in generator: {captioner: {top_p: ...}}" in err and not (tmp_path / "r").exists()
    argv = [*argv[:6], "--set", "stages.rationales.params.generator.openai.modle=x"]
    assert _mipd(*argv) == 2
    assert "generator.openai: unknown key(s) ['modle']" in capsys.readouterr().err


def test_stage_configs_validate_at_construction():
    from mipd_kit.app.stages import cl_hoi, distillation, rationales, teacher
    for make, needle in ((lambda: cl_hoi.Config(epochs=0), "epochs must be a positive integer"),
                         (lambda: cl_hoi.Config(lr=-1.0), "lr must be > 0"),
                         (lambda: cl_hoi.Config(seeds=[]), "seeds must be a non-empty list"),
                         (lambda: distillation.Config(epochs=-1), "epochs"),
                         (lambda: rationales.Config(judge={"openai": {"concurrency": 0}}),
                          "judge.openai.concurrency must be a positive integer"),
                         (lambda: rationales.Config(generator={"openai": {"api_key_env": KEY}}), "api_key_env must be the NAME"),
                         (lambda: teacher.Config(feature_batch_size="64"), "feature_batch_size must be int")):
        with pytest.raises(ValueError, match=needle.replace("(", r"\(")):
            make()
    from mipd_kit.teachers.backends import TeacherConfig
    with pytest.raises(ValueError, match="device must be auto, cpu, cuda or cuda:N"):
        TeacherConfig.from_dict({"device": "tpu"})
    # the library configs behind `mipd clhoi` and `mipd train-student` use the same validator
    from dataclasses import replace

    from mipd_kit.hoi.config import CLHOIConfig
    from mipd_kit.student.config import StudentConfig
    with pytest.raises(ValueError, match="CLHOIConfig: epochs must be a positive integer, got -1"):
        replace(CLHOIConfig.smoke(), epochs=-1).validate()
    with pytest.raises(ValueError, match="StudentConfig: lr must be > 0, got -1"):
        StudentConfig(lr=-1.0)


def test_redaction_covers_keys_url_credentials_and_configured_values(monkeypatch):
    from mipd_kit.redaction import check_api_key_env, find_secrets, redact, redact_obj
    monkeypatch.setenv("SOME_SERVICE_TOKEN", ENV_KEY)
    text = (f"{KEY} https://user:{URL_PASS}@h.example/v1?model=m&key={URL_KEY} Bearer abc.def "
            f"v={ENV_KEY} http://127.0.0.1:8080/v1 task-sk-not-a-key")
    out = redact(text)
    assert not [s for s in PLANTED if s in out] and "abc.def" not in out
    assert "https://[REDACTED]@h.example/v1?model=m&key=[REDACTED]" in out
    assert "http://127.0.0.1:8080/v1" in out and "task-sk-not-a-key" in out  # ordinary text kept
    assert redact(out) == out and find_secrets(out) == []
    assert set(find_secrets(text)) == {"configured key", "key-like string", "URL credentials"}
    assert redact_obj({"a": [KEY, 1, None]}) == {"a": ["[REDACTED]", 1, None]}
    assert check_api_key_env("OPENAI_API_KEY") == "OPENAI_API_KEY"
    for bad in (KEY, "my key", "abcdef0123456789abcdef0123", 42):
        with pytest.raises(ValueError, match="must be the NAME") as e:
            check_api_key_env(bad)
        assert str(bad) not in str(e.value)


@pytest.mark.parametrize("where", ["file", "under_file", "read_only"])
def test_run_out_that_cannot_be_a_run_folder_is_one_line(where, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    out = {"file": blocker, "under_file": blocker / "run", "read_only": tmp_path / "ro" / "run"}[where]
    if where == "read_only":
        real = os.mkdir

        def ro_mkdir(path, *a, **k):
            if str(path).startswith(str(tmp_path / "ro")):
                raise OSError(errno.EROFS, "Read-only file system", str(path))
            return real(path, *a, **k)
        monkeypatch.setattr(os, "mkdir", ro_mkdir)
    assert _mipd("run", "--config", ROOT / "configs" / "smoke.yaml", "--out", out, "--until", "data") == 2
    _one_line_error(capsys, {"file": "is a file, not a folder", "under_file": "Not a directory",
                             "read_only": "read-only file system"}[where])
    assert blocker.read_text() == "x"


def test_full_disk_while_saving_the_run_status_is_one_line_and_logged(leaky_project, monkeypatch, capsys):
    import mipd_kit.app.runfolder as runfolder
    real = runfolder.atomic_write_text

    def full_for_status(path, text):
        if Path(path).name == "status.json":
            _full_disk()
        return real(path, text)
    monkeypatch.setattr(runfolder, "atomic_write_text", full_for_status)
    run = leaky_project / "reports" / "r1"
    assert _mipd("run", "--config", leaky_project / "cfg.yaml", "--quiet") == 2
    _one_line_error(capsys, "No space left on device", "the disk is full")
    log = (run / "run.log").read_text()
    assert "Traceback" in log and "No space left on device" in log  # the traceback went to run.log
    assert (run / "config.yaml").is_file() and not list(run.glob("*.tmp")) and not list(run.glob(".*.tmp"))


def test_full_disk_for_run_log_drops_log_lines_without_tracebacks(leaky_project, monkeypatch, capsys):
    import mipd_kit.app.pipeline as pipeline

    def execute(nb_in, nb_out, params, cwd):  # the stage's work, without a kernel
        Path(params["run_dir"], "x.txt").write_text("done")
    monkeypatch.setattr(pipeline, "_execute", execute)
    monkeypatch.setattr(pipeline._QuietFileHandler, "flush", _full_disk)
    assert _mipd("run", "--config", leaky_project / "cfg.yaml", "--quiet") == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Logging error" not in err, err
    assert json.loads((leaky_project / "reports" / "r1" / "status.json").read_text())["state"] == "done"


def test_ctrl_c_in_a_run_stage_is_one_line_130_and_recorded(leaky_project, monkeypatch, capsys):
    import mipd_kit.app.pipeline as pipeline

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(pipeline, "_execute", interrupted)
    assert _mipd("run", "--config", leaky_project / "cfg.yaml", "--quiet") == 130
    _one_line_error(capsys, "interrupted (Ctrl-C) in stage 'x'", "resumes")
    status = json.loads((leaky_project / "reports" / "r1" / "status.json").read_text())
    assert status["state"] == "failed" and status["stages"]["x"]["error"] == pipeline.INTERRUPTED


# ----------------------------------------------------------------------------------------------- synth, features
def test_full_disk_in_synth_is_one_line_and_leaves_no_half_world(tmp_path, capsys, monkeypatch):
    from PIL import Image
    calls = {"n": 0}
    real = Image.Image.save

    def save(self, *a, **k):
        calls["n"] += 1
        if calls["n"] > 5:
            _full_disk()
        return real(self, *a, **k)
    monkeypatch.setattr(Image.Image, "save", save)
    out = tmp_path / "world"
    assert _mipd("synth", "--out", out, "--size", "smoke", "--workers", "1") == 2
    _one_line_error(capsys, "No space left on device")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".world.")
                                     and not p.name.endswith(".lock")]


def test_full_disk_in_features_extract_is_one_line_and_keeps_the_index(st, tmp_path, capsys, monkeypatch):
    import safetensors.torch
    cache = tmp_path / "cache"
    assert _mipd("features", "extract", "--world", st.world, "--cache", cache, "--teacher", "tiny",
                 "--splits", "dev") == 0
    index = {p: p.read_bytes() for p in cache.rglob("index.json")}
    assert index
    monkeypatch.setattr(safetensors.torch, "save_file", _full_disk)
    capsys.readouterr()
    assert _mipd("features", "extract", "--world", st.world, "--cache", cache, "--teacher", "tiny",
                 "--splits", "test") == 2
    _one_line_error(capsys, "No space left on device")
    assert {p: p.read_bytes() for p in cache.rglob("index.json")} == index  # what was cached is kept
    assert not list(cache.rglob("*.tmp"))
