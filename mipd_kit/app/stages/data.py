"""Stage ``data`` (notebook ``00_data.ipynb``): the SynthSitu world (generated, or reused when its config matches),
its open-vocabulary split copied into the run folder, and the two blind difficulty baselines.

``python -m mipd_kit.app.stages.data --world DIR --run-dir DIR [--smoke] [--set KEY=VALUE ...]`` runs it without the
notebook; ``mipd synth`` remains the generator's CLI.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from ...checks import check_config
from . import stage_main


@dataclass
class Config:
    """Stage ``data`` (the notebook's parameters are these fields).

    Attributes:
        world_dir / cache_dir: the run's world (generated here if absent or different) and caches (unused here).
        seed: seeds the generated world and the baselines.
        synth_size: smoke | quick | default | large.
        synth_overrides: SynthConfig fields replacing the size's, e.g. {n_train: 120} (a smaller world for rehearsals).
        per_verb: examples per verb in the contact sheets.
        run_baselines: train and evaluate the two difficulty baselines.
        baseline_smoke: short baseline training (smoke); False = full settings.
        threads: torch CPU threads for the baselines.
    """

    world_dir: str = "data/synthsitu/default-seed0"
    cache_dir: str = "data/cache"
    seed: int = 0
    synth_size: str = "default"
    synth_overrides: dict = field(default_factory=dict)
    per_verb: int = 3
    run_baselines: bool = True
    baseline_smoke: bool = False
    threads: int = 2

    @classmethod
    def smoke(cls) -> "Config":
        """Seconds: the smoke world and short baselines."""
        return cls(world_dir="data/synthsitu/smoke-seed0", synth_size="smoke", baseline_smoke=True)

    def __post_init__(self) -> None:
        check_config(self, "data")  # types and ranges of every field (mipd_kit.checks)


@dataclass
class Outputs:
    """What :func:`run` returns: the world's ``meta.json``, whether it was generated now, seconds, and the baseline
    rows and info (empty without ``run_baselines``)."""

    meta: dict
    generated: bool
    seconds: float
    rows: list
    baselines: dict


def synth_config(cfg: Config) -> Any:
    """The world's ``SynthConfig``: the size's, then ``synth_overrides`` (unknown fields are refused)."""
    from ...data.synthsitu.generate import SynthConfig

    base = SynthConfig.from_size(cfg.synth_size, cfg.seed)
    names = {f.name for f in dataclasses.fields(SynthConfig)}
    bad = sorted(set(cfg.synth_overrides) - names - {"size", "seed"})
    if bad or {"size", "seed"} & set(cfg.synth_overrides):
        raise ValueError(f"data: synth_overrides: unknown or reserved key(s) {bad or ['size', 'seed']}; valid: "
                         f"{sorted(names - {'size', 'seed'})} (size: synth_size, seed: the run seed)")
    over = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.synth_overrides.items()}
    return dataclasses.replace(base, **over)


def run(cfg: Config, run_dir: str | os.PathLike) -> Outputs:
    """Generate or reuse the world, copy its ``ov_split.json`` into the run, run the baselines (rows merged into
    ``run_dir/metrics.json``)."""
    from ...data.synthsitu.generate import ensure_world
    from ...metrics import merge_rows

    run_dir, world = Path(run_dir), Path(cfg.world_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    meta, generated = ensure_world(synth_config(cfg), world)
    seconds = time.perf_counter() - t0
    shutil.copyfile(world / "ov_split.json", run_dir / "ov_split.json")
    rows: list = []
    info: dict[str, Any] = {}
    if cfg.run_baselines:
        from ...eval.baselines import BaselineConfig, run_baselines
        bcfg = BaselineConfig.smoke() if cfg.baseline_smoke else BaselineConfig()
        bcfg.seed, bcfg.threads = cfg.seed, cfg.threads
        rows, info = run_baselines(world, bcfg, split="test", seed=cfg.seed)
        merge_rows(run_dir / "metrics.json", rows)
    return Outputs(meta, generated, seconds, rows, info)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the stage from the command line (the notebook adds the tables and contact sheets)."""
    return stage_main(sys.modules[__name__], argv, run_dir_help="run folder (ov_split.json, metrics.json)", set_example="run_baselines=false",
                      world_help="world folder (generated if absent or different)", cache_dir=False,
                      summary=lambda r: {"generated": r.generated, "seconds": round(r.seconds, 1),
                                         "baseline_rows": len(r.rows)})


if __name__ == "__main__":
    raise SystemExit(main())
