"""``build_sampler(cfg)``: the explicit factory over language backends (an if/elif over the backend name)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from mipd_kit.language.base import Sampler
from mipd_kit.language.hf_local import HFLocalConfig
from mipd_kit.language.openai_http import OpenAIHTTPConfig

BACKENDS = ("embedded", "openai", "hf", "captioner")


@dataclass
class CaptionerSamplerConfig:
    """Settings of the ``captioner`` language backend.

    Attributes:
        checkpoint: captioner folder (``model.safetensors`` + ``captioner.json``), or a release name
            (``embedded-captioner-default``, ``mipd_kit.weights``; sha256-checked).
        teacher: embedded-teacher checkpoint folder or release name; "" = the one recorded in the captioner's
            checkpoint (a release records its released teacher).
        temperature, top_p: sampling controls (temperature <= 0: greedy).
        seed: sampling seed (combined with a hash of the messages).
        max_attempts: re-samples of an empty generation before ``SamplerError``.
    """

    checkpoint: str = ""
    teacher: str = ""
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int = 0
    max_attempts: int = 3


@dataclass
class SamplerConfig:
    """Which language backend to use, and its settings.

    Attributes:
        backend: ``"embedded"`` (offline deterministic stand-in), ``"openai"`` (OpenAI-compatible HTTP), ``"hf"``
            (local transformers model) or ``"captioner"`` (the embedded image-conditioned captioner: a vision
            model that describes the image part of the messages; generator only).
        purpose: ``"generator"`` or ``"judge"`` (selects the embedded rule set; real LLMs ignore it).
        seed: seed of the embedded backend.
        p_top: embedded generator: probability of describing the teacher's top verb/noun.
        malformed_rate: embedded judge: fraction of replies made unparseable on purpose.
        openai: OpenAI-compatible endpoint settings.
        hf: local transformers settings.
        captioner: embedded captioner settings.
    """

    backend: Literal["embedded", "openai", "hf", "captioner"] = "embedded"
    purpose: Literal["generator", "judge"] = "generator"
    seed: int = 0
    p_top: float = 0.7
    malformed_rate: float = 0.0
    openai: OpenAIHTTPConfig = field(default_factory=OpenAIHTTPConfig)
    hf: HFLocalConfig = field(default_factory=HFLocalConfig)
    captioner: CaptionerSamplerConfig = field(default_factory=CaptionerSamplerConfig)


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
    if cfg.backend == "captioner":
        if cfg.purpose != "generator":
            raise ValueError("the captioner backend only writes descriptions; use it with purpose 'generator'")
        from mipd_kit.language.captioner import build_captioner_sampler
        return build_captioner_sampler(cfg.captioner)
    raise ValueError(f"unknown language backend {cfg.backend!r}; choose one of {BACKENDS}")
