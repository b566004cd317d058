"""Generation speed of SynthSitu worlds -> reports/bench/synth.json (tidy rows, task "bench") and synth.md.

Usage: .venv/bin/python benchmarks/bench_synth.py [--sizes smoke default] [--workers 2]
Wall time depends on the machine's load; CPU time (user + system of this process and its workers) is reported too.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mipd_kit.data.synthsitu.generate import SynthConfig, generate  # noqa: E402
from mipd_kit.metrics import merge_rows, row  # noqa: E402


def _cpu() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", nargs="+", default=["smoke"])
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench"))
    a = ap.parse_args(argv)
    rows, lines = [], ["# SynthSitu generation speed", "", "| size | workers | images | wall s | CPU s | images/s (wall) |",
                       "|---|---|---|---|---|---|"]
    for size in a.sizes:
        cfg = SynthConfig.from_size(size)
        if a.workers:
            cfg.workers = a.workers
        with tempfile.TemporaryDirectory() as d:
            c0, t0 = _cpu(), time.perf_counter()
            meta = generate(cfg, Path(d) / "w")
            wall, cpu = time.perf_counter() - t0, _cpu() - c0
        n = meta["counts"]["images"]
        rows += [row("bench", "synthsitu", size, f"workers{cfg.workers}", "wall_s", wall),
                 row("bench", "synthsitu", size, f"workers{cfg.workers}", "cpu_s", cpu),
                 row("bench", "synthsitu", size, f"workers{cfg.workers}", "images_per_s", n / wall)]
        lines.append(f"| {size} | {cfg.workers} | {n} | {wall:.1f} | {cpu:.1f} | {n / wall:.0f} |")
        print(lines[-1])
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    merge_rows(out / "synth.json", rows)
    lines += ["", f"load average at the end: {os.getloadavg()[0]:.1f} (2-core machine shared with others)"]
    (out / "synth.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
