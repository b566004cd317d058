"""Train more student rows on a finished run's folder: the distillation stage of that run (its config's parameters,
its teacher, its NMPA and rationale files), with other ``rows`` and extra ``StudentConfig`` overrides.

For attempts on dev (the positive control's, docs/results.md): copy the run folder first, so the committed run stays
as it was; the rows' metrics are merged into the copy's ``metrics.json`` and their dev predictions written to its
``predictions-dev/`` (read them with ``benchmarks/calibrate_testbed.py --run``).

    cp -r reports/<run-id> data/attempt && python benchmarks/distill_rows.py data/attempt \\
        --rows mipd-feat,mipd-oracle --overrides '{"distill_kind": "cosine", "w_scene": 10}'
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

import yaml

ROOT = Path(__file__).resolve().parents[1]


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", help="a finished run folder (config.yaml, rationales*.jsonl, nmpa/)")
    ap.add_argument("--rows", required=True, help="comma-separated model names of the ingredients table")
    ap.add_argument("--overrides", default="{}", help="JSON object of StudentConfig fields added to the run's")
    ap.add_argument("--world", default=None, help="the world folder (default: the run config's world_dir)")
    ap.add_argument("--cache", default=None, help="the cache folder (default: the run config's cache_dir)")
    a = ap.parse_args(list(sys.argv[1:] if argv is None else argv))
    from mipd_kit.overrides import known_fields
    from mipd_kit.app.stages import distillation as D

    run = Path(a.run_dir)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    p = dict(cfg["stages"]["distillation"]["params"])
    seed = int(cfg.get("seed", 0))
    world = a.world or str(cfg["world_dir"]).replace("${seed}", str(seed))
    p.update(world_dir=world, cache_dir=a.cache or cfg["cache_dir"], seed=seed, teacher_config=cfg["teacher"],
             rows=[r for r in a.rows.split(",") if r])
    p["overrides"] = {**(p.get("overrides") or {}), **json.loads(a.overrides)}
    out = D.run(D.Config(**known_fields(D.Config, p)), run)
    print(json.dumps({"timings": out.timings, "skipped": out.skipped}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
