"""Benchmark of the embedded captioner: what it says about images, measured against what the world drew.

1. A SynthSitu world (``--size smoke|default``; generated unless present), the embedded teacher trained on its
   pretraining captions (smoke or default config, loaded from ``--cache`` when trained before), and the captioner
   trained on the same captions (``CaptionerConfig.smoke()`` or the default), 10% of the pretraining images held out.
2. Precision / recall of pose, relation, object, place and motion-cue mentions and how often it names the right
   verb (``mipd_kit.language.captioner_eval``), on held-out pretraining images and on GSR test images grouped by
   their verb's seen / rare / unseen status (glimpses, and gazes on every role box). A control: the same texts
   shuffled among the images of a group (``captioner-shuffled``), which keeps the corpus prior and removes the image.
3. Throughput: rationales/s of batched generation (glimpses and gazes, batch 64) and of sequential ``Sampler``
   calls (one JRG-style gaze prompt each), with the number of torch threads.
4. Ten sample glimpse + gaze texts beside what the image shows.

Writes ``reports/bench/captioner.json`` (tidy rows, task "bench"; rows of another size already there are kept) and
``reports/bench/captioner.md``.

    python benchmarks/bench_captioner.py [--size smoke|default] [--seed 0] [--threads 2] [--max-per-group 200]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402

from mipd_kit.data.synthsitu.generate import SynthConfig, ensure_world, read_rendered  # noqa: E402
from mipd_kit.language.captioner import (  # noqa: E402
    CaptionerConfig, CaptionerSampler, caption_images, captioner_for)
from mipd_kit.language.captioner_eval import (  # noqa: E402
    CATEGORIES, MentionResult, aggregate, evaluate_captioner, results_table)
from mipd_kit.metrics import merge_rows, row  # noqa: E402
from mipd_kit.teachers import embedded as E  # noqa: E402


def shuffled_control(results: list[MentionResult], seed: int) -> list[MentionResult]:
    """The same texts, each re-assigned to another image of its (group, kind): the corpus prior without the image."""
    from mipd_kit.language.captioner_eval import mentions
    by: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, r in enumerate(results):
        by[(r.group, r.kind)].append(i)
    rng = random.Random(seed)
    out = list(results)
    for idx in by.values():
        perm = idx[:]
        rng.shuffle(perm)
        for i, j in zip(idx, perm):
            t = results[j].text
            m = mentions(t)
            out[i] = replace(results[i], text=t, mentioned={c: [list(s) for s in m[c]] for c in CATEGORIES})
    return out


def throughput(cap, teacher, world: Path, n: int, threads: int) -> list:
    """Rationales/s of batched glimpses and gazes and of sequential Sampler calls."""
    from mipd_kit.data.swig import load_situations
    sits = load_situations(world / "test.json")
    names = sorted(sits)[:n]
    paths = [world / "images" / i for i in names]
    rows = []
    t = time.perf_counter()
    b = caption_images(cap, teacher, paths, seed=0)
    dt = time.perf_counter() - t
    rows.append(("glimpse_batch64", len(paths) / dt, len(b.skipped)))
    boxes = [sits[i].boxes.get("agent") for i in names]
    t = time.perf_counter()
    b = caption_images(cap, teacher, paths, boxes, seed=0)
    dt = time.perf_counter() - t
    rows.append(("gaze_batch64", len(paths) / dt, len(b.skipped)))
    s = CaptionerSampler(cap, teacher)
    k = min(32, len(names))
    t = time.perf_counter()
    for i in names[:k]:
        box = sits[i].boxes.get("agent") or (0, 0, sits[i].width, sits[i].height)
        s([{"role": "user", "content": [
            {"type": "text", "text": f"Task: gaze rationale\nRole: agent\nRole region: [{box[0]:.0f}, {box[1]:.0f}, "
                                     f"{box[2]:.0f}, {box[3]:.0f}] in a {sits[i].width}x{sits[i].height} image"},
            {"type": "image_path", "path": str(world / "images" / i)}]}])
    dt = time.perf_counter() - t
    rows.append(("sampler_sequential", k / dt, 0))
    return [(name, v, sk, threads) for name, v, sk in rows]


def describe_truth(rec: dict) -> str:
    inst = rec["instances"][0]
    objs = ", ".join(f"{r}={o}" for r, o in inst["objects"].items())
    cue = inst["motion"] if inst["motion_drawn"] else ("dropped " + inst["motion"] if inst["motion"] != "none" else "-")
    extra = []
    if rec.get("false_cue"):
        extra.append(f"false cue {rec['false_cue']}")
    if rec.get("distractors"):
        extra.append("distractors " + ", ".join(d["concept"] for d in rec["distractors"]))
    return (f"{inst['verb']}: pose {inst['pose']}, relation {inst['relation']}, {objs}, place {rec['place']}, "
            f"cue {cue}" + ("; " + "; ".join(extra) if extra else ""))


def samples(results: list[MentionResult], rendered: dict, n: int = 10) -> list[dict]:
    """``n`` test images spread over seen / rare / unseen: their glimpse and the gazes of their roles."""
    by_img: dict[str, list[MentionResult]] = defaultdict(list)
    groups: dict[str, str] = {}
    for r in results:
        if r.group in ("seen", "rare", "unseen"):
            by_img[r.image].append(r)
            groups[r.image] = r.group
    order = {g: sorted(i for i in by_img if groups[i] == g) for g in ("seen", "rare", "unseen")}
    picked: list[str] = []
    k = 0
    while len(picked) < n and any(k < len(v) for v in order.values()):
        for g in ("seen", "rare", "unseen"):
            if k < len(order[g]) and len(picked) < n:
                picked.append(order[g][k])
        k += 1
    out = []
    for i in picked:
        rs = by_img[i]
        out.append({"image": i, "group": groups[i], "truth": describe_truth(rendered[i]),
                    "glimpse": next((r.text for r in rs if r.kind == "glimpse"), ""),
                    "gaze": {r.role: r.text for r in rs if r.kind == "gaze"}})
    return out


def markdown(size: str, rows, shuf_rows, thr, train: dict, samp: list[dict], skipped: int, cmd: str) -> str:
    def table(rs, kind: str) -> list[str]:
        tab = results_table(rs, kind)
        cols = ["n_texts", *(f"{c}_{m}" for c in ("pose", "relation", "object", "place", "motion")
                             for m in ("precision", "recall")), "verb_named", "verb_wrong"]
        head = ["group", *[c.replace("_precision", " P").replace("_recall", " R") for c in cols]]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for t in tab:
            vals = [t["group"]] + [("-" if c not in t else (f"{t[c]:.0f}" if c == "n_texts" else f"{t[c]:.1f}"))
                                   for c in cols]
            lines.append("| " + " | ".join(vals) + " |")
        return lines

    out = [f"# Embedded captioner ({size} world)", "",
           f"Command: `{cmd}`. Teacher: embedded, {train['teacher_cfg']} "
           f"({train['teacher_src'] if train['teacher_src'] else ('loaded from cache' if train['teacher_cached'] else 'trained in %.0f s' % train['teacher_s'])}); "
           f"captioner: {train['captioner_cfg']} config, vocabulary {train['vocab']} words, trained on "
           f"{train['n_train']} captions in {train['captioner_s']:.0f} s "
           f"({train['captioner_src'] or ('loaded from cache' if train['captioner_cached'] else 'this run')}), {train['n_heldout']} pretraining "
           f"images held out; next-word loss {train['loss0']:.2f} -> {train['loss1']:.2f} (train), held-out "
           f"{train['held1']:.2f}. Sampling: temperature 0.7, top-p 0.9.",
           "",
           "Mentions are matched against the world's own phrases for each primitive and scored against "
           "`rendered.jsonl` (what was drawn; see `mipd_kit/language/captioner_eval.py`). P = precision, R = recall "
           "(percent); `verb_named` = share of texts naming a verb of the image; `verb_wrong` = share naming a verb "
           f"not in it. {skipped} requests gave no text (counted as empty texts).",
           "", "## Glimpses", "", *table(rows, "glimpse"),
           "", "Control: the same texts shuffled among the images of each group (the caption prior, no image):", "",
           *table(shuf_rows, "glimpse"),
           "", "## Gazes (one per role box; recall targets: that role's concept, and its pose for a person)", "",
           *table(rows, "gaze"), "", "Control (shuffled):", "", *table(shuf_rows, "gaze"),
           "", "## Throughput", "", "| path | rationales/s | skipped | torch threads |", "|---|---|---|---|"]
    for name, v, sk, th in thr:
        out.append(f"| {name} | {v:.1f} | {sk} | {th} |")
    out += ["", f"Machine: {os.cpu_count()} cores shared with other jobs (times are noisy).", "",
            "## Samples (test images; glimpse, then a gaze per role box)", ""]
    for s in samp:
        out.append(f"- `{s['image']}` ({s['group']}) — drawn: {s['truth']}")
        out.append(f"  - glimpse: \"{s['glimpse']}\"")
        for role, t in s["gaze"].items():
            out.append(f"  - gaze {role}: \"{t}\"")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="smoke", choices=["smoke", "default"])
    ap.add_argument("--seed", type=int, default=0, help="world seed (and captioner seed)")
    ap.add_argument("--world", default=None, help="world folder (default data/synthsitu/<size>-seed<seed>)")
    ap.add_argument("--cache", default=str(ROOT / "data" / "cache"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--teacher", default=None, choices=["smoke", "default"],
                    help="embedded-teacher config (default: the world's size)")
    ap.add_argument("--teacher-epochs", type=int, default=None, help="override the teacher config's epochs")
    ap.add_argument("--teacher-max-pairs", type=int, default=None,
                    help="override the teacher config's max_pairs (0 = all pretraining pairs)")
    ap.add_argument("--weights", default="auto", choices=["auto", "released", "retrain"],
                    help="the released teacher / captioner when they match (auto), only them, or train on the world")
    ap.add_argument("--max-per-group", type=int, default=200, help="images per group evaluated")
    ap.add_argument("--throughput-images", type=int, default=128)
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    world = Path(a.world or ROOT / "data" / "synthsitu" / f"{a.size}-seed{a.seed}")
    ensure_world(SynthConfig.from_size(a.size, a.seed), world)
    teacher_name = a.teacher or a.size
    tcfg = E.EmbeddedTeacherConfig.smoke() if teacher_name == "smoke" else E.EmbeddedTeacherConfig()
    tcfg.threads = a.threads
    if a.teacher_epochs is not None:
        tcfg.epochs = a.teacher_epochs
    if a.teacher_max_pairs is not None:
        tcfg.max_pairs = a.teacher_max_pairs or None
    teacher_desc = (f"{teacher_name} config ({tcfg.image_size} px, {tcfg.grid}x{tcfg.grid} tokens of width "
                    f"{tcfg.width}, {tcfg.epochs} epochs on {tcfg.max_pairs or 'all'} pairs)")
    t = time.perf_counter()
    teacher = E.teacher_for(world, a.cache, tcfg, weights=a.weights, progress=False)
    teacher_s = time.perf_counter() - t
    ccfg = CaptionerConfig.smoke() if a.size == "smoke" else CaptionerConfig()
    ccfg = replace(ccfg, threads=a.threads, seed=a.seed)
    t = time.perf_counter()
    cap = captioner_for(world, a.cache, teacher, ccfg, weights=a.weights)
    cap_s = time.perf_counter() - t
    print(f"teacher {teacher_s:.0f}s ({getattr(teacher, 'weights', {})}), captioner {cap_s:.0f}s "
          f"({getattr(cap, 'weights', None) or getattr(cap, 'checkpoint_dir', '')})", flush=True)
    model = f"captioner-{a.size}" + (f"-teacher-{teacher_name}" if teacher_name != a.size else "")
    t = time.perf_counter()
    results, rows, skipped = evaluate_captioner(cap, teacher, world, max_per_group=a.max_per_group, seed=a.seed,
                                                model=model, task="bench")
    eval_s = time.perf_counter() - t
    shuf = shuffled_control(results, a.seed)
    shuf_rows = aggregate(shuf, model=f"{model}-shuffled", task="bench")
    thr = throughput(cap, teacher, world, a.throughput_images, a.threads)
    info = cap.info
    def released(m) -> str:
        w = getattr(m, "weights", None)
        return f"the release {w['name']}" if isinstance(w, dict) and w.get("source") == "release" else ""

    train = {"teacher_src": released(teacher), "captioner_src": released(cap), "teacher_cfg": teacher_desc, "teacher_cached": bool(getattr(teacher, "loaded_from_cache", False)),
             "teacher_s": float(getattr(teacher, "info", {}).get("wall_time_s", teacher_s)),
             "captioner_cfg": a.size, "captioner_cached": bool(getattr(cap, "loaded_from_cache", False)),
             "captioner_s": float(info.get("wall_time_s", cap_s)), "vocab": len(cap.vocab),
             "n_train": info.get("n_train"), "n_heldout": info.get("n_heldout"),
             "loss0": info["epoch_loss"][0], "loss1": info["epoch_loss"][-1],
             "held1": (info.get("heldout_loss") or [float("nan")])[-1]}
    extra = [row("bench", model, "train", "-", "captioner_train_s", train["captioner_s"]),
             row("bench", model, "train", "-", "teacher_train_s", train["teacher_s"]),
             row("bench", model, "train", "-", "train_loss_final", train["loss1"]),
             row("bench", model, "train", "-", "heldout_loss_final", train["held1"]),
             row("bench", model, "eval", "-", "eval_s", eval_s),
             row("bench", model, "eval", "-", "skipped_requests", len(skipped))]
    for name, v, sk, th in thr:
        extra.append(row("bench", model, "throughput", f"{name}-threads{th}", "rationales_per_s", v))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    merge_rows(out / "captioner.json", [*rows, *shuf_rows, *extra])
    rendered = read_rendered(world)
    samp = samples(results, rendered)
    cmd = "python benchmarks/bench_captioner.py " + " ".join(argv if argv is not None else sys.argv[1:])
    md = markdown(a.size, rows, shuf_rows, thr, train, samp, len(skipped), cmd.strip())
    (out / "captioner.md").write_text(md)
    # samples go below bench/, not beside the tidy-row JSONs that the analysis stage reads as benchmark rows
    (out / "samples").mkdir(exist_ok=True)
    (out / "samples" / f"captioner_{a.size}.json").write_text(json.dumps(samp, indent=1) + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
