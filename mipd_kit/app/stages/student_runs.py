"""Student runs in a run folder: train one variant and seed, write its checkpoint, test and dev predictions and loss
curve, and return its metric rows (:func:`run_variant`, used by the distillation stage); ``mipd train-student``
(:func:`main`), which also runs under ``torchrun --nproc_per_node N -m mipd_kit.app.stages.student_runs ...`` (DDP).

Run folder layout: ``checkpoints/<model>-seed<k>.safetensors`` (+ ``.best``, the dev-selected student file),
``predictions/<model>-seed<k>.json`` (test), ``predictions-dev/<model>-seed<k>.json``,
``curves/<model>-seed<k>.json``, ``metrics.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import torch.distributed as dist

from ...align.nmpa import NMPAConfig
from ...student.checkpoint import save_student_file
from ...student.config import StudentConfig
from ...student.data import World, prepare_world
from ...student.distributed import init_distributed, rank_and_size
from ...student.evaluate import dev_unseen_rows, evaluate_predictions, predict_swig
from ...student.ingredients import VARIANTS
from ...student.model import centre_verb_logits
from ...student.train import FitResult, fit


def _write_json(path: Path, obj: Any) -> None:
    """Atomic strict JSON (NaN / inf -> null)."""
    from mipd_kit.fileio import write_json
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, obj, indent=None)


def run_variant(world: World, cfg: StudentConfig, run_dir: str | os.PathLike, resume: bool = True,
                progress: bool = False) -> tuple[list, FitResult]:
    """Train one variant/seed, write ``run_dir/predictions/<model>-seed<k>.json`` (test), the same of the dev split in
    ``run_dir/predictions-dev/`` and the loss curve ``run_dir/curves/<model>-seed<k>.json``; return the test metric
    rows (plus the dev-only unseen verbs' rows) and the fit result."""
    run = Path(run_dir)
    tag = f"{cfg.model_name}-seed{cfg.seed}"
    ckpt = run / "checkpoints" / f"{tag}.safetensors"
    res = fit(world, cfg, ckpt, resume=resume, progress=progress)
    rank, _ = rank_and_size()
    rows: list = []
    if rank == 0:
        # verb-logit centring (0 sets a zero centre, so a student file centred before is reset too); the student file
        # gets the centre, so that mipd predict and the ONNX export predict as evaluated here
        res.info["verb_centring"] = cfg.verb_centring
        res.info["verb_centre_norm"] = centre_verb_logits(res.model, world.train.x, cfg.verb_centring,
                                                          pooled=world.train.xp)
        best = Path(str(ckpt) + ".best")
        if best.exists():
            save_student_file(best, res.model.state_dict(), cfg, world.vocab, res.best_epoch + 1)
        preds = predict_swig(res.model, world.test, world.vocab)
        _write_json(run / "predictions" / f"{tag}.json", preds)
        info = {k: v for k, v in res.info.items() if k != "nmpa_history"}
        nmpa_history = res.info.get("nmpa_history", [])
        curve = run / "curves" / f"{tag}.json"
        if info.get("resumed_finished") and curve.is_file():  # a re-evaluation keeps what the training pass recorded
            try:
                old = json.loads(curve.read_text())
                info = {**old.get("info", {}), **info}
                nmpa_history = old.get("nmpa_history", [])
            except (OSError, ValueError):
                pass
        _write_json(curve, {"history": res.history, "dev_curve": res.dev_curve, "best_epoch": res.best_epoch,
                                  "info": info, "nmpa_history": nmpa_history})
        rows = evaluate_predictions(world, preds, cfg.model_name, cfg.seed)
        dev_preds = predict_swig(res.model, world.dev, world.vocab)
        # the dev predictions, for choices and calibration made on dev (benchmarks/calibrate_testbed.py --run)
        _write_json(run / "predictions-dev" / f"{tag}.json", dev_preds)
        rows += dev_unseen_rows(world, dev_preds, cfg.model_name, cfg.seed)
    return rows, res



# ----------------------------------------------------------------------------------------------- CLI
def config_from_args(variant: str, seed: int, smoke: bool, sets: Sequence[str]) -> StudentConfig:
    """Config from a variant, seed, smoke flag and ``key=value`` overrides (``nmpa.key=value`` for NMPA); values are
    read by ``mipd_kit.overrides.parse_value`` (YAML-typed, as ``mipd run --set``)."""
    from ...overrides import parse_value as _parse_value
    cfg = StudentConfig.smoke(variant) if smoke else StudentConfig(variant=variant)  # type: ignore[arg-type]
    cfg.seed = seed
    for s in sets:
        if "=" not in s:
            raise ValueError(f"--set expects key=value, got {s!r}")
        k, v = s.split("=", 1)
        if k.startswith("nmpa."):
            sub = k[5:]
            if sub not in {f.name for f in dataclasses.fields(NMPAConfig)}:
                raise ValueError(f"unknown NMPA config key {sub!r}")
            setattr(cfg.nmpa, sub, _parse_value(v))
        elif k in {f.name for f in dataclasses.fields(StudentConfig)}:
            setattr(cfg, k, _parse_value(v))
        else:
            raise ValueError(f"unknown StudentConfig key {k!r}")
    cfg.__post_init__()
    return cfg


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``mipd train-student``: train one variant (or several) on a world, write predictions and metrics rows.

    Works under ``torchrun --nproc_per_node N -m mipd_kit.app.stages.student_runs ...`` (DDP: gloo on the CPU; with
    ``--set device=cuda`` (or ``auto`` on a GPU machine) NCCL, rank ``r`` on GPU ``LOCAL_RANK``).
    """
    p = argparse.ArgumentParser(prog="mipd train-student", description="Train Ov-GSR students (baseline and MIPD variants), single process or torchrun DDP.")
    p.add_argument("--world", required=True, help="SynthSitu world folder")
    p.add_argument("--run-dir", required=True, help="run folder (predictions/, curves/, checkpoints/, metrics.json)")
    p.add_argument("--cache-dir", default="data/cache", help="teacher checkpoints and feature caches")
    p.add_argument("--variant", default="full", help=f"comma-separated variants from {VARIANTS} or 'all'")
    p.add_argument("--seeds", default="0", help="comma-separated seeds")
    p.add_argument("--rationales", default=None, help="rationales.jsonl (default: RUN_DIR/rationales.jsonl)")
    p.add_argument("--teacher", default="embedded", choices=["embedded", "tiny"], help="teacher backend")
    p.add_argument("--smoke", action="store_true", help="smoke-sized model and schedule")
    p.add_argument("--no-resume", action="store_true", help="ignore existing checkpoints (they are overwritten)")
    p.add_argument("--set", action="append", default=[], help="override a config field: key=value or nmpa.key=value")
    a = p.parse_args(list(argv) if argv is not None else None)
    variants = list(VARIANTS) if a.variant == "all" else a.variant.split(",")
    seeds = [int(s) for s in a.seeds.split(",")]
    cfgs = [config_from_args(v, s, a.smoke, a.set) for s in seeds for v in variants]
    init_distributed(cfgs[0].device)  # NCCL when the device is CUDA (--set device=cuda), else gloo
    rank, _ = rank_and_size()
    rat = a.rationales or str(Path(a.run_dir) / "rationales.jsonl")
    ws = rank_and_size()[1]
    if ws > 1 and rank != 0:
        dist.barrier()  # rank 0 trains/loads the teacher and fills the feature caches first
    teacher = load_teacher_kind(a.teacher, a.world, a.cache_dir, a.smoke)
    world = prepare_world(a.world, a.cache_dir, teacher, cfgs[0].image_size, rationales_path=rat, verb_text=cfgs[0].verb_text)
    if ws > 1 and rank == 0:
        dist.barrier()
    if rank == 0:
        print(json.dumps(world.report["rationales"]))
    from ...metrics import merge_rows
    for cfg in cfgs:
        rows, res = run_variant(world, cfg, a.run_dir, resume=not a.no_resume, progress=rank == 0)
        if rank == 0:
            merge_rows(Path(a.run_dir) / "metrics.json", rows)
            top = [r for r in rows if r.split in ("seen", "rare", "unseen") and r.setting == "top1" and r.metric == "verb" and r.mean == "image"]
            print(cfg.model_name, f"seed{cfg.seed}", {r.split: round(r.value, 1) for r in top},
                  f"train {res.info['train_s']:.0f}s")
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


def load_teacher_kind(kind: str, world_dir: str | os.PathLike, cache_dir: str | os.PathLike, smoke: bool = False) -> Any:
    """The teacher of ``--teacher``: ``embedded`` (smoke or default size) or ``tiny`` (random, tests only), built by
    the one factory ``mipd_kit.teachers.build_teacher`` with teacher seed 0."""
    from ...teachers import TeacherConfig, build_teacher
    if kind not in ("embedded", "tiny"):
        raise ValueError(f"teacher must be one of 'embedded', 'tiny', got {kind!r}")
    cfg = TeacherConfig(backend=kind, size="smoke" if smoke else "default")  # type: ignore[arg-type]
    return build_teacher(cfg.with_paths(world_dir, cache_dir))


if __name__ == "__main__":
    raise SystemExit(main())
