"""Embedded (offline) language backend: a deterministic stand-in for an LLM generator and an LLM judge.

**This is not a language model.** It exists so that the Judgmental Rationales Generator (MIPD) runs offline on
a 2-core CPU with no downloadable weights. It reads exactly the prompts a real chat LLM receives (the templates
in :mod:`mipd_kit.rationales.prompts`) and answers them with rules:

* :class:`EmbeddedGenerator` writes glimpse and gaze rationales from what the prompt shows: the teacher's visual
  evidence (its top verbs with the imSitu frame abstract and definition, its role-noun scores) and the role
  region. It usually describes the teacher's top verb, sometimes a confused one (probability ``1 - p_top``),
  fills the frame abstract with the teacher's nouns, and varies its wording. Given judge feedback it avoids
  the activities and entities the judge named as wrong and moves to the next candidate. Given a directive
  ("Activity to describe: X") it describes X (used for hard negatives).
* :class:`EmbeddedJudge` scores a rationale against the annotated frame shown in the judge prompt (verb,
  abstract, the three annotators' nouns with synonyms) and the evidence, and replies in the same JSON format
  asked of a real LLM judge, wrapped in varied ways (bare, code fence, prose, single quotes) so the same
  :func:`~mipd_kit.rationales.prompts.parse_verdict` path is exercised. ``malformed_rate`` makes a fraction of
  its replies unparseable, to exercise retry and failure counting. Its reasons say which part is wrong (the
  activity, a participant, the setting) and never what the annotation expects, so a rejected generator has to look
  again (move to another candidate of the evidence), not copy the answer.

Both are deterministic functions of (seed, messages): same prompt, same reply, independent of call order or
threads. Every stage runs unchanged with the OpenAI-compatible or transformers backends instead.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from mipd_kit.language.base import Message, Response

_PREPS = {"at", "in", "on", "with", "using", "from", "to", "into", "onto", "for", "by", "through", "under",
          "over", "of", "off", "about", "against", "toward", "towards", "across", "around", "behind", "near",
          "the", "a", "an", "and", "up", "down", "out", "as"}
_VERB_LINE = re.compile(r"^- (\S+) \(([-\d.]+)\): (.*?) \| (.*)$")
_NOUN_ITEM = re.compile(r"\s*([^,]+?) \(([-\d.]+)\)")
_REGION = re.compile(r"\[([-\d.]+), ([-\d.]+), ([-\d.]+), ([-\d.]+)\] in a (\d+)x(\d+) image")


def _text_of(messages: Sequence[Message]) -> str:
    """All text content of the messages (image parts ignored), joined by newlines."""
    out = []
    for m in messages:
        c = m.get("content", "")
        if isinstance(c, str):
            out.append(c)
        else:
            out.extend(p.get("text", "") for p in c if isinstance(p, dict) and p.get("type") == "text")
    return "\n".join(out)


def _rng(seed: int, text: str) -> random.Random:
    return random.Random(int.from_bytes(hashlib.sha256(f"{seed}\x00{text}".encode()).digest()[:8], "big"))


def _field(text: str, label: str) -> Optional[str]:
    m = re.search(rf"^{re.escape(label)}: ?(.*)$", text, re.M)
    return m.group(1).strip() if m else None


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def _mentions(text_norm: str, phrase: str) -> bool:
    """Whole-word (or whole-phrase) occurrence of ``phrase`` in lower-cased, space-normalised text."""
    p = " ".join(_words(phrase))
    return bool(p) and f" {p} " in f" {text_norm} "


def verb_words(name: str, abstract: str) -> set[str]:
    """Surface forms of a verb: its name and the lower-case non-function words of its abstract."""
    forms = {name.lower()}
    forms |= {w for w in re.findall(r"\b[a-z]+\b", abstract) if w not in _PREPS and len(w) > 2}
    return forms


def _parse_menu(text: str, header: str) -> list[str]:
    """Lines of the bulleted block that follows the line starting with ``header``."""
    lines = text.splitlines()
    out: list[str] = []
    for i, line in enumerate(lines):
        if line.startswith(header):
            for nxt in lines[i + 1:]:
                if not nxt.startswith("- "):
                    break
                out.append(nxt)
            break
    return out


def _parse_verbs(text: str) -> list[tuple[str, float, str, str]]:
    out = []
    for line in _parse_menu(text, "Candidate activities"):
        m = _VERB_LINE.match(line)
        if m:
            out.append((m.group(1), float(m.group(2)), m.group(3).strip(), m.group(4).strip()))
    return out


def _parse_nouns(text: str, header: str) -> dict[str, list[tuple[str, float]]]:
    out: dict[str, list[tuple[str, float]]] = {}
    for line in _parse_menu(text, header):
        role, _, rest = line[2:].partition(": ")
        items = [(m.group(1).strip(), float(m.group(2))) for m in _NOUN_ITEM.finditer(rest)]
        if items:
            out[role.strip()] = items
    return out


def _article(noun: str) -> str:
    return "an" if noun[:1].lower() in "aeiou" else "a"


@dataclass
class EmbeddedGenerator:
    """Deterministic rationale writer (stands in for an LLM generator; see module docstring).

    Attributes:
        seed: changes every choice.
        p_top: probability of describing the teacher's top candidate (else a confused one).
    """

    seed: int = 0
    p_top: float = 0.7

    @property
    def fingerprint(self) -> str:
        return f"embedded-generator-v2:s{self.seed}:p{self.p_top:g}"

    # -- choices -----------------------------------------------------------------------------------------------
    def _pick(self, rng: random.Random, cands: list[Any], avoid: set[str], key=lambda c: c[0]) -> Optional[Any]:
        """Top candidate with prob ``p_top``, else one of the others weighted by score; avoided ones skipped."""
        pool = [c for c in cands if key(c) not in avoid] or list(cands)
        if not pool:
            return None
        if len(pool) == 1 or rng.random() < self.p_top:
            return pool[0]
        rest = pool[1:]
        weights = [max(float(c[1]), 1e-3) for c in rest]
        return rng.choices(rest, weights=weights, k=1)[0]

    def __call__(self, messages: Sequence[Message]) -> Response:
        t0 = time.perf_counter()
        text = _text_of(messages)
        rng = _rng(self.seed, text)
        task = (_field(text, "Task") or "").split(" ")[0]
        if task == "glimpse":
            out = self._glimpse(text, rng)
        elif task == "gaze":
            out = self._gaze(text, rng)
        else:
            out = "I can only write glimpse and gaze rationales for the prompts of mipd_kit.rationales."
        return Response(out, tuple(messages), {"backend": "embedded", "latency_s": time.perf_counter() - t0})

    def _feedback_avoid(self, text: str) -> tuple[set[str], set[str]]:
        fb = _field(text, "Judge feedback") or ""
        return set(re.findall(r"activity '([^']+)', which", fb)), set(re.findall(r"entity '([^']+)'", fb))

    def _verb(self, text: str, rng: random.Random) -> tuple[str, str, str]:
        verbs = _parse_verbs(text)
        target = _field(text, "Activity to describe")
        avoid_v, _ = self._feedback_avoid(text)
        if target:
            for v in verbs:
                if v[0] == target:
                    return v[0], v[2], v[3]
            m = re.search(r"were \"[^\"]+\" \((.*)\)\.$", text, re.M)
            return target, (m.group(1) if m else target), ""
        prev = " ".join(_words(_field(text, "Previous rationale") or ""))
        for v in verbs:  # the judge did not object to the previous activity: keep it
            if prev and v[0] not in avoid_v and any(_mentions(prev, f) for f in verb_words(v[0], v[2])):
                return v[0], v[2], v[3]
        pick = self._pick(rng, verbs, avoid_v)
        if pick is None:
            return "something", "AGENT does something", ""
        return pick[0], pick[2], pick[3]

    def _noun(self, rng: random.Random, cands: list[tuple[str, float]], avoid: set[str], previous: str = "") -> str:
        prev = " ".join(_words(previous))
        for c in cands:  # keep what the judge did not criticise in the previous attempt
            if previous and c[0] not in avoid and _mentions(prev, c[0]):
                return c[0]
        pick = self._pick(rng, cands, avoid)
        return pick[0] if pick is not None else "something"

    def _glimpse(self, text: str, rng: random.Random) -> str:
        verb, abstract, _ = self._verb(text, rng)
        nouns = _parse_nouns(text, "Entities the vision model sees")
        _, avoid_n = self._feedback_avoid(text)
        previous = _field(text, "Previous rationale") or ""
        chosen = {r: self._noun(rng, c, avoid_n, previous) for r, c in nouns.items()}
        sentence = abstract
        for tok in sorted(set(re.findall(r"\b[A-Z][A-Z_]+\b", abstract)), key=len, reverse=True):
            noun = chosen.get(tok.lower(), "")
            if noun in ("", "(nothing)"):
                # drop the role, with its preposition when it has one
                sentence = re.sub(rf"(\b(?:{'|'.join(sorted(_PREPS))})\s+)?\b{tok}\b",
                                  lambda m: "" if m.group(1) else "someone", sentence)
            else:
                sentence = re.sub(rf"\b{tok}\b", f"{_article(noun)} {noun}", sentence)
        sentence = " ".join(sentence.split()).strip()
        place = chosen.get("place", "")
        setting = (f"the setting looks like {_article(place)} {place}" if place not in ("", "(nothing)", "something")
                   else "the setting is plain")
        forms = [
            f"The image shows {verb}: {sentence}.",
            f"This looks like {verb}, since {sentence}; {setting}.",
            f"Scene: {sentence}. The activity is {verb} and {setting}.",
            f"In this picture {sentence}, which is {verb}.",
            f"{sentence[:1].upper() + sentence[1:]}. Overall, {setting}.",
        ]
        return rng.choice(forms)

    def _gaze(self, text: str, rng: random.Random) -> str:
        role = _field(text, "Role") or "entity"
        role_def = _field(text, "Role definition") or role
        verb, _, _ = self._verb(text, rng)
        nouns = _parse_nouns(text, "Entities the vision model sees")
        _, avoid_n = self._feedback_avoid(text)
        noun = self._noun(rng, nouns.get(role, []), avoid_n, _field(text, "Previous rationale") or "")
        m = _REGION.search(_field(text, "Role region") or "")
        if m:
            x1, y1, x2, y2, w, h = (float(g) for g in m.groups())
            frac = max(x2 - x1, 0) * max(y2 - y1, 0) / max(w * h, 1.0)
            size = "large" if frac > 0.25 else "small" if frac < 0.06 else "medium-sized"
            cx, cy = (x1 + x2) / 2 / max(w, 1.0), (y1 + y2) / 2 / max(h, 1.0)
            horiz = "on the left" if cx < 0.33 else "on the right" if cx > 0.66 else "in the centre"
            vert = "near the top" if cy < 0.33 else "near the bottom" if cy > 0.66 else "at mid height"
            look = f"{size}, {horiz} {vert}"
        else:
            look = rng.choice(["spread over the background", "filling the background", "seen in the background"])
        if noun in ("(nothing)", ""):
            return rng.choice([f"No entity fills the {role} role in this image; it is left empty in the {verb} scene.",
                               f"The {role} is absent: nothing visible plays that part in {verb}."])
        art = _article(noun)
        forms = [
            f"{art.capitalize()} {noun}, {look}, is the {role} here: {role_def} while {verb} takes place.",
            f"The {role} is {art} {noun} ({look}); it takes part in {verb} as {role_def}.",
            f"Looking at the {role}: {art} {noun}, {look}. Its part in the {verb} is {role_def}.",
            f"{art.capitalize()} {noun} appears {look} and acts as the {role} of {verb}.",
        ]
        return rng.choice(forms)


def _parse_roles_block(text: str) -> dict[str, list[str]]:
    """role -> annotators' noun names (the annotators' labels first, in order, then synonyms); ``""`` marks an
    empty noun."""
    out: dict[str, list[str]] = {}
    for line in _parse_menu(text, "Roles and the annotators' nouns"):
        body = line[2:]
        role = body.split(" ", 1)[0].rstrip(":")
        rest = body[len(role):]
        if rest.startswith(" ("):
            idx = rest.find("): ")
            rest = rest[idx + 3:] if idx >= 0 else rest.partition(": ")[2]
        else:
            rest = rest.partition(": ")[2]
        labels: list[str] = []
        syns: list[str] = []
        for part in rest.split("; "):
            label, _, syn = part.strip().partition(" [")
            labels.append("" if label == "(nothing)" else label.strip())
            if syn:
                syns += [x.strip() for x in syn.rstrip("]").split(",") if x.strip()]
        majority = max(labels, key=labels.count) if labels else ""
        out[role] = list(dict.fromkeys([majority, *labels, *syns]))
    return out


@dataclass
class EmbeddedJudge:
    """Deterministic judge (stands in for an LLM judge; see module docstring).

    Attributes:
        seed: changes the reply wrapping and wording.
        threshold: accept when the score reaches it (the prompt states its own threshold, which wins).
        malformed_rate: fraction of replies made unparseable on purpose (tests of failure handling).
    """

    seed: int = 0
    threshold: float = 7.0
    malformed_rate: float = 0.0

    @property
    def fingerprint(self) -> str:
        return f"embedded-judge-v2:s{self.seed}:m{self.malformed_rate:g}"

    def __call__(self, messages: Sequence[Message]) -> Response:
        t0 = time.perf_counter()
        text = _text_of(messages)
        rng = _rng(self.seed, text)
        if rng.random() < self.malformed_rate:
            out = rng.choice(["I think the rationale is mostly fine, maybe an eight out of ten.",
                              "{\"score\": 8, \"accept\": true", "", "```json\n{'score': 'high'}\n```"])
        else:
            score, accept, reasons = self.score(text)
            out = self._wrap(rng, {"score": score, "accept": accept, "reasons": reasons})
        return Response(out, tuple(messages), {"backend": "embedded", "latency_s": time.perf_counter() - t0})

    @staticmethod
    def _wrap(rng: random.Random, verdict: dict[str, Any]) -> str:
        style = rng.randrange(4)
        js = json.dumps(verdict)
        if style == 0:
            return js
        if style == 1:
            return f"```json\n{json.dumps(verdict, indent=2)}\n```"
        if style == 2:
            return f"Here is my verdict on the rationale.\n{js}\nLet me know if you need more detail."
        return repr(verdict)  # Python-style dict, single quotes and True/False

    def score(self, prompt: str) -> tuple[int, bool, list[str]]:
        """Score one judge prompt: returns (score 0-10, accept, reasons)."""
        m = re.search(r"^Rationale: <<<(.*)>>>$", prompt, re.M)
        rationale = m.group(1) if m else ""
        norm = " ".join(_words(rationale))
        gold = _field(prompt, "Annotated verb") or ""
        gold_abstract = _field(prompt, "Annotated frame") or ""
        gold_forms = verb_words(gold, gold_abstract)
        ev = _field(prompt, "Vision-model activities (score)") or ""
        others = {v for v in re.findall(r"(\S+) \([-\d.]+\)", ev) if v != gold}
        kind = (_field(prompt, "Rationale kind") or "glimpse").strip()
        role = (_field(prompt, "Rationale role") or "").strip()
        thr_m = re.search(r"score is at least ([\d.]+)", prompt)
        threshold = float(thr_m.group(1)) if thr_m else self.threshold
        roles = _parse_roles_block(prompt)
        says_gold = any(_mentions(norm, f) for f in gold_forms)
        wrong = sorted(v for v in others if _mentions(norm, v) and v.lower() not in gold_forms)
        reasons: list[str] = []
        if not norm:
            return 0, False, ["the rationale is empty"]
        if kind == "gaze":
            names = set(roles.get(role, []))
            entity_ok = names == {""} or any(n and _mentions(norm, n) for n in names) or (
                "" in names and ("absent" in norm or "no entity" in norm))
            pts = 5.0 if entity_ok else 0.0
            if not entity_ok:
                said = _gaze_entity(rationale, role)
                reasons.append(f"entity '{said}' is not what the annotators chose for the role '{role}'"
                               if said else f"the entity filling the role '{role}' is not named")
            if wrong:
                reasons.append(f"the rationale puts the entity in the activity '{wrong[0]}', which contradicts the annotated frame")
            elif says_gold or _mentions(norm, role):
                pts += 3.0
            else:
                reasons.append("the entity's part in the action is not described")
            if len(norm.split()) >= 6 and any(w in norm.split() for w in (
                    "left", "right", "centre", "top", "bottom", "large", "small", "sized", "height", "background", "absent")):
                pts += 2.0
            else:
                reasons.append("the entity's appearance or position is not described")
            ok = entity_ok and not wrong
        else:
            if wrong:
                reasons.append(f"the rationale names the activity '{wrong[0]}', which contradicts the annotated frame")
                pts = 0.0
            elif says_gold:
                pts = 5.0
            else:
                reasons.append("the rationale does not name the annotated activity")
                pts = 0.0
            parts = [r for r in roles if r != "place" and set(roles[r]) != {""}]
            hit = [r for r in parts if any(n and _mentions(norm, n) for n in roles[r])]
            pts += 3.0 * (len(hit) / len(parts) if parts else 1.0)
            for r in parts:
                if r not in hit:
                    reasons.append(f"the {r} the annotators chose is not mentioned")
            place = roles.get("place")
            if place is None or set(place) == {""} or any(n and _mentions(norm, n) for n in place):
                pts += 2.0
            else:
                reasons.append("the setting does not match the annotated place")
            ok = says_gold and not wrong
        score = int(round(min(max(pts, 0.0), 10.0)))
        accept = bool(ok and score >= threshold)
        if accept and not reasons:
            reasons = ["consistent with the annotated frame"]
        return score, accept, reasons


def _gaze_entity(rationale: str, role: str) -> str:
    """The entity a gaze rationale names (first article + noun phrase that is not the role), for feedback."""
    for m in re.finditer(r"\b(?:an?|the)\s+([a-z][a-z -]*?)(?=,| \(| appears| is\b| acts|\.)", rationale, re.I):
        phrase = m.group(1).strip().lower()
        if phrase not in {role.lower(), "role", "entity", "setting", "image", "scene"}:
            return phrase
    return ""
