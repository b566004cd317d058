"""Dev-split sweep of the Ov-GSR student: train one variant with config overrides and report **dev** verb top-1
per category (seen / rare / unseen_compositional / unseen_novel / unseen), and the ground-truth-verb setting's value /
grounded value on all dev images. Test is never read.

    python benchmarks/student_dev_sweep.py --world data/synthsitu/default-seed0 --cache-dir data/cache \
        --rationales reports/latest/rationales.jsonl --variant unlabeled --tag kd5 --set w_kd=5 --set w_scene=5

Appends one JSON line per run to ``reports/student-dev-sweep/results.jsonl`` (tag, variant, overrides, dev
accuracies, the teacher's zero-shot dev accuracy for reference, seconds). This is how the student defaults were
chosen (docs/methods.md, "How the defaults were chosen").
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("seen", "rare", "unseen_compositional", "unseen_novel", "unseen")


def top1_by_split(rows) -> dict[str, float]:
    """Per-image verb top-1 (percent) per open-vocabulary split, from SWiG metric rows."""
    return {r.split: round(r.value, 1) for r in rows
            if r.setting == "top1" and r.metric == "verb" and r.mean == "image" and r.split in SPLITS}


def main(argv: list[str] | None = None) -> int:
    from mipd_kit.app.stages.student_runs import config_from_args, load_teacher_kind
    from mipd_kit.student.data import prepare_world
    from mipd_kit.student.evaluate import evaluate_predictions, predict_swig
    from mipd_kit.student.train import fit
    from mipd_kit.teachers.zero_shot import zero_shot_verbs
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--world", required=True)
    ap.add_argument("--cache-dir", default="data/cache")
    ap.add_argument("--rationales", required=True, help="rationales.jsonl of a run (notebooks 02/03)")
    ap.add_argument("--variant", default="full")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", required=True)
    ap.add_argument("--set", action="append", default=[], help="StudentConfig override key=value")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help="smoke teacher and smoke-sized student (tests)")
    ap.add_argument("--teacher", default="embedded", choices=["embedded", "tiny"],
                    help="teacher backend (tiny: random, for tests)")
    ap.add_argument("--out", default=str(ROOT / "reports" / "student-dev-sweep" / "results.jsonl"))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    world_dir = Path(a.world)
    teacher = load_teacher_kind(a.teacher, world_dir, a.cache_dir, smoke=a.smoke)
    cfg = config_from_args(a.variant, a.seed, a.smoke, [*a.set, f"threads={a.threads}"])
    world = prepare_world(world_dir, a.cache_dir, teacher, cfg.image_size, rationales_path=a.rationales,
                          verb_text=cfg.verb_text)
    t0 = time.time()
    res = fit(world, cfg)
    seconds = time.time() - t0
    rows = evaluate_predictions(world, predict_swig(res.model, world.dev, world.vocab), cfg.model_name, a.seed,
                                split="dev")
    gt_verb = {r.metric: round(r.value, 1) for r in rows if r.split == "all" and r.setting == "gt_verb"
               and r.mean == "image" and r.metric in ("value", "value_all", "grnd_value", "grnd_value_all")}
    rec = {"tag": a.tag, "variant": a.variant, "seed": a.seed, "overrides": a.set,
           "dev": top1_by_split(rows), "dev_gt_verb": gt_verb,
           "teacher_dev": top1_by_split(zero_shot_verbs(teacher, world_dir, split="dev")[1]),
           "best_epoch": res.best_epoch, "train_s": round(seconds, 1)}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    print(json.dumps(rec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
