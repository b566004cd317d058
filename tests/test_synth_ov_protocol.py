"""SynthSitu ov protocol v2: dev-only unseen verbs, novel-primitive distractors, and a pretraining corpus (and the
embedded teacher's data fingerprint) identical to the v1 world of the same seed."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from mipd_kit.data.splits import OvSplit
from mipd_kit.data.swig import load_situations
from mipd_kit.data.synthsitu import world as W
from mipd_kit.data.synthsitu.generate import (CORPUS_VERSION_OF, GENERATION_FILE, GENERATOR_VERSION, OV_META_KEY,
                                              V2_FIELDS, SynthConfig, SynthError, corpus_meta_bytes, generate,
                                              read_meta, read_rendered)
from tests.test_synth_world import _files, tiny


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ov")
    generate(replace(tiny(0), ov_protocol="v1"), root / "v1")
    generate(replace(tiny(0), ov_protocol="v2", novel_distractor_p=0.5), root / "v2")
    return root / "v1", root / "v2"


def test_v1_key_and_meta_are_those_before_the_protocol(pair):
    v1, _ = pair
    key = replace(tiny(0), ov_protocol="v1").world_key()
    assert not set(V2_FIELDS) & set(key)
    meta = read_meta(v1)
    assert OV_META_KEY not in meta and meta["config"] == key
    split = json.loads((v1 / "ov_split.json").read_text())
    assert "unseen_dev" not in split and "unseen_test" not in split
    for name in ("dev", "test"):  # every unseen verb in dev and test, as before
        verbs = {s.verb for s in load_situations(v1 / f"{name}.json").values()}
        assert set(split["unseen"]) <= verbs


def test_v2_dev_only_unseen_verbs_never_in_test(pair):
    _, v2 = pair
    split = OvSplit.load(v2 / "ov_split.json")
    dev_only, test_only = set(split.extra["unseen_dev"]), set(split.extra["unseen_test"])
    assert dev_only and not dev_only & test_only and dev_only | test_only == set(split.unseen)
    kinds = {v.name: v.kind for v in W.VERBS}
    assert sum(kinds[v] == "unseen_compositional" for v in dev_only) >= 2
    assert sum(kinds[v] == "unseen_novel" for v in dev_only) >= 2
    assert set(split.extra["unseen_dev_compositional"]) | set(split.extra["unseen_dev_novel"]) == dev_only
    dev = {s.verb for s in load_situations(v2 / "dev.json").values()}
    test = {s.verb for s in load_situations(v2 / "test.json").values()}
    train = {s.verb for s in load_situations(v2 / "train.json").values()}
    assert not dev_only & test and dev_only <= dev  # dev-only verbs are evaluated on dev, never on test
    assert not test_only & dev and test_only <= test  # no selection on dev can look at a test-unseen verb
    assert not set(split.unseen) & train
    assert read_meta(v2)[OV_META_KEY]["unseen_dev"] == sorted(dev_only)


def test_v2_novel_primitives_appear_only_as_unlabelled_distractors(pair):
    _, v2 = pair
    novel_poses = {p.split("=")[1] for ps in W.novel_primitives().values() for p in ps if p.startswith("pose=")}
    seen = {"train": 0, "unlabeled": 0}
    for rec in read_rendered(v2).values():
        shown = [d for d in rec.get("distractors", []) if d.get("pose") in novel_poses]
        if rec["split"] in seen:
            seen[rec["split"]] += len(shown)
        elif rec["split"] in ("dev", "test", "pretrain"):
            assert not shown, rec["image"]
    assert seen["train"] > 0
    train = load_situations(v2 / "train.json")
    assert all(W.VERB_BY_NAME[s.verb].kind in ("seen", "rare") for s in train.values())


def test_pretraining_corpus_and_teacher_fingerprint_identical_v1_v2(pair):
    from mipd_kit.teachers.embedded import data_fingerprint
    v1, v2 = pair
    a = {k: v for k, v in _files(v1).items() if k.startswith("pretrain/")}
    b = {k: v for k, v in _files(v2).items() if k.startswith("pretrain/")}
    assert a and a == b
    # a v1 world hashes its own file, written as the generator version whose corpus it shares (CORPUS_VERSION_OF)
    same = CORPUS_VERSION_OF.get(GENERATOR_VERSION, GENERATOR_VERSION)
    own = (v1 / "meta.json").read_bytes().replace(f'"version": "{GENERATOR_VERSION}"'.encode(),
                                                   f'"version": "{same}"'.encode())
    assert corpus_meta_bytes(v1) == own
    assert corpus_meta_bytes(v2) == own  # v2 without its protocol facts is v1's meta
    assert data_fingerprint(v1, exclude_unseen="names") == data_fingerprint(v2, exclude_unseen="names") != data_fingerprint(v1)
    assert (v2 / "meta.json").read_bytes() != (v1 / "meta.json").read_bytes()
    assert data_fingerprint(v1) == data_fingerprint(v2)
    assert data_fingerprint(v1, 50) == data_fingerprint(v2, 50) != data_fingerprint(v1)
    # and the labelled images differ where the protocol says (dev/test verb plans, train distractors)
    fa, fb = _files(v1), _files(v2)
    assert fa["test.json"] != fb["test.json"] and set(fa) == set(fb) and GENERATION_FILE in fa


def test_bad_protocol_is_refused():
    with pytest.raises(SynthError, match="ov_protocol"):
        replace(tiny(0), ov_protocol="v3")
    with pytest.raises(SynthError, match="dev-only"):
        replace(tiny(0), dev_unseen_novel=0).unseen_dev()


def test_student_backbone_corpus_filters(pair):
    """``exclude_unseen``: "scenes" drops every pair of an unseen-verb scene, "names" every caption naming an unseen
    verb (pictures of unseen scenes described by primitives stay), "" none; the fingerprints tell them apart."""
    import re

    from mipd_kit.data.synthsitu.captions import VERB_WORDS
    from mipd_kit.data.splits import load_ov_split
    from mipd_kit.teachers.embedded import EmbeddedTeacherConfig, pretraining_records, read_captions
    _, v2 = pair
    unseen = set(load_ov_split(v2)["unseen"])
    every = read_captions(v2)
    cfg = EmbeddedTeacherConfig.smoke()
    assert len(pretraining_records(v2, replace(cfg, max_pairs=None))) == len(every)
    scenes = pretraining_records(v2, replace(cfg, max_pairs=None, exclude_unseen="scenes"))
    assert scenes and not any(unseen & set(r["verbs"]) for r in scenes)
    assert len(scenes) == sum(1 for r in every if not unseen & set(r["verbs"]))
    names = pretraining_records(v2, replace(cfg, max_pairs=None, exclude_unseen="names"))
    pat = re.compile(r"\b(" + "|".join(re.escape(w) for v in unseen for w in (v, *VERB_WORDS[v])) + r")\b", re.I)
    assert names and not any(pat.search(r["caption"]) for r in names) and len(names) >= len(scenes)
    fps = {m: replace(cfg, exclude_unseen=m).data_fingerprint(v2) for m in ("", "scenes", "names")}
    assert len(set(fps.values())) == 3
    with pytest.raises(ValueError, match="exclude_unseen"):
        pretraining_records(v2, replace(cfg, exclude_unseen="everything"))
