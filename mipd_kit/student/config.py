"""The student's configuration (:class:`StudentConfig`): model size, loss weights, optimisation, data, NMPA, and
the runtime knobs; its fingerprint keys every student checkpoint.

Each field declares how it enters the fingerprint (its ``metadata["fingerprint"]``): by default it does; a runtime
or post-training field (:func:`_runtime`: device, threads, verb-logit centring, the rationale check) never does, so a
new runtime field leaves every checkpoint's fingerprint as it is; a field whose default is the behaviour the student
had without it (:func:`_set_only`: ``steps``, ``amp``, the pooled input) enters only when set away from it, so
checkpoints trained at the default keep their fingerprint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional

from ..align.nmpa import NMPAConfig
from .ingredients import INGREDIENTS, MODEL_NAMES, USES, VARIANTS, Variant



def _runtime(default: Any) -> Any:
    """A field the trained weights do not depend on: never part of the fingerprint."""
    return field(default=default, metadata={"fingerprint": False})


def _set_only(default: Any, is_set: Callable[["StudentConfig"], bool]) -> Any:
    """A field part of the fingerprint only while ``is_set(cfg)``: at its default it trains what the student trained
    without the field, so those checkpoints keep their fingerprint."""
    return field(default=default, metadata={"fingerprint": is_set})


def fingerprint_fields(cfg: "StudentConfig") -> list[str]:
    """The names of the fields of ``cfg`` that enter its fingerprint (see the module docstring)."""
    out = []
    for f in dataclasses.fields(cfg):
        rule = f.metadata.get("fingerprint", True)
        if rule is True or (callable(rule) and rule(cfg)):
            out.append(f.name)
    return out


@dataclass
class StudentConfig:
    """Student training configuration (weights follow the authors' code unless noted).

    Attributes:
        variant: which row of the study to train (:data:`mipd_kit.student.ingredients.ROWS`: its ingredients).
        backbone: ``"cnn"`` (embedded: small image encoder trained end to end) or ``"cached"`` (real mode).
        image_size, width, d_model, heads, dec_layers: model size. in_dim / num_tokens: cached-feature shape
            (set automatically with a frozen backbone).
        pooled_dim: width of the frozen backbone's pooled image embedding that the scene feature also reads
            (``OvGSRStudent.encode``; the authors' student reads CLIP's CLS token); set automatically with a frozen
            backbone when ``use_pooled``; 0 = tokens only (the edge CNN).
        use_pooled: a cached-feature student reads the backbone's pooled embedding too.
        verb_text: text used for the verb embeddings: ``"name"`` or ``"definition"`` (imSitu abstract/def).
        verb_head: ``"teacher"`` (default: cosine of the student's scene feature, projected into the teacher's joint
            space, against the teacher's *text* embeddings of the verb prompts: a frozen table, no teacher image tower
            at inference), ``"minilm"`` (cosine vs MiniLM verb-name embeddings) or ``"dual"`` (the sum of both).
            Same head for every variant, baseline included. Chosen on dev (docs/methods.md, "How the defaults were chosen").
        kd_vocab: verbs over which logit KD matches the teacher's distribution: ``"all"`` (default: every verb
            *name*, unseen ones included; the teacher's zero-shot scores are the only signal about them, no unseen
            label is used) or ``"train"`` (seen + rare only, the stricter reading).
        epochs, batch_size, lr, weight_decay, clip: optimisation (AdamW; clip = max gradient norm).
        steps: the schedule in optimiser steps instead of epochs (None: ``epochs``): the epochs trained are
            ``ceil(steps / batches per epoch)`` (:meth:`epochs_for`), so a world of another size gets about the same
            number of updates, not the same number of passes.
        verb_smoothing, noun_smoothing: label smoothing (0.3 / 0.2 as the authors).
        w_verb, w_noun, w_l1, w_giou, w_exists: supervised loss weights (1 / 1 / 5 / 5 / 5, the authors').
        w_scene, w_role: feature-distillation weights (2 / 2 with ``distill_kind="l1"``, the authors'; the versions
            before the fair-test protocol used cosine x5 / x1); distill_kind ``"l1"`` or ``"cosine"``.
        w_kd, kd_t: logit distillation weight (10) and temperature, for the rows with the ``kd`` ingredient only.
        w_neg, neg_kind: student negative-guided term weight (5, the authors') and form, for the rows with ``neg``;
            it acts on the student's own negative projection (``OvGSRStudent.neg_proj``), never on the verb head's
            input, and negatives naming the image's gold verb are dropped before training.
        text_anchor: for the rows whose targets come from NMPA: add the mean embedding of each image's positive
            glimpse rationales, scaled to ``text_anchor`` times the target's length, to its scene target
            (:func:`mipd_kit.align.nmpa.text_anchored`); 0 = the aligned feature alone, the authors' target.
        unlabeled_ratio: unlabeled images per labelled image in a step (``unlabeled`` variant).
        select_on_dev: keep the epoch with the best dev verb top-1 on *trainable* verbs (never test).
        strict_rationales: fail if any training image lacks rationales (default: train with what exists).
        nmpa: NMPA config (its ``w_neg`` is zeroed for variants without negatives; its seed follows ``seed``).
        seed: seeds initialisation, data order and NMPA.
        threads: torch threads (0 = leave).
        device: ``auto`` | ``cpu`` | ``cuda[:N]`` (``mipd_kit.machine.resolve_device``) for the student and its
            NMPA; not part of the fingerprint (a checkpoint resumes on another device). Data order and
            initialisation are drawn on the CPU, so they are the same on every device.
        amp: bf16 autocast of the forward passes on CUDA (no effect on the CPU); part of the fingerprint when on.
        verb_centring: after training, subtract this multiple of each verb's mean logit over the training images
            (``model.centre_verb_logits``; features only, no label) from the verb logits of every prediction. 0 =
            off (the plain head, the default here); the default run sets 1.0, chosen on dev
            (docs/methods.md, "Verb-logit centring"). Not part of the fingerprint: the trained weights are the same.
    """

    variant: Variant = "full"
    backbone: Literal["cnn", "cached"] = "cnn"
    image_size: int = 64
    width: int = 96
    d_model: int = 128
    heads: int = 4
    dec_layers: int = 1
    in_dim: int = 0
    num_tokens: int = 0
    pooled_dim: int = _set_only(0, lambda c: bool(c.pooled_dim))
    use_pooled: bool = _set_only(True, lambda c: bool(c.pooled_dim))
    verb_text: Literal["name", "definition"] = "name"
    verb_head: Literal["minilm", "dual", "teacher"] = "teacher"
    kd_vocab: Literal["train", "all"] = "all"
    epochs: int = 12
    steps: Optional[int] = _set_only(None, lambda c: c.steps is not None)
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    clip: float = 1.0
    verb_smoothing: float = 0.3
    noun_smoothing: float = 0.2
    w_verb: float = 1.0
    w_noun: float = 1.0
    w_l1: float = 5.0
    w_giou: float = 5.0
    w_exists: float = 5.0
    w_scene: float = 2.0
    w_role: float = 2.0
    distill_kind: Literal["l1", "cosine"] = "l1"
    w_kd: float = 10.0
    kd_t: float = 2.0
    w_neg: float = 5.0
    neg_kind: Literal["authors", "margin", "infonce"] = "authors"
    text_anchor: float = _set_only(0.0, lambda c: bool(c.text_anchor))
    unlabeled_ratio: float = 1.0
    select_on_dev: bool = True
    strict_rationales: bool = _runtime(False)
    nmpa: NMPAConfig = field(default_factory=NMPAConfig)
    seed: int = 0
    threads: int = _runtime(0)
    device: str = _runtime("cpu")
    amp: bool = _set_only(False, lambda c: c.amp)
    verb_centring: float = _runtime(0.0)

    @classmethod
    def smoke(cls, variant: Variant = "full") -> "StudentConfig":
        return cls(variant=variant, image_size=32, width=48, d_model=64, epochs=2, batch_size=16,
                   nmpa=NMPAConfig.smoke())

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if isinstance(self.nmpa, dict):
            self.nmpa = NMPAConfig(**self.nmpa)
        from ..checks import check_config
        check_config(self, "StudentConfig")  # types and ranges of every field: epochs >= 1, lr > 0... (mipd_kit.checks)

    @property
    def model_name(self) -> str:
        return MODEL_NAMES[self.variant]

    @property
    def uses(self) -> dict[str, bool]:
        """Which ingredients the variant switches on (:data:`USES`)."""
        return {k: k in USES[self.variant] for k in INGREDIENTS}

    def nmpa_config(self) -> NMPAConfig:
        """The NMPA config actually trained for this variant."""
        return dataclasses.replace(self.nmpa, seed=self.seed, w_neg=self.nmpa.w_neg if self.uses["neg"] else 0.0,
                                   use_instances=self.uses["gaze"])

    def fingerprint(self) -> str:
        """Hash of the fields that define the trained weights (:func:`fingerprint_fields`): a checkpoint resumes only
        under the same fingerprint. Runtime fields (device, threads, ...) never enter it."""
        d = dataclasses.asdict(self)
        keep = {k: d[k] for k in fingerprint_fields(self)}
        return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def runtime_fields(cls) -> tuple[str, ...]:
        """The fields that never enter the fingerprint (declared with :func:`_runtime`)."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("fingerprint", True) is False)

    @classmethod
    def from_dict(cls, d: dict) -> "StudentConfig":
        from ..overrides import known_fields
        return cls(**known_fields(cls, d))

    def epochs_for(self, n_train: int) -> int:
        """Epochs trained on ``n_train`` labelled images: ``epochs``, or with ``steps`` the passes that hold at least
        that many optimiser steps."""
        if self.steps is None:
            return self.epochs
        return max(1, math.ceil(self.steps / max(1, math.ceil(n_train / self.batch_size))))

