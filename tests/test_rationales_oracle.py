"""Oracle rationales (the positive control's texts): right content by construction, never a verb's name."""

from __future__ import annotations

from pathlib import Path

import pytest

from mipd_kit.data.swig import load_frame_space, load_situations
from mipd_kit.data.synthsitu import world as W
from mipd_kit.data.synthsitu.captions import VERB_WORDS
from mipd_kit.data.synthsitu.generate import generate, read_rendered
from mipd_kit.rationales.controls import shuffle_positives
from mipd_kit.rationales.oracle import ORACLE_BACKEND, _verb_word_re, oracle_rationales
from mipd_kit.rationales.store import collect
from tests.test_synth_world import tiny


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("oracle") / "w"
    generate(tiny(0), out)
    return out


@pytest.fixture(scope="module")
def records(world):
    sits = load_situations(world / "train.json")
    space = load_frame_space(world / "imsitu_space.json")
    return sits, oracle_rationales(world, sits, {v: space.roles(v) for v in space.verbs}, seed=0)


def test_every_training_image_gets_positive_and_negative_glimpses_and_gazes(records):
    sits, recs = records
    got = collect(recs)
    assert set(got) == set(sits)
    for img, c in got.items():
        assert len(c["glimpse"]["positive"]) >= 2 and c["glimpse"]["negative"], img
        assert "agent" in c["gaze"] and c["gaze"]["agent"]["positive"] and c["gaze"]["agent"]["negative"], img
    assert {r.backend for r in recs} == {ORACLE_BACKEND}
    assert all((r.score == 10.0) == (r.polarity == "positive") for r in recs)


def test_texts_name_the_true_pose_and_object_and_never_a_verb(records, world):
    sits, recs = records
    rend = read_rendered(world)
    words = _verb_word_re()
    nouns = sorted((c.name.replace("_", " ") for c in W.CONCEPTS), key=len, reverse=True)
    for r in recs:
        text = r.text
        for n in nouns:  # an object's name ("fishing rod") is not a verb said
            text = text.replace(n, "")
        assert not words.search(text), (r.image, r.text)
        assert sits[r.image].verb not in text
    # the first positive glimpse says the agent's true pose and names the main object
    for img in list(sits)[:20]:
        inst = rend[f"images/{img}"]["instances"][0]
        first = next(r.text for r in recs if r.image == img and r.kind == "glimpse" and r.polarity == "positive")
        assert any(p in first for p in W.POSE_PHRASES[inst["pose"]]), (img, first)
        main = W.VERB_BY_NAME[sits[img].verb].main_role
        if main in inst["objects"]:
            assert inst["objects"][main].replace("_", " ") in first, (img, first)


def test_a_negative_swaps_one_primitive(records, world):
    sits, recs = records
    rend = read_rendered(world)
    img = sorted(sits)[0]
    inst = rend[f"images/{img}"]["instances"][0]
    negs = [r.text for r in recs if r.image == img and r.kind == "glimpse" and r.polarity == "negative"]
    pos = [r.text for r in recs if r.image == img and r.kind == "glimpse" and r.polarity == "positive"]
    assert negs and not set(negs) & set(pos)
    # the pose-swapped negative does not say the true pose
    assert not any(p in negs[0] for p in W.POSE_PHRASES[inst["pose"]]), negs[0]


def test_same_seed_same_texts_and_the_shuffled_oracle_moves_positives(records, world):
    sits, recs = records
    space = load_frame_space(world / "imsitu_space.json")
    again = oracle_rationales(world, sits, {v: space.roles(v) for v in space.verbs}, seed=0)
    assert [r.text for r in again] == [r.text for r in recs]
    sh = shuffle_positives(recs, sits, seed=0)
    moved = [r for r in sh if r.polarity == "positive"]
    assert moved and all(r.verdict["shuffled_from"] != r.image for r in moved)
    assert all(sits[r.verdict["shuffled_from"]].verb == sits[r.image].verb for r in moved)


def test_verb_words_cover_every_verb():
    assert set(VERB_WORDS) == {v.name for v in W.VERBS}


def test_the_oracle_also_describes_the_unlabeled_pool(world):
    # what the positive control on the pool route reads (stage rationales adds unlabeled_gt.json's images)
    space = load_frame_space(world / "imsitu_space.json")
    pool = load_situations(world / "unlabeled_gt.json")
    recs = oracle_rationales(world, pool, {v: space.roles(v) for v in space.verbs})
    got = collect(recs)
    assert set(got) == set(pool) and all(c["glimpse"]["positive"] for c in got.values())
    # the pool shows unseen verbs: their scenes are described, by their primitives only
    unseen = [n for n, s in pool.items() if W.VERB_BY_NAME[s.verb].kind.startswith("unseen")]
    assert unseen and all(pool[n].verb not in " ".join(got[n]["glimpse"]["positive"]) for n in unseen)
