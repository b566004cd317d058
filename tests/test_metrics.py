"""The tidy metrics.json contract: merge replaces same-key rows, seed aggregation, atomic writes, bad files."""

from __future__ import annotations

import json

import pytest

from mipd_kit.metrics import SeedStats, aggregate_seeds, group_seeds, merge_rows, read_rows, row, seed_stats, write_rows


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


def test_seed_stats_is_the_one_aggregation():
    st = seed_stats([10.0, 20.0, 30.0])
    assert st == SeedStats(20.0, 10.0, 3)  # sample std: sqrt(((-10)^2 + 0 + 10^2) / 2) = 10 exactly
    assert seed_stats([4.0]) == SeedStats(4.0, 0.0, 1)  # one seed: std 0, shown without ±
    assert st.fmt(1) == "20.0 ± 10.0 (3)" and st.fmt(2, show_n=False) == "20.00 ± 10.00"
    assert seed_stats([4.0]).fmt(1) == "4.0"
    nan = seed_stats([1.0, float("nan")])
    assert nan.std == 0.0 and nan.mean != nan.mean and nan.n == 2
    with pytest.raises(ValueError, match="at least one"):
        seed_stats([])
    rows = [row("gsr", "m", "seen", "top1", "verb", v, seed=s, mean="image") for s, v in enumerate([1.0, 2.0])]
    rows.append(row("gsr", "m", "seen", "top1", "verb_mean", 9.0, mean="image"))  # seed None: not a seed value
    assert group_seeds(rows) == {("gsr", "m", "seen", "top1", "verb", "image"): [1.0, 2.0]}
    # aggregate_seeds writes exactly seed_stats of each group
    agg = {r.metric: r.value for r in aggregate_seeds(rows)}
    assert agg == {"verb_mean": seed_stats([1.0, 2.0]).mean, "verb_std": seed_stats([1.0, 2.0]).std}


def test_read_rows_rejects_bad_files(tmp_path):
    p = tmp_path / "m.json"
    p.write_text("[{\"task\": \"gsr\"")
    with pytest.raises(ValueError, match="m.json"):
        read_rows(p)
    p.write_text(json.dumps([{"task": "gsr"}]))
    with pytest.raises(ValueError, match="row 0"):
        read_rows(p)
    assert read_rows(tmp_path / "absent.json") == []


def test_state_hash_and_lr_schedule_shared_by_the_embedded_models():
    """One state hash and one warm-up + cosine schedule (mipd_kit.torch_utils) for the teacher and the captioner."""
    import math

    import torch

    from mipd_kit.torch_utils import state_hash, warmup_cosine_lr

    a = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.zeros(0)}
    assert state_hash(a) == state_hash(dict(reversed(list(a.items()))))  # name order, not insertion order
    assert state_hash(a) != state_hash({**a, "w": a["w"].clone().add_(1e-3)})
    assert state_hash(a) != state_hash({**a, "w": a["w"].double()})  # dtype is part of it
    lrs = [warmup_cosine_lr(s, 100, 1.0, 0.1) for s in range(100)]
    assert lrs[:10] == [(s + 1) / 10 for s in range(10)] and lrs[9] == 1.0
    assert all(x >= y for x, y in zip(lrs[9:], lrs[10:])) and math.isclose(lrs[10], 1.0)
    assert warmup_cosine_lr(0, 3, 2.0, 0.0) == 2.0  # at least one warm-up step


def test_markdown_table_rows_read_as_written():
    """markdown_table (DataFrame.to_markdown) keeps each cell as given: ``| a | b |`` rows, a pipe separator."""
    from mipd_kit.metrics import markdown_table

    lines = markdown_table(["model", "seen"], [["teacher", "59.1 ± 0.0"], ["mipd-kd-unlabeled", 7], ["x", "0010"]]) \
        .splitlines()
    assert lines[0] == "| model | seen |" and lines[2:] == ["| teacher | 59.1 ± 0.0 |", "| mipd-kd-unlabeled | 7 |",
                                                              "| x | 0010 |"]
    assert lines[1].startswith("|-") and set(lines[1]) <= set("|-") and lines[1].count("|") == 3
