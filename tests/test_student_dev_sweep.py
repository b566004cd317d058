"""benchmarks/student_dev_sweep.py on the tiny fixture world: one dev experiment appends one JSON line."""

import importlib.util
import json
from pathlib import Path

from mipd_kit.rationales.store import Rationale
from mipd_kit.student.testing import write_tiny_world

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "student_dev_sweep.py"


def load_script():
    spec = importlib.util.spec_from_file_location("student_dev_sweep", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_sweep_appends_dev_scores(tmp_path):
    info = write_tiny_world(tmp_path / "w", n_per_verb=4)
    recs = [Rationale(im, "glimpse", None, pol, t, 0, 9.0 if pol == "positive" else 1.0, "test")
            for im, c in info["collected"].items() for pol in ("positive", "negative") for t in c["glimpse"][pol]]
    rat = tmp_path / "rationales.jsonl"
    rat.write_text("".join(json.dumps(r.to_json()) + "\n" for r in recs))
    out = tmp_path / "sweep" / "results.jsonl"
    sweep = load_script()
    common = ["--world", str(tmp_path / "w"), "--cache-dir", str(tmp_path / "c"), "--rationales", str(rat),
              "--teacher", "tiny", "--smoke", "--threads", "1", "--out", str(out), "--set", "epochs=1"]
    assert sweep.main([*common, "--variant", "baseline", "--tag", "a"]) == 0
    assert sweep.main([*common, "--variant", "full", "--tag", "b", "--set", "w_kd=3"]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert [x["tag"] for x in lines] == ["a", "b"] and [x["variant"] for x in lines] == ["baseline", "full"]
    assert lines[1]["overrides"] == ["epochs=1", "w_kd=3"]
    for rec in lines:
        # the tiny world has seen, rare and unseen dev images; every score is a percentage of the dev split
        assert {"seen", "unseen"} <= set(rec["dev"]) and set(rec["dev"]) <= set(sweep.SPLITS)
        assert set(rec["teacher_dev"]) == set(rec["dev"])
        assert all(0.0 <= v <= 100.0 for v in [*rec["dev"].values(), *rec["dev_gt_verb"].values()])
        assert set(rec["dev_gt_verb"]) == {"value", "value_all", "grnd_value", "grnd_value_all"}
        assert rec["best_epoch"] == 0 and rec["seed"] == 0  # one epoch was trained
