"""The student's config: its fingerprint keys every checkpoint, so existing configs keep theirs, runtime fields never
enter it, and the model is typed by it."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
from dataclasses import dataclass

import pytest

from mipd_kit.student.config import StudentConfig, _runtime, fingerprint_fields
from mipd_kit.student.ingredients import VARIANTS
from mipd_kit.student.model import OvGSRStudent, build_student


def reference_fingerprint(cfg: StudentConfig) -> str:
    """The fingerprint as the checkpoints on disk were keyed (the rule written out by hand, field by field)."""
    d = dataclasses.asdict(cfg)
    for k in ("threads", "strict_rationales", "device", "verb_centring"):
        d.pop(k)
    if not d["amp"]:
        d.pop("amp")
    if d["steps"] is None:
        d.pop("steps")
    if not d["pooled_dim"]:
        d.pop("pooled_dim")
        d.pop("use_pooled")
    if not d["text_anchor"]:
        d.pop("text_anchor")
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _configs() -> list[StudentConfig]:
    out = [StudentConfig(), StudentConfig.smoke()]
    out += [StudentConfig(variant=v) for v in VARIANTS] + [StudentConfig.smoke(v) for v in VARIANTS]
    base = StudentConfig.smoke("paper")
    out += [dataclasses.replace(base, **kw) for kw in (
        {"amp": True}, {"steps": 40}, {"pooled_dim": 32}, {"pooled_dim": 32, "use_pooled": False},
        {"use_pooled": False}, {"threads": 3}, {"device": "auto"}, {"verb_centring": 1.0},
        {"strict_rationales": True}, {"seed": 4, "lr": 3e-4}, {"backbone": "cached", "in_dim": 16, "num_tokens": 9},
        {"nmpa": dataclasses.replace(base.nmpa, epochs=base.nmpa.epochs + 1)})]
    return out


@pytest.mark.parametrize("i", range(len(_configs())))
def test_fingerprints_of_existing_configs_are_unchanged(i):
    cfg = _configs()[i]
    assert cfg.fingerprint() == reference_fingerprint(cfg)


def test_runtime_fields_never_enter_the_fingerprint():
    """The runtime knobs are declared as such; changing one, or adding a new one, leaves the fingerprint alone,
    while a field that shapes the weights changes it."""
    assert {"threads", "device", "verb_centring", "strict_rationales"} <= set(StudentConfig.runtime_fields())
    assert not {"threads", "device", "verb_centring"} & set(fingerprint_fields(StudentConfig()))
    base = StudentConfig.smoke()
    assert dataclasses.replace(base, threads=2, device="auto").fingerprint() == base.fingerprint()
    assert dataclasses.replace(base, width=64).fingerprint() != base.fingerprint()
    assert dataclasses.replace(base, amp=True).fingerprint() != base.fingerprint()  # bf16 trains other weights

    @dataclass
    class WithWorkers(StudentConfig):
        workers: int = _runtime(4)

    new = WithWorkers(**dataclasses.asdict(StudentConfig.smoke()) | {"workers": 8})
    assert "workers" in WithWorkers.runtime_fields()
    assert new.fingerprint() == base.fingerprint()


def test_the_model_is_typed_by_the_config():
    assert inspect.signature(OvGSRStudent.__init__).parameters["cfg"].annotation in (StudentConfig, "StudentConfig")
    assert inspect.signature(build_student).parameters["cfg"].annotation in (StudentConfig, "StudentConfig")
