"""Run every benchmark in turn (``make bench``); each writes its JSON + Markdown into ``reports/bench/``.

The student benchmark needs a world, a teacher cache and a finished run: it uses ``data/synthsitu/default-seed0``,
``data/cache`` and ``reports/latest`` (from ``make reproduce``) and is skipped, with the reason printed, when they are
absent. Pass script names to run only some: ``python benchmarks/run_all.py bench_eval_hico bench_teacher``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
WORLD = ROOT / "data" / "synthsitu" / "default-seed0"

SCRIPTS: dict[str, list[str]] = {
    "bench_eval_hico": [],
    "bench_eval_swig": [],
    "bench_synth": ["--sizes", "smoke", "default"],
    "bench_teacher": [],
    "bench_rationales": [],
    "bench_pretrain": ["--size", "smoke", "--threads", "1"],
    "bench_captioner": ["--size", "default", "--max-per-group", "100", "--threads", "2"],
    "bench_jrg_content": ["--world", str(WORLD), "--images", "200"],
    "bench_student": ["--world", str(WORLD), "--cache-dir", str(ROOT / "data" / "cache"),
                      "--run-dir", str(ROOT / "reports" / "latest")],
    "bench_reproduce": ["--run", str(ROOT / "reports" / "latest")],
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    names = list(argv if argv is not None else sys.argv[1:]) or list(SCRIPTS)
    failed = []
    for name in names:
        if name not in SCRIPTS:
            print(f"unknown benchmark {name!r}; choose from {sorted(SCRIPTS)}", file=sys.stderr)
            return 2
        if name == "bench_reproduce" and not (ROOT / "reports" / "latest" / "status.json").exists():
            print(f"[bench] skip {name}: needs reports/latest (run `make reproduce` first)")
            continue
        if name == "bench_student" and not ((ROOT / "reports" / "latest").exists() and WORLD.exists()):
            print(f"[bench] skip {name}: needs {WORLD} and reports/latest (run `make reproduce` first)")
            continue
        t0 = time.time()
        print(f"[bench] {name} ...", flush=True)
        code = subprocess.call([sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), *SCRIPTS[name]], cwd=ROOT)
        print(f"[bench] {name} exit {code} in {time.time() - t0:.0f}s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"[bench] failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
