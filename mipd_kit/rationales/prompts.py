"""Instruction templates of the Judgmental Rationales Generator (MIPD, glimpse / gaze rationales and the judge).

Every prompt is an UPPER_CASE template with named fields; ``build_*`` functions fill them from
the frame space (imSitu ``imsitu_space.json`` abstract, definitions, role definitions, noun glosses), the
annotation and the teacher's visual evidence. The prompts are plain instructions a real chat LLM reads; their
labelled lines (``Task:``, ``Image:``, ``Role:`` ...) are also what the offline embedded backend parses, so the
embedded stand-in and a real LLM receive exactly the same messages.

``parse_verdict`` turns a judge's reply into a :class:`Verdict` or ``None`` (a pure function, robust to code
fences, prose around the JSON, single quotes; missing or ill-typed fields give ``None``, never a silent label).
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from mipd_kit.data.records import DataError, FrameSpace, Situation

#: Short words of a frame abstract that carry no meaning of the verb (never treated as giving the answer away).
_FUNCTION_WORDS = {"the", "and", "for", "from", "into", "onto", "with", "using", "over", "under", "about", "against",
                   "toward", "towards", "across", "around", "behind", "near", "through", "off", "out"}

#: Bumped whenever a template changes; part of the store's backend fingerprint.
PROMPT_VERSION = "jrg-prompts-v4"

SYSTEM_GENERATOR = (
    "You are a careful visual describer. You write short, concrete rationales about images: what happens, who or "
    "what takes part, how they look and where. Never invent objects you cannot see."
)

SYSTEM_JUDGE = (
    "You are a strict judge of image rationales. You compare a rationale with the image's annotated situation "
    "frame (verb, roles and the nouns chosen by three annotators) and with the visual evidence, and you reply "
    "with a JSON object only."
)

#: Scene-level (glimpse) rationale: the whole scene, the activity (verb) and the setting.
GLIMPSE_TEMPLATE = """Task: glimpse rationale
Image: {image}
Look at the whole image. In one or two sentences, say which activity (verb) takes place, who and what take part, and in what setting.
Candidate activities suggested by a vision model (score; frame; definition):
{verb_menu}
Entities the vision model sees, per role (score):
{noun_menu}
{directive}{feedback}{decoding}Answer with the rationale only."""

#: Instance-level (gaze) rationale for one role: the entity, its appearance, its part in the action.
GAZE_TEMPLATE = """Task: gaze rationale
Image: {image}
Role: {role}
Role definition: {role_def}
Role region: {region}
Look at the entity that fills the role "{role}". In one or two sentences, say what the entity is, how it looks (size, position, appearance), and what part it plays in the action.
Candidate activities suggested by a vision model (score; frame; definition):
{verb_menu}
Entities the vision model sees for this role (score):
{noun_menu}
{directive}{feedback}{decoding}Answer with the rationale only."""

#: Appended to a generator prompt to ask for a rationale of a given activity (hard negatives).
DIRECTIVE_TEMPLATE = "Activity to describe: {verb}\nWrite the rationale as if the activity were \"{verb}\" ({abstract}).\n"

#: Appended to a generator prompt when a previous attempt was rejected (refinement round > 0).
FEEDBACK_TEMPLATE = """Previous rationale: {previous}
Judge feedback: {reasons}
Your previous rationale was rejected; write an improved one that fixes these problems.
"""

#: Appended on a refinement round: the rejected rationale's own words that the judge's reasons point at
#: (``mipd_kit.rationales.content.words_to_avoid``); the embedded captioner never samples them.
AVOID_TEMPLATE = "Avoid these words: {words}\n"

#: Appended to a hard-negative prompt: the words the rationale starts with (a word of the confused verb); the
#: embedded captioner is forced to start with them and describes the image from there.
BEGIN_TEMPLATE = "Begin with: {words}\n"

#: The judge sees the annotated frame (verb, roles, 3 annotators' nouns), the evidence and the rationale.
JUDGE_TEMPLATE = """Task: judge rationale
Image: {image}
Annotated verb: {verb}
Annotated frame: {abstract}
Verb definition: {definition}
Roles and the annotators' nouns (synonyms in brackets):
{roles_block}
Vision-model activities (score): {evidence}
Rationale kind: {kind}
Rationale role: {role}
Rationale: <<<{text}>>>
Check the rationale against the annotated frame and against the image. For a glimpse rationale: does it name the annotated activity, its participants and the setting? For a gaze rationale: does it name the entity the annotators chose for the role, describe its appearance and its part in the action?
Score from 0 (wrong) to 10 (fully consistent); accept when the score is at least {threshold} and nothing contradicts the frame.
Reply with JSON only: {{"score": <integer 0-10>, "accept": <true|false>, "reasons": [<short reasons saying which part is wrong (the activity, a participant, the setting, the description) but never what the annotated frame expects instead>]}}"""


#: The judge reply as a JSON schema, for endpoints that constrain decoding (OpenAI ``response_format``; llama.cpp and
#: vLLM turn it into a grammar), so that a small model cannot answer outside the format ``parse_verdict`` reads.
VERDICT_RESPONSE_FORMAT: dict[str, Any] = {"type": "json_schema", "json_schema": {"name": "verdict", "schema": {
    "type": "object",
    "properties": {"score": {"type": "integer", "minimum": 0, "maximum": 10}, "accept": {"type": "boolean"},
                   "reasons": {"type": "array", "items": {"type": "string"}, "maxItems": 2}},
    "required": ["score", "accept", "reasons"]}}}


@dataclass(frozen=True)
class Verdict:
    """A parsed judge reply.

    Attributes:
        score: 0..10.
        accept: the judge accepts the rationale.
        reasons: short reasons (the feedback for the next round).
    """

    score: float
    accept: bool
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"score": self.score, "accept": self.accept, "reasons": list(self.reasons)}


# ----------------------------------------------------------------------------------------------- verdict parsing
_FENCE = re.compile(r"```(?:json|JSON|javascript|python)?\s*(.*?)```", re.S)


def _json_objects(text: str) -> list[str]:
    """Balanced ``{...}`` substrings of ``text`` (outermost first, in order), quotes respected."""
    out, depth, start, quote, esc = [], 0, -1, "", False
    for i, ch in enumerate(text):
        if quote:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == quote:
                quote = ""
            continue
        if ch in "\"'" and depth > 0:
            quote = ch
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                out.append(text[start:i + 1])
    return out


def _loads(s: str) -> Optional[Any]:
    try:
        return json.loads(s)
    except (json.JSONDecodeError, ValueError):
        pass
    py = re.sub(r"\btrue\b", "True", s)
    py = re.sub(r"\bfalse\b", "False", py)
    py = re.sub(r"\bnull\b", "None", py)
    try:
        return ast.literal_eval(py)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return None


def _as_bool(v: Any) -> Optional[bool]:
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("true", "yes", "accept", "accepted"):
        return True
    if isinstance(v, str) and v.strip().lower() in ("false", "no", "reject", "rejected"):
        return False
    return None


def _verdict_from(d: Any) -> Optional[Verdict]:
    if not isinstance(d, dict):
        return None
    d = {str(k).strip().lower(): v for k, v in d.items()}
    if not {"score", "accept", "reasons"} <= d.keys():
        return None
    score = d["score"]
    if isinstance(score, str):
        try:
            score = float(score.strip())
        except ValueError:
            return None
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0 <= score <= 10:
        return None
    accept = _as_bool(d["accept"])
    if accept is None:
        return None
    reasons = d["reasons"]
    if isinstance(reasons, str):
        reasons = [reasons]
    if not isinstance(reasons, (list, tuple)) or not all(isinstance(r, (str, int, float)) for r in reasons):
        return None
    return Verdict(float(score), accept, tuple(str(r).strip() for r in reasons if str(r).strip()))


def parse_verdict(text: str) -> Optional[Verdict]:
    """Parse a judge reply into a :class:`Verdict`, or ``None`` when it cannot be read.

    Accepts a bare JSON object, one inside a code fence, one surrounded by prose, and Python-style dicts with
    single quotes or ``True``/``False``. All three fields ``score`` (number 0-10, numeric strings allowed),
    ``accept`` (bool, or "true"/"false"/"yes"/"no") and ``reasons`` (list of strings, or one string) are
    required; anything else gives ``None`` so the caller can retry and count the failure.
    """
    if not isinstance(text, str) or not text.strip():
        return None
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for chunk in candidates:
        for obj in _json_objects(chunk):
            v = _verdict_from(_loads(obj))
            if v is not None:
                return v
    return None


# ----------------------------------------------------------------------------------------------- prompt building
def load_generation_templates(path: str | Path) -> dict[str, str]:
    """Read imSitu ``simple_sentence_realization/generation_templates.tab`` (``verb<TAB>AGENT presses ITEM ...``)."""
    p = Path(path)
    out: dict[str, str] = {}
    for i, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2 or not parts[0].strip():
            raise DataError(f"{p}: line {i} is not 'verb<TAB>template': {line[:80]!r}")
        out[parts[0].strip()] = parts[1].strip()
    return out


def abstract_of(space: FrameSpace, verb: str, templates: Optional[Mapping[str, str]] = None) -> str:
    """The verb's sentence template: the imSitu generation template when given, else the frame ``abstract``."""
    if templates and verb in templates:
        return templates[verb]
    vd = space.verbs.get(verb)
    if vd is None:
        return verb
    return vd.abstract or (verb + " " + " ".join(r.upper() for r in vd.roles))


def noun_label(space: FrameSpace, noun: str) -> str:
    """Readable noun: the first gloss, ``"(nothing)"`` for the empty noun."""
    return space.noun_name(noun) if noun != "" else "(nothing)"


def verb_menu(space: FrameSpace, top_verbs: Sequence[Sequence[Any]], templates: Optional[Mapping[str, str]] = None) -> str:
    """Lines ``- verb (score): abstract | definition`` for the teacher's top verbs."""
    lines = []
    for v, s in top_verbs:
        vd = space.verbs.get(v)
        definition = vd.definition if vd is not None else ""
        lines.append(f"- {v} ({float(s):.2f}): {abstract_of(space, v, templates)} | {definition}")
    return "\n".join(lines) if lines else "- (no vision-model evidence)"


def noun_menu(space: FrameSpace, role_nouns: Mapping[str, Sequence[Sequence[Any]]], roles: Optional[Sequence[str]] = None) -> str:
    """Lines ``- role: noun (score), noun (score)`` for the teacher's role-noun scores."""
    lines = []
    for r in roles if roles is not None else list(role_nouns):
        cands = role_nouns.get(r, [])
        if cands:
            lines.append(f"- {r}: " + ", ".join(f"{noun_label(space, n)} ({float(s):.2f})" for n, s in cands))
    return "\n".join(lines) if lines else "- (no vision-model evidence)"


def _region(sit: Situation, role: str) -> str:
    box = sit.boxes.get(role)
    if box is None:
        return "no box (the entity is not localised)"
    x1, y1, x2, y2 = box
    w, h = sit.width or max(x2, 1), sit.height or max(y2, 1)
    return f"[{x1:.0f}, {y1:.0f}, {x2:.0f}, {y2:.0f}] in a {w}x{h} image"


def _directive(space: FrameSpace, verb: Optional[str], templates: Optional[Mapping[str, str]]) -> str:
    if not verb:
        return ""
    return DIRECTIVE_TEMPLATE.format(verb=verb, abstract=abstract_of(space, verb, templates))


def _feedback(previous: Optional[str], reasons: Sequence[str]) -> str:
    if previous is None:
        return ""
    return FEEDBACK_TEMPLATE.format(previous=" ".join(previous.split()),
                                    reasons="; ".join(reasons) if reasons else "(no reasons given)")


def _decoding(avoid: Sequence[str], begin: str) -> str:
    return ((AVOID_TEMPLATE.format(words=", ".join(avoid)) if avoid else "")
            + (BEGIN_TEMPLATE.format(words=begin) if begin else ""))


def build_glimpse_prompt(space: FrameSpace, sit: Situation, evidence: Optional[Mapping[str, Any]], *,
                         target_verb: Optional[str] = None, previous: Optional[str] = None,
                         reasons: Sequence[str] = (), templates: Optional[Mapping[str, str]] = None,
                         avoid: Sequence[str] = (), begin: str = "") -> str:
    """Fill :data:`GLIMPSE_TEMPLATE` for one image."""
    ev = evidence or {}
    return GLIMPSE_TEMPLATE.format(
        image=sit.image, verb_menu=verb_menu(space, ev.get("top_verbs", []), templates),
        noun_menu=noun_menu(space, ev.get("role_nouns", {})),
        directive=_directive(space, target_verb, templates), feedback=_feedback(previous, reasons),
        decoding=_decoding(avoid, begin))


def build_gaze_prompt(space: FrameSpace, sit: Situation, role: str, evidence: Optional[Mapping[str, Any]], *,
                      target_verb: Optional[str] = None, previous: Optional[str] = None,
                      reasons: Sequence[str] = (), templates: Optional[Mapping[str, str]] = None,
                      avoid: Sequence[str] = (), begin: str = "") -> str:
    """Fill :data:`GAZE_TEMPLATE` for one role of one image."""
    ev = evidence or {}
    vd = space.verbs.get(sit.verb)
    role_def = (vd.role_defs.get(role, "") if vd is not None else "") or role
    return GAZE_TEMPLATE.format(
        image=sit.image, role=role, role_def=role_def, region=_region(sit, role),
        verb_menu=verb_menu(space, ev.get("top_verbs", []), templates),
        noun_menu=noun_menu(space, ev.get("role_nouns", {}), [role]),
        directive=_directive(space, target_verb, templates), feedback=_feedback(previous, reasons),
        decoding=_decoding(avoid, begin))


def frame_roles(space: FrameSpace, sit: Situation) -> tuple[str, ...]:
    """The verb's roles in frame order, then roles the annotators used that the frame lacks (reduced spaces)."""
    vd = space.verbs.get(sit.verb)
    roles = list(vd.roles) if vd is not None else []
    for fr in sit.frames:
        roles += [r for r in fr if r not in roles]
    return tuple(roles)


def roles_block(space: FrameSpace, sit: Situation) -> str:
    """Lines ``- role (definition): noun1 [syn, syn]; noun2 [...]; noun3 [...]`` from the annotators' frames."""
    vd = space.verbs.get(sit.verb)
    roles = frame_roles(space, sit)
    lines = []
    for r in roles:
        parts = []
        for fr in sit.frames:
            n = fr.get(r, "")
            nd = space.nouns.get(n)
            syn = [g for g in (nd.gloss if nd is not None else ())][1:4]
            parts.append(noun_label(space, n) + (f" [{', '.join(syn)}]" if syn else ""))
        rd = vd.role_defs.get(r, "") if vd is not None else ""
        lines.append(f"- {r}" + (f" ({rd})" if rd else "") + ": " + "; ".join(parts))
    return "\n".join(lines)


#: What the generator is told instead of a judge reason that named the annotated answer.
ACTIVITY_WRONG = "the activity is wrong"
ROLE_WRONG_TEMPLATE = "the {role} is wrong"


def _whole_words(text: str) -> str:
    return " " + " ".join(re.findall(r"[a-z0-9]+", text.lower())) + " "


def answer_terms(space: FrameSpace, sit: Situation,
                 templates: Optional[Mapping[str, str]] = None) -> dict[str, set[str]]:
    """The words that would give the annotation away: ``"activity"`` -> the annotated verb and the content words
    of its frame, and each role -> every name (all glosses) of the annotators' nouns for it."""
    verb_terms = {sit.verb.lower()} | {w for w in re.findall(r"\b[a-z]+\b", abstract_of(space, sit.verb, templates))
                                       if len(w) > 2 and w not in _FUNCTION_WORDS}
    out: dict[str, set[str]] = {"activity": verb_terms}
    for r in frame_roles(space, sit):
        names: set[str] = set()
        for fr in sit.frames:
            n = fr.get(r, "")
            nd = space.nouns.get(n)
            names |= {g.lower() for g in (nd.gloss if nd is not None else ())} | ({n.lower()} if n else set())
        out[r] = {x for x in names if x}
    return out


def answer_free_reasons(reasons: Sequence[str], space: FrameSpace, sit: Situation, rationale: str = "",
                        templates: Optional[Mapping[str, str]] = None) -> tuple[tuple[str, ...], int]:
    """Judge reasons as the generator may see them: a reason that names the annotated verb (or its frame words) or
    any of the annotators' nouns for a role, where the judged ``rationale`` did not already say that word, would
    hand the generator the answer, so it is replaced by the part it is about (:data:`ACTIVITY_WRONG` or
    ``"the <role> is wrong"``). Words the rationale itself used reveal nothing ("entity 'woman' is not what the
    annotators chose for the role 'food'" may quote the generator's 'woman' even when a woman is the agent). A real
    LLM judge may ignore the prompt's instruction not to reveal the answer; this keeps refinement a judgement, not a
    lookup, whatever the judge writes.

    Returns:
        (reasons, how many were replaced); duplicates after replacement are dropped, order kept.
    """
    said = _whole_words(rationale)
    terms = {part: {n for n in names if _whole_words(n) not in said}
             for part, names in answer_terms(space, sit, templates).items()}
    out: list[str] = []
    replaced = 0
    for reason in reasons:
        words = _whole_words(reason)
        hit = next((part for part, names in terms.items()
                    if any(_whole_words(n) in words for n in names)), None)
        if hit is not None:
            replaced += 1
            reason = ACTIVITY_WRONG if hit == "activity" else ROLE_WRONG_TEMPLATE.format(role=hit)
        if reason not in out:
            out.append(reason)
    return tuple(out), replaced


def build_judge_prompt(space: FrameSpace, sit: Situation, evidence: Optional[Mapping[str, Any]], kind: str,
                       role: Optional[str], text: str, *, threshold: float,
                       templates: Optional[Mapping[str, str]] = None) -> str:
    """Fill :data:`JUDGE_TEMPLATE`: the annotated frame, the evidence and the rationale."""
    ev = evidence or {}
    vd = space.verbs.get(sit.verb)
    evid = ", ".join(f"{v} ({float(s):.2f})" for v, s in ev.get("top_verbs", [])) or "(none)"
    return JUDGE_TEMPLATE.format(
        image=sit.image, verb=sit.verb, abstract=abstract_of(space, sit.verb, templates),
        definition=vd.definition if vd is not None else "", roles_block=roles_block(space, sit),
        evidence=evid, kind=kind, role=role or "(whole scene)", text=" ".join(text.split()),
        threshold=f"{threshold:g}")


def prompts_fingerprint() -> str:
    """Short digest of every template (keys the store together with the backends)."""
    blob = "\n".join([PROMPT_VERSION, SYSTEM_GENERATOR, SYSTEM_JUDGE, GLIMPSE_TEMPLATE, GAZE_TEMPLATE,
                      DIRECTIVE_TEMPLATE, FEEDBACK_TEMPLATE, AVOID_TEMPLATE, BEGIN_TEMPLATE, JUDGE_TEMPLATE])
    return hashlib.sha256(blob.encode()).hexdigest()[:8]
