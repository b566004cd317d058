"""The embedded (offline, rule-based) generator and judge: they read the real prompts and answer like an LLM."""

from __future__ import annotations

import pytest

from mipd_kit.data.swig import load_frame_space, load_situations
from mipd_kit.language.base import Sampler
from mipd_kit.language.embedded import EmbeddedGenerator, EmbeddedJudge
from mipd_kit.language.factory import SamplerConfig, build_sampler
from mipd_kit.rationales import prompts as P
from mipd_kit.rationales.toy import write_toy_world


@pytest.fixture()
def world(tmp_path):
    ev = write_toy_world(tmp_path / "w", tmp_path / "r")
    space = load_frame_space(tmp_path / "w" / "imsitu_space.json")
    return space, load_situations(tmp_path / "w" / "train.json", space), ev


def user(text):
    return [{"role": "system", "content": P.SYSTEM_GENERATOR}, {"role": "user", "content": text}]


def judge_msgs(space, sit, ev, kind, role, text):
    return [{"role": "user", "content": P.build_judge_prompt(space, sit, ev, kind, role, text, threshold=7)}]


def test_factory_and_protocol():
    g = build_sampler(SamplerConfig(purpose="generator", seed=3))
    j = build_sampler(SamplerConfig(purpose="judge", malformed_rate=0.1), threshold=6)
    assert isinstance(g, EmbeddedGenerator) and isinstance(j, EmbeddedJudge) and j.threshold == 6
    assert isinstance(g, Sampler) and isinstance(j, Sampler)
    assert g.fingerprint != EmbeddedGenerator(seed=4).fingerprint


def test_generator_is_deterministic_and_varied(world):
    space, sits, ev = world
    g = EmbeddedGenerator(seed=0)
    texts = set()
    for img, sit in sits.items():
        m = user(P.build_glimpse_prompt(space, sit, ev[img]))
        a, b = g(m).text, g(m).text
        assert a == b and a
        texts.add(a.split(" ")[0])
    assert len(texts) >= 2  # wording varies between images
    assert EmbeddedGenerator(seed=1)(m).text != "" and g(m).messages == tuple(m)


def test_generator_follows_directive_and_feedback(world):
    space, sits, ev = world
    sit = sits["riding_0.png"]
    g = EmbeddedGenerator(seed=0, p_top=1.0)
    directed = g(user(P.build_glimpse_prompt(space, sit, ev[sit.image], target_verb="feeding"))).text
    assert "feeds" in directed or "feeding" in directed
    top = ev[sit.image]["top_verbs"][0][0]
    plain = g(user(P.build_glimpse_prompt(space, sit, ev[sit.image]))).text
    assert top in plain or P.abstract_of(space, top).split()[1] in plain
    fb = g(user(P.build_glimpse_prompt(space, sit, ev[sit.image], previous=plain,
                                       reasons=[f"the rationale names the activity '{top}', which contradicts the annotated frame"]))).text
    assert top not in fb  # avoids the activity the judge rejected
    gz = g(user(P.build_gaze_prompt(space, sit, "vehicle", ev[sit.image]))).text
    first = ev[sit.image]["role_nouns"]["vehicle"][0][0]
    assert first in gz
    gz2 = g(user(P.build_gaze_prompt(space, sit, "vehicle", ev[sit.image], previous=gz,
                                     reasons=[f"entity '{first}' is not what the annotators chose for the role 'vehicle'"]))).text
    assert first not in gz2


def test_judge_accepts_right_and_rejects_wrong(world):
    space, sits, ev = world
    sit = sits["riding_0.png"]  # man rides horse at field
    j = EmbeddedJudge()
    good = j.score(judge_msgs(space, sit, ev[sit.image], "glimpse", None, "The image shows riding: a man rides a horse at a field.")[0]["content"])
    assert good[1] is True and good[0] >= 9
    wrong = j.score(judge_msgs(space, sit, ev[sit.image], "glimpse", None, "The image shows feeding: a man feeds bread to a horse.")[0]["content"])
    assert wrong[1] is False and any("feeding" in r for r in wrong[2])
    syn = j.score(judge_msgs(space, sit, ev[sit.image], "gaze", "agent", "A guy, large, on the left, is the agent of riding.")[0]["content"])
    assert syn[1] is True  # synonyms of the annotators' nouns count
    bad = j.score(judge_msgs(space, sit, ev[sit.image], "gaze", "vehicle", "A bicycle, small, on the left, is the vehicle of riding.")[0]["content"])
    assert bad[1] is False and any("entity 'bicycle'" in r for r in bad[2])
    assert j.score(judge_msgs(space, sit, ev[sit.image], "gaze", "vehicle", " ")[0]["content"])[:2] == (0, False)


def test_judge_replies_parse_through_the_common_parser(world):
    space, sits, ev = world
    j = EmbeddedJudge()
    styles = set()
    for img, sit in sits.items():
        for text in ("The image shows riding: a man rides a horse.", "A dog appears small on the left.", "x y z"):
            r = j(judge_msgs(space, sit, ev[img], "glimpse", None, text)).text
            v = P.parse_verdict(r)
            assert v is not None and 0 <= v.score <= 10
            styles.add(r[:1])
    assert len(styles) >= 2  # bare JSON, fences, prose, python dicts are all produced


def test_malformed_rate_makes_unparseable_replies(world):
    space, sits, ev = world
    sit = sits["riding_0.png"]
    j = EmbeddedJudge(malformed_rate=1.0)
    assert P.parse_verdict(j(judge_msgs(space, sit, ev[sit.image], "glimpse", None, "riding")).text) is None
