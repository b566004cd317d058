"""What the JRG's rationales contain, with the embedded captioner as the generator vs the template control.

On a sample of a world's training images (``--images``, seeded), the rationales stage runs twice with the embedded
answer-free judge: generator ``captioner`` (looks at the image) and ``template`` (the old generator: the teacher's
evidence written into frame templates). For each: acceptance per round, judge precision against the world's rendered
truth (a final positive is correct when it names a verb of the image and no other verb; see
``mipd_kit.rationales.content``), share of positives / of all generated texts that mention a pose, relation or motion
primitive, distinct positives per verb with nouns masked, gold-verb negatives dropped, unlabeled descriptions, and
wall-clock rationales/s (generation + judge + store). Twenty sample rationales (glimpse and gaze, positive and
negative) of the captioner run go to ``reports/bench/samples/jrg_<world>.json``.

Writes ``reports/bench/jrg_content.json`` (tidy rows, task "bench") and ``reports/bench/jrg_content.md``.

    python benchmarks/bench_jrg_content.py --world data/synthsitu/default-seed0 [--teacher default] [--images 200]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

from mipd_kit.fileio import write_json  # noqa: E402
from mipd_kit.machine import machine_facts  # noqa: E402
from mipd_kit.metrics import merge_rows, row  # noqa: E402
from mipd_kit.rationales.content import PRIMITIVES, mentioned  # noqa: E402
from mipd_kit.rationales.store import read_rationales  # noqa: E402
from mipd_kit.app.stages import rationales as R  # noqa: E402
from mipd_kit.app.stages.teacher import build  # noqa: E402
from mipd_kit.teachers.zero_shot import teacher_evidence  # noqa: E402


def subset_world(world: Path, out: Path, n: int, seed: int) -> Path:
    """A view of ``world`` whose train split is ``n`` seeded images (files linked, not copied)."""
    if (out / "train.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    for p in world.iterdir():
        if p.name != "train.json" and not (out / p.name).exists():
            (out / p.name).symlink_to(p.resolve())
    train = json.loads((world / "train.json").read_text())
    keys = sorted(train)
    random.Random(seed).shuffle(keys)
    write_json(out / "train.json", {k: train[k] for k in sorted(keys[:n])})
    return out


def run_backend(backend: str, world: Path, run_dir: Path, teacher_config: dict, cache: str, smoke: bool,
                n_unlabeled: int, evidence: Path) -> tuple[dict, float, list]:
    run_dir.mkdir(parents=True, exist_ok=True)
    if not (run_dir / "teacher_evidence.json").exists():
        (run_dir / "teacher_evidence.json").write_bytes(evidence.read_bytes())
    cfg = dataclasses.replace(R.Config(), world_dir=str(world), cache_dir=cache, teacher_config=teacher_config,
                              jrg_smoke=smoke, backend=backend, max_images=0, rounds=3,
                              max_unlabeled=n_unlabeled if backend == "captioner" else None,
                              unlabeled=backend == "captioner", toy_if_missing=False)
    t = time.perf_counter()
    out = R.run(cfg, run_dir)
    dt = time.perf_counter() - t
    return out.stats, dt, read_rationales(run_dir / "rationales.jsonl")


def generated_primitive_share(records: list, kind: str) -> float:
    gen = [r for r in records if r.kind == kind and r.polarity in ("positive", "negative", "dropped")
           and r.source == "generated"]
    return sum(any(mentioned(r.text, c) for c in PRIMITIVES) for r in gen) / len(gen) if gen else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--world", default=str(ROOT / "data" / "synthsitu" / "default-seed0"))
    ap.add_argument("--cache", default=str(ROOT / "data" / "cache"))
    ap.add_argument("--teacher", default="default", choices=["smoke", "default"])
    ap.add_argument("--images", type=int, default=200, help="training images sampled (seeded)")
    ap.add_argument("--unlabeled", type=int, default=100, help="unlabeled images described")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=str(ROOT / "data" / "bench" / "jrg_content"))
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    world = Path(a.world)
    work = Path(a.work) / f"{world.name}-n{a.images}-s{a.seed}"
    sub = subset_world(world, work / "world", a.images, a.seed)
    tcfg = {"backend": "embedded", "size": a.teacher}
    teacher = build(tcfg, world, a.cache)
    evidence = work / "teacher_evidence.json"
    if not evidence.exists():
        teacher_evidence(teacher, sub, evidence)
    smoke = a.teacher == "smoke"
    results = {}
    for backend in ("captioner", "template"):
        stats, dt, recs = run_backend(backend, sub, work / backend, tcfg, a.cache, smoke, a.unlabeled, evidence)
        results[backend] = (stats, dt, recs)
    rows, lines = [], []
    name = world.name
    lines += [f"# What the rationales contain: captioner vs template (`benchmarks/bench_jrg_content.py`)", "",
              f"Command: `python benchmarks/bench_jrg_content.py --world {a.world if not a.world.startswith(str(ROOT)) else os.path.relpath(a.world, ROOT)} "
              f"--teacher {a.teacher} --images {a.images} --unlabeled {a.unlabeled} --threads {a.threads}`. "
              f"World {name}: {a.images} training images (seeded sample), 3 rounds, the embedded answer-free judge, "
              f"teacher `{a.teacher}` ({getattr(teacher, 'weights', {}).get('name', 'trained on the world') if isinstance(getattr(teacher, 'weights', None), dict) else 'embedded'}). "
              f"Machine: {machine_facts().get('cpu', {}).get('model', 'CPU')}, {a.threads} torch threads (other jobs "
              f"running: times are indicative).", ""]
    head = ("| generator | kind | chains | accepted r0 | accepted r1 | accepted r2 | final positives | judge precision "
            "| positives naming a primitive | generated texts naming a primitive | distinct masked positives per verb "
            "(max / mean) | gold-verb negatives dropped |")
    lines += ["## Acceptance and content", "", head, "|" + "---|" * 12]
    for backend, (stats, dt, recs) in results.items():
        content = stats.get("content", {})
        for kind in ("glimpse", "gaze"):
            s = stats.get(kind, {})
            c = content.get(kind, {})
            per = [p.get("accepted", 0) for p in s.get("accept_rate_round", [])] + [None] * 3
            gps = generated_primitive_share(recs, kind)
            prec = c.get("judge_precision")
            lines.append(f"| {backend} | {kind} | {s.get('chains', 0)} | {per[0]} | {per[1]} | {per[2]} | "
                         f"{s.get('n_positive', 0)} | {'-' if prec is None else f'{100 * prec:.1f}'} | "
                         f"{100 * (c.get('primitive_share') or 0):.1f} | {100 * gps:.1f} | "
                         f"{c.get('distinct_masked_max', 0)} / {c.get('distinct_masked_mean', 0):.1f} | "
                         f"{content.get('negatives_dropped_gold_verb', 0) if kind == 'glimpse' else ''} |")
            for metric, value in (("chains", s.get("chains", 0)), ("positives", s.get("n_positive", 0)),
                                  ("judge_precision", None if prec is None else 100 * prec),
                                  ("positive_primitive_share", 100 * (c.get("primitive_share") or 0)),
                                  ("generated_primitive_share", 100 * gps),
                                  ("distinct_masked_max", c.get("distinct_masked_max", 0)),
                                  ("distinct_masked_mean", c.get("distinct_masked_mean", 0))):
                if value is not None:
                    rows.append(row("bench", f"jrg-{backend}", f"train-{kind}", name, metric, float(value)))
    lines += ["", "Accepted rK: chains whose rationale the judge accepted in round K (of the chains still open). "
              "Judge precision: share of final positives that are correct by the world's rendered truth. A primitive: "
              "a pose, relation or motion phrase of the world.", "", "## Throughput", "",
              "| generator | rationales judged | unlabeled descriptions | seconds | rationales/s |", "|---|---|---|---|---|"]
    for backend, (stats, dt, recs) in results.items():
        n = sum(1 for r in recs if r.polarity in ("positive", "negative", "dropped"))
        unl = sum(1 for r in recs if r.polarity == "unjudged")
        lines.append(f"| {backend} | {n} | {unl} | {dt:.1f} | {(n + unl) / dt:.1f} |")
        rows.append(row("bench", f"jrg-{backend}", "train", name, "rationales_per_s", (n + unl) / dt))
    # samples
    recs = results["captioner"][2]
    rng = random.Random(a.seed)
    samples = []
    for kind in ("glimpse", "gaze"):
        for pol in ("positive", "negative"):
            pool = [r for r in recs if r.kind == kind and r.polarity == pol]
            for r in rng.sample(pool, min(5, len(pool))):
                samples.append({"image": r.image, "kind": kind, "role": getattr(r, "role", None), "polarity": pol,
                                "round": r.round, "score": r.score, "text": r.text})
    unl = [r for r in recs if r.polarity == "unjudged"]
    for r in rng.sample(unl, min(5, len(unl))):
        samples.append({"image": r.image, "kind": r.kind, "role": None, "polarity": "unjudged", "round": r.round,
                        "score": None, "text": r.text})
    sdir = Path(a.out) / "samples"
    sdir.mkdir(parents=True, exist_ok=True)
    write_json(sdir / f"jrg_{name}.json", samples)
    lines += ["", f"## Samples (captioner run; all {len(samples)} in `samples/jrg_{name}.json`)", "",
              "| image | kind | role | polarity | text |", "|---|---|---|---|---|"]
    for s in samples:
        lines.append(f"| {s['image']} | {s['kind']} | {s['role'] or ''} | {s['polarity']} | {s['text']} |")
    out = Path(a.out)
    merge_rows(out / "jrg_content.json", rows)
    (out / "jrg_content.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:30]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
