"""The JRG with the embedded captioner as its generator (the rationales stage's default), its controls and bad input.

A tiny SynthSitu world, a randomly initialised smoke-size embedded teacher saved as a checkpoint (only its image tower
matters) and the smoke captioner trained on the world's pretraining captions by the stage itself (seconds). What the
captioner says is not checked here (it is barely trained); the loop's properties are: the judge's feedback never
gives the answer away, a refinement re-samples and never repeats the words it was told to avoid, negatives never
name the annotated verb, the unlabeled pool gets descriptions that training ignores unless asked, the template and
shuffled controls work, the statistics are consistent, and bad input is counted without losing the store.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from mipd_kit.data.synthsitu.generate import SynthConfig, generate
from mipd_kit.language.base import Response, SamplerRequestError
from mipd_kit.language.captioner import Caption
from mipd_kit.rationales import prompts as P
from mipd_kit.rationales.content import names_verb
from mipd_kit.rationales.controls import shuffle_positives
from mipd_kit.rationales.jrg import JRGFailed
from mipd_kit.rationales.jrg_inputs import load_world
from mipd_kit.rationales.store import collect, read_rationales
from mipd_kit.app.stages import rationales as R
from mipd_kit.teachers.embedded import EmbeddedTeacher, EmbeddedTeacherConfig, save_teacher
from mipd_kit.teachers.zero_shot import teacher_evidence


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("jrgcap")
    world = base / "w"
    generate(replace(SynthConfig.smoke(0), n_train=80, rare_train=2, n_dev=10, n_test=10, n_unlabeled=12,
                     n_hoi_train=6, n_hoi_test=4, n_pretrain=160, workers=1), world)
    torch.manual_seed(0)
    t = EmbeddedTeacher(EmbeddedTeacherConfig.smoke()).eval()
    tdir = save_teacher(t, base / "teacher", {})
    t.checkpoint_dir = tdir
    evidence = base / "teacher_evidence.json"
    teacher_evidence(t, world, evidence)
    return {"base": base, "world": world, "evidence": evidence,
            "teacher_config": {"backend": "checkpoint", "checkpoint": str(tdir)}, "cache": base / "cache"}


def _cfg(env: dict, **kw) -> R.Config:
    return dataclasses.replace(R.Config.smoke(), world_dir=str(env["world"]), cache_dir=str(env["cache"]),
                               teacher_config=env["teacher_config"], max_unlabeled=6, **kw)


def _run_dir(env: dict, name: str) -> Path:
    d = env["base"] / name
    d.mkdir(exist_ok=True)
    shutil.copyfile(env["evidence"], d / "teacher_evidence.json")
    return d


class Recorder:
    """Wraps a sampler and keeps every request's messages."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    def __call__(self, messages):
        self.calls.append(messages)
        return self.inner(messages)


@pytest.fixture(scope="module")
def captioner_run(env) -> dict:
    """The stage's default (captioner generator, embedded judge), every generator request recorded."""
    import mipd_kit.language.captioner as C

    rd = _run_dir(env, "cap")
    calls: list = []
    replies: list = []
    orig = C.CaptionerSampler.__call__

    def spy(self, messages):
        reply = orig(self, messages)
        calls.append(messages)
        replies.append(reply.text)
        return reply

    C.CaptionerSampler.__call__ = spy
    try:
        out = R.run(_cfg(env, rounds=3, max_images=12), rd)
    finally:
        C.CaptionerSampler.__call__ = orig
    return {"out": out, "dir": rd, "calls": calls, "replies": replies,
            "records": read_rationales(rd / "rationales.jsonl")}


def _text(messages) -> str:
    return "\n".join(p["text"] for m in messages for p in (m["content"] if isinstance(m["content"], list) else
                                                           [{"type": "text", "text": m["content"]}])
                     if p.get("type") == "text")


def test_default_generator_is_the_captioner_seeing_the_image(captioner_run) -> None:
    out, calls = captioner_run["out"], captioner_run["calls"]
    assert R.Config().backend == "captioner" and out.jrg.generator.backend == "captioner"
    assert out.jrg.judge.backend == "embedded" and out.jrg.send_images
    assert out.stats["run"]["backend"].startswith("gen=captioner-v1:")
    assert calls and all(any(p.get("type") == "image_path" for m in c if isinstance(m["content"], list)
                             for p in m["content"]) for c in calls)
    assert out.stats["run"]["generator_calls"] == len(calls) and out.stats["run"]["new_rationales"] > 0


def test_feedback_never_reveals_the_answer(env, captioner_run) -> None:
    space, sits = load_world(env["world"])
    refined = 0
    for c in captioner_run["calls"]:
        t = _text(c)
        fb = re.search(r"^Judge feedback: (.*)$", t, re.M)
        if not fb:
            continue
        refined += 1
        image = re.search(r"^Image: (.*)$", t, re.M).group(1)
        own = " ".join(r.text for r in captioner_run["records"] if r.image == image)  # what the generator wrote
        said = " " + " ".join(re.findall(r"[a-z0-9]+", own.lower())) + " "
        words = " " + " ".join(re.findall(r"[a-z0-9]+", fb.group(1).lower())) + " "
        for part, names in P.answer_terms(space, sits[image]).items():
            for n in names:
                w = " " + " ".join(re.findall(r"[a-z0-9]+", n.lower())) + " "
                assert w not in words or w in said, (image, part, n, fb.group(1))
    assert refined > 0


def test_refinement_resamples_and_avoids_the_rejected_words(captioner_run) -> None:
    recs = [r for r in captioner_run["records"] if r.source == "generated"]
    by = {(r.image, r.kind, r.role, r.round): r for r in recs}
    pairs = [(by[k], by[(k[0], k[1], k[2], k[3] + 1)]) for k in by if (k[0], k[1], k[2], k[3] + 1) in by]
    assert pairs and sum(a.text != b.text for a, b in pairs) / len(pairs) > 0.8
    from mipd_kit.language.captioner import tokenize
    avoided, in_prev = 0, 0
    for c, reply in zip(captioner_run["calls"], captioner_run["replies"]):
        t = _text(c)
        m = re.search(r"^Avoid these words: (.*)$", t, re.M)
        if not m:
            continue
        avoided += 1
        words = {w.strip() for w in m.group(1).split(",")}
        prev = re.search(r"^Previous rationale: (.*)$", t, re.M).group(1)
        in_prev += bool(words & set(tokenize(prev)))  # the rejected text's own words
        assert not words & set(tokenize(reply)), (words, reply)  # and the re-sampled text uses none of them
    assert avoided > 0 and in_prev > 0


def test_avoid_and_begin_hooks_of_the_captioner_sampler(env) -> None:
    from mipd_kit.language.captioner import CaptionerSampler, tokenize
    from mipd_kit.app.stages.teacher import build

    teacher = build(env["teacher_config"], env["world"], env["cache"])
    cap = R.captioner_for_run(env["world"], env["cache"], teacher, smoke=True)
    s = CaptionerSampler(cap, teacher, seed=3)
    img = {"type": "image_path", "path": str(env["world"] / "images" / "train_000000.png")}
    base = [{"role": "user", "content": [{"type": "text", "text": "Task: glimpse rationale"}, img]}]
    first = s(base).text
    words = [w for w in tokenize(first) if w.isalpha() and len(w) > 2][:4]
    again = s([{"role": "user", "content": [{"type": "text", "text": "Task: glimpse rationale\nAvoid these words: "
                                             + ", ".join(words)}, img]}]).text
    assert words and not set(words) & set(tokenize(again))
    forced = s([{"role": "user", "content": [{"type": "text", "text": "Task: glimpse rationale\nBegin with: chasing"},
                                             img]}])
    assert forced.text.startswith("chasing") and len(tokenize(forced.text)) > 1
    assert forced.metadata["forced_words"] == 1


def test_batched_sampler_serves_parallel_requests_with_the_same_texts(env) -> None:
    """Requests from 8 threads are decoded in shared batches; each text is a function of its own request: a row's
    draws depend on its seed only, so the batched texts equal the one-at-a-time texts except where float rounding
    of a batched matrix product flips a near-tie (allowed for at most 1 of 16)."""
    from concurrent.futures import ThreadPoolExecutor

    from mipd_kit.language.captioner import CaptionerSampler
    from mipd_kit.app.stages.teacher import build

    teacher = build(env["teacher_config"], env["world"], env["cache"])
    cap = R.captioner_for_run(env["world"], env["cache"], teacher, smoke=True)
    requests = [[{"role": "user", "content": [
        {"type": "text", "text": f"Task: glimpse rationale (request {i})"},
        {"type": "image_path", "path": str(env["world"] / "images" / f"train_{i % 8:06d}.png")}]}] for i in range(16)]
    alone = [CaptionerSampler(cap, teacher, seed=5)(m).text for m in requests]
    batched = CaptionerSampler(cap, teacher, seed=5, batch_size=8, batch_wait_s=0.05)
    with ThreadPoolExecutor(8) as ex:
        texts = [r.text for r in ex.map(batched, requests)]
    assert sum(a == b for a, b in zip(alone, texts)) >= 15
    # 16 requests (and a re-sample for any that came out empty) went through the batcher, sharing batches
    assert batched._batcher.rows >= 16 and batched._batcher.batches < batched._batcher.rows
    with pytest.raises(ValueError, match="batch_size"):
        CaptionerSampler(cap, teacher, batch_size=0)


_FORK_SAMPLER = None  # the batched sampler of the fork test, inherited by the forked workers


def _caption_in_child(i: int) -> str:
    return _FORK_SAMPLER(_glimpse_request(i)).text


def test_batcher_thread_stops_before_a_fork_and_at_exit_and_serves_again(env) -> None:
    """The batcher's worker is stopped before any fork (so no child copies a thread that is inside torch, with its
    locks and OpenMP team half-held) and resumed after; forked workers get their own; requests still work after."""
    import threading

    from mipd_kit.language.captioner import CaptionerSampler
    from mipd_kit.language.captioner.batcher import stop_batchers
    from mipd_kit.machine import fork_map
    from mipd_kit.app.stages.teacher import build

    global _FORK_SAMPLER
    teacher = build(env["teacher_config"], env["world"], env["cache"])
    cap = R.captioner_for_run(env["world"], env["cache"], teacher, smoke=True)
    s = CaptionerSampler(cap, teacher, seed=5, batch_size=4, batch_wait_s=0.01)
    alone = CaptionerSampler(cap, teacher, seed=5)
    _glimpse_request.world = env["world"]
    first = s(_glimpse_request(0)).text
    worker = s._batcher.worker
    assert worker is not None and worker.is_alive()  # idles a second for more requests
    stop_batchers()  # what runs before every fork and at exit
    assert not worker.is_alive() and s._batcher.worker is None
    assert s(_glimpse_request(0)).text == first  # a new worker on the next request
    _FORK_SAMPLER = s
    try:
        in_children = fork_map(_caption_in_child, [(i,) for i in range(3)], 2, name=lambda i: f"caption {i}")
    finally:
        _FORK_SAMPLER = None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' count (fork_map runs one thread per worker)
    try:
        expected = [alone(_glimpse_request(i)).text for i in range(3)]
    finally:
        torch.set_num_threads(threads)
    assert in_children == expected
    # the fork hook stopped the worker the request above had started, and none was restarted: nothing was queued
    assert s._batcher.worker is None and "captioner-batcher" not in {t.name for t in threading.enumerate()}
    assert s(_glimpse_request(1)).text == in_children[1]


def _glimpse_request(i: int) -> list:
    return [{"role": "user", "content": [
        {"type": "text", "text": "Task: glimpse rationale"},
        {"type": "image_path", "path": str(_glimpse_request.world / "images" / f"train_{i:06d}.png")}]}]


def test_negatives_never_name_the_gold_verb(env, captioner_run) -> None:
    _, sits = load_world(env["world"])
    recs = captioner_run["records"]
    hard = [r for r in recs if r.source == "hard_negative"]
    assert hard and all(r.text.startswith(r.target) for r in hard)  # written around the confused verb
    for r in recs:
        if r.polarity == "negative" and (r.kind == "glimpse" or r.source == "hard_negative"):
            assert not names_verb(r.text, sits[r.image].verb), r
    c = captioner_run["out"].stats["content"]
    assert c["negatives_dropped_gold_verb"] == sum(r.polarity == "dropped" for r in recs
                                                   if r.backend == captioner_run["out"].stats["run"]["backend"])


def test_gold_verb_negatives_are_dropped_and_counted(env) -> None:
    """A generator that names every verb: every would-be glimpse / hard negative names the gold verb."""
    from mipd_kit.rationales.jrg import run_jrg
    from mipd_kit.data.synthsitu import world as W

    every = "a person " + " and ".join(v.name for v in W.VERBS) + " on the street"

    class Everything:
        fingerprint = "names-every-verb"

        def __call__(self, messages):
            return Response(every, tuple(messages), {})

    rd = _run_dir(env, "allverbs")
    jcfg = _cfg(env, backend="template").jrg_config()
    stats = run_jrg(jcfg, env["world"], rd, generator=Everything())
    recs = read_rationales(rd / "rationales.jsonl")
    dropped = [r for r in recs if r.polarity == "dropped"]
    assert dropped and not [r for r in recs if r.polarity == "negative" and r.kind == "glimpse"]
    assert (stats["content"]["negatives_dropped_gold_verb"] == len(dropped)
            == stats["run"]["negatives_dropped_gold_verb"])
    assert "n_negative" in stats["glimpse"] and stats["glimpse"]["n_negative"] == 0
    again = run_jrg(jcfg, env["world"], rd, generator=Everything())  # resume: dropped ones are not redone
    assert again["run"]["resumed_passes"] == 1  # nothing new: the working pass's record is kept
    assert again["run"]["generator_calls"] == stats["run"]["generator_calls"]
    assert read_rationales(rd / "rationales.jsonl") == recs


def test_unlabeled_descriptions_are_stored_and_ignored_by_training(env, captioner_run) -> None:
    recs = captioner_run["records"]
    unl = [r for r in recs if r.source == "unlabeled"]
    names = json.loads((env["world"] / "unlabeled.json").read_text())["images"][:6]
    assert sorted(r.image for r in unl) == sorted(names)
    assert all(r.polarity == "unjudged" and r.score is None and r.verdict is None and r.text for r in unl)
    st = captioner_run["out"].stats
    assert st["content"]["unlabeled"] == len(unl) == st["unlabeled"]["in_store"]
    assert not set(names) & set(collect(recs))  # what the student and NMPA read by default
    both = collect(recs, include_unjudged=True)
    assert all(both[n]["glimpse"]["unjudged"] for n in names)
    from mipd_kit.rationales.store import to_authors_json
    assert not set(names) & set(to_authors_json(recs))


def test_stats_fields_are_present_and_consistent(captioner_run) -> None:
    st = captioner_run["out"].stats
    recs = [r for r in captioner_run["records"] if r.backend == st["run"]["backend"]]
    for kind in ("glimpse", "gaze"):
        c, s = st["content"][kind], st[kind]
        assert c["n_positive"] == s["n_positive"] == sum(r.polarity == "positive" and r.kind == kind for r in recs)
        assert len(s["accept_rate_round"]) == 3 and len(s["score_hist_negative"]) == 11
        assert sum(s["score_hist_positive"]) + sum(s["score_hist_negative"]) == s["n_positive"] + s["n_negative"]
        for m in ("judge_precision", "primitive_share", "pose_share", "relation_share", "motion_share"):
            assert m in c and (c[m] is None or 0.0 <= c[m] <= 1.0)
        assert c["distinct_masked_max"] == max(c["distinct_masked_per_verb"].values(), default=0)
    rows = json.loads((captioner_run["dir"] / "metrics.json").read_text())
    rows = rows["rows"] if isinstance(rows, dict) else rows
    got = {(r["model"], r["metric"]) for r in rows if r["task"] == "jrg"}
    assert {("jrg-captioner", m) for m in ("unlabeled_rationales", "negatives_dropped_gold_verb", "request_errors",
                                           "accept_rate_round0")} <= got
    if st["content"]["all"]["n_positive"]:
        assert {("jrg-captioner", m) for m in ("distinct_masked_max", "primitive_share", "judge_precision")} <= got
    assert json.loads((captioner_run["dir"] / "jrg_stats.json").read_text())["content"] == st["content"]


def test_template_and_shuffled_controls(env, captioner_run) -> None:
    t = R.run(_cfg(env, backend="template"), _run_dir(env, "template"))
    assert t.jrg.generator.backend == "embedded" and t.stats["run"]["backend"].startswith("gen=embedded-generator")
    assert t.stats["content"]["unlabeled"] == 0 and t.stats["run"]["new_rationales"] > 0
    rd = _run_dir(env, "shuffled")
    s = R.run(_cfg(env, backend="shuffled", rounds=3, max_images=12), rd)
    assert s.stats["run"]["control"] == "shuffled" and s.stats["run"]["backend"].startswith("shuffled:s0|")
    _, sits = load_world(env["world"])
    recs = read_rationales(rd / "rationales.jsonl")
    src = read_rationales(rd / "jrg_source" / "rationales.jsonl")
    src_pos = {(r.image, r.kind, r.role, r.text) for r in src if r.polarity == "positive"}
    for r in recs:
        if r.polarity == "positive":
            d = r.verdict["shuffled_from"]
            assert d != r.image and sits[d].verb == sits[r.image].verb and (d, r.kind, r.role, r.text) in src_pos
    assert sum(r.polarity == "unjudged" for r in recs) == 6
    # the post-processing is deterministic for a seed and pairs images differently for another seed
    srcb = [r for r in src if r.backend == s.stats["run"]["source_backend"]]
    assert shuffle_positives(srcb, sits, seed=0) == shuffle_positives(srcb, sits, seed=0)


def test_controls_are_written_beside_the_store_for_the_control_rows(env) -> None:
    """``controls: [template, shuffled]`` leaves rationales-template.jsonl (the template generator on the same images)
    and rationales-shuffled.jsonl (the main store's positives moved to another image of the same verb), the files the
    distillation stage's mipd-template / mipd-shuffled rows read."""
    from mipd_kit.app.stages import distillation as D

    d = _run_dir(env, "controls")
    out = R.run(_cfg(env, controls=["template", "shuffled"], unlabeled=False), d)
    main = [r for r in read_rationales(d / "rationales.jsonl") if r.polarity in ("positive", "negative")]
    tmpl = read_rationales(d / "rationales-template.jsonl")
    shuf = read_rationales(d / "rationales-shuffled.jsonl")
    assert tmpl and all(not r.backend.startswith("captioner") for r in tmpl)
    assert {r.image for r in tmpl} == {r.image for r in main}
    _, sits = load_world(out.world, "train")
    moved = [r for r in shuf if r.polarity == "positive"]
    assert all(r.backend.startswith("shuffled:") for r in shuf)
    assert all(r.verdict["shuffled_from"] != r.image and sits[r.verdict["shuffled_from"]].verb == sits[r.image].verb
               for r in moved)
    dcfg = D.Config()
    assert D.rationale_path(dcfg, d, "template") == d / "rationales-template.jsonl"
    with pytest.raises(ValueError, match="controls"):
        R.Config(controls=["bogus"])


def test_shuffle_positives_pairs_images_of_one_verb() -> None:
    from mipd_kit.data.records import Situation
    from mipd_kit.rationales.store import Rationale

    sits = {f"{v}{i}.png": Situation(image=f"{v}{i}.png", verb=v, width=0, height=0, boxes={}, frames=())
            for v in ("a", "b") for i in range(4)}
    recs = [Rationale(i, "glimpse", None, "positive", f"text of {i}", 0, 9.0, "B") for i in sorted(sits)]
    recs += [Rationale(i, "glimpse", None, "negative", f"bad {i}", 0, 1.0, "B") for i in sorted(sits)]
    out = shuffle_positives(recs, sits, seed=1)
    pos = [r for r in out if r.polarity == "positive"]
    assert len(pos) == 8 and all(r.text != f"text of {r.image}" and r.text[8] == r.image[0] for r in pos)
    assert len({r.text for r in pos}) == 8  # a derangement: every donor used once
    assert {r.text for r in out if r.polarity == "negative"} == {f"bad {i}" for i in sits}
    assert shuffle_positives(recs, sits, seed=1) == out


# ------------------------------------------------------------------------------------------------ bad input
def test_a_captioner_that_emits_nothing_is_a_counted_failure(env, monkeypatch) -> None:
    import mipd_kit.language.captioner as C

    monkeypatch.setattr(C.Captioner, "generate",
                        lambda self, tokens, boxes=None, **kw: [Caption("", (C.EOS,)) for _ in range(tokens.shape[0])])
    rd = _run_dir(env, "empty")
    with pytest.raises(JRGFailed, match="chains failed"):  # every chain failed: a clear error, not a crash
        R.run(_cfg(env, unlabeled=False), rd)
    st = json.loads((rd / "jrg_stats.json").read_text())
    assert st["run"]["request_errors"] == st["run"]["failures"] == st["run"]["chains_run"] > 0
    fails = [json.loads(x) for x in (rd / "jrg_failures.jsonl").read_text().splitlines()]
    assert all("emitted nothing" in f["reason"] and f["image"] for f in fails)
    assert not st["run"]["aborted"]
    with pytest.raises(SamplerRequestError, match="emitted nothing"):
        from mipd_kit.language.captioner import CaptionerSampler
        from mipd_kit.app.stages.teacher import build
        teacher = build(env["teacher_config"], env["world"], env["cache"])
        CaptionerSampler(R.captioner_for_run(env["world"], env["cache"], teacher, True), teacher)(
            [{"role": "user", "content": [{"type": "image_path",
                                           "path": str(env["world"] / "images" / "train_000000.png")}]}])


def _broken_world(env: dict, name: str) -> Path:
    """A copy of the world (images linked) whose first training image is garbage and whose second has a zero-area
    box."""
    w = env["base"] / name
    shutil.copytree(env["world"], w, ignore=shutil.ignore_patterns("images"))
    (w / "images").mkdir()
    for f in (env["world"] / "images").iterdir():
        (w / "images" / f.name).symlink_to(f)
    train = json.loads((w / "train.json").read_text())
    first, second = sorted(train)[:2]
    (w / "images" / first).unlink()
    (w / "images" / first).write_bytes(b"not a png")
    role = next(r for r, b in train[second]["bb"].items() if b[0] >= 0)
    x1, y1, _, y2 = train[second]["bb"][role]
    train[second]["bb"][role] = [x1, y1, x1, y2]
    (w / "train.json").write_text(json.dumps(train))
    return w


def test_bad_images_and_zero_area_boxes_are_counted_and_the_store_survives(env) -> None:
    rd = _run_dir(env, "broken")
    good = R.run(_cfg(env, unlabeled=False, max_images=4), rd)  # first on the intact world
    before = {r.key() for r in read_rationales(rd / "rationales.jsonl")}
    assert before and good.stats["run"]["request_errors"] == 0
    w = _broken_world(env, "broken_world")
    train = json.loads((w / "train.json").read_text())
    first, second = sorted(train)[:2]
    cfg = dataclasses.replace(_cfg(env, unlabeled=False, max_images=4, rounds=3), world_dir=str(w))
    try:
        out = R.run(cfg, rd)
        st = out.stats
    except JRGFailed:
        st = json.loads((rd / "jrg_stats.json").read_text())
    after = {r.key() for r in read_rationales(rd / "rationales.jsonl")}
    assert before <= after  # nothing already written is lost
    fails = [json.loads(x) for x in (rd / "jrg_failures.jsonl").read_text().splitlines()]
    assert any(f["image"] == first and "failed to decode" in f["reason"] for f in fails)
    assert any(f["image"] == second and "zero area" in f["reason"] and f["role"] for f in fails)
    assert st["run"]["request_errors"] >= 2 and not st["run"]["aborted"]


def test_content_phrase_matching_helpers() -> None:
    from mipd_kit.rationales.content import mask_nouns, mentioned, words_to_avoid
    t = "a worker flipping a carrot in the kitchen, leaning back"
    assert names_verb(t, "tossing") and not names_verb(t, "riding")  # a caption word of the verb names it
    assert mentioned(t, "pose") == {"lean_back"} and mask_nouns(t).startswith("a <noun> flipping a <noun>")
    assert set(words_to_avoid(["the activity is wrong"], t, "glimpse")) >= {"tossing", "flipping"}
    assert words_to_avoid(["the setting does not match the annotated place"], t, "glimpse") == []
    assert set(words_to_avoid(["the tool is wrong"], t, "gaze")) == {"worker", "carrot"}
    assert not mentioned("a man, large, on the left near the top", "relation")  # a position, not the relation on
    assert mentioned("a man sitting on a horse", "relation") == {"on"}
