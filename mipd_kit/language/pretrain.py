"""``mipd pretrain``: train the embedded teacher and captioner once and release them as fp16 safetensors.

The released weights are this toolkit's "pretrained weights" (as ``pretrained="openai"`` is for open_clip; see
``mipd_kit.weights``): the embedded teacher (CLIP-style with a locked MiniLM text tower, ``mipd_kit.teachers.embedded``)
and then the embedded captioner (a BLIP-style decoder on the teacher's tokens, ``mipd_kit.language.captioner``), both
trained on the world's pretraining caption corpus only. The teacher is trained (or loaded from the cache with the
same training key), rounded to fp16 -- the release is exactly that rounded teacher --, evaluated zero-shot on the dev
split, and the captioner is trained on the rounded teacher, so that its recorded teacher fingerprint is the one a
user loads. Each release is written atomically into the weights folder with its manifest entry (files, sha256,
bytes, dtype, the exact command, the corpus fingerprints, the training config and key, the training wall time and
threads, the machine, and the teacher's zero-shot numbers).

The released files are a function of the world, the config and the thread count (for a given machine and software
stack): nothing time- or path-dependent goes into them (the manifest holds those facts).

``main(argv)``: ``mipd pretrain [--size smoke|default] [--world DIR] [--cache DIR] [--out DIR] [--threads N]
[--what teacher,captioner,student]``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

#: keys of a training record that depend on the run (time, place), kept out of the released files
VOLATILE_KEYS: tuple[str, ...] = ("wall_time_s", "image_load_s", "history", "teacher_checkpoint")
WHAT: tuple[str, ...] = ("teacher", "captioner", "student")
SIZES: tuple[str, ...] = ("smoke", "default")


@dataclass
class PretrainConfig:
    """What ``mipd pretrain`` trains and where it writes.

    Attributes:
        size: ``smoke`` (seconds; tests) or ``default`` (the released default): the SynthSitu world size and the
            teacher / captioner configs (``EmbeddedTeacherConfig.smoke()`` / ``()``, ``CaptionerConfig.smoke()`` /
            ``()``).
        world_dir: the SynthSitu world (generated with seed 0 when it has no ``meta.json``); default
            ``data/synthsitu/<size>-seed0``.
        cache_dir: where the trained checkpoints are cached (fp32; a second pretrain with the same training key
            loads them).
        out: the weights folder to release into (default: the package's ``mipd_kit/weights``).
        threads: torch threads while training (0 = torch's default); recorded, as results depend on it.
        what: which models to release (``teacher``, ``captioner``, ``student`` = the weaker frozen student backbone
            ``EmbeddedTeacherConfig.student()`` / ``student_smoke()``, released as ``embedded-teacher-student``); the
            captioner always reads the (rounded) teacher.
        eval_split: the GSR split of the teacher's zero-shot numbers in the manifest.
    """

    size: str = "default"
    world_dir: Optional[str] = None
    cache_dir: str = "data/cache"
    out: Optional[str] = None
    threads: int = 0
    what: tuple[str, ...] = WHAT
    eval_split: str = "dev"

    @classmethod
    def smoke(cls) -> "PretrainConfig":
        """The smoke world and configs (seconds)."""
        return cls(size="smoke")

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ValueError(f"pretrain: size {self.size!r} is not one of {SIZES}")
        bad = [w for w in self.what if w not in WHAT]
        if bad or not self.what:
            raise ValueError(f"pretrain: what {list(self.what)!r} must be a non-empty subset of {WHAT}")
        if self.threads < 0:
            raise ValueError(f"pretrain: threads must be >= 0, got {self.threads}")

    def world(self) -> Path:
        return Path(self.world_dir or f"data/synthsitu/{self.size}-seed0")


def _strip(info: dict) -> dict:
    return {k: v for k, v in info.items() if k not in VOLATILE_KEYS}


def _ensure_world(world: Path, size: str) -> bool:
    """Generate the world (seed 0) only when it has no ``meta.json``; an existing world is never regenerated."""
    if (world / "meta.json").exists():
        return False
    from mipd_kit.data.synthsitu.generate import SynthConfig, ensure_world
    ensure_world(SynthConfig.smoke(0) if size == "smoke" else SynthConfig.default(0), world, verbose=False)
    return True


def _zero_shot(teacher, world: Path, split: str) -> list[dict]:
    from mipd_kit.teachers.zero_shot import zero_shot_verbs
    _, rows = zero_shot_verbs(teacher, world, split)
    return [{"split": r.split, "setting": r.setting, "mean": r.mean, "value": round(float(r.value), 2)}
            for r in rows]


def pretrain(cfg: PretrainConfig, command: str = "", progress: bool = False) -> dict[str, Any]:
    """Train (or load from the cache) the embedded teacher, then the captioner, and release them.

    Returns:
        ``{"seconds": {...}, "releases": {name: manifest entry}, "world_generated": bool}``.
    """
    import torch

    from mipd_kit.language.captioner import CaptionerConfig, load_or_train_captioner, save_captioner
    from mipd_kit.language.captioner import data_fingerprint as corpus_fingerprint
    from mipd_kit.fileio import read_json
    from mipd_kit.machine import machine_facts
    from mipd_kit.teachers import embedded as E
    from mipd_kit.teachers.text import minilm_version
    from mipd_kit.weights import get_release, release_name, weights_dir, write_release

    t_all = time.time()
    world = cfg.world()
    seconds: dict[str, float] = {}
    t0 = time.time()
    generated = _ensure_world(world, cfg.size)
    seconds["world"] = time.time() - t0
    machine = machine_facts()
    tcfg = E.EmbeddedTeacherConfig.smoke() if cfg.size == "smoke" else E.EmbeddedTeacherConfig()
    tcfg.threads = cfg.threads
    ccfg = CaptionerConfig.smoke() if cfg.size == "smoke" else CaptionerConfig()
    ccfg.threads = cfg.threads
    out = weights_dir(cfg.out)
    old_threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    releases: dict[str, dict] = {}
    try:
        teacher = trained = None
        if {"teacher", "captioner"} & set(cfg.what):  # the student backbone alone needs no teacher
            t0 = time.time()
            teacher = E.load_or_train(world, cfg.cache_dir, tcfg, progress=progress)
            seconds["teacher"] = time.time() - t0
            trained = read_json(Path(teacher.checkpoint_dir) / "config.json")  # as saved when it was trained
            E.fp16_round(teacher)  # the released teacher, exactly
        common = {"dtype": "fp16", "size": cfg.size, "command": command, "world": world.name,
                  "data_fingerprint": tcfg.data_fingerprint(world),
                  "corpus_fingerprint": corpus_fingerprint(world), "machine": machine}
        with tempfile.TemporaryDirectory(prefix="mipd-pretrain-") as tmp:
            def release_teacher(model, mcfg, trained_record: dict, size_name: str, sub: str, role: str) -> None:
                t0 = time.time()
                zs = _zero_shot(model, world, cfg.eval_split)
                seconds[f"{sub}_eval"] = time.time() - t0
                name = release_name("teacher", size_name)
                E.save_teacher(model, Path(tmp) / sub, _strip(dict(model.info)), dtype="fp16")
                entry = {"kind": "teacher", "role": role, **common, "size": size_name,
                         "data_fingerprint": mcfg.data_fingerprint(world),
                         "config": _strip(trained_record.get("config", {})),
                         "training_key": mcfg.training_key(), "minilm": minilm_version(),
                         "fingerprint": model.fingerprint,
                         "training": {"wall_time_s": trained_record.get("wall_time_s"),
                                      "steps": trained_record.get("steps"),
                                      "threads": trained_record.get("config", {}).get("threads"),
                                      "trained_by_this_command": not model.loaded_from_cache,
                                      "epoch_loss": trained_record.get("epoch_loss")},
                         "zero_shot": {"split": cfg.eval_split, "rows": zs}}
                write_release(name, Path(tmp) / sub, entry, out)
                releases[name] = get_release(name, out)

            if "teacher" in cfg.what:
                release_teacher(teacher, tcfg, trained, cfg.size, "teacher", "teacher")
            if "captioner" in cfg.what:
                t0 = time.time()
                cap = load_or_train_captioner(world, cfg.cache_dir, teacher, ccfg, progress=progress)
                seconds["captioner"] = time.time() - t0
                info = dict(cap.info)
                cap.info = _strip(info)
                name = release_name("captioner", cfg.size)
                save_captioner(cap, Path(tmp) / "captioner",
                               {"teacher_checkpoint": None, "teacher_release": release_name("teacher", cfg.size)},
                               dtype="fp16")
                entry = {"kind": "captioner", **common, "config": asdict(ccfg) | {"threads": info.get("threads")},
                         "training_key": ccfg.training_key(), "teacher_fingerprint": teacher.fingerprint,
                         "teacher_release": release_name("teacher", cfg.size),
                         "training": {"wall_time_s": info.get("wall_time_s"), "steps": info.get("steps"),
                                      "threads": info.get("threads"),
                                      "trained_by_this_command": not getattr(cap, "loaded_from_cache", False),
                                      "epoch_loss": info.get("epoch_loss"), "heldout_loss": info.get("heldout_loss")}}
                write_release(name, Path(tmp) / "captioner", entry, out)
                releases[name] = get_release(name, out)
            if "student" in cfg.what:
                # the weaker frozen image-text backbone of the paper's student (EmbeddedTeacherConfig.student())
                scfg = E.EmbeddedTeacherConfig.student_smoke() if cfg.size == "smoke" else E.EmbeddedTeacherConfig.student()
                scfg.threads = cfg.threads
                t0 = time.time()
                student = E.load_or_train(world, cfg.cache_dir, scfg, progress=progress)
                seconds["student"] = time.time() - t0
                s_trained = read_json(Path(student.checkpoint_dir) / "config.json")
                E.fp16_round(student)
                release_teacher(student, scfg, s_trained, "student-smoke" if cfg.size == "smoke" else "student",
                                "student", "student backbone")
    finally:
        torch.set_num_threads(old_threads)
    seconds["total"] = time.time() - t_all
    return {"seconds": seconds, "releases": releases, "world_generated": generated, "out": str(out)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``mipd pretrain [--size smoke|default] [--world DIR] [--cache DIR] [--out DIR] [--threads N]
    [--what teacher,captioner,student]``."""
    from mipd_kit.fileio import DataError
    args = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="mipd pretrain", description="train and release the embedded teacher and "
                                 "captioner (fp16 safetensors + manifest.json)")
    ap.add_argument("--size", choices=SIZES, default="default")
    ap.add_argument("--world", default=None, help="SynthSitu world (default data/synthsitu/<size>-seed0; generated "
                    "when it has no meta.json)")
    ap.add_argument("--cache", default="data/cache", help="checkpoint cache (a same-key teacher/captioner is loaded)")
    ap.add_argument("--out", default=None, help="weights folder (default: the package's mipd_kit/weights)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default); recorded")
    ap.add_argument("--what", default=",".join(WHAT), help="comma-separated subset of teacher,captioner,student")
    ap.add_argument("--progress", action="store_true", help="training progress bars")
    a = ap.parse_args(args)
    try:
        cfg = PretrainConfig(size=a.size, world_dir=a.world, cache_dir=a.cache, out=a.out, threads=a.threads,
                             what=tuple(w.strip() for w in a.what.split(",") if w.strip()))
    except ValueError as e:
        print(f"mipd {e}", file=sys.stderr)  # the message starts with "pretrain:"
        return 2
    try:
        res = pretrain(cfg, command=shlex.join(["mipd", "pretrain", *args]), progress=a.progress)
    except DataError as e:
        print(f"mipd pretrain: {e}", file=sys.stderr)
        return 2
    for name, e in res["releases"].items():
        size = sum(f["bytes"] for f in e["files"].values())
        tr = e["training"]
        print(f"{name}: {'trained' if tr['trained_by_this_command'] else 'loaded from the cache'} "
              f"(training wall {tr['wall_time_s'] or float('nan'):.1f}s, threads {tr['threads']})"
              + f", {size} bytes")
        for r in e.get("zero_shot", {}).get("rows", []):
            if r["mean"] == "image" and r["setting"] == "top1":
                print(f"  zero-shot {e['zero_shot']['split']} {r['split']:<22} top1 {r['value']:6.2f}")
    print("time: " + ", ".join(f"{k} {v:.1f}s" for k, v in res["seconds"].items()) + f" -> {res['out']}")
    print(json.dumps({"seconds": {k: round(v, 2) for k, v in res["seconds"].items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
