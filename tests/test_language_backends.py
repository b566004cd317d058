"""A new language backend is added in ``mipd_kit.language`` only: one builder in the factory's table."""

import json

from mipd_kit.language import factory
from mipd_kit.language.base import Response
from mipd_kit.language.factory import SamplerConfig, build_sampler
from mipd_kit.rationales.jrg import JRGConfig, run_jrg
from mipd_kit.rationales.store import read_rationales
from mipd_kit.rationales.toy import write_toy_world


class ToyJudge:
    """Accepts everything with score 9: a backend no module of the toolkit knows."""

    fingerprint = "toy-judge-v1"

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, messages):
        self.calls += 1
        return Response(json.dumps({"score": 9, "accept": True, "reasons": ["toy"]}), tuple(messages))


def test_a_toy_backend_registered_in_the_factory_judges_a_jrg_run(tmp_path, monkeypatch):
    made = []

    def build_toy(cfg, **_):
        made.append(ToyJudge())
        return made[-1]

    monkeypatch.setitem(factory.BUILDERS, "toy", build_toy)
    assert isinstance(build_sampler(SamplerConfig(backend="toy", purpose="judge")), ToyJudge)
    write_toy_world(tmp_path / "w", tmp_path / "r", n_per_verb=2)
    cfg = JRGConfig(rounds=1, n_hard_negatives=0, workers=1)
    cfg.judge = SamplerConfig(backend="toy", purpose="judge")
    run_jrg(cfg, tmp_path / "w", tmp_path / "r")
    recs = read_rationales(tmp_path / "r" / "rationales.jsonl")
    assert made and made[-1].calls > 0
    judged = [r for r in recs if r.verdict]
    assert judged and all(r.verdict["reasons"] == ["toy"] and r.polarity == "positive" for r in judged)


def test_an_unknown_backend_names_the_known_ones():
    import pytest
    with pytest.raises(ValueError, match="unknown language backend 'nope'.*embedded"):
        build_sampler(SamplerConfig(backend="nope"))
