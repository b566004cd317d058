"""Tidy metric rows, the ``metrics.json`` contract (see README "metrics.json").

Every evaluation and every run writes a JSON list of rows, one number each::

    {"task": "gsr"|"hoi"|"jrg"|"bench"|..., "model": str, "seed": int|None, "split": str,
     "setting": str, "metric": str, "mean": "image"|"verb"|None, "value": float|null}

The file is strict JSON: a value that is undefined (NaN, e.g. a mean over a split with no ground truth, or an
infinite one) is written as ``null`` and read back as ``float("nan")``; a bare ``NaN`` written by older versions is
still read. Aggregation helpers are pure functions over lists of rows.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Optional

from mipd_kit.fileio import file_lock, write_json

KEY_FIELDS = ("task", "model", "seed", "split", "setting", "metric", "mean")


@dataclass(frozen=True)
class MetricRow:
    task: str
    model: str
    seed: Optional[int]
    split: str
    setting: str
    metric: str
    mean: Optional[str]
    value: float

    def key(self) -> tuple:
        return tuple(getattr(self, k) for k in KEY_FIELDS)


def row(task: str, model: str, split: str, setting: str, metric: str, value: float, *,
        seed: Optional[int] = None, mean: Optional[str] = None) -> MetricRow:
    """Build one row; ``value`` is stored as a float."""
    return MetricRow(task, model, seed, split, setting, metric, mean, float(value))


def read_rows(path: str | os.PathLike) -> list[MetricRow]:
    """Read ``metrics.json``; a missing file is an empty list."""
    p = Path(path)
    if not p.exists():
        return []
    try:
        data = json.loads(p.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{p}: not valid JSON ({e})") from e
    except IsADirectoryError as e:
        raise ValueError(f"{p}: is a folder, not a metrics file") from e
    if not isinstance(data, list):
        raise ValueError(f"{p}: metrics.json must be a list of rows")
    out = []
    for i, d in enumerate(data):
        if not isinstance(d, dict):
            raise ValueError(f"{p}: row {i} is not an object")
        try:
            r = {k: d[k] for k in (*KEY_FIELDS, "value")}
        except KeyError as e:
            raise ValueError(f"{p}: row {i} lacks key {e}") from e
        v = r["value"]
        if v is None:
            r["value"] = math.nan  # null = undefined
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{p}: row {i} value must be a number or null, got {v!r}")
        out.append(MetricRow(**r))
    return out


def write_rows(path: str | os.PathLike, rows: Iterable[MetricRow]) -> None:
    """Write rows atomically as strict JSON (NaN / inf values -> ``null``, meaning undefined)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    write_json(p, [asdict(r) for r in rows])


def merge_rows(path: str | os.PathLike, rows: Iterable[MetricRow]) -> list[MetricRow]:
    """Add rows to ``metrics.json``, replacing rows with the same key; returns the merged list.

    The read-modify-write holds a lock (``.metrics.json.lock`` beside the file), so two processes merging into one
    file at once both keep their rows.
    """
    new = list(rows)
    keys = {r.key() for r in new}
    p = Path(path)
    with file_lock(p.with_name(f".{p.name}.lock")):
        merged = [r for r in read_rows(p) if r.key() not in keys] + new
        write_rows(p, merged)
    return merged


def aggregate_seeds(rows: Iterable[MetricRow]) -> list[MetricRow]:
    """Seed-aggregated rows: for every key but the seed, ``<metric>_mean`` and ``<metric>_std`` with ``seed=None``.

    The standard deviation is the sample std (0.0 for a single seed).
    """
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        if r.seed is None:
            continue
        groups.setdefault((r.task, r.model, r.split, r.setting, r.metric, r.mean), []).append(r.value)
    out = []
    for (task, model, split, setting, metric, mean), vals in groups.items():
        m = statistics.fmean(vals)
        s = statistics.stdev(vals) if len(vals) > 1 else 0.0
        out.append(MetricRow(task, model, None, split, setting, metric + "_mean", mean, m))
        out.append(MetricRow(task, model, None, split, setting, metric + "_std", mean, s if not math.isnan(s) else 0.0))
    return out
