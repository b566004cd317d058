"""What the evaluator CLIs share: the strict predictions reader, number / box checks and the ``--out`` guard.

Evaluators never destroy results: writing to an ``--out`` file that exists needs ``--merge`` (add the new rows,
replacing rows with the same key) or ``--overwrite`` (replace the file); a ``--report`` that exists needs
``--overwrite``. Both are written under the lock beside the file that ``metrics.merge_rows`` holds, checked again
there, so two evaluators racing for one new file never lose rows silently. Predictions that match no ground-truth
image are refused (:func:`check_matched`). Every user error -- an unreadable,
binary, truncated or duplicated-key file, a folder given as a file, a corrupt ``--merge`` target, an unwritable
``--out`` -- is a ``DataError`` with one line naming the file and the record; the CLIs print it and exit 2.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any, Iterable, Optional

from mipd_kit.data.records import DataError
from mipd_kit.fileio import file_lock, read_json, write_json
from mipd_kit.metrics import MetricRow, merge_rows, read_rows, write_rows

#: exit code of every evaluator CLI for a user error (bad file, bad argument)
USER_ERROR = 2


def is_real(v: Any) -> bool:
    """A finite real number (``int`` or ``float``, not ``bool``, not a numeric string; an integer too large for a
    float, such as a 400-digit one, is not)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def check_box(b: Any, where: str, what: str = "box") -> list[float]:
    """``b`` as 4 floats, or ``DataError`` naming ``where`` unless it is a list of 4 finite real numbers."""
    if not isinstance(b, (list, tuple)) or len(b) != 4 or not all(is_real(c) for c in b):
        raise DataError(f"{where}: {what} must be [x1, y1, x2, y2] of 4 finite numbers, got {b!r}")
    return [float(c) for c in b]


def check_score(v: Any, where: str, what: str = "score") -> float:
    """``v`` as a float, or ``DataError`` naming ``where`` unless it is a finite real number (not bool / str)."""
    if not is_real(v):
        raise DataError(f"{where}: {what} must be a finite number, got {v!r}")
    return float(v)


def read_predictions(path: str | os.PathLike) -> dict:
    """A predictions JSON object ``{image: ...}`` read strictly (:func:`mipd_kit.fileio.read_json`)."""
    d = read_json(path)
    if not isinstance(d, dict):
        raise DataError(f"{path}: predictions must be a JSON object keyed by image file name")
    return d


def add_out_arguments(ap: argparse.ArgumentParser, merge_help: str = "") -> None:
    """``--out``, ``--merge`` and ``--overwrite`` (the last two exclusive)."""
    ap.add_argument("--out", required=True, help="metrics JSON to write (tidy rows)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--merge", action="store_true",
                   help=merge_help or "add the rows to an existing --out (rows with the same key are replaced)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def check_out(out: str | os.PathLike, merge: bool, overwrite: bool) -> None:
    """Refuse, before any work, an ``--out`` that cannot be written or would be destroyed without being asked."""
    p = Path(out)
    if p.is_dir():
        raise DataError(f"{p}: --out is a folder; give a file name such as {p / 'metrics.json'}")
    if p.exists():
        if not (merge or overwrite):
            raise DataError(f"{p}: exists; pass --merge to add these rows to it (same-key rows replaced) or "
                            "--overwrite to replace the file")
        if merge:
            try:
                read_rows(p)
            except (ValueError, OSError) as e:
                raise DataError(f"cannot merge into {p}: {e}") from e
    _check_writable_parent(p)


def _check_writable_parent(p: Path) -> None:
    """``DataError`` unless the nearest existing folder above ``p`` is a writable folder."""
    parent = p.parent if str(p.parent) else Path(".")
    probe = parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise DataError(f"{p}: cannot write there ({probe} is not a writable folder)")


def write_out(out: str | os.PathLike, rows: Iterable[MetricRow], merge: bool,
              overwrite: bool = False) -> list[MetricRow]:
    """Write (or merge) the rows under the lock beside ``out`` (the one :func:`mipd_kit.metrics.merge_rows`
    holds); an OS error becomes a ``DataError`` naming the file. Returns what was written.

    Without ``merge`` or ``overwrite``, a file that another process wrote while this one was scoring is refused
    (never replaced): two evaluators started on one new ``--out`` keep the first one's rows, and the second exits 2
    telling to ``--merge``.
    """
    rows = list(rows)
    p = Path(out)
    try:
        if merge:
            return merge_rows(p, rows)
        with file_lock(p.with_name(f".{p.name}.lock")):
            if p.exists() and not overwrite:
                raise DataError(f"{p}: was written by another process while this one was scoring; nothing was "
                                "overwritten: pass --merge to add these rows to it, or --overwrite")
            write_rows(p, rows)
        return rows
    except OSError as e:
        raise DataError(f"{out}: cannot write ({e.strerror or e})") from e
    except DataError:
        raise
    except ValueError as e:
        raise DataError(f"cannot merge into {out}: {e}") from e


def check_report(path: Optional[str | os.PathLike], overwrite: bool) -> None:
    """Refuse, before any work, a ``--report`` file that exists (without ``--overwrite``), is a folder or cannot be
    written."""
    if not path:
        return
    p = Path(path)
    if p.is_dir():
        raise DataError(f"{p}: --report is a folder; give a file name such as {p / 'report.json'}")
    if p.exists() and not overwrite:
        raise DataError(f"{p}: --report exists; pass --overwrite to replace it (or choose another file)")
    _check_writable_parent(p)


def write_report(path: str | os.PathLike, obj: Any, overwrite: bool) -> None:
    """Write a JSON report atomically under the lock beside it; a file that appeared meanwhile is refused unless
    ``overwrite``."""
    p = Path(path)
    try:
        with file_lock(p.with_name(f".{p.name}.lock")):
            if p.exists() and not overwrite:
                raise DataError(f"{p}: was written by another process while this one was scoring; nothing was "
                                "overwritten: pass --overwrite to replace it")
            write_json(p, obj)
    except OSError as e:
        raise DataError(f"{p}: cannot write the report ({e.strerror or e})") from e


def check_matched(pred_src: str | os.PathLike, pred_images: Iterable[str], gt_src: str | os.PathLike,
                  gt_images: Iterable[str]) -> int:
    """The number of predicted images that are in the ground truth; a ``DataError`` naming both counts when none
    is (a scoring tool that would score nothing says so instead of writing all-zero metrics)."""
    pred_set, gt_set = set(pred_images), set(gt_images)
    n = len(pred_set & gt_set)
    if not n:
        raise DataError(f"{pred_src}: none of its {len(pred_set)} predicted image(s) is among the {len(gt_set)} "
                        f"image(s) of {gt_src}; nothing to score (wrong --pred or --gt?)")
    return n
