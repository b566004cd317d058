"""The Judgmental Rationales Generator (JRG) of MIPD: glimpse and gaze rationales, an LLM judge, multi-round
refinement, positive and negative rationale sets.

For every training image (annotated frame known):

1. a **glimpse** rationale (the whole scene: verb, participants, setting) and one **gaze** rationale per role of
   the annotated verb (the entity, its appearance, its part in the action) are generated from the prompts of
   :mod:`mipd_kit.rationales.prompts` (the teacher's visual evidence and the frame definitions in the prompt,
   optionally the image itself);
2. the **judge** sees the annotated frame (verb, roles, the three annotators' nouns), the evidence and the
   rationale and returns ``{"score", "accept", "reasons"}``; an unparseable reply is retried ``judge_retries``
   times with a reminder of the format, then recorded as a failure (``jrg_failures.jsonl``) and counted;
3. a rejected rationale is regenerated with the judge's feedback (the last attempt and every reason the judge gave
   so far in this chain, made answer-free by ``prompts.answer_free_reasons``), for up to ``rounds`` rounds; the
   re-prompt also lists the rejected rationales' own words the reasons point at (``Avoid these words: ...``, see
   ``content.words_to_avoid``: the verb words when the activity is wrong, a gaze's object words when its entity
   is wrong), which the embedded captioner never samples again; the new prompt also re-seeds its sampling;
4. **positives** are accepted rationales; **negatives** are the rejected ones plus **hard negatives**:
   rationales written for the verbs the teacher confuses with the true one (its other top verbs; the prompt asks
   to ``Begin with:`` the confused verb, which the captioner is forced to), judged too (a hard negative the judge
   accepts becomes a positive; the count is reported). A would-be negative that names the image's annotated verb
   (a rejected glimpse, or any hard negative) is not a negative: it is stored with polarity ``"dropped"`` (so a
   resumed run does not redo it) and counted. A request the generator cannot answer (an image that fails to
   decode, a zero-area region, a captioner that emits nothing: ``SamplerRequestError``) is a counted failure of
   that chain (``jrg_failures.jsonl``) that never aborts the stage.

Every judged rationale is appended to ``run_dir/rationales.jsonl`` (:mod:`mipd_kit.rationales.store`) at once,
so a killed run resumes where it stopped and a re-run of a finished run makes no calls. Statistics
(:func:`~mipd_kit.rationales.jrg_stats.jrg_statistics`, a pure function of the stored records) go to
``run_dir/jrg_stats.json`` and as tidy rows (task ``"jrg"``) to ``run_dir/metrics.json``.

The settings live in :mod:`~mipd_kit.rationales.jrg_config`, the inputs and the judge's messages in
:mod:`~mipd_kit.rationales.jrg_inputs`, the statistics in :mod:`~mipd_kit.rationales.jrg_stats`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from mipd_kit.data.records import DataError, FrameSpace, Situation
from mipd_kit.fileio import write_json
from mipd_kit.language.base import Message, Sampler, SamplerAuthError, SamplerError, SamplerRequestError, redact
from mipd_kit.language.factory import SamplerConfig, build_sampler
from mipd_kit.language.hf_local import HFLocalConfig
from mipd_kit.language.openai_http import OpenAIHTTPConfig, config_secrets
from mipd_kit.metrics import merge_rows
from mipd_kit.rationales import prompts as P
from mipd_kit.redaction import redact_obj
from mipd_kit.rationales.jrg_config import JRGConfig, JRGFailed
from mipd_kit.rationales.jrg_inputs import judge_messages, load_evidence, load_world, roles_of, user_message
from mipd_kit.rationales.jrg_stats import _keep_working_pass, jrg_statistics, stats_rows
from mipd_kit.rationales.store import JsonlLog, Rationale, RationaleStore

#: Reminder sent after an unparseable judge reply.
JUDGE_RETRY_TEMPLATE = ("Your reply could not be parsed. Reply with one JSON object only, exactly of the form "
                        "{{\"score\": <integer 0-10>, \"accept\": <true|false>, \"reasons\": [<strings>]}}. "
                        "(attempt {attempt})")
#: Reminder sent after an empty generator reply.
GENERATOR_RETRY_TEMPLATE = "Your reply was empty. Write the rationale now, in one or two sentences. (attempt {attempt})"



@dataclass(frozen=True)
class Chain:
    """One rationale to produce: (image, kind, role) plus its source and, for hard negatives, the target verb."""

    image: str
    kind: str
    role: Optional[str]
    source: str = "generated"
    target: Optional[str] = None


def plan_chains(space: FrameSpace, situations: Mapping[str, Situation], evidence: Mapping[str, Any],
                cfg: JRGConfig) -> list[Chain]:
    """All chains of the stage, in a stable order (pure)."""
    images = sorted(situations)
    if cfg.max_images:
        images = images[:cfg.max_images]
    chains: list[Chain] = []
    for img in images:
        sit = situations[img]
        roles = roles_of(space, sit)
        if "glimpse" in cfg.kinds:
            chains.append(Chain(img, "glimpse", None))
        if "gaze" in cfg.kinds:
            chains += [Chain(img, "gaze", r) for r in roles]
        confused = [v for v, _ in (evidence.get(img, {}).get("top_verbs", [])) if v != sit.verb][:cfg.n_hard_negatives]
        for v in confused:
            if "glimpse" in cfg.hard_negative_kinds and "glimpse" in cfg.kinds:
                chains.append(Chain(img, "glimpse", None, "hard_negative", v))
            if "gaze" in cfg.hard_negative_kinds and "gaze" in cfg.kinds:
                chains += [Chain(img, "gaze", r, "hard_negative", v) for r in roles]
    return chains


def backend_fingerprint(generator: Sampler, judge: Sampler, cfg: JRGConfig) -> str:
    """Readable key of generator, judge, prompts and the settings that change the texts."""
    extra = hashlib.sha256(f"{cfg.threshold}:{cfg.send_images}:{cfg.imsitu_templates}:{cfg.avoid_rejected_words}:"
                           f"{cfg.begin_hard_negatives}:{cfg.drop_gold_verb_negatives}".encode()).hexdigest()[:6]
    return f"gen={generator.fingerprint}|judge={judge.fingerprint}|prompts={P.prompts_fingerprint()}|{extra}"



# --------------------------------------------------------------------------------------------------- the loop
class _Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.c: dict[str, int] = {}
        self.consecutive_errors = 0
        self.abort = False
        self.fatal: Optional[SamplerAuthError] = None

    def add(self, k: str, n: int = 1) -> None:
        with self.lock:
            self.c[k] = self.c.get(k, 0) + n


class _Runner:
    def __init__(self, cfg: JRGConfig, space: FrameSpace, situations: Mapping[str, Situation],
                 evidence: Mapping[str, Any], world_dir: Path, store: RationaleStore, failures: JsonlLog,
                 generator: Sampler, judge: Sampler, backend: str, templates: Optional[dict[str, str]]) -> None:
        self.cfg, self.space, self.sits, self.ev = cfg, space, situations, evidence
        self.world, self.store, self.failures = world_dir, store, failures
        self.gen, self.judge, self.backend, self.templates = generator, judge, backend, templates
        self.n = _Counters()
        self.secrets = [*getattr(generator, "secrets", []), *getattr(judge, "secrets", []),
                        *config_secrets(cfg.generator.openai), *config_secrets(cfg.judge.openai)]

    def _image(self, image: str) -> Optional[str]:
        return str(self.world / "images" / image) if self.cfg.send_images else None

    def _user(self, text: str, image: str) -> Message:
        return user_message(text, self._image(image))

    def _gen_prompt(self, ch: Chain, previous: Optional[str], reasons: Sequence[str],
                    avoid: Sequence[str] = ()) -> str:
        sit, ev = self.sits[ch.image], self.ev.get(ch.image)
        begin = ch.target if (ch.target and self.cfg.begin_hard_negatives) else ""
        kw = dict(target_verb=ch.target, previous=previous, reasons=reasons, templates=self.templates,
                  avoid=tuple(avoid) if self.cfg.avoid_rejected_words else (), begin=begin or "")
        if ch.kind == "glimpse":
            return P.build_glimpse_prompt(self.space, sit, ev, **kw)
        return P.build_gaze_prompt(self.space, sit, ch.role or "", ev, **kw)

    def _generate(self, ch: Chain, previous: Optional[str], reasons: Sequence[str],
                  avoid: Sequence[str] = ()) -> Optional[str]:
        msgs: list[Message] = [{"role": "system", "content": P.SYSTEM_GENERATOR},
                               self._user(self._gen_prompt(ch, previous, reasons, avoid), ch.image)]
        for attempt in range(self.cfg.judge_retries + 1):
            self.n.add("generator_calls")
            text = self.gen(msgs).text.strip()
            if text:
                return text
            self.n.add("empty_generations")
            msgs = msgs + [{"role": "assistant", "content": ""},
                           {"role": "user", "content": GENERATOR_RETRY_TEMPLATE.format(attempt=attempt + 2)}]
        return None

    def _judge(self, ch: Chain, text: str) -> tuple[Optional[P.Verdict], str]:
        msgs = judge_messages(self.space, self.sits[ch.image], self.ev.get(ch.image), ch.kind, ch.role, text,
                              threshold=self.cfg.threshold, templates=self.templates, image_path=self._image(ch.image))
        reply = ""
        for attempt in range(self.cfg.judge_retries + 1):
            self.n.add("judge_calls")
            reply = self.judge(msgs).text
            v = P.parse_verdict(reply)
            if v is not None:
                return v, reply
            self.n.add("judge_parse_retries" if attempt < self.cfg.judge_retries else "judge_parse_failures")
            msgs = msgs + [{"role": "assistant", "content": reply},
                           {"role": "user", "content": JUDGE_RETRY_TEMPLATE.format(attempt=attempt + 2)}]
        return None, reply

    def _feedback(self, ch: Chain, reasons: Sequence[str], text: str) -> tuple[str, ...]:
        """The judge's reasons about ``text`` as the generator will read them: never the annotated answer."""
        out, withheld = P.answer_free_reasons(reasons, self.space, self.sits[ch.image], text, self.templates)
        if withheld:
            self.n.add("feedback_answers_withheld", withheld)
        return out

    def _avoid(self, ch: Chain, reasons: Sequence[str], text: str) -> tuple[str, ...]:
        """Words of the rejected ``text`` that its answer-free ``reasons`` point at (``content.words_to_avoid``)."""
        if not self.cfg.avoid_rejected_words or ch.source == "hard_negative":
            return ()
        from mipd_kit.rationales.content import words_to_avoid
        return tuple(words_to_avoid(reasons, text, ch.kind))

    def _names_gold(self, ch: Chain, text: str) -> bool:
        """A would-be negative that names the annotated verb (rejected glimpses and hard negatives only: a gaze
        rejected for its entity may name the right activity and still be a negative)."""
        if not self.cfg.drop_gold_verb_negatives or (ch.kind != "glimpse" and ch.source != "hard_negative"):
            return False
        from mipd_kit.rationales.content import names_verb
        return names_verb(text, self.sits[ch.image].verb)

    def _fail(self, ch: Chain, rnd: int, reason: str, reply: str = "") -> None:
        self.n.add("failures")
        self.failures.append_line({"image": ch.image, "kind": ch.kind, "role": ch.role, "source": ch.source,
                                   "target": ch.target, "round": rnd, "backend": redact(self.backend, self.secrets),
                                   "reason": redact(reason, self.secrets), "reply": redact(reply[:500], self.secrets),
                                   "time": time.time()})

    def run_chain(self, ch: Chain) -> None:
        max_rounds = 1 if ch.source == "hard_negative" else self.cfg.rounds
        done = [self.store.get((ch.image, ch.kind, ch.role, r, self.backend, ch.source, ch.target, 0))
                for r in range(max_rounds)]
        done = [d for d in done if d is not None]
        if any(d.polarity == "positive" for d in done) or len(done) >= max_rounds:
            self.n.add("chains_skipped")
            return
        # feedback = every reason the judge gave so far in this chain (oldest first), the last attempt's text, and
        # the words of every rejected attempt that its reasons pointed at
        reasons: tuple[str, ...] = ()
        avoid: tuple[str, ...] = ()
        for d in done:
            fb = self._feedback(ch, (d.verdict or {}).get("reasons", ()), d.text)
            reasons, avoid = _merge_reasons(reasons, fb), _merge_reasons(avoid, self._avoid(ch, fb, d.text))
        previous = done[-1].text if done else None
        if self.n.abort:
            return
        self.n.add("chains_run")
        for rnd in range(len(done), max_rounds):
            if self.n.abort:
                return
            try:
                text = self._generate(ch, previous, reasons, avoid)
                if text is None:
                    self._fail(ch, rnd, "empty generator reply after retries")
                    return
                verdict, reply = self._judge(ch, text)
            except SamplerAuthError as e:  # no later call can succeed: stop every worker now
                self.n.add("sampler_errors")
                with self.n.lock:
                    self.n.abort = True
                    if self.n.fatal is None:
                        self.n.fatal = e
                self._fail(ch, rnd, f"authentication error: {e}")
                return
            except SamplerRequestError as e:  # this request only (bad image, zero-area box, empty output)
                self.n.add("request_errors")
                self._fail(ch, rnd, f"request skipped: {e}")
                return
            except SamplerError as e:
                self.n.add("sampler_errors")
                self._fail(ch, rnd, f"sampler error: {e}")
                with self.n.lock:
                    self.n.consecutive_errors += 1
                    if self.n.consecutive_errors >= self.cfg.max_consecutive_errors:
                        self.n.abort = True
                return
            with self.n.lock:
                self.n.consecutive_errors = 0
            if verdict is None:
                self._fail(ch, rnd, "unparseable judge reply after retries", reply)
                return
            polarity = "positive" if verdict.accept else "negative"
            if polarity == "negative" and self._names_gold(ch, text):
                polarity = "dropped"
                self.n.add("negatives_dropped_gold_verb")
            rec = Rationale(image=ch.image, kind=ch.kind, role=ch.role, polarity=polarity, text=text, round=rnd,
                            score=verdict.score, backend=self.backend, verdict=verdict.to_json(), source=ch.source,
                            target=ch.target)
            if self.store.append(rec):
                self.n.add("new_rationales")
            if verdict.accept:
                return
            fb = self._feedback(ch, verdict.reasons, text)
            previous, reasons = text, _merge_reasons(reasons, fb)
            avoid = _merge_reasons(avoid, self._avoid(ch, fb, text))


def _merge_reasons(old: Sequence[str], new: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*old, *new]))


def run_jrg(cfg: JRGConfig, world_dir: str | os.PathLike, run_dir: str | os.PathLike,
            generator: Optional[Sampler] = None, judge: Optional[Sampler] = None,
            unlabeled: Optional[Any] = None) -> dict[str, Any]:
    """Run (or resume) the JRG stage; returns the statistics also written to ``run_dir/jrg_stats.json``.

    Args:
        cfg: stage settings.
        world_dir: world folder (``imsitu_space.json``, ``train.json``, ``images/``).
        run_dir: run folder; reads ``teacher_evidence.json`` (when present), writes ``rationales.jsonl``,
            ``jrg_failures.jsonl``, ``jrg_stats.json`` and rows in ``metrics.json``.
        generator, judge: samplers; built from ``cfg.generator`` / ``cfg.judge`` when omitted.
        unlabeled: optional ``callable(store) -> dict`` run after the chains that adds the unlabeled pool's
            ``"unjudged"`` descriptions to the store
            (:func:`~mipd_kit.rationales.unlabeled_pool.describe_unlabeled`); its counts go to ``stats["unlabeled"]``.

    Raises:
        DataError: missing or malformed world / evidence files (naming the file and record).
        SamplerError: after ``max_consecutive_errors`` sampler errors in a row (finished rationales are kept).
    """
    world, run = Path(world_dir), Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    space, sits = load_world(world, cfg.split)
    ev_path = run / "teacher_evidence.json"
    evidence = load_evidence(ev_path) if ev_path.exists() else {}
    if generator is None:
        generator = build_sampler(cfg.generator)
    if judge is None:
        judge = build_sampler(cfg.judge, threshold=cfg.threshold)
    is_embedded = type(generator).__name__ == "EmbeddedGenerator"
    if is_embedded and not evidence:
        raise DataError(f"{ev_path}: missing; the embedded generator writes rationales from the teacher's evidence "
                        "(run notebook 01 / mipd_kit.teachers.embedded.teacher_evidence first)")
    templates = P.load_generation_templates(cfg.imsitu_templates) if cfg.imsitu_templates else None
    backend = backend_fingerprint(generator, judge, cfg)
    store = RationaleStore(run / "rationales.jsonl")
    failures = JsonlLog(run / "jrg_failures.jsonl")
    chains = plan_chains(space, sits, evidence, cfg)
    runner = _Runner(cfg, space, sits, evidence, world, store, failures, generator, judge, backend, templates)
    t0 = time.perf_counter()
    from mipd_kit.progress import progress
    with progress(total=len(chains), desc="JRG", unit="chain",
                  counters=lambda: {"rationales": runner.n.c.get("new_rationales", 0)}) as bar:
        if cfg.workers <= 1:
            for ch in chains:
                runner.run_chain(ch)
                bar.update(1)
        else:
            with ThreadPoolExecutor(max_workers=cfg.workers) as ex:
                for _ in ex.map(runner.run_chain, chains):
                    bar.update(1)
    unl_counts = unlabeled(store) if unlabeled is not None and not runner.n.abort else None
    seconds = time.perf_counter() - t0
    records = store.records(backend)
    images = sorted({c.image for c in chains})
    stats = jrg_statistics(records, rounds=cfg.rounds, images=images)
    from mipd_kit.rationales.content import content_statistics
    img_set = set(images)
    stats["content"] = content_statistics([r for r in records if r.image in img_set],
                                          {i: sits[i] for i in images}, world)
    stats["content"]["unlabeled"] = sum(r.polarity == "unjudged" for r in store.records())
    stats["unlabeled"] = {**(unl_counts or {}), "in_store": stats["content"]["unlabeled"]}
    c = runner.n.c
    stats["run"] = {
        "backend": backend, "chains": len(chains), "chains_skipped": c.get("chains_skipped", 0),
        "new_rationales": c.get("new_rationales", 0), "generator_calls": c.get("generator_calls", 0),
        "judge_calls": c.get("judge_calls", 0), "judge_parse_retries": c.get("judge_parse_retries", 0),
        "judge_parse_failures": c.get("judge_parse_failures", 0), "empty_generations": c.get("empty_generations", 0),
        "sampler_errors": c.get("sampler_errors", 0), "failures": c.get("failures", 0),
        "request_errors": c.get("request_errors", 0),
        "negatives_dropped_gold_verb": c.get("negatives_dropped_gold_verb", 0),
        "chains_run": c.get("chains_run", 0),
        "feedback_answers_withheld": c.get("feedback_answers_withheld", 0),
        "failure_rate": c.get("failures", 0) / c["chains_run"] if c.get("chains_run") else 0.0,
        "max_failure_rate": cfg.max_failure_rate, "auth_error": runner.n.fatal is not None,
        "aborted": runner.n.abort, "seconds": seconds,
        "rationales_per_s": c.get("new_rationales", 0) / seconds if seconds > 0 and c.get("new_rationales") else 0.0,
        "calls_per_s": (c.get("generator_calls", 0) + c.get("judge_calls", 0)) / seconds if seconds > 0 else 0.0,
        "config": _cfg_json(cfg), "repaired_bytes": store.repaired_bytes, "world_dir": str(world.resolve()),
        "images_without_evidence": sum(i not in evidence for i in images),
    }
    _keep_working_pass(run / "jrg_stats.json", stats)
    write_json(run / "jrg_stats.json", redact_obj(stats))  # a key in --base-url (?key=...) is never written
    merge_rows(run / "metrics.json", stats_rows(stats, model=_model_name(cfg, generator), seed=cfg.seed))
    store.close()
    failures.close()
    kept = (f"{len(records)} finished rationales are kept in {run / 'rationales.jsonl'} and a re-run continues "
            "where this one stopped")
    if runner.n.fatal is not None:
        raise SamplerAuthError(f"JRG stopped at the first authentication error: {runner.n.fatal}; {kept}")
    if runner.n.abort:
        raise SamplerError(f"JRG aborted after {cfg.max_consecutive_errors} consecutive sampler errors "
                           f"(see {run / 'jrg_failures.jsonl'}); {len(records)} finished rationales are kept in "
                           f"{run / 'rationales.jsonl'} and a re-run continues where this one stopped")
    r = stats["run"]
    if r["chains_run"] and r["failure_rate"] > cfg.max_failure_rate:
        raise JRGFailed(f"JRG failed: {r['failures']} of {r['chains_run']} chains failed "
                        f"({100 * r['failure_rate']:.1f}% > max_failure_rate {100 * cfg.max_failure_rate:.0f}%; "
                        f"reasons in {run / 'jrg_failures.jsonl'}); {kept}")
    return stats


def _cfg_json(cfg: JRGConfig) -> dict[str, Any]:
    d = asdict(cfg)
    for k in ("generator", "judge"):  # never echo anything key-like; the key itself is never in config anyway
        d[k]["openai"].pop("api_key_env", None)
    return d


def _model_name(cfg: JRGConfig, generator: Sampler) -> str:
    return f"jrg-{cfg.generator.backend}" if generator is not None else "jrg"



# --------------------------------------------------------------------------------------------------- CLI
def _sampler_cfg(purpose: str, backend: str, a: argparse.Namespace, base: SamplerConfig, prefix: str = "") -> SamplerConfig:
    oc = base.openai
    g = lambda name: getattr(a, prefix + name, None)  # noqa: E731
    oc = OpenAIHTTPConfig(**{**asdict(oc), **{k: v for k, v in (
        ("base_url", g("base_url") or a.base_url), ("model", g("model") or a.model),
        ("api_key_env", g("api_key_env") or a.api_key_env), ("concurrency", a.concurrency)) if v is not None}})
    hc = HFLocalConfig(**{**asdict(base.hf), **({"model": g("hf_model") or a.hf_model} if (g("hf_model") or a.hf_model) else {})})
    return SamplerConfig(backend=backend, purpose=purpose, seed=a.seed, p_top=base.p_top,
                         malformed_rate=a.malformed_rate if purpose == "judge" else 0.0, openai=oc, hf=hc)


def run_option_problems(a: argparse.Namespace) -> list[str]:
    """Every problem of ``mipd rationales run``'s options, found before any file is written or request sent:
    counts below 1, shares outside [0, 1], a key given as ``--api-key-env``, an unparseable ``--base-url``."""
    from mipd_kit.checks import value_problems

    out: list[str] = []
    for flag, field_name in (("concurrency", "concurrency"), ("workers", "workers"), ("rounds", "rounds"),
                             ("max_images", "max_images"), ("max_failure_rate", "max_failure_rate"),
                             ("malformed_rate", "max_failure_rate"), ("api_key_env", "api_key_env"),
                             ("judge_api_key_env", "api_key_env"), ("base_url", "base_url"),
                             ("judge_base_url", "base_url")):
        v = getattr(a, flag)
        if v is not None:
            out += [f"--{flag.replace('_', '-')}: {p}" for p in value_problems(field_name, v)]
    if a.threshold is not None and not math.isfinite(a.threshold):
        out.append(f"--threshold must be a finite number, got {a.threshold}")
    return out


def main(argv: Optional[list[str]] = None) -> int:
    """``mipd rationales run|export|import|stats ...``."""
    ap = argparse.ArgumentParser(prog="mipd rationales", description="Judgmental Rationales Generator (MIPD)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="generate and judge rationales (resumable)")
    r.add_argument("--world-dir", required=True)
    r.add_argument("--run-dir", required=True)
    r.add_argument("--smoke", action="store_true", help="JRGConfig.smoke() defaults")
    r.add_argument("--backend", choices=["embedded", "template", "openai", "hf"], default="embedded",
                   help="generator backend (template = embedded; the captioner runs through the rationales stage)")
    r.add_argument("--judge-backend", choices=["embedded", "openai", "hf"], default=None, help="default: --backend")
    r.add_argument("--base-url", default=None)
    r.add_argument("--model", default=None)
    r.add_argument("--api-key-env", default=None, help="NAME of the environment variable holding the API key")
    r.add_argument("--judge-base-url", default=None)
    r.add_argument("--judge-model", default=None)
    r.add_argument("--judge-api-key-env", default=None)
    r.add_argument("--hf-model", default=None, help="local transformers model folder")
    r.add_argument("--concurrency", type=int, default=None, help="HTTP requests in flight per sampler")
    r.add_argument("--workers", type=int, default=None)
    r.add_argument("--rounds", type=int, default=None)
    r.add_argument("--threshold", type=float, default=None)
    r.add_argument("--max-images", type=int, default=None, help="0 = all training images")
    r.add_argument("--send-images", action="store_true")
    r.add_argument("--imsitu-templates", default=None, help="imSitu generation_templates.tab (real mode)")
    r.add_argument("--max-failure-rate", type=float, default=None,
                   help="fail the stage (exit 1, work kept) when more than this share of chains fail (default 0.2)")
    r.add_argument("--malformed-rate", type=float, default=0.0, help="embedded judge: share of unparseable replies")
    r.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("export", help="write the authors' four-field JSON")
    e.add_argument("--run-dir", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--backend", default=None, help="only records of this backend fingerprint")
    e.add_argument("--merge-into", default=None, help="SWiG train JSON to add the four fields to")
    i = sub.add_parser("import", help="append the authors' four-field JSON to the store")
    i.add_argument("--json", required=True)
    i.add_argument("--run-dir", required=True)
    s = sub.add_parser("stats", help="print statistics of a store")
    s.add_argument("--run-dir", required=True)
    s.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args(argv)

    from mipd_kit.rationales.store import export_authors_json, import_authors_json, read_rationales
    if a.cmd == "run":
        problems = run_option_problems(a)
        if problems:
            print(f"mipd rationales: error: {'; '.join(problems)}", file=sys.stderr)
            return 2
    try:
        if a.cmd == "run":
            cfg = JRGConfig.smoke() if a.smoke else JRGConfig()
            for k in ("workers", "rounds", "threshold", "max_images", "imsitu_templates", "max_failure_rate"):
                if getattr(a, k) is not None:
                    setattr(cfg, k, getattr(a, k))
            cfg.send_images = cfg.send_images or a.send_images
            cfg.seed = a.seed
            cfg.generator = _sampler_cfg("generator", "embedded" if a.backend == "template" else a.backend, a,
                                         cfg.generator)
            cfg.judge = _sampler_cfg("judge", a.judge_backend or a.backend, a, cfg.judge, prefix="judge_")
            stats = run_jrg(cfg, a.world_dir, a.run_dir)
            print(json.dumps({k: stats[k] for k in ("images", "images_with_positive_glimpse")} | {
                "run": {k: v for k, v in stats["run"].items() if k != "config"}}, indent=1))
        elif a.cmd == "export":
            recs = [x for x in read_rationales(Path(a.run_dir) / "rationales.jsonl")
                    if a.backend is None or x.backend == a.backend]
            data = export_authors_json(recs, a.out, merge_into=a.merge_into)
            print(f"wrote {len(data)} images to {a.out}")
        elif a.cmd == "import":
            store = RationaleStore(Path(a.run_dir) / "rationales.jsonl")
            n = import_authors_json(a.json, store)
            print(f"imported {n} new rationales into {store.path}")
        elif a.cmd == "stats":
            stats = jrg_statistics(read_rationales(Path(a.run_dir) / "rationales.jsonl"), rounds=a.rounds)
            print(json.dumps(stats, indent=1))
    except (DataError, SamplerError) as err:
        print(f"mipd rationales: {err}", file=__import__("sys").stderr)
        return 1
    return 0

