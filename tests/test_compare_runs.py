"""benchmarks/compare_runs.py: two run folders' metric rows and rationale records compared."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from mipd_kit.metrics import merge_rows, row

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_runs.py"


def _load():
    spec = importlib.util.spec_from_file_location("compare_runs_script", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["compare_runs_script"] = mod
    spec.loader.exec_module(mod)
    return mod


def _run(d: Path, values: dict, texts: list[str]) -> Path:
    d.mkdir()
    merge_rows(d / "metrics.json", [row("gsr", m, sp, "top1", "verb", v, seed=s, mean="image")
                                    for (m, sp, s), v in values.items()] + [row("hoi", "icn", "full", "default", "map", 70.0, seed=0)])
    (d / "rationales.jsonl").write_text("".join(json.dumps({"image": "a.png", "kind": "glimpse", "role": None,
                                                            "round": 0, "polarity": "positive", "text": t}) + "\n"
                                                for t in texts))
    return d


def test_compare_counts_differences_and_shared_rationales(tmp_path):
    cr = _load()
    a = _run(tmp_path / "a", {("mipd", "unseen", 0): 10.0, ("mipd", "unseen", 1): 20.0, ("mipd", "seen", 0): 5.0},
             ["x", "y", "z"])
    b = _run(tmp_path / "b", {("mipd", "unseen", 0): 11.0, ("mipd", "unseen", 1): 22.0, ("mipd", "seen", 0): 5.0},
             ["x", "w"])
    c = cr.compare(a, b)
    assert c["tasks"]["gsr"] == {"common": 3, "differ": 2, "max_diff": 2.0}
    assert c["tasks"]["hoi"] == {"common": 1, "differ": 0, "max_diff": 0.0}
    assert c["seed_mean_max_diff"]["unseen"] == 1.5 and c["seed_mean_max_diff"]["seen"] == 0.0
    assert c["rationales"] == (3, 2, 1)
    assert "| gsr | 3 | 2 | 2 |" in cr.render(a, b, c)
    assert cr.main([str(a), str(tmp_path / "missing")]) == 2
