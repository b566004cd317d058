"""Real SWiG scale on the CPU, by measurement and arithmetic (issue 15, item 5).

    python benchmarks/bench_realscale.py --imsitu-dir PATH/TO/imSitu [--threads 2] [--batch 32] [--n-batches 2]

Measures, each in a fresh subprocess (so that its peak RSS is its own), the per-batch time, FLOPs and peak memory of
one training step of (a) the student on cached CLIP ViT-L/14-336 tokens (577 x 1024) and (b) NMPA on BLIP-2 tokens
(257 x 1408), with the real frame space (504 verbs, 190 roles, 11,789 nouns, each verb's roles) and synthetic
feature values (``benchmarks/realshapes.py``). Then projects: a SWiG epoch on these cores and on one GPU (by a stated
FLOP-rate assumption), the feature-cache sizes, and the rationales JRG must write for SWiG with the time they take at
the throughputs measured in ``reports/bench/rationales.json`` (and ``llm_judge.json`` when present).

Writes ``reports/bench/realscale.json`` (tidy metric rows, task ``bench``, as every file of ``reports/bench``: the
analysis stage reads them; metrics named ``proj_*`` are projections, the others measured or counted) and
``reports/bench/realscale.md``, where every number is labelled measured or projected. ``--reproject`` recomputes the
projections from the stored measurements. No assertion on time anywhere.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

#: H200 (SXM) dense bf16 tensor-core peak, FLOP/s (NVIDIA's datasheet: 989 TFLOPS without sparsity), and the
#: fraction of it that these small-batch steps are assumed to reach (an assumption, stated in the report).
H200_BF16_PEAK = 989e12
GPU_EFFICIENCY = 0.25
#: fixed cost per training step on a GPU besides its FLOPs (kernel launches of a few hundred small kernels, the
#: AdamW update, the host-to-device copy of a batch, Python): an assumption, stated in the report.
GPU_STEP_OVERHEAD_S = 0.010
#: JRG refinement rounds of the default (``JRGConfig``: every training image, 3 rounds).
JRG_ROUNDS = 3


def _machine() -> dict[str, Any]:
    from mipd_kit.machine import machine_facts

    f = machine_facts()
    load = os.getloadavg()
    return {"cpu": f["cpu"]["model"], "logical_cpus": f["cpu"]["logical_cpus"], "platform": f["platform"],
            "torch": f["torch"].get("version"), "loadavg_1_5_15": [round(x, 2) for x in load]}


def child(a: argparse.Namespace) -> dict[str, Any]:
    import torch

    from realshapes import read_real_frames, time_nmpa_steps, time_student_steps

    torch.set_num_threads(a.threads)
    fr = read_real_frames(a.imsitu_dir)
    if a.child == "student":
        out = time_student_steps(fr, a.batch, a.n_batches, device=a.device)
    else:
        out = time_nmpa_steps(fr.max_roles, a.batch, a.n_batches, device=a.device)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    out["threads"] = torch.get_num_threads()
    return out


def _run_child(kind: str, a: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", kind, "--imsitu-dir", str(a.imsitu_dir), "--threads", str(a.threads),
           "--batch", str(a.batch), "--n-batches", str(a.n_batches), "--device", a.device]
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "PYTHONPATH": str(ROOT)}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def _hms(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def _throughputs(bench_dir: Path) -> list[dict[str, Any]]:
    """Measured full-loop JRG throughputs (rationales/s) of reports/bench/rationales.json (+ llm_judge.json)."""
    out = []
    p = bench_dir / "rationales.json"
    if p.is_file():
        for r in json.loads(p.read_text()):
            if r.get("metric") == "rationales_per_s":
                out.append({"source": "rationales.json", "label": f"{r.get('model')} ({r.get('setting')})",
                            "rationales_per_s": float(r["value"])})
    p = bench_dir / "llm_judge.json"
    if p.is_file():
        for r in json.loads(p.read_text()):
            if r.get("metric") in ("judgements_per_s", "calls_per_s", "requests_per_s"):
                out.append({"source": "llm_judge.json", "label": f"{r.get('model')} ({r.get('setting')}, judge only)",
                            "rationales_per_s": float(r["value"])})
    return out


def project(meas: dict[str, dict], frames: Any, bench_dir: Path) -> dict[str, Any]:
    from realshapes import BLIP2_DIM, BLIP2_TOKENS, CLIP_DIM, CLIP_TOKENS, SWIG_IMAGES

    n_train = SWIG_IMAGES["train"]
    n_all = sum(SWIG_IMAGES.values())
    out: dict[str, Any] = {}
    for k, m in meas.items():
        steps = math.ceil(n_train / m["batch"])
        cpu_rate = m["flops_per_step"] / m["per_batch_s"]
        gpu_step = m["flops_per_step"] / (H200_BF16_PEAK * GPU_EFFICIENCY) + GPU_STEP_OVERHEAD_S
        out[k] = {"steps_per_epoch": steps, "cpu_epoch_s": steps * m["per_batch_s"],
                  "cpu_gflops_measured": cpu_rate / 1e9, "gpu_step_s": gpu_step, "gpu_epoch_s": steps * gpu_step,
                  "speedup": m["per_batch_s"] / gpu_step}
    gb = 1e9
    out["cache"] = {
        "blip2_fp16_train_gb": n_train * BLIP2_TOKENS * BLIP2_DIM * 2 / gb,
        "blip2_fp16_all_gb": n_all * BLIP2_TOKENS * BLIP2_DIM * 2 / gb,
        "clip_fp16_train_gb": n_train * CLIP_TOKENS * CLIP_DIM * 2 / gb,
        "clip_fp16_all_gb": n_all * CLIP_TOKENS * CLIP_DIM * 2 / gb,
        "clip_fp32_train_in_ram_gb": n_train * CLIP_TOKENS * CLIP_DIM * 4 / gb,
        "blip2_fp32_train_in_ram_gb": n_train * BLIP2_TOKENS * BLIP2_DIM * 4 / gb,
        "clip_read_per_epoch_gb": n_train * CLIP_TOKENS * CLIP_DIM * 2 / gb,
    }
    per_image = 1 + frames.roles_per_verb  # one glimpse + one gaze per role (images spread evenly over verbs)
    n_rat = n_train * per_image * JRG_ROUNDS
    out["jrg"] = {"images": n_train, "roles_per_verb": frames.roles_per_verb, "rounds": JRG_ROUNDS,
                  "rationales": n_rat, "sampler_calls": 2 * n_rat,
                  "at": [{**t, "seconds": n_rat / t["rationales_per_s"]} for t in _throughputs(bench_dir)]}
    return out


def markdown(meas: dict[str, dict], proj: dict[str, Any], mach: dict[str, Any], a: argparse.Namespace,
             frames: Any) -> str:
    L = ["# Real SWiG scale on the CPU, measured and projected (`benchmarks/bench_realscale.py`)", "",
         f"Machine: {mach['cpu']}, {mach['logical_cpus']} logical CPUs, {a.threads} torch threads; load average "
         f"(1/5/15 min) at the end {mach['loadavg_1_5_15']} (the cores are shared with other jobs, so times are upper "
         f"bounds); torch {mach['torch']}. No GPU was available: every GPU number below is **projected**.", "",
         f"Frame space (measured, read from the imSitu lists): {len(frames.verbs)} verbs, {len(frames.roles)} roles, "
         f"{len(frames.nouns)} nouns, {frames.roles_per_verb:.2f} roles per verb on average (max {frames.max_roles}; "
         "from each verb's sentence template, restricted to the 190 roles). Feature values are synthetic.", "",
         "## One training step, batch %d (measured; mean of %d batches after one warm-up)" % (a.batch, a.n_batches), "",
         "| step | input per image | per batch | FLOPs per step | CPU rate | peak RSS | params |",
         "|---|---|---|---|---|---|---|"]
    shapes = {"student": "CLIP ViT-L/14-336 tokens 577 x 1024", "nmpa": "BLIP-2 tokens 257 x 1408"}
    for k, m in meas.items():
        L.append(f"| {m['what']} | {shapes[k]} | **{m['per_batch_s']:.2f} s** | {m['flops_per_step'] / 1e9:.0f} G | "
                 f"{proj[k]['cpu_gflops_measured']:.1f} GFLOP/s | {m['peak_rss_mb'] / 1024:.2f} GB | "
                 f"{m['params'] / 1e6:.1f} M |")
    L += ["", "The student is the authors' setup (hidden 512, 8 heads, one decoder layer, variant `full`: verb CE, noun "
          "CE over 3 annotators, box L1 / GIoU / exists, scene and role distillation, negative guidance, logit KD); "
          "NMPA is the default config (scene border prompt + instance prompts, 3 positive and 3 negative rationales "
          "of 32 tokens per image and per role). FLOPs: `torch.utils.flop_counter` over forward and backward. Peak "
          "RSS is the whole process (Python, torch, the synthetic batches).", "",
          "## A SWiG epoch (75,702 train images)", "",
          f"GPU assumption (stated, not measured): one H200 at {H200_BF16_PEAK / 1e12:.0f} TFLOP/s dense bf16 peak "
          f"(NVIDIA datasheet), of which these steps reach {GPU_EFFICIENCY:.0%} (`amp: true`; small matmuls, "
          "attention over 577 tokens, and optimizer steps keep real efficiency well below peak), plus a fixed "
          f"{GPU_STEP_OVERHEAD_S * 1000:.0f} ms per step (kernel launches, AdamW, the batch's host-to-device copy: "
          "an assumption; it dominates the student's small steps). The GPU time per step is FLOPs / (peak x "
          "efficiency) + overhead; the CPU time is the measured per-batch time x steps.", "",
          "| step | steps per epoch | 2 CPU cores (projected from measured) | one H200 (projected, assumption above) |"
          " ratio |", "|---|---|---|---|---|"]
    for k in meas:
        p = proj[k]
        L.append(f"| {meas[k]['what']} | {p['steps_per_epoch']} | {_hms(p['cpu_epoch_s'])} | "
                 f"{_hms(p['gpu_epoch_s'])} | {p['speedup']:.0f}x |")
    c = proj["cache"]
    L += ["", "The authors train 10 epochs: multiply by 10. On a GPU the student's epoch is bounded below by reading "
          f"its features: {c['clip_read_per_epoch_gb']:.0f} GB of fp16 CLIP tokens per epoch, about "
          f"{c['clip_read_per_epoch_gb'] / 2:.0f} s at 2 GB/s (NVMe) or {c['clip_read_per_epoch_gb'] / 0.5 / 60:.0f} "
          "min at 500 MB/s (SATA SSD) (projected).", "",
          "## Feature caches (arithmetic: images x tokens x width x 2 bytes, fp16)", "",
          "| cache | train (75,702) | all SWiG (126,102) | as fp32 in RAM (train) |", "|---|---|---|---|",
          f"| BLIP-2 257 x 1408 (NMPA teacher) | {c['blip2_fp16_train_gb']:.1f} GB | {c['blip2_fp16_all_gb']:.1f} GB | "
          f"{c['blip2_fp32_train_in_ram_gb']:.0f} GB |",
          f"| CLIP ViT-L/14-336 577 x 1024 (student) | {c['clip_fp16_train_gb']:.1f} GB | {c['clip_fp16_all_gb']:.1f} GB"
          f" | {c['clip_fp32_train_in_ram_gb']:.0f} GB |", "",
          "The cache is sharded on disk (`mipd_kit/teachers/cache.py`), but at the time of this report it does "
          "not stream: `FeatureCache.gather` loads every shard a split touches (safetensors `load_file`) and "
          "assembles all its rows into one tensor, fp32 by default, which `prepare_world` keeps for the whole run. "
          "At SWiG scale the right-hand column is the RAM that would take. Real-scale training needs the cache to "
          "stream from disk (memory-mapped shards, rows gathered per batch).", "",
          "## Rationales JRG must write for SWiG (arithmetic)", "",
          f"{proj['jrg']['images']:,} train images x (1 glimpse + {proj['jrg']['roles_per_verb']:.2f} gaze, one per "
          f"role) x {proj['jrg']['rounds']} rounds = **{proj['jrg']['rationales']:,.0f} rationales**, "
          f"{proj['jrg']['sampler_calls']:,.0f} sampler calls (one generation and one judgement each).", "",
          "| throughput source (measured) | rationales/s | time for SWiG (projected) |", "|---|---|---|"]
    for t in proj["jrg"]["at"]:
        L.append(f"| {t['label']} (`reports/bench/{t['source']}`) | {t['rationales_per_s']:.1f} | {_hms(t['seconds'])} |")
    if not any(t["source"] == "llm_judge.json" for t in proj["jrg"]["at"]):
        L.append("| (`reports/bench/llm_judge.json` absent: no measured real-LLM judge throughput) | - | - |")
    L += ["", "The loopback rows measure the toolkit's own overhead against a server that answers in 20 ms; a real "
          "vision chat model is slower per call. At r rationales/s the SWiG run takes "
          f"{proj['jrg']['rationales']:,.0f} / r seconds: e.g. at 50/s (a vLLM server batching a 7B model, an "
          f"assumption) {_hms(proj['jrg']['rationales'] / 50)}.", ""]
    return "\n".join(L)


MEASURED = ("per_batch_s", "min_batch_s", "flops_per_step", "peak_rss_mb", "params", "batch", "n_batches", "threads")


def to_rows(meas: dict[str, dict], proj: dict[str, Any], mach: dict[str, Any]) -> list:
    """The report as tidy rows (task ``bench``): measurements, projections (``proj_*``), caches, JRG counts, and the
    machine (its description in ``setting``)."""
    from mipd_kit.metrics import row

    out = [row("bench", "realscale-machine", "-", f"{mach['cpu']}; {mach['logical_cpus']} logical CPUs; torch "
               f"{mach['torch']}", f"loadavg_{w}", v) for w, v in zip((1, 5, 15), mach["loadavg_1_5_15"])]
    for k, m in meas.items():
        setting = f"{m['device']}-batch{m['batch']}"
        out += [row("bench", f"realscale-{k}", "train", setting, f, m[f]) for f in MEASURED if m.get(f) is not None]
        p = proj[k]
        out += [row("bench", f"realscale-{k}", "train", setting, f, p[f])
                for f in ("steps_per_epoch", "cpu_gflops_measured")]
        out += [row("bench", f"realscale-{k}", "train", setting, f"proj_{f}", p[f])
                for f in ("cpu_epoch_s", "gpu_step_s", "gpu_epoch_s")]
    out += [row("bench", "realscale-cache", "all" if "all" in f else "train", "fp16" if "fp16" in f else "fp32",
                f"proj_{f}", v) for f, v in proj["cache"].items()]
    j = proj["jrg"]
    out += [row("bench", "realscale-jrg", "train", "swig", f, j[f])
            for f in ("images", "roles_per_verb", "rounds", "rationales", "sampler_calls")]
    out += [row("bench", "realscale-jrg", "train", t["label"], "proj_seconds", t["seconds"]) for t in j["at"]]
    return out


def from_rows(rows: list) -> tuple[dict[str, dict], dict[str, Any]]:
    """The measurements and the machine back from :func:`to_rows`'s rows (for ``--reproject``)."""
    meas: dict[str, dict] = {}
    mach: dict[str, Any] = {"loadavg_1_5_15": [0.0, 0.0, 0.0]}
    what = {"student": "student train step", "nmpa": "NMPA train step"}
    for r in rows:
        if r.model == "realscale-machine":
            cpu, cpus, torch_v = r.setting.split("; ")
            mach.update(cpu=cpu, logical_cpus=int(cpus.split()[0]), torch=torch_v.split()[-1])
            mach["loadavg_1_5_15"][(1, 5, 15).index(int(r.metric.split("_")[1]))] = r.value
        elif r.model in ("realscale-student", "realscale-nmpa") and r.metric in MEASURED:
            k = r.model.split("-", 1)[1]
            m = meas.setdefault(k, {"what": what[k], "device": r.setting.rsplit("-batch", 1)[0]})
            m[r.metric] = int(r.value) if r.metric in ("batch", "n_batches", "threads", "params") else r.value
    return meas, mach


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--imsitu-dir", required=True, type=Path, help="the imSitu repository folder (evaluation/*.tab)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--n-batches", type=int, default=2, help="timed batches per step kind (after one warm-up)")
    p.add_argument("--device", default="cpu", help="cpu (this report) or cuda")
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "bench")
    p.add_argument("--only", choices=["student", "nmpa"], default=None)
    p.add_argument("--reproject", action="store_true",
                   help="keep the measurements of OUT/realscale.json, recompute the projections and the report")
    p.add_argument("--child", choices=["student", "nmpa"], default=None, help=argparse.SUPPRESS)
    a = p.parse_args(list(argv) if argv is not None else None)
    if a.child:
        print(json.dumps(child(a)))
        return 0
    from realshapes import read_real_frames

    frames = read_real_frames(a.imsitu_dir)
    if a.reproject:  # the measurements of the last report, new projections (assumptions changed in this file)
        from mipd_kit.metrics import read_rows

        meas, mach = from_rows(read_rows(a.out / "realscale.json"))
        m0 = next(iter(meas.values()))
        a.threads, a.batch, a.n_batches, a.device = m0["threads"], m0["batch"], m0["n_batches"], m0["device"]
    else:
        meas = {k: _run_child(k, a) for k in (["student", "nmpa"] if a.only is None else [a.only])}
        mach = _machine()
    proj = project(meas, frames, a.out)
    a.out.mkdir(parents=True, exist_ok=True)
    from mipd_kit.metrics import write_rows

    write_rows(a.out / "realscale.json", to_rows(meas, proj, mach))
    (a.out / "realscale.md").write_text(markdown(meas, proj, mach, a, frames))
    for k, m in meas.items():
        print(f"[realscale] measured {m['what']} on {m['device']}: {m['per_batch_s']:.2f} s per batch of {m['batch']}, "
              f"peak RSS {m['peak_rss_mb'] / 1024:.2f} GB; projected SWiG epoch {_hms(proj[k]['cpu_epoch_s'])} here, "
              f"{_hms(proj[k]['gpu_epoch_s'])} on one H200 (assumed {GPU_EFFICIENCY:.0%} of bf16 peak)")
    print(f"[realscale] wrote {a.out / 'realscale.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
