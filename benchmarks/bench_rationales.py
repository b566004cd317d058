"""Benchmark of the Judgmental Rationales Generator.

1. Embedded backend: rationales/s of the full JRG loop (generation + judge + store) on a world: the default
   SynthSitu world when it exists (``data/synthsitu/default-seed0``), else the smoke world, else a freshly generated
   smoke world; teacher evidence from ``--evidence`` / the world's run folder, else computed with the smoke
   embedded teacher (its training time is not counted).
2. HTTP backend: the same loop against a loopback OpenAI-compatible server that adds a fixed per-request delay
   (a stand-in for model latency) and answers with the embedded rules, at concurrency 1, 8, 32 (workers = concurrency);
   plus raw ``OpenAIHTTPSampler.map`` request throughput at the same concurrencies.
3. Re-run of a finished store: number of sampler calls (must be 0).

Writes ``reports/bench/rationales.json`` (tidy rows, task "bench") and ``reports/bench/rationales.md``.

    python benchmarks/bench_rationales.py [--world-dir W] [--evidence E] [--delay-ms 20] [--http-images 16]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mipd_kit.language.embedded import EmbeddedGenerator, EmbeddedJudge  # noqa: E402
from mipd_kit.language.loopback import LoopbackServer, embedded_responder  # noqa: E402
from mipd_kit.language.openai_http import OpenAIHTTPConfig, OpenAIHTTPSampler  # noqa: E402
from mipd_kit.metrics import row, write_rows  # noqa: E402
from mipd_kit.rationales.jrg import JRGConfig, run_jrg  # noqa: E402


class Counting:
    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    @property
    def fingerprint(self):
        return self.inner.fingerprint

    def __call__(self, messages):
        self.calls += 1
        return self.inner(messages)


def find_world(arg: str | None, tmp: Path) -> tuple[Path, str]:
    if arg:
        return Path(arg), "given"
    for name in ("default-seed0", "smoke-seed0"):
        w = ROOT / "data" / "synthsitu" / name
        if (w / "train.json").exists() and (w / "meta.json").exists():
            return w, name
    w = tmp / "world"
    subprocess.run([sys.executable, "-m", "mipd_kit.app.cli", "synth", "--out", str(w), "--seed", "0", "--size", "smoke"],
                   check=True, cwd=ROOT)
    return w, "smoke-seed0 (generated)"


def find_evidence(arg: str | None, world: Path, run: Path) -> str:
    dst = run / "teacher_evidence.json"
    for cand in ([Path(arg)] if arg else []) + [ROOT / "reports" / "latest" / "teacher_evidence.json"]:
        if cand.exists():
            ev = json.loads(cand.read_text())
            train = json.loads((world / "train.json").read_text())
            if set(train) <= set(ev):
                shutil.copy(cand, dst)
                return str(cand)
    import torch
    from mipd_kit.teachers import embedded as E
    from mipd_kit.teachers.zero_shot import teacher_evidence
    torch.set_num_threads(1)
    cfg = E.EmbeddedTeacherConfig.smoke()
    teacher = E.load_or_train(world, run / "cache", cfg)
    teacher_evidence(teacher, world, dst)
    return "smoke embedded teacher (computed)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--world-dir", default=None)
    ap.add_argument("--evidence", default=None)
    ap.add_argument("--delay-ms", type=float, default=20.0)
    ap.add_argument("--http-images", type=int, default=16)
    ap.add_argument("--map-requests", type=int, default=128)
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench"))
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows, lines = [], []
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        world, world_name = find_world(a.world_dir, tmp)
        run = tmp / "run"
        run.mkdir()
        ev_src = find_evidence(a.evidence, world, run)

        # 1. embedded, all training images
        cfg = JRGConfig()
        cfg.workers = 1
        stats = run_jrg(cfg, world, run)
        r = stats["run"]
        rows += [row("bench", "jrg-embedded", "train", world_name, "rationales_per_s", r["rationales_per_s"]),
                 row("bench", "jrg-embedded", "train", world_name, "calls_per_s", r["calls_per_s"]),
                 row("bench", "jrg-embedded", "train", world_name, "rationales", r["new_rationales"]),
                 row("bench", "jrg-embedded", "train", world_name, "seconds", r["seconds"])]
        lines.append(f"| embedded | {world_name} ({stats['images']} images) | 1 | {r['new_rationales']} | "
                     f"{r['seconds']:.2f} | **{r['rationales_per_s']:.0f}** | {r['calls_per_s']:.0f} |")

        # 3. re-run of the finished store
        g, j = Counting(EmbeddedGenerator(seed=cfg.seed)), Counting(EmbeddedJudge(seed=cfg.seed))
        t0 = time.perf_counter()
        run_jrg(cfg, world, run, generator=g, judge=j)
        rerun_s = time.perf_counter() - t0
        rows += [row("bench", "jrg-embedded", "train", "rerun", "calls", g.calls + j.calls),
                 row("bench", "jrg-embedded", "train", "rerun", "seconds", rerun_s)]

        # 2. HTTP backend on loopback at concurrency 1, 8, 32
        http_lines, map_lines = [], []
        for c in (1, 8, 32):
            hrun = tmp / f"http{c}"
            hrun.mkdir()
            shutil.copy(run / "teacher_evidence.json", hrun / "teacher_evidence.json")
            with LoopbackServer(embedded_responder(seed=0), delay_s=a.delay_ms / 1000) as srv:
                oc = OpenAIHTTPConfig(base_url=srv.base_url, model="loopback", api_key_env="", concurrency=c)
                gen, judge = OpenAIHTTPSampler(oc), OpenAIHTTPSampler(oc)
                hcfg = JRGConfig(max_images=a.http_images, workers=c)
                hs = run_jrg(hcfg, world, hrun, generator=gen, judge=judge)["run"]
                with srv.lock:
                    srv.stats["max_in_flight"] = 0  # measure the map phase alone
                t0 = time.perf_counter()
                out = gen.map([[{"role": "user", "content": f"request {i}"}] for i in range(a.map_requests)])
                map_s = time.perf_counter() - t0
                ok = sum(not isinstance(x, Exception) for x in out)
                max_in_flight = srv.stats["max_in_flight"]
                gen.close()
                judge.close()
            model = f"jrg-openai-loopback-{a.delay_ms:g}ms"
            rows += [row("bench", model, "train", f"concurrency{c}", "rationales_per_s", hs["rationales_per_s"]),
                     row("bench", model, "train", f"concurrency{c}", "calls_per_s", hs["calls_per_s"]),
                     row("bench", model, "train", f"concurrency{c}", "map_requests_per_s", ok / map_s),
                     row("bench", model, "train", f"concurrency{c}", "max_in_flight", max_in_flight)]
            http_lines.append(f"| openai (loopback, {a.delay_ms:g} ms/request) | {a.http_images} images | {c} | "
                              f"{hs['new_rationales']} | {hs['seconds']:.2f} | **{hs['rationales_per_s']:.1f}** | "
                              f"{hs['calls_per_s']:.1f} |")
            map_lines.append(f"| {c} | {ok}/{a.map_requests} | {map_s:.2f} | **{ok / map_s:.1f}** | {max_in_flight} |")

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_rows(out / "rationales.json", rows)
    md = ["# JRG benchmark (`benchmarks/bench_rationales.py`)", "",
          f"Machine: {os.cpu_count()} CPU cores (shared). World: {world_name}; teacher evidence: {ev_src}.", "",
          "## Full loop (generation + judge + store), rationales per second", "",
          "| backend | data | concurrency | rationales | seconds | rationales/s | calls/s |", "|---|---|---|---|---|---|---|",
          *lines, *http_lines, "",
          f"## Raw HTTP requests (`OpenAIHTTPSampler.map`, {a.delay_ms:g} ms server delay)", "",
          "| concurrency | ok | seconds | requests/s | max in flight at server |", "|---|---|---|---|---|", *map_lines, "",
          "## Re-run of a finished store", "",
          f"Sampler calls: **{[x.value for x in rows if x.setting == 'rerun' and x.metric == 'calls'][0]:.0f}** "
          f"({rerun_s:.2f} s to read the store and skip every chain).", ""]
    (out / "rationales.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
