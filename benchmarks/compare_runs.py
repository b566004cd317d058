"""Compare two run folders of the same config: how many metric rows differ, by how much, and how many rationale records
the two share (a repeatability check, e.g. the committed default run against `make reproduce` in a fresh clone).

    python benchmarks/compare_runs.py RUN_A RUN_B [--out reports/bench/compare_runs.md]

Per task of ``metrics.json``: rows in common, rows whose values differ, the largest difference. For the Ov-GSR verb
top-1 rows (test, per-image): the largest difference of a model's mean over seeds on seen / rare / unseen. For
``rationales.jsonl``: records (image, kind, role, round, polarity, text) in each and in both.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mipd_kit.metrics import read_rows  # noqa: E402

RATIONALE_KEY = ("image", "kind", "role", "round", "polarity", "text")


def _values(run: Path) -> dict[tuple, float]:
    return {(r.task, r.model, r.split, r.setting, r.metric, r.mean, r.seed): r.value
            for r in read_rows(run / "metrics.json")}


def _rationales(run: Path) -> set[str]:
    p = run / "rationales.jsonl"
    if not p.is_file():
        return set()
    out = set()
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if line.strip():
            try:
                r = json.loads(line)
            except json.JSONDecodeError as e:
                raise SystemExit(f"{p}:{n}: not valid JSON ({e})")
            out.add(json.dumps([r.get(k) for k in RATIONALE_KEY]))
    return out


def compare(a: Path, b: Path) -> dict[str, Any]:
    """The comparison of two run folders (see the module doc)."""
    va, vb = _values(a), _values(b)
    common = set(va) & set(vb)
    tasks: dict[str, dict[str, Any]] = {}
    for k in sorted(common, key=str):
        x, y = va[k], vb[k]
        if x != x and y != y:  # both NaN
            continue
        d = abs(x - y) if x == x and y == y else float("inf")
        t = tasks.setdefault(k[0], {"common": 0, "differ": 0, "max_diff": 0.0})
        t["common"] += 1
        t["differ"] += d > 0
        t["max_diff"] = max(t["max_diff"], d)
    means: dict[str, float] = {}
    for split in ("seen", "rare", "unseen"):
        per: dict[str, list[float]] = defaultdict(list)
        for k in common:
            if k[0] == "gsr" and k[2] == split and k[3:6] == ("top1", "verb", "image") and k[6] is not None:
                per[k[1]].append(va[k] - vb[k])
        means[split] = max((abs(sum(v) / len(v)) for v in per.values()), default=float("nan"))
    ra, rb = _rationales(a), _rationales(b)
    return {"rows": (len(va), len(vb), len(common)), "tasks": tasks, "seed_mean_max_diff": means,
            "rationales": (len(ra), len(rb), len(ra & rb))}


def render(a: Path, b: Path, c: dict[str, Any]) -> str:
    na, nb, nc = c["rows"]
    L = [f"# Two runs compared: `{a}` vs `{b}`", "",
         f"`python benchmarks/compare_runs.py {a} {b}`. Metric rows: {na} and {nb}, {nc} in both.", "",
         "| task | rows in both | rows that differ | largest difference |", "|---|---|---|---|"]
    for t, s in sorted(c["tasks"].items()):
        L.append(f"| {t} | {s['common']} | {s['differ']} | {s['max_diff']:.4g} |")
    m = c["seed_mean_max_diff"]
    ra, rb, rc = c["rationales"]
    L += ["", "Ov-GSR verb top-1 (test, per-image), largest difference of a model's mean over seeds: "
          + ", ".join(f"{k} {v:.2f}" for k, v in m.items()) + " points.", "",
          f"Rationale records (image, kind, role, round, polarity, text): {ra} and {rb}, {rc} in both.", ""]
    return "\n".join(L)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_a")
    ap.add_argument("run_b")
    ap.add_argument("--out", default=None, help="write the markdown here too")
    a = ap.parse_args(argv)
    ra, rb = Path(a.run_a), Path(a.run_b)
    for r in (ra, rb):
        if not (r / "metrics.json").is_file():
            print(f"compare_runs: {r / 'metrics.json'} does not exist", file=sys.stderr)
            return 2
    text = render(ra, rb, compare(ra, rb))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
