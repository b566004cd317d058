"""``build_sampler(cfg)``: the one way to build a language backend (a table of builders by backend name,
:data:`BUILDERS`), and the configs that name one (``SamplerConfig``, with one nested block per backend).

A new backend touches this package only: its module, and one :func:`register_backend` entry (plus a nested config
block in ``SamplerConfig`` when it has settings).

This module imports no backend (nor torch) until ``build_sampler`` is called: a config can be read and checked
cheaply, and no backend module imports this one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Literal, Mapping, Optional

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
        batch_size: requests of several threads decoded together, up to this many (1 = each alone; see
            ``CaptionerSampler.batch_size``).
    """

    checkpoint: str = ""
    teacher: str = ""
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int = 0
    max_attempts: int = 3
    batch_size: int = 1


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

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "sampler", **defaults: Any) -> "SamplerConfig":
        """A config from a mapping of its fields (a YAML block; ``defaults`` fill what it leaves out), see
        :meth:`updated`."""
        return cls(**defaults).updated(d, where)

    def updated(self, d: Mapping[str, Any], where: str = "sampler") -> "SamplerConfig":
        """A copy with the fields that the mapping ``d`` names set: ``openai`` / ``hf`` / ``captioner`` are mappings
        of their configs' fields, set field by field (what they leave out keeps this config's value).

        Raises:
            ValueError: an unknown key or a nested block that is not a mapping, naming ``where`` and the key.
        """
        _no_unknown(type(self), d, where)
        vals = {k: v for k, v in d.items() if k not in NESTED_CONFIGS}
        for name, sub in NESTED_CONFIGS.items():
            block = d.get(name)
            if block is None:
                continue
            if not isinstance(block, Mapping):
                raise ValueError(f"{where}.{name} must be a mapping of {sub.__name__} fields, got {block!r}")
            _no_unknown(sub, block, f"{where}.{name}")
            vals[name] = replace(getattr(self, name), **dict(block))
        return replace(self, **vals)


#: the nested blocks of ``SamplerConfig``: field name -> the backend's config class (a new backend with settings adds
#: its config here and as a field of ``SamplerConfig``)
NESTED_CONFIGS: dict[str, type] = {"openai": OpenAIHTTPConfig, "hf": HFLocalConfig, "captioner": CaptionerSamplerConfig}


def _no_unknown(cls: type, d: Mapping[str, Any], where: str) -> None:
    unknown = sorted(set(d) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; {cls.__name__} has {sorted(f.name for f in fields(cls))}")


#: backend name -> builder ``(cfg, *, threshold, captioner, teacher) -> Sampler`` (:func:`build_sampler`'s arguments)
BUILDERS: dict[str, Callable[..., Sampler]] = {}


def register_backend(name: str, builder: Callable[..., Sampler]) -> Callable[..., Sampler]:
    """Add (or replace) the builder of backend ``name``; returns it (usable as a decorator's body)."""
    BUILDERS[name] = builder
    return builder


def _embedded(cfg: SamplerConfig, *, threshold: Optional[float] = None, **_: Any) -> Sampler:
    from mipd_kit.language.embedded import EmbeddedGenerator, EmbeddedJudge
    if cfg.purpose == "judge":
        return EmbeddedJudge(seed=cfg.seed, threshold=7.0 if threshold is None else threshold,
                             malformed_rate=cfg.malformed_rate)
    if cfg.purpose == "generator":
        return EmbeddedGenerator(seed=cfg.seed, p_top=cfg.p_top)
    raise ValueError(f"unknown purpose {cfg.purpose!r}; choose 'generator' or 'judge'")


def _openai(cfg: SamplerConfig, **_: Any) -> Sampler:
    from mipd_kit.language.openai_http import OpenAIHTTPSampler
    return OpenAIHTTPSampler(cfg.openai)


def _hf(cfg: SamplerConfig, **_: Any) -> Sampler:
    from mipd_kit.language.hf_local import HFLocalSampler
    return HFLocalSampler(cfg.hf)


def _captioner(cfg: SamplerConfig, *, captioner: Any = None, teacher: Any = None, **_: Any) -> Sampler:
    if cfg.purpose != "generator":
        raise ValueError("the captioner backend only writes descriptions; use it with purpose 'generator'")
    from mipd_kit.language.captioner.sampler import CaptionerSampler
    from mipd_kit.language.captioner.train import load_captioner_with_teacher
    c = cfg.captioner
    if captioner is None:
        captioner, teacher = load_captioner_with_teacher(c.checkpoint, c.teacher)
    elif teacher is None:
        raise ValueError("build_sampler: a loaded captioner needs the teacher it reads (teacher=...)")
    return CaptionerSampler(captioner, teacher, temperature=c.temperature, top_p=c.top_p, seed=c.seed,
                            max_attempts=c.max_attempts, batch_size=c.batch_size)


for _name, _builder in zip(BACKENDS, (_embedded, _openai, _hf, _captioner)):
    register_backend(_name, _builder)


def build_sampler(cfg: SamplerConfig, *, threshold: Optional[float] = None, captioner: Any = None,
                  teacher: Any = None) -> Sampler:
    """Build the sampler named by ``cfg.backend`` (the one place any backend is constructed), by its
    :data:`BUILDERS` entry.

    Args:
        cfg: backend choice and settings.
        threshold: embedded judge's accept threshold (the judge prompt states it too).
        captioner, teacher: backend ``captioner``: an already loaded captioner and the teacher it reads (a run's,
            from ``mipd_kit.language.captioner.captioner_for``); without them ``cfg.captioner.checkpoint`` (and
            ``.teacher``) are loaded.
    """
    builder = BUILDERS.get(cfg.backend)
    if builder is None:
        raise ValueError(f"unknown language backend {cfg.backend!r}; choose one of {tuple(BUILDERS)}")
    return builder(cfg, threshold=threshold, captioner=captioner, teacher=teacher)
