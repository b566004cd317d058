"""What rationales *say*: verb and primitive mentions, the words a refinement avoids, and content statistics.

Mentions are found with the phrase matching of :mod:`mipd_kit.language.captioner_eval` (greedy longest match of the
world's own phrases for poses, relations, motion cues, objects, places and the caption words of each verb), so
these measures mean most on SynthSitu worlds; on other worlds a verb is still found by its name.

* :func:`names_verb` -- does a text name a verb (its name or any of its caption words)?
* :func:`words_to_avoid` -- the words of a rejected rationale the judge's (answer-free) reasons point at: the verb
  words it used when the activity is wrong, the object words of a gaze when its entity is wrong. They go to the
  generator as ``Avoid these words: ...`` (the captioner never samples them); they are the generator's own words,
  never the annotation's.
* :func:`content_statistics` -- pure function of stored records (+ the world's ``rendered.jsonl`` when there is
  one): judge precision against the world's truth, primitive mentions, distinct positives per verb with nouns masked.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from typing import Any, Mapping, Optional, Sequence

from mipd_kit.data.records import Situation
from mipd_kit.rationales.store import Rationale

#: primitive categories whose mention shows the text carries perception beyond the label
PRIMITIVES: tuple[str, ...] = ("pose", "relation", "motion")
NOUN_MASK = "<noun>"


def _table():
    from mipd_kit.language.captioner_eval import phrase_table
    global _TABLE, _LONGEST
    if _TABLE is None:
        _TABLE = phrase_table()
        _LONGEST = max(len(k) for k in _TABLE)
    return _TABLE


_TABLE: Optional[dict] = None
_LONGEST = 0
#: "on the left / right" is where something is, not the relation *on*
_SIDES = {("the", "left"), ("the", "right")}


def spans(text: str) -> list[tuple[int, int, str, tuple[str, ...]]]:
    """``(start, end, category, labels)`` token spans of the phrases ``text`` mentions (greedy longest match, as
    ``captioner_eval.mentions``); tokens are ``captioner.tokenize(text)``. Memoised per text (a default run's
    statistics look at ~100,000 rationales, many of them the same text)."""
    return list(_spans(text))


@functools.lru_cache(maxsize=1 << 17)
def _spans(text: str) -> tuple[tuple[int, int, str, tuple[str, ...]], ...]:
    from mipd_kit.language.captioner import tokenize
    table = _table()
    longest = _LONGEST
    toks = tokenize(text)
    out = []
    i = 0
    while i < len(toks):
        for n in range(min(longest, len(toks) - i), 0, -1):
            labels = table.get(tuple(toks[i:i + n]))
            if labels and tuple(toks[i:i + n]) == ("on",) and tuple(toks[i + 1:i + 3]) in _SIDES:
                labels = None  # "on the left": a position, not the relation "on"
            if labels:
                cats: dict[str, list[str]] = defaultdict(list)
                for c, v in labels:
                    cats[c].append(v)
                out += [(i, i + n, c, tuple(sorted(vs))) for c, vs in cats.items()]
                i += n
                break
        else:
            i += 1
    return tuple(out)


def mentioned(text: str, category: str) -> set[str]:
    """The labels of one category that ``text`` mentions."""
    return {v for _, _, c, vs in spans(text) if c == category for v in vs}


def names_verb(text: str, verb: str) -> bool:
    """Whether ``text`` names ``verb``: the verb's name as a whole word, or one of its caption words."""
    words = " " + " ".join(re.findall(r"[a-z0-9]+", text.lower())) + " "
    return f" {verb.lower()} " in words or verb in mentioned(text, "verb")


def verb_surface_words(verb: str) -> list[str]:
    """Single-word surface forms of a verb: its name and its one-word caption words (SynthSitu)."""
    from mipd_kit.data.synthsitu.captions import VERB_WORDS
    return list(dict.fromkeys([verb, *(w for w in VERB_WORDS.get(verb, ()) if " " not in w)]))


def words_to_avoid(reasons: Sequence[str], previous: str, kind: str) -> list[str]:
    """Words of the rejected rationale ``previous`` that the judge's answer-free ``reasons`` point at.

    A reason about the activity ("the activity is wrong", "names the activity ...", "does not name the annotated
    activity") points at the verbs the text named: every single-word surface form of those verbs. A reason about a
    gaze's entity ("entity ... is not what the annotators chose", "the <role> is wrong") points at the object words
    the gaze used. Other reasons (a participant not mentioned, the setting) point at no word: the next round only
    re-samples. Never contains a word the rejected text did not imply (no answer is added).
    """
    from mipd_kit.language.captioner import tokenize
    toks = tokenize(previous)
    sp = spans(previous)
    out: list[str] = []
    about_activity = any("activity" in r for r in reasons)
    about_entity = kind == "gaze" and any(
        "entity" in r or (re.fullmatch(r"the [\w ]+ is wrong", r) is not None and "activity" not in r) for r in reasons)
    if about_activity:
        for _, _, c, vs in sp:
            if c == "verb":
                for v in vs:
                    out += verb_surface_words(v)
    if about_entity:
        for s, e, c, _ in sp:
            if c == "object":
                out += [t for t in toks[s:e] if t not in ("a", "an", "the")]
    return list(dict.fromkeys(w for w in out if w))


def mask_nouns(text: str) -> str:
    """``text`` with object and place mentions replaced by ``<noun>`` (lower-cased tokens joined by spaces)."""
    from mipd_kit.language.captioner import tokenize
    toks = tokenize(text)
    out, i = [], 0
    for s, e, c, _ in sorted({(s, e, c, v) for s, e, c, v in spans(text) if c in ("object", "place")}):
        if s < i:
            continue
        out += toks[i:s] + [NOUN_MASK]
        i = e
    return " ".join(out + toks[i:])


def _rendered(world_dir) -> Optional[dict[str, dict]]:
    from pathlib import Path

    from mipd_kit.data.records import DataError
    from mipd_kit.data.synthsitu.generate import read_rendered
    if world_dir is None or not (Path(world_dir) / "rendered.jsonl").exists():
        return None
    try:
        return read_rendered(world_dir)
    except DataError:
        return None


def is_correct(r: Rationale, record: Mapping[str, Any]) -> bool:
    """Whether a rationale is right about its image according to the world's ``rendered.jsonl`` record.

    A glimpse is correct when it names a verb of the image and no verb the image does not show. A gaze is correct
    when it names no verb the image does not show and, if its role's drawn entity is known, names that entity's
    concept (a gaze of a role with no drawn entity only needs the first condition).
    """
    true_verbs = {i["verb"] for i in record.get("instances", [])}
    said = mentioned(r.text, "verb")
    if said - true_verbs:
        return False
    if r.kind == "glimpse":
        return bool(said & true_verbs)
    target = {i["objects"][r.role] for i in record.get("instances", []) if r.role in i.get("objects", {})}
    return not target or bool(mentioned(r.text, "object") & target)


def content_statistics(records: Sequence[Rationale], situations: Mapping[str, Situation],
                       world_dir=None) -> dict[str, Any]:
    """Content of the final positives and of the negatives (pure but for reading ``rendered.jsonl``).

    Per kind (``glimpse``, ``gaze``, ``all``), over the positives of annotated images:

    * ``judge_precision``: share of positives that are correct per :func:`is_correct` against the world's
      ``rendered.jsonl`` (None without that file) -- how often what the judge accepted is true of the image;
    * ``primitive_share`` / ``pose_share`` / ``relation_share`` / ``motion_share``: share of positives mentioning a
      pose, relation or motion primitive (any of the three, then each);
    * ``distinct_masked_per_verb``: the annotated verb -> number of distinct positive texts once object and place
      mentions are masked (:func:`mask_nouns`); ``distinct_masked_max`` / ``_mean`` summarise it;
    * ``negatives_naming_gold_verb``: negatives still naming the image's verb (0 when dropping works).

    Also ``negatives_dropped_gold_verb`` (records of polarity ``dropped``) and ``unlabeled`` (``unjudged`` records).
    """
    rendered = _rendered(world_dir)
    out: dict[str, Any] = {}
    for kind in ("glimpse", "gaze", "all"):
        pos = [r for r in records if r.polarity == "positive" and r.image in situations and kind in ("all", r.kind)]
        neg = [r for r in records if r.polarity == "negative" and r.image in situations and kind in ("all", r.kind)]
        cats = [{c for c in PRIMITIVES if mentioned(r.text, c)} for r in pos]
        per_verb: dict[str, set[str]] = defaultdict(set)
        for r in pos:
            per_verb[situations[r.image].verb].add(mask_nouns(r.text))
        distinct = {v: len(s) for v, s in sorted(per_verb.items())}
        prec = None
        if rendered is not None:
            judged = [is_correct(r, rendered[f"images/{r.image}"]) for r in pos if f"images/{r.image}" in rendered]
            prec = sum(judged) / len(judged) if judged else None
        share = (lambda xs: sum(xs) / len(xs) if xs else None)  # noqa: E731
        out[kind] = {
            "n_positive": len(pos), "judge_precision": prec,
            "primitive_share": share([bool(c) for c in cats]),
            **{f"{c}_share": share([c in cs for cs in cats]) for c in PRIMITIVES},
            "distinct_masked_per_verb": distinct,
            "distinct_masked_max": max(distinct.values()) if distinct else 0,
            "distinct_masked_mean": sum(distinct.values()) / len(distinct) if distinct else 0.0,
            "negatives_naming_gold_verb": sum(names_verb(r.text, situations[r.image].verb) for r in neg),
        }
    out["negatives_dropped_gold_verb"] = sum(r.polarity == "dropped" for r in records)
    out["unlabeled"] = sum(r.polarity == "unjudged" for r in records)
    return out
