"""Stage ``rationales`` (notebook ``02_rationales.ipynb``): JRG rationale generation and judging
(``mipd_kit.rationales.jrg``), resumable; reads the teacher stage's ``teacher_evidence.json``.

``python -m mipd_kit.stages.rationales --world DIR --run-dir DIR [--smoke] [--set KEY=VALUE ...]`` runs it without
the notebook; ``mipd rationales`` remains the library's CLI.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from . import stage_main

INPUTS: tuple[str, ...] = ("data", "teacher")
OUTPUTS: tuple[str, ...] = ("rationales.jsonl", "jrg_stats.json")
USES_TEACHER = False


@dataclass
class Config:
    """Stage ``rationales`` (the notebook's parameters are these fields).

    Attributes:
        world_dir / cache_dir: the run's world and caches.
        seed: seeds the samplers, the toy world and the sample table.
        jrg_smoke: True: JRGConfig.smoke() with 8 images and 2 rounds; False: every training image, 3 rounds.
        backend: generator backend: embedded (offline stand-in), openai (OpenAI-compatible HTTP) or hf (local
            transformers).
        judge_backend: judge backend; empty: same as backend.
        base_url: openai backend: API root including /v1 (vLLM, llama.cpp server, Ollama, hosted).
        model: openai backend: model name.
        api_key_env: openai backend: NAME of the environment variable holding the key, never the key itself.
        hf_model: hf backend: local model folder.
        rounds: refinement rounds; None keeps the JRGConfig's.
        max_images: training images to process; None keeps the JRGConfig's, 0 means all.
        workers: rationale chains in parallel; None keeps the JRGConfig's.
        concurrency: HTTP requests in flight per sampler; None keeps the JRGConfig's.
        send_images: attach the image to every prompt (vision chat models).
        imsitu_templates: imSitu generation_templates.tab for frame sentences (real mode); empty: frame abstracts.
        toy_if_missing: write the tiny 3-verb toy world/evidence when world_dir or teacher evidence is absent.
        n_samples: rationales shown per kind x polarity.
    """

    world_dir: str = "data/synthsitu/default-seed0"
    cache_dir: str = "data/cache"
    seed: int = 0
    jrg_smoke: bool = False
    backend: str = "embedded"
    judge_backend: str = ""
    base_url: str = "http://127.0.0.1:8080/v1"
    model: str = "local-model"
    api_key_env: str = "OPENAI_API_KEY"
    hf_model: str = ""
    rounds: Optional[int] = None
    max_images: Optional[int] = None
    workers: Optional[int] = None
    concurrency: Optional[int] = None
    send_images: bool = False
    imsitu_templates: str = ""
    toy_if_missing: bool = True
    n_samples: int = 4

    @classmethod
    def smoke(cls) -> "Config":
        """Seconds: JRGConfig.smoke() on the smoke world."""
        return cls(world_dir="data/synthsitu/smoke-seed0", jrg_smoke=True)

    def __post_init__(self) -> None:
        for k in ("rounds", "workers", "concurrency"):
            v = getattr(self, k)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(f"rationales: {k} must be a positive integer or null (the config's value), got "
                                 f"{v!r}; 0 no longer means 'keep the config value'")
        if self.max_images is not None and self.max_images < 0:
            raise ValueError(f"rationales: max_images must be >= 0 (0 = all) or null (the config's value), got "
                             f"{self.max_images!r}")

    def jrg_config(self) -> Any:
        """The library's ``JRGConfig`` (through ``jrg.config_from_params``, whose 0 / -1 mean "keep")."""
        from ..rationales import jrg

        return jrg.config_from_params(
            smoke=self.jrg_smoke, backend=self.backend, judge_backend=self.judge_backend, base_url=self.base_url,
            model=self.model, api_key_env=self.api_key_env, hf_model=self.hf_model, rounds=self.rounds or 0,
            max_images=-1 if self.max_images is None else self.max_images, workers=self.workers or 0,
            concurrency=self.concurrency or 0, send_images=self.send_images, imsitu_templates=self.imsitu_templates,
            seed=self.seed)


@dataclass
class Outputs:
    """What :func:`run` returns: the world used (the toy world when the real one or the evidence was missing), the
    library's config and the loop's statistics (also in ``run_dir/jrg_stats.json``)."""

    world: Path
    jrg: Any
    stats: dict


def run(cfg: Config, run_dir: str | os.PathLike) -> Outputs:
    """Run (or resume) the JRG loop into ``run_dir/rationales.jsonl``."""
    from ..rationales import jrg

    run_dir, world = Path(run_dir), Path(cfg.world_dir)
    if cfg.toy_if_missing and (not (world / "train.json").exists()
                               or not (run_dir / "teacher_evidence.json").exists()):
        from ..rationales.toy import write_toy_world
        world = run_dir / "jrg_toy_world"
        write_toy_world(world, run_dir, n_per_verb=3, seed=cfg.seed)
        print(f"world or teacher evidence missing: using the 3-verb toy world written to {world}")
    jcfg = cfg.jrg_config()
    return Outputs(world, jcfg, jrg.run_jrg(jcfg, world, run_dir))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the stage from the command line (the notebook adds the samples and figures)."""
    return stage_main(sys.modules[__name__], argv, run_dir_help="run folder (teacher_evidence.json, rationales.jsonl)", set_example="rounds=2",
                      cache_dir=False, summary=lambda r: r.stats["run"])


if __name__ == "__main__":
    raise SystemExit(main())
