"""GPU benchmark (issue 15, item 4): the default embedded pipeline on one device stage by stage, and the student's
training throughput on cached features at the real SWiG shapes.

    python benchmarks/bench_gpu.py --imsitu-dir PATH/TO/imSitu [--device auto|cpu|cuda[:N]] [--amp]
        [--what pipeline|student|both] [--smoke] [--batch 32] [--n-batches 50] [--out reports/bench]

- ``pipeline``: ``mipd run --config configs/default.yaml`` (``--smoke``: ``configs/smoke.yaml``) with
  ``--set teacher.device=DEVICE --set teacher.amp=AMP`` into a fresh run folder, then each stage's seconds from its
  ``status.json``.
- ``student``: ``--n-batches`` training steps (after one warm-up) of the real-mode student (the authors' setup: hidden
  512, variant ``full``) on synthetic CLIP ViT-L/14-336 tokens (577 x 1024), with the real frame space (504 verbs,
  190 roles, 11,789 nouns from ``--imsitu-dir``): samples per second, peak CUDA memory, and the SWiG epoch
  (75,702 images) it implies.

It runs on the CPU too (small ``--n-batches``, ``--batch``), which is how the tests exercise it. Writes
``OUT/gpu.json`` (tidy metric rows, task ``bench``, the device named in ``setting``; ``proj_*`` metrics are
projections) and ``OUT/gpu.md`` (``gpu-smoke.*`` with ``--smoke``), and prints what it measured and where. No
assertion on time anywhere.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def device_name(device: str) -> str:
    """A human name of the resolved device (GPU model or CPU model and threads)."""
    import torch

    from mipd_kit.machine import machine_facts, resolve_device

    d = resolve_device(device)
    if d.type == "cuda":
        return f"{torch.cuda.get_device_name(d)} ({d})"
    return f"{machine_facts()['cpu']['model']}, {torch.get_num_threads()} torch threads (cpu)"


def stage_times(run_dir: str | Path) -> dict[str, Optional[float]]:
    """Seconds of each stage of a finished run, from its ``status.json`` (None for a stage without a time)."""
    st = json.loads((Path(run_dir) / "status.json").read_text())
    return {name: rec.get("seconds") for name, rec in st.get("stages", {}).items()}


def bench_pipeline(a: argparse.Namespace) -> dict[str, Any]:
    cfg = ROOT / "configs" / ("smoke.yaml" if a.smoke else "default.yaml")
    out = Path(a.run_dir) if a.run_dir else Path(tempfile.mkdtemp(prefix="bench-gpu-run-"))
    cmd = [sys.executable, "-m", "mipd_kit.app.cli", "run", "--config", str(cfg), "--out", str(out),
           "--set", f"teacher.device={a.device}", "--set", f"teacher.amp={'true' if a.amp else 'false'}"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"mipd run failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return {"config": cfg.name, "run_dir": str(out), "wall_s": wall, "stages_s": stage_times(out)}


def bench_student(a: argparse.Namespace) -> dict[str, Any]:
    from realshapes import SWIG_IMAGES, read_real_frames, time_student_steps

    fr = read_real_frames(a.imsitu_dir)
    m = time_student_steps(fr, a.batch, a.n_batches, device=a.device, amp=a.amp, count_flops=False)
    m["samples_per_s"] = a.batch / m["per_batch_s"]
    m["swig_epoch_s"] = math.ceil(SWIG_IMAGES["train"] / a.batch) * m["per_batch_s"]
    return m


def markdown(rec: dict[str, Any]) -> str:
    L = [f"# GPU benchmark (`benchmarks/bench_gpu.py`) on {rec['device_name']}", "",
         f"Device: **{rec['device_name']}**; bf16 autocast: {rec['amp']}; measured {rec['date']}.", ""]
    if "pipeline" in rec:
        p = rec["pipeline"]
        L += [f"## Pipeline `{p['config']}`, stage by stage (measured)", "", "| stage | seconds |", "|---|---|"]
        L += [f"| {k} | {v if v is not None else '-'} |" for k, v in p["stages_s"].items()]
        L += [f"| **this invocation (wall)** | {p['wall_s']:.1f} |", "",
              "A stage skipped as unchanged keeps the time of the run that computed it.", ""]
    if "student" in rec:
        s = rec["student"]
        peak = "-" if s["peak_cuda_mb"] is None else f"{s['peak_cuda_mb']:.0f} MB"
        L += ["## Student training on cached CLIP ViT-L/14-336 features at SWiG shapes (measured)", "",
              f"Batch {s['batch']}, {s['n_batches']} timed steps after one warm-up; {s['verbs']} verbs, {s['roles']} "
              f"roles, {s['nouns']} nouns; hidden {s['d_model']}; synthetic feature values.", "",
              "| per batch | samples/s | peak CUDA memory | SWiG epoch (75,702 images, projected from measured) |",
              "|---|---|---|---|",
              f"| {s['per_batch_s'] * 1000:.1f} ms | {s['samples_per_s']:.0f} | {peak} | {s['swig_epoch_s']:.0f} s |", ""]
    return "\n".join(L)


def to_rows(rec: dict[str, Any]) -> list:
    """The measurements as tidy rows (task ``bench``; ``setting`` names the device and autocast)."""
    from mipd_kit.metrics import row

    setting = f"{rec['device_name']}{' bf16' if rec['amp'] else ''}"
    out = []
    if "pipeline" in rec:
        p = rec["pipeline"]
        model = f"gpu-pipeline-{Path(p['config']).stem}"
        out += [row("bench", model, "-", setting, f"{k}_s", v) for k, v in p["stages_s"].items() if v is not None]
        out.append(row("bench", model, "-", setting, "wall_s", p["wall_s"]))
    if "student" in rec:
        s = rec["student"]
        out += [row("bench", "gpu-student-swig-shapes", "train", setting, k, s[k])
                for k in ("per_batch_s", "samples_per_s", "batch", "n_batches", "peak_cuda_mb") if s[k] is not None]
        out.append(row("bench", "gpu-student-swig-shapes", "train", setting, "proj_swig_epoch_s", s["swig_epoch_s"]))
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--imsitu-dir", type=Path, default=None, help="the imSitu repository folder (evaluation/*.tab)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA")
    p.add_argument("--what", choices=["pipeline", "student", "both"], default="both")
    p.add_argument("--smoke", action="store_true", help="pipeline: configs/smoke.yaml instead of configs/default.yaml")
    p.add_argument("--run-dir", default=None, help="pipeline: the run folder (default: a fresh temporary one)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--n-batches", type=int, default=50, help="student: timed steps (a few on a CPU)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "bench")
    a = p.parse_args(list(argv) if argv is not None else None)
    import torch

    from mipd_kit.machine import resolve_device

    if a.threads:
        torch.set_num_threads(a.threads)
    if a.what in ("student", "both") and a.imsitu_dir is None:
        p.error("--imsitu-dir is needed for the student benchmark (the real frame space)")
    try:
        dev = resolve_device(a.device)
    except ValueError as e:
        print(f"bench_gpu: {e}", file=sys.stderr)
        return 2
    a.device = str(dev)
    rec: dict[str, Any] = {"device": a.device, "device_name": device_name(a.device), "amp": a.amp,
                           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if dev.type != "cuda":
        print(f"bench_gpu: no GPU in use: measuring on {rec['device_name']} (numbers are CPU numbers)")
    if a.what in ("pipeline", "both"):
        rec["pipeline"] = bench_pipeline(a)
    if a.what in ("student", "both"):
        rec["student"] = bench_student(a)
    a.out.mkdir(parents=True, exist_ok=True)
    stem = "gpu-smoke" if a.smoke else "gpu"
    from mipd_kit.metrics import write_rows

    write_rows(a.out / f"{stem}.json", to_rows(rec))
    (a.out / f"{stem}.md").write_text(markdown(rec))
    if "pipeline" in rec:
        print(f"bench_gpu: pipeline {rec['pipeline']['config']} on {rec['device_name']}: "
              f"{rec['pipeline']['wall_s']:.1f} s wall; per stage {rec['pipeline']['stages_s']}")
    if "student" in rec:
        s = rec["student"]
        print(f"bench_gpu: student training at SWiG shapes on {rec['device_name']}: {s['per_batch_s'] * 1000:.1f} ms "
              f"per batch of {s['batch']} ({s['samples_per_s']:.0f} samples/s); SWiG epoch ~{s['swig_epoch_s']:.0f} s")
    print(f"bench_gpu: wrote {a.out / (stem + '.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
