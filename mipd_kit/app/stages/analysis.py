"""Stage ``analysis`` (notebook ``06_analysis.ipynb``, ``mipd_kit.app.analysis.run_analysis``): figures, seed
aggregates and ``results.md`` from everything the run wrote, so it depends on every other stage."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ...checks import check_config


@dataclass
class Config:
    """Stage ``analysis`` (the notebook's parameters are these fields).

    Attributes:
        world_dir / cache_dir: the run's world and caches.
        seed: the run seed (unused by this stage's computations).
        bench_dir: benchmark JSONs (make bench); absent -> no resource section.
        models: GSR models drawn in the per-verb / confusion / grounding figures.
    """

    world_dir: str = "data/synthsitu/default-seed0"
    cache_dir: str = "data/cache"
    seed: int = 0
    bench_dir: str = "../reports/bench"
    models: list = field(default_factory=lambda: ["baseline", "mipd"])

    @classmethod
    def smoke(cls) -> "Config":
        """The smoke world (the stage itself is equally fast at every size)."""
        return cls(world_dir="data/synthsitu/smoke-seed0")

    def __post_init__(self) -> None:
        check_config(self, "analysis")  # types and ranges of every field (mipd_kit.checks)


def run(cfg: Config, run_dir: str | os.PathLike) -> Any:
    """``mipd_kit.app.analysis.run_analysis`` on the run folder (its result: notes, figures, ``results.md``)."""
    from ..analysis import run_analysis

    return run_analysis(run_dir, cfg.world_dir, bench_dir=cfg.bench_dir, models=list(cfg.models))
