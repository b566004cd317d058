"""Tidy metric rows, the ``metrics.json`` contract (docs/data-formats.md, "metrics.json").

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


@dataclass(frozen=True)
class SeedStats:
    """One number aggregated over seeds: the mean, the sample standard deviation and the number of seeds."""

    mean: float
    std: float
    n: int

    def fmt(self, digits: int = 1, show_n: bool = True) -> str:
        """``mean ± std (n)`` for several seeds (``(n)`` only with ``show_n``), ``mean`` alone for one."""
        if self.n > 1:
            return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}" + (f" ({self.n})" if show_n else "")
        return f"{self.mean:.{digits}f}"


def seed_stats(values: Iterable[float]) -> SeedStats:
    """The one seed aggregation of the toolkit: mean and **sample** std (``n - 1``; 0.0 for a single seed).

    Every table, ``metrics.json``'s ``*_mean`` / ``*_std`` rows and the README / docs/results.md numbers go through
    this function. With a NaN or infinite value among them the std is reported as 0.0 and the mean shows the NaN / inf.
    """
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("seed_stats needs at least one value")
    finite = all(math.isfinite(v) for v in vals)  # statistics.stdev raises on NaN / inf
    s = statistics.stdev(vals) if len(vals) > 1 and finite else 0.0
    return SeedStats(statistics.fmean(vals), s, len(vals))


def group_seeds(rows: Iterable[MetricRow]) -> dict[tuple, list[float]]:
    """Per-seed rows (``seed`` not None) grouped by their key without the seed, in first-seen order.

    The key is ``(task, model, split, setting, metric, mean)``; rows with ``seed=None`` are skipped.
    """
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        if r.seed is not None:
            groups.setdefault((r.task, r.model, r.split, r.setting, r.metric, r.mean), []).append(r.value)
    return groups


def aggregate_seeds(rows: Iterable[MetricRow]) -> list[MetricRow]:
    """Seed-aggregated rows: for every key but the seed, ``<metric>_mean`` and ``<metric>_std`` with ``seed=None``
    (:func:`seed_stats` of the per-seed values)."""
    out = []
    for (task, model, split, setting, metric, mean), vals in group_seeds(rows).items():
        st = seed_stats(vals)
        out.append(MetricRow(task, model, None, split, setting, metric + "_mean", mean, st.mean))
        out.append(MetricRow(task, model, None, split, setting, metric + "_std", mean, st.std))
    return out
