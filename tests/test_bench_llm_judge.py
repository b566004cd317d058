"""benchmarks/bench_llm_judge.py, captioner mode: the seeded stratified sample, the world's truth, the agreement
measures and the report, on a tiny generated world with hand-made captioner-like records whose stored verdicts the
embedded judge wrote from the JRG's own judge prompt. The embedded judge stands in for the LLM (``--judge embedded``),
so the whole path runs offline in seconds; the real llama.cpp judge on the same input is an opt-in integration test.
"""

from __future__ import annotations

import json
import math
import random
import re
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from mipd_kit.data.synthsitu.generate import SynthConfig, generate, read_rendered
from mipd_kit.language.embedded import EmbeddedJudge
from mipd_kit.metrics import read_rows
from mipd_kit.rationales import judge_agreement as JA
from mipd_kit.rationales import prompts as P
from mipd_kit.rationales.jrg_inputs import judge_messages, load_world
from mipd_kit.rationales.store import Rationale

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_llm_judge  # noqa: E402

BACKEND = f"gen=captioner-v1:test|judge=embedded-judge-v2:s0:m0|prompts={P.prompts_fingerprint()}|abc123"


def _rec(image: str, kind: str, accept: bool, text: str = "t", role: str | None = None, backend: str = BACKEND,
         polarity: str | None = None, **kw) -> Rationale:
    return Rationale(image=image, kind=kind, role=role, polarity=polarity or ("positive" if accept else "negative"),
                     text=text, round=0, score=8.0 if accept else 2.0, backend=backend,
                     verdict={"score": 8.0 if accept else 2.0, "accept": accept, "reasons": []}, **kw)


# ------------------------------------------------------------------------------------------------ pure pieces
def test_stratified_sample_is_seeded_balanced_and_independent_of_input_order() -> None:
    recs = ([_rec(f"a{i}", "glimpse", True) for i in range(10)] + [_rec(f"b{i}", "glimpse", False) for i in range(3)]
            + [_rec(f"c{i}", "gaze", True, role="agent") for i in range(10)]
            + [_rec(f"d{i}", "gaze", False, role="agent") for i in range(10)])
    noise = [_rec("u", "glimpse", False, polarity="unjudged"), _rec("x", "glimpse", True, backend="gen=embedded|j")]
    judged = JA.judged_records(recs + noise, "gen=captioner")
    assert len(judged) == len(recs)  # the unlabeled pool and other generators are not sampled

    by = lambda s: {JA.stratum(r): sum(JA.stratum(x) == JA.stratum(r) for x in s) for r in s}  # noqa: E731
    assert by(JA.stratified_sample(judged, 12, seed=0)) == {"glimpse-accepted": 3, "glimpse-rejected": 3,
                                                            "gaze-accepted": 3, "gaze-rejected": 3}
    # a small stratum's unused share goes to the others, one each in turn
    assert by(JA.stratified_sample(judged, 20, seed=0)) == {"glimpse-accepted": 6, "glimpse-rejected": 3,
                                                            "gaze-accepted": 6, "gaze-rejected": 5}
    a = JA.stratified_sample(judged, 20, seed=0)
    shuffled = judged[:]
    random.Random(1).shuffle(shuffled)
    assert JA.stratified_sample(shuffled, 20, seed=0) == a
    assert JA.stratified_sample(judged, 20, seed=1) != a
    assert len(JA.stratified_sample(judged, 1000, seed=0)) == len(judged)
    assert not {r.image for r in JA.stratified_sample(judged, 1000, seed=0, exclude_images={"a0", "d3"})} & {"a0", "d3"}
    dropped = _rec("e", "glimpse", False, polarity="dropped")  # a rejected glimpse naming the gold verb: judged
    assert JA.stratum(JA.judged_records([dropped])[0]) == "glimpse-rejected"


def _item(truth: bool, ref: bool, accept: bool | None, kind: str = "glimpse") -> JA.JudgedRationale:
    return JA.JudgedRationale("i", kind, None, "generated", "t", truth, ref, accept, None, "")


def test_agreement_metrics_count_what_they_say() -> None:
    items = [_item(True, True, True), _item(True, False, True), _item(False, False, True), _item(False, True, False),
             _item(True, True, None)]
    m = JA.agreement_metrics(items)
    assert m["n"] == 5 and m["parse_rate"] == 80.0 and m["truth_correct_rate"] == 60.0
    assert m["llm_accept_rate"] == 75.0  # 3 of the 4 parsed
    assert m["embedded_accept_rate"] == 60.0
    assert m["agree_with_embedded"] == 25.0  # only the first parsed item agrees
    assert m["llm_accuracy_vs_truth"] == 75.0 and m["embedded_accuracy_vs_truth"] == 60.0  # 3 of 4 parsed, 3 of 5
    assert m["llm_precision"] == pytest.approx(200 / 3) and m["llm_recall"] == 100.0
    assert m["embedded_precision"] == pytest.approx(200 / 3) and m["embedded_recall"] == pytest.approx(200 / 3)
    none = JA.agreement_metrics([_item(True, False, False)])
    assert math.isnan(none["llm_precision"]) and math.isnan(none["embedded_precision"])  # undefined, not 0
    g = JA.grouped_metrics(items + [_item(False, False, False, kind="gaze")])
    assert set(g) == {"glimpse", "gaze", "all", "glimpse-accepted", "glimpse-rejected", "gaze-rejected"}
    assert g["all"]["n"] == 6 and g["glimpse-accepted"]["n"] == 3
    assert JA.agreement_with([(True, 8.0), (False, 3.0)], [{"accept": True, "score": 8}, {"accept": False, "score": 2}]) == 50.0


# ------------------------------------------------------------------------------------------------ the bench, end to end
@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    """A tiny world, hand-made teacher evidence and a captioner-like store judged by the embedded judge."""
    base = tmp_path_factory.mktemp("llmjudge")
    world = base / "w"
    generate(replace(SynthConfig.smoke(0), n_train=60, rare_train=1, n_dev=6, n_test=6, n_unlabeled=0,
                     n_hoi_train=2, n_hoi_test=2, n_pretrain=20, workers=1), world)
    space, sits = load_world(world)
    rendered = read_rendered(world)
    run = base / "run"
    run.mkdir()
    evidence, records, expected = {}, [], {}
    judge = EmbeddedJudge(seed=0)
    for img in sorted(sits)[:8]:
        sit, rec = sits[img], rendered[f"images/{img}"]
        shown = {i["verb"] for i in rec["instances"]}
        other = sorted(v for v in space.verbs if v not in shown)[len(records) % 5]
        evidence[img] = {"top_verbs": [[sit.verb, 0.6], [other, 0.3]], "role_nouns": {}}
        nouns = [P.noun_label(space, sit.frames[0][r]) for r in P.frame_roles(space, sit) if sit.frames[0].get(r)]
        scene = lambda verb: f"a {nouns[0]} {verb} " + " ".join(f"a {n}" for n in nouns[1:-1]) + f" at the {nouns[-1]}"  # noqa: E731
        drawn = next(((r, c) for i in rec["instances"] for r, c in i["objects"].items()), None)
        texts = [("glimpse", None, scene(sit.verb), True), ("glimpse", None, scene(other), False)]
        if drawn:
            texts += [("gaze", drawn[0], f"a large {drawn[1]} in the centre", True),
                      ("gaze", drawn[0], f"a {drawn[1]} {other}", False)]
        for kind, role, text, truth in texts:  # a chain: the wrong text in round 0, the right one in round 1
            prompt = P.build_judge_prompt(space, sit, evidence[img], kind, role, text, threshold=7)
            score, accept, reasons = judge.score(prompt)
            records.append(Rationale(image=img, kind=kind, role=role, polarity="positive" if accept else "negative",
                                     text=text, round=int(truth), score=float(score), backend=BACKEND,
                                     verdict={"score": float(score), "accept": accept, "reasons": reasons}))
            expected[text] = truth
    records.append(Rationale(image="unl_000000.png", kind="glimpse", role=None, polarity="unjudged", text="a dog",
                             round=0, score=None, backend="unlabeled|captioner-v1:test", source="unlabeled"))
    (run / "teacher_evidence.json").write_text(json.dumps(evidence))
    (run / "rationales.jsonl").write_text("".join(json.dumps(r.to_json()) + "\n" for r in records))
    return {"base": base, "world": world, "run": run, "records": records, "expected": expected}


def _bench(env: dict, out: Path, store: Path | None = None, *extra: str) -> int:
    return bench_llm_judge.main(["--rationales", str(store or env["run"] / "rationales.jsonl"), "--world",
                                 str(env["world"]), "--max-rationales", "100", "--judge", "embedded",
                                 "--out", str(out), *extra])


def test_the_hand_made_store_covers_every_stratum(env) -> None:
    judged = JA.judged_records(env["records"], "gen=captioner")
    assert {JA.stratum(r) for r in judged} == {"glimpse-accepted", "glimpse-rejected", "gaze-accepted",
                                               "gaze-rejected"}
    # the bench rebuilds the judge's messages with the JRG's function: the prompt the stored verdict was given
    r = judged[0]
    space, sits = load_world(env["world"])
    ev = json.loads((env["run"] / "teacher_evidence.json").read_text())[r.image]
    msgs = judge_messages(space, sits[r.image], ev, r.kind, r.role, r.text, threshold=7)
    assert msgs[0]["content"] == P.SYSTEM_JUDGE
    assert msgs[1]["content"] == P.build_judge_prompt(space, sits[r.image], ev, r.kind, r.role, r.text, threshold=7)


def test_captioner_mode_with_the_embedded_judge_standing_in(env, tmp_path) -> None:
    assert _bench(env, tmp_path) == 0
    items = [json.loads(line) for line in (tmp_path / "samples" / "llm_judge_captioner.jsonl").read_text().splitlines()]
    judged = JA.judged_records(env["records"], "gen=captioner")
    md = (tmp_path / "llm_judge_captioner.md").read_text()
    shot_images = set(re.findall(r"- glimpse of (\S+): ", md))
    assert len(shot_images) >= 1
    assert len(items) == sum(r.image not in shot_images for r in judged)  # every record but the examples' images
    assert all(i["truth"] == env["expected"][i["text"]] for i in items)  # the world's truth, per rationale
    stored = {(r.image, r.kind, r.role, r.text): r.verdict["accept"] for r in judged}
    assert all(i["reference_accept"] == stored[(i["image"], i["kind"], i["role"], i["text"])] for i in items)
    rows = {(r.model, r.split, r.metric): r.value for r in read_rows(tmp_path / "llm_judge_captioner.json")}
    assert all(r.task == "bench" and r.setting == "captioner-threads1"
               for r in read_rows(tmp_path / "llm_judge_captioner.json"))
    model = "embedded-judge-standin"
    assert rows[(model, "all", "n")] == len(items) and rows[(model, "all", "parse_rate")] == 100.0
    # the same deterministic judge on the rebuilt prompts: full agreement, and the prompt check says so
    assert rows[(model, "all", "agree_with_embedded")] == 100.0
    assert rows[("embedded-judge-rerun", "all", "prompt_rebuild_agreement")] == 100.0
    truth_rate = 100.0 * sum(i["truth"] for i in items) / len(items)
    assert rows[(model, "all", "truth_correct_rate")] == pytest.approx(truth_rate)
    assert rows[(model, "all", "verdicts_per_s")] > 0
    assert rows[(model, "glimpse-accepted", "n")] + rows[(model, "glimpse-rejected", "n")] == rows[(model, "glimpse", "n")]
    assert "**100.0%** of the sample" in md and "Five verdicts" in md
    assert len([ln for ln in md.split("Five verdicts")[1].splitlines() if ln.startswith("- ")]) == 5
    # the same seed gives the same sample and report numbers
    again = tmp_path / "again"
    assert _bench(env, again) == 0
    assert (again / "samples" / "llm_judge_captioner.jsonl").read_text() == \
        (tmp_path / "samples" / "llm_judge_captioner.jsonl").read_text()


def test_a_time_budget_judges_a_balanced_prefix_of_the_sample(env, tmp_path) -> None:
    assert _bench(env, tmp_path / "all") == 0
    assert _bench(env, tmp_path / "cut", None, "--max-seconds", "1e-9") == 0  # stops after the first verdict
    full = (tmp_path / "all" / "samples" / "llm_judge_captioner.jsonl").read_text().splitlines()
    cut = (tmp_path / "cut" / "samples" / "llm_judge_captioner.jsonl").read_text().splitlines()
    assert cut == full[:1]
    assert [json.loads(x)["stratum"] for x in full[:4]] == ["glimpse-accepted", "glimpse-rejected", "gaze-accepted",
                                                           "gaze-rejected"]  # interleaved: any prefix is balanced
    md = (tmp_path / "cut" / "llm_judge_captioner.md").read_text()
    assert f"the sample drawn had {len(full)}" in md and "stopped the judge after 1" in md


def test_a_stored_verdict_the_prompt_does_not_give_is_seen(env, tmp_path) -> None:
    """A verdict flipped in the store: agreement and the prompt check drop by exactly that one rationale."""
    lines = (env["run"] / "rationales.jsonl").read_text().splitlines()
    flip = max(i for i, ln in enumerate(lines) if json.loads(ln)["kind"] == "gaze")  # the last image: no example
    d = json.loads(lines[flip])
    d["verdict"]["accept"] = not d["verdict"]["accept"]
    d["polarity"] = "positive" if d["verdict"]["accept"] else "negative"
    lines[flip] = json.dumps(d)
    store = tmp_path / "run" / "rationales.jsonl"
    store.parent.mkdir()
    store.write_text("\n".join(lines) + "\n")
    (store.parent / "teacher_evidence.json").write_bytes((env["run"] / "teacher_evidence.json").read_bytes())
    assert _bench(env, tmp_path / "out", store) == 0
    rows = {(r.model, r.split, r.metric): r.value for r in read_rows(tmp_path / "out" / "llm_judge_captioner.json")}
    n = rows[("embedded-judge-standin", "all", "n")]
    assert rows[("embedded-judge-rerun", "all", "prompt_rebuild_agreement")] == pytest.approx(100.0 * (n - 1) / n)
    assert rows[("embedded-judge-standin", "all", "agree_with_embedded")] == pytest.approx(100.0 * (n - 1) / n)


def test_bad_input_is_a_clear_error(env, tmp_path, capsys) -> None:
    # a store without the evidence beside it
    lone = tmp_path / "lone" / "rationales.jsonl"
    lone.parent.mkdir()
    lone.write_bytes((env["run"] / "rationales.jsonl").read_bytes())
    assert _bench(env, tmp_path / "o1", lone) == 1
    assert "teacher_evidence.json: missing" in capsys.readouterr().err
    # a store of another generator only
    other = tmp_path / "other" / "rationales.jsonl"
    other.parent.mkdir()
    recs = [replace(r, backend="gen=embedded-gen|judge=x") for r in env["records"]]
    other.write_text("".join(json.dumps(r.to_json()) + "\n" for r in recs))
    assert _bench(env, tmp_path / "o2", other) == 1
    assert "no judged rationale written by the embedded captioner" in capsys.readouterr().err
    # an image the world does not annotate
    odd = tmp_path / "odd" / "rationales.jsonl"
    odd.parent.mkdir()
    recs = [replace(env["records"][0], image="nowhere.png"), *env["records"]]
    odd.write_text("".join(json.dumps(r.to_json()) + "\n" for r in recs))
    (odd.parent / "teacher_evidence.json").write_bytes((env["run"] / "teacher_evidence.json").read_bytes())
    assert _bench(env, tmp_path / "o3", odd) == 1
    err = capsys.readouterr().err
    assert "train.json" in err and "nowhere.png" in err
    with pytest.raises(SystemExit):  # --world without --rationales
        bench_llm_judge.main(["--world", str(env["world"])])


@pytest.mark.integration
def test_captioner_mode_with_the_real_llamacpp_judge(env, tmp_path) -> None:
    """Opt-in (a minute of one core): the real SmolLM2 judge over loopback HTTP answers parseable verdicts."""
    pytest.importorskip("xllamacpp")
    assert bench_llm_judge.main(["--rationales", str(env["run"] / "rationales.jsonl"), "--world", str(env["world"]),
                                 "--max-rationales", "2", "--threads", "1", "--out", str(tmp_path)]) == 0
    rows = {(r.model, r.split, r.metric): r.value for r in read_rows(tmp_path / "llm_judge_captioner.json")}
    assert rows[("llm-judge-smollm2", "all", "n")] == 2
    assert rows[("llm-judge-smollm2", "all", "parse_rate")] == 100.0  # the verdict schema constrains the reply
