"""Stage ``rationales`` (notebook ``02_rationales.ipynb``): JRG rationale generation and judging
(``mipd_kit.rationales.jrg``), resumable; reads the teacher stage's ``teacher_evidence.json``.

The default generator is the embedded captioner (``backend="captioner"``): it looks at the image (sent in the
messages) and writes free text; the judge is the embedded, answer-free judge. The captioner is obtained by
:func:`captioner_for_run` only (the released captioner when it matches, else trained once on the world's
pretraining captions with the run's teacher, then loaded from ``cache_dir``). It also describes the unlabeled pool (``"unjudged"`` records, ``unlabeled=True``).
Controls: ``backend="template"`` (the embedded template generator; ``embedded`` names the same) and
``backend="shuffled"`` (a captioner run into ``run_dir/jrg_source/``, whose positives are then shuffled among
images of the same verb into ``run_dir/rationales.jsonl``, see ``mipd_kit.rationales.controls``).

``python -m mipd_kit.app.stages.rationales --world DIR --run-dir DIR [--smoke] [--set KEY=VALUE ...]`` runs it without
the notebook; ``mipd rationales`` remains the library's CLI.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional, Sequence

from ...checks import check_config
from ...language.factory import BACKENDS as SAMPLER_BACKENDS
from . import stage_main

#: generator backends: every language backend, and the controls template (the embedded template generator, also
#: called embedded) and shuffled (a captioner run whose positives are shuffled)
BACKENDS: tuple[str, ...] = tuple(dict.fromkeys(("captioner", "template", "embedded", "shuffled", *SAMPLER_BACKENDS)))
#: generator backends that need the captioner (and so the run's teacher)
CAPTIONER_BACKENDS = ("captioner", "shuffled")
#: control rationale sets the stage can write beside its store (``rationales-<control>.jsonl``)
CONTROLS: tuple[str, ...] = ("template", "shuffled", "oracle", "oracle-shuffled")
#: flat sampler keys that the ``generator:`` / ``judge:`` blocks hold (for the error naming where each one goes)
MOVED_PARAMS: dict[str, str] = {
    "base_url": "generator: {openai: {base_url: ...}} (the judge block takes what it leaves out from the generator's)",
    "model": "generator: {openai: {model: ...}}", "api_key_env": "generator: {openai: {api_key_env: ...}}",
    "concurrency": "generator: {openai: {concurrency: ...}}", "hf_model": "generator: {hf: {model: ...}}",
    "temperature": "generator: {captioner: {temperature: ...}}", "top_p": "generator: {captioner: {top_p: ...}}",
}


@dataclass
class Config:
    """Stage ``rationales`` (the notebook's parameters are these fields).

    Attributes:
        world_dir / cache_dir: the run's world and caches.
        seed: seeds the samplers, the toy world and the sample table.
        teacher_config: the run's ``teacher:`` block (TeacherConfig fields); ``mipd run`` injects it (the captioner
            reads this teacher's patch tokens).
        jrg_smoke: True: JRGConfig.smoke() with 8 images and 2 rounds, and CaptionerConfig.smoke(); False: every
            training image, 3 rounds, CaptionerConfig().
        backend: generator backend: captioner (the embedded captioner, looks at the image), template (the
            embedded template generator; embedded names the same), shuffled (control: captioner positives of
            another image of the same verb), openai (OpenAI-compatible HTTP) or hf (local transformers).
        judge_backend: judge backend; empty: the embedded judge for captioner / template / shuffled, else backend.
        generator: the generator's sampler settings, ``SamplerConfig`` fields without ``backend`` / ``purpose``:
            ``{openai: {base_url, model, api_key_env, concurrency, ...}, hf: {model, ...}, captioner: {temperature,
            top_p, ...}, seed, ...}``; keys left out keep the library's defaults (``seed``: the stage's).
        judge: the judge's sampler settings, as ``generator``; what its ``openai`` / ``hf`` blocks leave out is
            taken from the generator's (one endpoint serves both unless the judge names another).
        unlabeled: the captioner also describes the unlabeled pool (records with polarity "unjudged").
        max_unlabeled: unlabeled images to describe; None: 16 for jrg_smoke, else all; 0 means all.
        rounds: refinement rounds; None keeps the JRGConfig's.
        max_images: training images to process; None keeps the JRGConfig's, 0 means all.
        workers: rationale chains in parallel; None keeps the JRGConfig's (raised to ``captioner_batch`` for the
            captioner backends, so that a batch can fill).
        captioner_batch: captioner backends: requests of parallel chains decoded together, up to this many
            (the generator's ``captioner.batch_size``; 1 = one at a time; 64 decodes 146 rationales/s on the default world on 2
            cores against 137 with 32 -- the same texts: a row's draws depend on its seed only).
        controls: control rationale sets written beside the main store for the distillation stage's control rows
            (``mipd-template``, ``mipd-shuffled``): ``template`` runs the template generator on the same images into
            ``run_dir/jrg_template/`` and copies its store to ``run_dir/rationales-template.jsonl``; ``shuffled``
            writes the main store's positives shuffled among images of the same verb
            (``rationales.controls.shuffle_positives``) to ``run_dir/rationales-shuffled.jsonl``; ``oracle``
            writes rationales from the world's ground truth (``rationales.oracle``, SynthSitu worlds only: the
            positive control ``mipd-oracle``), for the training images and the unlabeled pool's
            (``mipd-oracle-unlabeled``), to ``run_dir/rationales-oracle.jsonl``; ``oracle-shuffled`` those
            positives shuffled among images of the same verb (``mipd-oracle-shuffled``).
        send_images: attach the image to every prompt (vision chat models).
        imsitu_templates: imSitu generation_templates.tab for frame sentences (real mode); empty: frame abstracts.
        toy_if_missing: write the tiny 3-verb toy world/evidence when world_dir or teacher evidence is absent.
        n_samples: rationales shown per kind x polarity.
    """

    world_dir: str = "data/synthsitu/default-seed0"
    cache_dir: str = "data/cache"
    seed: int = 0
    teacher_config: dict = field(default_factory=dict)
    jrg_smoke: bool = False
    backend: str = "captioner"
    judge_backend: str = ""
    generator: dict = field(default_factory=dict)
    judge: dict = field(default_factory=dict)
    unlabeled: bool = True
    max_unlabeled: Optional[int] = None
    rounds: Optional[int] = None
    max_images: Optional[int] = None
    workers: Optional[int] = None
    captioner_batch: int = 64
    controls: list = field(default_factory=list)
    send_images: bool = False
    imsitu_templates: str = ""
    toy_if_missing: bool = True
    n_samples: int = 4

    #: dict fields whose nested values ``mipd_kit.checks`` checks by key (``api_key_env``, ``base_url``, ``top_p``...)
    CHECKED_BLOCKS: ClassVar[tuple[str, ...]] = ("generator", "judge")

    @classmethod
    def smoke(cls) -> "Config":
        """Seconds: JRGConfig.smoke() on the smoke world."""
        from .teacher import SMOKE_TEACHER
        return cls(world_dir="data/synthsitu/smoke-seed0", jrg_smoke=True, teacher_config=dict(SMOKE_TEACHER))

    def __post_init__(self) -> None:
        for k in ("rounds", "workers"):
            v = getattr(self, k)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(f"rationales: {k} must be a positive integer or null (the config's value), got "
                                 f"{v!r}; 0 no longer means 'keep the config value'")
        if "batch_size" in dict(self.generator.get("captioner") or {}):
            raise ValueError("rationales: generator.captioner.batch_size is set by captioner_batch")
        bad = [c for c in self.controls if c not in CONTROLS]
        if bad:
            raise ValueError(f"rationales: controls {bad} not among {CONTROLS}")
        if self.backend not in BACKENDS:
            raise ValueError(f"rationales: backend {self.backend!r} is not one of {BACKENDS}")
        if self.max_unlabeled is not None and self.max_unlabeled < 0:
            raise ValueError(f"rationales: max_unlabeled must be >= 0 (0 = all) or null, got {self.max_unlabeled!r}")
        if self.max_images is not None and self.max_images < 0:
            raise ValueError(f"rationales: max_images must be >= 0 (0 = all) or null (the config's value), got "
                             f"{self.max_images!r}")
        check_config(self, "rationales")  # types and ranges of every field (mipd_kit.checks)
        self.jrg_config()  # unknown keys of the generator / judge blocks (their values: CHECKED_BLOCKS)

    def jrg_config(self) -> Any:
        """The library's ``JRGConfig`` (through ``jrg_config.config_from_params``, whose 0 / -1 mean "keep"); the
        generator's ``captioner.batch_size`` is ``captioner_batch``."""
        from ...rationales import jrg_config

        generator = {**self.generator, "captioner": {**dict(self.generator.get("captioner") or {}),
                                                     "batch_size": max(1, self.captioner_batch)}}
        return jrg_config.config_from_params(
            smoke=self.jrg_smoke, backend=self.backend, judge_backend=self.judge_backend, generator=generator,
            judge=self.judge, rounds=self.rounds or 0, max_images=-1 if self.max_images is None else self.max_images,
            workers=self.workers or 0, send_images=self.send_images, imsitu_templates=self.imsitu_templates,
            seed=self.seed)


@dataclass
class Outputs:
    """What :func:`run` returns: the world used (the toy world when the real one or the evidence was missing), the
    library's config and the loop's statistics (also in ``run_dir/jrg_stats.json``)."""

    world: Path
    jrg: Any
    stats: dict


def captioner_for_run(world_dir: str | os.PathLike, cache_dir: str | os.PathLike, teacher: Any,
                      smoke: bool, weights: str = "auto") -> Any:
    """The run's captioner: the one place the stage obtains it -- the released captioner when one matches the config,
    the run's (released) teacher and the world's corpus, else trained on the world's pretraining captions with the
    run's teacher the first time and loaded from ``cache_dir/captioner/`` after that
    (``mipd_kit.language.captioner.captioner_for``; ``weights`` is the teacher block's ``auto|released|retrain``)."""
    from ...language.captioner import CaptionerConfig, captioner_for

    cfg = CaptionerConfig.smoke() if smoke else CaptionerConfig()
    return captioner_for(world_dir, cache_dir, teacher, cfg, weights=weights)


def run(cfg: Config, run_dir: str | os.PathLike) -> Outputs:
    """Run (or resume) the JRG loop into ``run_dir/rationales.jsonl`` (the shuffled control: see the module doc),
    then write the ``controls`` sets beside it."""
    out = _run_main(cfg, run_dir)
    for control in cfg.controls:
        write_control(cfg, Path(run_dir), out, control)
    return out


def write_control(cfg: Config, run_dir: Path, main: Outputs, control: str) -> Path:
    """``run_dir/rationales-<control>.jsonl`` for the distillation stage's control rows (see ``Config.controls``);
    rewritten atomically from the finished stores, so a re-run resumes the template run and rewrites the same file."""
    import shutil

    from ...fileio import atomic_write_text
    from ...rationales import jrg, jrg_inputs
    from ...rationales.controls import shuffle_positives
    from ...rationales.store import read_rationales

    dest = run_dir / f"rationales-{control}.jsonl"
    if control == "template":
        sub = run_dir / "jrg_template"
        sub.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(run_dir / "teacher_evidence.json", sub / "teacher_evidence.json")
        tcfg = dataclasses.replace(cfg, backend="template", controls=[], unlabeled=False, toy_if_missing=False)
        jrg.run_jrg(tcfg.jrg_config(), main.world, sub)
        atomic_write_text(dest, (sub / "rationales.jsonl").read_text())
    elif control == "shuffled":
        _, sits = jrg_inputs.load_world(main.world, main.jrg.split)
        backend = main.stats.get("run", {}).get("backend")
        if not backend:
            raise ValueError("rationales: the shuffled control needs a finished main run (no run backend in its stats)")
        recs = [r for r in read_rationales(run_dir / "rationales.jsonl") if r.backend == backend]
        lines = [json.dumps(r.to_json()) for r in shuffle_positives(recs, sits, seed=cfg.seed)]
        atomic_write_text(dest, "\n".join(lines) + "\n" if lines else "")
    elif control in ("oracle", "oracle-shuffled"):
        from ...rationales.oracle import oracle_rationales
        from ...data.swig import load_situations
        space, sits = jrg_inputs.load_world(main.world, main.jrg.split)
        pool_gt = Path(main.world) / "unlabeled_gt.json"  # the oracle also describes the unlabeled pool's images
        if pool_gt.is_file():
            sits = {**sits, **load_situations(pool_gt, space)}
        recs = oracle_rationales(main.world, sits, {v: space.roles(v) for v in space.verbs}, seed=cfg.seed)
        if control == "oracle-shuffled":
            recs = shuffle_positives(recs, sits, seed=cfg.seed)
        lines = [json.dumps(r.to_json()) for r in recs]
        atomic_write_text(dest, "\n".join(lines) + "\n" if lines else "")
    else:
        raise ValueError(f"unknown control {control!r}; choose one of {CONTROLS}")
    print(f"control rationales ({control}): {dest}")
    return dest


def _run_main(cfg: Config, run_dir: str | os.PathLike) -> Outputs:
    from ...rationales import jrg, unlabeled_pool

    run_dir, world = Path(run_dir), Path(cfg.world_dir)
    backend = cfg.backend
    if cfg.toy_if_missing and (not (world / "train.json").exists()
                               or not (run_dir / "teacher_evidence.json").exists()):
        from ...rationales.toy import write_toy_world
        world = run_dir / "jrg_toy_world"
        write_toy_world(world, run_dir, n_per_verb=3, seed=cfg.seed)
        print(f"world or teacher evidence missing: using the 3-verb toy world written to {world}")
        if backend in CAPTIONER_BACKENDS:
            backend = "template"
            print("the toy world has no pretraining captions for a captioner: using the template generator")
    jcfg = dataclasses.replace(cfg, backend=backend).jrg_config()
    if backend not in CAPTIONER_BACKENDS:
        return Outputs(world, jcfg, jrg.run_jrg(jcfg, world, run_dir))
    from ...language.factory import build_sampler
    from .teacher import build

    teacher = build(cfg.teacher_config, cfg.world_dir, cfg.cache_dir)
    captioner = captioner_for_run(cfg.world_dir, cfg.cache_dir, teacher, cfg.jrg_smoke,
                                  weights=str(cfg.teacher_config.get("weights", "auto")))
    generator = build_sampler(jcfg.generator, captioner=captioner, teacher=teacher)
    cap = jcfg.generator.captioner
    if cfg.workers is None and cfg.captioner_batch > jcfg.workers:
        jcfg = dataclasses.replace(jcfg, workers=cfg.captioner_batch)
    n_unl = cfg.max_unlabeled if cfg.max_unlabeled is not None else (16 if cfg.jrg_smoke else 0)
    unlabeled = None
    if cfg.unlabeled:
        unlabeled = lambda store: unlabeled_pool.describe_unlabeled(  # noqa: E731
            captioner, teacher, world, store, max_images=n_unl, temperature=cap.temperature, top_p=cap.top_p,
            seed=cap.seed)
    if backend == "captioner":
        return Outputs(world, jcfg, jrg.run_jrg(jcfg, world, run_dir, generator=generator, unlabeled=unlabeled))
    return Outputs(world, jcfg, _shuffled(cfg, jcfg, world, run_dir, generator, unlabeled))


def _shuffled(cfg: Config, jcfg: Any, world: Path, run_dir: Path, generator: Any, unlabeled: Any) -> dict:
    """The shuffled control: the captioner run into ``run_dir/jrg_source/``, then its positives shuffled among images
    of the same verb (``controls.shuffle_positives``) into ``run_dir/rationales.jsonl`` (unlabeled descriptions are
    copied as they are); ``jrg_stats.json`` / ``metrics.json`` describe the shuffled set (model ``jrg-shuffled``),
    with the source run's record under ``stats["source"]``."""
    import shutil

    from ...fileio import write_json
    from ...redaction import redact_obj
    from ...metrics import merge_rows
    from ...rationales import jrg, jrg_inputs, jrg_stats
    from ...rationales.content import content_statistics
    from ...rationales.controls import shuffle_positives, shuffled_backend
    from ...rationales.store import RationaleStore

    src = run_dir / "jrg_source"
    src.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run_dir / "teacher_evidence.json", src / "teacher_evidence.json")
    source = jrg.run_jrg(jcfg, world, src, generator=generator, unlabeled=unlabeled)
    _, sits = jrg_inputs.load_world(world, jcfg.split)
    src_store = RationaleStore(src / "rationales.jsonl")
    src_recs = src_store.records(source["run"]["backend"])
    unl = [r for r in src_store.records() if r.polarity == "unjudged"]
    src_store.close()
    store = RationaleStore(run_dir / "rationales.jsonl")
    for r in [*shuffle_positives(src_recs, sits, seed=cfg.seed), *unl]:
        store.append(r)
    backend = shuffled_backend(source["run"]["backend"], cfg.seed)
    records = store.records(backend)
    store.close()
    images = sorted({r.image for r in src_recs})
    stats = jrg_stats.jrg_statistics(records, rounds=jcfg.rounds, images=images)
    stats["content"] = content_statistics(records, {i: sits[i] for i in images if i in sits}, world)
    stats["content"]["unlabeled"] = len(unl)
    stats["unlabeled"] = source.get("unlabeled", {})
    stats["source"] = {k: source[k] for k in ("run", "content") if k in source}
    stats["run"] = {**source["run"], "backend": backend, "control": "shuffled",
                    "source_backend": source["run"]["backend"], "source_dir": str(src)}
    write_json(run_dir / "jrg_stats.json", redact_obj(stats))
    merge_rows(run_dir / "metrics.json", jrg_stats.stats_rows(stats, model="jrg-shuffled", seed=cfg.seed))
    return stats


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the stage from the command line (the notebook adds the samples and figures)."""
    return stage_main(sys.modules[__name__], argv, run_dir_help="run folder (teacher_evidence.json, rationales.jsonl)", set_example="rounds=2",
                      cache_dir=False, summary=lambda r: r.stats["run"])


if __name__ == "__main__":
    raise SystemExit(main())
