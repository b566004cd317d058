"""CL-HOI runs in a run folder (``mipd clhoi`` and the ``cl_hoi`` stage): proposals, teacher features, the
baselines and the students of every seed, their predictions (``run_dir/predictions/hoi-<model>-seed<k>.json``, and
as V-COCO ``vcoco-<model>-seed<k>.json`` beside ``run_dir/clhoi/vcoco_test.json``), metric rows merged into
``run_dir/metrics.json`` and ``run_dir/clhoi/summary.json``. The method and its rows are described in
:mod:`mipd_kit.hoi.train`.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from ...data.records import DataError
from ...hoi.config import CONTROL_MODELS, STUDENTS, CLHOIConfig
from ...hoi.features import PairData, encode_texts
from ...hoi.prepare import (build_teacher, control_targets, image_descriptions, make_proposals, pair_data_for,
                           read_descriptions, teacher_scale)
from ...hoi.proposals import proposal_quality
from ...hoi.scoring import (evaluate_predictions, predictions_from_scores, results_table, spatial_prior_scores,
                           teacher_crop_scores, teacher_pair_scores)
from ...hoi.train import student_scores, train_student
from ...hoi.world import HOIWorld, dev_world, load_hoi_world
from ...metrics import MetricRow, aggregate_seeds, merge_rows

@dataclass
class CLHOIResult:
    """What ``run_clhoi`` produced."""

    rows: list[MetricRow]
    histories: dict[str, list[dict]]
    proposal_stats: dict[str, dict]
    proposal_quality: dict[str, dict]
    prediction_files: dict[str, str]
    info: dict[str, Any]


def _write_json(path: Path, obj: Any) -> None:
    """Atomic strict JSON (NaN / inf -> null)."""
    from mipd_kit.fileio import write_json
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, obj, indent=None)


def _vcoco_ground_truth(world: HOIWorld, out_dir: Path) -> tuple[list, list[str]]:
    """Write the evaluated split in the V-COCO format (``out_dir/vcoco_<split>.json``) and read it back as the
    V-COCO evaluator's ground truth (what ``mipd eval-vcoco --gt`` reads)."""
    from mipd_kit.data.hico import load_vcoco
    from mipd_kit.data.synthsitu.vcoco import write_vcoco
    from mipd_kit.eval.vcoco import gt_from_instances

    path = out_dir / "vcoco_test.json"
    write_vcoco(path, world.test, world.vocab)
    data = load_vcoco(path)
    return gt_from_instances(data), data.classes


def vcoco_eval(gt: tuple[list, list[str]], world: HOIWorld, preds: dict, model: str, seed: int,
               out_path: Path) -> list[MetricRow]:
    """V-COCO scenario-1 role AP / agent AP rows of HICO-DET predictions (converted and written to ``out_path``)."""
    from mipd_kit.data.synthsitu.vcoco import hico_predictions_to_vcoco
    from mipd_kit.eval.vcoco import evaluate_vcoco

    vpreds = hico_predictions_to_vcoco(preds, world.vocab, src=f"hoi-{model}-seed{seed}")
    _write_json(out_path, vpreds)
    gts, classes = gt
    return evaluate_vcoco(gts, classes, vpreds, model=model, seed=seed, src=str(out_path)).rows


def _proposal_seed(cfg: CLHOIConfig, seed: int) -> int:
    """The seed a seed's proposals are keyed by: proposals depend on the seed only through the embedded detector's
    jitter, so every seed shares seed 0's otherwise."""
    return seed if (cfg.proposals == "detector" and not cfg.detections_train) else 0


_STATE: dict[str, Any] = {}  # run_clhoi's prepared material, inherited by forked workers (CLHOIConfig.workers)


def _job(seed: int, model: str, threads: int) -> dict[str, Any]:
    """One row of one seed of ``run_clhoi`` on its prepared material (``_STATE``): train the student (if the row is
    one), score the test pairs, write and evaluate the predictions. Returns rows, history, prediction file and the
    progress lines (printed by the parent, in job order)."""
    st = _STATE
    cfg, world, run_dir = st["cfg"], st["world"], st["run_dir"]
    if threads:
        torch.set_num_threads(threads)
    key_seed = _proposal_seed(cfg, seed)
    train_d, test_d = st["cache"][("train", key_seed)], st["cache"][("test", key_seed)]
    messages: list[str] = []
    history = None
    if model == "teacher":
        scores = teacher_pair_scores(test_d, cfg)
    elif model == "spatial_prior":
        scores = spatial_prior_scores(test_d, cfg)
    elif model == "teacher_crop":
        scores = teacher_crop_scores(test_d, cfg)
    else:
        kind, target = STUDENTS[model]
        if target == "description":
            emb, ok = st["described"][tuple(train_d.filenames)]
            net, norm, h = train_student(kind, train_d, cfg, seed, emb, "description", ok)
        elif target in ("oracle", "oracle-shuffled"):
            emb, ok = st["controls"][tuple(train_d.filenames)][target]
            net, norm, h = train_student(kind, train_d, cfg, seed, emb, "description", ok)
        elif target in ("mil", "pairs"):
            y = st["controls"][tuple(train_d.filenames)][target]
            net, norm, h = train_student(kind, train_d, cfg, seed, target=target, labels=y)
        else:
            file_desc = None
            if cfg.descriptions_file and "clhoi-logitctx" in cfg.models:
                file_desc = read_descriptions(cfg.descriptions_file, train_d.filenames, st["teacher"])
            net, norm, h = train_student(kind, train_d, cfg, seed, file_desc, "logits")
        history = h.epochs
        scores = student_scores(net, test_d, norm, cfg)
        last = h.epochs[-1] if h.epochs else {}
        messages.append(f"[clhoi] {model} seed {seed}: {len(h.epochs)} epochs, {h.wall_time_s:.1f}s, "
                        f"last losses {({k: round(v, 4) for k, v in last.items() if k != 'epoch'})}")
    preds = predictions_from_scores(test_d, scores, cfg.topk_per_pair)
    path = run_dir / "predictions" / f"hoi-{model}-seed{seed}.json"
    _write_json(path, preds)
    r = evaluate_predictions(world, preds, model, seed, cfg)
    rows = list(r)
    if st["vcoco_gt"] is not None:
        rows.extend(vcoco_eval(st["vcoco_gt"], world, preds, model, seed,
                               run_dir / "predictions" / f"vcoco-{model}-seed{seed}.json"))
    m = {(x.split, x.setting): x.value for x in r if x.metric == "map"}
    messages.append(f"[clhoi] {model} seed {seed}: full {m.get(('full', 'default'), float('nan')):.2f} "
                    f"unseen {m.get(('unseen', 'default'), float('nan')):.2f} mAP (default)")
    return {"rows": rows, "history": history, "file": str(path), "messages": messages}


def run_clhoi(cfg: CLHOIConfig, teacher: Any = None, world: Optional[HOIWorld] = None,
              progress: bool = False) -> CLHOIResult:
    """The whole stage: proposals, teacher features, baselines, students per seed, predictions, evaluation.

    Rows are merged into ``run_dir/metrics.json`` (per seed and seed-aggregated ``map_mean`` / ``map_std``);
    predictions go to ``run_dir/predictions/hoi-<model>-seed<k>.json``; histories, proposal statistics and their
    measured error to ``run_dir/clhoi/summary.json``.
    """
    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run_dir = Path(cfg.run_dir)
    (run_dir / "predictions").mkdir(parents=True, exist_ok=True)
    world = world or load_hoi_world(cfg.world_dir)
    if cfg.eval_split == "dev":
        world = dev_world(world, cfg.dev_frac, cfg.dev_seed)
    teacher = teacher if teacher is not None else build_teacher(cfg)
    scale = teacher_scale(teacher, cfg)
    text = encode_texts(teacher, world.prompts, cfg.cache_dir if cfg.teacher != "tiny" else None)
    seeds = tuple(cfg.seeds) or (cfg.seed,)
    rows: list[MetricRow] = []
    hists: dict[str, list[dict]] = {}
    pstats: dict[str, dict] = {}
    pqual: dict[str, dict] = {}
    files: dict[str, str] = {}
    cache: dict[tuple, PairData] = {}
    described: dict[tuple, tuple] = {}
    desc_info: dict[str, Any] = {}
    controls: dict[tuple, dict[str, Any]] = {}
    control_info: dict[str, Any] = {}
    vcoco_gt = _vcoco_ground_truth(world, run_dir / "clhoi") if cfg.vcoco else None
    t0 = time.time()
    jobs: list[tuple[int, str]] = []
    for seed in seeds:
        key_seed = _proposal_seed(cfg, seed)
        for split, ims in (("train", world.train), ("test", world.test)):
            if (split, key_seed) in cache:
                continue
            props, stats = make_proposals(cfg, ims, world.vocab, split, seed, run_dir / "clhoi")
            pstats[f"{split}-seed{key_seed}"] = stats.as_dict()
            if split == "test":  # measured error of the proposals (ground-truth boxes, evaluation only)
                pqual[f"test-seed{key_seed}"] = proposal_quality(props, world.test)
            cache[(split, key_seed)] = pair_data_for(teacher, world, props, text, scale, cfg, f"hoi_{split}")
        names = tuple(cache[("train", key_seed)].filenames)
        if "clhoi" in cfg.models and names not in described:  # once per image set: reused by every seed
            emb, ok, desc_info = image_descriptions(cfg, teacher, world, names)
            described[names] = (emb, ok)
        if set(cfg.models) & set(CONTROL_MODELS) and names not in controls:
            controls[names], control_info = control_targets(cfg, teacher, world, cache[("train", key_seed)])
        jobs += [(seed, model) for model in cfg.models]
    global _STATE
    _STATE = {"cfg": cfg, "world": world, "teacher": teacher, "cache": cache, "described": described,
              "controls": controls, "vcoco_gt": vcoco_gt, "run_dir": run_dir}

    def show(i: int, d: dict[str, Any]) -> None:
        if progress:
            print(*d["messages"], sep="\n", flush=True)

    try:
        workers = min(cfg.workers, len(jobs)) if cfg.device == "cpu" else 1
        if workers > 1:
            from ...machine import FORKED_THREADS, fork_map
            done = fork_map(_job, [(seed, model, FORKED_THREADS) for seed, model in jobs], workers, on_result=show,
                            name=lambda i: f"cl_hoi: {jobs[i][1]} seed {jobs[i][0]}")
        else:
            done = []
            for i, (seed, model) in enumerate(jobs):
                done.append(_job(seed, model, 0))
                show(i, done[-1])
    finally:
        _STATE = {}
    for (seed, model), d in zip(jobs, done):
        if d["history"] is not None:
            hists[f"{model}-seed{seed}"] = d["history"]
        files[f"{model}-seed{seed}"] = d["file"]
        rows.extend(d["rows"])
    map_rows = [r for r in rows if r.metric.startswith("map")
                or (r.setting == "scenario_1" and r.metric in ("role_ap", "agent_ap"))]
    all_rows = rows + aggregate_seeds(map_rows)
    merge_rows(run_dir / "metrics.json", all_rows)
    info = {"teacher_logit_scale": scale, "teacher": getattr(teacher, "fingerprint", "?"),
            "zero_shot": world.zero_shot_name, "n_unseen": len(world.unseen or []), "eval_split": cfg.eval_split,
            "n_train": len(world.train), "n_eval": len(world.test), "descriptions": desc_info,
            "controls": control_info,
            "wall_time_s": time.time() - t0, "config": {k: (list(v) if isinstance(v, tuple) else v)
                                                        for k, v in asdict(cfg).items()}}
    _write_json(run_dir / "clhoi" / "summary.json", {"histories": hists, "proposal_stats": pstats,
                                                      "proposal_quality": pqual, "info": info})
    return CLHOIResult(all_rows, hists, pstats, pqual, files, info)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``mipd clhoi``: train and evaluate CL-HOI and its baselines on a world folder."""
    from ...overrides import ConfigError, split_set
    ap = argparse.ArgumentParser(prog="mipd clhoi", description="CL-HOI training and evaluation: label-free HOI detection distilled from an image-level teacher.")
    ap.add_argument("--world", required=True, help="world / dataset folder (hoi_train.json, hoi_test.json, ...)")
    ap.add_argument("--out", required=True, help="run folder (metrics.json, predictions/, clhoi/)")
    ap.add_argument("--cache", default="data/cache", help="teacher checkpoints and feature caches")
    ap.add_argument("--smoke", action="store_true", help="start from CLHOIConfig.smoke()")
    ap.add_argument("--seeds", default=None, help="comma-separated student seeds, e.g. 0,1,2")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override any CLHOIConfig field (YAML-typed value, as mipd run --set), e.g. --set epochs=20")
    args = ap.parse_args(list(argv) if argv is not None else None)
    base = CLHOIConfig.smoke() if args.smoke else CLHOIConfig()
    d = asdict(base)
    d.update(world_dir=args.world, run_dir=args.out, cache_dir=args.cache)
    if args.seeds:
        d["seeds"] = [int(s) for s in args.seeds.split(",") if s.strip()]
    try:
        for kv in args.set:
            k, v = split_set(kv)
            d[k] = v
    except ConfigError as e:
        print(f"mipd clhoi: {e}", file=sys.stderr)
        return 2
    try:
        cfg = CLHOIConfig.from_dict(d)
        res = run_clhoi(cfg, progress=True)
    except (DataError, ValueError) as e:
        print(f"mipd clhoi: error: {e}", file=sys.stderr)
        return 2
    print(results_table(res.rows, "default"))
    print(results_table(res.rows, "known_object"))
    if cfg.vcoco:
        print(results_table(res.rows, "scenario_1", "role_ap"))
    for k, q in res.proposal_quality.items():
        print(f"proposals {k}: " + ", ".join(f"{a}={b:.3f}" for a, b in q.items()))
    return 0
