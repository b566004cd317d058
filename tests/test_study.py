"""benchmarks/study.py on fake run folders: the study rows, the goals section, missing models and unfinished runs.

The runs are written here (metrics.json through ``mipd_kit.metrics``, status.json, environment.json, config.yaml);
no pipeline runs, except one ``mipd run --dry-run`` that checks the study's command line against the real config.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mipd_kit.metrics import read_rows, row, write_rows

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "study.py"
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("study_script", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["study_script"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


# the constructed study: value(model, split, world, seed) of verb top-1 (per-image) and HOI mAP (default)
def _baseline(split, w, s):
    return {"seen": 60.0 + w + s, "rare": 10.0 + 2 * s, "unseen": 5.0 + w}[split]


def _feat(split, w, s):
    return _baseline(split, w, s) + {"seen": 0.0, "rare": 0.5, "unseen": 1.0}[split]


#: mipd - mipd-feat: rare 3, 4, 5 by student seed (mean 4, interval above 0: met); unseen +1 (missed, needs 3)
def _mipd(split, w, s):
    return _feat(split, w, s) + {"seen": -1.5, "rare": 3.0 + s, "unseen": 1.0}[split]


GSR = {
    "teacher": lambda split, w, s: {"seen": 70.0, "rare": 60.0, "unseen": 50.0 + w}[split],
    "student-zs": lambda split, w, s: {"seen": 40.0, "rare": 30.0, "unseen": 20.0}[split],  # gap 30 + w: met
    "baseline": _baseline,
    "mipd-feat": _feat,
    "mipd": _mipd,
    "mipd-feat-kd": lambda split, w, s: _feat(split, w, s) + 5.0,
    "mipd-kd": lambda split, w, s: _feat(split, w, s) + 5.0 + {"seen": 0.0, "rare": 4.0, "unseen": 6.0}[split],
    "mipd-shuffled": lambda split, w, s: _mipd(split, w, s) - 0.5 * (s - 1),  # differences -0.5, 0, +0.5: missed
    "mipd-feat-kd-unlabeled": lambda split, w, s: 30.0,
    "mipd-kd-unlabeled": lambda split, w, s: {"seen": 55.0, "rare": 40.0, "unseen": 0.9 * (50.0 + w)}[split],
    # mipd-template is missing from every run
}
HOI = {
    "teacher": lambda split, w, s: 30.0,
    "spatial_prior": lambda split, w, s: 50.0,
    "teacher_crop": lambda split, w, s: 65.0,
    "icn": lambda split, w, s: 60.0 + s + w,
    "clhoi": lambda split, w, s: 60.0 + s + w + (3.0 if split == "full" else -1.0),  # full met, unseen missed
    "clhoi-logitctx": lambda split, w, s: 61.0,
    "clhoi-oracle": lambda split, w, s: 60.0 + s + w + (4.0 if split == "full" else 2.0),  # full met, unseen missed
    "clhoi-oracle-shuffled": lambda split, w, s: 60.0 + s + w,
    "weak-mil": lambda split, w, s: 62.0,
    "upper": lambda split, w, s: 90.0,
}


def make_run(path: Path, world: int, state: str = "done", gsr=GSR, hoi=HOI, seeds=SEEDS) -> Path:
    rows = []
    for s in seeds:
        for m, f in gsr.items():
            for split in ("seen", "rare", "unseen"):
                rows.append(row("gsr", m, split, "top1", "verb", f(split, world, s), seed=s, mean="image"))
                rows.append(row("gsr", m, split, "top1", "grnd_value", f(split, world, s) / 2, seed=s, mean="image"))
            # rows the study must not read: the dev images' dev-only unseen verbs, another setting
            rows.append(row("gsr", m, "unseen_dev", "top1", "verb", 99.0, seed=s, mean="image"))
            rows.append(row("gsr", m, "unseen", "top5", "verb", 98.0, seed=s, mean="image"))
        for m, f in hoi.items():
            for split in ("full", "unseen"):
                rows.append(row("hoi", m, split, "default", "map", f(split, world, s), seed=s))
    rows.append(row("gsr", "mipd", "unseen", "top1", "verb_mean", 97.0, mean="image"))  # a seed aggregate: skipped
    path.mkdir(parents=True)
    write_rows(path / "metrics.json", rows)
    (path / "status.json").write_text(json.dumps({"run_id": path.name, "state": state}))
    (path / "environment.json").write_text(json.dumps({
        "seed": world, "git": {"commit": str(world) * 40, "dirty": False},
        "weights": {"teacher": {"source": "release", "name": "embedded-teacher-default"}}}))
    (path / "config.yaml").write_text(yaml.safe_dump({
        "seed": world, "teacher": {"backend": "embedded", "weights": "released-any"},
        "stages": {"distillation": {"params": {"epochs": 12, "student_backbone": {"size": "student",
                                                                                   "weights": "released-any"}}},
                   "cl_hoi": {"params": {"epochs": 20}}}}))
    (path / "ov_split.json").write_text(json.dumps({"seen": [], "rare": [], "unseen": ["a", "b", "c"],
                                                    "unseen_dev": ["a"], "unseen_test": ["b", "c"]}))
    return path


def _goal_line(md: str, text: str) -> str:
    goals = md.split("## Goals", 1)[1]
    hits = [line for line in goals.splitlines() if line.startswith(f"| {text} |")]
    assert len(hits) == 1, f"goal {text!r} not found once in the goals section"
    return hits[0]


def _study_row(rows, task, model, split):
    hits = [r for r in rows if (r.task, r.model, r.split, r.setting, r.metric, r.mean)
            == (task, model, split, "top1" if task == "gsr-study" else "default",
                "verb_diff" if task == "gsr-study" else "map_diff", "image" if task == "gsr-study" else None)]
    assert len(hits) == 1
    return hits[0]


def test_study_of_two_worlds(study, tmp_path, capsys):
    runs = [make_run(tmp_path / f"w{w}", w) for w in (0, 1)]
    out = tmp_path / "out"
    code = study.main(["--world-seeds", "0", "1", "--run", f"0={runs[0]}", "--run", f"1={runs[1]}",
                       "--aggregate-only", "--out", str(out), "--n-boot", "2000"])
    assert code == 0
    rows = read_rows(out / "study.json")
    pairs = [(w, s) for w in (0, 1) for s in SEEDS]

    # a known difference: mipd - mipd-feat on rare is 3, 4, 5 by student seed in both worlds
    r = _study_row(rows, "gsr-study", "mipd - mipd-feat", "rare")
    want = statistics.fmean(_mipd("rare", w, s) - _feat("rare", w, s) for w, s in pairs)
    assert r.value == pytest.approx(want) and r.lo <= r.value <= r.hi and r.lo > 0
    gap = _study_row(rows, "gsr-study", "teacher - student-zs", "unseen")
    assert gap.value == pytest.approx(statistics.fmean(30.0 + w for w, _ in pairs))
    hoi = _study_row(rows, "hoi-study", "clhoi - icn", "full")
    assert hoi.value == pytest.approx(3.0) and hoi.lo == pytest.approx(3.0) and hoi.hi == pytest.approx(3.0)
    for x in rows:
        if x.lo is not None:
            assert x.lo <= x.value <= x.hi, x
    # the per-model mean / std over every (world, seed) pair
    base = [x for x in rows if (x.task, x.model, x.split, x.setting, x.mean) == ("gsr", "baseline", "seen", "top1",
                                                                                 "image")]
    got = {x.metric: x.value for x in base}
    vals = [_baseline("seen", w, s) for w, s in pairs]
    assert got["verb_mean"] == pytest.approx(statistics.fmean(vals))
    assert got["verb_std"] == pytest.approx(statistics.stdev(vals))
    # only test rows of the top-1 setting: no dev-unseen rows, no top-5, no seed aggregates read back
    assert not any(x.split.startswith("unseen_dev") or x.setting == "top5" for x in rows)
    assert all(x.seed is None for x in rows)
    assert 97.0 not in [x.value for x in rows]

    md = (out / "study.md").read_text()
    assert "met" in _goal_line(md, "`mipd` beats `mipd-feat` on rare by >= 3 points, interval above 0")
    assert "**missed**" in _goal_line(md, "`mipd` beats `mipd-feat` on unseen by >= 3 points, interval above 0")
    assert "**met**" in _goal_line(md, "`mipd-kd` beats `mipd-feat-kd` on unseen by >= 3 points, interval above 0")
    assert "**met**" in _goal_line(md, "`mipd` seen within 2 points of `baseline` (mipd - baseline >= -2)")
    assert "**met**" in _goal_line(md, "student backbone well below the teacher on unseen (gap >= 20 points)")
    assert "**met**" in _goal_line(md, "with the unlabeled pool: `mipd-kd-unlabeled` unseen >= 80% of the teacher's")
    assert "**missed**" in _goal_line(md, "rationale content matters: `mipd` above `mipd-shuffled` on unseen, "
                                          "interval above 0")
    assert "**met**" in _goal_line(md, "`clhoi` >= 2 mAP above `icn` on full, interval above 0")
    assert "**missed**" in _goal_line(md, "`clhoi` >= 2 mAP above `icn` on unseen, interval above 0")
    # the HOI control rows: the positive control, the weakly supervised baseline the claim is about
    assert "**met**" in _goal_line(md, "positive control: `clhoi-oracle` >= 3 mAP above `icn` on full, "
                                       "interval above 0")
    assert "**missed**" in _goal_line(md, "positive control: `clhoi-oracle` >= 3 mAP above `icn` on unseen, "
                                          "interval above 0")
    assert "**met**" in _goal_line(md, "positive control: `clhoi-oracle` above `clhoi-oracle-shuffled` on unseen, "
                                       "interval above 0")
    assert "**met**" in _goal_line(md, "`clhoi` >= the weakly supervised `weak-mil` on full")
    assert _study_row(rows, "hoi-study", "upper - icn", "full").value == pytest.approx(
        statistics.fmean(30.0 - s - w for w, s in pairs))
    # a model missing from the runs is reported, and what needs it is not evaluated
    assert "missing `mipd-template`" in md
    assert "**not evaluated**" in _goal_line(md, "rationale content matters: `mipd` above `mipd-template` on rare, "
                                                 "interval above 0")
    assert "| mipd - mipd-template | missing: mipd-template |" in md
    # the runs section: folders, commits, weights, the dev-only unseen verbs; goals printed too
    for w in (0, 1):
        assert f"| {w} | `{runs[w]}` | done | `{str(w) * 12}` |" in md
    assert "teacher.weights=released-any" in md and "student_backbone.weights=released-any" in md
    assert "dev-only unseen verbs a (never in test)" in md
    assert "`epochs=12`" in md
    assert "goal" in capsys.readouterr().out


def test_goals_missed_on_the_other_side(study, tmp_path):
    """The same checks flip when the constructed data do: a student backbone close to the teacher, an unlabeled
    student far below it, mipd more than 2 points below the baseline on seen."""
    gsr = dict(GSR, **{"student-zs": lambda split, w, s: 45.0,
                       "mipd-kd-unlabeled": lambda split, w, s: 10.0,
                       "mipd": lambda split, w, s: _mipd(split, w, s) - (5.0 if split == "seen" else 0.0)})
    run = make_run(tmp_path / "w0", 0, gsr=gsr)
    out = tmp_path / "out"
    assert study.main(["--world-seeds", "0", "--run", f"0={run}", "--aggregate-only", "--out", str(out),
                       "--n-boot", "500"]) == 0
    md = (out / "study.md").read_text()
    assert "**missed**" in _goal_line(md, "student backbone well below the teacher on unseen (gap >= 20 points)")
    assert "**missed**" in _goal_line(md, "with the unlabeled pool: `mipd-kd-unlabeled` unseen >= 80% of the "
                                          "teacher's")
    assert "**missed**" in _goal_line(md, "`mipd` seen within 2 points of `baseline` (mipd - baseline >= -2)")
    # a one-world study: 3 pairs, the student seeds
    rows = read_rows(out / "study.json")
    assert _study_row(rows, "gsr-study", "mipd - mipd-feat", "rare").value == pytest.approx(4.0)
    assert "| mipd - mipd-feat | 3 |" in md


def test_unfinished_run_is_refused(study, tmp_path, capsys):
    done = make_run(tmp_path / "w0", 0)
    running = make_run(tmp_path / "w1", 1, state="running")
    args = ["--world-seeds", "0", "1", "--run", f"0={done}", "--run", f"1={running}", "--aggregate-only",
            "--out", str(tmp_path / "out"), "--n-boot", "200"]
    assert study.main(args) == 1
    err = capsys.readouterr().err
    assert str(running) in err and "did not finish" in err and "running" in err
    assert not (tmp_path / "out" / "study.json").exists()
    assert study.main([*args, "--allow-partial"]) == 0
    assert "| 1 | `" + str(running) + "` | running |" in (tmp_path / "out" / "study.md").read_text()


def test_bad_runs_are_refused_with_their_name(study, tmp_path, capsys):
    run = make_run(tmp_path / "w0", 0)
    out = ["--out", str(tmp_path / "out"), "--aggregate-only"]
    assert study.main(["--world-seeds", "1", "--run", f"1={run}", *out]) == 1  # made with seed 0
    assert f"run {run} was made with seed 0" in capsys.readouterr().err
    assert study.main(["--world-seeds", "0", "--run", f"3={run}", *out]) == 2
    assert "world seed(s) [3] not among --world-seeds [0]" in capsys.readouterr().err
    assert study.main(["--world-seeds", "0", "--run", "0", *out]) == 2
    assert "--run expects WORLD_SEED=PATH" in capsys.readouterr().err
    assert study.main(["--world-seeds", "0", "--runs-dir", str(tmp_path / "none"), *out]) == 1
    assert "does not exist" in capsys.readouterr().err
    rows = read_rows(run / "metrics.json")
    write_rows(run / "metrics.json", [*rows, rows[0]])
    assert study.main(["--world-seeds", "0", "--run", f"0={run}", *out]) == 1
    assert f"{run / 'metrics.json'}: two rows with the key" in capsys.readouterr().err
    (run / "metrics.json").write_text("[{")
    assert study.main(["--world-seeds", "0", "--run", f"0={run}", *out]) == 1
    assert f"{run / 'metrics.json'}: not valid JSON" in capsys.readouterr().err


def test_given_runs_are_only_read(study, tmp_path, monkeypatch):
    run = make_run(tmp_path / "w0", 0)

    def no_pipeline(*a, **k):
        raise AssertionError("a pipeline was started for a run given with --run")

    monkeypatch.setattr(study.subprocess, "call", no_pipeline)
    assert study.main(["--world-seeds", "0", "--run", f"0={run}", "--out", str(tmp_path / "out"),
                       "--n-boot", "200"]) == 0
    assert (tmp_path / "out" / "study.json").is_file()


def test_pipeline_command_and_preflight(study, tmp_path):
    cmd = study.pipeline_command("configs/default.yaml", 2, tmp_path / "world2")
    sets = [cmd[i + 1] for i, x in enumerate(cmd) if x == "--set"]
    assert sets == ["seed=2", "teacher.weights=released-any",
                    "stages.distillation.params.student_backbone.weights=released-any"]
    assert cmd[cmd.index("--out") + 1] == str(tmp_path / "world2") and "--dry-run" not in cmd
    assert not any("weights" in s for s in study.pipeline_command("c.yaml", 0, tmp_path, weights="config"))
    config = SCRIPT.parents[1] / "configs" / "default.yaml"
    study.preflight(config, [0, 1, 2])
    # a typo inside student_backbone passes `mipd run --dry-run` but not the study's preflight
    with pytest.raises(study.StudyError, match="weightz"):
        study.preflight(config, [1], sets=["stages.distillation.params.student_backbone.weightz=released-any"])
    with pytest.raises(study.StudyError, match="bogus"):
        study.preflight(config, [1], weights="config", sets=["teacher.weights=bogus"])


def test_dry_run_command_is_accepted_by_mipd_run(study, tmp_path):
    """The nested --set keys of the study's command are valid for `mipd run` on the real default config."""
    cmd = study.pipeline_command(str(SCRIPT.parents[1] / "configs" / "default.yaml"), 1, tmp_path / "world1",
                                 dry_run=True)
    res = subprocess.run(cmd, cwd=SCRIPT.parents[1], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "distillation" in res.stdout and not (tmp_path / "world1").exists()


def test_runs_table_names_folders_relative_to_the_project(study, tmp_path):
    """A committed report shows run folders inside the project relative to it, others as given."""
    assert study._shown(SCRIPT.parents[1] / "data" / "study" / "world1") == "data/study/world1"
    assert study._shown(tmp_path / "world1") == str(tmp_path / "world1")
