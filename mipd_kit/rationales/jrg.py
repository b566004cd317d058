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
(:func:`jrg_statistics`, a pure function of the stored records) go to ``run_dir/jrg_stats.json`` and as tidy
rows (task ``"jrg"``) to ``run_dir/metrics.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

from mipd_kit.data.records import DataError, FrameSpace, Situation
from mipd_kit.fileio import write_json
from mipd_kit.language.base import Message, Sampler, SamplerAuthError, SamplerError, SamplerRequestError, redact
from mipd_kit.language.factory import SamplerConfig, build_sampler
from mipd_kit.language.hf_local import HFLocalConfig
from mipd_kit.language.openai_http import OpenAIHTTPConfig, config_secrets
from mipd_kit.metrics import MetricRow, merge_rows, row
from mipd_kit.rationales import prompts as P
from mipd_kit.redaction import redact_obj
from mipd_kit.rationales.store import JsonlLog, Rationale, RationaleStore

#: Reminder sent after an unparseable judge reply.
JUDGE_RETRY_TEMPLATE = ("Your reply could not be parsed. Reply with one JSON object only, exactly of the form "
                        "{{\"score\": <integer 0-10>, \"accept\": <true|false>, \"reasons\": [<strings>]}}. "
                        "(attempt {attempt})")
#: Reminder sent after an empty generator reply.
GENERATOR_RETRY_TEMPLATE = "Your reply was empty. Write the rationale now, in one or two sentences. (attempt {attempt})"


@dataclass
class JRGConfig:
    """Settings of the JRG stage.

    Attributes:
        rounds: maximum generation rounds per rationale (round 0 plus ``rounds - 1`` refinements).
        threshold: judge score (0-10) needed to accept.
        n_hard_negatives: confused verbs (teacher's top verbs other than the true one) per image for hard negatives.
        hard_negative_kinds: kinds that get hard negatives.
        kinds: rationale kinds generated.
        judge_retries: retries of an unparseable judge reply (and of an empty generator reply).
        workers: rationale chains processed in parallel (each chain's rounds run in order).
        max_images: first N training images (sorted names); ``0`` = all.
        split: annotation file of ``world_dir`` (``train`` -> ``train.json``).
        send_images: attach the image (vision chat models); the embedded backend ignores it.
        max_consecutive_errors: abort (keeping finished rationales) after this many sampler errors in a row.
        max_failure_rate: the stage fails (:class:`JRGFailed`, after writing everything it finished) when more than
            this share of the chains it ran ended as a failure (``jrg_failures.jsonl``); ``1.0`` never fails.
        imsitu_templates: optional imSitu ``generation_templates.tab`` used for frame sentences in prompts (real mode).
        seed: seeds the embedded backends (unless their own seed is set differently).
        avoid_rejected_words: refinement prompts list the rejected rationales' words the judge's reasons point at
            (``Avoid these words:``).
        begin_hard_negatives: hard-negative prompts ask to ``Begin with:`` the confused verb.
        drop_gold_verb_negatives: a rejected glimpse or a hard negative naming the annotated verb is stored as
            ``"dropped"``, not as a negative.
        generator, judge: language backends.
    """

    rounds: int = 3
    threshold: float = 7.0
    n_hard_negatives: int = 2
    hard_negative_kinds: tuple[str, ...] = ("glimpse", "gaze")
    kinds: tuple[str, ...] = ("glimpse", "gaze")
    judge_retries: int = 2
    workers: int = 4
    max_images: int = 0
    split: str = "train"
    send_images: bool = False
    max_consecutive_errors: int = 20
    max_failure_rate: float = 0.2
    imsitu_templates: str = ""
    seed: int = 0
    avoid_rejected_words: bool = True
    begin_hard_negatives: bool = True
    drop_gold_verb_negatives: bool = True
    generator: SamplerConfig = field(default_factory=lambda: SamplerConfig(purpose="generator"))
    judge: SamplerConfig = field(default_factory=lambda: SamplerConfig(purpose="judge"))

    @classmethod
    def smoke(cls) -> "JRGConfig":
        return cls(rounds=2, max_images=8, workers=2, n_hard_negatives=1,
                   generator=SamplerConfig(purpose="generator", openai=OpenAIHTTPConfig.smoke(), hf=HFLocalConfig.smoke()),
                   judge=SamplerConfig(purpose="judge", openai=OpenAIHTTPConfig.smoke(), hf=HFLocalConfig.smoke()))


class JRGFailed(SamplerError):
    """The stage ran but too many chains failed (share above ``JRGConfig.max_failure_rate``); work is kept."""


@dataclass(frozen=True)
class Chain:
    """One rationale to produce: (image, kind, role) plus its source and, for hard negatives, the target verb."""

    image: str
    kind: str
    role: Optional[str]
    source: str = "generated"
    target: Optional[str] = None


# --------------------------------------------------------------------------------------------------- inputs
def load_evidence(path: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Read ``teacher_evidence.json`` (``{image: {"top_verbs", "role_nouns"}}``), validating each entry."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{p}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise DataError(f"{p}: expected an object image -> evidence")
    for image, ev in data.items():
        if not isinstance(ev, dict) or not isinstance(ev.get("top_verbs", []), list) \
                or not isinstance(ev.get("role_nouns", {}), dict):
            raise DataError(f"{p}: entry {image!r} must be {{'top_verbs': [[verb, score]...], 'role_nouns': {{role: [[noun, score]...]}}}}")
        for item in ev.get("top_verbs", []):
            if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)):
                raise DataError(f"{p}: entry {image!r} has a bad top_verbs item {item!r}")
        for role, cands in ev.get("role_nouns", {}).items():
            if not isinstance(cands, list) or not all(isinstance(c, (list, tuple)) and len(c) == 2 for c in cands):
                raise DataError(f"{p}: entry {image!r} role {role!r} must be a list of [noun, score]")
    return data


def load_world(world_dir: str | os.PathLike, split: str = "train") -> tuple[FrameSpace, dict[str, Situation]]:
    """Frame space and annotated situations of a world (SynthSitu or a real SWiG folder)."""
    from mipd_kit.data.swig import load_frame_space, load_situations
    w = Path(world_dir)
    for f in ("imsitu_space.json", f"{split}.json"):
        if not (w / f).exists():
            raise DataError(f"{w / f}: missing (a world folder needs imsitu_space.json and {split}.json)")
    space = load_frame_space(w / "imsitu_space.json")
    return space, load_situations(w / f"{split}.json", space)


def roles_of(space: FrameSpace, sit: Situation) -> tuple[str, ...]:
    """The verb's roles in frame order, plus any role the annotators used that the frame lacks."""
    return P.frame_roles(space, sit)


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


def user_message(text: str, image_path: Optional[str] = None) -> Message:
    """A user turn: the text alone, or the text and the image (an ``image_path`` part, for vision chat models)."""
    if image_path is not None:
        return {"role": "user", "content": [{"type": "text", "text": text}, {"type": "image_path", "path": image_path}]}
    return {"role": "user", "content": text}


def judge_messages(space: FrameSpace, sit: Situation, evidence: Optional[Mapping[str, Any]], kind: str,
                   role: Optional[str], text: str, *, threshold: float, templates: Optional[Mapping[str, str]] = None,
                   image_path: Optional[str] = None) -> list[Message]:
    """The judge's conversation about one rationale, exactly as the JRG sends it: :data:`prompts.SYSTEM_JUDGE`,
    then the :func:`prompts.build_judge_prompt` text (annotated frame, evidence, rationale), with the image when
    ``image_path`` is given (``send_images``). ``benchmarks/bench_llm_judge.py`` rebuilds stored verdicts' prompts
    with it."""
    prompt = P.build_judge_prompt(space, sit, evidence, kind, role, text, threshold=threshold, templates=templates)
    return [{"role": "system", "content": P.SYSTEM_JUDGE}, user_message(prompt, image_path)]


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
            ``"unjudged"`` descriptions to the store (:func:`describe_unlabeled`); its counts go to
            ``stats["unlabeled"]``.

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


def config_from_params(*, smoke: bool = True, backend: str = "embedded", judge_backend: str = "",
                       generator: Optional[Mapping[str, Any]] = None, judge: Optional[Mapping[str, Any]] = None,
                       rounds: int = 0, max_images: int = -1, workers: int = 0, send_images: bool = False,
                       imsitu_templates: str = "", seed: int = 0) -> JRGConfig:
    """A :class:`JRGConfig` from notebook / pipeline parameters (0, -1 or "" keep the config's value).

    ``backend`` is the generator's: ``captioner`` (the embedded captioner, images sent in the messages),
    ``template`` (the embedded template generator; ``embedded`` names the same), ``shuffled`` (a captioner run
    whose positives the stage then shuffles, see ``controls``), ``openai`` or ``hf``. ``judge_backend`` defaults to
    the embedded judge for the local generators and to ``backend`` for ``openai`` / ``hf``.

    ``generator`` / ``judge`` are the two samplers' settings: ``SamplerConfig`` fields other than ``backend`` and
    ``purpose`` (``seed``, ``p_top``, ``malformed_rate``) and the nested ``openai`` / ``hf`` / ``captioner`` blocks
    of their configs' fields. What the judge's ``openai`` / ``hf`` blocks leave out is taken from the generator's
    (one endpoint for both unless the judge names another). Both samplers' seeds (and the captioner's) default to
    ``seed``. Raises ``ValueError`` naming an unknown key (``generator.openai.modle``).
    """
    local = {"captioner": "captioner", "shuffled": "captioner", "template": "embedded", "embedded": "embedded"}
    if backend in local:
        judge_backend = judge_backend or "embedded"
        send_images = send_images or local[backend] == "captioner"
        backend = local[backend]
    if judge_backend in ("template", "captioner", "shuffled"):
        raise ValueError(f"judge_backend {judge_backend!r} cannot judge; use embedded, openai or hf")
    cfg = JRGConfig.smoke() if smoke else JRGConfig()
    cfg.seed = seed
    if rounds > 0:
        cfg.rounds = rounds
    if max_images >= 0:
        cfg.max_images = max_images
    if workers > 0:
        cfg.workers = workers
    cfg.send_images = send_images
    cfg.imsitu_templates = imsitu_templates
    gen, jud = dict(generator or {}), dict(judge or {})
    for nested in ("openai", "hf"):  # the judge's endpoint is the generator's unless it names its own
        if gen.get(nested) or jud.get(nested):
            jud[nested] = {**dict(gen.get(nested) or {}), **dict(jud.get(nested) or {})}
    samplers = []
    for name, sc, b, block in (("generator", cfg.generator, backend, gen),
                               ("judge", cfg.judge, judge_backend or backend, jud)):
        for k in ("backend", "purpose"):
            if k in block:
                raise ValueError(f"{name}.{k}: the backend is chosen by the stage's backend / judge_backend, not in "
                                 f"the {name} block")
        sc = sc.updated({"seed": seed, **block, "captioner": {"seed": seed, **dict(block.get("captioner") or {})}},
                        name)
        samplers.append(replace(sc, backend=b))
    cfg.generator, cfg.judge = samplers
    return cfg


# --------------------------------------------------------------------------------------------------- statistics
def _hist(scores: Iterable[Optional[float]]) -> list[int]:
    h = [0] * 11
    for s in scores:
        if s is not None:
            h[int(min(max(round(s), 0), 10))] += 1
    return h


def _mean(xs: Iterable[Optional[float]]) -> Optional[float]:
    v = [x for x in xs if x is not None]
    return statistics.fmean(v) if v else None


def jrg_statistics(records: Sequence[Rationale], rounds: int, images: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """Acceptance per round, score distributions and set sizes, per kind and overall (pure).

    ``accept_rate_round[r]`` = accepted / judged among generated rationales of round r;
    ``cum_accept_round[r]`` = share of generated chains accepted by round r; hard negatives are counted apart.
    """
    out: dict[str, Any] = {"rounds": rounds}
    imgs = set(images) if images is not None else {r.image for r in records if r.polarity != "unjudged"}
    recs = [r for r in records if r.image in imgs]
    for kind in ("glimpse", "gaze", "all"):
        rs = [r for r in recs if kind == "all" or r.kind == kind]
        gen = [r for r in rs if r.source == "generated"]
        hard = [r for r in rs if r.source == "hard_negative"]
        chains: dict[tuple, list[Rationale]] = {}
        for r in gen:
            chains.setdefault((r.image, r.kind, r.role), []).append(r)
        first_accept = [min((r.round for r in v if r.polarity == "positive"), default=None) for v in chains.values()]
        per_round, cum = [], []
        for k in range(rounds):
            judged = [r for r in gen if r.round == k]
            acc = sum(r.polarity == "positive" for r in judged)
            per_round.append({"round": k, "judged": len(judged), "accepted": acc,
                              "rate": acc / len(judged) if judged else None})
            cum.append(sum(a is not None and a <= k for a in first_accept) / len(chains) if chains else None)
        pos = [r for r in rs if r.polarity == "positive"]
        neg = [r for r in rs if r.polarity == "negative"]
        out[kind] = {
            "chains": len(chains), "judged": len(gen), "accept_rate_round": per_round, "cum_accept_round": cum,
            "n_positive": len(pos), "n_negative": len(neg),
            "n_negative_rejected": sum(r.source == "generated" for r in neg),
            "n_hard_negative": sum(r.polarity == "negative" for r in hard),
            "hard_negative_accepted": sum(r.polarity == "positive" for r in hard),
            "score_hist_positive": _hist(r.score for r in pos), "score_hist_negative": _hist(r.score for r in neg),
            "mean_score_positive": _mean(r.score for r in pos),
            "mean_score_negative": _mean(r.score for r in neg),
        }
    with_pos = {r.image for r in recs if r.kind == "glimpse" and r.polarity == "positive"}
    out["images"] = len(imgs)
    out["images_with_positive_glimpse"] = len(with_pos & imgs)
    return out


def _keep_working_pass(path: Path, stats: dict) -> None:
    """A pass that found every chain finished (a resumed, already complete store) generated nothing: keep the run
    record of the pass that did the work (same backend) instead of replacing its counts and speed by zeros, and
    count the resumed passes (``resumed_passes``, ``last_pass_seconds``)."""
    new = stats["run"]
    if new["new_rationales"] or new["chains_run"] or not path.exists():
        return
    try:
        old = json.loads(path.read_text()).get("run") or {}
    except ValueError:
        return
    if old.get("backend") == new["backend"] and old.get("new_rationales"):
        stats["run"] = {**old, "resumed_passes": int(old.get("resumed_passes", 0)) + 1,
                        "last_pass_seconds": new["seconds"], "chains_skipped": new["chains_skipped"]}


def stats_rows(stats: Mapping[str, Any], model: str, seed: Optional[int]) -> list[MetricRow]:
    """Tidy ``metrics.json`` rows (task ``"jrg"``, split ``"train"``, setting = kind) from :func:`jrg_statistics`."""
    rows: list[MetricRow] = []
    for kind in ("glimpse", "gaze", "all"):
        s = stats.get(kind)
        if not s or not s["chains"]:
            continue
        add = lambda metric, v: rows.append(row("jrg", model, "train", kind, metric, v, seed=seed))  # noqa: E731
        for pr in s["accept_rate_round"]:
            if pr["rate"] is not None:
                add(f"accept_rate_round{pr['round']}", 100.0 * pr["rate"])
        for k, c in enumerate(s["cum_accept_round"]):
            if c is not None:
                add(f"cum_accept_round{k}", 100.0 * c)
        for m in ("n_positive", "n_negative", "n_hard_negative", "hard_negative_accepted", "chains"):
            add(m, s[m])
        for m in ("mean_score_positive", "mean_score_negative"):
            if s[m] is not None:
                add(m, s[m])
    content = stats.get("content") or {}
    for kind in ("glimpse", "gaze", "all"):
        cs = content.get(kind)
        if not cs or not cs["n_positive"]:
            continue
        for m in ("judge_precision", "primitive_share", "pose_share", "relation_share", "motion_share"):
            if cs.get(m) is not None:
                rows.append(row("jrg", model, "train", kind, m, 100.0 * cs[m], seed=seed))
        for m in ("distinct_masked_max", "distinct_masked_mean", "negatives_naming_gold_verb"):
            rows.append(row("jrg", model, "train", kind, m, cs[m], seed=seed))
    for m in ("negatives_dropped_gold_verb", "unlabeled"):
        if m in content:
            rows.append(row("jrg", model, "train" if m != "unlabeled" else "unlabeled", "all",
                            "unlabeled_rationales" if m == "unlabeled" else m, content[m], seed=seed))
    if stats.get("images"):
        rows.append(row("jrg", model, "train", "glimpse", "coverage_positive_glimpse",
                        100.0 * stats["images_with_positive_glimpse"] / stats["images"], seed=seed))
    run = stats.get("run")
    if run:
        for m in ("failures", "judge_parse_failures", "judge_parse_retries", "sampler_errors", "new_rationales",
                  "generator_calls", "judge_calls", "request_errors"):
            if m in run:
                rows.append(row("jrg", model, "train", "all", m, run[m], seed=seed))
        if run["new_rationales"]:
            rows.append(row("jrg", model, "train", "all", "rationales_per_s", run["rationales_per_s"], seed=seed))
    return rows


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


# --------------------------------------------------------------------------------------------------- unlabeled pool
def unlabeled_backend(captioner: Any, temperature: float, top_p: float, seed: int) -> str:
    """Backend key of the unlabeled pool's descriptions (captioner weights and sampling settings)."""
    return f"unlabeled|captioner-v1:{captioner.fingerprint}:t{temperature:g}:p{top_p:g}:s{seed}"


def describe_unlabeled(captioner: Any, teacher: Any, world_dir: str | os.PathLike, store: RationaleStore, *,
                       max_images: int = 0, temperature: float = 0.7, top_p: float = 0.9, seed: int = 0,
                       batch_size: int = 64) -> dict[str, Any]:
    """Glimpse descriptions of the unlabeled pool (``unlabeled.json``), written by the captioner from the image alone:
    no annotation, no evidence, no judge. Each is stored with ``polarity "unjudged"``, ``source "unlabeled"``,
    ``score``/``verdict`` null and the backend :func:`unlabeled_backend`; images already described are skipped
    (resumable). Glimpses only: the unlabeled pool has no boxes and the embedded teacher detects none.

    Returns:
        ``{"images", "new", "already", "skipped", "skip_reasons"}`` (reasons of the first 5 skips: an image that
        fails to decode, a captioner that emitted nothing).
    """
    from mipd_kit.language.captioner import caption_images

    world = Path(world_dir)
    p = world / "unlabeled.json"
    if not p.exists():
        return {"images": 0, "new": 0, "already": 0, "skipped": 0, "skip_reasons": []}
    try:
        names = list(json.loads(p.read_text())["images"])
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{p}: expected {{\"images\": [names...]}} ({e!r})") from e
    if max_images:
        names = names[:max_images]
    backend = unlabeled_backend(captioner, temperature, top_p, seed)
    key = lambda n: (n, "glimpse", None, 0, backend, "unlabeled", None, 0)  # noqa: E731
    todo = [n for n in names if key(n) not in store]
    batch = caption_images(captioner, teacher, [world / "images" / n for n in todo], temperature=temperature,
                           top_p=top_p, seed=seed, batch_size=batch_size)
    new = 0
    for n, cap in zip(todo, batch.captions):
        if cap is not None:
            new += store.append(Rationale(image=n, kind="glimpse", role=None, polarity="unjudged", text=cap.text,
                                          round=0, score=None, backend=backend, verdict=None, source="unlabeled"))
    return {"images": len(names), "new": new, "already": len(names) - len(todo), "skipped": len(batch.skipped),
            "skip_reasons": [r for _, r in batch.skipped[:5]]}
