"""Safe file primitives shared by every store: an inter-process lock, atomic writes and strict JSON.

- ``file_lock(path)``: an exclusive ``fcntl.flock`` on a lock file, held for a ``with`` block. Each call opens its
  own descriptor, so it excludes other processes *and* other threads of this process.
- ``atomic_write_text(path, text)``: write to a uniquely named temporary file in the same folder, then
  ``os.replace`` it into place; two writers never share a temporary name and a reader sees the old or the new file,
  never a half-written one. A killed writer leaves at most a ``.*.tmp`` file behind.
- ``atomic_write_bytes`` / ``atomic_open`` (a file object for streamed writes) / ``atomic_path`` (a temporary
  name for a writer that takes a file name: safetensors, ``torch.save``, an image's ``save``): the same guarantee.
- ``move_into_place``: a finished file (or folder) renamed onto its final name; ``replace_dir``: a finished folder
  swapped in for an existing one (the old one removed after, restored if the swap fails); ``atomic_symlink``: a
  symlink replaced in one step. Every atomic write of the package goes through these (``os.replace`` appears here
  only).
- ``dumps`` / ``write_json``: strict JSON (RFC 8259): a float that is NaN or infinite is written as ``null``
  (meaning "undefined", e.g. a metric with no ground truth in that split) instead of the bare ``NaN`` that strict
  parsers reject.
- ``check_output_path``: an output path refused before any work when it cannot be written (a folder for a file,
  a file in the way, a read-only folder) or would be replaced without ``--overwrite``.
- ``redact_file``: a text file rewritten through the one redaction function (:mod:`mipd_kit.redaction`).
- ``loads_strict``: JSON that refuses duplicate object keys and the non-standard ``NaN`` / ``Infinity`` constants
  (raised as ``ValueError`` with the key or constant named).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator


class DataError(ValueError):
    """Bad input data: the message names the file and the record (also importable from ``mipd_kit.data.records``)."""


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created with its folder if absent) for the ``with`` block.

    The lock is released when the block ends or the process dies (the kernel drops ``flock`` locks with the
    descriptor), so a killed holder never leaves a stale lock.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def check_output_path(path: str | os.PathLike, flag: str = "--out", folder: bool = False,
                      overwrite: bool = True) -> Path:
    """Refuse, before any work, an output path that cannot be written: ``DataError`` with one line when ``path``
    is a folder where a file is wanted (or a file where a folder is wanted, ``folder=True``), exists and
    ``overwrite`` is False, or when the nearest existing folder above it is not a writable folder (a file in the
    way, a read-only mount). Missing parent folders are fine (the writer creates them). Returns ``Path(path)``."""
    p = Path(path)
    if folder and p.exists() and not p.is_dir():
        raise DataError(f"{p}: {flag} is a file; give a folder")
    if not folder and p.is_dir():
        raise DataError(f"{p}: {flag} is a folder; give a file name")
    if p.exists() and not overwrite:
        raise DataError(f"{p}: {flag} exists; pass --overwrite to replace it")
    probe = p if folder and p.is_dir() else (p.parent if str(p.parent) else Path("."))
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise DataError(f"{p}: {flag} cannot be written: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise DataError(f"{p}: {flag} cannot be written: {probe} is not a writable folder")
    return p


def unique_tmp(path: str | os.PathLike) -> Path:
    """A temporary name next to ``path`` that no other process or thread uses (pid + random suffix)."""
    p = Path(path)
    return p.with_name(f".{p.name}.{os.getpid()}-{uuid.uuid4().hex[:10]}.tmp")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (unique temporary file + ``os.replace``)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (unique temporary file + ``os.replace``)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A unique temporary name next to ``path`` for a writer that takes a file (or folder) name; moved onto ``path``
    when the ``with`` block ends without an error, removed when it raises."""
    p = Path(path)
    tmp = unique_tmp(p)
    try:
        yield tmp
        os.replace(tmp, p)
    except BaseException:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str = "utf-8") -> Iterator[Any]:
    """A file object (``mode`` ``"w"`` or ``"wb"``) on a temporary file next to ``path``, moved onto ``path`` when the
    ``with`` block ends without an error (streamed writes: JSON lines, ``json.dump``)."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
            yield f


def move_into_place(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Rename a finished file or folder ``src`` onto ``dest`` in one step (same file system; a file at ``dest`` is
    replaced); returns ``dest``."""
    os.replace(src, dest)
    return Path(dest)


def replace_dir(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Swap the finished folder ``src`` in for ``dest``: an existing ``dest`` is moved aside, ``src`` renamed onto
    it, then the old one removed; if the rename fails the old folder is put back. Returns ``dest``."""
    dest = Path(dest)
    old = None
    if dest.exists():
        old = unique_tmp(dest).with_suffix(".old")
        os.replace(dest, old)
    try:
        os.replace(src, dest)
    except BaseException:
        if old is not None:
            os.replace(old, dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return dest


def atomic_symlink(link: str | os.PathLike, target: str | os.PathLike) -> None:
    """Point the symlink ``link`` at ``target`` in one step (a new link under a unique name, renamed onto ``link``)."""
    with atomic_path(link) as tmp:
        tmp.symlink_to(target)


def finite_or_none(obj: Any) -> Any:
    """``obj`` with every NaN / infinite float (also inside lists, tuples and dicts) replaced by ``None``."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def dumps(obj: Any, **kw: Any) -> str:
    """Strict JSON text of ``obj``: NaN / infinite floats become ``null`` (undefined)."""
    try:
        return json.dumps(obj, allow_nan=False, **kw)  # fast path: nothing to replace
    except ValueError:
        return json.dumps(finite_or_none(obj), allow_nan=False, **kw)


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 1) -> None:
    """Atomically write ``obj`` as strict JSON (NaN / inf -> ``null``) with a final newline."""
    atomic_write_text(path, dumps(obj, indent=indent) + "\n")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name} (use null)")


def loads_strict(text: str) -> Any:
    """Parse JSON refusing duplicate keys and NaN / Infinity (``ValueError``; ``json.JSONDecodeError`` is one)."""
    return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file strictly: one line of ``DataError`` naming the file for every way it can be wrong.

    Refused: a missing file, a folder, an unreadable file, a binary or non-UTF-8 file, an empty file, truncated or
    malformed JSON (with line and column), a duplicated object key (a duplicated image or role, named), JSON nested
    too deeply for the parser, an integer too long to convert (over 4300 digits).
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError as e:
        raise DataError(f"{p}: file not found") from e
    except IsADirectoryError as e:
        raise DataError(f"{p}: is a folder, not a JSON file") from e
    except OSError as e:
        raise DataError(f"{p}: cannot read ({e.strerror or e})") from e
    if b"\x00" in raw[:65536]:
        raise DataError(f"{p}: binary file, not JSON text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{p}: not UTF-8 text (byte {e.start}); not a JSON file?") from e
    if not text.strip():
        raise DataError(f"{p}: empty file")

    def hook(pairs: list[tuple[str, Any]]) -> dict:
        try:
            return _no_duplicates(pairs)
        except ValueError:
            seen: set = set()
            dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
            raise DataError(f"{p}: duplicated key {dup!r} (a duplicated image or role)") from None

    try:
        return json.loads(text, object_pairs_hook=hook)
    except json.JSONDecodeError as e:
        what = "truncated JSON" if e.pos >= len(text.rstrip()) else "malformed JSON"
        raise DataError(f"{p}: not valid JSON: {what} at line {e.lineno} column {e.colno}: {e.msg}") from e
    except RecursionError as e:
        raise DataError(f"{p}: JSON nested too deeply to read (arrays / objects inside each other)") from e
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        raise DataError(f"{p}: unreadable number in JSON ({str(e).split(';')[0]})") from e


def redact_file(path: str | os.PathLike) -> bool:
    """Rewrite a UTF-8 text file atomically through :func:`mipd_kit.redaction.redact`; returns whether it changed.
    A binary, non-UTF-8 or missing file is left as it is."""
    from .redaction import redact

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
        return False
    new = redact(text)
    if new == text:
        return False
    atomic_write_text(p, new)
    return True
