"""Students side by side: the distillation stage's ``workers`` (forked 1-thread processes) against one process.

Trains the same students (rows x seeds, a short schedule) twice on a finished run's world and rationales, into two
fresh run folders: ``workers=1`` with all ``--threads`` in one process, then ``workers=W`` with ``threads // W`` each.
Reports each stage call's wall time (world preparation included, the same work in both), the speed-up as a ratio
measured in this one run, and the largest difference of any test metric between the two (different thread
counts: trained weights differ as with another seed, not bit for bit).

Writes ``reports/bench/distill_workers.json`` (tidy rows, task "bench", model "distill-workers") and ``.md``.

    python benchmarks/bench_distill_workers.py --run data/runs/d1 --rows baseline mipd-feat mipd-feat-kd \
        --seeds 0 1 --epochs 4 --workers 2 --machine "2 cores, idle"
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mipd_kit.metrics import merge_rows, row  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    from mipd_kit.app.stages import distillation as st

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", required=True, help="a finished run folder (its world, rationales, distillation params)")
    ap.add_argument("--rows", nargs="+", default=["baseline", "mipd-feat", "mipd-feat-kd"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--machine", default="the 2-core development machine")
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench" / "distill_workers"))
    a = ap.parse_args(argv)
    run = Path(a.run)
    params = dict(json.loads((run / "status.json").read_text())["stages"]["distillation"]["params"])
    base = {k: v for k, v in params.items() if k in st.Config.__dataclass_fields__}
    base.update(rows=a.rows, seeds=a.seeds, epochs=a.epochs, threads=a.threads, study_bootstrap=100)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for w in (1, a.workers):
            d = Path(tmp) / f"workers{w}"
            d.mkdir()
            shutil.copy(run / "rationales.jsonl", d / "rationales.jsonl")
            cfg = st.Config(**{**base, "workers": w})
            t0 = time.time()
            out = st.run(cfg, d)
            wall = time.time() - t0
            results[w] = {"wall_s": wall, "train_s": sum(out.timings.values()),
                          "rows": {(r.model, r.seed, r.split, r.setting, r.metric, r.mean): r.value
                                   for r in out.rows if r.task == "gsr" and r.model in a.rows}}
            print(f"[workers {w}] {wall:.0f} s wall, {len(out.timings)} students", file=sys.stderr)
    one, many = results[1], results[a.workers]
    diff = max((abs(one["rows"][k] - v) for k, v in many["rows"].items()
                if k in one["rows"] and v == v and one["rows"][k] == one["rows"][k]), default=float("nan"))
    n = len(a.rows) * len(a.seeds)
    speed = one["wall_s"] / many["wall_s"]
    out_p = Path(a.out)
    rows = [row("bench", "distill-workers", "train", "-", "wall_s_workers1", one["wall_s"]),
            row("bench", "distill-workers", "train", "-", f"wall_s_workers{a.workers}", many["wall_s"]),
            row("bench", "distill-workers", "train", "-", "speedup", speed),
            row("bench", "distill-workers", "test", "-", "max_metric_diff", diff)]
    out_p.parent.mkdir(parents=True, exist_ok=True)
    out_p.with_suffix(".json").unlink(missing_ok=True)
    merge_rows(out_p.with_suffix(".json"), rows)
    out_p.with_suffix(".md").write_text(
        "# Distillation students side by side (`workers`)\n\n"
        f"`python benchmarks/bench_distill_workers.py --run {a.run} --rows {' '.join(a.rows)} --seeds "
        f"{' '.join(map(str, a.seeds))} --epochs {a.epochs} --workers {a.workers} --threads {a.threads}`; machine: "
        f"{a.machine}. {n} students ({len(a.rows)} rows x {len(a.seeds)} seeds, {a.epochs} epochs) on the run's "
        "world, each stage call timed whole (world preparation, teacher rows and evaluation included).\n\n"
        "| setting | wall s |\n|---|---|\n"
        f"| workers 1, {a.threads} threads | {one['wall_s']:.0f} |\n"
        f"| workers {a.workers}, {max(1, a.threads // a.workers)} thread(s) each | {many['wall_s']:.0f} |\n\n"
        f"Speed-up: **{speed:.2f}x** (ratio of the two wall times, one run). Largest difference of any test metric "
        f"between the two, over every row, seed and split: {diff:.2f} points (a different thread count changes the float "
        "summation order, and training carries that on the way a different seed does; with the same thread count "
        "the two are bit for bit equal, tests/test_stages.py).\n")
    print(out_p.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
