"""The CL-HOI configuration (:class:`CLHOIConfig`) and the names of its rows: the label-free models, the control rows
that read the training labels on purpose, and each student row's (kind, training target).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

#: the rows that never read an interaction label (the stage's default)
LABEL_FREE_MODELS = ("teacher", "spatial_prior", "teacher_crop", "icn", "clhoi", "clhoi-logitctx")
#: the control rows, which read the training labels on purpose (``controls.py``): positive control, its shuffled
#: form, the weakly supervised baseline and the ceiling
CONTROL_MODELS = ("clhoi-oracle", "clhoi-oracle-shuffled", "weak-mil", "upper")
MODELS = LABEL_FREE_MODELS + CONTROL_MODELS
#: the student rows and their (student kind, training target): ``description`` / ``logits`` / ``oracle`` /
#: ``oracle-shuffled`` name the VLT's context target (and the teacher-distillation objective), ``mil`` / ``pairs``
#: the label objectives of ``weak-mil`` / ``upper`` (no teacher term)
STUDENTS = {"icn": ("icn", None), "clhoi": ("clhoi", "description"), "clhoi-logitctx": ("clhoi", "logits"),
            "clhoi-oracle": ("clhoi", "oracle"), "clhoi-oracle-shuffled": ("clhoi", "oracle-shuffled"),
            "weak-mil": ("icn", "mil"), "upper": ("icn", "pairs")}



@dataclass
class CLHOIConfig:
    """CL-HOI stage config (mirrors the parameters of ``notebooks/07_cl_hoi.ipynb``).

    Attributes:
        world_dir: world / dataset folder (``hoi_train.json``, ``hoi_test.json``, ``hoi_prompts.json``,
            ``hoi_zero_shot.json``, ``images/``).
        run_dir: run folder (``metrics.json``, ``predictions/``, ``clhoi/``).
        cache_dir: teacher checkpoints and feature caches.
        seed: base seed (used when ``seeds`` is empty).
        seeds: student seeds; every model is evaluated per seed (proposal jitter depends on the seed too).
        teacher: ``"embedded"`` (``teachers.embedded.load_or_train``), ``"checkpoint"`` (``load_teacher``) or
            ``"tiny"`` (``TinyRandomTeacher``, wiring tests only).
        teacher_size: embedded teacher config: ``"smoke"`` or ``"default"`` (must match notebook 01's).
        teacher_checkpoint: folder for ``teacher="checkpoint"``.
        teacher_logit_scale: multiplier of the teacher's cosines; 0 = the teacher's own learned scale (else 100).
        proposals: ``"known_boxes"`` or ``"detector"``.
        detections_train, detections_test: detector JSON files (detector mode); empty = embedded jittered boxes.
        jitter: relative box noise of the embedded detector.
        object_labels: known-boxes mode keeps the object category (as a detector would); False = unlabelled.
        score_threshold: detector score threshold.
        roi_size: RoIAlign bins per side.
        crop_features: give the ICN the teacher's pooled embeddings of the human, object and union crops (the
            image-level teacher applied to regions: label-free) besides the RoIAlign grid features.
        prior_weight: initial weight of the label-free geometric log-prior ``-gap`` added to the pair logits
            (learned; 0 = none).
        context_gate: initial gate of the VLT context (learned; ``clhoi`` only): ``broadcast``: weight of the
            context added to each pair embedding; ``cross_attention``: weight of each pair's attended context added
            to its embedding (0 = start as the ICN alone).
        context_fusion: ``"cross_attention"`` (each pair attends to its image's translated context tokens) or
            ``"broadcast"`` (one context vector per image, the same for all its pairs; the earlier design).
        describer: who writes the training images' descriptions for ``clhoi``: ``"captioner"`` (the embedded
            captioner on the teacher's tokens, trained on the world's pretraining captions) or ``"sampler"`` (any
            language backend of ``describer_sampler``, e.g. an OpenAI-compatible vision endpoint). A
            ``descriptions_file`` replaces both.
        captioner_size: ``CaptionerConfig`` of the embedded captioner: ``"smoke"`` or ``"default"``.
        captioner_checkpoint: a saved captioner folder to use instead of training one ("" = train or reuse the
            cached one for this world and teacher).
        captioner_weights: ``auto`` | ``released`` | ``released-any`` | ``retrain``: which captioner weights (the
            run's ``teacher.weights``, filled in by the stage; see ``mipd_kit.language.captioner.captioner_for``).
        describe_temperature: the captioner's sampling temperature (<= 0: greedy).
        describer_sampler: ``SamplerConfig`` fields for ``describer="sampler"`` (``backend``, ``openai``, ``hf``).
        hidden, dropout: student widths.
        epochs, batch_images, lr, weight_decay: optimisation (AdamW, cosine schedule).
        pool, pool_tau: pair -> image pooling and its temperature.
        kd_temperature: distillation temperature T (KL terms scaled by T**2); also the scoring temperature.
        w_image, w_cross, w_context, w_region: loss weights (per-image KL, cross-image KL, context InfoNCE,
            per-pair KL to the teacher on union crops; the last needs ``crop_features``).
        context_tau: InfoNCE temperature; description_temperature: softmax temperature of the description.
        w_describe: weight of the description distillation (``losses.description_distillation_loss``, the
            ``clhoi*`` rows): the pooled pair scores also distil the HOI distribution the image's description names
            (``softmax_k(cos(d_i, e_k) / describe_tau)``), per image and across images; 0 = the description reaches
            the student only through the VLT's InfoNCE target and the pairs' attention to the VLT's tokens.
        describe_tau: temperature of the description's HOI logits.
        descriptions_file: optional JSON ``{filename: text}`` of VLLM descriptions (real mode): the ``clhoi``
            VLT target (no describer call); for ``clhoi-logitctx`` mixed into the logit-mix target as before.
        models: which rows to produce: any of ``LABEL_FREE_MODELS`` (default: all of them) and
            ``CONTROL_MODELS`` (``clhoi-oracle``, ``clhoi-oracle-shuffled``, ``weak-mil``, ``upper``: they read
            ``hoi_train.json``'s labels, each in its one stated way, see ``controls.py``).
        score: how a student's pair logits become detection scores (``student_pair_scores``).
        topk_per_pair: keep the best k HOIs per pair in the prediction file (0 = all candidates).
        protocol: evaluation protocol (``official`` | ``continuous`` | ``both``).
        vcoco: also score every prediction file as V-COCO scenario-1 role AP (rows with setting ``scenario_1``).
        eval_split: ``"test"``, or ``"dev"``: hold out a fraction ``dev_frac`` of ``hoi_train`` (chosen by a
            seeded hash of the file name, ``dev_seed``), train on the rest and evaluate on it -- for choosing
            settings without looking at the test split (dev has no unseen HOIs: choose on Full).
        threads: torch threads (0 = leave the default).
        device: ``auto`` | ``cpu`` | ``cuda[:N]`` for the ICN / CL-HOI students (``mipd_kit.machine.resolve_device``);
            initialisation and batch order are drawn on the CPU, the same on every device.
        amp: bf16 autocast of the students' forward passes on CUDA (no effect on the CPU).
        workers: rows (model x seed) run side by side in processes forked after the shared preparation (proposals,
            teacher features, descriptions), each of one torch thread (a forked process cannot run more:
            ``mipd_kit.machine.fork_map``; on N cores use N workers); CPU only
            (``device`` other than ``cpu``: one at a time). A row's numbers are those of its own thread count:
            repeatable for a given count; another count changes the float summation order as another seed would.
    """

    world_dir: str = "data/synthsitu/smoke-seed0"
    run_dir: str = "reports/clhoi"
    cache_dir: str = "data/cache"
    seed: int = 0
    seeds: tuple[int, ...] = (0, 1, 2)
    teacher: Literal["embedded", "checkpoint", "tiny"] = "embedded"
    teacher_size: Literal["smoke", "default"] = "default"
    teacher_checkpoint: str = ""
    teacher_logit_scale: float = 0.0
    proposals: Literal["known_boxes", "detector"] = "known_boxes"
    detections_train: str = ""
    detections_test: str = ""
    jitter: float = 0.1
    object_labels: bool = True
    score_threshold: float = 0.2
    roi_size: int = 2
    crop_features: bool = True
    prior_weight: float = 1.0
    context_gate: float = 1.0
    context_fusion: Literal["cross_attention", "broadcast"] = "cross_attention"
    describer: Literal["captioner", "sampler"] = "captioner"
    captioner_size: Literal["smoke", "default"] = "default"
    captioner_checkpoint: str = ""
    captioner_weights: str = "auto"
    describe_temperature: float = 0.7
    describer_sampler: dict = field(default_factory=dict)
    hidden: int = 128
    dropout: float = 0.1
    epochs: int = 20
    batch_images: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    pool: Literal["lse", "max", "mean"] = "lse"
    pool_tau: float = 1.0
    kd_temperature: float = 2.0
    w_image: float = 1.0
    w_cross: float = 1.0
    w_context: float = 0.5
    w_region: float = 1.0
    context_tau: float = 0.1
    w_describe: float = 1.0
    describe_tau: float = 0.02
    description_temperature: float = 1.0
    descriptions_file: str = ""
    models: tuple[str, ...] = LABEL_FREE_MODELS
    score: Literal["pair_prior", "joint", "relative"] = "pair_prior"
    topk_per_pair: int = 0
    protocol: Literal["official", "continuous", "both"] = "official"
    vcoco: bool = True
    eval_split: Literal["test", "dev"] = "test"
    dev_frac: float = 0.2
    dev_seed: int = 0
    threads: int = 0
    device: str = "cpu"
    amp: bool = False
    workers: int = 1

    @classmethod
    def smoke(cls, **kw: Any) -> "CLHOIConfig":
        """Seconds on a CPU: smoke teacher, one seed, few epochs, narrow student."""
        base = dict(teacher_size="smoke", captioner_size="smoke", seeds=(0,), epochs=8, hidden=32, batch_images=32)
        base.update(kw)
        return cls(**base)

    @classmethod
    def from_dict(cls, d: dict) -> "CLHOIConfig":
        from ..overrides import known_fields
        d = known_fields(cls, d)
        for k in ("seeds", "models"):
            if k in d and d[k] is not None:
                d[k] = tuple(d[k])
        return cls(**d)

    def validate(self) -> None:
        from ..checks import check_config
        check_config(self, "CLHOIConfig")  # types and ranges of every field: epochs >= 1, lr > 0... (mipd_kit.checks)
        for k, choices in (("teacher", ("embedded", "checkpoint", "tiny")), ("proposals", ("known_boxes", "detector")),
                           ("pool", ("lse", "max", "mean")), ("teacher_size", ("smoke", "default")),
                           ("score", ("pair_prior", "joint", "relative")), ("describer", ("captioner", "sampler")),
                           ("captioner_size", ("smoke", "default")),
                           ("context_fusion", ("cross_attention", "broadcast")), ("eval_split", ("test", "dev"))):
            if getattr(self, k) not in choices:
                raise ValueError(f"CLHOIConfig.{k} = {getattr(self, k)!r}; choose one of {choices}")
        bad = [m for m in self.models if m not in MODELS]
        if bad:
            raise ValueError(f"unknown CL-HOI models {bad}; choose from {MODELS}")
        if "teacher_crop" in self.models and not self.crop_features:
            raise ValueError("model 'teacher_crop' needs crop_features=True")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"CLHOIConfig.workers = {self.workers!r}; must be a positive integer")
        if self.eval_split == "dev" and not 0.0 < self.dev_frac < 1.0:
            raise ValueError(f"CLHOIConfig.dev_frac = {self.dev_frac!r}; must be in (0, 1) for eval_split='dev'")
