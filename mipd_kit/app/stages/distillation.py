"""Stage ``distillation`` (notebook ``05_distillation.ipynb``): the rows of the MIPD study, per seed, distilled from
the run's teacher.

The rows are model names of the ingredients table (``mipd_kit.student.ingredients.ROWS``; default
``STUDY_ROWS``: teacher, student-zs, baseline, mipd-feat, mipd-feat-kd, mipd, mipd-kd, mipd-template, mipd-shuffled,
mipd-feat-kd-unlabeled, mipd-kd-unlabeled); each student row names its variant and its rationale source (the run's
judged rationales, or the ``template`` / ``shuffled`` control files, :func:`rationale_path`). With a
``student_backbone`` (the paper's student, the default of the run configs) every student is a head on the cached
features of that frozen backbone and ``student-zs`` is the backbone's own zero-shot verb accuracy; without one the
students are the from-scratch CNN on pixels (the ``edge`` student) and ``student-zs`` is skipped with its reason.
The paired differences of :data:`mipd_kit.student.ingredients.KEY_DIFFERENCES` over the student seeds are written
as rows of task ``gsr-study`` with ``lo`` / ``hi`` (``mipd_kit.metrics.paired_difference_rows``).

The stage config turns into one ``mipd_kit.student.config.StudentConfig`` per variant and seed
(:func:`student_config`); the world and the teacher's material are prepared once (:func:`prepare`, which passes the
config's ``verb_text`` to the vocabulary); NMPA comes from stage ``alignment`` (``run_dir/nmpa``: its settings and
its weights, loaded instead of retrained, :func:`load_alignment`); the training loop itself is the library's
(``mipd_kit.student.train.fit``, through ``mipd_kit.app.stages.student_runs.run_variant``).

``python -m mipd_kit.app.stages.distillation --world DIR --run-dir DIR [--smoke] [--set KEY=VALUE ...]`` runs it
without the notebook; ``mipd train-student`` remains the per-variant CLI.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from ...checks import check_config
from . import stage_main

#: the paper's student on the smoke world: the weaker embedded image-text backbone, frozen, features cached
SMOKE_STUDENT_BACKBONE = {"backend": "embedded", "size": "student-smoke", "seed": 0}


@dataclass
class Config:
    """Stage ``distillation`` (the notebook's parameters are these fields).

    Attributes:
        world_dir / cache_dir: the run's world and caches.
        seed: base seed (used when seeds is empty).
        teacher_config: the run's ``teacher:`` block (TeacherConfig fields); ``mipd run`` injects it.
        seeds: student seeds (default run: [0, 1, 2]).
        rows: the rows to produce, model names of ``mipd_kit.student.ingredients.ROWS`` (null: ``STUDY_ROWS``,
            unless ``variants`` is given; then those only).
        variants: further students by variant name (``mipd_kit.student.ingredients.VARIANTS``; the older form).
        rationale_files: rationale source -> rationales.jsonl of the control rows (``template``, ``shuffled``);
            a source not given is read from ``run_dir/rationales-<source>.jsonl``, and its rows are skipped with the
            reason when that file is absent.
        student_smoke: smoke-sized student and schedule (``StudentConfig.smoke``).
        rationales: rationales.jsonl path; empty means run_dir/rationales.jsonl.
        epochs: student epochs; None keeps the StudentConfig's.
        resume: resume / reuse finished checkpoints in run_dir/checkpoints.
        nmpa_epochs: NMPA epochs; None takes stage alignment's (must agree with it when both are given).
        unlabeled_ratio: unlabeled images per labelled image; None keeps the StudentConfig's.
        threads: torch threads (0 = torch's default).
        overrides: further StudentConfig fields, e.g. {"w_kd": 5.0, "verb_text": "definition"}.
        student_backbone: the student's frozen backbone (TeacherConfig fields, built by the same teacher factory:
            embedded ``{backend: embedded, size: student}`` -- the weaker image-text model of this world, the run
            configs' default -- or real mode ``{backend: open_clip, model: ViT-L-14-336, pretrained: openai}``); the
            student is then a head on its cached patch tokens (StudentConfig backbone "cached") and row
            ``student-zs`` its zero-shot accuracy. Empty: the from-scratch CNN on pixels (the ``edge`` student).
        study_bootstrap: bootstrap resamples of the ``gsr-study`` intervals.
        workers: students trained side by side, each in a process forked after the world is prepared (so the
            prepared world and the loaded NMPA are shared, not rebuilt), of one torch thread each (a forked process
            cannot run more: ``mipd_kit.machine.fork_map``), so on N cores use N workers. The students are small, so
            on 2 cores two 1-thread processes beat one 2-thread process:
            1.47x for a 6-student stage call, preparation included (reports/bench/distill_workers.md). A student's
            numbers are those of its own thread count: repeatable for a given count; another count changes the
            float summation order, which training carries on as another seed would. 1: one at a time, in this
            process; CUDA runs use 1.
    """

    world_dir: str = "data/synthsitu/default-seed0"
    cache_dir: str = "data/cache"
    seed: int = 0
    teacher_config: dict = field(default_factory=dict)
    seeds: list = field(default_factory=lambda: [0, 1, 2])
    rows: Optional[list] = None
    variants: list = field(default_factory=list)
    rationale_files: dict = field(default_factory=dict)
    student_smoke: bool = False
    rationales: str = ""
    epochs: Optional[int] = None
    resume: bool = True
    nmpa_epochs: Optional[int] = None
    unlabeled_ratio: Optional[float] = None
    threads: int = 0
    overrides: dict = field(default_factory=dict)
    student_backbone: dict = field(default_factory=dict)
    study_bootstrap: int = 2000
    workers: int = 1

    @classmethod
    def smoke(cls) -> "Config":
        """Seconds to minutes: smoke student, one seed, the smoke world and teacher."""
        from .teacher import SMOKE_TEACHER
        return cls(world_dir="data/synthsitu/smoke-seed0", teacher_config=dict(SMOKE_TEACHER), seeds=[0],
                   student_smoke=True, student_backbone=dict(SMOKE_STUDENT_BACKBONE))

    def __post_init__(self) -> None:
        for k in ("epochs", "nmpa_epochs"):
            v = getattr(self, k)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(f"distillation: {k} must be a positive integer or null (the config's value), "
                                 f"got {v!r}; 0 no longer means 'keep the config value'")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"distillation: workers must be a positive integer, got {self.workers!r}")
        if self.unlabeled_ratio is not None and self.unlabeled_ratio <= 0:
            raise ValueError(f"distillation: unlabeled_ratio must be > 0 or null (the config's value), got "
                             f"{self.unlabeled_ratio!r}; 0 no longer means 'keep the config value'")
        check_config(self, "distillation")  # types and ranges of every field (mipd_kit.checks)

    @property
    def seed_list(self) -> list[int]:
        return [int(s) for s in self.seeds] or [int(self.seed)]

    def row_list(self) -> list[Any]:
        """The ingredients-table rows to produce, in order, without repeats (``rows``, then ``variants``)."""
        from ...student.ingredients import STUDY_ROWS, row_of
        names = list(self.rows) if self.rows is not None else ([] if self.variants else list(STUDY_ROWS))
        out: list[Any] = []
        for n in [*names, *self.variants]:
            r = row_of(str(n))
            if r not in out:
                out.append(r)
        return out


def rationale_path(cfg: Config, run_dir: str | os.PathLike, source: str) -> Path:
    """The rationales file of a source: ``run`` -> ``rationales`` (or run_dir/rationales.jsonl); a control source
    -> ``rationale_files[source]`` (or run_dir/rationales-<source>.jsonl)."""
    if source == "run":
        return Path(cfg.rationales or Path(run_dir) / "rationales.jsonl")
    return Path(cfg.rationale_files.get(source) or Path(run_dir) / f"rationales-{source}.jsonl")


def student_config(cfg: Config, variant: str, seed: int, nmpa_base: Any = None,
                   feature_shape: Optional[tuple[int, int]] = None, pooled_dim: int = 0) -> Any:
    """The ``StudentConfig`` of one variant and seed: size, seed, epochs, NMPA settings (``nmpa_base``, from stage
    alignment, else the StudentConfig's), NMPA epochs, unlabeled ratio, overrides, threads -- in that order; the
    device and bf16 autocast are the run's (the ``teacher:`` block's ``device`` / ``amp``); with a
    ``student_backbone``, ``backbone="cached"``, ``feature_shape`` (tokens, width of its cached features) and, when
    the config's ``use_pooled``, ``pooled_dim`` (the width of its pooled embedding)."""
    from ...student.config import StudentConfig
    from .teacher import run_device

    c = StudentConfig.smoke(variant) if cfg.student_smoke else StudentConfig(variant=variant)  # type: ignore[arg-type]
    device, amp = run_device(cfg.teacher_config)
    c = dataclasses.replace(c, seed=seed, device=device, amp=amp)
    if cfg.epochs is not None:
        c = dataclasses.replace(c, epochs=cfg.epochs)
    if nmpa_base is not None:
        c = dataclasses.replace(c, nmpa=dataclasses.replace(nmpa_base))
    if cfg.nmpa_epochs is not None:
        if nmpa_base is not None and nmpa_base.epochs != cfg.nmpa_epochs:
            raise ValueError(f"distillation: nmpa_epochs={cfg.nmpa_epochs} but stage alignment trained NMPA for "
                             f"{nmpa_base.epochs} epochs; set the NMPA epochs in stage alignment only")
        c = dataclasses.replace(c, nmpa=dataclasses.replace(c.nmpa, epochs=cfg.nmpa_epochs))
    if cfg.unlabeled_ratio is not None:
        c = dataclasses.replace(c, unlabeled_ratio=cfg.unlabeled_ratio)
    if cfg.overrides:
        c = StudentConfig.from_dict({**dataclasses.asdict(c), **dict(cfg.overrides)})
    if cfg.student_backbone and feature_shape is not None:
        c = dataclasses.replace(c, backbone="cached", num_tokens=int(feature_shape[0]), in_dim=int(feature_shape[1]),
                                pooled_dim=int(pooled_dim) if c.use_pooled else 0)
    return dataclasses.replace(c, threads=cfg.threads) if cfg.threads else c


def prepare(cfg: Config, run_dir: str | os.PathLike, teacher: Any = None, **kw: Any) -> tuple[Any, Any]:
    """The teacher (the run's, unless given) and the prepared world, whose vocabulary follows the config's
    ``verb_text`` (also when set through ``overrides``). ``kw`` goes to ``prepare_world`` (tests: ``embed_texts``)."""
    from ...student.data import prepare_world
    from .teacher import build

    base = student_config(cfg, "full", cfg.seed_list[0])
    teacher = teacher if teacher is not None else build(cfg.teacher_config, cfg.world_dir, cfg.cache_dir)
    backbone = build(cfg.student_backbone, cfg.world_dir, cfg.cache_dir) if cfg.student_backbone else None
    rationales_path = str(rationale_path(cfg, run_dir, "run"))
    world = prepare_world(cfg.world_dir, cfg.cache_dir, teacher, image_size=base.image_size,
                          rationales_path=rationales_path, verb_text=base.verb_text, backbone=backbone, **kw)
    world.backbone = backbone
    return teacher, world


def load_alignment(world: Any, run_dir: str | os.PathLike) -> tuple[Any, dict[str, str]]:
    """Stage alignment's NMPA: its settings (None when it has not run) and its weights, loaded into the world's
    NMPA cache so that ``attach_targets`` uses them instead of training NMPA again.

    Returns:
        (NMPA base config or None, fingerprint -> file loaded).
    """
    from ...align.nmpa import NMPAConfig, aligned_targets, load_nmpa
    from .alignment import NMPA_DIR, read_index

    index = read_index(run_dir)
    if index is None:
        return None, {}
    base = NMPAConfig(**index["base"])
    loaded: dict[str, str] = {}
    if world.align is None:
        return base, loaded
    for key, m in index["models"].items():
        path = Path(run_dir) / NMPA_DIR / m["file"]
        model = load_nmpa(path, NMPAConfig(**m["config"]), world.align)
        world.nmpa_cache[key] = (model, m.get("history", []), aligned_targets(model, world.align),
                                 float(m.get("seconds", 0.0)))
        loaded[key] = str(path)
    return base, loaded


@dataclass
class Outputs:
    """What :func:`run` returns: metric rows (teacher rows + per-seed students + seed aggregates), training seconds
    per student, skipped variants with reasons, where each student's NMPA came from, and the prepared world."""

    rows: list
    timings: dict
    skipped: dict
    nmpa_source: dict
    world: Any
    study: list = field(default_factory=list)


def plan_rows(cfg: Config, run_dir: str | os.PathLike, world: Any) -> tuple[list[tuple[Any, Any]], dict[str, str]]:
    """The student rows to train, each with the world whose rationales it uses, and the skipped rows with the reason
    (never silent): a control whose rationales file is absent, a row the world cannot support
    (``runnable_variants``)."""
    from ...rationales.store import collect, read_rationales
    from ...student.targets import runnable_variants, with_rationales

    worlds: dict[str, Any] = {"run": world, "": world}
    plan, skipped = [], {}
    for r in cfg.row_list():
        if r.kind != "student":
            continue
        if r.rationales not in worlds:
            path = rationale_path(cfg, run_dir, r.rationales)
            worlds[r.rationales] = (with_rationales(world, collect(read_rationales(path)), r.rationales)
                                    if path.is_file() else None)
        w = worlds[r.rationales]
        if w is None:
            skipped[r.model] = (f"no {r.rationales} rationales ({rationale_path(cfg, run_dir, r.rationales)}; stage "
                                f"rationales writes it with the {r.rationales!r} control backend)")
            continue
        ok, why = runnable_variants(w, [r.variant])
        if ok:
            plan.append((r, w))
        else:
            skipped[r.model] = why[r.variant]
    return plan, skipped


def run(cfg: Config, run_dir: str | os.PathLike, progress: bool = False, teacher: Any = None,
        **prepare_kw: Any) -> Outputs:
    """Produce every row of the config for every seed: reference rows (teacher, student-zs), students (predictions /
    curves / checkpoints), seed aggregates and the ``gsr-study`` paired differences, merged into
    ``run_dir/metrics.json``."""
    from ...metrics import aggregate_seeds, merge_rows, paired_difference_rows
    from ...student.ingredients import KEY_DIFFERENCES
    from ...student.evaluate import teacher_rows
    from .student_runs import run_variant

    run = Path(run_dir)
    teacher, world = prepare(cfg, run, teacher=teacher, **prepare_kw)
    base, loaded = load_alignment(world, run)
    plan, skipped = plan_rows(cfg, run, world)
    wanted = {r.model for r in cfg.row_list()}
    rows: list = []
    if "teacher" in wanted:
        rows += teacher_rows(teacher, cfg.world_dir, cfg.seed_list)
    if "student-zs" in wanted:
        if world.backbone is not None:
            rows += teacher_rows(world.backbone, cfg.world_dir, cfg.seed_list, model="student-zs")
        else:
            skipped["student-zs"] = "no student_backbone: the students are the from-scratch CNN (edge student)"
    timings: dict[str, float] = {}
    source: dict[str, str] = {}
    shape = tuple(world.train.x.shape[1:]) if cfg.student_backbone else None  # (T, Din) cached tokens
    pooled_dim = int(world.train.xp.shape[1]) if world.train.xp is not None else 0
    jobs = []
    for s in cfg.seed_list:
        for r, w in plan:
            sc = student_config(cfg, r.variant, s, base, feature_shape=shape, pooled_dim=pooled_dim)
            if sc.uses["glimpse"]:
                key = sc.nmpa_config().fingerprint()
                source[f"{sc.model_name}-seed{s}"] = ("stage alignment" if key in loaded and w is world
                                                      else f"trained here ({w.rationale_source} rationales)"
                                                      if w is not world
                                                      else "trained here (not in stage alignment's output)")
            jobs.append((w, sc))
    workers = min(cfg.workers, len(jobs))
    if workers > 1 and any(sc.device != "cpu" for _, sc in jobs):
        workers = 1  # one GPU process (or DDP under torchrun); forked workers are a CPU measure
    if workers > 1:
        from ...machine import FORKED_THREADS
        done = train_side_by_side(jobs, run, cfg.resume, workers, FORKED_THREADS, progress=progress)
    else:
        done = [(got, res.info["train_s"]) for got, res in
                (run_variant(w, sc, run, resume=cfg.resume, progress=progress) for w, sc in jobs)]
    for (w, sc), (got, train_s) in zip(jobs, done):
        rows += got
        timings[f"{sc.model_name}-seed{sc.seed}"] = round(train_s, 1)
    merge_rows(run / "metrics.json", rows)
    gsr = [r for r in rows if r.task == "gsr"]
    merge_rows(run / "metrics.json", aggregate_seeds(gsr))
    study = paired_difference_rows(gsr, [p for p in KEY_DIFFERENCES if {*p} <= {r.model for r in gsr}],
                                   n_boot=cfg.study_bootstrap)
    merge_rows(run / "metrics.json", study)
    return Outputs(rows, timings, skipped, source, world, study)


_JOBS: list = []  # (world, StudentConfig) of train_side_by_side, inherited by the forked workers


def _train_job(i: int, run: str, resume: bool, threads: int, progress: bool = False) -> tuple[list, float]:
    import torch

    from .student_runs import run_variant
    torch.set_num_threads(threads)
    w, sc = _JOBS[i]
    got, res = run_variant(w, dataclasses.replace(sc, threads=threads), run, resume=resume, progress=progress)
    return got, float(res.info["train_s"])


def job_cost(world: Any, sc: Any) -> float:
    """A student's relative cost for scheduling: 1 per labelled batch, plus the unlabeled batches it adds, plus about
    one student's worth for an NMPA it trains itself (rationales other than the run's, which stage alignment
    trained)."""
    cost = 1.0 + (float(sc.unlabeled_ratio) if sc.uses.get("unlabeled") else 0.0)
    if sc.uses.get("glimpse") and getattr(world, "rationale_source", "run") not in ("run", ""):
        cost += 1.0
    return cost


def train_side_by_side(jobs: list, run: Path, resume: bool, workers: int, threads: int,
                       progress: bool = False) -> list[tuple[list, float]]:
    """``run_variant`` of every (world, config) job in ``workers`` forked processes of ``threads`` torch threads;
    results in job order. Every job writes only its own files (checkpoint, predictions, curve), so a failed job
    leaves the others' work on disk; its error is raised naming the student. ``progress``: each student's (and its
    own NMPA's) progress lines, per epoch with an ETA, from its worker (``mipd_kit.progress``)."""
    from ...machine import fork_map

    global _JOBS
    _JOBS = list(jobs)
    try:
        # longest first, so that no long job runs alone at the end (a job's result does not depend on the order)
        return fork_map(_train_job, [(i, str(run), resume, threads, progress) for i in range(len(jobs))], workers,
                        name=lambda i: f"distillation: student {jobs[i][1].model_name}-seed{jobs[i][1].seed}",
                        order=sorted(range(len(jobs)), key=lambda i: -job_cost(*jobs[i])))
    finally:
        _JOBS = []


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the stage from the command line (the notebook adds the tables and figures)."""
    return stage_main(sys.modules[__name__], argv, run_dir_help="run folder (rationales.jsonl, nmpa/, predictions/, ...)",
                      set_example="rows=[baseline,mipd]",
                      summary=lambda r: {"timings": r.timings, "skipped": r.skipped, "nmpa": r.nmpa_source})


if __name__ == "__main__":
    raise SystemExit(main())
