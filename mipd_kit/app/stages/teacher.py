"""Stage ``teacher`` (notebook ``01_teacher_features.ipynb``): build (train or load) the run's teacher, evaluate it
zero-shot, write ``teacher_evidence.json`` and fill the feature cache.

The teacher is the run config's ``teacher:`` block, built by :func:`build` (``mipd_kit.teachers.build_teacher``);
every stage that uses a teacher builds it the same way, so all of them use one teacher.

``python -m mipd_kit.app.stages.teacher --world DIR --run-dir DIR [--smoke] [--set KEY=VALUE ...]`` runs it without the
notebook (``mipd teacher`` and ``mipd features`` remain the library's CLIs).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from ...checks import check_config
from . import stage_main

#: the teacher's zero-shot top-5 verbs per image of ``eval_split`` (what the inspector shows beside the students).
ZERO_SHOT_FILE = "teacher_zero_shot.json"

#: the notebooks' default ``teacher_config`` (smoke-sized embedded teacher, seed 0).
SMOKE_TEACHER: dict[str, Any] = {"backend": "embedded", "size": "smoke", "seed": 0}


def build(teacher_config: Optional[Mapping[str, Any]], world_dir: str | os.PathLike, cache_dir: str | os.PathLike,
          progress: bool = False) -> Any:
    """The run's teacher from its ``teacher:`` block (a dict of ``TeacherConfig`` fields) and the run's folders."""
    from ...teachers import TeacherConfig, build_teacher

    cfg = TeacherConfig.from_dict(dict(teacher_config or {}), where="teacher_config")
    return build_teacher(cfg.with_paths(world_dir, cache_dir), progress=progress)


def run_device(teacher_config: Optional[Mapping[str, Any]]) -> tuple[str, bool]:
    """The run's ``(device, amp)``: the ``teacher:`` block's ``device`` (``auto`` | ``cpu`` | ``cuda[:N]``) and
    ``amp``, which every stage that computes uses (the teacher, NMPA, the students, CL-HOI)."""
    from ...teachers import TeacherConfig

    cfg = TeacherConfig.from_dict(dict(teacher_config or {}), where="teacher_config")
    return cfg.device, bool(cfg.amp)


@dataclass
class Config:
    """Stage ``teacher`` (the notebook's parameters are these fields).

    Attributes:
        world_dir / cache_dir: the run's world and caches.
        seed: labels the zero-shot rows (the teacher's own seed is teacher_config's).
        teacher_config: the run's ``teacher:`` block (TeacherConfig fields); ``mipd run`` injects it.
        eval_split: GSR split for zero-shot evaluation.
        extract_features: cache teacher features of train/dev/test/unlabeled images and of the verb prompts.
        feature_batch_size: images per forward when extracting features.
    """

    world_dir: str = "data/synthsitu/default-seed0"
    cache_dir: str = "data/cache"
    seed: int = 0
    teacher_config: dict = field(default_factory=dict)
    eval_split: str = "test"
    extract_features: bool = True
    feature_batch_size: int = 64

    @classmethod
    def smoke(cls) -> "Config":
        """Seconds: the smoke-sized embedded teacher on the smoke world."""
        return cls(world_dir="data/synthsitu/smoke-seed0", teacher_config=dict(SMOKE_TEACHER))

    def __post_init__(self) -> None:
        check_config(self, "teacher")  # types and ranges of every field (mipd_kit.checks)
        if self.feature_batch_size < 1:
            raise ValueError(f"teacher: feature_batch_size must be >= 1, got {self.feature_batch_size}")


@dataclass
class Outputs:
    """What :func:`run` returns: the teacher, its zero-shot predictions and metric rows, the evidence written to
    ``teacher_evidence.json``, the cached features per split (empty without ``extract_features``) and seconds."""

    teacher: Any
    preds: dict
    rows: list
    evidence: dict
    features: dict
    seconds: dict


def run(cfg: Config, run_dir: str | os.PathLike, progress: bool = False) -> Outputs:
    """Build the teacher, evaluate it zero-shot (rows merged into ``run_dir/metrics.json``, its top-5 verbs per
    image in ``run_dir/teacher_zero_shot.json``), write ``run_dir/teacher_evidence.json`` and fill the feature
    cache."""
    from ...data.swig import load_frame_space
    from ...metrics import merge_rows
    from ...teachers import zero_shot as Z
    from ...teachers.cache import cache_world_features, cached_text_features

    run_dir = Path(run_dir)
    seconds: dict[str, float] = {}
    t0 = time.time()
    teacher = build(cfg.teacher_config, cfg.world_dir, cfg.cache_dir, progress=progress)
    seconds["build"] = time.time() - t0
    preds, rows = Z.zero_shot_verbs(teacher, cfg.world_dir, cfg.eval_split, seed=cfg.seed)
    merge_rows(run_dir / "metrics.json", rows)
    from ...fileio import write_json
    write_json(run_dir / ZERO_SHOT_FILE, {"split": cfg.eval_split, "top5": preds}, indent=None)
    evidence = Z.teacher_evidence(teacher, cfg.world_dir, run_dir / "teacher_evidence.json")
    feats: dict[str, Any] = {}
    if cfg.extract_features:
        t0 = time.time()
        feats = cache_world_features(teacher, cfg.world_dir, cfg.cache_dir, batch_size=cfg.feature_batch_size)
        space = load_frame_space(Path(cfg.world_dir) / "imsitu_space.json")
        prompts = [p for ps in Z.verb_prompts(space).values() for p in ps]
        feats["verb-prompts"] = cached_text_features(teacher, prompts, cfg.cache_dir, dataset="verb-prompts")
        seconds["features"] = time.time() - t0
    return Outputs(teacher, preds, rows, evidence, feats, seconds)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the stage from the command line (the notebook adds the figures)."""
    return stage_main(sys.modules[__name__], argv, run_dir_help="run folder (metrics.json, teacher_evidence.json)",
                      set_example="teacher_config={backend: tiny}",
                      summary=lambda r: {"fingerprint": r.teacher.fingerprint, "rows": len(r.rows), "seconds": r.seconds})


if __name__ == "__main__":
    raise SystemExit(main())
