"""The JRG's settings: :class:`JRGConfig` (rounds, threshold, hard negatives, the generator and judge samplers),
:func:`config_from_params` (the config from notebook / pipeline parameters) and :class:`JRGFailed` (too many chains
failed). The refinement loop that reads them is :mod:`mipd_kit.rationales.jrg`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Optional

from mipd_kit.language.base import SamplerError
from mipd_kit.language.factory import SamplerConfig
from mipd_kit.language.hf_local import HFLocalConfig
from mipd_kit.language.openai_http import OpenAIHTTPConfig

@dataclass
class JRGConfig:
    """Settings of the JRG stage.

    Attributes:
        rounds: maximum generation rounds per rationale (round 0 plus ``rounds - 1`` refinements).
        threshold: judge score (0-10) needed to accept.
        n_hard_negatives: confused verbs (teacher's top verbs other than the true one) per image for hard negatives.
        hard_negative_kinds: kinds that get hard negatives.
        kinds: rationale kinds generated.
        judge_retries: retries of an unparseable judge reply (and of an empty generator reply).
        workers: rationale chains processed in parallel (each chain's rounds run in order).
        max_images: first N training images (sorted names); ``0`` = all.
        split: annotation file of ``world_dir`` (``train`` -> ``train.json``).
        send_images: attach the image (vision chat models); the embedded backend ignores it.
        max_consecutive_errors: abort (keeping finished rationales) after this many sampler errors in a row.
        max_failure_rate: the stage fails (:class:`JRGFailed`, after writing everything it finished) when more than
            this share of the chains it ran ended as a failure (``jrg_failures.jsonl``); ``1.0`` never fails.
        imsitu_templates: optional imSitu ``generation_templates.tab`` used for frame sentences in prompts (real mode).
        seed: seeds the embedded backends (unless their own seed is set differently).
        avoid_rejected_words: refinement prompts list the rejected rationales' words the judge's reasons point at
            (``Avoid these words:``).
        begin_hard_negatives: hard-negative prompts ask to ``Begin with:`` the confused verb.
        drop_gold_verb_negatives: a rejected glimpse or a hard negative naming the annotated verb is stored as
            ``"dropped"``, not as a negative.
        generator, judge: language backends.
    """

    rounds: int = 3
    threshold: float = 7.0
    n_hard_negatives: int = 2
    hard_negative_kinds: tuple[str, ...] = ("glimpse", "gaze")
    kinds: tuple[str, ...] = ("glimpse", "gaze")
    judge_retries: int = 2
    workers: int = 4
    max_images: int = 0
    split: str = "train"
    send_images: bool = False
    max_consecutive_errors: int = 20
    max_failure_rate: float = 0.2
    imsitu_templates: str = ""
    seed: int = 0
    avoid_rejected_words: bool = True
    begin_hard_negatives: bool = True
    drop_gold_verb_negatives: bool = True
    generator: SamplerConfig = field(default_factory=lambda: SamplerConfig(purpose="generator"))
    judge: SamplerConfig = field(default_factory=lambda: SamplerConfig(purpose="judge"))

    @classmethod
    def smoke(cls) -> "JRGConfig":
        return cls(rounds=2, max_images=8, workers=2, n_hard_negatives=1,
                   generator=SamplerConfig(purpose="generator", openai=OpenAIHTTPConfig.smoke(), hf=HFLocalConfig.smoke()),
                   judge=SamplerConfig(purpose="judge", openai=OpenAIHTTPConfig.smoke(), hf=HFLocalConfig.smoke()))


class JRGFailed(SamplerError):
    """The stage ran but too many chains failed (share above ``JRGConfig.max_failure_rate``); work is kept."""

def config_from_params(*, smoke: bool = True, backend: str = "embedded", judge_backend: str = "",
                       generator: Optional[Mapping[str, Any]] = None, judge: Optional[Mapping[str, Any]] = None,
                       rounds: int = 0, max_images: int = -1, workers: int = 0, send_images: bool = False,
                       imsitu_templates: str = "", seed: int = 0) -> JRGConfig:
    """A :class:`JRGConfig` from notebook / pipeline parameters (0, -1 or "" keep the config's value).

    ``backend`` is the generator's: ``captioner`` (the embedded captioner, images sent in the messages),
    ``template`` (the embedded template generator; ``embedded`` names the same), ``shuffled`` (a captioner run
    whose positives the stage then shuffles, see ``controls``), ``openai`` or ``hf``. ``judge_backend`` defaults to
    the embedded judge for the local generators and to ``backend`` for ``openai`` / ``hf``.

    ``generator`` / ``judge`` are the two samplers' settings: ``SamplerConfig`` fields other than ``backend`` and
    ``purpose`` (``seed``, ``p_top``, ``malformed_rate``) and the nested ``openai`` / ``hf`` / ``captioner`` blocks
    of their configs' fields. What the judge's ``openai`` / ``hf`` blocks leave out is taken from the generator's
    (one endpoint for both unless the judge names another). Both samplers' seeds (and the captioner's) default to
    ``seed``. Raises ``ValueError`` naming an unknown key (``generator.openai.modle``).
    """
    local = {"captioner": "captioner", "shuffled": "captioner", "template": "embedded", "embedded": "embedded"}
    if backend in local:
        judge_backend = judge_backend or "embedded"
        send_images = send_images or local[backend] == "captioner"
        backend = local[backend]
    if judge_backend in ("template", "captioner", "shuffled"):
        raise ValueError(f"judge_backend {judge_backend!r} cannot judge; use embedded, openai or hf")
    cfg = JRGConfig.smoke() if smoke else JRGConfig()
    cfg.seed = seed
    if rounds > 0:
        cfg.rounds = rounds
    if max_images >= 0:
        cfg.max_images = max_images
    if workers > 0:
        cfg.workers = workers
    cfg.send_images = send_images
    cfg.imsitu_templates = imsitu_templates
    gen, jud = dict(generator or {}), dict(judge or {})
    for nested in ("openai", "hf"):  # the judge's endpoint is the generator's unless it names its own
        if gen.get(nested) or jud.get(nested):
            jud[nested] = {**dict(gen.get(nested) or {}), **dict(jud.get(nested) or {})}
    samplers = []
    for name, sc, b, block in (("generator", cfg.generator, backend, gen),
                               ("judge", cfg.judge, judge_backend or backend, jud)):
        for k in ("backend", "purpose"):
            if k in block:
                raise ValueError(f"{name}.{k}: the backend is chosen by the stage's backend / judge_backend, not in "
                                 f"the {name} block")
        sc = sc.updated({"seed": seed, **block, "captioner": {"seed": seed, **dict(block.get("captioner") or {})}},
                        name)
        samplers.append(replace(sc, backend=b))
    cfg.generator, cfg.judge = samplers
    return cfg

