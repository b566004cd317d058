"""A real 135M-parameter LLM as the JRG judge: how often does it agree with the embedded judge and with the truth?

The judge is SmolLM2-135M-Instruct served by llama.cpp's own OpenAI-compatible HTTP server on loopback
(:mod:`mipd_kit.language.llamacpp`), reached through the same ``OpenAIHTTPSampler`` as any remote endpoint, with the
JRG's judge prompt, the verdict JSON schema as ``response_format`` and two in-context examples. The rationales are
written by the embedded generator from the toy world's teacher evidence (the teacher is wrong about a third of the
time, so about a third of the glimpses name a wrong activity).

Truth (known in the toy world): a glimpse is *correct* when it names the annotated activity and no other candidate
activity; a gaze rationale when it names one of the annotators' nouns (or synonyms) for its role.

Reports parse rate, accept rate, agreement with the embedded judge, and accuracy / precision / recall of the accept
decision against the truth, per rationale kind, plus verdicts/s (threads named). Writes
``reports/bench/llm_judge.json`` (tidy rows, task "bench") and ``reports/bench/llm_judge.md``.

    python benchmarks/bench_llm_judge.py [--n-per-verb 40] [--threads 1] [--max-rationales 300]

**Captioner mode** (``--rationales``): the rationales of a real run, written by the embedded captioner and judged by
the embedded judge (records whose backend starts with ``gen=captioner``). A seeded sample balanced over kind (glimpse /
gaze) and the stored verdict (accepted / rejected) is judged again by the LLM with the very messages the JRG sent
(``jrg_inputs.judge_messages``: the annotated verb, roles and annotators' nouns, the teacher's evidence from
``teacher_evidence.json`` beside the store, the threshold of ``jrg_stats.json`` when present; text only, no image).
Truth is the world's rendered truth (``content.is_correct``, see ``mipd_kit.rationales.judge_agreement``). The embedded
judge is re-run on the rebuilt prompts too: its agreement with the stored verdicts checks that the prompts are the
ones the JRG sent. ``--judge embedded`` puts the embedded judge in the LLM's place (tests; no llama.cpp needed).
Writes ``reports/bench/llm_judge_captioner.{json,md}`` and the per-rationale verdicts to
``reports/bench/samples/llm_judge_captioner.jsonl``.

    python benchmarks/bench_llm_judge.py --rationales RUN/rationales.jsonl --world WORLD [--max-rationales 80] \
        [--seed 0] [--threads 1] [--judge llamacpp|embedded]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mipd_kit.data.records import DataError  # noqa: E402
from mipd_kit.fileio import atomic_write_text  # noqa: E402
from mipd_kit.language.base import FewShot  # noqa: E402
from mipd_kit.language.embedded import EmbeddedGenerator, EmbeddedJudge, _mentions, _words, verb_words  # noqa: E402
from mipd_kit.language.llamacpp import LlamaCppConfig, LlamaCppServer  # noqa: E402
from mipd_kit.language.openai_http import OpenAIHTTPSampler  # noqa: E402
from mipd_kit.metrics import row, write_rows  # noqa: E402
from mipd_kit.rationales import judge_agreement as JA  # noqa: E402
from mipd_kit.rationales import prompts as P  # noqa: E402
from mipd_kit.rationales.jrg_inputs import judge_messages, load_evidence, load_world  # noqa: E402
from mipd_kit.rationales.store import read_rationales  # noqa: E402
from mipd_kit.rationales.toy import write_toy_world  # noqa: E402


def truth(space, sit, kind: str, role: str | None, text: str) -> bool:
    norm = " ".join(_words(text))
    if kind == "glimpse":
        says = any(_mentions(norm, f) for f in verb_words(sit.verb, space.verbs[sit.verb].abstract))
        other = any(_mentions(norm, v) for v in space.verbs if v != sit.verb)
        return says and not other
    names = P.answer_terms(space, sit)[role]
    if not names:  # an empty role: correct when the rationale says so
        return "absent" in norm or "no entity" in norm
    return any(_mentions(norm, n) for n in names)


def messages_for(prompt: str, system: str) -> list[dict]:
    return [{"role": "system", "content": system}, {"role": "user", "content": prompt}]


# --------------------------------------------------------------------------------------------------- captioner mode
CAPTIONER_PREFIX = "gen=captioner"


def run_settings(store: Path, threshold: float | None) -> tuple[float, dict[str, str] | None, str]:
    """The judge's threshold and imSitu templates the run used: ``jrg_stats.json`` beside the store when present."""
    stats = store.parent / "jrg_stats.json"
    cfg: dict = {}
    if stats.exists():
        try:
            cfg = json.loads(stats.read_text())["run"]["config"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DataError(f"{stats}: expected run.config of a JRG statistics file ({e!r})") from e
    tpl = cfg.get("imsitu_templates") or ""
    templates = P.load_generation_templates(tpl) if tpl else None
    if threshold is not None:
        return threshold, templates, "--threshold"
    if "threshold" in cfg:
        return float(cfg["threshold"]), templates, f"{stats.name} beside the store"
    return 7.0, templates, "the JRG default (no jrg_stats.json beside the store)"


def stored_judge(records) -> EmbeddedJudge | None:
    """The embedded judge that wrote the stored verdicts (seed and malformed rate from the backend key), or None when
    another judge (or several) wrote them."""
    import re
    keys = {m.group(1) for r in records if (m := re.search(r"\|judge=([^|]+)\|", r.backend))}
    if len(keys) != 1:
        return None
    m = re.fullmatch(r"embedded-judge-v2:s(-?\d+):m([\d.e-]+)", keys.pop())
    if not m:
        return None
    judge = EmbeddedJudge(seed=int(m.group(1)), malformed_rate=float(m.group(2)))
    return judge if judge.malformed_rate == 0 else None


def few_shots(records, truth: dict, messages_of) -> list:
    """Two in-context examples from the store, never evaluated: the first glimpse (stable order) the stored judge
    accepted that is correct, then the first it rejected that is wrong, with the stored verdicts as the replies."""
    glimpses = sorted((r for r in records if r.kind == "glimpse" and r.source == "generated"),
                      key=lambda r: (r.image, r.round, r.text))
    good = next((r for r in glimpses if JA.stored_accept(r) and truth[r.key()]), None)
    bad = next((r for r in glimpses if not JA.stored_accept(r) and not truth[r.key()]), None)
    if good is None or bad is None:
        raise DataError("the store has no correct accepted glimpse or no wrong rejected glimpse for the in-context "
                        "examples")
    return [(r, messages_of(r)[-1]["content"],
             json.dumps({"score": int(r.verdict["score"]), "accept": JA.stored_accept(r),
                         "reasons": list(r.verdict.get("reasons", []))[:2]})) for r in (good, bad)]


def judge_sample(sample, truth: dict, messages_of, judge, progress: bool = True,
                 max_seconds: float = 0.0) -> tuple[list, float]:
    """Ask ``judge`` about the sampled records in order; returns the :class:`JudgedRationale` list and the seconds
    taken. With ``max_seconds`` > 0 no new verdict is asked once that much time has passed, after the first (the
    sample's order makes the judged prefix a balanced sample itself)."""
    out = []
    t0 = time.perf_counter()
    for k, r in enumerate(sample, 1):
        if max_seconds > 0 and out and time.perf_counter() - t0 >= max_seconds:
            break
        reply = judge(messages_of(r)).text
        v = P.parse_verdict(reply)
        out.append(JA.JudgedRationale(r.image, r.kind, r.role, r.source, r.text, truth[r.key()], JA.stored_accept(r),
                                      None if v is None else v.accept, None if v is None else v.score, reply[:300]))
        if progress and (k % 5 == 0 or k == len(sample)):
            print(f"{k}/{len(sample)} verdicts, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return out, time.perf_counter() - t0


def captioner_main(a: argparse.Namespace) -> int:
    store, world = Path(a.rationales), Path(a.world)
    records = JA.judged_records(read_rationales(store), CAPTIONER_PREFIX)
    if not records:
        raise DataError(f"{store}: no judged rationale written by the embedded captioner "
                        f"(backend starting with {CAPTIONER_PREFIX!r})")
    space, sits = load_world(world, a.split)
    missing = sorted({r.image for r in records} - set(sits))
    if missing:
        raise DataError(f"{world / (a.split + '.json')}: no annotation of image {missing[0]!r} of {store} "
                        f"({len(missing)} images missing; is --world the run's world?)")
    ev_path = Path(a.evidence) if a.evidence else store.parent / "teacher_evidence.json"
    if not ev_path.exists():
        raise DataError(f"{ev_path}: missing; the judge prompt shows the teacher's evidence (pass --evidence)")
    evidence = load_evidence(ev_path)
    threshold, templates, thr_src = run_settings(store, a.threshold)
    prompt_keys = sorted({b.split("prompts=")[1].split("|")[0] for b in {r.backend for r in records} if "prompts=" in b})

    def messages_of(r):
        return judge_messages(space, sits[r.image], evidence.get(r.image), r.kind, r.role, r.text,
                              threshold=threshold, templates=templates)

    glimpses = [r for r in records if r.kind == "glimpse"]
    truth = JA.world_truth(glimpses, world)
    shots = few_shots(records, truth, messages_of)
    sample = JA.stratified_sample(records, a.max_rationales, seed=a.seed, exclude_images={r.image for r, _, _ in shots})
    truth |= JA.world_truth(sample, world)

    ref = stored_judge(records)
    rebuild = None
    if ref is not None:
        again = [P.parse_verdict(ref(messages_of(r)).text) for r in sample]
        rebuild = JA.agreement_with([(None, None) if v is None else (v.accept, v.score) for v in again],
                                    [r.verdict or {} for r in sample])

    if a.judge == "llamacpp":
        model = "llm-judge-smollm2"
        with LlamaCppServer(LlamaCppConfig(n_threads=a.threads, n_ctx=4096)) as srv:
            llm = FewShot(OpenAIHTTPSampler(srv.openai_config(max_tokens=64, temperature=0.0, timeout_s=120.0,
                                                              response_format=P.VERDICT_RESPONSE_FORMAT)),
                          tuple((u, rep) for _, u, rep in shots))
            items, seconds = judge_sample(sample, truth, messages_of, llm, max_seconds=a.max_seconds)
        judge_name = "SmolLM2-135M-Instruct on llama.cpp (loopback HTTP, verdict JSON schema, 2 in-context examples)"
    else:  # the embedded judge stands in (no in-context examples: it reads every text of the conversation)
        model = "embedded-judge-standin"
        items, seconds = judge_sample(sample, truth, messages_of, EmbeddedJudge(seed=0), progress=False,
                                      max_seconds=a.max_seconds)
        judge_name = "the embedded judge standing in for the LLM (--judge embedded)"

    groups = JA.grouped_metrics(items)
    setting = f"captioner-threads{a.threads}"
    rows = [row("bench", model, g, setting, k, float(v)) for g, m in groups.items() for k, v in m.items()]
    vps = len(items) / seconds if seconds > 0 else float("nan")
    rows.append(row("bench", model, "all", setting, "verdicts_per_s", vps))
    if rebuild is not None:
        rows.append(row("bench", "embedded-judge-rerun", "all", setting, "prompt_rebuild_agreement", rebuild))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_rows(out / "llm_judge_captioner.json", rows)
    (out / "samples").mkdir(exist_ok=True)
    atomic_write_text(out / "samples" / "llm_judge_captioner.jsonl",
                      "".join(json.dumps(i.to_json()) + "\n" for i in items))
    md = captioner_markdown(a, store, world, records, sample, items, groups, seconds, threshold, thr_src, rebuild,
                            prompt_keys, judge_name, shots)
    atomic_write_text(out / "llm_judge_captioner.md", md)
    print(md)
    return 0


def _rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def captioner_markdown(a, store, world, records, sample, items, groups, seconds, threshold, thr_src, rebuild,
                       prompt_keys, judge_name, shots) -> str:
    """The report of captioner mode (a pure function of its results)."""
    strata = {s: sum(JA.stratum(r) == s for r in records) for s in (f"{k}-{'accepted' if acc else 'rejected'}"
                                                                    for k, acc in JA.STRATA)}
    taken = {s: sum(i.stratum == s for i in items) for s in strata}
    cmd = (f"python benchmarks/bench_llm_judge.py --rationales {_rel(store)} --world {_rel(world)} "
           f"--max-rationales {a.max_rationales} --seed {a.seed} --threads {a.threads}"
           + (f" --max-seconds {a.max_seconds:g}" if a.max_seconds else "")
           + ("" if a.judge == "llamacpp" else f" --judge {a.judge}"))
    vps = len(items) / seconds if seconds > 0 else float("nan")
    fp_note = ("the prompts are those of this checkout" if prompt_keys == [P.prompts_fingerprint()] else
               f"**the store's prompt versions {prompt_keys} differ from this checkout's {P.prompts_fingerprint()}**")
    lines = [f"# The JRG judge on the embedded captioner's rationales: {judge_name}", "",
             f"Command: `{cmd}`; machine: {platform.machine()}, {len(items)} verdicts in {seconds:.0f} s "
             f"(**{vps:.2f} verdicts/s, " + (f"{a.threads} llama.cpp thread(s)" if a.judge == "llamacpp" else "rule-based")
             + "**; other jobs shared the machine).", "",
             f"Rationales: {len(records)} judged records of the embedded captioner in `{_rel(store)}` "
             f"(embedded judge, threshold {threshold:g} from {thr_src}; {fp_note}). A seeded sample (seed {a.seed}) "
             "balanced over kind and the stored verdict: " + ", ".join(f"{s} {taken[s]} of {strata[s]}" for s in strata)
             + (f" (the sample drawn had {len(sample)}; the time budget of {a.max_seconds:g} s stopped the judge "
                f"after {len(items)}, a prefix that is balanced too)" if len(items) < len(sample) else "")
             + ". The images of the two in-context examples are left out. Each is judged again with the judge "
             "messages the JRG sent (`jrg_inputs.judge_messages`: annotated verb, roles and annotators' nouns, the teacher's "
             "evidence), text only.", ""]
    if rebuild is not None:
        lines += [f"Prompt check: the embedded judge re-run on the rebuilt prompts gives the stored verdict (accept "
                  f"and score) for **{rebuild:.1f}%** of the sample.", ""]
    lines += ["Truth: the world's rendered truth (`content.is_correct`): a glimpse is correct when it names a verb of "
              "the image and no verb the image does not show; a gaze names no such wrong verb and names its role's "
              "drawn entity when one is known. `llm_*`: the judge under test over its parsed replies; `embedded_*`: "
              "the stored verdicts. Percent; rows by kind, then by stratum (kind x stored verdict):", "",
              "| group | " + " | ".join(JA.METRICS) + " |", "|" + "---|" * (len(JA.METRICS) + 1)]
    for g, m in groups.items():
        lines.append(f"| {g} | " + " | ".join(f"{m[c]:.0f}" if c == "n" else f"{m[c]:.1f}" for c in JA.METRICS)
                     + " |")
    accepts = {i.accept for i in items if i.accept is not None}
    if len(accepts) == 1:
        lines += ["", f"Degenerate judge: it gave every parsed rationale the same verdict "
                      f"({'accept' if accepts.pop() else 'reject'}), whatever the rationale said."]
    lines += ["", "In-context examples (their replies are the stored verdicts):", ""]
    for r, _, reply in shots:
        lines.append(f"- glimpse of {r.image}: \"{r.text}\" -> `{reply}`")
    lines += ["", "Five verdicts of the judge under test (one per stratum where possible, those it got wrong against "
              "the truth first):", ""]
    ranked = sorted(items, key=lambda i: (i.accept == i.truth, i.stratum))
    chosen: list = []
    for i in ranked:  # the first of each stratum
        if i.stratum not in {c.stratum for c in chosen}:
            chosen.append(i)
    chosen += [i for i in ranked if i not in chosen][:5 - len(chosen)]
    for i in chosen:
        lines.append(f"- {i.kind} {i.role or ''} ({i.image}, {i.source}; stored verdict "
                     f"{'accept' if i.reference_accept else 'reject'}, truth {'correct' if i.truth else 'wrong'}): "
                     f"\"{i.text}\" -> {i.reply!r}")
    lines += ["", "Every verdict: `samples/llm_judge_captioner.jsonl`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-per-verb", type=int, default=40, help="toy-world images per verb (3 verbs)")
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp generation threads")
    ap.add_argument("--max-rationales", type=int, default=300)
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench"))
    ap.add_argument("--rationales", default=None,
                    help="captioner mode: a run's rationales.jsonl (records of backend gen=captioner...)")
    ap.add_argument("--world", default=None, help="captioner mode: the world the run used (rendered.jsonl for truth)")
    ap.add_argument("--evidence", default=None, help="captioner mode: teacher_evidence.json (default: beside the store)")
    ap.add_argument("--threshold", type=float, default=None,
                    help="captioner mode: the judge's threshold (default: the run's jrg_stats.json, else 7)")
    ap.add_argument("--split", default="train", help="captioner mode: the world's annotation file of the images")
    ap.add_argument("--seed", type=int, default=0, help="captioner mode: sampling seed")
    ap.add_argument("--max-seconds", type=float, default=0.0,
                    help="captioner mode: stop asking for verdicts after this long (0 = judge the whole sample)")
    ap.add_argument("--judge", choices=["llamacpp", "embedded"], default="llamacpp",
                    help="captioner mode: the judge under test (embedded = the embedded judge stands in, for tests)")
    a = ap.parse_args(argv)
    if a.rationales or a.world:
        if not (a.rationales and a.world):
            ap.error("--rationales and --world go together (captioner mode)")
        try:
            return captioner_main(a)
        except DataError as e:
            print(f"bench_llm_judge: {e}", file=sys.stderr)
            return 1

    tmp = Path(tempfile.mkdtemp(prefix="bench-llm-judge-"))
    write_toy_world(tmp / "w", tmp / "r", n_per_verb=a.n_per_verb, seed=1)
    space, sits = load_world(tmp / "w")
    evidence = load_evidence(tmp / "r" / "teacher_evidence.json")
    gen, emb = EmbeddedGenerator(seed=0, p_top=0.7), EmbeddedJudge(seed=0)

    # candidate rationales: one glimpse and one gaze per role for every image
    items = []
    for img, sit in sorted(sits.items()):
        ev = evidence.get(img)
        text = gen(messages_for(P.build_glimpse_prompt(space, sit, ev), P.SYSTEM_GENERATOR)).text
        items.append((img, "glimpse", None, text))
        for role in P.frame_roles(space, sit):
            text = gen(messages_for(P.build_gaze_prompt(space, sit, role, ev), P.SYSTEM_GENERATOR)).text
            items.append((img, "gaze", role, text))
    # two in-context examples (a correct glimpse accepted, a wrong one rejected), then never evaluated
    correct = next(i for i in items if i[1] == "glimpse" and truth(space, sits[i[0]], "glimpse", None, i[3]))
    wrong = next(i for i in items if i[1] == "glimpse" and not truth(space, sits[i[0]], "glimpse", None, i[3]))
    shots = []
    for img, kind, role, text in (correct, wrong):
        prompt = P.build_judge_prompt(space, sits[img], evidence.get(img), kind, role, text, threshold=7)
        score, accept, reasons = emb.score(prompt)
        shots.append((prompt, json.dumps({"score": score, "accept": accept, "reasons": reasons[:2]})))
    shot_images = {correct[0], wrong[0]}
    items = [i for i in items if i[0] not in shot_images][: a.max_rationales]

    results = []
    with LlamaCppServer(LlamaCppConfig(n_threads=a.threads, n_ctx=4096)) as srv:
        llm = FewShot(OpenAIHTTPSampler(srv.openai_config(max_tokens=64, temperature=0.0, timeout_s=120.0,
                                                          response_format=P.VERDICT_RESPONSE_FORMAT)),
                      tuple(shots))
        t0 = time.perf_counter()
        for img, kind, role, text in items:
            prompt = P.build_judge_prompt(space, sits[img], evidence.get(img), kind, role, text, threshold=7)
            e_score, e_accept, _ = emb.score(prompt)
            reply = llm(messages_for(prompt, P.SYSTEM_JUDGE)).text
            v = P.parse_verdict(reply)
            results.append({"image": img, "kind": kind, "role": role, "text": text,
                            "truth": truth(space, sits[img], kind, role, text), "embedded_accept": e_accept,
                            "llm_accept": None if v is None else v.accept, "llm_score": None if v is None else v.score,
                            "llm_reply": reply[:300]})
        seconds = time.perf_counter() - t0

    rows, table = [], []
    for kind in ("glimpse", "gaze", "all"):
        rs = [r for r in results if kind == "all" or r["kind"] == kind]
        if not rs:
            continue
        m = JA.agreement_metrics([JA.JudgedRationale(r["image"], r["kind"], r["role"], "generated", r["text"],
                                                     r["truth"], r["embedded_accept"], r["llm_accept"],
                                                     r["llm_score"], r["llm_reply"]) for r in rs])
        table.append((kind, m))
        for k, v in m.items():
            rows.append(row("bench", "llm-judge-smollm2", kind, f"threads{a.threads}", k, float(v)))
    rows.append(row("bench", "llm-judge-smollm2", "all", f"threads{a.threads}", "verdicts_per_s",
                    len(results) / seconds))

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_rows(out / "llm_judge.json", rows)
    cols = ["n", "parse_rate", "truth_correct_rate", "llm_accept_rate", "embedded_accept_rate", "agree_with_embedded",
            "llm_accuracy_vs_truth", "embedded_accuracy_vs_truth", "llm_precision", "llm_recall", "embedded_precision"]
    lines = ["# A 135M LLM as the JRG judge (SmolLM2-135M-Instruct on llama.cpp, loopback HTTP)", "",
             f"Command: `python benchmarks/bench_llm_judge.py --n-per-verb {a.n_per_verb} --threads {a.threads} "
             f"--max-rationales {a.max_rationales}`; machine: {platform.machine()}, "
             f"{len(results)} verdicts in {seconds:.0f} s ({len(results) / seconds:.2f} verdicts/s, {a.threads} thread(s)).",
             "", "Rationales: the embedded generator on the toy world's teacher evidence; truth: a glimpse names the "
             "annotated activity and no other, a gaze rationale names one of the annotators' nouns for its role. "
             "The embedded judge also asks for participants, setting and appearance, so it accepts fewer than the "
             "truth counts as correct. Percent:", "",
             "| kind | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for kind, m in table:
        lines.append(f"| {kind} | " + " | ".join(f"{m[c]:.0f}" if c == "n" else f"{m[c]:.1f}" for c in cols) + " |")
    accepts = {r["llm_accept"] for r in results if r["llm_accept"] is not None}
    if len(accepts) == 1:
        lines += ["", f"Degenerate judge: it gave every parsed rationale the same verdict "
                      f"({'accept' if accepts.pop() else 'reject'}), whatever the rationale said."]
    lines += ["", "Five verdicts of the LLM (wrong ones first):", ""]
    for r in sorted(results, key=lambda r: r["llm_accept"] == r["truth"])[:5]:
        lines.append(f"- {r['kind']} {r['role'] or ''} truth={'correct' if r['truth'] else 'wrong'}: "
                     f"\"{r['text']}\" -> {r['llm_reply']!r}")
    (out / "llm_judge.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
