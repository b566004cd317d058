"""The tidy metrics.json contract: merge replaces same-key rows, seed aggregation, atomic writes, bad files."""

from __future__ import annotations

import json

import pytest

from mipd_kit.metrics import aggregate_seeds, merge_rows, read_rows, row, write_rows


def test_merge_replaces_rows_with_same_key(tmp_path):
    p = tmp_path / "metrics.json"
    write_rows(p, [row("gsr", "baseline", "seen", "top1", "verb", 50.0, seed=0, mean="image")])
    merged = merge_rows(p, [row("gsr", "baseline", "seen", "top1", "verb", 60.0, seed=0, mean="image"),
                            row("gsr", "baseline", "seen", "top1", "verb", 70.0, seed=1, mean="image")])
    assert sorted(r.value for r in merged) == [60.0, 70.0]
    data = json.loads(p.read_text())
    assert set(data[0]) == {"task", "model", "seed", "split", "setting", "metric", "mean", "value"}
    assert not (tmp_path / "metrics.json.tmp").exists()


def test_aggregate_seeds_mean_and_sample_std():
    rows = [row("hoi", "clhoi", "full", "default", "map", v, seed=s) for s, v in enumerate([10.0, 20.0, 30.0])]
    agg = {r.metric: r for r in aggregate_seeds(rows)}
    assert agg["map_mean"].value == pytest.approx(20.0)
    assert agg["map_std"].value == pytest.approx(10.0)
    assert agg["map_mean"].seed is None


def test_read_rows_rejects_bad_files(tmp_path):
    p = tmp_path / "m.json"
    p.write_text("[{\"task\": \"gsr\"")
    with pytest.raises(ValueError, match="m.json"):
        read_rows(p)
    p.write_text(json.dumps([{"task": "gsr"}]))
    with pytest.raises(ValueError, match="row 0"):
        read_rows(p)
    assert read_rows(tmp_path / "absent.json") == []
