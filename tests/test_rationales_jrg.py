"""The JRG loop end to end: embedded backend, HTTP backend on a loopback server, resume, failures, CLI."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from mipd_kit.data.records import DataError
from mipd_kit.language.base import SamplerError
from mipd_kit.language.embedded import EmbeddedGenerator, EmbeddedJudge
from mipd_kit.language.loopback import LoopbackServer, embedded_responder
from mipd_kit.language.openai_http import OpenAIHTTPConfig, OpenAIHTTPSampler
from mipd_kit.metrics import read_rows
from mipd_kit.rationales.jrg import JRGConfig, main, run_jrg
from mipd_kit.rationales.jrg_stats import jrg_statistics
from mipd_kit.rationales.store import collect, read_rationales
from mipd_kit.rationales.toy import write_toy_world


class Counting:
    """Wraps a sampler, counting calls; optionally dies (like a killed process) after ``die_after`` calls."""

    def __init__(self, inner, die_after=None):
        self.inner, self.calls, self.die_after = inner, 0, die_after

    @property
    def fingerprint(self):
        return self.inner.fingerprint

    def __call__(self, messages):
        self.calls += 1
        if self.die_after is not None and self.calls > self.die_after:
            raise KeyboardInterrupt("simulated kill")
        return self.inner(messages)


@pytest.fixture()
def toy(tmp_path):
    write_toy_world(tmp_path / "w", tmp_path / "r", n_per_verb=2)
    return tmp_path / "w", tmp_path / "r"


def small_cfg(**kw):
    cfg = JRGConfig(rounds=3, n_hard_negatives=1, workers=2)
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def test_embedded_end_to_end(toy):
    world, run = toy
    stats = run_jrg(small_cfg(), world, run)
    recs = read_rationales(run / "rationales.jsonl")
    by = collect(recs)
    train = json.loads((world / "train.json").read_text())
    assert set(by) == set(train)  # every training image has judged rationales
    for img, g in by.items():
        roles = set(train[img]["frames"][0])
        assert set(g["gaze"]) == roles
        assert g["glimpse"]["negative"]  # at least the hard negative
    pos = [r for r in recs if r.polarity == "positive"]
    neg = [r for r in recs if r.polarity == "negative"]
    assert pos and neg and {r.kind for r in pos} == {"glimpse", "gaze"}
    assert all(r.verdict["accept"] for r in pos) and not any(r.verdict["accept"] for r in neg)
    assert any(r.source == "hard_negative" for r in neg)
    # refinement happens and helps: later rounds accept chains that round 0 rejected
    cum = stats["all"]["cum_accept_round"]
    assert cum[-1] > cum[0]
    assert any(r.round > 0 and r.polarity == "positive" for r in pos)
    # positives score higher than negatives under the judge
    assert stats["all"]["mean_score_positive"] > stats["all"]["mean_score_negative"]
    on_disk = json.loads((run / "jrg_stats.json").read_text())
    assert on_disk["all"]["n_positive"] == len(pos)
    rows = [r for r in read_rows(run / "metrics.json") if r.task == "jrg"]
    names = {(r.setting, r.metric) for r in rows}
    assert ("glimpse", "accept_rate_round0") in names and ("all", "rationales_per_s") in names
    assert ("gaze", "n_positive") in names and all(r.model == "jrg-embedded" for r in rows)
    assert stats["run"]["failures"] == 0 and on_disk["run"]["new_rationales"] == len(recs)


def test_statistics_are_a_pure_function_of_the_store(toy):
    world, run = toy
    stats = run_jrg(small_cfg(), world, run)
    again = jrg_statistics(read_rationales(run / "rationales.jsonl"), rounds=3)
    for k in ("glimpse", "gaze", "all", "images_with_positive_glimpse"):
        assert again[k] == stats[k]


def test_rerun_of_finished_store_makes_no_calls(toy):
    world, run = toy
    first = run_jrg(small_cfg(), world, run)
    before = (run / "rationales.jsonl").read_bytes()
    g, j = Counting(EmbeddedGenerator()), Counting(EmbeddedJudge())
    stats = run_jrg(small_cfg(), world, run, generator=g, judge=j)
    assert g.calls == 0 and j.calls == 0
    assert stats["run"]["chains_skipped"] == stats["run"]["chains"]
    # the record of the pass that wrote the rationales is kept (counts, speed), the resumed pass counted
    assert stats["run"]["new_rationales"] == first["run"]["new_rationales"] > 0
    assert stats["run"]["resumed_passes"] >= 1 and stats["run"]["last_pass_seconds"] >= 0
    assert (run / "rationales.jsonl").read_bytes() == before


def test_killed_run_resumes_to_the_same_result(toy, tmp_path):
    world, run = toy
    ref_run = tmp_path / "ref"
    ref_run.mkdir()
    (ref_run / "teacher_evidence.json").write_text((run / "teacher_evidence.json").read_text())
    run_jrg(small_cfg(workers=1), world, ref_run)
    ref = {(r.key(), r.text, r.polarity) for r in read_rationales(ref_run / "rationales.jsonl")}

    with pytest.raises(KeyboardInterrupt):
        run_jrg(small_cfg(workers=1), world, run, generator=Counting(EmbeddedGenerator(), die_after=17))
    # a torn last line, as if the kill hit mid-write
    with open(run / "rationales.jsonl", "ab") as f:
        f.write(b'{"image": "riding_0.png", "kind": "gl')
    partial = len(read_rationales(run / "rationales.jsonl"))
    assert 0 < partial < len(ref)
    g = Counting(EmbeddedGenerator())
    stats = run_jrg(small_cfg(workers=1), world, run, generator=g)
    assert stats["run"]["repaired_bytes"] > 0
    got = {(r.key(), r.text, r.polarity) for r in read_rationales(run / "rationales.jsonl")}
    assert got == ref  # no duplicates, nothing lost, identical to an uninterrupted run
    assert 0 < g.calls < sum(1 for _ in ref)  # only the missing work was redone


def test_unparseable_judge_replies_are_retried_then_counted(toy):
    world, run = toy
    cfg = small_cfg(judge_retries=1, max_failure_rate=1.0)
    stats = run_jrg(cfg, world, run, judge=EmbeddedJudge(malformed_rate=0.6))
    r = stats["run"]
    assert r["judge_parse_retries"] > 0 and r["judge_parse_failures"] > 0
    assert r["failures"] == r["judge_parse_failures"]
    logged = [json.loads(x) for x in (run / "jrg_failures.jsonl").read_text().splitlines()]
    assert len(logged) == r["failures"] and all("unparseable" in x["reason"] for x in logged)
    rows = {(x.metric): x.value for x in read_rows(run / "metrics.json") if x.setting == "all"}
    assert rows["failures"] == r["failures"]
    # failed chains are not stored, so a re-run (with a healthy judge of the same fingerprint) retries them
    assert len(read_rationales(run / "rationales.jsonl")) > 0


def test_http_backend_runs_the_same_loop(toy, tmp_path):
    world, run = toy
    emb_run = tmp_path / "emb"
    emb_run.mkdir()
    (emb_run / "teacher_evidence.json").write_text((run / "teacher_evidence.json").read_text())
    run_jrg(small_cfg(), world, emb_run)
    emb = {(r.image, r.kind, r.role, r.round, r.source, r.target): (r.text, r.polarity, r.score)
           for r in read_rationales(emb_run / "rationales.jsonl")}

    faults = ["429", "500", "malformed", "close"] * 3
    with LoopbackServer(embedded_responder(seed=0), faults=faults) as srv:
        oc = OpenAIHTTPConfig(base_url=srv.base_url, model="canned", api_key_env="", backoff_s=0.001, max_retries=20,
                              backoff_max_s=0.01, concurrency=4)
        gen, judge = OpenAIHTTPSampler(oc), OpenAIHTTPSampler(oc)
        stats = run_jrg(small_cfg(workers=4, send_images=True), world, run, generator=gen, judge=judge)
    assert srv.stats["faults"] == len(faults)
    # 429 / 500 / malformed are always retried by the sampler (a dropped connection may be retried inside httpx)
    assert gen.stats["retries"] + judge.stats["retries"] >= 9
    http = {(r.image, r.kind, r.role, r.round, r.source, r.target): (r.text, r.polarity, r.score)
            for r in read_rationales(run / "rationales.jsonl")}
    assert http == emb  # same loop, same canned model => same rationales, whatever the transport did
    assert stats["run"]["backend"].startswith("gen=openai:canned@")
    assert any(isinstance(m["content"], list) and m["content"][1]["type"] == "image_url"
               for b in srv.stats["bodies"] for m in b["messages"])


def test_dead_endpoint_aborts_clearly_and_keeps_work(toy):
    world, run = toy
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    dead = OpenAIHTTPSampler(OpenAIHTTPConfig(base_url=f"http://127.0.0.1:{port}/v1", api_key_env="", max_retries=0))
    with pytest.raises(SamplerError, match="consecutive sampler errors.*re-run continues"):
        run_jrg(small_cfg(max_consecutive_errors=3, workers=1), world, run, generator=dead, judge=EmbeddedJudge())
    logged = (run / "jrg_failures.jsonl").read_text().splitlines()
    assert len(logged) == 3 and "ConnectError" in logged[0]
    stats = json.loads((run / "jrg_stats.json").read_text())
    assert stats["run"]["aborted"] is True and stats["run"]["sampler_errors"] == 3


def test_bad_inputs_are_clear(toy, tmp_path):
    world, run = toy
    with pytest.raises(DataError, match="teacher_evidence.json: missing"):
        run_jrg(small_cfg(), world, tmp_path / "empty_run")
    (run / "teacher_evidence.json").write_text(json.dumps({"riding_0.png": {"top_verbs": [["riding"]]}}))
    with pytest.raises(DataError, match="'riding_0.png' has a bad top_verbs item"):
        run_jrg(small_cfg(), world, run)
    (run / "teacher_evidence.json").write_text("{not json")
    with pytest.raises(DataError, match="teacher_evidence.json: not valid JSON"):
        run_jrg(small_cfg(), world, run)
    with pytest.raises(DataError, match="noworld/imsitu_space.json: missing"):
        run_jrg(small_cfg(), tmp_path / "noworld", run)


def test_smoke_config_and_cli(toy, tmp_path, capsys):
    world, run = toy
    assert JRGConfig.smoke().max_images == 8 and JRGConfig.smoke().rounds == 2
    assert main(["run", "--world-dir", str(world), "--run-dir", str(run), "--smoke", "--max-images", "3"]) == 0
    assert len({r.image for r in read_rationales(run / "rationales.jsonl")}) == 3
    out = tmp_path / "authors.json"
    assert main(["export", "--run-dir", str(run), "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert len(data) == 3 and all(set(v) == {"pos_verb_caption", "neg_verb_caption", "pos_attr_caption",
                                              "neg_attr_caption"} for v in data.values())
    run2 = tmp_path / "run2"
    assert main(["import", "--json", str(out), "--run-dir", str(run2)]) == 0
    assert main(["stats", "--run-dir", str(run2)]) == 0
    assert main(["run", "--world-dir", str(tmp_path / "nope"), "--run-dir", str(run)]) == 1
    assert "nope/imsitu_space.json: missing" in capsys.readouterr().err


def test_http_cli_against_loopback(toy):
    world, run = toy
    with LoopbackServer(embedded_responder(seed=0)) as srv:
        code = main(["run", "--world-dir", str(world), "--run-dir", str(run), "--smoke", "--max-images", "2",
                     "--backend", "openai", "--base-url", srv.base_url, "--model", "canned", "--api-key-env", "NO_SUCH_VAR"])
    assert code == 0
    recs = read_rationales(run / "rationales.jsonl")
    assert recs and all(r.backend.startswith("gen=openai:canned") and "judge=openai:canned" in r.backend for r in recs)


def test_empty_replies_and_unreadable_images_are_counted(toy):
    world, run = toy
    (world / "images" / "carrying_0.png").unlink()  # an image the backend cannot read
    with LoopbackServer(embedded_responder(seed=0), faults=["empty"]) as srv:
        oc = OpenAIHTTPConfig(base_url=srv.base_url, model="canned", api_key_env="", max_retries=0)
        cfg = small_cfg(workers=1, send_images=True, max_images=2, max_consecutive_errors=100, max_failure_rate=1.0)
        stats = run_jrg(cfg, world, run, generator=OpenAIHTTPSampler(oc), judge=OpenAIHTTPSampler(oc))
    r = stats["run"]
    assert r["empty_generations"] == 1  # retried with a reminder, not a failure
    logged = [json.loads(x) for x in (run / "jrg_failures.jsonl").read_text().splitlines()]
    assert logged and all(x["image"] == "carrying_0.png" and "carrying_0.png" in x["reason"] for x in logged)
    assert r["sampler_errors"] == len(logged) == r["failures"]
    assert {x.image for x in read_rationales(run / "rationales.jsonl")} == {"carrying_1.png"}
    assert r["images_without_evidence"] == 0


def test_config_from_notebook_parameters():
    from mipd_kit.rationales.jrg_config import config_from_params

    gen = {"openai": {"base_url": "http://h:1/v1", "model": "m", "api_key_env": "MY_KEY", "concurrency": 3}}
    cfg = config_from_params(smoke=False, backend="openai", judge_backend="embedded", generator=gen, rounds=5,
                             max_images=0, seed=7)
    assert (cfg.generator.backend, cfg.judge.backend) == ("openai", "embedded")
    assert cfg.generator.openai.base_url == "http://h:1/v1" and cfg.generator.openai.api_key_env == "MY_KEY"
    assert cfg.generator.openai.concurrency == 3 and cfg.rounds == 5 and cfg.max_images == 0 and cfg.judge.seed == 7
    assert cfg.generator.openai.timeout_s == JRGConfig().generator.openai.timeout_s  # what the block leaves out
    # the judge's endpoint is the generator's unless its own block names another field
    both = config_from_params(backend="openai", generator=gen, judge={"openai": {"model": "judge-m"}})
    assert both.judge.openai.base_url == "http://h:1/v1" and both.judge.openai.model == "judge-m"
    assert both.generator.openai.model == "m" and both.judge.purpose == "judge"
    for bad, needle in (({"openai": {"modle": "m"}}, "generator.openai: unknown key(s) ['modle']"),
                        ({"backend": "hf"}, "generator.backend: the backend is chosen by the stage"),
                        ({"top_p": 0.5}, "generator: unknown key(s) ['top_p']")):
        with pytest.raises(ValueError, match=re.escape(needle)):
            config_from_params(backend="openai", generator=bad)
    smoke = config_from_params()  # notebook defaults: the smoke config, embedded, values kept
    assert smoke.max_images == JRGConfig.smoke().max_images and smoke.generator.backend == "embedded"


def test_judge_figures_are_written(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    from mipd_kit.rationales.analysis import plot_acceptance, plot_scores
    kind = {"accept_rate_round": [{"round": 0, "rate": 0.5}, {"round": 1, "rate": None}],
            "cum_accept_round": [0.5, 0.9], "score_hist_positive": [0] * 10 + [3], "score_hist_negative": [2] + [0] * 10}
    stats = {"glimpse": kind, "gaze": kind}
    fig = plot_acceptance(stats, 2, tmp_path / "a.png")
    assert (tmp_path / "a.png").stat().st_size > 1000
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == ["glimpse", "gaze"]
    plot_scores(stats, tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 1000


def test_answer_free_reasons_replace_what_names_the_annotation(toy):
    from mipd_kit.rationales.jrg_inputs import load_world
    from mipd_kit.rationales.prompts import ACTIVITY_WRONG, answer_free_reasons

    world, _ = toy
    space, sits = load_world(world)
    img = next(i for i, s in sits.items() if s.verb == "riding" and s.frames[0]["vehicle"] == "horse")
    got, n = answer_free_reasons([
        "expected activity 'riding' (AGENT rides VEHICLE at PLACE)",   # the verb and its frame words
        "expected vehicle 'pony'",                                      # a synonym of the annotators' noun
        "the rationale names the activity 'feeding', which contradicts the annotated frame",  # the generator's word
        "the vehicle the annotators chose is not mentioned",
        "the rationale mentions a woman",  # 'woman' is not an annotators' noun here: 'man' must match whole words
        "entity 'field' is not what the annotators chose for the role 'vehicle'",  # quotes the rationale's own word
    ], space, sits[img], rationale="A man rides across a field.")
    assert n == 2
    assert got == (ACTIVITY_WRONG, "the vehicle is wrong",
                   "the rationale names the activity 'feeding', which contradicts the annotated frame",
                   "the vehicle the annotators chose is not mentioned", "the rationale mentions a woman",
                   "entity 'field' is not what the annotators chose for the role 'vehicle'")
    # the same word is withheld when the rationale did not say it
    assert answer_free_reasons(["the field is wrong"], space, sits[img], rationale="A man rides.")[0] == (
        "the place is wrong",)


class Recording:
    """A generator that records every prompt it is sent."""

    def __init__(self, inner):
        self.inner, self.prompts = inner, []

    @property
    def fingerprint(self):
        return self.inner.fingerprint

    def __call__(self, messages):
        self.prompts.append("\n".join(m["content"] if isinstance(m["content"], str) else
                                      " ".join(p.get("text", "") for p in m["content"]) for m in messages))
        return self.inner(messages)


class LeakyJudge:
    """Rejects everything in round 0 and gives the answer away, as a careless LLM judge would."""

    fingerprint = "leaky-judge"

    def __init__(self, sits):
        self.sits = sits

    def __call__(self, messages):
        from mipd_kit.language.base import Response
        text = messages[-1]["content"] if isinstance(messages[-1]["content"], str) else messages[-1]["content"][0]["text"]
        img = next(line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("Image: "))
        sit = self.sits[img]
        nouns = "; ".join(f"expected {r} '{n}'" for r, n in sit.frames[0].items() if n)
        reply = {"score": 2, "accept": False, "reasons": [f"expected activity '{sit.verb}'", nouns]}
        return Response(json.dumps(reply), tuple(messages), {})


def test_generator_never_sees_the_answer_in_feedback(toy):
    """Whatever the judge writes, the feedback the generator reads names no annotated verb or noun."""
    from mipd_kit.rationales.jrg_inputs import load_world
    from mipd_kit.rationales.prompts import answer_terms

    world, run = toy
    space, sits = load_world(world)
    gen = Recording(EmbeddedGenerator(seed=0))
    stats = run_jrg(small_cfg(rounds=2, n_hard_negatives=0, workers=1, max_failure_rate=1.0), world, run,
                    generator=gen, judge=LeakyJudge(sits))
    feedback = [p for p in gen.prompts if "Judge feedback:" in p]
    assert feedback and stats["run"]["feedback_answers_withheld"] > 0
    for p in feedback:
        img = next(line.split(": ", 1)[1] for line in p.splitlines() if line.startswith("Image: "))
        line = next(line for line in p.splitlines() if line.startswith("Judge feedback:")).lower()
        said = " ".join(re.findall(r"[a-z]+", next(x for x in p.splitlines() if x.startswith("Previous rationale:")).lower()))
        words = " " + " ".join(re.findall(r"[a-z]+", line)) + " "
        for names in answer_terms(space, sits[img]).values():
            new = [n for n in names if f" {n} " not in f" {said} "]  # words it wrote itself reveal nothing
            assert not any(f" {n} " in words for n in new), (line, new)


def test_embedded_judge_reasons_never_name_the_annotation(toy):
    from mipd_kit.rationales.jrg_inputs import load_world
    from mipd_kit.rationales.prompts import answer_free_reasons

    world, run = toy
    space, sits = load_world(world)
    stats = run_jrg(small_cfg(), world, run)
    recs = read_rationales(run / "rationales.jsonl")
    assert recs and stats["run"]["feedback_answers_withheld"] == 0
    for r in recs:
        reasons = tuple((r.verdict or {}).get("reasons", ()))
        assert answer_free_reasons(reasons, space, sits[r.image], r.text)[1] == 0, (r.text, reasons)
