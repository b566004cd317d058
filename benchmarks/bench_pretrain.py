"""Wall time of ``mipd pretrain`` (the released embedded teacher + captioner), smoke size by default.

Runs the command end to end into a temporary weights folder with a fresh cache (so both models train), on the smoke
world (generated into the temporary folder unless ``--world`` names one), and records the time of each part (world,
teacher training, zero-shot evaluation, captioner training, total) and the bytes released, with the CPU model and
thread count. Seconds depend on the machine and on whatever else runs on it.

Usage: ``python benchmarks/bench_pretrain.py [--size smoke] [--threads 1] [--world DIR] [--out reports/bench]``
Writes ``reports/bench/pretrain.json`` (tidy rows, task "bench") and ``reports/bench/pretrain.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from mipd_kit.language.pretrain import PretrainConfig, pretrain  # noqa: E402
from mipd_kit.machine import machine_facts  # noqa: E402
from mipd_kit.metrics import row, write_rows  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=["smoke", "default"], default="smoke")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--world", default=None, help="an existing world (default: generate the size's world in a tmp dir)")
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench"))
    a = ap.parse_args(argv)
    cpu = machine_facts()["cpu"]
    with tempfile.TemporaryDirectory(prefix="bench-pretrain-") as tmp:
        world = a.world or str(Path(tmp) / f"{a.size}-seed0")
        cfg = PretrainConfig(size=a.size, world_dir=world, cache_dir=str(Path(tmp) / "cache"),
                             out=str(Path(tmp) / "weights"), threads=a.threads)
        t0 = time.time()
        res = pretrain(cfg, command=f"mipd pretrain --size {a.size} --threads {a.threads}")
        wall = time.time() - t0
    setting = f"{a.size}-threads{a.threads}"
    rows = [row("bench", "pretrain", a.size, setting, f"{k}_s", v) for k, v in res["seconds"].items()]
    rows.append(row("bench", "pretrain", a.size, setting, "wall_s", wall))
    for name, e in res["releases"].items():
        rows.append(row("bench", "pretrain", a.size, setting, f"{e['kind']}_bytes",
                        sum(f["bytes"] for f in e["files"].values())))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_rows(out / "pretrain.json", rows)
    lines = ["# `mipd pretrain` wall time", "",
             f"Machine: {cpu['model']} ({cpu['logical_cpus']} logical CPUs), torch threads {a.threads}; "
             f"size {a.size}; fresh cache (everything trains).", "",
             "| part | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in res["seconds"].items()]
    lines += ["", "| release | bytes |", "|---|---:|"]
    lines += [f"| {n} | {sum(f['bytes'] for f in e['files'].values())} |" for n, e in res["releases"].items()]
    lines += ["", f"Command: `python benchmarks/bench_pretrain.py --size {a.size} --threads {a.threads}` "
              "(the machine may be shared with other jobs: seconds are noisy)."]
    (out / "pretrain.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
