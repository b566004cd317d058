"""Tidy metric rows, the ``metrics.json`` contract (docs/data-formats.md, "metrics.json").

Every evaluation and every run writes a JSON list of rows, one number each::

    {"task": "gsr"|"hoi"|"jrg"|"bench"|..., "model": str, "seed": int|None, "split": str,
     "setting": str, "metric": str, "mean": "image"|"verb"|None, "value": float|null}

Rows of a study (task ``gsr-study`` / ``hoi-study``: paired differences between two models) add ``"lo"`` and
``"hi"``, the bounds of a 95% paired bootstrap interval (:func:`paired_bootstrap`); other rows have neither key.

The file is strict JSON: a value that is undefined (NaN, e.g. a mean over a split with no ground truth, or an
infinite one) is written as ``null`` and read back as ``float("nan")``; a bare ``NaN`` in a file is
read as ``float("nan")`` too. Aggregation helpers are pure functions over lists of rows.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Optional, Sequence

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
    lo: Optional[float] = None  # interval bounds (study rows only)
    hi: Optional[float] = None

    def key(self) -> tuple:
        return tuple(getattr(self, k) for k in KEY_FIELDS)

    def to_json(self) -> dict:
        """The row as written: ``lo`` / ``hi`` only when set."""
        d = asdict(self)
        for k in ("lo", "hi"):
            if d[k] is None:
                d.pop(k)
        return d


def row(task: str, model: str, split: str, setting: str, metric: str, value: float, *,
        seed: Optional[int] = None, mean: Optional[str] = None, lo: Optional[float] = None,
        hi: Optional[float] = None) -> MetricRow:
    """Build one row; ``value`` (and ``lo`` / ``hi`` when given) stored as floats."""
    return MetricRow(task, model, seed, split, setting, metric, mean, float(value),
                     None if lo is None else float(lo), None if hi is None else float(hi))


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
        for k in ("lo", "hi"):
            if k in d:
                b = d[k]
                if b is not None and (isinstance(b, bool) or not isinstance(b, (int, float))):
                    raise ValueError(f"{p}: row {i} {k} must be a number or null, got {b!r}")
                r[k] = math.nan if b is None else float(b)
        out.append(MetricRow(**r))
    return out


def write_rows(path: str | os.PathLike, rows: Iterable[MetricRow]) -> None:
    """Write rows atomically as strict JSON (NaN / inf values -> ``null``, meaning undefined)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    write_json(p, [r.to_json() for r in rows])


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


# ----------------------------------------------------------------------------------------------- paired bootstrap
def paired_bootstrap(a: Sequence[float], b: Sequence[float], level: float = 0.95, n_boot: int = 10000,
                     seed: int = 0) -> tuple[float, float, float]:
    """Mean paired difference ``mean(a_i - b_i)`` and its percentile bootstrap interval (Efron & Tibshirani, 1993),
    computed by ``scipy.stats.bootstrap`` (``paired=True``, ``method="percentile"``).

    The pairs (e.g. the same world seed and student seed for two models) are resampled with replacement ``n_boot``
    times; the interval is the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the resampled means. With
    few pairs (3 x 3 in the study) the percentile interval is somewhat narrower than its nominal level.

    Args:
        a, b: paired values, same length >= 1.
        level: coverage of the interval (0.95).
        n_boot: bootstrap resamples.
        seed: seeds the resampling (``numpy.random.default_rng(seed)``: the interval is a function of the data and
            the seed).

    Returns:
        ``(mean difference, lo, hi)``.
    """
    if len(a) != len(b) or not len(a):
        raise ValueError(f"paired_bootstrap needs two equally long non-empty sequences, got {len(a)} and {len(b)}")
    if not 0 < level < 1:
        raise ValueError(f"paired_bootstrap level must be in (0, 1), got {level}")
    import numpy as np
    from scipy.stats import bootstrap

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = x - y
    mean = statistics.fmean(d.tolist())
    if np.all(d == d[0]):  # every resample has the same mean (scipy would warn of degenerate data)
        return mean, float(d[0]), float(d[0])
    res = bootstrap((x, y), lambda u, v, axis: np.mean(u - v, axis=axis), paired=True, vectorized=True,
                    n_resamples=n_boot, confidence_level=level, method="percentile", rng=np.random.default_rng(seed))
    return mean, float(res.confidence_interval.low), float(res.confidence_interval.high)


def paired_difference_rows(rows: Iterable[MetricRow], pairs: Sequence[tuple[str, str]], task: str = "gsr",
                           study_task: Optional[str] = None, pair_key: Callable[[MetricRow], Hashable] = lambda r: r.seed,
                           level: float = 0.95, n_boot: int = 10000, seed: int = 0) -> list[MetricRow]:
    """Study rows of paired differences ``a - b`` for every (split, setting, metric, mean) both models have.

    Per-seed rows (``seed`` not None) of task ``task`` are paired by ``pair_key`` (default the seed; a study over
    several worlds passes ``(world seed, student seed)``). For each pair of models and each key the rows are (task
    ``<task>-study``, model ``"a - b"``, seed None, metric ``<metric>_diff``): ``value`` the mean difference with
    ``lo`` / ``hi`` its :func:`paired_bootstrap` interval, and ``<metric>_diff_std`` its :func:`seed_stats` std.
    Keys with fewer than one common pair are skipped.
    """
    by: dict[tuple, dict[Hashable, float]] = {}
    for r in rows:
        if r.seed is None or r.task != task:
            continue
        by.setdefault((r.model, r.split, r.setting, r.metric, r.mean), {})[pair_key(r)] = r.value
    out = []
    keys = sorted({k[1:] for k in by}, key=lambda k: tuple("" if x is None else str(x) for x in k))
    for a, b in pairs:
        for split, setting, metric, mean in keys:
            va, vb = by.get((a, split, setting, metric, mean)), by.get((b, split, setting, metric, mean))
            if not va or not vb:
                continue
            common = [k for k in va if k in vb]
            if not common:
                continue
            xa, xb = [va[k] for k in common], [vb[k] for k in common]
            if not all(math.isfinite(x) for x in xa + xb):
                continue
            m, lo, hi = paired_bootstrap(xa, xb, level, n_boot, seed)
            st = seed_stats([x - y for x, y in zip(xa, xb)])
            name = f"{a} - {b}"
            out.append(MetricRow(study_task or f"{task}-study", name, None, split, setting, f"{metric}_diff", mean,
                                 m, lo, hi))
            out.append(MetricRow(study_task or f"{task}-study", name, None, split, setting, f"{metric}_diff_std",
                                 mean, st.std))
    return out


def markdown_table(header: Sequence[str], body: Sequence[Sequence[Any]]) -> str:
    """A Markdown (pipe) table through ``pandas.DataFrame.to_markdown`` (tabulate): cells as given (no number
    parsing, no padding), so each row reads ``| a | b |``; the separator line spans each column's width."""
    import pandas as pd

    df = pd.DataFrame([[str(c) for c in r] for r in body], columns=[str(h) for h in header])
    return df.to_markdown(index=False, tablefmt="pipe", stralign=None, numalign=None, disable_numparse=True)

