"""``build_sampler(cfg)``: the explicit factory over language backends (an if/elif over the backend name)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from mipd_kit.language.base import Sampler
from mipd_kit.language.hf_local import HFLocalConfig
from mipd_kit.language.openai_http import OpenAIHTTPConfig

BACKENDS = ("embedded", "openai", "hf")


@dataclass
class SamplerConfig:
    """Which language backend to use, and its settings.

    Attributes:
        backend: ``"embedded"`` (offline deterministic stand-in), ``"openai"`` (OpenAI-compatible HTTP) or ``"hf"``
            (local transformers model).
        purpose: ``"generator"`` or ``"judge"`` (selects the embedded rule set; real LLMs ignore it).
        seed: seed of the embedded backend.
        p_top: embedded generator: probability of describing the teacher's top verb/noun.
        malformed_rate: embedded judge: fraction of replies made unparseable on purpose.
        openai: OpenAI-compatible endpoint settings.
        hf: local transformers settings.
    """

    backend: Literal["embedded", "openai", "hf"] = "embedded"
    purpose: Literal["generator", "judge"] = "generator"
    seed: int = 0
    p_top: float = 0.7
    malformed_rate: float = 0.0
    openai: OpenAIHTTPConfig = field(default_factory=OpenAIHTTPConfig)
    hf: HFLocalConfig = field(default_factory=HFLocalConfig)


def build_sampler(cfg: SamplerConfig, *, threshold: Optional[float] = None) -> Sampler:
    """Build the sampler named by ``cfg.backend``.

    Args:
        cfg: backend choice and settings.
        threshold: embedded judge's accept threshold (the judge prompt states it too).
    """
    if cfg.backend == "embedded":
        from mipd_kit.language.embedded import EmbeddedGenerator, EmbeddedJudge
        if cfg.purpose == "judge":
            return EmbeddedJudge(seed=cfg.seed, threshold=7.0 if threshold is None else threshold,
                                 malformed_rate=cfg.malformed_rate)
        if cfg.purpose == "generator":
            return EmbeddedGenerator(seed=cfg.seed, p_top=cfg.p_top)
        raise ValueError(f"unknown purpose {cfg.purpose!r}; choose 'generator' or 'judge'")
    if cfg.backend == "openai":
        from mipd_kit.language.openai_http import OpenAIHTTPSampler
        return OpenAIHTTPSampler(cfg.openai)
    if cfg.backend == "hf":
        from mipd_kit.language.hf_local import HFLocalSampler
        return HFLocalSampler(cfg.hf)
    raise ValueError(f"unknown language backend {cfg.backend!r}; choose one of {BACKENDS}")
