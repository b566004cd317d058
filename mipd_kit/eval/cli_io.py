"""What the evaluator CLIs share: the strict predictions reader, number / box checks and the ``--out`` guard.

Evaluators never destroy results: writing to an ``--out`` file that exists needs ``--merge`` (add the new rows,
replacing rows with the same key) or ``--overwrite`` (replace the file). Every user error -- an unreadable,
binary, truncated or duplicated-key file, a folder given as a file, a corrupt ``--merge`` target, an unwritable
``--out`` -- is a ``DataError`` with one line naming the file and the record; the CLIs print it and exit 2.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any, Iterable

from mipd_kit.data.records import DataError
from mipd_kit.fileio import read_json
from mipd_kit.metrics import MetricRow, merge_rows, read_rows, write_rows

#: exit code of every evaluator CLI for a user error (bad file, bad argument)
USER_ERROR = 2


def is_real(v: Any) -> bool:
    """A finite real number (``int`` or ``float``, not ``bool``, not a numeric string)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


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
    parent = p.parent if str(p.parent) else Path(".")
    probe = parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise DataError(f"{p}: cannot write there ({probe} is not a writable folder)")


def write_out(out: str | os.PathLike, rows: Iterable[MetricRow], merge: bool) -> list[MetricRow]:
    """Write (or merge) the rows; an OS error becomes a ``DataError`` naming the file. Returns what was written."""
    rows = list(rows)
    try:
        if merge:
            return merge_rows(out, rows)
        write_rows(out, rows)
        return rows
    except OSError as e:
        raise DataError(f"{out}: cannot write ({e.strerror or e})") from e
    except ValueError as e:
        raise DataError(f"cannot merge into {out}: {e}") from e
