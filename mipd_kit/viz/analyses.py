"""Pure analyses over the cases of a GSR model (:class:`~mipd_kit.viz.cases.Case` lists, the cases the inspector
shows; the same SWiG conventions): per-verb accuracy, unseen-verb confusion with each unseen verb's nearest seen verb by
shared primitives, grounding by role, and how concentrated a model's top-1 verbs are.

The run's analysis stage (``mipd_kit.app.analysis.run_analysis``) draws its figures from these; tests call them on
hand-made cases.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence

from .cases import Case


def per_verb_accuracy(cases: Iterable[Case]) -> dict[str, tuple[int, int]]:
    """verb -> (test images, top-1 correct)."""
    out: dict[str, list[int]] = {}
    for c in cases:
        d = out.setdefault(c.gt_verb, [0, 0])
        d[0] += 1
        d[1] += int(c.pred_verb == c.gt_verb)
    return {v: (n, k) for v, (n, k) in out.items()}


def primitive_neighbours(unseen: Iterable[str], seen: Iterable[str],
                         primitives: Mapping[str, Mapping[str, Any]]) -> dict[str, Optional[str]]:
    """For each unseen verb the seen verb sharing most primitives (Jaccard over (name, value) pairs; ties by
    name); None when the verb has no primitives listed."""
    def items(v: str) -> set:
        return {(k, json.dumps(x, sort_keys=True)) for k, x in (primitives.get(v) or {}).items()}

    out: dict[str, Optional[str]] = {}
    seen = sorted(seen)
    for u in unseen:
        a = items(u)
        best, best_s = None, -1.0
        for s in seen:
            b = items(s)
            if not a or not b:
                continue
            j = len(a & b) / len(a | b)
            if j > best_s:
                best, best_s = s, j
        out[u] = best
    return out


@dataclass
class Confusion:
    """Where the test images of unseen verbs went (top-1).

    Attributes:
        rows: unseen verbs.
        cols: predicted verbs shown (each row's own verb first, then the most frequent others).
        counts: counts[i][j] = images of ``rows[i]`` predicted as ``cols[j]``; the last column is "other".
        totals: images per row.
        nearest: unseen verb -> nearest seen verb by shared primitives (None when unknown).
    """

    rows: list[str]
    cols: list[str]
    counts: list[list[int]]
    totals: list[int]
    nearest: dict[str, Optional[str]] = field(default_factory=dict)

    def rate(self, i: int, j: int) -> float:
        return self.counts[i][j] / self.totals[i] if self.totals[i] else 0.0


def unseen_confusion(cases: Iterable[Case], unseen: Sequence[str],
                     nearest: Optional[Mapping[str, Optional[str]]] = None, max_cols: int = 12) -> Confusion:
    """Top-1 confusion of unseen verbs: columns = the unseen verbs themselves, their nearest seen verbs, then the
    most frequent other predictions (at most ``max_cols``), and a final "other" column."""
    unseen = [u for u in unseen]
    pred_counts: dict[str, dict[str, int]] = {u: {} for u in unseen}
    for c in cases:
        if c.gt_verb in pred_counts:
            p = c.pred_verb or "(none)"
            pred_counts[c.gt_verb][p] = pred_counts[c.gt_verb].get(p, 0) + 1
    rows = [u for u in unseen if pred_counts[u]]
    freq: dict[str, int] = {}
    for u in rows:
        for p, n in pred_counts[u].items():
            freq[p] = freq.get(p, 0) + n
    cols: list[str] = list(rows)
    for u in rows:
        nb = (nearest or {}).get(u)
        if nb and nb not in cols:
            cols.append(nb)
    for p, _ in sorted(freq.items(), key=lambda x: (-x[1], x[0])):
        if len(cols) >= max_cols:
            break
        if p not in cols:
            cols.append(p)
    counts = []
    for u in rows:
        r = [pred_counts[u].get(c, 0) for c in cols]
        r.append(sum(pred_counts[u].values()) - sum(r))
        counts.append(r)
    return Confusion(rows, cols + ["other"], counts, [sum(pred_counts[u].values()) for u in rows],
                     {u: (nearest or {}).get(u) for u in rows})


def grounding_by_role(cases: Iterable[Case]) -> dict[str, dict[str, float]]:
    """Per role, over the cases whose frame for the gt verb was predicted: ``n``, ``noun`` (accuracy),
    ``box`` (grounding accuracy over roles with box annotations) and ``grounded`` (both), in percent."""
    acc: dict[str, list[int]] = {}
    for c in cases:
        if c.frame_source is None:
            continue
        for r in c.roles:
            d = acc.setdefault(r.role, [0, 0, 0, 0, 0])  # n, noun ok, n with box info, box ok, grounded ok
            d[0] += 1
            d[1] += int(r.noun_ok)
            if r.box_ok is not None:
                d[2] += 1
                d[3] += int(r.box_ok)
            d[4] += int(r.grounded_ok)
    return {role: {"n": float(n), "noun": 100.0 * k / n, "box": 100.0 * b / nb if nb else math.nan,
                   "grounded": 100.0 * g / n}
            for role, (n, k, nb, b, g) in sorted(acc.items()) if n}


def prediction_concentration(preds: Mapping[str, Mapping[str, Any]]) -> tuple[str, float, int]:
    """How concentrated a GSR model's top-1 verbs are over the images of a SWiG prediction file (pure).

    Returns the most often predicted top-1 verb (ties: the first in name order), the percent of images given it, and
    the number of distinct top-1 verbs. A student whose open-vocabulary head has collapsed onto one hub verb (one
    verb's text embedding nearest to most image features) shows a large share and few verbs; its accuracy on that
    verb's split then says little about transfer.
    """
    counts: dict[str, int] = {}
    for rec in preds.values():
        verbs = rec.get("verbs") or []
        if verbs:
            v = str(verbs[0]["verb"])
            counts[v] = counts.get(v, 0) + 1
    if not counts:
        raise ValueError("prediction_concentration: no image has a predicted verb")
    verb = min(counts, key=lambda v: (-counts[v], v))
    return verb, 100.0 * counts[verb] / sum(counts.values()), len(counts)
