"""Student ablation driver: the same library calls as notebook 05, one process per seed list.

Usage: python benchmarks/student_ablation.py WORLD RUN_DIR SEEDS VARIANTS [THREADS] ["k=v;k=v"] [TAG] [CACHE_DIR]
e.g. ... data/synthsitu/default-seed0 reports/ablation 0 baseline,feat,glimpse,gaze,neg,full,unlabeled,teacher 1 "epochs=6;unlabeled_ratio=0.5;nmpa.epochs=3"
Rows go to RUN_DIR/metrics_part_<seeds>_<tag>.json (test) and dev_metrics_part_... (dev, for model selection).
"""
import json, sys, time, dataclasses
from pathlib import Path
import torch
threads = int(sys.argv[5]) if len(sys.argv) > 5 else 1
torch.set_num_threads(threads)
from mipd_kit.metrics import write_rows
from mipd_kit.student.train import (StudentConfig, load_teacher_kind, prepare_world, run_variant, runnable_variants,
                                    teacher_rows, predict_swig, evaluate_predictions, config_from_args)
world_dir, run_dir, seeds, variants = sys.argv[1], sys.argv[2], [int(s) for s in sys.argv[3].split(",")], sys.argv[4].split(",")
cache_dir = sys.argv[8] if len(sys.argv) > 8 else str(Path(world_dir).parent / "cache")
sets = sys.argv[6].split(";") if len(sys.argv) > 6 and sys.argv[6] else []
tag = sys.argv[7] if len(sys.argv) > 7 else ""
run = Path(run_dir)
t0 = time.time()
teacher = load_teacher_kind("embedded", world_dir, cache_dir, smoke=False)
w = prepare_world(world_dir, cache_dir, teacher, 64, rationales_path=run / "rationales.jsonl")
print("prepared", round(time.time() - t0), w.report, flush=True)
todo, skipped = runnable_variants(w, [v for v in variants if v != "teacher"])
print("skipped", skipped, flush=True)
rows, dev_rows = [], []
if "teacher" in variants:
    rows += teacher_rows(teacher, world_dir, seeds)
    _, dr = __import__("mipd_kit.teachers.embedded", fromlist=["x"]).zero_shot_verbs(teacher, world_dir, split="dev")
    dev_rows += dr
for s in seeds:
    for v in todo:
        cfg = config_from_args(v, s, False, sets)
        cfg.threads = threads
        r, res = run_variant(w, cfg, run, resume=True)
        name = cfg.model_name + tag
        rows += [dataclasses.replace(x, model=name) for x in r]
        dp = predict_swig(res.model, w.dev, w.vocab)
        dev_rows += [dataclasses.replace(x, model=name) for x in evaluate_predictions(w, dp, name, s, split="dev")]
        top = {x.split: round(x.value, 1) for x in dev_rows if x.model == name and x.seed == s and x.setting == "top1" and x.metric == "verb" and x.mean == "image"}
        print(name, s, "DEV", top, "train_s", round(res.info["train_s"]), "nmpa_s", round(res.info.get("nmpa_s", 0)), "best_ep", res.best_epoch, flush=True)
        write_rows(run / f"metrics_part_{sys.argv[3]}_{tag}.json", rows)
        write_rows(run / f"dev_metrics_part_{sys.argv[3]}_{tag}.json", dev_rows)
print("total", round(time.time() - t0), flush=True)
