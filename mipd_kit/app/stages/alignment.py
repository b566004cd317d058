"""Stage ``alignment`` (notebook ``04_alignment.ipynb``): train NMPA (MIPD's negative-guided multimodal prompting
alignment, ``mipd_kit.align.nmpa``) once per distinct config the students need, and write the weights.

The students of stage ``distillation`` need one NMPA per student seed and per ingredient set (``glimpse``: scene
prompts only, no negatives; ``gaze``: + instance prompts; ``neg`` / ``full`` / ``unlabeled``: + negative guidance).
This stage trains each distinct config once from its own NMPA settings (``scene_prompt``, ``neg_kind``, ``w_neg``,
epochs, batch size) and writes::

    run_dir/nmpa/<config fingerprint>.safetensors   the weights
    run_dir/nmpa/index.json                         {"base": NMPA settings, "models": {fingerprint: config, ...}}

Stage ``distillation`` takes its NMPA settings from ``index.json`` and loads these weights instead of training
NMPA again (standalone, without this stage's output, it trains them itself and says so).

``python -m mipd_kit.app.stages.alignment --world DIR --run-dir DIR [--smoke] [--seeds 0,1,2]`` runs it without the
notebook.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from ...checks import check_config
from ...fileio import atomic_write_text
from . import stage_main


#: the folder of the run where the NMPA weights go.
NMPA_DIR = "nmpa"
INDEX = "index.json"


@dataclass
class Config:
    """Stage ``alignment`` (the notebook's parameters are these fields).

    Attributes:
        world_dir / cache_dir: the run's world and caches.
        seed: labels the report rows and picks the NMPA shown in the figures (when in ``seeds``).
        teacher_config: the run's ``teacher:`` block (TeacherConfig fields); ``mipd run`` injects it.
        rationales: rationales.jsonl path; empty means run_dir/rationales.jsonl.
        scene_prompt: NMPA scene prompt: border (authors) | full | none.
        neg_kind: negative-guided form: authors | margin | infonce.
        w_neg: weight of the negative-guided term (0 disables it).
        nmpa_epochs: NMPA training epochs (smoke: 2; default run: 3).
        nmpa_batch_size: NMPA batch size (smoke: 16; default run: 64).
        seeds: student seeds NMPA is trained for (stage distillation's seeds).
        variants: student variants NMPA is trained for (stage distillation's variants).
        n_attention: images shown in the attention-map figure.
        workers: NMPAs trained side by side in processes forked after the world is prepared, of one torch thread
            each (a forked process cannot run more: ``mipd_kit.machine.fork_map``; on N cores use N); CPU only. An
            NMPA's weights are those of its own thread count: repeatable for a given count; another count changes
            the float summation order as another seed would.
    """

    world_dir: str = "data/synthsitu/default-seed0"
    cache_dir: str = "data/cache"
    seed: int = 0
    teacher_config: dict = field(default_factory=dict)
    rationales: str = ""
    scene_prompt: str = "border"
    neg_kind: str = "authors"
    w_neg: float = 5.0
    nmpa_epochs: int = 8
    nmpa_batch_size: int = 64
    seeds: list = field(default_factory=lambda: [0])
    variants: list = field(default_factory=lambda: ["glimpse", "gaze", "neg", "full", "unlabeled"])
    n_attention: int = 4
    workers: int = 1

    @classmethod
    def smoke(cls) -> "Config":
        """Seconds: NMPAConfig.smoke()'s schedule (2 epochs, batch 16), the smoke world and teacher."""
        from .teacher import SMOKE_TEACHER
        return cls(world_dir="data/synthsitu/smoke-seed0", teacher_config=dict(SMOKE_TEACHER), nmpa_epochs=2,
                   nmpa_batch_size=16)

    def __post_init__(self) -> None:
        check_config(self, "alignment")  # types and ranges of every field (mipd_kit.checks)
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"alignment: workers must be a positive integer, got {self.workers!r}")
        if self.nmpa_epochs < 1 or self.nmpa_batch_size < 1:
            raise ValueError(f"nmpa_epochs and nmpa_batch_size must be >= 1, got {self.nmpa_epochs}, "
                             f"{self.nmpa_batch_size}")

    def nmpa_base(self) -> Any:
        """The NMPA settings of this stage (``seed``, ``w_neg`` and ``use_instances`` are set per student)."""
        from ...align.nmpa import NMPAConfig
        return dataclasses.replace(NMPAConfig(), scene_prompt=self.scene_prompt, neg_kind=self.neg_kind,
                                   w_neg=self.w_neg, epochs=self.nmpa_epochs, batch_size=self.nmpa_batch_size)

    def nmpa_configs(self) -> dict[str, Any]:
        """Fingerprint -> NMPA config, one per distinct config the students of ``seeds`` x ``variants`` train."""
        from ...student.config import StudentConfig
        out: dict[str, Any] = {}
        for s in self.seeds:
            for v in self.variants:
                sc = StudentConfig(variant=v, seed=int(s), nmpa=self.nmpa_base())
                if sc.uses["glimpse"]:
                    n = sc.nmpa_config()
                    out.setdefault(n.fingerprint(), n)
        return out


@dataclass
class Outputs:
    """What :func:`run` returns: the NMPA shown in the figures (None without rationales), its loss history, the
    alignment report before / after, the metric rows, the prepared world and the written index."""

    model: Any
    history: list
    before: dict
    after: Optional[dict]
    rows: list
    world: Any
    index: dict


def read_index(run_dir: str | os.PathLike) -> Optional[dict]:
    """``run_dir/nmpa/index.json`` or None when this stage has not written it."""
    p = Path(run_dir) / NMPA_DIR / INDEX
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not valid JSON ({e}); run stage alignment again") from e


_NMPA_JOBS: dict[str, Any] = {}  # run's prepared alignment data and NMPA jobs, inherited by forked workers


def _train_one(i: int, threads: int, progress: bool, keep_model: bool) -> tuple[dict[str, Any], Any]:
    """Train NMPA job ``i`` of ``_NMPA_JOBS``, write its weights, then its done mark; returns its index entry and,
    with ``keep_model`` (in this process), the model (a worker returns None: the parent loads the weights)."""
    import torch

    from ...align.nmpa import save_nmpa, train_nmpa
    from ...machine import resolve_device

    st = _NMPA_JOBS
    if threads:
        torch.set_num_threads(threads)
    key, ncfg, entry = st["jobs"][i]
    entry = dict(entry)
    t0 = time.time()
    model, hist = train_nmpa(st["align"], ncfg, progress=progress, device=resolve_device(st["device"]), amp=st["amp"])
    save_nmpa(model, st["out_dir"] / entry["file"])
    entry.update(seconds=round(time.time() - t0, 3), history=hist)
    atomic_write_text(st["out_dir"] / f"{key}.json", json.dumps(entry) + "\n")  # after the weights: a done mark
    return entry, (model if keep_model else None)


def run(cfg: Config, run_dir: str | os.PathLike, progress: bool = False, **prepare_kw: Any) -> Outputs:
    """Train every NMPA config of :meth:`Config.nmpa_configs` once, write the weights and the index, report
    alignment before / after on the NMPA of the run seed's ``full`` student. ``prepare_kw`` goes to
    ``prepare_world`` (tests: ``embed_texts``)."""
    import torch

    from ...align.nmpa import alignment_report
    from ...metrics import merge_rows, row
    from ...machine import resolve_device
    from ...student.config import StudentConfig
    from ...student.data import prepare_world
    from .teacher import build, run_device

    torch.manual_seed(cfg.seed)
    run = Path(run_dir)
    rationales_path = cfg.rationales or str(run / "rationales.jsonl")
    teacher = build(cfg.teacher_config, cfg.world_dir, cfg.cache_dir)
    world = prepare_world(cfg.world_dir, cfg.cache_dir, teacher, image_size=32, rationales_path=rationales_path,
                          with_unlabeled=False, **prepare_kw)
    out_dir = run / NMPA_DIR
    index: dict[str, Any] = {"base": dataclasses.asdict(cfg.nmpa_base()), "models": {},
                             "rationales": rationales_path}
    trained: dict[str, tuple[Any, list]] = {}
    device, amp = run_device(cfg.teacher_config)
    if world.align.coverage()["images_with_glimpse"] > 0:
        from ...align.nmpa import load_nmpa
        from ...weights import file_sha256

        source = file_sha256(rationales_path) if Path(rationales_path).is_file() else ""
        todo = []
        for key, ncfg in cfg.nmpa_configs().items():
            entry = {"file": f"{key}.safetensors", "config": dataclasses.asdict(ncfg), "rationales_sha256": source}
            done = _finished(out_dir, key, entry)
            if done is not None:  # a killed stage resumes: same config, same rationales, weights on disk
                model = load_nmpa(out_dir / entry["file"], ncfg, world.align)
                index["models"][key] = done
                trained[key] = (model, done["history"])
                print(f"NMPA {key}: finished by an earlier pass of this stage ({done['seconds']:.0f}s), loaded")
            else:
                todo.append((key, ncfg, entry))
        workers = min(cfg.workers, len(todo)) if resolve_device(device).type == "cpu" else 1
        global _NMPA_JOBS
        _NMPA_JOBS = {"align": world.align, "out_dir": out_dir, "device": device, "amp": amp, "jobs": todo}
        try:
            if workers > 1:
                # the NMPAs done before a failure keep their weights and done marks
                from ...machine import FORKED_THREADS, fork_map
                jobs = [(i, FORKED_THREADS, progress, False) for i in range(len(todo))]  # lines from the workers
                entries = [e for e, _ in fork_map(_train_one, jobs, workers,
                                                  name=lambda i: f"alignment: NMPA {todo[i][0]}")]
                models = [load_nmpa(out_dir / e["file"], ncfg, world.align) for (_, ncfg, _), e in zip(todo, entries)]
            else:
                done_here = [_train_one(i, 0, progress, True) for i in range(len(todo))]
                entries, models = [e for e, _ in done_here], [m for _, m in done_here]
        finally:
            _NMPA_JOBS = {}
        for (key, _, _), entry, model in zip(todo, entries, models):
            index["models"][key] = entry
            trained[key] = (model, entry["history"])
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / INDEX, json.dumps(index, indent=1) + "\n")

    shown_seed = cfg.seed if cfg.seed in [int(s) for s in cfg.seeds] else int(cfg.seeds[0])
    shown = StudentConfig(variant="full", seed=shown_seed, nmpa=cfg.nmpa_base()).nmpa_config().fingerprint()
    model, history = trained.get(shown, (None, []))
    before = alignment_report(None, world.align)
    after = alignment_report(model, world.align) if model is not None else None
    rows = [row("nmpa", "teacher-raw", "train", "scene", k, v, seed=cfg.seed) for k, v in before.items()
            if k != "n" and v == v]
    if after is not None:
        rows += [row("nmpa", f"nmpa-{cfg.scene_prompt}-{cfg.neg_kind}", "train", "scene", k, v, seed=cfg.seed)
                 for k, v in after.items() if k != "n" and v == v]
    merge_rows(run / "metrics.json", rows)
    return Outputs(model, history, before, after, rows, world, index)


def _finished(out_dir: Path, key: str, entry: dict) -> Optional[dict]:
    """The record of an NMPA an earlier pass of the stage finished (``nmpa/<key>.json``, written after its weights)
    when it was trained with the same config on the same rationales file, else None."""
    mark = out_dir / f"{key}.json"
    if not (mark.is_file() and (out_dir / entry["file"]).is_file()):
        return None
    try:
        done = json.loads(mark.read_text())
    except ValueError:
        return None
    same = all(done.get(k) == entry[k] for k in ("file", "config", "rationales_sha256"))
    return done if same and "history" in done and "seconds" in done else None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the stage from the command line (the notebook adds the figures)."""
    return stage_main(sys.modules[__name__], argv, run_dir_help="run folder (rationales.jsonl, nmpa/, metrics.json)", set_example="seeds=[0,1,2]",
                      summary=lambda r: {"nmpa": sorted(r.index["models"]), "before": r.before, "after": r.after})


if __name__ == "__main__":
    raise SystemExit(main())
