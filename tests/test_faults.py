"""Fault injection: concurrent processes, SIGKILL then resume, many threads on one log, hostile endpoints, and
evaluator CLIs given bad or precious files. Each test asserts that nothing is lost and nothing is silently wrong.

Child processes run small Python scripts with this checkout on ``PYTHONPATH`` and one thread each. Kill points
are drawn from a seeded generator; the seed is in every assertion message so a failure can be replayed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mipd_kit.data.records import HOIImage, HOIVocab, Situation
from mipd_kit.data.synthsitu.generate import SynthConfig, ensure_world, read_meta
from mipd_kit.rationales.store import JsonlLog, read_rationales
from test_teacher_cache import write_images

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------- helpers
def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


def _spawn(script: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", script, *args], env=_env(), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_ready(p: subprocess.Popen) -> None:
    """Block until the child printed ``ready`` (its imports are done); it then waits for :func:`_go`."""
    line = p.stdout.readline()
    assert line.strip() == "ready", f"child did not start: {line!r} {p.stderr.read()[-2000:]}"


def _go(*procs: subprocess.Popen) -> None:
    """Release children waiting after ``ready`` (so two children really run at the same time)."""
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()


def _finish(p: subprocess.Popen, timeout: float = 120) -> str:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, f"child failed ({p.returncode}): {err[-3000:]}"
    return out


def _tmp_leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name.endswith(".tmp"))




def tiny_world_cfg(seed: int = 0) -> SynthConfig:
    return replace(SynthConfig.smoke(seed), n_train=80, rare_train=2, n_dev=35, n_test=35, n_unlabeled=35,
                   n_hoi_train=20, n_hoi_test=10, n_pretrain=40, workers=1)


EXTRACT = """
import sys, time
from pathlib import Path
from mipd_kit.teachers.cache import cached_image_features
from mipd_kit.teachers.tiny import TinyRandomTeacher

class Slow:  # a tiny teacher that takes a little time per batch, so two extractors interleave
    def __init__(self):
        self.inner = TinyRandomTeacher(); self.grid = self.inner.grid; self.fingerprint = self.inner.fingerprint
    def encode_images(self, images):
        time.sleep(float(sys.argv[3]))
        return self.inner.encode_images(images)

paths = sorted(Path(sys.argv[1]).glob("*.png"))
if sys.argv[4] == "reverse":
    paths = paths[::-1]
print("ready", flush=True)
sys.stdin.readline()
time.sleep(float(sys.argv[5]))
cached_image_features(Slow(), paths, sys.argv[2], "toy", batch_size=2, shard_rows=4, progress=False)
"""


def _check_cache(cache: Path, paths: list[Path]) -> None:
    """Every image has its own features (compared with a direct forward), the index lists every shard."""
    from mipd_kit.teachers.cache import cached_image_features
    from mipd_kit.teachers.tiny import TinyRandomTeacher

    class NoForward:
        def __init__(self):
            self.inner = TinyRandomTeacher()
            self.grid, self.fingerprint = self.inner.grid, self.inner.fingerprint

        def encode_images(self, images):
            raise AssertionError("the cache should hold every image")

    enc = cached_image_features(NoForward(), paths, cache, "toy", progress=False)
    direct = TinyRandomTeacher().encode_images([Image.open(p) for p in paths])
    torch.testing.assert_close(enc.pooled, direct.pooled)
    torch.testing.assert_close(enc.tokens, direct.tokens, atol=2e-3, rtol=2e-3)  # stored float16
    folder = next((cache / "features" / "toy").iterdir())
    index = json.loads((folder / "index.json").read_text())
    on_disk = {p.name for p in folder.glob("shard_*.safetensors")}
    assert set(index["shards"]) <= on_disk
    assert {s for s, _ in index["keys"].values()} <= set(index["shards"])


# ----------------------------------------------------------------------------------------------- cache
def test_two_processes_extract_into_one_cache(tmp_path):
    paths = write_images(tmp_path / "imgs", 40)
    cache = tmp_path / "cache"
    # a slow extractor and a fast one that starts later: they overtake each other half-way, so with a stale index
    # and colliding shard names the last index written would point at the other process's shards
    procs = [_spawn(EXTRACT, str(tmp_path / "imgs"), str(cache), "0.04", "forward", "0"),
             _spawn(EXTRACT, str(tmp_path / "imgs"), str(cache), "0.02", "reverse", "0.2")]
    for p in procs:
        _wait_ready(p)
    _go(*procs)
    for p in procs:
        _finish(p)
    _check_cache(cache, paths)
    assert _tmp_leftovers(cache) == []


@pytest.mark.slow
def test_sigkill_during_extraction_then_resume(tmp_path):
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    paths = write_images(tmp_path / "imgs", 40)
    cache = tmp_path / "cache"
    p = _spawn(EXTRACT, str(tmp_path / "imgs"), str(cache), "0.05", "forward", "0")  # ~1 s
    _wait_ready(p)
    _go(p)
    time.sleep(rng.uniform(0.05, 1.0))
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=60)
    # resume in this process with the real teacher, then check every feature
    from mipd_kit.teachers.cache import cached_image_features
    from mipd_kit.teachers.tiny import TinyRandomTeacher
    cached_image_features(TinyRandomTeacher(), paths, cache, "toy", batch_size=2, shard_rows=4, progress=False)
    try:
        _check_cache(cache, paths)
    except AssertionError as e:
        raise AssertionError(f"kill seed {seed}: {e}") from e


# ----------------------------------------------------------------------------------------------- worlds
ENSURE = """
import sys, json
from dataclasses import replace
from mipd_kit.data.synthsitu.generate import SynthConfig, ensure_world
cfg = replace(SynthConfig.smoke(0), n_train=80, rare_train=2, n_dev=35, n_test=35, n_unlabeled=35,
              n_hoi_train=20, n_hoi_test=10, n_pretrain=40, workers=1)
print("ready", flush=True)
sys.stdin.readline()
meta, made = ensure_world(cfg, sys.argv[1], verbose=False)
print(json.dumps({"generated": made, "images": meta["counts"]["images"]}))
"""


def _check_world(world: Path) -> None:
    meta = read_meta(world)
    assert meta is not None and meta["config"] == tiny_world_cfg().world_key()
    n = len(list((world / "images").glob("*.png"))) + len(list((world / "pretrain" / "images").glob("*.png")))
    assert n == meta["counts"]["images"]
    for split in ("train", "dev", "test"):
        assert len(json.loads((world / f"{split}.json").read_text())) == meta["counts"][split]
    assert not [p for p in world.parent.iterdir() if p.name.endswith((".tmp", ".old"))]


def test_two_processes_ensure_one_world(tmp_path):
    world = tmp_path / "worlds" / "smoke-seed0"
    procs = [_spawn(ENSURE, str(world)) for _ in range(2)]
    for p in procs:
        _wait_ready(p)
    _go(*procs)
    results = [json.loads(_finish(p).splitlines()[-1]) for p in procs]
    assert sorted(r["generated"] for r in results) == [False, True]  # one made it, the other reused it
    assert results[0]["images"] == results[1]["images"]
    _check_world(world)


@pytest.mark.slow
def test_sigkill_during_world_generation_then_ensure(tmp_path):
    seed = random.randrange(10**6)
    world = tmp_path / "worlds" / "smoke-seed0"
    p = _spawn(ENSURE, str(world))
    _wait_ready(p)
    _go(p)
    time.sleep(random.Random(seed).uniform(0.0, 1.5))
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=60)
    meta = read_meta(world)
    if meta is not None:  # the kill came after the rename: the world must then be complete
        _check_world(world)
    _, made = ensure_world(tiny_world_cfg(), world, verbose=False)
    assert made == (meta is None), f"kill seed {seed}"
    _check_world(world)


# ----------------------------------------------------------------------------------------------- rationales
JRG = """
import sys, time
from mipd_kit.language.embedded import EmbeddedGenerator
from mipd_kit.rationales.jrg import JRGConfig, run_jrg

class Slow(EmbeddedGenerator):
    def __call__(self, messages):
        time.sleep(0.01)
        return super().__call__(messages)

print("ready", flush=True)
sys.stdin.readline()
run_jrg(JRGConfig(rounds=3, n_hard_negatives=1, workers=2), sys.argv[1], sys.argv[2], generator=Slow())
"""


@pytest.mark.slow
def test_sigkill_during_jrg_then_resume(tmp_path):
    from mipd_kit.rationales.jrg import JRGConfig, run_jrg
    from mipd_kit.rationales.toy import write_toy_world

    seed = random.randrange(10**6)
    world, run, ref = tmp_path / "w", tmp_path / "r", tmp_path / "ref"
    write_toy_world(world, run, n_per_verb=2)
    ref.mkdir()
    (ref / "teacher_evidence.json").write_text((run / "teacher_evidence.json").read_text())
    cfg = JRGConfig(rounds=3, n_hard_negatives=1, workers=2)
    run_jrg(cfg, world, ref)
    want = {(r.key(), r.text, r.polarity) for r in read_rationales(ref / "rationales.jsonl")}

    p = _spawn(JRG, str(world), str(run))
    _wait_ready(p)
    _go(p)
    time.sleep(random.Random(seed).uniform(0.2, 1.5))
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=60)
    stats = run_jrg(cfg, world, run)
    lines = (run / "rationales.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b"", f"kill seed {seed}: the store must end with a full line"
    got = [json.loads(x) for x in lines[:-1]]  # every line is complete JSON
    keys = [(d["image"], d["kind"], d["role"], d["round"], d["backend"], d["source"], d["target"], d["index"])
            for d in got]
    assert len(keys) == len(set(keys)), f"kill seed {seed}: a key was written twice"
    have = {(r.key(), r.text, r.polarity) for r in read_rationales(run / "rationales.jsonl")}
    assert have == want, f"kill seed {seed}: resumed store differs from an uninterrupted run"
    assert stats["run"]["failures"] == 0


def test_eight_threads_long_lines_one_log(tmp_path):
    """8 threads over two writer objects (one descriptor each), lines of 20-60 KB, each thread catching up after
    every write: every line intact, none lost (without a lock inside the writer, a thread's torn-line repair cut
    lines that another thread sharing its descriptor was still writing)."""
    path = tmp_path / "log.jsonl"
    logs = [JsonlLog(path), JsonlLog(path)]
    per_thread = 40
    errors: list[BaseException] = []

    def work(t: int) -> None:
        rng = random.Random(t)
        try:
            for i in range(per_thread):
                logs[t % 2].append_line({"t": t, "i": i, "pad": "x" * rng.randrange(20000, 60000)})
                logs[t % 2].refresh()  # scanning (and repairing a torn tail) while other threads write
        except BaseException as e:  # noqa: BLE001 -- reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    got = [json.loads(x) for x in raw.splitlines()]
    assert sorted((d["t"], d["i"]) for d in got) == [(t, i) for t in range(8) for i in range(per_thread)]
    assert all(len(d["pad"]) >= 20000 for d in got)


# ----------------------------------------------------------------------------------------------- endpoints
SECRET = "sk-test-Zq8T3cRkW1pLx9vN2mB7"


def test_http_401_stops_the_stage_naming_the_endpoint_never_the_key(tmp_path, monkeypatch):
    from mipd_kit.language.base import SamplerAuthError
    from mipd_kit.language.loopback import LoopbackServer
    from mipd_kit.language.openai_http import OpenAIHTTPConfig, OpenAIHTTPSampler
    from mipd_kit.rationales.jrg import JRGConfig, run_jrg
    from mipd_kit.rationales.toy import write_toy_world

    world, run = tmp_path / "w", tmp_path / "r"
    write_toy_world(world, run, n_per_verb=2)
    monkeypatch.setenv("MIPD_FAULT_KEY", SECRET)
    with LoopbackServer(api_key="the-right-key") as srv:
        url = srv.base_url
        oc = OpenAIHTTPConfig(base_url=url, model="m", api_key_env="MIPD_FAULT_KEY", max_retries=3)
        cfg = JRGConfig(rounds=2, workers=4)
        with pytest.raises(SamplerAuthError) as ei:
            run_jrg(cfg, world, run, generator=OpenAIHTTPSampler(oc), judge=OpenAIHTTPSampler(oc))
        requests = srv.stats["requests"]
    msg = str(ei.value)
    assert url in msg and "401" in msg and "MIPD_FAULT_KEY" in msg and SECRET not in msg
    assert requests <= cfg.workers  # stopped at once: no retries, no further chains
    for f in run.iterdir():
        if f.is_file():
            assert SECRET not in f.read_text(errors="replace"), f
    stats = json.loads((run / "jrg_stats.json").read_text())
    assert stats["run"]["auth_error"] is True


def test_key_passed_as_the_variable_name_is_refused_and_never_written(tmp_path, capsys):
    from mipd_kit.language.loopback import LoopbackServer, embedded_responder
    from mipd_kit.rationales.jrg import main
    from mipd_kit.rationales.toy import write_toy_world

    world, run = tmp_path / "w", tmp_path / "r"
    write_toy_world(world, run, n_per_verb=1)
    with LoopbackServer(embedded_responder()) as srv:
        code = main(["run", "--world-dir", str(world), "--run-dir", str(run), "--smoke", "--backend", "openai",
                     "--base-url", srv.base_url, "--api-key-env", SECRET])
    cap = capsys.readouterr()
    assert code != 0 and "api_key_env must be the NAME" in cap.err
    assert SECRET not in cap.out + cap.err
    assert not any(SECRET in f.read_text(errors="replace") for f in run.rglob("*") if f.is_file())


def test_garbage_judge_fails_the_stage_with_counts_and_keeps_work(tmp_path):
    from mipd_kit.language.loopback import LoopbackServer
    from mipd_kit.language.openai_http import OpenAIHTTPConfig, OpenAIHTTPSampler
    from mipd_kit.rationales.jrg import JRGConfig, JRGFailed, main, run_jrg
    from mipd_kit.rationales.toy import write_toy_world

    world, run = tmp_path / "w", tmp_path / "r"
    write_toy_world(world, run, n_per_verb=1)
    with LoopbackServer(lambda body: "I'd rather not say. <<garbage>> {") as srv:
        oc = OpenAIHTTPConfig(base_url=srv.base_url, model="m", api_key_env="", max_retries=0)
        cfg = JRGConfig(rounds=1, n_hard_negatives=0, workers=2, judge_retries=1)
        with pytest.raises(JRGFailed, match=r"JRG failed: (\d+) of \1 chains failed.*max_failure_rate 20%"):
            run_jrg(cfg, world, run, generator=OpenAIHTTPSampler(oc), judge=OpenAIHTTPSampler(oc))
        stats = json.loads((run / "jrg_stats.json").read_text())  # written before failing
        n_chains = stats["run"]["chains_run"]
        logged = (run / "jrg_failures.jsonl").read_text().splitlines()
        assert n_chains > 0 and len(logged) == stats["run"]["failures"] == n_chains
        assert json.loads((run / "metrics.json").read_text())  # rows kept
        # the CLI turns it into a non-zero exit
        code = main(["run", "--world-dir", str(world), "--run-dir", str(tmp_path / "r2"), "--smoke",
                     "--backend", "openai", "--base-url", srv.base_url, "--model", "m"])
    assert code != 0


# ----------------------------------------------------------------------------------------------- evaluators
VOCAB = HOIVocab(["ball", "cup"], ["hold", "kick"], [(0, 0, 0), (1, 0, 1), (2, 1, 0)], rare=[1], non_rare=[0, 2])


@pytest.fixture()
def hico_files(tmp_path):
    from mipd_kit.data.hico import write_hico_instances
    images = [HOIImage("a.jpg", 100, 100, [(0.0, 0.0, 9.0, 9.0)], [(20.0, 20.0, 29.0, 29.0)], [0], [0], [0]),
              HOIImage("b.jpg", 100, 100, [(50.0, 50.0, 59.0, 59.0)], [(70.0, 70.0, 79.0, 79.0)], [2], [1], [0])]
    gt = tmp_path / "gt.json"
    write_hico_instances(gt, images, VOCAB)
    preds = {"a.jpg": [{"hoi": 0, "box_h": [0, 0, 9, 9], "box_o": [20, 20, 29, 29], "score": 0.9}],
             "b.jpg": [{"hoi": 2, "box_h": [50, 50, 59, 59], "box_o": [70, 70, 79, 79], "score": 0.8}]}
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps(preds))
    return gt, pred, preds


@pytest.fixture()
def swig_files(tmp_path):
    from mipd_kit.data.swig import write_situations
    gt = tmp_path / "swig_gt.json"
    write_situations(gt, [Situation("a.jpg", "riding", 100, 100, {"agent": (0.0, 0.0, 10.0, 10.0)},
                                    ({"agent": "man"},) * 3)])
    preds = {"a.jpg": {"verbs": [{"verb": "riding", "score": 0.9, "frame": {"agent": {"noun": "man",
                                                                                       "box": [0, 0, 10, 10]}}}]}}
    pred = tmp_path / "swig_pred.json"
    pred.write_text(json.dumps(preds))
    return gt, pred, preds


def _one_line_error(capsys, *needles: str) -> str:
    """The one line a failing command wrote on stderr (progress lines, ``mipd_kit.progress``, are not the error)."""
    from mipd_kit.progress import is_progress_line
    err = "\n".join(x for x in capsys.readouterr().err.strip().splitlines() if not is_progress_line(x)).strip()
    assert "\n" not in err and "Traceback" not in err, err
    for n in needles:
        assert n in err, (n, err)
    return err


@pytest.mark.parametrize("cli", ["hico", "swig"])
def test_evaluators_never_destroy_results(cli, hico_files, swig_files, tmp_path, capsys):
    from mipd_kit.eval.hico import main as hico
    from mipd_kit.eval.swig import main as swig
    main, (gt, pred, _) = (hico, hico_files) if cli == "hico" else (swig, swig_files)
    out = tmp_path / "metrics.json"
    precious = [{"task": "x", "model": "old", "seed": 0, "split": "all", "setting": "s", "metric": "m",
                 "mean": None, "value": 1.0}] * 1
    out.write_text(json.dumps(precious))
    base = ["--gt", str(gt), "--pred", str(pred), "--out", str(out)]
    assert main(base) == 2
    _one_line_error(capsys, str(out), "--merge", "--overwrite")
    assert json.loads(out.read_text()) == precious  # untouched
    assert main([*base, "--merge"]) == 0
    rows = json.loads(out.read_text())
    assert rows[0] == precious[0] and len(rows) > 1
    assert main([*base, "--overwrite"]) == 0
    assert all(r["model"] != "old" for r in json.loads(out.read_text()))
    capsys.readouterr()
    # a corrupt --merge target is named, and stays as it was
    out.write_text('[{"task": "x"')
    assert main([*base, "--merge"]) == 2
    _one_line_error(capsys, "cannot merge into", str(out))
    assert out.read_text() == '[{"task": "x"'
    # --out a folder, --out in an unwritable place
    assert main(["--gt", str(gt), "--pred", str(pred), "--out", str(tmp_path)]) == 2
    _one_line_error(capsys, "is a folder")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert main(["--gt", str(gt), "--pred", str(pred), "--out", str(blocker / "m.json")]) == 2
    _one_line_error(capsys, "cannot write")


def _bad_hico(preds: dict, kind: str) -> str:
    if kind == "duplicate":
        a = json.dumps(preds["a.jpg"])
        return '{"a.jpg": ' + a + ', "b.jpg": [], "a.jpg": []}'
    p = json.loads(json.dumps(preds))
    d = p["a.jpg"][0]
    if kind == "bool_score":
        d["score"] = True
    elif kind == "str_score":
        d["score"] = "0.9"
    elif kind == "str_box":
        d["box_h"] = ["0", 0, 9, 9]
    elif kind == "short_box":
        d["box_o"] = [20, 20, 29]
    return json.dumps(p)


@pytest.mark.parametrize("kind, needle", [("duplicate", "duplicated key 'a.jpg'"), ("bool_score", "score"),
                                          ("str_score", "score"), ("str_box", "box_h"), ("short_box", "box_o")])
def test_eval_hico_refuses_wrong_predictions(kind, needle, hico_files, tmp_path, capsys):
    from mipd_kit.eval.hico import main
    gt, pred, preds = hico_files
    pred.write_text(_bad_hico(preds, kind))
    out = tmp_path / "m.json"
    assert main(["--gt", str(gt), "--pred", str(pred), "--out", str(out)]) == 2
    _one_line_error(capsys, "pred.json", needle)
    assert not out.exists()


@pytest.mark.parametrize("kind, needle", [("duplicate", "duplicated key 'a.jpg'"), ("bool_score", "score"),
                                          ("str_score", "score"), ("str_box", "box"), ("bool_box", "box")])
def test_eval_swig_refuses_wrong_predictions(kind, needle, swig_files, tmp_path, capsys):
    from mipd_kit.eval.swig import main
    gt, pred, preds = swig_files
    p = json.loads(json.dumps(preds))
    v = p["a.jpg"]["verbs"][0]
    text = None
    if kind == "duplicate":
        text = '{"a.jpg": ' + json.dumps(preds["a.jpg"]) + ', "a.jpg": {"verbs": []}}'
    elif kind == "bool_score":
        v["score"] = False
    elif kind == "str_score":
        v["score"] = "high"
    elif kind == "str_box":
        v["frame"]["agent"]["box"] = ["0", "0", "10", "10"]
    elif kind == "bool_box":
        v["frame"]["agent"]["box"] = [True, 0, 10, 10]
    pred.write_text(text if text is not None else json.dumps(p))
    out = tmp_path / "m.json"
    assert main(["--gt", str(gt), "--pred", str(pred), "--out", str(out)]) == 2
    _one_line_error(capsys, "swig_pred.json", needle)
    assert not out.exists()


@pytest.mark.parametrize("cli", ["hico", "swig"])
def test_evaluators_refuse_binary_files_and_folders(cli, hico_files, swig_files, tmp_path, capsys):
    from mipd_kit.eval.hico import main as hico
    from mipd_kit.eval.swig import main as swig
    main, (gt, pred, _) = (hico, hico_files) if cli == "hico" else (swig, swig_files)
    binary = tmp_path / "pred.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    out = tmp_path / "m.json"
    assert main(["--gt", str(gt), "--pred", str(binary), "--out", str(out)]) == 2
    _one_line_error(capsys, "pred.bin", "binary")
    assert main(["--gt", str(tmp_path), "--pred", str(pred), "--out", str(out)]) == 2
    _one_line_error(capsys, str(tmp_path), "folder")
    latin = tmp_path / "latin.json"
    latin.write_bytes('{"caf\xe9.jpg": []}'.encode("latin-1"))
    assert main(["--gt", str(gt), "--pred", str(latin), "--out", str(out)]) == 2
    _one_line_error(capsys, "latin.json", "UTF-8")
    assert not out.exists()


def test_metrics_json_is_strict_and_null_reads_back_as_nan(tmp_path):
    from mipd_kit.metrics import read_rows, row, write_rows
    p = tmp_path / "metrics.json"
    write_rows(p, [row("gsr", "m", "unseen", "s", "top1", float("nan")), row("gsr", "m", "all", "s", "top1", 3.0),
                   row("gsr", "m", "rare", "s", "top1", float("inf"))])
    text = p.read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard constant {c}"))
    assert [d["value"] for d in data] == [None, 3.0, None]
    rows = read_rows(p)
    assert np.isnan(rows[0].value) and rows[1].value == 3.0 and np.isnan(rows[2].value)


def test_run_outside_reports_writes_no_latest_link(tmp_path):
    import nbformat as nbf
    import yaml

    from mipd_kit.app.config import RunConfig
    from mipd_kit.app.pipeline import run

    nbs = tmp_path / "nbs"
    nbs.mkdir()
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbf.v4.new_code_cell('run_dir: str = "x"  # run folder\nworld_dir: str = "w"  # world\n'
                                'cache_dir: str = "c"  # cache\nseed: int = 0  # seed\n')
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbf.v4.new_code_cell(
        "from ipykernel.connect import get_connection_file\nassert '.jupyter-runtime' in get_connection_file()\n")]
    nbf.write(nb, nbs / "a.ipynb")
    (tmp_path / "world").mkdir()
    cfg = {"seed": 0, "run_id": "r1", "root": str(tmp_path), "world_dir": "world", "cache_dir": "cache",
           "reports_dir": "reports", "notebooks_dir": "nbs", "stages": {"a": {"notebook": "a.ipynb", "params": {}}}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    elsewhere = tmp_path / "X" / "run"
    res = run(RunConfig.load(tmp_path / "cfg.yaml"), out=elsewhere, quiet=True)
    assert res.state == "done"
    assert not (tmp_path / "X" / "latest").exists() and not (tmp_path / "X" / "latest").is_symlink()
    assert not (tmp_path / "reports" / "latest").is_symlink()
    runtime = elsewhere / "notebooks" / ".jupyter-runtime"
    assert runtime.is_dir() and not list(runtime.glob("kernel-*.json"))  # the kernel's file, cleaned up


@pytest.mark.parametrize("content, needle", [(b"\x00\x01binary", "cannot read the SWiG train JSON"),
                                             (b'["not", "an", "object"]', "expected a SWiG train JSON"),
                                             (b'{"a.jpg": {}, "a.jpg": {}}', "duplicate key")])
def test_bad_merge_into_store_is_a_one_line_error(content, needle, tmp_path, capsys):
    from mipd_kit.rationales.jrg import main
    from mipd_kit.rationales.store import Rationale, RationaleStore

    run = tmp_path / "r"
    store = RationaleStore(run / "rationales.jsonl")
    store.append(Rationale("a.jpg", "glimpse", None, "positive", "a man rides", 0, 8.0, "b"))
    store.close()
    bad, out = tmp_path / "train.json", tmp_path / "authors.json"
    bad.write_bytes(content)
    assert main(["export", "--run-dir", str(run), "--out", str(out), "--merge-into", str(bad)]) != 0
    _one_line_error(capsys, str(bad), needle)
    assert not out.exists()


MERGE = """
import sys
from mipd_kit.metrics import merge_rows, row
print("ready", flush=True)
sys.stdin.readline()
for i in range(int(sys.argv[3])):
    merge_rows(sys.argv[1], [row("gsr", sys.argv[2], "all", "s", f"m{i}", float(i))])
"""


def test_two_processes_merge_rows_into_one_metrics_file(tmp_path):
    from mipd_kit.metrics import read_rows
    out = tmp_path / "metrics.json"
    procs = [_spawn(MERGE, str(out), model, "60") for model in ("a", "b")]
    for p in procs:
        _wait_ready(p)
    _go(*procs)
    for p in procs:
        _finish(p)
    assert sorted((r.model, r.metric) for r in read_rows(out)) == sorted(
        (m, f"m{i}") for m in ("a", "b") for i in range(60))


@pytest.mark.slow
def test_sigkill_during_a_pipeline_stage_then_resume(tmp_path):
    """Kill ``mipd run`` (with its kernel) at a random point of a two-stage run; the same command then finishes it."""
    import nbformat as nbf
    import yaml

    seed = random.randrange(10**6)
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    for name, body in (("a", 'import time\ntime.sleep(0.5)\nPath(run_dir, "a.txt").write_text(str(seed))'),
                       ("b", 'import time\ntime.sleep(0.5)\nPath(run_dir, "b.txt").write_text('
                             'Path(run_dir, "a.txt").read_text() + " b")')):
        nb = nbf.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        cell = nbf.v4.new_code_cell('run_dir: str = "x"  # run folder\nworld_dir: str = "w"  # world\n'
                                    'cache_dir: str = "c"  # cache\nseed: int = 0  # seed\n')
        cell.metadata["tags"] = ["parameters"]
        nb.cells = [cell, nbf.v4.new_code_cell("from pathlib import Path\n" + body)]
        nbf.write(nb, nbs / f"{name}.ipynb")
    (tmp_path / "world").mkdir()
    cfg = {"seed": 7, "run_id": "r1", "root": str(tmp_path), "world_dir": "world", "cache_dir": "cache",
           "reports_dir": "reports", "notebooks_dir": "nbs",
           "stages": {"a": {"notebook": "a.ipynb", "params": {}, "outputs": ["a.txt"]},
                      "b": {"notebook": "b.ipynb", "params": {}, "outputs": ["b.txt"]}}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    cmd = [sys.executable, "-m", "mipd_kit.app.cli", "run", "--config", str(tmp_path / "cfg.yaml"), "--quiet"]
    p = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    run_dir = tmp_path / "reports" / "r1"
    t0 = time.time()
    while not (run_dir / "status.json").exists() and time.time() - t0 < 120 and p.poll() is None:
        time.sleep(0.05)
    time.sleep(random.Random(seed).uniform(0.0, 5.0))  # somewhere in stage a, stage b or after the run
    os.killpg(p.pid, signal.SIGKILL)  # the runner and its kernel
    p.wait(timeout=60)
    status = json.loads((run_dir / "status.json").read_text())  # never a torn status file
    assert status["state"] in ("running", "done", "partial", "failed"), f"kill seed {seed}: {status}"
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"kill seed {seed}: {done.stderr[-3000:]}"
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "done", f"kill seed {seed}: {status}"
    assert (run_dir / "b.txt").read_text() == "7 b"
    assert not list((run_dir / "notebooks" / ".jupyter-runtime").glob("kernel-*.json")), f"kill seed {seed}"
    assert (tmp_path / "reports" / "latest").resolve() == run_dir.resolve()


def test_strict_json_helpers_and_redaction(tmp_path):
    from mipd_kit.data.records import DataError
    from mipd_kit.fileio import dumps, loads_strict, read_json
    from mipd_kit.language.base import redact

    assert dumps({"a": [1.5, float("nan"), {"b": float("-inf")}]}) == '{"a": [1.5, null, {"b": null}]}'
    with pytest.raises(ValueError, match="duplicate key 'x'"):
        loads_strict('{"x": 1, "x": 2}')
    with pytest.raises(ValueError, match="NaN"):
        loads_strict('{"x": NaN}')
    p = tmp_path / "e.json"
    p.write_text("  ")
    with pytest.raises(DataError, match="e.json: empty file"):
        read_json(p)
    line = f"401 from http://h/v1 key {SECRET} header Bearer abc.def token hf_{'a' * 20}"
    out = redact(line, ["unrelated"])
    assert SECRET not in out and "abc.def" not in out and "hf_a" not in out and "http://h/v1" in out
    assert redact("my-secret-value here", ["my-secret-value"]) == "[REDACTED] here"
