"""Released embedded weights: the toolkit's own "pretrained weights", shipped in the package with a manifest.

The embedded teacher and the embedded captioner are trained once by a committed command (``mipd pretrain``,
``mipd_kit.language.pretrain``; the default student: ``mipd release-student`` from a finished run) and saved here
as fp16 safetensors, the way ``pretrained="openai"`` names released CLIP weights for open_clip. ``manifest.json``
lists each release by name (``embedded-teacher-default``, ``embedded-captioner-default``, ...) with, per file, its
sha256 and size, and how the release was made: the exact command, the data fingerprint of the world's pretraining
corpus, the training config, the training wall time and machine, and (teacher) the zero-shot numbers. A release is
resolved to its folder only after every file's sha256 matched the manifest; the whole folder is kept under
:data:`MAX_TOTAL_BYTES` (each replacement adds its size to the git history, so releases are replaced rarely).

This module is the lowest layer (beside ``fileio``): it knows files, hashes and the manifest, not models.

Public API: :data:`WEIGHTS_DIR`, :data:`MAX_TOTAL_BYTES`, :class:`ReleaseError`, :func:`weights_dir`,
:func:`read_manifest`, :func:`list_releases`, :func:`get_release`, :func:`resolve`, :func:`verify`,
:func:`total_size`, :func:`check_total_size`, :func:`write_release`, :func:`file_sha256`, :func:`release_name`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Optional

from mipd_kit.fileio import DataError, atomic_write_text, dumps, file_lock, read_json, replace_dir, unique_tmp

#: the package folder holding ``manifest.json`` and one sub-folder per release
WEIGHTS_DIR = Path(__file__).resolve().parent
#: the environment variable that points the loaders at another weights folder (tests, a private release)
ENV_VAR = "MIPD_WEIGHTS_DIR"
#: ceiling on the bytes of all released files together (30 MB)
MAX_TOTAL_BYTES = 30_000_000
MANIFEST = "manifest.json"
FORMAT = "mipd-weights/1"
KINDS = ("teacher", "captioner", "student")


class ReleaseError(DataError):
    """A release that is unknown, incomplete, or whose files do not match the manifest (names file and hashes)."""


_log = logging.getLogger(__name__)


def release_mismatch(entry: Optional[dict[str, Any]], what: str, fingerprint_field: str, have: str,
                     world_dir: str | os.PathLike, weights: str, missing: str) -> Optional[str]:
    """Why a release cannot serve this world (``None``: it can): no matching ``entry`` (``missing`` says why) or a
    pretraining corpus whose fingerprint ``have`` differs from the entry's ``fingerprint_field``. With
    ``weights == "released"`` the reason is raised as ``ReleaseError`` (``what``: e.g. "teacher", "captioner").
    ``weights == "released-any"`` accepts a release pretrained on another corpus (as a downloaded foundation model
    is: the study's other world seeds use the seed-0 releases) and raises only when no release matches the config."""
    if entry is None:
        reason, fix = missing, "run `mipd pretrain` or set weights: retrain"
    elif entry.get(fingerprint_field) != have:
        if weights == "released-any":  # a foundation model pretrained on another corpus, used as downloaded
            _log.info("%s: release %s (pretrained on corpus %s) used on the world %s (corpus %s): weights "
                      "released-any", what, entry["name"], entry.get(fingerprint_field), world_dir, have)
            return None
        reason = (f"release {entry['name']} was trained on pretraining corpus {entry.get(fingerprint_field)}, "
                  f"the world {world_dir} has corpus {have}")
        fix = "set weights: retrain to train on this world"
    else:
        return None
    if weights in ("released", "released-any"):
        raise ReleaseError(f"{what} weights 'released': {reason}; {fix}")
    return reason


def weights_dir(root: Optional[str | os.PathLike] = None) -> Path:
    """The weights folder: ``root`` if given, else ``$MIPD_WEIGHTS_DIR`` if set, else the package's own."""
    if root is not None:
        return Path(root)
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else WEIGHTS_DIR


def release_name(kind: str, size: str) -> str:
    """``embedded-<kind>-<size>``, e.g. ``embedded-teacher-default``."""
    if kind not in KINDS:
        raise ValueError(f"release kind {kind!r} is not one of {KINDS}")
    return f"embedded-{kind}-{size}"


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(root: Optional[str | os.PathLike] = None) -> dict[str, Any]:
    """The manifest as ``{"format": ..., "releases": {name: entry}}``; an absent manifest is an empty one.

    Raises:
        ReleaseError: the manifest is not valid JSON or not a manifest (naming the file).
    """
    p = weights_dir(root) / MANIFEST
    if not p.exists():
        return {"format": FORMAT, "releases": {}}
    try:
        m = read_json(p)
    except DataError as e:
        raise ReleaseError(str(e)) from e
    if not isinstance(m, dict) or m.get("format") != FORMAT or not isinstance(m.get("releases"), dict):
        raise ReleaseError(f"{p}: not a weights manifest (expected format {FORMAT!r} and a 'releases' mapping)")
    for name, e in m["releases"].items():
        if not isinstance(e, dict) or not isinstance(e.get("files"), dict) or not e["files"]:
            raise ReleaseError(f"{p}: release {name!r} lists no files")
        for f, fe in e["files"].items():
            if (not isinstance(fe, dict) or not isinstance(fe.get("sha256"), str)
                    or not isinstance(fe.get("bytes"), int)):
                raise ReleaseError(f"{p}: release {name!r} file {f!r} lacks a sha256 string or a bytes count")
    return m


def list_releases(root: Optional[str | os.PathLike] = None, kind: Optional[str] = None) -> list[dict[str, Any]]:
    """Every release's manifest entry (with its ``name``), sorted by name; only ``kind`` when given."""
    rel = read_manifest(root)["releases"]
    return [{"name": n, **rel[n]} for n in sorted(rel) if kind is None or rel[n].get("kind") == kind]


def get_release(name: str, root: Optional[str | os.PathLike] = None) -> Optional[dict[str, Any]]:
    """The manifest entry of ``name`` (with its ``name``), or ``None`` when there is no such release."""
    e = read_manifest(root)["releases"].get(name)
    return None if e is None else {"name": name, **e}


def verify(name: str, root: Optional[str | os.PathLike] = None) -> list[str]:
    """Problems of a release's files against the manifest (empty = all files present with the listed size and
    sha256). Each problem names the file, and for a hash mismatch the expected and the actual sha256."""
    base = weights_dir(root)
    e = get_release(name, root)
    if e is None:
        return [f"{base / MANIFEST}: no release named {name!r}"]
    out = []
    for rel, fe in sorted(e["files"].items()):
        p = base / name / rel
        if not p.is_file():
            out.append(f"{p}: file of release {name!r} is missing")
            continue
        size = p.stat().st_size
        if size != fe["bytes"]:
            out.append(f"{p}: {size} bytes, the manifest says {fe['bytes']} (release {name!r})")
        actual = file_sha256(p)
        if actual != fe["sha256"]:
            out.append(f"{p}: sha256 mismatch for release {name!r}: expected {fe['sha256']}, actual {actual}")
    return out


def resolve(name: str, root: Optional[str | os.PathLike] = None) -> Path:
    """The verified folder of release ``name``.

    Raises:
        ReleaseError: unknown name (listing the known ones), or a file missing, of the wrong size, or whose sha256
            differs from the manifest (naming the file, the expected and the actual hash).
    """
    base = weights_dir(root)
    if get_release(name, root) is None:
        known = [r["name"] for r in list_releases(root)]
        raise ReleaseError(f"{base / MANIFEST}: no release named {name!r}; released: {known or 'none'}")
    problems = verify(name, root)
    if problems:
        raise ReleaseError("; ".join(problems))
    return base / name


def total_size(root: Optional[str | os.PathLike] = None) -> int:
    """Bytes of all files the manifest lists (as listed)."""
    return sum(fe["bytes"] for e in read_manifest(root)["releases"].values() for fe in e["files"].values())


def check_total_size(root: Optional[str | os.PathLike] = None, limit: int = MAX_TOTAL_BYTES) -> int:
    """The total size, or ``ReleaseError`` when it exceeds ``limit`` bytes (listing each release's size)."""
    rel = read_manifest(root)["releases"]
    total = total_size(root)
    if total > limit:
        sizes = {n: sum(fe["bytes"] for fe in e["files"].values()) for n, e in rel.items()}
        raise ReleaseError(f"{weights_dir(root) / MANIFEST}: released weights take {total} bytes, more than the "
                           f"{limit} allowed ({sizes})")
    return total


def write_release(name: str, src_dir: str | os.PathLike, entry: dict[str, Any],
                  root: Optional[str | os.PathLike] = None, limit: int = MAX_TOTAL_BYTES) -> Path:
    """Copy the files of ``src_dir`` into ``root/name`` and record them (sha256, bytes) and ``entry`` in the
    manifest, atomically: the folder is renamed into place, then the manifest is rewritten through a temporary file,
    under a lock. The size ceiling is checked before anything is replaced.

    Args:
        name: the release name (``embedded-teacher-default``).
        src_dir: a folder of plain files (one level).
        entry: what the manifest says of the release besides its files (kind, command, fingerprints, ...).

    Raises:
        ReleaseError: the release would take the weights folder over ``limit`` bytes.
    """
    base = weights_dir(root)
    base.mkdir(parents=True, exist_ok=True)
    src = Path(src_dir)
    files = {p.name: {"sha256": file_sha256(p), "bytes": p.stat().st_size}
             for p in sorted(src.iterdir()) if p.is_file()}
    if not files:
        raise ReleaseError(f"{src}: no files to release as {name!r}")
    with file_lock(base / f".{MANIFEST}.lock"):
        m = read_manifest(base)
        others = sum(fe["bytes"] for n, e in m["releases"].items() if n != name for fe in e["files"].values())
        new = sum(fe["bytes"] for fe in files.values())
        if others + new > limit:
            raise ReleaseError(f"{base / MANIFEST}: releasing {name!r} ({new} bytes) would take the weights to "
                               f"{others + new} bytes, more than the {limit} allowed")
        tmp = unique_tmp(base / name)
        tmp.mkdir()
        try:
            for f in files:
                shutil.copyfile(src / f, tmp / f)
            replace_dir(tmp, base / name)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        m["releases"][name] = {**{k: v for k, v in entry.items() if k != "files"}, "files": files}
        m["releases"] = dict(sorted(m["releases"].items()))
        atomic_write_text(base / MANIFEST, dumps(m, indent=1) + "\n")
    return base / name


def record_calibration(name: str, calibration: dict[str, Any], root: Optional[str | os.PathLike] = None) -> None:
    """Store ``calibration`` (what a committed calibration command measured of release ``name``: its command, world
    and rows) in that release's manifest entry, under the manifest lock; the files are not touched.

    Raises:
        ReleaseError: no release named ``name``.
    """
    base = weights_dir(root)
    with file_lock(base / f".{MANIFEST}.lock"):
        m = read_manifest(base)
        if name not in m["releases"]:
            raise ReleaseError(f"{base / MANIFEST}: no release named {name!r}")
        m["releases"][name]["calibration"] = calibration
        atomic_write_text(base / MANIFEST, dumps(m, indent=1) + "\n")
