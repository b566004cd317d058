"""Stage ``judge`` (notebook ``03_judge.ipynb``): statistics of the judged rationales (acceptance per round, scores,
polarities against the teacher's evidence) and the MIPD authors' four-field export ``rationales_authors.json``.

Nothing downstream but the analysis reads what it writes, so a judge parameter re-runs only judge and analysis.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ...checks import check_config


@dataclass
class Config:
    """Stage ``judge`` (the notebook's parameters are these fields).

    Attributes:
        world_dir / cache_dir: the run's world and caches.
        seed: the run seed (unused by this stage's computations).
        rounds: rounds the loop was run with; None reads it from run_dir/jrg_stats.json.
        backend_filter: only records of this backend fingerprint; empty: the last run, from jrg_stats.json.
        export_authors: also write run_dir/rationales_authors.json (the MIPD authors' four-field format).
    """

    world_dir: str = "data/synthsitu/default-seed0"
    cache_dir: str = "data/cache"
    seed: int = 0
    rounds: Optional[int] = None
    backend_filter: str = ""
    export_authors: bool = True

    @classmethod
    def smoke(cls) -> "Config":
        """The smoke world (the stage itself is equally fast at every size)."""
        return cls(world_dir="data/synthsitu/smoke-seed0")

    def __post_init__(self) -> None:
        if self.rounds is not None and (not isinstance(self.rounds, int) or self.rounds < 1):
            raise ValueError(f"judge: rounds must be a positive integer or null (read from jrg_stats.json), got "
                             f"{self.rounds!r}; 0 no longer means 'read it'")
        check_config(self, "judge")  # types and ranges of every field (mipd_kit.checks)


@dataclass
class Outputs:
    """What :func:`run` returns: the last JRG run's record (``jrg_stats.json``), the backend and rounds used, the
    world folder, frame space and situations, the records of that backend and their statistics, and the authors'
    export (empty without ``export_authors``)."""

    last: dict
    backend: str
    rounds: int
    world: Path
    space: Any
    sits: dict
    records: list
    stats: dict
    authors: dict


def run(cfg: Config, run_dir: str | os.PathLike) -> Outputs:
    """Read the rationales of the last JRG run's backend, compute their statistics, write the authors' export."""
    from ...rationales.jrg_inputs import load_world
    from ...rationales.jrg_stats import jrg_statistics
    from ...rationales.store import export_authors_json, read_rationales

    run_dir = Path(run_dir)
    stats_path = run_dir / "jrg_stats.json"
    try:
        last = json.loads(stats_path.read_text())
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{stats_path}: missing; run stage rationales (02_rationales) first") from e
    n_rounds = cfg.rounds or last["rounds"]
    backend = cfg.backend_filter or last["run"]["backend"]
    world = Path(last["run"].get("world_dir") or cfg.world_dir)
    space, sits = load_world(world)
    records = [x for x in read_rationales(run_dir / "rationales.jsonl") if x.backend == backend and x.image in sits]
    stats = jrg_statistics(records, rounds=n_rounds)
    authors: dict = {}
    if cfg.export_authors:
        authors = export_authors_json(records, run_dir / "rationales_authors.json",
                                      role_order={i: space.roles(s.verb) for i, s in sits.items()
                                                  if s.verb in space.verbs})
    return Outputs(last, backend, n_rounds, world, space, sits, records, stats, authors)
