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

from mipd_kit.language.base import FewShot  # noqa: E402
from mipd_kit.language.embedded import EmbeddedGenerator, EmbeddedJudge, _mentions, _words, verb_words  # noqa: E402
from mipd_kit.language.llamacpp import LlamaCppConfig, LlamaCppServer  # noqa: E402
from mipd_kit.language.openai_http import OpenAIHTTPSampler  # noqa: E402
from mipd_kit.metrics import row, write_rows  # noqa: E402
from mipd_kit.rationales import prompts as P  # noqa: E402
from mipd_kit.rationales.jrg import load_evidence, load_world  # noqa: E402
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-per-verb", type=int, default=40, help="toy-world images per verb (3 verbs)")
    ap.add_argument("--threads", type=int, default=1, help="llama.cpp generation threads")
    ap.add_argument("--max-rationales", type=int, default=300)
    ap.add_argument("--out", default=str(ROOT / "reports" / "bench"))
    a = ap.parse_args(argv)

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
        parsed = [r for r in rs if r["llm_accept"] is not None]
        n = len(rs)
        if not n:
            continue
        def rate(xs, f):
            return 100.0 * sum(f(x) for x in xs) / len(xs) if xs else float("nan")
        m = {
            "n": n, "parse_rate": rate(rs, lambda r: r["llm_accept"] is not None),
            "truth_correct_rate": rate(rs, lambda r: r["truth"]),
            "llm_accept_rate": rate(parsed, lambda r: r["llm_accept"]),
            "embedded_accept_rate": rate(rs, lambda r: r["embedded_accept"]),
            "agree_with_embedded": rate(parsed, lambda r: r["llm_accept"] == r["embedded_accept"]),
            "llm_accuracy_vs_truth": rate(parsed, lambda r: r["llm_accept"] == r["truth"]),
            "embedded_accuracy_vs_truth": rate(rs, lambda r: r["embedded_accept"] == r["truth"]),
            "llm_precision": rate([r for r in parsed if r["llm_accept"]], lambda r: r["truth"]),
            "llm_recall": rate([r for r in parsed if r["truth"]], lambda r: r["llm_accept"]),
            "embedded_precision": rate([r for r in rs if r["embedded_accept"]], lambda r: r["truth"]),
        }
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
