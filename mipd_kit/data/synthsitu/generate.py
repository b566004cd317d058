"""Generate a SynthSitu world: GSR splits (SWiG schema), HOI splits (HICO-DET instance format), an unlabeled pool
and a separate image-caption pretraining corpus, deterministically from a seed.

``mipd synth --out DIR --seed S --size smoke|quick|default|large [--overwrite] [--workers N]`` and
:func:`generate` (Python) write the folder described in docs/data-formats.md "The SynthSitu world folder".

Determinism: every image is rendered from its own generator seeded by ``(seed, split, index)``, so the files do not
depend on the number of worker processes; the same seed and config give byte-identical files on a given software
stack (numpy, Pillow and zlib versions), except ``generation.json``, which records how this copy was made (wall
times, worker count) and is not part of that promise. Atomicity: the world is built in a hidden temporary folder next
to the target (``.NAME.<pid>-<random>.tmp``), images first and ``meta.json`` last, and only the complete folder is
renamed into place; a folder without ``meta.json`` is an incomplete world. Concurrency: ``generate`` and
``ensure_world`` hold an exclusive lock (``.NAME.lock`` next to the world) while they build, so a second process
ensuring the same world waits and then reuses the complete one; temporary folders left by a killed process are
removed by the next generation.

``rendered.jsonl`` records, per image of every split, what was actually drawn (agent pose, relation, objects per role,
place, the verb's motion cue and whether a nuisance dropped it, a false cue, distractors, the occluded role): the
ground truth against which generated descriptions are measured. Like ``verbs`` in the captions it is for measurement
only, never a training input.

The generator stays one file (about 800 lines): the world's config (:class:`SynthConfig`, whose fields are the
world's fingerprint), the build that writes the folder and the readers of what it wrote (``read_meta``,
``read_rendered``, ``ensure_world``) change together, with ``GENERATOR_VERSION``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import numpy as np

from mipd_kit.data.records import DataError, FrameSpace, HOIImage, HOIVocab, NounDef, Situation, VerbDef
from mipd_kit.data.synthsitu import world as W
from mipd_kit.data.synthsitu.captions import hoi_caption, scene_caption
from mipd_kit.fileio import atomic_open, replace_dir
from mipd_kit.data.synthsitu.render import Nuisance, render_gsr, render_hoi
from mipd_kit.fileio import file_lock

GENERATOR_VERSION = "1.4"  # 1.3: rendered.jsonl (what each image shows); 1.4: verb definitions say what body and
#                            objects do (imsitu_space.json only)
#: generator versions whose changes left the pretraining corpus as it was, and the version whose corpus they share
#: (``corpus_meta_bytes`` hashes them as that one, so the teacher trained on the corpus stays the same teacher)
CORPUS_VERSION_OF: dict[str, str] = {"1.4": "1.3"}
#: the open-vocabulary protocols of ``SynthConfig.ov_protocol``
OV_PROTOCOLS = ("v1", "v2")
#: config fields that only a v2 world records (kept out of a v1 world's key and meta.json)
OV_META_KEY = "ov_protocol"
V2_FIELDS = ("ov_protocol", "dev_unseen_compositional", "dev_unseen_novel", "novel_distractor_p")
#: run-dependent facts of one generation (timings, workers): the only file outside the byte-identity promise
GENERATION_FILE = "generation.json"
SizeName = Literal["smoke", "quick", "default", "large"]
SIZES = ("smoke", "quick", "default", "large")
SPLIT_CODES = {"train": 1, "dev": 2, "test": 3, "unlabeled": 4, "hoi_train": 5, "hoi_test": 6, "pretrain": 7}
NO_BOX = [-1, -1, -1, -1]
#: files and folders a (possibly partial) world may contain; --overwrite refuses to delete anything else
WORLD_ENTRIES = {"meta.json", "imsitu_space.json", "train.json", "dev.json", "test.json", "unlabeled.json",
                 "unlabeled_gt.json", "ov_split.json", "hoi_train.json", "hoi_test.json", "hoi_zero_shot.json",
                 "hoi_prompts.json", "images", "pretrain", GENERATION_FILE, "rendered.jsonl"}
#: one line per image of every split: what was drawn (see ``render.scene_record``); for measurement only
RENDERED_FILE = "rendered.jsonl"


class SynthError(DataError):
    """Bad generation request (unknown size, unwritable or non-empty output folder)."""


@dataclass
class SynthConfig:
    """What to generate. Sizes: :meth:`smoke`, :meth:`default`, :meth:`large` (see :meth:`from_size`).

    Attributes:
        size: size name recorded in meta.json.
        seed: seeds the whole world.
        image_size: side of GSR / HOI / pretraining images in pixels.
        n_train, n_dev, n_test: GSR images per split.
        rare_train: maximum training images of a rare verb (each rare verb gets between half of it and it); also
            the ``rare_max`` threshold of the OvSplit (seen verbs always get more).
        n_unlabeled: unlabeled GSR-style images (all verbs).
        n_hoi_train, n_hoi_test: HOI images.
        hoi_people: range of people per HOI image.
        hoi_rare_classes: HOIs (besides the zero-shot ones) given only an expected 3-9 training instances.
        n_pretrain: pretraining image-caption pairs.
        pretrain_hoi_fraction: fraction of pretraining images that are multi-person HOI scenes.
        caption_noise: rate of wrong / uninformative captions.
        primitive_caption_rate: rate of captions that describe only the primitives.
        optional_absent_p: probability that an optional role is absent (empty noun, no box).
        annotator_canonical_p: probability that an annotator uses a concept's canonical noun id.
        annotator_error_p: probability that an annotator names another concept of the same kind.
        nuisance_distractor_p, nuisance_occlusion_p, nuisance_cue_drop_p, nuisance_false_cue_p: see ``Nuisance``.
        workers: worker processes (1 = in-process); the files do not depend on it.
        png_compress: PNG compression level (0-9).
        ov_protocol: ``"v2"`` (default for new worlds): ``dev_unseen_compositional`` + ``dev_unseen_novel`` of the
            unseen verbs (drawn from the seed) are **dev-only** -- dev shows seen, rare and these verbs, test seen,
            rare and the other (test-unseen) verbs, so settings are chosen without looking at a test-unseen verb --
            and unlabelled distractors in train / unlabeled images sometimes show a novel primitive
            (``novel_distractor_p``). ``"v1"``: the world before the protocol, byte for byte (every unseen verb in
            dev and test, no such distractors). The pretraining corpus (``pretrain/``) is the same for both.
        dev_unseen_compositional, dev_unseen_novel: dev-only unseen verbs of each kind (``v2``).
        novel_distractor_p: probability of a novel-primitive distractor per train / unlabeled image (``v2``).
    """

    size: str = "smoke"
    seed: int = 0
    image_size: int = 128
    n_train: int = 300
    n_dev: int = 100
    n_test: int = 100
    rare_train: int = 4
    n_unlabeled: int = 100
    n_hoi_train: int = 150
    n_hoi_test: int = 60
    hoi_people: tuple[int, int] = (2, 3)
    hoi_rare_classes: int = 8
    n_pretrain: int = 1500
    pretrain_hoi_fraction: float = 0.15
    caption_noise: float = 0.1
    primitive_caption_rate: float = 0.15
    optional_absent_p: float = 0.3
    annotator_canonical_p: float = 0.55
    annotator_error_p: float = 0.04
    nuisance_distractor_p: float = 0.45
    nuisance_occlusion_p: float = 0.25
    nuisance_cue_drop_p: float = 0.1
    nuisance_false_cue_p: float = 0.08
    workers: int = 1
    png_compress: int = 1
    ov_protocol: Literal["v1", "v2"] = "v2"
    dev_unseen_compositional: int = 2
    dev_unseen_novel: int = 2
    novel_distractor_p: float = 0.2

    def __post_init__(self) -> None:
        if self.ov_protocol not in OV_PROTOCOLS:
            raise SynthError(f"ov_protocol must be one of {', '.join(OV_PROTOCOLS)}, got {self.ov_protocol!r}")

    @classmethod
    def smoke(cls, seed: int = 0) -> "SynthConfig":
        """~300/100/100 GSR, 150/60 HOI, 1,500 pretraining pairs: a few seconds."""
        return cls(size="smoke", seed=seed)

    @classmethod
    def quick(cls, seed: int = 0) -> "SynthConfig":
        """600/300/1k GSR, 400/300 HOI, 300 unlabeled, 1,500 pretraining pairs (2 workers): the world of
        ``make reproduce``, which runs the released weights (pretrained on the default world's corpus). Sized for
        its time budget (15 minutes on 2 cores); the test splits keep 1,000 / 300 images."""
        return cls(size="quick", seed=seed, n_train=600, n_dev=300, n_test=1000, rare_train=10,
                   n_unlabeled=300, n_hoi_train=400, n_hoi_test=300, n_pretrain=1500, workers=2)

    @classmethod
    def default(cls, seed: int = 0) -> "SynthConfig":
        """~6k/1.5k/1.5k GSR, 3k/1k HOI, 12k pretraining pairs, 3k unlabeled (2 workers)."""
        return cls(size="default", seed=seed, n_train=6000, n_dev=1500, n_test=1500, rare_train=10,
                   n_unlabeled=3000, n_hoi_train=3000, n_hoi_test=1000, n_pretrain=12000, workers=2)

    @classmethod
    def large(cls, seed: int = 0) -> "SynthConfig":
        """4x default GSR and HOI, 50k pretraining pairs."""
        return cls(size="large", seed=seed, n_train=24000, n_dev=5000, n_test=5000, rare_train=10,
                   n_unlabeled=12000, n_hoi_train=12000, n_hoi_test=4000, n_pretrain=50000, workers=2)

    @classmethod
    def from_size(cls, size: str, seed: int = 0) -> "SynthConfig":
        """The config of a size name; ``ValueError`` naming the choices for an unknown one."""
        if size == "smoke":
            return cls.smoke(seed)
        elif size == "quick":
            return cls.quick(seed)
        elif size == "default":
            return cls.default(seed)
        elif size == "large":
            return cls.large(seed)
        raise SynthError(f"unknown SynthSitu size {size!r}; choose one of {', '.join(SIZES)}")

    def world_key(self) -> dict[str, Any]:
        """Everything that determines the files (not ``workers``): compare it to decide whether to regenerate."""
        d = asdict(self)
        d.pop("workers")
        for k in V2_FIELDS:  # a v1 world's key (and so its meta.json) is that of the versions before the protocol
            if self.ov_protocol == "v1":
                d.pop(k)
        d["hoi_people"] = list(self.hoi_people)
        d["version"] = GENERATOR_VERSION
        return d

    def nuisance(self, split: str = "train") -> Nuisance:
        """Nuisance factors of ``split``'s images (the novel-primitive distractors: v2 train / unlabeled only)."""
        novel = self.novel_distractor_p if self.ov_protocol == "v2" and split in ("train", "unlabeled") else 0.0
        return Nuisance(distractor_p=self.nuisance_distractor_p, occlusion_p=self.nuisance_occlusion_p,
                        cue_drop_p=self.nuisance_cue_drop_p, false_cue_p=self.nuisance_false_cue_p,
                        novel_distractor_p=novel)

    def unseen_dev(self) -> dict[str, list[str]]:
        """The dev-only unseen verbs of each kind (``v2``; empty lists for ``v1``), drawn from the seed by a
        generator of their own, so the rest of the world's random stream is that of ``v1``."""
        out: dict[str, list[str]] = {}
        rng = np.random.default_rng([int(self.seed), 0, 16])
        for kind, n in (("unseen_compositional", self.dev_unseen_compositional), ("unseen_novel", self.dev_unseen_novel)):
            verbs = [v.name for v in W.VERBS if v.kind == kind]
            if self.ov_protocol == "v1":
                out[kind] = []
                continue
            if not 1 <= n < len(verbs):
                raise SynthError(f"{kind}: dev-only verbs must be between 1 and {len(verbs) - 1}, got {n}")
            out[kind] = sorted(verbs[int(i)] for i in rng.choice(len(verbs), size=n, replace=False))
        return out


# --------------------------------------------------------------------------------------------------- sampling

def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), SPLIT_CODES[split], int(index)])


def _sample_nouns(verb: W.Verb, rng: np.random.Generator, optional_absent_p: float) -> tuple[dict[str, str], str]:
    """Canonical concept per role (``""`` for an absent optional role) and the place."""
    nouns = {}
    for r in verb.roles[:-1]:
        if r in verb.optional and rng.random() < optional_absent_p:
            nouns[r] = ""
            continue
        opts = verb.fillers[r]
        nouns[r] = str(opts[int(rng.integers(len(opts)))])
    places = verb.fillers["place"]
    w = np.array([2.0 ** -(i * 0.5) for i in range(len(places))])
    place = str(places[int(rng.choice(len(places), p=w / w.sum()))])
    return nouns, place


def _annotate(verb: W.Verb, nouns: dict[str, str], place: str, rng: np.random.Generator,
              cfg: SynthConfig) -> list[dict[str, str]]:
    """Three annotators' frames: synonyms of the true concept, occasionally a different concept of the same kind."""
    frames = []
    for _ in range(3):
        fr = {}
        for r in verb.roles:
            true = place if r == "place" else nouns[r]
            if true == "":
                fr[r] = ""
                continue
            ids = W.PLACE_BY_NAME[true].ids if r == "place" else W.CONCEPT_BY_NAME[true].ids
            if r != "place" and r != "agent" and rng.random() < cfg.annotator_error_p:
                kind = W.CONCEPT_BY_NAME[true].kind
                alt = [c for c in verb.fillers[r] if c != true and W.CONCEPT_BY_NAME[c].kind == kind]
                if alt:
                    ids = W.CONCEPT_BY_NAME[alt[int(rng.integers(len(alt)))]].ids
            fr[r] = ids[0] if rng.random() < cfg.annotator_canonical_p else ids[int(rng.integers(len(ids)))]
        frames.append(fr)
    return frames


def _gsr_task(args: tuple) -> dict:
    """Render and save one GSR-style image; returns its SWiG record (picklable, for worker processes)."""
    cfg, split, index, verb_name, out_dir, name = args
    rng = _rng(cfg.seed, split, index)
    verb = W.VERB_BY_NAME[verb_name]
    nouns, place = _sample_nouns(verb, rng, cfg.optional_absent_p)
    drawn: dict = {}
    img, boxes = render_gsr(verb, nouns, place, cfg.image_size, rng, cfg.nuisance(split), record=drawn)
    img.save(os.path.join(out_dir, name), compress_level=cfg.png_compress)
    bb = {}
    for r in verb.roles:
        b = boxes.get(r)
        bb[r] = NO_BOX if b is None else [int(round(b[0])), int(round(b[1])), max(int(round(b[2])), int(round(b[0])) + 1),
                                          max(int(round(b[3])), int(round(b[1])) + 1)]
    rec = {"verb": verb.name, "height": cfg.image_size, "width": cfg.image_size, "bb": bb,
           "frames": _annotate(verb, nouns, place, rng, cfg)}
    if split == "pretrain":
        cap, noisy = scene_caption(verb, nouns, place, rng, cfg.caption_noise, cfg.primitive_caption_rate)
        rec = {"caption": cap, "verbs": [verb.name], "noisy": noisy}
    rec["rendered"] = drawn
    return rec


def _hoi_task(args: tuple) -> dict:
    """Render and save one multi-person HOI image; returns its pairs (picklable)."""
    cfg, split, index, hois, out_dir, name = args
    rng = _rng(cfg.seed, split, index)
    items = []
    for obj, hverb in hois:
        verb = W.VERB_BY_NAME[W.HOI_VERBS[hverb][0]]
        nouns, _ = _sample_nouns(verb, rng, cfg.optional_absent_p)
        nouns[verb.main_role] = obj
        items.append((verb, nouns))
    places = sorted({p for v, _ in items for p in v.fillers["place"]})
    place = places[int(rng.integers(len(places)))]
    drawn: dict = {}
    img, pairs = render_hoi(items, place, cfg.image_size, rng, cfg.nuisance(split), record=drawn)
    img.save(os.path.join(out_dir, name), compress_level=cfg.png_compress)
    if split == "pretrain":
        cap, noisy = hoi_caption(items, place, rng, cfg.caption_noise)
        return {"caption": cap, "verbs": sorted({v.name for v, _ in items}), "noisy": noisy, "rendered": drawn}
    return {"pairs": [(list(map(float, bh)), list(map(float, bo))) for bh, bo in pairs], "rendered": drawn}


def _run(tasks: list[tuple], fn, workers: int) -> list[dict]:
    from mipd_kit.progress import progress

    desc = f"SynthSitu {tasks[0][1] if tasks else ''} images"
    if workers <= 1 or len(tasks) < 64:
        return [fn(t) for t in progress(tasks, desc=desc, unit="image")]
    import multiprocessing as mp
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(workers) as pool:
        return list(progress(pool.imap(fn, tasks, chunksize=max(8, len(tasks) // (workers * 16))), total=len(tasks),
                             desc=desc, unit="image"))


def _gsr_verbs(cfg: SynthConfig, rng: np.random.Generator) -> dict[str, list[str]]:
    """Verb of every GSR image per split (train: seen many, rare few, unseen none; others: all verbs evenly; v2:
    dev without the test-unseen verbs, test without the dev-only ones)."""
    seen = [v.name for v in W.VERBS if v.kind == "seen"]
    rare = [v.name for v in W.VERBS if v.kind == "rare"]
    allv = [v.name for v in W.VERBS]
    rare_counts = {v: int(rng.integers(max(1, cfg.rare_train // 2), cfg.rare_train + 1)) for v in rare}
    n_seen = cfg.n_train - sum(rare_counts.values())
    if n_seen < (cfg.rare_train + 1) * len(seen):
        raise SynthError(f"n_train={cfg.n_train} leaves fewer than rare_train+1={cfg.rare_train + 1} images per seen verb")
    weights = rng.uniform(0.6, 1.4, len(seen))  # mild imbalance, like real datasets
    floor = cfg.rare_train + 1  # a seen verb always has more training images than any rare one
    counts = floor + np.floor(weights / weights.sum() * (n_seen - floor * len(seen))).astype(int)
    counts[: n_seen - counts.sum()] += 1
    train = [v for v, c in zip(seen, counts) for _ in range(int(c))] + [v for v, c in rare_counts.items() for _ in range(c)]
    out = {"train": train}
    dev_only = {v for vs in cfg.unseen_dev().values() for v in vs}
    unseen = {v.name for v in W.VERBS if v.kind.startswith("unseen")}
    pools = {"dev": [v for v in allv if v not in unseen - dev_only] if dev_only else allv,
             "test": [v for v in allv if v not in dev_only], "unlabeled": allv}
    for split, n in (("dev", cfg.n_dev), ("test", cfg.n_test), ("unlabeled", cfg.n_unlabeled)):
        out[split] = [pools[split][i % len(pools[split])] for i in range(n)]
    for split in out:
        rng.shuffle(out[split])
    return out


def _hoi_plan(cfg: SynthConfig, classes: W.HOIClasses, rng: np.random.Generator) -> dict[str, list[list[tuple[str, str]]]]:
    """(object, verb) of every person of every HOI image.

    Train is long-tailed: the zero-shot compositions never occur; ``hoi_rare_classes`` randomly chosen HOIs get an
    expected 3-9 training instances (HICO-DET's rare classes have fewer than 10); the others share the remaining
    mass by a Zipf law (exponent 0.9, random order). Test is uniform over all HOIs, zero-shot ones included.
    """
    pairs = [(classes.objects[o], classes.verbs[v]) for _, o, v in classes.correspondence]
    zs = set(W.HOI_ZERO_SHOT)
    cand = [k for k in range(len(pairs)) if pairs[k] not in zs]
    order = [cand[int(i)] for i in rng.permutation(len(cand))]
    rare_k, head_k = order[:cfg.hoi_rare_classes], order[cfg.hoi_rare_classes:]
    n_pairs = cfg.n_hoi_train * (cfg.hoi_people[0] + cfg.hoi_people[1]) / 2
    w_train = np.zeros(len(pairs))
    for k in rare_k:
        w_train[k] = rng.uniform(3, 9) / max(n_pairs, 1.0)
    zipf = np.array([1.0 / (1 + r) ** 0.9 for r in range(len(head_k))])
    w_train[head_k] = zipf / zipf.sum() * max(0.0, 1.0 - w_train.sum())
    w_train /= w_train.sum()
    plan = {}
    for split, n, w in (("hoi_train", cfg.n_hoi_train, w_train), ("hoi_test", cfg.n_hoi_test, None)):
        imgs = []
        for _ in range(n):
            k = int(rng.integers(cfg.hoi_people[0], cfg.hoi_people[1] + 1))
            idx = rng.choice(len(pairs), size=k, p=w)
            imgs.append([pairs[int(i)] for i in idx])
        plan[split] = imgs
    return plan


# --------------------------------------------------------------------------------------------------- writing

def _write_json(path: Path, obj: Any, indent: Optional[int] = None) -> None:
    with atomic_open(path) as f:
        json.dump(obj, f, indent=indent, ensure_ascii=False)
        f.write("\n")


def frame_space() -> FrameSpace:
    """The SynthSitu frame space: every verb with abstract, definition and role definitions; every noun id
    (synonyms included) with glosses (the id first, then its synonyms) and a definition."""
    verbs = {v.name: VerbDef(v.name, v.abstract, v.definition, v.roles, dict(v.role_defs), "",
                             {r: "" for r in v.roles}) for v in W.VERBS}
    nouns: dict[str, NounDef] = {}
    for c in [*W.CONCEPTS, *W.PLACES]:
        for i in c.ids:
            nouns[i] = NounDef(i, (i, *[s for s in c.ids if s != i]), c.definition)
    return FrameSpace(verbs, nouns, "synthsitu")


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse a target that is a file, a non-empty folder without ``overwrite``, or one holding foreign files."""
    if out.exists() and not out.is_dir():
        raise SynthError(f"{out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise SynthError(f"{out}: folder is not empty; pass --overwrite (overwrite=True) to replace the world in it")
        foreign = sorted(p.name for p in out.iterdir() if p.name not in WORLD_ENTRIES and not p.name.endswith(".tmp"))
        if foreign:
            raise SynthError(f"{out}: refusing to overwrite, it holds files that are not part of a SynthSitu world: "
                             f"{foreign[:5]}")


def _lock_path(out: Path) -> Path:
    return out.parent / f".{out.name}.lock"


def _make_parent(out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SynthError(f"{out}: cannot write the world there ({e.strerror or e})") from e


def _remove_stale(out: Path) -> None:
    """Remove temporary / old world folders a killed generation left (call under the world's lock)."""
    mine = re.compile(rf"\.{re.escape(out.name)}\.\d+-[0-9a-f]{{10}}\.(tmp|old)")  # not another world's
    for p in out.parent.glob(f".{out.name}.*"):
        if p.is_dir() and mine.fullmatch(p.name):
            shutil.rmtree(p, ignore_errors=True)


def _generate_locked(cfg: SynthConfig, out: Path, overwrite: bool, verbose: bool) -> dict:
    """Build the world in a temporary folder and rename it into place (the caller holds the world's lock)."""
    _check_out(out, overwrite)
    _remove_stale(out)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:10]}"
    tmp = out.parent / f".{out.name}.{tag}.tmp"
    try:
        try:
            (tmp / "images").mkdir(parents=True)
            (tmp / "pretrain" / "images").mkdir(parents=True)
        except OSError as e:
            raise SynthError(f"{out}: cannot write the world there ({e.strerror or e})") from e
        meta = _build(cfg, tmp)
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if verbose:
        t = read_generation_info(out)["timings"]
        print(f"SynthSitu {cfg.size} seed {cfg.seed}: {meta['counts']['images']} images in {t['total']:.1f} s "
              f"({t['images_per_second']:.0f} images/s, {cfg.workers} worker(s)) -> {out}")
    return meta


def generate(cfg: SynthConfig, out_dir: str | os.PathLike, overwrite: bool = False, verbose: bool = False) -> dict:
    """Write a SynthSitu world into ``out_dir``; returns the content of ``meta.json``.

    The world is built in a temporary folder and renamed into place under the world's lock, so a reader never
    takes a half-written world as complete.

    Raises:
        SynthError: ``out_dir`` is not writable, or not empty and ``overwrite`` is false, or holds foreign files.
    """
    if cfg.size not in SIZES:
        raise SynthError(f"unknown SynthSitu size {cfg.size!r}; choose one of {', '.join(SIZES)}")
    W.check_world()
    out = Path(out_dir)
    _check_out(out, overwrite)
    _make_parent(out)
    with file_lock(_lock_path(out)):
        return _generate_locked(cfg, out, overwrite, verbose)


def _build(cfg: SynthConfig, out: Path) -> dict:
    """Render every image and write every file of the world into the (fresh) folder ``out``."""
    t0 = time.perf_counter()
    master = np.random.default_rng([int(cfg.seed), 0])
    plan = _gsr_verbs(cfg, master)
    classes = W.hoi_classes()
    hplan = _hoi_plan(cfg, classes, master)
    img_dir, pre_dir = str(out / "images"), str(out / "pretrain" / "images")
    timings, counts = {}, {}

    # ---- GSR splits and unlabeled pool
    space, recs = _render_gsr(cfg, plan, img_dir, timings, counts)
    # ---- HOI splits
    hoi_images, hoi_rendered = _render_hoi(cfg, hplan, classes, img_dir, timings, counts)
    # ---- pretraining corpus (GSR-style scenes of every verb + multi-person HOI scenes)
    names, caps = _render_pretrain(cfg, classes, master, pre_dir, timings, counts)

    # ---- JSON files (atomic), meta.json last
    t = time.perf_counter()
    train_counts, comp, novel, split_obj = _write_gsr_files(cfg, out, space, recs)
    rare, non_rare = _write_hoi_files(out, classes, hoi_images)
    _write_corpus_files(out, names, caps, recs, hoi_rendered)
    timings["json"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    n_images = sum(counts[k] for k in ("train", "dev", "test", "unlabeled", "hoi_train", "hoi_test", "pretrain"))
    timings["images_per_second"] = n_images / max(timings["total"], 1e-9)
    counts["images"] = n_images
    counts["train_per_verb"] = dict(sorted(train_counts.items()))

    meta = _meta(cfg, counts, classes, comp, novel, rare, non_rare, split_obj)
    # run-dependent facts (wall times, worker count) stay out of meta.json, so that every file of the world but
    # generation.json is a function of the seed and config alone
    _write_json(out / GENERATION_FILE, {"timings": {k: round(v, 3) for k, v in timings.items()},
                                        "workers": cfg.workers}, indent=1)
    _write_json(out / "meta.json", meta, indent=1)
    return meta


def _render_gsr(cfg: SynthConfig, plan: dict[str, list[str]], img_dir: str, timings: dict,
                counts: dict) -> tuple[FrameSpace, dict[str, dict[str, dict]]]:
    """Render the GSR splits and the unlabeled pool: the frame space and split -> image -> its record."""
    space = frame_space()
    recs: dict[str, dict[str, dict]] = {}
    for split in ("train", "dev", "test", "unlabeled"):
        t = time.perf_counter()
        prefix = {"train": "train", "dev": "dev", "test": "test", "unlabeled": "u"}[split]
        names = [f"{prefix}_{i:06d}.png" for i in range(len(plan[split]))]
        tasks = [(cfg, split, i, v, img_dir, n) for i, (v, n) in enumerate(zip(plan[split], names))]
        recs[split] = dict(zip(names, _run(tasks, _gsr_task, cfg.workers)))
        timings[split] = time.perf_counter() - t
        counts[split] = len(names)
    return space, recs


def _render_hoi(cfg: SynthConfig, hplan: dict[str, list[list[tuple[str, str]]]], classes: W.HOIClasses,
                img_dir: str, timings: dict,
                counts: dict) -> tuple[dict[str, list[HOIImage]], dict[str, list[tuple[str, dict]]]]:
    """Render the HOI splits: split -> its images, and split -> (name, rendered facts) per image."""
    hoi_images: dict[str, list[HOIImage]] = {}
    hoi_rendered: dict[str, list[tuple[str, dict]]] = {}
    for split in ("hoi_train", "hoi_test"):
        t = time.perf_counter()
        names = [f"{split}_{i:06d}.png" for i in range(len(hplan[split]))]
        tasks = [(cfg, split, i, hois, img_dir, n) for i, (hois, n) in enumerate(zip(hplan[split], names))]
        res = _run(tasks, _hoi_task, cfg.workers)
        ims = []
        for n, hois, r in zip(names, hplan[split], res):
            hidx = [classes.index(o, v) for o, v in hois]
            ims.append(HOIImage(n, cfg.image_size, cfg.image_size, [tuple(p[0]) for p in r["pairs"]],
                                [tuple(p[1]) for p in r["pairs"]], hidx,
                                [classes.objects.index(o) for o, _ in hois], [classes.verbs.index(v) for _, v in hois]))
        hoi_images[split] = ims
        hoi_rendered[split] = [(n, r["rendered"]) for n, r in zip(names, res)]
        timings[split] = time.perf_counter() - t
        counts[split] = len(ims)
        counts[split + "_pairs"] = sum(len(im.hoi) for im in ims)
    return hoi_images, hoi_rendered


def _render_pretrain(cfg: SynthConfig, classes: W.HOIClasses, master: np.random.Generator, pre_dir: str,
                     timings: dict, counts: dict) -> tuple[list[str], list[dict]]:
    """Render the pretraining corpus (draws from ``master`` after the GSR and HOI plans): names and captions."""
    t = time.perf_counter()
    n_hoi = int(round(cfg.n_pretrain * cfg.pretrain_hoi_fraction))
    allv = [v.name for v in W.VERBS]
    pre_verbs = [allv[i % len(allv)] for i in range(cfg.n_pretrain - n_hoi)]
    master.shuffle(pre_verbs)
    pairs_all = [(classes.objects[o], classes.verbs[v]) for _, o, v in classes.correspondence]
    names = [f"p_{i:06d}.png" for i in range(cfg.n_pretrain)]
    tasks_g = [(cfg, "pretrain", i, v, pre_dir, names[i]) for i, v in enumerate(pre_verbs)]
    tasks_h = []
    for j in range(n_hoi):
        i = len(pre_verbs) + j
        k = int(master.integers(cfg.hoi_people[0], cfg.hoi_people[1] + 1))
        hois = [pairs_all[int(x)] for x in master.choice(len(pairs_all), size=k)]
        tasks_h.append((cfg, "pretrain", i, hois, pre_dir, names[i]))
    caps = _run(tasks_g, _gsr_task, cfg.workers) + _run(tasks_h, _hoi_task, cfg.workers)
    timings["pretrain"] = time.perf_counter() - t
    counts["pretrain"] = len(caps)
    counts["pretrain_noisy"] = sum(c["noisy"] for c in caps)
    return names, caps


def _write_gsr_files(cfg: SynthConfig, out: Path, space: FrameSpace,
                     recs: dict[str, dict[str, dict]]) -> tuple[dict[str, int], list[str], list[str], Any]:
    """Write the frame space, the GSR splits, the unlabeled pool and ``ov_split.json``; returns the training counts
    per verb, the unseen compositional and novel verbs and the OV split."""
    from mipd_kit.data.splits import OvSplit
    from mipd_kit.data.swig import write_frame_space, write_situations

    write_frame_space(out / "imsitu_space.json", space)

    def situations(d: dict[str, dict]) -> list[Situation]:
        return [Situation(n, r["verb"], r["width"], r["height"],
                          {ro: None if b == NO_BOX else tuple(b) for ro, b in r["bb"].items()},
                          tuple(r["frames"])) for n, r in d.items()]

    for split in ("train", "dev", "test"):
        write_situations(out / f"{split}.json", situations(recs[split]))
    write_situations(out / "unlabeled_gt.json", situations(recs["unlabeled"]))
    _write_json(out / "unlabeled.json", {"images": list(recs["unlabeled"])})

    train_counts = {v.name: 0 for v in W.VERBS}
    for r in recs["train"].values():
        train_counts[r["verb"]] += 1
    comp = [v.name for v in W.VERBS if v.kind == "unseen_compositional"]
    novel = [v.name for v in W.VERBS if v.kind == "unseen_novel"]
    dev_kinds = cfg.unseen_dev()
    extra = {"unseen_compositional": comp, "unseen_novel": novel}
    if cfg.ov_protocol == "v2":
        dev_only = [v for k in ("unseen_compositional", "unseen_novel") for v in dev_kinds[k]]
        extra.update(unseen_dev=sorted(dev_only), unseen_test=sorted(v for v in comp + novel if v not in dev_only),
                     unseen_dev_compositional=dev_kinds["unseen_compositional"],
                     unseen_dev_novel=dev_kinds["unseen_novel"])
    split_obj = OvSplit.from_counts(train_counts, comp + novel, rare_max=cfg.rare_train, extra=extra)
    split_obj.save(out / "ov_split.json")
    return train_counts, comp, novel, split_obj


def _write_hoi_files(out: Path, classes: W.HOIClasses,
                     hoi_images: dict[str, list[HOIImage]]) -> tuple[Any, Any]:
    """Write the HOI splits, the zero-shot HOI list and the HOI prompts; returns the rare / non-rare HOI classes."""
    from mipd_kit.data.hico import rare_split, write_hico_instances

    rare, non_rare = rare_split(hoi_images["hoi_train"], len(classes.correspondence))
    vocab = HOIVocab(classes.objects, classes.verbs, classes.correspondence, rare, non_rare)
    for split in ("hoi_train", "hoi_test"):
        write_hico_instances(out / f"{split}.json", hoi_images[split], vocab)
    in_train = {h for im in hoi_images["hoi_train"] for h in im.hoi}
    zs = sorted(classes.index(o, v) for o, v in W.HOI_ZERO_SHOT)
    assert not (set(zs) & in_train), "zero-shot HOI in hoi_train"
    _write_json(out / "hoi_zero_shot.json", {"unseen_composition": zs})
    _write_json(out / "hoi_prompts.json", [W.hoi_phrase(classes.objects[o], classes.verbs[v])
                                           for _, o, v in classes.correspondence])
    return rare, non_rare


def _write_corpus_files(out: Path, names: list[str], caps: list[dict], recs: dict[str, dict[str, dict]],
                        hoi_rendered: dict[str, list[tuple[str, dict]]]) -> None:
    """Write the pretraining captions and the rendered facts of every image (``RENDERED_FILE``)."""
    with atomic_open(out / "pretrain" / "captions.jsonl") as f:
        for n, c in zip(names, caps):
            f.write(json.dumps({"image": f"pretrain/images/{n}", "caption": c["caption"], "verbs": c["verbs"],
                                "noisy": c["noisy"]}) + "\n")
    rendered = [(f"images/{n}", split, r["rendered"]) for split in ("train", "dev", "test", "unlabeled")
                for n, r in recs[split].items()]
    rendered += [(f"images/{n}", split, d) for split in ("hoi_train", "hoi_test") for n, d in hoi_rendered[split]]
    rendered += [(f"pretrain/images/{n}", "pretrain", c["rendered"]) for n, c in zip(names, caps)]
    with atomic_open(out / RENDERED_FILE) as f:
        for image, split, d in rendered:
            f.write(json.dumps({"image": image, "split": split, **d}) + "\n")


def _meta(cfg: SynthConfig, counts: dict, classes: W.HOIClasses, comp: list[str], novel: list[str], rare: Any,
          non_rare: Any, split_obj: Any) -> dict:
    """The world's ``meta.json``: generator, config, counts, verbs, unseen kinds and HOI facts."""
    meta = {
        "generator": "mipd_kit.data.synthsitu", "version": GENERATOR_VERSION, "seed": cfg.seed, "size": cfg.size,
        "config": cfg.world_key(), "counts": counts,
        "world": W.check_world(),
        "verbs": {v.name: {"kind": v.kind, "primitives": v.primitives(), "roles": list(v.roles),
                           "places": list(v.fillers["place"])} for v in W.VERBS},
        "unseen_kinds": {"unseen_compositional": comp, "unseen_novel": novel},
        "novel_primitives": W.novel_primitives(),
        "hoi": {"num_hoi": len(classes.correspondence), "zero_shot": [list(p) for p in W.HOI_ZERO_SHOT],
                "rare": len(rare), "non_rare": len(non_rare)},
    }
    if cfg.ov_protocol == "v2":  # a key of its own, last: without it (and the config's V2_FIELDS) it is v1's meta
        meta[OV_META_KEY] = {"version": "v2", "unseen_dev": split_obj.extra["unseen_dev"],
                             "unseen_test": split_obj.extra["unseen_test"],
                             "novel_distractor_p": cfg.novel_distractor_p}
    return meta


def read_generation_info(world_dir: str | os.PathLike) -> dict:
    """``generation.json``: how this copy of the world was made (``timings`` in seconds, ``workers``); empty when
    absent. These facts differ between two generations of the same world, so they are kept out of ``meta.json``."""
    p = Path(world_dir) / GENERATION_FILE
    if not p.exists():
        return {}
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{p}: malformed {GENERATION_FILE} ({e})") from e


def read_rendered(world_dir: str | os.PathLike) -> dict[str, dict]:
    """``rendered.jsonl`` as {image path relative to the world folder: record} (see ``render.scene_record``).

    Raises:
        DataError: the file is missing (a world older than generator 1.3) or a line is malformed (file and line named).
    """
    p = Path(world_dir) / RENDERED_FILE
    if not p.exists():
        raise DataError(f"{p}: not found; worlds from generator 1.3 on record what each image shows "
                        f"(regenerate with `mipd synth --out {world_dir} --overwrite`)")
    out = {}
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            out[d["image"]] = d
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DataError(f"{p}: line {n} is not a rendered-image record ({e!r})") from e
    return out


def read_meta(world_dir: str | os.PathLike) -> Optional[dict]:
    """``meta.json`` of a complete world, or ``None`` when absent (an incomplete or missing world)."""
    p = Path(world_dir) / "meta.json"
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{p}: malformed meta.json ({e})") from e


def corpus_meta_bytes(world_dir: str | os.PathLike) -> Optional[bytes]:
    """The bytes of ``meta.json`` as a ``v1`` world of the same seed and config writes them (``None`` without one).

    A v2 world's meta.json is v1's plus its protocol facts (the ``ov_protocol`` key and the config's
    :data:`V2_FIELDS`); both share the pretraining corpus, so whatever is keyed on the corpus (the embedded teacher's
    ``data_fingerprint``, released weights) hashes these bytes and finds one value for both worlds -- and for a v1
    world exactly its file's bytes, so existing keys stay valid.
    """
    p = Path(world_dir) / "meta.json"
    if not p.exists():
        return None
    raw = p.read_bytes()
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{p}: malformed meta.json ({e})") from e
    if not isinstance(meta, dict):
        return raw  # a foreign file: its bytes as they are
    same = CORPUS_VERSION_OF.get(str(meta.get("version")))
    if same is not None:  # a version that did not change the corpus hashes as the version whose corpus it has
        meta = {**meta, "version": same}
        if isinstance(meta.get("config"), dict) and "version" in meta["config"]:
            meta["config"] = {**meta["config"], "version": same}
    elif OV_META_KEY not in meta:
        return raw  # a v1 world: its bytes as they are
    meta = dict(meta)
    meta.pop(OV_META_KEY, None)
    if isinstance(meta.get("config"), dict):
        meta["config"] = {k: v for k, v in meta["config"].items() if k not in V2_FIELDS}
    return (json.dumps(meta, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def ensure_world(cfg: SynthConfig, world_dir: str | os.PathLike, verbose: bool = True) -> tuple[dict, bool]:
    """Generate the world unless ``world_dir`` already holds one made with the same config.

    Safe under concurrent processes: a second process asking for the same world waits for the first one's lock
    and then reuses the complete world it made.

    Returns:
        ``(meta, generated)``.
    """
    meta = read_meta(world_dir)
    if meta is not None and meta.get("config") == cfg.world_key():
        return meta, False
    if cfg.size not in SIZES:
        raise SynthError(f"unknown SynthSitu size {cfg.size!r}; choose one of {', '.join(SIZES)}")
    out = Path(world_dir)
    _check_out(out, overwrite=True)
    _make_parent(out)
    with file_lock(_lock_path(out)):
        meta = read_meta(out)  # another process may have made it while we waited
        if meta is not None and meta.get("config") == cfg.world_key():
            return meta, False
        W.check_world()
        return _generate_locked(cfg, out, overwrite=True, verbose=verbose), True


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``mipd synth --out DIR --seed S --size smoke|quick|default|large [--overwrite] [--workers N] [--ov-protocol v1|v2]``."""
    ap = argparse.ArgumentParser(prog="mipd synth", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output folder (must be empty or absent unless --overwrite)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the whole world")
    ap.add_argument("--size", default="smoke", help="smoke | quick | default | large")
    ap.add_argument("--overwrite", action="store_true", help="replace a world already in --out")
    ap.add_argument("--workers", type=int, default=None, help="worker processes (default: 1 for smoke, 2 otherwise)")
    ap.add_argument("--ov-protocol", default="v2", choices=OV_PROTOCOLS,
                    help="v2: dev-only unseen verbs and novel-primitive distractors; v1: the world before them")
    a = ap.parse_args(list(argv) if argv is not None else None)
    try:
        cfg = dataclasses.replace(SynthConfig.from_size(a.size, a.seed), ov_protocol=a.ov_protocol)
        if a.workers is not None:
            cfg.workers = max(1, a.workers)
        meta = generate(cfg, a.out, overwrite=a.overwrite, verbose=True)
    except SynthError as e:
        print(f"mipd synth: error: {e}", file=__import__("sys").stderr)
        return 2
    c = meta["counts"]
    print(f"  GSR train/dev/test {c['train']}/{c['dev']}/{c['test']}, unlabeled {c['unlabeled']}, "
          f"HOI train/test {c['hoi_train']}/{c['hoi_test']} images ({c['hoi_train_pairs']}/{c['hoi_test_pairs']} pairs), "
          f"pretraining pairs {c['pretrain']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
