"""Real datasets made ready to run: pinned downloads with verified checksums, then the world folder the configs read.

``mipd data prepare swig|hico|vcoco --root DIR [--mirror URL] [--no-images] [--rare-max N]`` downloads into
``DIR/<dataset>/`` and lays out ``DIR/<dataset>/world/`` (``world_dir`` of ``configs/swig_real.yaml`` /
``configs/hico_real.yaml`` with ``--root data``):

* **swig**: ``SWiG_jsons/{train,dev,test,imsitu_space}.json`` of allenai/swig and ``images_512.zip``; the world links
  them (``images`` -> the extracted ``images_512/``) and writes ``ov_split.json``, the zero-shot verb split of
  Zellers & Choi ("Zero-Shot Activity Recognition with Verb Attribute Induction", EMNLP 2017; rowanz/verb-attributes
  ``attributes_split.csv`` + ``imsitu_verbs.txt``: 379 seen, 96 unseen, the 29 val verbs kept apart).
* **hico**: fredzzhang/hicodet's ``instances_{train,test}2015.json`` and the authors' ``hico_20160224_det.tar.gz``;
  the world links ``hoi_train.json`` / ``hoi_test.json`` and one image link per file name, copies the bundled
  zero-shot splits to ``hoi_zero_shot.json`` and writes ``hoi_prompts.json`` built from the official HOI list (the
  600 (object, verb) pairs in the instance files' ``correspondence`` order; see :func:`hoi_prompts`).
* **vcoco**: fredzzhang/vcoco's ``instances_vcoco_{trainval,test}.json`` (inline boxes), s-gupta/v-coco's official
  annotations and COCO 2014 images; the world links the instance files and the images they name.

Every GitHub file comes from a **pinned commit** (``REVISIONS``), never a moving branch, and is verified after the
download: by its sha256 where it is known (computed from the file at that commit), else by its **git blob id** at
that commit (``git ls-tree``: sha1 of ``"blob <size>\\0" + content``, a checksum of the exact bytes, for files too
large for the copies the hashes were computed from). Archives without a published checksum (``images_512.zip``,
``hico_20160224_det.tar.gz``, COCO zips) are verified against the sha256 recorded at their first download
(``pins.json``: trust on first use, said in the log). A mismatch is refused, naming the file; the rejected bytes
are kept as ``NAME.rejected`` and the next run downloads again. Downloads resume (``NAME.part`` + HTTP Range);
archives are extracted once (a ``.extracted-NAME`` marker); ``prepared.json`` in the world records the sha256 of its
annotation files, which ``mipd check`` verifies.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from ..fileio import DataError, atomic_write_text, move_into_place
from .download import REVISIONS, gh

DATASETS = ("swig", "hico", "vcoco")


class ChecksumError(DataError):
    """A downloaded file does not match its pinned checksum."""


@dataclass(frozen=True)
class Pinned:
    """One file of a dataset.

    Attributes:
        url: where it comes from (a GitHub file at a commit of ``REVISIONS``, or the authors' host).
        dest: its path below ``DIR/<dataset>/``.
        sha256: its sha256, where known.
        git_blob: its git object id at the pinned commit, where its sha256 is not known.
        archive: extracted after the download (skipped with ``--no-images``).
        note: what it is.
    """

    url: str
    dest: str
    sha256: str = ""
    git_blob: str = ""
    archive: bool = False
    note: str = ""


#: the pinned files; sha256 values were computed from the files at these commits (and equal the project's reference
#: copies), git blob ids read from the commits' trees (``git ls-tree -r HEAD``)
TABLE: dict[str, list[Pinned]] = {
    "swig": [
        Pinned(gh("allenai/swig", "SWiG_jsons/train.json"), "SWiG_jsons/train.json",
               git_blob="ce834851e673706b8ccd24df42c33281f29f8e85", note="SWiG train annotations"),
        Pinned(gh("allenai/swig", "SWiG_jsons/dev.json"), "SWiG_jsons/dev.json",
               git_blob="b714bc23b91a3c9de3c0720fb38d80a453dcb59c", note="SWiG dev annotations"),
        Pinned(gh("allenai/swig", "SWiG_jsons/test.json"), "SWiG_jsons/test.json",
               git_blob="68dd9e7e50b76d8c933035eba2234406e36fb549", note="SWiG test annotations"),
        Pinned(gh("allenai/swig", "SWiG_jsons/imsitu_space.json"), "SWiG_jsons/imsitu_space.json",
               git_blob="752535fa2b901ce95efad8b383e00708c7afa16a", note="imSitu frame space"),
        Pinned(gh("rowanz/verb-attributes", "data/VerbsWithAttributes/attributes_split.csv"),
               "zellers-choi/attributes_split.csv",
               sha256="979f3f1f2d096c21c81a9a89392fce75b13f713487794b8c5bd687ae878d57a9",
               note="Zellers & Choi zero-shot verb split (verb lemmas)"),
        Pinned(gh("rowanz/verb-attributes", "data/VerbsWithAttributes/imsitu_verbs.txt"),
               "zellers-choi/imsitu_verbs.txt",
               sha256="e3525d58600174f9a4470e68fddf938ec28325d5273431af5e157b7873d0377c",
               note="the 504 imSitu verb lemmas in imSitu order"),
        Pinned("https://swig-data-weights.s3.us-east-2.amazonaws.com/images_512.zip", "images_512.zip",
               archive=True, note="SWiG images at 512 px (about 15 GB; no published checksum)"),
    ],
    "hico": [
        Pinned(gh("fredzzhang/hicodet", "instances_train2015.json"), "instances_train2015.json",
               git_blob="f5ced6f83027ffa5e7eb58df12c0ece6ed346978", note="HICO-DET train instances"),
        Pinned(gh("fredzzhang/hicodet", "instances_test2015.json"), "instances_test2015.json",
               sha256="cfeaefcc1e006a0d7d205dfba95ac6614341995d18613e016ae650d278757daa",
               note="HICO-DET test instances"),
        Pinned("gdrive:1QZcJmGVlF9f4h-XLWe9Gkmnmj2z1gSnk", "hico_20160224_det.tar.gz", archive=True,
               note="HICO-DET images + MATLAB annotations of the authors (about 7.5 GB; no published checksum)"),
    ],
    "vcoco": [
        *[Pinned(gh("fredzzhang/vcoco", f"instances_vcoco_{n}.json"), f"instances_vcoco_{n}.json", sha256=h,
                 note=f"V-COCO {n} with inline boxes") for n, h in (
            ("trainval", "a9cd182d9fe4574e6743e43a40367fe524bab08d9cb56377f9be98bc7430d272"),
            ("test", "ccbe12875abb459692d85d2366381240bc883e5fdc22cf15610ea524de062326"))],
        Pinned(gh("s-gupta/v-coco", "data/vcoco/vcoco_test.json"), "v-coco/data/vcoco/vcoco_test.json",
               git_blob="c633fc3aeca04ed7b14c8b5bf7ff5b68bb9552f8", note="official V-COCO test annotations"),
        Pinned("http://images.cocodataset.org/zips/train2014.zip", "coco/train2014.zip", archive=True,
               note="COCO 2014 train images (about 13 GB; no published checksum)"),
        Pinned("http://images.cocodataset.org/zips/val2014.zip", "coco/val2014.zip", archive=True,
               note="COCO 2014 val images (about 6 GB; no published checksum)"),
    ],
}


# ---------------------------------------------------------------------------------------------------- checksums
def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def git_blob_id(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """The git object id of a file's bytes (sha1 of ``"blob <size>\\0" + content``, as ``git hash-object``)."""
    h = hashlib.sha1(f"blob {os.path.getsize(path)}\0".encode())
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, pin: Pinned, recorded: dict[str, str]) -> str:
    """Check ``path`` against ``pin`` (sha256, else git blob id, else the sha256 recorded at its first download).

    Returns:
        its sha256 (recorded into ``recorded`` on first use of an unpinned file).

    Raises:
        ChecksumError: naming the file, both checksums and the URL.
    """
    digest = sha256_file(path)
    if pin.sha256:
        want, got, kind = pin.sha256, digest, "sha256"
    elif pin.git_blob:
        want, got, kind = pin.git_blob, git_blob_id(path), "git blob id"
    elif pin.dest in recorded:
        want, got, kind = recorded[pin.dest], digest, "sha256 (recorded at its first download)"
    else:
        recorded[pin.dest] = digest
        print(f"  unpinned {pin.dest}: no published checksum; sha256 {digest} recorded (later runs verify it)")
        return digest
    if got != want:
        raise ChecksumError(f"{path}: {kind} {got} does not match the pinned {want} ({pin.url}); refused")
    return digest


# ---------------------------------------------------------------------------------------------------- download
def fetch_verified(pin: Pinned, folder: Path, recorded: dict[str, str], mirror: Optional[str] = None) -> Path:
    """Download ``pin`` into ``folder / pin.dest`` (resuming a ``.part``), or reuse it, then verify it.

    Args:
        mirror: a base URL serving the files at their ``dest`` paths (a local mirror), instead of ``pin.url``.

    Raises:
        ChecksumError: the bytes do not match; they are moved to ``NAME.rejected`` (the next run downloads again).
    """
    from .download import Source, fetch
    url = f"{mirror.rstrip('/')}/{pin.dest}" if mirror else pin.url
    dest = fetch(Source(url, pin.dest), folder)
    try:
        verify(dest, pin, recorded)
    except ChecksumError:
        move_into_place(dest, dest.with_name(dest.name + ".rejected"))
        raise
    return dest


def extract_once(archive: Path) -> None:
    """Unpack an archive beside itself unless its ``.extracted-NAME`` marker says it was (a killed extraction is
    redone)."""
    from .download import extract
    marker = archive.with_name(f".extracted-{archive.name}")
    if marker.exists():
        return
    extract(archive)
    marker.write_text(sha256_file(archive) if archive.stat().st_size < 1 << 26 else "done")


# ---------------------------------------------------------------------------------------------------- HOI prompts
def gerund(verb: str) -> str:
    """English ``-ing`` form of a HICO-DET verb lemma (``ride`` -> ``riding``, ``stab`` -> ``stabbing``,
    ``lie`` -> ``lying``, ``control`` -> ``controlling``)."""
    if verb in ("control",):
        return verb + "ling"
    if verb.endswith("ie"):
        return verb[:-2] + "ying"
    if verb.endswith(("ee", "ye", "oe")):
        return verb + "ing"
    if verb.endswith("e"):
        return verb[:-1] + "ing"
    if len(re.findall(r"[aeiou]+", verb)) == 1 and re.search(r"[^aeiou][aeiou][^aeiouwxy]$", verb):
        return verb + verb[-1] + "ing"  # one syllable ending consonant-vowel-consonant
    return verb + "ing"


def hoi_phrase(obj: str, verb: str) -> str:
    """``"A photo of a person riding a horse"``; ``no_interaction``: ``"A photo of a person and a horse"``
    (the style of fredzzhang/hicodet ``prompts.json``; multi-word verbs keep their particle: ``sitting on``)."""
    noun = obj.replace("_", " ")
    art = "an" if noun[:1] in "aeiou" else "a"
    if verb == "no_interaction":
        return f"A photo of a person and {art} {noun}"
    head, *rest = verb.split("_")
    return f"A photo of a person {' '.join([gerund(head), *rest])} {art} {noun}"


def hoi_prompts(instances: str | os.PathLike) -> list[str]:
    """One phrase per HOI from the official HOI list: the ``correspondence`` (HOI, object, verb) of a HICO-DET
    instance file with its ``objects`` / ``verbs`` names, in HOI order.

    Raises:
        DataError: the file lacks those keys or its HOIs are not numbered 0..N-1.
    """
    p = Path(instances)
    d = json.loads(p.read_text())
    for k in ("correspondence", "objects", "verbs"):
        if k not in d:
            raise DataError(f"{p}: no {k!r} key (not a HICO-DET instance file of fredzzhang/hicodet)")
    corr = sorted(d["correspondence"])
    if [c[0] for c in corr] != list(range(len(corr))):
        raise DataError(f"{p}: correspondence HOI indices are not 0..{len(corr) - 1}")
    return [hoi_phrase(d["objects"][o], d["verbs"][v]) for _, o, v in corr]


# ---------------------------------------------------------------------------------------------------- worlds
def _link(target: Path, link: Path) -> None:
    """A relative symbolic link ``link`` -> ``target`` (replacing an old link)."""
    if link.is_symlink() or link.is_file():
        link.unlink()
    link.symlink_to(os.path.relpath(target, link.parent))


def _link_images(names: Sequence[str], folders: Sequence[Path], images: Path) -> int:
    """One link per image name to the first folder holding it; returns how many were found."""
    images.mkdir(parents=True, exist_ok=True)
    found = 0
    for n in names:
        for f in folders:
            if (f / n).is_file():
                if not (images / n).exists():
                    _link(f / n, images / n)
                found += 1
                break
    return found


def layout_swig(base: Path, world: Path, rare_max: Optional[int] = None) -> dict[str, str]:
    """The SWiG world: links to the JSONs and images, and the Zellers & Choi split."""
    from .splits import OvSplit
    from .swig import load_frame_space
    j = base / "SWiG_jsons"
    for n in ("train", "dev", "test", "imsitu_space"):
        _link(j / f"{n}.json", world / f"{n}.json")
    if (base / "images_512").is_dir():
        _link(base / "images_512", world / "images")
    counts = None
    if rare_max is not None:
        from collections import Counter
        counts = Counter(s["verb"] for s in json.loads((j / "train.json").read_text()).values())
    split = OvSplit.from_zellers_choi(base / "zellers-choi" / "attributes_split.csv",
                                      list(load_frame_space(j / "imsitu_space.json").verbs),
                                      lemmas_path=base / "zellers-choi" / "imsitu_verbs.txt",
                                      train_counts=counts, rare_max=rare_max)
    split.save(world / "ov_split.json")
    return {f"{n}.json": sha256_file(j / f"{n}.json") for n in ("train", "dev", "test", "imsitu_space")}


def layout_hico(base: Path, world: Path) -> dict[str, str]:
    """The HICO-DET world: instance files, prompts from the HOI list, the bundled zero-shot splits, image links."""
    from .hico import BUNDLED_ZERO_SHOT
    _link(base / "instances_train2015.json", world / "hoi_train.json")
    _link(base / "instances_test2015.json", world / "hoi_test.json")
    atomic_write_text(world / "hoi_prompts.json", json.dumps(hoi_prompts(base / "instances_test2015.json"), indent=0))
    shutil.copyfile(BUNDLED_ZERO_SHOT, world / "hoi_zero_shot.json")
    img = base / "hico_20160224_det" / "images"
    names = [n for f in ("instances_train2015.json", "instances_test2015.json")
             for n in json.loads((base / f).read_text())["filenames"]]
    found = _link_images(names, [img / "train2015", img / "test2015"], world / "images")
    print(f"  images: {found} of {len(names)} linked")
    return {f: sha256_file(world / f) for f in ("hoi_train.json", "hoi_test.json", "hoi_prompts.json")}


def layout_vcoco(base: Path, world: Path) -> dict[str, str]:
    """The V-COCO world: the instance files and links to the COCO 2014 images they name."""
    names = []
    for n in ("trainval", "test"):
        _link(base / f"instances_vcoco_{n}.json", world / f"instances_vcoco_{n}.json")
        names += [str(a["file_name"]) for a in json.loads((base / f"instances_vcoco_{n}.json").read_text())
                  .get("annotations", [])]
    found = _link_images(names, [base / "coco" / "train2014", base / "coco" / "val2014"], world / "images")
    print(f"  images: {found} of {len(names)} linked")
    return {f"instances_vcoco_{n}.json": sha256_file(world / f"instances_vcoco_{n}.json") for n in ("trainval", "test")}


LAYOUTS = {"swig": layout_swig, "hico": layout_hico, "vcoco": layout_vcoco}


def prepare(dataset: str, root: str | os.PathLike, *, table: Optional[Sequence[Pinned]] = None,
            mirror: Optional[str] = None, images: bool = True, rare_max: Optional[int] = None) -> Path:
    """Download, verify and lay out one dataset under ``root/<dataset>/``; returns the world folder.

    Args:
        table: the files (default ``TABLE[dataset]``).
        mirror: base URL serving the files at their ``dest`` paths instead of their URLs.
        images: also the image archives (extracted once).
        rare_max: SWiG: seen verbs with at most this many training images become rare.

    Raises:
        ChecksumError: a file does not match its pinned checksum (named; nothing is laid out).
        ValueError: unknown dataset.
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {DATASETS}")
    base = Path(root) / dataset
    base.mkdir(parents=True, exist_ok=True)
    pins_file = base / "pins.json"
    recorded = json.loads(pins_file.read_text()) if pins_file.is_file() else {}
    files = [p for p in (table if table is not None else TABLE[dataset]) if images or not p.archive]
    print(f"{dataset}: {len(files)} files -> {base}")
    try:
        for pin in files:
            path = fetch_verified(pin, base, recorded, mirror)
            if pin.archive:
                extract_once(path)
    finally:
        atomic_write_text(pins_file, json.dumps(recorded, indent=1, sort_keys=True))
    world = base / "world"
    world.mkdir(exist_ok=True)
    hashes = LAYOUTS[dataset](base, world, rare_max) if dataset == "swig" else LAYOUTS[dataset](base, world)
    atomic_write_text(world / "prepared.json", json.dumps({
        "dataset": dataset, "revisions": {r: c for r, c in REVISIONS.items() if any(r in p.url for p in files)},
        "files": hashes}, indent=1))
    print(f"world: {world}")
    return world


def build_parser(sub: argparse._SubParsersAction) -> None:
    """The ``prepare`` subcommand of ``mipd data``."""
    p = sub.add_parser("prepare", help="download with pinned revisions and verified checksums, lay out the world")
    p.add_argument("dataset", choices=DATASETS)
    p.add_argument("--root", required=True, help="data folder: files go to ROOT/<dataset>/, the world to "
                   "ROOT/<dataset>/world")
    p.add_argument("--mirror", default=None, help="base URL serving the files at their paths below ROOT/<dataset> "
                   "(a local mirror), instead of their public URLs")
    p.add_argument("--no-images", action="store_true", help="annotations only (the world then lacks images)")
    p.add_argument("--rare-max", type=int, default=None, help="swig: seen verbs with at most N training images "
                   "become rare (default: none)")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``mipd data prepare ...`` (and ``mipd data download ...``, the unpinned downloader)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "prepare":
        from .download import main as download_main
        return download_main(args)
    ap = argparse.ArgumentParser(prog="mipd data")
    build_parser(ap.add_subparsers(dest="action", required=True))
    a = ap.parse_args(args)
    try:
        prepare(a.dataset, a.root, mirror=a.mirror, images=not a.no_images, rare_max=a.rare_max)
    except ChecksumError as e:
        print(f"mipd data prepare: {e}", file=sys.stderr)
        return 2
    except (urllib.error.URLError, OSError, DataError) as e:
        print(f"mipd data prepare: {e}; re-run to resume", file=sys.stderr)
        return 1
    return 0
