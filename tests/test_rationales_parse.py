"""``parse_verdict`` on odd judge replies, and the prompt templates."""

from __future__ import annotations

import re

import pytest

from mipd_kit.data.swig import load_frame_space, load_situations
from mipd_kit.rationales import prompts as P
from mipd_kit.rationales.prompts import Verdict, parse_verdict
from mipd_kit.rationales.toy import write_toy_world


@pytest.mark.parametrize("reply, expected", [
    ('{"score": 8, "accept": true, "reasons": ["ok"]}', Verdict(8.0, True, ("ok",))),
    ('```json\n{"score": 3, "accept": false, "reasons": ["wrong verb"]}\n```', Verdict(3.0, False, ("wrong verb",))),
    ('Sure! Here is my verdict:\n{"score": 7.5, "accept": true, "reasons": []}\nHope this helps.', Verdict(7.5, True, ())),
    ("{'score': 2, 'accept': False, 'reasons': ['no agent']}", Verdict(2.0, False, ("no agent",))),
    ('{"Score": "9", "Accept": "yes", "Reasons": "fine"}', Verdict(9.0, True, ("fine",))),
    ('```\n{"score": 0, "accept": false, "reasons": ["the text says {nothing}"]}\n```', Verdict(0.0, False, ("the text says {nothing}",))),
    ('Thinking... {"draft": 1} final: {"score": 6, "accept": false, "reasons": ["a", "b"]}', Verdict(6.0, False, ("a", "b"))),
    ('{"verdict": {"score": 1}} {"score": 10, "accept": true, "reasons": ["x"]}', Verdict(10.0, True, ("x",))),
])
def test_parses_odd_but_valid_replies(reply, expected):
    assert parse_verdict(reply) == expected


@pytest.mark.parametrize("reply", [
    "", "   ", "I think it is an eight.", '{"score": 8, "accept": true', '{"score": 8, "accept": true}',
    '{"accept": true, "reasons": []}', '{"score": 11, "accept": true, "reasons": []}',
    '{"score": -1, "accept": false, "reasons": []}', '{"score": "high", "accept": true, "reasons": []}',
    '{"score": 5, "accept": "maybe", "reasons": []}', '{"score": true, "accept": true, "reasons": []}',
    '{"score": 5, "accept": true, "reasons": [{"a": 1}]}', "[1, 2, 3]", None,
])
def test_unparseable_or_incomplete_gives_none(reply):
    assert parse_verdict(reply) is None


def test_prompts_fill_every_field(tmp_path):
    ev = write_toy_world(tmp_path / "w", tmp_path / "r")
    space = load_frame_space(tmp_path / "w" / "imsitu_space.json")
    sits = load_situations(tmp_path / "w" / "train.json", space)
    sit = sits["riding_0.png"]
    g = P.build_glimpse_prompt(space, sit, ev[sit.image])
    z = P.build_gaze_prompt(space, sit, "vehicle", ev[sit.image], target_verb="feeding", previous="old text",
                            reasons=["entity 'dog' is wrong"])
    j = P.build_judge_prompt(space, sit, ev[sit.image], "gaze", "vehicle", "A horse.", threshold=7)
    for text in (g, z, j):
        assert not re.search(r"\{[a-z_]+\}", text)  # no unfilled field
        assert "Image: riding_0.png" in text
    assert "AGENT rides VEHICLE at PLACE" in g and "Task: glimpse rationale" in g
    assert "Role: vehicle" in z and "Activity to describe: feeding" in z and "entity 'dog' is wrong" in z
    assert "Annotated verb: riding" in j and "- vehicle (the entity ridden): horse [pony]" in j
    assert "man [adult male, guy]; person [human]; man" in j  # the 3 annotators' nouns with synonyms


def test_generation_templates_reader(tmp_path, shared_data):
    from tests.conftest import shared_file
    t = P.load_generation_templates(shared_file("my89__imSitu/simple_sentence_realization/generation_templates.tab"))
    assert t["pressing"] == "AGENT presses ITEM at PLACE" and len(t) > 500
    bad = tmp_path / "bad.tab"
    bad.write_text("pressing AGENT presses\n")
    with pytest.raises(Exception, match="bad.tab: line 1"):
        P.load_generation_templates(bad)


def test_prompt_fingerprint_is_stable():
    assert P.prompts_fingerprint() == P.prompts_fingerprint() and len(P.prompts_fingerprint()) == 8
