"""Stage ``cl_hoi`` (notebook ``07_cl_hoi.ipynb``): CL-HOI students and baselines (``mipd_kit.hoi.train``, run by
``mipd_kit.app.stages.clhoi_runs``), distilled from the run's teacher.

It needs only the world and the teacher, so changes to the rationale / judge / MIPD stages do not re-run it. The
stage's ``Config`` holds the CL-HOI fields the pipeline sets (the rest keep ``CLHOIConfig``'s defaults);
``python -m mipd_kit.app.stages.cl_hoi --world DIR --run-dir DIR [--smoke] [--set KEY=VALUE ...]`` runs it without the
notebook; ``mipd clhoi`` (``mipd_kit.app.stages.clhoi_runs``) runs ``CLHOIConfig`` directly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from ...checks import check_config
from ...fileio import atomic_write_text
from . import stage_main


@dataclass
class Config:
    """Stage ``cl_hoi`` (the notebook's parameters are these fields; see ``mipd_kit.hoi.config.CLHOIConfig``).

    Attributes:
        world_dir / cache_dir: the run's world and caches.
        seed: seeds everything in this stage (used when seeds is empty).
        teacher_config: the run's ``teacher:`` block (TeacherConfig fields); ``mipd run`` injects it.
        seeds: student seeds (3 in the default run: [0, 1, 2]).
        proposals: known_boxes | detector.
        detections_train: detector JSON for train images, detector mode (empty: jittered GT boxes).
        detections_test: detector JSON for test images.
        jitter: relative box noise of the embedded detector.
        epochs: student epochs.
        hidden: student width.
        batch_images: images per step.
        lr: AdamW learning rate.
        w_image: weight of the per-image KL (interaction distillation).
        w_cross: weight of the cross-image KL (contrastive distillation).
        w_context: weight of the VLT InfoNCE (context distillation).
        w_region: weight of the per-pair KL to the teacher on union crops.
        w_describe: weight of the description distillation (the clhoi rows' pooled pair scores distil the HOI
            distribution their image's description names; 0 = the description reaches only the VLT).
        crop_features: teacher embeddings of human, object and union crops as ICN input.
        score: student detection score: pair_prior, joint or relative.
        kd_temperature: distillation temperature T.
        context_fusion: cross_attention (each pair attends to its image's translated context tokens) or broadcast
            (one context per image, the earlier design).
        describer: who describes the training images for the clhoi VLT target: captioner (the embedded captioner
            on the run's teacher) or sampler (the language backend of describer_sampler).
        captioner_size: the embedded captioner's config: smoke or default.
        describer_sampler: SamplerConfig fields for describer=sampler, e.g. {backend: openai, openai: {base_url:
            ..., model: ...}} (a vision chat endpoint).
        descriptions_file: a JSON {filename: text} of descriptions to use instead of calling a describer.
        vcoco: also report V-COCO scenario-1 role AP (the test split written in the V-COCO format).
        threads: torch threads (0 = torch's default).
        workers: rows (model x seed) trained side by side in forked processes of one torch thread each
            (``CLHOIConfig.workers``; on N cores use N; the default run: 2 on 2 cores).
        zero_shot_splits: also evaluate every prediction file on these zero-shot splits (rare_first,
            non_rare_first, unseen_object, unseen_verb, uc0..uc4: the world's hoi_zero_shot.json, then the bundled
            standard HICO-DET splits) into clhoi/zero_shot/<split>.json, as ``mipd eval-hico --zero-shot`` does.
            Training uses no HOI label, so one run serves every split.
        controls: control rows trained beside the label-free ones (``mipd_kit.hoi.config.CONTROL_MODELS``:
            clhoi-oracle, clhoi-oracle-shuffled, weak-mil, upper); they read hoi_train.json's labels on purpose
            (``mipd_kit.hoi.controls``). [] = the label-free rows only.
    """

    world_dir: str = "data/synthsitu/default-seed0"
    cache_dir: str = "data/cache"
    seed: int = 0
    teacher_config: dict = field(default_factory=dict)
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    proposals: str = "known_boxes"
    detections_train: str = ""
    detections_test: str = ""
    jitter: float = 0.1
    epochs: int = 20
    hidden: int = 128
    batch_images: int = 64
    lr: float = 0.002
    w_image: float = 1.0
    w_cross: float = 1.0
    w_context: float = 0.5
    w_region: float = 1.0
    w_describe: float = 1.0
    crop_features: bool = True
    score: str = "pair_prior"
    kd_temperature: float = 2.0
    context_fusion: str = "cross_attention"
    describer: str = "captioner"
    captioner_size: str = "default"
    describer_sampler: dict = field(default_factory=dict)
    descriptions_file: str = ""
    vcoco: bool = True
    threads: int = 0
    workers: int = 1
    zero_shot_splits: list = field(default_factory=list)
    controls: list = field(default_factory=list)

    @classmethod
    def smoke(cls) -> "Config":
        """Seconds: ``CLHOIConfig.smoke()``'s sizes, one thread, the smoke world and teacher."""
        from .teacher import SMOKE_TEACHER
        return cls(world_dir="data/synthsitu/smoke-seed0", teacher_config=dict(SMOKE_TEACHER), seeds=[0], epochs=8,
                   hidden=32, batch_images=32, captioner_size="smoke", threads=1)

    def __post_init__(self) -> None:
        check_config(self, "cl_hoi")  # types and ranges of every field (mipd_kit.checks)

    def clhoi_config(self, run_dir: str | os.PathLike) -> Any:
        """The library's ``CLHOIConfig`` for this stage (teacher fields describing the run's teacher block)."""
        from ...hoi.config import CONTROL_MODELS, LABEL_FREE_MODELS, CLHOIConfig

        bad = [c for c in self.controls if c not in CONTROL_MODELS]
        if bad:
            raise ValueError(f"unknown cl_hoi controls {bad}; choose from {list(CONTROL_MODELS)}")
        d = {k: v for k, v in dataclasses.asdict(self).items()
             if k not in ("teacher_config", "zero_shot_splits", "controls")}
        d.update(run_dir=str(run_dir), seeds=tuple(self.seeds) or (self.seed,),
                 models=LABEL_FREE_MODELS + tuple(c for c in CONTROL_MODELS if c in self.controls),
                 **clhoi_teacher_fields(self.teacher_config))
        return CLHOIConfig.from_dict(d)


def clhoi_teacher_fields(teacher_config: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """The ``CLHOIConfig`` teacher fields (``teacher`` / ``teacher_size`` / ``teacher_checkpoint``) that describe the
    run's teacher block in CL-HOI's own records, plus the run's ``device`` / ``amp``; only the latter for backends
    CL-HOI's fields cannot name (open_clip, transformers), whose teacher :func:`run` passes to ``run_clhoi`` directly
    as for every backend."""
    from ...teachers import TeacherConfig

    t = TeacherConfig.from_dict(dict(teacher_config or {}), where="teacher_config")
    run = {"device": t.device, "amp": bool(t.amp), "captioner_weights": t.weights}  # the run's device and weights
    if t.backend not in ("embedded", "checkpoint", "tiny"):
        return run
    return {"teacher": t.backend, "teacher_size": t.size, "teacher_checkpoint": t.checkpoint, **run}


@dataclass
class Outputs:
    """What :func:`run` returns: the library's config, the HOI world, the proposal report (test split), the
    ``run_clhoi`` result and the results table written to ``run_dir/clhoi/results.md``."""

    clhoi: Any
    world: Any
    proposals: list
    result: Any
    table: str


def run(cfg: Config, run_dir: str | os.PathLike, progress: bool = False, teacher: Any = None) -> Outputs:
    """Proposal report, then ``run_clhoi`` with the run's teacher (rows into ``run_dir/metrics.json``, predictions,
    ``clhoi/summary.json``), then ``clhoi/results.md``."""
    from ...hoi.prepare import proposal_report
    from ...hoi.scoring import results_table
    from ...hoi.world import load_hoi_world
    from .clhoi_runs import run_clhoi
    from .teacher import build

    ccfg = cfg.clhoi_config(run_dir)
    world = load_hoi_world(cfg.world_dir)
    teacher = teacher if teacher is not None else build(cfg.teacher_config, cfg.world_dir, cfg.cache_dir)
    prop = proposal_report(world, ccfg)
    res = run_clhoi(ccfg, teacher=teacher, world=world, progress=progress)
    table = ("### HICO-DET mAP, Default\n\n" + results_table(res.rows, "default")
             + "\n\n### HICO-DET mAP, Known object\n\n" + results_table(res.rows, "known_object"))
    if ccfg.vcoco:
        table += ("\n\n### V-COCO role AP (scenario 1, mean over action-role classes)\n\n"
                  + results_table(res.rows, "scenario_1", "role_ap"))
    out = Path(run_dir) / "clhoi"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "results.md", table + "\n")
    evaluate_zero_shot_splits(cfg, world, res.prediction_files, out)
    return Outputs(ccfg, world, prop, res, table)


def evaluate_zero_shot_splits(cfg: Config, world: Any, prediction_files: Mapping[str, str],
                              out: Path) -> dict[str, Path]:
    """Official-protocol mAP rows of every prediction file on every split of ``cfg.zero_shot_splits`` (each name
    resolved as ``mipd eval-hico --zero-shot`` resolves it), written to ``out/zero_shot/<split>.json``."""
    from ...data.hico import resolve_zero_shot
    from ...eval.hico import default_split_files, evaluate_hico, load_predictions
    from ...metrics import write_rows

    written: dict[str, Path] = {}
    for spec in cfg.zero_shot_splits:
        name, unseen = resolve_zero_shot(str(spec), default_split_files(Path(cfg.world_dir) / "hoi_test.json"))
        rows = []
        for key, path in sorted(prediction_files.items()):
            model, _, seed = key.rpartition("-seed")
            rows += evaluate_hico(world.test, world.vocab, load_predictions(path), setting="both", zero_shot=unseen,
                                  protocol="official", model=model or key, seed=int(seed) if seed.isdigit() else None,
                                  src=str(path))
        dst = out / "zero_shot" / f"{name}.json"
        write_rows(dst, rows)
        written[name] = dst
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the stage from the command line (the notebook adds the figures)."""
    return stage_main(sys.modules[__name__], argv, run_dir_help="run folder (metrics.json, predictions/, clhoi/)", set_example="epochs=3",
                      world_help="world folder (hoi_train.json, hoi_test.json, ...)",
                      summary=lambda r: r.table + "\n" + json.dumps({"predictions": sorted(r.result.prediction_files)}))


if __name__ == "__main__":
    raise SystemExit(main())
