"""The reproduce-time report from a run folder's status.json: stage times, total, the goal verdict (nothing timed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_reproduce  # noqa: E402
from mipd_kit.metrics import read_rows  # noqa: E402


def _run(tmp_path: Path, state: str = "done", analysis: dict | None = None) -> Path:
    world = tmp_path / "world"
    world.mkdir()
    (world / "generation.json").write_text(json.dumps({"timings": {"total": 104.0}}))
    run = tmp_path / "run"
    run.mkdir()
    stages = {
        "data": {"state": "skipped", "params": {"world_dir": str(world)}, "started": "2026-11-30T06:25:49Z",
                 "finished": "2026-11-30T06:28:00Z"},
        "teacher": {"state": "done", "seconds": 53.5},
        "analysis": analysis if analysis is not None else {"state": "done", "seconds": 6.5},
    }
    (run / "status.json").write_text(json.dumps({"run_id": "r", "config": "c.yaml", "state": state,
                                                 "stages": stages}))
    return run


def test_stage_times_total_and_goal(tmp_path):
    run = _run(tmp_path)
    assert bench_reproduce.main(["--run", str(run), "--out", str(tmp_path / "out"), "--goal-min", "4"]) == 0
    rows = {r.split: r.value for r in read_rows(tmp_path / "out" / "reproduce.json")}
    assert rows["data"] == 131.0 and rows["teacher"] == 53.5 and rows["total"] == 191.0
    assert rows["world_generation"] == 104.0
    md = (tmp_path / "out" / "reproduce.md").read_text()
    assert "**met** (3.2 min measured)" in md
    bench_reproduce.main(["--run", str(run), "--out", str(tmp_path / "out"), "--goal-min", "3"])
    assert "**missed**" in (tmp_path / "out" / "reproduce.md").read_text()


def test_an_unfinished_run_has_no_verdict(tmp_path):
    run = _run(tmp_path, state="running", analysis={})
    _, md = bench_reproduce.report(run, 15, "test")
    assert "| analysis | not run |" in md and "not measurable" in md
    assert bench_reproduce.main(["--run", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2


def test_every_pass_of_a_stage_is_read_from_run_log(tmp_path):
    run = _run(tmp_path)
    (run / "run.log").write_text("2026 INFO mipd_kit.app.pipeline: stage teacher       done in 50.0s\n"
                                 "2026 INFO mipd_kit.app.pipeline: stage teacher       done in 3.5s\n")
    assert bench_reproduce.passes(run) == {"teacher": [50.0, 3.5]}
    _, md = bench_reproduce.report(run, 15, "test")
    assert "| teacher | done | 54 | 0.9 | 50 + 4 |" in md and "between the last pass and the sum" in md
