"""How long `make reproduce` takes, stage by stage: read from a finished run folder's ``status.json``.

Each stage's wall time is what the pipeline recorded when it ran it (``seconds``, else finished - started); a stage
resumed from an earlier invocation keeps the time of the invocation that computed it. The world's own generation time
(``generation.json`` of the world folder) is listed separately: a run on an existing world reuses it, a clean clone
generates it inside the data stage. The machine's load is not known afterwards: say it with ``--machine``.

Writes ``reports/bench/reproduce.json`` (tidy rows, task "bench", model "reproduce") and ``reports/bench/reproduce.md``.

    python benchmarks/bench_reproduce.py --run data/runs/<id> [--goal-min 15] [--machine "2 cores, idle"]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mipd_kit.metrics import merge_rows, row  # noqa: E402


def _when(s: Optional[str]) -> Optional[datetime]:
    return datetime.fromisoformat(s.replace("Z", "+00:00")) if s else None


def stage_seconds(status: dict) -> list[dict[str, Any]]:
    """One entry per stage of ``status.json``: name, state, seconds (None when it never finished)."""
    out = []
    for name, st in (status.get("stages") or {}).items():
        if not st:
            out.append({"stage": name, "state": "not run", "seconds": None})
            continue
        sec = st.get("seconds")
        if sec is None and st.get("started") and st.get("finished"):
            sec = (_when(st["finished"]) - _when(st["started"])).total_seconds()
        out.append({"stage": name, "state": st.get("state"), "seconds": None if sec is None else float(sec)})
    return out


def passes(run: Path) -> dict[str, list[float]]:
    """Every completed pass of each stage in ``run.log`` (``stage X done in Ns``), in order: a stage re-run after a
    change, or resumed after a kill, shows each pass (the status keeps only the last)."""
    out: dict[str, list[float]] = {}
    log = run / "run.log"
    if log.exists():
        for m in re.finditer(r"stage (\w+)\s+done in ([\d.]+)s", log.read_text(errors="replace")):
            out.setdefault(m.group(1), []).append(float(m.group(2)))
    return out


def world_generation_seconds(run: Path) -> Optional[float]:
    """``timings.total`` of the run's world (``generation.json``), None when unknown."""
    try:
        params = json.loads((run / "status.json").read_text())["stages"]["data"]["params"]
        gen = json.loads((Path(params["world_dir"]) / "generation.json").read_text())
        return float(gen["timings"]["total"])
    except (OSError, KeyError, TypeError, ValueError):
        return None


def report(run: Path, goal_min: float, machine: str) -> tuple[list, str]:
    """(rows, markdown) for a run folder."""
    status = json.loads((run / "status.json").read_text())
    stages = stage_seconds(status)
    done = [s for s in stages if s["seconds"] is not None]
    total = sum(s["seconds"] for s in done)
    gen = world_generation_seconds(run)
    env = {}
    if (run / "environment.json").exists():
        env = json.loads((run / "environment.json").read_text())
    rows = [row("bench", "reproduce", s["stage"], "run", "wall_s", s["seconds"]) for s in done]
    rows.append(row("bench", "reproduce", "total", "run", "wall_s", total))
    if gen is not None:
        rows.append(row("bench", "reproduce", "world_generation", "run", "wall_s", gen))
    complete = status.get("state") == "done" and len(done) == len(stages)
    lines = ["# `make reproduce`: wall time per stage", "",
             f"Run `{status.get('run_id')}` (config `{status.get('config')}`, state **{status.get('state')}**), "
             f"commit `{(env.get('git') or {}).get('commit', '?')}`, {env.get('cpu_count', '?')} CPUs, "
             f"torch threads {env.get('torch_threads', '?')}; machine: {machine}.", "",
             "| stage | state | wall s (last pass) | min | every pass in run.log, s |", "|---|---|---|---|---|"]
    every = passes(run)
    for s in stages:
        sec = s["seconds"]
        lines.append(f"| {s['stage']} | {s['state']} | {'' if sec is None else f'{sec:.0f}'} | "
                     f"{'' if sec is None else f'{sec / 60:.1f}'} | "
                     f"{' + '.join(f'{x:.0f}' for x in every.get(s['stage'], []))} |")
    all_passes = sum(sum(v) for v in every.values())
    lines.append(f"| **total** | | **{total:.0f}** | **{total / 60:.1f}** | {all_passes:.0f} |")
    lines.append("")
    if any(len(v) > 1 for v in every.values()):
        lines.append("Stages with several passes were re-run after a change or resumed after a kill (a resumed pass "
                     "reuses the work of the earlier one): a fresh run's stage time lies between the last pass and "
                     "the sum of its passes.")
        lines.append("")
    if gen is not None:
        lines.append(f"World generation (the world's `generation.json`): {gen:.0f} s -- inside the data stage when "
                     "the world is new (a clean clone), not when it is reused.")
    verdict = ("met" if complete and total <= goal_min * 60 else "missed" if complete else "not measurable (the run "
               "did not finish every stage)")
    lines += ["", f"Goal: the whole run within {goal_min:g} minutes on 2 cores: **{verdict}** "
                  f"({total / 60:.1f} min measured)."]
    return rows, "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True, help="a run folder (status.json)")
    ap.add_argument("--goal-min", type=float, default=15.0)
    ap.add_argument("--machine", default="2 CPU cores (load not recorded)",
                    help="how loaded the machine was during the run, in words")
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench"))
    a = ap.parse_args(argv)
    run = Path(a.run)
    if not (run / "status.json").exists():
        print(f"{run}: no status.json (not a run folder)", file=sys.stderr)
        return 2
    rows, md = report(run, a.goal_min, a.machine)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "reproduce.json").unlink(missing_ok=True)  # one run's times, not a merge of several runs
    merge_rows(out / "reproduce.json", rows)
    (out / "reproduce.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
